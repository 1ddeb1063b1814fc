//! firewall, chained after bridge: per-container accept rules in cnibox's
//! nftables table (checked with `nft` and `nft -j`), the addresses in sets,
//! and bridge isolation and accept rules with real pings.

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

/// The first 16 hex digits of SHA-512, computed apart from cnibox.
fn h16(s: &str) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import hashlib,sys; print(hashlib.sha512(sys.argv[1].encode()).hexdigest()[:16])", s])
        .output()
        .expect("python3");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The rules' comment and the chain of attachment (network, ifname, container id).
fn attachment(net: &str, ifname: &str, id: &str) -> (String, String) {
    let key = format!("cni-fw {}-{}", h16(net), h16(&format!("{ifname}:{id}")));
    let chain = format!("cni-fw-{}", h16(&key));
    (key, chain)
}

/// `nft list table inet cni_firewall`, or "" when there is none.
fn fw_text(node: &Netns) -> String {
    String::from_utf8_lossy(&node.exec(&["nft", "list", "table", "inet", "cni_firewall"]).stdout).into_owned()
}

/// The rules of one chain of the table, as `nft` prints them; None when the chain does not exist.
fn chain_rules(node: &Netns, chain: &str) -> Option<Vec<String>> {
    let out = node.exec(&["nft", "list", "chain", "inet", "cni_firewall", chain]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let skip = |l: &str| l.is_empty() || l == "}" || l.starts_with("table ") || l.starts_with("chain ");
    Some(text.lines().map(str::trim).filter(|l| !skip(l)).map(String::from).collect())
}

/// The elements of a set of the table (as `nft -j` prints them); None when the set does not exist.
fn set_elems(node: &Netns, set: &str) -> Option<Vec<String>> {
    let out = node.exec(&["nft", "-j", "list", "set", "inet", "cni_firewall", set]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = v["nftables"].as_array().unwrap().iter().find_map(|i| i.get("set")).expect("a set").clone();
    Some(s["elem"].as_array().into_iter().flatten().map(|e| e.as_str().expect("an address").to_string()).collect())
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The names of the sets of the table.
fn set_names(node: &Netns) -> Vec<String> {
    let v = node.nft_json();
    let sets = v["nftables"].as_array().into_iter().flatten().filter_map(|i| i.get("set"));
    sets.filter(|s| s["table"] == "cni_firewall").map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// The two rules of a family's set, exactly as they are typed.
fn set_rules(ip: &str, set: &str, key: &str) -> [String; 2] {
    [
        format!("{ip} daddr @{set} ct state established,related accept comment \"{key}\""),
        format!("{ip} saddr @{set} accept comment \"{key}\""),
    ]
}

/// A prevResult (of a bridge that need not exist: ingressPolicy open) with `ips`.
fn synthetic(ips: &[&str]) -> Value {
    let ips: Vec<Value> = ips.iter().map(|a| json!({"address": a, "interface": 0})).collect();
    json!({"cniVersion": "1.0.0", "interfaces": [{"name": "fwbr0"}], "ips": ips})
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
    // Each attachment's accept rules are in a chain of its own, reached
    // from cni_forward, and its addresses in a set of its own.
    let (key, chain) = attachment("fwnet", "eth0", "ctr1");
    let set = format!("{chain}-4");
    assert_eq!(chain_rules(&node, &chain).unwrap(), set_rules("ip", &set, &key), "{}", fw_text(&node));
    assert_eq!(set_elems(&node, &set).unwrap(), [ip1.as_str()]);
    assert!(set_elems(&node, &format!("{chain}-6")).is_none(), "no IPv6 addresses, no IPv6 set");
    assert!(rules.iter().any(|(ch, e)| ch == "cni_forward" && e.contains("cni_admin")), "admin jump: {rules:?}");
    assert!(
        rules.iter().any(|(ch, e)| ch == "isolation_stage_2" && e.contains("cbrB") && e.contains("drop")),
        "{rules:?}"
    );
    assert!(!c1.ping(&ip2), "same-bridge policy isolates the two bridges");
    assert!(c1.ping("10.76.0.1"), "the gateway is still reachable");
    fw("CHECK", "ctr1", &c1, &f1).ok();

    fw("DEL", "ctr1", &c1, &f1).ok();
    assert!(!fw_text(&node).contains(&chain), "chain and set removed: {}", fw_text(&node));
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

/// firewall ADD, CHECK and DEL with 20,000 prevResult addresses: linear
/// work, so each needs well under the 5 s of CPU time allowed (quadratic
/// matching took minutes), and the set and rules are still exact. CPU time rather than wall
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
    // The addresses in one set; two rules look it up, and the jump to them.
    let (key, chain) = attachment("fwnet", "eth0", "big");
    let set = format!("{chain}-4");
    assert_eq!(set_elems(&node, &set).unwrap().len(), N as usize);
    assert_eq!(chain_rules(&node, &chain).unwrap(), set_rules("ip", &set, &key));
    assert_eq!(fw_text(&node).matches(&format!("comment \"{key}\"")).count(), 3);
    let limit = std::time::Duration::from_secs(5);
    let (cpu, code, out) = fw("CHECK");
    assert_eq!(code, 0, "{out}");
    assert!(cpu < limit, "CHECK of {N} addresses took {cpu:?} of CPU");
    // One address leaves the set: CHECK names it and the set.
    nft_cmd(&node, &["delete", "element", "inet", "cni_firewall", &set, "{", "10.100.78.31", "}"]);
    let (cpu, code, out) = fw("CHECK");
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let want = format!("firewall: 10.100.78.31 missing from set {set} in inet cni_firewall");
    assert_eq!(v["msg"], want.as_str(), "{v}");
    assert!(cpu < limit, "failing CHECK took {cpu:?} of CPU");
    // ADD again puts it back (the set is refilled, not added to).
    let (cpu, code, out) = fw("ADD");
    assert_eq!(code, 0, "{out}");
    assert!(cpu < limit, "ADD of {N} addresses took {cpu:?} of CPU");
    assert_eq!(set_elems(&node, &set).unwrap().len(), N as usize);
    assert_eq!(fw("CHECK").1, 0);
    let (cpu, code, out) = fw("DEL");
    assert_eq!(code, 0, "{out}");
    assert!(cpu < limit, "DEL of {N} addresses took {cpu:?} of CPU");
    let text = fw_text(&node);
    assert!(!text.contains("cni-fw"), "{text}");
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

fn dual_conf(tmp: &TempDir, br: &str, v4: &str, v6: &str) -> String {
    json!({"cniVersion":"1.0.0","name":"fwnet","type":"bridge","bridge":br,"isDefaultGateway":true,
           "ipam":{"type":"host-local","dataDir":tmp.join("ipam").to_string_lossy(),
                   "ranges":[[{"subnet":v4}],[{"subnet":v6}]]}})
    .to_string()
}

fn addr_of(r: &Value, i: usize) -> String {
    r["ips"][i]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// Dual stack, with real packets: the forward hook drops what the
/// attachment's rules do not accept, as under a FORWARD policy of DROP. Only
/// c1 has firewall rules: c1 reaches c2 (its saddr rule, and the daddr rule
/// for the replies), c2 cannot open a connection to c1; over IPv4 and IPv6.
#[test]
fn dual_stack_sets_accept_real_packets() {
    need_root!();
    let tmp = TempDir::new("fwds");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let a = dual_conf(&tmp, "cbrD1", "10.71.0.0/24", "fd71::/64");
    let b = dual_conf(&tmp, "cbrD2", "10.72.0.0/24", "fd72::/64");
    let r1 = Call::cni(&node, "bridge", "ADD", "ctr1", &c1.path(), "eth0", &path).run(&a).ok().json();
    let r2 = Call::cni(&node, "bridge", "ADD", "ctr2", &c2.path(), "eth0", &path).run(&b).ok().json();
    let (ip1, ip1v6, ip2, ip2v6) = (addr_of(&r1, 0), addr_of(&r1, 1), addr_of(&r2, 0), addr_of(&r2, 1));
    assert!(ip1v6.contains(':') && ip2v6.contains(':'), "{r1} {r2}");
    let fw = |cmd: &str, conf: &str| Call::cni(&node, "firewall", cmd, "ctr1", &c1.path(), "eth0", &path).run(conf);
    let f1 = fw_conf(&r1, "open");
    fw("ADD", &f1).ok();
    let (key, chain) = attachment("fwnet", "eth0", "ctr1");
    let (s4, s6) = (format!("{chain}-4"), format!("{chain}-6"));
    assert_eq!(set_elems(&node, &s4).unwrap(), [ip1.as_str()]);
    assert_eq!(set_elems(&node, &s6).unwrap(), [ip1v6.as_str()]);
    let mut want = set_rules("ip", &s4, &key).to_vec();
    want.extend(set_rules("ip6", &s6, &key));
    assert_eq!(chain_rules(&node, &chain).unwrap(), want);
    assert!(c2.ping(&ip1) && c2.ping(&ip1v6), "c2 -> c1 before anything is dropped");
    nft_cmd(&node, &["add", "rule", "inet", "cni_firewall", "forward", "drop"]);
    assert!(c1.ping(&ip2), "c1 -> c2 accepted by c1's rules");
    assert!(c1.ping(&ip2v6), "c1 -> c2 over IPv6 accepted by c1's rules");
    assert!(!c2.ping(&ip1), "c2 -> c1: a new connection to c1 is not accepted");
    assert!(!c2.ping(&ip1v6), "c2 -> c1 over IPv6: a new connection to c1 is not accepted");
    fw("CHECK", &f1).ok();

    // An element removed by hand: CHECK names the address and the set.
    nft_cmd(&node, &["delete", "element", "inet", "cni_firewall", &s6, "{", &ip1v6, "}"]);
    assert!(!c1.ping(&ip2v6), "without its element, c1's IPv6 traffic is dropped");
    let v = fw("CHECK", &f1).err(999);
    assert_eq!(v["msg"], format!("firewall: {ip1v6} missing from set {s6} in inet cni_firewall"));
    // A rule removed by hand: CHECK names it.
    let out = node.exec(&["nft", "-a", "list", "chain", "inet", "cni_firewall", &chain]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains("ip saddr @")).expect("the saddr rule");
    let handle = line.rsplit("handle ").next().unwrap().trim();
    nft_cmd(&node, &["delete", "rule", "inet", "cni_firewall", &chain, "handle", handle]);
    let v = fw("CHECK", &f1).err(999);
    assert_eq!(
        v["msg"],
        format!("firewall: no rule \"ip saddr @{s4} accept\" in inet cni_firewall {chain}"),
        "{}",
        fw_text(&node)
    );
    // The set deleted by hand (with its rules): CHECK says the addresses have no rules.
    nft_cmd(&node, &["flush", "chain", "inet", "cni_firewall", &chain]);
    nft_cmd(&node, &["delete", "set", "inet", "cni_firewall", &s4]);
    let v = fw("CHECK", &f1).err(999);
    assert_eq!(v["msg"], format!("firewall: missing accept rules for {ip1} in inet cni_firewall {chain}"));

    // ADD again repairs everything, and the forward chain is rewritten (the drop goes).
    fw("ADD", &f1).ok();
    fw("CHECK", &f1).ok();
    assert_eq!(chain_rules(&node, &chain).unwrap(), want);
    nft_cmd(&node, &["add", "rule", "inet", "cni_firewall", "forward", "drop"]);
    assert!(c1.ping(&ip2v6), "c1 -> c2 over IPv6 accepted again");

    // DEL: no chain, no set, and c1's traffic is dropped like anyone's.
    fw("DEL", &f1).ok();
    assert!(chain_rules(&node, &chain).is_none() && set_names(&node).is_empty(), "{}", fw_text(&node));
    assert!(!c1.ping(&ip2), "c1's rules are gone");
    fw("DEL", &f1).ok();
}

/// A second ADD of the same attachment with other addresses replaces them,
/// and a family that lost all its addresses loses its set.
#[test]
fn re_add_replaces_addresses_and_drops_empty_sets() {
    need_root!();
    let tmp = TempDir::new("fwre");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("c1");
    let fw = |cmd: &str, prev: &Value| {
        Call::cni(&node, "firewall", cmd, "ctr1", &ctr.path(), "eth0", &path).run(&fw_conf(prev, "open"))
    };
    let (key, chain) = attachment("fwnet", "eth0", "ctr1");
    let (s4, s6) = (format!("{chain}-4"), format!("{chain}-6"));
    let dual = synthetic(&["10.9.0.2/24", "10.9.0.3/24", "10.9.0.2/16", "fd09::2/64"]);
    fw("ADD", &dual).ok();
    assert_eq!(set_elems(&node, &s4).unwrap(), ["10.9.0.2", "10.9.0.3"], "one element per address");
    assert_eq!(set_elems(&node, &s6).unwrap(), ["fd09::2"]);
    fw("CHECK", &dual).ok();

    let v4 = synthetic(&["10.9.0.7/24"]);
    fw("ADD", &v4).ok();
    assert_eq!(set_elems(&node, &s4).unwrap(), ["10.9.0.7"]);
    assert!(set_elems(&node, &s6).is_none(), "{}", fw_text(&node));
    assert_eq!(chain_rules(&node, &chain).unwrap(), set_rules("ip", &s4, &key));
    fw("CHECK", &v4).ok();
    let v = fw("CHECK", &dual).err(999);
    assert_eq!(v["msg"], format!("firewall: 10.9.0.2 missing from set {s4} in inet cni_firewall"));

    let v6 = synthetic(&["fd09::7/64", "fd09::8/64"]);
    fw("ADD", &v6).ok();
    assert!(set_elems(&node, &s4).is_none(), "{}", fw_text(&node));
    assert_eq!(set_elems(&node, &s6).unwrap(), sorted(&["fd09::7", "fd09::8"]));
    assert_eq!(chain_rules(&node, &chain).unwrap(), set_rules("ip6", &s6, &key));
    fw("CHECK", &v6).ok();

    let none = synthetic(&[]);
    fw("ADD", &none).ok();
    assert!(set_names(&node).is_empty(), "{}", fw_text(&node));
    assert_eq!(chain_rules(&node, &chain).unwrap(), Vec::<String>::new());
    fw("CHECK", &none).ok();
    fw("ADD", &dual).ok();
    fw("DEL", &dual).ok();
    assert!(!fw_text(&node).contains("cni-fw"), "{}", fw_text(&node));
}

/// Nodes upgrade with live pods: a chain an older cnibox filled with a rule
/// per address (and, older still, such rules straight in cni_forward) is
/// checked and deleted by this one, and a second ADD moves it to sets.
#[test]
fn rules_of_an_older_cnibox_are_checked_and_deleted() {
    need_root!();
    let tmp = TempDir::new("fwup");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("c1");
    let prev = synthetic(&["10.8.0.2/24", "fd08::2/64"]);
    let conf = fw_conf(&prev, "open");
    let fw = |cmd: &str, id: &str| Call::cni(&node, "firewall", cmd, id, &ctr.path(), "eth0", &path).run(&conf);
    // The table and its fixed chains as cnibox makes them; then the
    // attachments' rules as an older cnibox wrote them.
    fw("ADD", "setup").ok();
    fw("DEL", "setup").ok();
    let old = |chain: &str, key: &str| {
        let c = format!("comment \"{key}\"");
        let t = ["inet", "cni_firewall", chain];
        for (ip, a) in [("ip", "10.8.0.2"), ("ip6", "fd08::2")] {
            let add = |rule: &str| {
                let cmd = format!("add rule {} {rule} {c}", t.join(" "));
                nft_cmd(&node, &cmd.split(' ').collect::<Vec<_>>());
            };
            add(&format!("{ip} daddr {a} ct state established,related accept"));
            add(&format!("{ip} saddr {a} accept"));
        }
    };
    let (k1, ch1) = attachment("fwnet", "eth0", "old1");
    nft_cmd(&node, &["add", "chain", "inet", "cni_firewall", &ch1]);
    old(&ch1, &k1);
    let jump = format!("add rule inet cni_firewall cni_forward jump {ch1} comment \"{k1}\"");
    nft_cmd(&node, &jump.split(' ').collect::<Vec<_>>());
    let (k2, _) = attachment("fwnet", "eth0", "old2");
    old("cni_forward", &k2);
    assert!(set_names(&node).is_empty());
    fw("CHECK", "old1").ok();
    fw("CHECK", "old2").ok();
    // One rule gone: CHECK names its address.
    let out = node.exec(&["nft", "-a", "list", "chain", "inet", "cni_firewall", &ch1]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains("ip6 saddr fd08::2")).expect("the rule");
    let handle = line.rsplit("handle ").next().unwrap().trim();
    nft_cmd(&node, &["delete", "rule", "inet", "cni_firewall", &ch1, "handle", handle]);
    let v = fw("CHECK", "old1").err(999);
    assert_eq!(v["msg"], format!("firewall: missing accept rules for fd08::2 in inet cni_firewall {ch1}"));

    // DEL of each removes its rules (and nothing else's).
    fw("DEL", "old2").ok();
    assert!(!fw_text(&node).contains(&k2), "{}", fw_text(&node));
    assert!(chain_rules(&node, &ch1).unwrap().len() == 3);
    fw("CHECK", "old2").err(999);
    // ADD over the old chain moves it to sets.
    fw("ADD", "old1").ok();
    let mut want = set_rules("ip", &format!("{ch1}-4"), &k1).to_vec();
    want.extend(set_rules("ip6", &format!("{ch1}-6"), &k1));
    assert_eq!(chain_rules(&node, &ch1).unwrap(), want);
    fw("CHECK", "old1").ok();
    fw("DEL", "old1").ok();
    assert!(!fw_text(&node).contains("cni-fw"), "{}", fw_text(&node));
}

/// GC removes the chains and sets of this network's attachments that are
/// not valid, and keeps the valid ones and other networks'.
#[test]
fn gc_removes_stale_chains_and_sets() {
    need_root!();
    let tmp = TempDir::new("fwgc");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("c1");
    let prev = synthetic(&["10.7.0.2/24", "fd07::2/64"]);
    let add = |net: &str, id: &str| {
        let conf = fw_conf(&prev, "open").replace("\"fwnet\"", &format!("\"{net}\""));
        Call::cni(&node, "firewall", "ADD", id, &ctr.path(), "eth0", &path).run(&conf).ok();
    };
    add("fwnet", "keep");
    add("fwnet", "stale");
    add("other", "stale");
    let gc = json!({"cniVersion": "1.1.0", "name": "fwnet", "type": "firewall",
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]});
    let mut c = Call::new(Some(&node), "firewall");
    c.set("CNI_COMMAND", "GC").set("CNI_PATH", &path);
    c.run(&gc.to_string()).ok();
    let chain = |net: &str, id: &str| attachment(net, "eth0", id).1;
    let mut want = Vec::new();
    for c in [chain("fwnet", "keep"), chain("other", "stale")] {
        want.extend([format!("{c}-4"), format!("{c}-6")]);
    }
    want.sort();
    let mut sets = set_names(&node);
    sets.sort();
    assert_eq!(sets, want, "{}", fw_text(&node));
    assert!(chain_rules(&node, &chain("fwnet", "stale")).is_none());
    assert_eq!(chain_rules(&node, &chain("fwnet", "keep")).unwrap().len(), 4);
    assert_eq!(chain_rules(&node, &chain("other", "stale")).unwrap().len(), 4);
}
