//! A plugin set (one "side" of the comparison) and the calls a runtime makes
//! to it: one plugin, or a chain in order with prevResult (ADD, CHECK) and in
//! reverse with the final result (DEL), as libcni does.

use crate::spawn::{self, Outcome, Spec};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fill {
    /// Run host-local ADD once per allocation: works with any implementation.
    Exec,
    /// Write the reference's per-IP files ("<id>\r\n<ifname>") directly.
    Files,
}

pub struct Side {
    /// 0: set A (the one measured), 1..: the references (--vs), in order.
    pub idx: usize,
    /// "a", "b", "c", ...: in names of networks, bridges, containers.
    pub key: &'static str,
    pub label: String,
    pub dir: PathBuf,
    /// This set's scratch directory (configs, IPAM state, runtime cache).
    pub work: PathBuf,
    /// A cnitool-compatible runtime (`<exe> add|del NET NETNS`) and its argv[0].
    pub runtime: Option<(PathBuf, String)>,
    pub fill: Fill,
    /// The plugins' own "about" line (`CNI bridge plugin v1.1.1`).
    pub about: String,
    pub timeout: Duration,
    /// Container namespace names, made on demand.
    pub pool: Vec<String>,
}

impl Side {
    pub fn netns(&self, i: usize) -> String {
        crate::lab::Lab::netns_path(&self.pool[i])
    }

    pub fn plugin_path(&self, plugin: &str) -> PathBuf {
        self.dir.join(plugin)
    }

    /// The environment every plugin gets: a runtime's PATH and CNI_PATH, plus the verb's CNI_* values.
    pub fn spec(&self, plugin: &str, cmd: &str, id: &str, netns: &str, stdin: String) -> Spec {
        let exe = self.plugin_path(plugin);
        let mut s = Spec::new(&exe, &exe.to_string_lossy());
        s.env("PATH", PATH).env("CNI_COMMAND", cmd).env("CNI_PATH", &self.dir);
        if cmd == "VERSION" {
            // What libcni's GetVersionInfo sends.
            s.env("CNI_CONTAINERID", "dummy").env("CNI_NETNS", "dummy").env("CNI_IFNAME", "dummy");
        } else if !id.is_empty() {
            s.env("CNI_CONTAINERID", id).env("CNI_NETNS", netns).env("CNI_IFNAME", "eth0").env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={id};K8S_POD_INFRA_CONTAINER_ID={id}"),
            );
        }
        s.stdin(stdin);
        s.timeout = self.timeout;
        s
    }

    pub fn exec(&self, plugin: &str, cmd: &str, id: &str, netns: &str, stdin: String) -> Result<Outcome, String> {
        spawn::run(&self.spec(plugin, cmd, id, netns, stdin))
    }

    /// Run one invocation through the RSS probe (see spawn::rss_probe).
    pub fn exec_probed(
        &self,
        plugin: &str,
        cmd: &str,
        id: &str,
        netns: &str,
        stdin: String,
    ) -> Result<(Outcome, Rss), String> {
        let inner = self.spec(plugin, cmd, id, netns, stdin);
        let me = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let mut probe = Spec::new(&me, "cnibox-bench");
        probe.arg("--rss-probe").arg(self.plugin_path(plugin)).arg(self.plugin_path(plugin));
        probe.env_from(&inner);
        probe.stdin = inner.stdin.clone();
        probe.fd3 = true;
        probe.timeout = self.timeout;
        let mut o = spawn::run(&probe)?;
        let mut rss = Rss::default();
        for kv in o.fd3.split_whitespace() {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let v = v.parse().unwrap_or(0);
            match k {
                "hwm" => rss.hwm = Some(v),
                "self" => rss.own = v,
                "procs" => rss.procs = v as usize,
                "maxrss" => rss.maxrss = v,
                "floor" => rss.floor = v,
                _ => {}
            }
        }
        if rss.maxrss == 0 && rss.hwm.is_none() {
            return Err(format!("the RSS probe reported nothing ({})", o.reason()));
        }
        o.maxrss_kib = rss.hwm.unwrap_or(rss.maxrss);
        Ok((o, rss))
    }
}

/// What the RSS probe saw, in KiB.
#[derive(Default, Clone, Copy)]
pub struct Rss {
    /// Largest VmHWM over the plugin and everything it ran (exact; None without ptrace).
    pub hwm: Option<u64>,
    /// VmHWM of the plugin process itself.
    pub own: u64,
    pub procs: usize,
    /// ru_maxrss of the plugin: includes the pre-exec copy of the probe.
    pub maxrss: u64,
    pub floor: u64,
}

/// A network: a name, a version and the plugins of its list, in order.
#[derive(Clone)]
pub struct Net {
    pub name: String,
    pub version: String,
    pub plugins: Vec<Value>,
}

/// One failed call: which plugin, which verb, and why.
pub fn failed(plugin: &str, verb: &str, o: &Outcome) -> String {
    format!("{plugin} {verb}: {}", o.reason())
}

fn at_least_040(v: &str) -> bool {
    let p: Vec<u32> = v.split('.').map(|x| x.parse().unwrap_or(0)).collect();
    (p.first().copied().unwrap_or(0), p.get(1).copied().unwrap_or(0)) >= (0, 4)
}

