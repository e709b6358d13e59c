//! `sealgate keys …`: manage CMKs in the key store. Opens the store in the
//! data directory; when a running server holds it, sends the same request
//! over the server's admin socket instead.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::keys::admin::{self, AdminClient, AdminRequest};
use crate::keys::model::{Backup, CreateKeyRequest, KeyCommand, KeyOrigin, KeyUsage, Tag};
use crate::keys::store::{KeyList, ADMIN_SOCKET};
use crate::keys::{
    ImportReport, KeyError, KeyMetadata, KeyStore, RootKeySource, StoreError, StoreOptions,
};

/// Default data directory (the one `serve` uses).
pub use crate::config::DEFAULT_DATA_DIR;

/// Errors of the key and credential commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key store refused the operation.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// `--usage` names no usage this store can create.
    #[error(
        "key usage {0:?} is not one this store can create; valid usages: {names}",
        names = usage_names()
    )]
    UnknownUsage(String),
    /// `--alias` breaks the alias rule.
    #[error("invalid alias {0:?}: {rule}", rule = crate::keys::model::ALIAS_RULE)]
    InvalidAlias(String),
    /// No key has this KeyId or alias.
    #[error("no key with KeyId or alias {0:?} in this store (`sealgate keys list` shows them)")]
    KeyNotFound(String),
    /// `keys rotate` on an asymmetric key.
    #[error("{}", not_rotatable(.key, .usage))]
    NotRotatable {
        /// The key as named on the command line.
        key: String,
        /// Its usage, when it could be looked up.
        usage: Option<KeyUsage>,
    },
    /// The data directory holds no key store, and this command does not
    /// create one (a mistyped path must not become a new store and root key).
    #[error(
        "no key store in {}: this command does not create one; check --data-dir, \
         SEALGATE_DATA_DIR or data_dir in the config, or create a store with \
         `sealgate keys init --data-dir {}`",
        .0.display(), .0.display()
    )]
    NoStore(PathBuf),
    /// `keys init` on a data directory that already holds a store.
    #[error("{} already holds a key store; `keys init` creates only new ones", .0.display())]
    StoreExists(PathBuf),
    /// The config file named by `--config` / `SEALGATE_CONFIG` is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where the store is, and how to print: the flags of [`StoreLocationArgs`]
/// already resolved against the config file, as `serve` resolves them.
#[derive(Debug, Clone)]
pub struct StoreArgs {
    /// Data directory of the key store.
    pub data_dir: PathBuf,
    /// Root key file (default: $SEALGATE_ROOT_KEY, else DATA_DIR/root.key).
    pub root_key_file: Option<PathBuf>,
    /// The PostgreSQL store, if not the embedded one in `data_dir`.
    pub store_url: Option<String>,
    /// Print JSON.
    pub json: bool,
}

/// The flags that say where the key store is, as given; every admin command
/// takes them and [`resolve`](Self::resolve)s them the way `serve` does.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreLocationArgs {
    /// Config file (TOML); its `data_dir` and `root_key_file` are used.
    #[arg(long, env = "SEALGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the key store (default: `data_dir` of the config,
    /// else ./sealgate-data).
    #[arg(long, env = "SEALGATE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Root key file (default: `root_key_file` of the config, else
    /// $SEALGATE_ROOT_KEY, else DATA_DIR/root.key).
    #[arg(long, value_name = "FILE")]
    pub root_key_file: Option<PathBuf>,
    /// Key store on PostgreSQL: postgres://USER@HOST:PORT/DB (default:
    /// `[store] url` of the config; without one, the embedded store in the
    /// data directory).
    #[arg(long = "store", env = "SEALGATE_STORE_URL", value_name = "URL")]
    pub store_url: Option<String>,
}

impl StoreLocationArgs {
    /// The store these flags name: each flag wins over the config file,
    /// the file over the default, exactly as for `serve`.
    pub fn resolve(&self) -> Result<crate::config::StoreLocation, crate::config::ConfigError> {
        crate::config::store_location(
            self.config.as_deref(),
            &crate::config::Overrides {
                data_dir: self.data_dir.clone(),
                root_key_file: self.root_key_file.clone(),
                store_url: self.store_url.clone(),
                ..Default::default()
            },
        )
    }
}

