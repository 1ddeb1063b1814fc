//! The CNI protocol as a runtime observes it from the outside: the sample
//! outputs of the reference plugins (cni-reference.md §5), the about text,
//! argv[0] dispatch and the multi-call entry points.

mod common;
use common::*;

fn plugin(name: &str, vars: &[(&str, &str)], stdin: &str) -> Run {
    let env: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    run_in(None, &bin(), name, &env, stdin)
}

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{}}"#;

fn full(cmd: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", cmd.into()),
        ("CNI_CONTAINERID", "ctr1".into()),
        ("CNI_NETNS", "/run/netns/cnibox-test-does-not-exist".into()),
        ("CNI_IFNAME", "eth0".into()),
        ("CNI_PATH", "/nonexistent".into()),
    ]
}

fn with(cmd: &str, k: &'static str, v: &str) -> Vec<(&'static str, String)> {
    let mut e = full(cmd);
    e.retain(|(kk, _)| *kk != k);
    e.push((k, v.into()));
    e
}

fn run_vars(name: &str, vars: &[(&'static str, String)], stdin: &str) -> Run {
    let v: Vec<(&str, &str)> = vars.iter().map(|(k, s)| (*k, s.as_str())).collect();
    plugin(name, &v, stdin)
}

#[test]
fn version_lists_every_spec_version() {
    for name in ["bridge", "loopback", "host-local", "static", "portmap"] {
        let r = plugin(name, &[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(r.code, 0, "{name}");
        assert_eq!(
            r.stdout.trim(),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
    }
}

#[test]
fn missing_env_is_code_4_naming_the_variables() {
    let r = plugin("bridge", &[("CNI_COMMAND", "ADD")], CONF);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout.trim(),
        r#"{"code":4,"msg":"required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"}"#
    );
    let r = plugin("bridge", &[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "x")], CONF);
    assert_eq!(r.stdout.trim(), r#"{"code":4,"msg":"required env variables [CNI_IFNAME,CNI_PATH] missing"}"#);
}

#[test]
fn bad_container_id_and_ifname() {
    let r = run_vars("bridge", &with("ADD", "CNI_CONTAINERID", "bad/id"), CONF);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout.trim(), r#"{"code":4,"msg":"invalid characters in containerID","details":"bad/id"}"#);
    let r = run_vars("bridge", &with("ADD", "CNI_IFNAME", "a-very-long-interface"), CONF);
    assert_eq!(
        r.stdout.trim(),
        r#"{"code":4,"msg":"interface name is too long","details":"interface name should be less than 16 characters"}"#
    );
}

#[test]
fn unknown_args_are_refused_unless_ignored() {
    let r = run_vars("bridge", &with("ADD", "CNI_ARGS", "K8S_POD_NAME=x"), CONF);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout.trim(), r#"{"code":999,"msg":"ARGS: unknown args [\"K8S_POD_NAME=x\"]"}"#);
    // With IgnoreUnknown the request gets past argument parsing (and fails later, on the missing netns).
    let r = run_vars("bridge", &with("ADD", "CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=x"), CONF);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("cnibox-test-does-not-exist"), "{}", r.stdout);
}

#[test]
fn unknown_command_and_bad_config() {
    let r = run_vars("bridge", &full("FOO"), CONF);
    assert_eq!(r.stdout.trim(), r#"{"code":4,"msg":"unknown CNI_COMMAND: FOO"}"#);
    let r = run_vars("bridge", &full("ADD"), "{nope");
    assert!(r.stdout.starts_with(r#"{"code":6,"msg":"error unmarshall network config""#), "{}", r.stdout);
    let r = run_vars("bridge", &full("ADD"), r#"{"cniVersion":"1.0.0","type":"bridge"}"#);
    assert_eq!(r.stdout.trim(), r#"{"code":7,"msg":"missing network name"}"#);
    let r = run_vars("bridge", &full("ADD"), r#"{"cniVersion":"9.9.9","name":"n"}"#);
    assert!(r.stdout.contains(r#""code":1,"msg":"incompatible CNI versions""#), "{}", r.stdout);
    assert!(r.stdout.contains(r#"config is \"9.9.9\""#), "{}", r.stdout);
}

#[test]
fn huge_and_binary_input_never_panics() {
    let big = format!(r#"{{"name":"n","x":"{}"}}"#, "a".repeat(2 << 20));
    let r = run_vars("bridge", &full("ADD"), &big);
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["code"], 5);
    let r = run_vars("bridge", &full("ADD"), "\u{0}\u{1}\u{fffd}garbage");
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["code"], 6);
    assert!(r.stderr.is_empty() || !r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn about_text_without_a_command() {
    let r = plugin("bridge", &[], "");
    assert_eq!(r.code, 0);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.starts_with("CNI bridge plugin v"), "{}", r.stderr);
    assert!(
        r.stderr.contains("CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
        "{}",
        r.stderr
    );
}

#[test]
fn multi_call_entry_points() {
    // cnibox <plugin> is the same as a symlink named after the plugin.
    let env = vec![("CNI_COMMAND".to_string(), "VERSION".to_string())];
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("loopback").env("CNI_COMMAND", "VERSION");
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("supportedVersions"));
    let r = run_in(None, &bin(), "/some/dir/loopback", &env, "");
    assert_eq!(r.code, 0);
    let v = std::process::Command::new(bin()).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("cnibox "));
    let h = std::process::Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&h.stdout);
    assert!(help.contains("bridge") && help.contains("host-local") && help.contains("loopback"), "{help}");
    let u = std::process::Command::new(bin()).arg("no-such-plugin").output().unwrap();
    assert_eq!(u.status.code(), Some(2));
}
