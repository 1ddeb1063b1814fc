//! Results and prevResults in every version: reading any of them, printing
//! in every version, and reading that print back (what in-process delegation
//! does). A conversion may refuse, but what it prints must read back, and
//! 1.x output must keep every address and route.

#![no_main]

use cnibox::cni::result::CniResult;
use cnibox::cni::skel::{Command, Request};
use libfuzzer_sys::fuzz_target;

const VERSIONS: [&str; 7] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = CniResult::from_json(data) {
        for v in VERSIONS {
            let Ok(text) = r.to_json(v) else { continue };
            let back = CniResult::from_json(text.as_bytes())
                .unwrap_or_else(|e| panic!("{v} output does not read back: {e}\n{text}"));
            if v.starts_with('1') {
                assert_eq!(back.ips.len(), r.ips.len(), "{v} keeps every address");
                assert_eq!(back.routes.len(), r.routes.len(), "{v} keeps every route");
                assert_eq!(back.to_json(v).ok().as_deref(), Some(text.as_str()), "{v} is a fixed point");
            }
            let _ = r.as_seen_in(v);
        }
    }
    // The same bytes as a chained plugin's prevResult.
    let mut config = br#"{"cniVersion":"1.0.0","name":"n","type":"portmap","prevResult":"#.to_vec();
    config.extend_from_slice(data);
    config.push(b'}');
    let req = Request {
        command: Command::Add,
        container_id: "c".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: String::new(),
        path: String::new(),
        netns_override: false,
        config: config.into(),
        cni_version: "1.0.0".into(),
        name: "n".into(),
        ns: None,
    };
    match req.prev_result() {
        Ok(_) => {}
        Err(e) => assert!(e.code > 0 && !e.msg.is_empty()),
    }
});
