//! The runtime side run as a person runs it: `cnibox add|check|del|gc|status`,
//! `cnibox netns`, `cnibox run` and the plugin short form, each inside a
//! throwaway node namespace, with NETCONFPATH, CNI_PATH and the cache in a
//! temp dir. Chains are made observable by small shell plugins that record
//! their stdin and CNI_* environment and print a canned result or error.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

struct Rt {
    tmp: TempDir,
    node: Netns,
    node_file: std::fs::File,
    env: Vec<(String, String)>,
}

/// One recorded plugin call.
struct Seen {
    plugin: String,
    cmd: String,
    stdin: Value,
    env: HashMap<String, String>,
}

impl Rt {
    fn new() -> Rt {
        let tmp = TempDir::new("rt");
        let bins = plugin_dir(&tmp);
        for d in ["fake", "log", "net.d"] {
            std::fs::create_dir_all(tmp.join(d)).unwrap();
        }
        let env = vec![
            ("NETCONFPATH".to_string(), tmp.join("net.d").display().to_string()),
            ("CNI_PATH".to_string(), format!("{}:{bins}", tmp.join("fake").display())),
            ("CNI_CACHE_DIR".to_string(), tmp.join("cache").display().to_string()),
        ];
        let node = Netns::new("node");
        Rt { node_file: node.file(), node, tmp, env }
    }

    fn conf(&self, file: &str, body: &str) {
        std::fs::write(self.tmp.join("net.d").join(file), body).unwrap();
    }

    /// A plugin `name` that records each call, prints `result` on ADD and
    /// fails with code 117 on `fail` (a CNI_COMMAND, or "" for never).
    fn fake(&self, name: &str, result: &str, fail: &str) {
        let script = format!(
            "#!/bin/sh\nd='{log}'\nn=$(ls \"$d\" | wc -l)\nf=\"$d/$(printf %04d \"$n\")-{name}-$CNI_COMMAND\"\n\
             cat > \"$f.stdin\"\nenv | grep '^CNI_' > \"$f.env\"\n\
             if [ \"$CNI_COMMAND\" = '{fail}' ]; then echo '{{\"code\":117,\"msg\":\"{name} refused\",\"details\":\"on purpose\"}}'; exit 1; fi\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then echo '{result}'; fi\n",
            log = self.tmp.join("log").display()
        );
        let p = self.tmp.join("fake").join(name);
        std::fs::write(&p, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn command(&self, argv0: &str, args: &[&str], extra: &[(&str, &str)]) -> Command {
        self.program(&bin(), argv0, args, extra)
    }

    /// `program` run in the node namespace with this test's CNI environment only.
    fn program(&self, program: &std::path::Path, argv0: &str, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg0(argv0).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("CNI_") || k == "NETCONFPATH" || k == "CAP_ARGS" {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.envs(extra.iter().copied());
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.node_file);
        // SAFETY: setns between fork and exec, on a descriptor Rt keeps open.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// `cnibox ARGS...` (or the plugin short form when argv0 is a plugin) in the node.
    fn run_as(&self, argv0: &str, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let out = self.command(argv0, args, extra).stdin(Stdio::null()).output().expect("run cnibox");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn cnibox(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        self.run_as("cnibox", args, extra)
    }

    fn ok(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let r = self.cnibox(args, extra);
        assert_eq!(r.code, 0, "cnibox {args:?} failed: {}\n{}", r.stdout, r.stderr);
        r
    }

    /// The recorded calls since the last `take`, oldest first.
    fn take(&self) -> Vec<Seen> {
        let dir = self.tmp.join("log");
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        names.sort();
        let mut out = Vec::new();
        for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "stdin")) {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let mut parts = stem.splitn(2, '-');
            parts.next();
            let rest = parts.next().unwrap();
            let (plugin, cmd) = rest.rsplit_once('-').unwrap();
            let env = std::fs::read_to_string(p.with_extension("env")).unwrap_or_default();
            out.push(Seen {
                plugin: plugin.into(),
                cmd: cmd.into(),
                stdin: serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap_or(Value::Null),
                env: env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect(),
            });
        }
        for p in names {
            std::fs::remove_file(p).unwrap();
        }
        out
    }

    fn cache_files(&self) -> Vec<String> {
        let dir = self.tmp.join("cache").join("results");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn cache(&self, file: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.tmp.join("cache").join("results").join(file)).unwrap()).unwrap()
    }
}

fn order(calls: &[Seen]) -> Vec<String> {
    calls.iter().map(|c| format!("{} {}", c.cmd, c.plugin)).collect()
}

/// cnitool's container id for a netns path, computed independently.
fn cnitool_id(netns: &str) -> String {
    let mut c = Command::new("sha512sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(netns.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    format!("cnitool-{}", &String::from_utf8_lossy(&out.stdout)[..20])
}

fn base64_decode(s: &str) -> String {
    let mut c = Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
}

const RES_A: &str = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}]}"#;
const RES_B: &str =
    r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.1.0.2/24","interface":0}]}"#;
const RES_C: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.1.0.2/24","interface":0}],"dns":{"nameservers":["10.1.0.1"]}}"#;

fn v(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

fn chain3(rt: &Rt, fail_b: &str) {
    rt.fake("fake-a", RES_A, "");
    rt.fake("fake-b", RES_B, fail_b);
    rt.fake("fake-c", RES_C, "");
    rt.conf(
        "10-chain.conflist",
        r#"{"cniVersion":"1.0.0","name":"chain","plugins":[
            {"type":"fake-a","keep":{"x":[1,2]}},
            {"type":"fake-b","capabilities":{"portMappings":true,"bandwidth":false}},
            {"type":"fake-c","capabilities":{"ips":true}}]}"#,
    );
}

const CAPS: &str =
    r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":1}}"#;

