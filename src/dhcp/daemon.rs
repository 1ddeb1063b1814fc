//! `cnibox dhcp daemon`: one process, one thread, one poll(2) loop over the
//! unix socket, the plugin connections, a signalfd, and the packet socket of
//! each lease that is talking to a server. Timers are the clients' own
//! deadlines; nothing ever blocks but poll.
//!
//! A lease's packet socket is opened inside the container's namespace only
//! while it has something to say (acquiring, renewing, rebinding, releasing)
//! and closed once bound, so the daemon keeps no dead container's namespace
//! alive. Leases are kept in a state file beside the socket so that a
//! restarted daemon goes on renewing (and can release) what it held.

use super::client::{Client, Event, Lease, Ms, Params, State, NEVER};
use super::rpc::{self, Reply, Request};
use super::wire::Message;
use crate::cni::json::{object, FromJson, JResult};
use crate::cni::json_writer::JsonWriter;
use crate::error::{code, Error, Result};
use crate::rtnl::Rtnl;
use crate::sys::netns::Netns;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

const USAGE: &str = "usage: dhcp daemon [-socketpath PATH] [-pidfile PATH] [-hostprefix PREFIX] [-broadcast] [-timeout DURATION] [-resendmax DURATION]\n\
\x20 -socketpath   unix socket the plugin talks to (default /run/cni/dhcp.sock); leases are kept in PATH.leases\n\
\x20 -pidfile      write the daemon's pid here\n\
\x20 -hostprefix   prefix of the host's root for the socket and namespace paths\n\
\x20 -broadcast    ask servers to broadcast their answers\n\
\x20 -timeout      how long ADD waits for a lease (default 10s)\n\
\x20 -resendmax    longest delay between two retransmissions (default 62s)\n";

/// How often every lease's namespace is looked at.
const SWEEP: Ms = 5000;
/// A connection must send its request line within this time.
const CONN_IDLE: Ms = 10_000;
const MAX_CONNS: usize = 256;

pub struct Opts {
    pub socket: String,
    pub pidfile: String,
    pub hostprefix: String,
    pub broadcast: bool,
    pub timeout: Ms,
    pub resend_max: Ms,
}

pub fn main(args: &[String]) -> i32 {
    let o = match parse_args(args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprint!("cnibox dhcp daemon: {e}\n{USAGE}");
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

/// Go `flag` syntax, as the reference daemon takes it: `-name value`,
/// `-name=value`, `--name`; `-broadcast` alone is true. Err("") asks for help.
fn parse_args(args: &[String]) -> std::result::Result<Opts, String> {
    let mut o = Opts {
        socket: rpc::DEFAULT_SOCKET.into(),
        pidfile: String::new(),
        hostprefix: String::new(),
        broadcast: false,
        timeout: 10_000,
        resend_max: 62_000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let flag = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix('-'))
            .ok_or_else(|| format!("unexpected argument \"{a}\""))?;
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "h" | "help" => return Err(String::new()),
            "broadcast" => {
                o.broadcast = match inline.as_deref() {
                    None | Some("true" | "1") => true,
                    Some("false" | "0") => false,
                    Some(v) => return Err(format!("invalid boolean value \"{v}\" for -broadcast")),
                };
                continue;
            }
            "socketpath" | "pidfile" | "hostprefix" | "timeout" | "resendmax" => {}
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
        let v = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("flag needs an argument: -{name}"))?,
        };
        match name {
            "socketpath" => o.socket = v,
            "pidfile" => o.pidfile = v,
            "hostprefix" => o.hostprefix = v,
            "timeout" => o.timeout = duration(&v)?,
            _ => o.resend_max = duration(&v)?,
        }
    }
    if o.socket.is_empty() {
        o.socket = rpc::DEFAULT_SOCKET.into();
    }
    Ok(o)
}

