//! Hostile input: what a plugin must refuse, with a CNI error of the right
//! code, before it changes anything. "Anything" is checked, not assumed:
//! each case takes a snapshot of the node (its links, its nftables rules),
//! the container namespace and every file under the test's directory before
//! the call, and compares after.
//!
//! Cases the current code does not meet yet, in code this test's author does
//! not own, are reported and skipped with the bug named (search "KNOWN BUG").

mod chaos;
#[path = "nft_support/mod.rs"]
mod support;

use chaos::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::common;
use support::*;

struct H {
    c: Cluster,
    path: String,
    ctr: Netns,
}

/// Everything a call could change.
#[derive(PartialEq, Debug)]
struct World {
    node_links: Vec<String>,
    ctr_links: Vec<String>,
    rules: Vec<(String, String, String, String)>,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

fn files_under(root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            out.insert(p.clone(), b"<dir>".to_vec());
            files_under(&p, out);
        } else if m.file_type().is_symlink() {
            out.insert(p.clone(), format!("<link {:?}>", std::fs::read_link(&p).ok()).into_bytes());
        } else if m.is_file() {
            // Big files by size only: the "huge state file" case is 64 MiB.
            let v = if m.len() > 1 << 20 {
                format!("<{} bytes>", m.len()).into_bytes()
            } else {
                std::fs::read(&p).unwrap_or_default()
            };
            out.insert(p, v);
        } else {
            out.insert(p, b"<special>".to_vec());
        }
    }
}

impl H {
    fn new(prefix: &str) -> H {
        let c = Cluster::new(prefix, "10.79.0.0/24", "fd79::/64");
        let path = plugin_dir_for(&c.tmp, "bin", &bin());
        H { c, path, ctr: Netns::new("c") }
    }

    fn world(&self) -> World {
        let names = |ns: &Netns| {
            let mut v: Vec<String> = ns.links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect();
            v.sort();
            v
        };
        let mut files = BTreeMap::new();
        files_under(&self.c.tmp.path, &mut files);
        files.retain(|p, _| !p.starts_with(self.c.tmp.join("bin")));
        World { node_links: names(&self.c.node), ctr_links: names(&self.ctr), rules: rules(&self.c.node), files }
    }

    fn env(&self, cmd: &str, id: &str, netns: &str, ifname: &str) -> Vec<(String, String)> {
        [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", &self.path),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn call(&self, plugin: &str, env: &[(String, String)], stdin: &str) -> Run {
        run_in(Some(&self.c.node), &bin(), plugin, env, stdin)
    }

    fn bridge_with(&self, f: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(&self.c.bridge_conf()).unwrap();
        f(&mut v);
        v.to_string()
    }

    /// `plugin cmd` must fail with `code`, and change nothing at all.
    fn refused(&self, what: &str, plugin: &str, env: &[(String, String)], stdin: &str, code: u64) -> Value {
        let before = self.world();
        let r = self.call(plugin, env, stdin);
        assert_eq!(r.code, 1, "{what}: must be refused: rc={} {} {}", r.code, r.stdout, r.stderr);
        let v = r.json();
        assert_eq!(v["code"].as_u64(), Some(code), "{what}: wrong code: {}", r.stdout);
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty() && m.len() < 1024),
            "{what}: a short, clear message: {}",
            r.stdout
        );
        assert_eq!(self.world(), before, "{what}: the refusal changed something");
        v
    }
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[test]
fn network_names_that_try_to_escape() {
    need_root!();
    let h = H::new("hn");
    let env = h.env("ADD", "ctr1", &h.ctr.path(), "eth0");
    for name in ["../escape", "a/b", "..", ".", "/abs", "a\u{0}b", "-lead", "sp ace", &long(256), &long(4096)] {
        let conf = h.bridge_with(|v| v["name"] = json!(name));
        h.refused(&format!("bridge ADD, network name {:.40?}", name), "bridge", &env, &conf, 7);
        let ipam = json!({"cniVersion": "1.0.0", "name": name, "ipam": {"type": "host-local", "dataDir": h.c.data_dir(), "ranges": [[{"subnet": "10.79.0.0/24"}]]}});
        h.refused(&format!("host-local ADD, network name {:.40?}", name), "host-local", &env, &ipam.to_string(), 7);
        h.refused(
            &format!("bridge DEL, network name {:.40?}", name),
            "bridge",
            &h.env("DEL", "ctr1", &h.ctr.path(), "eth0"),
            &conf,
            7,
        );
    }
    assert!(!h.c.tmp.path.parent().unwrap().join("escape").exists());
    // The longest name a directory can carry still works.
    let conf = h.bridge_with(|v| v["name"] = json!(long(255)));
    h.call("bridge", &env, &conf).ok();
    h.call("bridge", &h.env("DEL", "ctr1", &h.ctr.path(), "eth0"), &conf).ok();
}

