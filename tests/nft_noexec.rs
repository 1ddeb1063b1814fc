//! cnibox writes its nftables rules itself: a whole ADD/CHECK/DEL of portmap,
//! and of bridge with ipMasq and macspoofchk (host-local IPAM included),
//! makes no execve besides the one that started it (traced with `strace -f`).

#[path = "nft_support/mod.rs"]
mod support;
use serde_json::json;
use support::common;
use support::*;

fn assert_only_self(what: &str, run: &Run, execs: &[String]) {
    assert_eq!(run.code, 0, "{what}: {} {}", run.stdout, run.stderr);
    assert_eq!(execs.len(), 1, "{what} ran other programs:\n{}", execs.join("\n"));
}

#[test]
fn portmap_and_bridge_spawn_nothing() {
    need_root!();
    let tmp = TempDir::new("noexec");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    veth(&node, "vc1", &["10.88.1.1/24"], &ctr, "eth0", &["10.88.1.5/24"]);

    let pm = json!({"cniVersion": "1.0.0", "name": "n", "type": "portmap",
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "udp"}]},
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ctr.path()}],
                       "ips": [{"address": "10.88.1.5/24", "interface": 0}]}})
    .to_string();
    let exe = format!("{path}/portmap");
    let ctr_path = ctr.path();
    // An untraced call (a DEL of nothing) starts the node's nftables socket
    // keeper first: `strace -f` would follow a keeper started by a traced
    // call and wait for it to leave. The keeper only forks, never execs.
    let env = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "ctr-none"),
        ("CNI_NETNS", ctr_path.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", path.as_str()),
    ];
    let mut warm = Call::new(Some(&node), "portmap");
    for (k, v) in env {
        warm.set(k, v);
    }
    warm.run(&pm).ok();
    assert_eq!(node.keepers().len(), 1, "a keeper in the node namespace");
    for cmd in ["ADD", "CHECK", "DEL"] {
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "ctr-x"),
            ("CNI_NETNS", ctr_path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", path.as_str()),
        ];
        let (run, execs) = execves(&node, &tmp, &exe, &env, &pm);
        assert_only_self(&format!("portmap {cmd}"), &run, &execs);
    }

    let c2 = Netns::new("c2");
    let br = format!(
        r#"{{"cniVersion":"1.0.0","name":"brnet","type":"bridge","bridge":"cbr0","isGateway":true,"ipMasq":true,"macspoofchk":true,
           "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.97.0.0/24"}}]]}}}}"#,
        tmp.join("ipam").display()
    );
    let exe = format!("{path}/bridge");
    let c2_path = c2.path();
    let env = |cmd: &'static str| {
        [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "ctr-b"),
            ("CNI_NETNS", c2_path.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", path.as_str()),
        ]
    };
    let (run, execs) = execves(&node, &tmp, &exe, &env("ADD"), &br);
    assert_only_self("bridge ADD", &run, &execs);
    assert_eq!(
        rules(&node).iter().filter(|r| (r.1 == "cni_plugins_masquerade" || r.1 == "nat") && !r.3.is_empty()).count(),
        5,
        "{}",
        ruleset_text(&node)
    );
    let prev: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let (run, execs) = execves(&node, &tmp, &exe, &env("CHECK"), &with_prev(&br, &prev));
    assert_only_self("bridge CHECK", &run, &execs);
    let (run, execs) = execves(&node, &tmp, &exe, &env("DEL"), &br);
    assert_only_self("bridge DEL", &run, &execs);
}