/// A Go duration ("10s", "1m30s", "1.5s", "250ms") in milliseconds.
pub fn duration(s: &str) -> std::result::Result<Ms, String> {
    let bad = || format!("invalid duration \"{s}\"");
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut us: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
        let (int, frac) = rest[..n].split_once('.').unwrap_or((&rest[..n], ""));
        if int.is_empty() && frac.is_empty() || int.len() > 12 || frac.len() > 6 {
            return Err(bad());
        }
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        // microseconds per unit (a nanosecond part is dropped)
        let unit: u64 = match &rest[..u] {
            "ns" => 0,
            "us" | "µs" => 1,
            "ms" => 1_000,
            "s" => 1_000_000,
            "m" => 60_000_000,
            "h" => 3_600_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        let num = |t: &str| if t.is_empty() { Ok(0) } else { t.parse::<u64>().map_err(|_| bad()) };
        let part = num(int)?.saturating_mul(unit).saturating_add(num(frac)? * unit / 10u64.pow(frac.len() as u32));
        us = us.saturating_add(part);
    }
    Ok(us / 1000)
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("cnibox dhcp: {msg}");
}

fn now_ms() -> Ms {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as Ms * 1000 + ts.tv_nsec as Ms / 1_000_000
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A namespace's identity: its nsfs device and inode (same path, same namespace).
fn path_ident(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn fd_ident(fd: RawFd) -> (u64, u64) {
    // SAFETY: fstat on a descriptor we own, into a zeroed out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    unsafe { libc::fstat(fd, &mut st) };
    (st.st_dev as u64, st.st_ino as u64)
}

// ---- the packet socket of one lease ----

const ETH_P_IP: u16 = 0x0800;
const PACKET_OUTGOING: u8 = 4;

/// An AF_PACKET datagram socket on one interface: the kernel adds and strips
/// the Ethernet header; we send and receive IPv4 packets. It works before the
/// interface has an address, whatever the container's rp_filter or firewall
/// says, and whether or not the server honours the broadcast flag.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// Classic BPF: accept unfragmented IPv4 UDP to port 68, drop everything else,
/// so the daemon wakes only for DHCP replies.
const FILTER: [(u16, u8, u8, u32); 9] = [
    (0x30, 0, 0, 9),      // ldb [9]            IP protocol
    (0x15, 0, 6, 17),     // jeq #17 (UDP)      else drop
    (0x28, 0, 0, 6),      // ldh [6]            flags + fragment offset
    (0x45, 4, 0, 0x1fff), // jset #0x1fff       a fragment: drop
    (0xb1, 0, 0, 0),      // ldxb 4*([0]&0xf)   X = IP header length
    (0x48, 0, 0, 2),      // ldh [x+2]          UDP destination port
    (0x15, 0, 1, 68),     // jeq #68            else drop
    (0x06, 0, 0, 0xffff), // ret #65535         accept
    (0x06, 0, 0, 0),      // ret #0             drop
];

fn ll_addr(ifindex: i32, mac: &[u8]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_IP.to_be();
    sa.sll_ifindex = ifindex;
    sa.sll_halen = mac.len() as u8;
    sa.sll_addr[..mac.len()].copy_from_slice(mac);
    sa
}

const LL_LEN: u32 = std::mem::size_of::<libc::sockaddr_ll>() as u32;

impl PacketSocket {
    /// Open in the current namespace, bound to `ifindex`.
    fn open(ifindex: i32) -> Result<PacketSocket> {
        // Protocol 0: nothing is queued until the filter is on and the bind below names IPv4.
        // SAFETY: plain socket(2) call.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::last_os("open packet socket"));
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut prog: Vec<libc::sock_filter> =
            FILTER.iter().map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
        let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
        let sl = std::mem::size_of::<libc::sock_fprog>() as u32;
        // SAFETY: fprog points at `prog`, alive for the call.
        if unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                sl,
            )
        } != 0
        {
            return Err(Error::last_os("attach packet filter"));
        }
        let sa = ll_addr(ifindex, &[]);
        // SAFETY: sa is a valid sockaddr_ll of LL_LEN bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_ll).cast(), LL_LEN) } != 0 {
            return Err(Error::last_os("bind packet socket"));
        }
        Ok(PacketSocket { fd, ifindex })
    }

    fn send(&self, frame: &[u8], mac: [u8; 6]) -> Result<()> {
        let sa = ll_addr(self.ifindex, &mac);
        // SAFETY: frame and sa are valid for the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                LL_LEN,
            )
        };
        if n < 0 {
            return Err(Error::last_os("send DHCP packet"));
        }
        Ok(())
    }

    /// One packet that arrived (length, link-layer source); None when there is no more.
    fn recv(&self, buf: &mut [u8]) -> Result<Option<(usize, [u8; 6])>> {
        loop {
            // SAFETY: as in `ll_addr`.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = LL_LEN;
            // SAFETY: buf and sa are valid out-parameters of the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sa as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                return match e {
                    libc::EAGAIN => Ok(None),
                    libc::EINTR => continue,
                    _ => Err(Error::os("receive DHCP packet", e)),
                };
            }
            if sa.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&sa.sll_addr[..6]);
            return Ok(Some((n as usize, mac)));
        }
    }
}

