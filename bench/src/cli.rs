//! Command line: options, their defaults, and the help text.

use crate::invoke::Fill;
use std::path::PathBuf;
use std::time::Duration;

pub const SCENARIOS: &[&str] = &[
    "version", "loopback", "status", "bridge", "masq", "portmap", "runtime", "parallel", "allocs", "rss", "size",
    "custom",
];

pub const DEFAULT_VS: &str = "/usr/lib/cni";

/// Set A and at most three references: their keys in names (bridges,
/// networks, namespaces) and in the subnets they use (see invoke::subnet).
pub const SET_KEYS: [&str; 4] = ["a", "b", "c", "d"];

pub struct Opts {
    pub plugins: PathBuf,
    /// The reference sets, in order (--vs, repeatable).
    pub vs: Vec<PathBuf>,
    pub label_a: String,
    /// Their names (--label-b, repeatable: the Nth names the Nth --vs).
    pub label_b: Vec<String>,
    pub config: Option<PathBuf>,
    pub iterations: usize,
    pub warmup: usize,
    pub parallel: Vec<usize>,
    pub rounds: usize,
    pub allocations: Vec<usize>,
    pub scenarios: Vec<String>,
    pub runtime_a: Option<PathBuf>,
    pub runtime_b: Option<PathBuf>,
    pub fill_a: Fill,
    pub fill_b: Fill,
    pub timeout: Duration,
    pub out: PathBuf,
    /// The exec floor's no-op binary (same target and build profile as set A).
    pub noop: Option<PathBuf>,
    /// How set A's binary was built (stable, tiny), for the size targets.
    pub build: Option<String>,
}

pub fn help() -> String {
    format!(
        "cnibox-bench: exec latency of CNI plugins against the floor, and other plugin sets side by side

usage: cnibox-bench --plugins DIR [--vs DIR2 [--vs DIR3 ...]|none] [--noop FILE] [--config FILE]
                    [--iterations N] [--parallel 1,8,32,128] [--out DIR] [options]

Times real plugin invocations the way a container runtime makes them: the plugin
is spawned (fork+exec) with the CNI_* variables in its environment and the network
configuration on stdin, and the clock runs from the fork to the wait. All of it
happens inside a throwaway \"node\" network namespace that the tool creates; the
container namespaces are prepared outside the timed region; the machine's own
namespace is never touched. Everything is removed at the end, also on an error or
Ctrl-C. Needs root.

DIR and DIR2 are any directories of CNI plugins, that is of executables named
bridge, host-local, loopback, portmap, ...: a cnibox plugin directory (symlinks to
the cnibox binary), the reference plugins (Debian's containernetworking-plugins in
{DEFAULT_VS}, the default for --vs), an unpacked upstream release, another build.
Runs are interleaved (A B C A ..., the order flipping every iteration) after a
warm-up, so that drift on a busy machine hits every set alike. Each figure is
reported as median, p90, p99 and max, with each reference's ratio to A of the
pairs taken back to back. A plugin that fails is reported with its error; the
run goes on.

The floor runs in the same loop: an exec of a no-op binary (--noop) exactly as
a plugin of A, and for bridge, ipMasq and parallel the kernel requests cnibox's
bridge makes, issued by the tool itself with cnibox's netlink code (no exec, no
IPAM). Every figure shows the floor and A's distance to it (x floor).

scenarios (--scenarios, default all):
  version    VERSION of bridge: a cold exec
  loopback   loopback ADD and DEL at cniVersion 0.3.1, as containerd calls it
  status     STATUS at cniVersion 1.1.0 (a plugin set without STATUS answers with an error)
  bridge     bridge + host-local ADD, CHECK, DEL (cniVersion 1.0.0, the k3s/flannel shape)
  masq       the same with ipMasq: true
  portmap    portmap with 2 mappings chained after bridge: ADD and DEL
  runtime    a two-plugin conflist (bridge + portmap) through a cnitool-compatible
             runtime: `cnibox add|del` for A, cnitool for B
  parallel   ADD (then DEL) of N pods at once: wall time and per-pod latency
  allocs     bridge ADD/DEL on a network already holding N host-local allocations
  rss        peak RSS (ru_maxrss) of one bridge ADD and one VERSION
  size       size on disk of the plugin set a k3s node needs
             (bandwidth bridge firewall flannel host-local loopback portmap)
  custom     the network of --config: ADD, CHECK, DEL

options:
  --plugins DIR          plugin set A (required)
  --vs DIR|none          a reference plugin set; repeat for several (at most 3), each
                         with its own columns (default {DEFAULT_VS} when it holds bridge)
  --label-a NAME         A's name in the output (default cnibox)
  --label-b NAME         a reference's name in the output, in the order of --vs
                         (repeatable; default reference, reference 2, ...)
  --config FILE          a network config (one plugin config, or a conflist) for the custom
                         scenario; in it @SET@ becomes a or b, @NET@ 1 or 2 and @DATADIR@ a
                         per-set directory, and a host-local ipam without dataDir gets one
  --iterations N         measured pairs per figure (default 100)
  --warmup N             discarded runs per figure and set, first (default 3)
  --parallel LIST        pod counts for the parallel scenario (default 1,8,32,128)
  --rounds N             measured rounds per pod count (default 3)
  --allocations LIST     allocation counts for the allocs scenario (default 10,1000,10000)
  --scenarios LIST       run only these (comma-separated names from the list above)
  --runtime-a PATH       cnitool-compatible runtime for A (default: the cnibox binary behind DIR)
  --runtime-b PATH       the same for the references (default: cnitool on PATH); also --cnitool PATH
  --fill-a exec|files    how to pre-fill allocations for A: run host-local ADD once per
                         allocation (exec, works with any implementation) or write the
                         reference's per-IP files (files); default exec
  --fill-b exec|files    the same for the references; default files
  --noop FILE            the exec floor: a static no-op binary of the same target and build
                         profile as set A (make bench builds it: cnibox-noop); each floor
                         probe execs it exactly as a plugin of A is exec'd. Without it the
                         floor of an ADD is the kernel's requests alone
  --build stable|tiny    how A's binary was built (make, make tiny): checks its size against
                         issue 18's target for that build
  --timeout SECS         kill an invocation after this long (default 60)
  --out DIR              bench.json (every sample), bench.svg (plot), bench.md (the table);
                         default ./bench-out
  --quick                a small run: --iterations 5 --warmup 1 --parallel 1,8 --rounds 1
                         --allocations 10,100 (later options still override)
  -h, --help             this text
"
    )
}

