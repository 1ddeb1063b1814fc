//! DHCPv4 on the wire: the BOOTP-shaped message with its options (RFC 2131
//! §2, RFC 2132, long options concatenated as RFC 3396 says), the two route
//! options (33 and RFC 3442's 121), and the IPv4 + UDP headers a message
//! travels in on a packet socket (the kernel adds the Ethernet header).
//!
//! Decoding bounds-checks every length and rejects a message rather than
//! guessing; options it does not know are kept as bytes. Not handled: option
//! overload (52, options in `sname`/`file`), which no server sends unasked.

use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Fixed part (236 bytes) + cookie: the smallest message we accept.
const FIXED: usize = 240;
/// BOOTP's minimum message size; some relays drop shorter ones.
const MIN_SIZE: usize = 300;

pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;
/// `flags`: ask the server to broadcast its answers.
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Message types (option 53).
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;
pub const RELEASE: u8 = 7;

/// Option codes used by cnibox.
pub mod opt {
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const STATIC_ROUTES: u8 = 33;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMS: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const T1: u8 = 58;
    pub const T2: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const PAD: u8 = 0;
    pub const END: u8 = 255;
}

/// One DHCP message. Only Ethernet hardware addresses are carried.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub op: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    /// Options in order, one entry per code (split options already joined).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    /// A client message of type `ty` from `chaddr`.
    pub fn request(ty: u8, xid: u32, chaddr: [u8; 6]) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        Message {
            op: BOOTREQUEST,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: z,
            yiaddr: z,
            siaddr: z,
            giaddr: z,
            chaddr,
            options: vec![(opt::MESSAGE_TYPE, vec![ty])],
        }
    }

    /// Set option `code`, replacing an earlier value (so configured options override defaults).
    pub fn set(&mut self, code: u8, data: &[u8]) {
        match self.options.iter_mut().find(|(c, _)| *c == code) {
            Some((_, d)) => *d = data.to_vec(),
            None => self.options.push((code, data.to_vec())),
        }
    }

    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.options.iter().find(|(c, _)| *c == code).map(|(_, d)| d.as_slice())
    }

    /// Option 53, or 0 for a plain BOOTP message.
    pub fn kind(&self) -> u8 {
        self.get(opt::MESSAGE_TYPE).and_then(|d| d.first().copied()).unwrap_or(0)
    }

    /// The first address of an address option.
    pub fn addr(&self, code: u8) -> Option<Ipv4Addr> {
        self.addrs(code).into_iter().next()
    }

    /// Every address of an address-list option (router, DNS).
    pub fn addrs(&self, code: u8) -> Vec<Ipv4Addr> {
        let d = self.get(code).unwrap_or(&[]);
        d.chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect()
    }

    /// A 32-bit option (lease time, T1, T2).
    pub fn u32(&self, code: u8) -> Option<u32> {
        let d = self.get(code)?;
        Some(u32::from_be_bytes(d.get(..4)?.try_into().ok()?))
    }

    /// A text option (domain name, server message), without trailing NULs.
    pub fn text(&self, code: u8) -> Option<String> {
        let d = self.get(code)?;
        let end = d.iter().rposition(|&b| b != 0).map(|i| i + 1).unwrap_or(0);
        Some(String::from_utf8_lossy(&d[..end]).into_owned())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_SIZE);
        b.extend_from_slice(&[self.op, 1, 6, 0]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&a.octets());
        }
        b.extend_from_slice(&self.chaddr);
        b.resize(FIXED - 4, 0); // chaddr padding, sname, file
        b.extend_from_slice(&MAGIC);
        for (code, data) in &self.options {
            // RFC 3396: a value longer than 255 bytes goes in consecutive pieces.
            let mut rest = data.as_slice();
            loop {
                let n = rest.len().min(255);
                b.push(*code);
                b.push(n as u8);
                b.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if rest.is_empty() {
                    break;
                }
            }
        }
        b.push(opt::END);
        if b.len() < MIN_SIZE {
            b.resize(MIN_SIZE, 0);
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Message> {
        if b.len() < FIXED || b[FIXED - 4..FIXED] != MAGIC {
            return None;
        }
        let ip = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        let mut m = Message {
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip(12),
            yiaddr: ip(16),
            siaddr: ip(20),
            giaddr: ip(24),
            chaddr: b[28..34].try_into().ok()?,
            options: Vec::new(),
        };
        let mut i = FIXED;
        while i < b.len() {
            let code = b[i];
            if code == opt::PAD {
                i += 1;
                continue;
            }
            if code == opt::END {
                break;
            }
            let len = *b.get(i + 1)? as usize;
            let data = b.get(i + 2..i + 2 + len)?;
            match m.options.iter_mut().find(|(c, _)| *c == code) {
                Some((_, d)) => d.extend_from_slice(data),
                None => m.options.push((code, data.to_vec())),
            }
            i += 2 + len;
        }
        Some(m)
    }
}

