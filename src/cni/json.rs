//! Reading JSON into cnibox's types by hand, over `crate::json::Value`.
//!
//! Why not `#[derive(Deserialize)]`: serde's derive generates a visitor per
//! struct and per field type, a large share of the binary for the
//! twenty-odd configuration shapes cnibox reads (README, "Size", has the
//! measured figure). Here the JSON is parsed
//! once into a `Value` (by `crate::json`, not generic) and each type
//! reads its fields with a few non-generic calls: a field costs a call, not
//! a visitor. A struct declares its fields once, with their keys and how
//! each is read, in `json_struct!`, which writes those calls.
//!
//! Like Go's `encoding/json`, which the reference plugins use, unknown
//! fields are ignored and `null` reads as "not given". A value of the wrong
//! type is an error naming the field by its path (`ipam.ranges[0][1].subnet`);
//! the path is assembled while the error travels up, so reading costs nothing
//! extra when nothing is wrong.

use crate::json::{Map, Value};
use crate::net::{IpNet, Mac};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A value that could not be read: what is wrong, and where. Boxed, so that
/// every `JResult<T>` carries a pointer, not two strings, on its error side.
pub struct Bad(Box<Where>);

struct Where {
    /// The path from the value being read down to the culprit ("" = itself).
    path: String,
    msg: String,
}

impl Bad {
    pub fn new(msg: impl Into<String>) -> Bad {
        Bad(Box::new(Where { path: String::new(), msg: msg.into() }))
    }

    #[inline(never)]
    fn under_key(mut self, key: &str) -> Bad {
        let w = &mut *self.0;
        let sep = if w.path.is_empty() || w.path.starts_with('[') { "" } else { "." };
        w.path = format!("{key}{sep}{}", w.path);
        self
    }

    #[inline(never)]
    fn under_index(mut self, i: usize) -> Bad {
        let w = &mut *self.0;
        let sep = if w.path.is_empty() || w.path.starts_with('[') { "" } else { "." };
        w.path = format!("[{i}]{sep}{}", w.path);
        self
    }

    /// "field a.b: msg", or just "msg" for the top-level value.
    pub fn located(&self) -> String {
        if self.0.path.is_empty() {
            self.0.msg.clone()
        } else {
            format!("field {}: {}", self.0.path, self.0.msg)
        }
    }
}

pub type JResult<T> = std::result::Result<T, Bad>;

/// A type that can be read from a JSON value (never `null`: `Obj` treats
/// `null` as an absent field before asking).
pub trait FromJson: Sized {
    fn from_json(v: &Value) -> JResult<Self>;
}

/// serde's wording for a value of the wrong type, which users already know
/// from every Rust tool: `invalid type: string "yes", expected a boolean`.
#[inline(never)]
fn wrong_type(v: &Value, expected: &str) -> Bad {
    let got = match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_integer() => format!("integer `{}`", n.as_str()),
        Value::Number(n) => format!("floating point `{}`", n.as_str()),
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    };
    Bad::new(format!("invalid type: {got}, expected {expected}"))
}

/// Not generic, so that each `req::<T>` shares it.
#[inline(never)]
fn missing(key: &str) -> Bad {
    Bad::new(format!("missing field `{key}`"))
}

/// A JSON object whose fields are read one by one.
#[derive(Clone, Copy)]
pub struct Obj<'a>(pub &'a Map);

impl<'a> Obj<'a> {
    pub fn of(v: &'a Value) -> JResult<Obj<'a>> {
        match v {
            Value::Object(m) => Ok(Obj(m)),
            other => Err(wrong_type(other, "a map")),
        }
    }

    /// The field's value, unless it is absent or null.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// An optional field.
    pub fn opt<T: FromJson>(&self, key: &str) -> JResult<Option<T>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => T::from_json(v).map(Some).map_err(|b| b.under_key(key)),
        }
    }

    /// A field that reads as its type's default when not given.
    pub fn get<T: FromJson + Default>(&self, key: &str) -> JResult<T> {
        Ok(self.opt(key)?.unwrap_or_default())
    }

    /// A field that must be given.
    pub fn req<T: FromJson>(&self, key: &str) -> JResult<T> {
        self.opt(key)?.ok_or_else(|| missing(key))
    }

    /// A field read by a function rather than a `FromJson` impl.
    pub fn with<T>(&self, key: &str, read: impl FnOnce(&'a Value) -> JResult<T>) -> JResult<Option<T>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => read(v).map(Some).map_err(|b| b.under_key(key)),
        }
    }
}

