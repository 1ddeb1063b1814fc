//! Running one plugin the way a runtime does: posix_spawn (clone with
//! CLONE_VM|CLONE_VFORK, as Go's os/exec does) with the CNI_* environment,
//! the config written to its stdin, stdout and stderr read to the end, then
//! wait4. The clock runs from just before the spawn to just after wait4.

use cnibox::sys::child::{self, Status};
use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM/SIGHUP; every loop checks it and unwinds to the cleanup.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catch the signals that end a run so the namespaces can be removed first.
pub fn install_signal_handlers() {
    child::on_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP], on_signal);
}

/// One invocation: what to run, as whom (argv), with what environment and stdin.
pub struct Spec {
    exe: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    pub stdin: Vec<u8>,
    /// Give the child a pipe on fd 3 (the RSS probe reports through it).
    pub fd3: bool,
    /// Killed after this long (reported as timed out).
    pub timeout: Duration,
}

fn cstr(b: &[u8]) -> CString {
    // An interior NUL cannot come from paths or our own strings; drop it rather than fail.
    CString::new(b.iter().copied().filter(|&c| c != 0).collect::<Vec<u8>>()).unwrap_or_default()
}

impl Spec {
    pub fn new(exe: &Path, argv0: &str) -> Spec {
        Spec {
            exe: cstr(exe.as_os_str().as_bytes()),
            argv: vec![cstr(argv0.as_bytes())],
            env: Vec::new(),
            stdin: Vec::new(),
            fd3: false,
            timeout: Duration::from_secs(60),
        }
    }

    /// Run another executable with the same argv, environment and stdin.
    pub fn set_exe(&mut self, exe: &Path) {
        self.exe = cstr(exe.as_os_str().as_bytes());
    }

    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.argv.push(cstr(a.as_ref().as_bytes()));
        self
    }

    pub fn env(&mut self, k: &str, v: impl AsRef<OsStr>) -> &mut Self {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_ref().as_bytes());
        self.env.push(cstr(&kv));
        self
    }

    /// Copy another spec's environment (the RSS probe passes it on).
    pub fn env_from(&mut self, other: &Spec) -> &mut Self {
        self.env.extend(other.env.iter().cloned());
        self
    }

    pub fn stdin(&mut self, s: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = s.into();
        self
    }

    pub fn exe_display(&self) -> String {
        self.exe.to_string_lossy().into_owned()
    }
}

/// What one invocation did.
pub struct Outcome {
    /// Exit status, or 128 + signal number when killed.
    pub code: i32,
    /// Spawn to wait4, nanoseconds.
    pub ns: u64,
    pub stdout: String,
    pub stderr: String,
    pub fd3: String,
    /// ru_maxrss from wait4, KiB (see the rss scenario for why it needs a probe).
    pub maxrss_kib: u64,
    pub timed_out: bool,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == 0 && !self.timed_out
    }

    /// A one-line reason for a failed invocation: the CNI error JSON's msg
    /// (and details) when the plugin printed one, else stderr, else the status.
    pub fn reason(&self) -> String {
        if self.timed_out {
            return "timed out (killed)".into();
        }
        let mut why = String::new();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(self.stdout.trim()) {
            if let Some(m) = v.get("msg").and_then(|m| m.as_str()) {
                why = match v.get("code").and_then(|c| c.as_u64()) {
                    Some(c) => format!("CNI error {c}: {m}"),
                    None => m.to_string(),
                };
                if let Some(d) = v.get("details").and_then(|d| d.as_str()).filter(|d| !d.is_empty()) {
                    why.push_str(&format!(" ({d})"));
                }
            }
        }
        if why.is_empty() {
            why = first_lines(&self.stderr);
        }
        if why.is_empty() {
            why = first_lines(&self.stdout);
        }
        let status = if self.code > 128 {
            format!("killed by signal {}", self.code - 128)
        } else {
            format!("exit status {}", self.code)
        };
        if why.is_empty() {
            status
        } else {
            format!("{why} [{status}]")
        }
    }
}

