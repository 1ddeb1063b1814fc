//! Beyond issue 15's eleven findings: more files and locks an untrusted
//! process or a pod author controls. Each call here must answer within 5 s;
//! the calls run under `timeout -s KILL 20`, so a hang fails the test
//! instead of stalling the suite.

mod common;
use common::*;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `plugin` run in `node` under a 20 s kill timer; returns the run and how long it took.
fn bounded(node: &Netns, bin_dir: &str, plugin: &str, env: &[(&str, &str)], stdin: &str) -> (Run, Duration) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node.name, "timeout", "-s", "KILL", "20", &format!("{bin_dir}/{plugin}")]);
    for (k, _) in std::env::vars() {
        if k.starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CNI_PATH", bin_dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugin");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait plugin");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, t.elapsed())
}

fn quick(what: &str, d: Duration, r: &Run) {
    assert!(d < Duration::from_secs(5), "{what} took {d:?}: stdout={} stderr={}", r.stdout, r.stderr);
}

/// flannel's `subnetFile` comes from the config (a tenant's, with Multus): a
/// FIFO there hung ADD forever, `/dev/zero` filled the plugin's memory. Both
/// are refused at once; so is a FIFO or a symbolic link planted as the saved
/// per-container config that DEL and CHECK replay.
#[test]
fn flannel_refuses_fifos_devices_and_links_it_is_pointed_at() {
    need_root!();
    let tmp = TempDir::new("flfifo");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    let fifo = tmp.join("subnet.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let data = tmp.join("flannel");
    let conf = |subnet: &str| {
        json!({"cniVersion":"1.0.0","name":"fl","type":"flannel","subnetFile":subnet,
               "dataDir":data.to_str().unwrap()})
        .to_string()
    };
    let env = |cmd: &'static str| {
        [("CNI_COMMAND", cmd), ("CNI_CONTAINERID", "ctr1"), ("CNI_NETNS", ""), ("CNI_IFNAME", "eth0")]
    };
    let ctr_path = ctr.path();
    for (subnet, want) in [(fifo.to_str().unwrap(), "is not a regular file"), ("/dev/zero", "is not a regular file")] {
        let mut e = env("ADD");
        e[2].1 = &ctr_path;
        let (r, d) = bounded(&node, &path, "flannel", &e, &conf(subnet));
        quick(&format!("ADD with subnetFile {subnet}"), d, &r);
        let v = r.err(999);
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.starts_with("read flannel subnet file: ") && msg.contains(want), "{v}");
        assert_eq!(ctr.links().len(), 1, "nothing added: {:?}", ctr.links());
    }

    // A FIFO and a symbolic link where DEL and CHECK read the saved config.
    std::fs::create_dir_all(&data).unwrap();
    let secret = tmp.join("secret.json");
    std::fs::write(&secret, r#"{"type":"bridge","name":"x","cniVersion":"1.0.0"}"#).unwrap();
    for planted in ["fifo", "link"] {
        let saved = data.join("ctr1");
        let _ = std::fs::remove_file(&saved);
        match planted {
            "fifo" => assert!(Command::new("mkfifo").arg(&saved).status().unwrap().success()),
            _ => std::os::unix::fs::symlink(&secret, &saved).unwrap(),
        }
        let mut e = env("DEL");
        e[2].1 = &ctr_path;
        let (r, d) = bounded(&node, &path, "flannel", &e, &conf("/nonexistent"));
        quick(&format!("DEL with a {planted} as the saved config"), d, &r);
        let v = r.err(999);
        assert!(v["msg"].as_str().unwrap().contains("ctr1"), "{v}");
    }
}

