//! A plugin killed at any point must leave nothing that DEL cannot remove.
//!
//! With the `failpoints` build (src/failpoint.rs), `CNIBOX_FAILPOINT=N` and
//! `CNIBOX_FAILPOINT_MODE=abort` abort the process just before its Nth
//! mutating step (each netlink request, each state-file replace, each
//! nftables batch): a timeout's SIGKILL at that instant. The walks below
//! abort the chain bridge (host-local, dual stack, ipMasq) + portmap at
//! every step of ADD and of DEL, and after each abort run what a runtime
//! runs (DEL of the chain), then check with `ip -j`, `nft -j` and a strict
//! read of the state file that no veth, rule or reservation is left, and
//! that another pod still attaches and detaches cleanly. Without the abort
//! mode the step fails instead, and ADD's rollback alone must leave nothing.
//! Last, real SIGKILLs at random instants under parallel load.

mod chaos;
#[path = "nft_support/mod.rs"]
mod support;

use chaos::*;
use serde_json::Value;
use std::path::Path;
use support::common;
use support::*;

/// Figures for the test's output even when the harness captures it (the
/// harness captures the print macros, not writes to the descriptor).
macro_rules! report {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

const ABORT: [(&str, &str); 1] = [("CNIBOX_FAILPOINT_MODE", "abort")];

/// The steps a run takes, as the trace names them.
fn trace(r: &Run) -> Vec<String> {
    r.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("cnibox failpoint "))
        .map(|l| l.split_once(": ").map_or(l, |x| x.1).to_string())
        .collect()
}

struct Walk {
    c: Cluster,
    exe: std::path::PathBuf,
    path: String,
    ctr: Netns,
    other: Netns,
}

impl Walk {
    fn new(prefix: &str, v4: &str, v6: &str) -> Walk {
        let c = Cluster::new(prefix, v4, v6);
        let exe = failpoint_bin();
        let path = plugin_dir_for(&c.tmp, "bin", &exe);
        Walk { c, exe, path, ctr: Netns::new("c"), other: Netns::new("o") }
    }

    fn run(&self, plugin: &str, cmd: &str, id: &str, stdin: &str, extra: &[(&str, &str)]) -> Run {
        self.c.run(&self.exe, &self.path, plugin, cmd, id, &self.ctr.path(), stdin, extra)
    }

    /// Run `plugin` with the Nth mutating step failing (aborting the
    /// process with `abort`), traced; returns the run and the step's name.
    fn run_failing(&self, plugin: &str, cmd: &str, id: &str, stdin: &str, n: usize, abort: bool) -> (Run, String) {
        let n = n.to_string();
        let mut env = vec![("CNIBOX_FAILPOINT", n.as_str()), ("CNIBOX_FAILPOINT_TRACE", "1")];
        if abort {
            env.push(ABORT[0]);
        }
        let r = self.run(plugin, cmd, id, stdin, &env);
        let step = trace(&r).last().cloned().unwrap_or_default();
        (r, step)
    }

    /// Abort `plugin cmd` at step 1, 2, ... until a run gets past its last
    /// step; `before` prepares each attempt (for pod `id`), and after each
    /// abort the chain is deleted and checked. Returns the steps walked.
    fn walk(
        &self,
        label: &str,
        plugin: &str,
        cmd: &str,
        port: u16,
        before: impl Fn(&str),
        stdin: impl Fn(&str) -> String,
    ) -> Vec<String> {
        let mut steps = Vec::new();
        for n in 1..=64 {
            let id = format!("{label}{n}");
            before(&id);
            let (r, step) = self.run_failing(plugin, cmd, &id, &stdin(&id), n, true);
            if !aborted(&r) {
                assert_eq!(
                    r.code, 0,
                    "{label}: {plugin} {cmd} without an abort must succeed: {} {}",
                    r.stdout, r.stderr
                );
                assert!(trace(&r).len() < n, "{label}: step {n} was reached but did not abort");
                self.cleanup_and_prove(&format!("{label}: {plugin} {cmd} past its last step"), &id, port);
                return steps;
            }
            assert_eq!(trace(&r).len(), n, "{label}: aborted at step {n}");
            self.cleanup_and_prove(&format!("{label}: {plugin} {cmd} aborted at step {n} ({step})"), &id, port);
            steps.push(step);
        }
        panic!("{label}: {plugin} {cmd} has more than 64 mutating steps");
    }

