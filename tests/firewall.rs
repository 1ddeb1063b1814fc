//! firewall, chained after bridge: per-container accept rules in cnibox's
//! nftables table (checked with `nft -j`), and bridge isolation with real pings.

mod common;
use common::*;
use serde_json::{json, Value};

fn bridge_conf(tmp: &TempDir, br: &str, subnet: &str) -> String {
    json!({"cniVersion":"1.0.0","name":"fwnet","type":"bridge","bridge":br,"isDefaultGateway":true,
           "ipam":{"type":"host-local","dataDir":tmp.join("ipam").to_string_lossy(),"ranges":[[{"subnet":subnet}]]}})
    .to_string()
}

fn fw_conf(prev: &Value, policy: &str) -> String {
    json!({"cniVersion":"1.0.0","name":"fwnet","type":"firewall","ingressPolicy":policy,"prevResult":prev}).to_string()
}

/// All rules of table inet cni_firewall as (chain, rendered expressions).
fn fw_rules(node: &Netns) -> Vec<(String, String)> {
    let v = node.nft_json();
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        if let Some(r) = item.get("rule") {
            if r["table"] == "cni_firewall" {
                out.push((r["chain"].as_str().unwrap_or("").to_string(), r["expr"].to_string()));
            }
        }
    }
    out
}

