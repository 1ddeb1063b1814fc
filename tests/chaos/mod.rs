//! Shared by the crash, stress and hostile tests: one "cluster network" (a
//! node namespace, bridge + host-local dual stack with ipMasq, portmap
//! chained after it) driven the way a runtime drives it, and the leak
//! oracles: `ip -j` for interfaces, `nft -j` for rules, and an independent
//! strict reader of host-local's state file for reservations.

#![allow(dead_code)]

use crate::support::*;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const NET: &str = "chaosnet";

/// The binary built with the `failpoints` feature: `CNIBOX_FAILPOINT_BIN`
/// when the Makefile built it, otherwise built here once (a debug build in
/// target/failpoints, so that it never disturbs the release build).
pub fn failpoint_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("CNIBOX_FAILPOINT_BIN") {
            if !p.is_empty() {
                return PathBuf::from(p);
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target").join("failpoints");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .current_dir(root)
            .args(["build", "--locked", "--features", "failpoints", "--bin", "cnibox", "--target-dir"])
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .stdout(Stdio::null())
            .status()
            .expect("run cargo to build the failpoints binary");
        assert!(st.success(), "building cnibox with --features failpoints failed");
        target.join("debug").join("cnibox")
    })
    .clone()
}

/// A CNI_PATH directory whose plugin names all point at `exe`.
pub fn plugin_dir_for(tmp: &TempDir, sub: &str, exe: &Path) -> String {
    let dir = tmp.join(sub);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["bridge", "host-local", "portmap", "loopback", "tuning", "bandwidth", "static"] {
        let _ = std::os::unix::fs::symlink(exe, dir.join(name));
    }
    dir.to_string_lossy().into_owned()
}

/// One network on one node: bridge `cbr0` with host-local dual stack and
/// ipMasq, and portmap chained after it.
pub struct Cluster {
    pub tmp: TempDir,
    pub node: Netns,
    pub v4: String,
    pub v6: String,
}

impl Cluster {
    pub fn new(prefix: &str, v4: &str, v6: &str) -> Cluster {
        let tmp = TempDir::new(prefix);
        let node = Netns::new("node");
        forwarding(&node);
        Cluster { tmp, node, v4: v4.into(), v6: v6.into() }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.join("ipam")
    }

    pub fn state_path(&self) -> PathBuf {
        self.data_dir().join(NET).join("cnibox.state")
    }

    pub fn bridge_conf(&self) -> String {
        json!({"cniVersion": "1.0.0", "name": NET, "type": "bridge", "bridge": "cbr0", "isDefaultGateway": true, "ipMasq": true,
            "ipam": {"type": "host-local", "dataDir": self.data_dir(), "ranges": [[{"subnet": self.v4}], [{"subnet": self.v6}]]}})
        .to_string()
    }

