//! The host-local state file: plain text an operator can `cat`.
//!
//! ```text
//! # cnibox host-local v1 size=0000000154: one reservation per line: address container-id ifname
//! last_reserved_ip.0 10.22.0.3
//! 10.22.0.2 ctr1 eth0
//! 10.22.0.3 ctr2 eth0
//! fd00:22::2 ctr1 eth0
//! ```
//!
//! Reservations are kept sorted by address (IPv4 first) so that "is this
//! address held" is a binary search over the bytes as they lie in the page
//! cache: ADD parses O(log N) lines, never the whole file. Finding the lines
//! of one attachment is a single `memmem` over the body. That is only sound
//! for a file cnibox wrote, which the header vouches for by recording the
//! file's exact size; any other file (hand-edited, truncated, a crash's
//! leftovers, garbage) is parsed line by line, keeping every line that begins
//! with an address, and the sorted form is what gets written back.
//!
//! Every line that begins with an address holds that address, whatever
//! follows it: a line the reader cannot make sense of is never free space.
//! Container ids and interface names are stored as words: every byte that is
//! not printable ASCII, and the backslash, is written as `\xHH` (an interface
//! name `é0` is `\xc3\xa90`), so any name that passes validation (UTF-8, or
//! control bytes the kernel accepts) is one word and reads back as it was.

use crate::net::to_u128;
use crate::sys::memmem::find;
use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range as Span;

pub const FILE: &str = "cnibox.state";
const MAGIC: &str = "# cnibox host-local v1 size=";
const SIZE_DIGITS: usize = 10;
const TAIL: &str = ": one reservation per line: address container-id ifname\n";
const LAST: &str = "last_reserved_ip.";

/// Sort key: IPv4 before IPv6, then numerically.
type Key = (bool, u128);

fn key(ip: &IpAddr) -> Key {
    (ip.is_ipv6(), to_u128(ip))
}

/// The address a line begins with, if it begins with one.
fn line_ip(line: &[u8]) -> Option<IpAddr> {
    let end = line.iter().position(|c| c.is_ascii_whitespace()).unwrap_or(line.len());
    let ip: IpAddr = std::str::from_utf8(line.get(..end)?).ok()?.parse().ok()?;
    Some(ip.to_canonical())
}

/// A name as one word of the file: bytes outside printable ASCII, and the
/// backslash, become `\xHH`.
pub fn escape(name: &[u8]) -> Cow<'_, str> {
    let plain = |c: u8| c.is_ascii_graphic() && c != b'\\';
    if let Some(s) = std::str::from_utf8(name).ok().filter(|s| s.bytes().all(plain)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(name.len() * 4);
    for &c in name {
        if plain(c) {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    Cow::Owned(out)
}

/// A word of the file back to the name's bytes. Bytes that were not escaped
/// (a file from a version that wrote names raw) stay as they are.
pub fn unescape(word: &[u8]) -> Cow<'_, [u8]> {
    if !word.contains(&b'\\') {
        return Cow::Borrowed(word);
    }
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if let (b'\\', Some(b'x'), Some(h), Some(l)) =
            (word[i], word.get(i + 1), word.get(i + 2).and_then(|&c| hex(c)), word.get(i + 3).and_then(|&c| hex(c)))
        {
            // Two hex digits: at most 255.
            out.push((h * 16 + l) as u8);
            i += 4;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

/// One reservation line.
pub struct Entry<'a> {
    /// The line's bytes in the file, newline included.
    pub span: Span<usize>,
    pub ip: IpAddr,
    /// The container id as stored (see `escape`); empty on a line that names
    /// only an address, which keeps the address held by no one known.
    pub id: &'a [u8],
    /// None for an id-only line (the reference's oldest format, kept if found).
    pub ifname: Option<&'a [u8]>,
}

impl Entry<'_> {
    /// Whether this is the reservation of (`id`, `ifname`), or with `ifname`
    /// None, an id-only one of `id`.
    pub fn is_of(&self, id: &str, ifname: Option<&str>) -> bool {
        *unescape(self.id) == *id.as_bytes()
            && match (self.ifname, ifname) {
                (Some(a), Some(b)) => *unescape(a) == *b.as_bytes(),
                (a, b) => a.is_none() && b.is_none(),
            }
    }
}

fn entry(data: &[u8], span: Span<usize>) -> Option<Entry<'_>> {
    let line = data.get(span.clone())?;
    let mut f = line.split(|c| c.is_ascii_whitespace()).filter(|w| !w.is_empty());
    let ip = line_ip(f.next()?)?;
    let id = f.next().unwrap_or_default();
    Some(Entry { span, ip, id, ifname: f.next() })
}