/// [`StoreArgs`] as parsed, before the config file is read.
#[derive(clap::Args)]
struct StoreFlags {
    #[command(flatten)]
    location: StoreLocationArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

// `StoreArgs` parses through `StoreFlags` and resolves the location while
// parsing, so every command (and `credentials`, which reads `data_dir`
// directly) sees the directory `serve` would use.
impl clap::FromArgMatches for StoreArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let flags = StoreFlags::from_arg_matches(m)?;
        let location = flags.location.resolve().map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{e}\n"))
        })?;
        Ok(StoreArgs {
            data_dir: location.data_dir,
            root_key_file: location.root_key_file,
            store_url: location.url,
            json: flags.json,
        })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for StoreArgs {
    fn group_id() -> Option<clap::Id> {
        StoreFlags::group_id()
    }

    fn augment_args(cmd: clap::Command) -> clap::Command {
        StoreFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        StoreFlags::augment_args_for_update(cmd)
    }
}

/// `sealgate keys` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a new, empty key store (and its root key, unless one is given).
    /// The only admin command that creates a store; `serve` also does on
    /// first start.
    Init {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create a key; returns once it is durable.
    Create {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// Unique alias: 1-60 of letters, digits, '-', '_', starting with a
        /// letter or digit, not "kms-…", not a UUID.
        #[arg(long)]
        alias: Option<String>,
        /// Description (at most 1024 bytes).
        #[arg(long, default_value = "")]
        description: String,
        /// Key usage: symmetric keys encrypt and rotate; asymmetric key pairs
        /// sign or decrypt and never rotate.
        #[arg(long, default_value = "ENCRYPT_DECRYPT", value_parser = usage_parser())]
        usage: String,
        /// 1 = material made here, 2 = EXTERNAL (import material later).
        #[arg(long = "type", default_value_t = 1)]
        key_type: u32,
        /// Tag, KEY=VALUE (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Creator recorded with the key.
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// List keys.
    List {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// Keys to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Most keys to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Describe a key.
    Describe {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// KeyId or alias.
        key: String,
    },
    /// Stop decrypting versions below N (after `sealgate rewrap`); 1 = all again.
    SetMinDecryptionVersion {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// KeyId or alias.
        key: String,
        /// The lowest version that still decrypts (at most the primary).
        version: u32,
    },
    /// Make a new primary version of a key.
    Rotate {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// KeyId or alias.
        key: String,
    },
    /// Enable a key.
    Enable {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// KeyId or alias.
        key: String,
    },
    /// Disable a key (it neither seals nor opens).
    Disable {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// KeyId or alias.
        key: String,
    },
    /// Schedule a key's deletion after a pending window.
    ScheduleDeletion {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// KeyId or alias.
        key: String,
        /// Pending window in days (7-30).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Cancel a scheduled deletion (the key comes back disabled).
    CancelDeletion {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// KeyId or alias.
        key: String,
    },
    /// Write a backup file (material stays sealed under the root key).
    Export {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// Backup file to create (must not exist).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Restore a backup file made under the same root key.
    Import {
        /// Store and output options.
        #[command(flatten)]
        store: StoreArgs,
        /// Backup file.
        file: PathBuf,
    },
}

/// The store to talk to: opened here, or a running server's admin socket.
pub(crate) enum Target {
    Local(Box<KeyStore>),
    Remote(AdminClient),
}

impl Target {
    /// Opens the store in `args.data_dir`, or, if another process holds
    /// it, connects to that process's admin socket. A directory without a
    /// store is an error: only `keys init` and `serve` create one.
    pub(crate) fn open(args: &StoreArgs) -> Result<Target, CliError> {
        if let Some(url) = &args.store_url {
            // PostgreSQL serves every node and command at once: no lock, no
            // admin socket; a change made here reaches the servers by the
            // store's own propagation
            let store = KeyStore::open_postgres_existing(
                url,
                &args.data_dir,
                root_source(args),
                StoreOptions::default(),
            )?;
            return Ok(Target::Local(Box::new(store)));
        }
        if !store_exists(&args.data_dir)? {
            return Err(CliError::NoStore(args.data_dir.clone()));
        }
        // a lock without an admin socket is another short-lived command (or
        // a child process between fork and exec still sharing the lock's file
        // description): wait a moment for it rather than fail at once
        let mut waited = 0;
        loop {
            match KeyStore::open(&args.data_dir, root_source(args), StoreOptions::default()) {
                Ok(store) => return Ok(Target::Local(Box::new(store))),
                Err(StoreError::Locked(dir)) => {
                    let sock = dir.join(ADMIN_SOCKET);
                    if sock.exists() {
                        return Ok(Target::Remote(AdminClient::new(sock)));
                    }
                    if waited >= 40 {
                        return Err(StoreError::Locked(dir).into());
                    }
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends one request.
    pub(crate) fn call(&self, req: AdminRequest) -> Result<Value, CliError> {
        Ok(match self {
            Target::Local(store) => admin::handle(store, req)?,
            Target::Remote(client) => client.request(&req)?,
        })
    }
}

fn root_source(args: &StoreArgs) -> RootKeySource {
    match &args.root_key_file {
        Some(p) => RootKeySource::File(p.clone()),
        None => RootKeySource::Auto,
    }
}

/// Whether `dir` holds a key store (its database file); an unreadable
/// directory is an error naming it, not "no store".
fn store_exists(dir: &Path) -> Result<bool, CliError> {
    let db = dir.join(crate::keys::store::DB_FILE);
    db.try_exists()
        .map_err(|source| CliError::Io { path: db, source })
}

/// `keys init`: creates the store (and a root key file when none is given
/// and `SEALGATE_ROOT_KEY` is unset); refuses a directory that has one.
fn init(out: &mut dyn Write, args: &StoreArgs) -> Result<(), CliError> {
    if let Some(url) = &args.store_url {
        let shown = crate::keys::StoreUrl::parse(url)
            .map_err(|m| CliError::Usage(format!("--store: {m}")))?
            .to_string();
        match KeyStore::open_postgres_existing(
            url,
            &args.data_dir,
            root_source(args),
            StoreOptions::default(),
        ) {
            Ok(_) => return Err(CliError::StoreExists(PathBuf::from(shown))),
            Err(StoreError::Uninitialized(_)) => {}
            Err(e) => return Err(e.into()),
        }
        drop(KeyStore::open_postgres(
            url,
            &args.data_dir,
            root_source(args),
            StoreOptions::default(),
        )?);
        if args.json {
            return print_json(out, &serde_json::json!({ "Store": shown }));
        }
        return writeln!(
            out,
            "Created key store in {shown} (back up the root key and keep it off the data disk)"
        )
        .map_err(stdout_err);
    }
    if store_exists(&args.data_dir)? {
        return Err(CliError::StoreExists(args.data_dir.clone()));
    }
    let store = KeyStore::open(&args.data_dir, root_source(args), StoreOptions::default())?;
    drop(store);
    let dir = args.data_dir.display().to_string();
    if args.json {
        return print_json(out, &serde_json::json!({ "DataDir": dir }));
    }
    writeln!(
        out,
        "Created key store in {dir} (back up the root key and keep it off the data disk)"
    )
    .map_err(stdout_err)
}

pub(crate) fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CliError> {
    serde_json::from_value(v)
        .map_err(|e| CliError::Key(KeyError::Store(format!("bad answer: {e}"))))
}

pub(crate) fn print_json(out: &mut dyn Write, v: &Value) -> Result<(), CliError> {
    writeln!(out, "{v}").map_err(stdout_err)
}

pub(crate) fn stdout_err(source: std::io::Error) -> CliError {
    CliError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    }
}

/// The usages `keys create` accepts: every usage but SM2, which has no
/// material here (see [`KeyUsage::is_supported`]).
fn creatable_usages() -> impl Iterator<Item = KeyUsage> {
    KeyUsage::ALL.into_iter().filter(KeyUsage::is_supported)
}

/// The creatable usages, comma-separated, for error messages.
fn usage_names() -> String {
    creatable_usages()
        .map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line on what a usage's key is, for `keys create --help`.
fn usage_help(u: KeyUsage) -> &'static str {
    match u {
        KeyUsage::EncryptDecrypt => "AES-256 symmetric key: encrypt/decrypt, data keys (rotates)",
        KeyUsage::EncryptDecryptAes128 => "AES-128 symmetric key: encrypt/decrypt (rotates)",
        KeyUsage::AsymmetricDecryptRsa2048 => "RSA-2048 key pair: decrypt",
        KeyUsage::AsymmetricDecryptRsa3072 => "RSA-3072 key pair: decrypt",
        KeyUsage::AsymmetricSignVerifyRsa2048 => "RSA-2048 key pair: sign/verify",
        KeyUsage::AsymmetricSignVerifyRsa3072 => "RSA-3072 key pair: sign/verify",
        KeyUsage::AsymmetricSignVerifyRsa4096 => "RSA-4096 key pair: sign/verify",
        KeyUsage::AsymmetricSignVerifyEcc => "ECDSA P-256 key pair: sign/verify",
        KeyUsage::AsymmetricSignVerifyEcdsa384 => "ECDSA P-384 key pair: sign/verify",
        KeyUsage::AsymmetricDecryptSm2 | KeyUsage::AsymmetricSignVerifySm2 => "SM2 (not supported)",
    }
}

/// `--usage`'s parser: clap lists these values in `--help` and in the
/// error for any other value.
fn usage_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        creatable_usages()
            .map(|u| clap::builder::PossibleValue::new(u.as_str()).help(usage_help(u))),
    )
}

/// The `keys create --usage` value, or an error listing the valid ones
/// (for callers of [`run_to`] that bypass clap's parser).
fn parse_usage(usage: &str) -> Result<KeyUsage, CliError> {
    usage
        .parse::<KeyUsage>()
        .ok()
        .filter(KeyUsage::is_supported)
        .ok_or_else(|| CliError::UnknownUsage(usage.to_string()))
}

fn not_rotatable(key: &str, usage: &Option<KeyUsage>) -> String {
    let symmetric = KeyUsage::ALL
        .into_iter()
        .filter(KeyUsage::is_symmetric)
        .map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let what = usage.map_or_else(|| "an asymmetric key".to_string(), |u| format!("{u}"));
    format!(
        "key {key:?} is {what}: only symmetric keys ({symmetric}) rotate; an asymmetric key \
         keeps its one key pair, so create a new key to replace it"
    )
}

/// Names the key in the errors that are about it: the store's own errors
/// (shared with the KMS faces) do not say which key.
fn about_key(key: &str, e: CliError) -> CliError {
    match e {
        CliError::Key(KeyError::CmkNotFound) => CliError::KeyNotFound(key.to_string()),
        e => e,
    }
}

fn parse_tags(tags: &[String]) -> Result<Vec<Tag>, CliError> {
    tags.iter()
        .map(|t| {
            let (k, v) = t
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("tag {t:?} is not KEY=VALUE")))?;
            Ok(Tag {
                tag_key: k.into(),
                tag_value: v.into(),
            })
        })
        .collect()
}

/// Unix seconds as RFC 3339 UTC (`2025-01-31T12:00:00Z`), what a person
/// reads; the raw number if it is out of range (it never is for real keys).
pub(crate) fn rfc3339(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Writes `rows` under `headers` as columns two spaces apart, each as
/// wide as its widest cell (aliases and usages vary from 1 to 60 and 15
/// to 31 characters: fixed widths broke the alignment). The last column
/// is not padded, so lines carry no trailing blanks.
pub(crate) fn write_table(
    out: &mut dyn Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    write_row(out, &widths, headers)?;
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        write_row(out, &widths, &cells)?;
    }
    Ok(())
}

/// One line of [`write_table`].
fn write_row(out: &mut dyn Write, widths: &[usize], cells: &[&str]) -> std::io::Result<()> {
    let mut text = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            text.push_str("  ");
        }
        text.push_str(cell);
        let pad = w.saturating_sub(cell.chars().count());
        text.extend(std::iter::repeat_n(' ', pad));
    }
    writeln!(out, "{}", text.trim_end())
}

fn describe_text(out: &mut dyn Write, m: &KeyMetadata) -> std::io::Result<()> {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), rfc3339);
    writeln!(out, "KeyId:          {}", m.key_id)?;
    writeln!(out, "Alias:          {}", m.alias.as_deref().unwrap_or("-"))?;
    writeln!(out, "Description:    {}", m.description)?;
    writeln!(out, "KeyUsage:       {}", m.key_usage)?;
    writeln!(out, "Type:           {}", m.origin.type_number())?;
    writeln!(out, "KeyState:       {}", m.key_state)?;
    writeln!(out, "CreateTime:     {}", rfc3339(m.create_time))?;
    writeln!(out, "Owner:          {}", m.owner)?;
    for t in &m.tags {
        writeln!(out, "Tag:            {}={}", t.tag_key, t.tag_value)?;
    }
    writeln!(
        out,
        "Rotation:       {}",
        if m.key_rotation_enabled {
            format!(
                "every {} days, next {}",
                m.rotate_days,
                opt(m.next_rotate_time)
            )
        } else {
            "off".into()
        }
    )?;
    writeln!(out, "LastRotateTime: {}", opt(m.last_rotate_time))?;
    writeln!(out, "DeletionDate:   {}", opt(m.deletion_date))?;
    if let Some(v) = m.min_decryption_version {
        writeln!(out, "MinDecryptVer:  {v}")?;
    }
    writeln!(
        out,
        "Versions:       {} (primary {})",
        m.versions.len(),
        m.primary_version
            .map_or_else(|| "-".into(), |v| v.to_string())
    )
}

