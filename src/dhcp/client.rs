//! One DHCPv4 client (RFC 2131 §4.4) as a pure state machine: time comes in
//! as milliseconds, packets come in as decoded messages, and what to send
//! goes out as frames. It never touches a socket or a clock itself, so every
//! path (retransmission, NAK, T1, T2, expiry) is unit-tested with made-up time.
//!
//! ```text
//!  Selecting --OFFER--> Requesting --ACK--> Bound --T1--> Renewing --T2--> Rebinding
//!      ^                    |                 ^             |  ACK          |  ACK
//!      +-------NAK----------+                 +-------------+---------------+
//!  (acquisition gives up at its deadline)     NAK in Renewing/Rebinding, or expiry: lost
//! ```

use super::wire::{self, opt, Message};
use crate::cni::config::Dns;
use crate::cni::result::{IpConfig, Route};
use crate::cni::CniResult;
use crate::error::{Error, Result};
use crate::net::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// Milliseconds on the daemon's clock (CLOCK_BOOTTIME: suspend counts, as it does for the server).
pub type Ms = u64;
pub const NEVER: Ms = Ms::MAX;
const SEC: Ms = 1000;
/// First retransmission delay (RFC 2131 §4.1: 4 s, doubling, randomised by ±1 s).
const FIRST_DELAY: Ms = 4 * SEC;
/// Smallest retransmission delay while renewing or rebinding (RFC 2131 §4.4.5).
const MIN_RENEW_DELAY: Ms = 60 * SEC;
/// A REQUEST unanswered this many times sends the client back to DISCOVER.
const MAX_REQUESTS: u32 = 4;
/// Lease time assumed when an ACK carries none (as the reference does).
const DEFAULT_LEASE: u32 = 3600;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum State {
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Selecting => "selecting",
            State::Requesting => "requesting",
            State::Bound => "bound",
            State::Renewing => "renewing",
            State::Rebinding => "rebinding",
        }
    }
}

/// What the client puts in every message: fixed for the life of a lease.
#[derive(Clone)]
pub struct Params {
    /// Option 61's value: type 0 and the `<containerID>/<network>/<ifname>` text.
    pub client_id: Vec<u8>,
    /// Option 55's value: the option codes asked for.
    pub request: Vec<u8>,
    /// Options sent as given (`provide`); they override the defaults above.
    pub provide: Vec<(u8, Vec<u8>)>,
    /// Ask servers to broadcast their answers (`-broadcast`).
    pub broadcast: bool,
    /// Longest delay between two retransmissions (`-resendmax`).
    pub resend_max: Ms,
}

/// A lease: the ACK that granted it, from whom, and since when.
#[derive(Clone)]
pub struct Lease {
    pub ack: Message,
    /// Where a renewal is sent: the link-layer source of the ACK (the server, or its relay).
    pub server_mac: [u8; 6],
    /// When the REQUEST that got the ACK was sent: lease times count from there (RFC 2131 §4.4.1).
    pub start: Ms,
}

impl Lease {
    pub fn addr(&self) -> Ipv4Addr {
        self.ack.yiaddr
    }

    pub fn server(&self) -> Ipv4Addr {
        self.ack.addr(opt::SERVER_ID).unwrap_or(self.ack.siaddr)
    }

    /// T1, T2 and expiry as seconds after `start`; None for an infinite lease.
    pub fn times(&self) -> Option<(u64, u64, u64)> {
        let lease = self.ack.u32(opt::LEASE_TIME).unwrap_or(DEFAULT_LEASE);
        if lease == u32::MAX {
            return None;
        }
        let l = lease as u64;
        let (d1, d2) = (l / 2, l * 7 / 8);
        let t1 = self.ack.u32(opt::T1).map(u64::from).unwrap_or(d1);
        let t2 = self.ack.u32(opt::T2).map(u64::from).unwrap_or(d2);
        Some(if t1 <= t2 && t2 <= l { (t1, t2, l) } else { (d1, d2, l) })
    }

    fn at(&self, i: usize) -> Ms {
        match self.times() {
            Some(t) => self.start.saturating_add([t.0, t.1, t.2][i] * SEC),
            None => NEVER,
        }
    }

