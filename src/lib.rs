//! cnibox: Container Network Interface plugins in one static binary.
//!
//! The library holds every layer; `main.rs` only dispatches. It is a library
//! so that fuzz targets and the benchmark can reach the parsers directly.
//!
//! Layers, each using only the ones below it (ARCHITECTURE.md has the picture
//! and the rule of each):
//! plugins, runtime → cni, ipam, dhcp, nft, rtnl → netlink, sys → error, net, sha512.
//! `unsafe` belongs in `sys` only, behind typed owning wrappers.

// A build with only some plugins (cargo features) leaves shared code unused.
#![cfg_attr(not(feature = "all"), allow(dead_code, unused_imports))]
// `sys` is the one module allowed to say `unsafe`; the compiler holds the rest to it.
#![deny(unsafe_code)]

pub mod cni;
pub mod dhcp;
pub mod error;
pub mod failpoint;
pub mod ipam;
pub mod json;
pub mod net;
pub mod netlink;
pub mod nft;
pub mod plugins;
pub mod regex;
pub mod rtnl;
pub mod runtime;
pub mod sha512;
pub mod sort;
#[allow(unsafe_code)]
pub mod sys;
