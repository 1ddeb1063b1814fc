//! The socket keeper: one NETLINK_NETFILTER socket per network namespace,
//! kept open by a small daemon and lent to one cnibox call at a time, so
//! that in steady state no plugin call releases a netfilter socket.
//!
//! Why: when a bound NETLINK_NETFILTER socket is released (its last
//! descriptor closed), the kernel's netlink notifier for nf_tables
//! (`nft_rcv_nl_event` in net/netfilter/nf_tables_api.c, on NETLINK_URELEASE;
//! current kernels, 6.18 here) takes the namespace's commit mutex and
//! flushes the work that frees committed transactions, which first waits
//! for an RCU grace period. Any commit a few milliseconds earlier leaves that
//! work pending, so a release right after a commit holds the mutex for a
//! grace period, and the next commit in the namespace waits for it. Moving
//! the release to a detached child (`sys::close_detached`) only moved the
//! wait onto the next call: back to back, every bridge ipMasq ADD still paid
//! ~6 ms. A socket that is never released costs nothing, hence the keeper.
//!
//! How:
//! - The first call that finds no keeper opens its own socket as before and,
//!   when done, binds the keeper's abstract unix name (per network
//!   namespace, as the socket is) and leaves the socket with a daemon
//!   (`sys::daemon`) listening there. The name is bound before this call
//!   returns, so the next call finds it.
//! - Later calls connect, get a duplicate of the socket (SCM_RIGHTS), use it,
//!   close it, then close the connection: the keeper lends to one connection
//!   at a time and the loan ends when that connection closes, also when the
//!   borrower is killed. A connection arriving during a loan is closed
//!   without a socket, and that caller opens its own as before. So two
//!   processes never use the socket at once, with or without the nftables
//!   writer lock (readers such as CHECK listings do not take it).
//! - Both sides check the other's user (SO_PEERCRED): the socket is lent to
//!   the keeper's own user only, and a name squatted by another user is not
//!   trusted; the descriptor received must be a NETLINK_NETFILTER socket.
//! - A borrower may find replies an earlier borrower never read (killed
//!   mid-way): `Socket::discard_queued` drops them, and random sequence
//!   numbers per process keep anything later from matching ours.
//! - After IDLE with no loan the keeper exits. By then nothing is left to
//!   free, so its own release is cheap.

use crate::netlink::Socket;
use crate::sys::unix;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The abstract unix name (no leading NUL here) a keeper listens on.
const NAME: &[u8] = b"cnibox/nftables-keeper";

/// How long a keeper waits for the next borrower. Long enough to span a
/// runtime's plugin chain and a burst of pod starts or deletions (calls
/// milliseconds to seconds apart); short enough that an idle node has no
/// lingering process and a deleted namespace is not kept alive for long.
/// Expiring costs little either way: the next call opens a socket and
/// starts a new keeper, which is what every call did before.
const IDLE: Duration = Duration::from_secs(10);

/// What a borrower tells the keeper before hanging up: the socket misbehaved
/// (a dump stuck half done), stop lending it.
const RETIRE: u8 = b'R';

/// A borrowed socket's loan: the connection to the keeper. Dropping it
/// (after the socket's descriptor) ends the loan.
pub struct Loan {
    conn: OwnedFd,
}

impl Loan {
    /// Ask the keeper to stop lending its socket and exit once this loan ends.
    pub fn retire(self) {
        // SAFETY: one byte from a valid buffer; a failure only leaves the keeper running.
        unsafe { libc::send(self.conn.as_raw_fd(), [RETIRE].as_ptr().cast(), 1, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    }
}

/// Borrow the keeper's socket; None when there is no keeper here, it is
/// lending to someone else, or it is not one to trust. The socket comes with
/// nothing left queued.
pub fn borrow() -> Option<(Socket, Loan)> {
    let conn = unix::connect_abstract(NAME).ok()?;
    // SAFETY: geteuid cannot fail.
    if unix::peer_uid(&conn).ok()? != unsafe { libc::geteuid() } {
        return None;
    }
    // A keeper answers at once; a stopped one must not stall the plugin.
    unix::set_recv_timeout(&conn, 1000);
    let fd = unix::recv_fd(&conn).ok()??;
    if unix::socket_kind(&fd).ok()? != (libc::AF_NETLINK, super::NETLINK_NETFILTER) {
        return None;
    }
    let mut sock = Socket::from_fd(fd).ok()?;
    sock.discard_queued().ok()?;
    Some((sock, Loan { conn }))
}

/// Hand a socket this process opened, and is done with, to a new keeper.
/// When there is one already (or one cannot be started) the socket is
/// closed by a detached child instead, as its release may wait.
pub fn keep(sock: OwnedFd) {
    // The name belongs to the current namespace: only a socket of this
    // namespace may be served under it.
    let here = crate::sys::netns::Netns::current();
    let same = match (crate::sys::netns::Netns::of_socket(sock.as_raw_fd()), here) {
        (Ok(a), Ok(b)) => a.same_as(&b).unwrap_or(false),
        _ => false,
    };
    let listener = if same { unix::listen_abstract(NAME).ok() } else { None };
    let Some(listener) = listener else {
        crate::sys::close_detached(sock);
        return;
    };
    let keep = [sock.as_raw_fd(), listener.as_raw_fd()];
    let started = crate::sys::daemon(c"cnibox-keeper", &keep, || serve(&listener, &sock));
    drop(listener);
    if !started {
        crate::sys::close_detached(sock);
    }
    // Otherwise the daemon holds the socket; closing this copy releases nothing.
}

/// The keeper's loop: lend `sock` to one connection at a time, to the
/// keeper's own user only, until IDLE passes without a loan.
fn serve(listener: &OwnedFd, sock: &OwnedFd) {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut loan: Option<OwnedFd> = None;
    let mut retire = false;
    let mut idle_since = Instant::now();
    loop {
        let timeout = match &loan {
            Some(_) => -1,
            None => match IDLE.checked_sub(idle_since.elapsed()) {
                Some(left) => left.as_millis().min(i32::MAX as u128) as i32 + 1,
                None => return,
            },
        };
        let mut fds = [
            libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: loan.as_ref().map_or(-1, |c| c.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfds (a negative fd is ignored by poll).
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) } < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 {
            if let Some(c) = &loan {
                let mut b = [0u8; 16];
                // SAFETY: reading into a local buffer; the socket is readable or hung up.
                let n = unsafe { libc::recv(c.as_raw_fd(), b.as_mut_ptr().cast(), b.len(), libc::MSG_DONTWAIT) };
                retire |= n > 0 && b[..n as usize].contains(&RETIRE);
                if n == 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)) {
                    loan = None;
                    idle_since = Instant::now();
                    if retire {
                        return;
                    }
                }
            }
        }
        if fds[0].revents != 0 {
            let Ok(conn) = unix::accept(listener) else { continue };
            // A connection from another user, or during a loan, is closed
            // without a socket: that caller opens its own.
            if loan.is_none() && !retire && unix::peer_uid(&conn).ok() == Some(me) && unix::send_fd(&conn, sock).is_ok() {
                loan = Some(conn);
            }
        }
    }
}