#[test]
fn accept_rules_and_bridge_isolation() {
    need_root!();
    let tmp = TempDir::new("fw");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let a = bridge_conf(&tmp, "cbrA", "10.76.0.0/24");
    let b = bridge_conf(&tmp, "cbrB", "10.78.0.0/24");
    let r1 = Call::cni(&node, "bridge", "ADD", "ctr1", &c1.path(), "eth0", &path).run(&a).ok().json();
    let r2 = Call::cni(&node, "bridge", "ADD", "ctr2", &c2.path(), "eth0", &path).run(&b).ok().json();
    let ip2 = r2["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(c1.ping(&ip2), "routed between bridges before any isolation");

    let fw = |cmd: &str, id: &str, ns: &Netns, conf: &str| {
        Call::cni(&node, "firewall", cmd, id, &ns.path(), "eth0", &path).run(conf)
    };
    let f1 = fw_conf(&r1, "same-bridge");
    let f2 = fw_conf(&r2, "same-bridge");
    let out = fw("ADD", "ctr1", &c1, &f1).ok().json();
    assert_eq!(out["ips"], r1["ips"], "prevResult passes through");
    fw("ADD", "ctr2", &c2, &f2).ok();
    let rules = fw_rules(&node);
    let ip1 = r1["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    // Each attachment's accept rules are in a chain of its own, reached from cni_forward.
    let per_ip: Vec<_> = rules.iter().filter(|(ch, e)| ch.starts_with("cni-fw-") && e.contains(&ip1)).collect();
    assert_eq!(per_ip.len(), 2, "two accept rules for {ip1}: {rules:?}");
    assert!(rules.iter().any(|(ch, e)| ch == "cni_forward" && e.contains("cni_admin")), "admin jump: {rules:?}");
    assert!(
        rules.iter().any(|(ch, e)| ch == "isolation_stage_2" && e.contains("cbrB") && e.contains("drop")),
        "{rules:?}"
    );
    assert!(!c1.ping(&ip2), "same-bridge policy isolates the two bridges");
    assert!(c1.ping("10.76.0.1"), "the gateway is still reachable");
    fw("CHECK", "ctr1", &c1, &f1).ok();

    fw("DEL", "ctr1", &c1, &f1).ok();
    let rules = fw_rules(&node);
    assert!(!rules.iter().any(|(_, e)| e.contains(&ip1)), "per-IP rules removed: {rules:?}");
    fw("CHECK", "ctr1", &c1, &f1).err(999);
    fw("DEL", "ctr1", &c1, &f1).ok();
    // Versions before 0.4.0 and firewalld are refused.
    let old = f1.replace("\"1.0.0\"", "\"0.3.1\"");
    fw("ADD", "ctr1", &c1, &old).err(1);
    let fwd = json!({"cniVersion":"1.0.0","name":"fwnet","type":"firewall","backend":"firewalld","prevResult":r1})
        .to_string();
    let v = fw("ADD", "ctr1", &c1, &fwd).err(2);
    assert_eq!(v["details"], "backend");
}

/// firewall CHECK and DEL with 20,000 prevResult addresses: linear work,
/// so each needs well under the 5 s of CPU time allowed (quadratic matching
/// took minutes), and the rules are still exact. CPU time rather than wall
/// time: this machine's load must not decide the outcome.
#[test]
fn twenty_thousand_addresses_check_and_delete_quickly() {
    need_root!();
    let tmp = TempDir::new("fwbig");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("c1");
    const N: u32 = 20_000;
    let ips: Vec<Value> = (0..N)
        .map(|i| json!({"address": format!("10.{}.{}.{}/8", 100 + i / 65_536, (i / 256) % 256, i % 256), "interface": 0}))
        .collect();
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "fwbr0"}], "ips": ips});
    let conf = fw_conf(&prev, "open");
    let fw = |cmd: &str| cpu_timed(&node, &format!("{path}/firewall"), cmd, &ctr, &path, &conf);
    let (_, code, out) = fw("ADD");
    assert_eq!(code, 0, "{out}");
    let count = |ip: &str| {
        let out = node.exec(&["nft", "list", "table", "inet", "cni_firewall"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.lines().filter(|l| l.contains("cni-fw ")).count(), text.matches(&format!(" {ip} ")).count())
    };
    // 2 rules per address, and the jump to them.
    assert_eq!(count("10.100.78.31"), (2 * N as usize + 1, 2));
    let limit = std::time::Duration::from_secs(5);
    let (cpu, code, out) = fw("CHECK");
    assert_eq!(code, 0, "{out}");
    assert!(cpu < limit, "CHECK of {N} addresses took {cpu:?} of CPU");
    // One address loses a rule: CHECK names it.
    let out = node.exec(&["nft", "-a", "list", "table", "inet", "cni_firewall"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut chain = "";
    let mut victim = None;
    for l in text.lines() {
        if let Some(c) = l.trim().strip_prefix("chain ") {
            chain = c.split_whitespace().next().unwrap_or("");
        } else if l.contains(" 10.100.78.31 ") && l.contains("saddr") {
            victim = Some((chain.to_string(), l.rsplit("handle ").next().unwrap().trim().to_string()));
        }
    }
    let (chain, handle) = victim.expect("the rule of 10.100.78.31");
    nft_cmd(&node, &["delete", "rule", "inet", "cni_firewall", &chain, "handle", &handle]);
    let (cpu, code, out) = fw("CHECK");
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["msg"].as_str().unwrap().contains("10.100.78.31"), "{v}");
    assert!(cpu < limit, "failing CHECK took {cpu:?} of CPU");
    let (cpu, code, out) = fw("DEL");
    assert_eq!(code, 0, "{out}");
    assert!(cpu < limit, "DEL of {N} addresses took {cpu:?} of CPU");
    assert_eq!(count("10.100.78.31"), (0, 0));
    assert!(!String::from_utf8_lossy(&node.exec(&["nft", "list", "table", "inet", "cni_firewall"]).stdout)
        .contains("cni-fw-"));
}

/// Run a plugin in `node` as a runtime does; its CPU time (user and
/// system, from wait4), exit code and stdout.
fn cpu_timed(
    node: &Netns,
    exe: &str,
    cmd: &str,
    ctr: &Netns,
    path: &str,
    stdin: &str,
) -> (std::time::Duration, i32, String) {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &node.name, exe]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CNI_")) {
        c.env_remove(k);
    }
    c.envs([
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "big"),
        ("CNI_NETNS", &ctr.path()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", path),
    ]);
    // Reaped by wait4 below, which also reports its CPU time.
    #[allow(clippy::zombie_processes)]
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32);
    let tv = |t: libc::timeval| std::time::Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (tv(ru.ru_utime) + tv(ru.ru_stime), code, reader.join().unwrap())
}

fn nft_cmd(ns: &Netns, args: &[&str]) {
    let mut argv = vec!["nft"];
    argv.extend_from_slice(args);
    let out = ns.exec(&argv);
    assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
