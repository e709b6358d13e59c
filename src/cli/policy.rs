//! `sealgate policy …`: check a policy directory and say what it will do.

use std::io::Write;
use std::path::PathBuf;

use super::keys::{CliError, StoreArgs, Target};
use crate::keys::admin::AdminRequest;
use crate::keys::KeyError;
use crate::policy::suggest::{draft_policy, Observation};
use crate::policy::{check_labels, load_dir, LabelGap, PolicyError, PolicySet, Problem};

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
        /// Also check that the key store in DIR has every key the routes
        /// name (through the admin socket while `serve` holds it).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Root key file of that store (default: $SEALGATE_ROOT_KEY, else
        /// DATA_DIR/root.key).
        #[arg(long, value_name = "FILE", requires = "data_dir")]
        root_key_file: Option<PathBuf>,
        /// Also check, when this config file has a `[provider]` table, that
        /// the remote KMS has every key the routes name (DescribeKey, with
        /// the credential from the environment variables it names).
        #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
        config: Option<PathBuf>,
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

/// The keys the routes name (`key` and `open_keys`) that the store lacks,
/// one problem each; a store that does not open is one problem.
fn missing_keys(set: &PolicySet, store: &StoreArgs) -> Vec<Problem> {
    let shown = store.data_dir.display().to_string();
    match Target::open(store) {
        Ok(target) => missing_keys_in(set, &target, &shown)
            .into_iter()
            .map(|(p, _)| p)
            .collect(),
        Err(e) => vec![Problem::file(&shown, format!("cannot check keys: {e}"))],
    }
}

/// The keys the routes name that the `[provider]` of the config at
/// `path` cannot use, one problem each; a config without `[provider]`
/// checks nothing.
fn missing_provider_keys(set: &PolicySet, path: &std::path::Path) -> Vec<Problem> {
    let shown = path.display().to_string();
    let config = match crate::config::load(Some(path), &crate::config::Overrides::default()) {
        Ok(c) => c,
        Err(e) => return vec![Problem::file(&shown, format!("cannot check keys: {e}"))],
    };
    let Some(settings) = config.provider else {
        return Vec::new();
    };
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let provider = match crate::keys::remote::RemoteProvider::new(&settings, metrics) {
        Ok(p) => p,
        Err(e) => return vec![Problem::file(&shown, format!("cannot check keys: {e}"))],
    };
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for route in set.routes() {
        let names = std::iter::once(("key", &route.key))
            .chain(route.open_keys.iter().map(|k| ("open_keys", k)));
        for (field, key) in names {
            if !seen.insert(key.clone()) {
                continue;
            }
            if let Err(message) = provider.check_keys([key.as_str()]) {
                problems.push(Problem {
                    file: route.file().to_owned(),
                    route: Some(route.name.clone()),
                    field: Some(field.to_owned()),
                    message,
                });
            }
        }
    }
    problems
}

/// [`missing_keys`] in a store already open (`shown` names it); each
/// problem with the missing key's name, `None` when the key could not be
/// looked up at all.
pub(crate) fn missing_keys_in(
    set: &PolicySet,
    target: &Target,
    shown: &str,
) -> Vec<(Problem, Option<String>)> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for route in set.routes() {
        let names = std::iter::once(("key", &route.key))
            .chain(route.open_keys.iter().map(|k| ("open_keys", k)));
        for (field, key) in names {
            if !seen.insert(key.clone()) {
                continue;
            }
            let missing = match target.call(AdminRequest::Describe { key: key.clone() }) {
                Ok(_) => continue,
                Err(CliError::Key(KeyError::CmkNotFound)) => true,
                Err(_) => false,
            };
            let message = match (missing, field) {
                (true, "key") => format!(
                    "key '{key}' is not in the key store in {shown}; `serve` refuses to start \
                     unless it is created (`sealgate keys create --alias {key}`) or [keys] \
                     create_policy_keys = true"
                ),
                (true, _) => format!(
                    "key '{key}' is not in the key store in {shown}; nothing sealed under it \
                     can be opened"
                ),
                (false, _) => format!("cannot look up key '{key}' in {shown}"),
            };
            let problem = Problem {
                file: route.file().to_owned(),
                route: Some(route.name.clone()),
                field: Some(field.to_owned()),
                message,
            };
            problems.push((problem, missing.then(|| key.clone())));
        }
    }
    problems
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
            data_dir,
            root_key_file,
            config,
        } => match load_dir(&dir) {
            Ok(set) => {
                let _ = write!(out, "{}", set.describe());
                let findings = check_labels(&set);
                let mut problems = match data_dir {
                    Some(data_dir) => {
                        let store = StoreArgs {
                            data_dir,
                            root_key_file,
                            store_url: None,
                            json: false,
                        };
                        missing_keys(&set, &store)
                    }
                    None => match &config {
                        Some(path) => missing_provider_keys(&set, path),
                        None => Vec::new(),
                    },
                };
                for p in &problems {
                    let _ = writeln!(err, "error: {p}");
                }
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
