//! One lease the daemon holds (or is acquiring): what it is for, the
//! client's state machine, and the packet socket it talks through while it
//! talks.
//!
//! Packets go through an AF_PACKET datagram socket bound to the container's
//! interface, opened inside its namespace: it works before the interface has
//! an address, whatever the container's rp_filter or firewall says, and
//! whether or not the server honours the broadcast flag.

use super::super::client::{Client, Lease, Ms, Out, Params, State, NEVER};
use crate::error::{Error, Result};
use crate::rtnl::Rtnl;
use crate::sys::netns::Netns;
use crate::sys::packet::{BpfInsn, PacketSocket};
use crate::sys::service::{boottime_ms, fd_ident};

const ETH_P_IP: u16 = 0x0800;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// Classic BPF: accept unfragmented IPv4 UDP to port 68, drop everything else,
/// so the daemon wakes only for DHCP replies.
pub const FILTER: [BpfInsn; 9] = [
    insn(0x30, 0, 0, 9),      // ldb [9]            IP protocol
    insn(0x15, 0, 6, 17),     // jeq #17 (UDP)      else drop
    insn(0x28, 0, 0, 6),      // ldh [6]            flags + fragment offset
    insn(0x45, 4, 0, 0x1fff), // jset #0x1fff       a fragment: drop
    insn(0xb1, 0, 0, 0),      // ldxb 4*([0]&0xf)   X = IP header length
    insn(0x48, 0, 0, 2),      // ldh [x+2]          UDP destination port
    insn(0x15, 0, 1, 68),     // jeq #68            else drop
    insn(0x06, 0, 0, 0xffff), // ret #65535         accept
    insn(0x06, 0, 0, 0),      // ret #0             drop
];

/// A namespace's identity: its nsfs device and inode.
pub type NsIdent = (u64, u64);

/// The identity of the namespace at `path`, if it is one.
pub fn path_ident(path: &str) -> Option<NsIdent> {
    Netns::open(path).ok().and_then(|ns| fd_ident(ns.fd()).ok())
}

pub struct Entry {
    pub id: String,
    pub network: String,
    pub netns: String,
    pub ns_ident: NsIdent,
    pub ifname: String,
    pub params: Params,
    pub client: Client,
    pub sock: Option<PacketSocket>,
    /// Connections waiting for this lease (ADD while acquiring).
    pub waiters: Vec<u64>,
    /// Why a held lease was lost; the record stays until DEL so that CHECK can say so.
    pub lost: Option<String>,
}

impl Entry {
    pub fn held(&self) -> bool {
        self.lost.is_none() && !matches!(self.client.state, State::Selecting | State::Requesting)
    }

    /// Run `f` with an rtnetlink socket inside the lease's namespace, if it is still the same one.
    pub fn in_netns<T>(&self, f: impl FnOnce(&mut Rtnl) -> Result<T>) -> Result<T> {
        let gone = || Error::msg(format!("network namespace {} is gone", self.netns));
        let ns = Netns::open(&self.netns).map_err(|e| if e.is_not_found() { gone() } else { e })?;
        if fd_ident(ns.fd())? != self.ns_ident {
            return Err(gone());
        }
        ns.run(|| f(&mut Rtnl::here()?))
    }

    /// Open the packet socket on the interface (and set the link up when asked).
    pub fn open(&mut self, set_up: bool) -> Result<()> {
        let ifname = self.ifname.clone();
        let (sock, mac) = self.in_netns(|rt| {
            let l = rt.link_by_name(&ifname)?.ok_or_else(|| Error::msg(format!("interface {ifname} is gone")))?;
            if set_up && !l.is_up() {
                rt.set_up(l.index, &ifname, true)?;
            }
            Ok((PacketSocket::open(l.index.0, ETH_P_IP, &FILTER)?, l.mac))
        })?;
        self.client.mac = mac.0;
        self.sock = Some(sock);
        Ok(())
    }

    /// Send `out` if the socket is open; a failure is logged (the client retransmits).
    pub fn send(&self, out: Out) {
        if let Some(s) = &self.sock {
            if let Err(e) = s.send(&out.frame, out.dst_mac) {
                super::log(format_args!("{}: {e}", self.id));
            }
        }
    }

    pub fn lease_text(&self) -> String {
        match &self.client.lease {
            Some(l) => {
                let left = |t: Ms| {
                    if t == NEVER {
                        "never".to_string()
                    } else {
                        format!("{}s", t.saturating_sub(boottime_ms()) / 1000)
                    }
                };
                format!("{} from {} (renew in {}, expires in {})", l.addr(), l.server(), left(l.t1()), left(l.expiry()))
            }
            None => String::new(),
        }
    }

    pub fn addr_text(&self) -> String {
        self.client.lease.as_ref().map(|l| l.addr().to_string()).unwrap_or_default()
    }
}

/// The lease as a reply to ADD or CHECK.
pub fn result_of(e: &Entry) -> Result<crate::cni::CniResult> {
    match e.client.lease.as_ref().map(Lease::result) {
        Some(r) => r,
        None => Err(Error::msg(format!("no DHCP lease is held for {}", e.id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_jumps_land_on_the_returns() {
        // every conditional jump's targets are inside the program and the
        // drop branches all reach the final `ret #0`
        for (pc, i) in FILTER.iter().enumerate() {
            if i.code & 0x07 == 0x05 {
                assert!(pc + 1 + i.jt as usize <= 8 && pc + 1 + i.jf as usize <= 8);
            }
        }
        assert_eq!(FILTER[1].jf as usize + 2, 8);
        assert_eq!(FILTER[3].jt as usize + 4, 8);
        assert_eq!(FILTER[6].jf as usize + 7, 8);
        assert!(FILTER[8] == insn(0x06, 0, 0, 0));
    }
}
