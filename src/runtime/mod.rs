//! The runtime side (cnitool-like): network namespaces, config lists,
//! chaining, result cache. Placeholder.

use crate::cni::Plugin;

/// `cnibox <cmd> ...` for the runtime commands (netns, add, check, del, gc, status, run).
pub fn main(cmd: &str, _args: &[String]) -> i32 {
    eprintln!("cnibox {cmd}: not implemented yet");
    2
}

/// `bridge add <containerid> <netns-path>` with no CNI_* environment.
pub fn short_form(p: &'static Plugin, _args: &[String]) -> i32 {
    eprintln!("{}: the short form is not implemented yet", p.name);
    2
}

/// Runtime commands `cnibox` answers to besides plugin names.
pub const COMMANDS: &[&str] = &["netns", "add", "check", "del", "gc", "status", "run"];
