//! TUN/TAP devices. They cannot be created by rtnetlink (the kernel refuses
//! "tun/tap creation via rtnetlink"), so this is the one place that uses the
//! /dev/net/tun ioctls. The device appears in the namespace of the caller.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TAP: i16 = 0x0002;
const IFF_VNET_HDR: i16 = 0x4000;
const IFF_MULTI_QUEUE: i16 = 0x0100;

/// Create a persistent tap device `name` owned by `owner`/`group` (when given).
pub fn create_tap(name: &str, multi_queue: bool, owner: Option<u32>, group: Option<u32>) -> Result<()> {
    if name.is_empty() || name.len() > 15 {
        return Err(Error::config(format!("invalid tap name \"{name}\"")));
    }
    // SAFETY: plain open of a device node.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("open /dev/net/tun"));
    }
    // SAFETY: fresh descriptor, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // struct ifreq: 16-byte name, then the flags short of the union.
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    let mut flags = IFF_TAP | IFF_VNET_HDR;
    if multi_queue {
        flags |= IFF_MULTI_QUEUE;
    }
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    let ioctl = |req: libc::c_ulong, arg: libc::c_ulong, what: &str| -> Result<()> {
        // SAFETY: the tun ioctls used here take an integer argument or the ifreq buffer above.
        if unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) } < 0 {
            return Err(Error::last_os(format_args!("{what} for tap {name}")));
        }
        Ok(())
    };
    ioctl(TUNSETIFF, ifr.as_mut_ptr() as libc::c_ulong, "TUNSETIFF")?;
    if let Some(uid) = owner {
        ioctl(TUNSETOWNER, uid as libc::c_ulong, "TUNSETOWNER")?;
    }
    if let Some(gid) = group {
        ioctl(TUNSETGROUP, gid as libc::c_ulong, "TUNSETGROUP")?;
    }
    ioctl(TUNSETPERSIST, 1, "TUNSETPERSIST")
}
