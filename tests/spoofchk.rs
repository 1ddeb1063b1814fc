//! bridge `macspoofchk`: frames a container sends with a source MAC other
//! than its own are dropped on the bridge; its real MAC passes.

#[path = "nft_support/mod.rs"]
mod support;
use serde_json::Value;
use support::common;
use support::*;

fn conf(tmp: &TempDir) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"spoofnet","type":"bridge","bridge":"cbr0","isGateway":true,"macspoofchk":true,
           "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.98.0.0/24"}}]]}}}}"#,
        tmp.join("ipam").display()
    )
}

fn ours(node: &Netns, id: &str) -> (Vec<String>, Vec<(String, String)>) {
    let r = format!("{id}-eth0");
    let chains =
        chains(node).into_iter().filter(|c| c.0 == "bridge" && c.1 == "nat" && c.2.contains(&r)).map(|c| c.2).collect();
    let rules = rules(node)
        .into_iter()
        .filter(|x| x.0 == "bridge" && x.3 == format!("macspoofchk-{r}"))
        .map(|x| (x.2, x.3))
        .collect();
    (chains, rules)
}

#[test]
fn spoofed_source_mac_is_dropped_and_the_real_one_passes() {
    need_root!();
    let tmp = TempDir::new("spoof");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let conf = conf(&tmp);
    let call = |cmd: &str, id: &str, ctr: &Netns| Call::cni(&node, "bridge", cmd, id, &ctr.path(), "eth0", &path);
    let r1: Value = call("ADD", "ctr-s1", &c1).run(&conf).ok().json();
    let r2: Value = call("ADD", "ctr-s2", &c2).run(&conf).ok().json();
    let mac1 = r1["interfaces"][2]["mac"].as_str().unwrap().to_string();
    let veth1 = r1["interfaces"][1]["name"].as_str().unwrap().to_string();

    let (chains, rules) = ours(&node, "ctr-s1");
    assert_eq!(chains, ["cni-br-iface-ctr-s1-eth0", "cni-br-iface-ctr-s1-eth0-mac"], "{}", ruleset_text(&node));
    let in_chains: Vec<&str> = rules.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        in_chains,
        ["PREROUTING", "cni-br-iface-ctr-s1-eth0", "cni-br-iface-ctr-s1-eth0-mac", "cni-br-iface-ctr-s1-eth0-mac"]
    );
    let text = ruleset_text(&node);
    assert!(
        text.contains(&format!(
            "iifname \"{veth1}\" jump cni-br-iface-ctr-s1-eth0 comment \"macspoofchk-ctr-s1-eth0\""
        )),
        "{text}"
    );
    assert!(text.contains(&format!("ether saddr {mac1} return comment")), "{text}");
    assert!(text.contains("type filter hook prerouting priority dstnat; policy accept;"), "{text}");

    let ip2 = r2["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    let ip2 = ip2.as_str();
    assert!(c1.ping(ip2), "the real MAC passes");
    c1.sh(&["link", "set", "eth0", "address", "02:de:ad:be:ef:01"]);
    assert!(!c1.ping(ip2), "a spoofed source MAC is dropped");
    // the other container is not affected
    assert!(c2.ping("10.98.0.1"));
    c1.sh(&["link", "set", "eth0", "address", &mac1]);
    assert!(c1.ping(ip2), "the real MAC passes again");

    call("CHECK", "ctr-s1", &c1).run(&support::with_prev(&conf, &r1)).ok();

    call("DEL", "ctr-s1", &c1).run(&conf).ok();
    let (chains, rules) = ours(&node, "ctr-s1");
    assert!(chains.is_empty() && rules.is_empty(), "{}", ruleset_text(&node));
    assert_eq!(ours(&node, "ctr-s2").1.len(), 4, "the other container keeps its rules");
    call("DEL", "ctr-s1", &c1).run(&conf).ok();
    let mut del = call("DEL", "ctr-s2", &c2);
    del.set("CNI_NETNS", "");
    del.run(&conf).ok();
    assert!(ours(&node, "ctr-s2").0.is_empty(), "{}", ruleset_text(&node));
}
