//! Traffic control: the token-bucket qdisc, the ingress qdisc, and the u32
//! match-all filter whose mirred action redirects to an IFB device — the three
//! shapes the bandwidth plugin needs, without running `tc`.

use super::{IfIndex, Rtnl};
use crate::error::Result;
use crate::netlink::{Attrs, MsgBuf, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};

pub const RTM_NEWQDISC: u16 = 36;
pub const RTM_DELQDISC: u16 = 37;
pub const RTM_GETQDISC: u16 = 38;
pub const RTM_NEWTFILTER: u16 = 44;

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TCA_U32_CLASSID: u16 = 1;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
const TC_U32_TERMINAL: u8 = 1;
const TC_ACT_STOLEN: i32 = 4;
const TCA_EGRESS_REDIR: i32 = 1;
const TC_LINKLAYER_ETHERNET: u8 = 1;
const ETH_P_ALL: u16 = 3;

pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
pub const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
pub const INGRESS_HANDLE: u32 = 0xFFFF_0000;

/// `struct tcmsg` (20 bytes).
pub fn tcmsg(ifindex: IfIndex, handle: u32, parent: u32, info: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b[8..12].copy_from_slice(&handle.to_ne_bytes());
    b[12..16].copy_from_slice(&parent.to_ne_bytes());
    b[16..20].copy_from_slice(&info.to_ne_bytes());
    b
}

/// Token-bucket parameters as the kernel stores them: rate in bytes/s,
/// buffer in scheduler ticks, limit and burst in bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    pub rate: u64,
    pub buffer: u32,
    pub limit: u32,
    pub burst: u32,
}

/// A root TBF qdisc with handle 1:. The rate spec says "ethernet" link layer,
/// which lets the kernel compute its own rate tables (no 1 KiB RTAB to send).
pub fn tbf_msg(ifindex: IfIndex, t: &Tbf) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    m.push(&tcmsg(ifindex, 0x0001_0000, TC_H_ROOT, 0));
    m.put_str(TCA_KIND, "tbf");
    let o = m.nest(TCA_OPTIONS);
    let mut q = [0u8; 36];
    q[1] = TC_LINKLAYER_ETHERNET;
    q[8..12].copy_from_slice(&(t.rate.min(u32::MAX as u64) as u32).to_ne_bytes());
    q[24..28].copy_from_slice(&t.limit.to_ne_bytes());
    q[28..32].copy_from_slice(&t.buffer.to_ne_bytes());
    m.put(TCA_TBF_PARMS, &q);
    if t.rate >= u32::MAX as u64 {
        m.put(TCA_TBF_RATE64, &t.rate.to_ne_bytes());
    }
    m.put_u32(TCA_TBF_BURST, t.burst);
    m.end(o);
    m
}

pub fn ingress_msg(ifindex: IfIndex) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    m.push(&tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0));
    m.put_str(TCA_KIND, "ingress");
    m
}

pub fn del_qdisc_msg(ifindex: IfIndex, handle: u32, parent: u32) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK);
    m.push(&tcmsg(ifindex, handle, parent, 0));
    m
}

/// `u32 match u32 0 0` (every packet, any protocol) on the ingress qdisc,
/// with `action mirred egress redirect dev <target>`.
pub fn redirect_filter_msg(ifindex: IfIndex, target: IfIndex) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    let info = (1u32 << 16) | ETH_P_ALL.to_be() as u32; // priority 1, protocol all
    m.push(&tcmsg(ifindex, 0, INGRESS_HANDLE, info));
    m.put_str(TCA_KIND, "u32");
    let o = m.nest(TCA_OPTIONS);
    m.put_u32(TCA_U32_CLASSID, 0x0001_0001);
    // tc_u32_sel (16 bytes) with one all-zero key (16 bytes): matches everything.
    let mut sel = [0u8; 32];
    sel[0] = TC_U32_TERMINAL;
    sel[2] = 1;
    m.put(TCA_U32_SEL, &sel);
    let acts = m.nest(TCA_U32_ACT);
    let a = m.nest(1);
    m.put_str(TCA_ACT_KIND, "mirred");
    let ao = m.nest(TCA_ACT_OPTIONS);
    let mut p = [0u8; 28];
    p[8..12].copy_from_slice(&TC_ACT_STOLEN.to_ne_bytes());
    p[20..24].copy_from_slice(&TCA_EGRESS_REDIR.to_ne_bytes());
    p[24..28].copy_from_slice(&target.attr().to_ne_bytes());
    m.put(TCA_MIRRED_PARMS, &p);
    m.end(ao);
    m.end(a);
    m.end(acts);
    m.end(o);
    m
}

