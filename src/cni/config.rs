//! Network configuration on stdin: typed parsing whose errors name the field
//! at fault, and the pieces every plugin shares (`ipam`, `dns`, `args.cni`,
//! `runtimeConfig`).

use super::json::{json_struct, FromJson, JResult, Obj};
use super::json_writer::JsonWriter;
use crate::error::{code, Error, Result};
use crate::json::{self, Value};
use crate::net::IpNet;
use std::cell::OnceCell;
use std::rc::Rc;

/// A call's network configuration: the bytes as they came (what a delegate
/// gets on stdin) and, from their first reading on, the parsed value, which
/// every later reader (validation, the plugin's `Conf`, `prevResult`, an
/// in-process delegate) shares. Built only from bytes, so the two cannot
/// disagree. A clone (the request of an in-process delegate) shares both
/// rather than copying the parsed tree.
#[derive(Clone, Default)]
pub struct Config(Rc<Parts>);

#[derive(Default)]
struct Parts {
    bytes: Vec<u8>,
    value: OnceCell<Value>,
}

impl From<Vec<u8>> for Config {
    fn from(bytes: Vec<u8>) -> Config {
        Config(Rc::new(Parts { bytes, value: OnceCell::new() }))
    }
}

impl std::ops::Deref for Config {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0.bytes
    }
}

impl Config {
    /// A config built as a value (the runtime's per-plugin object): its
    /// bytes for a delegate that is executed, the value for one that runs
    /// in-process.
    pub fn of_value(value: Value) -> Config {
        let bytes = value.to_json().into_bytes();
        Config(Rc::new(Parts { bytes, value: OnceCell::from(value) }))
    }

    /// The parsed value, or the parser's complaint about the bytes.
    #[inline(never)]
    pub fn value(&self) -> std::result::Result<&Value, json::Error> {
        if let Some(v) = self.0.value.get() {
            return Ok(v);
        }
        let v = json::parse(&self.0.bytes)?;
        Ok(self.0.value.get_or_init(|| v))
    }

    /// The parsed value; bad JSON is code 6, as `parse` words it.
    #[inline(never)]
    fn json(&self, what: &str) -> Result<&Value> {
        self.value().map_err(|e| invalid_json(what, e))
    }

    /// Read into `T`, with `parse`'s error messages.
    pub fn read<T: FromJson>(&self, what: &str) -> Result<T> {
        read(self.json(what)?, what)
    }

    /// Read a few fields with `read`, with `parse_with`'s error messages.
    pub fn read_with<T>(&self, what: &str, read: impl FnOnce(Obj) -> JResult<T>) -> Result<T> {
        read_obj(self.json(what)?, what, read)
    }
}

/// Parse `bytes` into `T`. Bad JSON is code 6; a value of the wrong type is
/// code 7 with the JSON path of the offending field in the message
/// ("field ipam.ranges[0][0].subnet: ...").
pub fn parse<T: FromJson>(bytes: &[u8], what: &str) -> Result<T> {
    read(&parse_value(bytes, what)?, what)
}

/// Read a few fields of an object with `read`, for shapes too small to name.
pub fn parse_with<T>(bytes: &[u8], what: &str, read: impl FnOnce(Obj) -> JResult<T>) -> Result<T> {
    read_obj(&parse_value(bytes, what)?, what, read)
}

/// Parse `bytes` as JSON; bad JSON is code 6, the parser's message (what and
/// where) in the details.
pub fn parse_value(bytes: &[u8], what: &str) -> Result<Value> {
    json::parse(bytes).map_err(|e| invalid_json(what, e))
}

fn invalid_json(what: &str, e: json::Error) -> Error {
    Error::new(code::DECODING, format!("{what}: invalid JSON")).with_details(e.to_string())
}

/// Read an already parsed value into `T`, with `parse`'s error messages.
pub fn read<T: FromJson>(v: &Value, what: &str) -> Result<T> {
    T::from_json(v).map_err(|b| Error::config(format!("{what}: {}", b.located())))
}

fn read_obj<T>(v: &Value, what: &str, read: impl FnOnce(Obj) -> JResult<T>) -> Result<T> {
    Obj::of(v).and_then(read).map_err(|b| Error::config(format!("{what}: {}", b.located())))
}

json_struct! {
    /// The fields every request carries, read first to validate the request.
    #[derive(Default)]
    pub struct Common {
        pub cni_version: Option<String> = opt("cniVersion"),
        pub name: Option<String> = opt("name"),
        pub plugin_type: Option<String> = opt("type"),
    }
}

json_struct! {
    /// The `ipam` object: only the type is read here; the delegate reads the rest.
    #[derive(Default, Clone)]
    pub struct IpamRef {
        pub plugin_type: String = get("type"),
    }
}

