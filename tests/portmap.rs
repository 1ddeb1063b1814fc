//! portmap, run as a runtime chains it, against real namespaces and real
//! traffic: a "node" namespace where the plugin runs, containers wired to it
//! by veth pairs (what an interface plugin would have made), and an
//! "outside" namespace that reaches the node's address.
//!
//! ```text
//!  outside 192.168.77.2 ── vo0 192.168.77.1 [node] vc1 10.88.1.1 ── c1 10.88.1.5
//!          fd77::2             fd77::1              fd88:1::1         fd88:1::5
//!                                                  vc2 10.88.2.1 ── c2 10.88.2.5
//! ```

#[path = "nft_support/mod.rs"]
mod support;
use serde_json::{json, Value};
use support::common;
use support::*;

struct Env {
    _tmp: TempDir,
    path: String,
    node: Netns,
    outside: Netns,
    ctrs: Vec<Netns>,
}

impl Env {
    /// The node, the outside and `n` containers, wired as drawn above.
    fn new(n: usize) -> Env {
        let tmp = TempDir::new("pm");
        let path = plugin_dir(&tmp);
        let node = Netns::new("node");
        let outside = Netns::new("out");
        veth(&node, "vo0", &["192.168.77.1/24", "fd77::1/64"], &outside, "eth0", &["192.168.77.2/24", "fd77::2/64"]);
        forwarding(&node);
        let mut ctrs = Vec::new();
        for i in 1..=n {
            let c = Netns::new(&format!("c{i}"));
            veth(
                &node,
                &format!("vc{i}"),
                &[&format!("10.88.{i}.1/24"), &format!("fd88:{i}::1/64")],
                &c,
                "eth0",
                &[&format!("10.88.{i}.5/24"), &format!("fd88:{i}::5/64")],
            );
            c.sh(&["route", "add", "default", "via", &format!("10.88.{i}.1")]);
            c.sh(&["-6", "route", "add", "default", "via", &format!("fd88:{i}::1")]);
            ctrs.push(c);
        }
        Env { _tmp: tmp, path, node, outside, ctrs }
    }

    /// The prevResult an interface plugin would have given for container `i` (1-based).
    fn prev(&self, i: usize) -> Value {
        json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": format!("vc{i}")}, {"name": "eth0", "sandbox": self.ctrs[i - 1].path()}],
            "ips": [{"address": format!("10.88.{i}.5/24"), "interface": 1}, {"address": format!("fd88:{i}::5/64"), "interface": 1}]})
    }

    /// A chained portmap config for container `i` with `mappings` and extra top-level fields.
    fn conf(&self, version: &str, i: usize, mappings: Value, extra: Value) -> String {
        let mut c = json!({"cniVersion": version, "name": "pmnet", "type": "portmap",
            "runtimeConfig": {"portMappings": mappings}, "prevResult": self.prev(i)});
        for (k, v) in extra.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        c.to_string()
    }

    fn call(&self, cmd: &str, id: &str, i: usize) -> Call<'_> {
        Call::cni(&self.node, "portmap", cmd, id, &self.ctrs[i - 1].path(), "eth0", &self.path)
    }

    /// The comments of the node's rules in the portmap tables.
    fn portmap_rules(&self, id: &str) -> Vec<(String, String)> {
        rules(&self.node).into_iter().filter(|r| r.1 == "cni_hostport" && r.3 == id).map(|r| (r.0, r.2)).collect()
    }
}

fn tcp_udp(host: u16, ctr: u16) -> Value {
    json!([{"hostPort": host, "containerPort": ctr, "protocol": "tcp"}, {"hostPort": host, "containerPort": ctr, "protocol": "udp"}])
}

