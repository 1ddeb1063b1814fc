//! portmap (chained): forward host ports to the container, with nftables
//! rules written over netlink (layout in `nft::portmap`).
//!
//! ADD: read the mappings (`runtimeConfig.portMappings`) and the container's
//! addresses (prevResult), write every family's rules in one batch, delete
//! stale UDP conntrack entries of the mapped ports, and let 127.0.0.1 be
//! routed to the container's side (`route_localnet`) when localhost
//! connections are masqueraded. The output is the prevResult.

use crate::cni::json::json_struct;
use crate::cni::result::CniResult;
use crate::cni::{Plugin, Request};
use crate::error::{code, Context, Error, Result};
use crate::json::Value;
use crate::nft::expr::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use crate::nft::portmap::{self as rules, Mapping, Spec};
use std::net::IpAddr;

pub static PLUGIN: Plugin =
    Plugin { name: "portmap", min_version: "0.1.0", add, del, check, gc, status: crate::cni::skel::noop };

json_struct! {
    struct Conf {
        backend: Option<String> = opt("backend"),
        snat: Option<bool> = opt("snat"),
        masq_all: bool = get("masqAll"),
        mark_masq_bit: Option<Value> = opt("markMasqBit"),
        external_set_mark_chain: Option<Value> = opt("externalSetMarkChain"),
        conditions_v4: Option<Vec<String>> = opt("conditionsV4"),
        conditions_v6: Option<Vec<String>> = opt("conditionsV6"),
        runtime: Runtime = get("runtimeConfig"),
    }
}

json_struct! {
    #[derive(Default)]
    struct Runtime {
        port_mappings: Vec<PortMapping> = get("portMappings"),
    }
}

json_struct! {
    struct PortMapping {
        host_port: i64 = req("hostPort"),
        container_port: i64 = req("containerPort"),
        protocol: String = get("protocol"),
        host_ip: String = get("hostIP"),
    }
}

struct Config {
    snat: bool,
    masq_all: bool,
    mappings: Vec<Mapping>,
}

fn unsupported(field: &str, why: &str) -> Error {
    Error::new(code::UNSUPPORTED_FIELD, format!("portmap: {field} is not supported: {why}"))
}

fn load(req: &Request) -> Result<Config> {
    let c: Conf = req.conf()?;
    match c.backend.as_deref() {
        None | Some("nftables") => {}
        Some("iptables") => {
            return Err(unsupported(
                "backend \"iptables\"",
                "cnibox writes nftables rules only (set \"backend\" to \"nftables\" or remove it)",
            ))
        }
        Some(b) => return Err(Error::config(format!("portmap: unrecognized backend \"{b}\" (expected \"nftables\")"))),
    }
    if c.mark_masq_bit.is_some() {
        return Err(unsupported(
            "markMasqBit",
            "it only applies to the iptables backend; the nftables rules masquerade without a mark",
        ));
    }
    if c.external_set_mark_chain.is_some() {
        return Err(unsupported("externalSetMarkChain", "it only applies to the iptables backend"));
    }
    for (field, cond) in [("conditionsV4", &c.conditions_v4), ("conditionsV6", &c.conditions_v6)] {
        match cond.as_deref() {
            None | Some([]) => {}
            Some([first, ..]) if first.is_empty() => {}
            Some([first, ..]) if first.starts_with(['-', '!']) => {
                return Err(unsupported(field, "these are iptables conditions and cnibox has no iptables backend"))
            }
            Some(_) => return Err(unsupported(field, "cnibox does not translate nft expressions given as text")),
        }
    }
    let mut mappings = Vec::with_capacity(c.runtime.port_mappings.len());
    for (i, p) in c.runtime.port_mappings.iter().enumerate() {
        let at = |what: String| Error::config(format!("portmap: runtimeConfig.portMappings[{i}]: {what}"));
        let port = |v: i64, name: &str| {
            u16::try_from(v).ok().filter(|p| *p > 0).ok_or_else(|| at(format!("invalid {name} port number: {v}")))
        };
        let proto = match p.protocol.to_ascii_lowercase().as_str() {
            "" | "tcp" => IPPROTO_TCP,
            "udp" => IPPROTO_UDP,
            "sctp" => IPPROTO_SCTP,
            other => return Err(at(format!("invalid protocol \"{other}\": expected tcp, udp or sctp"))),
        };
        let host_ip = match p.host_ip.as_str() {
            "" => None,
            s => Some(s.parse::<IpAddr>().map_err(|_| at(format!("invalid hostIP \"{s}\"")))?),
        };
        mappings.push(Mapping {
            host_port: port(p.host_port, "host")?,
            container_port: port(p.container_port, "container")?,
            proto,
            host_ip,
        });
    }
    Ok(Config { snat: c.snat.unwrap_or(true), masq_all: c.masq_all, mappings })
}

