//! static (placeholder until implemented).

use crate::cni::{CniResult, Plugin, Request};
use crate::error::{Error, Result};

pub static PLUGIN: Plugin = Plugin {
    name: "static",
    min_version: "0.1.0",
    add,
    del: unimplemented,
    check: unimplemented,
    gc: crate::cni::skel::noop,
    status: crate::cni::skel::noop,
};

fn add(_: &Request) -> Result<CniResult> {
    Err(Error::msg("static: not implemented yet"))
}

fn unimplemented(_: &Request) -> Result<()> {
    Err(Error::msg("static: not implemented yet"))
}
