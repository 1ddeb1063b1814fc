//! Runs one plugin the way a runtime calls it: read CNI_* and stdin, validate
//! them exactly as the reference library does, call the verb, and print the
//! result (or the error JSON on stdout with exit status 1).

use super::config::{Common, Config};
use super::json::{FromJson, JResult, Obj};
use super::json_writer::JsonWriter;
use super::version;
use super::CniResult;
use crate::error::{code, Error, Result};
use crate::sys::netns::Netns;
use std::io::{Read, Write};
use std::sync::Arc;

/// Largest network configuration accepted on stdin.
pub const MAX_CONFIG: usize = 1 << 20;

/// Longest network name: host-local names a directory after it, and a path
/// component holds at most 255 bytes.
pub const MAX_NAME: usize = 255;

/// Longest container id. The id is the comment of portmap's rules (the
/// reference's layout), and nftables comments hold 128 bytes: two longer ids
/// sharing their first 128 bytes would own each other's rules.
pub const MAX_CONTAINER_ID: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }
}

/// Everything a verb gets: the CNI_* parameters and the config, parsed once.
#[derive(Clone)]
pub struct Request {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
    pub netns_override: bool,
    pub config: Config,
    /// The config's cniVersion ("0.1.0" when absent, as the reference decodes it).
    pub cni_version: String,
    pub name: String,
    /// CNI_NETNS as `dispatch` opened and checked it (ADD and CHECK; DEL
    /// when it still exists): the plugin and its in-process delegates use
    /// this handle instead of opening and checking the path again.
    pub ns: Option<Arc<Netns>>,
}

pub type Verb<T> = fn(&Request) -> Result<T>;

pub struct Plugin {
    pub name: &'static str,
    /// Oldest spec version the plugin accepts (firewall: 0.4.0, bandwidth: 0.3.0).
    pub min_version: &'static str,
    pub add: Verb<CniResult>,
    pub del: Verb<()>,
    pub check: Verb<()>,
    pub gc: Verb<()>,
    pub status: Verb<()>,
}

impl Plugin {
    pub fn versions(&self) -> &'static [&'static str] {
        let i = version::ALL.iter().position(|v| *v == self.min_version).unwrap_or(0);
        &version::ALL[i..]
    }
}

/// A verb with nothing to do (GC and STATUS of plugins that keep no state).
pub fn noop(_: &Request) -> Result<()> {
    Ok(())
}

/// Where the CNI_* values come from: the process environment, or a map when
/// the runtime side calls a plugin in-process.
pub trait Env {
    fn get(&self, key: &str) -> String;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> String {
        std::env::var(key).unwrap_or_default()
    }
}

/// The plugin's whole life as an executable: returns the exit status.
/// Generic rather than `dyn`: a `dyn Read` of stdin would link every method
/// of std's stdin and stdout types for the two that are called.
pub fn main(plugin: &Plugin, env: &dyn Env, stdin: &mut impl Read, stdout: &mut impl Write) -> i32 {
    let (out, status) = match run(plugin, env, stdin) {
        Ok(Some(result)) => (result, 0),
        Ok(None) => return 0,
        Err(e) => (error_json(&e), 1),
    };
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.write_all(b"\n");
    status
}

/// The CNI error object: `{"code":N,"msg":"...","details":"..."}`.
fn error_json(e: &Error) -> String {
    let mut w = JsonWriter::new();
    w.begin_object();
    error_fields(&mut w, e);
    w.end_object();
    w.finish()
}

/// The fields of the CNI error object, `details` left out when empty.
pub fn error_fields(w: &mut JsonWriter, e: &Error) {
    w.key("code").number(e.code.into()).key("msg").string(&e.msg).nonempty("details", &e.details);
}

