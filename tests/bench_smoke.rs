//! cnibox-bench, quickly: a tiny run against the built cnibox (and the
//! reference plugins when installed) that checks the three output files are
//! produced and well-formed and that nothing is left behind. Root only.

mod common;

use serde_json::Value;
use std::process::Command;

/// The tool is a crate of its own (bench/): the one CNIBOX_BENCH_BIN names, or
/// built here into the usual target directory.
fn bench() -> Command {
    Command::new(bench_bin())
}

fn bench_bin() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let bin = BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CNIBOX_BENCH_BIN") {
            return p.into();
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let st = Command::new(cargo)
            .args(["build", "--locked", "-p", "cnibox-bench", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .status()
            .expect("cannot run cargo to build cnibox-bench");
        assert!(st.success(), "cargo build -p cnibox-bench failed");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or(root.join("target"));
        target.join("debug/cnibox-bench")
    });
    bin
}

#[test]
fn help_and_bad_arguments() {
    let out = bench().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--plugins DIR") && help.contains("any directories of CNI plugins"), "{help}");
    for args in [&["--iterations", "x"][..], &["--plugins"][..], &["--bogus"][..], &[][..]] {
        let out = bench().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("cnibox-bench: ") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn quick_run_writes_table_json_and_svg() {
    need_root!();
    let tmp = common::TempDir::new("bench");
    let plugins = common::plugin_dir(&tmp);
    let out_dir = tmp.join("out");
    let mut cmd = bench();
    // The exec floor's no-op is built beside the tool.
    let noop = bench_bin().with_file_name("cnibox-noop");
    cmd.args(["--plugins", &plugins, "--iterations", "2", "--warmup", "1", "--noop"]).arg(&noop).arg("--out");
    cmd.arg(&out_dir).args(["--scenarios", "version,loopback,status,bridge,rss,size", "--timeout", "20"]);
    let with_ref = std::path::Path::new("/usr/lib/cni/bridge").exists();
    if !with_ref {
        cmd.args(["--vs", "none"]);
    }
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // The table on stdout and in bench.md.
    assert!(stdout.contains("| scenario | figure | n | cnibox | floor | x floor |"), "{stdout}");
    assert!(stdout.contains("**Targets** (issue 18"), "{stdout}");
    assert!(stdout.contains("VERSION (bridge, cold exec)"), "{stdout}");
    assert_eq!(std::fs::read_to_string(out_dir.join("bench.md")).unwrap(), stdout);

    // Every sample in bench.json; VERSION and loopback measured for cnibox.
    let j: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("bench.json")).unwrap()).unwrap();
    let figs = j["figures"].as_array().unwrap();
    let fig = |name: &str| figs.iter().find(|f| f["figure"] == name).unwrap_or_else(|| panic!("no figure {name}"));
    let key = |k: &str| figs.iter().find(|f| f["key"] == k).unwrap_or_else(|| panic!("no figure {k}"));
    // The floor, measured in the same iterations: the no-op's exec, and the kernel's bridge ADD/DEL.
    for k in ["version", "loopback.add", "status", "bridge.add", "bridge.del"] {
        let f = &key(k)["floor"];
        assert_eq!(f["samples"].as_array().unwrap().len(), 2, "{k}: {f}");
        assert!(f["summary"]["median"].as_f64().unwrap() > 0.0, "{k}: {f}");
        assert!(key(k)["x_floor"].as_f64().unwrap() > 0.0, "{k}");
    }
    for name in ["VERSION (bridge, cold exec)", "loopback ADD (0.3.1, as containerd)", "loopback DEL (0.3.1)"] {
        let a = &fig(name)["a"];
        assert_eq!(a["samples"].as_array().unwrap().len(), 2, "{name}: {a}");
        assert!(a["summary"]["median"].as_f64().unwrap() > 0.0);
        if with_ref {
            assert_eq!(fig(name)["b"]["samples"].as_array().unwrap().len(), 2, "{name}");
            assert_eq!(fig(name)["pair_ratios_b_over_a"].as_array().unwrap().len(), 2, "{name}");
        }
    }
    for f in figs {
        assert!(f["a"]["samples"].is_array() && f["unit"].is_string(), "{f}");
    }
    assert_eq!(fig("k3s plugin set: bytes (7 names)")["a"]["samples"].as_array().unwrap().len(), 1);
    assert!(j["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(j["targets"].is_array());

    // The plot: one SVG document with a row per measured latency figure.
    let svg = std::fs::read_to_string(out_dir.join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("VERSION (bridge, cold exec)") && svg.contains("<circle"));

    // Nothing left: namespaces and the scratch directory of that run.
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!left.iter().any(|n| n.starts_with(&format!("cnbench-{pid}-"))), "left behind: {left:?}");
    assert!(!std::env::temp_dir().join(format!("cnibox-bench-{pid}")).exists());
}