#[test]
fn tcp_and_udp_reach_the_container_from_outside_localhost_and_itself() {
    need_root!();
    let e = Env::new(1);
    let (node, outside, c1) = (&e.node, &e.outside, &e.ctrs[0]);
    let _srv = serve(c1, "c1", 80);
    let conf = e.conf("1.0.0", 1, tcp_udp(8080, 80), json!({}));

    // Before ADD nothing listens on the node's port.
    assert_eq!(talk(outside, "tcp", "192.168.77.1", 8080), None);

    let out = e.call("ADD", "ctr-a", 1).run(&conf).ok().json();
    assert_eq!(out, e.prev(1), "portmap passes the prevResult through");

    // Rules, read back by nft itself: one DNAT per mapping and family, the
    // hairpin masquerade per family and the localhost one for IPv4.
    let mut r = e.portmap_rules("ctr-a");
    r.sort();
    let want: Vec<(String, String)> = [
        ("ip", "hostports"),
        ("ip", "hostports"),
        ("ip", "masquerading"),
        ("ip", "masquerading"),
        ("ip6", "hostports"),
        ("ip6", "hostports"),
        ("ip6", "masquerading"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(r, want, "{}", ruleset_text(node));
    let text = ruleset_text(node);
    for line in [
        "tcp dport 8080 dnat to 10.88.1.5:80 comment \"ctr-a\"",
        "udp dport 8080 dnat to 10.88.1.5:80 comment \"ctr-a\"",
        "tcp dport 8080 dnat to [fd88:1::5]:80 comment \"ctr-a\"",
        "ip saddr 10.88.1.5 ip daddr 10.88.1.5 masquerade comment \"ctr-a\"",
        "ip saddr 127.0.0.1 ip daddr 10.88.1.5 masquerade comment \"ctr-a\"",
        "fib daddr type local jump hostports_all",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }

    // From another namespace: the container sees the real client.
    assert_eq!(talk(outside, "tcp", "192.168.77.1", 8080).as_deref(), Some("c1 192.168.77.2"));
    assert_eq!(talk(outside, "udp", "192.168.77.1", 8080).as_deref(), Some("c1 192.168.77.2"));
    assert_eq!(talk(outside, "tcp", "fd77::1", 8080).as_deref(), Some("c1 fd77::2"));
    assert_eq!(talk(outside, "udp", "fd77::1", 8080).as_deref(), Some("c1 fd77::2"));
    // From the node itself, to its own address and to localhost (masqueraded,
    // which needs route_localnet on the interface towards the container).
    assert_eq!(talk(node, "tcp", "192.168.77.1", 8080).as_deref(), Some("c1 192.168.77.1"));
    assert_eq!(talk(node, "tcp", "127.0.0.1", 8080).as_deref(), Some("c1 10.88.1.1"));
    assert_eq!(talk(node, "udp", "127.0.0.1", 8080).as_deref(), Some("c1 10.88.1.1"));
    assert_eq!(node.sysctl("net.ipv4.conf.vc1.route_localnet"), "1");
    assert_eq!(node.sysctl("net.ipv4.conf.vo0.route_localnet"), "0", "only where the reference sets it");
    // From the container to the node's port (hairpin): masqueraded, or the
    // answer would bypass the NAT.
    assert_eq!(talk(c1, "tcp", "192.168.77.1", 8080).as_deref(), Some("c1 10.88.1.1"));
    assert_eq!(talk(c1, "udp", "192.168.77.1", 8080).as_deref(), Some("c1 10.88.1.1"));
    assert_eq!(talk(c1, "tcp", "fd77::1", 8080).as_deref(), Some("c1 fd88:1::1"));
    // Only local destinations are intercepted: the outside's own port 8080 is not the container's.
    assert_eq!(talk(c1, "tcp", "192.168.77.2", 8080), None);

    e.call("CHECK", "ctr-a", 1).run(&conf).ok();

    e.call("DEL", "ctr-a", 1).run(&conf).ok();
    assert!(e.portmap_rules("ctr-a").is_empty(), "{}", ruleset_text(node));
    assert_eq!(talk(outside, "tcp", "192.168.77.1", 8080), None);
    assert_eq!(talk(node, "tcp", "127.0.0.1", 8080), None);
    let err = e.call("CHECK", "ctr-a", 1).run(&conf).err(999);
    assert!(err["msg"].as_str().unwrap().contains("no rule for host port 8080"), "{err}");
    // DEL is idempotent, also without netns and without mappings.
    e.call("DEL", "ctr-a", 1).run(&conf).ok();
    let mut c = e.call("DEL", "ctr-a", 1);
    c.set("CNI_NETNS", "");
    c.run(&e.conf("1.0.0", 1, json!([]), json!({}))).ok();
}

#[test]
fn host_ip_forwards_only_that_address() {
    need_root!();
    let e = Env::new(1);
    e.node.sh(&["addr", "add", "192.168.77.11/24", "dev", "vo0"]);
    let _srv = serve(&e.ctrs[0], "c1", 80);
    let maps = json!([{"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": "192.168.77.11"},
                      {"hostPort": 8082, "containerPort": 80, "protocol": "tcp", "hostIP": "fd77::1"}]);
    let conf = e.conf("1.0.0", 1, maps, json!({}));
    e.call("ADD", "ctr-h", 1).run(&conf).ok();
    assert!(ruleset_text(&e.node).contains("ip daddr 192.168.77.11 tcp dport 8081 dnat to 10.88.1.5:80"));
    assert_eq!(talk(&e.outside, "tcp", "192.168.77.11", 8081).as_deref(), Some("c1 192.168.77.2"));
    assert_eq!(talk(&e.outside, "tcp", "192.168.77.1", 8081), None);
    // each host IP maps only in its own family
    assert_eq!(talk(&e.outside, "tcp", "fd77::1", 8082).as_deref(), Some("c1 fd77::2"));
    assert_eq!(talk(&e.outside, "tcp", "fd77::1", 8081), None);
    assert_eq!(talk(&e.outside, "tcp", "192.168.77.1", 8082), None);
    e.call("CHECK", "ctr-h", 1).run(&conf).ok();
    e.call("DEL", "ctr-h", 1).run(&conf).ok();
    assert_eq!(talk(&e.outside, "tcp", "192.168.77.11", 8081), None);
}

#[test]
fn stale_udp_conntrack_entries_are_deleted_when_a_port_moves() {
    need_root!();
    let e = Env::new(2);
    let _s1 = serve(&e.ctrs[0], "c1", 80);
    let _s2 = serve(&e.ctrs[1], "c2", 80);
    let maps = json!([{"hostPort": 8053, "containerPort": 80, "protocol": "udp"}]);
    let c1 = e.conf("1.0.0", 1, maps.clone(), json!({}));
    e.call("ADD", "ctr-1", 1).run(&c1).ok();
    // One UDP "connection" from a fixed source port reaches c1 and leaves a conntrack entry.
    assert_eq!(talk_from(&e.outside, "udp", "192.168.77.1", 8053, 40123).as_deref(), Some("c1 192.168.77.2"));
    // The port moves to c2. Without deleting the entry, the flow would keep
    // going to c1 (which still answers) until the entry times out.
    e.call("DEL", "ctr-1", 1).run(&c1).ok();
    let c2 = e.conf("1.0.0", 2, maps, json!({}));
    e.call("ADD", "ctr-2", 2).run(&c2).ok();
    assert_eq!(talk_from(&e.outside, "udp", "192.168.77.1", 8053, 40123).as_deref(), Some("c2 192.168.77.2"));
    e.call("DEL", "ctr-2", 2).run(&c2).ok();
}

#[test]
fn snat_off_and_masq_all() {
    need_root!();
    let e = Env::new(1);
    let _srv = serve(&e.ctrs[0], "c1", 80);
    let maps = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    // snat:false: no masquerade rules, no route_localnet; outside traffic still maps.
    let conf = e.conf("0.4.0", 1, maps.clone(), json!({"snat": false}));
    e.call("ADD", "ctr-s", 1).run(&conf).ok();
    let r = e.portmap_rules("ctr-s");
    assert!(r.iter().all(|(_, chain)| chain == "hostports") && r.len() == 2, "{r:?}");
    assert_eq!(e.node.sysctl("net.ipv4.conf.vc1.route_localnet"), "0");
    assert_eq!(talk(&e.outside, "tcp", "192.168.77.1", 8080).as_deref(), Some("c1 192.168.77.2"));
    e.call("CHECK", "ctr-s", 1).run(&conf).ok();
    e.call("DEL", "ctr-s", 1).run(&conf).ok();
    // masqAll: every mapped connection is masqueraded, one rule per family, no localhost rule.
    let conf = e.conf("1.0.0", 1, maps, json!({"masqAll": true}));
    e.call("ADD", "ctr-m", 1).run(&conf).ok();
    let text = ruleset_text(&e.node);
    assert!(text.contains("ip saddr 0.0.0.0/0 ip daddr 10.88.1.5 masquerade comment \"ctr-m\""), "{text}");
    assert!(text.contains("ip6 saddr ::/0 ip6 daddr fd88:1::5 masquerade comment \"ctr-m\""), "{text}");
    assert!(!text.contains("ip saddr 127.0.0.1"), "{text}");
    assert_eq!(talk(&e.outside, "tcp", "192.168.77.1", 8080).as_deref(), Some("c1 10.88.1.1"));
    e.call("CHECK", "ctr-m", 1).run(&conf).ok();
    e.call("DEL", "ctr-m", 1).run(&conf).ok();
    assert!(e.portmap_rules("ctr-m").is_empty());
}

#[test]
fn repeated_add_replaces_and_gc_removes_stale_containers() {
    need_root!();
    let e = Env::new(2);
    let m1 = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let m2 = json!([{"hostPort": 9090, "containerPort": 80, "protocol": "tcp"}]);
    e.call("ADD", "ctr-1", 1).run(&e.conf("1.1.0", 1, m1.clone(), json!({}))).ok();
    e.call("ADD", "ctr-1", 1).run(&e.conf("1.1.0", 1, m1, json!({}))).ok();
    assert_eq!(e.portmap_rules("ctr-1").len(), 5, "a second ADD does not duplicate: {}", ruleset_text(&e.node));
    e.call("ADD", "ctr-2", 2).run(&e.conf("1.1.0", 2, m2, json!({}))).ok();
    assert_eq!(e.portmap_rules("ctr-2").len(), 5);

    let gc = json!({"cniVersion": "1.1.0", "name": "pmnet", "type": "portmap",
        "cni.dev/valid-attachments": [{"containerID": "ctr-2", "ifname": "eth0"}]});
    let mut c = Call::new(Some(&e.node), "portmap");
    c.set("CNI_COMMAND", "GC").set("CNI_PATH", &e.path);
    c.run(&gc.to_string()).ok();
    assert!(e.portmap_rules("ctr-1").is_empty(), "{}", ruleset_text(&e.node));
    assert_eq!(e.portmap_rules("ctr-2").len(), 5);
}

/// GC is per network: GC of netA (with netA's valid attachments, as the
/// runtime's `cnibox gc netA` calls it) removes netA's stale mappings and
/// leaves netB's live ones working, although portmap's rules are commented
/// with the bare container id only (the reference's layout).
#[test]
fn gc_of_one_network_leaves_another_networks_mappings() {
    need_root!();
    let e = Env::new(2);
    let _srv = serve(&e.ctrs[1], "c2", 80);
    let a = |i: usize, port: u16| {
        e.conf("1.1.0", i, json!([{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]), json!({"name": "netA"}))
    };
    let b = e.conf(
        "1.1.0",
        2,
        json!([{"hostPort": 9092, "containerPort": 80, "protocol": "tcp"}]),
        json!({"name": "netB"}),
    );
    e.call("ADD", "ctr-a", 1).run(&a(1, 9091)).ok();
    e.call("ADD", "ctr-b", 2).run(&b).ok();
    assert_eq!(talk(&e.outside, "tcp", "192.168.77.1", 9092).as_deref(), Some("c2 192.168.77.2"));
    let gc = |net: &str, valid: Value| {
        let conf = json!({"cniVersion": "1.1.0", "name": net, "type": "portmap", "cni.dev/valid-attachments": valid});
        let mut c = Call::new(Some(&e.node), "portmap");
        c.set("CNI_COMMAND", "GC").set("CNI_PATH", &e.path);
        c.run(&conf.to_string()).ok();
    };
    // netA still has ctr-a: nothing goes.
    gc("netA", json!([{"containerID": "ctr-a", "ifname": "eth0"}]));
    assert_eq!(e.portmap_rules("ctr-a").len(), 5, "{}", ruleset_text(&e.node));
    assert_eq!(e.portmap_rules("ctr-b").len(), 5, "{}", ruleset_text(&e.node));
    // netA has nothing left: its mappings go, netB's stay and still carry traffic.
    gc("netA", json!([]));
    assert!(e.portmap_rules("ctr-a").is_empty(), "{}", ruleset_text(&e.node));
    assert_eq!(e.portmap_rules("ctr-b").len(), 5, "netB's mappings survive GC of netA: {}", ruleset_text(&e.node));
    assert_eq!(talk(&e.outside, "tcp", "192.168.77.1", 9092).as_deref(), Some("c2 192.168.77.2"));
    // The comments are still the bare container id, and the record does not show in nft's listing.
    let text = ruleset_text(&e.node);
    assert!(text.contains("dnat to 10.88.2.5:80 comment \"ctr-b\"\n"), "{text}");
    // Rules written without a record (the reference's) are not GC's to guess about.
    nft_apply(&e.node, "add rule ip cni_hostport hostports tcp dport 9093 dnat to 10.88.1.5:80 comment \"ctr-ref\"\n");
    gc("netB", json!([]));
    assert!(e.portmap_rules("ctr-b").is_empty(), "{}", ruleset_text(&e.node));
    assert_eq!(e.portmap_rules("ctr-ref").len(), 1, "{}", ruleset_text(&e.node));
    // and DEL by container id still removes every rule of it, recorded or not
    e.call("DEL", "ctr-ref", 1).run(&a(1, 9091)).ok();
    assert!(e.portmap_rules("ctr-ref").is_empty());
}

#[test]
fn config_errors_name_the_field_and_change_nothing() {
    need_root!();
    let e = Env::new(1);
    let maps = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    for (extra, field, code) in [
        (json!({"backend": "iptables"}), "backend", 2),
        (json!({"markMasqBit": 13}), "markMasqBit", 2),
        (json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}), "externalSetMarkChain", 2),
        (json!({"conditionsV4": ["-s", "1.2.3.4"]}), "conditionsV4", 2),
        (json!({"backend": "bpf"}), "backend", 7),
        (json!({"snat": "yes"}), "snat", 7),
    ] {
        let v = e.call("ADD", "ctr-x", 1).run(&e.conf("1.0.0", 1, maps.clone(), extra)).err(code);
        assert!(v["msg"].as_str().unwrap().contains(field), "{v}");
    }
    let v = e
        .call("ADD", "ctr-x", 1)
        .run(&e.conf("1.0.0", 1, json!([{"hostPort": 0, "containerPort": 80}]), json!({})))
        .err(7);
    assert!(v["msg"].as_str().unwrap().contains("portMappings[0]"), "{v}");
    let v = e
        .call("ADD", "ctr-x", 1)
        .run(&e.conf("1.0.0", 1, json!([{"hostPort": 1, "containerPort": 80, "protocol": "icmp"}]), json!({})))
        .err(7);
    assert!(v["msg"].as_str().unwrap().contains("icmp"), "{v}");
    // Not chained: refused.
    let plain =
        json!({"cniVersion": "1.0.0", "name": "pmnet", "type": "portmap", "runtimeConfig": {"portMappings": maps}});
    let v = e.call("ADD", "ctr-x", 1).run(&plain.to_string()).err(999);
    assert!(v["msg"].as_str().unwrap().contains("chained"), "{v}");
    assert!(rules(&e.node).is_empty(), "{}", ruleset_text(&e.node));
    // DEL after a refused ADD succeeds: runtimes retry a failing DEL forever.
    e.call("DEL", "ctr-x", 1).run(&e.conf("1.0.0", 1, maps.clone(), json!({"backend": "iptables"}))).ok();
    // No mappings: nothing to do, prevResult passed through in the config's version.
    let out = e.call("ADD", "ctr-x", 1).run(&e.conf("0.3.1", 1, json!([]), json!({}))).ok().json();
    assert_eq!(out["cniVersion"], "0.3.1");
    assert_eq!(out["ips"][0]["version"], "4");
    assert!(rules(&e.node).is_empty());
}

/// What route_localnet opens (CVE-2020-8558): with it on the container's
/// side of the node, a container can send to the node's 127.0.0.1. The
/// `localnet_guard` chain drops such packets unless they belong to a
/// connection the node has (the localhost mapping's answers) or were
/// translated to there. The container is made to route 127.0.0.1 to the node
/// as an attacker would; a UDP server on the node's 127.0.0.1 lists who reached it.
#[test]
fn localnet_guard_keeps_containers_off_the_nodes_localhost() {
    need_root!();
    let e = Env::new(1);
    let (node, c1) = (&e.node, &e.ctrs[0]);
    let _srv = serve(c1, "c1", 80);
    let conf = e.conf("1.0.0", 1, tcp_udp(8080, 80), json!({}));
    e.call("ADD", "ctr-g", 1).run(&conf).ok();
    assert!(ruleset_text(node).contains(
        "iifname != \"lo\" ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat drop comment \"block incoming localnet connections\""
    ));

    const SEEN: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 9999))
