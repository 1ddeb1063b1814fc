//! The socket keeper: a small process per network namespace that collects
//! the NETLINK_NETFILTER sockets cnibox calls are done with and releases
//! them only when no call is running, so that no plugin call pays for a
//! socket's release.
//!
//! Why: when a bound NETLINK_NETFILTER socket is released (its last
//! descriptor closed), the kernel's netlink notifier for nf_tables
//! (`nft_rcv_nl_event` in net/netfilter/nf_tables_api.c, on NETLINK_URELEASE)
//! takes the namespace's commit mutex and flushes the work that frees
//! committed transactions, which first waits for an RCU grace period. Any
//! commit a few milliseconds earlier leaves that work pending, so a release
//! right after a commit holds the mutex for a grace period, and the next
//! commit in the namespace waits for it: back to back, every bridge ipMasq
//! ADD paid ~6 ms. Releasing later, in a detached child (`sys::close_detached`),
//! only moves the wait onto the next call.
//!
//! How:
//! - Every call opens a socket of its own (a socket and a bind: microseconds)
//!   and, when done, hands it to the keeper over the keeper's abstract unix
//!   name (`SCM_RIGHTS`, without waiting: the message waits in the keeper's
//!   backlog, and the keeper is not woken for it). Nothing is shared between
//!   calls, so no call can find another's replies.
//! - Calls take turns on a POSIX record lock of a memfd the keeper holds at
//!   `LOCK_FD`, copied out of the keeper with `pidfd_getfd`: only a process
//!   that may ptrace the keeper can copy it, so no untrusted process can hold
//!   the turn. Such a lock belongs to the process, not to the open file
//!   description that every copy shares (as a `flock` would), so each call's
//!   copy locks apart from the others'. A call
//!   waits for it at most TURN_WAIT, polling, and then goes on without: the
//!   turn only spares concurrent calls from invalidating each other's
//!   listings; the generation check of `transact` keeps every change correct
//!   without it (a change computed from a listing is refused when the
//!   ruleset moved since, and computed again).
//! - An earlier version lent the keeper's one socket to one call at a time,
//!   under a `flock` on the namespace's nsfs inode. Any process of the
//!   namespace can open that inode and hold the lock, so any user could stall
//!   every nftables call.
//! - The keeper is trusted only when it can change nftables itself: the
//!   process that listens on the name (SO_PEERCRED; a pidfd held across the
//!   checks, so its pid cannot come to name another process) has our user id,
//!   CAP_NET_ADMIN in its effective set and our user namespace, and holds,
//!   at `LISTENER_FD`, the very listener we reached: bound to the name, in
//!   our network namespace, and still open after the checks (our connection
//!   is not hung up). Taking that descriptor (`pidfd_getfd`) needs ptrace
//!   access to the keeper, which the kernel grants only to the same user
//!   with at least the keeper's capabilities: a process of another user, or
//!   uid 0 without capabilities (a hostNetwork pod), cannot.
//! - The call sends that listener back with its socket, as proof: the keeper
//!   takes a socket only from a caller that could take its listener, and
//!   only a NETLINK_NETFILTER socket, bound, in its namespace. Only such
//!   hand-overs count as activity; anyone may connect, but a connection
//!   without the proof is closed and keeps no keeper alive.
//! - A name squatted by anyone else is not trusted: calls then close their
//!   sockets in a detached child, as without a keeper (slower, never stuck).
//! - Every TICK the keeper takes what waits in its backlog. It releases what
//!   it holds after a TICK without a hand-over (no call is running then, so
//!   nothing waits for the release), or when it holds HELD_MAX, and leaves
//!   after IDLE without one.
//! - While it lives, the keeper also keeps conntrack switched on in its
//!   namespace: its own table (`HOLD`) holds one conntrack expression in a
//!   chain no packet passes through. It creates the table when it starts
//!   (taking over one a killed keeper left) and deletes it when it leaves.
//!   (Not a table flagged "owner", which the kernel would delete with the
//!   socket: with one in the ruleset, nft 1.0.6, Debian 12's, intermittently
//!   prints an empty ruleset as JSON.) Without it, the masquerade or port
//!   mapping rule of the only pod on a node is the namespace's first
//!   conntrack user, and the kernel switches conntrack on for it, walking its
//!   whole hash table once per family (0.3-0.5 ms of that ADD), and off again
//!   at the DEL of the last one. A node with pods, or kube-proxy, has
//!   conntrack on anyway.

use super::expr::{Data, Expr, CT_ESTABLISHED_RELATED, NFT_CMP_NEQ, NFT_CT_STATE};
use super::{Batch, Table, NETLINK_NETFILTER, NFPROTO_INET};
use crate::netlink::Socket;
use crate::sys::pidfd::Pidfd;
use crate::sys::{trust, unix};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The abstract unix name (no leading NUL here) a keeper listens on.
const NAME: &[u8] = b"cnibox/nftables-keeper";

