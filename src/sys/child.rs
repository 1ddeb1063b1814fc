//! Child processes run the way a container runtime runs a plugin: posix_spawn
//! (clone with CLONE_VM|CLONE_VFORK, as Go's os/exec does) with pipes on its
//! standard descriptors, polled while it runs, then wait4 for its status and
//! peak RSS. A plugin delegating to another plugin runs it so ([`Filter`]);
//! `cnibox run` and `cnibox netns exec` start their command with [`exec`]
//! after entering a namespace (netns.rs). Also, for the benchmark tool
//! (bench/), a traced child (ptrace) whose exits can be inspected, and
//! signal flags (see process.rs for the runtime side's signal forwarding).
//! std::process is not used: its Command links far more than this needs.

use super::cvt;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut p = [-1; 2];
    // SAFETY: p has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the borrow keeps open.
    let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) }).map(drop)
}

pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, writable for its length.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// One descriptor to poll for `events` (libc::POLLIN, POLLOUT).
pub fn poll_fd(fd: BorrowedFd<'_>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 }
}

/// poll(2); Err(Interrupted) on a signal.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the pointer and count describe `fds`.
    cvt(unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) }).map(|n| n.unsigned_abs() as usize)
}

/// How a process ended or stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    /// Stopped under ptrace: the signal and the PTRACE_EVENT_* (0 for a plain signal stop).
    Stopped {
        sig: i32,
        event: i32,
    },
    Other,
}

impl Status {
    fn from_raw(st: libc::c_int) -> Status {
        if libc::WIFEXITED(st) {
            Status::Exited(libc::WEXITSTATUS(st))
        } else if libc::WIFSIGNALED(st) {
            Status::Signaled(libc::WTERMSIG(st))
        } else if libc::WIFSTOPPED(st) {
            Status::Stopped { sig: libc::WSTOPSIG(st), event: st >> 16 }
        } else {
            Status::Other
        }
    }

    /// The exit status, or 128 + the signal number, as a shell reports it; -1 otherwise.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(c) => c,
            Status::Signaled(s) => 128 + s,
            _ => -1,
        }
    }
}

/// A process reaped: its status and ru_maxrss (KiB).
pub struct Reaped {
    pub pid: libc::pid_t,
    pub status: Status,
    pub maxrss_kib: u64,
}

fn wait4(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Reaped> {
    let mut st = 0;
    // SAFETY: rusage is plain data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: st and ru are valid out-parameters.
    let pid = cvt(unsafe { libc::wait4(pid, &mut st, flags, &mut ru) })?;
    Ok(Reaped { pid, status: Status::from_raw(st), maxrss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0) })
}

/// A spawned child, killed and reaped on drop unless waited for.
pub struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

/// NUL-terminated pointer arrays for exec, borrowing the strings.
fn ptrs(v: &[CString]) -> Vec<*mut libc::c_char> {
    v.iter().map(|a| a.as_ptr().cast_mut()).chain(std::iter::once(std::ptr::null_mut())).collect()
}

/// Start `exe` with `argv` and exactly the environment `env`, each
/// `(from, to)` of `fds` duplicated onto descriptor `to` in the child (all
/// others close on exec), SIGPIPE at its default and no signal blocked (this
/// process may ignore SIGPIPE; ignored signals would survive exec).
pub fn spawn(exe: &CStr, argv: &[CString], env: &[CString], fds: &[(BorrowedFd<'_>, RawFd)]) -> io::Result<Child> {
    let (argv, envp) = (ptrs(argv), ptrs(env));
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file actions and attributes are initialised before use and
    // destroyed after; every pointer passed (exe, argv, envp and their
    // strings) outlives the call; sigset_t and the spawn structs are plain
    // data for which all zeroes is a valid starting value.
    let rc = unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut at: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut fa);
        for (from, to) in fds {
            libc::posix_spawn_file_actions_adddup2(&mut fa, from.as_raw_fd(), *to);
        }
        libc::posix_spawnattr_init(&mut at);
        let mut def: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut def);
        libc::sigaddset(&mut def, libc::SIGPIPE);
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::posix_spawnattr_setsigdefault(&mut at, &def);
        libc::posix_spawnattr_setsigmask(&mut at, &mask);
        libc::posix_spawnattr_setflags(&mut at, (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as _);
        let rc = libc::posix_spawn(&mut pid, exe.as_ptr(), &fa, &at, argv.as_ptr(), envp.as_ptr());
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut at);
        rc
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(Child { pid, reaped: false })
}