fn first_lines(s: &str) -> String {
    let t: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).take(3).collect();
    let mut j = t.join(" / ");
    if j.len() > 300 {
        let mut cut = 300;
        while !j.is_char_boundary(cut) {
            cut -= 1;
        }
        j.truncate(cut);
        j.push('…');
    }
    j
}

/// Run `spec` to completion. Err only when it could not be started at all
/// (or the run was interrupted); a plugin that fails is an Ok with its status.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    let pipe = |what: &str| child::pipe().map_err(|e| format!("pipe for {what}: {e}"));
    let (in_r, in_w) = pipe("stdin")?;
    let (out_r, out_w) = pipe("stdout")?;
    let (err_r, err_w) = pipe("stderr")?;
    let extra = if spec.fd3 { Some(pipe("fd 3")?) } else { None };
    let mut fds = vec![(in_r.as_fd(), 0), (out_w.as_fd(), 1), (err_w.as_fd(), 2)];
    if let Some((_, w)) = &extra {
        fds.push((w.as_fd(), 3));
    }
    let t0 = Instant::now();
    let mut plugin = child::spawn(&spec.exe, &spec.argv, &spec.env, &fds)
        .map_err(|e| format!("cannot run {}: {e}", spec.exe_display()))?;
    drop(fds);
    drop((in_r, out_w, err_w));
    let mut readers: [Option<OwnedFd>; 3] = [
        Some(out_r),
        Some(err_r),
        extra.map(|(r, w)| {
            drop(w);
            r
        }),
    ];
    let mut input = Some(in_w);
    if let Some(i) = &input {
        let _ = child::set_nonblocking(i.as_fd());
    }
    let mut written = 0usize;
    if spec.stdin.is_empty() {
        input = None;
    }
    let mut bufs: [Vec<u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let deadline = t0 + spec.timeout;
    let mut timed_out = false;
    let mut killed = false;
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
        let mut who: Vec<usize> = Vec::with_capacity(4);
        if let Some(i) = &input {
            fds.push(child::poll_fd(i.as_fd(), libc::POLLOUT));
            who.push(9);
        }
        for (i, r) in readers.iter().enumerate() {
            if let Some(r) = r {
                fds.push(child::poll_fd(r.as_fd(), libc::POLLIN));
                who.push(i);
            }
        }
        if fds.is_empty() {
            break;
        }
        let now = Instant::now();
        if !killed && (now >= deadline || interrupted()) {
            plugin.kill();
            killed = true;
            timed_out = now >= deadline;
            // Whatever the plugin started may still hold the pipes: stop reading.
            break;
        }
        let wait_ms = deadline.saturating_duration_since(now).as_millis().clamp(1, 200) as i32;
        if child::poll(&mut fds, wait_ms).is_err() {
            continue; // EINTR: the loop head checks the flag
        }
        for (k, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            if who[k] == 9 {
                let Some(i) = &input else { continue };
                let w = child::write(i.as_fd(), &spec.stdin[written..]);
                if let Ok(n) = w {
                    written += n;
                }
                // EPIPE (plugin never read stdin, as VERSION may not) or done: stop writing.
                if matches!(&w, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock) || written >= spec.stdin.len() {
                    input = None;
                }
            } else {
                let i = who[k];
                let Some(r) = &readers[i] else { continue };
                let mut chunk = [0u8; 16384];
                match child::read(r.as_fd(), &mut chunk) {
                    Ok(n) if n > 0 => bufs[i].extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    _ => readers[i] = None,
                }
            }
        }
    }
    drop(input);
    drop(readers);
    let reaped = loop {
        match plugin.wait() {
            Ok(r) => break r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                if !killed && interrupted() {
                    plugin.kill();
                    killed = true;
                }
            }
            Err(e) => return Err(format!("wait4: {e}")),
        }
    };
    let ns = t0.elapsed().as_nanos() as u64;
    if killed && !timed_out {
        return Err("interrupted".into());
    }
    let [o, e, x] = bufs;
    Ok(Outcome {
        code: reaped.status.code(),
        ns,
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
        fd3: String::from_utf8_lossy(&x).into_owned(),
        maxrss_kib: reaped.maxrss_kib,
        timed_out,
    })
}

