//! JSON documents: a value type, a strict RFC 8259 parser and a compact
//! writer, non-generic, for the configs, results and state files cnibox reads
//! and writes. Reading a value into cnibox's types is `cni::json`'s job.
//!
//! - Objects keep their keys sorted (and unique: of a key given twice the last
//!   one wins), so a config passed on to a delegate or kept in the result cache
//!   is printed with its keys in order, as Go's `encoding/json` prints a map.
//! - Numbers keep the text they were written with, checked against the
//!   grammar: integers of any size stay exact, and a number passed through is
//!   printed as it came. They are converted when read.
//! - Nothing outside RFC 8259 is accepted (no comments, trailing commas,
//!   single quotes, lone surrogates, invalid UTF-8, control characters in
//!   strings), nesting is limited to `MAX_DEPTH` levels (the parser recurses
//!   and must not run out of stack on `[[[[...`), and the work is linear in
//!   the input (plus one sort per object).
//! - An error says what was expected and where, by line and column.

use std::fmt;

/// The deepest nesting of arrays and objects accepted; configs use about six.
pub const MAX_DEPTH: u32 = 128;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A number, as the text that wrote it (grammar-checked when parsed).
#[derive(Clone, Debug, PartialEq)]
pub struct Number(String);

impl Number {
    /// Written without fraction or exponent.
    pub fn is_integer(&self) -> bool {
        !self.0.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }

    pub fn as_f64(&self) -> Option<f64> {
        self.0.parse().ok().filter(|f: &f64| f.is_finite())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for Number {
    fn from(n: u64) -> Number {
        Number(n.to_string())
    }
}

/// An object: pairs sorted by key, each key once.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Map(Vec<(String, Value)>);

impl Map {
    pub fn new() -> Map {
        Map(Vec::new())
    }

    /// From pairs in document order: sorted, and of a repeated key the last
    /// value kept (what a map filled in document order ends up holding).
    fn from_pairs(mut pairs: Vec<(String, Value)>) -> Map {
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            // By key, then place in the document, so that of equal keys the last one is kept.
            let mut order: Vec<usize> = (0..pairs.len()).collect();
            crate::sort::sort_by(&mut order, |&a, &b| (&pairs[a].0, a) < (&pairs[b].0, b));
            let mut slots: Vec<Option<(String, Value)>> = pairs.into_iter().map(Some).collect();
            pairs = order.iter().filter_map(|&i| slots[i].take()).collect();
            pairs.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
        }
        Map(pairs)
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Set `key` to `v`, replacing what it held.
    pub fn insert(&mut self, key: &str, v: Value) {
        match self.find(key) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => self.0.insert(i, (key.to_string(), v)),
        }
    }

    /// Set `key` to `v` unless it is there already.
    pub fn insert_default(&mut self, key: &str, v: Value) {
        if let Err(i) = self.find(key) {
            self.0.insert(i, (key.to_string(), v));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        write_map(&mut out, self);
        out
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The field `key` of an object; None for anything else.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// Append compact JSON text to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&n.0),
            Value::String(s) => write_str(out, s),
            Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Value::Object(m) => write_map(out, m),
        }
    }
}

fn write_map(out: &mut String, m: &Map) {
    out.push('{');
    for (i, (k, v)) in m.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        v.write(out);
    }
    out.push('}');
}

/// `v["key"]`: the field, or `null` when `v` is no object or lacks it.
impl std::ops::Index<&str> for Value {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&Value::Null)
    }
}

/// `v[i]`: the element, or `null` when `v` is no array or is shorter.
impl std::ops::Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        self.as_array().and_then(|a| a.get(i)).unwrap_or(&Value::Null)
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, s: &&str) -> bool {
        self.as_str() == Some(*s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Number(n.into())
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Object(m)
    }
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped
/// (the short forms where JSON has them), everything else as it is.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` and `i + 1` are character boundaries.
        out.push_str(&s[start..i]);
        start = i + 1;
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Why a document is not JSON, and where (1-based line and column, the
/// column counted in characters).
#[derive(Debug, PartialEq)]
pub struct Error {
    pub msg: &'static str,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at line {} column {}", self.msg, self.line, self.column)
    }
}

/// Parse one JSON document (surrounding whitespace allowed, nothing else).
pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
    let mut p = Parser { b: bytes, i: 0, depth: 0 };
    let v = p.value()?;
    p.ws();
    if p.i < bytes.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
}

