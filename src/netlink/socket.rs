//! A blocking netlink socket bound to the namespace it was opened in.

use super::{Msg, MsgBuf, Msgs, Spare, MSG_SPARE, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_MULTI};
use crate::error::{Error, Result};
use crate::sys::netlink as raw;
use crate::sys::netns::Netns;
use std::fmt::Display;
use std::os::fd::OwnedFd;
use std::time::Duration;

const RECV_BUF: usize = 64 * 1024;
const DUMP_RETRIES: usize = 5;

/// One receive buffer for every socket, lent to each receive: a buffer per
/// socket cost each an mmap and a munmap of 68 KiB (musl serves allocations
/// this large from mappings of their own) and the page faults of touching
/// it. A receive that finds it lent (a callback receiving on another socket,
/// another thread) makes one of its own.
static RECV_SPARE: Spare = Spare::new();

/// The receive buffer, `RECV_BUF` long; give it back with [`give_back`].
fn borrow_buf() -> Vec<u8> {
    let b = RECV_SPARE.take();
    if b.len() == RECV_BUF {
        b
    } else {
        vec![0; RECV_BUF]
    }
}

fn give_back(b: Vec<u8>) {
    RECV_SPARE.give(b);
}

/// Send a finished request and keep its buffer for the next one.
fn send_msg(sock: &Socket, msg: MsgBuf, seq: u32) -> Result<()> {
    let bytes = msg.finish(seq);
    let r = sock.send(&bytes);
    MSG_SPARE.give(bytes);
    r
}

/// How long a receive waits for the kernel. The kernel answers a request
/// while it is being sent (a dump: as each part is read), so a healthy
/// socket never comes near this; it bounds what a wedged one could cost.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);

pub struct Socket {
    fd: OwnedFd,
    port: u32,
    seq: u32,
}

impl Socket {
    /// Open a socket of `proto` (NETLINK_ROUTE, NETLINK_NETFILTER) in the current namespace.
    pub fn open(proto: i32) -> Result<Socket> {
        Socket::open_groups(proto, 0)
    }

    /// Open a socket subscribed to the multicast `groups` (a bit mask), to watch for changes.
    pub fn open_groups(proto: i32, groups: u32) -> Result<Socket> {
        Socket::from_fd(raw::open(proto, groups)?)
    }

    /// Use a netlink socket that is already bound. Its sequence numbers start
    /// at a random point, so that nothing queued before (a socket handed
    /// over by another process) can match ours. An unbound socket (port id
    /// 0) is refused: it could receive nothing the kernel sends us.
    pub fn from_fd(fd: OwnedFd) -> Result<Socket> {
        let port = raw::port_id(&fd)?;
        if port == 0 {
            return Err(Error::msg("netlink socket is not bound"));
        }
        raw::set_recv_timeout(&fd, REPLY_DEADLINE)?;
        let mut seed = [0u8; 4];
        crate::sys::random_bytes(&mut seed);
        Ok(Socket { fd, port, seq: u32::from_ne_bytes(seed) })
    }

    /// Open a socket that lives in `ns`; it keeps talking to `ns` after we leave.
    pub fn open_in(proto: i32, ns: &Netns) -> Result<Socket> {
        ns.run(|| Socket::open(proto))
    }

    /// Make room for one datagram of `bytes` (a large nftables batch): the
    /// default send buffer takes about 200 KB.
    pub fn reserve_send(&self, bytes: usize) {
        raw::reserve_send(&self.fd, bytes)
    }

