//! DHCP replies come from the network, the least trusted input of all: the
//! message decoder, the UDP/IP unframer and the route options.

#![no_main]

use cnibox::dhcp::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(m) = wire::Message::decode(data) {
        for (code, _) in &m.options {
            let _ = m.get(*code);
        }
    }
    if let Some((_, payload)) = wire::unframe(data) {
        let _ = wire::Message::decode(payload);
    }
    let _ = wire::classless_routes(data);
    let _ = wire::static_routes(data);
});
