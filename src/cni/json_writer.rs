//! Writing cnibox's JSON output by hand: results, errors, VERSION, the DHCP
//! daemon's replies.
//!
//! Why not `#[derive(Serialize)]`: the output shapes depend on the CNI
//! version (three result shapes, fields omitted when empty), which took a
//! shadow struct per shape and a serializer instance per struct (README,
//! "Size", has what that cost). Here every shape is a few calls on one writer,
//! in the field order the reference prints.

use std::fmt::{self, Write};

/// Compact JSON built into a `String`. Separators are placed from what was
/// written last, so callers only say what comes next.
#[derive(Default)]
pub struct JsonWriter {
    out: String,
}

impl JsonWriter {
    pub fn new() -> JsonWriter {
        JsonWriter::default()
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// A comma unless this value opens its container or follows its key.
    fn sep(&mut self) {
        if !matches!(self.out.as_bytes().last(), None | Some(b'{' | b'[' | b':')) {
            self.out.push(',');
        }
    }

    pub fn begin_object(&mut self) -> &mut Self {
        self.sep();
        self.out.push('{');
        self
    }

    pub fn end_object(&mut self) -> &mut Self {
        self.out.push('}');
        self
    }

    pub fn begin_array(&mut self) -> &mut Self {
        self.sep();
        self.out.push('[');
        self
    }

    pub fn end_array(&mut self) -> &mut Self {
        self.out.push(']');
        self
    }

    pub fn key(&mut self, k: &str) -> &mut Self {
        self.string(k);
        self.out.push(':');
        self
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.sep();
        crate::json::write_str(&mut self.out, s);
        self
    }

    /// A value printed by its Display as a JSON string (addresses, prefixes).
    pub fn display(&mut self, v: &dyn fmt::Display) -> &mut Self {
        self.string(&v.to_string())
    }

    pub fn number(&mut self, n: u64) -> &mut Self {
        self.sep();
        let _ = write!(self.out, "{n}");
        self
    }

    pub fn boolean(&mut self, b: bool) -> &mut Self {
        self.sep();
        self.out.push_str(if b { "true" } else { "false" });
        self
    }

    /// Text that is already JSON (a result printed by `CniResult::to_json`).
    pub fn raw(&mut self, json: &str) -> &mut Self {
        self.sep();
        self.out.push_str(json);
        self
    }

    /// `"k":"v"`, left out when `v` is empty.
    pub fn nonempty(&mut self, k: &str, v: &str) -> &mut Self {
        if !v.is_empty() {
            self.key(k).string(v);
        }
        self
    }

    /// `"k":n`, left out when `n` is zero.
    pub fn nonzero(&mut self, k: &str, n: u64) -> &mut Self {
        if n != 0 {
            self.key(k).number(n);
        }
        self
    }

    /// `"k":["a","b"]`, left out when the list is empty.
    pub fn strings(&mut self, k: &str, list: &[impl AsRef<str>]) -> &mut Self {
        if !list.is_empty() {
            self.key(k).begin_array();
            for s in list {
                self.string(s.as_ref());
            }
            self.end_array();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_omissions() {
        let mut w = JsonWriter::new();
        w.begin_object().key("a").number(1).key("t").boolean(true).nonempty("skip", "").nonzero("zero", 0);
        w.key("list").begin_array().begin_object().end_object().string("x").begin_array().end_array().end_array();
        w.strings("none", &[] as &[&str]).strings("some", &["p", "q"]).key("raw").raw("{\"k\":null}").end_object();
        assert_eq!(w.finish(), r#"{"a":1,"t":true,"list":[{},"x",[]],"some":["p","q"],"raw":{"k":null}}"#);
    }

    #[test]
    fn strings_are_escaped() {
        let s = "q\"b\\n\nr\rt\tc\u{1}\u{8}\u{c}\u{1f} é ✓ </>";
        let mut w = JsonWriter::new();
        w.string(s);
        let out = w.finish();
        assert_eq!(out, r#""q\"b\\n\nr\rt\tc\u0001\b\f\u001f é ✓ </>""#);
        assert_eq!(
            crate::json::parse(out.as_bytes()).ok().and_then(|v| v.as_str().map(str::to_string)).as_deref(),
            Some(s)
        );
    }
}
