//! Every plugin's configuration, through the entry a runtime drives
//! (`cni::skel::main`: env validation, config, version, the verb), inside
//! the sandbox of `cnibox_fuzz::sandbox`.
//!
//! Input: a header line `<plugin> <COMMAND> <netns> [<CNI_ARGS>]`, then the
//! configuration. An unknown plugin or command word still picks one (by its
//! bytes), so that mutations of the header keep exercising something.
//! `<netns>` picks CNI_NETNS from a fixed list: none of them is a namespace
//! a plugin may change (missing, our own, not a namespace at all).

#![no_main]

use cnibox::cni::skel::{self, Command};
use cnibox::plugins;
use cnibox_fuzz::{reset, sandbox, MapEnv, CNI_PATH};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

const COMMANDS: [&str; 6] = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"];
const NETNS: [&str; 6] =
    ["/nonexistent/netns", "", "/proc/self/ns/net", "/tmp", "/proc/self/ns/mnt", "/proc/self/status"];

fn pick<'a>(list: &[&'a str], word: &str) -> &'a str {
    list.iter()
        .find(|c| **c == word)
        .copied()
        .unwrap_or_else(|| list[word.bytes().map(usize::from).sum::<usize>() % list.len()])
}

static RUNS: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    sandbox();
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..split]);
    let config = data.get(split + 1..).unwrap_or(&[]);
    let mut words = header.split(' ');
    let name = words.next().unwrap_or("");
    let plugin = plugins::find(name)
        .unwrap_or_else(|| plugins::ALL[name.bytes().map(usize::from).sum::<usize>() % plugins::ALL.len()]);
    let cmd = pick(&COMMANDS, words.next().unwrap_or(""));
    assert!(Command::parse(cmd).is_some());
    let netns = NETNS[words.next().and_then(|w| w.parse::<usize>().ok()).unwrap_or(0) % NETNS.len()];
    let args = words.next().unwrap_or("").replace('\0', "");
    let env = MapEnv(HashMap::from([
        ("CNI_COMMAND", cmd.to_string()),
        ("CNI_CONTAINERID", "fuzz-ctr".to_string()),
        ("CNI_NETNS", netns.to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", CNI_PATH.to_string()),
        ("CNI_ARGS", args),
    ]));
    let mut out = Vec::new();
    let rc = skel::main(plugin, &env, &mut &config[..], &mut out);
    // Whatever happened, the answer is one JSON document: a result, a version, or an error with a code and a message.
    if !out.is_empty() {
        let v: serde_json::Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{} printed no JSON ({e}): {:?}", plugin.name, String::from_utf8_lossy(&out)));
        if rc != 0 {
            assert!(v["code"].as_u64().is_some_and(|c| c > 0), "error without a code: {v}");
            assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "error without a message: {v}");
        }
    } else {
        assert!(
            rc == 0 && matches!(cmd, "DEL" | "CHECK" | "GC" | "STATUS"),
            "{} {cmd}: rc {rc} and nothing printed",
            plugin.name
        );
    }
    reset(RUNS.fetch_add(1, Ordering::Relaxed));
});