/// A qdisc as dumped: where it hangs and, for TBF, its parameters.
pub struct Qdisc {
    pub ifindex: IfIndex,
    pub handle: u32,
    pub parent: u32,
    pub kind: String,
    pub tbf: Option<Tbf>,
}

impl Qdisc {
    pub fn parse(p: &[u8]) -> Option<Qdisc> {
        let hdr = p.get(0..20)?;
        let word = |i: usize| u32::from_ne_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let mut q = Qdisc {
            ifindex: IfIndex::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
            handle: word(8),
            parent: word(12),
            kind: String::new(),
            tbf: None,
        };
        let mut opts = None;
        for a in Attrs::new(&p[20..]) {
            match a.ty {
                TCA_KIND => q.kind = a.str().to_string(),
                TCA_OPTIONS => opts = Some(a),
                _ => {}
            }
        }
        if q.kind == "tbf" {
            if let Some(o) = opts {
                let mut t = Tbf { rate: 0, buffer: 0, limit: 0, burst: 0 };
                for a in o.attrs() {
                    match a.ty {
                        TCA_TBF_PARMS if a.data.len() >= 36 => {
                            let w =
                                |i: usize| u32::from_ne_bytes([a.data[i], a.data[i + 1], a.data[i + 2], a.data[i + 3]]);
                            t.rate = w(8) as u64;
                            t.limit = w(24);
                            t.buffer = w(28);
                        }
                        TCA_TBF_RATE64 if a.data.len() >= 8 => {
                            t.rate = u64::from_ne_bytes(a.data[0..8].try_into().unwrap_or([0; 8]));
                        }
                        _ => {}
                    }
                }
                q.tbf = Some(t);
            }
        }
        Some(q)
    }
}

impl Rtnl {
    pub fn add_tbf(&mut self, ifindex: IfIndex, dev: &str, t: &Tbf) -> Result<()> {
        self.sock.request(tbf_msg(ifindex, t), format_args!("create tbf qdisc on {dev}"))
    }

    pub fn add_ingress_qdisc(&mut self, ifindex: IfIndex, dev: &str) -> Result<()> {
        self.sock.request(ingress_msg(ifindex), format_args!("create ingress qdisc on {dev}"))
    }

    pub fn del_qdisc(&mut self, ifindex: IfIndex, dev: &str, handle: u32, parent: u32) -> Result<()> {
        self.sock.request(del_qdisc_msg(ifindex, handle, parent), format_args!("delete qdisc on {dev}"))
    }

    pub fn add_redirect_filter(
        &mut self,
        ifindex: IfIndex,
        dev: &str,
        target: IfIndex,
        target_name: &str,
    ) -> Result<()> {
        self.sock.request(redirect_filter_msg(ifindex, target), format_args!("redirect {dev} ingress to {target_name}"))
    }

