//! bandwidth (chained): shape traffic to the container with a token bucket on
//! the host end of its veth, and traffic from it by redirecting the host end's
//! ingress to an IFB device (`bwp<hash>`) that carries a second token bucket.
//! All by rtnetlink; no `tc` process.

use crate::cni::json::json_struct;
use crate::cni::result::Interface;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result, Rollback};
use crate::rtnl::link::{Link, NewLink};
use crate::rtnl::tc::{Tbf, INGRESS_HANDLE, TC_H_INGRESS, TC_H_ROOT};
use crate::rtnl::Rtnl;

pub static PLUGIN: Plugin = Plugin {
    name: "bandwidth",
    min_version: "0.3.0",
    add,
    del,
    check,
    gc: crate::cni::skel::noop,
    status: crate::cni::skel::noop,
};

/// Queueing the reference allows before dropping, in microseconds (25 ms).
const LATENCY_US: u64 = 25_000;

json_struct! {
    #[derive(Default, Clone, Copy)]
    struct Entry {
        ingress_rate: Option<u64> = opt("ingressRate"),
        ingress_burst: Option<u64> = opt("ingressBurst"),
        egress_rate: Option<u64> = opt("egressRate"),
        egress_burst: Option<u64> = opt("egressBurst"),
    }
}

impl Entry {
    fn given(&self) -> bool {
        self.ingress_rate.is_some()
            || self.ingress_burst.is_some()
            || self.egress_rate.is_some()
            || self.egress_burst.is_some()
    }
}

json_struct! {
    struct Conf {
        ingress_rate: Option<u64> = opt("ingressRate"),
        ingress_burst: Option<u64> = opt("ingressBurst"),
        egress_rate: Option<u64> = opt("egressRate"),
        egress_burst: Option<u64> = opt("egressBurst"),
        runtime: Runtime = get("runtimeConfig"),
    }
}

json_struct! {
    #[derive(Default)]
    struct Runtime {
        bandwidth: Option<Entry> = opt("bandwidth"),
    }
}

/// (rate, burst) in bits per second and bits, for each direction.
struct Limits {
    ingress: (u64, u64),
    egress: (u64, u64),
}

fn load(req: &Request) -> Result<Limits> {
    let c: Conf = req.conf()?;
    let top = Entry {
        ingress_rate: c.ingress_rate,
        ingress_burst: c.ingress_burst,
        egress_rate: c.egress_rate,
        egress_burst: c.egress_burst,
    };
    // As in the reference, any top-level key means the top-level entry is used as a whole.
    let e = if top.given() { top } else { c.runtime.bandwidth.unwrap_or_default() };
    let pair = |r: Option<u64>, b: Option<u64>| -> Result<(u64, u64)> {
        let (r, b) = (r.unwrap_or(0), b.unwrap_or(0));
        if b == 0 && r != 0 {
            return Err(Error::config("if rate is set, burst must also be set"));
        }
        if r == 0 && b != 0 {
            return Err(Error::config("if burst is set, rate must also be set"));
        }
        if b / 8 >= u32::MAX as u64 {
            return Err(Error::config("burst cannot be more than 4GB"));
        }
        Ok((r, b))
    };
    Ok(Limits { ingress: pair(e.ingress_rate, e.ingress_burst)?, egress: pair(e.egress_rate, e.egress_burst)? })
}

/// Scheduler ticks per microsecond, from /proc/net/psched (15.625 on every
/// kernel with the nanosecond clock source; read anyway, as `tc` does).
fn ticks_per_us() -> f64 {
    let s = std::fs::read_to_string("/proc/net/psched").unwrap_or_default();
    let w: Vec<u32> = s.split_whitespace().filter_map(|x| u32::from_str_radix(x, 16).ok()).collect();
    match w.as_slice() {
        [t2us, us2t, res, ..] if *us2t > 0 => {
            let (t2us, factor) = if *res == 1_000_000_000 { (*us2t, 1000.0) } else { (*t2us, *res as f64 / 1e6) };
            t2us as f64 / *us2t as f64 * factor
        }
        _ => 15.625,
    }
}

