//! `sealgate config check`: validates what `serve` would load — the config
//! file and flags, the policy directory (key names included) and the keys
//! the policies name in the store — without starting anything, like
//! `nginx -t`. Certificate files are not read: `serve` loads them.

use std::io::Write;

use super::keys::{StoreArgs, Target};
use super::serve::ServeArgs;
use crate::config::PolicyKeyCreation;
use crate::keys::admin::AdminRequest;
use crate::keys::KeyList;
use crate::policy::{check_labels, load_dir};

/// `sealgate config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check the config (file and flags, as `serve` takes them), the
    /// policies and the keys they name in the store; starts nothing.
    Check(ServeArgs),
}

/// `config check` found problems (each printed to stderr).
#[derive(Debug, thiserror::Error)]
#[error("config check failed: {0} problem(s)")]
pub struct ConfigCheckFailed(pub usize);

/// Runs a `config` subcommand on stdout and stderr.
pub fn run(cmd: ConfigCommand) -> Result<(), ConfigCheckFailed> {
    run_to(cmd, &mut std::io::stdout(), &mut std::io::stderr())
}

/// [`run`] with the output streams passed in (for tests).
pub fn run_to(
    cmd: ConfigCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ConfigCheckFailed> {
    let ConfigCommand::Check(args) = cmd;
    let cfg = match crate::config::load(args.config.as_deref(), &args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Err(ConfigCheckFailed(1));
        }
    };
    let _ = writeln!(
        out,
        "config OK: listen {}, upstream {}, policies {}, data dir {}",
        cfg.listen,
        cfg.upstream,
        cfg.policies.display(),
        cfg.data_dir.display()
    );
    let set = match load_dir(&cfg.policies) {
        Ok(set) => set,
        Err(e) => {
            for p in &e.problems {
                let _ = writeln!(err, "error: {p}");
            }
            return Err(ConfigCheckFailed(e.problems.len()));
        }
    };
    // `serve` warns about these and starts; so does the check
    for f in check_labels(&set) {
        let _ = writeln!(err, "warning: {f}");
    }
    let _ = writeln!(out, "policies OK: {} route(s)", set.routes().len());

    let store = StoreArgs {
        data_dir: cfg.data_dir.clone(),
        root_key_file: cfg.root_key_file.clone(),
        store_url: cfg.store_url.clone(),
        json: false,
    };
    // a PostgreSQL store is opened to learn whether it exists (opening one
    // that does not creates nothing)
    let mut opened = None;
    let (shown, exists) = match &cfg.store_url {
        Some(url) => {
            let shown = crate::keys::StoreUrl::parse(url)
                .map(|u| u.to_string())
                .unwrap_or_default();
            match Target::open(&store) {
                Err(super::keys::CliError::Store(crate::keys::StoreError::Uninitialized(_))) => {
                    (shown, false)
                }
                other => {
                    opened = Some(other);
                    (shown, true)
                }
            }
        }
        None => (
            cfg.data_dir.display().to_string(),
            cfg.data_dir
                .join(crate::keys::store::DB_FILE)
                .try_exists()
                .unwrap_or(false),
        ),
    };
    if !exists {
        if cfg.create_policy_keys == PolicyKeyCreation::Never && !set.routes().is_empty() {
            let _ = writeln!(
                err,
                "error: no key store in {shown}, and [keys] create_policy_keys = false: \
                 `serve` would create the store but not the keys the policies name"
            );
            return Err(ConfigCheckFailed(1));
        }
        let _ = writeln!(
            out,
            "no key store in {shown} yet: `serve` creates it, and the keys the policies \
             name, on its first start"
        );
        return Ok(());
    }
    let target = match opened.unwrap_or_else(|| Target::open(&store)) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: key store {shown}: {e}");
            return Err(ConfigCheckFailed(1));
        }
    };
    let empty = target
        .call(AdminRequest::List {
            offset: 0,
            limit: 1,
        })
        .ok()
        .and_then(|v| serde_json::from_value::<KeyList>(v).ok())
        .is_some_and(|l| l.total_count == 0);
    let creates = match cfg.create_policy_keys {
        PolicyKeyCreation::Always => true,
        PolicyKeyCreation::Never => false,
        PolicyKeyCreation::EmptyStoreOnly => empty,
    };
    let mut failed = 0;
    for (p, missing) in super::policy::missing_keys_in(&set, &target, &shown) {
        let by_route = p.field.as_deref() == Some("key");
        match missing {
            // a KeyId is never created, only an alias
            Some(key) if by_route && creates && crate::keys::KeyId::parse(&key).is_none() => {
                let _ = writeln!(out, "note: `serve` will create key '{key}' for {p}");
            }
            Some(_) if !by_route => {
                let _ = writeln!(err, "warning: {p}");
            }
            _ => {
                let _ = writeln!(err, "error: {p}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(ConfigCheckFailed(failed));
    }
    let _ = writeln!(
        out,
        "keys OK: the key store in {shown} has every key routes seal under"
    );
    Ok(())
}