// ---- leases ----

/// One lease (or one being acquired): what it is for and its client.
struct Entry {
    id: String,
    network: String,
    netns: String,
    ns_ident: (u64, u64),
    ifname: String,
    params: Params,
    client: Client,
    sock: Option<PacketSocket>,
    /// Connections waiting for this lease (ADD while acquiring).
    waiters: Vec<u64>,
    /// Why a held lease was lost; the record stays until DEL so that CHECK can say so.
    lost: Option<String>,
}

impl Entry {
    fn held(&self) -> bool {
        self.lost.is_none() && !matches!(self.client.state, State::Selecting | State::Requesting)
    }

    /// Run `f` with an rtnetlink socket inside the lease's namespace, if it is still the same one.
    fn in_netns<T>(&self, f: impl FnOnce(&mut Rtnl) -> Result<T>) -> Result<T> {
        let gone = || Error::msg(format!("network namespace {} is gone", self.netns));
        let ns = Netns::open(&self.netns).map_err(|e| if e.is_not_found() { gone() } else { e })?;
        if fd_ident(ns.fd()) != self.ns_ident {
            return Err(gone());
        }
        ns.run(|| f(&mut Rtnl::here()?))
    }

    /// Open the packet socket on the interface (and set the link up when asked).
    fn open(&mut self, set_up: bool) -> Result<()> {
        let ifname = self.ifname.clone();
        let (sock, mac) = self.in_netns(|rt| {
            let l = rt.link_by_name(&ifname)?.ok_or_else(|| Error::msg(format!("interface {ifname} is gone")))?;
            if set_up && !l.is_up() {
                rt.set_up(l.index, &ifname, true)?;
            }
            Ok((PacketSocket::open(l.index.0)?, l.mac))
        })?;
        self.client.mac = mac.0;
        self.sock = Some(sock);
        Ok(())
    }

    fn send(&self, out: super::client::Out) {
        if let Some(s) = &self.sock {
            if let Err(e) = s.send(&out.frame, out.dst_mac) {
                log(format_args!("{}: {e}", self.id));
            }
        }
    }

    fn lease_text(&self) -> String {
        match &self.client.lease {
            Some(l) => {
                let left = |t: Ms| {
                    if t == NEVER {
                        "never".to_string()
                    } else {
                        format!("{}s", t.saturating_sub(now_ms()) / 1000)
                    }
                };
                format!("{} from {} (renew in {}, expires in {})", l.addr(), l.server(), left(l.t1()), left(l.expiry()))
            }
            None => String::new(),
        }
    }
}

