//! Test-only fault injection at every mutating step (netlink request, state
//! write, nftables batch). Compiled to nothing unless the `failpoints` feature
//! is on. With it, `CNIBOX_FAILPOINT=N` makes the Nth step fail: with
//! `CNIBOX_FAILPOINT_MODE=abort` the process aborts there (a plugin killed
//! mid-way), otherwise the step returns an error (exercising rollback).

use crate::error::Result;

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_step: &str) -> Result<()> {
    Ok(())
}

#[cfg(feature = "failpoints")]
pub fn hit(step: &str) -> Result<()> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    if let Ok(t) = std::env::var("CNIBOX_FAILPOINT_TRACE") {
        if !t.is_empty() {
            eprintln!("cnibox failpoint {n}: {step}");
        }
    }
    let target: u32 = std::env::var("CNIBOX_FAILPOINT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if n == target {
        if std::env::var("CNIBOX_FAILPOINT_MODE").as_deref() == Ok("abort") {
            std::process::abort();
        }
        return Err(crate::error::Error::msg(format!("injected failure at step {n} ({step})")));
    }
    Ok(())
}
