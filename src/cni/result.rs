//! The result of ADD: one internal type (the 1.1.0 shape) that is read from
//! any version and printed in the version the config asked for.

use super::config::Dns;
use super::json::json_struct;
use super::json_writer::JsonWriter;
use super::version;
use crate::error::{Error, Result};
use crate::json::Value;
use crate::net::IpNet;
use std::net::IpAddr;

#[derive(Clone, Default)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

json_struct! {
    #[derive(Clone, Default, PartialEq)]
    pub struct Interface {
        pub name: String = req("name"),
        pub mac: String = get("mac"),
        pub mtu: u32 = get("mtu"),
        pub sandbox: String = get("sandbox"),
        pub socket_path: String = get("socketPath"),
        pub pci_id: String = get("pciID"),
    }
}

json_struct! {
    /// `ips[]`. The `version` field of 0.3.x/0.4.0 results is not kept: it is
    /// derived from the address when printed.
    #[derive(Clone, PartialEq)]
    pub struct IpConfig {
        pub address: IpNet = req("address"),
        pub gateway: Option<IpAddr> = opt("gateway"),
        pub interface: Option<usize> = opt("interface"),
    }
}

json_struct! {
    #[derive(Clone, PartialEq)]
    pub struct Route {
        pub dst: IpNet = req("dst"),
        pub gw: Option<IpAddr> = opt("gw"),
        pub mtu: u32 = get("mtu"),
        pub advmss: u32 = get("advmss"),
        pub priority: u32 = get("priority"),
        pub table: Option<u32> = opt("table"),
        pub scope: Option<u8> = opt("scope"),
    }
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route { dst, gw, mtu: 0, advmss: 0, priority: 0, table: None, scope: None }
    }
}

json_struct! {
    /// 0.1.0/0.2.0 shape.
    struct Ip020 {
        ip: IpNet = req("ip"),
        gateway: Option<IpAddr> = opt("gateway"),
        routes: Vec<Route> = get("routes"),
    }
}

json_struct! {
    /// Any version on input: 0.1/0.2 have ip4/ip6, later ones ips[].
    pub(crate) struct AnyResult {
        cni_version: String = get("cniVersion"),
        interfaces: Vec<Interface> = get("interfaces"),
        ips: Vec<IpConfig> = get("ips"),
        routes: Vec<Route> = get("routes"),
        dns: Dns = get("dns"),
        ip4: Option<Ip020> = opt("ip4"),
        ip6: Option<Ip020> = opt("ip6"),
    }
}

impl CniResult {
    /// Read a result of any supported version (a prevResult, a delegate's output).
    pub fn from_json(bytes: &[u8]) -> Result<CniResult> {
        CniResult::from_value(&super::config::parse_value(bytes, "result")?)
    }

    /// The same from a parsed value (a cached result), with the same errors.
    pub fn from_value(v: &Value) -> Result<CniResult> {
        let any: AnyResult = super::config::read(v, "result")?;
        Ok(any.normalize())
    }

    /// Print in version `v`, dropping what that version cannot carry:
    /// 1.0.0 and later as kept; 0.3.x/0.4.0 with `ips[].version`, without
    /// the newer interface fields and always with `dns`; 0.1.0/0.2.0 as the
    /// first address of each family (`ip4`, `ip6`) with that family's routes.
    pub fn to_json(&self, v: &str) -> Result<String> {
        let mut w = JsonWriter::new();
        w.begin_object().key("cniVersion").string(v);
        if version::at_least(v, "0.3.0") {
            let current = version::at_least(v, "1.0.0");
            if !self.interfaces.is_empty() {
                w.key("interfaces").begin_array();
                for i in &self.interfaces {
                    i.write_json(&mut w, current);
                }
                w.end_array();
            }
            if !self.ips.is_empty() {
                w.key("ips").begin_array();
                for ip in &self.ips {
                    ip.write_json(&mut w, !current);
                }
                w.end_array();
            }
            write_routes(&mut w, &self.routes, None);
            if !current || !self.dns.is_empty() {
                w.key("dns");
                self.dns.write_json(&mut w);
            }
        } else {
            let mut any = false;
            for (key, v4) in [("ip4", true), ("ip6", false)] {
                let Some(ip) = self.ips.iter().find(|ip| ip.address.is_ipv4() == v4) else { continue };
                any = true;
                w.key(key).begin_object().key("ip").display(&ip.address);
                if let Some(gw) = &ip.gateway {
                    w.key("gateway").display(gw);
                }
                write_routes(&mut w, &self.routes, Some(v4));
                w.end_object();
            }
            if !any {
                return Err(Error::msg("cannot convert: no valid IP addresses"));
            }
            w.key("dns");
            self.dns.write_json(&mut w);
        }
        w.end_object();
        Ok(w.finish())
    }

