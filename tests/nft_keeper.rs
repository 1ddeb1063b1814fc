//! The nftables socket keeper (src/nft/keeper.rs): after the first call in a
//! node namespace, a small process there collects the NETLINK_NETFILTER
//! sockets later calls are done with and releases them when no call runs,
//! so that no call releases one (a release waits for nf_tables to free the
//! last commit). Checked on
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

/// Whether the trace shows the call finding the keeper, taking its listener
/// (descriptor 4) as proof, and sending its socket with it.
fn handed_over(trace: &[String]) -> bool {
    opened_nf_socket(trace)
        && trace.iter().any(|l| l.contains("connect(") && l.contains(&format!("sun_path={}", NAME.replace('@', "@\""))))
        && trace.iter().any(|l| l.contains("pidfd_getfd(") && l.contains(", 4, 0)") && !l.contains("= -1"))
        && trace.iter().any(|l| l.contains("sendmsg(") && l.contains("SCM_RIGHTS") && l.ends_with("= 1"))
}

const CALLS: &str = "socket,connect,pidfd_getfd,sendmsg";

#[test]
fn later_calls_hand_their_sockets_to_the_keeper_and_it_holds_nothing_else() {
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
    // and its listening socket at 4 (where callers take it); nothing of the
    // caller (no pipe, no lock), at "/", in a session of its own.
    let (socks, other) = fds(k);
    // (and at 5 the memfd whose lock is the namespace's turn)
    for (fd, target) in &other {
        assert!(
            ["0", "1", "2"].contains(&fd.as_str()) && target == "/dev/null"
                || fd == "5" && target.starts_with("/memfd:cnibox-nftables-turn"),
            "keeper {k} holds fd {fd} -> {target}"
        );
    }
    assert_eq!(other.len(), 4, "{other:?}");
    let nf = e.nf_sockets();
    assert_eq!(nf.len(), 1, "netfilter sockets in the node: {nf:?}");
    let unix = e.proc_net("unix");
    let listener = unix.lines().find(|l| l.ends_with(NAME)).unwrap_or_else(|| panic!("no {NAME} in\n{unix}"));
    let listener_ino = listener.split_whitespace().nth(6).unwrap().to_string();
    let want = vec![nf[0].0.clone(), listener_ino];
    let mut sorted = want.clone();
    sorted.sort();
    let mut socks = socks;
    socks.sort();
    assert_eq!(socks, sorted, "the keeper's sockets are its netfilter socket and its listener");
    let at3 = std::fs::read_link(format!("/proc/{k}/fd/3")).unwrap().to_string_lossy().into_owned();
    assert_eq!(at3, format!("socket:[{}]", nf[0].0));
    let at4 = std::fs::read_link(format!("/proc/{k}/fd/4")).unwrap().to_string_lossy().into_owned();
    assert_eq!(at4, format!("socket:[{}]", want[1]));
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    assert!(
        !locks.lines().any(|l| l.split_whitespace().nth(4) == Some(&k.to_string())),
        "the keeper holds a lock:\n{locks}"
    );
    assert_eq!(std::fs::read_link(format!("/proc/{k}/cwd")).unwrap().to_string_lossy(), "/");
    let stat = std::fs::read_to_string(format!("/proc/{k}/stat")).unwrap();
    let sid = stat.rsplit(')').next().unwrap().split_whitespace().nth(3).unwrap().to_string();
    assert_eq!(sid, k.to_string(), "the keeper leads its own session");

    // The next calls hand their sockets to the keeper: ADD, CHECK and DEL.
    let (r2, trace) = e.bridge_traced("ADD", "kp-2", &c2, &conf);
    r2.ok();
    assert!(handed_over(&trace), "second ADD:\n{}", trace.join("\n"));
    assert_eq!(e.masq_rules(), 2);
    let (check, trace) = e.bridge_traced("CHECK", "kp-2", &c2, &with_prev(&conf, &r2.json()));
    check.ok();
    assert!(handed_over(&trace), "CHECK:\n{}", trace.join("\n"));
    let (del, trace) = e.bridge_traced("DEL", "kp-1", &c1, &conf);
    del.ok();
    assert!(handed_over(&trace), "DEL:\n{}", trace.join("\n"));
    assert_eq!(e.masq_rules(), 1);

    // portmap's conntrack cleanup (UDP) uses the same socket.
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
    assert!(handed_over(&trace), "portmap ADD:\n{}", trace.join("\n"));

    // Still the one keeper. The sockets handed over are released once a
    // second passes without calls: then only its own is left, empty.
    assert_eq!(e.keeper(), k);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while e.nf_sockets().len() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(e.nf_sockets(), vec![(nf[0].0.clone(), 0, false)], "the keeper's socket, empty");
    assert_eq!(fds(k).0.len(), 2, "the keeper released what it was handed");
}

/// Run as `nobody`: find the keeper and try to take its listener (the
/// proof callers send with their sockets).
const OTHER_USER: &str = r#"
import ctypes, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0cnibox/nftables-keeper")
pid, uid, gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
pidfd = libc.syscall(434, pid, 0)
fd = libc.syscall(438, pidfd, 4, 0)
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
fn only_its_own_user_reaches_the_keeper_and_a_squatted_name_is_not_trusted() {
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
    // Root still hands over.
    let (r, trace) = e.bridge_traced("ADD", "kp-2", &c2, &conf);
    r.ok();
    assert!(handed_over(&trace), "{}", trace.join("\n"));
    assert_eq!(e.keeper(), k);

    // Another node namespace where someone else took the name first: the
    // plugin takes nothing from that process and sends it nothing, works with
    // a socket of its own and starts no keeper (the name is taken).
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
        found
            && opened_nf_socket(&trace)
            && !trace.iter().any(|l| l.contains("pidfd_getfd(") || l.contains("SCM_RIGHTS")),
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