    pub fn t1(&self) -> Ms {
        self.at(0)
    }
    pub fn t2(&self) -> Ms {
        self.at(1)
    }
    pub fn expiry(&self) -> Ms {
        self.at(2)
    }

    /// The lease as an IPAM result: the address with the server's mask, the
    /// first router as gateway, routes and DNS. As RFC 3442 says, classless
    /// routes (121) replace both the static routes (33) and the router's
    /// default route; a 121 route via 0.0.0.0 is on-link (scope link).
    pub fn result(&self) -> Result<CniResult> {
        let a = &self.ack;
        let prefix = a.addr(opt::SUBNET_MASK).and_then(wire::mask_prefix).ok_or_else(|| {
            Error::msg(format!("DHCP server {} sent no valid subnet mask for {}", self.server(), a.yiaddr))
        })?;
        // prefixes from the wire are at most 32 (checked while parsing)
        let net = |d: Ipv4Addr, p: u8| IpNet { addr: IpAddr::V4(d), prefix: p }.network();
        let gateway = a.addr(opt::ROUTER).map(IpAddr::V4);
        let mut routes = Vec::new();
        match a.get(opt::CLASSLESS_ROUTES).and_then(wire::classless_routes).filter(|r| !r.is_empty()) {
            Some(cl) => {
                for (d, p, gw) in cl {
                    let mut r = Route::new(net(d, p), Some(IpAddr::V4(gw)));
                    if gw.is_unspecified() {
                        r.scope = Some(crate::rtnl::route::RT_SCOPE_LINK);
                    }
                    routes.push(r);
                }
            }
            None => {
                for (d, p, gw) in wire::static_routes(a.get(opt::STATIC_ROUTES).unwrap_or(&[])) {
                    routes.push(Route::new(net(d, p), Some(IpAddr::V4(gw))));
                }
                if let Some(gw) = gateway {
                    routes.push(Route::new(net(Ipv4Addr::UNSPECIFIED, 0), Some(gw)));
                }
            }
        }
        let dns = Dns {
            nameservers: a.addrs(opt::DNS).iter().map(|d| d.to_string()).collect(),
            domain: a.text(opt::DOMAIN_NAME).unwrap_or_default(),
            ..Default::default()
        };
        let address = IpNet { addr: IpAddr::V4(a.yiaddr), prefix };
        Ok(CniResult { ips: vec![IpConfig { address, gateway, interface: None }], routes, dns, ..Default::default() })
    }
}

/// A packet to send: IPv4 + UDP + DHCP, and the link-layer destination.
pub struct Out {
    pub frame: Vec<u8>,
    pub dst_mac: [u8; 6],
}

#[derive(PartialEq, Eq)]
pub enum Event {
    Nothing,
    /// The first ACK: the lease can be handed to ADD.
    Bound,
    /// An ACK while renewing or rebinding.
    Renewed,
    /// Acquisition gave up at its deadline; the text says why.
    Failed(String),
    /// A held lease is gone (NAK, expiry); the address must not be used any more.
    Lost(String),
}

pub struct Client {
    pub state: State,
    /// chaddr: the interface's MAC, refreshed whenever a socket is opened.
    pub mac: [u8; 6],
    xid: u32,
    /// When the current exchange began (for `secs`).
    began: Ms,
    /// When the last message was sent.
    sent: Ms,
    /// Messages sent in this state.
    tries: u32,
    /// The next (re)transmission.
    next: Ms,
    /// Acquisition gives up here.
    pub deadline: Ms,
    offer: Option<Message>,
    pub lease: Option<Lease>,
    /// Why the last attempt failed, for the error ADD finally gets.
    pub why: String,
}

/// A uniformly random value in 0..n (n > 0).
fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    crate::sys::random_bytes(&mut b);
    u64::from_ne_bytes(b) % n
}

fn new_xid() -> u32 {
    random_below(1 << 32) as u32
}

