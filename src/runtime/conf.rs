//! Network configuration lists as libcni finds them: `.conflist` files in
//! lexical order, then single-plugin `.conf`/`.json` files converted to lists;
//! the first whose `name` matches wins. Every error names the file at fault.

use crate::cni::config;
use crate::cni::json::{json_struct, map_of, Bad, JResult};
use crate::cni::version;
use crate::error::{code, Error, Result};
use crate::json::{Map, Value};
use std::path::Path;

pub struct NetList {
    pub name: String,
    /// The selected version ("0.1.0" when the file gives none).
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<PluginConf>,
    /// The list as a JSON document: what the result cache stores as `config`.
    pub bytes: Vec<u8>,
}

pub struct PluginConf {
    pub ty: String,
    /// Capabilities the plugin declares (`"capabilities": {"portMappings": true}`).
    pub caps: Vec<String>,
    /// The plugin's object exactly as written: unknown keys pass through.
    pub raw: Map,
}

json_struct! {
    /// The typed view, parsed first so that errors name the field
    /// (`field plugins[1]: missing field \`type\``).
    struct ListWire {
        name: String = req("name"),
        cni_version: String = get("cniVersion"),
        cni_versions: Vec<String> = get("cniVersions"),
        disable_check: bool = get_with("disableCheck", flag),
        disable_gc: bool = get_with("disableGC", flag),
        plugins: Vec<PluginWire> = req("plugins"),
    }
}

json_struct! {
    struct PluginWire {
        ty: String = req("type"),
        capabilities: Vec<(String, bool)> = get_with("capabilities", map_of),
    }
}

/// libcni accepts a JSON boolean or the strings "true"/"false" in any case.
fn flag(v: &Value) -> JResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(Bad::new("expected true or false")),
    }
}

/// The highest version of `cniVersion` and `cniVersions` that this binary
/// speaks; newer ones are ignored, as libcni does.
fn select_version(w: &ListWire) -> Result<String> {
    if w.cni_versions.is_empty() {
        return Ok(if w.cni_version.is_empty() { "0.1.0".into() } else { w.cni_version.clone() });
    }
    let mut best: Option<&str> = None;
    for v in w.cni_versions.iter().chain(std::iter::once(&w.cni_version).filter(|v| !v.is_empty())) {
        let Some(p) = version::parse(v) else {
            return Err(Error::config(format!("invalid cniVersions entry \"{v}\"")));
        };
        if !version::at_least(version::CURRENT, v) {
            continue;
        }
        if best.is_none_or(|b| version::parse(b) < Some(p)) {
            best = Some(v);
        }
    }
    best.map(str::to_string).ok_or_else(|| {
        Error::new(
            code::INCOMPATIBLE_VERSION,
            format!("none of cniVersions is supported (newest known is {})", version::CURRENT),
        )
    })
}

/// Parse a config list document.
pub fn parse_list(bytes: &[u8]) -> Result<NetList> {
    let raw = config::parse_value(bytes, "network configuration list")?;
    let w: ListWire = config::read(&raw, "network configuration list")?;
    if w.name.is_empty() {
        return Err(Error::config("network configuration list: field name: empty network name"));
    }
    if w.plugins.is_empty() {
        return Err(Error::config("network configuration list: no plugins in list"));
    }
    let raws = raw.get("plugins").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut plugins = Vec::new();
    for (i, (p, r)) in w.plugins.iter().zip(raws).enumerate() {
        if p.ty.is_empty() {
            return Err(Error::config(format!(
                "network configuration list: field plugins[{i}].type: empty plugin type"
            )));
        }
        let Value::Object(raw) = r else {
            return Err(Error::config(format!("network configuration list: field plugins[{i}]: not an object")));
        };
        let caps = p.capabilities.iter().filter(|(_, on)| *on).map(|(k, _)| k.clone()).collect();
        plugins.push(PluginConf { ty: p.ty.clone(), caps, raw });
    }
    Ok(NetList {
        cni_version: select_version(&w)?,
        name: w.name,
        disable_check: w.disable_check,
        disable_gc: w.disable_gc,
        plugins,
        bytes: bytes.to_vec(),
    })
}

/// A single-plugin config converted to a one-entry list, as libcni's
/// `ConfListFromConf` does.
pub fn parse_single(bytes: &[u8]) -> Result<NetList> {
    let obj: Map = config::parse(bytes, "network configuration")?;
    let get = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if get("type").is_empty() {
        return Err(Error::config("network configuration: missing 'type'"));
    }
    let (name, v) = (get("name"), get("cniVersion"));
    let mut list = Map::new();
    list.insert("name", name.into());
    list.insert("cniVersion", v.into());
    list.insert("plugins", Value::Array(vec![Value::Object(obj)]));
    parse_list(Value::Object(list).to_json().as_bytes())
}

/// A config file of either kind, chosen by its content.
pub fn from_file(path: &Path) -> Result<NetList> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::os(format_args!("read {}", path.display()), e.raw_os_error().unwrap_or(0)))?;
    from_bytes(&bytes).map_err(|e| e.context(path.display()))
}

pub fn from_bytes(bytes: &[u8]) -> Result<NetList> {
    match config::parse_with(bytes, "network configuration", |o| Ok(o.raw("plugins").is_some()))? {
        true => parse_list(bytes),
        false => parse_single(bytes),
    }
}