json_struct! {
    #[derive(Default, Clone, PartialEq)]
    pub struct Dns {
        pub nameservers: Vec<String> = get("nameservers"),
        pub domain: String = get("domain"),
        pub search: Vec<String> = get("search"),
        pub options: Vec<String> = get("options"),
    }
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_empty() && self.search.is_empty() && self.options.is_empty()
    }

    /// The object, with each empty field left out (`{}` when all are).
    pub fn write_json(&self, w: &mut JsonWriter) {
        w.begin_object().strings("nameservers", &self.nameservers).nonempty("domain", &self.domain);
        w.strings("search", &self.search).strings("options", &self.options).end_object();
    }
}

json_struct! {
    /// `args.cni`: the structured replacement for CNI_ARGS.
    #[derive(Default)]
    pub struct Args {
        pub cni: ArgsCni = get("cni"),
    }
}

json_struct! {
    #[derive(Default)]
    pub struct ArgsCni {
        pub ips: Vec<String> = get("ips"),
        pub mac: Option<String> = opt("mac"),
    }
}

/// An IP with an optional prefix ("10.1.0.9" or "10.1.0.9/24"), as CNI_ARGS
/// `IP`, `args.cni.ips` and `runtimeConfig.ips` give it.
pub fn parse_ip_maybe_cidr(s: &str) -> Option<(std::net::IpAddr, Option<u8>)> {
    match s.parse::<IpNet>() {
        Ok(n) => Some((n.addr, Some(n.prefix))),
        Err(_) => s.parse().ok().map(|ip| (ip, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;
    json_struct! {
        struct C {
            is_gateway: bool = get("isGateway"),
        }
    }

    #[test]
    fn errors_name_the_field_and_code() {
        let e = parse::<C>(br#"{"mtu": 1500, "isGateway": "yes"}"#, "bridge").err().unwrap();
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "bridge: field isGateway: invalid type: string \"yes\", expected a boolean");
        let e = parse::<C>(b"{\"mtu\": 1500", "bridge").err().unwrap();
        assert_eq!((e.code, e.msg.as_str()), (6, "bridge: invalid JSON"));
        assert_eq!(e.details, "EOF while parsing an object at line 1 column 13");
        let e = parse::<C>(b"[1]", "bridge").err().unwrap();
        assert_eq!((e.code, e.msg.as_str()), (7, "bridge: invalid type: sequence, expected a map"));
        assert!(parse::<C>(br#"{"isGateway": null}"#, "bridge").map(|c| !c.is_gateway).unwrap_or(false));
        // Of a key given twice the last one counts, as with Go's encoding/json.
        assert!(parse::<C>(br#"{"isGateway": false, "isGateway": true}"#, "b").map(|c| c.is_gateway).unwrap_or(false));
        let e = parse::<C>("[".repeat(100_000).as_bytes(), "bridge").err().unwrap();
        assert_eq!((e.code, e.details.starts_with("nesting too deep")), (6, true), "{}", e.details);
    }

    #[test]
    fn config_is_parsed_once_and_clones_share_the_value() {
        let c = Config::from(br#"{"name": "n", "isGateway": true}"#.to_vec());
        assert!(c.0.value.get().is_none());
        let first: *const Value = c.value().ok().unwrap();
        assert!(std::ptr::eq(first, c.value().ok().unwrap()));
        assert!(c.read::<C>("bridge").map(|c| c.is_gateway).unwrap_or(false));
        let name = |v: &Value| v.get("name").and_then(Value::as_str) == Some("n");
        let copy = c.clone();
        assert!(copy.0.value.get().is_some_and(name));
        assert!(std::ptr::eq(first, copy.value().ok().unwrap()));
        let v = Config::of_value(json!({"name": "n"}));
        assert_eq!((&*v, v.0.value.get().map(name)), (&br#"{"name":"n"}"#[..], Some(true)));
    }

    #[test]
    fn config_errors_are_those_of_parse() {
        for bytes in [&b"{\"mtu\": 1500"[..], br#"{"isGateway": "yes"}"#, b"[1]"] {
            let (a, b) =
                (parse::<C>(bytes, "w").err().unwrap(), Config::from(bytes.to_vec()).read::<C>("w").err().unwrap());
            assert_eq!((a.code, &a.msg, &a.details), (b.code, &b.msg, &b.details));
        }
        let e = Config::from(b"[1]".to_vec()).read_with("w", |o| o.get::<u32>("mtu")).err().unwrap();
        assert_eq!((e.code, e.msg.as_str()), (7, "w: invalid type: sequence, expected a map"));
    }
}
