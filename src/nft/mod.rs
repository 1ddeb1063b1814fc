//! nf_tables over netlink: batches, expressions, and the rule shapes cnibox emits.

pub mod masq;
pub mod spoofchk;
