//! A namespace's IP settings over rtnetlink (`RTM_GETNETCONF`): read where
//! reading the `/proc/sys` file would cost more (opening one walks a path
//! whose directories exist once per network namespace on the machine).

use super::Rtnl;
use crate::error::Result;
use crate::netlink::{Attrs, MsgBuf, NLM_F_REQUEST};

pub const RTM_GETNETCONF: u16 = 82;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
/// `NETCONFA_IFINDEX_ALL`: the namespace's `all` settings.
const IFINDEX_ALL: i32 = -1;

/// The `all` settings of `family` (`struct netconfmsg`, padded to 4 bytes).
pub fn get_all_msg(family: u8) -> MsgBuf {
    let mut m = MsgBuf::new(RTM_GETNETCONF, NLM_F_REQUEST);
    m.push(&[family, 0, 0, 0]);
    m.put(NETCONFA_IFINDEX, &IFINDEX_ALL.to_ne_bytes());
    m
}

/// NETCONFA_FORWARDING of a reply's payload.
fn forwarding_of(payload: &[u8]) -> Option<bool> {
    Attrs::new(payload.get(4..)?).get(NETCONFA_FORWARDING).map(|a| a.u32() != 0)
}

impl Rtnl {
    /// Whether forwarding is on for `family` in this namespace: for
    /// AF_INET `net.ipv4.ip_forward`, for AF_INET6 `net.ipv6.conf.all.forwarding`.
    /// None when the reply does not say.
    pub fn forwarding(&mut self, family: u8) -> Result<Option<bool>> {
        let r = self.sock.get_with(get_all_msg(family), "read forwarding setting", forwarding_of)?;
        Ok(r.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::tests::{cat, nla};

    #[test]
    fn request_and_reply() {
        let b = get_all_msg(libc::AF_INET as u8).finish(1);
        assert_eq!(&b[4..6], &82u16.to_ne_bytes());
        assert_eq!(&b[16..], cat(&[&[2, 0, 0, 0], &nla(8, 1), &(-1i32).to_ne_bytes()]));
        let reply = cat(&[&[2, 0, 0, 0], &nla(8, 1), &(-1i32).to_ne_bytes(), &nla(8, 2), &1i32.to_ne_bytes()]);
        assert_eq!(forwarding_of(&reply), Some(true));
        assert_eq!(forwarding_of(&reply[..12]), None);
    }
}
