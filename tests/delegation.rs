//! A plugin delegating to itself, directly or through others, is refused
//! with a CNI error naming the chain (code 7), in bounded time, leaving no
//! interface behind: in-process delegation and exec'd delegates alike.

mod common;
use common::*;
use std::time::{Duration, Instant};

struct Lab {
    tmp: TempDir,
    path: String,
    node: Netns,
    ctr: Netns,
}

impl Lab {
    fn new() -> Lab {
        let tmp = TempDir::new("deleg");
        let path = plugin_dir(&tmp);
        std::fs::write(
            tmp.join("subnet.env"),
            "FLANNEL_NETWORK=10.66.0.0/16\nFLANNEL_SUBNET=10.66.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        )
        .unwrap();
        Lab { tmp, path, node: Netns::new("node"), ctr: Netns::new("ctr") }
    }

    /// ADD then DEL of `conf`: both refused with code 7 naming `chain`, quickly, and nothing left.
    fn refused(&self, conf: &str, chain: &str) {
        for cmd in ["ADD", "DEL"] {
            let t = Instant::now();
            let r = Call::cni(&self.node, "bridge", cmd, "ctr1", &self.ctr.path(), "eth0", &self.path).run(conf);
            assert!(t.elapsed() < Duration::from_secs(5), "{cmd} took {:?}", t.elapsed());
            assert!(!r.stderr.contains("overflow") && !r.stderr.contains("panicked"), "{}", r.stderr);
            let v = r.err(7);
            let msg = v["msg"].as_str().unwrap();
            assert_eq!(msg, format!("plugin delegation loops: {chain}"), "{cmd}: {v}");
            assert!(v["details"].as_str().unwrap().contains("cannot delegate"), "{v}");
        }
        let veths: Vec<String> = self
            .node
            .links()
            .iter()
            .filter(|l| l["linkinfo"]["info_kind"] == "veth")
            .map(|l| l["ifname"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(veths.is_empty(), "veths left in the node: {veths:?}");
        let left: Vec<String> =
            self.ctr.links().iter().map(|l| l["ifname"].as_str().unwrap_or("").to_string()).collect();
        assert_eq!(left, ["lo"], "interfaces left in the container");
    }

    fn flannel(&self, extra: &str) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"fl","type":"flannel","subnetFile":"{}","dataDir":"{}"{extra}}}"#,
            self.tmp.join("subnet.env").display(),
            self.tmp.join("flannel").display()
        )
    }
}

#[test]
fn a_plugin_delegating_to_itself_is_refused() {
    need_root!();
    let lab = Lab::new();
    lab.refused(
        r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"cbr9","ipam":{"type":"bridge"}}"#,
        "bridge -> bridge",
    );
    let fl = lab.flannel(r#","delegate":{"type":"flannel"}"#);
    let r = Call::cni(&lab.node, "flannel", "ADD", "ctr1", &lab.ctr.path(), "eth0", &lab.path).run(&fl);
    assert_eq!(r.err(7)["msg"], "plugin delegation loops: flannel -> flannel");
}

#[test]
fn a_cycle_through_another_plugin_is_refused() {
    need_root!();
    let lab = Lab::new();
    // bridge -> flannel -> bridge: flannel as the IPAM (it reads the top-level
    // config) hands bridge an ipam of type flannel
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"fl","type":"bridge","bridge":"cbr9","subnetFile":"{}","dataDir":"{}","ipam":{{"type":"flannel"}}}}"#,
        lab.tmp.join("subnet.env").display(),
        lab.tmp.join("flannel").display()
    );
    let t = Instant::now();
    let r = Call::cni(&lab.node, "bridge", "ADD", "ctr1", &lab.ctr.path(), "eth0", &lab.path).run(&conf);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let v = r.err(7);
    assert!(v["msg"].as_str().unwrap().starts_with("plugin delegation loops: bridge -> flannel -> bridge"), "{v}");
    assert!(lab.ctr.links().len() == 1 && lab.node.links().iter().all(|l| l["linkinfo"]["info_kind"] != "veth"));
    // flannel -> bridge -> flannel
    lab.refused_flannel_through_bridge();
}

impl Lab {
    fn refused_flannel_through_bridge(&self) {
        let fl = self.flannel(r#","ipam":{"type":"flannel"}"#);
        let t = Instant::now();
        let r = Call::cni(&self.node, "flannel", "ADD", "ctr2", &self.ctr.path(), "eth0", &self.path).run(&fl);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(r.err(7)["msg"], "plugin delegation loops: flannel -> bridge -> flannel");
        assert_eq!(self.ctr.links().len(), 1);
    }
}

#[test]
fn a_cycle_through_an_executed_copy_is_refused() {
    need_root!();
    let lab = Lab::new();
    // flannel is a copy of the binary, not a link to it: bridge execs it, and
    // the copy, finding bridge is not itself, would exec bridge in turn.
    let fl = std::path::Path::new(&lab.path).join("flannel");
    std::fs::remove_file(&fl).unwrap();
    std::fs::copy(bin(), &fl).unwrap();
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"fl","type":"bridge","bridge":"cbr9","subnetFile":"{}","dataDir":"{}","ipam":{{"type":"flannel"}}}}"#,
        lab.tmp.join("subnet.env").display(),
        lab.tmp.join("flannel").display()
    );
    let t = Instant::now();
    let r = Call::cni(&lab.node, "bridge", "ADD", "ctr1", &lab.ctr.path(), "eth0", &lab.path).run(&conf);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let v = r.err(7);
    assert!(v["msg"].as_str().unwrap().contains("plugin delegation loops: bridge -> flannel -> bridge"), "{v}");
    assert_eq!(lab.ctr.links().len(), 1);
    assert!(lab.node.links().iter().all(|l| l["linkinfo"]["info_kind"] != "veth"));
}

