//! The plugins' connections: one request line in, one reply line out, then
//! closed. Nothing here ever blocks: the listener and every connection are
//! non-blocking, a connection must send its request within [`CONN_IDLE`],
//! and when [`MAX_CONNS`] are open the oldest one that has not sent its
//! request yet makes room for the newcomer. So no client, idle, slow or
//! many times over, delays the others.
//!
//! Only root may connect (the socket is 0600), but root without
//! CAP_NET_ADMIN is not the runtime: a peer is served only when it is root
//! in the daemon's user namespace and holds CAP_NET_ADMIN, as the kernel
//! recorded it at connect time (SO_PEERCRED) and /proc shows it. A peer in
//! another pid namespace (pid 0) cannot be looked at: its uid alone decides.

use super::super::client::{Ms, NEVER};
use super::super::rpc::{self, Reply, Request};
use crate::error::{code, Error};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

/// A connection must send its request line within this time.
pub const CONN_IDLE: Ms = 10_000;
/// Most connections open at once.
pub const MAX_CONNS: usize = 256;
/// Most connections accepted in one turn of the loop (the rest wait for the next turn).
const ACCEPT_BATCH: usize = 64;

struct Conn {
    id: u64,
    stream: UnixStream,
    buf: Vec<u8>,
    /// When an idle connection is dropped; NEVER once its request is being served.
    deadline: Ms,
}

#[derive(Default)]
pub struct Conns {
    list: Vec<Conn>,
    next_id: u64,
}

impl Conns {
    /// Take the connections waiting on `listener`; their ids.
    pub fn accept(&mut self, listener: &UnixListener, now: Ms) -> Vec<u64> {
        let mut new = Vec::new();
        for _ in 0..ACCEPT_BATCH {
            let Ok((stream, _)) = listener.accept() else { break };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if let Err(e) = trusted(&stream) {
                let _ = (&stream).write_all(&Reply::error(&e).to_line());
                continue;
            }
            if self.list.len() >= MAX_CONNS {
                // The oldest connection still silent goes; when every one is
                // being served, the newcomer is closed at once.
                let idle =
                    self.list.iter().enumerate().filter(|(_, c)| c.deadline != NEVER).min_by_key(|(_, c)| c.deadline);
                match idle.map(|(i, _)| i) {
                    Some(i) => drop(self.list.remove(i)),
                    None => continue,
                }
            }
            self.next_id += 1;
            self.list.push(Conn { id: self.next_id, stream, buf: Vec::new(), deadline: now + CONN_IDLE });
            new.push(self.next_id);
        }
        new
    }

    /// (id, descriptor) of every connection, for poll.
    pub fn fds(&self) -> impl Iterator<Item = (u64, RawFd)> + '_ {
        self.list.iter().map(|c| (c.id, c.stream.as_raw_fd()))
    }

    /// The earliest deadline of an idle connection.
    pub fn next_deadline(&self) -> Ms {
        self.list.iter().map(|c| c.deadline).min().unwrap_or(NEVER)
    }

    /// Close the connections that stayed silent too long.
    pub fn expire(&mut self, now: Ms) {
        self.list.retain(|c| c.deadline > now);
    }

    /// Read what connection `id` sent: its request once a whole line is
    /// there (the connection then waits for its reply), or an error reply to send.
    pub fn read(&mut self, id: u64, buf: &mut [u8]) -> Option<Result<Request, Error>> {
        let i = self.list.iter().position(|c| c.id == id)?;
        let c = &mut self.list[i];
        let n = match c.stream.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return None,
            Err(_) => 0,
        };
        if n == 0 {
            // The plugin went away (maybe killed mid-request): forget the
            // connection; the work it asked for goes on.
            self.list.remove(i);
            return None;
        }
        if c.deadline == NEVER {
            return None; // a request is already in progress; extra bytes are ignored
        }
        c.buf.extend_from_slice(&buf[..n]);
        let Some(end) = c.buf.iter().position(|&b| b == b'\n') else {
            if c.buf.len() > rpc::MAX_LINE {
                return Some(Err(Error::new(code::DECODING, "DHCP daemon request line too long")));
            }
            return None;
        };
        let line: Vec<u8> = c.buf.drain(..=end).collect();
        c.deadline = NEVER;
        Some(crate::cni::config::parse::<Request>(&line, "invalid DHCP daemon request"))
    }

    /// Answer connection `id` and close it. The reply (a few hundred bytes)
    /// goes into an empty socket buffer; a peer that makes even that block loses it.
    pub fn reply(&mut self, id: u64, r: &Reply) {
        let Some(i) = self.list.iter().position(|c| c.id == id) else { return };
        let c = self.list.remove(i);
        let _ = (&c.stream).write_all(&r.to_line());
    }
}

/// Whether the process at the other end of `stream` may use the daemon.
fn trusted(stream: &UnixStream) -> Result<(), Error> {
    let fd = stream.try_clone().map(OwnedFd::from).map_err(|e| Error::msg(format!("DHCP daemon connection: {e}")))?;
    let (pid, uid) = crate::sys::unix::peer(&fd)?;
    let refuse =
        |why: String| Err(Error::msg(format!("DHCP daemon: refusing a request from pid {pid} (uid {uid}): {why}")));
    if uid != crate::sys::process::euid() && uid != 0 {
        return refuse("not root".into());
    }
    if pid == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caps =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    if caps.is_none_or(|c| c & (1 << CAP_NET_ADMIN) == 0) {
        return refuse("it does not hold CAP_NET_ADMIN".into());
    }
    let userns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    if userns(&pid.to_string()) != userns("self") {
        return refuse("it is in another user namespace".into());
    }
    Ok(())
}

const CAP_NET_ADMIN: u32 = 12;
