//! host-local, run as a runtime (or the bridge plugin) runs it: CNI_* in the
//! environment, the network config on stdin, a private dataDir. IPAM touches
//! no network namespace, so CNI_NETNS names a path that does not exist.
//! Every test checks what the state file on disk holds afterwards.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const NETNS: &str = "/nonexistent/netns";

struct Net {
    tmp: TempDir,
    name: &'static str,
}

impl Net {
    fn new() -> Net {
        Net { tmp: TempDir::new("hl"), name: "testnet" }
    }

    fn data_dir(&self) -> String {
        self.tmp.join("data").to_string_lossy().into_owned()
    }

    fn dir(&self) -> PathBuf {
        self.tmp.join("data").join(self.name)
    }

    /// A config of version `v` whose `ipam` is `ipam` plus this network's dataDir.
    fn conf(&self, v: &str, mut ipam: Value) -> String {
        ipam["type"] = json!("host-local");
        if ipam.get("dataDir").is_none() {
            ipam["dataDir"] = json!(self.data_dir());
        }
        json!({"cniVersion": v, "name": self.name, "type": "bridge", "ipam": ipam}).to_string()
    }

    fn run(&self, cmd: &str, id: &str, ifname: &str, args: &str, conf: &str) -> Run {
        let mut c = Call::new(None, "host-local");
        c.set("CNI_COMMAND", cmd).set("CNI_CONTAINERID", id).set("CNI_NETNS", NETNS).set("CNI_IFNAME", ifname);
        c.set("CNI_PATH", "/nonexistent/bin").set("CNI_ARGS", args);
        c.run(conf)
    }

    fn add(&self, id: &str, conf: &str) -> Value {
        self.run("ADD", id, "eth0", "", conf).ok().json()
    }

    fn del(&self, id: &str, conf: &str) {
        self.run("DEL", id, "eth0", "", conf).ok();
    }

    /// The reservations in the state file: "address id ifname", in file order.
    fn held(&self) -> Vec<String> {
        held_in(&self.dir())
    }
}

fn held_in(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("cnibox.state")).unwrap_or_default();
    assert!(text.is_empty() || text.starts_with("# cnibox host-local v1 size="), "header: {text}");
    text.lines()
        .filter(|l| l.split(' ').next().is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok()))
        .map(str::to_string)
        .collect()
}

fn addrs(v: &Value) -> Vec<String> {
    v["ips"].as_array().unwrap().iter().map(|i| i["address"].as_str().unwrap().to_string()).collect()
}

fn dual() -> Value {
    json!({"ranges": [[{"subnet": "10.22.0.0/29"}], [{"subnet": "fd00:22::/124"}]], "routes": [{"dst": "0.0.0.0/0"}]})
}

#[test]
fn results_in_every_version_match_the_reference() {
    let n = Net::new();
    let v = n.add("c1", &n.conf("0.3.1", dual()));
    // the reference's own output for this config (cni-reference.md §1.6), but the first address
    assert_eq!(
        v,
        json!({"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.22.0.2/29","gateway":"10.22.0.1"},
            {"version":"6","address":"fd00:22::2/124","gateway":"fd00:22::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}})
    );
    let v = n.add("c2", &n.conf("1.0.0", dual()));
    assert_eq!(
        v,
        json!({"cniVersion":"1.0.0","ips":[{"address":"10.22.0.3/29","gateway":"10.22.0.1"},
            {"address":"fd00:22::3/124","gateway":"fd00:22::1"}],"routes":[{"dst":"0.0.0.0/0"}]})
    );
    let one = json!({"subnet": "10.23.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd00::/8"}]});
    let v = n.add("c3", &n.conf("0.2.0", one));
    assert_eq!(
        v,
        json!({"cniVersion":"0.2.0","ip4":{"ip":"10.23.0.2/24","gateway":"10.23.0.1","routes":[{"dst":"0.0.0.0/0"}]},"dns":{}})
    );
    assert_eq!(
        n.held(),
        ["10.22.0.2 c1 eth0", "10.22.0.3 c2 eth0", "10.23.0.2 c3 eth0", "fd00:22::2 c1 eth0", "fd00:22::3 c2 eth0"]
    );
}

