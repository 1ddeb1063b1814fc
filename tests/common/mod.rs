//! Shared harness for the integration tests: throwaway network namespaces,
//! running the built binary exactly as a runtime does (CNI_* environment,
//! config on stdin) inside a "node" namespace, and independent oracles
//! (`ip -j`, `nft -j`, `ping`) to check what the kernel really holds.
//!
//! Nothing here touches the machine's own namespace: the plugin process is
//! moved into the node namespace before exec, and every namespace is deleted
//! on drop, also when a test fails.

#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The binary under test: `CNIBOX_BIN` (the release or tiny build, set by the
/// Makefile) or the one cargo built for this test run.
pub fn bin() -> PathBuf {
    match std::env::var("CNIBOX_BIN") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_cnibox")),
    }
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Whether this run may not skip for want of a prerequisite (CI sets `CI=true`).
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// A test cannot run because `reason` (a missing tool, package or privilege):
/// under CI that is a failure; elsewhere the skip is printed, and the caller returns.
pub fn missing(reason: &str) {
    if in_ci() {
        panic!("CI=true and a prerequisite is missing: {reason}");
    }
    skipped(reason);
}

/// Say that a test is skipped, past libtest's capture of `eprintln!` (which
/// would hide it in a passing test).
fn skipped(reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// Return early from a test that needs root, saying so (a failure under CI).
#[macro_export]
macro_rules! need_root {
    () => {
        if !common::is_root() {
            common::missing("needs root to create network namespaces");
            return;
        }
    };
}

/// The only prerequisites a test may go without under CI too: kernel features
/// this kernel may lack, each tested for real under Debian's kernel by `make test-vm`.
pub const KERNEL_FEATURES_COVERED_BY_TEST_VM: &[&str] = &["ipvlan", "vlan", "dummy", "vrf", "bridge vlan filtering"];

/// Whether this kernel lacks `feature` (one of [`KERNEL_FEATURES_COVERED_BY_TEST_VM`]),
/// by its own answer to `ip link add` in a throwaway namespace; prints the
/// skip when it does. A test calls this only after the plugin failed: should
/// the kernel have the feature after all, the test goes on and fails.
pub fn kernel_lacks(feature: &str) -> bool {
    assert!(
        KERNEL_FEATURES_COVERED_BY_TEST_VM.contains(&feature),
        "\"{feature}\" is not in KERNEL_FEATURES_COVERED_BY_TEST_VM: a test may not skip for it"
    );
    let probe = Netns::new("probe");
    probe.sh(&["link", "add", "p0", "type", "veth", "peer", "name", "p1"]);
    let args: &[&str] = match feature {
        "ipvlan" => &["link", "add", "link", "p0", "name", "x", "type", "ipvlan", "mode", "l2"],
        "vlan" => &["link", "add", "link", "p0", "name", "x", "type", "vlan", "id", "5"],
        "dummy" => &["link", "add", "x", "type", "dummy"],
        "vrf" => &["link", "add", "x", "type", "vrf", "table", "10"],
        _ => &["link", "add", "x", "type", "bridge", "vlan_filtering", "1"],
    };
    let out = Command::new("ip").arg("-n").arg(&probe.name).args(args).output().expect("run ip");
    let answer = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // The kernel's answers for a kind it has no driver for, and for a bridge
    // built without VLAN filtering.
    let lacks =
        !out.status.success() && (answer.contains("Unknown device type") || answer.contains("Operation not supported"));
    if lacks {
        skipped(&format!("this kernel has no {feature} (ip {}: {answer}); `make test-vm` covers it", args.join(" ")));
    }
    lacks
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(&format!("cbt-{prefix}"));
        let ok = Command::new("ip").args(["netns", "add", &name]).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns { name };
        ns.sh(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> <args>`; panics on failure.
    pub fn sh(&self, args: &[&str]) -> String {
        let out = Command::new("ip").arg("-n").arg(&self.name).args(args).output().expect("run ip");
        assert!(out.status.success(), "ip -n {} {:?}: {}", self.name, args, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -j -n <ns> <args>` as JSON.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let out = Command::new("ip").arg("-j").arg("-n").arg(&self.name).args(args).output().expect("run ip");
        if !out.status.success() {
            return Value::Array(vec![]);
        }
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
    }

    /// The link called `name`, from `ip -j -d link show`, or None.
    pub fn link(&self, name: &str) -> Option<Value> {
        let v = self.ip_json(&["-d", "link", "show", "dev", name]);
        v.as_array().and_then(|a| a.first().cloned())
    }

    pub fn links(&self) -> Vec<Value> {
        self.ip_json(&["-d", "link", "show"]).as_array().cloned().unwrap_or_default()
    }

    /// Addresses ("10.1.0.5/16") on `dev`.
    pub fn addrs(&self, dev: &str) -> Vec<String> {
        let v = self.ip_json(&["addr", "show", "dev", dev]);
        let mut out = Vec::new();
        for l in v.as_array().into_iter().flatten() {
            for a in l["addr_info"].as_array().into_iter().flatten() {
                out.push(format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]));
            }
        }
        out
    }

    /// Run a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(cmd).output().expect("ip netns exec")
    }

    pub fn sysctl(&self, key: &str) -> String {
        let out = self.exec(&["cat", &format!("/proc/sys/{}", key.replace('.', "/"))]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Up to three pings (the first may be spent on neighbour discovery); true when any is answered.
    pub fn ping(&self, dst: &str) -> bool {
        self.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", dst]).status.success()
    }

    /// `nft -j list ruleset` inside the namespace.
    pub fn nft_json(&self) -> Value {
        let out = self.exec(&["nft", "-j", "list", "ruleset"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Open the namespace file (for setns in a child).
    pub fn file(&self) -> std::fs::File {
        std::fs::File::open(self.path()).expect("open netns")
    }

    /// The processes whose network namespace this is, by the `net:[inode]`
    /// link of /proc/<pid>/ns/net.
    pub fn pids(&self) -> Vec<u32> {
        use std::os::unix::fs::MetadataExt;
        let Ok(ino) = std::fs::metadata(self.path()).map(|m| m.ino()) else { return Vec::new() };
        let want = format!("net:[{ino}]");
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if std::fs::read_link(format!("/proc/{pid}/ns/net")).map(|l| l.to_string_lossy() == want).unwrap_or(false) {
                out.push(pid);
            }
        }
        out
    }

    /// The nftables socket keepers cnibox left in this namespace (see src/nft/keeper.rs).
    pub fn keepers(&self) -> Vec<u32> {
        self.pids()
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).map(|c| c.trim() == "cnibox-keeper").unwrap_or(false)
            })
            .collect()
    }

    /// End the keepers at once rather than after their idle time: they would
    /// keep the deleted namespace alive until then.
    pub fn kill_keepers(&self) {
        for p in self.keepers() {
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_keepers();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A temporary directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("cnibox-{prefix}-")));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
    pub fn str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A CNI_PATH directory holding one symlink per plugin name to the binary under test.
pub fn plugin_dir(tmp: &TempDir) -> String {
    let dir = tmp.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "bridge",
        "host-local",
        "static",
        "loopback",
        "portmap",
        "bandwidth",
        "firewall",
        "flannel",
        "macvlan",
        "ipvlan",
        "vlan",
        "ptp",
        "host-device",
        "dummy",
        "tap",
        "tuning",
        "sbr",
        "vrf",
        "dhcp",
    ] {
        let _ = std::os::unix::fs::symlink(bin(), dir.join(name));
    }
    dir.to_string_lossy().into_owned()
}