/// An IPAM plugin that is not cnibox (a script: always exec'd, never run in
/// process) and writes 2 MiB before it reads its config of 1 MiB: bridge
/// must write the one and read the other together, or each waits for the
/// other for ever (the script's write gives up after 10 s so that the test
/// fails instead of hanging). The delegate gets the config byte for byte,
/// bridge's environment with the CNI_* and chain variables replaced, and
/// no descriptor of bridge's; its DEL exits without reading its config,
/// which bridge takes in its stride (EPIPE, not SIGPIPE).
#[test]
fn an_executed_delegate_gets_a_large_config_and_gives_a_large_result() {
    need_root!();
    let lab = Lab::new();
    let seen = lab.tmp.join("seen");
    std::fs::create_dir(&seen).unwrap();
    let script = format!(
        r#"#!/bin/sh
d={seen}
ls -l /proc/self/fd > $d/fds.$CNI_COMMAND
env > $d/env.$CNI_COMMAND
[ "$CNI_COMMAND" = ADD ] || exit 0
timeout 10 printf '%2097152s' '' || exit 3
cat > $d/stdin.ADD
printf '{{"cniVersion":"1.0.0","ips":[{{"address":"10.66.9.5/24","gateway":"10.66.9.1"}}]}}'
"#,
        seen = seen.display()
    );
    let fake = std::path::Path::new(&lab.path).join("bigipam");
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let head = r#"{"cniVersion":"1.0.0","name":"big","type":"bridge","bridge":"cbr8","isGateway":true,"ipam":{"type":"bigipam"},"pad":""#;
    let conf = format!("{head}{}\"}}", "x".repeat((1 << 20) - head.len() - 2));
    assert_eq!(conf.len(), 1 << 20);
    // What the test process holds may pass down; nothing bridge opens may.
    let ours: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    let call = |cmd: &str| {
        let mut c = Call::cni(&lab.node, "bridge", cmd, "ctr1", &lab.ctr.path(), "eth0", &lab.path);
        c.set("CNIBOX_DELEGATION", "outer").set("CNIBOX_TEST_INHERITED", "kept");
        let t = Instant::now();
        let r = c.run(&conf);
        assert!(t.elapsed() < Duration::from_secs(8), "{cmd} took {:?}: {}", t.elapsed(), r.stderr);
        r
    };
    let r = call("ADD").into_ok();
    assert_eq!(r.json()["ips"][0]["address"], "10.66.9.5/24", "{}", r.stdout);
    assert!(lab.ctr.addrs("eth0").contains(&"10.66.9.5/24".to_string()), "{:?}", lab.ctr.addrs("eth0"));
    assert!(std::fs::read(seen.join("stdin.ADD")).unwrap() == conf.as_bytes(), "the config did not get through whole");
    let env = std::fs::read_to_string(seen.join("env.ADD")).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    for want in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=ctr1",
        "CNI_IFNAME=eth0",
        &format!("CNI_NETNS={}", lab.ctr.path()),
        &format!("CNI_PATH={}", lab.path),
        "CNIBOX_DELEGATION=outer,bridge",
        "CNIBOX_TEST_INHERITED=kept",
    ] {
        assert!(lines.contains(&want), "{want} not in the delegate's environment:\n{env}");
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("CNIBOX_DELEGATION=")).count(), 1, "{env}");
    // Beyond 0-2, only what the test process itself holds (and the
    // directory `ls` reads).
    let fds = std::fs::read_to_string(seen.join("fds.ADD")).unwrap();
    let fds: Vec<(u32, &str)> = fds
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(fd, to)| (fd.rsplit(' ').next().unwrap().parse().unwrap(), to))
        .collect();
    let std_fds: Vec<&str> = fds.iter().filter(|(fd, _)| *fd <= 2).map(|(_, to)| *to).collect();
    assert_eq!(std_fds.len(), 3, "{fds:?}");
    for (fd, to) in &fds {
        let fine = *fd <= 2 || to.starts_with("/proc/") || ours.iter().any(|o| o == to);
        assert!(fine, "fd {fd} -> {to} leaked into the delegate: {fds:?}");
    }
    let r = call("DEL").into_ok();
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(std::fs::read_to_string(seen.join("env.DEL")).unwrap().lines().any(|l| l == "CNI_COMMAND=DEL"));
    assert!(lab.ctr.links().len() == 1 && lab.node.links().iter().all(|l| l["linkinfo"]["info_kind"] != "veth"));
}