/// sbr serialized its calls with a blocking flock on the container's nsfs
/// inode, which any process in the pod (any uid) can take through
/// `/proc/self/ns/net` and keep: ADD and DEL then waited forever. Its turn is
/// now a root-only lock file outside every pod's reach.
#[test]
fn a_process_in_the_pod_holding_its_netns_lock_does_not_stall_sbr() {
    need_root!();
    let tmp = TempDir::new("sbrlock");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    ctr.sh(&["link", "add", "net1", "type", "veth", "peer", "name", "net1p"]);
    ctr.sh(&["addr", "add", "10.75.0.2/24", "dev", "net1"]);
    ctr.sh(&["link", "set", "net1", "up"]);
    // An unprivileged process inside the pod's namespace takes the lock.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &ctr.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all", "flock", "/proc/self/ns/net", "sleep", "60"])
        .spawn()
        .expect("spawn flock");
    let held = (0..250).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !Command::new("flock").args(["-n", &ctr.path(), "true"]).status().unwrap().success()
    });
    if !held {
        let _ = holder.kill();
        let _ = holder.wait();
        panic!("the unprivileged holder never got the namespace's lock");
    }
    let prev = json!({"cniVersion":"1.0.0","interfaces":[{"name":"net1","sandbox":ctr.path()}],
                      "ips":[{"address":"10.75.0.2/24","gateway":"10.75.0.1","interface":0}]});
    let conf = json!({"cniVersion":"1.0.0","name":"meta","type":"sbr","prevResult":prev}).to_string();
    let ctr_path = ctr.path();
    let env = |cmd: &'static str| -> [(&str, &str); 4] {
        [("CNI_COMMAND", cmd), ("CNI_CONTAINERID", "ctr1"), ("CNI_NETNS", ""), ("CNI_IFNAME", "net1")]
    };
    let mut add = env("ADD");
    add[2].1 = &ctr_path;
    let (r, d) = bounded(&node, &path, "sbr", &add, &conf);
    let rules = ctr.ip_json(&["rule", "show"]);
    let mut del = env("DEL");
    del[2].1 = &ctr_path;
    let (rd, dd) = bounded(&node, &path, "sbr", &del, &conf);
    let after = ctr.ip_json(&["rule", "show"]);
    let _ = holder.kill();
    let _ = holder.wait();
    quick("sbr ADD", d, &r);
    r.ok();
    let rule = rules.as_array().unwrap().iter().find(|r| r["src"] == "10.75.0.2").expect("rule from 10.75.0.2");
    assert_eq!(rule["table"], "100");
    quick("sbr DEL", dd, &rd);
    rd.ok();
    assert!(!after.as_array().unwrap().iter().any(|r| r["src"] == "10.75.0.2"), "{after}");
}

/// flannel replays the saved per-container config as root on DEL: a
/// `dataDir` another user owns (pre-created in a sticky /tmp, say) would let
/// that user write the config DEL runs. Refused on ADD, DEL and CHECK, with
/// nothing created; a root-owned one below the sticky /tmp still works.
#[test]
fn flannel_refuses_a_data_dir_another_user_owns() {
    need_root!();
    let tmp = TempDir::new("fldir");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    let subnet = tmp.join("subnet.env");
    std::fs::write(
        &subnet,
        "FLANNEL_NETWORK=10.67.0.0/16\nFLANNEL_SUBNET=10.67.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    )
    .unwrap();
    let theirs = tmp.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let conf = |data: &std::path::Path| {
        json!({"cniVersion":"1.0.0","name":"fl","type":"flannel","subnetFile":subnet.to_str().unwrap(),
               "dataDir":data.to_str().unwrap(),"delegate":{"bridge":"cbrfl9"},
               "ipam":{"dataDir":tmp.join("ipam").to_str().unwrap()}})
        .to_string()
    };
    let ctr_path = ctr.path();
    let env = |cmd: &'static str| -> [(&str, &str); 4] {
        [("CNI_COMMAND", cmd), ("CNI_CONTAINERID", "ctr1"), ("CNI_NETNS", ""), ("CNI_IFNAME", "eth0")]
    };
    for cmd in ["ADD", "DEL"] {
        let mut e = env(cmd);
        e[2].1 = &ctr_path;
        let (r, d) = bounded(&node, &path, "flannel", &e, &conf(&theirs.join("fl")));
        quick(cmd, d, &r);
        let v = r.err(7);
        assert!(v["msg"].as_str().unwrap().contains("not owned by root"), "{cmd}: {v}");
    }
    assert!(!theirs.join("fl").join("ctr1").exists());
    assert!(node.link("cbrfl9").is_none(), "ADD went ahead");
    // The same below a directory root owns.
    let ours = tmp.join("ours");
    let mut add = env("ADD");
    add[2].1 = &ctr_path;
    let (r, _) = bounded(&node, &path, "flannel", &add, &conf(&ours));
    r.ok();
    assert!(ours.join("ctr1").exists());
    let mut del = env("DEL");
    del[2].1 = &ctr_path;
    bounded(&node, &path, "flannel", &del, &conf(&ours)).0.ok();
    assert!(!ours.join("ctr1").exists());
}

