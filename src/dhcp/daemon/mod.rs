//! `cnibox dhcp daemon`: one process, one thread, one poll(2) loop over the
//! unix socket, the plugin connections, a signalfd, and the packet socket of
//! each lease that is talking to a server. Timers are the clients' own
//! deadlines; nothing ever blocks but poll.
//!
//! - [`args`]: the command line (Go `flag` syntax and durations);
//! - [`conns`]: the plugins' connections (non-blocking, deadlines, a cap);
//! - [`lease`]: one lease: its client, namespace and packet socket;
//! - [`ops`]: what each request and each client event does;
//! - [`store`]: the leases file, and the checks on its directory;
//! - here: start-up (socket, activation, restore) and the loop.
//!
//! A lease's packet socket is opened inside the container's namespace only
//! while it has something to say (acquiring, renewing, rebinding, releasing)
//! and closed once bound, so the daemon keeps no dead container's namespace
//! alive. Leases are kept in a file beside the socket so that a restarted
//! daemon goes on renewing (and can release) what it held.

mod args;
mod conns;
mod lease;
mod ops;
mod store;

pub use args::duration;

use super::client::Ms;
use super::rpc::Reply;
use super::wire::Message;
use crate::error::{Error, Result};
use crate::sys::netns::Netns;
use crate::sys::service::{boottime_ms, fd_ident, poll, pollfd};
use args::Opts;
use conns::Conns;
use lease::{path_ident, Entry, NsIdent};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// How often every lease's namespace is looked at.
const SWEEP: Ms = 5000;

pub fn main(args: &[String]) -> i32 {
    let o = match args::parse_args(args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{}", args::USAGE);
            return 0;
        }
        Err(e) => {
            eprint!("cnibox dhcp daemon: {e}\n{}", args::USAGE);
            return 2;
        }
    };
    match run(o) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cnibox dhcp daemon: {e}");
            1
        }
    }
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("cnibox dhcp: {msg}");
}

pub(super) struct Daemon {
    o: Opts,
    listener: UnixListener,
    signals: OwnedFd,
    conns: Conns,
    leases: Vec<Entry>,
    state_file: PathBuf,
    next_sweep: Ms,
    /// The daemon's own namespace: never one to run DHCP in.
    own_ns: NsIdent,
}

fn run(o: Opts) -> Result<()> {
    // First, while descriptor 3 is still the one systemd may have passed.
    let (listener, socket, owned) = listen(&format!("{}{}", o.hostprefix, o.socket))?;
    let r = start(o, listener, &socket).and_then(|mut d| {
        let r = d.serve();
        if !d.o.pidfile.is_empty() {
            let _ = std::fs::remove_file(&d.o.pidfile);
        }
        log("stopped (leases are kept for the next start)");
        r
    });
    if owned {
        let _ = std::fs::remove_file(&socket);
    }
    r
}

