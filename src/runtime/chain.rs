//! Running a network's plugin chain as the spec orders it (SPEC.md §3, the
//! same behaviour as libcni): ADD in order with each result as the next
//! plugin's prevResult, DEL in reverse with the cached result, CHECK in order,
//! GC and STATUS on every plugin. Plugins are reached through
//! `cni::delegate`, which runs this very binary's plugins in-process.

use super::cache::{Cache, Entry, KIND};
use super::conf::{self, NetList, PluginConf};
use crate::cni::delegate;
use crate::cni::version::at_least;
use crate::cni::{skel, CniResult, Command, Request};
use crate::error::{code, Error, Result};
use crate::json::{Map, Value};
use crate::sys::netns::Netns;

pub struct Runtime {
    /// CNI_PATH handed to the plugins (and searched for them).
    pub path: String,
    pub cache: Cache,
}

/// The per-container parameters of ADD, CHECK and DEL.
#[derive(Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub cap_args: Map,
}

impl Attachment {
    fn args_env(&self) -> String {
        self.args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
    }
}

/// One plugin call with the request configuration the spec derives: the
/// plugin's own object plus `name`, `cniVersion` and the injected keys, and
/// `runtimeConfig` holding only the capabilities this plugin declares.
fn invoke(
    rt: &Runtime,
    list: &NetList,
    p: &PluginConf,
    cmd: Command,
    att: Option<&Attachment>,
    inject: Vec<(&str, Value)>,
) -> Result<Option<CniResult>> {
    let mut m = p.raw.clone();
    m.insert("name", list.name.as_str().into());
    m.insert("cniVersion", list.cni_version.as_str().into());
    for (k, v) in inject {
        m.insert(k, v);
    }
    let empty = String::new();
    let (id, netns, ifname, args) = match att {
        Some(a) => {
            let mut rc = Map::new();
            for c in &p.caps {
                if let Some(v) = a.cap_args.get(c) {
                    rc.insert(c, v.clone());
                }
            }
            if !rc.is_empty() {
                m.insert("runtimeConfig", Value::Object(rc));
            }
            (&a.container_id, &a.netns, &a.ifname, a.args_env())
        }
        None => (&empty, &empty, &empty, String::new()),
    };
    let req = Request {
        command: cmd,
        container_id: id.clone(),
        netns: netns.clone(),
        ifname: ifname.clone(),
        args,
        path: rt.path.clone(),
        netns_override: false,
        config: crate::cni::config::Config::of_value(Value::Object(m)),
        cni_version: String::new(),
        name: String::new(),
        ns: None,
    };
    delegate::delegate(&p.ty, cmd, &req).map_err(|mut e| {
        e.msg = format!(
            "plugin type=\"{}\" failed ({}): error code {}: {}",
            p.ty,
            cmd.as_str().to_ascii_lowercase(),
            e.code,
            e.msg
        );
        e
    })
}

/// A result as a plugin of version `v` reads it in `prevResult`.
fn as_value(r: &CniResult, v: &str) -> Result<Value> {
    crate::json::parse(r.to_json(v)?.as_bytes()).map_err(|e| Error::msg(format!("encode result: {e}")))
}

fn prev(r: &CniResult, v: &str) -> Result<Vec<(&'static str, Value)>> {
    Ok(vec![("prevResult", as_value(r, v)?)])
}

fn attachment_error(list: &str, att: &Attachment, what: &str) -> Error {
    Error::new(
        code::UNKNOWN_CONTAINER,
        format!("container {} {what} network \"{list}\" as {}", att.container_id, att.ifname),
    )
}

/// The names become part of the cache file's path: checked with the rules
/// plugins apply, before anything runs.
fn validate(network: &str, att: &Attachment) -> Result<()> {
    if !skel::valid_id(network) {
        return Err(Error::config(format!("invalid characters found in network name \"{network}\"")));
    }
    skel::validate_container_id(&att.container_id)?;
    skel::validate_ifname(&att.ifname)
}