    /// Qdiscs of one device.
    pub fn qdiscs(&mut self, ifindex: IfIndex) -> Result<Vec<Qdisc>> {
        let mut m = MsgBuf::new(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP);
        m.push(&tcmsg(IfIndex::NONE, 0, 0, 0));
        let all = self.sock.dump(m, "list qdiscs")?;
        Ok(all.iter().filter_map(|p| Qdisc::parse(p)).filter(|q| q.ifindex == ifindex).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::{cat, nla};

    #[test]
    fn tbf_bytes() {
        let t = Tbf { rate: 125_000, buffer: 1_250_000, limit: 4_375, burst: 1_250 };
        let b = tbf_msg(IfIndex(7), &t).finish(1);
        assert_eq!(&b[4..8], cat(&[&36u16.to_ne_bytes(), &0x0605u16.to_ne_bytes()]));
        assert_eq!(&b[16..36], &tcmsg(IfIndex(7), 0x10000, TC_H_ROOT, 0));
        assert_eq!(&b[36..44], cat(&[&nla(8, 1), b"tbf\0"]));
        // OPTIONS { PARMS(36), BURST }
        assert_eq!(&b[44..48], &nla(4 + 40 + 8, 2));
        assert_eq!(&b[48..52], &nla(40, 1));
        let q = &b[52..88];
        assert_eq!(q[1], 1, "link layer ethernet");
        assert_eq!(&q[8..12], &125_000u32.to_ne_bytes());
        assert_eq!(&q[24..28], &4_375u32.to_ne_bytes());
        assert_eq!(&q[28..32], &1_250_000u32.to_ne_bytes());
        assert_eq!(&b[88..96], cat(&[&nla(8, 6), &1_250u32.to_ne_bytes()]));
        assert_eq!(b.len(), 96);
        // parse what we send back (a dump carries the same attributes)
        let parsed = Qdisc::parse(&b[16..]).unwrap();
        assert_eq!(parsed.kind, "tbf");
        let pt = parsed.tbf.unwrap();
        assert_eq!((pt.rate, pt.limit, pt.buffer), (125_000, 4_375, 1_250_000));
    }

    #[test]
    fn fast_rates_use_rate64() {
        let t = Tbf { rate: 10_000_000_000, buffer: 1, limit: 1, burst: 1 };
        let b = tbf_msg(IfIndex(1), &t).finish(1);
        assert_eq!(&b[52 + 8..52 + 12], &u32::MAX.to_ne_bytes());
        assert_eq!(&b[88..92], &nla(12, 4));
        assert_eq!(Qdisc::parse(&b[16..]).unwrap().tbf.unwrap().rate, 10_000_000_000);
    }

    #[test]
    fn redirect_filter_bytes() {
        let b = redirect_filter_msg(IfIndex(3), IfIndex(9)).finish(1);
        let hdr = &b[16..36];
        assert_eq!(&hdr[12..16], &INGRESS_HANDLE.to_ne_bytes());
        // priority 1, protocol htons(ETH_P_ALL)
        assert_eq!(&hdr[16..20], &((1u32 << 16) | u32::from(3u16.to_be())).to_ne_bytes());
        assert_eq!(&b[36..44], cat(&[&nla(8, 1), b"u32\0"]));
        let opts = Attrs::new(&b[44..]).get(TCA_OPTIONS).unwrap();
        assert_eq!(opts.attrs().get(TCA_U32_CLASSID).unwrap().u32(), 0x10001);
        let sel = opts.attrs().get(TCA_U32_SEL).unwrap();
        assert_eq!(sel.data.len(), 32);
        assert_eq!((sel.data[0], sel.data[2]), (TC_U32_TERMINAL, 1));
        let act = opts.attrs().get(TCA_U32_ACT).unwrap().attrs().get(1).unwrap();
        assert_eq!(act.attrs().get(TCA_ACT_KIND).unwrap().str(), "mirred");
        let p = act.attrs().get(TCA_ACT_OPTIONS).unwrap().attrs().get(TCA_MIRRED_PARMS).unwrap();
        assert_eq!(&p.data[8..12], &4i32.to_ne_bytes());
        assert_eq!(&p.data[20..24], &1i32.to_ne_bytes());
        assert_eq!(&p.data[24..28], &9u32.to_ne_bytes());
    }
}
