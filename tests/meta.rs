//! Chained meta plugins on a container interface: tuning, sbr, vrf.

mod common;
use common::*;
use serde_json::{json, Value};

/// A container with `eth0` (10.74.0.2/24) on a veth whose far end sits in a
/// "router" namespace, and the prevResult an interface plugin would have given.
struct Pod {
    node: Netns,
    ctr: Netns,
    tmp: TempDir,
    path: String,
    prev: Value,
}

fn pod() -> Pod {
    let tmp = TempDir::new("meta");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    ctr.sh(&["link", "add", "eth0", "type", "veth", "peer", "name", "far0", "netns", &node.name]);
    ctr.sh(&["addr", "add", "10.74.0.2/24", "dev", "eth0"]);
    ctr.sh(&["link", "set", "eth0", "up"]);
    node.sh(&["addr", "add", "10.74.0.1/24", "dev", "far0"]);
    node.sh(&["link", "set", "far0", "up"]);
    let prev = json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":ctr.path()}],
                      "ips":[{"address":"10.74.0.2/24","gateway":"10.74.0.1","interface":0}]});
    Pod { node, ctr, tmp, path, prev }
}

impl Pod {
    fn call(&self, plugin: &'static str, cmd: &str) -> Call<'_> {
        Call::cni(&self.node, plugin, cmd, "ctr1", &self.ctr.path(), "eth0", &self.path)
    }
    fn conf(&self, plugin: &str, body: Value) -> String {
        let mut v = json!({"cniVersion":"1.0.0","name":"meta","type":plugin,"prevResult":self.prev});
        for (k, x) in body.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string()
    }
}

#[test]
fn tuning_sets_sysctls_and_link_then_restores_on_del() {
    need_root!();
    let p = pod();
    let before = p.ctr.link("eth0").unwrap();
    let conf = p.conf(
        "tuning",
        json!({"sysctl":{"net.ipv4.conf.IFNAME.arp_filter":"1","net/ipv4/conf/IFNAME/rp_filter":"2"},
               "mac":"02:00:00:00:44:55","mtu":1300,"promisc":true,"allmulti":true,"txQLen":42,
               "dataDir": p.tmp.join("tuning").to_string_lossy()}),
    );
    let r = p.call("tuning", "ADD").run(&conf).ok().json();
    assert_eq!(r["interfaces"][0]["mac"], "02:00:00:00:44:55", "result carries the new MAC");
    assert_eq!(p.ctr.sysctl("net/ipv4/conf/eth0/arp_filter"), "1");
    assert_eq!(p.ctr.sysctl("net/ipv4/conf/eth0/rp_filter"), "2");
    let l = p.ctr.link("eth0").unwrap();
    assert_eq!(l["address"], "02:00:00:00:44:55");
    assert_eq!(l["mtu"], 1300);
    assert_eq!(l["txqlen"], 42);
    let flags: Vec<&str> = l["flags"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert!(flags.contains(&"PROMISC") && flags.contains(&"ALLMULTI"), "{flags:?}");
    // The node's own namespace and sysctls are untouched.
    assert_eq!(p.node.sysctl("net/ipv4/conf/far0/arp_filter"), "0");
    p.call("tuning", "CHECK").run(&conf).ok();
    p.ctr.sh(&["link", "set", "eth0", "mtu", "1400"]);
    let v = p.call("tuning", "CHECK").run(&conf).err(999);
    assert!(v["msg"].as_str().unwrap().contains("MTU"), "{v}");
    p.call("tuning", "DEL").run(&conf).ok();
    let after = p.ctr.link("eth0").unwrap();
    assert_eq!(after["address"], before["address"], "MAC restored");
    assert_eq!(after["mtu"], before["mtu"], "MTU restored");
    assert!(!after["flags"].as_array().unwrap().iter().any(|f| f == "PROMISC"));
    assert!(std::fs::read_dir(p.tmp.join("tuning")).unwrap().next().is_none(), "backup removed");
    p.call("tuning", "DEL").run(&conf).ok();
}

#[test]
fn tuning_refuses_sysctls_outside_net_and_honours_args() {
    need_root!();
    let p = pod();
    let bad = p.conf("tuning", json!({"sysctl":{"kernel.panic":"1"}}));
    // The key is named in the message, in the tiny build too (no Debug formatting there).
    assert_eq!(p.call("tuning", "ADD").run(&bad).err(7)["msg"], "invalid net sysctl key: 'kernel.panic'");
    let traversal = p.conf("tuning", json!({"sysctl":{"net/../kernel/panic":"1"}}));
    assert_eq!(p.call("tuning", "ADD").run(&traversal).err(7)["msg"], "invalid net sysctl key: 'net/../kernel/panic'");
    // args.cni overrides the config.
    let conf =
        p.conf("tuning", json!({"mtu":1200,"args":{"cni":{"mtu":1250}},"dataDir": p.tmp.join("t").to_string_lossy()}));
    p.call("tuning", "ADD").run(&conf).ok();
    assert_eq!(p.ctr.link("eth0").unwrap()["mtu"], 1250);
    // Not chained: refused.
    let unchained = json!({"cniVersion":"1.0.0","name":"meta","type":"tuning"}).to_string();
    p.call("tuning", "ADD").run(&unchained).err(999);
}

#[test]
fn sbr_routes_replies_by_source() {
    need_root!();
    let p = pod();
    // A second interface, net1 (10.75.0.2/24), toward a second router that alone reaches 192.0.2.9.
    let r2 = Netns::new("r2");
    p.ctr.sh(&["link", "add", "net1", "type", "veth", "peer", "name", "far1", "netns", &r2.name]);
    p.ctr.sh(&["addr", "add", "10.75.0.2/24", "dev", "net1"]);
    p.ctr.sh(&["link", "set", "net1", "up"]);
    p.ctr.sh(&["route", "add", "default", "via", "10.74.0.1"]);
    r2.sh(&["addr", "add", "10.75.0.1/24", "dev", "far1"]);
    r2.sh(&["link", "set", "far1", "up"]);
    r2.sh(&["addr", "add", "192.0.2.9/32", "dev", "lo"]);
    let ping_from =
        |src: &str| p.ctr.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", src, "192.0.2.9"]).status.success();
    assert!(!ping_from("10.75.0.2"), "without sbr, net1's traffic leaves by eth0's default route");

    let prev = json!({"cniVersion":"1.0.0","interfaces":[{"name":"net1","sandbox":p.ctr.path()}],
                      "ips":[{"address":"10.75.0.2/24","gateway":"10.75.0.1","interface":0}]});
    let conf = json!({"cniVersion":"1.0.0","name":"meta","type":"sbr","prevResult":prev}).to_string();
    let mut c = Call::cni(&p.node, "sbr", "ADD", "ctr1", &p.ctr.path(), "net1", &p.path);
    c.run(&conf).ok();
    let rules = p.ctr.ip_json(&["rule", "show"]);
    let rule = rules.as_array().unwrap().iter().find(|r| r["src"] == "10.75.0.2").expect("rule from 10.75.0.2");
    assert_eq!(rule["table"], "100");
    let t100 = p.ctr.ip_json(&["route", "show", "table", "100"]);
    assert!(t100.as_array().unwrap().iter().any(|r| r["dst"] == "default" && r["gateway"] == "10.75.0.1"), "{t100}");
    let main = p.ctr.ip_json(&["route", "show", "dev", "net1"]);
    assert!(main.as_array().unwrap().is_empty(), "net1's routes left main: {main}");
    assert!(ping_from("10.75.0.2"), "with sbr, traffic from net1's address uses net1's gateway");
    assert!(p.ctr.ping("10.74.0.1"), "eth0 still works");
    c.set("CNI_COMMAND", "DEL");
    c.run(&conf).ok();
    let rules = p.ctr.ip_json(&["rule", "show"]);
    assert!(!rules.as_array().unwrap().iter().any(|r| r["src"] == "10.75.0.2"), "{rules}");
    c.run(&conf).ok();
}

#[test]
fn vrf_or_skip() {
    need_root!();
    let p = pod();
    let conf = p.conf("vrf", json!({"vrfname":"blue","table":1001}));
    let r = p.call("vrf", "ADD").run(&conf);
    if r.code != 0 && kernel_lacks("vrf") {
        r.err(999);
        assert!(p.ctr.link("blue").is_none());
        return;
    }
    r.ok();
    let l = p.ctr.link("eth0").unwrap();
    assert_eq!(l["master"], "blue");
    p.call("vrf", "CHECK").run(&conf).ok();
    p.call("vrf", "DEL").run(&conf).ok();
    assert!(p.ctr.link("blue").is_none(), "empty VRF removed");
}
