//! tuning (chained): sysctls of the container's network namespace and link
//! settings of its interface (MAC, MTU, promiscuous, all-multicast, queue
//! length). The original link settings are saved first and put back on DEL.

use super::iface::RuntimeMac;
use crate::cni::args::CniArgs;
use crate::cni::json::{json_struct, map_of};
use crate::cni::json_writer::JsonWriter;
use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result};
use crate::net::Mac;
use crate::regex::Regex;
use crate::rtnl::link::{IFF_PROMISC, IFLA_TXQLEN};
use crate::rtnl::Rtnl;
use crate::sys::dir::{stat_file, Dir};
use crate::sys::sysctl;
use std::path::{Path, PathBuf};

pub static PLUGIN: Plugin = Plugin {
    name: "tuning",
    min_version: "0.1.0",
    add,
    del,
    check,
    gc: crate::cni::skel::noop,
    status: crate::cni::skel::noop,
};

const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";
const ALLOWLIST: &str = "/etc/cni/tuning/allowlist.conf";
const IFF_ALLMULTI: u32 = libc::IFF_ALLMULTI as u32;

json_struct! {
    /// What can be set, from the config or from `args.cni` (which wins).
    #[derive(Default, Clone)]
    struct Settings {
        sysctl: Option<Vec<(String, String)>> = opt_with("sysctl", map_of),
        mac: Option<String> = opt("mac"),
        promisc: Option<bool> = opt("promisc"),
        mtu: Option<u32> = opt("mtu"),
        allmulti: Option<bool> = opt("allmulti"),
        tx_qlen: Option<u32> = opt("txQLen"),
    }
}

json_struct! {
    struct Conf {
        /// The settings at the top level of the config.
        own: Settings = flatten(),
        data_dir: Option<String> = opt("dataDir"),
        args: Option<ArgsCni> = opt("args"),
        runtime_config: RuntimeMac = get("runtimeConfig"),
    }
}

json_struct! {
    struct ArgsCni {
        cni: Option<Settings> = opt("cni"),
    }
}

json_struct! {
    /// The link's settings before tuning, kept for DEL.
    #[derive(PartialEq)]
    struct Backup {
        mac: Mac = req("mac"),
        mtu: u32 = req("mtu"),
        promisc: bool = req("promisc"),
        allmulti: bool = req("allmulti"),
        tx_qlen: u32 = req("txQlen"),
    }
}

impl Backup {
    fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.begin_object().key("mac").display(&self.mac).key("mtu").number(self.mtu.into());
        w.key("promisc").boolean(self.promisc).key("allmulti").boolean(self.allmulti);
        w.key("txQlen").number(self.tx_qlen.into()).end_object();
        w.finish()
    }
}

/// The effective settings with sysctl keys resolved to paths under /proc/sys/net.
struct Tuning {
    sysctls: Vec<(String, String)>,
    mac: Option<Mac>,
    promisc: Option<bool>,
    mtu: Option<u32>,
    allmulti: Option<bool>,
    tx_qlen: Option<u32>,
    data_dir: PathBuf,
}

fn load(req: &Request) -> Result<Tuning> {
    let c: Conf = req.conf()?;
    let over = c.args.and_then(|a| a.cni).unwrap_or_default();
    let cargs = CniArgs::parse(&req.args, &["MAC"])?;
    let mac_src = [c.own.mac, cargs.get("MAC").map(str::to_string), c.runtime_config.mac, over.mac]
        .into_iter()
        .flatten()
        .rfind(|m| !m.is_empty());
    let data_dir = c.data_dir.filter(|d| !d.is_empty()).unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    if !data_dir.starts_with('/') {
        return Err(Error::config(format!("dataDir \"{data_dir}\" must be an absolute path")));
    }
    let raw = over.sysctl.or(c.own.sysctl).unwrap_or_default();
    Ok(Tuning {
        sysctls: sysctl_paths(&raw, &req.ifname)?,
        mac: mac_src.map(|m| m.parse().map_err(Error::config)).transpose()?,
        promisc: over.promisc.or(c.own.promisc),
        mtu: over.mtu.or(c.own.mtu),
        allmulti: over.allmulti.or(c.own.allmulti),
        tx_qlen: over.tx_qlen.or(c.own.tx_qlen),
        data_dir: PathBuf::from(data_dir),
    })
}

