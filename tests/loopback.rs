//! loopback, run as containerd runs it, against real namespaces.

mod common;
use common::*;

const CONF_031: &str = r#"{"cniVersion":"0.3.1","name":"cni-loopback","type":"loopback"}"#;

fn call<'a>(node: &'a Netns, cmd: &str, netns: &str, path: &str) -> Call<'a> {
    Call::cni(node, "loopback", cmd, "ctr1", netns, "lo", path)
}

#[test]
fn add_check_del_as_containerd_calls_it() {
    need_root!();
    let tmp = TempDir::new("lo");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    ctr.sh(&["link", "set", "lo", "down"]);
    assert!(!ctr.ping("127.0.0.1"));

    let r = call(&node, "ADD", &ctr.path(), &path).run(CONF_031);
    let v = r.ok().json();
    assert_eq!(v["cniVersion"], "0.3.1");
    assert_eq!(v["interfaces"][0]["name"], "lo");
    assert_eq!(v["interfaces"][0]["mac"], "00:00:00:00:00:00");
    assert_eq!(v["interfaces"][0]["sandbox"], ctr.path().as_str());
    assert_eq!(v["ips"][0]["address"], "127.0.0.1/8");
    assert_eq!(v["ips"][0]["version"], "4");
    assert_eq!(v["ips"][0]["interface"], 0);
    assert_eq!(v["ips"][1]["address"], "::1/128");
    assert!(ctr.link("lo").unwrap()["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert!(ctr.ping("127.0.0.1"), "lo must answer after ADD");
    // the node's own lo was not touched (it is up from Netns::new and stays so)
    assert!(node.ping("127.0.0.1"));

    let chk = r#"{"cniVersion":"1.0.0","name":"cni-loopback","type":"loopback"}"#;
    call(&node, "CHECK", &ctr.path(), &path).run(chk).ok();

    call(&node, "DEL", &ctr.path(), &path).run(CONF_031).ok();
    assert!(!ctr.link("lo").unwrap()["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    // CHECK now fails: lo is down
    let e = call(&node, "CHECK", &ctr.path(), &path).run(chk).err(999);
    assert!(e["msg"].as_str().unwrap().contains("down"));
    // DEL again, and DEL with the namespace gone or unset, all succeed
    call(&node, "DEL", &ctr.path(), &path).run(CONF_031).ok();
    call(&node, "DEL", "/run/netns/does-not-exist", &path).run(CONF_031).ok();
    let mut c = Call::new(Some(&node), "loopback");
    c.set("CNI_COMMAND", "DEL").set("CNI_CONTAINERID", "ctr1").set("CNI_IFNAME", "lo").set("CNI_PATH", &path);
    c.run(CONF_031).ok();
}

#[test]
fn add_returns_prev_result_when_chained() {
    need_root!();
    let tmp = TempDir::new("lo");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    let conf = r#"{"cniVersion":"1.0.0","name":"n","type":"loopback",
        "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.2/24"}]}}"#;
    let v = call(&node, "ADD", &ctr.path(), &path).run(conf).ok().json();
    assert_eq!(v["ips"][0]["address"], "10.9.0.2/24");
    assert!(v.get("interfaces").is_none());
}

#[test]
fn refuses_the_node_namespace_itself() {
    need_root!();
    let tmp = TempDir::new("lo");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    // CNI_NETNS names the namespace the plugin runs in: refused before any change.
    let e = call(&node, "DEL", &node.path(), &path).run(CONF_031).err(8);
    assert!(e["msg"].as_str().unwrap().contains("should not be the same"));
    assert!(node.ping("127.0.0.1"), "node lo must still be up");
    // with CNI_NETNS_OVERRIDE the caller takes responsibility
    let mut c = call(&node, "DEL", &node.path(), &path);
    c.set("CNI_NETNS_OVERRIDE", "1");
    c.run(CONF_031).ok();
    assert!(!node.ping("127.0.0.1"));
}

#[test]
fn add_into_missing_or_bogus_netns_is_a_clear_error() {
    need_root!();
    let tmp = TempDir::new("lo");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let e = call(&node, "ADD", "/run/netns/does-not-exist", &path).run(CONF_031).err(999);
    assert!(e["msg"].as_str().unwrap().contains("does-not-exist"), "{e}");
    let file = tmp.join("plainfile");
    std::fs::write(&file, "x").unwrap();
    let e = call(&node, "ADD", &file.to_string_lossy(), &path).run(CONF_031).err(8);
    assert!(e["msg"].as_str().unwrap().contains("not a valid network namespace"), "{e}");
}