/// The hidden `--rss-probe EXE ARGV0 [ARGS...]` mode: a small process that
/// runs the plugin (inherited stdin/stdout/stderr and environment) under
/// ptrace, following everything it starts, and reads each process's VmHWM
/// (peak resident set of its own image) when it stops at exit. That is exact,
/// where the child's ru_maxrss also counts the pre-exec copy of its parent.
/// Reports on fd 3: `hwm=<KiB, largest process> self=<KiB, the plugin
/// process> procs=<n> maxrss=<ru_maxrss KiB> floor=<KiB>`; without ptrace
/// (a sandbox forbids it) only maxrss and floor.
pub fn rss_probe(args: &[String]) -> i32 {
    if args.len() < 2 {
        eprintln!("cnibox-bench: --rss-probe needs EXE ARGV0 [ARGS...]");
        return 2;
    }
    // fd 3 is the report pipe the parent gave this probe (Spec::fd3); the plugin must not inherit it.
    let mut fd3 = child::take_inherited(3).map(std::fs::File::from).ok();
    let mut report = |msg: String| {
        if let Some(f) = fd3.as_mut() {
            let _ = f.write_all(msg.as_bytes());
        }
    };
    let exe = cstr(args[0].as_bytes());
    let argv: Vec<CString> = args[1..].iter().map(|a| cstr(a.as_bytes())).collect();
    // What the plugin's ru_maxrss cannot go below: the pre-exec copy of this probe.
    let floor = vm_kib("VmRSS:", "self").unwrap_or(0);
    let pid = match child::spawn_traced(&exe, &argv) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cnibox-bench: fork: {e}");
            return 2;
        }
    };
    let mut traced = false;
    let mut seen: std::collections::HashSet<libc::pid_t> = std::collections::HashSet::new();
    let (mut hwm, mut own, mut procs) = (0u64, 0u64, 0usize);
    let mut code = None;
    let mut maxrss = 0;
    // Until everything has exited.
    while let Ok(Some(r)) = child::wait_any() {
        let w = r.pid;
        let (sig, event) = match r.status {
            Status::Exited(_) | Status::Signaled(_) => {
                if w == pid {
                    maxrss = r.maxrss_kib;
                    code = Some(r.status.code());
                }
                continue;
            }
            Status::Stopped { sig, event } => (sig, event),
            Status::Other => continue,
        };
        let mut inject = 0;
        if w == pid && !traced {
            // The child's own SIGSTOP after PTRACE_TRACEME: follow it from here.
            traced = child::trace_follow(pid).is_ok();
            seen.insert(pid);
        } else if event == child::EVENT_EXIT {
            if let Some(k) = vm_kib("VmHWM:", &w.to_string()) {
                hwm = hwm.max(k);
                // Threads stop here too; count each process once, by its leader.
                if vm_kib("Tgid:", &w.to_string()) == Some(w as u64) {
                    procs += 1;
                }
                if w == pid {
                    own = k;
                }
            }
        } else if event != 0 {
            // fork, vfork, clone, exec: nothing to do but go on.
        } else if sig == libc::SIGSTOP && seen.insert(w) {
            // The first stop of a newly followed process.
        } else if sig != libc::SIGTRAP {
            inject = sig; // a real signal: deliver it
        }
        child::trace_cont(w, inject);
    }
    if traced && hwm > 0 {
        report(format!("floor={floor} hwm={hwm} self={own} procs={procs} maxrss={maxrss}\n"));
    } else {
        report(format!("floor={floor} maxrss={maxrss}\n"));
    }
    code.unwrap_or(2)
}

/// A number from a /proc/<who>/status line (`VmHWM:` in KiB, `Tgid:`).
fn vm_kib(key: &str, who: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