fn list(v: &str, what: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match p.parse::<usize>() {
            Ok(n) if n > 0 => out.push(n),
            _ => return Err(format!("{what}: \"{p}\" is not a positive number")),
        }
    }
    if out.is_empty() {
        return Err(format!("{what}: empty list"));
    }
    Ok(out)
}

fn num(v: &str, what: &str, min: usize) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("{what}: \"{v}\" is not a number of at least {min}")),
    }
}

fn fill(v: &str, what: &str) -> Result<Fill, String> {
    match v {
        "exec" => Ok(Fill::Exec),
        "files" => Ok(Fill::Files),
        _ => Err(format!("{what}: \"{v}\" is neither exec nor files")),
    }
}

/// Ok(None) means: help was asked for.
pub fn parse(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        plugins: PathBuf::new(),
        vs: Vec::new(),
        label_a: "cnibox".into(),
        label_b: Vec::new(),
        config: None,
        iterations: 100,
        warmup: 3,
        parallel: vec![1, 8, 32, 128],
        rounds: 3,
        allocations: vec![10, 1000, 10000],
        scenarios: Vec::new(),
        runtime_a: None,
        runtime_b: None,
        fill_a: Fill::Exec,
        fill_b: Fill::Files,
        timeout: Duration::from_secs(60),
        out: PathBuf::from("bench-out"),
        noop: None,
        build: None,
    };
    let mut vs_given = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        const VALUED: &[&str] = &[
            "--plugins",
            "--vs",
            "--label-a",
            "--label-b",
            "--config",
            "--iterations",
            "--warmup",
            "--parallel",
            "--rounds",
            "--allocations",
            "--scenarios",
            "--runtime-a",
            "--runtime-b",
            "--cnitool",
            "--fill-a",
            "--fill-b",
            "--timeout",
            "--out",
            "--noop",
            "--build",
        ];
        let takes_value = VALUED.contains(&flag.as_str());
        if !takes_value && !matches!(flag.as_str(), "-h" | "--help" | "--quick") {
            return Err(format!("unknown option \"{a}\""));
        }
        let val = if !takes_value {
            String::new()
        } else if let Some(v) = inline {
            v
        } else {
            i += 1;
            args.get(i).cloned().ok_or_else(|| format!("{flag} needs a value"))?
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => {
                o.iterations = 5;
                o.warmup = 1;
                o.parallel = vec![1, 8];
                o.rounds = 1;
                o.allocations = vec![10, 100];
            }
            "--plugins" => o.plugins = PathBuf::from(val),
            "--vs" => {
                if val == "none" || val.is_empty() {
                    o.vs.clear();
                } else {
                    o.vs.push(PathBuf::from(val));
                }
                vs_given = true;
            }
            "--label-a" => o.label_a = val,
            "--label-b" => o.label_b.push(val),
            "--config" => o.config = Some(PathBuf::from(val)),
            "--iterations" => o.iterations = num(&val, "--iterations", 1)?,
            "--warmup" => o.warmup = num(&val, "--warmup", 0)?,
            "--parallel" => o.parallel = list(&val, "--parallel")?,
            "--rounds" => o.rounds = num(&val, "--rounds", 1)?,
            "--allocations" => o.allocations = list(&val, "--allocations")?,
            "--scenarios" => {
                o.scenarios = val.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                if let Some(bad) = o.scenarios.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    return Err(format!("--scenarios: unknown scenario \"{bad}\" (known: {})", SCENARIOS.join(" ")));
                }
            }
            "--runtime-a" => o.runtime_a = Some(PathBuf::from(val)),
            "--runtime-b" | "--cnitool" => o.runtime_b = Some(PathBuf::from(val)),
            "--fill-a" => o.fill_a = fill(&val, "--fill-a")?,
            "--fill-b" => o.fill_b = fill(&val, "--fill-b")?,
            "--timeout" => o.timeout = Duration::from_secs(num(&val, "--timeout", 1)? as u64),
            "--out" => o.out = PathBuf::from(val),
            "--noop" => o.noop = Some(PathBuf::from(val)),
            "--build" => match val.as_str() {
                "stable" | "tiny" => o.build = Some(val),
                _ => return Err(format!("--build: \"{val}\" is neither stable nor tiny")),
            },
            _ => return Err(format!("unknown option \"{a}\"")),
        }
        i += 1;
    }
    if o.plugins.as_os_str().is_empty() {
        return Err("--plugins DIR is required".into());
    }
    if !o.plugins.is_dir() {
        return Err(format!("--plugins {}: not a directory", o.plugins.display()));
    }
    if !vs_given && std::path::Path::new(DEFAULT_VS).join("bridge").exists() {
        o.vs.push(PathBuf::from(DEFAULT_VS));
    }
    if o.vs.len() >= SET_KEYS.len() {
        return Err(format!("--vs: at most {} reference sets", SET_KEYS.len() - 1));
    }
    for vs in &o.vs {
        if !vs.is_dir() {
            return Err(format!("--vs {}: not a directory", vs.display()));
        }
    }
    if let Some(n) = &o.noop {
        if !n.is_file() {
            return Err(format!("--noop {}: no such file", n.display()));
        }
    }
    if let Some(c) = &o.config {
        if !c.is_file() {
            return Err(format!("--config {}: no such file", c.display()));
        }
    }
    o.allocations.sort_unstable();
    o.allocations.dedup();
    Ok(Some(o))
}