/// The reference's TBF arithmetic: rate and burst in bytes, buffer = burst's
/// duration at rate in ticks, limit = 25 ms of rate plus the burst.
fn tbf(rate_bits: u64, burst_bits: u64) -> Result<Tbf> {
    let rate = rate_bits / 8;
    let burst = (burst_bits / 8) as u32;
    if rate == 0 || burst == 0 {
        return Err(Error::config(format!("invalid rate {rate_bits} or burst {burst_bits}: both must be at least 8")));
    }
    let burst_us = (burst as f64 * 1e6 / rate as f64) as u32;
    let buffer = (burst_us as f64 * ticks_per_us()) as u32;
    let limit = (rate as f64 * LATENCY_US as f64 / 1e6) as u64 + burst as u64;
    if buffer == 0 {
        return Err(Error::config(format!("burst {burst_bits} is too small for rate {rate_bits}")));
    }
    Ok(Tbf { rate, buffer, limit: limit.min(u32::MAX as u64) as u32, burst })
}

/// `bwp` + sha512(network + container id), 15 characters, as the reference names it.
fn ifb_name(network: &str, container_id: &str) -> String {
    format!("bwp{}", crate::sha512::hex(format!("{network}{container_id}").as_bytes(), 12))
}

/// The host end of the container's veth: the peer of CNI_IFNAME, which must
/// also be a host interface of prevResult.
fn host_interface(req: &Request, prev: &CniResult, host: &mut Rtnl) -> Result<Link> {
    if prev.interfaces.is_empty() {
        return Err(Error::msg("no interfaces provided"));
    }
    let ns = req.open_netns()?;
    let peer = Rtnl::in_netns(&ns)?.link_by_name(&req.ifname)?.map(|l| l.link).unwrap_or_default();
    if !peer.is_some() {
        return Err(Error::msg(format!("container interface {} has no veth peer", req.ifname)));
    }
    let l = host
        .link_by_index(peer)?
        .ok_or_else(|| Error::msg(format!("veth peer with index {peer} is not in host ns")))?;
    if !prev.interfaces.iter().any(|i| i.sandbox.is_empty() && i.name == l.name) {
        return Err(Error::msg("no veth peer of container interface found in host ns"));
    }
    Ok(l)
}

fn add(req: &Request) -> Result<CniResult> {
    let lim = load(req)?;
    let prev = req.prev_result()?;
    if lim.ingress.0 == 0 && lim.egress.0 == 0 {
        return prev.ok_or_else(|| Error::msg("must be called as chained plugin"));
    }
    let mut result = prev.ok_or_else(|| Error::msg("must be called as chained plugin"))?;
    let mut host = Rtnl::here()?;
    let h = host_interface(req, &result, &mut host)?;
    let ifb = ifb_name(&req.name, &req.container_id);
    let r = shape(&mut host, &h, &ifb, &lim, &mut result);
    let mut rb = Rollback::default();
    if r.is_err() {
        // Leave nothing half-made: the IFB and whatever qdiscs this ADD put on the veth.
        match host.link_by_name(&ifb) {
            Ok(Some(l)) => rb.note(host.delete_link(l.index, &ifb)),
            Ok(None) => {}
            Err(e) => rb.note(Err::<(), _>(e)),
        }
        rb.note(host.del_qdisc(h.index, &h.name, INGRESS_HANDLE, TC_H_INGRESS));
        rb.note(host.del_qdisc(h.index, &h.name, 0x0001_0000, TC_H_ROOT));
    }
    rb.finish(r).map(|_| result)
}