    /// The runtime's DEL of the chain must succeed, and then nothing of
    /// `id` may remain; another pod must then attach and detach cleanly.
    fn cleanup_and_prove(&self, what: &str, id: &str, port: u16) {
        for r in self.c.del_chain(&self.exe, &self.path, id, &self.ctr.path(), port) {
            assert_eq!(r.code, 0, "{what}: DEL failed: {} {}", r.stdout, r.stderr);
        }
        let leaks = self.c.leaks(&[&self.ctr, &self.other]);
        assert!(leaks.is_empty(), "{what}: left behind after DEL: {leaks:#?}");
        let named = naming(&self.c.data_dir().join(NET), id);
        assert!(named.is_empty(), "{what}: files still name the released pod: {named:#?}");
        // Another pod on the same network: the state and the rules still work.
        let other = format!("{id}-other");
        let res = self
            .c
            .add_chain(&self.exe, &self.path, &other, &self.other.path(), port + 1)
            .unwrap_or_else(|r| panic!("{what}: the next pod's ADD failed: {} {}", r.stdout, r.stderr));
        let held = self.c.reservations().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(held.len(), 2, "{what}: the next pod holds exactly its two addresses");
        assert!(
            held.iter().all(|r| r.id == other && result_ips(&res).contains(&r.ip)),
            "{what}: reservations are the next pod's"
        );
        for r in self.c.del_chain(&self.exe, &self.path, &other, &self.other.path(), port + 1) {
            assert_eq!(r.code, 0, "{what}: DEL of the next pod failed: {}", r.stdout);
        }
        let leaks = self.c.leaks(&[&self.ctr, &self.other]);
        assert!(leaks.is_empty(), "{what}: the next pod left: {leaks:#?}");
    }
}

/// Every "file: line" under `dir` in which `word` is a whole word (what
/// `grep -rw` would show an operator looking for a pod).
fn naming(dir: &Path, word: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !f.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(f.path()).unwrap_or_default()).into_owned();
        for l in text.lines().filter(|l| l.split_whitespace().any(|w| w == word)) {
            out.push(format!("{}: {l}", f.file_name().to_string_lossy()));
        }
    }
    out
}

#[test]
fn add_aborted_at_every_step_then_del_leaves_nothing() {
    need_root!();
    let w = Walk::new("crash-add", "10.71.0.0/24", "fd71::/64");
    let conf = w.c.bridge_conf();
    let no_bridge = |_: &str| {
        if w.c.node.link("cbr0").is_some() {
            w.c.node.sh(&["link", "del", "cbr0"]);
        }
    };
    // The first pod of a node also creates the bridge and the nftables tables.
    let first = w.walk("first", "bridge", "ADD", 30000, no_bridge, |_| conf.clone());
    assert!(first.len() >= 8, "the failpoints build reports its steps: {first:?}");
    let next = w.walk("next", "bridge", "ADD", 30010, |_| {}, |_| conf.clone());
    let chained = |id: &str| {
        let r = w.run("bridge", "ADD", id, &conf, &[]);
        assert_eq!(r.code, 0, "{}", r.stdout);
        w.c.portmap_conf(30020, Some(&r.json()))
    };
    let pm = w.walk("pm", "portmap", "ADD", 30020, |_| {}, chained);
    assert!(!pm.is_empty());
    report!("bridge ADD, first pod: {first:?}\nbridge ADD, next pods: {next:?}\nportmap ADD: {pm:?}");
    report!("crash walk (ADD): {} aborts, no leak after any DEL", first.len() + next.len() + pm.len());
}

