//! cnibox-bench: plugin exec latency, two CNI plugin sets side by side.
//! See `cnibox-bench --help`; `make bench` runs it through scripts/bench.sh.

// System calls go through the cnibox library's sys module, never here.
#![deny(unsafe_code)]

mod cli;
mod floor;
mod invoke;
mod lab;
mod report;
mod scenarios;
mod spawn;
mod stats;

use invoke::Side;
use serde_json::json;
use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if args.first().map(String::as_str) == Some("--rss-probe") {
        std::process::exit(spawn::rss_probe(&args[1..]));
    }
    let code = match cli::parse(&args) {
        Ok(None) => {
            print!("{}", cli::help());
            0
        }
        Ok(Some(o)) => match run(&o) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cnibox-bench: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("cnibox-bench: {e}\n(see cnibox-bench --help)");
            2
        }
    };
    std::process::exit(code);
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .unwrap_or(None)
}

/// The runtime that drives a conflist for this set: given, or found.
fn runtime_for(given: Option<&PathBuf>, dir: &Path, b: bool) -> Option<(PathBuf, String)> {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(p) = given {
        let p = absolute(p);
        let n = name(&p);
        return Some((p, n));
    }
    if b {
        return on_path("cnitool").map(|p| (p, "cnitool".into()));
    }
    let direct = dir.join("cnibox");
    if direct.is_file() {
        return Some((direct, "cnibox".into()));
    }
    let real = std::fs::canonicalize(dir.join("bridge")).ok()?;
    (name(&real) == "cnibox").then(|| (real, "cnibox".into()))
}

fn run(o: &cli::Opts) -> Result<i32, String> {
    if cnibox::sys::process::euid() != 0 {
        return Err("needs root: it creates network namespaces (run it as root or with sudo)".into());
    }
    spawn::install_signal_handlers();
    let mut machine = report::Machine::read();
    let out = absolute(&o.out);
    std::fs::create_dir_all(&out).map_err(|e| format!("--out {}: {e}", out.display()))?;

    let mut lab = lab::Lab::new()?;
    let mut sides = Vec::new();
    let mut dirs = vec![(&o.plugins, o.label_a.clone(), o.runtime_a.as_ref(), o.fill_a)];
    for (k, vs) in o.vs.iter().enumerate() {
        dirs.push((vs, o.label_b(k), o.runtime_b.as_ref(), o.fill_b));
    }
    for (idx, (dir, label, rt, fill)) in dirs.into_iter().enumerate() {
        let key = cli::SET_KEYS[idx];
        let dir = absolute(dir);
        sides.push(Side {
            idx,
            key,
            label,
            about: invoke::about(&dir),
            runtime: runtime_for(rt, &dir, idx > 0),
            dir,
            work: lab.dir(key)?,
            fill,
            timeout: o.timeout,
            pool: Vec::new(),
        });
    }
    for s in &sides {
        eprintln!(
            "cnibox-bench: {} = {} ({})",
            s.key.to_uppercase(),
            s.dir.display(),
            if s.about.is_empty() { "no plugin answered" } else { &s.about }
        );
    }
    let sets: Vec<report::SetInfo> = sides
        .iter()
        .map(|s| report::SetInfo { label: s.label.clone(), dir: s.dir.display().to_string(), about: s.about.clone() })
        .collect();

    let noop = o.noop.as_ref().map(|p| absolute(p));
    let mut cx = scenarios::Ctx {
        lab: &mut lab,
        opts: o,
        sides,
        figures: Vec::new(),
        notes: Vec::new(),
        noop,
        floor_pool: Vec::new(),
    };
    let res = cx.run_all();
    let (figures, notes) = (std::mem::take(&mut cx.figures), std::mem::take(&mut cx.notes));
    drop(cx);
    eprintln!("cnibox-bench: removing the namespaces");
    drop(lab);
    machine.load_end = report::loadavg();

    let interrupted = spawn::interrupted();
    let settings = json!({
        "iterations": o.iterations, "warmup": o.warmup, "parallel": o.parallel, "rounds": o.rounds,
        "allocations": o.allocations, "scenarios": o.scenarios, "timeout_s": o.timeout.as_secs(),
        "fill_a": format!("{:?}", o.fill_a).to_lowercase(), "fill_b": format!("{:?}", o.fill_b).to_lowercase(),
        "build": o.build,
    });
    let build = o.build.clone();
    let rep =
        report::Report { machine: &machine, sets, figures: &figures, notes: &notes, settings, interrupted, build };
    let md = rep.markdown();
    print!("{md}");
    let write = |name: &str, text: String| -> Result<(), String> {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write("bench.md", md)?;
    write("bench.json", serde_json::to_string_pretty(&rep.json()).unwrap_or_default() + "\n")?;
    write("bench.svg", rep.svg())?;
    eprintln!("cnibox-bench: wrote {}/bench.md, bench.json, bench.svg", out.display());
    match res {
        _ if interrupted => {
            eprintln!("cnibox-bench: interrupted; the figures are partial");
            Ok(130)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(0),
    }
}