impl Client {
    /// A client about to DISCOVER, giving up at `deadline`.
    pub fn new(mac: [u8; 6], now: Ms, deadline: Ms) -> Client {
        Client {
            state: State::Selecting,
            mac,
            xid: new_xid(),
            began: now,
            sent: now,
            tries: 0,
            next: now,
            deadline,
            offer: None,
            lease: None,
            why: "no answer from any DHCP server".into(),
        }
    }

    /// A client holding `lease` (one restored after a daemon restart).
    pub fn bound(mac: [u8; 6], lease: Lease) -> Client {
        let mut c = Client::new(mac, lease.start, NEVER);
        c.state = State::Bound;
        c.lease = Some(lease);
        c
    }

    /// Whether the client has something to say on the wire (needs its socket).
    pub fn talking(&self) -> bool {
        self.state != State::Bound
    }

    /// The next moment `timer` must run.
    pub fn wake(&self) -> Ms {
        let l = self.lease.as_ref();
        match self.state {
            State::Selecting | State::Requesting => self.next.min(self.deadline),
            State::Bound => l.map(Lease::t1).unwrap_or(NEVER),
            State::Renewing => self.next.min(l.map(Lease::t2).unwrap_or(NEVER)),
            State::Rebinding => self.next.min(l.map(Lease::expiry).unwrap_or(NEVER)),
        }
    }

    /// Start the exchange of state `s` now (Requesting goes on with the
    /// DISCOVER's xid and elapsed time: it answers that OFFER).
    fn enter(&mut self, s: State, now: Ms) {
        if s != State::Requesting {
            self.xid = new_xid();
            self.began = now;
        }
        self.state = s;
        self.tries = 0;
        self.next = now;
    }

    /// Move on in time: state changes that are due, then a (re)transmission if one is due.
    pub fn timer(&mut self, now: Ms, p: &Params) -> (Option<Out>, Event) {
        let (t2, exp) = self.lease.as_ref().map(|l| (l.t2(), l.expiry())).unwrap_or((NEVER, NEVER));
        match self.state {
            State::Selecting | State::Requesting if now >= self.deadline => {
                return (None, Event::Failed(self.why.clone()));
            }
            State::Bound if now >= self.lease.as_ref().map(Lease::t1).unwrap_or(NEVER) => {
                self.enter(State::Renewing, now)
            }
            State::Renewing | State::Rebinding if now >= exp => {
                return (None, Event::Lost(format!("lease expired without renewal ({})", self.why)));
            }
            State::Renewing if now >= t2 => self.enter(State::Rebinding, now),
            _ => {}
        }
        if self.state == State::Bound || now < self.next {
            return (None, Event::Nothing);
        }
        if self.state == State::Requesting && self.tries >= MAX_REQUESTS {
            self.why = "the server that offered an address did not acknowledge it".into();
            self.enter(State::Selecting, now);
        }
        self.tries += 1;
        self.sent = now;
        self.next = now + self.delay(now, p, t2, exp);
        (Some(self.message(now, p)), Event::Nothing)
    }

    /// Time until the next retransmission in the current state.
    fn delay(&self, now: Ms, p: &Params, t2: Ms, exp: Ms) -> Ms {
        match self.state {
            State::Renewing | State::Rebinding => {
                let left = if self.state == State::Renewing { t2 } else { exp }.saturating_sub(now);
                (left / 2).max(MIN_RENEW_DELAY).min(left)
            }
            _ => {
                let base = (FIRST_DELAY << (self.tries - 1).min(20)).min(p.resend_max.max(SEC));
                (base + random_below(2 * SEC)).saturating_sub(SEC).max(SEC / 2)
            }
        }
    }