/// What the state file keeps of a lease: the ADD that asked for it (with
/// the namespace path as the daemon opens it), which namespace that was,
/// since when the lease runs, and in hex the interface's MAC, the server's
/// MAC and the ACK itself.
struct Saved {
    add: Request,
    dev: u64,
    ino: u64,
    /// Wall-clock milliseconds of the lease's start.
    start: u64,
    lease: String,
}

impl Saved {
    fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object().key("add");
        self.add.write_json(w);
        w.key("dev").number(self.dev).key("ino").number(self.ino).key("start").number(self.start);
        w.key("lease").string(&self.lease).end_object();
    }
}

impl FromJson for Saved {
    fn from_json(v: &Value) -> JResult<Saved> {
        object(v, |o| {
            Ok(Saved {
                add: o.req("add")?,
                dev: o.req("dev")?,
                ino: o.req("ino")?,
                start: o.req("start")?,
                lease: o.req("lease")?,
            })
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

struct Conn {
    id: u64,
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Ms,
}

struct Daemon {
    o: Opts,
    listener: UnixListener,
    signals: OwnedFd,
    conns: Vec<Conn>,
    leases: Vec<Entry>,
    next_id: u64,
    state_file: String,
    next_sweep: Ms,
}

fn run(o: Opts) -> Result<()> {
    let socket = format!("{}{}", o.hostprefix, o.socket);
    let signals = signal_fd()?;
    let (listener, owned) = listen(&socket)?;
    if !o.pidfile.is_empty() {
        std::fs::write(&o.pidfile, format!("{}\n", std::process::id()))
            .map_err(|e| Error::os(format_args!("write pidfile {}", o.pidfile), e.raw_os_error().unwrap_or(0)))?;
    }
    let mut d = Daemon {
        state_file: format!("{socket}.leases"),
        o,
        listener,
        signals,
        conns: Vec::new(),
        leases: Vec::new(),
        next_id: 1,
        next_sweep: 0,
    };
    d.restore();
    log(format_args!("listening on {socket}, {} lease(s) restored", d.leases.len()));
    let r = d.serve();
    if owned {
        let _ = std::fs::remove_file(&socket);
    }
    if !d.o.pidfile.is_empty() {
        let _ = std::fs::remove_file(&d.o.pidfile);
    }
    log("stopped (leases are kept for the next start)");
    r
}

/// SIGTERM, SIGINT and SIGHUP arrive as readable data on a descriptor, in the poll loop.
fn signal_fd() -> Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local, then signalfd on it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(Error::last_os("signalfd"));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The listening socket: one passed by systemd socket activation, or our own
/// at `path` (a stale socket of a killed daemon is replaced; a live one is not).
fn listen(path: &str) -> Result<(UnixListener, bool)> {
    let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    if pid_ok && std::env::var("LISTEN_FDS").as_deref() == Ok("1") {
        // SAFETY: systemd passes the socket as descriptor 3 and nothing else owns it.
        let l = unsafe { UnixListener::from_raw_fd(3) };
        unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
        l.set_nonblocking(true)?;
        return Ok((l, false));
    }
    if let Some(dir) = Path::new(path).parent() {
        crate::sys::file::create_dir_all(dir, 0o700)?;
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
    Ok((l, true))
}

impl Daemon {
    fn serve(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 4096];
        loop {
            let now = now_ms();
            self.tick(now);
            let pfd = |fd: RawFd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            let mut fds = vec![pfd(self.signals.as_raw_fd())];
            fds.push(pfd(if self.conns.len() < MAX_CONNS { self.listener.as_raw_fd() } else { -1 }));
            fds.extend(self.conns.iter().map(|c| pfd(c.stream.as_raw_fd())));
            fds.extend(self.leases.iter().map(|e| pfd(e.sock.as_ref().map(|s| s.fd.as_raw_fd()).unwrap_or(-1))));
            let mut wake = self.next_sweep;
            wake = self.leases.iter().filter(|e| e.lost.is_none()).map(|e| e.client.wake()).fold(wake, Ms::min);
            wake = self.conns.iter().map(|c| c.deadline).fold(wake, Ms::min);
            let timeout = wake.saturating_sub(now).min(i32::MAX as Ms) as i32;
            // SAFETY: fds is a valid array of pollfd of the length given.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if e == libc::EINTR {
                    continue;
                }
                return Err(Error::os("poll", e));
            }
            if fds[0].revents != 0 {
                return Ok(());
            }
            let now = now_ms();
            // Act by id, not by position: handling one event can remove others.
            let conn_ids: Vec<u64> =
                self.conns.iter().zip(&fds[2..]).filter(|(_, f)| f.revents != 0).map(|(c, _)| c.id).collect();
            let lease_ids: Vec<(String, i16)> = self
                .leases
                .iter()
                .zip(&fds[2 + self.conns.len()..])
                .filter(|(_, f)| f.revents != 0)
                .map(|(e, f)| (e.id.clone(), f.revents))
                .collect();
            if fds[1].revents != 0 {
                self.accept(now);
            }
            for id in conn_ids {
                self.read_conn(id, now, &mut buf);
            }
            for (id, revents) in lease_ids {
                self.read_lease(&id, revents, now, &mut buf);
            }
            self.conns.retain(|c| c.deadline > now);
        }
    }

    fn accept(&mut self, now: Ms) {
        while self.conns.len() < MAX_CONNS {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(true);
                    self.next_id += 1;
                    self.conns.push(Conn { id: self.next_id, stream, buf: Vec::new(), deadline: now + CONN_IDLE });
                }
                Err(_) => return,
            }
        }
    }

