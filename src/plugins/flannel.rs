//! flannel (meta plugin, as k3s and microk8s ship it): turns flanneld's
//! `subnet.env` into a bridge + host-local config for this node's subnet,
//! saves that config per container, and delegates to it. DEL replays the saved
//! config, so it works even after subnet.env changed or vanished.

use crate::cni::delegate::delegate;
use crate::cni::json::json_struct;
use crate::cni::{CniResult, Command, Plugin, Request};
use crate::error::{Error, Result};
use crate::json::{Map, Value};
use crate::net::IpNet;
use crate::sys::file;
use std::path::{Path, PathBuf};

pub static PLUGIN: Plugin = Plugin {
    name: "flannel",
    min_version: "0.1.0",
    add,
    del,
    check,
    gc: crate::cni::skel::noop,
    status: crate::cni::skel::noop,
};

const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
const DEFAULT_DATA_DIR: &str = "/var/lib/cni/flannel";

json_struct! {
    struct Conf {
        cni_version: String = get("cniVersion"),
        subnet_file: Option<String> = opt("subnetFile"),
        data_dir: Option<String> = opt("dataDir"),
        delegate: Option<Map> = opt("delegate"),
        ipam: Option<Map> = opt("ipam"),
        runtime_config: Option<Value> = opt("runtimeConfig"),
    }
}

impl Conf {
    fn data_dir(&self) -> Result<PathBuf> {
        let d = self.data_dir.as_deref().filter(|d| !d.is_empty()).unwrap_or(DEFAULT_DATA_DIR);
        if !d.starts_with('/') {
            return Err(Error::config(format!("dataDir \"{d}\" must be an absolute path")));
        }
        Ok(PathBuf::from(d))
    }
}

/// What flanneld wrote about this node.
#[derive(Default, PartialEq)]
struct SubnetEnv {
    network: Option<IpNet>,
    subnet: Option<IpNet>,
    ip6_network: Option<IpNet>,
    ip6_subnet: Option<IpNet>,
    mtu: Option<u32>,
    ipmasq: Option<bool>,
}

