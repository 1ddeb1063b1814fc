//! CNI_ARGS: `K=V;K2=V2`. As in the reference, keys are matched exactly and an
//! unknown key is an error unless `IgnoreUnknown` is true.

use crate::error::{Error, Result};

pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parse and check against the keys this plugin understands.
    pub fn parse(raw: &str, known: &[&str]) -> Result<CniArgs> {
        let mut pairs = Vec::new();
        if raw.is_empty() {
            return Ok(CniArgs { pairs });
        }
        for item in raw.split(';') {
            let mut kv = item.split('=');
            let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) else {
                return Err(Error::msg(format!("ARGS: invalid pair {}", go_quote(item))));
            };
            pairs.push((k.to_string(), v.to_string()));
        }
        let a = CniArgs { pairs };
        let ignore = match a.get("IgnoreUnknown") {
            None => false,
            Some(v) => parse_bool(v)
                .ok_or_else(|| Error::msg(format!("ARGS: invalid value {} for IgnoreUnknown", go_quote(v))))?,
        };
        if !ignore {
            let unknown: Vec<String> = a
                .pairs
                .iter()
                .filter(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
                .map(|(k, v)| go_quote(&format!("{k}={v}")))
                .collect();
            if !unknown.is_empty() {
                return Err(Error::msg(format!("ARGS: unknown args [{}]", unknown.join(" "))));
            }
        }
        Ok(a)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The reference's boolean words: 1, true, True, 0, false, False (case-folded).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// A string in Go's `%q` form, as the reference prints it in messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::new();
    crate::json::write_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_ignored() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.0.9", &["IP"]).unwrap();
        assert_eq!(a.get("IP"), Some("10.1.0.9"));
        assert_eq!(a.get("K8S_POD_NAME"), Some("x"));
    }

    #[test]
    fn unknown_is_refused_like_the_reference() {
        let e = CniArgs::parse("K8S_POD_NAME=x", &["IP"]).err().unwrap();
        assert_eq!(e.code, 999);
        assert_eq!(e.msg, r#"ARGS: unknown args ["K8S_POD_NAME=x"]"#);
        let e = CniArgs::parse("a=b;", &["a"]).err().unwrap();
        assert_eq!(e.msg, r#"ARGS: invalid pair """#);
        assert!(CniArgs::parse("IgnoreUnknown=maybe", &[]).is_err());
        assert!(CniArgs::parse("", &[]).unwrap().get("x").is_none());
    }
}