#[test]
fn container_ids_that_try_to_escape() {
    need_root!();
    let h = H::new("hi");
    // NUL cannot be passed in an environment variable at all (the kernel's execve takes C strings).
    for id in ["../escape", "a/b", "..", ".", "/abs", "-lead", "sp ace", "a;b", &long(129), &long(100_000)] {
        let env = h.env("ADD", id, &h.ctr.path(), "eth0");
        h.refused(&format!("bridge ADD, container id {:.40?}", id), "bridge", &env, &h.c.bridge_conf(), 4);
        h.refused(
            &format!("portmap ADD, container id {:.40?}", id),
            "portmap",
            &env,
            &h.c.portmap_conf(8080, Some(&json!({"cniVersion":"1.0.0"}))),
            4,
        );
        let env = h.env("DEL", id, &h.ctr.path(), "eth0");
        h.refused(&format!("bridge DEL, container id {:.40?}", id), "bridge", &env, &h.c.bridge_conf(), 4);
    }
    // 128 bytes, the longest an nftables comment tells apart, is fine.
    let id = long(128);
    let res = h.c.add_chain(&bin(), &h.path, &id, &h.ctr.path(), 8080).map_err(|r| r.stdout).unwrap();
    assert_eq!(result_ips(&res).len(), 2);
    for r in h.c.del_chain(&bin(), &h.path, &id, &h.ctr.path(), 8080) {
        assert_eq!(r.code, 0, "{}", r.stdout);
    }
    assert!(h.c.leaks(&[&h.ctr]).is_empty());
}

#[test]
fn ifnames_that_try_to_escape() {
    need_root!();
    let h = H::new("hf");
    for ifname in ["../x", "a/b", "..", ".", "eth0 ", "e:0", &long(16), &long(4096)] {
        for cmd in ["ADD", "DEL", "CHECK"] {
            let env = h.env(cmd, "ctr1", &h.ctr.path(), ifname);
            h.refused(&format!("bridge {cmd}, ifname {:.40?}", ifname), "bridge", &env, &h.c.bridge_conf(), 4);
        }
    }
    // A bridge name that is a path is a config error, before anything is made.
    for bridge in ["../x", "a/b", &long(16)] {
        let conf = h.bridge_with(|v| v["bridge"] = json!(bridge));
        h.refused(
            &format!("bridge name {bridge:.40?}"),
            "bridge",
            &h.env("ADD", "ctr1", &h.ctr.path(), "eth0"),
            &conf,
            7,
        );
    }
}

#[test]
fn data_dir_must_be_absolute_and_safe() {
    need_root!();
    let h = H::new("hd");
    let env = h.env("ADD", "ctr1", &h.ctr.path(), "eth0");
    for rel in ["rel-data-dir", "./rel-data-dir", "../rel-data-dir"] {
        let conf = h.bridge_with(|v| v["ipam"]["dataDir"] = json!(rel));
        h.refused(&format!("relative dataDir {rel:?}"), "bridge", &env, &conf, 7);
        assert!(!Path::new(rel).exists(), "nothing created relative to the plugin's working directory");
    }
    // The network's directory as a symlink to elsewhere: refused, nothing written there.
    let elsewhere = h.c.tmp.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(h.c.data_dir()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, h.c.data_dir().join(NET)).unwrap();
    let before = h.world();
    let r = h.call("bridge", &env, &h.c.bridge_conf());
    assert_eq!(r.code, 1, "a symlinked network directory is refused: {}", r.stdout);
    assert_eq!(r.json()["code"], 999, "{}", r.stdout);
    assert_eq!(h.world(), before, "and nothing changed");
}