fn run(plugin: &Plugin, env: &dyn Env, stdin: &mut impl Read) -> Result<Option<String>> {
    let cmd_str = env.get("CNI_COMMAND");
    let required: &[&str] = match cmd_str.as_str() {
        "ADD" | "CHECK" => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
        "DEL" => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
        "GC" | "STATUS" => &["CNI_PATH"],
        _ => &[],
    };
    let mut missing: Vec<&str> = Vec::new();
    if cmd_str.is_empty() {
        missing.push("CNI_COMMAND");
    }
    missing.extend(required.iter().filter(|k| env.get(k).is_empty()));
    if !missing.is_empty() {
        if cmd_str.is_empty() {
            // No command at all: a person ran the plugin by hand.
            eprintln!("{}", about(plugin.name));
            eprintln!("CNI protocol versions supported: {}", plugin.versions().join(", "));
            return Ok(None);
        }
        return Err(Error::new(code::INVALID_ENV, format!("required env variables [{}] missing", missing.join(","))));
    }
    let command = Command::parse(&cmd_str)
        .ok_or_else(|| Error::new(code::INVALID_ENV, format!("unknown CNI_COMMAND: {cmd_str}")))?;
    if command == Command::Version {
        return Ok(Some(version_json(plugin)));
    }
    let mut config = Vec::new();
    stdin
        .take(MAX_CONFIG as u64 + 1)
        .read_to_end(&mut config)
        .map_err(|e| Error::new(code::IO, format!("error reading from stdin: {e}")))?;
    if config.len() > MAX_CONFIG {
        return Err(Error::new(code::IO, "network configuration on stdin is larger than 1 MiB"));
    }
    let override_ = env.get("CNI_NETNS_OVERRIDE");
    let req = Request {
        command,
        container_id: env.get("CNI_CONTAINERID"),
        netns: env.get("CNI_NETNS"),
        ifname: env.get("CNI_IFNAME"),
        args: env.get("CNI_ARGS"),
        path: env.get("CNI_PATH"),
        netns_override: override_.eq_ignore_ascii_case("true") || override_ == "1",
        config: config.into(),
        cni_version: String::new(),
        name: String::new(),
        ns: None,
    };
    let (req, result) = dispatch(plugin, req)?;
    match result {
        Some(r) => Ok(Some(r.to_json(&req.cni_version)?)),
        None => Ok(None),
    }
}

pub fn about(name: &str) -> String {
    format!("CNI {name} plugin v{} (cnibox {})", env!("CARGO_PKG_VERSION"), env!("CNIBOX_COMMIT"))
}

pub fn version_json(plugin: &Plugin) -> String {
    let mut w = JsonWriter::new();
    w.begin_object().key("cniVersion").string(version::CURRENT);
    w.key("supportedVersions").begin_array();
    for v in plugin.versions() {
        w.string(v);
    }
    w.end_array().end_object();
    w.finish()
}

/// Validate a request and run the verb: shared by the executable path and
/// the in-process delegation path, so both behave identically.
pub fn dispatch(plugin: &Plugin, mut req: Request) -> Result<(Request, Option<CniResult>)> {
    let common = validate_config(&req.config)?;
    req.name = common.name.unwrap_or_default();
    if matches!(req.command, Command::Add | Command::Del | Command::Check) {
        validate_container_id(&req.container_id)?;
        validate_ifname(&req.ifname)?;
    }
    let v = common.cni_version.filter(|v| !v.is_empty()).unwrap_or_else(|| "0.1.0".into());
    if version::parse(&v).is_none() {
        return Err(Error::new(
            code::DECODING,
            format!("invalid version \"{v}\": the version is empty or has too many parts"),
        ));
    }
    let needs = match req.command {
        Command::Check => Some(("0.4.0", "CHECK")),
        Command::Gc => Some(("1.1.0", "GC")),
        Command::Status => Some(("1.1.0", "STATUS")),
        _ => None,
    };
    if let Some((min, verb)) = needs {
        if !version::at_least(&v, min) {
            return Err(Error::new(code::INCOMPATIBLE_VERSION, format!("config version does not allow {verb}")));
        }
    }
    if !plugin.versions().contains(&v.as_str()) {
        return Err(Error::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
            .with_details(format!("config is \"{v}\", plugin supports {}", version::quoted_list(plugin.versions()))));
    }
    req.cni_version = v;
    if req.command != Command::Version {
        need_net_admin()?;
    }
    if matches!(req.command, Command::Add | Command::Del | Command::Check) {
        check_netns(&mut req)?;
    }
    let result = match req.command {
        Command::Add => Some((plugin.add)(&req)?),
        Command::Del => {
            (plugin.del)(&req)?;
            None
        }
        Command::Check => {
            (plugin.check)(&req)?;
            None
        }
        Command::Gc => {
            (plugin.gc)(&req)?;
            None
        }
        Command::Status => {
            (plugin.status)(&req)?;
            None
        }
        Command::Version => None,
    };
    Ok((req, result))
}