pub fn add(rt: &Runtime, list: &NetList, att: &Attachment) -> Result<CniResult> {
    validate(&list.name, att)?;
    let _lock = rt.cache.lock()?;
    let cached = rt.cache.path(&list.name, &att.container_id, &att.ifname);
    if cached.exists() {
        return Err(attachment_error(&list.name, att, "is already attached to")
            .with_details(format!("cache file {}; run del first", cached.display())));
    }
    Netns::open(&att.netns)?;
    let mut result: Option<CniResult> = None;
    for p in &list.plugins {
        let inject = match &result {
            Some(r) => prev(r, &list.cni_version)?,
            None => Vec::new(),
        };
        match invoke(rt, list, p, Command::Add, Some(att), inject) {
            Ok(r) => result = r,
            Err(e) => return Err(undo(rt, list, att, e)),
        }
    }
    let result = result.unwrap_or_default();
    let entry = Entry {
        kind: KIND.into(),
        container_id: att.container_id.clone(),
        config: list.bytes.clone(),
        ifname: att.ifname.clone(),
        network: list.name.clone(),
        netns: att.netns.clone(),
        cni_args: att.args.clone(),
        cap_args: att.cap_args.clone(),
        result: Some(as_value(&result, &list.cni_version)?),
    };
    if let Err(e) = rt.cache.write(&entry) {
        return Err(undo(rt, list, att, e.context("save the result cache")));
    }
    Ok(result)
}

/// A failed ADD is followed by DEL of the whole chain (SPEC.md: "a delete
/// must still be executed even if the add fails"), so that the plugins that
/// did succeed leave nothing behind. Unlike a DEL the user asks for, this one
/// goes on past errors: there is no attachment to keep for a retry, and a
/// plugin that cannot even be found must not strand the others. The ADD error
/// is what gets reported.
fn undo(rt: &Runtime, list: &NetList, att: &Attachment, mut e: Error) -> Error {
    let failed: Vec<String> = list
        .plugins
        .iter()
        .rev()
        .filter_map(|p| invoke(rt, list, p, Command::Del, Some(att), Vec::new()).err())
        .map(|d| d.to_string())
        .collect();
    if failed.is_empty() {
        return e;
    }
    e.msg = format!("{}; the DEL that followed also failed: {}", e.msg, failed.join("; "));
    e
}

fn del_chain(rt: &Runtime, list: &NetList, att: &Attachment, result: Option<&CniResult>) -> Result<()> {
    let inject = match result {
        Some(r) if at_least(&list.cni_version, "0.4.0") => prev(r, &list.cni_version).unwrap_or_default(),
        _ => Vec::new(),
    };
    for p in list.plugins.iter().rev() {
        invoke(rt, list, p, Command::Del, Some(att), inject.clone())?;
    }
    Ok(())
}

/// DEL of one attachment. The cached config and parameters are what ADD ran
/// with, so they are preferred over `current`: teardown still works after the
/// config file changed or was removed. Without a cache entry, `current` is
/// used and the plugins get no prevResult, as the spec allows.
pub fn del(rt: &Runtime, current: Result<&NetList>, network: &str, att: &Attachment) -> Result<()> {
    validate(network, att)?;
    let _lock = rt.cache.lock()?;
    del_unlocked(rt, current, network, att)
}

fn del_unlocked(rt: &Runtime, current: Result<&NetList>, network: &str, att: &Attachment) -> Result<()> {
    let entry = rt.cache.read(network, &att.container_id, &att.ifname).unwrap_or_else(|e| {
        eprintln!("cnibox: ignoring the result cache: {e}");
        None
    });
    let mut used = att.clone();
    let mut cached_list = None;
    let mut result = None;
    if let Some(e) = entry {
        if !e.config.is_empty() {
            match conf::from_bytes(&e.config) {
                Ok(l) => cached_list = Some(l),
                Err(err) => eprintln!(
                    "cnibox: cached config of network \"{network}\" is unusable ({err}); using the current one"
                ),
            }
        }
        if !e.cni_args.is_empty() {
            used.args = e.cni_args;
        }
        used.cap_args = e.cap_args;
        result = e.result.and_then(|v| CniResult::from_value(&v).ok());
    }
    let list = match &cached_list {
        Some(l) => l,
        None => current?,
    };
    del_chain(rt, list, &used, result.as_ref())?;
    rt.cache.remove(network, &att.container_id, &att.ifname)
}

