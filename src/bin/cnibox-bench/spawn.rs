//! Running one plugin the way a runtime does: posix_spawn (clone with
//! CLONE_VM|CLONE_VFORK, as Go's os/exec does) with the CNI_* environment,
//! the config written to its stdin, stdout and stderr read to the end, then
//! wait4. The clock runs from just before the spawn to just after wait4.

use std::ffi::{CString, OsStr};
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
/// No SA_RESTART: a blocked poll returns EINTR and sees the flag.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
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

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        if self.0 >= 0 {
            unsafe { libc::close(self.0) };
        }
    }
}

impl Fd {
    fn take(&mut self) -> libc::c_int {
        std::mem::replace(&mut self.0, -1)
    }
}

fn pipe() -> Result<(Fd, Fd), String> {
    let mut p = [0; 2];
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    Ok((Fd(p[0]), Fd(p[1])))
}

/// Run `spec` to completion. Err only when it could not be started at all
/// (or the run was interrupted); a plugin that fails is an Ok with its status.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    let mut argv: Vec<*mut libc::c_char> = spec.argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = spec.env.iter().map(|a| a.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());

    let (mut in_r, mut in_w) = pipe()?;
    let (mut out_r, mut out_w) = pipe()?;
    let (mut err_r, mut err_w) = pipe()?;
    let (mut x_r, mut x_w) = if spec.fd3 { pipe()? } else { (Fd(-1), Fd(-1)) };

    let mut pid: libc::pid_t = 0;
    let t0;
    let rc;
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut at: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut fa);
        libc::posix_spawn_file_actions_adddup2(&mut fa, in_r.0, 0);
        libc::posix_spawn_file_actions_adddup2(&mut fa, out_w.0, 1);
        libc::posix_spawn_file_actions_adddup2(&mut fa, err_w.0, 2);
        if spec.fd3 {
            libc::posix_spawn_file_actions_adddup2(&mut fa, x_w.0, 3);
        }
        libc::posix_spawnattr_init(&mut at);
        // Rust ignores SIGPIPE and ignored signals survive exec: give the plugin the defaults.
        let mut def: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut def);
        libc::sigaddset(&mut def, libc::SIGPIPE);
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::posix_spawnattr_setsigdefault(&mut at, &def);
        libc::posix_spawnattr_setsigmask(&mut at, &mask);
        libc::posix_spawnattr_setflags(
            &mut at,
            (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
        );
        t0 = Instant::now();
        rc = libc::posix_spawn(&mut pid, spec.exe.as_ptr(), &fa, &at, argv.as_ptr(), envp.as_ptr());
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut at);
    }
    if rc != 0 {
        return Err(format!("cannot run {}: {}", spec.exe_display(), std::io::Error::from_raw_os_error(rc)));
    }
    drop(in_r.take_fd());
    drop(out_w.take_fd());
    drop(err_w.take_fd());
    drop(x_w.take_fd());

    let mut input = Fd(in_w.take());
    unsafe { libc::fcntl(input.0, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut written = 0usize;
    if spec.stdin.is_empty() {
        drop(Fd(input.take()));
    }
    let mut bufs: [Vec<u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut readers = [Fd(out_r.take()), Fd(err_r.take()), Fd(x_r.take())];
    let deadline = t0 + spec.timeout;
    let mut timed_out = false;
    let mut killed = false;
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
        let mut who: Vec<usize> = Vec::with_capacity(4);
        if input.0 >= 0 {
            fds.push(libc::pollfd { fd: input.0, events: libc::POLLOUT, revents: 0 });
            who.push(9);
        }
        for (i, r) in readers.iter().enumerate() {
            if r.0 >= 0 {
                fds.push(libc::pollfd { fd: r.0, events: libc::POLLIN, revents: 0 });
                who.push(i);
            }
        }
        if fds.is_empty() {
            break;
        }
        let now = Instant::now();
        if !killed && (now >= deadline || interrupted()) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
            timed_out = now >= deadline;
            // Whatever the plugin started may still hold the pipes: stop reading.
            break;
        }
        let wait_ms = deadline.saturating_duration_since(now).as_millis().min(200) as libc::c_int;
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms.max(1)) };
        if n < 0 {
            continue; // EINTR: the loop head checks the flag
        }
        for (k, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            if who[k] == 9 {
                let rest = &spec.stdin[written..];
                let w = unsafe { libc::write(input.0, rest.as_ptr() as *const libc::c_void, rest.len()) };
                if w > 0 {
                    written += w as usize;
                }
                // EPIPE (plugin never read stdin, as VERSION may not) or done: stop writing.
                if (w < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock)
                    || written >= spec.stdin.len()
                {
                    drop(Fd(input.take()));
                }
            } else {
                let i = who[k];
                let mut chunk = [0u8; 16384];
                let r = unsafe { libc::read(readers[i].0, chunk.as_mut_ptr() as *mut libc::c_void, chunk.len()) };
                if r > 0 {
                    bufs[i].extend_from_slice(&chunk[..r as usize]);
                } else if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                    drop(Fd(readers[i].take()));
                }
            }
        }
    }
    drop(input);
    drop(readers);
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            if !killed && interrupted() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = true;
            }
            continue;
        }
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let ns = t0.elapsed().as_nanos() as u64;
    if killed && !timed_out {
        return Err("interrupted".into());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    let [o, e, x] = bufs;
    Ok(Outcome {
        code,
        ns,
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
        fd3: String::from_utf8_lossy(&x).into_owned(),
        maxrss_kib: ru.ru_maxrss.max(0) as u64,
        timed_out,
    })
}