#[test]
fn chain_order_prev_result_capabilities_and_cache() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    chain3(&rt, "");
    let id = cnitool_id(&ctr.path());
    let extra = [("CAP_ARGS", CAPS), ("CNI_ARGS", "FOO=bar;IgnoreUnknown=1")];

    let out = rt.ok(&["add", "chain", &ctr.path()], &extra).json();
    assert_eq!(out, v(RES_C), "ADD prints the last plugin's result");
    let calls = rt.take();
    assert_eq!(order(&calls), ["ADD fake-a", "ADD fake-b", "ADD fake-c"]);
    let (a, b, c) = (&calls[0].stdin, &calls[1].stdin, &calls[2].stdin);
    assert_eq!((a["name"].as_str(), a["cniVersion"].as_str()), (Some("chain"), Some("1.0.0")));
    assert!(a.get("prevResult").is_none(), "no prevResult for the first ADD: {a}");
    assert_eq!(a["keep"], json!({"x": [1, 2]}), "unknown fields pass through");
    assert!(a.get("runtimeConfig").is_none());
    assert_eq!(b["prevResult"], v(RES_A));
    assert_eq!(b["runtimeConfig"], json!({"portMappings": v(CAPS)["portMappings"]}), "only declared capabilities");
    assert_eq!(c["prevResult"], v(RES_B));
    assert!(c.get("runtimeConfig").is_none(), "capability declared but not given: {c}");
    for call in &calls {
        assert_eq!(call.env["CNI_CONTAINERID"], id);
        assert_eq!(call.env["CNI_NETNS"], ctr.path());
        assert_eq!(call.env["CNI_IFNAME"], "eth0");
        assert_eq!(call.env["CNI_ARGS"], "FOO=bar;IgnoreUnknown=1");
    }

    // the cache, in libcni's place and format
    let file = format!("chain-{id}-eth0");
    assert_eq!(rt.cache_files(), std::slice::from_ref(&file));
    let e = rt.cache(&file);
    assert_eq!(e["kind"], "cniCacheV1");
    assert_eq!(
        (e["containerId"].as_str(), e["ifName"].as_str(), e["networkName"].as_str()),
        (Some(id.as_str()), Some("eth0"), Some("chain"))
    );
    assert_eq!(e["netns"], ctr.path().as_str());
    assert_eq!(e["cniArgs"], json!([["FOO", "bar"], ["IgnoreUnknown", "1"]]));
    assert_eq!(e["capabilityArgs"], v(CAPS));
    assert_eq!(e["result"], v(RES_C));
    let conf = base64_decode(e["config"].as_str().unwrap());
    assert_eq!(conf, std::fs::read_to_string(rt.tmp.join("net.d/10-chain.conflist")).unwrap());

    // CHECK in order, each with the final result
    rt.ok(&["check", "chain", &ctr.path()], &[]);
    let calls = rt.take();
    assert_eq!(order(&calls), ["CHECK fake-a", "CHECK fake-b", "CHECK fake-c"]);
    assert!(calls.iter().all(|c| c.stdin["prevResult"] == v(RES_C)));

    // DEL in reverse with the cached result, CNI_ARGS and capability args
    rt.ok(&["del", "chain", &ctr.path()], &[]);
    let calls = rt.take();
    assert_eq!(order(&calls), ["DEL fake-c", "DEL fake-b", "DEL fake-a"]);
    assert!(calls.iter().all(|c| c.stdin["prevResult"] == v(RES_C)));
    assert_eq!(calls[1].stdin["runtimeConfig"]["portMappings"], v(CAPS)["portMappings"]);
    assert!(calls.iter().all(|c| c.env["CNI_ARGS"] == "FOO=bar;IgnoreUnknown=1"));
    assert!(rt.cache_files().is_empty());

    // DEL again: nothing cached, still every plugin, without prevResult
    rt.ok(&["del", "chain", &ctr.path()], &[]);
    let calls = rt.take();
    assert_eq!(order(&calls), ["DEL fake-c", "DEL fake-b", "DEL fake-a"]);
    assert!(calls.iter().all(|c| c.stdin.get("prevResult").is_none()));
}

#[test]
fn ifname_id_and_bare_netns_name() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    rt.fake("fake-a", RES_A, "");
    rt.conf("a.conflist", r#"{"cniVersion":"1.0.0","name":"one","plugins":[{"type":"fake-a"}]}"#);
    rt.ok(&["add", "one", &ctr.name, "-i", "net1", "--id", "box1"], &[]);
    rt.ok(&["add", "one", &ctr.name], &[("CNI_IFNAME", "net2")]);
    let calls = rt.take();
    assert_eq!((calls[0].env["CNI_IFNAME"].as_str(), calls[0].env["CNI_CONTAINERID"].as_str()), ("net1", "box1"));
    assert_eq!(calls[0].env["CNI_NETNS"], ctr.path(), "a bare name means /run/netns/NAME");
    assert_eq!(calls[1].env["CNI_IFNAME"], "net2");
    let id = cnitool_id(&ctr.path());
    assert_eq!(rt.cache_files(), ["one-box1-net1".to_string(), format!("one-{id}-net2")]);
}

#[test]
fn failure_mid_chain_deletes_the_chain_and_caches_nothing() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    chain3(&rt, "ADD");
    let r = rt.cnibox(&["add", "chain", &ctr.path()], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "no result on failure: {}", r.stdout);
    for want in ["plugin type=\"fake-b\" failed (add)", "error code 117", "fake-b refused", "on purpose"] {
        assert!(r.stderr.contains(want), "missing {want:?} in: {}", r.stderr);
    }
    assert_eq!(order(&rt.take()), ["ADD fake-a", "ADD fake-b", "DEL fake-c", "DEL fake-b", "DEL fake-a"]);
    assert!(rt.cache_files().is_empty(), "no attachment claimed: {:?}", rt.cache_files());
    // the attachment does not exist, so it can be added once the fault is gone
    rt.fake("fake-b", RES_B, "");
    rt.ok(&["add", "chain", &ctr.path()], &[]);
}

#[test]
fn missing_plugin_is_named_and_the_rest_is_still_deleted() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    rt.fake("fake-a", RES_A, "");
    rt.conf("m.conflist", r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"fake-a"},{"type":"nosuch"}]}"#);
    let r = rt.cnibox(&["add", "m", &ctr.path()], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("plugin type=\"nosuch\" failed (add)")
            && r.stderr.contains("failed to find plugin \"nosuch\""),
        "{}",
        r.stderr
    );
    assert_eq!(
        order(&rt.take()),
        ["ADD fake-a", "DEL fake-a"],
        "fake-a's ADD is undone even though nosuch's DEL cannot run"
    );
    assert!(rt.cache_files().is_empty());
}

