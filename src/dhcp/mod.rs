//! DHCPv4 for containers: the `dhcp` IPAM plugin asks a long-running daemon
//! (`cnibox dhcp daemon`) for a lease, because a lease outlives the plugin
//! process and must be renewed for as long as the container lives.
//!
//! - [`wire`]: the message codec and the IPv4/UDP framing (pure, byte-exact tests);
//! - [`client`]: one client's RFC 2131 state machine (pure: time and packets in, packets out);
//! - [`daemon`]: the poll(2) loop: unix socket, one packet socket per lease, timers, leases file;
//! - [`rpc`]: the plugin ↔ daemon protocol below, used by both sides.
//!
//! # The daemon
//!
//! `cnibox dhcp daemon [-socketpath P] [-pidfile P] [-hostprefix P] [-broadcast]
//! [-timeout D] [-resendmax D]` (also as `dhcp daemon` through a `dhcp` link),
//! flags as the reference's (Go syntax: `-timeout 10s`, `-timeout=1m30s`).
//! One process, one thread, no async runtime. Per lease it runs a client:
//! DISCOVER, OFFER, REQUEST, ACK; REQUEST unicast to the server at T1
//! (renewing), broadcast at T2 (rebinding); RELEASE on DEL. Retransmissions
//! back off from 4 s, doubling, ±1 s, capped by `-resendmax` (62 s); while
//! renewing or rebinding they wait half the time left, at least 60 s (RFC 2131 §4.4.5).
//! ADD waits at most `-timeout` (10 s) for a lease, then fails with code 11
//! and the reason (no answer, or the server's DHCPNAK text).
//!
//! The client identifier (option 61) is type 0 followed by
//! `<containerID>/<network>/<ifname>`, cut to 254 bytes, as the reference
//! sends it. Requested by default (option 55): subnet mask, router, DNS
//! servers, domain name, static routes (33), classless static routes (121);
//! `ipam.request` adds codes, `skipDefault` drops the defaults. `ipam.provide`
//! sends options as given (`host-name` from `K8S_POD_NAME` with `fromArg`).
//!
//! Packets go through an AF_PACKET datagram socket bound to the container's
//! interface, opened inside its namespace (the socket stays bound to that
//! namespace) with a BPF filter for UDP port 68. A UDP socket would need the
//! interface to accept IP before it has an address: with strict rp_filter,
//! or a server that ignores the broadcast flag, the OFFER never reaches it.
//! The socket is open only while the client talks (acquiring, renewing,
//! rebinding, releasing), so a bound lease holds no descriptor and the
//! daemon never keeps a deleted container's namespace alive.
//!
//! A lease ends when DEL releases it (or GC, for attachments not in its
//! list). It is dropped, logged, when the container's namespace is gone (its
//! path no longer names the namespace the lease was made in; checked every
//! 5 s) or, at its next transmission, when its interface is. It is "lost"
//! when the server NAKs a renewal or it expires unrenewed: logged, the
//! interface set down as the reference does (the address may be someone
//! else's now), and CHECK reports the loss until DEL.
//!
//! Held leases are written (atomically) to `<socketpath>.leases` on every
//! change, so a restarted daemon goes on renewing them, answers CHECK, and
//! releases them on DEL. The daemon does not release leases when it stops.
//! The socket's directory must be the daemon's own (created 0700; one that
//! others can write to, own or redirect through a symbolic link is refused),
//! and so must the leases file.
//!
//! Started by systemd with socket activation (`contrib/systemd/`), the
//! daemon takes the listening socket it is passed (`LISTEN_PID` is its pid,
//! `LISTEN_FDS=1`, descriptor 3) instead of binding its own, and keeps its
//! leases beside that socket.
//!
//! A request naming the daemon's own network namespace is refused (code 8),
//! as the plugin refuses its own: DHCP there would configure the node.
//!
//! # Plugin ↔ daemon protocol
//!
//! A unix stream socket (default `/run/cni/dhcp.sock`, `ipam.daemonSocketPath`).
//! Per connection, the plugin sends one JSON object on one line and the daemon
//! answers with one JSON object on one line, then closes the connection.
//! Closing early abandons the answer, not the work (a plugin killed during ADD
//! leaves the lease being acquired; the runtime's DEL will release it).
//!
//! Requests (fields absent when empty):
//!
//! ```text
//! {"op":"add","id":"<ctr>/<net>/<if>","network":"<net>","netns":"/abs/path","ifname":"eth0",
//!  "request":[1,3,6,15,33,121],"provide":[[12,"pod-a"]]}
//! {"op":"check","id":"..."}
//! {"op":"del","id":"..."}
//! {"op":"gc","network":"<net>","keep":["<id>", ...]}
//! {"op":"status"}
//! ```
//!
//! - `add`: acquire a lease for the interface (or return the one held for
//!   `id`); answers when bound or after `-timeout`.
//! - `check`: the lease held for `id`, or an error when there is none or it was lost.
//! - `del`: release and forget `id` (success when unknown).
//! - `gc`: release every lease of `network` whose id is not in `keep`.
//! - `status`: success when the daemon is serving.
//!
//! Replies: `{}` or `{"result":{...}}` on success, where `result` is a CNI
//! result (`ips`, `routes`, `dns`; no interfaces); on failure the CNI error
//! fields `{"code":11,"msg":"...","details":"..."}`, which the plugin
//! returns as they are. The plugin waits 5 s at most for the daemon to take
//! the connection (a stopped daemon's full backlog would otherwise block
//! connect(2) for ever), 30 s at most for an answer, and
//! reports a missing or silent daemon as code 11 (try again later).

pub mod client;
pub mod daemon;
pub mod rpc;
pub mod wire;