/// A change to apply: lines to add and to drop, and new last-reserved addresses.
#[derive(Default)]
pub struct Edit {
    pub add: Vec<(IpAddr, String)>,
    pub remove: Vec<Span<usize>>,
    pub last: Vec<(usize, IpAddr)>,
}

impl Edit {
    pub fn reserve(&mut self, ip: IpAddr, id: &str, ifname: &str) {
        self.add.push((ip, format!("{ip} {} {}\n", escape(id.as_bytes()), escape(ifname.as_bytes()))));
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.last.is_empty()
    }
}

pub struct State<'a> {
    data: Cow<'a, [u8]>,
    /// Where the reservation lines begin.
    body: usize,
    last: Vec<(usize, IpAddr)>,
}

impl<'a> State<'a> {
    /// Read a state file's bytes (empty when there is none). Never fails:
    /// what cannot be understood is left out.
    pub fn parse(data: &'a [u8]) -> State<'a> {
        Self::trusted(data).unwrap_or_else(|| Self::normalize(data))
    }

    /// Read the state file of a live network: like `parse`, but a file that
    /// cnibox did not write whole (cut short, or with lines that are neither a
    /// reservation, a round-robin position, a comment nor blank) is refused:
    /// guessing past damage could hand out an address someone holds.
    pub fn load(data: &'a [u8]) -> std::result::Result<State<'a>, String> {
        if let Some(s) = Self::trusted(data) {
            return Ok(s);
        }
        let mut at = 0;
        for (n, line) in data.split_inclusive(|&c| c == b'\n').enumerate() {
            let span = at..at + line.len();
            at = span.end;
            if !line.ends_with(b"\n") {
                return Err(format!("it is cut short (line {} has no end)", n + 1));
            }
            let text = line.trim_ascii();
            let ok = text.is_empty()
                || text.starts_with(b"#")
                || (line.starts_with(LAST.as_bytes()) && parse_last(line).is_some())
                || entry(data, span).is_some();
            if !ok {
                return Err(format!("line {} is not a reservation", n + 1));
            }
        }
        Ok(Self::normalize(data))
    }

    fn trusted(data: &'a [u8]) -> Option<State<'a>> {
        let digits = data.get(MAGIC.len()..MAGIC.len() + SIZE_DIGITS)?;
        if !data.starts_with(MAGIC.as_bytes()) || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let size: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        if size != data.len() || data.last() != Some(&b'\n') {
            return None;
        }
        let mut at = data.iter().position(|&c| c == b'\n')? + 1;
        let mut last = Vec::new();
        while let Some(rest) = data.get(at..).filter(|r| r.starts_with(LAST.as_bytes()) || r.starts_with(b"#")) {
            let len = rest.iter().position(|&c| c == b'\n')? + 1;
            if let Some(l) = parse_last(&rest[..len]) {
                last.push(l);
            }
            at += len;
        }
        Some(State { data: Cow::Borrowed(data), body: at, last })
    }

    fn normalize(data: &[u8]) -> State<'static> {
        let mut last: Vec<(usize, IpAddr)> = Vec::new();
        let mut entries: Vec<(Key, usize, Entry)> = Vec::new();
        let mut at = 0;
        for line in data.split_inclusive(|&c| c == b'\n') {
            let span = at..at + line.len();
            at = span.end;
            // A line without its newline was cut short (a crash of the machine
            // mid-write): its address still counts if it is whole (a blank follows it).
            if !line.ends_with(b"\n") {
                let whole = line.iter().position(|c| c.is_ascii_whitespace()).is_some();
                if let Some(e) = entry(data, span).filter(|_| whole && !line.starts_with(LAST.as_bytes())) {
                    entries.push((key(&e.ip), entries.len(), e));
                }
                break;
            }
            if line.starts_with(LAST.as_bytes()) {
                if let Some(l) = parse_last(line).filter(|l| !last.iter().any(|m| m.0 == l.0)) {
                    last.push(l);
                }
            } else if let Some(e) = entry(data, span) {
                entries.push((key(&e.ip), entries.len(), e));
            }
        }
        // By address, then place in the file: the first line for an address wins.
        crate::sort::sort_by_key(&mut entries, |e| (e.0, e.1));
        entries.dedup_by_key(|e| e.0);
        let mut body = Vec::new();
        for (_, _, e) in &entries {
            body.extend_from_slice(e.ip.to_string().as_bytes());
            // Written back escaped, whichever way the file had the names.
            for w in [Some(e.id), e.ifname].into_iter().flatten().filter(|w| !w.is_empty()) {
                body.push(b' ');
                body.extend_from_slice(escape(&unescape(w)).as_bytes());
            }
            body.push(b'\n');
        }
        crate::sort::sort_by_key(&mut last, |l| l.0);
        let mut out = header(&last, body.len()).into_bytes();
        let start = out.len();
        out.extend_from_slice(&body);
        State { data: Cow::Owned(out), body: start, last }
    }

    /// Whether the bytes were not in the form cnibox writes (and so were re-sorted).
    pub fn was_normalized(&self) -> bool {
        matches!(self.data, Cow::Owned(_))
    }

    pub fn last_reserved(&self, idx: usize) -> Option<IpAddr> {
        self.last.iter().find(|l| l.0 == idx).map(|l| l.1)
    }

    fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Offset of the first line whose address is not below `ip`.
    fn lower_bound(&self, ip: &IpAddr) -> usize {
        let d = self.bytes();
        let k = key(ip);
        let (mut lo, mut hi) = (self.body, d.len());
        // lo and hi are line starts; lines before lo sort below `ip`, lines from hi on do not.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let s = d[lo..mid].iter().rposition(|&c| c == b'\n').map_or(lo, |p| lo + p + 1);
            let e = d[s..hi].iter().position(|&c| c == b'\n').map_or(hi, |p| s + p + 1);
            match line_ip(&d[s..e]) {
                Some(l) if key(&l) < k => lo = e,
                _ => hi = s,
            }
        }
        lo
    }

    fn line_end(&self, s: usize) -> usize {
        let d = self.bytes();
        d[s..].iter().position(|&c| c == b'\n').map_or(d.len(), |p| s + p + 1)
    }

    /// The reservation of `ip`, if any.
    pub fn holder(&self, ip: &IpAddr) -> Option<Entry<'_>> {
        let s = self.lower_bound(ip);
        entry(self.bytes(), s..self.line_end(s)).filter(|e| e.ip == *ip)
    }