    /// The descriptor, for a caller that decides how it is closed.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    pub fn send(&self, bytes: &[u8]) -> Result<()> {
        raw::send(&self.fd, bytes).map_err(|e| Error::os("send netlink message", e))
    }

    /// Feed every message addressed to us to `f` until it says it is done.
    /// Each datagram must come within `REPLY_DEADLINE`; `what` names the
    /// operation in the error when it does not.
    pub fn recv_until(&mut self, what: &dyn Display, f: impl FnMut(&Msg) -> Result<bool>) -> Result<()> {
        let mut buf = borrow_buf();
        let r = self.recv_into(&mut buf, what, f);
        give_back(buf);
        r
    }

    fn recv_into(&self, buf: &mut [u8], what: &dyn Display, mut f: impl FnMut(&Msg) -> Result<bool>) -> Result<()> {
        loop {
            let n = match raw::recv(&self.fd, buf, true) {
                Ok(n) => n,
                Err(libc::EAGAIN) => {
                    let secs = REPLY_DEADLINE.as_secs();
                    let mut e = Error::new(
                        crate::error::code::TRY_AGAIN_LATER,
                        format!("{what}: no reply from the kernel within {secs} s"),
                    );
                    e.errno = libc::ETIMEDOUT;
                    return Err(e);
                }
                Err(e) => return Err(Error::os(format_args!("{what}: receive netlink reply"), e)),
            };
            if n > buf.len() {
                return Err(Error::msg(format!("{what}: netlink reply of {n} bytes truncated")));
            }
            let mut result = Ok(false);
            for m in Msgs::new(&buf[..n]) {
                if m.pid != self.port && m.pid != 0 {
                    continue;
                }
                match f(&m) {
                    Ok(false) => {}
                    other => {
                        result = other;
                        break;
                    }
                }
            }
            if result? {
                return Ok(());
            }
        }
    }

    /// Wait up to `timeout_ms` for something to read; false on timeout.
    pub fn wait_readable(&self, timeout_ms: i32) -> Result<bool> {
        raw::wait_readable(&self.fd, timeout_ms)
    }

    /// Read every datagram already queued, without blocking. A notification
    /// queue that overflowed (ENOBUFS) is not an error for a watcher: it re-checks.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> Result<()> {
        let mut buf = borrow_buf();
        let r = loop {
            match raw::recv(&self.fd, &mut buf, false) {
                Ok(n) => f(&buf[..n.min(buf.len())]),
                Err(libc::EAGAIN | libc::ENOBUFS) => break Ok(()),
                Err(e) => break Err(Error::os("read netlink notifications", e)),
            }
        };
        give_back(buf);
        r
    }

    /// Send one request and wait for its ACK. `what` names the operation and
    /// object for the error ("create veth vethab12", "add 10.1.0.5/16 to eth0").
    pub fn request(&mut self, msg: MsgBuf, what: impl Display) -> Result<()> {
        // The failpoints build names the step by what it does (the crash walk prints it).
        #[cfg(feature = "failpoints")]
        crate::failpoint::hit(&format!("netlink: {what}"))?;
        #[cfg(not(feature = "failpoints"))]
        crate::failpoint::hit("netlink request")?;
        self.transact(msg, &what, &mut |_| Ok(()))
    }

    /// Send a request and collect the single reply message it produces (a GET).
    pub fn get(&mut self, msg: MsgBuf, what: impl Display) -> Result<Vec<u8>> {
        self.get_with(msg, what, <[u8]>::to_vec).map(Option::unwrap_or_default)
    }

    /// [`Socket::get`], reading the reply's payload with `read` where it
    /// was received (None when the kernel sent no reply message).
    pub fn get_with<T>(&mut self, msg: MsgBuf, what: impl Display, read: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        let mut read = Some(read);
        let mut out = None;
        self.get_dyn(msg, &what, &mut |p| {
            if let Some(r) = read.take() {
                out = Some(r(p));
            }
        })?;
        Ok(out)
    }

    /// The one body of every `get_with`.
    fn get_dyn(&mut self, msg: MsgBuf, what: &dyn Display, read: &mut dyn FnMut(&[u8])) -> Result<()> {
        self.transact(msg, what, &mut |m| {
            read(m.payload);
            Ok(())
        })
    }

    /// One body for every request and GET, whatever the closures and the
    /// `what` of the caller (one copy of the code instead of one per caller).
    fn transact(
        &mut self,
        msg: MsgBuf,
        what: &dyn Display,
        on_reply: &mut dyn FnMut(&Msg) -> Result<()>,
    ) -> Result<()> {
        msg.check(what)?;
        let seq = self.next_seq();
        let flags = msg.flags();
        send_msg(self, msg, seq)?;
        let want_ack = flags & NLM_F_ACK != 0;
        self.recv_until(what, |m| {
            if m.seq != seq {
                return Ok(false);
            }
            match m.ty {
                NLMSG_ERROR => {
                    let code = m.error_code();
                    if code != 0 {
                        return Err(kernel_error(what, m));
                    }
                    Ok(true)
                }
                NLMSG_DONE => Ok(true),
                _ => {
                    on_reply(m)?;
                    Ok(!want_ack)
                }
            }
        })
    }

    /// Run a dump and return each reply message's payload. A dump the kernel
    /// marks as interrupted (the table changed under it) is repeated.
    pub fn dump(&mut self, msg: MsgBuf, what: impl Display) -> Result<Vec<Vec<u8>>> {
        msg.check(&what)?;
        for _ in 0..DUMP_RETRIES {
            let seq = self.next_seq();
            send_msg(self, msg.clone(), seq)?;
            let mut out = Vec::new();
            let mut intr = false;
            self.recv_until(&what, |m| {
                if m.seq != seq {
                    return Ok(false);
                }
                intr |= m.flags & NLM_F_DUMP_INTR != 0;
                match m.ty {
                    NLMSG_DONE => {
                        let c = m.error_code();
                        if c < 0 && m.payload.len() >= 4 {
                            return Err(kernel_error(&what, m));
                        }
                        Ok(true)
                    }
                    NLMSG_ERROR => {
                        if m.error_code() != 0 {
                            return Err(kernel_error(&what, m));
                        }
                        Ok(true)
                    }
                    _ => {
                        out.push(m.payload.to_vec());
                        Ok(m.flags & NLM_F_MULTI == 0)
                    }
                }
            })?;
            if !intr {
                return Ok(out);
            }
        }
        Err(Error::os(format_args!("{what}: dump kept being interrupted"), libc::EINTR))
    }
}