    fn read_conn(&mut self, id: u64, now: Ms, buf: &mut [u8]) {
        let Some(c) = self.conns.iter_mut().find(|c| c.id == id) else { return };
        let n = match c.stream.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => 0,
        };
        if n == 0 {
            // The plugin went away (maybe killed mid-request): forget the
            // connection; the work it asked for goes on.
            self.conns.retain(|c| c.id != id);
            return;
        }
        if c.deadline == NEVER {
            return; // a request is already in progress; extra bytes are ignored
        }
        c.buf.extend_from_slice(&buf[..n]);
        let Some(end) = c.buf.iter().position(|&b| b == b'\n') else {
            if c.buf.len() > rpc::MAX_LINE {
                self.reply(id, &Reply::error(&Error::new(code::DECODING, "DHCP daemon request line too long")));
            }
            return;
        };
        let line: Vec<u8> = c.buf.drain(..=end).collect();
        c.deadline = NEVER;
        match crate::cni::config::parse::<Request>(&line, "invalid DHCP daemon request") {
            Ok(req) => self.handle(id, req, now),
            Err(e) => self.reply(id, &Reply::error(&e)),
        }
    }

    /// Answer connection `id` and close it.
    fn reply(&mut self, id: u64, r: &Reply) {
        let Some(i) = self.conns.iter().position(|c| c.id == id) else { return };
        let c = self.conns.remove(i);
        let line = r.to_line();
        // A few hundred bytes into an empty socket buffer: a short blocking write.
        let _ = c.stream.set_nonblocking(false);
        let _ = c.stream.set_write_timeout(Some(std::time::Duration::from_secs(1)));
        let _ = (&c.stream).write_all(&line);
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.leases.iter().position(|e| e.id == id)
    }

    fn handle(&mut self, cid: u64, req: Request, now: Ms) {
        let r = match req.op.as_str() {
            "add" => return self.add(cid, req, now),
            "check" => match self.find(&req.id).map(|i| &self.leases[i]) {
                None => Reply::error(&Error::msg(format!("no DHCP lease is held for {}", req.id))),
                Some(e) if e.lost.is_some() => Reply::error(&Error::msg(format!(
                    "the DHCP lease of {} was lost: {}",
                    e.id,
                    e.lost.as_deref().unwrap_or("")
                ))),
                Some(e) if !e.held() => Reply::error(&Error::new(
                    code::TRY_AGAIN_LATER,
                    format!("the DHCP lease of {} is still being acquired", e.id),
                )),
                Some(e) => result_reply(e),
            },
            "del" => {
                if let Some(i) = self.find(&req.id) {
                    self.remove(i, "released on DEL", true);
                }
                Reply::ok(None)
            }
            "gc" => {
                while let Some(i) =
                    self.leases.iter().position(|e| e.network == req.network && !req.keep.contains(&e.id))
                {
                    self.remove(i, "released by GC", true);
                }
                Reply::ok(None)
            }
            "status" => Reply::ok(None),
            op => Reply::error(&Error::msg(format!("unknown DHCP daemon operation \"{op}\""))),
        };
        self.reply(cid, &r);
    }

    fn add(&mut self, cid: u64, req: Request, now: Ms) {
        let netns = format!("{}{}", self.o.hostprefix, req.netns);
        let ident = match Netns::open(&netns) {
            Ok(ns) => fd_ident(ns.fd()),
            Err(e) => return self.reply(cid, &Reply::error(&e)),
        };
        if let Some(i) = self.find(&req.id) {
            let e = &mut self.leases[i];
            if e.ns_ident == ident && e.ifname == req.ifname && e.lost.is_none() {
                if e.held() {
                    let r = result_reply(e);
                    return self.reply(cid, &r);
                }
                return e.waiters.push(cid);
            }
            // Another attachment under the same name, or a lost lease: start over.
            self.remove(i, "replaced by a new ADD", true);
        }
        let mut e = self.entry(req, netns, ident, Client::new([0; 6], now, now + self.o.timeout));
        e.waiters.push(cid);
        if let Err(err) = e.open(true) {
            let err = err.context(format_args!("DHCP on {} in {}", e.ifname, e.netns));
            return self.reply(cid, &Reply::error(&err));
        }
        log(format_args!("{}: acquiring a lease on {} in {}", e.id, e.ifname, e.netns));
        self.leases.push(e);
    }

    /// A lease record for the ADD `req` (the client identifier is type 0 and the id).
    fn entry(&self, req: Request, netns: String, ns_ident: (u64, u64), client: Client) -> Entry {
        let mut client_id = vec![0u8];
        client_id.extend_from_slice(req.id.as_bytes());
        Entry {
            params: Params {
                client_id,
                request: req.request,
                provide: req.provide.into_iter().map(|(c, v)| (c, v.into_bytes())).collect(),
                broadcast: self.o.broadcast,
                resend_max: self.o.resend_max,
            },
            id: req.id,
            network: req.network,
            netns,
            ns_ident,
            ifname: req.ifname,
            client,
            sock: None,
            waiters: Vec::new(),
            lost: None,
        }
    }

    /// Drop lease `i`, releasing it first when asked and it is held.
    fn remove(&mut self, i: usize, why: &str, release: bool) {
        let mut e = self.leases.remove(i);
        if release && e.held() {
            let sent = (|| {
                if e.sock.is_none() {
                    e.open(false)?;
                }
                let out = e.client.release(&e.params).ok_or_else(|| Error::msg("no lease"))?;
                e.sock.as_ref().map(|s| s.send(&out.frame, out.dst_mac)).unwrap_or(Ok(()))
            })();
            match sent {
                Ok(()) => log(format_args!(
                    "{}: {why}: {}",
                    e.id,
                    e.client.lease.as_ref().map(|l| l.addr().to_string()).unwrap_or_default()
                )),
                Err(err) => log(format_args!("{}: {why}, but no DHCPRELEASE could be sent: {err}", e.id)),
            }
        } else {
            log(format_args!("{}: {why}", e.id));
        }
        let err = Error::new(code::TRY_AGAIN_LATER, format!("DHCP lease of {}: {why}", e.id));
        for w in std::mem::take(&mut e.waiters) {
            self.reply(w, &Reply::error(&err));
        }
        self.save();
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

    fn event(&mut self, i: usize, ev: Event) {
        let e = &mut self.leases[i];
        match ev {
            Event::Nothing => return,
            Event::Bound => {
                e.sock = None;
                log(format_args!("{}: lease {}", e.id, e.lease_text()));
                let r = result_reply(e);
                if r.code != 0 {
                    let why = r.msg;
                    return self.remove(i, &why, true);
                }
                // On disk before ADD hears of it: a daemon killed right after still knows the lease.
                let waiters = std::mem::take(&mut e.waiters);
                self.save();
                for w in waiters {
                    self.reply(w, &r);
                }
                return;
            }
            Event::Renewed => {
                e.sock = None;
                log(format_args!("{}: renewed {}", e.id, e.lease_text()));
            }
            Event::Failed(why) => {
                let err = Error::new(
                    code::TRY_AGAIN_LATER,
                    format!("no DHCP lease for {} on {} within {}s: {why}", e.id, e.ifname, self.o.timeout / 1000),
                );
                log(&err);
                for w in std::mem::take(&mut e.waiters) {
                    self.reply(w, &Reply::error(&err));
                }
                self.leases.remove(i);
                return;
            }
            Event::Lost(why) => {
                // As the reference does: the address may now be someone
                // else's, so the interface stops using it.
                e.sock = None;
                let addr = e.client.lease.as_ref().map(|l| l.addr().to_string()).unwrap_or_default();
                log(format_args!("{}: lease {addr} lost: {why}; setting {} down", e.id, e.ifname));
                let ifname = e.ifname.clone();
                let down = e.in_netns(|rt| match rt.link_by_name(&ifname)? {
                    Some(l) => rt.set_up(l.index, &ifname, false),
                    None => Ok(()),
                });
                if let Err(err) = down {
                    log(format_args!("{}: {err}", e.id));
                }
                e.lost = Some(why);
            }
        }
        self.save();
    }

    /// Write every held lease to the state file (atomically).
    fn save(&self) {
        let (now, wall) = (now_ms(), epoch_ms());
        let saved: Vec<Saved> = self
            .leases
            .iter()
            .filter(|e| e.held())
            .filter_map(|e| {
                let l = e.client.lease.as_ref()?;
                let p = &e.params;
                let add = Request {
                    op: "add".into(),
                    id: e.id.clone(),
                    network: e.network.clone(),
                    netns: e.netns.clone(),
                    ifname: e.ifname.clone(),
                    request: p.request.clone(),
                    provide: p.provide.iter().map(|(c, v)| (*c, String::from_utf8_lossy(v).into_owned())).collect(),
                    keep: Vec::new(),
                };
                let blob = [&e.client.mac[..], &l.server_mac, &l.ack.encode()].concat();
                let start = wall.saturating_sub(now.saturating_sub(l.start));
                Some(Saved { add, dev: e.ns_ident.0, ino: e.ns_ident.1, start, lease: hex(&blob) })
            })
            .collect();
        let mut w = JsonWriter::new();
        w.begin_array();
        for s in &saved {
            s.write_json(&mut w);
        }
        w.end_array();
        if let Err(e) = crate::sys::file::write_atomic(Path::new(&self.state_file), w.finish().as_bytes(), 0o600) {
            log(format_args!("cannot save leases: {e}"));
        }
    }

    /// Take back the leases a previous daemon held, where their namespace is still there.
    fn restore(&mut self) {
        let Ok(data) = std::fs::read(&self.state_file) else { return };
        let saved: Vec<Saved> = match crate::cni::config::parse(&data, "saved leases") {
            Ok(s) => s,
            Err(e) => return log(format_args!("ignoring unreadable {}: {}", self.state_file, e.msg)),
        };
        let (now, wall) = (now_ms(), epoch_ms());
        for s in saved {
            let ns = (s.dev, s.ino);
            if path_ident(&s.add.netns) != Some(ns) {
                log(format_args!("{}: network namespace {} is gone: lease dropped", s.add.id, s.add.netns));
                continue;
            }
            let blob = unhex(&s.lease).unwrap_or_default();
            let Some(ack) = blob.get(12..).and_then(Message::decode) else { continue };
            let mac: [u8; 6] = blob[..6].try_into().unwrap_or_default();
            let server_mac: [u8; 6] = blob[6..12].try_into().unwrap_or_default();
            let lease = Lease { ack, server_mac, start: now.saturating_sub(wall.saturating_sub(s.start)) };
            let netns = s.add.netns.clone();
            let e = self.entry(s.add, netns, ns, Client::bound(mac, lease));
            log(format_args!("{}: restored lease {}", e.id, e.lease_text()));
            self.leases.push(e);
        }
        self.save();
    }
}

