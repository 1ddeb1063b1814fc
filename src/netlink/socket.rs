//! A blocking netlink socket bound to the namespace it was opened in.

use super::{Msg, MsgBuf, Msgs, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_MULTI};
use crate::error::{Error, Result};
use crate::sys::netns::Netns;
use std::fmt::Display;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SOL_NETLINK: i32 = 270;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;
const RECV_BUF: usize = 64 * 1024;
const DUMP_RETRIES: usize = 5;

pub struct Socket {
    fd: OwnedFd,
    port: u32,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// Open a socket of `proto` (NETLINK_ROUTE, NETLINK_NETFILTER) in the current namespace.
    pub fn open(proto: i32) -> Result<Socket> {
        Socket::open_groups(proto, 0)
    }

    /// Open a socket subscribed to the multicast `groups` (a bit mask), to watch for changes.
    pub fn open_groups(proto: i32, groups: u32) -> Result<Socket> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(Error::last_os("open netlink socket"));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for opt in [NETLINK_CAP_ACK, NETLINK_EXT_ACK] {
            let one: i32 = 1;
            // SAFETY: valid fd, option value points at an i32. Failure only loses
            // error detail on old kernels, so it is ignored.
            unsafe {
                libc::setsockopt(fd.as_raw_fd(), SOL_NETLINK, opt, (&one as *const i32).cast(), 4);
            }
        }
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = groups;
        let sl = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: sa is a valid sockaddr_nl of length sl.
        if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_nl).cast(), sl) } != 0 {
            return Err(Error::last_os("bind netlink socket"));
        }
        Socket::from_fd(fd)
    }

    /// Use a netlink socket that is already bound, possibly one other
    /// processes used before (see nft::keeper). Its sequence numbers start
    /// at a random point, so replies meant for an earlier user, which carry
    /// that user's numbers, do not match ours.
    pub fn from_fd(fd: OwnedFd) -> Result<Socket> {
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: out-parameters sized as declared.
        if unsafe { libc::getsockname(fd.as_raw_fd(), (&mut sa as *mut libc::sockaddr_nl).cast(), &mut len) } != 0 {
            return Err(Error::last_os("getsockname netlink"));
        }
        let mut seed = [0u8; 4];
        crate::sys::random_bytes(&mut seed);
        Ok(Socket { fd, port: sa.nl_pid, seq: u32::from_ne_bytes(seed), buf: vec![0; RECV_BUF] })
    }

    /// Open a socket that lives in `ns`; it keeps talking to `ns` after we leave.
    pub fn open_in(proto: i32, ns: &Netns) -> Result<Socket> {
        ns.run(|| Socket::open(proto))
    }

    /// Make room for one datagram of `bytes` (a large nftables batch): the
    /// default send buffer takes about 200 KB. SO_SNDBUFFORCE passes the
    /// system limit, which root may; SO_SNDBUF is the fallback.
    pub fn reserve_send(&self, bytes: usize) {
        let n = bytes.min(i32::MAX as usize / 2) as i32;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
            // SAFETY: valid fd, option value points at an i32.
            let r =
                unsafe { libc::setsockopt(self.fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&n as *const i32).cast(), 4) };
            if r == 0 {
                return;
            }
        }
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
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        loop {
            // SAFETY: bytes is a valid buffer; sa a valid kernel address.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    0,
                    (&sa as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as u32,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e != libc::EINTR {
                return Err(Error::os("send netlink message", e));
            }
        }
    }

    /// Feed every message addressed to us to `f` until it says it is done.
    pub fn recv_until(&mut self, mut f: impl FnMut(&Msg) -> Result<bool>) -> Result<()> {
        loop {
            // SAFETY: buf is valid for its length; MSG_TRUNC makes recv report the real size.
            let n = unsafe {
                libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_TRUNC)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if e == libc::EINTR {
                    continue;
                }
                return Err(Error::os("receive netlink reply", e));
            }
            let n = n as usize;
            if n > self.buf.len() {
                return Err(Error::msg(format!("netlink reply of {n} bytes truncated")));
            }
            let data = std::mem::take(&mut self.buf);
            let mut result = Ok(false);
            for m in Msgs::new(&data[..n]) {
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
            self.buf = data;
            if result? {
                return Ok(());
            }
        }
    }

    /// Wait up to `timeout_ms` for something to read; false on timeout.
    pub fn wait_readable(&self, timeout_ms: i32) -> Result<bool> {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
            if n >= 0 {
                return Ok(n > 0);
            }
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e != libc::EINTR {
                return Err(Error::os("poll netlink socket", e));
            }
        }
    }

    /// Read every datagram already queued, without blocking. A notification
    /// queue that overflowed (ENOBUFS) is not an error for a watcher: it re-checks.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> Result<()> {
        loop {
            // SAFETY: buf valid for its length.
            let n = unsafe {
                libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_DONTWAIT)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                return match e {
                    libc::EAGAIN | libc::ENOBUFS => Ok(()),
                    libc::EINTR => continue,
                    _ => Err(Error::os("read netlink notifications", e)),
                };
            }
            f(&self.buf[..(n as usize).min(self.buf.len())]);
        }
    }

    /// Throw away whatever is queued for this socket: replies an earlier user
    /// of a shared socket never read. Reading also lets the kernel finish a
    /// dump that user left half done (it produces the next part as each one
    /// is read), which would otherwise refuse our own dumps with EBUSY.
    pub fn discard_queued(&mut self) -> Result<()> {
        loop {
            // SAFETY: buf valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if n >= 0 {
                continue;
            }
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match e {
                libc::EAGAIN => return Ok(()),
                // ENOBUFS: an overflow was reported; what is left is still to be read.
                libc::EINTR | libc::ENOBUFS => continue,
                _ => return Err(Error::os("discard stale netlink replies", e)),
            }
        }
    }

    /// Send one request and wait for its ACK. `what` names the operation and
    /// object for the error ("create veth vethab12", "add 10.1.0.5/16 to eth0").
    pub fn request(&mut self, msg: MsgBuf, what: impl Display) -> Result<()> {
        // The failpoints build names the step by what it does (the crash walk prints it).
        #[cfg(feature = "failpoints")]
        crate::failpoint::hit(&format!("netlink: {what}"))?;
        #[cfg(not(feature = "failpoints"))]
        crate::failpoint::hit("netlink request")?;
        self.transact(msg, what, |_| Ok(())).map(|_| ())
    }

    /// Send a request and collect the single reply message it produces (a GET).
    pub fn get(&mut self, msg: MsgBuf, what: impl Display) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.transact(msg, what, |m| {
            out = m.payload.to_vec();
            Ok(())
        })?;
        Ok(out)
    }

    fn transact(
        &mut self,
        msg: MsgBuf,
        what: impl Display,
        mut on_reply: impl FnMut(&Msg) -> Result<()>,
    ) -> Result<()> {
        let seq = self.next_seq();
        let flags = msg.flags();
        self.send(&msg.finish(seq))?;
        let want_ack = flags & NLM_F_ACK != 0;
        self.recv_until(|m| {
            if m.seq != seq {
                return Ok(false);
            }
            match m.ty {
                NLMSG_ERROR => {
                    let code = m.error_code();
                    if code != 0 {
                        return Err(kernel_error(&what, m));
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
        for _ in 0..DUMP_RETRIES {
            let seq = self.next_seq();
            self.send(&msg.clone().finish(seq))?;
            let mut out = Vec::new();
            let mut intr = false;
            self.recv_until(|m| {
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