    /// What a consumer of version `v` would read back: used by the in-process
    /// delegation path so that it behaves exactly like an exec'd plugin.
    pub fn as_seen_in(&self, v: &str) -> Result<CniResult> {
        CniResult::from_json(self.to_json(v)?.as_bytes())
    }
}

/// `"routes":[...]` with the routes of one family (`v4`) or all of them,
/// left out when there are none.
fn write_routes(w: &mut JsonWriter, routes: &[Route], v4: Option<bool>) {
    let keep = |r: &&Route| v4.is_none_or(|v4| r.dst.is_ipv4() == v4);
    if !routes.iter().any(|r| keep(&r)) {
        return;
    }
    w.key("routes").begin_array();
    for r in routes.iter().filter(keep) {
        w.begin_object().key("dst").display(&r.dst);
        if let Some(gw) = &r.gw {
            w.key("gw").display(gw);
        }
        w.nonzero("mtu", r.mtu.into()).nonzero("advmss", r.advmss.into()).nonzero("priority", r.priority.into());
        if let Some(t) = r.table {
            w.key("table").number(t.into());
        }
        if let Some(s) = r.scope {
            w.key("scope").number(s.into());
        }
        w.end_object();
    }
    w.end_array();
}

impl Interface {
    /// `current`: 1.0.0 and later, which added `mtu`, `socketPath` and `pciID`.
    fn write_json(&self, w: &mut JsonWriter, current: bool) {
        w.begin_object().key("name").string(&self.name).nonempty("mac", &self.mac);
        if current {
            w.nonzero("mtu", self.mtu.into());
        }
        w.nonempty("sandbox", &self.sandbox);
        if current {
            w.nonempty("socketPath", &self.socket_path).nonempty("pciID", &self.pci_id);
        }
        w.end_object();
    }
}

impl IpConfig {
    /// `with_version`: 0.3.x/0.4.0, whose `ips[]` say their family.
    fn write_json(&self, w: &mut JsonWriter, with_version: bool) {
        w.begin_object();
        if with_version {
            w.key("version").string(if self.address.is_ipv4() { "4" } else { "6" });
        }
        w.key("address").display(&self.address);
        if let Some(gw) = &self.gateway {
            w.key("gateway").display(gw);
        }
        if let Some(i) = self.interface {
            w.key("interface").number(i as u64);
        }
        w.end_object();
    }
}