impl Child {
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    pub fn kill(&self) {
        if !self.reaped {
            // SAFETY: the child is not reaped yet, so its pid is still ours.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// Wait for it to end; Err(Interrupted) when a signal came first.
    pub fn wait(&mut self) -> io::Result<Reaped> {
        let r = wait4(self.pid, 0)?;
        self.reaped = true;
        Ok(r)
    }

    /// Wait for it to end, through any signals caught meanwhile.
    pub fn reap(&mut self) -> io::Result<Status> {
        loop {
            match self.wait() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r.map(|r| r.status),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            while let Err(e) = wait4(self.pid, 0) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
        }
    }
}

/// This process's environment with each of `set` (`NAME=value`) in place of
/// the variable of that name, for [`spawn`] (which takes the whole of it).
pub fn env_with(set: &[CString]) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            use std::os::unix::ffi::OsStrExt;
            let k = k.as_bytes();
            if set.iter().any(|s| s.as_bytes().split(|&b| b == b'=').next() == Some(k)) {
                return None;
            }
            CString::new([k, b"=", v.as_bytes()].concat()).ok()
        })
        .collect();
    env.extend_from_slice(set);
    env
}

/// A child run as a filter: its stdin and stdout are pipes of ours, its
/// stderr is this process's own. It is reaped however it is done with.
pub struct Filter {
    child: Child,
    stdin: OwnedFd,
    stdout: OwnedFd,
}

impl Filter {
    /// Start `exe` (argv[0] the same) with environment `env`.
    pub fn spawn(exe: &CStr, env: &[CString]) -> io::Result<Filter> {
        let (in_r, stdin) = pipe()?;
        let (stdout, out_w) = pipe()?;
        let child = spawn(exe, &[exe.to_owned()], env, &[(in_r.as_fd(), 0), (out_w.as_fd(), 1)])?;
        set_nonblocking(stdin.as_fd())?;
        Ok(Filter { child, stdin, stdout })
    }

    /// Write `input` to its stdin and read its stdout, to its end; returns
    /// its status and output. Both pipes are polled together, so a child that
    /// writes much before it reads its input stalls neither side. A child
    /// that exits without reading all of its input is no error here (writing
    /// gives EPIPE: Rust programs ignore SIGPIPE); its status tells.
    pub fn run(self, input: &[u8]) -> io::Result<(Status, Vec<u8>)> {
        let Filter { mut child, stdin, stdout } = self;
        let mut writer = (!input.is_empty()).then_some(stdin);
        let mut reader = Some(stdout);
        let (mut written, mut out) = (0, Vec::new());
        while reader.is_some() || writer.is_some() {
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2);
            fds.extend(writer.as_ref().map(|w| poll_fd(w.as_fd(), libc::POLLOUT)));
            fds.extend(reader.as_ref().map(|r| poll_fd(r.as_fd(), libc::POLLIN)));
            match poll(&mut fds, -1) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r?,
            };
            if let (Some(w), Some(p)) = (&writer, fds.first()) {
                if p.revents != 0 {
                    match write(w.as_fd(), &input[written..]) {
                        Ok(n) => written += n,
                        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                        // EPIPE: it stopped reading.
                        Err(_) => written = input.len(),
                    }
                    if written >= input.len() {
                        writer = None;
                    }
                }
            }
            if let (Some(r), Some(p)) = (&reader, fds.last()) {
                if p.revents != 0 {
                    let len = out.len();
                    out.resize(len + 65536, 0);
                    let n = read(r.as_fd(), &mut out[len..]);
                    out.truncate(len + *n.as_ref().unwrap_or(&0));
                    match n {
                        Ok(0) => reader = None,
                        Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                        _ => {}
                    }
                }
            }
        }
        Ok((child.reap()?, out))
    }
}

/// Replace this process with `argv[0]`, looked up on PATH as a shell does,
/// SIGPIPE back at its default and no signal blocked; returns only on failure.
pub fn exec(argv: &[CString]) -> io::Error {
    exec_ptrs(&ptrs(argv))
}

/// [`exec`] of pointer arrays made beforehand: allocates nothing, so it may
/// run between fork and exec.
fn exec_ptrs(argv: &[*mut libc::c_char]) -> io::Error {
    // SAFETY: argv is a NUL-terminated array of pointers to NUL-terminated
    // strings that outlive the call; sigset_t is plain data.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execvp(argv[0], argv.as_ptr().cast());
    }
    io::Error::last_os_error()
}

/// Start `argv` as [`exec`] does, in a forked child that runs `prepare`
/// first (entering a namespace: it must only make system calls on data
/// prepared beforehand, allocating nothing). The error of `prepare` or of
/// the exec is this call's. Only for a single-threaded process.
pub(super) fn spawn_forked(argv: &[CString], prepare: impl FnOnce() -> io::Result<()>) -> io::Result<Child> {
    let argv = ptrs(argv);
    let (r, w) = pipe()?;
    // SAFETY: the process is single-threaded (the caller's promise), so the
    // child is a full copy; it runs only `prepare` and exec_ptrs, which make
    // system calls on memory prepared before the fork, then writes the errno
    // and ends in _exit, running no destructor of the parent's.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        let e = prepare().err().unwrap_or_else(|| exec_ptrs(&argv));
        let errno = e.raw_os_error().unwrap_or(libc::EINVAL).to_ne_bytes();
        // SAFETY: as above; w is open (close-on-exec: the parent sees EOF when the exec succeeds).
        unsafe {
            libc::write(w.as_raw_fd(), errno.as_ptr().cast(), errno.len());
            libc::_exit(127);
        }
    }
    drop(w);
    let child = Child { pid, reaped: false };
    let mut errno = [0u8; 4];
    let n = loop {
        match read(r.as_fd(), &mut errno) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            n => break n?,
        }
    };
    match n {
        0 => Ok(child),
        _ => Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno))),
    }
}

