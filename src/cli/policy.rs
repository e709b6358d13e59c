//! `sealgate policy …`: check a policy directory and say what it will do.

use std::io::Write;
use std::path::PathBuf;

use crate::policy::suggest::{draft_policy, Observation};
use crate::policy::{check_labels, load_dir, LabelGap, PolicyError, Problem};

/// Policy subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Load every *.toml in DIR, report every problem, or describe each route.
    Check {
        /// Directory holding the policy files.
        dir: PathBuf,
        /// Report a field opened that no route of its context seals as a
        /// warning instead of failing the check.
        #[arg(long)]
        allow_label_gaps: bool,
    },
    /// Draft a policy file from a shadow-mode capture (JSON lines of field
    /// paths and value classes, never values); prints TOML to stdout.
    Suggest {
        /// The capture file written by shadow mode.
        #[arg(long)]
        capture: PathBuf,
        /// The key (alias or KeyId) the drafted routes name.
        #[arg(long, default_value = "default")]
        key: String,
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
        PolicyCommand::Suggest { capture, key } => {
            let text = std::fs::read_to_string(&capture).map_err(|e| {
                let _ = writeln!(err, "error: cannot read {}: {e}", capture.display());
                PolicyCheckFailed(PolicyError::from(Problem::file(
                    &capture.display().to_string(),
                    e.to_string(),
                )))
            })?;
            let mut observations = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                match serde_json::from_str::<Observation>(line) {
                    Ok(o) => observations.push(o),
                    Err(e) => {
                        let msg = format!("line {}: not an observation: {e}", i + 1);
                        let _ = writeln!(err, "error: {}: {msg}", capture.display());
                        return Err(PolicyCheckFailed(PolicyError::from(Problem::file(
                            &capture.display().to_string(),
                            msg,
                        ))));
                    }
                }
            }
            let _ = write!(out, "{}", draft_policy(&observations, &key));
            Ok(())
        }
        PolicyCommand::Check {
            dir,
            allow_label_gaps,
        } => match load_dir(&dir) {
            Ok(set) => {
                let _ = write!(out, "{}", set.describe());
                let findings = check_labels(&set);
                let mut problems = Vec::new();
                for f in &findings {
                    let fatal = f.gap == LabelGap::OpensUnsealed && !allow_label_gaps;
                    let _ = writeln!(err, "{}: {f}", if fatal { "error" } else { "warning" });
                    if fatal {
                        problems.push(Problem {
                            file: f.file.clone(),
                            route: Some(f.route.clone()),
                            field: Some(f.rule.clone()),
                            message: f.to_string(),
                        });
                    }
                }
                if !problems.is_empty() {
                    return Err(PolicyCheckFailed(PolicyError { problems }));
                }
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