fn result_reply(e: &Entry) -> Reply {
    match e.client.lease.as_ref().map(Lease::result) {
        Some(Ok(r)) => Reply::ok(Some(r)),
        Some(Err(err)) => Reply::error(&err),
        None => Reply::error(&Error::msg(format!("no DHCP lease is held for {}", e.id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn go_style_flags() {
        let o = parse_args(&args("-socketpath /tmp/x.sock --pidfile=/tmp/p -broadcast -timeout 3s -resendmax=1m30s"))
            .unwrap();
        assert_eq!(
            (o.socket.as_str(), o.pidfile.as_str(), o.broadcast, o.timeout, o.resend_max),
            ("/tmp/x.sock", "/tmp/p", true, 3000, 90_000)
        );
        let o = parse_args(&[]).unwrap();
        assert_eq!(
            (o.socket.as_str(), o.timeout, o.resend_max, o.broadcast),
            ("/run/cni/dhcp.sock", 10_000, 62_000, false)
        );
        assert!(!parse_args(&args("-broadcast=false")).unwrap().broadcast);
        assert_eq!(parse_args(&args("-nope 1")).err().unwrap(), "flag provided but not defined: -nope");
        assert_eq!(parse_args(&args("-nope")).err().unwrap(), "flag provided but not defined: -nope");
        assert_eq!(parse_args(&args("-timeout")).err().unwrap(), "flag needs an argument: -timeout");
        assert_eq!(parse_args(&args("stray")).err().unwrap(), "unexpected argument \"stray\"");
        assert_eq!(parse_args(&args("-h")).err().unwrap(), "");
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration("10s"), Ok(10_000));
        assert_eq!(duration("1.5s"), Ok(1500));
        assert_eq!(duration("250ms"), Ok(250));
        assert_eq!(duration("1h2m3s"), Ok(3_723_000));
        assert_eq!(duration("0"), Ok(0));
        assert_eq!(duration(".5m"), Ok(30_000));
        for bad in ["", "10", "s", "1x", "1.2.3s", "-1s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filter_jumps_land_on_the_returns() {
        // every conditional jump's targets are inside the program and the
        // drop branches all reach the final `ret #0`
        for (pc, &(code, jt, jf, _)) in FILTER.iter().enumerate() {
            if code & 0x07 == 0x05 {
                assert!(pc + 1 + jt as usize <= 8 && pc + 1 + jf as usize <= 8);
            }
        }
        assert_eq!(FILTER[1].2 as usize + 2, 8);
        assert_eq!(FILTER[3].1 as usize + 4, 8);
        assert_eq!(FILTER[6].2 as usize + 7, 8);
        assert_eq!(FILTER[8], (0x06, 0, 0, 0));
    }
}
