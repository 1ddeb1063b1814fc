//! The result of ADD: one internal type (the 1.1.0 shape) that is read from
//! any version and printed in the version the config asked for.

use super::config::Dns;
use super::version;
use crate::error::{code, Error, Result};
use crate::net::IpNet;
use super::json::{object, FromJson, JResult};
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;

#[derive(Serialize, Clone, Default)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Serialize, Clone, Default, PartialEq)]
pub struct Interface {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub mtu: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(rename = "socketPath", skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Serialize, Clone, PartialEq)]
pub struct IpConfig {
    /// Only in 0.3.x/0.4.0 results; derived from the address when printing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Serialize, Clone, PartialEq)]
pub struct Route {
    pub dst: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(skip_serializing_if = "is_zero")]
    pub mtu: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub advmss: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route { dst, gw, mtu: 0, advmss: 0, priority: 0, table: None, scope: None }
    }
}

/// 0.1.0/0.2.0 shape.
#[derive(Serialize, Clone)]
struct Ip020 {
    ip: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

#[derive(Serialize)]
struct Result020<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip4: Option<Ip020>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip6: Option<Ip020>,
    dns: &'a Dns,
}

/// 0.3.x/0.4.0 shape: `ips[].version`, no 1.1 interface fields, `dns` always printed.
#[derive(Serialize)]
struct Result040<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface040<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpConfig>,
    #[serde(skip_serializing_if = "<[Route]>::is_empty")]
    routes: &'a [Route],
    dns: &'a Dns,
}

#[derive(Serialize)]
struct Interface040<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    mac: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    sandbox: &'a str,
}

/// Any version on input: 0.1/0.2 have ip4/ip6, later ones ips[].
pub(crate) struct AnyResult {
    cni_version: String,
    interfaces: Vec<Interface>,
    ips: Vec<IpConfig>,
    routes: Vec<Route>,
    dns: Dns,
    ip4: Option<Ip020>,
    ip6: Option<Ip020>,
}

impl FromJson for AnyResult {
    fn from_json(v: &Value) -> JResult<AnyResult> {
        object(v, |o| {
            Ok(AnyResult {
                cni_version: o.get("cniVersion")?,
                interfaces: o.get("interfaces")?,
                ips: o.get("ips")?,
                routes: o.get("routes")?,
                dns: o.get("dns")?,
                ip4: o.opt("ip4")?,
                ip6: o.opt("ip6")?,
            })
        })
    }
}

impl FromJson for Interface {
    fn from_json(v: &Value) -> JResult<Interface> {
        object(v, |o| {
            Ok(Interface {
                name: o.req("name")?,
                mac: o.get("mac")?,
                mtu: o.get("mtu")?,
                sandbox: o.get("sandbox")?,
                socket_path: o.get("socketPath")?,
                pci_id: o.get("pciID")?,
            })
        })
    }
}

impl FromJson for IpConfig {
    fn from_json(v: &Value) -> JResult<IpConfig> {
        object(v, |o| {
            Ok(IpConfig {
                version: o.opt("version")?,
                address: o.req("address")?,
                gateway: o.opt("gateway")?,
                interface: o.opt("interface")?,
            })
        })
    }
}

impl FromJson for Route {
    fn from_json(v: &Value) -> JResult<Route> {
        object(v, |o| {
            Ok(Route {
                dst: o.req("dst")?,
                gw: o.opt("gw")?,
                mtu: o.get("mtu")?,
                advmss: o.get("advmss")?,
                priority: o.get("priority")?,
                table: o.opt("table")?,
                scope: o.opt("scope")?,
            })
        })
    }
}

impl FromJson for Ip020 {
    fn from_json(v: &Value) -> JResult<Ip020> {
        object(v, |o| Ok(Ip020 { ip: o.req("ip")?, gateway: o.opt("gateway")?, routes: o.get("routes")? }))
    }
}

impl CniResult {
    /// Read a result of any supported version (a prevResult, a delegate's output).
    pub fn from_json(bytes: &[u8]) -> Result<CniResult> {
        let any: AnyResult = super::config::parse(bytes, "result")?;
        Ok(any.normalize())
    }

    pub fn from_value(v: serde_json::Value) -> Result<CniResult> {
        let any: AnyResult = AnyResult::from_json(&v)
            .map_err(|b| Error::new(code::DECODING, format!("could not read prevResult: {}", b.located())))?;
        Ok(any.normalize())
    }

    /// Print in version `v`, dropping what that version cannot carry.
    pub fn to_json(&self, v: &str) -> Result<String> {
        let out = if version::at_least(v, "1.0.0") {
            let mut r = self.clone();
            r.cni_version = v.to_string();
            r.ips.iter_mut().for_each(|ip| ip.version = None);
            serde_json::to_string(&r)
        } else if version::at_least(v, "0.3.0") {
            let r = Result040 {
                cni_version: v,
                interfaces: self
                    .interfaces
                    .iter()
                    .map(|i| Interface040 { name: &i.name, mac: &i.mac, sandbox: &i.sandbox })
                    .collect(),
                ips: self
                    .ips
                    .iter()
                    .map(|ip| IpConfig { version: Some(if ip.address.is_ipv4() { "4" } else { "6" }.into()), ..ip.clone() })
                    .collect(),
                routes: &self.routes,
                dns: &self.dns,
            };
            serde_json::to_string(&r)
        } else {
            let pick = |v4: bool| {
                self.ips.iter().find(|ip| ip.address.is_ipv4() == v4).map(|ip| Ip020 {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes: self.routes.iter().filter(|r| r.dst.is_ipv4() == v4).cloned().collect(),
                })
            };
            let (ip4, ip6) = (pick(true), pick(false));
            if ip4.is_none() && ip6.is_none() {
                return Err(Error::msg("cannot convert: no valid IP addresses"));
            }
            serde_json::to_string(&Result020 { cni_version: v, ip4, ip6, dns: &self.dns })
        };
        out.map_err(|e| Error::msg(format!("encode result: {e}")))
    }

    /// What a consumer of version `v` would read back: used by the in-process
    /// delegation path so that it behaves exactly like an exec'd plugin.
    pub fn as_seen_in(&self, v: &str) -> Result<CniResult> {
        CniResult::from_json(self.to_json(v)?.as_bytes())
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
            r.ips.push(IpConfig { version: None, address: ip.ip, gateway: ip.gateway, interface: None });
            r.routes.extend(ip.routes);
        }
        for ip in &mut r.ips {
            ip.version = None;
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

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
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
        let r = CniResult { interfaces: vec![Interface { name: "lo".into(), ..Default::default() }], ..Default::default() };
        assert_eq!(r.to_json("0.2.0").err().unwrap().msg, "cannot convert: no valid IP addresses");
    }

    #[test]
    fn bad_prev_result_names_field() {
        let e = CniResult::from_json(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2"}]}"#).err().unwrap();
        assert!(e.msg.contains("ips[0].address"), "{}", e.msg);
    }
}
