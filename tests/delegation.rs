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