fn key_result(out: &mut dyn Write, json: bool, v: Value, verb: &str) -> Result<(), CliError> {
    if json {
        return print_json(out, &v);
    }
    let m: KeyMetadata = from_value(v)?;
    if !verb.is_empty() {
        writeln!(out, "{verb} key {}", m.key_id).map_err(stdout_err)?;
    }
    describe_text(out, &m).map_err(stdout_err)
}

/// Runs one `keys` subcommand, printing to stdout.
pub fn run(cmd: KeysCommand) -> Result<(), CliError> {
    run_to(cmd, &mut std::io::stdout().lock())
}

/// Runs one `keys` subcommand, printing to `out`.
pub fn run_to(cmd: KeysCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Init { store } => init(out, &store),
        KeysCommand::Create {
            store,
            alias,
            description,
            usage,
            key_type,
            tags,
            owner,
        } => {
            let key_usage = parse_usage(&usage)?;
            if let Some(a) = &alias {
                // checked here, before the store opens, to quote the rule
                crate::keys::model::validate_alias(a)
                    .map_err(|_| CliError::InvalidAlias(a.clone()))?;
            }
            let req = CreateKeyRequest {
                alias,
                description,
                key_usage,
                origin: KeyOrigin::from_type(key_type)?,
                tags: parse_tags(&tags)?,
                owner,
            };
            let v = Target::open(&store)?.call(AdminRequest::Execute {
                command: KeyCommand::Create(req),
            })?;
            key_result(out, store.json, v, "Created")
        }
        KeysCommand::List {
            store,
            offset,
            limit,
        } => {
            let v = Target::open(&store)?.call(AdminRequest::List { offset, limit })?;
            if store.json {
                return print_json(out, &v);
            }
            let list: KeyList = from_value(v)?;
            let rows = list
                .keys
                .iter()
                .map(|m| {
                    vec![
                        m.key_id.to_string(),
                        m.alias.clone().unwrap_or_else(|| "-".into()),
                        m.key_state.to_string(),
                        m.key_usage.to_string(),
                        m.primary_version
                            .map_or_else(|| "-".into(), |v| v.to_string()),
                        rfc3339(m.create_time),
                    ]
                })
                .collect::<Vec<_>>();
            let w = |out: &mut dyn Write| -> std::io::Result<()> {
                write_table(
                    out,
                    &["KEY ID", "ALIAS", "STATE", "USAGE", "VERSION", "CREATED"],
                    &rows,
                )?;
                writeln!(out, "{} of {} keys", list.keys.len(), list.total_count)
            };
            w(out).map_err(stdout_err)
        }
        KeysCommand::Describe { store, key } => {
            let v = Target::open(&store)?
                .call(AdminRequest::Describe { key: key.clone() })
                .map_err(|e| about_key(&key, e))?;
            key_result(out, store.json, v, "")
        }
        KeysCommand::SetMinDecryptionVersion {
            store,
            key,
            version,
        } => execute(
            out,
            &store,
            KeyCommand::SetMinDecryptionVersion { key, version },
            "Minimum decryption version set",
        ),
        KeysCommand::Rotate { store, key } => rotate(out, &store, key),
        KeysCommand::Enable { store, key } => {
            execute(out, &store, KeyCommand::Enable { key }, "Enabled")
        }
        KeysCommand::Disable { store, key } => {
            execute(out, &store, KeyCommand::Disable { key }, "Disabled")
        }
        KeysCommand::ScheduleDeletion { store, key, days } => execute(
            out,
            &store,
            KeyCommand::ScheduleDeletion {
                key,
                pending_window_days: days,
            },
            "Scheduled deletion of",
        ),
        KeysCommand::CancelDeletion { store, key } => execute(
            out,
            &store,
            KeyCommand::CancelDeletion { key },
            "Cancelled deletion of",
        ),
        KeysCommand::Export { store, out: file } => {
            let v = Target::open(&store)?.call(AdminRequest::Export)?;
            let backup: Backup = from_value(v)?;
            write_backup(&file, &backup)?;
            let summary = serde_json::json!({
                "File": file.display().to_string(),
                "Keys": backup.keys.len(),
                "Credentials": backup.credentials.len(),
            });
            if store.json {
                return print_json(out, &summary);
            }
            writeln!(
                out,
                "Exported {} keys and {} credentials to {} (material sealed under the root key; \
                 keep the root key backed up separately)",
                backup.keys.len(),
                backup.credentials.len(),
                file.display()
            )
            .map_err(stdout_err)
        }
        KeysCommand::Import { store, file } => {
            // the store first: restoring into a new directory needs `keys init`
            let target = Target::open(&store)?;
            let text = std::fs::read(&file).map_err(|source| CliError::Io {
                path: file.clone(),
                source,
            })?;
            let backup: Backup = serde_json::from_slice(&text).map_err(|e| {
                CliError::Usage(format!("{} is not a key backup: {e}", file.display()))
            })?;
            let v = target.call(AdminRequest::Import {
                backup: Box::new(backup),
            })?;
            if store.json {
                return print_json(out, &v);
            }
            let r: ImportReport = from_value(v)?;
            writeln!(
                out,
                "Imported {} keys ({} already present), {} credentials ({} already present)",
                r.keys_imported, r.keys_unchanged, r.credentials_imported, r.credentials_unchanged
            )
            .map_err(stdout_err)
        }
    }
}

