//! The bridge's MAC: pinned (the kernel's `addr_assign_type` 3, "set") so
//! that it never follows its ports, before the ADD's own port joins, and
//! reported as the kernel has it. A bridge the ADD creates gets its MAC in
//! the creating request; one found unpinned (made by hand or by the
//! reference plugin) is pinned to the MAC it has.

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
        let tmp = TempDir::new("brmac");
        let path = plugin_dir(&tmp);
        Env { node: Netns::new("node"), path, tmp }
    }

    fn conf(&self) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"macnet","type":"bridge","bridge":"cbr0","isGateway":true,
               "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.97.0.0/24"}}]]}}}}"#,
            self.tmp.join("ipam").display()
        )
    }

    fn call(&self, cmd: &str, id: &str, ctr: &Netns) -> Call<'_> {
        Call::cni(&self.node, "bridge", cmd, id, &ctr.path(), "eth0", &self.path)
    }

    fn add(&self, id: &str, ctr: &Netns) -> Value {
        self.call("ADD", id, ctr).run(&self.conf()).ok().json()
    }

    fn mac(&self) -> Value {
        self.node.link("cbr0").expect("bridge exists")["address"].clone()
    }

    /// 3 (NET_ADDR_SET): the bridge keeps its MAC whatever its ports are.
    fn assign_type(&self) -> String {
        let out = self.node.exec(&["cat", "/sys/class/net/cbr0/addr_assign_type"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

#[test]
fn a_bridge_the_add_creates_has_its_own_mac_from_the_start() {
    need_root!();
    let e = Env::new();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let r1 = e.add("ctr1", &c1);
    assert_eq!(e.assign_type(), "3", "pinned when created");
    let mac = e.mac();
    assert_eq!(r1["interfaces"][0]["mac"], mac, "reported as the kernel has it");
    let r2 = e.add("ctr2", &c2);
    assert_eq!(r2["interfaces"][0]["mac"], mac);
    e.call("DEL", "ctr1", &c1).run(&e.conf()).ok();
    assert_eq!(e.mac(), mac, "a port leaving changes nothing");
    e.call("DEL", "ctr2", &c2).run(&e.conf()).ok();
    assert_eq!(e.mac(), mac, "nor the last one");
}

#[test]
fn a_bridge_found_unpinned_is_pinned_to_the_mac_it_has() {
    need_root!();
    let e = Env::new();
    // A bridge made by hand, following its one port (the lowest MAC there is).
    e.node.sh(&["link", "add", "cbr0", "type", "bridge"]);
    e.node.sh(&["link", "add", "vlow", "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", "vlowp"]);
    e.node.sh(&["link", "set", "vlow", "master", "cbr0"]);
    assert_eq!(e.mac(), "02:00:00:00:00:01", "an unpinned bridge takes its port's MAC");
    assert_ne!(e.assign_type(), "3");
    let c1 = Netns::new("c1");
    let r1 = e.add("ctr1", &c1);
    assert_eq!(e.assign_type(), "3", "pinned by the ADD");
    assert_eq!(e.mac(), "02:00:00:00:00:01", "to the MAC it had");
    assert_eq!(r1["interfaces"][0]["mac"], "02:00:00:00:00:01");
    // The port it followed goes: the MAC stays.
    e.node.sh(&["link", "del", "vlow"]);
    assert_eq!(e.mac(), "02:00:00:00:00:01");
    e.call("DEL", "ctr1", &c1).run(&e.conf()).ok();
    assert_eq!(e.mac(), "02:00:00:00:00:01");
}