#[test]
fn every_config_form() {
    let n = Net::new();
    let resolv = n.tmp.join("resolv.conf");
    std::fs::write(&resolv, "# x\nnameserver 10.0.0.53\nsearch a.example b.example\noptions ndots:2\ndomain example\n")
        .unwrap();
    // legacy top-level range, several ranges in a set, and an IPv6 set
    let ipam = json!({
        "subnet": "10.30.0.0/24", "rangeStart": "10.30.0.100", "rangeEnd": "10.30.0.101", "gateway": "10.30.0.254",
        "ranges": [[{"subnet": "10.31.0.0/24", "rangeStart": "10.31.0.10", "rangeEnd": "10.31.0.10"},
                    {"subnet": "10.32.0.0/24", "rangeStart": "10.32.0.10", "rangeEnd": "10.32.0.10", "gateway": "10.32.0.9"}],
                   [{"subnet": "fd00:30::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.30.0.1"}],
        "resolvConf": resolv.to_string_lossy(),
    });
    let conf = n.conf("1.0.0", ipam);
    let v = n.add("a", &conf);
    assert_eq!(addrs(&v), ["10.30.0.100/24", "10.31.0.10/24", "fd00:30::2/64"]);
    assert_eq!(v["ips"][0]["gateway"], "10.30.0.254");
    assert_eq!(v["routes"], json!([{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.30.0.1"}]));
    assert_eq!(
        v["dns"],
        json!({"nameservers": ["10.0.0.53"], "domain": "example", "search": ["a.example", "b.example"], "options": ["ndots:2"]})
    );
    // the second range of a set is used when the first is full, with its own gateway
    let v = n.add("b", &conf);
    assert_eq!(addrs(&v), ["10.30.0.101/24", "10.32.0.10/24", "fd00:30::3/64"]);
    assert_eq!(v["ips"][1]["gateway"], "10.32.0.9");
    assert_eq!(
        n.held(),
        [
            "10.30.0.100 a eth0",
            "10.30.0.101 b eth0",
            "10.31.0.10 a eth0",
            "10.32.0.10 b eth0",
            "fd00:30::2 a eth0",
            "fd00:30::3 b eth0"
        ]
    );
    // runtimeConfig.ipRanges come first
    let mut c: Value =
        serde_json::from_str(&n.conf("1.0.0", json!({"ranges": [[{"subnet": "10.40.0.0/24"}]]}))).unwrap();
    c["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.41.0.0/24"}]]});
    assert_eq!(addrs(&n.add("c", &c.to_string())), ["10.41.0.2/24", "10.40.0.2/24"]);
}

#[test]
fn requested_addresses_from_every_source() {
    let n = Net::new();
    let base = n.conf("1.0.0", json!({"ranges": [[{"subnet": "10.50.0.0/24"}], [{"subnet": "fd00:50::/64"}]]}));
    let v = n.run("ADD", "a", "eth0", "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.50.0.77", &base).ok().json();
    assert_eq!(addrs(&v), ["10.50.0.77/24", "fd00:50::2/64"]);
    let mut c: Value = serde_json::from_str(&base).unwrap();
    c["args"] = json!({"cni": {"ips": ["10.50.0.88/24"]}});
    c["runtimeConfig"] = json!({"ips": ["fd00:50::88"]});
    assert_eq!(addrs(&n.add("b", &c.to_string())), ["10.50.0.88/24", "fd00:50::88/64"]);
    // taken, gateway, outside every range, unparsable: the reference's messages, nothing reserved
    let e = n.run("ADD", "c", "eth0", "IP=10.50.0.77", &base).err(999);
    assert_eq!(e["msg"], "failed to allocate for range 0: requested IP address 10.50.0.77 is not available in range set 10.50.0.1-10.50.0.254");
    let e = n.run("ADD", "c", "eth0", "IP=10.50.0.1", &base).err(999);
    assert_eq!(e["msg"], "failed to allocate for range 0: requested ip 10.50.0.1 is subnet's gateway");
    let e = n.run("ADD", "c", "eth0", "IP=10.99.0.1", &base).err(999);
    assert_eq!(e["msg"], "failed to allocate all requested IPs: 10.99.0.1");
    let e = n.run("ADD", "c", "eth0", "IP=bogus", &base).err(999);
    assert_eq!(e["msg"], "ARGS: error parsing value of pair \"IP=bogus\": invalid IP address bogus");
    let e = n.run("ADD", "c", "eth0", "POD=x", &base).err(999);
    assert_eq!(e["msg"], "ARGS: unknown args [\"POD=x\"]");
    assert_eq!(n.held(), ["10.50.0.77 a eth0", "10.50.0.88 b eth0", "fd00:50::2 a eth0", "fd00:50::88 b eth0"]);
}

#[test]
fn exhaustion_is_a_clear_error_and_leaks_nothing() {
    let n = Net::new();
    let conf = n.conf("0.3.1", dual());
    for i in 1..=5 {
        n.add(&format!("c{i}"), &conf);
    }
    let before = std::fs::read(n.dir().join("cnibox.state")).unwrap();
    let e = n.run("ADD", "c6", "eth0", "", &conf).err(999);
    assert_eq!(e["msg"], "failed to allocate for range 0: no IP addresses available in range set: 10.22.0.1-10.22.0.6");
    // the IPv6 set had room, but nothing of c6 was kept
    assert_eq!(std::fs::read(n.dir().join("cnibox.state")).unwrap(), before);
    assert!(!n.held().iter().any(|l| l.contains(" c6 ")));
    // round-robin: after .6, a released .3 is found by wrapping around
    n.del("c2", &conf);
    let v = n.add("c6", &conf);
    assert_eq!(addrs(&v), ["10.22.0.3/29", "fd00:22::7/124"]);
}

#[test]
fn duplicate_del_twice_and_check() {
    let n = Net::new();
    let conf = n.conf("1.0.0", dual());
    n.add("a", &conf);
    let e = n.run("ADD", "a", "eth0", "", &conf).err(999);
    assert_eq!(
        e["msg"],
        "failed to allocate for range 0: 10.22.0.2 has been allocated to a, duplicate allocation is not allowed"
    );
    let v = n.run("ADD", "a", "net1", "", &conf).ok().json();
    assert_eq!(addrs(&v), ["10.22.0.3/29", "fd00:22::3/124"]);
    n.run("CHECK", "a", "eth0", "", &conf).ok();
    let e = n.run("CHECK", "b", "eth0", "", &conf).err(999);
    assert_eq!(e["msg"], "host-local: Failed to find address added by container b");
    n.del("a", &conf);
    assert_eq!(n.held(), ["10.22.0.3 a net1", "fd00:22::3 a net1"]);
    let e = n.run("CHECK", "a", "eth0", "", &conf).err(999);
    assert!(e["msg"].as_str().unwrap().contains("Failed to find address added by container a"));
    n.del("a", &conf);
    n.del("never-added", &conf);
    assert_eq!(n.held(), ["10.22.0.3 a net1", "fd00:22::3 a net1"]);
    // DEL and CHECK on a network that never had a directory create nothing
    let other = Net::new();
    other.del("a", &other.conf("1.0.0", dual()));
    other.run("CHECK", "a", "eth0", "", &other.conf("1.0.0", dual())).err(999);
    assert!(!other.dir().exists());
}

#[test]
fn gc_with_either_key_and_status() {
    let n = Net::new();
    let conf = n.conf("1.1.0", dual());
    for id in ["a", "b", "c", "d"] {
        n.add(id, &conf);
    }
    let gc = |key: &str, list: Value| {
        let mut c: Value = serde_json::from_str(&conf).unwrap();
        c[key] = list;
        let mut call = Call::new(None, "host-local");
        call.set("CNI_COMMAND", "GC").set("CNI_PATH", "/nonexistent/bin");
        call.run(&c.to_string())
    };
    gc("cni.dev/valid-attachments", json!([{"containerID": "a", "ifname": "eth0"}, {"containerID": "b", "ifname": "eth0"}, {"containerID": "c", "ifname": "net9"}])).ok();
    assert_eq!(n.held(), ["10.22.0.2 a eth0", "10.22.0.3 b eth0", "fd00:22::2 a eth0", "fd00:22::3 b eth0"]);
    gc("cni.dev/attachments", json!([{"containerID": "b", "ifname": "eth0"}])).ok();
    assert_eq!(n.held(), ["10.22.0.3 b eth0", "fd00:22::3 b eth0"]);
    // GC needs 1.1.0
    let mut call = Call::new(None, "host-local");
    call.set("CNI_COMMAND", "GC").set("CNI_PATH", "/x");
    call.run(&n.conf("1.0.0", dual())).err(1);

    let mut st = Call::new(None, "host-local");
    st.set("CNI_COMMAND", "STATUS").set("CNI_PATH", "/x");
    st.run(&conf).ok();
    // a dataDir that cannot be created (a file is in the way): not ready, code 50
    let file = n.tmp.join("plain");
    std::fs::write(&file, "x").unwrap();
    let bad = n
        .conf("1.1.0", json!({"ranges": [[{"subnet": "10.9.0.0/24"}]], "dataDir": file.join("sub").to_string_lossy()}));
    let e = st.run(&bad).err(50);
    assert!(e["msg"].as_str().unwrap().contains("not writable"), "{e}");
}

#[test]
fn reference_reservations_are_kept_and_released() {
    let n = Net::new();
    let dir = n.dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lock"), "").unwrap();
    std::fs::write(dir.join("10.22.0.2"), "old1\r\neth0").unwrap();
    std::fs::write(dir.join("10.22.0.3"), "old2").unwrap();
    std::fs::write(dir.join("fd00:22::3"), "old1\r\neth0").unwrap();
    std::fs::write(dir.join("last_reserved_ip.0"), "10.22.0.3").unwrap();
    let conf = n.conf("1.0.0", dual());
    // continues after the reference's last address, never on one of its files
    assert_eq!(addrs(&n.add("new1", &conf)), ["10.22.0.4/29", "fd00:22::2/124"]);
    assert_eq!(addrs(&n.add("new2", &conf)), ["10.22.0.5/29", "fd00:22::4/124"]);
    n.run("CHECK", "old1", "eth0", "", &conf).ok();
    n.run("CHECK", "old2", "eth0", "", &conf).ok();
    n.del("old1", &conf);
    assert!(!dir.join("10.22.0.2").exists() && !dir.join("fd00:22::3").exists());
    assert!(dir.join("10.22.0.3").exists());
    n.del("old2", &conf);
    assert!(!dir.join("10.22.0.3").exists());
    assert!(dir.join("lock").exists() && dir.join("last_reserved_ip.0").exists());
    assert_eq!(
        n.held(),
        ["10.22.0.4 new1 eth0", "10.22.0.5 new2 eth0", "fd00:22::2 new1 eth0", "fd00:22::4 new2 eth0"]
    );
}

#[test]
fn a_damaged_state_file_is_refused_and_a_hand_edited_one_read() {
    let n = Net::new();
    let conf = n.conf("1.0.0", json!({"ranges": [[{"subnet": "10.60.0.0/24"}]]}));
    std::fs::create_dir_all(n.dir()).unwrap();
    // Garbage, a line that is not a reservation, a last line cut short: guessing
    // past it could hand out a held address, so nothing is done and the file named.
    let damaged: &[u8] = b"junk\x00\xff\n10.60.0.9 kept eth0\n10.60.0.2 x\x01 eth0\n10.60.0.3 cut";
    std::fs::write(n.dir().join("cnibox.state"), damaged).unwrap();
    let e = n.run("ADD", "a", "eth0", "", &conf).err(999);
    assert!(e["msg"].as_str().unwrap().contains("cnibox.state is damaged"), "{e}");
    assert_eq!(std::fs::read(n.dir().join("cnibox.state")).unwrap(), damaged, "left as it was");
    // A file an operator wrote by hand (no header, unsorted, comments) is fine.
    std::fs::write(n.dir().join("cnibox.state"), b"# by hand\n10.60.0.9 kept eth0\n\n10.60.0.3 other eth0\n").unwrap();
    assert_eq!(addrs(&n.add("a", &conf)), ["10.60.0.2/24"]);
    assert_eq!(n.held(), ["10.60.0.2 a eth0", "10.60.0.3 other eth0", "10.60.0.9 kept eth0"]);
}

#[test]
fn hostile_data_dirs_are_refused() {
    let n = Net::new();
    let e = n
        .run("ADD", "a", "eth0", "", &n.conf("1.0.0", json!({"subnet": "10.9.0.0/24", "dataDir": "relative/dir"})))
        .err(7);
    assert!(e["msg"].as_str().unwrap().contains("must be an absolute path"), "{e}");
    assert!(!Path::new("relative").exists());
    // the network's directory is a symlink to somewhere else: nothing is written there
    let elsewhere = n.tmp.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(n.tmp.join("data")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, n.dir()).unwrap();
    let conf = n.conf("1.0.0", json!({"subnet": "10.9.0.0/24"}));
    let e = n.run("ADD", "a", "eth0", "", &conf).err(999);
    assert!(e["msg"].as_str().unwrap().contains("symbolic link"), "{e}");
    n.run("DEL", "a", "eth0", "", &conf).err(999);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn config_errors_name_the_problem() {
    let n = Net::new();
    let cases = [
        (
            json!({"ranges": [[{"subnet": "10.1.0.0/31"}]]}),
            "invalid range set 0: Network 10.1.0.0/31 too small to allocate from",
        ),
        (
            json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}),
            "invalid range set 0: mixed address families",
        ),
        (json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}), "range set 0 overlaps with 1"),
        (
            json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]}),
            "invalid range set 0: subnets 10.1.0.1-10.1.0.254 and 10.1.0.1-10.1.0.126 overlap",
        ),
        (json!({"routes": []}), "no IP ranges specified"),
    ];
    for (ipam, msg) in cases {
        let e = n.run("ADD", "a", "eth0", "", &n.conf("1.0.0", ipam)).err(7);
        assert_eq!(e["msg"], msg);
    }
    let e = n
        .run(
            "ADD",
            "a",
            "eth0",
            "",
            &n.conf("0.2.0", json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]})),
        )
        .err(7);
    assert_eq!(e["msg"], "CNI version 0.2.0 does not support more than 1 address per family");
    let e = n.run("ADD", "a", "eth0", "", &n.conf("1.0.0", json!({"ranges": [[{"subnet": "nope"}]]}))).err(7);
    assert!(e["msg"].as_str().unwrap().contains("ipam.ranges[0][0].subnet"), "{e}");
    let e = n.run("ADD", "a", "eth0", "", r#"{"cniVersion":"1.0.0","name":"x"}"#).err(7);
    assert_eq!(e["msg"], "IPAM config missing 'ipam' key");
    assert!(!n.dir().exists(), "a refused config creates nothing");
}

