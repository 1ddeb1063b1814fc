//! cnibox-noop: the exec floor. A static binary of the same target and build
//! profile as cnibox that does only what every plugin must: start, read the
//! config on stdin to its end, write one line of JSON, exit. cnibox-bench
//! execs it exactly as it execs a plugin; the time that takes is the floor
//! no plugin can go below.

#![deny(unsafe_code)]

use std::io::{Read, Write};

fn main() {
    let mut conf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut conf);
    let _ = std::io::stdout().write_all(b"{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.1.0\"]}\n");
}
