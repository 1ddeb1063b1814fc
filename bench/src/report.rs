//! The outputs: a markdown table (stdout and bench.md), every sample as JSON
//! (bench.json), and a hand-written SVG of the latency distributions
//! (bench.svg), plus the issue's targets checked against the figures.

use crate::stats::{fmt_ms, Figure, Series, Summary, Unit};
use serde_json::{json, Value};
use std::fmt::Write;

/// Where and when: enough to tell two runs' machines apart.
pub struct Machine {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub mem_gib: f64,
    pub kernel: String,
    pub load_start: String,
    pub load_end: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0);
        let k =
            |f: &str| std::fs::read_to_string(format!("/proc/sys/kernel/{f}")).unwrap_or_default().trim().to_string();
        let kernel = format!("{} {} {}", k("ostype"), k("osrelease"), std::env::consts::ARCH);
        Machine {
            date: utc_now(),
            cpu,
            cores,
            mem_gib: mem_kib / 1048576.0,
            kernel,
            load_start: loadavg(),
            load_end: String::new(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}, {} core{}, {:.0} GiB, {}; load average {} at the start, {} at the end",
            self.cpu,
            self.cores,
            if self.cores == 1 { "" } else { "s" },
            self.mem_gib,
            self.kernel,
            self.load_start,
            self.load_end
        )
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

pub struct SetInfo {
    pub label: String,
    pub dir: String,
    pub about: String,
}

pub struct Report<'a> {
    pub machine: &'a Machine,
    pub sets: Vec<SetInfo>,
    pub figures: &'a [Figure],
    pub notes: &'a [String],
    pub settings: Value,
    pub interrupted: bool,
    /// How A's binary was built (--build), for the size targets.
    pub build: Option<String>,
}

fn cell(s: &Series, unit: Unit) -> String {
    if let Some(why) = &s.skipped {
        return format!("not measured: {}", short(why, 70));
    }
    match s.summary() {
        None if s.failures > 0 => format!("failed: {}", short(s.error.as_deref().unwrap_or(""), 70)),
        None => "–".into(),
        Some(x) if x.n == 1 => unit.fmt(x.median),
        Some(x) => {
            let mut c = if unit == Unit::Ns {
                format!("{} / {} / {} / {}", num_ms(x.median), num_ms(x.p90), num_ms(x.p99), fmt_ms(x.max))
            } else {
                format!("{} / {} / {} / {}", unit.fmt(x.median), unit.fmt(x.p90), unit.fmt(x.p99), unit.fmt(x.max))
            };
            if s.failures > 0 {
                c.push_str(&format!(" ({} failed)", s.failures));
            }
            c
        }
    }
}

fn num_ms(ns: f64) -> String {
    fmt_ms(ns).trim_end_matches(" ms").to_string()
}

fn short(s: &str, n: usize) -> String {
    let one = s.replace('|', "/").replace('\n', " ");
    if one.chars().count() <= n {
        return one;
    }
    let mut t: String = one.chars().take(n).collect();
    t.push('…');
    t
}

/// Set k over A, at the median of the pairs (and at p99).
fn ratio_cell(f: &Figure, k: usize) -> String {
    match f.ratio(k) {
        None => "–".into(),
        Some(r) => match f.ratio_p99(k) {
            Some(p) if f.a().samples.len() > 1 && f.unit == Unit::Ns => format!("{r:.1}x (p99 {p:.1}x)"),
            _ => format!("{r:.1}x"),
        },
    }
}

