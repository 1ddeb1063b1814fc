//! cnibox: Container Network Interface plugins in one static binary.
//!
//! The binary is chosen as a plugin by `basename(argv[0])` (symlinks `bridge`,
//! `host-local`, ... pointing at it) or as `cnibox <plugin>`; or runs one of
//! the runtime commands (`cnibox add`, `cnibox netns`, ...).

// Without the runtime and dhcp features, the arguments after a plugin name go unused.
#![cfg_attr(not(feature = "all"), allow(unused_variables))]
#![deny(unsafe_code)]

#[cfg(feature = "runtime")]
use cnibox::runtime;
use cnibox::{cni, plugins};

use std::io::Write;

/// Plugin calls allocate from a static block (see `sys::arena`): no mapping
/// per short-lived allocation.
#[global_allocator]
static ALLOC: cnibox::sys::arena::Arena<{ 1 << 20 }> = cnibox::sys::arena::Arena::new();

const RUNTIME_USAGE: &str = "\x20      cnibox netns add|del|list|exec NAME [-- CMD...]\n\
     \x20      cnibox add|check|del NETWORK NETNS | gc|status NETWORK   (cnitool-compatible; -i IFNAME --id ID --cache-dir DIR)\n\
     \x20      cnibox run [--network NAME] [--name NETNS] [--] CMD...\n\
     \x20      <plugin> add|check|del CONTAINERID NETNS [--config FILE]\n";
const DHCP_USAGE: &str =
    "\x20      cnibox dhcp daemon [-socketpath P] [-pidfile P] [-broadcast] [-timeout D] [-resendmax D]\n";

fn usage() -> String {
    let names: Vec<&str> = plugins::ALL.iter().map(|p| p.name).collect();
    format!(
        "cnibox {} ({}): CNI plugins in one binary\n\n\
         usage: <plugin>               run as a CNI plugin (argv[0] = plugin name, CNI_* in the environment)\n\
         \x20      cnibox <plugin>        the same, naming the plugin explicitly\n\
         {}{}\x20      cnibox --version | --help\n\n\
         plugins: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CNIBOX_COMMIT"),
        if cfg!(feature = "runtime") { RUNTIME_USAGE } else { "" },
        if cfg!(feature = "dhcp") { DHCP_USAGE } else { "" },
        names.join(" ")
    )
}

fn main() {
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let argv0 = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    let (applet, rest) = if plugins::find(&argv0).is_some() {
        (argv0.as_str(), &argv[1.min(argv.len())..])
    } else {
        match argv.get(1) {
            Some(a) => (a.as_str(), &argv[2..]),
            None => ("--help", &argv[0..0]),
        }
    };
    cni::delegate::set_builtins(plugins::find);
    let code = match applet {
        "--help" | "-h" | "help" => {
            print!("{}", usage());
            0
        }
        "--version" | "-V" | "version" => {
            println!("cnibox {} ({}, {})", env!("CARGO_PKG_VERSION"), env!("CNIBOX_COMMIT"), env!("CNIBOX_BUILD"));
            0
        }
        #[cfg(feature = "runtime")]
        cmd if runtime::COMMANDS.contains(&cmd) => runtime::main(cmd, rest),
        name => match plugins::find(name) {
            #[cfg(feature = "dhcp")]
            Some(p) if p.name == "dhcp" && rest.first().map(String::as_str) == Some("daemon") => {
                cnibox::dhcp::daemon::main(&rest[1..])
            }
            // A plugin given arguments (`bridge add <id> <netns>`) is the short form.
            #[cfg(feature = "runtime")]
            Some(p) if !rest.is_empty() && std::env::var_os("CNI_COMMAND").is_none() => runtime::short_form(p, rest),
            Some(p) => {
                cni::delegate::set_running(p.name);
                let mut out = std::io::stdout().lock();
                let rc = cni::skel::main(p, &cni::skel::ProcessEnv, &mut std::io::stdin().lock(), &mut out);
                let _ = out.flush();
                rc
            }
            None => {
                eprint!("cnibox: unknown plugin or command \"{name}\"\n\n{}", usage());
                2
            }
        },
    };
    std::process::exit(code);
}