/// Where the keeper holds its listener: 0-2 are /dev/null and 3 is its own
/// netfilter socket (`sys::daemon` puts them there), so a socket it makes
/// first gets 4.
const LISTENER_FD: RawFd = 4;

/// Where the keeper holds the object whose lock is the namespace's turn at
/// nftables (a memfd: reachable only through the keeper's descriptors, so
/// only by who may ptrace the keeper).
const LOCK_FD: RawFd = 5;

/// How long a call waits for the turn before it goes on without.
const TURN_WAIT: Duration = Duration::from_secs(10);

/// How long a keeper waits for the next hand-over. Long enough to span a
/// runtime's plugin chain and a burst of pod starts or deletions (calls
/// milliseconds to seconds apart); short enough that an idle node has no
/// lingering process and a deleted namespace is not kept alive for long.
const IDLE: Duration = Duration::from_secs(10);

/// How often the keeper empties its backlog. Connections are not accepted
/// as they come (that would wake the keeper for every call): the backlog
/// holds them until then, and a call that finds it full closes its socket
/// in a detached child instead.
const TICK: Duration = Duration::from_secs(1);
const BACKLOG: i32 = 4096;

/// The most sockets a keeper holds before it releases them anyway (each
/// is a descriptor; their release together costs at most one grace period).
const HELD_MAX: usize = 256;

/// The keeper's own table (see the module's why). `inet`: both families.
pub const HOLD: Table = Table { family: NFPROTO_INET, name: "cnibox_keeper" };
const HOLD_CHAIN: &str = "conntrack";
const HOLD_COMMENT: &str = "cnibox-keeper keeps conntrack on while it runs and deletes this table when it leaves";

/// A call's visit to a trusted keeper: the connection it made, the proof
/// it will send back, and the namespace's turn, while it has it.
pub struct Visit {
    conn: OwnedFd,
    proof: OwnedFd,
    _turn: Option<OwnedFd>,
}

/// Find the keeper of the current namespace, if there is one to trust, and
/// take the turn at nftables from it: wait until no other cnibox call holds
/// it, up to TURN_WAIT, after which the call goes on without (the
/// generation check still guards every change). None when there is no
/// keeper to trust.
pub fn visit() -> Option<Visit> {
    let conn = unix::connect_abstract(NAME).ok()?;
    let (proof, keeper) = trusted(&conn)?;
    let turn = keeper.take(LOCK_FD).ok().and_then(|lock| {
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            match trust::try_lock_as_process(&lock) {
                Ok(true) => return Some(lock),
                Ok(false) if start.elapsed() < TURN_WAIT => std::thread::sleep(pause),
                _ => return None,
            }
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    });
    Some(Visit { conn, proof, _turn: turn })
}

/// Hand a socket this process opened, and is done with, to the keeper
/// (`visit`'s, or one found now), starting one when there is none. When
/// there is one we do not trust (or none can be started) the socket is
/// closed by a detached child instead, as its release may wait.
pub fn keep(sock: OwnedFd, visit: Option<Visit>) {
    let (conn, proof) = match visit {
        Some(v) => (v.conn, Some(v.proof)),
        None => match unix::connect_abstract(NAME) {
            Ok(conn) => {
                let proof = trusted(&conn).map(|t| t.0);
                (conn, proof)
            }
            Err(e) if e.is_errno(libc::ECONNREFUSED) => return start_keeper(sock),
            // EAGAIN: the backlog is full.
            Err(_) => return crate::sys::close_detached(sock),
        },
    };
    if let Some(proof) = proof {
        if unix::send_fds(&conn, &[sock.as_fd(), proof.as_fd()]).is_ok() {
            // The message holds the socket now; closing our copy releases nothing.
            return;
        }
    }
    crate::sys::close_detached(sock);
}

/// The keeper's listener (the proof) and a handle on the keeper,
/// when the process listening at the other end of `conn` is a keeper to
/// trust (see the module's how); None otherwise.
fn trusted(conn: &OwnedFd) -> Option<(OwnedFd, Pidfd)> {
    let (pid, uid) = unix::peer(conn).ok()?;
    if pid <= 0 || uid != crate::sys::process::euid() {
        return None;
    }
    // The handle comes first: the checks below read `pid`, and the process
    // they read is the handle's as long as `take` then finds it alive.
    let keeper = Pidfd::open(pid).ok()?;
    if !trust::has_cap(pid, trust::CAP_NET_ADMIN).ok()? || !trust::same_user_ns(&keeper, pid).ok()? {
        return None;
    }
    let listener = keeper.take(LISTENER_FD).ok()?;
    if unix::abstract_name(&listener).ok()?.as_deref() != Some(NAME) {
        return None;
    }
    if trust::netns_of_socket(&listener).ok()? != trust::current_netns().ok()? {
        return None;
    }
    // Still connected: the listener we reached was open throughout, so it
    // held the name throughout, and the one the keeper holds (bound to that
    // name in this namespace) is it.
    (!unix::hung_up(conn)).then_some((listener, keeper))
}

