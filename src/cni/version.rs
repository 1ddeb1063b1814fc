//! CNI spec versions: the list this binary speaks and comparisons between them.

/// Every version string VERSION reports, oldest first (exact strings matter:
/// libcni matches the config's version against this list literally).
pub const ALL: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version, printed by VERSION as its own `cniVersion`.
pub const CURRENT: &str = "1.1.0";

/// Parse "major.minor.patch" into a comparable tuple.
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.');
    let mut n = || -> Option<u32> {
        let p = it.next()?;
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let r = (n()?, n()?, n()?);
    it.next().is_none().then_some(r)
}

/// `a >= b`; unparsable versions compare as not-greater.
pub fn at_least(a: &str, b: &str) -> bool {
    matches!((parse(a), parse(b)), (Some(x), Some(y)) if x >= y)
}

/// The versions in `list` as Go's `%q` prints a string slice: `["0.1.0" "0.2.0"]`.
pub fn quoted_list(list: &[&str]) -> String {
    let mut s = String::from("[");
    for (i, v) in list.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push('"');
        s.push_str(v);
        s.push('"');
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare() {
        assert!(at_least("1.0.0", "0.4.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(at_least("0.10.0", "0.4.0"));
        assert!(!at_least("x", "0.1.0"));
        assert_eq!(parse("1.2"), None);
        assert_eq!(parse("1.2.3.4"), None);
        assert_eq!(quoted_list(&["0.1.0", "1.1.0"]), r#"["0.1.0" "1.1.0"]"#);
    }
}