    /// portmap's config for a pod: `port` mapped for tcp and udp, prevResult as given (or none, for DEL).
    pub fn portmap_conf(&self, port: u16, prev: Option<&Value>) -> String {
        let mut c = json!({"cniVersion": "1.0.0", "name": NET, "type": "portmap", "snat": true,
            "runtimeConfig": {"portMappings": [
                {"hostPort": port, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": port, "containerPort": 80, "protocol": "udp"}]}});
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c.to_string()
    }

    /// Run one plugin as the runtime does, with extra environment (failpoints).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        exe: &Path,
        path: &str,
        plugin: &str,
        cmd: &str,
        id: &str,
        netns: &str,
        stdin: &str,
        extra: &[(&str, &str)],
    ) -> Run {
        let mut env: Vec<(String, String)> = vec![
            ("CNI_COMMAND".into(), cmd.into()),
            ("CNI_CONTAINERID".into(), id.into()),
            ("CNI_NETNS".into(), netns.into()),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_PATH".into(), path.into()),
        ];
        for (k, v) in extra {
            env.push((k.to_string(), v.to_string()));
        }
        run_in(Some(&self.node), exe, plugin, &env, stdin)
    }

    /// The runtime's DEL of the whole chain, in reverse order (portmap, bridge),
    /// without prevResult (what a runtime has after an ADD that never returned).
    pub fn del_chain(&self, exe: &Path, path: &str, id: &str, netns: &str, port: u16) -> Vec<Run> {
        vec![
            self.run(exe, path, "portmap", "DEL", id, netns, &self.portmap_conf(port, None), &[]),
            self.run(exe, path, "bridge", "DEL", id, netns, &self.bridge_conf(), &[]),
        ]
    }

    /// The whole chain's ADD; the bridge result, or the failing run.
    pub fn add_chain(&self, exe: &Path, path: &str, id: &str, netns: &str, port: u16) -> Result<Value, Run> {
        let r = self.run(exe, path, "bridge", "ADD", id, netns, &self.bridge_conf(), &[]);
        if r.code != 0 {
            return Err(r);
        }
        let res = r.json();
        let p = self.run(exe, path, "portmap", "ADD", id, netns, &self.portmap_conf(port, Some(&res)), &[]);
        if p.code != 0 {
            return Err(p);
        }
        Ok(res)
    }

    /// Host-side veths on the node.
    pub fn veths(&self) -> Vec<String> {
        self.node
            .links()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("veth"))
            .map(String::from)
            .collect()
    }

    /// Rules that belong to some container: every commented rule except the
    /// fixed ones (portmap's localnet guard).
    pub fn container_rules(&self) -> Vec<String> {
        rules(&self.node)
            .into_iter()
            .filter(|r| !r.3.is_empty() && r.3 != "block incoming localnet connections")
            .map(|r| format!("{} {} {}: {}", r.0, r.1, r.2, r.3))
            .collect()
    }

    /// The reservations in the state file, which must read strictly.
    pub fn reservations(&self) -> Result<Vec<Reservation>, String> {
        read_state(&self.state_path())
    }

    /// Everything an attachment could leave behind, described; empty when clean.
    /// `ctrs` are the container namespaces used (none may keep an `eth0`).
    pub fn leaks(&self, ctrs: &[&Netns]) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.veths() {
            out.push(format!("veth {v} on the node"));
        }
        for c in ctrs {
            if c.link("eth0").is_some() {
                out.push(format!("eth0 left in {}", c.name));
            }
        }
        for r in self.container_rules() {
            out.push(format!("rule {r}"));
        }
        match self.reservations() {
            Ok(v) => out.extend(v.iter().map(|r| format!("reservation {} {} {}", r.ip, r.id, r.ifname))),
            Err(e) => out.push(format!("state file unreadable: {e}")),
        }
        // The reference's per-address files, which cnibox never writes but honours.
        for f in std::fs::read_dir(self.data_dir().join(NET)).into_iter().flatten().flatten() {
            if f.file_name().to_string_lossy().parse::<IpAddr>().is_ok() {
                out.push(format!("per-address file {}", f.file_name().to_string_lossy()));
            }
        }
        out
    }
}

pub struct Reservation {
    pub ip: IpAddr,
    pub id: String,
    pub ifname: String,
}

/// host-local's state file, read strictly and independently of cnibox: the
/// header's recorded size must be the file's size (the file is whole), every
/// line must be a `last_reserved_ip.N <ip>` or an `<ip> <id> <ifname>`
/// reservation, and no address may be reserved twice. A missing file holds nothing.
pub fn read_state(path: &Path) -> Result<Vec<Reservation>, String> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("read {}: {e}", path.display())),
    };
    let text = String::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.split_inclusive('\n');
    let header = lines.next().unwrap_or("");
    const MAGIC: &str = "# cnibox host-local v1 size=";
    let size = header
        .strip_prefix(MAGIC)
        .and_then(|r| r.get(..10))
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or_else(|| format!("bad header {header:?}"))?;
    if size != text.len() {
        return Err(format!("header says {size} bytes, file has {}", text.len()));
    }
    let mut out: Vec<Reservation> = Vec::new();
    for l in lines {
        let Some(l) = l.strip_suffix('\n') else { return Err(format!("unterminated line {l:?}")) };
        let w: Vec<&str> = l.split(' ').collect();
        if w.len() == 2 && w[0].starts_with("last_reserved_ip.") && w[1].parse::<IpAddr>().is_ok() {
            continue;
        }
        let (Some(ip), 3) = (w[0].parse::<IpAddr>().ok(), w.len()) else { return Err(format!("bad line {l:?}")) };
        if out.iter().any(|r| r.ip == ip) {
            return Err(format!("{ip} reserved twice"));
        }
        out.push(Reservation { ip, id: w[1].into(), ifname: w[2].into() });
    }
    Ok(out)
}

/// The addresses (without prefix) of a bridge ADD result.
pub fn result_ips(r: &Value) -> Vec<IpAddr> {
    r["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["address"].as_str()?.split('/').next()?.parse().ok())
        .collect()
}

/// How a failpoint run ended: aborted (killed by SIGABRT), or finished.
pub fn aborted(r: &Run) -> bool {
    r.code == -1
}

/// Small deterministic generator (xorshift), seeded and printed by the tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn from_time() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng(t | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
