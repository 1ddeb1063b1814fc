//! `cnibox run`: a namespace, attached to a network, a command inside it;
//! when the command ends (also on Ctrl-C or SIGTERM, which are passed on to
//! it) the attachment is deleted and the namespace removed.

use super::chain::{self, Attachment};
use super::{conf, container_id, env, netns, Ctx, Opts};
use crate::error::{Error, Result};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::sync::atomic::{AtomicI32, Ordering};

static CHILD: AtomicI32 = AtomicI32::new(0);
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Pass the signal to the command; before it exists, remember it so that
/// setup is cut short and teardown still runs. A signal from the terminal
/// (Ctrl-C: si_code SI_KERNEL) already reached the command, which shares our
/// process group, so it is not sent a second time.
extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let from_tty = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    match CHILD.load(Ordering::SeqCst) {
        0 => PENDING.store(sig, Ordering::SeqCst),
        _ if from_tty => {}
        // SAFETY: kill is async-signal-safe.
        pid => unsafe {
            libc::kill(pid, sig);
        },
    }
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a handler that only does
        // async-signal-safe work; exec resets it to the default in the child.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Removes the namespace however `run` ends.
struct Named(String);

impl Drop for Named {
    fn drop(&mut self) {
        if let Err(e) = netns::del(&self.0) {
            eprintln!("cnibox run: {e}");
        }
    }
}

pub fn main(o: &Opts, ctx: &Ctx) -> Result<i32> {
    let list = match &o.network {
        Some(n) => conf::load(&env("NETCONFPATH", "/etc/cni/net.d"), n)?,
        None => conf::default_network(&ctx.rt.cache.dir.to_string_lossy())?,
    };
    catch_signals();
    let name = o.name.clone().unwrap_or_else(|| format!("cnibox-{}", std::process::id()));
    let path = netns::add(&name)?;
    let _named = Named(name.clone());
    let id = o.id.clone().unwrap_or_else(|| container_id(&path));
    let att: Attachment = ctx.attachment(id, path);
    let result = chain::add(&ctx.rt, &list, &att)?;
    let ips: Vec<String> = result.ips.iter().map(|ip| ip.address.to_string()).collect();
    eprintln!("cnibox run: netns {name}, network {}: {} {}", list.name, att.ifname, ips.join(" "));
    let code = match PENDING.load(Ordering::SeqCst) {
        0 => spawn(&name, &o.cmd),
        sig => Ok(128 + sig),
    };
    chain::del(&ctx.rt, Ok(&list), &list.name, &att)?;
    code
}

fn spawn(name: &str, cmd: &[String]) -> Result<i32> {
    let entry = netns::Entry::new(name)?;
    let mut c = std::process::Command::new(&cmd[0]);
    c.args(&cmd[1..]);
    // SAFETY: Entry::enter only makes system calls on data prepared before the fork.
    unsafe { c.pre_exec(move || entry.enter()) };
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            eprintln!("cnibox run: {}: {e}", cmd[0]);
            return Ok(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
    }
    let status =
        child.wait().map_err(|e| Error::os(format_args!("wait for {}", cmd[0]), e.raw_os_error().unwrap_or(0)))?;
    CHILD.store(0, Ordering::SeqCst);
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
