//! A small regular-expression matcher for the tuning plugin's sysctl
//! allowlist (one Go-style RE2 pattern per line).
//!
//! Supported: literals and escaped punctuation, `\t \n \f \r \v`, `.`, classes
//! `[a-z_]` / `[^...]` with POSIX names (`[[:alpha:]]`, `[[:^digit:]]`),
//! `\d \D \s \S \w \W` (ASCII, as in RE2), groups `(...)` / `(?:...)` with
//! `|`, the quantifiers `* + ?` (and their lazy forms) and `{n}`, `{n,}`,
//! `{n,m}` up to 1000, and the anchors `^ $ \A \z` (no multi-line mode). A
//! pattern outside this subset is an error naming the pattern, never a guess.
//!
//! The allowlist is read on every tuning call and the keys come from pod
//! authors, so matching must cost the same whatever the pattern: the pattern
//! is compiled into a Thompson NFA, which is then simulated over the key one
//! character at a time with every live state at once (a Pike VM without
//! captures). Time is O(pattern × key), memory O(pattern), and nothing
//! recurses per input character. `regex-lite` does the same and more
//! (Unicode classes, captures, flags) for about 56 KB of binary; this subset
//! costs about 12 KB, and it is all a sysctl allowlist needs.

/// Most instructions a compiled pattern may have (counted repetition expands).
const MAX_PROGRAM: usize = 10_000;
/// Largest count in `{n,m}` (RE2's limit).
const MAX_REPEAT: u32 = 1000;
/// Deepest nesting of groups (bounds the recursion of parsing and compiling).
const MAX_NESTING: usize = 100;

type Ranges = Vec<(u32, u32)>;

enum Node {
    Char(char),
    Any,
    Class(Ranges, bool),
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, u32, Option<u32>),
    Start,
    End,
}

enum Inst {
    Char(char),
    Any,
    Class(Ranges, bool),
    Split(usize, usize),
    Jmp(usize),
    Start,
    End,
    Match,
}

pub struct Regex {
    prog: Vec<Inst>,
}

impl Regex {
    pub fn new(pat: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pat.chars().collect();
        let mut p = Parser { c: &chars, i: 0, depth: 0 };
        let alts = p.alts().and_then(|a| match p.i == chars.len() {
            true => Ok(a),
            false => Err("unbalanced ')'".into()),
        });
        let mut prog = Vec::new();
        alts.and_then(|a| {
            compile_alts(&a, &mut prog)?;
            prog.push(Inst::Match);
            Ok(Regex { prog })
        })
        .map_err(|e| format!("invalid pattern \"{pat}\": {e}"))
    }

    /// Whether the pattern matches anywhere in `text` (Go's MatchString).
    pub fn is_match(&self, text: &str) -> bool {
        let len = text.chars().count();
        let mut cur = Threads::new(self.prog.len());
        let mut next = Threads::new(self.prog.len());
        let mut chars = text.chars();
        for pos in 0..=len {
            // A new attempt starts at every position: the search is unanchored.
            if self.add(&mut cur, 0, pos, len) {
                return true;
            }
            let Some(ch) = chars.next() else { break };
            next.clear();
            for &pc in &cur.list {
                let step = match &self.prog[pc] {
                    Inst::Char(c) => *c == ch,
                    Inst::Any => ch != '\n',
                    Inst::Class(r, neg) => in_ranges(r, ch) != *neg,
                    _ => false,
                };
                if step && self.add(&mut next, pc + 1, pos + 1, len) {
                    return true;
                }
            }
            std::mem::swap(&mut cur, &mut next);
        }
        false
    }

    /// Add `pc` and every state reachable from it without reading (at `pos`
    /// of a text `len` characters long) to `t`; true when one is the match.
    fn add(&self, t: &mut Threads, pc: usize, pos: usize, len: usize) -> bool {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if !t.mark(pc) {
                continue;
            }
            match self.prog[pc] {
                Inst::Match => return true,
                Inst::Jmp(x) => stack.push(x),
                Inst::Split(x, y) => stack.extend([y, x]),
                Inst::Start if pos == 0 => stack.push(pc + 1),
                Inst::End if pos == len => stack.push(pc + 1),
                Inst::Start | Inst::End => {}
                _ => t.list.push(pc),
            }
        }
        false
    }
}

