//! bandwidth, chained after an interface plugin: token buckets on the host
//! veth (to the container) and on an IFB fed by a redirect (from the container).

mod common;
use common::*;
use serde_json::Value;

/// A node with a veth to a container namespace, addressed 10.70.0.1 <-> 10.70.0.2,
/// and the prevResult an interface plugin would have produced for it.
struct Pod {
    node: Netns,
    ctr: Netns,
    host: String,
    prev: Value,
}

fn pod() -> Pod {
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    let host = unique("vbw");
    node.sh(&["link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ctr.name]);
    node.sh(&["addr", "add", "10.70.0.1/24", "dev", &host]);
    node.sh(&["link", "set", &host, "up"]);
    ctr.sh(&["addr", "add", "10.70.0.2/24", "dev", "eth0"]);
    ctr.sh(&["link", "set", "eth0", "up"]);
    let prev = serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": host}, {"name": "eth0", "sandbox": ctr.path()}],
        "ips": [{"address": "10.70.0.2/24", "interface": 1}]
    });
    Pod { node, ctr, host, prev }
}

fn conf(p: &Pod, bw: &str, version: &str) -> String {
    format!(r#"{{"cniVersion":"{version}","name":"bwnet","type":"bandwidth",{bw}"prevResult":{}}}"#, p.prev)
}

fn call<'a>(p: &'a Pod, cmd: &str, path: &str) -> Call<'a> {
    Call::cni(&p.node, "bandwidth", cmd, "ctr1", &p.ctr.path(), "eth0", path)
}

fn qdisc_stats(ns: &Netns, dev: &str, kind: &str) -> Option<Value> {
    let out = ns.exec(&["tc", "-s", "-j", "qdisc", "show", "dev", dev]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.iter().find(|q| q["kind"] == kind).cloned()
}

fn ifb_of(p: &Pod) -> Option<String> {
    p.node.links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).find(|n| n.starts_with("bwp"))
}

#[test]
fn shapes_both_directions_with_real_packets() {
    need_root!();
    let tmp = TempDir::new("bw");
    let path = plugin_dir(&tmp);
    let p = pod();
    let bw = r#""runtimeConfig":{"bandwidth":{"ingressRate":1000000,"ingressBurst":100000,"egressRate":1000000,"egressBurst":100000}},"#;
    let c = conf(&p, bw, "1.0.0");
    let r = call(&p, "ADD", &path).run(&c).ok().json();
    // The IFB is appended to the result's interfaces and exists, up, with the veth's MTU.
    let ifb = ifb_of(&p).expect("IFB device created");
    assert_eq!(ifb.len(), 15);
    assert_eq!(r["interfaces"][2]["name"], ifb.as_str());
    let l = p.node.link(&ifb).unwrap();
    assert_eq!(l["linkinfo"]["info_kind"], "ifb");
    assert_eq!(l["mtu"], p.node.link(&p.host).unwrap()["mtu"]);
    // Kernel state: tbf on the veth and on the IFB, an ingress qdisc with the redirect filter.
    let t = qdisc_stats(&p.node, &p.host, "tbf").expect("tbf on the host veth");
    assert_eq!(t["options"]["rate"], 125000);
    assert!(qdisc_stats(&p.node, &p.host, "ingress").is_some());
    let f = p.node.exec(&["tc", "filter", "show", "dev", &p.host, "ingress"]);
    let fs = String::from_utf8_lossy(&f.stdout);
    assert!(fs.contains("mirred") && fs.contains(&ifb), "{fs}");
    assert!(qdisc_stats(&p.node, &ifb, "tbf").is_some());

    // Real traffic above the rate both ways: the buckets see it and throttle it.
    let _ = p.node.exec(&["ping", "-q", "-c", "60", "-i", "0.005", "-s", "1400", "-W", "1", "10.70.0.2"]);
    let to_ctr = qdisc_stats(&p.node, &p.host, "tbf").unwrap();
    assert!(to_ctr["bytes"].as_u64().unwrap() > 60 * 1400 / 2, "{to_ctr}");
    let throttled = |q: &Value| q["overlimits"].as_u64().unwrap_or(0) + q["drops"].as_u64().unwrap_or(0);
    assert!(throttled(&to_ctr) > 0, "ingress limit not hit: {to_ctr}");
    let from_ctr = qdisc_stats(&p.node, &ifb, "tbf").unwrap();
    assert!(from_ctr["bytes"].as_u64().unwrap() > 0, "replies were not redirected through the IFB: {from_ctr}");
    let _ = p.ctr.exec(&["ping", "-q", "-c", "60", "-i", "0.005", "-s", "1400", "-W", "1", "10.70.0.1"]);
    let from_ctr = qdisc_stats(&p.node, &ifb, "tbf").unwrap();
    assert!(throttled(&from_ctr) > 0, "egress limit not hit: {from_ctr}");

    call(&p, "CHECK", &path).run(&conf(&p, bw, "1.0.0").replace(&p.prev.to_string(), &r.to_string())).ok();
    // CHECK notices a different configured rate.
    let other = bw.replace("\"ingressRate\":1000000", "\"ingressRate\":2000000");
    let v =
        call(&p, "CHECK", &path).run(&conf(&p, &other, "1.0.0").replace(&p.prev.to_string(), &r.to_string())).err(999);
    assert!(v["msg"].as_str().unwrap().contains("Rate"), "{v}");

    call(&p, "DEL", &path).run(&c).ok();
    assert!(ifb_of(&p).is_none(), "IFB removed");
    call(&p, "DEL", &path).run(&c).ok();
}

#[test]
fn top_level_wins_zero_passes_through_and_validation() {
    need_root!();
    let tmp = TempDir::new("bw");
    let path = plugin_dir(&tmp);
    let p = pod();
    // Top-level values win over runtimeConfig; only ingress here, so no IFB.
    let bw = r#""ingressRate":2000000,"ingressBurst":20000,"runtimeConfig":{"bandwidth":{"ingressRate":1000000,"ingressBurst":10000,"egressRate":1000000,"egressBurst":10000}},"#;
    let r = call(&p, "ADD", &path).run(&conf(&p, bw, "0.3.1")).ok().json();
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(qdisc_stats(&p.node, &p.host, "tbf").unwrap()["options"]["rate"], 250000);
    assert!(ifb_of(&p).is_none());
    // No limits: prevResult passes through unchanged.
    let p2 = pod();
    let r = call(&p2, "ADD", &path).run(&conf(&p2, "", "1.0.0")).ok().json();
    assert_eq!(r["ips"][0]["address"], "10.70.0.2/24");
    assert!(qdisc_stats(&p2.node, &p2.host, "tbf").is_none());
    // Rate without burst, and versions before 0.3.0, are refused.
    let v = call(&p2, "ADD", &path).run(&conf(&p2, r#""egressRate":1000,"#, "1.0.0")).err(7);
    assert!(v["msg"].as_str().unwrap().contains("burst must also be set"), "{v}");
    call(&p2, "ADD", &path).run(&conf(&p2, "", "0.2.0")).err(1);
}
