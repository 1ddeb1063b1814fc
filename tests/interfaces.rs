//! The other interface plugins (macvlan, ipvlan, vlan, dummy, ptp, tap),
//! with host-local addresses, against the real kernel. Kinds this kernel
//! lacks (ipvlan, vlan, dummy here) skip with the kernel's own answer; they
//! run for real under `make test-vm`.

mod common;
use common::*;
use serde_json::Value;

struct Env {
    tmp: TempDir,
    path: String,
    node: Netns,
}

impl Env {
    fn new() -> Env {
        let tmp = TempDir::new("if");
        let path = plugin_dir(&tmp);
        Env { node: Netns::new("node"), path, tmp }
    }

    fn conf(&self, ty: &str, subnet: &str, extra: &str) -> String {
        let ipam = if subnet.is_empty() {
            "{}".to_string()
        } else {
            format!(
                r#"{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{subnet}"}}]]}}"#,
                self.tmp.join("ipam").display()
            )
        };
        let extra = if extra.is_empty() { String::new() } else { format!("{extra},") };
        format!(r#"{{"cniVersion":"1.0.0","name":"ifnet","type":"{ty}",{extra}"ipam":{ipam}}}"#)
    }

    fn call(&self, plugin: &'static str, cmd: &str, id: &str, ctr: &Netns) -> Call<'_> {
        Call::cni(&self.node, plugin, cmd, id, &ctr.path(), "eth0", &self.path)
    }

    fn links(&self) -> Vec<String> {
        self.node.links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect()
    }
}

fn with_prev(conf: &str, prev: &Value) -> String {
    let mut v: Value = serde_json::from_str(conf).unwrap();
    v["prevResult"] = prev.clone();
    v.to_string()
}

fn ip_of(r: &Value, i: usize) -> String {
    r["ips"][i]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// A node "NIC": a veth whose peer end stays in the node, up.
fn nic(e: &Env, name: &str) {
    e.node.sh(&["link", "add", name, "type", "veth", "peer", "name", &format!("{name}p")]);
    e.node.sh(&["link", "set", name, "up"]);
    e.node.sh(&["link", "set", &format!("{name}p"), "up"]);
}

#[test]
fn macvlan_two_containers_talk_and_del_cleans_up() {
    need_root!();
    let e = Env::new();
    nic(&e, "nic0");
    let conf = e.conf("macvlan", "10.60.0.0/24", r#""master":"nic0","mode":"bridge","mtu":1400"#);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let r1 = e.call("macvlan", "ADD", "ctr1", &c1).run(&conf).ok().json();
    let r2 = e.call("macvlan", "ADD", "ctr2", &c2).run(&conf).ok().json();
    assert_eq!(r1["interfaces"].as_array().unwrap().len(), 1);
    assert_eq!(r1["interfaces"][0]["sandbox"], c1.path().as_str());
    assert_eq!(r1["ips"][0]["interface"], 0);
    let l = c1.link("eth0").unwrap();
    assert_eq!(l["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "bridge");
    assert_eq!(l["mtu"], 1400);
    assert_eq!(l["address"], r1["interfaces"][0]["mac"]);
    assert_eq!(c1.sysctl("net/ipv4/conf/eth0/arp_notify"), "1");
    // Nothing was made in the node but the NIC we made.
    assert!(!e.links().iter().any(|n| n.starts_with("tmp") || n == "eth0"));
    assert!(c1.ping(&ip_of(&r2, 0)), "macvlan bridge mode: container to container");
    e.call("macvlan", "CHECK", "ctr1", &c1).run(&with_prev(&conf, &r1)).ok();
    e.call("macvlan", "DEL", "ctr1", &c1).run(&conf).ok();
    assert!(c1.link("eth0").is_none());
    e.call("macvlan", "DEL", "ctr1", &c1).run(&conf).ok();
    // CHECK after DEL fails: the interface is gone.
    e.call("macvlan", "CHECK", "ctr1", &c1).run(&with_prev(&conf, &r1)).err(999);
}

#[test]
fn macvlan_options_and_errors() {
    need_root!();
    let e = Env::new();
    nic(&e, "nic0");
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    // L2 only, private mode, MAC from runtimeConfig, broadcast queue length.
    let l2 = e.conf(
        "macvlan",
        "",
        r#""master":"nic0","mode":"private","bcqueuelen":100,"runtimeConfig":{"mac":"02:00:00:00:11:22"}"#,
    );
    let r = e.call("macvlan", "ADD", "ctr1", &c1).run(&l2).ok().json();
    assert!(r.get("ips").is_none());
    let l = c1.link("eth0").unwrap();
    assert_eq!(l["address"], "02:00:00:00:11:22");
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "private");
    assert_eq!(l["linkinfo"]["info_data"]["bcqueuelen"], 100);
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    // An MTU above the master's is refused before anything is made.
    let big = e.conf("macvlan", "10.61.0.0/24", r#""master":"nic0","mtu":9000"#);
    let v = e.call("macvlan", "ADD", "ctr2", &c2).run(&big).err(7);
    assert!(v["msg"].as_str().unwrap().contains("invalid MTU 9000"), "{v}");
    assert!(c2.link("eth0").is_none());
    // Unknown mode, missing master.
    e.call("macvlan", "ADD", "ctr2", &c2).run(&e.conf("macvlan", "", r#""master":"nic0","mode":"weird""#)).err(7);
    let v = e.call("macvlan", "ADD", "ctr3", &c3).run(&e.conf("macvlan", "", r#""master":"nope0""#)).err(7);
    assert!(v["msg"].as_str().unwrap().contains("nope0"), "{v}");
    // Default master: the node's default-route interface.
    e.node.sh(&["addr", "add", "192.0.2.1/24", "dev", "nic0"]);
    e.node.sh(&["route", "add", "default", "via", "192.0.2.254", "dev", "nic0"]);
    e.call("macvlan", "ADD", "ctr3", &c3).run(&e.conf("macvlan", "", "")).ok();
    assert!(c3.link("eth0").unwrap()["link_netnsid"].is_number(), "eth0 should live in another netns");
}

#[test]
fn macvlan_rolls_back_when_ipam_fails() {
    need_root!();
    let e = Env::new();
    nic(&e, "nic0");
    let c1 = Netns::new("c1");
    // A /30 whose only host is taken by the gateway: IPAM fails after the link exists.
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"ifnet","type":"macvlan","master":"nic0",
            "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.62.0.0/30","rangeStart":"10.62.0.1","rangeEnd":"10.62.0.1"}}]]}}}}"#,
        e.tmp.join("ipam").display()
    );
    let v = e.call("macvlan", "ADD", "ctr1", &c1).run(&conf).err(999);
    assert!(v["msg"].as_str().unwrap().contains("no IP addresses available"), "{v}");
    let left: Vec<String> = c1.links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect();
    assert_eq!(left, vec!["lo".to_string()], "the macvlan was removed");
}

#[test]
fn ptp_routes_through_the_gateway() {
    need_root!();
    let e = Env::new();
    let conf = e.conf("ptp", "10.63.0.0/24", r#""mtu":1450"#);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let r1 = e.call("ptp", "ADD", "ctr1", &c1).run(&conf).ok().json();
    let r2 = e.call("ptp", "ADD", "ctr2", &c2).run(&conf).ok().json();
    let ifs = r1["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2);
    let hveth = ifs[0]["name"].as_str().unwrap();
    assert_eq!(ifs[1]["name"], "eth0");
    assert_eq!(r1["ips"][0]["interface"], 1);
    assert_eq!(r1["ips"][0]["gateway"], "10.63.0.1");
    // Container: no connected route; gateway /32 on the link; subnet via gateway.
    let routes = c1.ip_json(&["route", "show"]);
    let dsts: Vec<String> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["dst"].as_str().unwrap(), r["gateway"].as_str().unwrap_or("-")))
        .collect();
    assert!(dsts.contains(&"10.63.0.1 -".to_string()), "{dsts:?}");
    assert!(dsts.contains(&"10.63.0.0/24 10.63.0.1".to_string()), "{dsts:?}");
    // Node: gateway /32 on the host end, host route to the container.
    assert!(e.node.addrs(hveth).contains(&"10.63.0.1/32".to_string()));
    let host_routes = e.node.ip_json(&["route", "show", "dev", hveth]);
    assert!(host_routes.as_array().unwrap().iter().any(|r| r["dst"] == ip_of(&r1, 0).as_str()), "{host_routes}");
    assert_eq!(e.node.link(hveth).unwrap()["mtu"], 1450);
    assert_eq!(e.node.sysctl("net/ipv4/ip_forward"), "1");
    // Traffic: container to gateway, and to its neighbour (routed through the node).
    assert!(c1.ping("10.63.0.1"));
    assert!(c1.ping(&ip_of(&r2, 0)));
    e.call("ptp", "CHECK", "ctr1", &c1).run(&with_prev(&conf, &r1)).ok();
    e.call("ptp", "DEL", "ctr1", &c1).run(&conf).ok();
    assert!(e.node.link(hveth).is_none());
    assert!(c1.link("eth0").is_none());
    e.call("ptp", "DEL", "ctr1", &c1).run(&conf).ok();
    // DEL with the namespace gone still releases the address.
    drop(c2);
    let gone = Netns { name: "cbt-gone".into() };
    e.call("ptp", "DEL", "ctr2", &gone).run(&conf).ok();
    std::mem::forget(gone);
    let state = std::fs::read_to_string(e.tmp.join("ipam/ifnet/cnibox.state")).unwrap_or_default();
    assert!(!state.contains("ctr1") && !state.contains("ctr2"), "{state}");
}

#[test]
fn ptp_dual_stack() {
    need_root!();
    let e = Env::new();
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"ifnet","type":"ptp",
            "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.64.0.0/24"}}],[{{"subnet":"fd64::/64"}}]]}}}}"#,
        e.tmp.join("ipam").display()
    );
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    e.call("ptp", "ADD", "ctr1", &c1).run(&conf).ok();
    let r2 = e.call("ptp", "ADD", "ctr2", &c2).run(&conf).ok().json();
    assert!(c1.ping(&ip_of(&r2, 1)), "IPv6 container to container through the node");
}

