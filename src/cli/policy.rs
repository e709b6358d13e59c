//! `sealgate policy …`: check a policy directory and say what it will do.

use std::io::Write;
use std::path::PathBuf;

use crate::policy::{load_dir, PolicyError};

/// Policy subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Load every *.toml in DIR, report every problem, or describe each route.
    Check {
        /// Directory holding the policy files.
        dir: PathBuf,
    },
}

/// `policy check` found problems (they have been printed to stderr).
#[derive(Debug, thiserror::Error)]
#[error("policy check failed: {} problem(s)", .0.problems.len())]
pub struct PolicyCheckFailed(pub PolicyError);

/// Runs a policy subcommand, printing to stdout (description) and stderr (problems).
pub fn run(cmd: PolicyCommand) -> Result<(), PolicyCheckFailed> {
    run_to(cmd, &mut std::io::stdout(), &mut std::io::stderr())
}

/// [`run`] with the output streams passed in (for tests).
pub fn run_to(
    cmd: PolicyCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), PolicyCheckFailed> {
    match cmd {
        PolicyCommand::Check { dir } => match load_dir(&dir) {
            Ok(set) => {
                let _ = write!(out, "{}", set.describe());
                let _ = writeln!(out, "\npolicy OK: {}", dir.display());
                Ok(())
            }
            Err(e) => {
                for p in &e.problems {
                    let _ = writeln!(err, "error: {p}");
                }
                Err(PolicyCheckFailed(e))
            }
        },
    }
}