#[test]
fn second_add_is_refused() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    rt.fake("fake-a", RES_A, "");
    rt.conf("a.conflist", r#"{"cniVersion":"1.0.0","name":"one","plugins":[{"type":"fake-a"}]}"#);
    rt.ok(&["add", "one", &ctr.path()], &[]);
    rt.take();
    let r = rt.cnibox(&["add", "one", &ctr.path()], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is already attached to network \"one\" as eth0"), "{}", r.stderr);
    assert!(rt.take().is_empty(), "no plugin runs for a refused ADD");
    assert_eq!(rt.cache_files().len(), 1);
    // another interface name is another attachment
    rt.ok(&["add", "one", &ctr.path(), "-i", "eth1"], &[]);
}

#[test]
fn unparsable_config_files_are_named() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    rt.fake("fake-a", RES_A, "");
    rt.conf("50-good.conflist", r#"{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"fake-a"}]}"#);
    rt.conf("10-broken.conflist", "{not json");
    let r = rt.cnibox(&["add", "good", &ctr.path()], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("10-broken.conflist") && r.stderr.contains("invalid JSON"), "{}", r.stderr);
    std::fs::remove_file(rt.tmp.join("net.d/10-broken.conflist")).unwrap();
    rt.conf("20-entry.conflist", r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"fake-a"},{"mtu":1}]}"#);
    let r = rt.cnibox(&["add", "good", &ctr.path()], &[]);
    assert!(
        r.stderr.contains("20-entry.conflist") && r.stderr.contains("field plugins[1]: missing field `type`"),
        "{}",
        r.stderr
    );
    std::fs::remove_file(rt.tmp.join("net.d/20-entry.conflist")).unwrap();
    rt.conf(
        "30-ver.conflist",
        r#"{"cniVersion":"1.0.0","cniVersions":["one"],"name":"y","plugins":[{"type":"fake-a"}]}"#,
    );
    let r = rt.cnibox(&["add", "good", &ctr.path()], &[]);
    assert!(r.stderr.contains("30-ver.conflist") && r.stderr.contains("\"one\""), "{}", r.stderr);
    std::fs::remove_file(rt.tmp.join("net.d/30-ver.conflist")).unwrap();
    let r = rt.cnibox(&["add", "good", &ctr.path()], &[("CAP_ARGS", "[1,")]);
    assert!(r.code == 1 && r.stderr.contains("CAP_ARGS"), "{}", r.stderr);
    let r = rt.cnibox(&["add", "good", &ctr.path()], &[("CNI_ARGS", "A=1;B")]);
    assert!(r.code == 1 && r.stderr.contains("invalid CNI_ARGS pair \"B\""), "{}", r.stderr);
    let r = rt.cnibox(&["add", "nonet", &ctr.path()], &[]);
    assert!(r.code == 1 && r.stderr.contains("no net configuration with name \"nonet\""), "{}", r.stderr);
    let r = rt.cnibox(&["add", "good", "/run/netns/cnibox-no-such-ns"], &[]);
    assert!(r.code == 1 && r.stderr.contains("cnibox-no-such-ns"), "{}", r.stderr);
    let r = rt.cnibox(&["add", "good", &ctr.path(), "--id", "../../x"], &[]);
    assert!(r.code == 1 && r.stderr.contains("invalid characters in containerID"), "{}", r.stderr);
    let r = rt.cnibox(&["add", "good", &ctr.path(), "-i", "a/b"], &[]);
    assert!(r.code == 1 && r.stderr.contains("interface name"), "{}", r.stderr);
    let r = rt.cnibox(&["add", "good"], &[]);
    assert_eq!(r.code, 2, "usage error: {}", r.stderr);
    assert!(rt.take().is_empty() && rt.cache_files().is_empty());
    rt.ok(&["add", "good", &ctr.path()], &[]);
}

#[test]
fn single_plugin_files_lexical_order_and_version_selection() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    rt.fake("fake-a", RES_A, "");
    rt.fake("fake-b", RES_B, "");
    rt.conf("20-single.conf", r#"{"cniVersion":"0.4.0","name":"single","type":"fake-a","x":1}"#);
    rt.conf("30-single.json", r#"{"cniVersion":"0.4.0","name":"single","type":"fake-b"}"#);
    rt.conf("10-multi.conflist", r#"{"cniVersion":"0.3.1","cniVersions":["0.4.0","1.0.0","42.0.0"],"name":"multi","plugins":[{"type":"fake-a"}]}"#);
    rt.conf("90-multi.conflist", r#"{"cniVersion":"1.0.0","name":"multi","plugins":[{"type":"fake-b"}]}"#);

    let out = rt.ok(&["add", "single", &ctr.path()], &[]).json();
    // the 1.0.0 result of the plugin comes back in the config's 0.4.0
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(out["ips"][0]["version"], "4");
    let calls = rt.take();
    assert_eq!(order(&calls), ["ADD fake-a"], "the first file by name wins");
    assert_eq!(calls[0].stdin, json!({"cniVersion":"0.4.0","name":"single","type":"fake-a","x":1}));
    let e = rt.cache(&format!("single-{}-eth0", cnitool_id(&ctr.path())));
    let conf: Value = serde_json::from_str(&base64_decode(e["config"].as_str().unwrap())).unwrap();
    assert_eq!(conf["plugins"][0]["type"], "fake-a", "a .conf is cached as a converted list: {conf}");

    rt.ok(&["add", "multi", &ctr.path()], &[]);
    let calls = rt.take();
    assert_eq!(order(&calls), ["ADD fake-a"]);
    assert_eq!(calls[0].stdin["cniVersion"], "1.0.0", "highest known of cniVersion and cniVersions");
}

#[test]
fn del_reads_the_cache_after_the_config_changed() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    for (n, r) in [("fake-a", RES_A), ("fake-b", RES_B), ("fake-c", RES_C)] {
        rt.fake(n, r, "");
    }
    rt.conf("n.conflist", r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"fake-a"},{"type":"fake-b"}]}"#);
    rt.ok(&["add", "n", &ctr.path()], &[]);
    rt.conf("n.conflist", r#"{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"fake-c"}]}"#);
    rt.take();
    rt.ok(&["del", "n", &ctr.path()], &[]);
    let calls = rt.take();
    assert_eq!(order(&calls), ["DEL fake-b", "DEL fake-a"], "DEL undoes what ADD ran");
    assert!(calls.iter().all(|c| c.stdin["cniVersion"] == "1.0.0" && c.stdin["prevResult"] == v(RES_B)));

    // the network's file removed altogether
    rt.ok(&["add", "n", &ctr.path()], &[]);
    std::fs::remove_file(rt.tmp.join("net.d/n.conflist")).unwrap();
    rt.take();
    rt.ok(&["del", "n", &ctr.path()], &[]);
    assert_eq!(order(&rt.take()), ["DEL fake-c"]);
    assert!(rt.cache_files().is_empty());
    // with neither cache nor config there is nothing to go by
    let r = rt.cnibox(&["del", "n", &ctr.path()], &[]);
    assert!(r.code == 1 && r.stderr.contains("no net configuration"), "{}", r.stderr);
}

#[test]
fn del_failure_keeps_the_cache_for_a_retry() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    chain3(&rt, "DEL");
    rt.ok(&["add", "chain", &ctr.path()], &[]);
    rt.take();
    let r = rt.cnibox(&["del", "chain", &ctr.path()], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("plugin type=\"fake-b\" failed (del)") && r.stderr.contains("117"), "{}", r.stderr);
    assert_eq!(order(&rt.take()), ["DEL fake-c", "DEL fake-b"], "the first DEL error halts (SPEC.md)");
    assert_eq!(rt.cache_files().len(), 1, "the attachment still exists in part");
    rt.fake("fake-b", RES_B, "");
    rt.ok(&["del", "chain", &ctr.path()], &[]);
    assert!(rt.take().iter().all(|c| c.stdin["prevResult"] == v(RES_C)));
    assert!(rt.cache_files().is_empty());
}

