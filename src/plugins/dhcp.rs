//! dhcp: addresses from a DHCP server on the container's network, through the
//! cnibox DHCP daemon (`cnibox dhcp daemon`, see `crate::dhcp`), which holds
//! and renews each lease for as long as the container lives. This plugin only
//! reads its config and asks the daemon: ADD for a lease, CHECK that it is
//! still held, DEL to release it, GC to release the leases of attachments
//! that are gone, STATUS whether the daemon answers.

use super::iface::valid_attachments;
use crate::cni::json::json_struct;
use crate::cni::{CniResult, Plugin, Request};
use crate::dhcp::rpc::{self, Request as Rpc};
use crate::error::{code, Error, Result};
use std::time::Duration;

pub static PLUGIN: Plugin = Plugin { name: "dhcp", min_version: "0.1.0", add, del, check, gc, status };

/// How long the plugin waits for the daemon, which answers ADD within its
/// `-timeout` (10 s unless set otherwise).
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Asked for unless `skipDefault`: mask, router, DNS, domain, routes (33, 121).
const DEFAULT_REQUEST: [u8; 6] = [1, 3, 6, 15, 33, 121];

/// Option names accepted in `request` and `provide` (the reference's, plus
/// the ones cnibox reads); any other option by its number.
const NAMES: &[(&str, u8)] = &[
    ("subnet-mask", 1),
    ("routers", 3),
    ("domain-name-servers", 6),
    ("host-name", 12),
    ("domain-name", 15),
    ("static-routes", 33),
    ("vendor-class-identifier", 60),
    ("dhcp-client-identifier", 61),
    ("user-class", 77),
    ("classless-static-routes", 121),
];

json_struct! {
    #[derive(Default)]
    struct NetConf {
        ipam: Ipam = get("ipam"),
    }
}

json_struct! {
    #[derive(Default)]
    struct Ipam {
        daemon_socket_path: String = get("daemonSocketPath"),
        request: Vec<RequestOpt> = get("request"),
        provide: Vec<ProvideOpt> = get("provide"),
        /// Metric of the routes in the result.
        priority: u32 = get("priority"),
    }
}

json_struct! {
    struct RequestOpt {
        skip_default: bool = get("skipDefault"),
        option: String = get("option"),
    }
}

json_struct! {
    struct ProvideOpt {
        option: String = req("option"),
        value: String = get("value"),
        from_arg: String = get("fromArg"),
    }
}

fn option_code(name: &str, field: &str) -> Result<u8> {
    if let Some((_, c)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(*c);
    }
    match name.parse::<u8>() {
        Ok(c) if c != 0 && c != 255 => Ok(c),
        _ => Err(Error::config(format!(
            "{field}: unknown DHCP option \"{name}\" (a name such as host-name, or a number 1-254)"
        ))),
    }
}

/// `<containerID>/<network>/<ifname>`, cut to 254 bytes as the reference does.
fn client_id(container_id: &str, network: &str, ifname: &str) -> String {
    let mut id = format!("{container_id}/{network}/{ifname}");
    let mut end = id.len().min(254);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.truncate(end);
    id
}

/// The daemon's socket and the request for `op`.
fn setup(req: &Request, op: &str) -> Result<(String, Rpc, u32)> {
    let c: NetConf = req.conf()?;
    let socket = match c.ipam.daemon_socket_path {
        s if s.is_empty() => rpc::DEFAULT_SOCKET.to_string(),
        s => s,
    };
    let mut r = Rpc { op: op.into(), id: client_id(&req.container_id, &req.name, &req.ifname), ..Default::default() };
    if op != "add" {
        return Ok((socket, r, c.ipam.priority));
    }
    let mut request = Vec::new();
    if !c.ipam.request.iter().any(|o| o.skip_default) {
        request.extend_from_slice(&DEFAULT_REQUEST);
    }
    for (i, o) in c.ipam.request.iter().enumerate().filter(|(_, o)| !o.option.is_empty()) {
        let code = option_code(&o.option, &format!("ipam.request[{i}].option"))?;
        if !request.contains(&code) {
            request.push(code);
        }
    }
    // CNI_ARGS as the reference reads it for `fromArg`: any key, no validation.
    let args: Vec<(&str, &str)> = req.args.split(';').filter_map(|kv| kv.split_once('=')).collect();
    for (i, o) in c.ipam.provide.iter().enumerate() {
        let field = format!("ipam.provide[{i}]");
        let code = option_code(&o.option, &format!("{field}.option"))?;
        let from_arg = args.iter().rev().find(|(k, _)| !o.from_arg.is_empty() && *k == o.from_arg).map(|(_, v)| *v);
        for v in [Some(o.value.as_str()), from_arg].into_iter().flatten().filter(|v| !v.is_empty()) {
            if v.len() > 255 {
                return Err(Error::config(format!(
                    "{field}: value for option \"{}\" is longer than 255 bytes",
                    o.option
                )));
            }
            r.provide.retain(|(c, _)| *c != code);
            r.provide.push((code, v.to_string()));
        }
    }
    // The daemon runs elsewhere: give it an absolute namespace path.
    r.netns = match req.netns.starts_with('/') {
        true => req.netns.clone(),
        false => std::env::current_dir().map(|d| d.join(&req.netns).to_string_lossy().into_owned()).unwrap_or_default(),
    };
    r.network = req.name.clone();
    r.ifname = req.ifname.clone();
    r.request = request;
    Ok((socket, r, c.ipam.priority))
}

