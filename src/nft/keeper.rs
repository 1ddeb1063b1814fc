//! The socket keeper: one NETLINK_NETFILTER socket per network namespace,
//! kept open by a small process and borrowed by one cnibox call at a time,
//! so that in steady state no plugin call releases a netfilter socket.
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
//! - A call that finds no keeper opens its own socket as before and, when
//!   done, leaves it to a new keeper (`sys::daemon`): the socket at
//!   descriptor 3, listening on an abstract unix name, which belongs to the
//!   network namespace as the socket does. The keeper is listening before
//!   that call returns, so the next call finds it.
//! - Later calls take a copy of the keeper's descriptor 3 (pidfd_getfd). The
//!   keeper does nothing for that and is not even woken. Handing the socket
//!   over in a message (SCM_RIGHTS, the first version) needed the keeper
//!   woken and scheduled for each call: a median 80 µs to borrow and 30 to
//!   give back here, against 45 and 10 now, lock included. The unix name
//!   only says who the keeper is (SO_PEERCRED: pid and user of the process
//!   that listens) and that it is still alive (a connection waiting in its
//!   backlog hangs up when the listener closes).
//! - Only a call holding `lock()` borrows: a flock on the network namespace
//!   itself, so the socket has one user at a time whatever mount namespace
//!   (and /run) each caller sees. The kernel drops the lock of a borrower
//!   that dies.
//! - The keeper must be of our own user (a name squatted by another user is
//!   not trusted), what we take must be a NETLINK_NETFILTER socket, and only
//!   who may ptrace the keeper can take anything from it (the kernel's
//!   check; the keeper waives Yama's "ancestors only" rule, which would
//!   otherwise demand CAP_SYS_PTRACE, but nothing else).
//! - A borrower may find replies an earlier borrower never read (killed
//!   mid-way): `Socket::discard_queued` drops them, and random sequence
//!   numbers per process keep anything later from matching ours.
//! - While it lives, the keeper also keeps conntrack switched on in its
//!   namespace: its own table (`HOLD`) holds one conntrack expression in a
//!   chain no packet passes through. It creates the table when it starts
//!   (taking over one a killed keeper left) and deletes it when it leaves.
//!   (Not a table flagged "owner", which the kernel would delete with the
//!   socket: with one in the ruleset, nft 1.0.6, Debian 12's, intermittently
//!   prints an empty ruleset as JSON.) Without it, the masquerade or port mapping rule of the only
//!   pod on a node is the namespace's first conntrack user, and the kernel
//!   switches conntrack on for it, walking its whole hash table once per
//!   family (0.3-0.5 ms of that ADD), and off again at the DEL of the last
//!   one. A node with pods, or kube-proxy, has conntrack on anyway.
//! - The keeper wakes every TICK to accept (and close) the connections made
//!   since; after IDLE without any it takes the lock, so that no one is
//!   borrowing, and exits. By then nothing is left to free, so its own
//!   release is cheap.

use super::expr::{Data, Expr, CT_ESTABLISHED_RELATED, NFT_CMP_NEQ, NFT_CT_STATE};
use super::{Batch, Table, NFPROTO_INET};
use crate::netlink::Socket;
use crate::sys::file::FileLock;
use crate::sys::pidfd::Pidfd;
use crate::sys::unix;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The abstract unix name (no leading NUL here) a keeper listens on.
const NAME: &[u8] = b"cnibox/nftables-keeper";

/// Where the keeper holds the socket (`sys::daemon` puts it there).
const SOCKET_FD: RawFd = 3;

/// How long a keeper waits for the next borrower. Long enough to span a
/// runtime's plugin chain and a burst of pod starts or deletions (calls
/// milliseconds to seconds apart); short enough that an idle node has no
/// lingering process and a deleted namespace is not kept alive for long.
/// Expiring costs little either way: the next call opens a socket and
/// starts a new keeper, which is what every call did before.
const IDLE: Duration = Duration::from_secs(10);

/// How often the keeper empties its backlog. Connections are not accepted
/// as they come (that would wake the keeper for every call): the backlog
/// holds them until then, and a call that finds it full opens its own socket.
const TICK: Duration = Duration::from_secs(1);
const BACKLOG: i32 = 4096;

/// The keeper's own table (see the module's why). `inet`: both families.
pub const HOLD: Table = Table { family: NFPROTO_INET, name: "cnibox_keeper" };
const HOLD_CHAIN: &str = "conntrack";
const HOLD_COMMENT: &str = "cnibox-keeper keeps conntrack on while it runs and deletes this table when it leaves";

/// The network namespace we are in, as a file to lock.
const NETNS: &str = "/proc/thread-self/ns/net";

/// The turn to use the namespace's netfilter socket: None when the lock
/// cannot be had (no /proc), and then nothing may be borrowed.
pub fn lock() -> Option<FileLock> {
    FileLock::existing(Path::new(NETNS)).ok()
}

/// A borrowed socket's keeper.
pub struct Loan {
    keeper: Pidfd,
}

impl Loan {
    /// End the keeper: its socket misbehaves (a dump stuck half done, which
    /// would refuse every later borrower's dumps). Close our copy first.
    pub fn retire(self) {
        let _ = self.keeper.signal(libc::SIGTERM);
    }
}

