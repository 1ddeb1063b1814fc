//! The CNI protocol: environment, configuration, results, versions, the
//! dispatcher that runs a plugin's verbs (skel) and delegation to other plugins.

pub mod args;
pub mod config;
pub mod delegate;
pub mod json;
pub mod json_writer;
pub mod result;
pub mod skel;
pub mod version;

pub use result::CniResult;
pub use skel::{Command, Plugin, Request};
