//! The CMK store: key state machine, storage, root key, DEK wrap/unwrap and
//! the data-key cache.

pub mod provider;

pub use provider::{KeyError, KeyProvider};