fn execute(
    out: &mut dyn Write,
    store: &StoreArgs,
    command: KeyCommand,
    verb: &str,
) -> Result<(), CliError> {
    let key = command_key(&command).to_string();
    let v = Target::open(store)?
        .call(AdminRequest::Execute { command })
        .map_err(|e| about_key(&key, e))?;
    key_result(out, store.json, v, verb)
}

/// The key a single-key command names.
fn command_key(command: &KeyCommand) -> &str {
    match command {
        KeyCommand::SetMinDecryptionVersion { key, .. }
        | KeyCommand::Rotate { key }
        | KeyCommand::Enable { key }
        | KeyCommand::Disable { key }
        | KeyCommand::ScheduleDeletion { key, .. }
        | KeyCommand::CancelDeletion { key } => key.as_str(),
        _ => "",
    }
}

/// `keys rotate`: an asymmetric key is refused with a message that says
/// why (the store's `UsageMismatch` alone does not).
fn rotate(out: &mut dyn Write, store: &StoreArgs, key: String) -> Result<(), CliError> {
    let target = Target::open(store)?;
    let v = match target.call(AdminRequest::Execute {
        command: KeyCommand::Rotate { key: key.clone() },
    }) {
        Ok(v) => v,
        Err(CliError::Key(KeyError::UsageMismatch)) => {
            // only to name the usage; the refusal stands without it
            let usage = target
                .call(AdminRequest::Describe { key: key.clone() })
                .ok()
                .and_then(|v| from_value::<KeyMetadata>(v).ok())
                .map(|m| m.key_usage);
            return Err(CliError::NotRotatable { key, usage });
        }
        Err(e) => return Err(about_key(&key, e)),
    };
    key_result(out, store.json, v, "Rotated")
}

/// Writes a backup file with mode 0600; never replaces an existing file.
fn write_backup(path: &Path, backup: &Backup) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(backup)
        .map_err(|e| CliError::Key(KeyError::Store(e.to_string())))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(&json).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)
}