/// The prefix length of a contiguous netmask.
pub fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let p = m.leading_ones();
    (m.checked_shl(p).unwrap_or(0) == 0).then_some(p as u8)
}

/// A route from an option: destination, prefix length, router.
pub type OptRoute = (Ipv4Addr, u8, Ipv4Addr);

/// Option 121 (RFC 3442): a width, the significant octets of the
/// destination, a router. None when malformed: the whole option is then void.
pub fn classless_routes(mut b: &[u8]) -> Option<Vec<OptRoute>> {
    let mut out = Vec::new();
    while let Some(&w) = b.first() {
        if w > 32 {
            return None;
        }
        let n = (w as usize).div_ceil(8);
        let r = b.get(1 + n..1 + n + 4)?;
        let mut d = [0u8; 4];
        d[..n].copy_from_slice(&b[1..1 + n]);
        out.push((Ipv4Addr::from(d), w, Ipv4Addr::new(r[0], r[1], r[2], r[3])));
        b = &b[1 + n + 4..];
    }
    Some(out)
}

/// Option 33 (RFC 2132 §5.8): destination and router pairs, the destination
/// taking its classful mask (A /8, B /16, otherwise /24, as the reference does).
pub fn static_routes(b: &[u8]) -> Vec<OptRoute> {
    b.chunks_exact(8)
        .map(|c| {
            let prefix = match c[0] {
                0..=127 => 8,
                128..=191 => 16,
                _ => 24,
            };
            (Ipv4Addr::new(c[0], c[1], c[2], c[3]), prefix, Ipv4Addr::new(c[4], c[5], c[6], c[7]))
        })
        .collect()
}

