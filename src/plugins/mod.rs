//! The plugins: one module each, holding that plugin's verbs in the order the
//! kernel sees their requests.

use crate::cni::Plugin;

#[cfg(feature = "bandwidth")]
pub mod bandwidth;
#[cfg(feature = "bridge")]
pub mod bridge;
#[cfg(feature = "dhcp")]
pub mod dhcp;
#[cfg(feature = "dummy")]
pub mod dummy;
#[cfg(feature = "firewall")]
pub mod firewall;
#[cfg(feature = "flannel")]
pub mod flannel;
#[cfg(feature = "host-device")]
pub mod host_device;
#[cfg(feature = "host-local")]
pub mod host_local;
pub mod iface;
#[cfg(feature = "ipvlan")]
pub mod ipvlan;
#[cfg(feature = "loopback")]
pub mod loopback;
#[cfg(feature = "macvlan")]
pub mod macvlan;
#[cfg(feature = "portmap")]
pub mod portmap;
#[cfg(feature = "ptp")]
pub mod ptp;
#[cfg(feature = "sbr")]
pub mod sbr;
#[cfg(feature = "static")]
pub mod static_ipam;
#[cfg(feature = "tap")]
pub mod tap;
#[cfg(feature = "tuning")]
pub mod tuning;
#[cfg(feature = "vlan")]
pub mod vlan;
pub mod vlink;
#[cfg(feature = "vrf")]
pub mod vrf;

/// Every plugin name the binary answers to (argv[0] or `cnibox <name>`):
/// those of the cargo features it was built with (all by default).
pub static ALL: &[&Plugin] = &[
    #[cfg(feature = "bandwidth")]
    &bandwidth::PLUGIN,
    #[cfg(feature = "bridge")]
    &bridge::PLUGIN,
    #[cfg(feature = "dhcp")]
    &dhcp::PLUGIN,
    #[cfg(feature = "dummy")]
    &dummy::PLUGIN,
    #[cfg(feature = "firewall")]
    &firewall::PLUGIN,
    #[cfg(feature = "flannel")]
    &flannel::PLUGIN,
    #[cfg(feature = "host-device")]
    &host_device::PLUGIN,
    #[cfg(feature = "host-local")]
    &host_local::PLUGIN,
    #[cfg(feature = "ipvlan")]
    &ipvlan::PLUGIN,
    #[cfg(feature = "loopback")]
    &loopback::PLUGIN,
    #[cfg(feature = "macvlan")]
    &macvlan::PLUGIN,
    #[cfg(feature = "portmap")]
    &portmap::PLUGIN,
    #[cfg(feature = "ptp")]
    &ptp::PLUGIN,
    #[cfg(feature = "sbr")]
    &sbr::PLUGIN,
    #[cfg(feature = "static")]
    &static_ipam::PLUGIN,
    #[cfg(feature = "tap")]
    &tap::PLUGIN,
    #[cfg(feature = "tuning")]
    &tuning::PLUGIN,
    #[cfg(feature = "vlan")]
    &vlan::PLUGIN,
    #[cfg(feature = "vrf")]
    &vrf::PLUGIN,
];

pub fn find(name: &str) -> Option<&'static Plugin> {
    ALL.iter().copied().find(|p| p.name == name)
}