impl Fd {
    fn take_fd(&mut self) -> Fd {
        Fd(self.take())
    }
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
    unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
    let exe = cstr(args[0].as_bytes());
    let cargs: Vec<CString> = args[1..].iter().map(|a| cstr(a.as_bytes())).collect();
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let report = |msg: String| unsafe {
        libc::write(3, msg.as_ptr() as *const libc::c_void, msg.len());
    };
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("cnibox-bench: fork: {}", std::io::Error::last_os_error());
        return 2;
    }
    if pid == 0 {
        // This process is single-threaded, so reading a file here is safe.
        report(format!("floor={} ", vm_kib("VmRSS:", "self").unwrap_or(0)));
        unsafe {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0 {
                libc::raise(libc::SIGSTOP);
            }
            libc::execv(exe.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    let opts = libc::PTRACE_O_TRACEEXIT
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEEXEC;
    let mut traced = false;
    let mut seen: std::collections::HashSet<libc::pid_t> = std::collections::HashSet::new();
    let (mut hwm, mut own, mut procs) = (0u64, 0u64, 0usize);
    let mut code = None;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let mut st = 0;
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        let w = unsafe { libc::wait4(-1, &mut st, libc::__WALL, &mut r) };
        if w < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break; // ECHILD: everything has exited
        }
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            if w == pid {
                ru = r;
                code = Some(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) });
            }
            continue;
        }
        if !libc::WIFSTOPPED(st) {
            continue;
        }
        let sig = libc::WSTOPSIG(st);
        let event = st >> 16;
        let mut inject = 0;
        if w == pid && !traced {
            // The child's own SIGSTOP after PTRACE_TRACEME: follow it from here.
            unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts as libc::c_long) };
            traced = true;
            seen.insert(pid);
        } else if event == libc::PTRACE_EVENT_EXIT {
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
        unsafe { libc::ptrace(libc::PTRACE_CONT, w, 0, inject as libc::c_long) };
    }
    if traced && hwm > 0 {
        report(format!("hwm={hwm} self={own} procs={procs} maxrss={}\n", ru.ru_maxrss));
    } else {
        report(format!("maxrss={}\n", ru.ru_maxrss));
    }
    code.unwrap_or(2)
}

/// A number from a /proc/<who>/status line (`VmHWM:` in KiB, `Tgid:`).
fn vm_kib(key: &str, who: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