/// Start `exe` (this process's environment, its descriptors 0-2 and any
/// not close-on-exec) stopped under ptrace by this process: it stops with
/// SIGSTOP before exec; `trace_follow` then makes the tracing follow it.
/// Its processes are reaped with `wait_any`.
pub fn spawn_traced(exe: &CStr, argv: &[CString]) -> io::Result<libc::pid_t> {
    let argv = ptrs(argv);
    // SAFETY: between fork and exec the child makes only async-signal-safe
    // calls (ptrace, raise, execv, _exit) on memory prepared before the fork,
    // so this is sound in a threaded process too.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0 {
                libc::raise(libc::SIGSTOP);
            }
            libc::execv(exe.as_ptr(), argv.as_ptr().cast());
            libc::_exit(127);
        }
    }
    Ok(pid)
}

/// Follow everything `pid` (stopped under ptrace) starts, and stop each at exit.
pub fn trace_follow(pid: libc::pid_t) -> io::Result<()> {
    let opts = libc::PTRACE_O_TRACEEXIT
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEEXEC;
    // SAFETY: PTRACE_SETOPTIONS on a stopped tracee of ours; no memory is passed.
    cvt(unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts as libc::c_long) } as libc::c_int).map(drop)
}

/// Let a stopped tracee go on, delivering `sig` (0: none).
pub fn trace_cont(pid: libc::pid_t, sig: i32) {
    // SAFETY: PTRACE_CONT on a stopped tracee of ours; no memory is passed.
    unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, libc::c_long::from(sig)) };
}

pub const EVENT_EXIT: i32 = libc::PTRACE_EVENT_EXIT;

/// The next child (or traced thread) to change state; Ok(None) when none is left.
pub fn wait_any() -> io::Result<Option<Reaped>> {
    loop {
        match wait4(-1, libc::__WALL) {
            Ok(r) => return Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Run `handler` on each of `signals`, without SA_RESTART (a blocked poll
/// or wait returns EINTR, so the caller sees whatever the handler set).
pub fn on_signals(signals: &[libc::c_int], handler: extern "C" fn(libc::c_int)) {
    for &sig in signals {
        // SAFETY: sigaction is plain data (all zeroes valid); the handler is
        // an extern "C" fn that lives for the whole program.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// A descriptor of our own on what inherited descriptor `fd` is open to (a
/// report pipe from the parent), opened anew through `/proc/self/fd` with the
/// same access mode; `fd` itself is made close-on-exec so that no child
/// inherits it, and is otherwise left alone: it is not claimed, so whatever
/// else in this process might own that number keeps it.
pub fn take_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFL and F_SETFD only read and set descriptor flags; EBADF if not open.
    let mode = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })? & libc::O_ACCMODE;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    let file = std::fs::OpenOptions::new()
        .read(mode != libc::O_WRONLY)
        .write(mode != libc::O_RDONLY)
        .open(format!("/proc/self/fd/{fd}"))?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_passes_much_more_than_a_pipe_holds_both_ways() {
        // cat writes as it reads: a caller that wrote all before reading would wait for ever.
        let input: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let (status, out) = Filter::spawn(c"/bin/cat", &env_with(&[])).unwrap().run(&input).unwrap();
        assert_eq!(status, Status::Exited(0));
        assert!(out == input, "{} bytes back of {}", out.len(), input.len());
    }

    #[test]
    fn run_reports_a_missing_program_and_a_child_that_does_not_read() {
        let e = Filter::spawn(c"/nonexistent/cnibox-test", &env_with(&[])).err().unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        // true reads nothing: the write fails with EPIPE, which is no error here.
        let (status, out) = Filter::spawn(c"/bin/true", &env_with(&[])).unwrap().run(&vec![0u8; 1 << 20]).unwrap();
        assert_eq!((status, out.len()), (Status::Exited(0), 0));
    }

    #[test]
    fn env_with_replaces_variables_of_the_same_name() {
        let env = env_with(&[c"PATH=/x".to_owned(), c"CNIBOX_NEW=1".to_owned()]);
        let paths: Vec<&CString> = env.iter().filter(|e| e.as_bytes().starts_with(b"PATH=")).collect();
        assert_eq!(paths, [&c"PATH=/x".to_owned()]);
        assert!(env.contains(&c"CNIBOX_NEW=1".to_owned()));
    }
}
