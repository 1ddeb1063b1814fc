//! bridge `ipMasq`: containers reach an "outside" namespace through the node,
//! which masquerades them. The outside has no route back to the container
//! subnet, so an answer arriving at all proves the masquerade, and the
//! address the outside saw says who it was.
//!
//! ```text
//!  c1, c2 ── cbr0 10.99.0.1 [node] vo0 192.168.78.1 ── outside 192.168.78.2
//!             fd99::1               fd78::1                    fd78::2
//! ```

#[path = "nft_support/mod.rs"]
mod support;
use serde_json::Value;
use support::common;
use support::*;

struct Env {
    tmp: TempDir,
    path: String,
    node: Netns,
    outside: Netns,
}

impl Env {
    fn new() -> Env {
        let tmp = TempDir::new("masq");
        let path = plugin_dir(&tmp);
        let node = Netns::new("node");
        let outside = Netns::new("out");
        veth(&node, "vo0", &["192.168.78.1/24", "fd78::1/64"], &outside, "eth0", &["192.168.78.2/24", "fd78::2/64"]);
        Env { tmp, path, node, outside }
    }

    fn conf(&self, version: &str) -> String {
        format!(
            r#"{{"cniVersion":"{version}","name":"masqnet","type":"bridge","bridge":"cbr0","isDefaultGateway":true,"ipMasq":true,
               "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.99.0.0/24"}}],[{{"subnet":"fd99::/64"}}]]}}}}"#,
            self.tmp.join("ipam").display()
        )
    }

    fn call(&self, cmd: &str, id: &str, ctr: &Netns) -> Call<'_> {
        Call::cni(&self.node, "bridge", cmd, id, &ctr.path(), "eth0", &self.path)
    }

    /// The node's masquerade rules: their comments.
    fn masq_comments(&self) -> Vec<String> {
        rules(&self.node)
            .into_iter()
            .filter(|r| r.1 == "cni_plugins_masquerade" && r.2 == "masq_checks")
            .map(|r| r.3)
            .collect()
    }
}

/// The reference's comment for an attachment, computed here independently.
fn comment_prefix(net: &str, ifname: &str, id: &str) -> String {
    let h = |s: &str| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import hashlib,sys; print(hashlib.sha512(sys.argv[1].encode()).hexdigest()[:16])", s])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    format!("{}-{}, net: {net}, if: {ifname}, id: {id}", h(net), h(&format!("{ifname}:{id}")))
}

#[test]
fn containers_reach_the_outside_as_the_node_until_del_without_netns() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let _srv = serve(&e.outside, "out", 80);
    let conf = e.conf("1.0.0");
    let r = e.call("ADD", "ctr-m1", &c1).run(&conf).ok().json();

    let want = comment_prefix("masqnet", "eth0", "ctr-m1");
    assert_eq!(e.masq_comments(), vec![want.clone(), want], "{}", ruleset_text(&e.node));
    let text = ruleset_text(&e.node);
    for line in [
        "ip saddr 10.99.0.2 ip daddr != 10.99.0.0/24 masquerade",
        "ip6 saddr fd99::2 ip6 daddr != fd99::/64 masquerade",
        "type nat hook postrouting priority srcnat; policy accept;",
        // multicast leaves unmasqueraded
        "ip daddr 224.0.0.0/4 return",
        "ip6 daddr ff00::/8 return",
        "goto masq_checks",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }

    assert_eq!(talk(&c1, "tcp", "192.168.78.2", 80).as_deref(), Some("out 192.168.78.1"));
    assert_eq!(talk(&c1, "udp", "192.168.78.2", 80).as_deref(), Some("out 192.168.78.1"));
    assert_eq!(talk(&c1, "tcp", "fd78::2", 80).as_deref(), Some("out fd78::1"));
    assert!(c1.ping("192.168.78.2"));
    // Inside the subnet nothing is masqueraded: the node's bridge address sees the container itself.
    let _own = serve(&e.node, "node", 81);
    assert_eq!(talk(&c1, "tcp", "10.99.0.1", 81).as_deref(), Some("node 10.99.0.2"));

    e.call("CHECK", "ctr-m1", &c1).run(&with_prev(&conf, &r)).ok();

    // DEL as a runtime sends it when the container is already gone: no CNI_NETNS.
    let mut del = e.call("DEL", "ctr-m1", &c1);
    del.set("CNI_NETNS", "");
    del.run(&conf).ok();
    assert!(e.masq_comments().is_empty(), "{}", ruleset_text(&e.node));
    assert_eq!(talk(&c1, "tcp", "192.168.78.2", 80), None, "without masquerade the outside cannot answer");
    del.run(&conf).ok();
}

#[test]
fn check_notices_a_missing_rule_and_gc_keeps_only_valid_attachments() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let conf = e.conf("1.1.0");
    let r1: Value = e.call("ADD", "ctr-g1", &c1).run(&conf).ok().json();
    e.call("ADD", "ctr-g2", &c2).run(&conf).ok();
    assert_eq!(e.masq_comments().len(), 4);

    // A rule deleted behind our back is reported by CHECK.
    let h = e.node.exec(&["nft", "-a", "list", "chain", "inet", "cni_plugins_masquerade", "masq_checks"]);
    let text = String::from_utf8_lossy(&h.stdout).into_owned();
    let line = text.lines().find(|l| l.contains("ip saddr 10.99.0.2 ")).expect("rule of ctr-g1");
    let handle = line.rsplit(' ').next().unwrap();
    nft_apply(&e.node, &format!("delete rule inet cni_plugins_masquerade masq_checks handle {handle}\n"));
    let v = e.call("CHECK", "ctr-g1", &c1).run(&with_prev(&conf, &r1)).err(999);
    assert!(v["msg"].as_str().unwrap().contains("no masquerade rule for 10.99.0.2"), "{v}");

    // GC with only ctr-g2 valid removes what is left of ctr-g1.
    let gc = format!(
        r#"{{"cniVersion":"1.1.0","name":"masqnet","type":"bridge","bridge":"cbr0","ipMasq":true,
           "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.99.0.0/24"}}],[{{"subnet":"fd99::/64"}}]]}},
           "cni.dev/valid-attachments":[{{"containerID":"ctr-g2","ifname":"eth0"}}]}}"#,
        e.tmp.join("ipam").display()
    );
    let mut c = Call::new(Some(&e.node), "bridge");
    c.set("CNI_COMMAND", "GC").set("CNI_PATH", &e.path);
    c.run(&gc).ok();
    let want = comment_prefix("masqnet", "eth0", "ctr-g2");
    assert_eq!(e.masq_comments(), vec![want.clone(), want]);
}