seen = []
print('ready', flush=True)
while True:
    d, a = s.recvfrom(100)
    seen.append(a[0])
    s.sendto(' '.join(seen).encode(), a)
"#;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &node.name, "python3", "-c", SEEN])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    let _seen = Bg(child);
    for cmd in [
        vec!["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
        vec!["ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local"],
        vec!["ip", "route", "del", "local", "127.0.0.1", "dev", "lo", "table", "local"],
        vec!["ip", "route", "add", "127.0.0.1/32", "via", "10.88.1.1", "dev", "eth0"],
    ] {
        assert!(c1.exec(&cmd).status.success(), "{cmd:?}");
    }
    let send = || {
        let py = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9999))";
        assert!(c1.exec(&["python3", "-c", py]).status.success());
    };
    // The container's datagram goes out first; the node's own request, answered
    // with everyone seen so far, comes after it.
    send();
    assert_eq!(
        talk(node, "udp", "127.0.0.1", 9999).as_deref(),
        Some("127.0.0.1"),
        "the container reached the node's localhost"
    );
    // The same with the guard emptied: the container gets through, so the test can see it.
    nft_apply(node, "flush chain ip cni_hostport localnet_guard\n");
    send();
    assert_eq!(talk(node, "udp", "127.0.0.1", 9999).as_deref(), Some("127.0.0.1 10.88.1.5 127.0.0.1"));
    // The localhost mapping still works with the guard back in place.
    e.call("ADD", "ctr-g", 1).run(&conf).ok();
    assert_eq!(talk(node, "tcp", "127.0.0.1", 8080).as_deref(), Some("c1 10.88.1.1"));
    e.call("DEL", "ctr-g", 1).run(&conf).ok();
}