#[test]
fn check_versions_disable_check_and_unknown_attachment() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    rt.fake("fake-a", RES_A, "CHECK");
    rt.conf("a.conflist", r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"fake-a"}]}"#);
    rt.conf("b.conflist", r#"{"cniVersion":"1.0.0","name":"b","disableCheck":true,"plugins":[{"type":"fake-a"}]}"#);
    rt.conf("c.conflist", r#"{"cniVersion":"0.3.1","name":"c","plugins":[{"type":"fake-a"}]}"#);
    let r = rt.cnibox(&["check", "a", &ctr.path()], &[]);
    assert!(r.code == 1 && r.stderr.contains("is not attached to network \"a\""), "{}", r.stderr);
    for n in ["a", "b", "c"] {
        rt.ok(&["add", n, &ctr.path()], &[]);
    }
    rt.take();
    let r = rt.cnibox(&["check", "a", &ctr.path()], &[]);
    assert!(r.code == 1 && r.stderr.contains("fake-a refused"), "{}", r.stderr);
    rt.ok(&["check", "b", &ctr.path()], &[]);
    let r = rt.cnibox(&["check", "c", &ctr.path()], &[]);
    assert!(
        r.code == 1 && r.stderr.contains("configuration version \"0.3.1\" does not support the CHECK command"),
        "{}",
        r.stderr
    );
    assert_eq!(order(&rt.take()), ["CHECK fake-a"], "only network a reached a plugin");
    // below 0.4.0 DEL gets no prevResult
    rt.ok(&["del", "c", &ctr.path()], &[]);
    assert!(rt.take()[0].stdin.get("prevResult").is_none());
}

#[test]
fn gc_deletes_stale_attachments_then_calls_gc_with_the_valid_ones() {
    need_root!();
    let rt = Rt::new();
    let live = Netns::new("ctr");
    let gone = Netns::new("ctr");
    rt.fake("fake-a", RES_A, "");
    rt.fake("fake-b", RES_B, "");
    rt.conf("g.conflist", r#"{"cniVersion":"1.1.0","name":"g","plugins":[{"type":"fake-a"},{"type":"fake-b","capabilities":{"portMappings":true}}]}"#);
    rt.conf("o.conflist", r#"{"cniVersion":"1.1.0","name":"other","plugins":[{"type":"fake-a"}]}"#);
    rt.conf("d.conflist", r#"{"cniVersion":"1.1.0","name":"off","disableGC":true,"plugins":[{"type":"fake-a"}]}"#);
    rt.ok(&["add", "g", &live.path()], &[]);
    rt.ok(&["add", "g", &gone.path()], &[("CAP_ARGS", CAPS), ("CNI_ARGS", "K=V")]);
    rt.ok(&["add", "other", &gone.path()], &[]);
    rt.ok(&["add", "off", &gone.path()], &[]);
    let (live_id, gone_id, gone_path) = (cnitool_id(&live.path()), cnitool_id(&gone.path()), gone.path());
    drop(gone);
    rt.take();

    let r = rt.ok(&["gc", "g"], &[]);
    assert!(r.stderr.contains(&gone_id), "reports what it removed: {}", r.stderr);
    let calls = rt.take();
    assert_eq!(order(&calls), ["DEL fake-b", "DEL fake-a", "GC fake-a", "GC fake-b"]);
    assert_eq!(calls[0].env["CNI_CONTAINERID"], gone_id);
    assert_eq!(calls[0].env["CNI_NETNS"], gone_path);
    assert_eq!(calls[0].env["CNI_ARGS"], "K=V");
    assert_eq!(calls[0].stdin["runtimeConfig"]["portMappings"], v(CAPS)["portMappings"]);
    let valid = json!([{"containerID": live_id, "ifname": "eth0"}]);
    for c in &calls[2..] {
        assert_eq!(c.stdin["cni.dev/valid-attachments"], valid);
        assert_eq!(c.stdin["cni.dev/attachments"], valid);
        assert_eq!(c.env.get("CNI_CONTAINERID").map(String::as_str).unwrap_or(""), "");
    }
    let files = rt.cache_files();
    assert!(files.contains(&format!("g-{live_id}-eth0")) && !files.contains(&format!("g-{gone_id}-eth0")), "{files:?}");
    assert!(files.contains(&format!("other-{gone_id}-eth0")), "other networks are not touched: {files:?}");

    rt.ok(&["gc", "off", "/ignored/netns"], &[]);
    assert!(rt.take().is_empty(), "disableGC");
    assert!(rt.cache_files().contains(&format!("off-{gone_id}-eth0")));
}

#[test]
fn status_asks_every_plugin_and_stops_at_the_first_not_ready() {
    need_root!();
    let rt = Rt::new();
    rt.fake("fake-a", RES_A, "");
    rt.fake("fake-b", RES_B, "STATUS");
    rt.fake("fake-c", RES_C, "");
    rt.conf(
        "s.conflist",
        r#"{"cniVersion":"1.1.0","name":"s","plugins":[{"type":"fake-a"},{"type":"fake-b"},{"type":"fake-c"}]}"#,
    );
    rt.conf("t.conflist", r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"fake-b"}]}"#);
    let r = rt.cnibox(&["status", "s"], &[]);
    assert!(r.code == 1 && r.stderr.contains("plugin type=\"fake-b\" failed (status): error code 117"), "{}", r.stderr);
    let calls = rt.take();
    assert_eq!(order(&calls), ["STATUS fake-a", "STATUS fake-b"]);
    assert_eq!(calls[0].stdin, json!({"cniVersion":"1.1.0","name":"s","type":"fake-a"}));
    rt.ok(&["status", "t"], &[]);
    assert!(rt.take().is_empty(), "no STATUS below 1.1.0");
    rt.fake("fake-b", RES_B, "");
    rt.ok(&["status", "s", "/any/netns"], &[]);
}

/// A named namespace removed on drop whoever created it.
struct Named(String);
impl Drop for Named {
    fn drop(&mut self) {
        if std::path::Path::new(&format!("/run/netns/{}", self.0)).exists() {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
}

fn ip_netns_list() -> String {
    String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned()
}

fn has_line(text: &str, name: &str) -> bool {
    text.lines().any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn netns_commands_interoperate_with_iproute2() {
    need_root!();
    let rt = Rt::new();
    let mine = Named(unique("cbt-mine"));
    let theirs = Named(unique("cbt-theirs"));
    rt.ok(&["netns", "add", &mine.0], &[]);
    assert!(has_line(&ip_netns_list(), &mine.0), "ip netns sees cnibox's namespace");
    let ns = Command::new("ip").args(["-n", &mine.0, "-j", "link", "show"]).output().unwrap();
    let links: Value = serde_json::from_slice(&ns.stdout).unwrap();
    assert_eq!(links.as_array().unwrap().len(), 1, "a fresh namespace holds only lo: {links}");

    assert!(Command::new("ip").args(["netns", "add", &theirs.0]).status().unwrap().success());
    let made = Command::new("ip")
        .args(["-n", &theirs.0, "link", "add", "v7a", "type", "veth", "peer", "name", "v7b"])
        .status();
    assert!(made.unwrap().success());
    let list = rt.ok(&["netns", "list"], &[]).stdout;
    assert!(has_line(&list, &mine.0) && has_line(&list, &theirs.0), "{list}");
    // exec sees the namespace's own devices, in /sys too
    let out = rt.ok(&["netns", "exec", &theirs.0, "--", "ls", "/sys/class/net"], &[]).stdout;
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo", "v7a", "v7b"]);
    let r = rt.cnibox(&["netns", "exec", &mine.0, "sh", "-c", "exit 3"], &[]);
    assert_eq!(r.code, 3, "exit status passes through");
    let r = rt.cnibox(&["netns", "exec", &mine.0, "--", "/nonexistent-cmd"], &[]);
    assert_eq!(r.code, 127);

    let r = rt.cnibox(&["netns", "add", &mine.0], &[]);
    assert!(r.code == 1 && r.stderr.contains("File exists"), "{}", r.stderr);
    let r = rt.cnibox(&["netns", "add", "a/b"], &[]);
    assert!(r.code == 1 && r.stderr.contains("invalid namespace name"), "{}", r.stderr);
    rt.ok(&["netns", "del", &theirs.0], &[]);
    rt.ok(&["netns", "del", &mine.0], &[]);
    let list = ip_netns_list();
    assert!(!has_line(&list, &mine.0) && !has_line(&list, &theirs.0), "{list}");
    let r = rt.cnibox(&["netns", "del", &mine.0], &[]);
    assert!(r.code == 1 && r.stderr.contains(&mine.0), "{}", r.stderr);
    let r = rt.cnibox(&["netns", "exec", &mine.0, "true"], &[]);
    assert_eq!(r.code, 1);
    assert_eq!(rt.cnibox(&["netns"], &[]).code, 2);
}

fn lo_up(ns: &Netns) -> bool {
    ns.link("lo").unwrap()["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

#[test]
fn loopback_through_the_runtime() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    ctr.sh(&["link", "set", "lo", "down"]);
    rt.conf("lo.conflist", r#"{"cniVersion":"1.1.0","name":"lonet","plugins":[{"type":"loopback"}]}"#);
    let out = rt.ok(&["add", "lonet", &ctr.path(), "-i", "lo"], &[]).json();
    assert_eq!(out["interfaces"][0]["name"], "lo");
    assert!(ctr.ping("127.0.0.1"));
    rt.ok(&["check", "lonet", &ctr.path(), "-i", "lo"], &[]);
    rt.ok(&["status", "lonet"], &[]);
    rt.ok(&["del", "lonet", &ctr.path(), "-i", "lo"], &[]);
    assert!(!lo_up(&ctr));
    assert!(rt.cache_files().is_empty());
}

#[test]
fn run_attaches_runs_and_tears_down() {
    need_root!();
    let rt = Rt::new();
    rt.conf("lo.conflist", r#"{"cniVersion":"1.1.0","name":"lonet","plugins":[{"type":"loopback"}]}"#);
    let name = Named(unique("cbt-run"));
    let r = rt
        .cnibox(&["run", "--network", "lonet", "--name", &name.0, "--", "sh", "-c", "ip -j link show lo; exit 7"], &[]);
    assert_eq!(r.code, 7, "the command's exit status: {}", r.stderr);
    let lo: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "lo is up inside: {lo}");
    assert!(r.stderr.contains(&name.0), "{}", r.stderr);
    assert!(!std::path::Path::new(&format!("/run/netns/{}", name.0)).exists(), "namespace removed");
    assert!(rt.cache_files().is_empty(), "attachment deleted");

    // a command that cannot start still gets its teardown
    let r = rt.cnibox(&["run", "--network", "lonet", "--name", &name.0, "/nonexistent-cmd"], &[]);
    assert_eq!(r.code, 127);
    assert!(!std::path::Path::new(&format!("/run/netns/{}", name.0)).exists());
    assert!(rt.cache_files().is_empty());

    // a failing ADD: the command never runs, nothing is left
    rt.fake("fake-a", RES_A, "ADD");
    rt.conf("bad.conflist", r#"{"cniVersion":"1.1.0","name":"bad","plugins":[{"type":"fake-a"}]}"#);
    let marker = rt.tmp.join("ran");
    let r = rt.cnibox(&["run", "--network", "bad", "--name", &name.0, "touch", &marker.display().to_string()], &[]);
    assert!(r.code == 1 && r.stderr.contains("fake-a refused"), "{}", r.stderr);
    assert!(!marker.exists());
    assert!(!std::path::Path::new(&format!("/run/netns/{}", name.0)).exists());
    assert_eq!(rt.cnibox(&["run"], &[]).code, 2);
}

#[test]
fn run_passes_sigterm_on_and_cleans_up() {
    need_root!();
    let rt = Rt::new();
    rt.conf("lo.conflist", r#"{"cniVersion":"1.1.0","name":"lonet","plugins":[{"type":"loopback"}]}"#);
    let name = Named(unique("cbt-sig"));
    let child: Child = rt
        .command("cnibox", &["run", "--network", "lonet", "--name", &name.0, "--", "sleep", "600"], &[])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait until the command is running inside the namespace
    let running = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let ns =
            std::fs::metadata(format!("/run/netns/{}", name.0)).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let sleeping =
            Command::new("pgrep").args(["-P", &child.id().to_string(), "sleep"]).output().map(|o| o.status.success());
        ns.is_some() && sleeping.unwrap_or(false)
    });
    assert!(running, "cnibox run did not start its command");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!std::path::Path::new(&format!("/run/netns/{}", name.0)).exists());
    assert!(rt.cache_files().is_empty());
}

#[test]
fn short_form_with_a_config_file() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    ctr.sh(&["link", "set", "lo", "down"]);
    let conf = rt.tmp.join("lo.conf");
    std::fs::write(&conf, r#"{"cniVersion":"1.0.0","name":"shortlo","type":"loopback"}"#).unwrap();
    let conf = conf.display().to_string();
    let r = rt.run_as("loopback", &["add", "box1", &ctr.path(), "--config", &conf, "-i", "lo"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["interfaces"][0]["sandbox"], ctr.path().as_str());
    assert!(lo_up(&ctr));
    assert_eq!(rt.cache_files(), ["shortlo-box1-lo"]);
    let r = rt.run_as("loopback", &["check", "box1", &ctr.path(), "--config", &conf, "-i", "lo"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = rt.run_as("loopback", &["del", "box1", &ctr.path(), "--config", &conf, "-i", "lo"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!lo_up(&ctr) && rt.cache_files().is_empty());

    let r = rt.run_as("loopback", &["add", "box1", &ctr.path()], &[]);
    assert!(r.code == 1 && r.stderr.contains("no default network"), "{}", r.stderr);
    let r = rt.run_as("loopback", &["frob", "box1", &ctr.path()], &[]);
    assert_eq!(r.code, 2);
}

/// cnitool's logic over Debian's real libcni (see the file). CNI_CACHE_DIR
/// keeps the cache in the test's temp dir.
const CNITOOL_GO: &str = include_str!("../scripts/cnitool.go");

const LIBCNI_SRC: &str = "/usr/share/gocode/src/github.com/containernetworking/cni/libcni";

fn build_cnitool(tmp: &TempDir) -> Result<String, String> {
    if !std::path::Path::new(LIBCNI_SRC).is_dir() {
        return Err(format!("{LIBCNI_SRC} missing (apt-get install golang-github-appc-cni-dev)"));
    }
    let dir = tmp.join("cnitool");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.go"), CNITOOL_GO).unwrap();
    let out = Command::new("go")
        .args(["build", "-o", "cnitool", "main.go"])
        .current_dir(&dir)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", tmp.join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .map_err(|e| format!("cannot run go ({e}; apt-get install golang-go)"))?;
    if !out.status.success() {
        return Err(format!("go build failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(dir.join("cnitool").display().to_string())
}

impl Rt {
    /// The libcni-based tool, run in the node like cnibox.
    fn cnitool(&self, tool: &str, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let out = self.program(tool.as_ref(), "cnitool", args, extra).stdin(Stdio::null()).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

macro_rules! need_cnitool {
    ($rt:expr) => {
        match build_cnitool(&$rt.tmp) {
            Ok(t) => t,
            Err(why) => {
                common::missing(&format!("no libcni client to compare with: {why}"));
                return;
            }
        }
    };
}

/// libcni 1.1.2 prints an empty `"dns": {}` in 1.0.0 results; cnibox omits it.
fn no_empty_dns(r: &Value) -> Value {
    let mut r = r.clone();
    if r["dns"] == json!({}) {
        r.as_object_mut().unwrap().remove("dns");
    }
    r
}

/// Interop chain: a recording plugin, then the real loopback (which returns
/// the prevResult it is given), at libcni 1.1.2's newest version.
fn interop_net(rt: &Rt) {
    rt.fake("fake-a", RES_A, "");
    rt.conf(
        "lo.conflist",
        r#"{"cniVersion":"1.0.0","name":"interop","plugins":[{"type":"fake-a"},{"type":"loopback"}]}"#,
    );
}

#[test]
fn libcni_attaches_cnibox_checks_and_deletes() {
    need_root!();
    let rt = Rt::new();
    let tool = need_cnitool!(rt);
    let ctr = Netns::new("ctr");
    ctr.sh(&["link", "set", "lo", "down"]);
    interop_net(&rt);
    let lo = [("CNI_IFNAME", "lo")];
    let r = rt.cnitool(&tool, &["add", "interop", &ctr.path()], &lo);
    assert_eq!(r.code, 0, "cnitool add: {}", r.stderr);
    assert!(lo_up(&ctr));
    assert_eq!(
        rt.cache_files(),
        [format!("interop-{}-lo", cnitool_id(&ctr.path()))],
        "same container id, same cache name"
    );
    rt.take();

    rt.ok(&["check", "interop", &ctr.path()], &lo);
    let calls = rt.take();
    assert_eq!(order(&calls), ["CHECK fake-a"]);
    assert_eq!(calls[0].stdin["prevResult"], v(RES_A), "prevResult from libcni's cache");
    rt.ok(&["del", "interop", &ctr.path()], &lo);
    let calls = rt.take();
    assert_eq!(calls[0].stdin["prevResult"], v(RES_A));
    assert!(!lo_up(&ctr), "loopback's DEL ran");
    assert!(rt.cache_files().is_empty(), "libcni's cache entry removed");
}

#[test]
fn cnibox_attaches_libcni_checks_and_deletes() {
    need_root!();
    let rt = Rt::new();
    let tool = need_cnitool!(rt);
    let ctr = Netns::new("ctr");
    ctr.sh(&["link", "set", "lo", "down"]);
    interop_net(&rt);
    let lo = [("CNI_IFNAME", "lo")];
    rt.ok(&["add", "interop", &ctr.path()], &lo);
    assert!(lo_up(&ctr));
    rt.take();
    let r = rt.cnitool(&tool, &["check", "interop", &ctr.path()], &lo);
    assert_eq!(r.code, 0, "cnitool check: {}", r.stderr);
    let calls = rt.take();
    assert_eq!(order(&calls), ["CHECK fake-a"]);
    assert_eq!(no_empty_dns(&calls[0].stdin["prevResult"]), v(RES_A), "prevResult from cnibox's cache");
    let r = rt.cnitool(&tool, &["del", "interop", &ctr.path()], &lo);
    assert_eq!(r.code, 0, "cnitool del: {}", r.stderr);
    assert_eq!(no_empty_dns(&rt.take()[0].stdin["prevResult"]), v(RES_A));
    assert!(!lo_up(&ctr));
    assert!(rt.cache_files().is_empty(), "libcni found and removed cnibox's cache entry");
}

fn web_conf(rt: &Rt, bridge: &str, subnet: &str, ipam_dir: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"web","plugins":[
            {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":true,
              "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{subnet}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},
            {{"type":"portmap","capabilities":{{"portMappings":true}}}},
            {{"type":"loopback"}}]}}"#,
        rt.tmp.join(ipam_dir).display()
    )
}

/// Whether host-local's store under `dir` holds `ip` (a reference per-address
/// file, or a line of cnibox's state file; hidden files are spare generations).
fn reserved(rt: &Rt, dir: &str, ip: &str) -> bool {
    let d = rt.tmp.join(dir).join("web");
    d.join(ip).exists()
        || std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|f| {
                // Not state: the spare copy, and the reference-style round-robin cursor files.
                let n = f.file_name().to_string_lossy().into_owned();
                !n.starts_with('.') && !n.starts_with("last_reserved_ip.")
            })
            .any(|f| {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                text.lines().any(|l| l.split_whitespace().next() == Some(ip))
            })
}

fn eth0_v4(ns: &Netns) -> Option<String> {
    ns.addrs("eth0").into_iter().find(|a| a.contains('.')).map(|a| a.split('/').next().unwrap().to_string())
}

/// A TCP server in `ns` answering one connection with "pong", bounded in time.
fn serve_once(ns: &Netns, port: u16) -> std::thread::JoinHandle<bool> {
    let f = ns.file();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        use std::io::Write;
        assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) }, 0);
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        for _ in 0..500 {
            if let Ok((mut s, _)) = l.accept() {
                return s.write_all(b"pong").is_ok();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    });
    rx.recv().unwrap();
    h
}

/// Connect from `ns` to `addr` and read what the server says.
fn fetch(ns: &Netns, addr: &str) -> String {
    let f = ns.file();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    std::thread::spawn(move || {
        use std::io::Read;
        assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) }, 0);
        let mut s = match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => return format!("connect: {e}"),
        };
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .join()
    .unwrap()
}

#[test]
fn bridge_portmap_loopback_chain_through_the_runtime() {
    need_root!();
    let rt = Rt::new();
    let (ctr1, ctr2, client) = (Netns::new("ctr"), Netns::new("ctr"), Netns::new("cl"));
    rt.conf("web.conflist", &web_conf(&rt, "cnirt0", "10.77.0.0/24", "ipam"));
    let caps = r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}"#;
    let out = rt.cnibox(&["add", "web", &ctr1.path()], &[("CAP_ARGS", caps)]).into_ok().json();
    rt.ok(&["add", "web", &ctr2.path()], &[]);
    let (ip1, ip2) = (eth0_v4(&ctr1).expect("ctr1 eth0 address"), eth0_v4(&ctr2).expect("ctr2 eth0 address"));
    assert_eq!(out["ips"][0]["address"], format!("{ip1}/24").as_str(), "printed result matches the kernel");
    assert!(ip1.starts_with("10.77.0.") && ip2.starts_with("10.77.0.") && ip1 != ip2);
    assert!(lo_up(&ctr1), "loopback ran as the last link of the chain");
    assert!(ctr2.ping(&ip1) && rt.node.ping(&ip2), "packets cross the bridge");
    rt.ok(&["check", "web", &ctr1.path()], &[]);

    // the published port, from a client outside the node
    rt.node.sh(&["link", "add", "cl0", "type", "veth", "peer", "name", "eth0", "netns", &client.name]);
    rt.node.sh(&["addr", "add", "192.168.77.1/24", "dev", "cl0"]);
    rt.node.sh(&["link", "set", "cl0", "up"]);
    client.sh(&["addr", "add", "192.168.77.2/24", "dev", "eth0"]);
    client.sh(&["link", "set", "eth0", "up"]);
    client.sh(&["route", "add", "default", "via", "192.168.77.1"]);
    let server = serve_once(&ctr1, 80);
    assert_eq!(fetch(&client, "192.168.77.1:8080"), "pong", "hostPort 8080 reaches the container's port 80");
    assert!(server.join().unwrap());

    let veths =
        |ns: &Netns| ns.links().iter().filter(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("veth"))).count();
    assert_eq!(veths(&rt.node), 2);
    rt.ok(&["del", "web", &ctr1.path()], &[]);
    assert!(ctr1.link("eth0").is_none(), "eth0 removed");
    assert_eq!(veths(&rt.node), 1);
    assert!(!reserved(&rt, "ipam", &ip1) && reserved(&rt, "ipam", &ip2), "ctr1's address released, ctr2's kept");
    assert!(!rt.node.nft_json().to_string().contains("8080"), "port mapping removed");
    assert!(ctr2.ping("10.77.0.1"), "the other container is untouched");
    assert_eq!(rt.cache_files().len(), 1);
    rt.ok(&["del", "web", &ctr2.path()], &[]);
    assert!(rt.cache_files().is_empty());
}

#[test]
fn del_after_the_config_changed_undoes_what_add_did() {
    need_root!();
    let rt = Rt::new();
    let ctr = Netns::new("ctr");
    rt.conf("web.conflist", &web_conf(&rt, "cnirt0", "10.77.0.0/24", "ipam"));
    rt.cnibox(&["add", "web", &ctr.path()], &[]).into_ok();
    let ip = eth0_v4(&ctr).unwrap();
    assert!(reserved(&rt, "ipam", &ip));
    // the network is edited while the container runs: another bridge, subnet and store
    rt.conf("web.conflist", &web_conf(&rt, "cnirt1", "10.78.0.0/24", "ipam2"));
    rt.ok(&["del", "web", &ctr.path()], &[]);
    assert!(ctr.link("eth0").is_none(), "the interface ADD made is gone");
    assert!(!reserved(&rt, "ipam", &ip), "released in the store ADD used");
    assert!(rt.node.link("cnirt1").is_none(), "nothing made for the new config");
    assert!(rt.cache_files().is_empty());
}

/// A process in its own network namespace, as `docker run --network=none` leaves one.
struct Isolated(Child);

impl Isolated {
    fn new() -> Isolated {
        let mut c = Command::new("sleep");
        c.arg("600");
        // SAFETY: unshare between fork and exec; spawn returns after the exec.
        unsafe {
            c.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Isolated(c.spawn().unwrap())
    }
    fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
    fn sh(&self, cmd: &[&str]) -> std::process::Output {
        Command::new("nsenter").args(["-t", &self.0.id().to_string(), "-n", "--"]).args(cmd).output().unwrap()
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn docker_none_workflow_with_the_short_form_and_default_network() {
    need_root!();
    let rt = Rt::new();
    let ctr = Isolated::new();
    let id = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"; // a Docker container id
    let r = rt.run_as("bridge", &["add", id, &ctr.netns()], &[]).into_ok();
    let out = r.json();
    assert_eq!(out["cniVersion"], "1.1.0");
    let addrs: Value = serde_json::from_slice(&ctr.sh(&["ip", "-j", "addr", "show", "eth0"]).stdout).unwrap();
    let text = addrs.to_string();
    assert!(
        text.contains("\"10.88.") && text.contains("\"fd00:88::"),
        "IPv4 and IPv6 from the default network: {text}"
    );
    assert!(ctr.sh(&["ping", "-c", "1", "-W", "2", "10.88.0.1"]).status.success(), "gateway answers");
    assert!(rt.node.addrs("cnibox0").iter().any(|a| a == "10.88.0.1/16"), "{:?}", rt.node.addrs("cnibox0"));
    assert!(rt.node.nft_json().to_string().contains("masquerade"), "masquerade for the default network");
    assert!(rt.tmp.join("cache/networks/cnibox").is_dir(), "host-local state kept under the cache dir");
    assert_eq!(rt.cache_files(), [format!("cnibox-{id}-eth0")]);
    let r = rt.run_as("bridge", &["check", id, &ctr.netns()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = rt.run_as("bridge", &["del", id, &ctr.netns()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!ctr.sh(&["ip", "link", "show", "eth0"]).status.success(), "eth0 gone");
    assert!(rt.cache_files().is_empty());

    // the usual order with Docker: the container has stopped (its namespace
    // is gone) before DEL; the cache still lets DEL release everything
    let ctr2 = Isolated::new();
    let path2 = ctr2.netns();
    let r = rt.run_as("bridge", &["add", id, &path2], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ip = r.json()["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    let store = rt.tmp.join("cache/networks/cnibox");
    let held = || {
        std::fs::read_to_string(store.join("cnibox.state"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{ip} ")))
    };
    assert!(held());
    drop(ctr2);
    let r = rt.run_as("bridge", &["del", id, &path2], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!held(), "address released after the container exited");
    assert!(rt.cache_files().is_empty());
}

#[test]
fn run_on_the_default_network() {
    need_root!();
    let rt = Rt::new();
    let name = Named(unique("cbt-rund"));
    let r = rt
        .cnibox(
            &[
                "run",
                "--name",
                &name.0,
                "--",
                "sh",
                "-c",
                "ip -j addr show eth0 && ping -c 1 -W 2 10.88.0.1 >/dev/null",
            ],
            &[],
        )
        .into_ok();
    assert!(r.stdout.contains("\"10.88."), "{}", r.stdout);
    assert!(!std::path::Path::new(&format!("/run/netns/{}", name.0)).exists());
    assert!(rt.cache_files().is_empty());
    assert!(rt.node.links().iter().all(|l| !l["ifname"].as_str().unwrap_or("").starts_with("veth")), "veth removed");
}

#[test]
fn libcni_and_cnibox_share_a_bridge_attachment() {
    need_root!();
    let rt = Rt::new();
    let tool = need_cnitool!(rt);
    let (a, b) = (Netns::new("ctr"), Netns::new("ctr"));
    rt.conf("web.conflist", &web_conf(&rt, "cnirt0", "10.77.0.0/24", "ipam"));
    rt.cnibox(&["add", "web", &a.path()], &[]).into_ok();
    let r = rt.cnitool(&tool, &["add", "web", &b.path()], &[]);
    assert_eq!(r.code, 0, "cnitool add: {}", r.stderr);
    let (ipa, ipb) = (eth0_v4(&a).unwrap(), eth0_v4(&b).unwrap());
    assert!(a.ping(&ipb) && b.ping(&ipa));
    // each checks and deletes the other's attachment
    let r = rt.cnitool(&tool, &["check", "web", &a.path()], &[]);
    assert_eq!(r.code, 0, "cnitool check: {}", r.stderr);
    rt.ok(&["check", "web", &b.path()], &[]);
    let r = rt.cnitool(&tool, &["del", "web", &a.path()], &[]);
    assert_eq!(r.code, 0, "cnitool del: {}", r.stderr);
    rt.ok(&["del", "web", &b.path()], &[]);
    assert!(a.link("eth0").is_none() && b.link("eth0").is_none());
    assert!(!reserved(&rt, "ipam", &ipa) && !reserved(&rt, "ipam", &ipb));
    assert!(rt.cache_files().is_empty());
}
