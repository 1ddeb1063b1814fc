//! Address management: the host-local allocator and its state store.
