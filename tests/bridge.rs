//! bridge + host-local, run as a runtime runs them, in a throwaway node
//! namespace with container namespaces; every check reads the kernel.

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
        let tmp = TempDir::new("br");
        let path = plugin_dir(&tmp);
        Env { node: Netns::new("node"), path, tmp }
    }

    /// A bridge config with host-local IPAM on `subnets`; `extra` is merged at the top level.
    fn conf(&self, version: &str, subnets: &[&str], extra: &str) -> String {
        let ranges: Vec<String> = subnets.iter().map(|s| format!(r#"[{{"subnet":"{s}"}}]"#)).collect();
        let extra = if extra.is_empty() { String::new() } else { format!("{extra},") };
        format!(
            r#"{{"cniVersion":"{version}","name":"testnet","type":"bridge","bridge":"cbr0",{extra}
               "ipam":{{"type":"host-local","dataDir":"{}","ranges":[{}]}}}}"#,
            self.tmp.join("ipam").display(),
            ranges.join(",")
        )
    }

    fn call(&self, cmd: &str, id: &str, ctr: &Netns) -> Call<'_> {
        Call::cni(&self.node, "bridge", cmd, id, &ctr.path(), "eth0", &self.path)
    }

    fn add(&self, id: &str, ctr: &Netns, conf: &str) -> Value {
        self.call("ADD", id, ctr).run(conf).ok().json()
    }

    /// Reservations held by `id` in host-local's state: lines that begin with
    /// an address and name the id (the state file), plus reference-style
    /// per-address files holding it.
    fn reservations_of(&self, id: &str) -> usize {
        let dir = self.tmp.join("ipam").join("testnet");
        let mut n = 0;
        for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // host-local's scratch copy for the next atomic replace, not state
            }
            let Ok(s) = std::fs::read_to_string(f.path()) else { continue };
            if name.parse::<std::net::IpAddr>().is_ok() {
                n += usize::from(s.split("\r\n").next() == Some(id));
                continue;
            }
            n += s
                .lines()
                .filter(|l| l.split_whitespace().next().map(|w| w.parse::<std::net::IpAddr>().is_ok()).unwrap_or(false))
                .filter(|l| l.split_whitespace().nth(1) == Some(id))
                .count();
        }
        n
    }

    fn state_dump(&self) -> String {
        let dir = self.tmp.join("ipam").join("testnet");
        let mut out = String::new();
        for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out += &format!(
                "== {}\n{}\n",
                f.file_name().to_string_lossy(),
                std::fs::read_to_string(f.path()).unwrap_or_default()
            );
        }
        out
    }

    fn veths(&self) -> Vec<String> {
        self.node
            .links()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("veth"))
            .map(String::from)
            .collect()
    }
}

