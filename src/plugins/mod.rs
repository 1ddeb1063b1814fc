//! The plugins: one module each, holding that plugin's verbs in the order the
//! kernel sees their requests.

use crate::cni::Plugin;

pub mod bandwidth;
pub mod bridge;
pub mod dhcp;
pub mod dummy;
pub mod firewall;
pub mod flannel;
pub mod host_device;
pub mod host_local;
pub mod iface;
pub mod ipvlan;
pub mod loopback;
pub mod macvlan;
pub mod portmap;
pub mod ptp;
pub mod sbr;
pub mod static_ipam;
pub mod tap;
pub mod tuning;
pub mod vlan;
pub mod vlink;
pub mod vrf;

/// Every plugin name the binary answers to (argv[0] or `cnibox <name>`).
pub static ALL: &[&Plugin] = &[
    &bandwidth::PLUGIN,
    &bridge::PLUGIN,
    &dhcp::PLUGIN,
    &dummy::PLUGIN,
    &firewall::PLUGIN,
    &flannel::PLUGIN,
    &host_device::PLUGIN,
    &host_local::PLUGIN,
    &ipvlan::PLUGIN,
    &loopback::PLUGIN,
    &macvlan::PLUGIN,
    &portmap::PLUGIN,
    &ptp::PLUGIN,
    &sbr::PLUGIN,
    &static_ipam::PLUGIN,
    &tap::PLUGIN,
    &tuning::PLUGIN,
    &vlan::PLUGIN,
    &vrf::PLUGIN,
];

pub fn find(name: &str) -> Option<&'static Plugin> {
    ALL.iter().copied().find(|p| p.name == name)
}
