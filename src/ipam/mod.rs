//! Address management for host-local: ranges and the round-robin walk
//! (range), the state file format (state), the locked data directory with
//! the reference plugin's leftovers (store), and what each verb changes (alloc).

pub mod alloc;
pub mod range;
pub mod state;
pub mod store;