/// The Internet checksum's running sum over `data` (16-bit big-endian words).
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        acc += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [last] = it.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An IPv4 + UDP packet from the client port to the server port around `payload`.
pub fn frame(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let ulen = 8 + payload.len();
    let tlen = 20 + ulen;
    let mut p = Vec::with_capacity(tlen);
    p.extend_from_slice(&[0x45, 0, (tlen >> 8) as u8, tlen as u8, 0, 0, 0, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = fold(sum(0, &p));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    p.extend_from_slice(&SERVER_PORT.to_be_bytes());
    p.extend_from_slice(&(ulen as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    // The UDP checksum covers a pseudo header: addresses, protocol, length.
    let pseudo = sum(sum(sum(0, &p[12..20]), &[0, 17]), &(ulen as u16).to_be_bytes());
    let c = match fold(sum(pseudo, &p[20..])) {
        0 => 0xffff,
        c => c,
    };
    p[26..28].copy_from_slice(&c.to_be_bytes());
    p
}

/// The source address and UDP payload of an IPv4 packet to the client port.
/// The UDP checksum is not verified: packets between namespaces of one host
/// arrive with it unfinished (checksum offload), and the link layer's CRC and
/// the message's own xid and chaddr checks guard the rest.
pub fn unframe(p: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    if p.len() < 28 || p[0] >> 4 != 4 || p[9] != 17 {
        return None;
    }
    let ihl = (p[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([p[2], p[3]]) as usize;
    // a fragment (more-fragments bit or an offset) is not a whole message
    if ihl < 20 || total > p.len() || total < ihl + 8 || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
        return None;
    }
    let u = &p[ihl..total];
    let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
    if u16::from_be_bytes([u[2], u[3]]) != CLIENT_PORT || ulen < 8 || ulen > u.len() {
        return None;
    }
    Some((Ipv4Addr::new(p[12], p[13], p[14], p[15]), &u[8..ulen]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc];

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The fixed part of a message: op, htype 1, hlen 6, hops, xid, secs,
    /// flags, four addresses, chaddr padded to 16, 64 + 128 zero bytes, cookie.
    fn fixed(op: u8, xid: &str, flags: &str, ciaddr: &str, yiaddr: &str) -> Vec<u8> {
        let mut v =
            hex(&format!("{op:02x} 01 06 00 {xid} 0000 {flags} {ciaddr} {yiaddr} 00000000 00000000 0200 00aa bbcc"));
        v.resize(236, 0);
        v.extend_from_slice(&hex("63 82 53 63"));
        v
    }

    #[test]
    fn discover_exact_bytes() {
        let mut m = Message::request(DISCOVER, 0x1234_5678, MAC);
        m.secs = 0;
        m.flags = FLAG_BROADCAST;
        m.set(opt::CLIENT_ID, b"\0c1/n/eth0");
        m.set(opt::PARAMS, &[1, 3, 6]);
        let mut want = fixed(1, "12345678", "8000", "00000000", "00000000");
        want.extend_from_slice(&hex("35 01 01  3d 0a 00 63 31 2f 6e 2f 65 74 68 30  37 03 01 03 06  ff"));
        want.resize(300, 0);
        assert_eq!(m.encode(), want);
        // and it reads back as it was
        assert!(Message::decode(&want).unwrap() == m);
    }

    #[test]
    fn release_exact_bytes() {
        let mut m = Message::request(RELEASE, 0xdead_beef, MAC);
        m.ciaddr = Ipv4Addr::new(10, 55, 0, 23);
        m.set(opt::SERVER_ID, &[10, 55, 0, 1]);
        let mut want = fixed(1, "deadbeef", "0000", "0a370017", "00000000");
        want.extend_from_slice(&hex("35 01 07  36 04 0a 37 00 01  ff"));
        want.resize(300, 0);
        assert_eq!(m.encode(), want);
    }

    #[test]
    fn ack_decodes_with_pads_split_options_and_routes() {
        let mut b = fixed(2, "12345678", "0000", "00000000", "0a370017");
        b.extend_from_slice(&hex(concat!(
            "35 01 05  36 04 0a370001  00 00",                // type ACK, server id, two pads
            "01 04 ffffff00  03 08 0a370001 0a3700fe",        // mask /24, two routers
            "06 04 0a370001  0f 08 6578616d706c6500",         // DNS, domain "example" + NUL
            "33 04 00000078  3a 04 0000003c  3b 04 00000069", // lease 120, T1 60, T2 105
            // option 121 in two pieces: 10.56.0.0/24 on-link, default via .1, 192.168.0.0/16 via .2
            "79 03 180a38  79 11 00 00000000 00 0a370001 10 c0a8 0a370002",
            "21 08 0a010200 0a3700fe", // option 33: 10.1.2.0 via .254
            "ff 00 00"
        )));
        let m = Message::decode(&b).unwrap();
        assert_eq!(m.op, BOOTREPLY);
        assert_eq!(m.kind(), ACK);
        assert_eq!(m.yiaddr, Ipv4Addr::new(10, 55, 0, 23));
        assert_eq!(m.addr(opt::SERVER_ID), Some(Ipv4Addr::new(10, 55, 0, 1)));
        assert_eq!(mask_prefix(m.addr(opt::SUBNET_MASK).unwrap()), Some(24));
        assert_eq!(m.addrs(opt::ROUTER), [Ipv4Addr::new(10, 55, 0, 1), Ipv4Addr::new(10, 55, 0, 254)]);
        assert_eq!(m.text(opt::DOMAIN_NAME).as_deref(), Some("example"));
        assert_eq!((m.u32(opt::LEASE_TIME), m.u32(opt::T1), m.u32(opt::T2)), (Some(120), Some(60), Some(105)));
        let r = classless_routes(m.get(opt::CLASSLESS_ROUTES).unwrap()).unwrap();
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            r,
            [
                (a("10.56.0.0"), 24, a("0.0.0.0")),
                (a("0.0.0.0"), 0, a("10.55.0.1")),
                (a("192.168.0.0"), 16, a("10.55.0.2"))
            ]
        );
        assert_eq!(static_routes(m.get(opt::STATIC_ROUTES).unwrap()), [(a("10.1.2.0"), 8, a("10.55.0.254"))]);
    }

    #[test]
    fn malformed_messages_are_refused() {
        let good = Message::request(DISCOVER, 1, MAC).encode();
        assert!(Message::decode(&good[..239]).is_none());
        let mut bad_cookie = good.clone();
        bad_cookie[236] = 0;
        assert!(Message::decode(&bad_cookie).is_none());
        // an option running past the end
        let mut trunc = good[..240].to_vec();
        trunc.extend_from_slice(&[12, 10, b'a']);
        assert!(Message::decode(&trunc).is_none());
        // no END: options stop at the end of the buffer
        let mut no_end = good[..240].to_vec();
        no_end.extend_from_slice(&[53, 1, 2]);
        assert_eq!(Message::decode(&no_end).unwrap().kind(), OFFER);
        assert_eq!(classless_routes(&[33, 0, 0, 0, 0, 1, 2, 3, 4]), None);
        assert_eq!(classless_routes(&[24, 10, 0]), None);
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
        assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
    }

    #[test]
    fn long_option_is_split_and_joined() {
        let mut m = Message::request(DISCOVER, 7, MAC);
        let long: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        m.set(opt::HOST_NAME, &long);
        let b = m.encode();
        let at = 240 + 3;
        assert_eq!((b[at], b[at + 1]), (opt::HOST_NAME, 255));
        assert_eq!((b[at + 257], b[at + 258]), (opt::HOST_NAME, 45));
        assert_eq!(Message::decode(&b).unwrap().get(opt::HOST_NAME), Some(&long[..]));
    }

    #[test]
    fn frame_exact_bytes_and_checksums() {
        // A 4-byte payload from 0.0.0.0 to the broadcast address. Checksums
        // worked by hand: IP 4500+0020+4011+ffff+ffff = 2852f, folded 8531,
        // complement 7ace; UDP pseudo header (ffff ffff 0011 000c) + header
        // (0044 0043 000c) + data (0102 0304) = 204b4, folded 04b6, complement fb49.
        let p = frame(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &[1, 2, 3, 4]);
        let want = hex("4500 0020 0000 0000 4011 7ace 00000000 ffffffff  0044 0043 000c fb49 01020304");
        assert_eq!(p, want);
        // The receiving side's check: summing a packet with its checksum gives 0xffff.
        assert_eq!(fold(sum(0, &p[..20])), 0);
        let pseudo = sum(sum(sum(0, &p[12..20]), &[0, 17]), &[0, 12]);
        assert_eq!(fold(sum(pseudo, &p[20..])), 0);
    }

    #[test]
    fn unframe_takes_client_port_packets_only() {
        // A server's reply: swap ports of a client frame and turn it around.
        let mut p = frame(Ipv4Addr::new(10, 55, 0, 1), Ipv4Addr::new(10, 55, 0, 23), b"hello");
        p[20..24].copy_from_slice(&[0, 67, 0, 68]);
        let (src, payload) = unframe(&p).unwrap();
        assert_eq!((src, payload), (Ipv4Addr::new(10, 55, 0, 1), &b"hello"[..]));
        // trailing link-layer padding beyond the IP length is ignored
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(unframe(&padded).unwrap().1, b"hello");
        let mut other = p.clone();
        other[23] = 69;
        assert!(unframe(&other).is_none(), "wrong port");
        let mut frag = p.clone();
        frag[6] = 0x20;
        assert!(unframe(&frag).is_none(), "fragment");
        let mut tcp = p.clone();
        tcp[9] = 6;
        assert!(unframe(&tcp).is_none(), "not UDP");
        assert!(unframe(&p[..30]).is_none(), "truncated");
    }
}