/// What one plugin invocation returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "plugin failed: stdout={} stderr={}", self.stdout, self.stderr);
        self
    }
    /// [`Run::ok`], keeping the run.
    pub fn into_ok(self) -> Self {
        self.ok();
        self
    }
    /// Assert a CNI error with this code; returns the error JSON.
    pub fn err(&self, code: u64) -> Value {
        assert_eq!(
            self.code, 1,
            "expected failure, got rc={} stdout={} stderr={}",
            self.code, self.stdout, self.stderr
        );
        let v = self.json();
        assert_eq!(v["code"].as_u64(), Some(code), "wrong error code: {}", self.stdout);
        assert!(v["msg"].as_str().map(|m| !m.is_empty()).unwrap_or(false), "error without msg: {}", self.stdout);
        v
    }
}

/// One CNI call: `plugin` (argv[0] name) run inside `node` with the given
/// CNI_* variables and `stdin`. `node` None runs it in the test's own
/// namespace (only for calls that touch no network state, such as VERSION).
pub struct Call<'a> {
    pub node: Option<&'a Netns>,
    pub plugin: &'a str,
    pub env: Vec<(String, String)>,
}

impl<'a> Call<'a> {
    pub fn new(node: Option<&'a Netns>, plugin: &'a str) -> Call<'a> {
        Call { node, plugin, env: Vec::new() }
    }

    /// The usual ADD/DEL/CHECK environment.
    pub fn cni(
        node: &'a Netns,
        plugin: &'a str,
        cmd: &str,
        id: &str,
        netns: &str,
        ifname: &str,
        path: &str,
    ) -> Call<'a> {
        let mut c = Call::new(Some(node), plugin);
        c.set("CNI_COMMAND", cmd)
            .set("CNI_CONTAINERID", id)
            .set("CNI_NETNS", netns)
            .set("CNI_IFNAME", ifname)
            .set("CNI_PATH", path);
        c
    }

    pub fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.retain(|(kk, _)| kk != k);
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    pub fn run(&self, stdin: &str) -> Run {
        run_in(self.node, &bin(), self.plugin, &self.env, stdin)
    }
}

/// Run `exe` with argv[0] = `argv0`, a clean CNI environment, inside `node`.
pub fn run_in(node: Option<&Netns>, exe: &Path, argv0: &str, env: &[(String, String)], stdin: &str) -> Run {
    let mut cmd = Command::new(exe);
    cmd.arg0(argv0);
    for (k, _) in std::env::vars() {
        if k.starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(ns) = node {
        let f = ns.file();
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd();
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = spawn(cmd, stdin);
        drop(f);
        return out;
    }
    spawn(cmd, stdin)
}

fn spawn(mut cmd: Command, stdin: &str) -> Run {
    let mut child = cmd.spawn().expect("spawn plugin");
    {
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait plugin");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