fn flags(l: &Value) -> Vec<String> {
    l["flags"].as_array().map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// With prevResult for CHECK: the ADD result injected into the config.
fn with_prev(conf: &str, prev: &Value) -> String {
    let mut v: Value = serde_json::from_str(conf).unwrap();
    v["prevResult"] = prev.clone();
    v.to_string()
}

#[test]
fn dual_stack_add_check_del() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let conf = e.conf("1.0.0", &["10.99.0.0/24", "fd99::/64"], r#""isDefaultGateway":true"#);
    let r1 = e.add("ctr1", &c1, &conf);

    // Result: [bridge, host veth, container], ips on interface 2, gateways = first host.
    let ifs = r1["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 3);
    assert_eq!(ifs[0]["name"], "cbr0");
    let hveth = ifs[1]["name"].as_str().unwrap().to_string();
    assert!(hveth.starts_with("veth") && hveth.len() == 12, "{hveth}");
    assert_eq!(ifs[2]["name"], "eth0");
    assert_eq!(ifs[2]["sandbox"], c1.path().as_str());
    let ips = r1["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2);
    assert!(ips.iter().all(|i| i["interface"] == 2));
    assert_eq!(ips[0]["gateway"], "10.99.0.1");
    assert_eq!(ips[1]["gateway"], "fd99::1");
    let a1 = ips[0]["address"].as_str().unwrap().to_string();
    let routes: Vec<String> =
        r1["routes"].as_array().unwrap().iter().map(|r| r["dst"].as_str().unwrap().to_string()).collect();
    assert!(routes.contains(&"0.0.0.0/0".to_string()) && routes.contains(&"::/0".to_string()), "{routes:?}");

    // Kernel: bridge with both gateways, MAC as reported; veth enslaved and up; container side configured.
    let br = e.node.link("cbr0").expect("bridge exists");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(br["address"], ifs[0]["mac"]);
    let br_addrs = e.node.addrs("cbr0");
    assert!(
        br_addrs.contains(&"10.99.0.1/24".to_string()) && br_addrs.contains(&"fd99::1/64".to_string()),
        "{br_addrs:?}"
    );
    let hv = e.node.link(&hveth).expect("host veth exists");
    assert_eq!(hv["master"], "cbr0");
    assert_eq!(hv["address"], ifs[1]["mac"]);
    assert_eq!(hv["operstate"], "UP");
    let ct = c1.link("eth0").expect("container veth");
    assert_eq!(ct["address"], ifs[2]["mac"]);
    assert!(flags(&ct).contains(&"UP".to_string()));
    let caddrs = c1.addrs("eth0");
    assert!(caddrs.contains(&a1), "{caddrs:?}");
    let dr = c1.ip_json(&["route", "show", "default"]);
    assert_eq!(dr[0]["gateway"], "10.99.0.1");
    let dr6 = c1.ip_json(&["-6", "route", "show", "default"]);
    assert_eq!(dr6[0]["gateway"], "fd99::1");

    // Sysctls the reference sets.
    assert_eq!(e.node.sysctl("net/ipv4/ip_forward"), "1");
    assert_eq!(e.node.sysctl("net/ipv6/conf/all/forwarding"), "1");
    assert_eq!(e.node.sysctl("net/ipv6/conf/cbr0/accept_ra"), "0");
    assert_eq!(e.node.sysctl(&format!("net/ipv6/conf/{hveth}/accept_ra")), "0");
    assert_eq!(c1.sysctl("net/ipv4/conf/eth0/arp_notify"), "1");
    assert_eq!(c1.sysctl("net/ipv6/conf/eth0/accept_dad"), "0");
    assert_eq!(c1.sysctl("net/ipv6/conf/eth0/keep_addr_on_down"), "1");

    // Real traffic: container to gateway, container to container (v4 and v6).
    let r2 = e.add("ctr2", &c2, &conf);
    let a2 = r2["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    let a2v6 = r2["ips"][1]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert_ne!(r1["ips"][0]["address"], r2["ips"][0]["address"]);
    assert!(c1.ping("10.99.0.1"), "container -> gateway");
    assert!(c1.ping(&a2), "container -> container");
    assert!(c1.ping(&a2v6), "container -> container over IPv6");
    // Bridge MAC is pinned: it stays put when a port goes.
    let mac_before = e.node.link("cbr0").unwrap()["address"].clone();

    // CHECK with the ADD result as prevResult.
    e.call("CHECK", "ctr1", &c1).run(&with_prev(&conf, &r1)).ok();

    // DEL removes the veth pair and the reservation; the bridge stays (as the reference).
    e.call("DEL", "ctr1", &c1).run(&conf).ok();
    assert!(c1.link("eth0").is_none());
    assert!(e.node.link(&hveth).is_none());
    assert!(e.node.link("cbr0").is_some());
    assert_eq!(e.node.link("cbr0").unwrap()["address"], mac_before, "bridge MAC must not follow its ports");
    // DEL twice, DEL with the netns gone, DEL with CNI_NETNS empty: all succeed.
    e.call("DEL", "ctr1", &c1).run(&conf).ok();
    let mut c = e.call("DEL", "ctr2", &c2);
    c.set("CNI_NETNS", "");
    c.run(&conf).ok();
    e.call("DEL", "ctr2", &c2).run(&conf).ok();
    assert_eq!(e.veths(), Vec::<String>::new(), "no veth left on the node");
    assert_eq!(e.reservations_of("ctr1") + e.reservations_of("ctr2"), 0, "reservations released: {}", e.state_dump());
    drop(c2);
    let gone = Netns { name: "cbt-never-existed".into() };
    e.call("DEL", "ctr3", &gone).run(&conf).ok();
    std::mem::forget(gone);
}

#[test]
fn results_in_old_versions() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let r = e.add("ctr1", &c1, &e.conf("0.3.1", &["10.98.0.0/24"], r#""isGateway":true"#));
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(r["ips"][0]["version"], "4");
    assert_eq!(r["ips"][0]["interface"], 2);
    let c2 = Netns::new("c2");
    let r = e.add("ctr2", &c2, &e.conf("0.2.0", &["10.98.0.0/24"], r#""isGateway":true"#));
    assert_eq!(r["cniVersion"], "0.2.0");
    assert!(r["ip4"]["ip"].as_str().unwrap().starts_with("10.98.0."));
    assert_eq!(r["ip4"]["gateway"], "10.98.0.1");
    assert!(r.get("interfaces").is_none());
}

#[test]
fn check_fails_after_tampering() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let conf = e.conf("1.0.0", &["10.97.0.0/24"], r#""isGateway":true"#);
    let r = e.add("ctr1", &c1, &conf);
    let chk = with_prev(&conf, &r);
    e.call("CHECK", "ctr1", &c1).run(&chk).ok();
    let addr = r["ips"][0]["address"].as_str().unwrap();
    c1.sh(&["addr", "del", addr, "dev", "eth0"]);
    let v = e.call("CHECK", "ctr1", &c1).run(&chk).err(999);
    assert!(v["msg"].as_str().unwrap().contains(addr), "{v}");
    c1.sh(&["addr", "add", addr, "dev", "eth0"]);
    e.call("CHECK", "ctr1", &c1).run(&chk).ok();
    // A changed container MAC is caught too.
    c1.sh(&["link", "set", "eth0", "address", "02:11:22:33:44:55"]);
    let v = e.call("CHECK", "ctr1", &c1).run(&chk).err(999);
    assert!(v["msg"].as_str().unwrap().contains("Mac"), "{v}");
    // CHECK without prevResult is refused.
    e.call("CHECK", "ctr1", &c1).run(&conf).err(999);
    // CHECK needs cniVersion >= 0.4.0.
    e.call("CHECK", "ctr1", &c1).run(&e.conf("0.3.1", &["10.97.0.0/24"], "")).err(1);
}

#[test]
fn options_mtu_hairpin_isolation_promisc_dns() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let conf = e.conf(
        "1.0.0",
        &["10.96.0.0/24"],
        r#""mtu":1400,"hairpinMode":true,"portIsolation":true,"dns":{"nameservers":["9.9.9.9"],"search":["example.org"]}"#,
    );
    let r = e.add("ctr1", &c1, &conf);
    let hveth = r["interfaces"][1]["name"].as_str().unwrap();
    let hv = e.node.link(hveth).unwrap();
    assert_eq!(hv["mtu"], 1400);
    assert_eq!(hv["linkinfo"]["info_slave_data"]["hairpin"], true);
    assert_eq!(hv["linkinfo"]["info_slave_data"]["isolated"], true);
    assert_eq!(c1.link("eth0").unwrap()["mtu"], 1400);
    assert_eq!(e.node.link("cbr0").unwrap()["mtu"], 1400);
    assert_eq!(r["dns"]["nameservers"][0], "9.9.9.9");
    assert_eq!(r["dns"]["search"][0], "example.org");

    // promiscMode on another bridge; and the conflict with hairpin is refused before anything is made.
    let c2 = Netns::new("c2");
    let conf2 =
        e.conf("1.0.0", &["10.95.0.0/24"], r#""bridge":"cbr1","promiscMode":true"#).replace(r#""bridge":"cbr0","#, "");
    e.add("ctr2", &c2, &conf2);
    assert!(flags(&e.node.link("cbr1").unwrap()).contains(&"PROMISC".to_string()));
    let c3 = Netns::new("c3");
    let bad = e
        .conf("1.0.0", &["10.94.0.0/24"], r#""bridge":"cbr2","promiscMode":true,"hairpinMode":true"#)
        .replace(r#""bridge":"cbr0","#, "");
    let v = e.call("ADD", "ctr3", &c3).run(&bad).err(7);
    assert!(v["msg"].as_str().unwrap().contains("hairpin"), "{v}");
    assert!(e.node.link("cbr2").is_none());
    assert!(c3.link("eth0").is_none());
}

#[test]
fn container_mac_sources_and_precedence() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    // CNI_ARGS MAC alone.
    let conf = e.conf("1.0.0", &["10.93.0.0/24"], "");
    let mut c = e.call("ADD", "ctr1", &c1);
    c.set("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:00:01");
    let r = c.run(&conf).ok().json();
    assert_eq!(r["interfaces"][2]["mac"], "02:00:00:00:00:01");
    assert_eq!(c1.link("eth0").unwrap()["address"], "02:00:00:00:00:01");
    // runtimeConfig.mac wins over args.cni.mac and CNI_ARGS.
    let c2 = Netns::new("c2");
    let conf2 = e.conf(
        "1.0.0",
        &["10.93.0.0/24"],
        r#""args":{"cni":{"mac":"02:00:00:00:00:02"}},"runtimeConfig":{"mac":"02:00:00:00:00:03"}"#,
    );
    let mut c = e.call("ADD", "ctr2", &c2);
    c.set("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:00:01");
    c.run(&conf2).ok();
    assert_eq!(c2.link("eth0").unwrap()["address"], "02:00:00:00:00:03");
    // A malformed MAC is a config error and creates nothing.
    let c3 = Netns::new("c3");
    let bad = e.conf("1.0.0", &["10.93.0.0/24"], r#""runtimeConfig":{"mac":"nope"}"#);
    e.call("ADD", "ctr3", &c3).run(&bad).err(7);
    assert!(c3.link("eth0").is_none());
}

#[test]
fn layer2_only_and_disabled_container_interface() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let l2 = r#"{"cniVersion":"1.0.0","name":"l2","type":"bridge","bridge":"cbr0","ipam":{}}"#;
    let r = e.add("ctr1", &c1, l2);
    assert!(r.get("ips").is_none());
    assert!(flags(&c1.link("eth0").unwrap()).contains(&"UP".to_string()));
    assert!(c1.addrs("eth0").iter().all(|a| a.starts_with("fe80")));
    let c2 = Netns::new("c2");
    let off = r#"{"cniVersion":"1.0.0","name":"l2","type":"bridge","bridge":"cbr0","disableContainerInterface":true}"#;
    e.add("ctr2", &c2, off);
    assert!(!flags(&c2.link("eth0").unwrap()).contains(&"UP".to_string()));
    let c3 = Netns::new("c3");
    let bad = e.conf("1.0.0", &["10.92.0.0/24"], r#""disableContainerInterface":true"#);
    let v = e.call("ADD", "ctr3", &c3).run(&bad).err(7);
    assert!(v["msg"].as_str().unwrap().contains("DisableContainerInterface"));
}

#[test]
fn enabledad_sets_dad_sysctls() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    e.add("ctr1", &c1, &e.conf("1.0.0", &["fd91::/64"], r#""isGateway":true,"enabledad":true"#));
    assert_eq!(c1.sysctl("net/ipv6/conf/eth0/accept_dad"), "1");
    assert_eq!(c1.sysctl("net/ipv6/conf/eth0/enhanced_dad"), "1");
    // Addresses are no longer tentative when ADD returns (DAD was waited for).
    let v = c1.ip_json(&["-6", "addr", "show", "dev", "eth0", "tentative"]);
    let tentative: Vec<_> =
        v.as_array().unwrap().iter().flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default()).collect();
    assert!(tentative.is_empty(), "{tentative:?}");
}

#[test]
fn force_address_and_rollback_on_gateway_conflict() {
    need_root!();
    let e = Env::new();
    e.node.sh(&["link", "add", "cbr0", "type", "bridge"]);
    e.node.sh(&["addr", "add", "10.90.7.7/24", "dev", "cbr0"]);
    let c1 = Netns::new("c1");
    let conf = e.conf("1.0.0", &["10.90.0.0/24"], r#""isGateway":true"#);
    // Without forceAddress: a clear error, and everything this ADD made is rolled back.
    let v = e.call("ADD", "ctr1", &c1).run(&conf).err(999);
    assert!(v["msg"].as_str().unwrap().contains("already has an IP address different from 10.90.0.1/24"), "{v}");
    assert!(c1.link("eth0").is_none(), "container veth rolled back");
    assert_eq!(e.veths(), Vec::<String>::new(), "host veth rolled back");
    let v4: Vec<String> = e.node.addrs("cbr0").into_iter().filter(|a| !a.starts_with("fe80")).collect();
    assert_eq!(v4, vec!["10.90.7.7/24".to_string()]);
    assert_eq!(e.reservations_of("ctr1"), 0, "reservation rolled back");
    // With forceAddress the old address is replaced; the same container can attach again.
    let forced = e.conf("1.0.0", &["10.90.0.0/24"], r#""isGateway":true,"forceAddress":true"#);
    let r = e.add("ctr1", &c1, &forced);
    assert!(r["ips"][0]["address"].as_str().unwrap().starts_with("10.90.0."));
    assert_eq!(e.reservations_of("ctr1"), 1);
    let addrs = e.node.addrs("cbr0");
    assert!(addrs.contains(&"10.90.0.1/24".to_string()) && !addrs.contains(&"10.90.7.7/24".to_string()), "{addrs:?}");
}

#[test]
fn existing_non_bridge_and_existing_ifname_are_refused() {
    need_root!();
    let e = Env::new();
    e.node.sh(&["link", "add", "cbr0", "type", "veth", "peer", "name", "cbr0p"]);
    let c1 = Netns::new("c1");
    let conf = e.conf("1.0.0", &["10.89.0.0/24"], "");
    let v = e.call("ADD", "ctr1", &c1).run(&conf).err(999);
    assert!(v["msg"].as_str().unwrap().contains("is not a bridge"), "{v}");
    e.node.sh(&["link", "del", "cbr0"]);
    c1.sh(&["link", "add", "eth0", "type", "veth", "peer", "name", "other"]);
    let v = e.call("ADD", "ctr1", &c1).run(&conf).err(999);
    assert!(v["msg"].as_str().unwrap().contains("already exists"), "{v}");
    assert_eq!(e.veths(), Vec::<String>::new());
}

#[test]
fn exhaustion_is_clear_and_leaks_nothing() {
    need_root!();
    let e = Env::new();
    // A /30 has two usable hosts: .1 is the gateway, so exactly one container fits.
    let conf = e.conf("1.0.0", &["10.88.99.0/30"], r#""isGateway":true"#);
    let c1 = Netns::new("c1");
    e.add("ctr1", &c1, &conf);
    let c2 = Netns::new("c2");
    let v = e.call("ADD", "ctr2", &c2).run(&conf).err(999);
    assert!(v["msg"].as_str().unwrap().contains("no IP addresses available"), "{v}");
    assert!(c2.link("eth0").is_none());
    assert_eq!(e.veths().len(), 1, "only ctr1's veth remains");
    assert_eq!(e.reservations_of("ctr2"), 0);
    assert_eq!(e.reservations_of("ctr1"), 1);
}

#[test]
fn ip_masq_backend_iptables_is_refused_naming_the_field() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let conf = e.conf("1.0.0", &["10.87.0.0/24"], r#""ipMasq":true,"ipMasqBackend":"iptables""#);
    let v = e.call("ADD", "ctr1", &c1).run(&conf).err(2);
    assert_eq!(v["details"], "ipMasqBackend");
    assert!(e.node.link("cbr0").is_none());
}

#[test]
fn bad_config_fields_are_named() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let conf = e.conf("1.0.0", &["10.86.0.0/24"], r#""mtu":"big""#);
    let v = e.call("ADD", "ctr1", &c1).run(&conf).err(7);
    assert!(v["msg"].as_str().unwrap().contains("field mtu"), "{v}");
    let conf = e.conf("1.0.0", &["10.86.0.0/24"], r#""vlan":5000"#);
    let v = e.call("ADD", "ctr1", &c1).run(&conf).err(7);
    assert!(v["msg"].as_str().unwrap().contains("invalid VLAN ID 5000"), "{v}");
    assert!(e.node.link("cbr0").is_none(), "nothing created on bad input");
}

#[test]
fn vlan_access_and_trunk() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let conf = e.conf("1.0.0", &["10.85.0.0/24"], r#""vlan":100,"vlanTrunk":[{"id":200},{"minID":300,"maxID":302}]"#);
    let r = e.call("ADD", "ctr1", &c1).run(&conf);
    if r.code != 0 && kernel_lacks("bridge vlan filtering") {
        r.err(999);
        assert!(c1.link("eth0").is_none(), "nothing half-made");
        return;
    }
    let r = r.ok().json();
    let hveth = r["interfaces"][1]["name"].as_str().unwrap();
    let out = e.node.exec(&["bridge", "-j", "vlan", "show", "dev", hveth]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vl = v[0]["vlans"].as_array().unwrap();
    let ids: Vec<u64> = vl.iter().map(|x| x["vlan"].as_u64().unwrap()).collect();
    assert!(ids.contains(&100) && ids.contains(&200) && ids.contains(&300), "{v}");
    assert!(!ids.contains(&1), "default VLAN removed: {v}");
    let access = vl.iter().find(|x| x["vlan"] == 100).unwrap();
    let fl: Vec<&str> = access["flags"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert!(fl.contains(&"PVID") && fl.contains(&"Egress Untagged"), "{access}");
    assert_eq!(e.node.link("cbr0").unwrap()["linkinfo"]["info_data"]["vlan_filtering"], 1);
}

#[test]
fn hundred_parallel_adds_get_distinct_addresses() {
    need_root!();
    let e = Env::new();
    let conf = e.conf("1.0.0", &["10.84.0.0/24"], r#""isGateway":true"#);
    let ctrs: Vec<Netns> = (0..100).map(|i| Netns::new(&format!("p{i}"))).collect();
    let results: Vec<Run> = std::thread::scope(|s| {
        let hs: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let e = &e;
                let conf = &conf;
                s.spawn(move || e.call("ADD", &format!("pod{i}"), c).run(conf))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs: Vec<String> =
        results.iter().map(|r| r.ok().json()["ips"][0]["address"].as_str().unwrap().to_string()).collect();
    for (c, a) in ctrs.iter().zip(&addrs) {
        assert!(c.addrs("eth0").contains(a), "container holds what the result says");
    }
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 100, "100 distinct addresses");
    assert_eq!(e.veths().len(), 100);
    std::thread::scope(|s| {
        for (i, c) in ctrs.iter().enumerate() {
            let e = &e;
            let conf = &conf;
            s.spawn(move || e.call("DEL", &format!("pod{i}"), c).run(conf).ok().code);
        }
    });
    assert_eq!(e.veths().len(), 0);
    for i in 0..100 {
        assert_eq!(e.reservations_of(&format!("pod{i}")), 0, "pod{i} still holds an address");
    }
}

#[test]
fn ipam_delegate_by_exec_and_its_failure() {
    need_root!();
    let e = Env::new();
    // A third-party IPAM plugin (not this binary) is exec'd with the same CNI_* and the full config.
    let script = e.tmp.join("bin").join("scriptipam");
    let log = e.tmp.join("ipam.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncfg=$(cat)\necho \"$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME\" >> {log}\n\
             case \"$cfg\" in *fail*) echo '{{\"code\":11,\"msg\":\"pool busy\",\"details\":\"retry\"}}'; exit 1;; esac\n\
             [ \"$CNI_COMMAND\" = ADD ] && echo '{{\"cniVersion\":\"0.3.1\",\"ips\":[{{\"version\":\"4\",\"address\":\"10.83.0.9/24\"}}],\"dns\":{{}}}}'\nexit 0\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let conf = r#"{"cniVersion":"1.0.0","name":"x","type":"bridge","bridge":"cbr0","isGateway":true,"ipam":{"type":"scriptipam"}}"#;
    let c1 = Netns::new("c1");
    let r = e.add("ctr1", &c1, conf);
    assert_eq!(r["ips"][0]["address"], "10.83.0.9/24");
    assert_eq!(r["ips"][0]["gateway"], "10.83.0.1");
    assert!(c1.addrs("eth0").contains(&"10.83.0.9/24".to_string()));
    e.call("DEL", "ctr1", &c1).run(conf).ok();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.lines().collect::<Vec<_>>(), ["ADD ctr1 eth0", "DEL ctr1 eth0"]);
    // A failing delegate's CNI error reaches the caller unchanged, and the veth is rolled back.
    let c2 = Netns::new("c2");
    let failing = conf.replace(r#""name":"x""#, r#""name":"fail""#);
    let v = e.call("ADD", "ctr2", &c2).run(&failing).err(11);
    assert_eq!(v["msg"], "pool busy");
    assert!(c2.link("eth0").is_none());
    assert_eq!(e.veths(), Vec::<String>::new());
    // The spec asks for a DEL of the delegate after its failed ADD.
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.ends_with("ADD ctr2 eth0\nDEL ctr2 eth0\n"), "{calls}");
    // A missing IPAM plugin is named.
    let c3 = Netns::new("c3");
    let v = e.call("ADD", "ctr3", &c3).run(&conf.replace("scriptipam", "nosuchipam")).err(999);
    assert!(v["msg"].as_str().unwrap().contains("failed to find plugin \"nosuchipam\""), "{v}");
}
