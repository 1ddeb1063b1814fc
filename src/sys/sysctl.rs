//! `/proc/sys` access. Entries under `/proc/sys/net` belong to the network
//! namespace of the calling thread, so callers enter the namespace first.

use crate::error::{Error, Result};

fn path(key: &str) -> String {
    format!("/proc/sys/{}", key.trim_start_matches('/'))
}

pub fn read(key: &str) -> Result<String> {
    std::fs::read_to_string(path(key))
        .map(|s| s.trim_end().to_string())
        .map_err(|e| Error::os(format_args!("read sysctl {key}"), e.raw_os_error().unwrap_or(0)))
}

pub fn write(key: &str, value: &str) -> Result<()> {
    std::fs::write(path(key), value)
        .map_err(|e| Error::os(format_args!("set sysctl {key}={value}"), e.raw_os_error().unwrap_or(0)))
}

/// Write only when the value differs: avoids needless writes to global knobs
/// such as `ip_forward`, which also generate netlink notifications.
pub fn ensure(key: &str, value: &str) -> Result<()> {
    match read(key) {
        Ok(cur) if cur == value => Ok(()),
        _ => write(key, value),
    }
}
