//! CNI_ARGS (`K=V;K2=V2`): parsing, lookups, the boolean words and the quoting
//! used in error messages. The first byte picks the keys a plugin knows.

#![no_main]

use cnibox::cni::args::{go_quote, parse_bool, CniArgs};
use libfuzzer_sys::fuzz_target;

const KNOWN: [&[&str]; 4] = [
    &[],
    &["MAC"],
    &["IP", "GATEWAY"],
    &["K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"],
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let raw = String::from_utf8_lossy(rest);
    let known = KNOWN[sel as usize % KNOWN.len()];
    match CniArgs::parse(&raw, known) {
        Ok(a) => {
            for k in known.iter().chain(&["IgnoreUnknown"]) {
                if let Some(v) = a.get(k) {
                    assert!(raw.contains(v), "a value comes from the input");
                }
            }
        }
        Err(e) => assert!(!e.msg.is_empty()),
    }
    let _ = parse_bool(&raw);
    let q = go_quote(&raw);
    assert_eq!(serde_json::from_str::<String>(&q).ok().as_deref(), Some(&*raw), "quoting round-trips");
});