/// Turn an NLMSG_ERROR into an Error carrying the errno and the kernel's own words.
pub fn kernel_error(what: &dyn Display, m: &Msg) -> Error {
    let errno = -m.error_code();
    let mut e = Error::os(what, errno);
    if let Some(t) = m.ext_ack().filter(|t| !t.is_empty()) {
        e.msg.push_str(" (kernel: ");
        e.msg.push_str(t);
        e.msg.push(')');
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtnl::link::{get_by_name_msg, Link};

    /// Read-only requests about `lo` of the test's own namespace.
    #[test]
    fn a_receive_inside_a_receive_gets_a_buffer_of_its_own() {
        let mut a = Socket::open(libc::NETLINK_ROUTE).unwrap();
        let mut b = Socket::open(libc::NETLINK_ROUTE).unwrap();
        let lo = a.get_with(get_by_name_msg("lo"), "look up lo", Link::parse).unwrap().flatten().unwrap();
        let seq = a.next_seq();
        a.send(&get_by_name_msg("lo").finish(seq)).unwrap();
        let mut inner = None;
        a.recv_until(&"look up lo", |m| {
            // `a` holds the shared buffer here; `b` must not get it.
            inner = b.get_with(get_by_name_msg("lo"), "look up lo again", Link::parse)?.flatten().map(|l| l.index);
            Ok(m.seq == seq && Link::parse(m.payload).map(|l| l.index) == Some(lo.index))
        })
        .unwrap();
        assert_eq!(inner, Some(lo.index));
        // and both come out whole for the next request
        let again = a.get_with(get_by_name_msg("lo"), "look up lo", Link::parse).unwrap().flatten();
        assert_eq!(again.map(|l| l.name), Some("lo".to_string()));
    }
}