#[test]
fn tap_in_container_with_bridge_owner_and_address() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    c1.sh(&["link", "add", "br0", "type", "bridge"]);
    let conf = e.conf(
        "tap",
        "10.65.0.0/24",
        r#""mtu":1400,"multiQueue":true,"owner":1234,"group":1234,"bridge":"br0","mac":"02:00:00:00:33:44""#,
    );
    let r = e.call("tap", "ADD", "ctr1", &c1).run(&conf).ok().json();
    assert_eq!(r["interfaces"][0]["mac"], "02:00:00:00:33:44");
    let l = c1.link("eth0").unwrap();
    assert_eq!(l["linkinfo"]["info_kind"], "tun");
    assert_eq!(l["linkinfo"]["info_data"]["type"], "tap");
    assert_eq!(l["linkinfo"]["info_data"]["multi_queue"], true);
    assert_eq!(l["linkinfo"]["info_data"]["user"], 1234);
    assert_eq!(l["master"], "br0");
    assert_eq!(l["mtu"], 1400);
    assert!(c1.addrs("eth0").contains(&r["ips"][0]["address"].as_str().unwrap().to_string()));
    assert!(e.node.links().iter().all(|x| x["ifname"] != "eth0"), "nothing created in the node");
    e.call("tap", "CHECK", "ctr1", &c1).run(&with_prev(&conf, &r)).ok();
    e.call("tap", "DEL", "ctr1", &c1).run(&conf).ok();
    assert!(c1.link("eth0").is_none());
    // selinuxContext would need a process to label: refused, naming the field.
    let v =
        e.call("tap", "ADD", "ctr1", &c1).run(&e.conf("tap", "", r#""selinuxContext":"system_u:object_r:x""#)).err(2);
    assert_eq!(v["details"], "selinuxContext");
}

#[test]
fn ipvlan_vlan_dummy_or_skip() {
    need_root!();
    let e = Env::new();
    nic(&e, "nic0");
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    for (ty, extra, kind) in [
        ("ipvlan", r#""master":"nic0","mode":"l2""#, "ipvlan"),
        ("vlan", r#""master":"nic0","vlanId":42"#, "vlan"),
        ("dummy", "", "dummy"),
    ] {
        let conf = e.conf(ty, "10.66.0.0/24", extra);
        let r = e.call(ty, "ADD", "ctr1", &c1).run(&conf);
        if r.code != 0 && kernel_lacks(kind) {
            // The kernel's refusal, with the code the reference gives a netlink error.
            r.err(999);
            // Nothing half-made: no link in the container, no reservation kept.
            assert!(c1.link("eth0").is_none());
            let state = std::fs::read_to_string(e.tmp.join("ipam/ifnet/cnibox.state")).unwrap_or_default();
            assert!(!state.contains("ctr1"), "{state}");
            continue;
        }
        let r = r.ok().json();
        assert_eq!(c1.link("eth0").unwrap()["linkinfo"]["info_kind"], kind);
        e.call(ty, "CHECK", "ctr1", &c1).run(&with_prev(&conf, &r)).ok();
        e.call(ty, "DEL", "ctr1", &c1).run(&conf).ok();
        assert!(c1.link("eth0").is_none());
    }
    // vlan DEL succeeds even when its master is gone (the reference fails here).
    let conf = e.conf("vlan", "10.66.0.0/24", r#""master":"gone0","vlanId":7"#);
    e.call("vlan", "DEL", "ctr2", &c2).run(&conf).ok();
    // vlan needs a master; dummy needs IPAM.
    e.call("vlan", "ADD", "ctr2", &c2).run(&e.conf("vlan", "10.66.0.0/24", r#""vlanId":7"#)).err(7);
    e.call("dummy", "ADD", "ctr2", &c2).run(&e.conf("dummy", "", "")).err(7);
}

#[test]
fn host_device_moves_in_and_back_with_its_name() {
    need_root!();
    let e = Env::new();
    // A veth stands in for the NIC: nic0 goes to the container, nic0p stays as the wire's far end.
    nic(&e, "nic0");
    e.node.sh(&["addr", "add", "10.68.0.1/24", "dev", "nic0p"]);
    let mac = e.node.link("nic0").unwrap()["address"].as_str().unwrap().to_string();
    let c1 = Netns::new("c1");
    let conf = e.conf("host-device", "10.68.0.0/24", r#""device":"nic0""#);
    let r = e.call("host-device", "ADD", "ctr1", &c1).run(&conf).ok().json();
    assert!(e.node.link("nic0").is_none(), "the device left the node");
    let l = c1.link("eth0").expect("device in the container as eth0");
    assert_eq!(l["address"], mac.as_str());
    assert_eq!(l["ifalias"], "nic0");
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert!(c1.ping("10.68.0.1"), "traffic over the moved device");
    e.call("host-device", "CHECK", "ctr1", &c1).run(&with_prev(&conf, &r)).ok();
    e.call("host-device", "DEL", "ctr1", &c1).run(&conf).ok();
    assert!(c1.link("eth0").is_none());
    assert_eq!(e.node.link("nic0").expect("back in the node under its name")["address"], mac.as_str());
    e.call("host-device", "DEL", "ctr1", &c1).run(&conf).ok();
    // By MAC address, too; and a name clash in the container leaves the device where it was.
    let c2 = Netns::new("c2");
    c2.sh(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"]);
    let by_mac = e.conf("host-device", "", &format!(r#""hwaddr":"{mac}""#));
    e.call("host-device", "ADD", "ctr2", &c2).run(&by_mac).err(999);
    assert!(e.node.link("nic0").is_some());
    let c3 = Netns::new("c3");
    e.call("host-device", "ADD", "ctr3", &c3).run(&by_mac).ok();
    assert_eq!(c3.link("eth0").unwrap()["address"], mac.as_str());
    // DEL with the namespace already gone still releases the address of an L3 attachment.
    let c4 = Netns::new("c4");
    nic(&e, "nic1");
    let l3 = e.conf("host-device", "10.68.0.0/24", r#""device":"nic1""#);
    e.call("host-device", "ADD", "ctr4", &c4).run(&l3).ok();
    let path = c4.path();
    drop(c4);
    let d = Call::cni(&e.node, "host-device", "DEL", "ctr4", &path, "eth0", &e.path);
    d.run(&l3).ok();
    let state = std::fs::read_to_string(e.tmp.join("ipam/ifnet/cnibox.state")).unwrap_or_default();
    assert!(!state.contains("ctr4"), "{state}");
    // Bad kernelpath is refused.
    let bad = e.conf("host-device", "", r#""kernelpath":"/etc/passwd""#);
    e.call("host-device", "ADD", "ctr5", &c3).run(&bad).err(7);
}