/// Declares a struct read from a JSON object: each field names its key and
/// how it is read, and the `FromJson` impl is generated from that.
///
/// ```ignore
/// json_struct! {
///     #[derive(Default)]
///     struct Conf {
///         bridge: String = get_or("bridge", "cni0".into()), // absent or null: the default given
///         mtu: u32 = get("mtu"),                           // absent or null: the type's default
///         backend: Option<String> = opt("ipMasqBackend"),  // absent or null: None
///         subnet: IpNet = req("subnet"),                   // absent or null: "missing field `subnet`"
///         ips: Vec<String> = get_with("runtimeConfig", runtime_ips), // read by a function
///         own: Settings = flatten(),                       // another struct read from this same object
///     }
/// }
/// ```
///
/// Each kind is the `Obj` call of the same name (`get_with` is `with` with
/// the default, `opt_with` without; `flatten` is the field type's own `from_json` of this
/// object), so the generated code is what one would write by hand, and
/// errors carry the field's path as always.
macro_rules! json_struct {
    (@read $v:ident $o:ident, get($k:expr)) => { $o.get($k)? };
    (@read $v:ident $o:ident, opt($k:expr)) => { $o.opt($k)? };
    (@read $v:ident $o:ident, req($k:expr)) => { $o.req($k)? };
    (@read $v:ident $o:ident, get_or($k:expr, $default:expr)) => { $o.opt($k)?.unwrap_or_else(|| $default) };
    (@read $v:ident $o:ident, get_with($k:expr, $read:expr)) => { $o.with($k, $read)?.unwrap_or_default() };
    (@read $v:ident $o:ident, opt_with($k:expr, $read:expr)) => { $o.with($k, $read)? };
    (@read $v:ident $o:ident, flatten()) => { $crate::cni::json::FromJson::from_json($v)? };
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fattr:meta])* $fvis:vis $field:ident : $ty:ty = $how:ident ( $($arg:tt)* ) ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $( $(#[$fattr])* $fvis $field: $ty, )*
        }

        impl $crate::cni::json::FromJson for $name {
            // One copy per struct, called by every Vec, Option and field of it.
            #[inline(never)]
            fn from_json(v: &$crate::json::Value) -> $crate::cni::json::JResult<$name> {
                $crate::cni::json::object(v, |o| {
                    Ok($name { $( $field: $crate::cni::json::json_struct!(@read v o, $how($($arg)*)), )* })
                })
            }
        }
    };
}
pub(crate) use json_struct;

/// Read an object with `read`, for `FromJson` impls of structs.
pub fn object<T>(v: &Value, read: impl FnOnce(Obj) -> JResult<T>) -> JResult<T> {
    read(Obj::of(v)?)
}

impl FromJson for bool {
    fn from_json(v: &Value) -> JResult<bool> {
        v.as_bool().ok_or_else(|| wrong_type(v, "a boolean"))
    }
}

impl FromJson for String {
    fn from_json(v: &Value) -> JResult<String> {
        v.as_str().map(str::to_string).ok_or_else(|| wrong_type(v, "a string"))
    }
}

/// An integer within `min..=max`; `ty` names the type in the message.
fn integer(v: &Value, min: i128, max: i128, ty: &str) -> JResult<i128> {
    let Value::Number(num) = v else { return Err(wrong_type(v, ty)) };
    if !num.is_integer() {
        return Err(wrong_type(v, ty));
    }
    let n = num.as_i64().map(i128::from).or_else(|| num.as_u64().map(i128::from));
    match n {
        Some(n) if n >= min && n <= max => {}
        // The text, not `n`: printing an i128 would link a formatter of its own.
        _ => return Err(Bad::new(format!("invalid value: integer `{}`, expected {ty}", num.as_str()))),
    }
    Ok(n.unwrap_or(0))
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(v: &Value) -> JResult<$t> {
                integer(v, <$t>::MIN as i128, <$t>::MAX as i128, stringify!($t)).map(|n| n as $t)
            }
        }
    )*};
}
integers!(u8, u16, u32, u64, i32, i64, usize);

impl FromJson for f64 {
    fn from_json(v: &Value) -> JResult<f64> {
        match v {
            Value::Number(n) => {
                n.as_f64().ok_or_else(|| Bad::new(format!("invalid value: {}, expected f64", n.as_str())))
            }
            _ => Err(wrong_type(v, "f64")),
        }
    }
}

/// Types read from a string by their `FromStr`, whose error is the message.
macro_rules! from_text {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(v: &Value) -> JResult<$t> {
                let s = v.as_str().ok_or_else(|| wrong_type(v, "a string"))?;
                s.parse().map_err(|e| Bad::new(format!("{e}")))
            }
        }
    )*};
}
from_text!(IpNet, Mac);