/// The container's first IPv4 and first IPv6 address: those of an `ips`
/// entry that names the CNI_IFNAME interface inside a sandbox, or names none.
fn container_ips(prev: &CniResult, ifname: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(2);
    for ip in &prev.ips {
        let ours = match ip.interface.and_then(|i| prev.interfaces.get(i)) {
            Some(intf) => intf.name == ifname && !intf.sandbox.is_empty(),
            None => true,
        };
        if ours && !out.iter().any(|a| a.is_ipv4() == ip.address.is_ipv4()) {
            out.push(ip.address.addr);
        }
    }
    out
}

fn add(req: &Request) -> Result<CniResult> {
    let c = load(req)?;
    let prev =
        req.prev_result()?.ok_or_else(|| Error::msg("portmap: must be called as chained plugin (no prevResult)"))?;
    let ips = container_ips(&prev, &req.ifname);
    if c.mappings.is_empty() || ips.is_empty() {
        return Ok(prev);
    }
    let owner = rules::owner_key(&req.name, &req.ifname, &req.container_id);
    rules::setup(&Spec {
        container_id: &req.container_id,
        ips: &ips,
        mappings: &c.mappings,
        snat: c.snat,
        masq_all: c.masq_all,
        owner: owner.as_bytes(),
    })?;
    if c.snat {
        if let Some(IpAddr::V4(v4)) = ips.iter().find(|a| a.is_ipv4()) {
            if let Err(e) = route_localnet(*v4) {
                let _ = rules::teardown(&req.container_id);
                return Err(e);
            }
        }
    }
    flush_udp_conntrack(&ips, &c.mappings);
    Ok(prev)
}

/// Without `route_localnet` on the interface that leads to the container,
/// the kernel refuses to route a packet from 127.0.0.1 out of it, and
/// localhost connections to a host port would die after the DNAT. Set on that
/// one interface only, where the reference sets it.
fn route_localnet(ip: std::net::Ipv4Addr) -> Result<()> {
    let Some((dev, now)) = route_dev(ip) else { return Ok(()) };
    if now == Some(1) {
        return Ok(()); // the lookup read it: set by an earlier pod
    }
    crate::sys::sysctl::write(&format!("net/ipv4/conf/{dev}/route_localnet"), "1")
        .context("portmap: enable route_localnet")
}

/// The name of the interface the node routes `ip` through, and its
/// route_localnet; None when the lookup fails (the reference then skips
/// the sysctl too).
fn route_dev(ip: std::net::Ipv4Addr) -> Option<(String, Option<u32>)> {
    let mut rt = crate::rtnl::Rtnl::here().ok()?;
    let r = rt.route_get(&ip.into()).ok()?;
    rt.link_by_index(r.oif).ok()?.map(|l| (l.name, l.route_localnet))
}

/// UDP has no connection to end, so a flow that reached the host port before
/// the mapping existed keeps its old conntrack entry (and destination) for as
/// long as packets keep coming. Failures only cost that, so they are reported
/// on stderr and do not fail the ADD, as in the reference.
fn flush_udp_conntrack(ips: &[IpAddr], mappings: &[Mapping]) {
    for ip in ips {
        let ports: Vec<u16> = mappings
            .iter()
            .filter(|m| m.proto == IPPROTO_UDP && m.applies(ip.is_ipv4()))
            .map(|m| m.host_port)
            .collect();
        let family = if ip.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 } as u8;
        if let Err(e) = crate::nft::conntrack::delete_by_dport(family, IPPROTO_UDP, &ports) {
            eprintln!("portmap: failed to delete stale UDP conntrack entries for {ip}: {e}");
        }
    }
}

/// DEL removes every rule of the container id, whatever the config says:
/// the reference skips DEL when the runtime sends no mappings, and leaks; and
/// a config refused at ADD must not make the runtime's DEL fail forever.
fn del(req: &Request) -> Result<()> {
    rules::teardown(&req.container_id)
}