/// Concurrent ADDs and DELs (a node starting and stopping many pods at once)
/// each list the ruleset and commit against the generation they listed; the
/// kernel refuses a batch computed from a stale listing and the plugin
/// recomputes it, so no change is lost and no rule is duplicated.
#[test]
fn parallel_adds_and_dels_lose_nothing() {
    need_root!();
    let e = Env::new(1);
    let n = 12;
    let conf =
        |i: u16| e.conf("1.0.0", 1, json!([{"hostPort": 9000 + i, "containerPort": 80, "protocol": "tcp"}]), json!({}));
    std::thread::scope(|s| {
        for i in 0..n {
            let (e, conf) = (&e, conf(i));
            s.spawn(move || e.call("ADD", &format!("ctr-p{i}"), 1).run(&conf).ok().code);
        }
    });
    for i in 0..n {
        assert_eq!(e.portmap_rules(&format!("ctr-p{i}")).len(), 5, "ctr-p{i}: {}", ruleset_text(&e.node));
    }
    std::thread::scope(|s| {
        for i in 0..n {
            let (e, conf) = (&e, conf(i));
            s.spawn(move || e.call("DEL", &format!("ctr-p{i}"), 1).run(&conf).ok().code);
        }
    });
    assert!(rules(&e.node).iter().all(|r| !r.3.starts_with("ctr-p")), "{}", ruleset_text(&e.node));
}

#[test]
fn a_port_range_larger_than_the_default_socket_buffer() {
    need_root!();
    // 600 mappings for both families: one batch of well over 200 KB, more than
    // a netlink socket sends by default (podman and nerdctl publish ranges).
    let e = Env::new(1);
    let maps: Vec<Value> =
        (0..600).map(|i| json!({"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"})).collect();
    let conf = e.conf("1.0.0", 1, Value::Array(maps), json!({}));
    e.call("ADD", "big", 1).run(&conf).ok();
    let dnats = e.portmap_rules("big").iter().filter(|(_, chain)| chain == "hostports").count();
    assert_eq!(dnats, 1200, "one DNAT rule per mapping and family");
    e.call("DEL", "big", 1).run(&conf).ok();
    assert!(e.portmap_rules("big").is_empty());
}
