//! sealgate: a transparent envelope-encryption proxy.
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod keys;
pub mod kms;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod secret;
