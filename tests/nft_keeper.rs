//! The nftables socket keeper (src/nft/keeper.rs): after the first call in a
//! node namespace, a small process there holds a NETLINK_NETFILTER socket and
//! later calls take copies of it, one at a time, so that no call releases
//! one (a release waits for nf_tables to free the last commit). Checked on
//! kernel state: which sockets exist in the namespace (/proc/net/netlink,
//! /proc/net/unix), what the keeper holds (/proc/<pid>/fd), and what a call
//! asks the kernel for (strace), never on timing.

#[path = "nft_support/mod.rs"]
mod support;
use serde_json::json;
use support::common;
use support::*;

const NAME: &str = "@cnibox/nftables-keeper";
const NETLINK_NETFILTER: &str = "12";

struct Env {
    tmp: TempDir,
    path: String,
    node: Netns,
}

impl Env {
    fn new() -> Env {
        let tmp = TempDir::new("keeper");
        let path = plugin_dir(&tmp);
        Env { path, node: Netns::new("node"), tmp }
    }

    fn conf(&self) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"kpnet","type":"bridge","bridge":"kp0","isGateway":true,"ipMasq":true,
               "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.96.0.0/24"}}]]}}}}"#,
            self.tmp.join("ipam").display()
        )
    }

    fn env(&self, cmd: &'static str, id: &str, ctr: &Netns) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", cmd.into()),
            ("CNI_CONTAINERID", id.into()),
            ("CNI_NETNS", ctr.path()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_PATH", self.path.clone()),
        ]
    }

    fn bridge(&self, cmd: &'static str, id: &str, ctr: &Netns, stdin: &str) -> Run {
        let mut c = Call::new(Some(&self.node), "bridge");
        for (k, v) in self.env(cmd, id, ctr) {
            c.set(k, &v);
        }
        c.run(stdin)
    }

    /// A bridge call under strace: its result, the sockets it opened and
    /// connected, and the descriptors it took from other processes.
    fn bridge_traced(&self, cmd: &'static str, id: &str, ctr: &Netns, stdin: &str) -> (Run, Vec<String>) {
        let env = self.env(cmd, id, ctr);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        traced(&self.node, &self.tmp, &format!("{}/bridge", self.path), &env, stdin, CALLS)
    }

    fn masq_rules(&self) -> usize {
        rules(&self.node).iter().filter(|r| r.1 == "cni_plugins_masquerade" && r.2 == "masq_checks").count()
    }

    /// The keeper's own table (`inet cnibox_keeper`), from `nft -j`: how
    /// many conntrack rules it holds; None when the table is not there.
    fn hold_table(&self) -> Option<usize> {
        let v = self.node.nft_json();
        let items = v["nftables"].as_array().cloned().unwrap_or_default();
        if !items.iter().any(|i| i["table"]["family"] == "inet" && i["table"]["name"] == "cnibox_keeper") {
            return None;
        }
        let ct = items
            .iter()
            .map(|i| &i["rule"])
            .filter(|r| {
                r["table"] == "cnibox_keeper" && r["chain"] == "conntrack" && r["expr"].to_string().contains("\"ct\"")
            })
            .count();
        Some(ct)
    }

    /// The one keeper of the node namespace.
    fn keeper(&self) -> u32 {
        let k = self.node.keepers();
        assert_eq!(k.len(), 1, "keepers in the node namespace: {k:?}");
        k[0]
    }

    /// `cat <file>` inside the node namespace (/proc/net/* is per namespace).
    fn proc_net(&self, file: &str) -> String {
        String::from_utf8_lossy(&self.node.exec(&["cat", &format!("/proc/net/{file}")]).stdout).into_owned()
    }

    /// Userspace NETLINK_NETFILTER sockets of the node namespace, from
    /// /proc/net/netlink: (inode, bytes queued, dump in progress). The
    /// kernel's own nfnetlink socket (port id 0) is left out.
    fn nf_sockets(&self) -> Vec<(String, u64, bool)> {
        self.proc_net("netlink")
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 10 && f[1] == NETLINK_NETFILTER && f[2] != "0")
                    .then(|| (f[9].to_string(), f[4].parse().unwrap_or(0), f[6] != "0"))
            })
            .collect()
    }
}