/// host-device's `kernelpath` must lie under /sys/devices: with `..` it led
/// anywhere, and the plugin moved into the pod whatever link a directory
/// there named (a directory any user can make in /tmp).
#[test]
fn host_device_kernelpath_stays_in_sys() {
    need_root!();
    let tmp = TempDir::new("hdpath");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    node.sh(&["link", "add", "hd0", "type", "veth", "peer", "name", "hd0p"]);
    std::fs::create_dir_all(tmp.join("fake/net/hd0")).unwrap();
    let kp = format!("/sys/devices/../..{}", tmp.join("fake").display());
    let conf = json!({"cniVersion":"1.0.0","name":"hd","type":"host-device","kernelpath":kp}).to_string();
    let ctr_path = ctr.path();
    let env = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "ctr1"), ("CNI_NETNS", &ctr_path), ("CNI_IFNAME", "eth0")];
    let (r, d) = bounded(&node, &path, "host-device", &env, &conf);
    quick("host-device ADD", d, &r);
    assert!(node.link("hd0").is_some(), "hd0 left the node");
    assert!(ctr.link("eth0").is_none());
    let v = r.err(7);
    assert!(v["msg"].as_str().unwrap().contains("kernelpath"), "{v}");
}

/// tuning's `sysctl` map is the pod author's, up to the config's 1 MiB
/// (tens of thousands of keys): checking each key against the ones before it
/// took 7.9 s for 24,000 keys before the first write.
#[test]
fn tuning_checks_tens_of_thousands_of_sysctl_keys_quickly() {
    need_root!();
    let tmp = TempDir::new("tunkeys");
    let path = plugin_dir(&tmp);
    let node = Netns::new("node");
    let ctr = Netns::new("ctr");
    ctr.sh(&["link", "add", "eth0", "type", "veth", "peer", "name", "p0"]);
    let sysctl: serde_json::Map<String, serde_json::Value> =
        (0..24_000).map(|i| (format!("net.ipv4.conf.IFNAME.cnibox_x{i}"), json!("1"))).collect();
    let conf = json!({"cniVersion":"1.0.0","name":"t","type":"tuning","sysctl":sysctl,
        "dataDir": tmp.join("tuning").to_str().unwrap(),
        "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":ctr.path()}],
                      "ips":[{"address":"10.9.0.2/24","interface":0}]}})
    .to_string();
    let ctr_path = ctr.path();
    let env = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "ctr1"), ("CNI_NETNS", &ctr_path), ("CNI_IFNAME", "eth0")];
    let (r, d) = bounded(&node, &path, "tuning", &env, &conf);
    quick("tuning ADD with 24,000 sysctl keys", d, &r);
    // No such sysctl exists: the first write fails, after every key was checked.
    let v = r.err(999);
    assert!(v["msg"].as_str().unwrap().contains("cnibox_x"), "{v}");
}