    /// Lines reserved by (`id`, `ifname`); with `ifname` None, the id-only lines.
    pub fn lines_of(&self, id: &str, ifname: Option<&str>) -> Vec<Entry<'_>> {
        let needle = |id: &str, ifname: Option<&str>| match ifname {
            Some(i) => format!(" {id} {i}\n"),
            None => format!(" {id}\n"),
        };
        let escaped = ifname.map(|i| escape(i.as_bytes()));
        let mut out = self.find_lines(&needle(&escape(id.as_bytes()), escaped.as_deref()));
        // A name that needs escaping may also lie raw in a file from before escaping.
        if escape(id.as_bytes()) != id || escaped.as_deref() != ifname {
            out.extend(self.find_lines(&needle(id, ifname)));
            crate::sort::sort_by_key(&mut out, |e| e.span.start);
            out.dedup_by_key(|e| e.span.start);
        }
        out
    }

    fn find_lines(&self, needle: &str) -> Vec<Entry<'_>> {
        let d = self.bytes();
        let mut out = Vec::new();
        let mut from = self.body;
        while let Some(hit) = find(&d[from..], needle.as_bytes()).map(|p| from + p) {
            from = hit + needle.len();
            let s = d[self.body..hit].iter().rposition(|&c| c == b'\n').map_or(self.body, |p| self.body + p + 1);
            // The needle must follow the address, the line's first word.
            if d[s..hit].iter().any(|c| c.is_ascii_whitespace()) {
                continue;
            }
            if let Some(e) = entry(d, s..from) {
                out.push(e);
            }
        }
        out
    }

    /// Every reservation, in address order.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        let d = self.bytes();
        let mut at = self.body;
        std::iter::from_fn(move || loop {
            if at >= d.len() {
                return None;
            }
            let s = at;
            at = d[s..].iter().position(|&c| c == b'\n').map_or(d.len(), |p| s + p + 1);
            if let Some(e) = entry(d, s..at) {
                return Some(e);
            }
        })
    }

    /// The file after `edit`, as pieces to write in order. `header` holds the first one.
    pub fn render<'s>(&'s self, edit: &'s Edit, header_buf: &'s mut String) -> Vec<&'s [u8]> {
        let d = self.bytes();
        let mut last = self.last.clone();
        for &(i, ip) in &edit.last {
            match last.iter_mut().find(|l| l.0 == i) {
                Some(l) => l.1 = ip,
                None => last.push((i, ip)),
            }
        }
        crate::sort::sort_by_key(&mut last, |l| l.0);
        // Cut points in the body: (offset, 0 = insert line i | 1 = skip to end).
        let mut cuts: Vec<(usize, u8, Key, usize)> = Vec::with_capacity(edit.add.len() + edit.remove.len());
        for (i, (ip, _)) in edit.add.iter().enumerate() {
            cuts.push((self.lower_bound(ip), 0, key(ip), i));
        }
        for r in &edit.remove {
            cuts.push((r.start.max(self.body), 1, (false, 0), r.end));
        }
        crate::sort::sort(&mut cuts);
        let mut body: Vec<&[u8]> = Vec::with_capacity(2 * cuts.len() + 1);
        let mut cur = self.body;
        for &(at, kind, _, arg) in &cuts {
            if at > cur {
                body.push(&d[cur..at.min(d.len())]);
                cur = at.min(d.len());
            }
            if kind == 0 {
                body.push(edit.add[arg].1.as_bytes());
            } else {
                cur = cur.max(arg.min(d.len()));
            }
        }
        if cur < d.len() {
            body.push(&d[cur..]);
        }
        *header_buf = header(&last, body.iter().map(|p| p.len()).sum());
        let header_buf: &'s String = header_buf;
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(header_buf.as_bytes());
        out.extend(body);
        out
    }
}