    fn message(&self, now: Ms, p: &Params) -> Out {
        let ty = if self.state == State::Selecting { wire::DISCOVER } else { wire::REQUEST };
        let mut m = Message::request(ty, self.xid, self.mac);
        m.secs = ((now - self.began) / SEC).min(u16::MAX as u64) as u16;
        m.set(opt::CLIENT_ID, &p.client_id);
        let (mut src, mut dst, mut mac) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, BROADCAST_MAC);
        match (self.state, &self.offer, &self.lease) {
            (State::Requesting, Some(o), _) => {
                m.set(opt::REQUESTED_IP, &o.yiaddr.octets());
                m.set(opt::SERVER_ID, &o.addr(opt::SERVER_ID).unwrap_or(o.siaddr).octets());
            }
            (State::Renewing | State::Rebinding, _, Some(l)) => {
                m.ciaddr = l.addr();
                src = l.addr();
                if self.state == State::Renewing {
                    (dst, mac) = (l.server(), l.server_mac);
                }
            }
            _ => {}
        }
        if p.broadcast && m.ciaddr.is_unspecified() {
            m.flags = wire::FLAG_BROADCAST;
        }
        if !p.request.is_empty() {
            m.set(opt::PARAMS, &p.request);
        }
        for (code, v) in &p.provide {
            m.set(*code, v);
        }
        Out { frame: wire::frame(src, dst, &m.encode()), dst_mac: mac }
    }

    /// A DHCPRELEASE for the lease held, unicast to its server.
    pub fn release(&self, p: &Params) -> Option<Out> {
        let l = self.lease.as_ref()?;
        let mut m = Message::request(wire::RELEASE, new_xid(), self.mac);
        m.ciaddr = l.addr();
        m.set(opt::CLIENT_ID, &p.client_id);
        m.set(opt::SERVER_ID, &l.server().octets());
        if let Some((_, id)) = p.provide.iter().find(|(c, _)| *c == opt::CLIENT_ID) {
            m.set(opt::CLIENT_ID, id);
        }
        Some(Out { frame: wire::frame(l.addr(), l.server(), &m.encode()), dst_mac: l.server_mac })
    }

    /// A message from a server (`from`: its link-layer source).
    pub fn input(&mut self, now: Ms, m: &Message, from: [u8; 6]) -> Event {
        if m.op != wire::BOOTREPLY || m.xid != self.xid || m.chaddr != self.mac {
            return Event::Nothing;
        }
        let nak_text = || {
            let server = m.addr(opt::SERVER_ID).map(|s| s.to_string()).unwrap_or_else(|| "?".into());
            match m.text(opt::MESSAGE).filter(|t| !t.is_empty()) {
                Some(t) => format!("DHCP server {server} refused (DHCPNAK): {t}"),
                None => format!("DHCP server {server} refused (DHCPNAK)"),
            }
        };
        match (self.state, m.kind()) {
            (State::Selecting, wire::OFFER) if !m.yiaddr.is_unspecified() => {
                self.offer = Some(m.clone());
                self.enter(State::Requesting, now);
                Event::Nothing
            }
            (State::Requesting, wire::NAK) => {
                self.why = nak_text();
                self.offer = None;
                // Start over, but not at once: a server that always refuses is not flooded.
                let next = self.next;
                self.enter(State::Selecting, now);
                self.next = next.max(now + SEC);
                Event::Nothing
            }
            (State::Renewing | State::Rebinding, wire::NAK) => Event::Lost(nak_text()),
            (State::Requesting | State::Renewing | State::Rebinding, wire::ACK) => {
                let renewing = self.state != State::Requesting;
                if renewing && self.lease.as_ref().map(|l| l.addr()) != Some(m.yiaddr) {
                    return Event::Lost(format!("DHCP server gave another address ({}) on renewal", m.yiaddr));
                }
                self.lease = Some(Lease { ack: m.clone(), server_mac: from, start: self.sent });
                self.state = State::Bound;
                self.offer = None;
                if renewing {
                    Event::Renewed
                } else {
                    Event::Bound
                }
            }
            _ => Event::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const SRV_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x99];

    fn params() -> Params {
        Params {
            client_id: b"\0c/n/eth0".to_vec(),
            request: vec![1, 3],
            provide: vec![(12, b"pod".to_vec())],
            broadcast: false,
            resend_max: 62 * SEC,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// The DHCP message inside a frame we sent, with the IP addresses.
    fn sent(o: &Out) -> (Message, Ipv4Addr, Ipv4Addr) {
        let f = &o.frame;
        (
            Message::decode(&f[28..]).unwrap(),
            Ipv4Addr::new(f[12], f[13], f[14], f[15]),
            Ipv4Addr::new(f[16], f[17], f[18], f[19]),
        )
    }

    fn reply(to: &Message, kind: u8, yiaddr: &str, opts: &[(u8, &[u8])]) -> Message {
        let mut m = to.clone();
        m.op = wire::BOOTREPLY;
        m.yiaddr = ip(yiaddr);
        m.ciaddr = Ipv4Addr::UNSPECIFIED;
        m.options = vec![(opt::MESSAGE_TYPE, vec![kind]), (opt::SERVER_ID, vec![10, 55, 0, 1])];
        for (c, d) in opts {
            m.set(*c, d);
        }
        m
    }

    const ACK_OPTS: &[(u8, &[u8])] =
        &[(opt::SUBNET_MASK, &[255, 255, 255, 0]), (opt::ROUTER, &[10, 55, 0, 1]), (opt::LEASE_TIME, &[0, 0, 0, 120])];

    /// Run a client to Bound at t=1000: DISCOVER, OFFER, REQUEST, ACK.
    fn bound() -> Client {
        let p = params();
        let mut c = Client::new(MAC, 1000, 11_000);
        let (out, ev) = c.timer(1000, &p);
        assert!(ev == Event::Nothing);
        let (d, src, dst) = sent(&out.unwrap());
        assert_eq!((d.kind(), src, dst), (wire::DISCOVER, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
        assert_eq!(d.get(opt::CLIENT_ID), Some(&b"\0c/n/eth0"[..]));
        assert_eq!(d.get(opt::PARAMS), Some(&[1u8, 3][..]));
        assert_eq!(d.get(opt::HOST_NAME), Some(&b"pod"[..]));
        assert!(c.input(1100, &reply(&d, wire::OFFER, "10.55.0.23", &[]), SRV_MAC) == Event::Nothing);
        assert!(c.state == State::Requesting);
        let (out, _) = c.timer(1100, &p);
        let (r, _, _) = sent(&out.unwrap());
        assert_eq!(r.kind(), wire::REQUEST);
        assert_eq!(r.xid, d.xid, "REQUEST keeps the OFFER's xid");
        assert_eq!(r.addr(opt::REQUESTED_IP), Some(ip("10.55.0.23")));
        assert_eq!(r.addr(opt::SERVER_ID), Some(ip("10.55.0.1")));
        assert!(c.input(1200, &reply(&r, wire::ACK, "10.55.0.23", ACK_OPTS), SRV_MAC) == Event::Bound);
        c
    }

    #[test]
    fn acquire_then_renew_at_t1_unicast_then_rebind_at_t2_broadcast() {
        let p = params();
        let mut c = bound();
        let l = c.lease.clone().unwrap();
        // lease of 120 s counted from the REQUEST sent at 1100
        assert_eq!((l.t1(), l.t2(), l.expiry()), (61_100, 106_100, 121_100));
        assert_eq!(c.wake(), 61_100);
        assert!(!c.talking());
        assert!(c.timer(61_099, &p).0.is_none());
        let (out, _) = c.timer(61_100, &p);
        let out = out.unwrap();
        let (r, src, dst) = sent(&out);
        assert_eq!(
            (r.kind(), r.ciaddr, src, dst),
            (wire::REQUEST, ip("10.55.0.23"), ip("10.55.0.23"), ip("10.55.0.1"))
        );
        assert_eq!(out.dst_mac, SRV_MAC);
        assert_eq!(r.get(opt::REQUESTED_IP), None, "RFC 2131: no requested-IP while renewing");
        assert_eq!(r.get(opt::SERVER_ID), None);
        // 45 s left to T2: the retry waits until T2 (60 s minimum, capped at T2)
        assert_eq!(c.wake(), 106_100);
        let (out, _) = c.timer(106_100, &p);
        let out = out.unwrap();
        let (r2, src, dst) = sent(&out);
        assert!(c.state == State::Rebinding);
        assert_eq!((src, dst, out.dst_mac), (ip("10.55.0.23"), Ipv4Addr::BROADCAST, BROADCAST_MAC));
        assert_ne!(r2.xid, r.xid);
        // an ACK renews: bound again, times counted from the rebinding REQUEST
        assert!(c.input(106_200, &reply(&r2, wire::ACK, "10.55.0.23", ACK_OPTS), SRV_MAC) == Event::Renewed);
        assert!(c.state == State::Bound);
        assert_eq!(c.lease.as_ref().unwrap().expiry(), 226_100);
    }

    #[test]
    fn nak_while_renewing_loses_the_lease_and_expiry_too() {
        let p = params();
        let mut c = bound();
        let (out, _) = c.timer(61_100, &p);
        let (r, _, _) = sent(&out.unwrap());
        let nak = reply(&r, wire::NAK, "0.0.0.0", &[(opt::MESSAGE, b"wrong network")]);
        match c.input(61_200, &nak, SRV_MAC) {
            Event::Lost(why) => assert_eq!(why, "DHCP server 10.55.0.1 refused (DHCPNAK): wrong network"),
            _ => panic!("expected lost"),
        }
        // with no answer at all, the lease is lost at expiry
        let mut c = bound();
        let mut t = 61_100;
        while t < 121_100 {
            let (_, ev) = c.timer(t, &p);
            assert!(ev == Event::Nothing);
            t = c.wake();
        }
        assert!(matches!(c.timer(t, &p).1, Event::Lost(_)));
    }

    #[test]
    fn silence_gives_up_at_the_deadline_with_backoff_between() {
        let p = params();
        let mut c = Client::new(MAC, 0, 30_000);
        let mut sends = Vec::new();
        loop {
            let t = c.wake();
            let (out, ev) = c.timer(t, &p);
            if let Event::Failed(why) = ev {
                assert_eq!(why, "no answer from any DHCP server");
                assert_eq!(t, 30_000);
                break;
            }
            if out.is_some() {
                sends.push(t);
            }
        }
        // 0, then about 4 s later, then about 8 s after that... (each ±1 s)
        assert!(sends.len() >= 3 && sends.len() <= 4, "{sends:?}");
        let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert!((3000..=5000).contains(&gaps[0]) && (7000..=9000).contains(&gaps[1]), "{gaps:?}");
    }

    #[test]
    fn resend_max_caps_the_backoff() {
        let p = Params { resend_max: 5 * SEC, ..params() };
        let mut c = Client::new(MAC, 0, 60_000);
        let mut last = 0;
        for i in 0..8 {
            let t = c.wake();
            c.timer(t, &p);
            if i > 1 {
                assert!(t - last <= 6000, "gap {}", t - last);
            }
            last = t;
        }
    }

    #[test]
    fn nak_while_requesting_restarts_discovery_and_the_reason_reaches_the_error() {
        let p = params();
        let mut c = Client::new(MAC, 0, 20_000);
        let (out, _) = c.timer(0, &p);
        let (d, _, _) = sent(&out.unwrap());
        c.input(10, &reply(&d, wire::OFFER, "10.55.0.9", &[]), SRV_MAC);
        let (out, _) = c.timer(10, &p);
        let (r, _, _) = sent(&out.unwrap());
        assert!(c.input(20, &reply(&r, wire::NAK, "0.0.0.0", &[]), SRV_MAC) == Event::Nothing);
        assert!(c.state == State::Selecting);
        assert!(c.wake() >= 1020, "no immediate retry after a NAK");
        let (out, _) = c.timer(c.wake(), &p);
        assert_eq!(sent(&out.unwrap()).0.kind(), wire::DISCOVER);
        let mut t = c.wake();
        loop {
            if let (_, Event::Failed(why)) = c.timer(t, &p) {
                assert_eq!(why, "DHCP server 10.55.0.1 refused (DHCPNAK)");
                break;
            }
            t = c.wake();
        }
    }

    #[test]
    fn foreign_replies_are_ignored() {
        let p = params();
        let mut c = Client::new(MAC, 0, 20_000);
        let (out, _) = c.timer(0, &p);
        let (d, _, _) = sent(&out.unwrap());
        let mut other = reply(&d, wire::OFFER, "10.55.0.9", &[]);
        other.xid ^= 1;
        assert!(c.input(1, &other, SRV_MAC) == Event::Nothing);
        let mut other = reply(&d, wire::OFFER, "10.55.0.9", &[]);
        other.chaddr = [9; 6];
        assert!(c.input(1, &other, SRV_MAC) == Event::Nothing);
        // an ACK in Selecting is not a lease
        assert!(c.input(1, &reply(&d, wire::ACK, "10.55.0.9", ACK_OPTS), SRV_MAC) == Event::Nothing);
        assert!(c.state == State::Selecting);
    }

    #[test]
    fn release_is_unicast_to_the_server_with_ciaddr() {
        let c = bound();
        let out = c.release(&params()).unwrap();
        let (m, src, dst) = sent(&out);
        assert_eq!(
            (m.kind(), m.ciaddr, src, dst),
            (wire::RELEASE, ip("10.55.0.23"), ip("10.55.0.23"), ip("10.55.0.1"))
        );
        assert_eq!(m.addr(opt::SERVER_ID), Some(ip("10.55.0.1")));
        assert_eq!(out.dst_mac, SRV_MAC);
    }

    #[test]
    fn broadcast_flag_only_without_an_address() {
        let p = Params { broadcast: true, ..params() };
        let mut c = Client::new(MAC, 0, 20_000);
        let (out, _) = c.timer(0, &p);
        assert_eq!(sent(&out.unwrap()).0.flags, wire::FLAG_BROADCAST);
    }

    #[test]
    fn result_from_ack() {
        let mut c = bound();
        let r = c.lease.as_ref().unwrap().result().unwrap();
        let j = r.to_json("1.0.0").unwrap();
        assert_eq!(
            j,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.55.0.23/24","gateway":"10.55.0.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.55.0.1"}]}"#
        );
        // option 33 routes come first, then the default route; DNS and domain
        let l = c.lease.as_mut().unwrap();
        l.ack.set(opt::STATIC_ROUTES, &[172, 20, 1, 0, 10, 55, 0, 254]);
        l.ack.set(opt::DNS, &[10, 55, 0, 1, 10, 55, 0, 2]);
        l.ack.set(opt::DOMAIN_NAME, b"test.");
        let j = l.result().unwrap().to_json("1.0.0").unwrap();
        assert!(
            j.contains(r#""routes":[{"dst":"172.20.0.0/16","gw":"10.55.0.254"},{"dst":"0.0.0.0/0","gw":"10.55.0.1"}]"#),
            "{j}"
        );
        assert!(j.contains(r#""dns":{"nameservers":["10.55.0.1","10.55.0.2"],"domain":"test."}"#), "{j}");
        // option 121 replaces both; an on-link route gets scope link
        l.ack.set(opt::CLASSLESS_ROUTES, &[24, 10, 56, 0, 0, 0, 0, 0, 0, 10, 55, 0, 254]);
        let j = l.result().unwrap().to_json("1.0.0").unwrap();
        assert!(
            j.contains(
                r#""routes":[{"dst":"10.56.0.0/24","gw":"0.0.0.0","scope":253},{"dst":"0.0.0.0/0","gw":"10.55.0.254"}]"#
            ),
            "{j}"
        );
        l.ack.options.retain(|(c, _)| *c != opt::SUBNET_MASK);
        assert!(l.result().is_err());
    }

    #[test]
    fn lease_times_from_options_or_defaults() {
        let mut l = bound().lease.unwrap();
        l.start = 0;
        l.ack.set(opt::T1, &[0, 0, 0, 10]);
        l.ack.set(opt::T2, &[0, 0, 0, 20]);
        assert_eq!(l.times(), Some((10, 20, 120)));
        // inconsistent T1/T2 fall back to the RFC's 1/2 and 7/8
        l.ack.set(opt::T2, &[0, 0, 1, 0]);
        assert_eq!(l.times(), Some((60, 105, 120)));
        l.ack.set(opt::LEASE_TIME, &[0xff; 4]);
        assert_eq!(l.times(), None);
        assert_eq!(l.t1(), NEVER);
    }
}