#[test]
fn hundred_parallel_adds_then_dels() {
    let n = Net::new();
    let conf = n.conf("1.0.0", json!({"ranges": [[{"subnet": "10.70.0.0/16"}], [{"subnet": "fd00:70::/64"}]]}));
    let got: Vec<Vec<String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..100)
            .map(|i| {
                let (n, conf) = (&n, &conf);
                s.spawn(move || addrs(&n.add(&format!("ctr{i}"), conf)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut v4: Vec<&String> = got.iter().map(|a| &a[0]).collect();
    let mut v6: Vec<&String> = got.iter().map(|a| &a[1]).collect();
    v4.sort();
    v4.dedup();
    v6.sort();
    v6.dedup();
    assert_eq!((v4.len(), v6.len()), (100, 100), "every container got its own addresses");
    let held = n.held();
    assert_eq!(held.len(), 200);
    for (i, a) in got.iter().enumerate() {
        for addr in a {
            let ip = addr.split('/').next().unwrap();
            assert!(held.contains(&format!("{ip} ctr{i} eth0")), "{ip} of ctr{i} not in the state file");
        }
    }
    std::thread::scope(|s| {
        for i in 0..100 {
            let (n, conf) = (&n, &conf);
            s.spawn(move || n.del(&format!("ctr{i}"), conf));
        }
    });
    assert!(n.held().is_empty());
    // the file is whole: a new ADD continues the round-robin after the last address handed out
    let last_v4 = v4.iter().map(|a| a.split('/').next().unwrap().parse::<std::net::Ipv4Addr>().unwrap()).max().unwrap();
    let v = n.add("after", &conf);
    assert_eq!(addrs(&v)[0], format!("{}/16", std::net::Ipv4Addr::from(u32::from(last_v4) + 1)));
}

#[test]
fn interoperates_with_the_reference_binary() {
    let reference = Path::new("/usr/lib/cni/host-local");
    if !reference.exists() {
        common::missing("the reference plugin /usr/lib/cni/host-local is not installed (apt-get install containernetworking-plugins)");
        return;
    }
    let n = Net::new();
    let conf = n.conf("0.4.0", json!({"ranges": [[{"subnet": "10.80.0.0/28"}]]}));
    let env = |cmd: &str, id: &str| -> Vec<(String, String)> {
        [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", NETNS),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let mut seen = Vec::new();
    for id in ["ref1", "ref2"] {
        let r = run_in(None, reference, "host-local", &env("ADD", id), &conf);
        seen.extend(addrs(&r.ok().json()));
    }
    for id in ["box1", "box2", "box3"] {
        seen.extend(addrs(&n.add(id, &conf)));
    }
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 5, "an address was handed out twice: {seen:?}");
    // cnibox continued the reference's round-robin
    assert_eq!(seen, ["10.80.0.2/28", "10.80.0.3/28", "10.80.0.4/28", "10.80.0.5/28", "10.80.0.6/28"]);
    // a reference binary still running (an upgrade in progress) continues after cnibox's addresses
    let r = run_in(None, reference, "host-local", &env("ADD", "ref3"), &conf);
    assert_eq!(addrs(&r.ok().json()), ["10.80.0.7/28"]);
    run_in(None, reference, "host-local", &env("DEL", "ref3"), &conf).ok();
    // cnibox releases the reference's reservation; the reference's own DEL still works on what it holds
    assert!(n.dir().join("10.80.0.2").exists());
    n.del("ref1", &conf);
    assert!(!n.dir().join("10.80.0.2").exists());
    run_in(None, reference, "host-local", &env("DEL", "ref2"), &conf).ok();
    assert!(!n.dir().join("10.80.0.3").exists());
    assert_eq!(n.held(), ["10.80.0.4 box1 eth0", "10.80.0.5 box2 eth0", "10.80.0.6 box3 eth0"]);
}

/// A container id shaped like the runtime's: 64 hex digits that look random.
fn fake_id(n: u64) -> String {
    let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut s = String::with_capacity(64);
    for _ in 0..4 {
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        s.push_str(&format!("{x:016x}"));
    }
    s
}

/// User and system time of every child waited for so far: what the plugin
/// processes cost, whatever else the machine is busy with.
fn children_cpu() -> std::time::Duration {
    // SAFETY: a zeroed rusage for the kernel to fill.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut r) };
    let d = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    d(r.ru_utime) + d(r.ru_stime)
}

/// Not a pass/fail test: prints what an ADD costs with 10 and with 10,000
/// allocations held (run with the release binary:
/// `CNIBOX_BIN=target/x86_64-unknown-linux-musl/release/cnibox cargo test --test host_local -- --ignored --nocapture`).
#[test]
#[ignore = "benchmark; prints timings"]
fn bench_add_cost_with_allocations_held() {
    for held in [10usize, 10_000] {
        let n = Net::new();
        let conf = n.conf("1.0.0", json!({"ranges": [[{"subnet": "10.42.0.0/16"}]]}));
        std::fs::create_dir_all(n.dir()).unwrap();
        // Kubernetes-like ids (64 hex digits); the first ADD rewrites this into cnibox's own form.
        let mut text = String::new();
        for i in 0..held {
            text.push_str(&format!("10.42.{}.{} {} eth0\n", (i + 2) >> 8, (i + 2) & 255, fake_id(i as u64)));
        }
        std::fs::write(n.dir().join("cnibox.state"), text).unwrap();
        n.add("warmup", &conf);
        n.del("warmup", &conf);
        let mut times = Vec::new();
        let mut cpu = std::time::Duration::ZERO;
        for i in 0..300 {
            let id = fake_id(0xbe4c_0000 + i);
            let (t, c) = (std::time::Instant::now(), children_cpu());
            n.add(&id, &conf);
            times.push(t.elapsed());
            cpu += children_cpu() - c;
            n.del(&id, &conf);
        }
        assert_eq!(n.held().len(), held);
        times.sort();
        let size = std::fs::metadata(n.dir().join("cnibox.state")).unwrap().len();
        eprintln!(
            "host-local ADD with {held:>5} held ({size:>7} byte state): wall median {:?}, p10 {:?}, p90 {:?}; CPU (user+sys) mean {:?}",
            times[times.len() / 2],
            times[times.len() / 10],
            times[times.len() * 9 / 10],
            cpu / times.len() as u32
        );
    }
}

/// A plugin killed at every mutating step (built with `--features
/// failpoints`) leaves the state file whole: the old reservations or the
/// new, nothing torn, and the network usable afterwards.
#[cfg(feature = "failpoints")]
#[test]
fn killed_at_any_step_leaves_the_old_or_the_new_state() {
    let n = Net::new();
    let conf = n.conf("1.0.0", dual());
    n.add("a", &conf);
    std::fs::write(n.dir().join("10.22.0.6"), "old\r\neth0").unwrap();
    let before = n.held();
    for (cmd, id) in [("ADD", "b"), ("DEL", "a"), ("DEL", "old")] {
        for mode in ["abort", "error"] {
            let mut c = Call::new(None, "host-local");
            c.set("CNI_COMMAND", cmd).set("CNI_CONTAINERID", id).set("CNI_NETNS", NETNS).set("CNI_IFNAME", "eth0");
            c.set("CNI_PATH", "/x").set("CNIBOX_FAILPOINT", "1").set("CNIBOX_FAILPOINT_MODE", mode);
            let r = c.run(&conf);
            assert_ne!(r.code, 0, "{cmd} {id} {mode}: the failpoint was not reached");
            assert_eq!(n.held(), before, "{cmd} {id} {mode}");
            assert!(n.dir().join("10.22.0.6").exists());
        }
    }
    // and every verb still works
    n.add("b", &conf);
    n.del("a", &conf);
    n.del("old", &conf);
    assert!(!n.dir().join("10.22.0.6").exists());
    assert_eq!(n.held(), ["10.22.0.3 b eth0", "fd00:22::3 b eth0"]);
}