/// What ADD must do with a data directory it must not trust: refuse, write nothing.
fn refuses_data_dir(h: &H, what: &str) {
    let before = h.world();
    let r = h.call("bridge", &h.env("ADD", "ctr1", &h.ctr.path(), "eth0"), &h.c.bridge_conf());
    assert_eq!(r.code, 1, "{what}: must be refused: {}", r.stdout);
    // A dataDir that cannot be trusted is a configuration error (the reference has no such check).
    assert_eq!(r.json()["code"], 7, "{what}: {}", r.stdout);
    assert_eq!(h.world(), before, "{what}: refused, and nothing changed");
}

#[test]
fn data_dir_that_is_a_symlink_is_refused() {
    need_root!();
    let h = H::new("hl");
    let elsewhere = h.c.tmp.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, h.c.data_dir()).unwrap();
    refuses_data_dir(&h, "dataDir a symlink");
}

#[test]
fn data_dir_writable_by_everyone_is_refused() {
    need_root!();
    let h = H::new("hw");
    std::fs::create_dir_all(h.c.data_dir()).unwrap();
    std::fs::set_permissions(h.c.data_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    refuses_data_dir(&h, "dataDir mode 0777");
}

/// Every v4 address of 10.79.0.0/24 but .200 reserved by someone else, so
/// that a plugin that lost them would hand out .2.
fn all_but_200() -> String {
    let mut full = String::new();
    for i in 2..=254 {
        if i != 200 {
            full.push_str(&format!("10.79.0.{i} other{i} eth0\n"));
        }
    }
    full
}

fn truncated() -> Vec<u8> {
    // A cnibox header whose size no longer matches: cut off mid-line.
    format!(
        "# cnibox host-local v1 size=0000099999: one reservation per line: address container-id ifname\n{}10.79.0.2",
        all_but_200()
    )
    .into_bytes()
}

fn garbage() -> Vec<u8> {
    let mut g: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    g.extend_from_slice(b"\n");
    g.extend_from_slice(all_but_200().as_bytes());
    g.extend_from_slice(&[0, 0xff, b'\n', 0x80]);
    g
}

/// More than 64 MiB: reservations outside the range, then the range full but .200.
fn write_huge(path: &Path) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut n, mut i) = (0u64, 0u32);
    while n <= 64 << 20 {
        let line = format!("10.{}.{}.{} pad{:0>40} eth0\n", 100 + (i >> 16 & 0x7f), i >> 8 & 255, i & 255, i);
        n += line.len() as u64;
        f.write_all(line.as_bytes()).unwrap();
        i += 1;
    }
    f.write_all(all_but_200().as_bytes()).unwrap();
}

/// A state file someone else wrote. Whatever the policy (refuse it, or keep
/// every readable reservation), no address that a readable line reserves may
/// be handed out, and the plugin answers: no hang, no crash.
#[test]
fn damaged_state_file_never_hands_out_a_reserved_address() {
    need_root!();
    let h = H::new("hs");
    std::fs::create_dir_all(h.c.data_dir().join(NET)).unwrap();
    let state = h.c.state_path();
    let env = h.env("ADD", "ctr1", &h.ctr.path(), "eth0");
    for what in ["truncated", "garbage", "huge"] {
        match what {
            "truncated" => std::fs::write(&state, truncated()).unwrap(),
            "garbage" => std::fs::write(&state, garbage()).unwrap(),
            _ => write_huge(&state),
        }
        let r = h.call("bridge", &env, &h.c.bridge_conf());
        if r.code == 0 {
            let ips = result_ips(&r.json());
            assert!(ips.contains(&"10.79.0.200".parse().unwrap()), "{what}: only .200 was free, got {ips:?}");
            h.call("bridge", &h.env("DEL", "ctr1", &h.ctr.path(), "eth0"), &h.c.bridge_conf()).ok();
        } else {
            // The reference's code for a plugin failure that is not one of the spec's.
            assert_eq!(r.json()["code"], 999, "{what}: {}", r.stdout);
        }
        let _ = std::fs::remove_file(&state);
    }
}

