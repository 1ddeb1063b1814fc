//! Drop-in proof: k3s's and k0s's exact network configs, run through cnibox's
//! runtime side (`cnibox add/del`) in a throwaway node namespace, with real
//! traffic. k3s's config names no subnetFile or dataDir, so the plugins use
//! their defaults (/run/flannel, /var/lib/cni): each command runs in a private
//! mount namespace where those two paths are bind mounts of test directories,
//! so nothing is written to the machine's own.

mod common;
use common::*;
use serde_json::Value;
use std::process::{Child, Command, Stdio};

const K3S_CONFLIST: &str = r#"{"name":"cbr0","cniVersion":"1.0.0","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"forceAddress":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}},{"type":"bandwidth","capabilities":{"bandwidth":true}}]}"#;

const K0S_CONFLIST: &str = r#"{"cniVersion":"0.3.0","name":"mynet","plugins":[{"name":"kubernetes","type":"bridge","bridge":"kube-bridge","isDefaultGateway":true,"hairpinMode":true,"ipMasq":true,"mtu":1450,"ipam":{"type":"host-local","subnet":"10.244.1.0/24"}},{"type":"portmap","capabilities":{"snat":true,"portMappings":true}}]}"#;

/// A process holding a private mount namespace in which /run/flannel and
/// /var/lib/cni are the test's own directories. Neither path is made on the
/// machine: a tmpfs covers /var/lib and /run in that namespace alone (with
/// /run/netns, the pods' namespaces, carried over). Making them on the machine
/// and removing them afterwards let the k0s test, finishing first, take them
/// away from the k3s test running beside it: removing a directory detaches
/// what other mount namespaces have mounted on it, so its DEL then found no
/// cache and no flannel state, had nothing to undo, and left both veths.
struct Mounts {
    holder: Child,
}