/// CNI_NETNS, before any change. A path that exists but is not a network
/// namespace (a regular file, a directory, another kind of namespace) is
/// refused for ADD and CHECK; DEL takes it for a namespace that is gone.
/// A stale `/proc/<pid>/ns/net` can point at the node's own namespace;
/// acting on it would reconfigure the node (plugins#714), so that is refused
/// too, unless CNI_NETNS_OVERRIDE says the caller means it. The handle
/// checked is kept in the request; an in-process delegate's request comes
/// with it (same path, same process, same namespace) and is not checked again.
fn check_netns(req: &mut Request) -> Result<()> {
    if req.netns.is_empty() || req.ns.as_ref().is_some_and(|ns| ns.path == req.netns) {
        return Ok(());
    }
    let target = match Netns::open(&req.netns) {
        Ok(t) => t,
        Err(e) if e.code == code::INVALID_NETNS && req.command != Command::Del => return Err(e),
        Err(_) => return Ok(()), // the verb reports (ADD) or tolerates (DEL) a missing namespace
    };
    if !req.netns_override && target.is_current()? {
        return Err(Error::new(code::INVALID_NETNS, "plugin's netns and netns from CNI_NETNS should not be the same"));
    }
    req.ns = Some(Arc::new(target));
    Ok(())
}

/// Every verb changes or inspects kernel state that needs CAP_NET_ADMIN (or
/// writes state only root may write): without it, say so before doing anything.
fn need_net_admin() -> Result<()> {
    if crate::sys::has_cap_net_admin() {
        return Ok(());
    }
    let uid = crate::sys::process::euid();
    Err(Error::msg(format!(
        "this plugin needs CAP_NET_ADMIN and runs without it (uid {uid}): run it as root, as container runtimes do"
    )))
}

fn validate_config(config: &Config) -> Result<Common> {
    let bad = |details: String| Error::new(code::DECODING, "error unmarshall network config").with_details(details);
    let v = config.value().map_err(|e| bad(e.to_string()))?;
    let c = Common::from_json(v).map_err(|b| bad(b.located()))?;
    match c.name.as_deref() {
        None | Some("") => Err(Error::new(code::INVALID_CONFIG, "missing network name")),
        Some(n) if n.len() > MAX_NAME => Err(Error::new(code::INVALID_CONFIG, "network name is too long")
            .with_details(format!("{} bytes, at most {MAX_NAME}", n.len()))),
        Some(n) if !valid_id(n) => {
            Err(Error::new(code::INVALID_CONFIG, "invalid characters found in network name").with_details(n))
        }
        _ => Ok(c),
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the reference's rule for ids and network names.
pub fn valid_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

pub fn validate_container_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::new(code::UNKNOWN_CONTAINER, "missing containerID"));
    }
    if !valid_id(id) {
        return Err(Error::new(code::INVALID_ENV, "invalid characters in containerID").with_details(id));
    }
    if id.len() > MAX_CONTAINER_ID {
        return Err(Error::new(code::INVALID_ENV, "containerID is too long")
            .with_details(format!("{} bytes, at most {MAX_CONTAINER_ID}", id.len())));
    }
    Ok(())
}