fn shape(host: &mut Rtnl, h: &Link, ifb: &str, lim: &Limits, result: &mut CniResult) -> Result<()> {
    if lim.ingress.0 > 0 {
        host.add_tbf(h.index, &h.name, &tbf(lim.ingress.0, lim.ingress.1)?)?;
    }
    if lim.egress.0 > 0 {
        let t = tbf(lim.egress.0, lim.egress.1)?;
        host.create_link(&NewLink {
            name: ifb,
            kind: "ifb",
            mtu: h.mtu,
            txqlen: h.txqlen,
            up: true,
            ..Default::default()
        })?;
        let dev = host.link_by_name(ifb)?.ok_or_else(|| Error::msg(format!("failed to look up {ifb}")))?;
        result.interfaces.push(Interface { name: ifb.to_string(), mac: dev.mac.to_string(), ..Default::default() });
        host.add_ingress_qdisc(h.index, &h.name)?;
        host.add_redirect_filter(h.index, &h.name, dev.index, ifb)?;
        host.add_tbf(dev.index, ifb, &t)?;
    }
    Ok(())
}

/// DEL removes the IFB; the veth's own qdiscs go with the veth.
fn del(req: &Request) -> Result<()> {
    load(req)?;
    let ifb = ifb_name(&req.name, &req.container_id);
    let mut host = Rtnl::here()?;
    match host.link_by_name(&ifb)? {
        Some(l) => match host.delete_link(l.index, &ifb) {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        },
        None => Ok(()),
    }
}

fn check(req: &Request) -> Result<()> {
    let lim = load(req)?;
    let prev = req.prev_result()?.ok_or_else(|| Error::msg("must be called as a chained plugin"))?;
    let mut host = Rtnl::here()?;
    let h = host_interface(req, &prev, &mut host)?;
    if lim.ingress.0 > 0 {
        check_tbf(&mut host, &h, &tbf(lim.ingress.0, lim.ingress.1)?)?;
    }
    if lim.egress.0 > 0 {
        let name = ifb_name(&req.name, &req.container_id);
        let dev = host.link_by_name(&name)?.ok_or_else(|| Error::msg(format!("get ifb device: {name} not found")))?;
        check_tbf(&mut host, &dev, &tbf(lim.egress.0, lim.egress.1)?)?;
        if !host.qdiscs(h.index)?.iter().any(|q| q.kind == "ingress") {
            return Err(Error::msg(format!("no ingress qdisc redirecting {} to {name}", h.name)));
        }
    }
    Ok(())
}

fn check_tbf(host: &mut Rtnl, dev: &Link, want: &Tbf) -> Result<()> {
    let qs = host.qdiscs(dev.index)?;
    let t = qs
        .iter()
        .find(|q| q.parent == TC_H_ROOT)
        .and_then(|q| q.tbf)
        .ok_or_else(|| Error::msg(format!("Failed to find tbf qdisc on {}", dev.name)))?;
    let what = if t.rate != want.rate {
        "Rate"
    } else if t.limit != want.limit {
        "Limit"
    } else if t.buffer != want.buffer {
        "Buffer"
    } else {
        return Ok(());
    };
    Err(Error::msg(format!("{what} doesn't match on {}", dev.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tbf_arithmetic_matches_the_reference() {
        // 1 Mbit/s, 10 kbit burst: 125000 B/s, 1250 B, 10 ms of burst = 10000 us.
        let t = tbf(1_000_000, 10_000).unwrap();
        assert_eq!(t.rate, 125_000);
        assert_eq!(t.burst, 1_250);
        assert_eq!(t.limit, 3_125 + 1_250);
        assert_eq!(t.buffer, (10_000.0 * ticks_per_us()) as u32);
        assert!(tbf(7, 100).is_err());
    }

    #[test]
    fn ifb_name_is_fifteen_chars() {
        let n = ifb_name("cbr0", "abc");
        assert_eq!(n.len(), 15);
        assert!(n.starts_with("bwp"));
        assert_eq!(n, format!("bwp{}", &crate::sha512::hex(b"cbr0abc", 12)));
    }
}