impl Parser<'_> {
    /// The error at the current position.
    #[inline(never)]
    fn err(&self, msg: &'static str) -> Error {
        self.err_at(self.i, msg)
    }

    #[inline(never)]
    fn err_at(&self, pos: usize, msg: &'static str) -> Error {
        let before = &self.b[..pos.min(self.b.len())];
        let line_start = before.iter().rposition(|&c| c == b'\n').map_or(0, |n| n + 1);
        let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
        // Characters, not bytes: UTF-8 continuation bytes do not count.
        let column = 1 + before[line_start..].iter().filter(|&&c| c & 0xc0 != 0x80).count();
        Error { msg, line, column }
    }

    /// `msg`, or the end-of-input error when there is no more input.
    fn unexpected(&self, msg: &'static str, eof: &'static str) -> Error {
        self.err(if self.i >= self.b.len() { eof } else { msg })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.unexpected("expected a value", "EOF while parsing a value")),
        }
    }

    fn literal(&mut self, word: &'static str, v: Value) -> Result<Value, Error> {
        for &c in word.as_bytes() {
            if self.peek() != Some(c) {
                return Err(self.unexpected("expected a value (true, false or null?)", "EOF while parsing a value"));
            }
            self.i += 1;
        }
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<Value, Error> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        match self.digits() {
            0 => return Err(self.unexpected("invalid number: expected a digit", "EOF while parsing a number")),
            n if n > 1 && self.b[int_start] == b'0' => {
                return Err(self.err_at(int_start, "invalid number: leading zero"));
            }
            _ => {}
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.unexpected("invalid number: expected a digit after `.`", "EOF while parsing a number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(
                    self.unexpected("invalid number: expected a digit in the exponent", "EOF while parsing a number")
                );
            }
        }
        // Only ASCII was consumed.
        let text = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
        Ok(Value::Number(Number(text)))
    }

    /// A string; the position is at its opening quote.
    fn string(&mut self) -> Result<String, Error> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.peek().is_some_and(|c| c != b'"' && c != b'\\' && c >= 0x20) {
                self.i += 1;
            }
            // The run ends at an ASCII byte or the end, never inside a character.
            match std::str::from_utf8(&self.b[start..self.i]) {
                Ok(s) => out.push_str(s),
                Err(e) => return Err(self.err_at(start + e.valid_up_to(), "invalid UTF-8 in a string")),
            }
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return Err(self.err("control character in a string (write it as \\u00XX)")),
                None => return Err(self.err("EOF while parsing a string")),
            }
        }
    }

    /// After a backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), Error> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.i += 1;
                return self.unicode(out);
            }
            _ => return Err(self.unexpected("invalid escape", "EOF while parsing a string")),
        };
        self.i += 1;
        out.push(c);
        Ok(())
    }

    /// After `\u`: a code point, or a surrogate pair written as two escapes.
    fn unicode(&mut self, out: &mut String) -> Result<(), Error> {
        let at = self.i - 2;
        let hi = self.hex4()?;
        let cp = match hi {
            0xd800..=0xdbff => {
                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                    return Err(self.err_at(at, "lone leading surrogate in \\u escape"));
                }
                self.i += 2;
                let lo = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(self.err_at(at, "leading surrogate not followed by a trailing one in \\u escape"));
                }
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.err_at(at, "lone trailing surrogate in \\u escape")),
            _ => hi,
        };
        // Every value left is a scalar value (surrogates are handled above).
        out.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut n = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => {
                    return Err(
                        self.unexpected("invalid \\u escape: expected 4 hex digits", "EOF while parsing a string")
                    )
                }
            };
            n = n << 4 | u32::from(d);
            self.i += 1;
        }
        Ok(n)
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nesting too deep (more than 128 levels of arrays and objects)"));
        }
        self.i += 1;
        Ok(())
    }

    fn array(&mut self) -> Result<Value, Error> {
        self.enter()?;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
        } else {
            loop {
                items.push(self.value()?);
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.unexpected("expected `,` or `]`", "EOF while parsing an array")),
                }
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn object(&mut self) -> Result<Value, Error> {
        self.enter()?;
        let mut pairs = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return Err(self.unexpected("expected a string key", "EOF while parsing an object"));
                }
                let key = self.string()?;
                self.ws();
                if self.peek() != Some(b':') {
                    return Err(self.unexpected("expected `:`", "EOF while parsing an object"));
                }
                self.i += 1;
                pairs.push((key, self.value()?));
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.unexpected("expected `,` or `}`", "EOF while parsing an object")),
                }
            }
        }
        self.depth -= 1;
        Ok(Value::Object(Map::from_pairs(pairs)))
    }
}