fn add(req: &Request) -> Result<CniResult> {
    let (socket, r, priority) = setup(req, "add")?;
    let mut res =
        rpc::call(&socket, &r, RPC_TIMEOUT)?.ok_or_else(|| Error::msg("DHCP daemon answered ADD without a lease"))?;
    for rt in &mut res.routes {
        rt.priority = priority;
    }
    Ok(res)
}

/// Releases the lease. A daemon that is not running is an error (code 11):
/// the runtime retries DEL, and the daemon, restarted, still knows the lease.
fn del(req: &Request) -> Result<()> {
    let (socket, r, _) = setup(req, "del")?;
    rpc::call(&socket, &r, RPC_TIMEOUT).map(|_| ())
}

/// The lease is held, and it is the address prevResult has.
fn check(req: &Request) -> Result<()> {
    let (socket, r, _) = setup(req, "check")?;
    let held = rpc::call(&socket, &r, RPC_TIMEOUT)?.unwrap_or_default();
    if let Some(prev) = req.prev_result()? {
        for ip in &held.ips {
            if !prev.ips.iter().any(|p| p.address.addr == ip.address.addr) {
                return Err(Error::msg(format!("DHCP lease {} of {} is not in prevResult", ip.address, r.id)));
            }
        }
    }
    Ok(())
}

fn gc(req: &Request) -> Result<()> {
    let (socket, mut r, _) = setup(req, "gc")?;
    r.id.clear();
    r.network = req.name.clone();
    r.keep = valid_attachments(req)?.iter().map(|(id, ifname)| client_id(id, &req.name, ifname)).collect();
    rpc::call(&socket, &r, RPC_TIMEOUT).map(|_| ())
}

fn status(req: &Request) -> Result<()> {
    let (socket, mut r, _) = setup(req, "status")?;
    r.id.clear();
    rpc::call(&socket, &r, Duration::from_secs(5)).map(|_| ()).map_err(|e| e.with_code(code::PLUGIN_NOT_AVAILABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(config: &str, args: &str) -> Request {
        Request {
            command: crate::cni::Command::Add,
            container_id: "ctr1".into(),
            netns: "/run/netns/c1".into(),
            ifname: "eth0".into(),
            args: args.into(),
            path: String::new(),
            netns_override: false,
            config: config.as_bytes().to_vec().into(),
            cni_version: "1.0.0".into(),
            name: "lan".into(),
            ns: None,
        }
    }

    #[test]
    fn request_from_config() {
        let conf = r#"{"name":"lan","ipam":{"type":"dhcp","daemonSocketPath":"/tmp/d.sock",
            "request":[{"option":"42"},{"option":"routers"}],
            "provide":[{"option":"host-name","fromArg":"K8S_POD_NAME"},{"option":"60","value":"cnibox"}]}}"#;
        let (socket, r, _) = setup(&req(conf, "IgnoreUnknown=1;K8S_POD_NAME=pod-a"), "add").unwrap();
        assert_eq!(socket, "/tmp/d.sock");
        assert_eq!(
            String::from_utf8(r.to_line()).unwrap().trim_end(),
            r#"{"op":"add","id":"ctr1/lan/eth0","network":"lan","netns":"/run/netns/c1","ifname":"eth0","request":[1,3,6,15,33,121,42],"provide":[[12,"pod-a"],[60,"cnibox"]]}"#
        );
        // skipDefault keeps only what is listed; a missing CNI_ARGS key sends nothing
        let conf = r#"{"name":"lan","ipam":{"request":[{"skipDefault":true,"option":"subnet-mask"}],"provide":[{"option":"host-name","fromArg":"K8S_POD_NAME"}]}}"#;
        let (socket, r, _) = setup(&req(conf, ""), "add").unwrap();
        assert_eq!(socket, "/run/cni/dhcp.sock");
        assert_eq!((r.request, r.provide.len()), (vec![1], 0));
    }

    #[test]
    fn bad_options_name_the_field() {
        let e = setup(&req(r#"{"name":"lan","ipam":{"request":[{"option":"bogus"}]}}"#, ""), "add").err().unwrap();
        assert_eq!(e.code, 7);
        assert!(e.msg.starts_with(r#"ipam.request[0].option: unknown DHCP option "bogus""#), "{}", e.msg);
        let long = "x".repeat(256);
        let conf = format!(r#"{{"name":"lan","ipam":{{"provide":[{{"option":"host-name","value":"{long}"}}]}}}}"#);
        let e = setup(&req(&conf, ""), "add").err().unwrap();
        assert!(
            e.msg.contains("ipam.provide[0]: value for option \"host-name\" is longer than 255 bytes"),
            "{}",
            e.msg
        );
        let e = setup(&req(r#"{"name":"lan","ipam":{"priority":"high"}}"#, ""), "add").err().unwrap();
        assert!(e.msg.contains("field ipam.priority"), "{}", e.msg);
    }

    #[test]
    fn client_id_is_cut_to_254_bytes() {
        let id = client_id(&"c".repeat(251), "net", "eth0");
        assert_eq!(id.len(), 254);
        assert!(id.ends_with("/ne"));
    }
}