/// The network the short form and `cnibox run` use when given none: bridge
/// `cnibox0` with 10.88.0.0/16 and fd00:88::/64 from host-local, gateway and
/// masquerade, portmap for `CAP_ARGS` port mappings, and `lo` up. Its
/// host-local state lives under the cache directory (by default exactly the
/// reference path, /var/lib/cni/networks), so one directory holds all of it.
pub fn default_network(state_dir: &str) -> Result<NetList> {
    const DEFAULT: &str = r#"{"cniVersion":"1.1.0","name":"cnibox","plugins":[
        {"type":"bridge","bridge":"cnibox0","isGateway":true,"ipMasq":true,"hairpinMode":true,
         "ipam":{"type":"host-local","dataDir":DATA_DIR,
                 "ranges":[[{"subnet":"10.88.0.0/16"}],[{"subnet":"fd00:88::/64"}]],
                 "routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]}},
        {"type":"portmap","capabilities":{"portMappings":true}},
        {"type":"loopback"}]}"#;
    let mut dir = String::new();
    crate::json::write_str(&mut dir, &format!("{state_dir}/networks"));
    parse_list(DEFAULT.replace("DATA_DIR", &dir).as_bytes())
}

/// Files in `dir` with one of `exts`, sorted by name.
fn files(dir: &Path, exts: &[&str]) -> Result<Vec<std::path::PathBuf>> {
    Ok(super::dir_names(dir)?
        .iter()
        .filter(|n| n.rsplit_once('.').is_some_and(|(_, x)| exts.contains(&x)))
        .map(|n| dir.join(n))
        .filter(|p| !p.is_dir())
        .collect())
}

/// The network called `name` in `dir` (NETCONFPATH).
pub fn load(dir: &str, name: &str) -> Result<NetList> {
    let dir = Path::new(dir);
    let lists = files(dir, &["conflist"])?;
    for f in &lists {
        let l = from_file(f)?;
        if l.name == name {
            return Ok(l);
        }
    }
    let singles = files(dir, &["conf", "json"])?;
    for f in &singles {
        let bytes = std::fs::read(f)
            .map_err(|e| Error::os(format_args!("read {}", f.display()), e.raw_os_error().unwrap_or(0)))?;
        let l = parse_single(&bytes).map_err(|e| e.context(f.display()))?;
        if l.name == name {
            return Ok(l);
        }
    }
    if lists.is_empty() && singles.is_empty() {
        return Err(Error::config(format!("no net configurations found in {}", dir.display())));
    }
    Err(Error::config(format!("no net configuration with name \"{name}\" in {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_selection_takes_the_highest_known() {
        let l = parse_list(
            br#"{"name":"n","cniVersion":"0.4.0","cniVersions":["1.0.0","9.9.9","0.3.1"],"plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(l.cni_version, "1.0.0");
        let l = parse_list(br#"{"name":"n","plugins":[{"type":"x"}]}"#).unwrap();
        assert_eq!(l.cni_version, "0.1.0");
        let e = parse_list(br#"{"name":"n","cniVersions":["1.x"],"plugins":[{"type":"x"}]}"#).err().unwrap();
        assert!(e.msg.contains("1.x"), "{}", e.msg);
    }

    #[test]
    fn bad_entries_are_named() {
        let e = parse_list(br#"{"name":"n","plugins":[{"type":"a"},{"cap":1}]}"#).err().unwrap();
        assert!(e.msg.contains("field plugins[1]: missing field `type`"), "{}", e.msg);
        let e = parse_list(br#"{"name":"n","disableCheck":"maybe","plugins":[{"type":"a"}]}"#).err().unwrap();
        assert!(e.msg.contains("field disableCheck"), "{}", e.msg);
        let e = parse_list(br#"{"name":"n","plugins":[]}"#).err().unwrap();
        assert!(e.msg.contains("no plugins"), "{}", e.msg);
    }

    #[test]
    fn flags_caps_and_single_conversion() {
        let l = parse_list(
            br#"{"name":"n","cniVersion":"1.0.0","disableCheck":"True","disableGC":true,
                "plugins":[{"type":"a","capabilities":{"portMappings":true,"ips":false},"x":[1]}]}"#,
        )
        .unwrap();
        assert!(l.disable_check && l.disable_gc);
        assert_eq!(l.plugins[0].caps, vec!["portMappings".to_string()]);
        assert_eq!(l.plugins[0].raw.get("x"), Some(&crate::json::json!([1])));
        let l = from_bytes(br#"{"name":"s","cniVersion":"0.3.1","type":"bridge","bridge":"b0"}"#).unwrap();
        assert_eq!((l.name.as_str(), l.cni_version.as_str(), l.plugins.len()), ("s", "0.3.1", 1));
        assert_eq!(l.plugins[0].raw.get("bridge").and_then(Value::as_str), Some("b0"));
        let v = crate::json::parse(&l.bytes).unwrap();
        let plugin = v.get("plugins").and_then(Value::as_array).and_then(|p| p.first());
        assert_eq!(plugin.and_then(|p| p.get("type")).and_then(Value::as_str), Some("bridge"));
    }
}