/// Everything but the listening socket, and the leases a previous daemon left.
fn start(o: Opts, listener: UnixListener, socket: &str) -> Result<Daemon> {
    let signals = crate::sys::service::signal_fd(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;
    let own_ns = fd_ident(Netns::current()?.fd())?;
    if !o.pidfile.is_empty() {
        write_pidfile(&o.pidfile)?;
    }
    let mut d = Daemon {
        state_file: PathBuf::from(format!("{socket}.leases")),
        o,
        listener,
        signals,
        conns: Conns::default(),
        leases: Vec::new(),
        next_sweep: 0,
        own_ns,
    };
    if let Err(e) = d.restore() {
        if !d.o.pidfile.is_empty() {
            let _ = std::fs::remove_file(&d.o.pidfile);
        }
        return Err(e);
    }
    log(format_args!("listening on {socket}, {} lease(s) restored", d.leases.len()));
    Ok(d)
}

fn write_pidfile(path: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| Error::os(format_args!("write pidfile {path}"), e.raw_os_error().unwrap_or(0));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(fail)?;
    if !f.metadata().map_err(fail)?.is_file() {
        return Err(Error::msg(format!("pidfile {path} is not a regular file")));
    }
    f.set_len(0).and_then(|()| f.write_all(format!("{}\n", std::process::id()).as_bytes())).map_err(fail)
}

/// The listening socket, its path, and whether the daemon made it: the one
/// systemd passed (socket activation), or our own at `path` (a stale socket
/// of a killed daemon is replaced; a live one is not). Either way the leases
/// file lives beside the socket, in a directory only the daemon's user can change.
fn listen(path: &str) -> Result<(UnixListener, String, bool)> {
    if let Some(fd) = crate::sys::service::listen_fd_from_systemd()? {
        let socket = crate::sys::service::unix_socket_path(fd.as_raw_fd()).unwrap_or_else(|| path.to_string());
        if let Some(dir) = Path::new(&socket).parent() {
            store::prepare_dir(dir)?;
        }
        return Ok((UnixListener::from(fd), socket, false));
    }
    if let Some(dir) = Path::new(path).parent() {
        store::prepare_dir(dir)?;
    }
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false) {
        match UnixStream::connect(path) {
            Ok(_) => return Err(Error::msg(format!("another DHCP daemon is listening on {path}"))),
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let l = UnixListener::bind(path)
        .map_err(|e| Error::os(format_args!("listen on {path}"), e.raw_os_error().unwrap_or(0)))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    l.set_nonblocking(true)?;
    Ok((l, path.to_string(), true))
}

impl Daemon {
    fn serve(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 4096];
        loop {
            let now = boottime_ms();
            self.tick(now);
            let mut fds = vec![pollfd(self.signals.as_raw_fd(), libc::POLLIN)];
            fds.push(pollfd(self.listener.as_raw_fd(), libc::POLLIN));
            let conn_ids: Vec<u64> = self
                .conns
                .fds()
                .map(|(id, fd)| {
                    fds.push(pollfd(fd, libc::POLLIN));
                    id
                })
                .collect();
            fds.extend(
                self.leases
                    .iter()
                    .map(|e| pollfd(e.sock.as_ref().map(|s| s.as_fd().as_raw_fd()).unwrap_or(-1), libc::POLLIN)),
            );
            let mut wake = self.next_sweep.min(self.conns.next_deadline());
            wake = self.leases.iter().filter(|e| e.lost.is_none()).map(|e| e.client.wake()).fold(wake, Ms::min);
            let timeout = wake.saturating_sub(now).min(i32::MAX as Ms) as i32;
            if poll(&mut fds, timeout)? == 0 {
                self.conns.expire(boottime_ms());
                continue;
            }
            if fds[0].revents != 0 {
                return Ok(());
            }
            let now = boottime_ms();
            // Act by id, not by position: handling one event can remove others.
            let mut ready: Vec<u64> =
                conn_ids.iter().zip(&fds[2..]).filter(|(_, f)| f.revents != 0).map(|(id, _)| *id).collect();
            let lease_ids: Vec<(String, i16)> = self
                .leases
                .iter()
                .zip(&fds[2 + conn_ids.len()..])
                .filter(|(_, f)| f.revents != 0)
                .map(|(e, f)| (e.id.clone(), f.revents))
                .collect();
            if fds[1].revents != 0 {
                // A plugin writes its request as soon as it connects: read it now.
                ready.extend(self.conns.accept(&self.listener, now));
            }
            for id in ready {
                match self.conns.read(id, &mut buf) {
                    Some(Ok(req)) => self.handle(id, req, now),
                    Some(Err(e)) => self.reply(id, &Reply::error(&e)),
                    None => {}
                }
            }
            for (id, revents) in lease_ids {
                self.read_lease(&id, revents, now, &mut buf);
            }
            self.conns.expire(now);
        }
    }

    /// Answer connection `id` and close it.
    fn reply(&mut self, id: u64, r: &Reply) {
        self.conns.reply(id, r);
    }

    /// Run every client whose time has come; look at the namespaces now and then.
    fn tick(&mut self, now: Ms) {
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP;
            while let Some(i) = self.leases.iter().position(|e| path_ident(&e.netns) != Some(e.ns_ident)) {
                let why = format!("network namespace {} is gone: lease dropped", self.leases[i].netns);
                self.remove(i, &why, false);
            }
        }
        let due: Vec<String> =
            self.leases.iter().filter(|e| e.lost.is_none() && e.client.wake() <= now).map(|e| e.id.clone()).collect();
        for id in due {
            let Some(i) = self.find(&id) else { continue };
            let e = &mut self.leases[i];
            if e.sock.is_none() {
                if let Err(err) = e.open(false) {
                    let why = format!("{err}: lease dropped");
                    self.remove(i, &why, false);
                    continue;
                }
            }
            let (out, ev) = e.client.timer(now, &e.params);
            if let Some(out) = out {
                e.send(out);
            }
            self.event(i, ev);
        }
    }

    fn read_lease(&mut self, id: &str, revents: i16, now: Ms, buf: &mut [u8]) {
        loop {
            let Some(i) = self.find(id) else { return };
            let e = &mut self.leases[i];
            let Some(sock) = &e.sock else { return };
            let failed = match sock.recv(buf) {
                Ok(Some((n, from))) => {
                    let Some(m) = super::wire::unframe(&buf[..n]).and_then(|(_, p)| Message::decode(p)) else {
                        continue;
                    };
                    let ev = e.client.input(now, &m, from);
                    self.event(i, ev);
                    continue;
                }
                Ok(None) if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) == 0 => return,
                Ok(None) => String::new(),
                Err(err) => format!(": {err}"),
            };
            // ENETDOWN: the interface was set down, or deleted. Close the
            // socket; the next transmission opens a new one, or drops the
            // lease if the interface (or its namespace) is gone for good.
            log(format_args!("{}: packet socket on {} failed{failed}", e.id, e.ifname));
            e.sock = None;
            return;
        }
    }
}
