//! Per-attachment masquerade rules (table `inet cni_plugins_masquerade`). Placeholder.

use crate::error::{Error, Result};
use crate::net::IpNet;

/// Masquerade traffic from each of `addrs` leaving its own subnet (`addrs` carry their prefix).
pub fn setup(_network: &str, _ifname: &str, _container_id: &str, _addrs: &[IpNet]) -> Result<()> {
    Err(Error::msg("ipMasq: not implemented yet"))
}

/// Remove this attachment's rules; needs neither the addresses nor the netns.
pub fn teardown(_network: &str, _ifname: &str, _container_id: &str) -> Result<()> {
    Ok(())
}

pub fn check(_network: &str, _ifname: &str, _container_id: &str, _addrs: &[IpNet]) -> Result<()> {
    Err(Error::msg("ipMasq: not implemented yet"))
}

/// Remove rules of this network whose (container id, ifname) is not in `valid`.
pub fn gc(_network: &str, _valid: &[(String, String)]) -> Result<()> {
    Ok(())
}