/// The reference's ValidateInterfaceName, which follows the kernel's
/// dev_valid_name: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or Unicode
/// whitespace. Other UTF-8 and control bytes pass (the kernel takes them);
/// whatever stores a name must be able to hold them.
pub fn validate_ifname(name: &str) -> Result<()> {
    let e = |m: &str| Error::new(code::INVALID_ENV, m.to_string());
    if name.is_empty() {
        return Err(e("interface name is empty"));
    }
    if name.len() > 15 {
        return Err(e("interface name is too long").with_details("interface name should be less than 16 characters"));
    }
    if name == "." || name == ".." {
        return Err(e("interface name is . or .."));
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(e("interface name contains / or : or whitespace characters"));
    }
    Ok(())
}

impl Request {
    /// The same request for another verb (a delegate's DEL after a failed ADD).
    pub fn with_command(&self, command: Command) -> Request {
        Request { command, ..self.clone() }
    }

    /// The container's namespace: the handle `dispatch` checked, or CNI_NETNS opened now.
    pub fn open_netns(&self) -> Result<Arc<Netns>> {
        match &self.ns {
            Some(ns) if ns.path == self.netns => Ok(Arc::clone(ns)),
            _ => Netns::open(&self.netns).map(Arc::new),
        }
    }

    /// The container's namespace for a DEL, or None when there is nothing
    /// left to undo inside it: CNI_NETNS is empty, or the namespace is gone
    /// and took its interfaces, routes and rules with it.
    pub fn netns_for_del(&self) -> Result<Option<Arc<Netns>>> {
        if self.netns.is_empty() {
            return Ok(None);
        }
        match self.open_netns() {
            Ok(ns) => Ok(Some(ns)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The `prevResult` of a chained call, in whichever version it came.
    pub fn prev_result(&self) -> Result<Option<CniResult>> {
        let prev = self.conf_with(|o| o.opt::<super::result::AnyResult>("prevResult"))?.map(|r| r.normalize());
        if let (Some(r), Command::Add | Command::Check) = (&prev, self.command) {
            self.check_sandboxes(r)?;
        }
        Ok(prev)
    }

    /// Every container-side interface of a prevResult lives in CNI_NETNS: a
    /// chained plugin must never act on another namespace's interfaces or
    /// addresses because a prevResult named them. (DEL does not look: it has
    /// to clean up whatever the namespaces have become.)
    fn check_sandboxes(&self, r: &CniResult) -> Result<()> {
        let mut ours: Option<Arc<Netns>> = None;
        for i in r.interfaces.iter().filter(|i| !i.sandbox.is_empty() && i.sandbox != self.netns) {
            let bad = || {
                Error::new(
                    code::INVALID_CONFIG,
                    format!(
                        "prevResult: interface \"{}\" is in sandbox \"{}\", not in CNI_NETNS \"{}\"",
                        i.name, i.sandbox, self.netns
                    ),
                )
            };
            // The same namespace may be named by another path (/proc/<pid>/ns/net).
            let Ok(theirs) = Netns::open(&i.sandbox) else { return Err(bad()) };
            if ours.is_none() {
                ours = Some(self.open_netns().map_err(|_| bad())?);
            }
            if !ours.as_ref().is_some_and(|o| o.same_as(&theirs).unwrap_or(false)) {
                return Err(bad());
            }
        }
        Ok(())
    }

    /// Parse the config into a plugin's own type; errors name the field.
    pub fn conf<T: FromJson>(&self) -> Result<T> {
        self.config.read("invalid network config")
    }

    /// Read a few fields of the config with `read`, for shapes too small to name.
    pub fn conf_with<T>(&self, read: impl FnOnce(Obj) -> JResult<T>) -> Result<T> {
        self.config.read_with("invalid network config", read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, String>);
    impl Env for MapEnv {
        fn get(&self, k: &str) -> String {
            self.0.get(k).cloned().unwrap_or_default()
        }
    }

    fn add_ok(_: &Request) -> Result<CniResult> {
        Ok(CniResult::default())
    }

    const P: Plugin =
        Plugin { name: "test", min_version: "0.1.0", add: add_ok, del: noop, check: noop, gc: noop, status: noop };

    fn run_with(vars: &[(&'static str, &str)], stdin: &str) -> (i32, String) {
        let env = MapEnv(vars.iter().map(|(k, v)| (*k, v.to_string())).collect());
        let mut out = Vec::new();
        let rc = main(&P, &env, &mut stdin.as_bytes(), &mut out);
        (rc, String::from_utf8(out).unwrap())
    }

    #[test]
    fn missing_env_lists_variables_in_reference_order() {
        let (rc, out) = run_with(&[("CNI_COMMAND", "ADD")], "{}");
        assert_eq!(rc, 1);
        assert_eq!(
            out.trim(),
            r#"{"code":4,"msg":"required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"}"#
        );
    }

    #[test]
    fn unknown_command_is_code_4() {
        let (rc, out) = run_with(&[("CNI_COMMAND", "FOO")], "{}");
        assert_eq!(rc, 1);
        assert_eq!(out.trim(), r#"{"code":4,"msg":"unknown CNI_COMMAND: FOO"}"#);
    }

    #[test]
    fn version_lists_everything() {
        let (rc, out) = run_with(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(rc, 0);
        assert_eq!(
            out.trim(),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
    }

    fn std_env(cmd: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", "ctr1".to_string()),
            ("CNI_NETNS", "/nonexistent/netns".to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", "/nonexistent".to_string()),
        ]
    }

    fn run_std(cmd: &str, over: &[(&'static str, &str)], stdin: &str) -> (i32, String) {
        let mut v = std_env(cmd);
        for (k, val) in over {
            v.retain(|(kk, _)| kk != k);
            v.push((k, val.to_string()));
        }
        let refs: Vec<(&'static str, &str)> = v.iter().map(|(k, s)| (*k, s.as_str())).collect();
        run_with(&refs, stdin)
    }

    #[test]
    fn config_validation_codes() {
        let (_, out) = run_std("ADD", &[], "{not json");
        assert!(out.starts_with(r#"{"code":6,"msg":"error unmarshall network config""#), "{out}");
        let (_, out) = run_std("ADD", &[], r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(out.trim(), r#"{"code":7,"msg":"missing network name"}"#);
        let (_, out) = run_std("ADD", &[], r#"{"cniVersion":"1.0.0","name":"a/b"}"#);
        assert_eq!(out.trim(), r#"{"code":7,"msg":"invalid characters found in network name","details":"a/b"}"#);
        let (_, out) = run_std("ADD", &[], r#"{"cniVersion":"9.9.9","name":"n"}"#);
        assert_eq!(
            out.trim(),
            r#"{"code":1,"msg":"incompatible CNI versions","details":"config is \"9.9.9\", plugin supports [\"0.1.0\" \"0.2.0\" \"0.3.0\" \"0.3.1\" \"0.4.0\" \"1.0.0\" \"1.1.0\"]"}"#
        );
        let (_, out) = run_std("CHECK", &[], r#"{"cniVersion":"0.3.1","name":"n"}"#);
        assert_eq!(out.trim(), r#"{"code":1,"msg":"config version does not allow CHECK"}"#);
        let (_, out) = run_std("GC", &[], r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(out.trim(), r#"{"code":1,"msg":"config version does not allow GC"}"#);
        let (_, out) = run_std("STATUS", &[], r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(out.trim(), r#"{"code":1,"msg":"config version does not allow STATUS"}"#);
    }

    #[test]
    fn env_validation_codes() {
        let (_, out) = run_std("ADD", &[("CNI_CONTAINERID", "bad/id")], r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(out.trim(), r#"{"code":4,"msg":"invalid characters in containerID","details":"bad/id"}"#);
        let (_, out) = run_std("ADD", &[("CNI_IFNAME", "abcdefghijklmnop")], r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(
            out.trim(),
            r#"{"code":4,"msg":"interface name is too long","details":"interface name should be less than 16 characters"}"#
        );
        let (_, out) = run_std("ADD", &[("CNI_IFNAME", "a:b")], r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert!(out.contains("whitespace"), "{out}");
        let (_, out) = run_std("ADD", &[("CNI_IFNAME", "..")], r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert!(out.contains(r#""code":4"#), "{out}");
    }

    /// The reference's ValidateInterfaceName: length in bytes, and any rune
    /// that unicode.IsSpace calls space (Rust's White_Space is the same set).
    #[test]
    fn interface_names_as_the_reference_validates_them() {
        for ok in ["\u{e9}0", "a\x01", "\u{7f}", "\u{2603}\u{2603}\u{2603}\u{2603}\u{2603}", "eth0.100", "-"] {
            assert!(validate_ifname(ok).is_ok(), "{ok:?}");
        }
        for space in ["a\u{b}", "a\u{c}", "a\r", "a\u{85}", "a\u{a0}", "a\u{1680}", "a\u{2009}", "a\u{3000}"] {
            let e = validate_ifname(space).err().unwrap();
            assert_eq!((e.code, e.msg.as_str()), (4, "interface name contains / or : or whitespace characters"));
        }
        // 16 bytes in 6 characters is too long: the limit is bytes
        let e = validate_ifname("\u{2603}\u{2603}\u{2603}\u{2603}\u{2603}x").err().unwrap();
        assert_eq!(e.msg, "interface name is too long");
        assert_eq!(validate_ifname("").err().unwrap().msg, "interface name is empty");
        assert_eq!(validate_ifname(".").err().unwrap().msg, "interface name is . or ..");
    }

    #[test]
    fn oversized_stdin_is_refused() {
        let big = format!(r#"{{"name":"n","pad":"{}"}}"#, "x".repeat(MAX_CONFIG));
        let (rc, out) = run_std("ADD", &[], &big);
        assert_eq!(rc, 1);
        assert!(out.contains(r#""code":5"#), "{out}");
    }

    fn add_sees_checked_netns(req: &Request) -> Result<CniResult> {
        let ns = req.ns.as_ref().expect("dispatch keeps the namespace it checked");
        // the plugin and an in-process delegate (a clone) use that very handle
        assert!(Arc::ptr_eq(ns, &req.open_netns()?));
        let d = req.with_command(Command::Add);
        assert!(Arc::ptr_eq(ns, &d.open_netns()?));
        Ok(CniResult::default())
    }

    #[test]
    fn the_netns_is_checked_once_and_carried() {
        if !crate::sys::has_cap_net_admin() {
            return;
        }
        let p = Plugin { add: add_sees_checked_netns, ..P };
        let req = |netns: &str| Request {
            command: Command::Add,
            container_id: "c1".into(),
            netns: netns.into(),
            ifname: "eth0".into(),
            args: String::new(),
            path: String::new(),
            netns_override: true,
            config: br#"{"cniVersion":"1.0.0","name":"n"}"#.to_vec().into(),
            cni_version: String::new(),
            name: String::new(),
            ns: None,
        };
        let (done, _) = dispatch(&p, req("/proc/self/ns/net")).unwrap();
        assert!(done.ns.as_ref().unwrap().is_current().unwrap());
        // without the override, our own namespace is refused as before
        let e = dispatch(&p, Request { netns_override: false, ..req("/proc/self/ns/net") }).err().unwrap();
        assert_eq!(e.code, code::INVALID_NETNS);
        // a handle for another path is not taken for CNI_NETNS's
        let other = Request { netns: "/proc/thread-self/ns/net".into(), ..done };
        assert!(!Arc::ptr_eq(other.ns.as_ref().unwrap(), &other.open_netns().unwrap()));
    }

    #[test]
    fn missing_version_means_0_1_0_and_result_is_converted() {
        if !crate::sys::has_cap_net_admin() {
            return; // ADD refuses to run at all without the capability
        }
        let (rc, out) = run_std("ADD", &[], r#"{"name":"n"}"#);
        // an empty result cannot be expressed in 0.1.0
        assert_eq!(rc, 1);
        assert!(out.contains("cannot convert"), "{out}");
    }
}
