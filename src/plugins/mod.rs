//! The plugins: one module each, holding that plugin's verbs in the order the
//! kernel sees their requests.

use crate::cni::Plugin;

pub mod bandwidth;
pub mod bridge;
pub mod dummy;
pub mod flannel;
pub mod host_device;
pub mod host_local;
pub mod iface;
pub mod ipvlan;
pub mod loopback;
pub mod macvlan;
pub mod portmap;
pub mod ptp;
pub mod static_ipam;
pub mod tap;
pub mod vlan;
pub mod vlink;

/// Every plugin name the binary answers to (argv[0] or `cnibox <name>`).
pub static ALL: &[&Plugin] = &[
    &bandwidth::PLUGIN,
    &bridge::PLUGIN,
    &dummy::PLUGIN,
    &flannel::PLUGIN,
    &host_device::PLUGIN,
    &host_local::PLUGIN,
    &ipvlan::PLUGIN,
    &loopback::PLUGIN,
    &macvlan::PLUGIN,
    &portmap::PLUGIN,
    &ptp::PLUGIN,
    &static_ipam::PLUGIN,
    &tap::PLUGIN,
    &vlan::PLUGIN,
];

pub fn find(name: &str) -> Option<&'static Plugin> {
    ALL.iter().copied().find(|p| p.name == name)
}
