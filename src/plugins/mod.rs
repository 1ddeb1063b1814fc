//! The plugins: one module each, holding that plugin's verbs in the order the
//! kernel sees their requests.

use crate::cni::Plugin;

pub mod loopback;

/// Every plugin name the binary answers to (argv[0] or `cnibox <name>`).
pub static ALL: &[&Plugin] = &[&loopback::PLUGIN];

pub fn find(name: &str) -> Option<&'static Plugin> {
    ALL.iter().copied().find(|p| p.name == name)
}
