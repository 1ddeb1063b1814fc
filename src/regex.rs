//! A small backtracking regular-expression matcher for the tuning plugin's
//! sysctl allowlist (one Go-style RE2 pattern per line). It covers what such
//! patterns use: literals and escapes, `.`, classes `[a-z_]` / `[^...]`,
//! `\d \w \s`, groups with `|`, the quantifiers `* + ?` and `{m,n}`, and the
//! anchors `^ $`. A pattern outside that subset is an error, never a guess.

#[derive(Clone)]
enum Node {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, u32, u32),
    Start,
    End,
}

pub struct Regex {
    alts: Vec<Vec<Node>>,
}

impl Regex {
    pub fn new(pat: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pat.chars().collect();
        let mut i = 0;
        let alts = parse_alts(&chars, &mut i)?;
        if i != chars.len() {
            return Err(format!("unbalanced ')' in {pat}"));
        }
        Ok(Regex { alts })
    }

    /// Whether the pattern matches anywhere in `text` (Go's MatchString).
    pub fn is_match(&self, text: &str) -> bool {
        let t: Vec<char> = text.chars().collect();
        (0..=t.len()).any(|s| self.alts.iter().any(|seq| m(seq, &t, s, &mut |_| true)))
    }
}

fn parse_alts(c: &[char], i: &mut usize) -> Result<Vec<Vec<Node>>, String> {
    let mut alts = vec![Vec::new()];
    while *i < c.len() {
        let ch = c[*i];
        *i += 1;
        let node = match ch {
            '|' => {
                alts.push(Vec::new());
                continue;
            }
            ')' => {
                *i -= 1;
                break;
            }
            '(' => {
                if c.get(*i) == Some(&'?') {
                    // (?:...) non-capturing: same thing here
                    if c.get(*i + 1) == Some(&':') {
                        *i += 2;
                    } else {
                        return Err("unsupported group flags".into());
                    }
                }
                let inner = parse_alts(c, i)?;
                if c.get(*i) != Some(&')') {
                    return Err("missing ')'".into());
                }
                *i += 1;
                Node::Group(inner)
            }
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '[' => parse_class(c, i)?,
            '\\' => escape(c, i)?,
            '*' | '+' | '?' | '{' => return Err(format!("nothing to repeat before '{ch}'")),
            other => Node::Char(other),
        };
        let node = quantify(c, i, node)?;
        alts.last_mut().expect("one alternative at least").push(node);
    }
    Ok(alts)
}

fn escape(c: &[char], i: &mut usize) -> Result<Node, String> {
    let e = *c.get(*i).ok_or("trailing backslash")?;
    *i += 1;
    Ok(match e {
        'd' => Node::Class(vec![('0', '9')], false),
        'w' => Node::Class(vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')], false),
        's' => Node::Class(vec![(' ', ' '), ('\t', '\t'), ('\n', '\n'), ('\r', '\r')], false),
        e if e.is_ascii_alphanumeric() => return Err(format!("unsupported escape \\{e}")),
        e => Node::Char(e),
    })
}

fn parse_class(c: &[char], i: &mut usize) -> Result<Node, String> {
    let neg = c.get(*i) == Some(&'^');
    if neg {
        *i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let ch = *c.get(*i).ok_or("missing ']'")?;
        *i += 1;
        if ch == ']' && !first {
            break;
        }
        first = false;
        let lo = if ch == '\\' {
            match escape(c, i)? {
                Node::Char(x) => x,
                Node::Class(r, _) => {
                    ranges.extend(r);
                    continue;
                }
                _ => unreachable!("escape yields a char or a class"),
            }
        } else {
            ch
        };
        if c.get(*i) == Some(&'-') && c.get(*i + 1).map(|x| *x != ']').unwrap_or(false) {
            let hi = c[*i + 1];
            *i += 2;
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok(Node::Class(ranges, neg))
}

fn quantify(c: &[char], i: &mut usize, n: Node) -> Result<Node, String> {
    let (lo, hi) = match c.get(*i) {
        Some('*') => (0, u32::MAX),
        Some('+') => (1, u32::MAX),
        Some('?') => (0, 1),
        Some('{') => {
            let end = c[*i..].iter().position(|&x| x == '}').ok_or("missing '}'")? + *i;
            let body: String = c[*i + 1..end].iter().collect();
            let (a, b) = match body.split_once(',') {
                Some((a, "")) => (a.parse().map_err(|_| "bad repeat")?, u32::MAX),
                Some((a, b)) => (a.parse().map_err(|_| "bad repeat")?, b.parse().map_err(|_| "bad repeat")?),
                None => {
                    let n: u32 = body.parse().map_err(|_| "bad repeat")?;
                    (n, n)
                }
            };
            *i = end;
            (a, b)
        }
        _ => return Ok(n),
    };
    *i += 1;
    if c.get(*i) == Some(&'?') {
        *i += 1; // lazy: the same set of matches for a yes/no question
    }
    Ok(Node::Repeat(Box::new(n), lo, hi))
}

/// Match `seq` at `pos`, then call `k` with the end position (continuation).
fn m(seq: &[Node], t: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    let Some((first, rest)) = seq.split_first() else { return k(pos) };
    match first {
        Node::Start => pos == 0 && m(rest, t, pos, k),
        Node::End => pos == t.len() && m(rest, t, pos, k),
        Node::Group(alts) => alts.iter().any(|a| m(a, t, pos, &mut |p| m(rest, t, p, k))),
        Node::Repeat(n, lo, hi) => rep(n, *lo, *hi, 0, t, pos, &mut |p| m(rest, t, p, k)),
        single => pos < t.len() && one(single, t[pos]) && m(rest, t, pos + 1, k),
    }
}

fn rep(n: &Node, lo: u32, hi: u32, count: u32, t: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    // Greedy: one more first, then stop if enough. A zero-width step ends the loop.
    if count < hi && m(std::slice::from_ref(n), t, pos, &mut |p| p != pos && rep(n, lo, hi, count + 1, t, p, k)) {
        return true;
    }
    count >= lo && k(pos)
}

fn one(n: &Node, ch: char) -> bool {
    match n {
        Node::Char(c) => *c == ch,
        Node::Any => ch != '\n',
        Node::Class(r, neg) => r.iter().any(|(a, b)| (*a..=*b).contains(&ch)) != *neg,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::Regex;

    fn ok(p: &str, t: &str) -> bool {
        Regex::new(p).unwrap().is_match(t)
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
        assert!(ok(r"^[^.]+\.x$", "abc.x"));
        assert!(ok(r"^(a+)+$", "aaaa"));
        assert!(ok(r"^$", ""));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for p in [r"(?i)x", r"\p{L}", "a)", "(a", "[ab", "*a", r"x\"] {
            assert!(Regex::new(p).is_err(), "{p}");
        }
    }
}
