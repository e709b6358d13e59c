//! Command-line subcommands (clap types and their `run` functions). The
//! binary in `main.rs` only parses and dispatches to these.

pub mod audit;
pub mod config;
pub mod credentials;
pub mod devcert;
pub mod generate;
pub mod keys;
mod parser;
pub mod policy;
pub mod rewrap;
pub mod serve;

pub use parser::{Cli, Command};