#[test]
fn del_aborted_at_every_step_then_del_again_leaves_nothing() {
    need_root!();
    let w = Walk::new("crash-del", "10.72.0.0/24", "fd72::/64");
    let conf = w.c.bridge_conf();
    let attach = |port: u16| {
        let w = &w;
        move |id: &str| {
            w.c.add_chain(&w.exe, &w.path, id, &w.ctr.path(), port).map_err(|r| r.stdout).unwrap();
        }
    };
    let pm = w.walk("dp", "portmap", "DEL", 31010, attach(31010), |_| w.c.portmap_conf(31010, None));
    // The runtime deletes in reverse order: portmap's DEL went first.
    let attach_no_pm = |id: &str| {
        attach(31020)(id);
        assert_eq!(w.run("portmap", "DEL", id, &w.c.portmap_conf(31020, None), &[]).code, 0);
    };
    let br = w.walk("db", "bridge", "DEL", 31020, attach_no_pm, |_| conf.clone());
    assert!(br.len() >= 3, "bridge DEL: veth, state, masquerade: {br:?}");
    report!("portmap DEL: {pm:?}\nbridge DEL: {br:?}");
    report!("crash walk (DEL): {} aborts, no leak after the next DEL", pm.len() + br.len());
}

/// A step that fails (rather than the process dying) must be rolled back by
/// ADD itself: nothing left even before the runtime's DEL, which then succeeds.
#[test]
fn add_failing_at_every_step_rolls_back_everything() {
    need_root!();
    let w = Walk::new("crash-rb", "10.73.0.0/24", "fd73::/64");
    let conf = w.c.bridge_conf();
    let mut walked = 0;
    for first in [true, false] {
        for n in 1..=64 {
            let id = format!("rb{}{n}", if first { "f" } else { "n" });
            if first && w.c.node.link("cbr0").is_some() {
                w.c.node.sh(&["link", "del", "cbr0"]);
            }
            let (r, step) = w.run_failing("bridge", "ADD", &id, &conf, n, false);
            if trace(&r).len() < n {
                assert_eq!(r.code, 0, "ADD past its last step succeeds: {}", r.stdout);
                w.cleanup_and_prove("ADD past its last step", &id, 32010);
                break;
            }
            walked += 1;
            if r.code == 0 {
                // A best-effort step (the reference's round-robin file): its failure is not ADD's.
                w.cleanup_and_prove(&format!("bridge ADD with step {n} ({step}) failing, tolerated"), &id, 32010);
                continue;
            }
            let v = r.err(999);
            assert!(v["msg"].as_str().unwrap_or("").contains("injected failure"), "step {n} ({step}): {v}");
            let leaks = w.c.leaks(&[&w.ctr]);
            assert!(leaks.is_empty(), "ADD failing at step {n} ({step}) did not roll back: {leaks:#?}");
            if first {
                assert!(
                    w.c.node.link("cbr0").is_none(),
                    "the bridge this ADD created is rolled back too (step {n}, {step})"
                );
            }
            w.cleanup_and_prove(&format!("bridge ADD failed at step {n} ({step})"), &id, 32010);
        }
    }
    report!("rollback walk: {walked} failing steps, each rolled back completely");
}