/// No keeper here: leave `sock` to a new one, if it belongs to this
/// namespace (the name does: only a socket of it may be kept under it).
fn start_keeper(sock: OwnedFd) {
    let same = match (trust::netns_of_socket(&sock), trust::current_netns()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same || !crate::sys::daemon(c"cnibox-keeper", &[sock.as_raw_fd()], start, serve) {
        crate::sys::close_detached(sock);
    }
    // Otherwise the keeper holds the socket; closing this copy releases nothing.
}

/// What a running keeper holds.
struct Keeper {
    /// Its own socket, for `HOLD`.
    own: OwnedFd,
    listener: OwnedFd,
    _lock: OwnedFd,
    listener_id: trust::Id,
    netns: trust::Id,
}

/// In the new keeper: listen (as itself, so that callers see its pid), and
/// let callers of our user take its listener even under Yama's
/// ptrace_scope 1. None when the name is taken: another keeper was quicker.
fn start(mut kept: Vec<OwnedFd>) -> Option<Keeper> {
    let own = kept.pop()?;
    trust::allow_any_ptracer();
    let listener = unix::listen_abstract(NAME, BACKLOG).ok()?;
    let lock = trust::lock_object(c"cnibox-nftables-turn").ok()?;
    if listener.as_raw_fd() != LISTENER_FD || lock.as_raw_fd() != LOCK_FD {
        return None;
    }
    let k = Keeper {
        listener_id: trust::file_id(&listener).ok()?,
        netns: trust::current_netns().ok()?,
        own,
        listener,
        _lock: lock,
    };
    hold_conntrack(&k.own);
    Some(k)
}

/// A socket to send on, through a duplicate of `fd` (closing it releases nothing).
fn socket_on(fd: &OwnedFd) -> Option<Socket> {
    Socket::from_fd(fd.try_clone().ok()?).ok()
}

/// Create `HOLD`, or take over the one a killed keeper left: emptied and
/// filled again. Best effort: without it the keeper still does its main job.
fn hold_conntrack(own: &OwnedFd) {
    let Some(mut sock) = socket_on(own) else { return };
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

/// Delete `HOLD`.
fn release_conntrack(own: &OwnedFd) {
    let Some(mut sock) = socket_on(own) else { return };
    let mut b = Batch::new();
    b.del_table(&HOLD);
    let _ = b.send_on(&mut sock, 0);
}

/// The keeper's life: every TICK, take the sockets handed over since;
/// release them after a TICK without any; leave after IDLE without any.
fn serve(k: Keeper) {
    let mut held: Vec<OwnedFd> = Vec::new();
    // Connections of calls still running (they connect when they start and
    // send when done): asked again at the next tick, then dropped.
    let mut waiting: Vec<OwnedFd> = Vec::new();
    let mut last = Instant::now();
    loop {
        std::thread::sleep(TICK);
        let mut fresh = 0;
        let mut later = Vec::new();
        let earlier = std::mem::take(&mut waiting);
        let accepted = std::iter::from_fn(|| unix::accept(&k.listener).ok());
        for (conn, again) in earlier.into_iter().map(|c| (c, false)).chain(accepted.map(|c| (c, true))) {
            match handed_over(&k, &conn) {
                Ok(Some(s)) => {
                    held.push(s);
                    fresh += 1;
                }
                Err(()) if again && later.len() < BACKLOG as usize && !unix::hung_up(&conn) => later.push(conn),
                _ => {}
            }
        }
        waiting = later;
        if fresh > 0 {
            last = Instant::now();
        }
        if fresh == 0 || held.len() >= HELD_MAX {
            held.clear();
        }
        if last.elapsed() >= IDLE {
            // The name goes first (a caller then starts a new keeper rather
            // than hand us a socket), then the table.
            drop(k.listener);
            release_conntrack(&k.own);
            return;
        }
    }
}

/// The socket a caller handed over on `conn`, if it is one to keep: it came
/// with our own listener (only a process that may ptrace us has that) and
/// it is a bound NETLINK_NETFILTER socket of our namespace.
/// Err when nothing has come yet.
fn handed_over(k: &Keeper, conn: &OwnedFd) -> Result<Option<OwnedFd>, ()> {
    let mut fds = match unix::recv_fds(conn) {
        Ok(fds) => fds,
        Err(e) if e.is_errno(libc::EAGAIN) => return Err(()),
        Err(_) => return Ok(None),
    };
    let proof_ok = fds.len() == 2 && trust::file_id(&fds[1]).ok() == Some(k.listener_id);
    if !proof_ok {
        return Ok(None);
    }
    let sock = fds.swap_remove(0);
    let ok = unix::socket_kind(&sock).ok() == Some((libc::AF_NETLINK, NETLINK_NETFILTER))
        && crate::sys::netlink::port_id(&sock).is_ok_and(|p| p != 0)
        && trust::netns_of_socket(&sock).ok() == Some(k.netns);
    Ok(ok.then_some(sock))
}