fn parse_last(line: &[u8]) -> Option<(usize, IpAddr)> {
    let s = std::str::from_utf8(line.strip_prefix(LAST.as_bytes())?).ok()?;
    let (idx, ip) = s.trim().split_once(' ')?;
    Some((idx.parse().ok()?, ip.trim().parse::<IpAddr>().ok()?.to_canonical()))
}

/// The header and last-reserved lines for a file whose reservations take `body` bytes.
fn header(last: &[(usize, IpAddr)], body: usize) -> String {
    let mut lines = String::new();
    for (i, ip) in last {
        lines.push_str(&format!("{LAST}{i} {ip}\n"));
    }
    let size = MAGIC.len() + SIZE_DIGITS + TAIL.len() + lines.len() + body;
    format!("{MAGIC}{size:0width$}{TAIL}{lines}", width = SIZE_DIGITS)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The bytes `edit` turns `data` into.
    pub(crate) fn apply(data: &[u8], edit: &Edit) -> Vec<u8> {
        let s = State::parse(data);
        let mut h = String::new();
        s.render(edit, &mut h).concat()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn reserve(data: &[u8], list: &[(&str, &str, &str)]) -> Vec<u8> {
        let mut e = Edit::default();
        for (a, id, ifn) in list {
            e.reserve(ip(a), id, ifn);
        }
        apply(data, &e)
    }

    fn body(data: &[u8]) -> Vec<String> {
        let w = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        State::parse(data)
            .entries()
            .map(|e| format!("{} {} {}", e.ip, w(e.id), e.ifname.map_or("-".into(), w)))
            .collect()
    }

    #[test]
    fn round_trip_sorted_and_trusted() {
        let d = reserve(
            b"",
            &[
                ("10.0.0.9", "c9", "eth0"),
                ("fd00::2", "c1", "net1"),
                ("10.0.0.2", "c1", "eth0"),
                ("10.0.0.10", "c10", "eth0"),
            ],
        );
        let text = String::from_utf8(d.clone()).unwrap();
        assert!(text.starts_with(MAGIC), "{text}");
        assert_eq!(body(&d), ["10.0.0.2 c1 eth0", "10.0.0.9 c9 eth0", "10.0.0.10 c10 eth0", "fd00::2 c1 net1"]);
        let s = State::parse(&d);
        assert!(!s.was_normalized());
        assert_eq!(s.holder(&ip("10.0.0.9")).unwrap().id, b"c9");
        assert!(s.holder(&ip("10.0.0.3")).is_none());
        assert!(s.holder(&ip("fd00::3")).is_none());
        assert_eq!(s.lines_of("c1", Some("eth0")).len(), 1);
        assert_eq!(s.lines_of("c1", Some("net1"))[0].ip, ip("fd00::2"));
        assert!(s.lines_of("c", Some("eth0")).is_empty());
        assert!(s.lines_of("1", Some("eth0")).is_empty());
    }

    #[test]
    fn remove_insert_and_last_reserved() {
        let d = reserve(b"", &[("10.0.0.2", "a", "eth0"), ("10.0.0.3", "b", "eth0"), ("10.0.0.4", "c", "eth0")]);
        let s = State::parse(&d);
        let mut e =
            Edit { remove: s.lines_of("b", Some("eth0")).into_iter().map(|l| l.span).collect(), ..Edit::default() };
        e.reserve(ip("10.0.0.3"), "d", "eth1");
        e.reserve(ip("10.0.0.1"), "e", "eth0");
        e.last.push((1, ip("10.0.0.3")));
        let d2 = apply(&d, &e);
        assert_eq!(body(&d2), ["10.0.0.1 e eth0", "10.0.0.2 a eth0", "10.0.0.3 d eth1", "10.0.0.4 c eth0"]);
        let s2 = State::parse(&d2);
        assert!(!s2.was_normalized());
        assert_eq!(s2.last_reserved(1), Some(ip("10.0.0.3")));
        assert_eq!(s2.last_reserved(0), None);
        // release everything
        let all = Edit { remove: s2.entries().map(|l| l.span).collect(), ..Edit::default() };
        let d3 = apply(&d2, &all);
        assert!(body(&d3).is_empty());
        assert_eq!(State::parse(&d3).last_reserved(1), Some(ip("10.0.0.3")));
    }

    #[test]
    fn hand_written_file_is_parsed_line_by_line() {
        let text = b"# my notes\n\n10.0.0.9 c9 eth0\r\nlast_reserved_ip.0 10.0.0.9\n  \nnot an address\n\
                     10.0.0.3\tc3\teth0\n10.0.0.9 dup eth0\n::ffff:10.0.0.7 c7 eth0\n10.0.0.8 c8\n10.0.0.5\n\
                     10.0.0.6 c6 eth0 extra\n300.0.0.1 x eth0\n10.0.0.4 c\x01 eth0\n";
        let s = State::parse(text);
        assert!(s.was_normalized());
        // words after the interface name are ignored (and not written back)
        assert_eq!(
            body(text),
            [
                "10.0.0.3 c3 eth0",
                "10.0.0.4 c\\x01 eth0",
                "10.0.0.5  -",
                "10.0.0.6 c6 eth0",
                "10.0.0.7 c7 eth0",
                "10.0.0.8 c8 -",
                "10.0.0.9 c9 eth0"
            ]
        );
        // a line naming only an address still holds it, for no one
        assert!(s.holder(&ip("10.0.0.5")).is_some_and(|e| e.id.is_empty()));
        assert!(s.lines_of("c\x01", Some("eth0"))[0].ip == ip("10.0.0.4"));
        assert_eq!(s.last_reserved(0), Some(ip("10.0.0.9")));
        // the id-only line is found by id, and the rewritten file is trusted
        assert_eq!(s.lines_of("c8", None).len(), 1);
        let d = apply(text, &Edit::default());
        assert!(!State::parse(&d).was_normalized());
        assert_eq!(body(&d), body(text));
    }

    #[test]
    fn every_valid_interface_name_is_one_word_and_reads_back() {
        for name in ["eth0", "\u{e9}0", "a\x01b", "a\\x41", "\x7f\u{2603}", "net.1-x_y"] {
            let w = escape(name.as_bytes());
            assert!(w.bytes().all(|c| c.is_ascii_graphic()), "{name:?} -> {w}");
            assert_eq!(&*unescape(w.as_bytes()), name.as_bytes());
        }
        assert_eq!(escape("\u{e9}0".as_bytes()), "\\xc3\\xa90");
        assert_eq!(escape(b"eth0"), "eth0");
        let d =
            reserve(b"", &[("10.0.0.2", "c1", "\u{e9}0"), ("10.0.0.3", "c2", "\u{e9}0"), ("10.0.0.4", "c1", "e\x01")]);
        let text = String::from_utf8(d.clone()).unwrap();
        assert!(text.contains("10.0.0.2 c1 \\xc3\\xa90\n"), "{text}");
        let s = State::parse(&d);
        assert!(!s.was_normalized());
        assert_eq!(s.holder(&ip("10.0.0.3")).unwrap().id, b"c2");
        assert_eq!(s.lines_of("c1", Some("\u{e9}0")).len(), 1);
        assert_eq!(s.lines_of("c1", Some("e\x01"))[0].ip, ip("10.0.0.4"));
        assert!(s.lines_of("c1", Some("eth0")).is_empty());
        assert!(s.entries().all(|e| e.is_of(
            if e.ip == ip("10.0.0.3") { "c2" } else { "c1" },
            Some(if e.ip == ip("10.0.0.4") { "e\x01" } else { "\u{e9}0" })
        )));
    }

    #[test]
    fn lines_an_older_version_wrote_raw_are_held_and_found() {
        // A trusted file (its size stamp right) with names written unescaped.
        let body = "10.0.0.2 c1 \u{e9}0\n10.0.0.3 c2 a\x01\n10.0.0.4 c3 eth0 \u{ff}\u{fe}\n";
        let mut h = String::new();
        let d = {
            let empty = State::parse(b"");
            let mut e = Edit::default();
            e.last.push((0, ip("10.0.0.4")));
            empty.render(&e, &mut h).concat()
        };
        let size = d.len() + body.len();
        let text = format!("{MAGIC}{size:010}{}{body}", &String::from_utf8(d).unwrap()[MAGIC.len() + SIZE_DIGITS..]);
        let s = State::parse(text.as_bytes());
        assert!(!s.was_normalized(), "{text}");
        for a in ["10.0.0.2", "10.0.0.3", "10.0.0.4"] {
            assert!(s.holder(&ip(a)).is_some(), "{a} is held");
        }
        assert_eq!(s.lines_of("c1", Some("\u{e9}0"))[0].ip, ip("10.0.0.2"));
        assert_eq!(s.lines_of("c2", Some("a\x01"))[0].ip, ip("10.0.0.3"));
        // normalized, they are written escaped and still found
        let n = State::normalize(text.as_bytes());
        assert_eq!(n.lines_of("c1", Some("\u{e9}0"))[0].ip, ip("10.0.0.2"));
        assert!(String::from_utf8_lossy(n.bytes()).contains("10.0.0.2 c1 \\xc3\\xa90\n"));
    }

    #[test]
    fn a_whole_address_on_a_cut_line_stays_held() {
        let s = State::parse(b"10.0.0.2 a eth0\n10.0.0.3 b et");
        assert!(s.holder(&ip("10.0.0.3")).is_some());
        let s = State::parse(b"10.0.0.2 a eth0\n10.0.0.3");
        assert!(s.holder(&ip("10.0.0.3")).is_none(), "10.0.0.3 may have been 10.0.0.31");
        assert!(State::load(b"10.0.0.2 a eth0\n10.0.0.3 b et").is_err(), "ADD still refuses it");
    }

    #[test]
    fn garbage_truncation_and_size_mismatch() {
        let d = reserve(b"", &[("10.0.0.2", "a", "eth0"), ("10.0.0.3", "b", "eth0")]);
        // every truncation parses, keeps every whole address and never trusts the header
        let text = String::from_utf8(d.clone()).unwrap();
        for cut in 0..d.len() {
            let s = State::parse(&d[..cut]);
            assert!(cut == 0 || s.was_normalized());
            let held: Vec<String> = s.entries().map(|e| e.ip.to_string()).collect();
            let want: Vec<&str> =
                ["10.0.0.2 ", "10.0.0.3 "].into_iter().filter(|a| text[..cut].contains(a)).map(str::trim).collect();
            assert_eq!(held, want, "cut at {cut}");
        }
        // a zero-filled file (delayed allocation after a power loss) and random bytes
        assert!(body(&vec![0u8; 4096]).is_empty());
        let mut x: u32 = 12345;
        let noise: Vec<u8> = (0..20000)
            .map(|_| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let _ = body(&noise);
        // an appended line breaks the recorded size: the file is re-read, the line kept
        let mut e = d.clone();
        e.extend_from_slice(b"10.0.0.1 z eth0\n");
        assert!(State::parse(&e).was_normalized());
        assert_eq!(body(&e)[0], "10.0.0.1 z eth0");
    }

    #[test]
    fn load_refuses_damage_but_takes_hand_edits() {
        let why = |d: &[u8]| State::load(d).err().unwrap_or_default();
        assert!(why(b"10.1.0.2 a eth0\n10.1.0.3 cut").contains("cut short"));
        assert!(why(b"10.1.0.2 a eth0\nnonsense here\n").contains("line 2"));
        assert!(State::load(b"\xff\xfe\n").is_err());
        let s = State::load(b"# mine\n\nlast_reserved_ip.0 10.1.0.3\n10.1.0.3 b eth0\n10.1.0.2 a eth0\n").unwrap();
        assert_eq!(s.entries().count(), 2);
        assert_eq!(s.last_reserved(0), Some(ip("10.1.0.3")));
        let ours = apply(b"", &Edit::default());
        assert!(State::load(&ours).is_ok());
    }

    #[test]
    fn binary_search_at_scale() {
        let mut e = Edit::default();
        for i in (0..3000u32).step_by(3) {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            e.reserve(a, &format!("c{i}"), "eth0");
        }
        let d = apply(b"", &e);
        let s = State::parse(&d);
        assert!(!s.was_normalized());
        for i in 0..3100u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(s.holder(&a).is_some(), i % 3 == 0 && i < 3000, "{a}");
        }
        assert_eq!(s.lines_of("c2997", Some("eth0"))[0].ip, ip("10.0.11.181"));
    }
}