/// The socket inodes a process holds ("socket:[123]" links), and its other descriptors' targets.
fn fds(pid: u32) -> (Vec<String>, Vec<(String, String)>) {
    let mut socks = Vec::new();
    let mut other = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(e.path()).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
        match target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            Some(ino) => socks.push(ino.to_string()),
            None => other.push((e.file_name().to_string_lossy().into_owned(), target)),
        }
    }
    (socks, other)
}

/// Whether the trace shows a NETLINK_NETFILTER socket of the call's own.
fn opened_nf_socket(trace: &[String]) -> bool {
    trace.iter().any(|l| l.contains("socket(AF_NETLINK") && l.contains("NETLINK_NETFILTER"))
}

/// Whether the trace shows the call finding the keeper and taking its socket.
fn borrowed(trace: &[String]) -> bool {
    trace.iter().any(|l| l.contains("connect(") && l.contains(&format!("sun_path={}", NAME.replace('@', "@\""))))
        && trace.iter().any(|l| l.contains("pidfd_getfd(") && l.contains(", 3, 0)") && !l.contains("= -1"))
}

const CALLS: &str = "socket,connect,pidfd_getfd";

#[test]
fn later_calls_take_the_keepers_socket_and_the_keeper_holds_nothing_else() {
    need_root!();
    let e = Env::new();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let conf = e.conf();

    // The first call finds no keeper, uses a socket of its own and leaves it
    // to a new keeper. It has returned (the harness read its stdout and
    // stderr to EOF) while the keeper lives on. (Not traced: `strace -f`
    // would follow the keeper and wait for it to leave.)
    assert!(e.node.keepers().is_empty());
    e.bridge("ADD", "kp-1", &c1, &conf).ok();
    let k = e.keeper();
    assert_eq!(e.masq_rules(), 1);

    // What the keeper holds: stdio on /dev/null, its netfilter socket at 3
    // (where borrowers take it) and its listening socket; nothing of the
    // caller (no pipe, no lock), at "/", in a session of its own.
    let (socks, other) = fds(k);
    for (fd, target) in &other {
        assert!(
            ["0", "1", "2"].contains(&fd.as_str()) && target == "/dev/null",
            "keeper {k} holds fd {fd} -> {target}"
        );
    }
    assert_eq!(other.len(), 3, "{other:?}");
    let nf = e.nf_sockets();
    assert_eq!(nf.len(), 1, "netfilter sockets in the node: {nf:?}");
    let unix = e.proc_net("unix");
    let listener = unix.lines().find(|l| l.ends_with(NAME)).unwrap_or_else(|| panic!("no {NAME} in\n{unix}"));
    let listener_ino = listener.split_whitespace().nth(6).unwrap().to_string();
    let mut want = vec![nf[0].0.clone(), listener_ino];
    want.sort();
    let mut socks = socks;
    socks.sort();
    assert_eq!(socks, want, "the keeper's sockets are its netfilter socket and its listener");
    let at3 = std::fs::read_link(format!("/proc/{k}/fd/3")).unwrap().to_string_lossy().into_owned();
    assert_eq!(at3, format!("socket:[{}]", nf[0].0));
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    assert!(
        !locks.lines().any(|l| l.split_whitespace().nth(4) == Some(&k.to_string())),
        "the keeper holds a lock:\n{locks}"
    );
    assert_eq!(std::fs::read_link(format!("/proc/{k}/cwd")).unwrap().to_string_lossy(), "/");
    let stat = std::fs::read_to_string(format!("/proc/{k}/stat")).unwrap();
    let sid = stat.rsplit(')').next().unwrap().split_whitespace().nth(3).unwrap().to_string();
    assert_eq!(sid, k.to_string(), "the keeper leads its own session");

    // The next calls ask the keeper and open no netfilter socket: ADD, CHECK and DEL.
    let (r2, trace) = e.bridge_traced("ADD", "kp-2", &c2, &conf);
    r2.ok();
    assert!(borrowed(&trace) && !opened_nf_socket(&trace), "second ADD:\n{}", trace.join("\n"));
    assert_eq!(e.masq_rules(), 2);
    let (check, trace) = e.bridge_traced("CHECK", "kp-2", &c2, &with_prev(&conf, &r2.json()));
    check.ok();
    assert!(borrowed(&trace) && !opened_nf_socket(&trace), "CHECK:\n{}", trace.join("\n"));
    let (del, trace) = e.bridge_traced("DEL", "kp-1", &c1, &conf);
    del.ok();
    assert!(borrowed(&trace) && !opened_nf_socket(&trace), "DEL:\n{}", trace.join("\n"));
    assert_eq!(e.masq_rules(), 1);

    // portmap's conntrack cleanup (UDP) shares the socket too.
    let ctr_ip = r2.json()["ips"][0]["address"].as_str().unwrap().to_string();
    let pm = json!({"cniVersion": "1.0.0", "name": "kpnet", "type": "portmap",
        "runtimeConfig": {"portMappings": [{"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]},
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": c2.path()}],
                       "ips": [{"address": ctr_ip, "interface": 0}]}})
    .to_string();
    let env = e.env("ADD", "kp-2", &c2);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (pm_add, trace) =
        traced(&e.node, &e.tmp, &format!("{}/portmap", e.path), &env, &pm, &format!("{CALLS},sendto"));
    pm_add.ok();
    assert!(
        trace.iter().any(|l| l.contains("IPCTNL_MSG_CT_GET") || l.contains("NFNL_SUBSYS_CTNETLINK")),
        "no conntrack dump:\n{}",
        trace.join("\n")
    );
    assert!(borrowed(&trace) && !opened_nf_socket(&trace), "portmap ADD:\n{}", trace.join("\n"));

    // Still the one keeper and its one socket, with nothing left queued on it.
    assert_eq!(e.keeper(), k);
    let nf_now = e.nf_sockets();
    assert_eq!(nf_now, vec![(nf[0].0.clone(), 0, false)], "the keeper's socket, empty");
}

/// A borrower that dies mid-way (here: a request and a large dump sent, no
/// reply read, then SIGKILL) leaves replies queued and a dump half done on
/// the shared socket. The next call must throw them away, not mistake them
/// for its own, and not be refused its own dumps (EBUSY).
const DIE_MIDWAY: &str = r#"
import ctypes, fcntl, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
turn = open("/proc/thread-self/ns/net")
fcntl.flock(turn, fcntl.LOCK_EX)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0cnibox/nftables-keeper")
pid, uid, gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
pidfd = libc.syscall(434, pid, 0)
fd = libc.syscall(438, pidfd, 3, 0)
if fd < 0:
    print("pidfd_getfd:", os.strerror(ctypes.get_errno())); sys.exit(1)
nl = socket.socket(fileno=fd)
def msg(ty, flags, seq):
    return struct.pack("=IHHII", 20, ty, flags, seq, 0) + bytes(4)
REQUEST, DUMP = 1, 0x300
nl.send(msg(10 << 8 | 16, REQUEST, 1))          # NFT_MSG_GETGEN
nl.send(msg(10 << 8 | 7, REQUEST | DUMP, 2))    # NFT_MSG_GETRULE, every family
print("sent", flush=True)
os.kill(os.getpid(), 9)
"#;

#[test]
fn replies_left_by_a_borrower_killed_midway_do_not_disturb_the_next_call() {
    need_root!();
    let e = Env::new();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let conf = e.conf();
    e.bridge("ADD", "kp-1", &c1, &conf).ok();
    let k = e.keeper();
    // Enough rules that a dump of them takes several parts.
    let mut script = String::from("table ip filler {\n chain c {\n");
    for i in 0..600 {
        script.push_str(&format!(
            "  ip saddr 192.0.2.{} tcp dport {} counter accept comment \"filler rule {i}\"\n",
            i % 250,
            1000 + i
        ));
    }
    script.push_str(" }\n}\n");
    nft_apply(&e.node, &script);

    let out = e.node.exec(&["python3", "-c", DIE_MIDWAY]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sent", "{}", String::from_utf8_lossy(&out.stderr));
    let nf = e.nf_sockets();
    assert_eq!(nf.len(), 1, "{nf:?}");
    assert!(nf[0].1 > 0 && nf[0].2, "the shared socket should hold unread replies and a dump in progress: {nf:?}");

    let r = e.bridge("ADD", "kp-2", &c2, &conf);
    r.ok();
    assert_eq!(e.masq_rules(), 2, "{}", ruleset_text(&e.node));
    e.bridge("CHECK", "kp-2", &c2, &with_prev(&conf, &r.json())).ok();
    // The same keeper, its socket cleaned up rather than given up.
    assert_eq!(e.keeper(), k);
    assert_eq!(e.nf_sockets(), vec![(nf[0].0.clone(), 0, false)]);
    e.bridge("DEL", "kp-2", &c2, &conf).ok();
    e.bridge("DEL", "kp-1", &c1, &conf).ok();
    assert_eq!(e.masq_rules(), 0);
}

/// Run as `nobody`: find the keeper and try to take its socket.
const OTHER_USER: &str = r#"
import ctypes, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0cnibox/nftables-keeper")
pid, uid, gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
pidfd = libc.syscall(434, pid, 0)
fd = libc.syscall(438, pidfd, 3, 0)
print("taken" if fd >= 0 else os.strerror(ctypes.get_errno()))
"#;

/// Run as `nobody`: hold the keeper's name first, with a netfilter socket
/// of our own at descriptor 3 for whoever takes it.
const SQUATTER: &str = r#"
import os, socket
os.setgid(65534); os.setuid(65534)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
nl.bind((0, 0))
os.dup2(nl.fileno(), 3)
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind("\0cnibox/nftables-keeper")
l.listen(8)
print("ready", flush=True)
while True:
    l.accept()[0].close()
"#;

#[test]
fn the_socket_goes_to_its_own_user_only_and_a_squatted_name_is_not_trusted() {
    need_root!();
    let e = Env::new();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let conf = e.conf();
    e.bridge("ADD", "kp-1", &c1, &conf).ok();
    let k = e.keeper();
    let out = e.node.exec(&["python3", "-c", OTHER_USER]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Operation not permitted",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Root still takes it.
    let (r, trace) = e.bridge_traced("ADD", "kp-2", &c2, &conf);
    r.ok();
    assert!(borrowed(&trace) && !opened_nf_socket(&trace), "{}", trace.join("\n"));
    assert_eq!(e.keeper(), k);

    // Another node namespace where someone else took the name first: the
    // plugin takes nothing from that process, works with a socket of its own
    // and starts no keeper (the name is taken).
    let e2 = Env::new();
    let c3 = Netns::new("c3");
    let mut squatter = Bg(std::process::Command::new("ip")
        .args(["netns", "exec", &e2.node.name, "python3", "-c", SQUATTER])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(squatter.0.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let (r, trace) = e2.bridge_traced("ADD", "kp-3", &c3, &e2.conf());
    r.ok();
    let found = trace.iter().any(|l| l.contains("connect(") && l.contains("nftables-keeper") && l.ends_with("= 0"));
    assert!(
        found && opened_nf_socket(&trace) && !trace.iter().any(|l| l.contains("pidfd_getfd(")),
        "{}",
        trace.join("\n")
    );
    assert_eq!(e2.masq_rules(), 1, "{}", ruleset_text(&e2.node));
    assert!(e2.node.keepers().is_empty(), "no keeper under a squatted name");
    e2.bridge("DEL", "kp-3", &c3, &e2.conf()).ok();
    assert_eq!(e2.masq_rules(), 0);
}

#[test]
fn the_keeper_leaves_when_idle_and_the_next_call_starts_another() {
    need_root!();
    let e = Env::new();
    let c1 = Netns::new("c1");
    let conf = e.conf();
    e.bridge("ADD", "kp-1", &c1, &conf).ok();
    let k = e.keeper();
    // While it lives, its own table keeps conntrack on: one conntrack
    // expression, still there when no pod is left.
    assert_eq!(e.hold_table(), Some(1), "{}", ruleset_text(&e.node));
    e.bridge("DEL", "kp-1", &c1, &conf).ok();
    assert_eq!(e.keeper(), k);
    assert_eq!(e.masq_rules(), 0);
    assert_eq!(e.hold_table(), Some(1), "{}", ruleset_text(&e.node));
    // Its idle time is seconds; allow far more on a loaded machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::path::Path::new(&format!("/proc/{k}")).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(e.node.keepers().is_empty(), "the keeper is still there after two minutes idle");
    assert!(e.nf_sockets().is_empty(), "its socket went with it: {:?}", e.nf_sockets());
    assert!(!e.proc_net("unix").contains(NAME), "and its name");
    assert_eq!(e.hold_table(), None, "and its table: {}", ruleset_text(&e.node));
    e.bridge("ADD", "kp-1", &c1, &conf).ok();
    assert_eq!(e.node.keepers().len(), 1);
    assert_eq!(e.masq_rules(), 1);
    assert_eq!(e.hold_table(), Some(1));
}

#[test]
fn a_killed_keepers_table_is_taken_over_by_the_next_keeper() {
    need_root!();
    let e = Env::new();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let conf = e.conf();
    e.bridge("ADD", "kp-1", &c1, &conf).ok();
    let k = e.keeper();
    assert_eq!(e.hold_table(), Some(1));
    // SIGKILL: no cleanup of its own; the table stays until a keeper comes.
    unsafe { libc::kill(k as i32, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !e.node.keepers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(e.node.keepers().is_empty());
    assert_eq!(e.hold_table(), Some(1), "{}", ruleset_text(&e.node));
    // The next call's keeper takes it over: still one rule, not two.
    e.bridge("ADD", "kp-2", &c2, &conf).ok();
    assert_ne!(e.keeper(), k);
    assert_eq!(e.hold_table(), Some(1), "{}", ruleset_text(&e.node));
    // The attachments' rules are not the keeper's.
    assert_eq!(e.masq_rules(), 2);
    e.bridge("DEL", "kp-1", &c1, &conf).ok();
    e.bridge("DEL", "kp-2", &c2, &conf).ok();
    assert_eq!(e.masq_rules(), 0);
}

/// Hold the namespace's turn (the lock every nftables call of cnibox takes)
/// until stdin closes.
const HOLD_TURN: &str = r#"
import fcntl, sys
turn = open("/proc/thread-self/ns/net")
fcntl.flock(turn, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"#;

/// The descriptor a process is blocked on in flock(2), if it is.
fn blocked_in_flock(pid: u32) -> Option<String> {
    const SYS_FLOCK: &str = "73";
    let sc = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let mut f = sc.split_whitespace();
    if f.next()? != SYS_FLOCK {
        return None;
    }
    let fd = i64::from_str_radix(f.next()?.trim_start_matches("0x"), 16).ok()?;
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok().map(|l| l.to_string_lossy().into_owned())
}

#[test]
fn calls_take_turns_on_the_namespace() {
    need_root!();
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let e = Env::new();
    let c1 = Netns::new("c1");
    let mut holder = Bg(Command::new("ip")
        .args(["netns", "exec", &e.node.name, "python3", "-c", HOLD_TURN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap());
    let mut line = String::new();
    std::io::BufReader::new(holder.0.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");

    let mut add = Command::new("ip");
    add.args(["netns", "exec", &e.node.name, &format!("{}/bridge", e.path)]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CNI_")) {
        add.env_remove(k);
    }
    add.envs(e.env("ADD", "kp-1", &c1)).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut add = add.spawn().unwrap();
    add.stdin.take().unwrap().write_all(e.conf().as_bytes()).unwrap();
    // The ADD comes to its masquerade rules and waits for the turn: blocked
    // in flock on the node's namespace, nothing written yet.
    use std::os::unix::fs::MetadataExt;
    let node_ns = format!("net:[{}]", std::fs::metadata(e.node.path()).unwrap().ino());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while blocked_in_flock(add.id()).as_deref() != Some(node_ns.as_str()) {
        assert!(std::time::Instant::now() < deadline, "the ADD never waited for the namespace's lock");
        assert!(add.try_wait().unwrap().is_none(), "the ADD finished while another held the turn");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(e.masq_rules(), 0);
    drop(holder);
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(e.masq_rules(), 1);
}
