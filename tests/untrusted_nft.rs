//! Untrusted processes in the node's network namespace (another user, and
//! uid 0 without capabilities: a hostNetwork pod) against cnibox's nftables
//! calls (src/nft/keeper.rs, SECURITY.md): they cannot delay a call, take or
//! plant a socket, or keep the keeper alive. Every plugin call runs under a
//! watchdog, so that a call that would hang fails the test instead; the
//! bound asserted (5 s) is generous for calls that take milliseconds.

#[path = "nft_support/mod.rs"]
mod support;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::common;
use support::*;

const BOUND: Duration = Duration::from_secs(5);
const WATCHDOG: Duration = Duration::from_secs(30);

/// A uid no account uses (setpriv takes any number).
fn stranger() -> String {
    (61000 + std::process::id() % 3000).to_string()
}

/// The kinds of untrusted process, as a command prefix.
fn untrusted() -> Vec<(&'static str, Vec<String>)> {
    let u = stranger();
    let no_caps = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"].map(String::from);
    vec![
        (
            "another user",
            ["setpriv", &format!("--reuid={u}"), &format!("--regid={u}"), "--clear-groups", "--"]
                .map(String::from)
                .to_vec(),
        ),
        ("uid 0 without capabilities", no_caps.to_vec()),
        // uid 0 to us, in the node's network namespace, with every
        // capability in its effective set: but over a user namespace of its
        // own only (it makes one, unmapped, and keeps what that gives it).
        (
            "uid 0 without capabilities, with every capability in a user namespace it made",
            no_caps.iter().cloned().chain(["unshare", "--user", "--keep-caps", "--"].map(String::from)).collect(),
        ),
    ]
}

struct Env {
    tmp: TempDir,
    path: String,
    node: Netns,
}

impl Env {
    fn new() -> Env {
        let tmp = TempDir::new("untrusted");
        let path = plugin_dir(&tmp);
        Env { path, node: Netns::new("node"), tmp }
    }

    fn bridge_conf(&self) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"utnet","type":"bridge","bridge":"ut0","isGateway":true,"ipMasq":true,
               "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.95.0.0/24"}}]]}}}}"#,
            self.tmp.join("ipam").display()
        )
    }

    fn portmap_conf(&self, ctr: &Netns, ip: &str) -> String {
        json!({"cniVersion": "1.0.0", "name": "utnet", "type": "portmap",
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ctr.path()}],
                           "ips": [{"address": ip, "interface": 0}]}})
        .to_string()
    }

    /// Run a plugin in the node namespace under the watchdog: its time and output.
    fn timed(&self, plugin: &str, cmd: &str, id: &str, ctr: &Netns, stdin: &str) -> (Duration, std::process::Output) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node.name, &format!("{}/{plugin}", self.path)]);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CNI_")) {
            c.env_remove(k);
        }
        c.envs([
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &ctr.path()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", &self.path),
        ]);
        let t = Instant::now();
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > WATCHDOG {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "{plugin} {cmd} still running after {WATCHDOG:?}: {} {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let took = t.elapsed();
        (took, child.wait_with_output().unwrap())
    }

    /// `timed`, which must succeed within BOUND; its stdout as JSON.
    fn quick(&self, who: &str, plugin: &str, cmd: &str, id: &str, ctr: &Netns, stdin: &str) -> serde_json::Value {
        let (took, out) = self.timed(plugin, cmd, id, ctr, stdin);
        assert!(
            out.status.success(),
            "{plugin} {cmd} with {who} in the namespace: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(took < BOUND, "{plugin} {cmd} took {took:?} with {who} in the namespace");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn masq_rules(&self) -> usize {
        rules(&self.node).iter().filter(|r| r.1 == "cni_plugins_masquerade" && r.2 == "masq_checks").count()
    }

    fn hostport_rules(&self, id: &str) -> usize {
        rules(&self.node).iter().filter(|r| r.1 == "cni_hostport" && r.3 == id).count()
    }

    /// Start `argv` in the node namespace as `prefix` says, and wait for its first line.
    fn spawn(&self, prefix: &[String], argv: &[&str], first: &str) -> Child {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node.name]).args(prefix).args(argv);
        let mut child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        if line.trim() != first {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{argv:?} as {prefix:?}: {line} {}", String::from_utf8_lossy(&out.stderr));
        }
        child
    }
}

/// End a helper process and return what it printed after its first line.
fn finish(mut c: Child) -> String {
    let _ = c.kill();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `flock /proc/self/ns/net sleep 600`, as one process (killed whole).
const HOLD_LOCK: &str = r#"
import fcntl, time
ns = open("/proc/self/ns/net")
fcntl.flock(ns, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"#;

/// Open the keeper's turn (its descriptor 5) and lock it as cnibox calls do.
const OPEN_TURN: &str = r#"
import fcntl, sys
try:
    f = open(f"/proc/{sys.argv[1]}/fd/5")
    fcntl.lockf(f, fcntl.LOCK_EX)
    print("locked")
except OSError:
    print("refused")
"#;

#[test]
fn a_lock_on_the_namespace_held_by_anyone_delays_no_call() {
    need_root!();
    for (who, prefix) in untrusted() {
        let e = Env::new();
        let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
        // Before and after a keeper exists: the first ADD starts one.
        for (round, id) in ["ut-1", "ut-2"].into_iter().enumerate() {
            let holder = e.spawn(&prefix, &["/usr/bin/python3", "-c", HOLD_LOCK], "locked");
            let ctr = if round == 0 { &c1 } else { &c2 };
            let r = e.quick(who, "bridge", "ADD", id, ctr, &e.bridge_conf());
            assert_eq!(e.masq_rules(), 1, "{}", ruleset_text(&e.node));
            let ip = r["ips"][0]["address"].as_str().unwrap().to_string();
            e.quick(who, "portmap", "ADD", id, ctr, &e.portmap_conf(ctr, &ip));
            assert!(e.hostport_rules(id) > 0, "{}", ruleset_text(&e.node));
            e.quick(who, "portmap", "DEL", id, ctr, &e.portmap_conf(ctr, &ip));
            assert_eq!(e.hostport_rules(id), 0, "{}", ruleset_text(&e.node));
            e.quick(who, "bridge", "DEL", id, ctr, &e.bridge_conf());
            assert_eq!(e.masq_rules(), 0, "{}", ruleset_text(&e.node));
            if round == 0 {
                let k = e.node.keepers();
                assert_eq!(k.len(), 1, "the first call started a keeper");
                // Nor can it take the turn cnibox calls take (a lock on the
                // keeper's memfd, which cnibox copies out with pidfd_getfd;
                // /proc/<keeper>/fd/5 needs less of ptrace's access than that).
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &e.node.name]).args(&prefix).args(["/usr/bin/python3", "-c", OPEN_TURN]);
                let out = c.arg(k[0].to_string()).output().unwrap();
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused", "{who}");
            }
            finish(holder);
        }
    }
}

