//! host-local's and tuning's state on a node shared with people who are not
//! root: interface names a tenant chooses, data directories another user can
//! reach, files planted where the state lives, and state files too large to
//! be ours. Each test runs the built binary as a runtime does and checks what
//! the files on disk hold afterwards; the unprivileged steps run as a
//! throwaway user the test creates and removes.

mod common;
use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NETNS: &str = "/nonexistent/netns";

/// One host-local network in a private data directory.
struct Net {
    tmp: TempDir,
    name: &'static str,
}

impl Net {
    fn new(name: &'static str) -> Net {
        Net { tmp: TempDir::new("us"), name }
    }

    fn data_dir(&self) -> PathBuf {
        self.tmp.join("data")
    }

    fn dir(&self) -> PathBuf {
        self.data_dir().join(self.name)
    }

    fn conf(&self, extra: Value) -> String {
        let mut c = json!({"cniVersion": "1.1.0", "name": self.name, "type": "bridge", "ipam": {
            "type": "host-local", "dataDir": self.data_dir(), "ranges": [[{"subnet": "10.23.0.0/28"}]]}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c.to_string()
    }

    fn env(&self, cmd: &str, id: &str, ifname: &str) -> Vec<(String, String)> {
        [("CNI_COMMAND", cmd), ("CNI_CONTAINERID", id), ("CNI_NETNS", NETNS), ("CNI_IFNAME", ifname)]
            .into_iter()
            .chain([("CNI_PATH", "/nonexistent/bin")])
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Run host-local; it must answer within 5 s (a plugin that waits on a
    /// FIFO or a lock is killed and the test fails).
    fn run(&self, cmd: &str, id: &str, ifname: &str, conf: &str) -> Run {
        run_bounded("host-local", &self.env(cmd, id, ifname), conf)
    }

    fn add(&self, id: &str, ifname: &str) -> String {
        let r = self.run("ADD", id, ifname, &self.conf(json!({})));
        let v = r.ok().json();
        v["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
    }

    /// "address id ifname" of every reservation line, as stored.
    fn held(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir().join("cnibox.state")).unwrap_or_default();
        text.lines()
            .filter(|l| l.split(' ').next().is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok()))
            .map(str::to_string)
            .collect()
    }
}

/// Run the plugin `argv0` with `env` and `stdin`, killing it after 5 s.
fn run_bounded(argv0: &str, env: &[(String, String)], stdin: &str) -> Run {
    run_within(argv0, env, stdin, Duration::from_secs(5))
}

/// The same, killing it after `limit`.
fn run_within(argv0: &str, env: &[(String, String)], stdin: &str, limit: Duration) -> Run {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin());
    cmd.arg0(argv0).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{argv0} {env:?} did not answer within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    Run { code: status.code().unwrap_or(-1), stdout, stderr }
}

/// A user that exists for the length of a test.
struct User {
    name: String,
}

impl User {
    fn new() -> User {
        let name = format!("cbu{}", unique("").replace('x', ""));
        let ok = Command::new("useradd").args(["-M", "-U", "-s", "/bin/false", &name]).status().unwrap().success();
        assert!(ok, "useradd {name}");
        User { name }
    }

    fn id(&self, flag: &str) -> String {
        let out = Command::new("id").args([flag, &self.name]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn uid(&self) -> String {
        self.id("-u")
    }

    /// Run `argv` as this user, with no supplementary groups.
    fn run(&self, argv: &[&str]) -> bool {
        let (uid, gid) = (self.uid(), self.id("-g"));
        Command::new("setpriv")
            .args(["--reuid", &uid, "--regid", &gid, "--clear-groups", "--"])
            .args(argv)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Every line of every file under `dir` that contains `word` as a whole word,
/// as `grep -rw` shows them ("file:line").
fn grep(dir: &Path, word: &str) -> Vec<String> {
    let out = Command::new("grep").args(["-rwF", "--", word]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn utf8_and_control_interface_names_get_their_own_addresses_and_are_released() {
    need_root!();
    let n = Net::new("names");
    let (a, b, c) = (n.add("ctr-a", "\u{e9}0"), n.add("ctr-b", "\u{e9}0"), n.add("ctr-c", "x\u{1}"));
    assert!(a != b && b != c && a != c, "one address each: {a} {b} {c}");
    let held = n.held();
    assert!(held.contains(&format!("{a} ctr-a \\xc3\\xa90")), "readable with cat: {held:?}");
    assert!(held.contains(&format!("{c} ctr-c x\\x01")), "{held:?}");
    n.run("CHECK", "ctr-a", "\u{e9}0", &n.conf(json!({}))).ok();
    n.run("CHECK", "ctr-a", "e0", &n.conf(json!({}))).err(999);
    // DEL releases exactly that attachment; a second ADD of it then gets a free address again
    n.run("DEL", "ctr-a", "\u{e9}0", &n.conf(json!({}))).ok();
    assert!(!n.held().iter().any(|l| l.contains("ctr-a")), "{:?}", n.held());
    // GC keeps what the runtime lists, by its real name
    let valid = json!({"cni.dev/valid-attachments": [{"containerID": "ctr-b", "ifname": "\u{e9}0"}]});
    n.run("GC", "", "", &n.conf(valid)).ok();
    assert_eq!(n.held(), [format!("{b} ctr-b \\xc3\\xa90")]);

    // One address to give: held by a pod with such a name, it is not given again, and DEL frees it.
    let one = json!({"ipam": {"type": "host-local", "dataDir": n.data_dir(),
        "ranges": [[{"subnet": "10.23.1.0/28", "rangeStart": "10.23.1.5", "rangeEnd": "10.23.1.5"}]]}});
    let one = n.conf(one);
    for ifname in ["\u{e9}1", "y\u{7f}"] {
        n.run("ADD", "ctr-d", ifname, &one).ok();
        let e = n.run("ADD", "ctr-e", "eth0", &one).err(999);
        assert!(e["msg"].as_str().unwrap().contains("no IP addresses available"), "{ifname:?}: {e}");
        n.run("DEL", "ctr-d", ifname, &one).ok();
        n.run("ADD", "ctr-e", "eth0", &one).ok();
        n.run("DEL", "ctr-e", "eth0", &one).ok();
    }
}

#[test]
fn whitespace_in_an_interface_name_is_refused_as_the_reference_refuses_it() {
    need_root!();
    let n = Net::new("ws");
    for bad in ["eth\u{b}0", "eth\t0", "e\u{85}0", "e\u{a0}0", "e\u{2028}"] {
        let e = n.run("ADD", "ctr-a", bad, &n.conf(json!({}))).err(4);
        assert_eq!(e["msg"], "interface name contains / or : or whitespace characters", "{bad:?}");
    }
    assert!(!n.dir().exists(), "nothing was created");
}

#[test]
fn network_dir_made_by_another_user_in_a_sticky_data_dir_is_refused() {
    need_root!();
    let n = Net::new("theirs");
    let user = User::new();
    std::fs::create_dir_all(n.data_dir()).unwrap();
    std::fs::set_permissions(n.data_dir(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Another network, made by root in the same sticky directory: that one is used.
    let mine = Net { tmp: TempDir { path: n.tmp.path.clone() }, name: "mine" };
    let first = mine.add("ctr-1", "eth0");
    // The user cannot take it away: the sticky bit keeps them from removing or renaming it.
    let d = mine.dir().to_string_lossy().into_owned();
    assert!(!user.run(&["rm", "-rf", &d]) && !user.run(&["mv", &d, &format!("{d}.x")]));
    assert!(!user.run(&["rm", "-f", &format!("{d}/cnibox.state")]));
    assert_ne!(mine.add("ctr-2", "eth0"), first, "nothing handed out twice");
    // A network directory the user made first is refused, and nothing is written into it.
    assert!(user.run(&["mkdir", "-m", "0777", &n.dir().to_string_lossy()]));
    let e = n.run("ADD", "ctr-1", "eth0", &n.conf(json!({}))).err(999);
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains(&format!("owned by uid {}", user.uid())) && msg.contains("refusing"), "{msg}");
    assert_eq!(std::fs::read_dir(n.dir()).unwrap().count(), 0, "nothing written into their directory");
    n.run("DEL", "ctr-1", "eth0", &n.conf(json!({}))).err(999);
    // Made by root but left writable by others: refused too.
    std::fs::remove_dir(n.dir()).unwrap();
    std::fs::create_dir(n.dir()).unwrap();
    std::fs::set_permissions(n.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = n.run("ADD", "ctr-1", "eth0", &n.conf(json!({}))).err(999);
    assert!(e["msg"].as_str().unwrap().contains("others may write to it (mode 777)"), "{e}");
    std::mem::forget(mine.tmp); // n owns the directory
}

#[test]
fn gc_of_one_network_leaves_the_others_alone() {
    need_root!();
    let a = Net::new("neta");
    let b = Net { tmp: TempDir { path: a.tmp.path.clone() }, name: "netb" };
    a.add("ctr-x", "eth0");
    b.add("ctr-x", "eth0");
    b.add("ctr-y", "eth0");
    a.run("GC", "", "", &a.conf(json!({"cni.dev/valid-attachments": []}))).ok();
    assert!(a.held().is_empty());
    assert_eq!(b.held().len(), 2, "netb untouched: {:?}", b.held());
    std::mem::forget(b.tmp);
}

#[test]
fn fifos_where_the_state_lives_are_refused_at_once() {
    need_root!();
    for name in ["cnibox.state", "lock", ".cnibox.state.spare"] {
        let n = Net::new("fifo");
        std::fs::create_dir_all(n.dir()).unwrap();
        let fifo = n.dir().join(name);
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        for cmd in ["ADD", "DEL"] {
            let r = n.run(cmd, "ctr-a", "eth0", &n.conf(json!({})));
            match name {
                // The scratch name: whatever is there is removed before use.
                ".cnibox.state.spare" => {
                    r.ok();
                    assert!(std::fs::symlink_metadata(&fifo).is_err(), "{name}: removed");
                }
                _ => {
                    let e = r.err(999);
                    assert!(e["msg"].as_str().unwrap().contains("a FIFO"), "{name} {cmd}: {e}");
                }
            }
        }
        if name == ".cnibox.state.spare" {
            assert!(n.held().is_empty(), "ADD then DEL: {:?}", n.held());
        }
    }
}

#[test]
fn del_and_gc_release_from_a_state_file_over_64_mib() {
    need_root!();
    let n = Net::new("huge");
    let a = n.add("ctr-a", "eth0");
    n.add("ctr-b", "eth0");
    // Padding a hand edit appended: reservations outside the range.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(n.dir().join("cnibox.state")).unwrap();
        let mut w = std::io::BufWriter::new(&mut f);
        let (mut size, mut i) = (0u64, 0u32);
        while size <= 64 << 20 {
            let line = format!("10.{}.{}.{} pad{i:0>40} eth0\n", 100 + (i >> 16 & 0x7f), i >> 8 & 255, i & 255);
            size += line.len() as u64;
            w.write_all(line.as_bytes()).unwrap();
            i += 1;
        }
    }
    let e = n.run("ADD", "ctr-c", "eth0", &n.conf(json!({}))).err(999);
    assert!(e["msg"].as_str().unwrap().contains("more than a network can need"), "{e}");
    n.run("DEL", "ctr-a", "eth0", &n.conf(json!({}))).ok();
    let held = n.held();
    assert!(!held.iter().any(|l| l.starts_with(&format!("{a} "))), "ctr-a's address released");
    assert!(held.iter().any(|l| l.contains(" ctr-b ")), "ctr-b still held");
    let valid = json!({"cni.dev/valid-attachments": [{"containerID": "ctr-a", "ifname": "eth0"}]});
    n.run("GC", "", "", &n.conf(valid)).ok();
    assert!(n.held().is_empty(), "GC released every reservation not listed");
}

#[test]
fn a_released_reservation_leaves_no_trace_under_the_network_dir() {
    need_root!();
    let n = Net::new("trace");
    let ids = ["ctr-released-1", "ctr-kept-2", "ctr-collected-3"];
    let ips: Vec<String> = ids.iter().map(|id| n.add(id, "eth0")).collect();
    n.run("DEL", ids[0], "eth0", &n.conf(json!({}))).ok();
    let valid = json!({"cni.dev/valid-attachments": [{"containerID": ids[1], "ifname": "eth0"}]});
    n.run("GC", "", "", &n.conf(valid)).ok();
    for gone in [0, 2] {
        assert!(grep(&n.dir(), ids[gone]).is_empty(), "{}: {:?}", ids[gone], grep(&n.dir(), ids[gone]));
        // The round-robin position (the reference's last_reserved_ip.N) names an address, not a holder.
        let hits: Vec<String> =
            grep(&n.dir(), &ips[gone]).into_iter().filter(|l| !l.contains("last_reserved_ip.")).collect();
        assert!(hits.is_empty(), "{}: {hits:?}", ips[gone]);
    }
    assert_eq!(grep(&n.dir(), ids[1]).len(), 1, "the kept reservation, once");
}

#[test]
fn a_tuning_backup_planted_by_another_user_is_not_applied() {
    need_root!();
    let tmp = TempDir::new("tu");
    let user = User::new();
    let node = Netns::new("tn");
    let ctr = Netns::new("tc");
    ctr.sh(&["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]);
    let data = tmp.join("tuning");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = data.join("ctr-t_eth0.json");
    let json = r#"{"mac":"02:00:00:00:00:99","mtu":9000,"promisc":true,"allmulti":true,"txQlen":1}"#;
    assert!(user.run(&["sh", "-c", &format!("printf '%s' '{json}' > {}", planted.display())]));
    let conf = json!({"cniVersion": "1.0.0", "name": "t", "type": "tuning", "mtu": 1400, "dataDir": data,
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ctr.path()}]}})
    .to_string();
    let call = |cmd: &str| {
        let mut c = Call::cni(&node, "tuning", cmd, "ctr-t", &ctr.path(), "eth0", "/nonexistent");
        c.set("CNI_COMMAND", cmd);
        c.run(&conf)
    };
    let mtu = || ctr.link("eth0").unwrap()["mtu"].as_u64().unwrap();
    let mac = || ctr.link("eth0").unwrap()["address"].as_str().unwrap().to_string();
    let (before, mac_before) = (mtu(), mac());
    let e = call("DEL").err(999);
    assert!(e["msg"].as_str().unwrap().contains("others may write to it"), "{e}");
    assert_eq!(mtu(), before, "the planted settings were not applied");
    assert_eq!(mac(), mac_before);
    assert!(!ctr.link("eth0").unwrap()["flags"].to_string().contains("PROMISC"));
    call("ADD").err(999);
    assert_eq!(mtu(), before, "ADD refused before changing the link");
    // In a directory only root can change, a backup of another owner is still refused.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let e = call("DEL").err(999);
    assert!(e["msg"].as_str().unwrap().contains(&format!("owned by uid {}", user.uid())), "{e}");
    assert_eq!(mtu(), before);
    // Its own backup works as before: ADD saves, DEL puts the MTU back.
    std::fs::remove_file(&planted).unwrap();
    call("ADD").ok();
    assert_eq!(mtu(), 1400);
    call("DEL").ok();
    assert_eq!(mtu(), before);
    assert!(!planted.exists());
}

/// Wait (at most 5 s) until some process holds the flock on `lock`.
fn wait_until_locked(lock: &std::path::Path) {
    let held = || !Command::new("flock").args(["-n"]).arg(lock).arg("true").status().unwrap().success();
    let t0 = Instant::now();
    while !held() {
        assert!(t0.elapsed() < Duration::from_secs(5), "the holder never took {}", lock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_lock_held_by_root_without_capabilities_ends_in_try_again_later() {
    need_root!();
    // uid 0 without capabilities owns root's files as far as the permission
    // bits go, so it can open the 0600 lock file and hold the lock for ever.
    let n = Net::new("held");
    let a = n.add("ctr-a", "eth0");
    let lock = n.dir().join("lock");
    let mut holder = Command::new("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-all", "--", "flock", "--no-fork"])
        .arg(&lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    wait_until_locked(&lock);
    let t0 = Instant::now();
    let r = run_within("host-local", &n.env("ADD", "ctr-b", "eth0"), &n.conf(json!({})), Duration::from_secs(30));
    let waited = t0.elapsed();
    let e = r.err(11);
    // The holder is judged after about a second: it cannot change the
    // network, so the call does not wait out the whole deadline for it.
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains(&format!("held by process {}", holder.id())) && msg.contains("CAP_NET_ADMIN"), "{e}");
    assert!(waited < Duration::from_secs(5), "an untrusted holder delays a call by about a second: {waited:?}");
    assert_eq!(n.held().len(), 1, "nothing reserved while the lock was held: {:?}", n.held());
    let _ = holder.kill();
    let _ = holder.wait();
    let b = n.add("ctr-b", "eth0");
    assert_ne!(a, b);
}

#[test]
fn a_lock_held_by_a_trusted_process_is_waited_for() {
    need_root!();
    // Root with its capabilities (another plugin, the reference host-local)
    // is a peer: the call waits for it, past the second after which an
    // untrusted holder would be refused, and then allocates.
    let n = Net::new("peer");
    let a = n.add("ctr-a", "eth0");
    let lock = n.dir().join("lock");
    let mut holder = Command::new("flock").args(["--no-fork"]).arg(&lock).args(["sleep", "3"]).spawn().unwrap();
    wait_until_locked(&lock);
    let t0 = Instant::now();
    let r = run_within("host-local", &n.env("ADD", "ctr-b", "eth0"), &n.conf(json!({})), Duration::from_secs(30));
    let waited = t0.elapsed();
    r.ok();
    let _ = holder.wait();
    assert!(waited >= Duration::from_millis(1500), "the call waited for its peer: {waited:?}");
    let held = n.held();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.iter().any(|l| l.contains("ctr-b") && !l.starts_with(&format!("{a} "))), "{held:?}");
}