pub fn check(rt: &Runtime, list: &NetList, att: &Attachment) -> Result<()> {
    if !at_least(&list.cni_version, "0.4.0") {
        return Err(Error::new(
            code::INCOMPATIBLE_VERSION,
            format!("configuration version \"{}\" does not support the CHECK command", list.cni_version),
        ));
    }
    if list.disable_check {
        return Ok(());
    }
    validate(&list.name, att)?;
    // CHECK before ADD or after DEL is a runtime error (SPEC.md): say so
    // rather than let every plugin complain about a missing prevResult.
    let entry = rt.cache.read(&list.name, &att.container_id, &att.ifname)?;
    let result = entry
        .and_then(|e| e.result)
        .ok_or_else(|| attachment_error(&list.name, att, "is not attached to"))
        .and_then(|v| CniResult::from_value(&v))?;
    for p in &list.plugins {
        invoke(rt, list, p, Command::Check, Some(att), prev(&result, &list.cni_version)?)?;
    }
    Ok(())
}

/// GC: cached attachments of this network whose namespace is gone are
/// deleted (a full DEL with their cached parameters); then, from 1.1.0 on,
/// every plugin gets GC with the attachments that remain valid. Errors are
/// collected and execution continues, as the spec asks.
pub fn gc(rt: &Runtime, list: &NetList) -> Result<Vec<String>> {
    if list.disable_gc {
        return Ok(Vec::new());
    }
    let _lock = rt.cache.lock()?;
    let mut valid = Vec::new();
    let mut removed = Vec::new();
    let mut errs = Vec::new();
    for e in rt.cache.list().into_iter().filter(|e| e.network == list.name) {
        // Entries written by libcni before 1.2 carry no netns: with nothing to
        // judge by, they are kept.
        if e.netns.is_empty() || Netns::open(&e.netns).is_ok() {
            let mut a = Map::new();
            a.insert("containerID", e.container_id.into());
            a.insert("ifname", e.ifname.into());
            valid.push(Value::Object(a));
            continue;
        }
        let att = Attachment {
            container_id: e.container_id,
            netns: e.netns,
            ifname: e.ifname,
            args: e.cni_args,
            cap_args: e.cap_args,
        };
        match del_unlocked(rt, Ok(list), &list.name, &att) {
            Ok(()) => removed.push(format!("{} {} (netns {} is gone)", att.container_id, att.ifname, att.netns)),
            Err(err) => errs.push(format!("delete stale attachment {} {}: {err}", att.container_id, att.ifname)),
        }
    }
    if at_least(&list.cni_version, "1.1.0") {
        let v = Value::Array(valid);
        for p in &list.plugins {
            let inject = vec![("cni.dev/valid-attachments", v.clone()), ("cni.dev/attachments", v.clone())];
            if let Err(err) = invoke(rt, list, p, Command::Gc, None, inject) {
                errs.push(err.to_string());
            }
        }
    }
    if errs.is_empty() {
        Ok(removed)
    } else {
        Err(Error::msg(errs.join("; ")))
    }
}

/// STATUS on every plugin, stopping at the first that is not ready; a no-op
/// below 1.1.0, where the verb does not exist.
pub fn status(rt: &Runtime, list: &NetList) -> Result<()> {
    if !at_least(&list.cni_version, "1.1.0") {
        return Ok(());
    }
    for p in &list.plugins {
        invoke(rt, list, p, Command::Status, None, Vec::new())?;
    }
    Ok(())
}
