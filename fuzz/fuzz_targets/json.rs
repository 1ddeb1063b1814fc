//! cnibox's JSON parser against serde_json's: both accept the same documents
//! (but for the limits each sets: nesting depth, and serde_json's refusal of
//! numbers beyond f64), read them as the same value, and cnibox's output of a
//! value is JSON that parses back to it (a fixed point).

#![no_main]

use libfuzzer_sys::fuzz_target;

/// The deepest nesting of arrays and objects in `data` (outside strings).
fn depth(data: &[u8]) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0, false, false);
    for &b in data {
        match (in_str, esc, b) {
            (true, true, _) => esc = false,
            (true, false, b'\\') => esc = true,
            (true, false, b'"') => in_str = false,
            (false, _, b'"') => in_str = true,
            (false, _, b'[' | b'{') => {
                d += 1;
                max = max.max(d);
            }
            (false, _, b']' | b'}') => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fuzz_target!(|data: &[u8]| {
    let mine = cnibox::json::parse(data);
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    match (&mine, &theirs) {
        (Ok(v), Ok(w)) => {
            let text = v.to_json();
            let back: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("output is not JSON ({e}): {text}"));
            assert_eq!(&back, w, "the same value");
            let again = cnibox::json::parse(text.as_bytes()).unwrap_or_else(|e| panic!("own output refused: {e}"));
            assert_eq!(&again, v, "output parses back to the value");
            assert_eq!(again.to_json(), text, "a fixed point");
        }
        (Err(e), Ok(_)) => {
            assert!(depth(data) > cnibox::json::MAX_DEPTH as usize - 2, "refused what serde_json takes: {e}")
        }
        (Ok(_), Err(e)) => assert!(
            e.to_string().contains("number out of range") || e.to_string().contains("recursion limit"),
            "accepted what serde_json refuses ({e})"
        ),
        (Err(e), Err(_)) => assert!(e.line >= 1 && e.column >= 1 && !e.msg.is_empty()),
    }
});
