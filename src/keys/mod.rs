//! The CMK store: key state machine, storage, root key, DEK wrap/unwrap and
//! the data-key cache.