/// Turn "net.ipv4.conf.IFNAME.arp_filter" (or the slashed form) into
/// "net/ipv4/conf/eth0/arp_filter": only under net/, no traversal, no
/// duplicates, and allowed by the allowlist file when there is one.
fn sysctl_paths(raw: &[(String, String)], ifname: &str) -> Result<Vec<(String, String)>> {
    let allow: Option<Vec<Regex>> = match std::fs::read_to_string(ALLOWLIST) {
        Ok(text) => {
            // A loop, not `collect` into a Result (a kilobyte more).
            let mut list = Vec::new();
            for l in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                list.push(Regex::new(l).map_err(|e| Error::config(format!("{ALLOWLIST}: {e}")))?);
            }
            Some(list)
        }
        Err(_) => None,
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut dotted_keys: Vec<String> = Vec::new();
    for (key, value) in raw {
        // Split first, substitute after: interface names may contain dots.
        let parts: Vec<&str> = if key.contains('/') { key.split('/').collect() } else { key.split('.').collect() };
        let parts: Vec<&str> =
            parts.into_iter().filter(|p| !p.is_empty()).map(|p| if p == "IFNAME" { ifname } else { p }).collect();
        if parts.first() != Some(&"net") || parts.iter().any(|p| *p == ".." || *p == ".") || parts.len() < 2 {
            return Err(Error::config(format!("invalid net sysctl key: '{key}'")));
        }
        if value.contains('\n') {
            return Err(Error::config(format!("sysctl {key}: value may not contain a newline")));
        }
        let dotted = parts.join(".");
        if let Some(list) = &allow {
            if !list.iter().any(|r| r.is_match(&dotted)) {
                return Err(Error::config(format!(
                    "sysctl {dotted} is not allowed. Only the following sysctls are allowed: {ALLOWLIST}"
                )));
            }
        }
        out.push((parts.join("/"), value.clone()));
        dotted_keys.push(dotted);
    }
    // Keys a pod author writes, up to the config's 1 MiB: duplicates found
    // by sorting, not by scanning `out` for each key.
    let mut order: Vec<usize> = (0..out.len()).collect();
    crate::sort::sort_by(&mut order, |&a, &b| out[a].0 < out[b].0);
    if let Some(w) = order.windows(2).find(|w| out[w[0]].0 == out[w[1]].0) {
        return Err(Error::config(format!("duplicate sysctl key: {}", dotted_keys[w[0]])));
    }
    Ok(out)
}

fn backup_name(req: &Request) -> String {
    format!("{}_{}.json", req.container_id, req.ifname)
}

/// The data directory, which root alone may change: DEL applies what it
/// finds there to a link (with host-device, a host NIC), so a backup planted
/// by anyone else must never be read. None when it does not exist.
fn data_dir(t: &Tuning, create: bool) -> Result<Option<Dir>> {
    Dir::open_trusted(&t.data_dir, create.then_some(0o700), false).map_err(|e| e.context("tuning: dataDir"))
}

/// The saved settings, if there are any: a regular file owned by root, or an error.
fn read_backup(dir: &Dir, path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    let shown = || path.join(name).display().to_string();
    let f = match dir.open_file(name, libc::O_RDONLY, 0) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.context(path.display())),
    };
    let st = stat_file(&f).map_err(|e| e.context(shown()))?;
    if !st.is_file() || !st.owned_by_us() {
        let why = if st.is_file() { format!("it is owned by uid {}", st.uid) } else { format!("it is {}", st.kind()) };
        return Err(Error::msg(format!("tuning: refusing saved settings {}: {why}", shown())));
    }
    // A backup is about a hundred bytes; what does not fit is not one of ours.
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, 0).map_err(|e| Error::from(e).context(shown()))?;
    buf.truncate(n);
    Ok(Some(buf))
}

fn changes_link(t: &Tuning) -> bool {
    t.mac.is_some() || t.promisc.is_some() || t.mtu.is_some() || t.allmulti.is_some() || t.tx_qlen.is_some()
}

fn add(req: &Request) -> Result<CniResult> {
    let t = load(req)?;
    let mut result = req.prev_result()?.ok_or_else(|| Error::msg("must be called as chained plugin"))?;
    let ns = req.open_netns()?;
    // Where the original link settings go, refused before anything changes.
    let dir = match changes_link(&t) {
        true => Some(data_dir(&t, true)?.ok_or_else(|| Error::msg("tuning: dataDir vanished"))?),
        false => None,
    };
    ns.run(|| {
        for (k, v) in &t.sysctls {
            sysctl::write(k, v)?;
        }
        Ok(())
    })?;
    let Some(dir) = dir else { return Ok(result) };
    let mut rt = Rtnl::in_netns(&ns)?;
    let ifn = &req.ifname;
    let l = rt
        .link_by_name(ifn)?
        .ok_or_else(|| Error::msg(format!("failed to find interface {ifn} in netns \"{}\"", req.netns)))?;
    let name = backup_name(req);
    // Settings saved by an earlier ADD are the original ones: keep them.
    if read_backup(&dir, &t.data_dir, &name)?.is_none() {
        let b = Backup {
            mac: l.mac,
            mtu: l.mtu,
            promisc: l.flags & IFF_PROMISC != 0,
            allmulti: l.flags & IFF_ALLMULTI != 0,
            tx_qlen: l.txqlen,
        };
        dir.replace(&name, b.to_json().as_bytes(), 0o600).map_err(|e| e.context(t.data_dir.display()))?;
    }
    apply(&mut rt, l.index, ifn, t.mac, t.mtu, t.promisc, t.allmulti, t.tx_qlen)?;
    if let Some(m) = t.mac {
        for i in result.interfaces.iter_mut().filter(|i| i.name == *ifn && i.sandbox == req.netns) {
            i.mac = m.to_string();
        }
    }
    Ok(result)
}

