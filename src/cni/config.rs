//! Network configuration on stdin: typed parsing whose errors name the field
//! at fault, and the pieces every plugin shares (`ipam`, `dns`, `args.cni`,
//! `runtimeConfig`).

use crate::error::{code, Error, Result};
use crate::net::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Parse `bytes` into `T`. A type or value error becomes code 7 with the JSON
/// path of the offending field in the message ("field ipam.ranges[0][0].subnet: ...").
pub fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| json_error(bytes, &e, what))
}

pub fn json_error(bytes: &[u8], e: &serde_json::Error, what: &str) -> Error {
    if e.is_syntax() || e.is_eof() {
        return Error::new(code::DECODING, format!("{what}: invalid JSON")).with_details(e.to_string());
    }
    let text = e.to_string();
    // serde_json reports an error after the value it could not take, having
    // peeked past white space and one closing or separating character: step
    // back over those so that the scan ends inside the value's own key.
    let mut end = byte_offset(bytes, e.line(), e.column());
    let ws = |b: u8| b.is_ascii_whitespace();
    while end > 0 && ws(bytes[end - 1]) {
        end -= 1;
    }
    if end > 0 && matches!(bytes[end - 1], b',' | b'}' | b']') {
        end -= 1;
    }
    while end > 0 && ws(bytes[end - 1]) {
        end -= 1;
    }
    let mut path = json_path_at(bytes, end);
    // "missing field" is reported at the end of the object that lacks it:
    // name that object, not its last key.
    if text.starts_with("missing field") && !path.ends_with(']') {
        if let Some(cut) = path.rfind(['.', '[']) {
            path.truncate(cut);
        } else {
            path.clear();
        }
    }
    // serde_json appends " at line L column C"; the path says it better.
    let text = text.rsplit_once(" at line ").map(|(t, _)| t.to_string()).unwrap_or(text);
    let place = if path.is_empty() { String::new() } else { format!("field {path}: ") };
    Error::config(format!("{what}: {place}{text}"))
}

fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut l = 1;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if l == line {
            break;
        }
        if b == b'\n' {
            l += 1;
            start = i + 1;
        }
    }
    (start + column).min(bytes.len())
}

enum Frame {
    Obj(Option<String>),
    Arr(usize),
}

/// The JSON path ("a.b[2].c") of the value being read at byte `end` of `bytes`.
pub fn json_path_at(bytes: &[u8], end: usize) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < end.min(bytes.len()) {
        match bytes[i] {
            b'{' => {
                stack.push(Frame::Obj(None));
                expect_key = true;
            }
            b'[' => stack.push(Frame::Arr(0)),
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Frame::Arr(n)) => *n += 1,
                Some(Frame::Obj(_)) => expect_key = true,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if expect_key {
                    if let Some(Frame::Obj(k)) = stack.last_mut() {
                        *k = Some(String::from_utf8_lossy(&bytes[start..i.min(bytes.len())]).into_owned());
                    }
                    expect_key = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for f in &stack {
        match f {
            Frame::Obj(Some(k)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Obj(None) => {}
            Frame::Arr(n) => {
                path.push('[');
                path.push_str(&n.to_string());
                path.push(']');
            }
        }
    }
    path
}

/// The fields every request carries, read first to validate the request.
#[derive(Deserialize, Default)]
pub struct Common {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub plugin_type: Option<String>,
}

/// The `ipam` object: only the type is read here; the delegate reads the rest.
#[derive(Deserialize, Serialize, Default, Clone)]
pub struct IpamRef {
    #[serde(rename = "type", default)]
    pub plugin_type: String,
}

#[derive(Deserialize, Serialize, Default, Clone, PartialEq)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// `args.cni`: the structured replacement for CNI_ARGS.
#[derive(Deserialize, Default)]
pub struct Args {
    #[serde(default)]
    pub cni: ArgsCni,
}

#[derive(Deserialize, Default)]
pub struct ArgsCni {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
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

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct R {
        subnet: IpNet,
    }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct I {
        ranges: Vec<Vec<R>>,
    }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct C {
        #[serde(default)]
        mtu: u32,
        #[serde(rename = "isGateway", default)]
        is_gateway: bool,
        ipam: Option<I>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<C>(br#"{"mtu": 1500, "isGateway": "yes"}"#, "bridge").err().unwrap();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("field isGateway:"), "{}", e.msg);
        let e = parse::<C>(br#"{"ipam": {"ranges": [[{"subnet": "10.0.0.0/8"}, {"subnet": "nope"}]]}}"#, "bridge").err().unwrap();
        assert!(e.msg.contains("field ipam.ranges[0][1].subnet:"), "{}", e.msg);
        assert!(e.msg.contains("invalid CIDR address: nope"), "{}", e.msg);
        let e = parse::<C>(b"{\n \"ipam\": {\"ranges\": [[{\"gateway\": \"x\"}]]}}", "bridge").err().unwrap();
        assert!(e.msg.contains("field ipam.ranges[0][0]: missing field `subnet`"), "{}", e.msg);
        let e = parse::<C>(b"{\"mtu\": 1500", "bridge").err().unwrap();
        assert_eq!(e.code, 6);
    }

    #[test]
    fn path_scanner_handles_escapes() {
        let s = br#"{"a\"b": [1, {"c": "x,y]"}]}"#;
        let at = s.iter().position(|&c| c == b'x').unwrap();
        assert_eq!(json_path_at(s, at), "a\\\"b[1].c");
    }
}