impl Mounts {
    fn new(tmp: &TempDir) -> Mounts {
        let [flannel, cni, netns] = ["run-flannel", "var-lib-cni", "run-netns"].map(|d| tmp.join(d));
        for d in [&flannel, &cni, &netns] {
            std::fs::create_dir_all(d).unwrap();
        }
        let script = format!(
            "set -e; mount --make-rprivate /\n\
             mount -t tmpfs -o mode=0755 cnibox-test /var/lib; mkdir /var/lib/cni; mount --bind {cni} /var/lib/cni\n\
             mount --rbind /run/netns {netns}; mount -t tmpfs -o mode=0755 cnibox-test /run\n\
             mkdir /run/netns /run/flannel; mount --move {netns} /run/netns; mount --bind {flannel} /run/flannel\n\
             echo ready; exec sleep 600",
            cni = cni.display(),
            netns = netns.display(),
            flannel = flannel.display(),
        );
        let mut holder =
            Command::new("unshare").args(["--mount", "sh", "-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "private mount namespace");
        Mounts { holder }
    }

    /// `program` run inside the node namespace and the private mounts.
    fn command(&self, node: &Netns, program: &std::path::Path) -> Command {
        let mnt = format!("--mount=/proc/{}/ns/mnt", self.holder.id());
        let net = format!("--net={}", node.path());
        let mut cmd = Command::new("nsenter");
        cmd.args([mnt.as_str(), net.as_str(), "--"]).arg(program);
        cmd
    }

    /// `cnibox <args>` inside the node namespace and the private mounts.
    fn cnibox(&self, node: &Netns, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = self.command(node, &bin());
        cmd.args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CNI_") || k == "NETCONFPATH" || k == "CAP_ARGS") {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The node's "uplink" to an outside namespace, for traffic that comes from elsewhere.
fn outside(node: &Netns) -> Netns {
    let out = Netns::new("out");
    node.sh(&["link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", &out.name]);
    node.sh(&["addr", "add", "192.168.77.1/24", "dev", "up0"]);
    node.sh(&["link", "set", "up0", "up"]);
    out.sh(&["addr", "add", "192.168.77.2/24", "dev", "up1"]);
    out.sh(&["link", "set", "up1", "up"]);
    out
}

/// A TCP server in `ns` answering "pong" once per connection, for `secs` seconds.
fn serve(ns: &Netns, port: u16, secs: u32) -> Child {
    let code = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET6 if False else socket.AF_INET)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('0.0.0.0',{port}))\ns.listen(8)\ns.settimeout(1)\nend=time.time()+{secs}\nprint('up',flush=True)\n\
         while time.time()<end:\n  try:\n    c,_=s.accept()\n  except OSError:\n    continue\n  c.settimeout(5)\n  try:\n    while c.recv(65536): pass\n  except OSError: pass\n  try: c.sendall(b'pong')\n  except OSError: pass\n  c.close()\n"
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", &code])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    child
}

/// Connect from `ns` to addr:port, send `bytes` bytes, return what came back.
fn connect(ns: &Netns, addr: &str, port: u16, bytes: usize) -> String {
    let code = format!(
        "import socket\ns=socket.create_connection(('{addr}',{port}),timeout=5)\ns.sendall(b'x'*{bytes})\ns.shutdown(socket.SHUT_WR)\nprint(s.recv(16).decode())\n"
    );
    let out = ns.exec(&["timeout", "15", "python3", "-c", &code]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn tbf_stats(node: &Netns, dev: &str) -> Value {
    let out = node.exec(&["tc", "-s", "-j", "qdisc", "show", "dev", dev]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array().and_then(|a| a.iter().find(|q| q["kind"] == "tbf").cloned()).unwrap_or(Value::Null)
}

fn masq_rules_for(node: &Netns, ip: &str) -> usize {
    let v = node.nft_json();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("rule"))
        .filter(|r| r["table"] == "cni_plugins_masquerade" && r["expr"].to_string().contains(ip))
        .count()
}

#[test]
fn k3s_default_conflist_end_to_end() {
    need_root!();
    let tmp = TempDir::new("k3s");
    let path = plugin_dir(&tmp);
    let confdir = tmp.join("net.d");
    std::fs::create_dir_all(&confdir).unwrap();
    std::fs::write(confdir.join("10-flannel.conflist"), K3S_CONFLIST).unwrap();
    let node = Netns::new("node");
    let out = outside(&node);
    let (p1, p2) = (Netns::new("pod1"), Netns::new("pod2"));
    // After the namespaces: their /run/netns entries must exist when the mount namespace is copied.
    let m = Mounts::new(&tmp);
    let subnet_env = tmp.join("run-flannel/subnet.env");
    // flanneld as k3s runs it: it masquerades itself, so the bridge must not.
    std::fs::write(
        &subnet_env,
        "FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.0.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    )
    .unwrap();
    let netconf = confdir.to_string_lossy().into_owned();
    let caps1 = r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":1000000,"ingressBurst":100000}}"#;
    let env = |caps: &'static str| {
        vec![("NETCONFPATH", netconf.clone()), ("CNI_PATH", path.clone()), ("CAP_ARGS", caps.to_string())]
    };
    let run = |e: &Vec<(&str, String)>, args: &[&str]| {
        let ev: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        m.cnibox(&node, &ev, args)
    };
    let r1 = run(&env(caps1), &["add", "cbr0", &p1.path(), "--id", "pod1"]).ok().json();
    assert_eq!(r1["cniVersion"], "1.0.0");
    let ip1 = r1["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(ip1.starts_with("10.42.0."), "address from FLANNEL_SUBNET: {r1}");
    assert_eq!(r1["ips"][0]["gateway"], "10.42.0.1");
    // Routes: default (isDefaultGateway) and the cluster network.
    let routes: Vec<String> =
        r1["routes"].as_array().unwrap().iter().map(|r| r["dst"].as_str().unwrap().to_string()).collect();
    assert!(routes.contains(&"10.42.0.0/16".to_string()) && routes.contains(&"0.0.0.0/0".to_string()), "{routes:?}");
    // The bridge is flannel's: cni0, MTU from subnet.env, hairpin on the port.
    let br = node.link("cni0").expect("cni0 bridge");
    assert_eq!(br["mtu"], 1450);
    let hveth = r1["interfaces"][1]["name"].as_str().unwrap();
    assert_eq!(node.link(hveth).unwrap()["linkinfo"]["info_slave_data"]["hairpin"], true);
    assert_eq!(masq_rules_for(&node, &ip1), 0, "FLANNEL_IPMASQ=true: no masquerade by the bridge");

    // flanneld switched to not masquerading: the next pod gets the bridge's ipMasq.
    std::fs::write(
        &subnet_env,
        "FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.0.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    )
    .unwrap();
    let r2 = run(&env("{}"), &["add", "cbr0", &p2.path(), "--id", "pod2"]).ok().json();
    let ip2 = r2["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(masq_rules_for(&node, &ip2) > 0, "FLANNEL_IPMASQ=false: the bridge masquerades pod2");
    assert!(p1.ping(&ip2) && p2.ping("10.42.0.1"), "pods reach each other and the gateway");

    // hostPort 8080 on the node reaches the pod's port 80, from outside the node.
    let srv = serve(&p1, 80, 20);
    assert_eq!(connect(&out, "192.168.77.1", 8080, 10), "pong", "hostPort forwards");
    // Ingress limit of 1 Mbit/s: a 300 KB transfer into the pod is throttled by the token bucket.
    let before = tbf_stats(&node, hveth);
    assert_eq!(before["options"]["rate"], 125000, "{before}");
    assert_eq!(connect(&node, &ip1, 80, 300_000), "pong");
    let after = tbf_stats(&node, hveth);
    let throttled = after["overlimits"].as_u64().unwrap_or(0) + after["drops"].as_u64().unwrap_or(0);
    assert!(throttled > 0, "the 1 Mbit/s bucket throttled the transfer: {after}");
    drop(srv);

    run(&env(caps1), &["del", "cbr0", &p1.path(), "--id", "pod1"]).ok();
    run(&env("{}"), &["del", "cbr0", &p2.path(), "--id", "pod2"]).ok();
    // Nothing left: veths, IFBs, port mappings, masquerade rules, reservations, flannel's saved configs, cache.
    let links: Vec<String> = node.links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect();
    assert!(!links.iter().any(|n| n.starts_with("veth") || n.starts_with("bwp")), "{links:?}");
    let rules = node.nft_json().to_string();
    assert!(!rules.contains(&ip1) && !rules.contains(&ip2), "no rule names a pod address");
    let state = std::fs::read_to_string(tmp.join("var-lib-cni/networks/cbr0/cnibox.state")).unwrap_or_default();
    assert!(!state.contains("pod1") && !state.contains("pod2"), "{state}");
    let saved: Vec<_> =
        std::fs::read_dir(tmp.join("var-lib-cni/flannel")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(saved.is_empty(), "flannel's per-container files removed");
    let cached: Vec<_> =
        std::fs::read_dir(tmp.join("var-lib-cni/results")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(cached.is_empty(), "result cache emptied");
}

#[test]
fn k0s_kube_router_conflist_at_0_3_0() {
    need_root!();
    let tmp = TempDir::new("k0s");
    let path = plugin_dir(&tmp);
    let confdir = tmp.join("net.d");
    std::fs::create_dir_all(&confdir).unwrap();
    std::fs::write(confdir.join("10-kuberouter.conflist"), K0S_CONFLIST).unwrap();
    let node = Netns::new("node");
    let out = outside(&node);
    let (p1, p2) = (Netns::new("pod1"), Netns::new("pod2"));
    let m = Mounts::new(&tmp);
    let netconf = confdir.to_string_lossy().into_owned();
    let e =
        |caps: &str| vec![("NETCONFPATH", netconf.clone()), ("CNI_PATH", path.clone()), ("CAP_ARGS", caps.to_string())];
    let run = |e: &Vec<(&str, String)>, args: &[&str]| {
        let ev: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        m.cnibox(&node, &ev, args)
    };
    let caps = r#"{"portMappings":[{"hostPort":9090,"containerPort":80,"protocol":"tcp"}]}"#;
    let r1 = run(&e(caps), &["add", "mynet", &p1.path(), "--id", "pod1"]).ok().json();
    assert_eq!(r1["cniVersion"], "0.3.0");
    assert_eq!(r1["ips"][0]["version"], "4", "0.3.0 results carry ips[].version");
    let ip1 = r1["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(ip1.starts_with("10.244.1."));
    let r2 = run(&e("{}"), &["add", "mynet", &p2.path(), "--id", "pod2"]).ok().json();
    let ip2 = r2["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert_eq!(node.link("kube-bridge").unwrap()["mtu"], 1450);
    assert!(p1.ping(&ip2));
    assert!(masq_rules_for(&node, &ip1) > 0, "ipMasq: true");
    let srv = serve(&p1, 80, 15);
    assert_eq!(connect(&out, "192.168.77.1", 9090, 10), "pong");
    drop(srv);
    run(&e(caps), &["del", "mynet", &p1.path(), "--id", "pod1"]).ok();
    run(&e("{}"), &["del", "mynet", &p2.path(), "--id", "pod2"]).ok();
    let links: Vec<String> = node.links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect();
    assert!(!links.iter().any(|n| n.starts_with("veth")), "{links:?}");
    assert!(!node.nft_json().to_string().contains(&ip1));
}

/// Two tests' private mounts at once, as k3s's and k0s's run: one ending
/// leaves the other's /run/flannel and /var/lib/cni in place. (Where either
/// path was missing on the machine, the first to start used to make it and
/// remove it on ending, taking it from the other.)
#[test]
fn private_mounts_are_independent() {
    need_root!();
    let node = Netns::new("node");
    let (ta, tb) = (TempDir::new("mnt-a"), TempDir::new("mnt-b"));
    let a = Mounts::new(&ta);
    let b = Mounts::new(&tb);
    drop(a);
    for (dir, own) in ["/run/flannel", "/var/lib/cni"].into_iter().zip(["run-flannel", "var-lib-cni"]) {
        std::fs::write(tb.join(own).join("probe"), dir).unwrap();
        let out = b.command(&node, std::path::Path::new("cat")).arg(format!("{dir}/probe")).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), dir, "{dir} after the other mounts ended: {err}");
    }
    // The pods' namespaces are reachable by their usual paths.
    let seen = b.command(&node, std::path::Path::new("test")).args(["-e", &node.path()]).status().unwrap();
    assert!(seen.success(), "{} inside the private mounts", node.path());
}