/// A value written as JSON in Rust source, for tests: `json!({"a": [1, null]})`.
#[cfg(test)]
macro_rules! json {
    ($($t:tt)+) => {
        $crate::json::parse(stringify!($($t)+).as_bytes()).unwrap_or_else(|e| panic!("json!: {e}"))
    };
}
#[cfg(test)]
pub(crate) use json;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_macro_reads_literal_json() {
        let v = json!({"a": [1, -2, 1.5, -0.5e-3, null, true, false, "x y"], "b": {}});
        assert_eq!(v.to_json(), r#"{"a":[1,-2,1.5,-0.5e-3,null,true,false,"x y"],"b":{}}"#);
    }

    fn ok(s: &str) -> Value {
        parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &[u8]) -> String {
        match parse(s) {
            Ok(v) => panic!("{} parsed as {}", String::from_utf8_lossy(s), v.to_json()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn scalars_and_containers() {
        assert_eq!(ok(" null "), Value::Null);
        assert_eq!(ok("true"), Value::Bool(true));
        assert_eq!(ok("\t\r\nfalse\n"), Value::Bool(false));
        assert_eq!(ok(r#""a""#), Value::from("a"));
        assert_eq!(ok("[]"), Value::Array(vec![]));
        assert_eq!(ok("{}"), Value::Object(Map::new()));
        let v = ok(r#" { "b" : [ 1 , "x" , null , { } ] , "a" : { "c" : true } } "#);
        assert_eq!(v.to_json(), r#"{"a":{"c":true},"b":[1,"x",null,{}]}"#);
        assert_eq!(v.get("a").and_then(|a| a.get("c")).and_then(Value::as_bool), Some(true));
        assert_eq!(v.get("b").and_then(Value::as_array).map(Vec::len), Some(4));
        assert!(v.get("z").is_none() && ok("[1]").get("a").is_none());
        assert!(v["b"][1] == "x" && v["b"][0].as_str().is_none());
        assert!(v["b"][9].is_null() && v["z"]["y"].is_null() && v["a"][0].is_null());
    }

    #[test]
    fn keys_are_sorted_and_the_last_duplicate_wins() {
        let v = ok(r#"{"z":1,"a":2,"m":3,"a":4,"z":5,"a":6}"#);
        assert_eq!(v.to_json(), r#"{"a":6,"m":3,"z":5}"#);
        let mut m = v.as_object().cloned().unwrap();
        m.insert("b", Value::from(true));
        m.insert("z", Value::Null);
        m.insert_default("m", Value::Null);
        m.insert_default("c", Value::from(7));
        assert_eq!(Value::Object(m.clone()).to_json(), r#"{"a":6,"b":true,"c":7,"m":3,"z":null}"#);
        assert_eq!((m.len(), m.contains_key("c"), m.contains_key("d")), (5, true, false));
        assert_eq!(m.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b", "c", "m", "z"]);
    }

    #[test]
    fn strings_and_escapes() {
        let v = ok(r#""q\"b\\s\/n\nr\rt\tb\bf\fu\u00e9\u0041\u0000""#);
        assert_eq!(v.as_str(), Some("q\"b\\s/n\nr\rt\tb\u{8}f\u{c}uéA\0"));
        // A surrogate pair is one character (U+1F600), in either hex case.
        assert_eq!(ok(r#""\ud83d\ude00\uD83D\uDE00""#).as_str(), Some("\u{1F600}\u{1F600}"));
        assert_eq!(ok("\"é ✓ \u{1F600}\"").as_str(), Some("é ✓ \u{1F600}"));
        assert!(bad(br#""\ud83d""#).starts_with("lone leading surrogate"));
        assert!(bad(br#""\ud83dx""#).starts_with("lone leading surrogate"));
        assert!(bad(br#""\ud83d\u0041""#).starts_with("leading surrogate not followed"));
        assert!(bad(br#""\ude00""#).starts_with("lone trailing surrogate"));
        assert!(bad(br#""\u12""#).starts_with("invalid \\u escape"));
        assert!(bad(br#""\x""#).starts_with("invalid escape"));
        assert!(bad(b"\"a\nb\"").starts_with("control character"));
        assert!(bad(b"\"a\tb\"").starts_with("control character"));
        assert_eq!(bad(b"\"ab\xff\""), "invalid UTF-8 in a string at line 1 column 4");
        assert_eq!(bad(b"\"ab\xe2\x9c\""), "invalid UTF-8 in a string at line 1 column 4");
        assert_eq!(bad(b"\"abc"), "EOF while parsing a string at line 1 column 5");
        assert_eq!(bad(b"\"abc\\"), "EOF while parsing a string at line 1 column 6");
    }

    #[test]
    fn writer_escapes_what_json_requires_and_nothing_else() {
        let s = "q\"b\\n\nr\rt\tc\u{1}\u{8}\u{c}\u{1f}\u{7f} é ✓ </>";
        let mut out = String::new();
        write_str(&mut out, s);
        assert_eq!(out, "\"q\\\"b\\\\n\\nr\\rt\\tc\\u0001\\b\\f\\u001f\u{7f} é ✓ </>\"");
        assert_eq!(ok(&out).as_str(), Some(s));
    }

    #[test]
    fn numbers() {
        for n in ["0", "-0", "7", "-12", "1.5", "-0.25", "1e3", "1E+3", "2.5e-3", "18446744073709551615"] {
            let v = ok(n);
            assert_eq!(v.to_json(), n, "printed as written");
        }
        let num = |s: &str| match ok(s) {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        assert_eq!(num("18446744073709551615").as_u64(), Some(u64::MAX));
        assert_eq!(num("18446744073709551616").as_u64(), None);
        assert_eq!(num("-9223372036854775808").as_i64(), Some(i64::MIN));
        assert_eq!(num("-1").as_u64(), None);
        assert_eq!((num("1.5").as_u64(), num("1.5").as_f64(), num("1.5").is_integer()), (None, Some(1.5), false));
        assert_eq!((num("1e3").as_u64(), num("1e3").as_f64(), num("1e3").is_integer()), (None, Some(1000.0), false));
        assert_eq!(num("1e400").as_f64(), None);
        assert!(num("12").is_integer());
        assert_eq!(Value::from(42).to_json(), "42");
        for n in ["01", "-", "-a", "1.", "1.e3", ".5", "1e", "1e+", "+1", "0x10", "1_0", "Infinity", "NaN", "--1"] {
            let e = bad(n.as_bytes());
            assert!(e.contains("number") || e.contains("expected a value") || e.contains("trailing"), "{n}: {e}");
        }
        assert_eq!(bad(b"[01]"), "invalid number: leading zero at line 1 column 2");
        assert_eq!(bad(b"[1.]"), "invalid number: expected a digit after `.` at line 1 column 4");
    }

    #[test]
    fn invalid_documents_say_what_and_where() {
        assert_eq!(bad(b""), "EOF while parsing a value at line 1 column 1");
        assert_eq!(bad(b"  \n "), "EOF while parsing a value at line 2 column 2");
        assert_eq!(bad(b"{\"mtu\": 1500"), "EOF while parsing an object at line 1 column 13");
        assert_eq!(bad(b"{\"a\":1,}"), "expected a string key at line 1 column 8");
        assert_eq!(bad(b"[1,]"), "expected a value at line 1 column 4");
        assert_eq!(bad(b"[1 2]"), "expected `,` or `]` at line 1 column 4");
        assert_eq!(bad(b"{\"a\" 1}"), "expected `:` at line 1 column 6");
        assert_eq!(bad(b"{\"a\":1 \"b\":2}"), "expected `,` or `}` at line 1 column 8");
        assert_eq!(bad(b"{'a':1}"), "expected a string key at line 1 column 2");
        assert_eq!(bad(b"{a:1}"), "expected a string key at line 1 column 2");
        assert_eq!(bad(b"[1] [2]"), "trailing characters after the JSON value at line 1 column 5");
        assert_eq!(bad(b"{}\n// comment"), "trailing characters after the JSON value at line 2 column 1");
        assert_eq!(bad(b"[tru]"), "expected a value (true, false or null?) at line 1 column 5");
        assert_eq!(bad(b"nul"), "EOF while parsing a value at line 1 column 4");
        assert_eq!(bad(b"\xef\xbb\xbf{}"), "expected a value at line 1 column 1");
        // Columns count characters.
        assert_eq!(bad("{\"é✓\": x}".as_bytes()), "expected a value at line 1 column 8");
        assert_eq!(bad(b"{\n  \"a\": [1,\n   2,,]}"), "expected a value at line 3 column 6");
    }

    #[test]
    fn nesting_is_limited_without_exhausting_the_stack() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(deep(MAX_DEPTH as usize).as_bytes()).is_ok());
        let e = parse(deep(MAX_DEPTH as usize + 1).as_bytes()).err().unwrap();
        assert_eq!((e.msg.starts_with("nesting too deep"), e.column), (true, MAX_DEPTH as usize + 1));
        assert!(bad("[".repeat(100_000).as_bytes()).starts_with("nesting too deep"));
        assert!(bad("{\"a\":".repeat(100_000).as_bytes()).starts_with("nesting too deep"));
        let mixed = format!("{}1{}", "[{\"k\":".repeat(64), "}]".repeat(64));
        assert_eq!(ok(&mixed).to_json(), mixed);
    }

    #[test]
    fn large_documents_parse_in_linear_time() {
        // Would take minutes if each key were inserted into a sorted vector.
        let n = 200_000;
        let mut s = String::from("{");
        for i in (0..n).rev() {
            s.push_str(&format!("\"k{i:07}\":{i},"));
        }
        s.push_str("\"end\":[");
        s.push_str(&"\"xxxxxxxx\",".repeat(n));
        s.push_str("0]}");
        let v = ok(&s);
        let m = v.as_object().unwrap();
        assert_eq!((m.len(), m.get("k0000007").map(Value::to_json).as_deref()), (n + 1, Some("7")));
    }

    #[test]
    fn round_trip() {
        let doc = r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","ipam":{"ranges":[[{"subnet":"10.1.0.0/24"}]]},"mtu":1450,"rate":1.5e6,"s":"a\"\\\u0001é\ud83d\ude00","x":[true,false,null,-3,{}]}]}"#;
        let v = ok(doc);
        let text = v.to_json();
        assert_eq!(ok(&text), v);
        assert_eq!(ok(&text).to_json(), text, "a fixed point");
        assert!(text.contains(r#""s":"a\"\\\u0001é😀""#), "{text}");
        assert!(text.contains(r#"{"ipam":{"ranges":[[{"subnet":"10.1.0.0/24"}]]},"mtu":1450,"rate":1.5e6"#), "{text}");
    }
}