fn check(req: &Request) -> Result<()> {
    let c = load(req)?;
    let prev = req.prev_result()?.ok_or_else(|| Error::msg("portmap: required prevResult missing"))?;
    if c.mappings.is_empty() {
        return Ok(());
    }
    let ips = container_ips(&prev, &req.ifname);
    rules::check(&Spec {
        container_id: &req.container_id,
        ips: &ips,
        mappings: &c.mappings,
        snat: c.snat,
        masq_all: c.masq_all,
        owner: b"",
    })
}

/// Rules of this network's attachments not among the valid ones go.
fn gc(req: &Request) -> Result<()> {
    load(req)?;
    let valid = crate::plugins::iface::valid_attachments(req)?;
    rules::gc(&req.name, &valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::skel::Command;

    fn req(conf: &str) -> Request {
        Request {
            command: Command::Add,
            container_id: "ctr1".into(),
            netns: String::new(),
            ifname: "eth0".into(),
            args: String::new(),
            path: String::new(),
            netns_override: false,
            config: conf.as_bytes().to_vec().into(),
            cni_version: "1.0.0".into(),
            name: "n".into(),
            ns: None,
        }
    }

    fn err(conf: &str) -> Error {
        load(&req(conf)).err().expect("config must be refused")
    }

    #[test]
    fn iptables_only_options_are_refused_by_name() {
        for (conf, field) in [
            (r#"{"backend":"iptables"}"#, "backend \"iptables\""),
            (r#"{"markMasqBit":13}"#, "markMasqBit"),
            (r#"{"externalSetMarkChain":"KUBE-MARK-MASQ"}"#, "externalSetMarkChain"),
            (r#"{"conditionsV4":["-s","1.2.3.4"]}"#, "conditionsV4"),
            (r#"{"conditionsV6":["!","-s","12::34"]}"#, "conditionsV6"),
        ] {
            let e = err(conf);
            assert_eq!(e.code, code::UNSUPPORTED_FIELD, "{conf}");
            assert!(e.msg.contains(field), "{}", e.msg);
        }
        assert_eq!(err(r#"{"backend":"ebpf"}"#).code, code::INVALID_CONFIG);
        assert!(load(&req(r#"{"backend":"nftables","conditionsV4":[]}"#)).is_ok());
    }

    #[test]
    fn mappings_are_validated_with_their_index() {
        let c = load(&req(
            r#"{"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"TCP"},
               {"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"192.168.1.1"},{"hostPort":9,"containerPort":9,"protocol":""}]}}"#,
        ))
        .unwrap();
        assert!(c.snat && !c.masq_all);
        assert_eq!(c.mappings.len(), 3);
        assert_eq!(c.mappings[0].proto, IPPROTO_TCP);
        assert_eq!(c.mappings[1].host_ip, Some("192.168.1.1".parse().unwrap()));
        assert_eq!(c.mappings[2].proto, IPPROTO_TCP);
        let e = err(
            r#"{"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80},{"hostPort":0,"containerPort":80}]}}"#,
        );
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("portMappings[1]: invalid host port number: 0"), "{}", e.msg);
        let e = err(r#"{"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":70000}]}}"#);
        assert!(e.msg.contains("invalid container port number: 70000"), "{}", e.msg);
        let e = err(r#"{"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}}"#);
        assert!(e.msg.contains("invalid protocol \"icmp\""), "{}", e.msg);
        let e = err(r#"{"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"nope"}]}}"#);
        assert!(e.msg.contains("invalid hostIP \"nope\""), "{}", e.msg);
        let e = err(r#"{"runtimeConfig":{"portMappings":[{"hostPort":"80","containerPort":80}]}}"#);
        assert!(e.msg.contains("hostPort"), "{}", e.msg);
    }

    #[test]
    fn container_addresses_come_from_the_sandbox_interface() {
        let prev = CniResult::from_json(
            br#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/x"}],
            "ips":[{"address":"10.1.0.1/24","interface":0},{"address":"10.1.0.5/24","interface":2},{"address":"10.1.0.6/24","interface":2},
                   {"address":"fd00::5/64"}]}"#,
        )
        .unwrap();
        let ips = container_ips(&prev, "eth0");
        assert_eq!(ips, vec!["10.1.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        assert_eq!(container_ips(&prev, "eth1"), vec!["fd00::5".parse::<IpAddr>().unwrap()]);
    }
}