/// Addresses, with the wording of serde's own impls.
macro_rules! addresses {
    ($($t:ty: $what:literal),*) => {$(
        impl FromJson for $t {
            fn from_json(v: &Value) -> JResult<$t> {
                let s = v.as_str().ok_or_else(|| wrong_type(v, $what))?;
                s.parse().map_err(|_| Bad::new(format!("invalid {}: {s}", $what)))
            }
        }
    )*};
}
addresses!(IpAddr: "IP address", Ipv4Addr: "IPv4 address", Ipv6Addr: "IPv6 address");

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(v: &Value) -> JResult<Option<T>> {
        if v.is_null() {
            return Ok(None);
        }
        T::from_json(v).map(Some)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    // One copy per element type, however many fields hold such a list; the
    // walk over the array is shared by all of them (`each`).
    #[inline(never)]
    fn from_json(v: &Value) -> JResult<Vec<T>> {
        let mut out = Vec::new();
        each(v, &mut |x| T::from_json(x).map(|t| out.push(t)))?;
        Ok(out)
    }
}

/// Calls `f` on each element of an array, naming the index of the one that fails.
#[inline(never)]
fn each(v: &Value, f: &mut dyn FnMut(&Value) -> JResult<()>) -> JResult<()> {
    let items = v.as_array().ok_or_else(|| wrong_type(v, "a sequence"))?;
    for (i, x) in items.iter().enumerate() {
        f(x).map_err(|b| b.under_index(i))?;
    }
    Ok(())
}

/// An object's entries in key order, each read as `T` (a Go `map[string]T`).
pub fn map_of<T: FromJson>(v: &Value) -> JResult<Vec<(String, T)>> {
    let m = v.as_object().ok_or_else(|| wrong_type(v, "a map"))?;
    let mut out = Vec::with_capacity(m.len());
    for (k, x) in m.iter() {
        out.push((k.to_string(), T::from_json(x).map_err(|b| b.under_key(k))?));
    }
    Ok(out)
}

/// A pair, as Go marshals a `[2]string` (libcni's cached CNI_ARGS).
impl<A: FromJson, B: FromJson> FromJson for (A, B) {
    fn from_json(v: &Value) -> JResult<(A, B)> {
        match v.as_array().map(Vec::as_slice) {
            Some([a, b]) => {
                Ok((A::from_json(a).map_err(|e| e.under_index(0))?, B::from_json(b).map_err(|e| e.under_index(1))?))
            }
            _ => Err(wrong_type(v, "a pair")),
        }
    }
}

impl FromJson for Value {
    fn from_json(v: &Value) -> JResult<Value> {
        Ok(v.clone())
    }
}