fn parse_subnet_env(path: &str, text: &str) -> Result<SubnetEnv> {
    let mut e = SubnetEnv::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim();
        let bad = |what: &str| Error::config(format!("{path}: invalid {k}='{v}': {what}"));
        let cidr = || v.parse::<IpNet>().map(|n| n.network()).map_err(|m| bad(&m));
        match k.trim() {
            "FLANNEL_NETWORK" => e.network = Some(cidr()?),
            "FLANNEL_SUBNET" => e.subnet = Some(cidr()?),
            "FLANNEL_IPV6_NETWORK" => e.ip6_network = Some(cidr()?),
            "FLANNEL_IPV6_SUBNET" => e.ip6_subnet = Some(cidr()?),
            "FLANNEL_MTU" => e.mtu = Some(v.parse().map_err(|_| bad("not a number"))?),
            "FLANNEL_IPMASQ" => e.ipmasq = Some(v == "true"),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    if e.network.is_none() && e.ip6_network.is_none() {
        missing.extend(["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]);
    }
    if e.subnet.is_none() && e.ip6_subnet.is_none() {
        missing.extend(["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"]);
    }
    if e.mtu.is_none() {
        missing.push("FLANNEL_MTU");
    }
    if e.ipmasq.is_none() {
        missing.push("FLANNEL_IPMASQ");
    }
    if !missing.is_empty() {
        return Err(Error::config(format!("{path} is missing {}", missing.join(", "))));
    }
    Ok(e)
}

/// The delegate's config exactly as the flannel CNI plugin builds it: the
/// user's `delegate` keys win; type bridge, ipMasq = !FLANNEL_IPMASQ, mtu,
/// isGateway (bridge); host-local ranges for the node subnet(s) and routes to
/// the cluster network(s).
fn delegate_conf(name: &str, c: &Conf, env: &SubnetEnv) -> Result<Map> {
    let mut d = c.delegate.clone().unwrap_or_default();
    if d.get("type").is_some_and(|t| t.as_str().is_none()) {
        return Err(Error::config("'delegate' dictionary, if present, must have (string) 'type' field"));
    }
    if d.contains_key("name") {
        return Err(Error::config("'delegate' dictionary must not have 'name' field, it'll be set by flannel"));
    }
    if d.contains_key("ipam") {
        return Err(Error::config("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"));
    }
    if let Some(rc) = &c.runtime_config {
        d.insert("runtimeConfig", rc.clone());
    }
    d.insert("name", name.into());
    d.insert_default("type", "bridge".into());
    d.insert_default("ipMasq", Value::Bool(!env.ipmasq.unwrap_or(false)));
    d.insert_default("mtu", u64::from(env.mtu.unwrap_or(0)).into());
    if d.get("type").and_then(Value::as_str) == Some("bridge") {
        d.insert_default("isGateway", Value::Bool(true));
    }
    if !c.cni_version.is_empty() {
        d.insert("cniVersion", c.cni_version.as_str().into());
    }
    let mut ipam = c.ipam.clone().unwrap_or_default();
    ipam.insert_default("type", "host-local".into());
    // One object of one key each: `{"dst": net}`, `[{"subnet": net}]`.
    let one = |k: &str, n: IpNet| {
        let mut m = Map::new();
        m.insert(k, n.to_string().into());
        Value::Object(m)
    };
    let ranges = [env.subnet, env.ip6_subnet].into_iter().flatten().map(|s| Value::Array(vec![one("subnet", s)]));
    ipam.insert("ranges", Value::Array(ranges.collect()));
    let mut routes = match ipam.get("routes") {
        Some(Value::Array(r)) => r.clone(),
        Some(_) => return Err(Error::config("failed to read IPAM routes: ipam.routes must be a list")),
        None => Vec::new(),
    };
    for n in [env.network, env.ip6_network].into_iter().flatten() {
        routes.push(one("dst", n));
    }
    ipam.insert("routes", Value::Array(routes));
    d.insert("ipam", Value::Object(ipam));
    Ok(d)
}

fn scratch(dir: &Path, container_id: &str) -> PathBuf {
    // The container id was validated by skel (no '/', no leading '.'), so it is one path component.
    dir.join(container_id)
}

/// subnet.env and the saved configs are a few hundred bytes. The config names
/// both paths: a FIFO, `/dev/zero` or a huge file there is refused at once
/// instead of hanging the call or filling its memory; a saved config is never
/// read through a symbolic link.
fn read_small(p: &Path, follow: bool) -> Result<Option<Vec<u8>>> {
    crate::sys::guarded::read_regular(p, 1 << 20, follow)
}

/// The same request, carrying another config (the delegate's).
fn with_config(req: &Request, config: Vec<u8>) -> Request {
    Request { config: config.into(), ..req.clone() }
}

fn delegate_type(conf: &[u8]) -> Result<String> {
    crate::cni::config::parse_with(conf, "saved flannel delegate config", |o| o.req("type"))
}

fn add(req: &Request) -> Result<CniResult> {
    let c: Conf = req.conf()?;
    let dir = c.data_dir()?;
    let path = c.subnet_file.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_SUBNET_FILE.into());
    let text = read_small(Path::new(&path), true)
        .and_then(|b| b.ok_or_else(|| Error::os(format_args!("open {path}"), libc::ENOENT)))
        .and_then(|b| String::from_utf8(b).map_err(|_| Error::msg(format!("{path} is not UTF-8 text"))))
        .map_err(|e| e.context("read flannel subnet file"))?;
    let env = parse_subnet_env(&path, &text)?;
    let bytes = delegate_conf(&req.name, &c, &env)?.to_json().into_bytes();
    let ty = delegate_type(&bytes)?;
    file::create_dir_all(&dir, 0o700)?;
    crate::sys::guarded::check_private_dir(&dir)?;
    // Saved before delegating (and kept if the delegate fails), so that the
    // runtime's DEL can always undo whatever the delegate did.
    file::write_atomic(&scratch(&dir, &req.container_id), &bytes, 0o600)?;
    let r = delegate(&ty, Command::Add, &with_config(req, bytes))?;
    r.ok_or_else(|| Error::msg(format!("delegate {ty} returned no result")))
        .map_err(|e| e.context("failed to delegate add"))
}

fn del(req: &Request) -> Result<()> {
    let c: Conf = req.conf()?;
    let dir = c.data_dir()?;
    if !dir.exists() {
        return Ok(());
    }
    crate::sys::guarded::check_private_dir(&dir)?;
    let p = scratch(&dir, &req.container_id);
    let Some(bytes) = read_small(&p, false)? else { return Ok(()) };
    let Ok(ty) = delegate_type(&bytes) else {
        // Unreadable scratch file: nothing can be replayed; the reference gives up the same way.
        eprintln!("flannel: {} is not a valid delegate config; removing it", p.display());
        let _ = std::fs::remove_file(&p);
        return Ok(());
    };
    delegate(&ty, Command::Del, &with_config(req, bytes))?;
    std::fs::remove_file(&p)
        .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        .map_err(|e| Error::os(format_args!("remove {}", p.display()), e.raw_os_error().unwrap_or(0)))
}

/// The reference's CHECK does nothing; cnibox checks the delegate with the
/// saved config and the runtime's prevResult when both are there.
fn check(req: &Request) -> Result<()> {
    let c: Conf = req.conf()?;
    let Some(prev) = req.conf_with(|o| Ok(o.raw("prevResult").cloned()))? else { return Ok(()) };
    let dir = c.data_dir()?;
    if !dir.exists() {
        return Ok(());
    }
    crate::sys::guarded::check_private_dir(&dir)?;
    let Some(bytes) = read_small(&scratch(&dir, &req.container_id), false)? else { return Ok(()) };
    let mut d: Map = crate::cni::config::parse(&bytes, "saved flannel delegate config")?;
    d.insert("prevResult", prev);
    let ty = d.get("type").and_then(Value::as_str).unwrap_or("bridge").to_string();
    let bytes = d.to_json().into_bytes();
    delegate(&ty, Command::Check, &with_config(req, bytes)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str =
        "FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

    #[test]
    fn subnet_env_parsing_and_missing_keys() {
        let e = parse_subnet_env("/x", ENV).unwrap();
        assert_eq!(e.subnet.unwrap().to_string(), "10.42.3.0/24");
        assert_eq!(e.mtu, Some(1450));
        assert_eq!(e.ipmasq, Some(true));
        let err = parse_subnet_env("/run/flannel/subnet.env", "FLANNEL_NETWORK=10.42.0.0/16\n").err().unwrap();
        assert_eq!(
            err.msg,
            "/run/flannel/subnet.env is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ"
        );
        let err = parse_subnet_env("/f", "FLANNEL_SUBNET=10.42.300.1/24\n").err().unwrap();
        assert!(err.msg.contains("FLANNEL_SUBNET") && err.msg.starts_with("/f:"), "{}", err.msg);
        let err = parse_subnet_env("/f", &ENV.replace("1450", "big")).err().unwrap();
        assert!(err.msg.contains("FLANNEL_MTU"), "{}", err.msg);
    }

    #[test]
    fn delegate_config_as_flannel_builds_it() {
        let c: Conf = crate::cni::config::parse(
            br#"{"cniVersion":"1.0.0","delegate":{"hairpinMode":true,"forceAddress":true,"isDefaultGateway":true},
                "runtimeConfig":{"portMappings":[]}}"#,
            "flannel",
        )
        .ok()
        .unwrap();
        let env = parse_subnet_env(
            "/x",
            &format!("{ENV}FLANNEL_IPV6_NETWORK=fd42::/56\nFLANNEL_IPV6_SUBNET=fd42:0:0:3::1/64\n"),
        )
        .unwrap();
        let d = delegate_conf("cbr0", &c, &env).unwrap().to_json();
        let want = crate::json::json!({
            "name": "cbr0", "type": "bridge", "cniVersion": "1.0.0", "ipMasq": false, "mtu": 1450, "isGateway": true,
            "hairpinMode": true, "forceAddress": true, "isDefaultGateway": true,
            "runtimeConfig": {"portMappings": []},
            "ipam": {"type": "host-local",
                     "ranges": [[{"subnet": "10.42.3.0/24"}], [{"subnet": "fd42:0:0:3::/64"}]],
                     "routes": [{"dst": "10.42.0.0/16"}, {"dst": "fd42::/56"}]}
        });
        assert_eq!(d, want.to_json());
        // Keys sorted, as the reference (Go's encoding/json of a map) writes them.
        assert_eq!(
            d,
            r#"{"cniVersion":"1.0.0","forceAddress":true,"hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.42.3.0/24"}],[{"subnet":"fd42:0:0:3::/64"}]],"routes":[{"dst":"10.42.0.0/16"},{"dst":"fd42::/56"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","runtimeConfig":{"portMappings":[]},"type":"bridge"}"#
        );
    }

    #[test]
    fn delegate_may_not_set_name_or_ipam() {
        let env = parse_subnet_env("/x", ENV).unwrap();
        for bad in [r#"{"delegate":{"name":"x"}}"#, r#"{"delegate":{"ipam":{}}}"#, r#"{"delegate":{"type":3}}"#] {
            let c: Conf = crate::cni::config::parse(bad.as_bytes(), "flannel").ok().unwrap();
            assert_eq!(delegate_conf("n", &c, &env).err().unwrap().code, 7, "{bad}");
        }
    }
}