impl Net {
    pub fn single(name: &str, version: &str, plugin: Value) -> Net {
        Net { name: name.into(), version: version.into(), plugins: vec![plugin] }
    }

    /// The request configuration plugin `i` reads on stdin.
    pub fn conf(&self, i: usize, prev: Option<&Value>) -> String {
        let mut p = self.plugins[i].clone();
        if let Some(o) = p.as_object_mut() {
            o.insert("cniVersion".into(), json!(self.version));
            o.insert("name".into(), json!(self.name));
            if let Some(prev) = prev {
                o.insert("prevResult".into(), prev.clone());
            }
        }
        p.to_string()
    }

    pub fn kind(&self, i: usize) -> String {
        self.plugins[i].get("type").and_then(Value::as_str).unwrap_or("").to_string()
    }

    /// The conflist a runtime reads from its config directory.
    pub fn conflist(&self) -> Value {
        json!({"cniVersion": self.version, "name": self.name, "plugins": self.plugins})
    }

    /// ADD through the chain: per-plugin times and the final result.
    pub fn add(&self, side: &Side, netns: &str, id: &str) -> Result<(Vec<u64>, Value), String> {
        let mut prev: Option<Value> = None;
        let mut times = Vec::new();
        for i in 0..self.plugins.len() {
            let t = self.kind(i);
            let o = side.exec(&t, "ADD", id, netns, self.conf(i, prev.as_ref()))?;
            if !o.ok() {
                return Err(failed(&t, "ADD", &o));
            }
            times.push(o.ns);
            let v: Value = serde_json::from_str(o.stdout.trim())
                .map_err(|e| format!("{t} ADD printed no JSON result ({e}): {}", o.stdout.trim()))?;
            prev = Some(v);
        }
        Ok((times, prev.unwrap_or(Value::Null)))
    }

    pub fn check(&self, side: &Side, netns: &str, id: &str, result: &Value) -> Result<Vec<u64>, String> {
        let mut times = Vec::new();
        for i in 0..self.plugins.len() {
            let t = self.kind(i);
            let o = side.exec(&t, "CHECK", id, netns, self.conf(i, Some(result)))?;
            if !o.ok() {
                return Err(failed(&t, "CHECK", &o));
            }
            times.push(o.ns);
        }
        Ok(times)
    }

    /// DEL in reverse order; every plugin runs even after a failure (the
    /// benchmark must not leak state), the first failure is returned.
    pub fn del(&self, side: &Side, netns: &str, id: &str, result: Option<&Value>) -> Result<Vec<u64>, String> {
        let prev = if at_least_040(&self.version) { result } else { None };
        let mut times = vec![0; self.plugins.len()];
        let mut first_err = None;
        for i in (0..self.plugins.len()).rev() {
            let t = self.kind(i);
            match side.exec(&t, "DEL", id, netns, self.conf(i, prev)) {
                Ok(o) if o.ok() => times[i] = o.ns,
                Ok(o) => {
                    first_err.get_or_insert(failed(&t, "DEL", &o));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(times),
        }
    }
}

/// The bridge network of the k3s/flannel shape: gateway, default route,
/// forceAddress, hairpin, host-local IPAM on a /16, per-set bridge name,
/// subnet and data directory so the two sets never share state.
pub fn bridge_plugin(side: &Side, n: u8, masq: bool) -> Value {
    json!({
        "type": "bridge",
        "bridge": format!("cnb{}{}", side.key, n),
        "isGateway": true,
        "isDefaultGateway": true,
        "forceAddress": true,
        "hairpinMode": true,
        "ipMasq": masq,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet(side, n)}]],
            "dataDir": side.work.join("ipam").to_string_lossy(),
        }
    })
}

/// 10.<100+35*set+n>.0.0/16 (inside the node namespace only).
pub fn subnet(side: &Side, n: u8) -> String {
    format!("10.{}.0.0/16", subnet_octet(side, n))
}

pub fn subnet_octet(side: &Side, n: u8) -> u8 {
    // A: 10.100-108, B: 10.135-143, C: 10.170-178, D: 10.205-213; floors 10.240-248.
    100 + 35 * side.idx as u8 + n
}

pub fn port_mappings(side: &Side) -> Value {
    let base = 18000 + 10000 * side.idx as u16;
    json!([
        {"hostPort": base + 80, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": base + 443, "containerPort": 443, "protocol": "tcp"}
    ])
}

pub fn portmap_plugin(side: &Side, with_runtime_config: bool) -> Value {
    let mut p = json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true});
    if with_runtime_config {
        p["runtimeConfig"] = json!({"portMappings": port_mappings(side)});
    }
    p
}

/// The plugins' self-description (the line they print when run by hand).
pub fn about(dir: &Path) -> String {
    for p in ["loopback", "bridge", "host-local"] {
        let exe = dir.join(p);
        if !exe.exists() {
            continue;
        }
        let mut s = Spec::new(&exe, &exe.to_string_lossy());
        s.env("PATH", PATH);
        s.timeout = Duration::from_secs(10);
        if let Ok(o) = spawn::run(&s) {
            if let Some(l) = o.stderr.lines().chain(o.stdout.lines()).map(str::trim).find(|l| !l.is_empty()) {
                return l.to_string();
            }
        }
    }
    String::new()
}