impl Opts {
    /// The name of reference set k (0: the first --vs).
    pub fn label_b(&self, k: usize) -> String {
        match self.label_b.get(k) {
            Some(l) => l.clone(),
            None if k == 0 => "reference".into(),
            None => format!("reference {}", k + 1),
        }
    }

    pub fn wants(&self, scenario: &str) -> bool {
        if self.scenarios.is_empty() {
            scenario != "custom" || self.config.is_some()
        } else {
            self.scenarios.iter().any(|s| s == scenario)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Option<Opts>, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn e(a: &[&str]) -> String {
        match p(a) {
            Err(e) => e,
            Ok(_) => panic!("{a:?} was accepted"),
        }
    }

    #[test]
    fn parses_and_rejects() {
        let o = p(&["--plugins", "/", "--vs=none", "--parallel", "1,4", "--iterations=7", "--quick", "--rounds", "2"])
            .unwrap()
            .unwrap();
        assert_eq!(o.parallel, vec![1, 8]);
        assert_eq!(o.iterations, 5);
        assert_eq!(o.rounds, 2);
        assert!(o.vs.is_empty());
        let o = p(&["--plugins", "/", "--vs", "/", "--vs", "/tmp", "--label-b", "x"]).unwrap().unwrap();
        assert_eq!(o.vs.len(), 2);
        assert_eq!((o.label_b(0), o.label_b(1)), ("x".to_string(), "reference 2".to_string()));
        assert!(e(&["--plugins", "/", "--vs", "/", "--vs", "/", "--vs", "/", "--vs", "/"]).contains("at most 3"));
        assert!(p(&["--help"]).unwrap().is_none());
        assert!(e(&[]).contains("--plugins"));
        assert!(e(&["--plugins", "/", "--parallel", "1,x"]).contains("not a positive number"));
        assert!(e(&["--plugins", "/", "--iterations"]).contains("needs a value"));
        assert!(e(&["--plugins", "/", "--scenarios", "nope"]).contains("unknown scenario"));
        assert!(e(&["--plugins", "/", "--frobnicate"]).contains("unknown option"));
        assert!(e(&["--plugins", "/nonexistent-dir"]).contains("not a directory"));
    }
}
