//! nf_tables over netlink: batches, expressions, and the rule shapes cnibox emits.