/// A file in cnibox's own format whose header records its true size is
/// trusted to be sorted and canonical (lookups binary-search it). One that
/// was edited or damaged without changing its size must not make the plugin
/// hand out an address that a line reserves. (Found by the ipam_state fuzz target.)
fn trusted(body: &str) -> Vec<u8> {
    const MAGIC: &str = "# cnibox host-local v1 size=";
    const TAIL: &str = ": one reservation per line: address container-id ifname\n";
    let n = MAGIC.len() + 10 + TAIL.len() + body.len();
    format!("{MAGIC}{n:010}{TAIL}{body}").into_bytes()
}

#[test]
#[ignore = "KNOWN LIMIT (src/ipam/state.rs, host-local): a file carrying cnibox's exact size stamp is trusted as cnibox's own (checking every line would make ADD cost grow with the allocations held); a crafted one that is unsorted can hand out reserved addresses. SECURITY.md: only root may write the data directory"]
fn trusted_state_file_that_is_not_canonical_never_hands_out_a_reserved_address() {
    need_root!();
    let h = H::new("ht");
    std::fs::create_dir_all(h.c.data_dir().join(NET)).unwrap();
    let lines: Vec<String> = all_but_200().lines().map(|l| format!("{l}\n")).collect();
    // .2 moved to the end (a swapped digit or an edit keeps the size).
    let unsorted = format!("{}{}", lines[1..].concat(), lines[0]);
    // An unreadable line in the middle (every reservation still readable): the lookups stumble on it.
    let damaged = format!("{}10.\u{ff}.1 x eth0\n{}", lines[..100].concat(), lines[100..].concat());
    // .2's line indented: a reservation the lookups cannot read.
    let indented = format!("\t{}", lines.concat());
    let mut wrong = Vec::new();
    for (what, body) in [("unsorted", unsorted), ("damaged", damaged), ("indented", indented)] {
        std::fs::write(h.c.state_path(), trusted(&body)).unwrap();
        let r = h.call("bridge", &h.env("ADD", "ctr1", &h.ctr.path(), "eth0"), &h.c.bridge_conf());
        if r.code == 0 {
            let ips = result_ips(&r.json());
            h.call("bridge", &h.env("DEL", "ctr1", &h.ctr.path(), "eth0"), &h.c.bridge_conf()).ok();
            if !ips.contains(&"10.79.0.200".parse().unwrap()) {
                wrong.push(format!("{what}: only .200 was free, got {ips:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The stricter contract: a state file that is not whole, or not a state
/// file, or unreasonably large, is refused with the file left as it is for
/// the operator, and nothing else changes either.
fn refuses_state(what: &str, write: impl FnOnce(&Path)) {
    let h = H::new("hS");
    std::fs::create_dir_all(h.c.data_dir().join(NET)).unwrap();
    // A network directory in use has its lock file; taking the lock is not a change.
    std::fs::write(h.c.data_dir().join(NET).join("lock"), "").unwrap();
    write(&h.c.state_path());
    let before = h.world();
    let r = h.call("bridge", &h.env("ADD", "ctr1", &h.ctr.path(), "eth0"), &h.c.bridge_conf());
    assert_eq!(r.code, 1, "{what} state file: must be refused: {}", r.stdout);
    // The reference's code for a plugin failure that is not one of the spec's.
    assert_eq!(r.json()["code"], 999, "{what}: {}", r.stdout);
    assert_eq!(h.world(), before, "{what} state file: refused, and nothing changed");
}

#[test]
fn truncated_state_file_is_refused() {
    need_root!();
    refuses_state("truncated", |p| std::fs::write(p, truncated()).unwrap());
}

#[test]
fn garbage_state_file_is_refused() {
    need_root!();
    refuses_state("garbage", |p| std::fs::write(p, garbage()).unwrap());
}

#[test]
fn huge_state_file_is_refused() {
    need_root!();
    refuses_state("huge", write_huge);
}

#[test]
fn config_larger_than_one_mib_is_refused() {
    need_root!();
    let h = H::new("hc");
    let env = h.env("ADD", "ctr1", &h.ctr.path(), "eth0");
    let conf = h.bridge_with(|v| v["pad"] = json!(long(1 << 20)));
    let v = h.refused("1 MiB + config on stdin", "bridge", &env, &conf, 5);
    assert!(v["msg"].as_str().unwrap().contains("1 MiB"), "{v}");
    // 16 MiB: read no further than the limit.
    let conf = h.bridge_with(|v| v["pad"] = json!(long(16 << 20)));
    h.refused("16 MiB config on stdin", "bridge", &env, &conf, 5);
}

#[test]
fn netns_that_is_not_a_container_namespace() {
    need_root!();
    let h = H::new("hx");
    let file = h.c.tmp.join("plain-file");
    std::fs::write(&file, "").unwrap();
    let fifo = h.c.tmp.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let bogus: Vec<(String, String, u64)> = vec![
        ("a regular file".into(), file.display().to_string(), 8),
        ("a directory".into(), h.c.tmp.str(), 8),
        ("a directory on procfs".into(), "/proc/self".into(), 8),
        ("a FIFO (must not hang)".into(), fifo.display().to_string(), 8),
        ("a device".into(), "/dev/null".into(), 8),
        ("a mount namespace".into(), "/proc/self/ns/mnt".into(), 8),
        ("a user namespace".into(), "/proc/self/ns/user".into(), 8),
        ("the node's own namespace".into(), h.c.node.path(), 8),
        ("the node's own namespace, through /proc".into(), "/proc/self/ns/net".into(), 8),
    ];
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": h.ctr.path()}],
        "ips": [{"address": "10.79.0.9/24", "interface": 0}]});
    for (what, netns, code) in &bogus {
        let env = h.env("ADD", "ctr1", netns, "eth0");
        h.refused(&format!("bridge ADD into {what}"), "bridge", &env, &h.c.bridge_conf(), *code);
        h.refused(&format!("portmap ADD into {what}"), "portmap", &env, &h.c.portmap_conf(8080, Some(&prev)), *code);
        let ipam = json!({"cniVersion": "1.0.0", "name": NET, "ipam": {"type": "host-local", "dataDir": h.c.data_dir(), "ranges": [[{"subnet": "10.79.0.0/24"}]]}});
        h.refused(&format!("host-local ADD into {what}"), "host-local", &env, &ipam.to_string(), *code);
        h.refused(
            &format!("bridge CHECK in {what}"),
            "bridge",
            &h.env("CHECK", "ctr1", netns, "eth0"),
            &h.c.bridge_conf(),
            *code,
        );
    }
    // DEL given a path that is no (longer a) namespace still releases what the node holds.
    let res = h.c.add_chain(&bin(), &h.path, "ctr1", &h.ctr.path(), 8080).map_err(|r| r.stdout).unwrap();
    assert_eq!(result_ips(&res).len(), 2);
    for r in h.c.del_chain(&bin(), &h.path, "ctr1", &file.display().to_string(), 8080) {
        assert_eq!(r.code, 0, "DEL with a netns path that is a plain file: {}", r.stdout);
    }
    assert!(h.c.reservations().unwrap().is_empty(), "the addresses were released");
    assert!(h.c.container_rules().is_empty(), "the rules were removed");
    // The container's veth went with... nothing: the namespace still exists, the
    // runtime pointed elsewhere; a DEL with the right path removes it.
    for r in h.c.del_chain(&bin(), &h.path, "ctr1", &h.ctr.path(), 8080) {
        assert_eq!(r.code, 0, "{}", r.stdout);
    }
    assert!(h.c.leaks(&[&h.ctr]).is_empty());
}

#[test]
fn prev_result_naming_another_namespace() {
    need_root!();
    let h = H::new("hp");
    let other = Netns::new("victim");
    other.sh(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    other.sh(&["addr", "add", "10.79.9.9/24", "dev", "eth0"]);
    let prev = |sandbox: String| {
        json!({"cniVersion": "1.0.0", "interfaces": [{"name": "cbr0"}, {"name": "eth0", "sandbox": sandbox}],
            "ips": [{"address": "10.79.9.9/24", "interface": 1}]})
    };
    let env = h.env("ADD", "ctr1", &h.ctr.path(), "eth0");
    for (what, sandbox) in [
        ("another pod's namespace", other.path()),
        ("the node's namespace", h.c.node.path()),
        ("a missing namespace", "/run/netns/gone".into()),
    ] {
        let v = h.refused(
            &format!("portmap, prevResult in {what}"),
            "portmap",
            &env,
            &h.c.portmap_conf(8080, Some(&prev(sandbox.clone()))),
            7,
        );
        assert!(v["msg"].as_str().unwrap().contains("sandbox"), "{v}");
        let tuning =
            json!({"cniVersion": "1.0.0", "name": NET, "type": "tuning", "mtu": 1280, "prevResult": prev(sandbox)});
        h.refused(&format!("tuning, prevResult in {what}"), "tuning", &env, &tuning.to_string(), 7);
    }
    assert_eq!(other.link("eth0").unwrap()["mtu"], 1500, "the other pod's interface is untouched");
    // The same namespace under another path (a second bind mount) is the same namespace.
    let alias = h.c.tmp.join("ctr-alias");
    std::fs::write(&alias, "").unwrap();
    assert!(std::process::Command::new("mount")
        .arg("--bind")
        .arg(h.ctr.path())
        .arg(&alias)
        .status()
        .unwrap()
        .success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(alias.clone());
    h.call("portmap", &env, &h.c.portmap_conf(8080, Some(&prev(alias.display().to_string())))).ok();
    h.call("portmap", &h.env("DEL", "ctr1", &h.ctr.path(), "eth0"), &h.c.portmap_conf(8080, None)).ok();
    assert!(h.c.container_rules().is_empty());
}

#[test]
fn not_root_is_a_clear_error_and_writes_nothing() {
    need_root!();
    let h = H::new("hr");
    // A data directory nobody could write into, so that only the plugin's own check stops it.
    std::fs::set_permissions(&h.c.tmp.path, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let ipam = json!({"cniVersion": "1.0.0", "name": NET, "ipam": {"type": "host-local", "dataDir": h.c.data_dir(), "ranges": [[{"subnet": "10.79.0.0/24"}]]}});
    for (plugin, conf) in [
        ("bridge", h.c.bridge_conf()),
        ("host-local", ipam.to_string()),
        ("portmap", h.c.portmap_conf(8080, Some(&json!({"cniVersion": "1.0.0"})))),
    ] {
        for cmd in ["ADD", "DEL"] {
            let before = h.world();
            let r = run_as_nobody(&h, plugin, &h.env(cmd, "ctr1", &h.ctr.path(), "eth0"), &conf);
            assert_eq!(r.code, 1, "{plugin} {cmd} as nobody: {} {}", r.stdout, r.stderr);
            let v = r.json();
            assert!(v["msg"].as_str().unwrap().contains("CAP_NET_ADMIN"), "{plugin} {cmd}: a clear error: {v}");
            // The reference fails on the kernel's EPERM, with its generic code.
            assert_eq!(v["code"], 999, "{plugin} {cmd}: {v}");
            assert_eq!(h.world(), before, "{plugin} {cmd} as nobody changed something");
        }
    }
}

/// Run a plugin in the node namespace as uid/gid 65534 with no capabilities.
fn run_as_nobody(h: &H, plugin: &str, env: &[(String, String)], stdin: &str) -> Run {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(bin());
    cmd.arg0(plugin).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let f = h.c.node.file();
    let fd = f.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn as nobody");
    drop(f);
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