impl FromJson for Map {
    fn from_json(v: &Value) -> JResult<Map> {
        v.as_object().cloned().ok_or_else(|| wrong_type(v, "a map"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    struct Range {
        subnet: IpNet,
        gateway: Option<IpAddr>,
    }
    impl FromJson for Range {
        fn from_json(v: &Value) -> JResult<Range> {
            object(v, |o| Ok(Range { subnet: o.req("subnet")?, gateway: o.opt("gateway")? }))
        }
    }

    fn ranges(v: Value) -> JResult<Vec<Vec<Range>>> {
        Obj::of(&v)?.with("ipam", |i| Obj::of(i)?.get("ranges")).map(Option::unwrap_or_default)
    }

    #[test]
    fn errors_carry_the_path() {
        let e = ranges(json!({"ipam": {"ranges": [[{"subnet": "10.0.0.0/8"}, {"subnet": "nope"}]]}})).err().unwrap();
        assert_eq!(e.located(), "field ipam.ranges[0][1].subnet: invalid CIDR address: nope");
        let e = ranges(json!({"ipam": {"ranges": [[{"gateway": "10.0.0.1"}]]}})).err().unwrap();
        assert_eq!(e.located(), "field ipam.ranges[0][0]: missing field `subnet`");
        let e = ranges(json!({"ipam": {"ranges": [[{"subnet": "10.0.0.0/8", "gateway": 7}]]}})).err().unwrap();
        assert_eq!(e.located(), "field ipam.ranges[0][0].gateway: invalid type: integer `7`, expected IP address");
        let e = ranges(json!({"ipam": []})).err().unwrap();
        assert_eq!(e.located(), "field ipam: invalid type: sequence, expected a map");
    }

    #[test]
    fn null_and_absent_read_as_not_given() {
        let r = ranges(json!({"ipam": {"ranges": [[{"subnet": "10.0.0.0/8", "gateway": null}]]}})).ok().unwrap();
        assert!(r[0][0].gateway.is_none());
        assert_eq!(r[0][0].subnet.to_string(), "10.0.0.0/8");
        assert!(ranges(json!({"ipam": null})).ok().unwrap().is_empty());
    }

    #[test]
    fn integers_are_range_checked() {
        let v = json!({"a": 70000, "b": -1, "c": 1.5, "d": "7", "e": 65535});
        let o = Obj::of(&v).ok().unwrap();
        assert_eq!(o.get::<u16>("a").err().unwrap().located(), "field a: invalid value: integer `70000`, expected u16");
        assert_eq!(o.get::<u32>("b").err().unwrap().0.msg, "invalid value: integer `-1`, expected u32");
        assert_eq!(o.get::<u32>("c").err().unwrap().0.msg, "invalid type: floating point `1.5`, expected u32");
        assert_eq!(o.get::<u32>("d").err().unwrap().0.msg, "invalid type: string \"7\", expected u32");
        assert_eq!(o.get::<u16>("e").ok(), Some(65535));
        assert_eq!(o.get::<u32>("missing").ok(), Some(0));
        assert_eq!(o.req::<u32>("missing").err().unwrap().0.msg, "missing field `missing`");
    }

    json_struct! {
        struct Declared {
            name: String = req("name"),
            mtu: u32 = get("mtu"),
            gateway: Option<IpAddr> = opt("gateway"),
            bridge: String = get_or("bridge", "cni0".into()),
            ips: Vec<String> = get_with("runtimeConfig", |r| Obj::of(r)?.get("ips")),
            ranges: Vec<Vec<Range>> = get("ranges"),
            gw: Gw = flatten(),
        }
    }

    json_struct! {
        struct Gw {
            gateway: Option<IpAddr> = opt("gateway"),
        }
    }

    fn declared(v: Value) -> JResult<Declared> {
        Obj::of(&v)?.req("net")
    }

    #[test]
    fn declared_struct_reads_each_kind() {
        let d = declared(json!({"net": {"name": "n", "mtu": 1400, "gateway": "10.0.0.1", "bridge": "br0",
            "runtimeConfig": {"ips": ["10.0.0.9"]}, "ranges": [[{"subnet": "10.0.0.0/8"}]], "other": 1}}))
        .ok()
        .unwrap();
        assert_eq!((d.name.as_str(), d.mtu, d.bridge.as_str()), ("n", 1400, "br0"));
        assert_eq!(d.gateway.map(|g| g.to_string()).as_deref(), Some("10.0.0.1"));
        assert_eq!(d.gw.gateway, d.gateway);
        assert_eq!((d.ips, d.ranges[0][0].subnet.to_string()), (vec!["10.0.0.9".to_string()], "10.0.0.0/8".into()));
    }

    #[test]
    fn declared_struct_defaults_when_absent_or_null() {
        for v in [
            json!({"net": {"name": "n"}}),
            json!({"net": {"name": "n", "mtu": null, "gateway": null,
            "bridge": null, "runtimeConfig": null, "ranges": null}}),
        ] {
            let d = declared(v).ok().unwrap();
            assert_eq!((d.mtu, d.gateway, d.gw.gateway, d.bridge.as_str()), (0, None, None, "cni0"));
            assert!(d.ips.is_empty() && d.ranges.is_empty());
        }
        let d = declared(json!({"net": {"name": "n", "runtimeConfig": {}}})).ok().unwrap();
        assert!(d.ips.is_empty());
    }

    #[test]
    fn declared_struct_errors_carry_the_path() {
        let e = |v: Value| declared(v).err().unwrap().located();
        assert_eq!(e(json!({"net": {"mtu": 1}})), "field net: missing field `name`");
        assert_eq!(e(json!({"net": {"name": null}})), "field net: missing field `name`");
        assert_eq!(e(json!({"net": {"name": 7}})), "field net.name: invalid type: integer `7`, expected a string");
        assert_eq!(
            e(json!({"net": {"name": "n", "mtu": "big"}})),
            "field net.mtu: invalid type: string \"big\", expected u32"
        );
        assert_eq!(e(json!({"net": {"name": "n", "gateway": "x"}})), "field net.gateway: invalid IP address: x");
        assert_eq!(
            e(json!({"net": {"name": "n", "bridge": false}})),
            "field net.bridge: invalid type: boolean `false`, expected a string"
        );
        assert_eq!(
            e(json!({"net": {"name": "n", "runtimeConfig": {"ips": [1]}}})),
            "field net.runtimeConfig.ips[0]: invalid type: integer `1`, expected a string"
        );
        assert_eq!(
            e(json!({"net": {"name": "n", "ranges": [[{"subnet": "10.0.0.0/8"}, {}]]}})),
            "field net.ranges[0][1]: missing field `subnet`"
        );
        assert_eq!(e(json!({"net": "n"})), "field net: invalid type: string \"n\", expected a map");
    }
}
