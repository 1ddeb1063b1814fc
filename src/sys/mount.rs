//! Mounts, as named network namespaces and `ip netns exec` need them: bind
//! mounts of namespace files, propagation changes, a fresh sysfs.
//!
//! Everything here takes `&CStr` and returns `io::Result` without allocating,
//! so that it may run between fork and exec.

use super::cvt;
use std::ffi::CStr;
use std::io::Result;
use std::ptr::null;

/// mount(2) without a data argument.
pub fn mount(src: &CStr, target: &CStr, fstype: &CStr, flags: libc::c_ulong) -> Result<()> {
    // SAFETY: three NUL-terminated strings borrowed for the call; no data argument.
    cvt(unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, null()) }).map(drop)
}

/// Change the propagation of `target` (MS_SHARED, MS_SLAVE, ... with or without MS_REC).
pub fn propagation(target: &CStr, flags: libc::c_ulong) -> Result<()> {
    mount(c"none", target, c"none", flags)
}

/// Bind `src` on `target` (MS_BIND, plus MS_REC if asked).
pub fn bind(src: &CStr, target: &CStr, flags: libc::c_ulong) -> Result<()> {
    mount(src, target, c"none", libc::MS_BIND | flags)
}

/// Lazy unmount (MNT_DETACH): the mount leaves the tree now; whoever still
/// uses it keeps it until done.
pub fn detach(target: &CStr) -> Result<()> {
    // SAFETY: a NUL-terminated string borrowed for the call.
    cvt(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// Whether the file system holding `path` is mounted read-only.
pub fn is_read_only(path: &CStr) -> Result<bool> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and an out-parameter of the right type.
    cvt(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs succeeded, so it filled the whole structure.
    let st = unsafe { st.assume_init() };
    Ok(st.f_flag & libc::ST_RDONLY != 0)
}