/// The states live at one position: a list, and a set to keep it free of repeats.
struct Threads {
    list: Vec<usize>,
    seen: Vec<bool>,
}

impl Threads {
    fn new(n: usize) -> Threads {
        Threads { list: Vec::with_capacity(n), seen: vec![false; n] }
    }

    fn clear(&mut self) {
        self.list.clear();
        self.seen.iter_mut().for_each(|s| *s = false);
    }

    fn mark(&mut self, pc: usize) -> bool {
        !std::mem::replace(&mut self.seen[pc], true)
    }
}

fn in_ranges(r: &Ranges, ch: char) -> bool {
    let c = ch as u32;
    r.iter().any(|&(a, b)| a <= c && c <= b)
}

/// Everything not in `r`.
fn complement(mut r: Ranges) -> Ranges {
    // Insertion sort: a class has a handful of ranges, and a library sort costs 2-3 KB of binary.
    for i in 1..r.len() {
        let mut j = i;
        while j > 0 && r[j - 1] > r[j] {
            r.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut out = Vec::new();
    let mut from = 0u32;
    for (a, b) in r {
        if a > from {
            out.push((from, a - 1));
        }
        from = from.max(b.saturating_add(1));
    }
    if from <= char::MAX as u32 {
        out.push((from, char::MAX as u32));
    }
    out
}

fn compile_alts(alts: &[Vec<Node>], prog: &mut Vec<Inst>) -> Result<(), String> {
    // Split(first, next alternative) ... Jmp(end) for all but the last.
    let mut jumps = Vec::new();
    for (k, seq) in alts.iter().enumerate() {
        let split = prog.len();
        if k + 1 < alts.len() {
            prog.push(Inst::Split(split + 1, 0));
        }
        for n in seq {
            compile(n, prog)?;
        }
        if k + 1 < alts.len() {
            jumps.push(prog.len());
            prog.push(Inst::Jmp(0));
            let next = prog.len();
            prog[split] = Inst::Split(split + 1, next);
        }
    }
    let end = prog.len();
    for j in jumps {
        prog[j] = Inst::Jmp(end);
    }
    Ok(())
}

fn compile(n: &Node, prog: &mut Vec<Inst>) -> Result<(), String> {
    if prog.len() > MAX_PROGRAM {
        return Err(format!("too large once compiled (over {MAX_PROGRAM} steps)"));
    }
    match n {
        Node::Char(c) => prog.push(Inst::Char(*c)),
        Node::Any => prog.push(Inst::Any),
        Node::Class(r, neg) => prog.push(Inst::Class(r.clone(), *neg)),
        Node::Start => prog.push(Inst::Start),
        Node::End => prog.push(Inst::End),
        Node::Group(alts) => compile_alts(alts, prog)?,
        Node::Repeat(inner, lo, hi) => {
            for _ in 0..*lo {
                compile(inner, prog)?;
            }
            match hi {
                // loop: Split(body, out); body; Jmp(loop)
                None => {
                    let l = prog.len();
                    prog.push(Inst::Split(l + 1, 0));
                    compile(inner, prog)?;
                    prog.push(Inst::Jmp(l));
                    let out = prog.len();
                    prog[l] = Inst::Split(l + 1, out);
                }
                // each optional copy may end the repetition
                Some(hi) => {
                    let mut splits = Vec::new();
                    for _ in *lo..*hi {
                        splits.push(prog.len());
                        prog.push(Inst::Split(prog.len() + 1, 0));
                        compile(inner, prog)?;
                    }
                    let out = prog.len();
                    for s in splits {
                        prog[s] = Inst::Split(s + 1, out);
                    }
                }
            }
        }
    }
    Ok(())
}

struct Parser<'a> {
    c: &'a [char],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        self.i += ch.is_some() as usize;
        ch
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        let ok = self.c.get(self.i..self.i + n).is_some_and(|w| w.iter().copied().eq(s.chars()));
        if ok {
            self.i += n;
        }
        ok
    }

    fn alts(&mut self) -> Result<Vec<Vec<Node>>, String> {
        let mut alts = vec![Vec::new()];
        while let Some(ch) = self.peek() {
            if ch == ')' {
                break;
            }
            self.i += 1;
            let node = match ch {
                '|' => {
                    alts.push(Vec::new());
                    continue;
                }
                '(' => {
                    if self.peek() == Some('?') && !self.eat("?:") {
                        return Err("group flags and named groups are not supported".into());
                    }
                    self.depth += 1;
                    if self.depth > MAX_NESTING {
                        return Err(format!("groups nested deeper than {MAX_NESTING}"));
                    }
                    let inner = self.alts()?;
                    self.depth -= 1;
                    if self.next() != Some(')') {
                        return Err("missing ')'".into());
                    }
                    Node::Group(inner)
                }
                '.' => Node::Any,
                '^' => Node::Start,
                '$' => Node::End,
                '[' => self.class()?,
                '\\' => self.escape()?,
                '*' | '+' | '?' | '{' => return Err(format!("nothing to repeat before '{ch}'")),
                other => Node::Char(other),
            };
            let node = self.quantify(node)?;
            alts.last_mut().expect("one alternative at least").push(node);
        }
        Ok(alts)
    }

    /// After a backslash: a character, a class or an anchor.
    fn escape(&mut self) -> Result<Node, String> {
        let e = self.next().ok_or("trailing backslash")?;
        let perl = |ranges: &[(char, char)], neg| {
            Node::Class(ranges.iter().map(|&(a, b)| (a as u32, b as u32)).collect(), neg)
        };
        Ok(match e {
            'd' | 'D' => perl(DIGIT, e == 'D'),
            'w' | 'W' => perl(WORD, e == 'W'),
            's' | 'S' => perl(SPACE, e == 'S'),
            'A' => Node::Start,
            'z' => Node::End,
            't' => Node::Char('\t'),
            'n' => Node::Char('\n'),
            'f' => Node::Char('\x0c'),
            'r' => Node::Char('\r'),
            'v' => Node::Char('\x0b'),
            e if e.is_ascii_punctuation() => Node::Char(e),
            e => return Err(format!("unsupported escape \\{e}")),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let neg = self.eat("^");
        let mut ranges: Ranges = Vec::new();
        let mut first = true;
        loop {
            let ch = self.next().ok_or("missing ']'")?;
            if ch == ']' && !first {
                break;
            }
            first = false;
            if ch == '[' && self.peek() == Some(':') {
                self.i -= 1;
                ranges.extend(self.posix()?);
                continue;
            }
            let lo = match ch {
                '\\' => match self.escape()? {
                    Node::Char(x) => x,
                    Node::Class(r, neg) => {
                        ranges.extend(if neg { complement(r) } else { r });
                        continue;
                    }
                    _ => return Err("an anchor cannot be in a character class".into()),
                },
                _ => ch,
            };
            if self.peek() != Some('-') || self.c.get(self.i + 1) == Some(&']') {
                ranges.push((lo as u32, lo as u32));
                continue;
            }
            self.i += 1;
            let hi = match self.next().ok_or("missing ']'")? {
                '\\' => match self.escape()? {
                    Node::Char(x) => x,
                    _ => return Err(format!("a range in a character class cannot end in a class: {lo}-\\...")),
                },
                '[' if self.peek() == Some(':') => {
                    return Err(format!("a range in a character class cannot end in a class: {lo}-[:...:]"))
                }
                x => x,
            };
            if hi < lo {
                return Err(format!("invalid character class range {lo}-{hi}"));
            }
            ranges.push((lo as u32, hi as u32));
        }
        Ok(Node::Class(ranges, neg))
    }

    /// `[:name:]` or `[:^name:]` inside a class.
    fn posix(&mut self) -> Result<Ranges, String> {
        let start = self.i;
        self.i += 2;
        let neg = self.eat("^");
        let end = (self.i..self.c.len().saturating_sub(1))
            .find(|&k| self.c[k] == ':' && self.c[k + 1] == ']')
            .ok_or("missing ':]' after '[:'")?;
        let name: String = self.c[self.i..end].iter().collect();
        self.i = end + 2;
        let r: &[(char, char)] = match name.as_str() {
            "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
            "alpha" => &[('A', 'Z'), ('a', 'z')],
            "ascii" => &[('\0', '\x7f')],
            "blank" => &[('\t', '\t'), (' ', ' ')],
            "cntrl" => &[('\0', '\x1f'), ('\x7f', '\x7f')],
            "digit" => DIGIT,
            "graph" => &[('!', '~')],
            "lower" => &[('a', 'z')],
            "print" => &[(' ', '~')],
            "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
            "space" => &[('\t', '\r'), (' ', ' ')],
            "upper" => &[('A', 'Z')],
            "word" => WORD,
            "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
            _ => {
                let text: String = self.c[start..self.i].iter().collect();
                return Err(format!("unknown character class {text}"));
            }
        };
        let r: Ranges = r.iter().map(|&(a, b)| (a as u32, b as u32)).collect();
        Ok(if neg { complement(r) } else { r })
    }

    fn quantify(&mut self, n: Node) -> Result<Node, String> {
        let (lo, hi) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let end = self.c[self.i..].iter().position(|&x| x == '}').ok_or("missing '}'")? + self.i;
                let body: String = self.c[self.i + 1..end].iter().collect();
                let bad = || format!("invalid repeat {{{body}}}");
                let num = |s: &str| match s.parse::<u32>() {
                    Ok(n) if n <= MAX_REPEAT && !s.starts_with('+') => Ok(n),
                    Ok(_) => Err(format!("repeat count in {{{body}}} is over {MAX_REPEAT}")),
                    Err(_) => Err(bad()),
                };
                let (a, b) = match body.split_once(',') {
                    Some((a, "")) => (num(a)?, None),
                    Some((a, b)) => (num(a)?, Some(num(b)?)),
                    None => (num(&body)?, Some(num(&body)?)),
                };
                if b.is_some_and(|b| b < a) {
                    return Err(format!("invalid repeat {{{body}}}: the maximum is below the minimum"));
                }
                self.i = end;
                (a, b)
            }
            _ => return Ok(n),
        };
        self.i += 1;
        // lazy: the same set of matches for a yes/no question
        self.eat("?");
        if let Some(q @ ('*' | '+' | '?' | '{')) = self.peek() {
            return Err(format!("nested repetition operator '{q}'"));
        }
        Ok(Node::Repeat(Box::new(n), lo, hi))
    }
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
/// RE2's `\s`: tab, newline, form feed, carriage return, space (no vertical tab).
const SPACE: &[(char, char)] = &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')];

#[cfg(test)]
mod tests {
    use super::Regex;
    use std::time::{Duration, Instant};

    fn ok(p: &str, t: &str) -> bool {
        Regex::new(p).unwrap().is_match(t)
    }

    fn err(p: &str) -> String {
        Regex::new(p).err().unwrap_or_else(|| panic!("{p} was accepted"))
    }

    #[test]
    fn allowlist_style_patterns() {
        assert!(ok(r"^net\.ipv4\.conf\.eth0\.[a-z_]*$", "net.ipv4.conf.eth0.arp_filter"));
        assert!(!ok(r"^net\.ipv4\.conf\.eth0\.[a-z_]*$", "net.ipv4.conf.eth1.arp_filter"));
        assert!(!ok(r"^net\.ipv4\.ip_forward$", "net.ipv4.ip_forwardx"));
        assert!(ok(r"^net\.ipv6\.conf\.(all|default)\.accept_ra$", "net.ipv6.conf.default.accept_ra"));
        assert!(!ok(r"^net\.ipv6\.conf\.(all|default)\.accept_ra$", "net.ipv6.conf.eth0.accept_ra"));
        assert!(ok(r"ip_forward", "net.ipv4.ip_forward"), "unanchored search");
        assert!(ok(r"^a\d{2,3}b?$", "a123"));
        assert!(!ok(r"^a\d{2,3}$", "a1234"));
        assert!(!ok(r"^a\d{2,3}$", "a1"));
        assert!(ok(r"^a{2}$", "aa") && !ok(r"^a{2}$", "aaa"));
        assert!(ok(r"^a{2,}$", "aaaaa") && !ok(r"^a{2,}$", "a"));
        assert!(ok(r"^[^.]+\.x$", "abc.x"));
        assert!(ok(r"^(a+)+$", "aaaa"));
        assert!(ok(r"^$", ""));
        assert!(ok(r"^(?:ab|cd)*e$", "abcdabe") && !ok(r"^(?:ab|cd)*e$", "abce"));
        assert!(ok(r"^a|b$", "ax") && ok(r"^a|b$", "xb") && !ok(r"^a|b$", "xa"));
        assert!(ok(r"^(|a)$", "") && ok(r"^(a*)*$", "aaa") && ok(r"^(a?)*?b$", "aab"));
        assert!(!ok(r"^.$", "\n") && ok(r"^.$", "é"));
        assert!(ok(r"\Anet\z", "net") && !ok(r"\Anet\z", "nets"));
    }

    #[test]
    fn classes_as_re2_has_them() {
        // POSIX names inside brackets, negated too
        assert!(ok(r"^[[:alpha:]]+$", "abcXYZ") && !ok(r"^[[:alpha:]]+$", "ab1"));
        assert!(!ok(r"^[[:alpha:]]$", ":") && !ok(r"^[[:alpha:]]$", "["), "no longer a set of the letters of the name");
        assert!(ok(r"^[[:^digit:]_]+$", "ab_") && !ok(r"^[[:^digit:]]$", "5"));
        assert!(ok(r"^[[:digit:][:upper:]]+$", "A1B2") && !ok(r"^[[:digit:][:upper:]]+$", "a"));
        // \s is tab, newline, form feed, carriage return and space; not vertical tab
        for s in ["\t", "\n", "\x0c", "\r", " "] {
            assert!(ok(r"^\s$", s), "{s:?}");
        }
        assert!(!ok(r"^\s$", "\x0b") && ok(r"^\S$", "x") && !ok(r"^\S$", " "));
        assert!(ok(r"^\D\W$", "a.") && !ok(r"^\D$", "1") && !ok(r"^\W$", "_"));
        assert!(ok(r"^[\d.]+$", "1.2") && ok(r"^[^\D]$", "7") && !ok(r"^[^\D]$", "x"));
        // ']' first and '-' at either end are literal
        assert!(ok(r"^[]a]+$", "]a") && ok(r"^[-a]$", "-") && ok(r"^[a-]$", "-") && ok(r"^[\]]$", "]"));
        assert!(ok(r"^\t\f$", "\t\x0c"));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for p in [r"(?i)x", r"(?P<n>x)", r"\p{L}", r"\b", "a)", "(a", "[ab", "*a", r"x\", "[]", "a**", "a{2}{3}"] {
            let e = err(p);
            assert!(e.starts_with(&format!("invalid pattern \"{p}\": ")), "{e}");
        }
        assert!(err("[z-a]").ends_with("invalid character class range z-a"), "{}", err("[z-a]"));
        assert!(err("a{3,2}").ends_with("invalid repeat {3,2}: the maximum is below the minimum"));
        assert!(err("a{1001}").contains("over 1000"));
        assert!(err("a{x}").ends_with("invalid repeat {x}"));
        assert!(err("[[:alpah:]]").ends_with("unknown character class [:alpah:]"));
        assert!(err("[a-[:digit:]]").contains("cannot end in a class"));
        assert!(err("[a-\\d]").contains("cannot end in a class"));
        assert!(err("(((a{1000}){1000}){1000})").contains("too large"));
        assert!(err(&"(".repeat(200)).contains("nested deeper"));
    }

    #[test]
    fn matching_is_linear_in_the_key() {
        // Catastrophic for a backtracker (40 s on a 34-byte key): here a
        // few microseconds. The bound is generous; it is not a benchmark.
        let t = Instant::now();
        let key = format!("net.{}!", "a".repeat(30));
        assert!(!ok(r"^net\.(a+)+$", &key));
        assert!(!ok(r"^net\.(a|a)*(a*)*\.$", &"a".repeat(5000)));
        // 80,000 bytes: no recursion per byte, no stack overflow
        let long = format!("net.{}", "x".repeat(80_000));
        assert!(ok(r"^net\..*$", &long));
        assert!(!ok(r"^net\..*y$", &long));
        assert!(ok(r"^(net\.[a-z]+)+$", &long.replace('x', "n")));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