impl Report<'_> {
    fn has_b(&self) -> bool {
        self.sets.len() > 1
    }

    fn find(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key)
    }

    /// The parallel ADD wall-time figure of the most pods measured.
    fn parallel_add_wall(&self) -> Option<&Figure> {
        self.figures
            .iter()
            .filter(|f| f.key.starts_with("parallel.") && f.key.ends_with(".add_wall"))
            .max_by_key(|f| f.key.split('.').nth(1).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0))
    }

    /// Issue 18 section 2: cnibox (set A) against the floor of the same run.
    pub fn floor_targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let med = |s: &Series| s.summary().map(|x| x.median);
        let a_label = &self.sets[0].label;
        let exec_floor = self.find("version").and_then(|f| med(&f.floor));
        // A figure against (its floor + extra) * factor, or floor + slack.
        let mut against = |what: String, key: &str, with_exec: bool, factor: f64, slack_ns: f64| {
            let Some(f) = self.find(key) else {
                t.push(Target { what, met: None, figure: "scenario not run".into() });
                return;
            };
            let (Some(a), Some(fl)) = (med(f.a()), med(&f.floor)) else {
                let why =
                    if f.floor.samples.is_empty() { "no floor measured".to_string() } else { why_missing(Some(f)) };
                t.push(Target { what, met: None, figure: why });
                return;
            };
            let ex = if with_exec { exec_floor } else { Some(0.0) };
            let Some(ex) = ex else {
                t.push(Target { what, met: None, figure: "no exec floor measured (the version scenario)".into() });
                return;
            };
            let bound = (fl + ex) * factor + slack_ns;
            let mut fig = format!("{a_label} {} vs floor {}", fmt_ms(a), fmt_ms(fl));
            if with_exec {
                fig.push_str(&format!(" + exec floor {}", fmt_ms(ex)));
            }
            fig.push_str(&format!(": {:.2}x, limit {}", a / (fl + ex), fmt_ms(bound)));
            if f.a().failures > 0 {
                fig.push_str(&format!("; {} failures", f.a().failures));
            }
            t.push(Target { what, met: Some(a <= bound && f.a().failures == 0), figure: fig });
        };
        against("bridge+host-local ADD within 1.25x its floor (kernel + exec)".into(), "bridge.add", false, 1.25, 0.0);
        against("VERSION within 1.15x the exec floor".into(), "version", false, 1.15, 0.0);
        against("STATUS within 1.15x the exec floor".into(), "status", false, 1.15, 0.0);
        against("DEL within its kernel floor + 0.3 ms".into(), "bridge.del", false, 1.0, 0.3e6);
        against("portmap ADD within 1.25x its floor".into(), "portmap.add", false, 1.25, 0.0);
        if let Some(par) = self.parallel_add_wall() {
            let what = format!("{} within 1.3x the parallel floor, no failures", par.name);
            let key = par.key.clone();
            against(what, &key, false, 1.3, 0.0);
        }
        // Section 3: the size of A's binary (one file behind every name) against its build's target.
        if let Some(f) = self.find("size.k3s_bytes") {
            let limit = match self.build.as_deref() {
                Some("tiny") => Some(("tiny", 512_000.0)),
                Some("stable") => Some(("stable", 1_000_000.0)),
                _ => None,
            };
            if let (Some((kind, max)), Some(s)) = (limit, f.a().summary()) {
                t.push(Target {
                    what: format!("the {kind} build with every plugin at most {} KB", max / 1000.0),
                    met: Some(s.median <= max),
                    figure: format!("{:.0} bytes ({})", s.median, Unit::Bytes.fmt(s.median)),
                });
            }
        }
        // ipMasq: what it adds to A's ADD (paired twin), against 0.1 ms.
        if let (Some(m), Some(p)) = (self.find("masq_beside.add"), self.find("masq_beside.plain_add")) {
            let what = format!("ipMasq adds at most 0.1 ms to the {a_label} ADD (another pod attached)");
            match added(&m.a().samples, &p.a().samples) {
                Some(d) => {
                    let mut figure = format!("+{}", fmt_ms(d.max(0.0)));
                    // The kernel's part: the floor's own ipMasq, the same listing
                    // and batch issued in-process, paired the same way.
                    if let Some(k) = added(&m.floor.samples, &p.floor.samples) {
                        figure.push_str(&format!(
                            "; the floor's own ipMasq (the same nftables listing and batch, in-process) adds +{}, \
                             so {a_label}'s part is {}",
                            fmt_ms(k.max(0.0)),
                            fmt_signed_ms(d - k)
                        ));
                    }
                    t.push(Target { what, met: Some(d <= 0.1e6), figure })
                }
                None => t.push(Target { what, met: None, figure: why_missing(Some(m)) }),
            }
        }
        t
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let a = &self.sets[0];
        let _ = writeln!(o, "### cnibox-bench, {}\n", self.machine.date);
        let _ = writeln!(o, "Machine: {}.\n", self.machine.describe());
        let _ = writeln!(o, "- A = **{}**: `{}` ({})", a.label, a.dir, if a.about.is_empty() { "?" } else { &a.about });
        for (k, b) in self.sets.iter().enumerate().skip(1) {
            let about = if b.about.is_empty() { "?" } else { &b.about };
            let _ = writeln!(o, "- {} = **{}**: `{}` ({about})", SET_NAMES[k], b.label, b.dir);
        }
        let _ = writeln!(
            o,
            "- Times are fork→wait wall clock of real invocations inside a throwaway node namespace; median / p90 / p99 / max in ms; \
             percentiles by nearest rank (p99 is the max below 100 samples); the sets and the floor interleaved after \
             warm-up; B/A (C/A, ...) is the median of the per-pair ratios (higher = A faster). Every set's IPAM \
             data directory is on a tmpfs the tool mounts, so that no file system's memory of earlier runs decides \
             the figures.{}\n",
            if self.interrupted { " **The run was interrupted: figures are partial.**" } else { "" }
        );
        // The floor: see the note under the table (and bench/src/floor.rs).
        let mut head = format!("| scenario | figure | n | {} | floor | x floor |", a.label);
        for (k, set) in self.sets.iter().enumerate().skip(1) {
            head.push_str(&format!(" {} | {}/A |", set.label, SET_NAMES[k]));
        }
        let _ = writeln!(o, "{head}");
        let _ = writeln!(o, "{}|", "|---".repeat(6 + 2 * (self.sets.len() - 1)));
        for f in self.figures {
            let counts: Vec<usize> = (0..self.sets.len()).map(|k| f.set(k).samples.len()).filter(|&n| n > 0).collect();
            let n = if counts.windows(2).all(|w| w[0] == w[1]) {
                counts.first().copied().unwrap_or(0).to_string()
            } else {
                counts.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("/")
            };
            let floor = f.floor.summary().map(|x| fmt_ms(x.median)).unwrap_or_else(|| "–".into());
            let xf = f.x_floor().map(|r| format!("{r:.2}x")).unwrap_or_else(|| "–".into());
            let mut row = format!("| {} | {} | {n} | {} | {floor} | {xf} |", f.scenario, f.name, cell(f.a(), f.unit));
            for k in 1..self.sets.len() {
                row.push_str(&format!(" {} | {} |", cell(f.set(k), f.unit), ratio_cell(f, k)));
            }
            let _ = writeln!(o, "{row}");
        }
        let _ = writeln!(o, "\n{FLOOR_NOTE}");
        let floor_targets = self.floor_targets();
        if !floor_targets.is_empty() {
            let _ = writeln!(o, "\n**Targets** (issue 18: at the floor, medians of this run):\n");
            for t in &floor_targets {
                let mark = match t.met {
                    Some(true) => "met",
                    Some(false) => "**missed**",
                    None => "not measured",
                };
                let _ = writeln!(o, "- {}: {mark}: {}", t.what, t.figure);
            }
        }
        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(o, "\n**Targets** (issues 4 and 6):\n");
            for t in &targets {
                let mark = match t.met {
                    Some(true) => "met",
                    Some(false) => "**missed**",
                    None => "not measured",
                };
                let _ = writeln!(o, "- {}: {mark}: {}", t.what, t.figure);
            }
        }
        let mut notes: Vec<String> = self.notes.to_vec();
        // One line per (scenario, set, problem), naming the figures it hit.
        let mut problems: Vec<(&str, String, String, Vec<&str>)> = Vec::new();
        for f in self.figures {
            for (k, s) in f.sets.iter().enumerate() {
                let (Some(p), Some(set)) = (s.problem(), self.sets.get(k)) else { continue };
                match problems.iter_mut().find(|x| x.0 == f.scenario && x.1 == set.label && x.2 == p) {
                    Some(x) => x.3.push(&f.name),
                    None => problems.push((f.scenario, set.label.clone(), p, vec![&f.name])),
                }
            }
        }
        for f in self.figures {
            let n = format!("{}: {}", f.scenario, f.note);
            if !f.note.is_empty() && !notes.iter().any(|x| x.contains(&f.note)) && !notes.contains(&n) {
                notes.push(n);
            }
        }
        for (scen, label, p, names) in problems {
            notes.push(format!("{scen} ({}): {label}: {p}", names.join(", ")));
        }
        if !notes.is_empty() {
            let _ = writeln!(o, "\nNotes:\n");
            for n in notes {
                let _ = writeln!(o, "- {}", n.replace('\n', " "));
            }
        }
        o
    }

    pub fn targets(&self) -> Vec<Target> {
        let find = |key: &str| self.figures.iter().find(|f| f.key == key);
        let mut t = Vec::new();
        if !self.has_b() {
            return t;
        }
        let b = &self.sets[1].label;
        // Ratios.
        let ratio_target = |what: String, f: Option<&Figure>, min: f64, p99: bool| -> Target {
            match f.and_then(|f| Some((f, f.ratio(1)?))) {
                Some((f, r)) => {
                    let rp = f.ratio_p99(1).unwrap_or(0.0);
                    let met = r >= min && (!p99 || rp >= min);
                    let (sa, sb) = (f.a().summary().unwrap_or_default(), f.b().summary().unwrap_or_default());
                    let mut fig = format!("{r:.1}x at the median ({} vs {b} {})", fmt_ms(sa.median), fmt_ms(sb.median));
                    if p99 {
                        fig.push_str(&format!(", {rp:.1}x at p99 ({} vs {})", fmt_ms(sa.p99), fmt_ms(sb.p99)));
                    }
                    Target { what, met: Some(met), figure: fig }
                }
                None => Target { what, met: None, figure: why_missing(f) },
            }
        };
        t.push(ratio_target("VERSION at least 4x faster (median)".into(), find("version"), 4.0, false));
        t.push(ratio_target(
            "bridge+host-local ADD at least 5x faster (median and p99)".into(),
            find("bridge.add"),
            5.0,
            true,
        ));
        t.push(ratio_target(
            "bridge+host-local DEL at least 5x faster (median)".into(),
            find("bridge.del"),
            5.0,
            false,
        ));
        // Parallel: the largest size measured (128 by default).
        let par = self.parallel_add_wall();
        let pname =
            par.map(|f| f.name.trim_end_matches(": wall").to_string()).unwrap_or_else(|| "parallel ADD x128".into());
        let mut pt = ratio_target(format!("{pname}: wall time at least 5x shorter, no failures"), par, 5.0, false);
        if let Some(f) = par {
            let per = par.and_then(|f| find(&f.key.replace(".add_wall", ".add_pod")));
            let fails = f.a().failures + per.map(|p| p.a().failures).unwrap_or(0);
            if fails > 0 {
                pt.met = Some(false);
            }
            pt.figure.push_str(&format!(
                "; {} failures: {}",
                self.sets[0].label,
                per.map(|p| p.a().failures).unwrap_or(0)
            ));
            pt.figure.push_str(&format!(", {b} failures: {}", per.map(|p| p.b().failures).unwrap_or(0)));
        }
        t.push(pt);
        // ADD at the most allocations within 1.3x of ADD at the fewest (A only).
        let allocs: Vec<&Figure> =
            self.figures.iter().filter(|f| f.scenario == "allocs" && f.key.ends_with(".add")).collect();
        if allocs.len() >= 2 {
            let (lo, hi) = (allocs[0], allocs[allocs.len() - 1]);
            let what =
                format!("{} ADD at {} within 1.3x of ADD at {}", self.sets[0].label, count(&hi.key), count(&lo.key));
            match (lo.a().summary(), hi.a().summary()) {
                (Some(l), Some(h)) if l.median > 0.0 => {
                    let r = h.median / l.median;
                    let mut fig = format!("{r:.2}x ({} vs {})", fmt_ms(h.median), fmt_ms(l.median));
                    if let (Some(bl), Some(bh)) = (lo.b().summary(), hi.b().summary()) {
                        if bl.median > 0.0 {
                            fig.push_str(&format!(
                                "; {b}: {:.2}x ({} vs {})",
                                bh.median / bl.median,
                                fmt_ms(bh.median),
                                fmt_ms(bl.median)
                            ));
                        }
                    }
                    t.push(Target { what, met: Some(r <= 1.3), figure: fig });
                }
                _ => t.push(Target { what, met: None, figure: why_missing(Some(hi)) }),
            }
        }
        if let Some(f) = find("rss.add") {
            let what = format!("peak RSS of an ADD under 4 MiB ({b}: reported)");
            match f.a().summary() {
                Some(s) => {
                    let bs = f.b().summary().map(|x| Unit::Kib.fmt(x.max)).unwrap_or_else(|| "not measured".into());
                    t.push(Target {
                        what,
                        met: Some(s.max < 4096.0),
                        figure: format!("{} (max of {}); {b}: {bs}", Unit::Kib.fmt(s.max), s.n),
                    })
                }
                None => t.push(Target { what, met: None, figure: why_missing(Some(f)) }),
            }
        }
        // Issue 4: what ipMasq costs.
        t.push(ratio_target(
            "bridge+host-local ipMasq ADD at least 10x faster (median)".into(),
            find("masq.add"),
            10.0,
            false,
        ));
        for (key, when) in [("masq", "the only pod on the node"), ("masq_beside", "another pod attached")] {
            let what = format!("ipMasq adds under 0.3 ms to the {} ADD median ({when})", self.sets[0].label);
            let (Some(m), Some(p)) = (find(&format!("{key}.add")), find(&format!("{key}.plain_add"))) else {
                continue;
            };
            match (m.a().summary(), p.a().summary()) {
                (Some(ms), Some(ps)) => {
                    let d = added(&m.a().samples, &p.a().samples).unwrap_or(ms.median - ps.median);
                    let sign = if d < 0.0 { "-" } else { "+" };
                    let fig = format!(
                        "{sign}{} (median of the per-iteration differences; medians {} with, {} without)",
                        fmt_ms(d.abs()),
                        fmt_ms(ms.median),
                        fmt_ms(ps.median)
                    );
                    t.push(Target { what, met: Some(d < 0.3e6), figure: fig });
                }
                _ => t.push(Target { what, met: None, figure: why_missing(Some(m)) }),
            }
        }
        t
    }

    pub fn json(&self) -> Value {
        let series = |s: &Series, unit: Unit| -> Value {
            let sum = s.summary().map(|x: Summary| json!({"n": x.n, "median": x.median, "p90": x.p90, "p99": x.p99, "max": x.max, "min": x.min}));
            json!({"unit": unit.name(), "samples": s.samples, "failures": s.failures, "error": s.error, "not_measured": s.skipped, "summary": sum})
        };
        let figs: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                json!({
                    "scenario": f.scenario, "key": f.key, "figure": f.name, "unit": f.unit.name(),
                    "floor": series(&f.floor, f.unit), "x_floor": f.x_floor(),
                    "a": series(f.a(), f.unit), "b": if self.has_b() { series(f.b(), f.unit) } else { Value::Null },
                    "refs": (1..self.sets.len()).map(|k| json!({
                        "label": self.sets[k].label, "series": series(f.set(k), f.unit),
                        "pair_ratios_over_a": f.pair_ratios(k), "ratio_over_a": f.ratio(k),
                    })).collect::<Vec<_>>(),
                    "pair_ratios_b_over_a": f.pair_ratios(1), "ratio_b_over_a": f.ratio(1), "ratio_p99_b_over_a": f.ratio_p99(1),
                    "note": f.note,
                })
            })
            .collect();
        let sets: Vec<Value> =
            self.sets.iter().map(|s| json!({"label": s.label, "dir": s.dir, "about": s.about})).collect();
        let targets: Vec<Value> = self
            .floor_targets()
            .iter()
            .chain(self.targets().iter())
            .map(|t| json!({"target": t.what, "met": t.met, "figure": t.figure}))
            .collect();
        let m = self.machine;
        json!({
            "tool": "cnibox-bench",
            "date": m.date,
            "machine": {"cpu": m.cpu, "cores": m.cores, "mem_gib": m.mem_gib, "kernel": m.kernel, "loadavg_start": m.load_start, "loadavg_end": m.load_end},
            "settings": self.settings,
            "sets": sets,
            "interrupted": self.interrupted,
            "figures": figs,
            "targets": targets,
            "notes": self.notes,
        })
    }

    /// Latency distribution per figure: every sample as a dot on a log time
    /// axis, A above B in each row, with median and p99 ticks.
    pub fn svg(&self) -> String {
        let figs: Vec<&Figure> =
            self.figures.iter().filter(|f| f.plot && f.sets.iter().any(|s| !s.samples.is_empty())).collect();
        let (w, left, right, top, row) = (1100.0, 330.0, 1060.0, 70.0, 34.0);
        let h = top + row * figs.len().max(1) as f64 + 70.0;
        let all = figs.iter().flat_map(|f| f.sets.iter().chain([&f.floor]).flat_map(|s| s.samples.iter())).copied();
        let (mut lo, mut hi) = (f64::MAX, 0f64);
        for v in all {
            lo = lo.min(v as f64);
            hi = hi.max(v as f64);
        }
        if hi <= 0.0 {
            lo = 1e5;
            hi = 1e7;
        }
        // Whole decades around the data, in ns.
        let (d0, d1) =
            ((lo.max(1.0)).log10().floor(), (hi.max(10.0)).log10().ceil().max(lo.max(1.0).log10().floor() + 1.0));
        let x = |v: f64| left + (v.max(1.0).log10() - d0) / (d1 - d0) * (right - left);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let title = format!("cnibox-bench {}: plugin exec latency, fork to wait (log scale)", self.machine.date);
        let _ = writeln!(s, r#"<text x="{left}" y="22" font-size="15" font-weight="bold">{}</text>"#, esc(&title));
        let colors = ["#1f6fb4", "#e8710a", "#8e44ad", "#7f6000"];
        let nsets = self.sets.len().min(colors.len());
        for (k, set) in self.sets.iter().enumerate().take(nsets) {
            let lx = left + k as f64 * 200.0;
            let _ = writeln!(
                s,
                r#"<circle cx="{}" cy="42" r="5" fill="{}"/><text x="{}" y="46">{} ({})</text>"#,
                lx + 5.0,
                colors[k],
                lx + 15.0,
                esc(&set.label),
                SET_NAMES[k]
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="46" fill="#555">| median   ¦ p99   <tspan fill="#2a9d3a" font-weight="bold">|</tspan> floor</text>"##,
            left + 200.0 * nsets as f64
        );
        // Grid: decades labelled, 2 and 5 in between.
        let bottom = top + row * figs.len() as f64;
        let mut dec = d0;
        while dec <= d1 + 1e-9 {
            for m in [1.0, 2.0, 5.0] {
                let v = 10f64.powf(dec) * m;
                if v.log10() > d1 + 1e-9 {
                    continue;
                }
                let xx = x(v);
                let (stroke, width) = if m == 1.0 { ("#bbb", 1.0) } else { ("#e4e4e4", 1.0) };
                let _ = writeln!(
                    s,
                    r#"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{bottom}" stroke="{stroke}" stroke-width="{width}"/>"#
                );
                if m == 1.0 || (d1 - d0) <= 3.0 {
                    let _ = writeln!(
                        s,
                        r##"<text x="{xx:.1}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
                        bottom + 16.0,
                        esc(&tick(v))
                    );
                }
            }
            dec += 1.0;
        }
        for (i, f) in figs.iter().enumerate() {
            let y0 = top + row * i as f64;
            if i % 2 == 1 {
                let _ = writeln!(
                    s,
                    r##"<rect x="0" y="{y0}" width="{w}" height="{row}" fill="#000" fill-opacity="0.03"/>"##
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                left - 10.0,
                y0 + row / 2.0 + 4.0,
                esc(&short(&f.name, 48))
            );
            for (k, color) in colors.iter().enumerate().take(nsets) {
                let ser = f.set(k);
                // One strip per set, A at the top.
                let yc = y0 + row * (k as f64 + 0.5) / nsets as f64;
                let n = ser.samples.len();
                let _ = write!(s, r#"<g fill="{}" fill-opacity="{}">"#, color, if n > 100 { 0.25 } else { 0.5 });
                for (j, &v) in ser.samples.iter().enumerate() {
                    // Deterministic jitter so dense strips stay readable.
                    let jit = ((j as u64).wrapping_mul(2654435761) % 1000) as f64 / 1000.0 - 0.5;
                    let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="2"/>"#, x(v as f64), yc + jit * row * 0.28);
                }
                s.push_str("</g>");
                if let Some(sum) = ser.summary() {
                    let (xm, xp) = (x(sum.median), x(sum.p99));
                    let _ = write!(
                        s,
                        r#"<line x1="{xm:.1}" y1="{:.1}" x2="{xm:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
                        yc - 7.0,
                        yc + 7.0
                    );
                    let _ = write!(
                        s,
                        r#"<line x1="{xp:.1}" y1="{:.1}" x2="{xp:.1}" y2="{:.1}" stroke="black" stroke-width="1" stroke-dasharray="2,2"/>"#,
                        yc - 6.0,
                        yc + 6.0
                    );
                } else if ser.skipped.is_some() || ser.failures > 0 {
                    let _ = write!(
                        s,
                        r#"<text x="{}" y="{:.1}" fill="{}" font-size="10">not measured / failed</text>"#,
                        left + 4.0,
                        yc + 3.5,
                        color
                    );
                }
                let _ = writeln!(s);
            }
            if let Some(fl) = f.floor.summary() {
                let xf = x(fl.median);
                let _ = writeln!(
                    s,
                    r##"<line x1="{xf:.1}" y1="{:.1}" x2="{xf:.1}" y2="{:.1}" stroke="#2a9d3a" stroke-width="3"/>"##,
                    y0 + 2.0,
                    y0 + row - 2.0
                );
            }
            if let Some(r) = f.ratio(1) {
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}" fill="#333" font-size="11">{r:.1}x</text>"##,
                    right + 4.0,
                    y0 + row / 2.0 + 4.0
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="20" y="{}" fill="#555" font-size="11">{}</text>"##,
            bottom + 36.0,
            esc(&self.machine.describe())
        );
        let _ = writeln!(
            s,
            r##"<text x="20" y="{}" fill="#555" font-size="11">right column: B/A, the first reference over A, the median of the per-pair ratios (higher = A faster)</text>"##,
            bottom + 52.0
        );
        s.push_str("</svg>\n");
        s
    }
}

/// An axis label: 0.1 ms, 2 ms, 50 ms, 1 s.
fn tick(ns: f64) -> String {
    let ms = ns / 1e6;
    if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0))
    } else {
        format!("{} ms", trim(ms))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// "N allocations" from an allocs figure's key (`allocs.N.add`).
fn count(key: &str) -> String {
    format!("{} allocations", key.split('.').nth(1).unwrap_or("?"))
}

fn why_missing(f: Option<&Figure>) -> String {
    match f {
        None => "scenario not run".into(),
        Some(f) => {
            let mut w = Vec::new();
            if let Some(p) = f.a().problem() {
                w.push(format!("A: {}", short(&p, 160)));
            }
            if let Some(p) = f.b().problem() {
                w.push(format!("B: {}", short(&p, 160)));
            }
            if w.is_empty() {
                "no samples".into()
            } else {
                w.join("; ")
            }
        }
    }
}

/// A difference in ns, signed, as the report writes times.
fn fmt_signed_ms(d: f64) -> String {
    if d < 0.0 {
        format!("-{}", fmt_ms(-d))
    } else {
        format!("+{}", fmt_ms(d))
    }
}

/// The median of `with[i] - without[i]` (ns), the two measured in the same
/// iterations; None when failures left them unpaired.
fn added(with: &[u64], without: &[u64]) -> Option<f64> {
    if with.len() != without.len() || with.is_empty() {
        return None;
    }
    let mut d: Vec<f64> = with.iter().zip(without).map(|(&a, &b)| a as f64 - b as f64).collect();
    d.sort_by(|a, b| a.total_cmp(b));
    Some(d[d.len() / 2])
}

/// What the floor column holds, for the reader of the table.
pub const FLOOR_NOTE: &str = "floor (median, measured in the same interleaved iterations): for VERSION, STATUS and \
loopback, an exec of a static no-op binary of the same target and build profile, with the same environment and the \
config on stdin (process creation, exec, a Rust program's start and exit: what any plugin pays); for bridge, ipMasq \
and parallel, that exec plus the kernel requests cnibox's bridge makes (veth pair created in one request with the peer in the \
container, bridge-port hairpin, the sysctls it writes, address, links up, default route; ipMasq: cnibox's own \
nftables listing and batch); for portmap, that exec plus cnibox's nftables rules of the two mappings and \
route_localnet; all issued in-process by the tool with cnibox's netlink code, no exec and no IPAM. \
x floor = A's median / the floor's.";

/// The sets as the table names them: A is measured, the others are references.
const SET_NAMES: [&str; 4] = ["A", "B", "C", "D"];

pub struct Target {
    pub what: String,
    pub met: Option<bool>,
    pub figure: String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
