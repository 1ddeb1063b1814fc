//! `cnibox run`: a namespace, attached to a network, a command inside it;
//! when the command ends (also on Ctrl-C or SIGTERM, which are passed on to
//! it) the attachment is deleted and the namespace removed.

use super::chain::{self, Attachment};
use super::{conf, container_id, env, netns, Ctx, Opts};
use crate::error::Result;
use crate::sys::{os_err, process};

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
    // Ctrl-C or SIGTERM before the command exists cuts setup short, and
    // teardown still runs; once it exists, they are passed on to it.
    process::forward_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]).map_err(|e| os_err("catch signals", e))?;
    let name = o.name.clone().unwrap_or_else(|| format!("cnibox-{}", std::process::id()));
    let path = netns::add(&name)?;
    let _named = Named(name.clone());
    let id = o.id.clone().unwrap_or_else(|| container_id(&path));
    let att: Attachment = ctx.attachment(id, path);
    let result = chain::add(&ctx.rt, &list, &att)?;
    let ips: Vec<String> = result.ips.iter().map(|ip| ip.address.to_string()).collect();
    eprintln!("cnibox run: netns {name}, network {}: {} {}", list.name, att.ifname, ips.join(" "));
    let code = match process::pending() {
        0 => spawn(&name, &o.cmd),
        sig => Ok(128 + sig),
    };
    chain::del(&ctx.rt, Ok(&list), &list.name, &att)?;
    code
}

fn spawn(name: &str, cmd: &[String]) -> Result<i32> {
    let entry = netns::exec_entry(name)?;
    let mut child = match entry.spawn(&netns::argv(cmd)?) {
        Ok(ch) => ch,
        Err(e) => {
            eprintln!("cnibox run: {}: {e}", cmd[0]);
            return Ok(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
        }
    };
    process::forward_to(Some(&child));
    let status = child.reap().map_err(|e| os_err(format_args!("wait for {}", cmd[0]), e));
    process::forward_to(None);
    Ok(status?.code())
}
