//! The CMK store: key state machine, storage, root key, DEK wrap/unwrap and
//! the data-key cache.

pub mod cache;
pub mod provider;

pub use cache::{CacheConfig, CacheStats, DataKeyCache};
pub use provider::{KeyError, KeyProvider};