/// Squat the keeper's name before any keeper exists, laid out as a keeper
/// is: an unbound NETLINK_NETFILTER socket at 3, the listener at 4. Print
/// "got N" for each connection that brings N descriptors.
const SQUATTER: &str = r#"
import os, socket
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
os.dup2(nl.fileno(), 3)
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind("\0cnibox/nftables-keeper")
l.listen(64)
os.dup2(l.fileno(), 4)
print("ready", flush=True)
while True:
    c, _ = l.accept()
    c.settimeout(2)
    try:
        _, anc, _, _ = c.recvmsg(16, socket.CMSG_SPACE(64))
        n = sum(len(d) // 4 for (lvl, ty, d) in anc if lvl == socket.SOL_SOCKET and ty == socket.SCM_RIGHTS)
        if n:
            print("got", n, flush=True)
    except OSError:
        pass
    c.close()
"#;

#[test]
fn a_squatted_keeper_name_gets_nothing_and_stalls_nothing() {
    need_root!();
    for (who, prefix) in untrusted() {
        let e = Env::new();
        let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
        let squatter = e.spawn(&prefix, &["/usr/bin/python3", "-c", SQUATTER], "ready");
        let r1 = e.quick(who, "bridge", "ADD", "sq-1", &c1, &e.bridge_conf());
        let r2 = e.quick(who, "bridge", "ADD", "sq-2", &c2, &e.bridge_conf());
        assert_eq!(e.masq_rules(), 2, "{}", ruleset_text(&e.node));
        e.quick(who, "bridge", "CHECK", "sq-2", &c2, &with_prev(&e.bridge_conf(), &r2));
        let ip = r1["ips"][0]["address"].as_str().unwrap().to_string();
        e.quick(who, "portmap", "ADD", "sq-1", &c1, &e.portmap_conf(&c1, &ip));
        assert!(e.hostport_rules("sq-1") > 0, "{}", ruleset_text(&e.node));
        e.quick(who, "portmap", "DEL", "sq-1", &c1, &e.portmap_conf(&c1, &ip));
        e.quick(who, "bridge", "DEL", "sq-1", &c1, &e.bridge_conf());
        e.quick(who, "bridge", "DEL", "sq-2", &c2, &e.bridge_conf());
        assert_eq!(e.masq_rules(), 0, "{}", ruleset_text(&e.node));
        assert_eq!(e.hostport_rules("sq-1"), 0);
        assert!(e.node.keepers().is_empty(), "no keeper starts under a squatted name");
        let said = finish(squatter);
        assert!(!said.contains("got"), "the squatter ({who}) was sent descriptors: {said}");
    }
}

/// Connect to the keeper every 300 ms, each time offering a bound netfilter
/// socket of our own (and, as proof, the only socket we have: our own
/// connection), for `secs` seconds.
const PESTER: &str = r#"
import socket, sys, time
print("started", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
        nl.bind((0, 0))
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect("\0cnibox/nftables-keeper")
        c.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(memoryview(
            __import__("array").array("i", [nl.fileno(), c.fileno()]))))])
        c.close()
        nl.close()
    except OSError:
        pass
    time.sleep(0.3)
"#;

#[test]
fn untrusted_connections_do_not_keep_the_keeper_alive() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    e.quick("nobody", "bridge", "ADD", "ka-1", &c1, &e.bridge_conf());
    let keepers = e.node.keepers();
    assert_eq!(keepers.len(), 1);
    let k = keepers[0];
    let last_call = Instant::now();
    let pests: Vec<Child> = untrusted()
        .into_iter()
        .map(|(_, prefix)| e.spawn(&prefix, &["/usr/bin/python3", "-c", PESTER, "60"], "started"))
        .collect();
    // The keeper's idle time is 10 s; allow it three times that.
    while std::path::Path::new(&format!("/proc/{k}")).exists() && last_call.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let gone = !std::path::Path::new(&format!("/proc/{k}")).exists();
    for p in pests {
        finish(p);
    }
    assert!(gone, "the keeper is still alive {:?} after the last cnibox call", last_call.elapsed());
    // And it is still of use: the next call starts a new one and hands over to it.
    e.quick("nobody", "bridge", "DEL", "ka-1", &c1, &e.bridge_conf());
    assert_eq!(e.masq_rules(), 0);
    assert_eq!(e.node.keepers().len(), 1);
}