/// Real SIGKILLs at random instants while 16 chains run in parallel; the
/// runtime's DELs (which may themselves be killed once) must then clean up.
#[test]
fn sigkill_at_random_times_under_load() {
    need_root!();
    const PODS: usize = 16;
    const ROUNDS: usize = 8;
    let c = Cluster::new("crash-kill", "10.74.0.0/24", "fd74::/64");
    let exe = bin();
    let path = plugin_dir_for(&c.tmp, "bin", &exe);
    let ctrs: Vec<Netns> = (0..PODS).map(|i| Netns::new(&format!("k{i}"))).collect();
    let mut rng = Rng::from_time();
    eprintln!("sigkill seed {}", rng.0);
    // How long one chain takes here, unloaded. With PODS in parallel on a
    // few cores each takes several times that; the window the kills fall in
    // adapts so that each round kills some chains mid-way and lets others finish.
    let t0 = std::time::Instant::now();
    c.add_chain(&exe, &path, "probe", &ctrs[0].path(), 33000).map_err(|r| r.stdout).unwrap();
    let mut span = t0.elapsed().as_micros() as u64 * PODS as u64 / 2 + 1;
    for r in c.del_chain(&exe, &path, "probe", &ctrs[0].path(), 33000) {
        assert_eq!(r.code, 0, "{}", r.stdout);
    }
    let (mut killed, mut finished) = (0, 0);
    for round in 0..ROUNDS {
        let delays: Vec<u64> = (0..PODS).map(|_| rng.below(span)).collect();
        let outcomes: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = ctrs
                .iter()
                .enumerate()
                .map(|(i, ctr)| {
                    let (c, exe, path, d) = (&c, &exe, &path, delays[i]);
                    s.spawn(move || {
                        kill_chain_after(c, exe, path, &format!("k{round}x{i}"), &ctr.path(), 33100 + i as u16, d)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let k = outcomes.iter().filter(|k| **k).count();
        killed += k;
        finished += PODS - k;
        eprintln!("round {round}: kills within {} ms: {k} of {PODS} chains killed mid-way", span / 1000);
        if k > PODS * 3 / 4 {
            span *= 2;
        } else if k < PODS / 4 {
            span = span * 2 / 3 + 1;
        }
        // The runtime's DELs, in parallel too; every third one is killed as well and retried.
        std::thread::scope(|s| {
            for (i, ctr) in ctrs.iter().enumerate() {
                let (c, exe, path) = (&c, &exe, &path);
                let kill_del = (i % 3 == 0).then(|| delays[i] / 4);
                s.spawn(move || {
                    let id = format!("k{round}x{i}");
                    if let Some(d) = kill_del {
                        kill_after(c, exe, path, "bridge", "DEL", &id, &ctr.path(), &c.bridge_conf(), d);
                    }
                    for r in c.del_chain(exe, path, &id, &ctr.path(), 33100 + i as u16) {
                        assert_eq!(r.code, 0, "DEL of {id} failed: {} {}", r.stdout, r.stderr);
                    }
                });
            }
        });
        let refs: Vec<&Netns> = ctrs.iter().collect();
        let leaks = c.leaks(&refs);
        assert!(leaks.is_empty(), "round {round}: left behind: {leaks:#?}");
    }
    // And the network still works for a new pod.
    c.add_chain(&exe, &path, "after", &ctrs[0].path(), 33500).map_err(|r| r.stdout).unwrap();
    for r in c.del_chain(&exe, &path, "after", &ctrs[0].path(), 33500) {
        assert_eq!(r.code, 0, "{}", r.stdout);
    }
    let refs: Vec<&Netns> = ctrs.iter().collect();
    assert!(c.leaks(&refs).is_empty());
    report!(
        "sigkill under load: {} chains, {killed} killed mid-way, {finished} finished first; no leak after DEL",
        ROUNDS * PODS
    );
}

/// Start a plugin and SIGKILL it after `delay_us` unless it finished; true if it was killed.
#[allow(clippy::too_many_arguments)]
fn kill_after(
    c: &Cluster,
    exe: &Path,
    path: &str,
    plugin: &str,
    cmd: &str,
    id: &str,
    netns: &str,
    stdin: &str,
    delay_us: u64,
) -> (bool, Option<Value>) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let mut p = std::process::Command::new(exe);
    p.arg0(plugin)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let f = c.node.file();
    let fd = f.as_raw_fd();
    // SAFETY: setns in the forked child before exec.
    unsafe {
        p.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
    let mut child = p.spawn().expect("spawn plugin");
    drop(f);
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let deadline = std::time::Instant::now() + std::time::Duration::from_micros(delay_us);
    let mut was_running = matches!(child.try_wait(), Ok(None));
    while was_running && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_micros(300));
        was_running = matches!(child.try_wait(), Ok(None));
    }
    if was_running {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let killed = was_running && out.status.code().is_none();
    let res = (out.status.code() == Some(0)).then(|| serde_json::from_slice(&out.stdout).ok()).flatten();
    (killed, res)
}

/// The chain's ADD with a SIGKILL `delay_us` after it began (in bridge or portmap).
fn kill_chain_after(c: &Cluster, exe: &Path, path: &str, id: &str, netns: &str, port: u16, delay_us: u64) -> bool {
    let start = std::time::Instant::now();
    let (killed, res) = kill_after(c, exe, path, "bridge", "ADD", id, netns, &c.bridge_conf(), delay_us);
    if killed {
        return true;
    }
    let Some(res) = res else { return false };
    let left = delay_us.saturating_sub(start.elapsed().as_micros() as u64);
    kill_after(c, exe, path, "portmap", "ADD", id, netns, &c.portmap_conf(port, Some(&res)), left).0
}