#[allow(clippy::too_many_arguments)]
fn apply(
    rt: &mut Rtnl,
    index: crate::rtnl::IfIndex,
    ifn: &str,
    mac: Option<Mac>,
    mtu: Option<u32>,
    promisc: Option<bool>,
    allmulti: Option<bool>,
    txq: Option<u32>,
) -> Result<()> {
    if let Some(m) = mac {
        rt.set_mac(index, ifn, m)?;
    }
    if let Some(m) = mtu {
        rt.set_mtu(index, ifn, m)?;
    }
    if let Some(p) = promisc {
        rt.set_promisc(index, ifn, p)?;
    }
    if let Some(a) = allmulti {
        rt.set_flags(index, ifn, if a { IFF_ALLMULTI } else { 0 }, IFF_ALLMULTI)?;
    }
    if let Some(q) = txq {
        rt.set_u32(index, ifn, IFLA_TXQLEN, q, "transmit queue length")?;
    }
    Ok(())
}

/// DEL puts the saved link settings back; everything it meets missing is fine.
fn del(req: &Request) -> Result<()> {
    let t = load(req)?;
    let Some(dir) = data_dir(&t, false)? else { return Ok(()) };
    let name = backup_name(req);
    let Some(bytes) = read_backup(&dir, &t.data_dir, &name)? else { return Ok(()) };
    if let (Ok(b), Ok(ns)) = (crate::cni::config::parse::<Backup>(&bytes, "tuning backup"), req.open_netns()) {
        if let Ok(mut rt) = Rtnl::in_netns(&ns) {
            if let Ok(Some(l)) = rt.link_by_name(&req.ifname) {
                let _ = apply(
                    &mut rt,
                    l.index,
                    &req.ifname,
                    Some(b.mac),
                    Some(b.mtu),
                    Some(b.promisc),
                    Some(b.allmulti),
                    Some(b.tx_qlen),
                );
            }
        }
    }
    let _ = dir.unlink(&name);
    Ok(())
}

fn check(req: &Request) -> Result<()> {
    let t = load(req)?;
    req.prev_result()?.ok_or_else(|| Error::msg("must be called as chained plugin"))?;
    let ns = req.open_netns()?;
    ns.run(|| {
        for (k, v) in &t.sysctls {
            let cur = sysctl::read(k)?;
            if cur != v.trim() {
                return Err(Error::msg(format!(
                    "Error: Tuning configured value of {k} is {v}, current value is {cur}"
                )));
            }
        }
        Ok(())
    })?;
    if !changes_link(&t) {
        return Ok(());
    }
    let mut rt = Rtnl::in_netns(&ns)?;
    let l =
        rt.link_by_name(&req.ifname)?.ok_or_else(|| Error::msg(format!("failed to find interface {}", req.ifname)))?;
    let bad = |what: &str| {
        Err(Error::msg(format!("Error: Tuning configured {what} of {} does not match the link", req.ifname)))
    };
    if t.mac.map(|m| m != l.mac).unwrap_or(false) {
        return bad("MAC");
    }
    if t.mtu.map(|m| m != l.mtu).unwrap_or(false) {
        return bad("MTU");
    }
    if t.promisc.map(|p| p != (l.flags & IFF_PROMISC != 0)).unwrap_or(false) {
        return bad("promiscuous mode");
    }
    if t.allmulti.map(|a| a != (l.flags & IFF_ALLMULTI != 0)).unwrap_or(false) {
        return bad("allmulti");
    }
    if t.tx_qlen.map(|q| q != l.txqlen).unwrap_or(false) {
        return bad("txQLen");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn keys_become_paths_with_the_interface_name() {
        let p = sysctl_paths(
            &keys(&[("net.ipv4.conf.IFNAME.arp_filter", "1"), ("net/ipv6/conf/IFNAME/accept_ra", "0")]),
            "eth0.100",
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                ("net/ipv4/conf/eth0.100/arp_filter".to_string(), "1".to_string()),
                ("net/ipv6/conf/eth0.100/accept_ra".to_string(), "0".to_string()),
            ]
        );
    }

    #[test]
    fn refuses_outside_net_traversal_and_duplicates() {
        for k in ["kernel.panic", "net/../kernel/panic", "net", "/etc/passwd"] {
            assert!(sysctl_paths(&keys(&[(k, "1")]), "eth0").is_err(), "{k}");
        }
        assert!(sysctl_paths(&keys(&[("net.ipv4.ip_forward", "1"), ("net/ipv4/ip_forward", "0")]), "eth0").is_err());
    }
}