/// Borrow the keeper's socket, with nothing left queued on it; None when
/// there is no keeper here or it is not one to trust. Only while holding
/// `lock()`.
pub fn borrow() -> Option<(Socket, Loan)> {
    let conn = unix::connect_abstract(NAME).ok()?;
    let (pid, uid) = unix::peer(&conn).ok()?;
    // SAFETY: geteuid cannot fail.
    if uid != unsafe { libc::geteuid() } {
        return None;
    }
    let keeper = Pidfd::open(pid).ok()?;
    // Our connection still waits in the listener's backlog, so the listener,
    // which only the keeper holds, is open: the keeper lived throughout, and
    // `pid` could not have been reused for another process.
    if unix::hung_up(&conn) {
        return None;
    }
    let fd = keeper.take(SOCKET_FD).ok()?;
    if unix::socket_kind(&fd).ok()? != (libc::AF_NETLINK, super::NETLINK_NETFILTER) {
        return None;
    }
    let mut sock = Socket::from_fd(fd).ok()?;
    sock.discard_queued().ok()?;
    Some((sock, Loan { keeper }))
}

/// Hand a socket this process opened, and is done with, to a new keeper.
/// When there is one already (or one cannot be started) the socket is
/// closed by a detached child instead, as its release may wait.
pub fn keep(sock: OwnedFd) {
    // The name belongs to the current namespace: only a socket of this
    // namespace may be kept under it.
    let same = match (crate::sys::netns::Netns::of_socket(sock.as_raw_fd()), crate::sys::netns::Netns::current()) {
        (Ok(a), Ok(b)) => a.same_as(&b).unwrap_or(false),
        _ => false,
    };
    // Someone listens already (a keeper we could not borrow from, or a
    // squatter): a new keeper could not take the name, so do not fork one.
    let taken = || unix::connect_abstract(NAME).is_ok();
    if !same || taken() || !crate::sys::daemon(c"cnibox-keeper", &[sock.as_raw_fd()], start, serve) {
        crate::sys::close_detached(sock);
    }
    // Otherwise the keeper holds the socket; closing this copy releases nothing.
}

/// In the new keeper: listen (as itself, so that borrowers see its pid), and
/// let borrowers of our user take its socket even under Yama's
/// ptrace_scope 1. None when the name is taken: another keeper was quicker.
fn start() -> Option<OwnedFd> {
    const PR_SET_PTRACER: i32 = 0x5961_6d61;
    const PR_SET_PTRACER_ANY: libc::c_ulong = libc::c_ulong::MAX;
    // SAFETY: prctl with plain integer arguments; EINVAL without Yama is fine.
    unsafe { libc::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) };
    // The caller holds the namespace's lock until we answer: the socket is ours alone.
    hold_conntrack();
    unix::listen_abstract(NAME, BACKLOG).ok()
}

/// The kept socket, through a duplicate descriptor (closing it releases nothing).
fn kept_socket() -> Option<Socket> {
    // SAFETY: SOCKET_FD is the kept socket (`sys::daemon` put it there).
    let dup = unsafe { libc::fcntl(SOCKET_FD, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return None;
    }
    // SAFETY: `dup` is a fresh descriptor owned by nothing else.
    Socket::from_fd(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) }).ok()
}

/// Create `HOLD`, or take over the one a killed keeper left: emptied and
/// filled again. Best effort: without it the keeper still does its main job.
fn hold_conntrack() {
    let Some(mut sock) = kept_socket() else { return };
    let mut b = Batch::new();
    b.add_table(&HOLD, HOLD_COMMENT);
    b.add_chain(&HOLD, HOLD_CHAIN, None, "");
    b.flush_chain(&HOLD, HOLD_CHAIN);
    // `ct state established,related`, without a verdict: it only has to exist.
    let ct = [
        Expr::Ct(NFT_CT_STATE),
        Expr::Bitwise(Data::new(&CT_ESTABLISHED_RELATED.to_ne_bytes())),
        Expr::Cmp(NFT_CMP_NEQ, Data::new(&[0; 4])),
    ];
    b.add_rule(&HOLD, HOLD_CHAIN, &ct, b"");
    let _ = b.send_on(&mut sock, 0);
}

/// Delete `HOLD` (holding the lock: no borrower is using the socket).
fn release_conntrack() {
    let Some(mut sock) = kept_socket() else { return };
    let mut b = Batch::new();
    b.del_table(&HOLD);
    let _ = b.send_on(&mut sock, 0);
}

/// The keeper's life: every TICK, accept and close the connections made
/// since; after IDLE without one, leave, taking the lock first so that no
/// borrower is between finding the keeper and taking its socket.
fn serve(listener: OwnedFd) {
    let mut last = Instant::now();
    loop {
        // SAFETY: poll on no descriptors is a sleep.
        unsafe { libc::poll(std::ptr::null_mut(), 0, TICK.as_millis() as i32) };
        if drain(&listener) > 0 {
            last = Instant::now();
        }
        if last.elapsed() < IDLE {
            continue;
        }
        let _turn = match FileLock::try_existing(Path::new(NETNS)) {
            Err(e) if e.is_errno(libc::EWOULDBLOCK) => continue, // a borrower is in
            turn => turn,
        };
        if drain(&listener) > 0 {
            last = Instant::now();
            continue;
        }
        // The name goes before the lock: a caller waiting for the lock finds
        // no keeper and starts another. The socket goes when we exit.
        release_conntrack();
        drop(listener);
        return;
    }
}

/// Accept and close every connection waiting; how many there were.
fn drain(listener: &OwnedFd) -> usize {
    let mut n = 0;
    while unix::accept(listener).is_ok() {
        n += 1;
    }
    n
}
