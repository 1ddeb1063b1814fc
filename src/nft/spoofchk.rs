//! Bridge-family anti-MAC-spoofing rules (`macspoofchk`). Placeholder.

use crate::error::{Error, Result};
use crate::net::Mac;

pub fn setup(_container_id: &str, _ifname: &str, _host_veth: &str, _mac: Mac) -> Result<()> {
    Err(Error::msg("macspoofchk: not implemented yet"))
}

pub fn teardown(_container_id: &str, _ifname: &str) -> Result<()> {
    Ok(())
}

pub fn check(_container_id: &str, _ifname: &str, _host_veth: &str, _mac: Mac) -> Result<()> {
    Err(Error::msg("macspoofchk: not implemented yet"))
}