impl AnyResult {
    pub(crate) fn normalize(self) -> CniResult {
        let mut r = CniResult {
            cni_version: self.cni_version,
            interfaces: self.interfaces,
            ips: self.ips,
            routes: self.routes,
            dns: self.dns,
        };
        for ip in [self.ip4, self.ip6].into_iter().flatten() {
            r.ips.push(IpConfig { address: ip.ip, gateway: ip.gateway, interface: None });
            r.routes.extend(ip.routes);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult::from_json(
            br#"{"cniVersion":"1.0.0",
            "interfaces":[{"name":"cni0","mac":"0a:58:0a:16:00:01","mtu":1500},{"name":"veth12345678","mac":"aa:bb:cc:dd:ee:ff"},
                          {"name":"eth0","mac":"0a:58:0a:16:00:05","sandbox":"/run/netns/x"}],
            "ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1","interface":2},{"address":"fd00:22::5/64","gateway":"fd00:22::1","interface":2}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"},{"dst":"::/0"}],
            "dns":{"nameservers":["10.22.0.1"]}}"#,
        )
        .unwrap()
    }

    fn json(s: &str) -> Value {
        crate::json::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn golden_1_1_0() {
        let want = json(
            r#"{"cniVersion":"1.1.0",
            "interfaces":[{"name":"cni0","mac":"0a:58:0a:16:00:01","mtu":1500},{"name":"veth12345678","mac":"aa:bb:cc:dd:ee:ff"},
                          {"name":"eth0","mac":"0a:58:0a:16:00:05","sandbox":"/run/netns/x"}],
            "ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1","interface":2},{"address":"fd00:22::5/64","gateway":"fd00:22::1","interface":2}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"},{"dst":"::/0"}],
            "dns":{"nameservers":["10.22.0.1"]}}"#,
        );
        assert_eq!(json(&sample().to_json("1.1.0").unwrap()), want);
    }

    #[test]
    fn golden_0_4_0_adds_version_and_drops_mtu() {
        let want = json(
            r#"{"cniVersion":"0.4.0",
            "interfaces":[{"name":"cni0","mac":"0a:58:0a:16:00:01"},{"name":"veth12345678","mac":"aa:bb:cc:dd:ee:ff"},
                          {"name":"eth0","mac":"0a:58:0a:16:00:05","sandbox":"/run/netns/x"}],
            "ips":[{"version":"4","address":"10.22.0.5/16","gateway":"10.22.0.1","interface":2},
                   {"version":"6","address":"fd00:22::5/64","gateway":"fd00:22::1","interface":2}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"},{"dst":"::/0"}],
            "dns":{"nameservers":["10.22.0.1"]}}"#,
        );
        assert_eq!(json(&sample().to_json("0.4.0").unwrap()), want);
    }

    #[test]
    fn golden_0_3_1_prints_empty_dns() {
        // Shape of the reference host-local output (cni-reference.md §1.6).
        let r = CniResult::from_json(
            br#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.22.0.4/29","gateway":"10.22.0.1"},
            {"version":"6","address":"fd00:22::4/124","gateway":"fd00:22::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#,
        )
        .unwrap();
        let want = json(
            r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.22.0.4/29","gateway":"10.22.0.1"},
            {"version":"6","address":"fd00:22::4/124","gateway":"fd00:22::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#,
        );
        assert_eq!(json(&r.to_json("0.3.1").unwrap()), want);
        // and 1.0.0 drops both the versions and the empty dns
        let want = json(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.22.0.4/29","gateway":"10.22.0.1"},
            {"address":"fd00:22::4/124","gateway":"fd00:22::1"}],"routes":[{"dst":"0.0.0.0/0"}]}"#,
        );
        assert_eq!(json(&r.to_json("1.0.0").unwrap()), want);
    }

    #[test]
    fn golden_0_2_0_first_ip_per_family_and_routes_by_family() {
        let want = json(
            r#"{"cniVersion":"0.2.0",
            "ip4":{"ip":"10.22.0.5/16","gateway":"10.22.0.1","routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"}]},
            "ip6":{"ip":"fd00:22::5/64","gateway":"fd00:22::1","routes":[{"dst":"::/0"}]},
            "dns":{"nameservers":["10.22.0.1"]}}"#,
        );
        assert_eq!(json(&sample().to_json("0.2.0").unwrap()), want);
    }

    #[test]
    fn read_0_2_0_back_into_ips() {
        let r = CniResult::from_json(
            br#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.2/24","gateway":"10.1.0.1","routes":[{"dst":"0.0.0.0/0"}]},"dns":{}}"#,
        )
        .unwrap();
        assert_eq!(r.ips.len(), 1);
        assert_eq!(r.ips[0].address.to_string(), "10.1.0.2/24");
        assert_eq!(r.routes.len(), 1);
        let up = json(&r.to_json("0.4.0").unwrap());
        assert_eq!(up["ips"][0]["version"], "4");
    }

    #[test]
    fn no_ips_cannot_go_to_0_2_0() {
        let r =
            CniResult { interfaces: vec![Interface { name: "lo".into(), ..Default::default() }], ..Default::default() };
        assert_eq!(r.to_json("0.2.0").err().unwrap().msg, "cannot convert: no valid IP addresses");
    }

    #[test]
    fn bad_prev_result_names_field() {
        let e = CniResult::from_json(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2"}]}"#).err().unwrap();
        assert!(e.msg.contains("ips[0].address"), "{}", e.msg);
    }
}
