//! `sealgate.toml` → [`Config`]: read, parse, validate — three steps.
//!
//! Raw `File*` types mirror the file (unknown fields are errors); [`Config`]
//! is the validated runtime value. Command-line flags arrive as
//! [`Overrides`] and win over the file.

use crate::ratelimit::{Period, Quota};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default proxy listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default maximum body size the proxy buffers to rewrite (4 MiB).
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// Default data directory of the key store, relative to the working
/// directory: `serve` and every admin command (`keys`, `credentials`,
/// `rewrap`) use it, so they find the same store.
pub const DEFAULT_DATA_DIR: &str = "sealgate-data";

/// A configuration error, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown / mistyped fields.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (names the field).
        message: String,
    },
    /// A value is out of range or missing.
    #[error("config {field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    upstream: Option<String>,
    policies: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    root_key_file: Option<PathBuf>,
    kms_listen: Option<String>,
    admin_listen: Option<String>,
    max_body_bytes: Option<usize>,
    #[serde(default)]
    timeouts: FileTimeouts,
    #[serde(default)]
    cache: FileCache,
    #[serde(default)]
    log: FileLog,
    max_keys: Option<usize>,
    max_connections: Option<usize>,
    #[serde(default)]
    kms_quotas: BTreeMap<String, u32>,
    #[serde(default)]
    kms: FileKms,
    tls: Option<FileListenerTls>,
    kms_tls: Option<FileListenerTls>,
    h2c: Option<bool>,
    upstream_tls: Option<FileUpstreamTls>,
    upstream_http2: Option<bool>,
    #[serde(default)]
    audit: FileAudit,
    #[serde(default)]
    reload: FileReload,
    shadow: Option<bool>,
    shadow_capture: Option<PathBuf>,
    shadow_capture_max_lines: Option<u64>,
    shadow_capture_sample: Option<f64>,
    #[serde(default)]
    proxy: FileProxy,
    #[serde(default)]
    keys: FileKeys,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    store: FileStore,
    provider: Option<FileProvider>,
    #[serde(default)]
    console: FileConsole,
}

/// `[console]`: the web console's listener, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConsole {
    listen: Option<String>,
    tls: Option<FileListenerTls>,
    sample_ms: Option<u64>,
}

/// `[provider]`: where the CMKs live (a remote KMS), as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    kind: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    secret_id_env: Option<String>,
    secret_key_env: Option<String>,
    retry_budget_ms: Option<u64>,
    call_timeout_ms: Option<u64>,
    max_concurrent_calls: Option<usize>,
}

/// `[limits]`: where quotas are counted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    url: Option<String>,
    nodes: Option<u32>,
    prefix: Option<String>,
}

/// `[store]`: where the key store lives when it is not the embedded one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    url: Option<String>,
}

/// `[kms.<dialect>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKms {
    #[serde(default)]
    tencent: FileKmsFace,
    #[serde(default)]
    alibaba: FileKmsFace,
    #[serde(default)]
    infisical: FileKmsFace,
}

/// `[kms.<dialect>.quotas]`: name → rate in that dialect's period.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKmsFace {
    #[serde(default)]
    quotas: BTreeMap<String, u32>,
}

/// The KMS dialect a quota table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaDialect {
    /// `[kms.tencent.quotas]`: Tencent action names, per second.
    Tencent,
    /// `[kms.alibaba.quotas]`: Alibaba quota classes, per second.
    Alibaba,
    /// `[kms.infisical.quotas]`: Infisical rate-limit classes, per minute.
    Infisical,
}

impl QuotaDialect {
    /// The table's name in the file.
    pub fn table(self) -> &'static str {
        match self {
            QuotaDialect::Tencent => "kms.tencent.quotas",
            QuotaDialect::Alibaba => "kms.alibaba.quotas",
            QuotaDialect::Infisical => "kms.infisical.quotas",
        }
    }

    /// The period this dialect documents its quotas in.
    pub fn period(self) -> Period {
        match self {
            QuotaDialect::Tencent | QuotaDialect::Alibaba => Period::Second,
            QuotaDialect::Infisical => Period::Minute,
        }
    }

    /// Every name this dialect's table accepts.
    pub fn names(self) -> Vec<&'static str> {
        match self {
            QuotaDialect::Tencent => crate::kms::tencent::wire::Action::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
            QuotaDialect::Alibaba => crate::kms::alibaba::wire::QuotaClass::ALL
                .iter()
                .map(|c| c.config_name())
                .collect(),
            QuotaDialect::Infisical => crate::kms::infisical::QUOTA_CLASSES.to_vec(),
        }
    }

    /// Why `name` is not in this dialect's table (a hint for a near miss).
    fn unknown(self, name: &str) -> String {
        let hint = match self {
            QuotaDialect::Alibaba => crate::kms::alibaba::wire::Action::from_name(name)
                .map(|a| {
                    format!(
                        "; Alibaba quotas are per class, and {name} counts under {:?}",
                        a.class().config_name()
                    )
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        let dialect = match self {
            QuotaDialect::Tencent => "Tencent action",
            QuotaDialect::Alibaba => "Alibaba quota class",
            QuotaDialect::Infisical => "Infisical rate-limit class",
        };
        format!(
            "{name:?} is not a {dialect} (one of: {}){hint}",
            self.names().join(", ")
        )
    }
}

/// The KMS faces' quota overrides, validated per dialect: each table maps a
/// name that dialect knows (Tencent: action; Alibaba: quota class;
/// Infisical: class) to a [`Quota`] in that dialect's period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KmsQuotas {
    /// Tencent action → quota (per second).
    pub tencent: BTreeMap<String, Quota>,
    /// Alibaba quota class (`CreateKey`, `read`, `write`,
    /// `symmetric-crypto`, `asymmetric-crypto`) → quota (per second).
    pub alibaba: BTreeMap<String, Quota>,
    /// Infisical class (`read`, `write`, `global`, `login`) → quota (per minute).
    pub infisical: BTreeMap<String, Quota>,
}

impl KmsQuotas {
    /// Sets `name` in `dialect`'s table to `rate` per that dialect's period;
    /// a name the dialect does not know is an error naming it and the dialect.
    pub fn set(&mut self, dialect: QuotaDialect, name: &str, rate: u32) -> Result<(), ConfigError> {
        if !dialect.names().contains(&name) {
            return Err(ConfigError::Invalid {
                field: dialect.table(),
                message: dialect.unknown(name),
            });
        }
        let table = match dialect {
            QuotaDialect::Tencent => &mut self.tencent,
            QuotaDialect::Alibaba => &mut self.alibaba,
            QuotaDialect::Infisical => &mut self.infisical,
        };
        table.insert(name.to_string(), Quota::per(rate, dialect.period()));
        Ok(())
    }

    /// Sets one entry of the older flat `[kms_quotas]` table: a Tencent
    /// action (`Encrypt`), `alibaba:<class>` or `infisical_<class>_per_minute`.
    /// A name no dialect knows is an error naming it.
    pub fn set_legacy(&mut self, name: &str, rate: u32) -> Result<(), ConfigError> {
        let (dialect, short) = if let Some(class) = name.strip_prefix("alibaba:") {
            (QuotaDialect::Alibaba, class)
        } else if let Some(class) = name
            .strip_prefix("infisical_")
            .and_then(|r| r.strip_suffix("_per_minute"))
        {
            (QuotaDialect::Infisical, class)
        } else {
            (QuotaDialect::Tencent, name)
        };
        self.set(dialect, short, rate)
            .map_err(|_| ConfigError::Invalid {
                field: "kms_quotas",
                message: format!(
                    "{name:?} is not a quota any KMS dialect knows: {} (prefer [{}])",
                    dialect.unknown(short),
                    dialect.table()
                ),
            })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    create_policy_keys: Option<bool>,
}

/// `[keys] create_policy_keys`: whether a key a policy names and the store
/// lacks is created at start and on reload. A typo in a policy's `key` must
/// not silently become a new CMK that data is then sealed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyKeyCreation {
    /// Unset (the default): created only while the store holds no key at
    /// all — the first start on a new data directory, as in the demo;
    /// otherwise a missing key is an error.
    #[default]
    EmptyStoreOnly,
    /// `true` / `--create-policy-keys`: always created (each logged at WARN).
    Always,
    /// `false` / `--create-policy-keys=false`: never; a missing key is an error.
    Never,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProxy {
    unmatched_hosts: Option<UnmatchedHosts>,
}

/// `[proxy] unmatched_hosts`: what happens to a request for a host no route names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnmatchedHosts {
    /// Forward it (the default, for compatibility): only host-less routes apply.
    #[default]
    Pass,
    /// Answer 421 `misdirected_request`: every name the upstream answers to
    /// must be covered by a route, so another spelling of it cannot dodge one.
    Refuse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListenerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    http2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstreamTls {
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    file: Option<PathBuf>,
    stdout: Option<bool>,
    queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReload {
    watch: Option<bool>,
    poll_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    connect_ms: Option<u64>,
    upstream_ms: Option<u64>,
    header_read_ms: Option<u64>,
    drain_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    enabled: Option<bool>,
    max_age_secs: Option<u64>,
    max_messages: Option<u64>,
    max_bytes: Option<u64>,
    capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
    format: Option<String>,
}

/// Values given on the command line; each wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--upstream`
    pub upstream: Option<String>,
    /// `--policies`
    pub policies: Option<PathBuf>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--kms-listen`
    pub kms_listen: Option<String>,
    /// `--root-key-file`
    pub root_key_file: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<String>,
    /// `--log-level`
    pub log_level: Option<String>,
    /// `--admin-listen`
    pub admin_listen: Option<String>,
    /// `--audit-file`
    pub audit_file: Option<PathBuf>,
    /// `--shadow`: every route (and the whole proxy) in shadow mode.
    pub shadow: Option<bool>,
    /// `--shadow-capture FILE`
    pub shadow_capture: Option<PathBuf>,
    /// `--tls-cert FILE`: `[tls] cert_file`
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key FILE`: `[tls] key_file`
    pub tls_key: Option<PathBuf>,
    /// `--tls-client-ca FILE`: `[tls] client_ca_file`
    pub tls_client_ca: Option<PathBuf>,
    /// `--kms-tls-cert FILE`: `[kms_tls] cert_file`
    pub kms_tls_cert: Option<PathBuf>,
    /// `--kms-tls-key FILE`: `[kms_tls] key_file`
    pub kms_tls_key: Option<PathBuf>,
    /// `--kms-tls-client-ca FILE`: `[kms_tls] client_ca_file`
    pub kms_tls_client_ca: Option<PathBuf>,
    /// `--upstream-ca FILE`: `[upstream_tls] ca_file`
    pub upstream_ca: Option<PathBuf>,
    /// `--upstream-server-name NAME`: `[upstream_tls] server_name`
    pub upstream_server_name: Option<String>,
    /// `--create-policy-keys[=BOOL]`: `[keys] create_policy_keys`
    pub create_policy_keys: Option<bool>,
    /// `--limits URL` / `SEALGATE_LIMITS_URL`: `[limits] url`
    pub limits: Option<String>,
    /// `--store URL` (or `SEALGATE_STORE_URL`): `[store] url`
    pub store_url: Option<String>,
    /// `--console-listen ADDR`: `[console] listen`
    pub console_listen: Option<String>,
}

/// The flags that stand for one listener's TLS table.
struct ListenerTlsFlags<'a> {
    table: &'static str,
    cert_flag: &'static str,
    key_flag: &'static str,
    ca_flag: &'static str,
    cert: &'a Option<PathBuf>,
    key: &'a Option<PathBuf>,
    client_ca: &'a Option<PathBuf>,
}

/// A listener's TLS from its table and its flags, each flag winning over
/// its key; a certificate without a key (or the reverse) is refused naming
/// the missing flag.
fn listener_tls(
    file: Option<FileListenerTls>,
    flags: ListenerTlsFlags<'_>,
) -> Result<Option<ListenerTls>, ConfigError> {
    let (mut cert, mut key, mut client_ca, http2) = match file {
        Some(t) => (
            Some(t.cert_file),
            Some(t.key_file),
            t.client_ca_file,
            t.http2,
        ),
        None => (None, None, None, None),
    };
    if let Some(c) = flags.cert {
        cert = Some(c.clone());
    }
    if let Some(k) = flags.key {
        key = Some(k.clone());
    }
    if let Some(ca) = flags.client_ca {
        client_ca = Some(ca.clone());
    }
    match (cert, key) {
        (Some(cert_file), Some(key_file)) => Ok(Some(ListenerTls {
            cert_file,
            key_file,
            client_ca_file: client_ca,
            http2: http2.unwrap_or(true),
        })),
        (Some(_), None) => Err(ConfigError::Invalid {
            field: flags.key_flag,
            message: format!(
                "{} is set, so its private key is needed too",
                flags.cert_flag
            ),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            field: flags.cert_flag,
            message: format!(
                "{} is set, so its certificate is needed too",
                flags.key_flag
            ),
        }),
        (None, None) if client_ca.is_some() => Err(ConfigError::Invalid {
            field: flags.ca_flag,
            message: format!(
                "client certificates need TLS: set {} and {} (or the [{}] table) too",
                flags.cert_flag, flags.key_flag, flags.table
            ),
        }),
        (None, None) => Ok(None),
    }
}

/// Where shadow mode writes its capture of observed fields (JSON lines of
/// `policy::suggest::Observation`: field paths and value classes, never values).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowCapture {
    /// `shadow_capture`: the file (appended to).
    pub file: PathBuf,
    /// `shadow_capture_max_lines` (default 100000): lines written at most
    /// by one process; later observations are dropped.
    pub max_lines: u64,
    /// `shadow_capture_sample` (default 1.0): the fraction of requests
    /// whose bodies are observed, in (0, 1]; chosen evenly, not randomly.
    pub sample: f64,
}

/// Default most lines one process writes to the shadow capture.
pub const DEFAULT_CAPTURE_MAX_LINES: u64 = 100_000;

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    /// Appended to this file (its chain continued across restarts).
    File(PathBuf),
    /// Standard output (logs go to standard error).
    Stdout,
}

/// The audit log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Where records go; `None`: no audit log.
    pub sink: Option<AuditSink>,
    /// Records that may wait for the writer before new ones are dropped.
    pub queue: usize,
}

/// Policy hot-reload settings (SIGHUP always reloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    /// Watch the policy directory and reload when a file changes.
    pub watch: bool,
    /// How often the directory is checked.
    pub poll: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Data-key cache settings (see `keys::cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Cache on (off only for benchmarks).
    pub enabled: bool,
    /// Maximum age of a cached data key.
    pub max_age: Duration,
    /// Maximum values sealed under one data key.
    pub max_messages: u64,
    /// Maximum plaintext bytes sealed under one data key.
    pub max_bytes: u64,
    /// Maximum cached keys.
    pub capacity: usize,
}

/// TLS on one listener (`[tls]` for the proxy, `[kms_tls]` for the KMS).
///
/// The certificate and key files are re-read when they change on disk: new
/// handshakes get the new certificate, open connections keep theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// `cert_file`: PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// `key_file`: PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf.
    pub key_file: PathBuf,
    /// `client_ca_file`: PEM CA certificates; when set, every client must
    /// present a certificate issued by one of them (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// `http2` (default true): offer `h2` in ALPN beside `http/1.1`; false
    /// serves HTTP/1.1 only.
    pub http2: bool,
}

/// TLS to an `https://` upstream (`[upstream_tls]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// `ca_file`: PEM CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// `server_name`: the name sent as SNI and checked against the
    /// upstream's certificate, instead of the URL's host.
    pub server_name: Option<String>,
}

/// Which KMS holds the CMKs that wrap data keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// Tencent Cloud KMS, API 3.0 (TC3-HMAC-SHA256).
    Tencent,
    /// Alibaba Cloud KMS, OpenAPI 2016-01-20 (ACS3-HMAC-SHA256).
    Alibaba,
    /// Infisical KMS (universal-auth, bearer tokens renewed before expiry).
    Infisical,
}

impl ProviderKind {
    /// The name written in `[provider] kind`.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Tencent => "tencent",
            ProviderKind::Alibaba => "alibaba",
            ProviderKind::Infisical => "infisical",
        }
    }
}

/// `[provider]`: a remote KMS holds the CMKs; this node is its caching client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// The dialect.
    pub kind: ProviderKind,
    /// Base URL of the KMS API (`http://` or `https://`).
    pub endpoint: http::Uri,
    /// The region sent with every call.
    pub region: String,
    /// Name of the environment variable holding the SecretId.
    pub secret_id_env: String,
    /// Name of the environment variable holding the SecretKey.
    pub secret_key_env: String,
    /// Most time one key operation may spend on retries before it fails.
    pub retry_budget: Duration,
    /// Most time one remote call may take.
    pub call_timeout: Duration,
    /// Most remote calls in flight at once (bounds a miss storm).
    pub max_concurrent_calls: usize,
}

/// Validates `[provider]`; `None` (or `kind = "local"`) is the local store.
fn provider_settings(f: Option<FileProvider>) -> Result<Option<ProviderSettings>, ConfigError> {
    let Some(f) = f else { return Ok(None) };
    let invalid = |field: &'static str, message: String| ConfigError::Invalid { field, message };
    let kind = match f.kind.as_deref().unwrap_or("local") {
        "local" => return Ok(None),
        "tencent" => ProviderKind::Tencent,
        "alibaba" => ProviderKind::Alibaba,
        "infisical" => ProviderKind::Infisical,
        other => {
            return Err(invalid(
                "provider.kind",
                format!("{other:?} is not one of local, tencent, alibaba, infisical"),
            ))
        }
    };
    // Infisical has no regions
    let region = match (f.region.filter(|r| !r.trim().is_empty()), kind) {
        (Some(r), _) => r,
        (None, ProviderKind::Infisical) => String::new(),
        (None, _) => {
            return Err(invalid(
                "provider.region",
                format!("required for kind = \"{}\"", kind.name()),
            ))
        }
    };
    let endpoint_s = f.endpoint.unwrap_or_else(|| match kind {
        ProviderKind::Tencent => "https://kms.tencentcloudapi.com".into(),
        ProviderKind::Alibaba => format!("https://kms.{region}.aliyuncs.com"),
        ProviderKind::Infisical => "https://app.infisical.com".into(),
    });
    let endpoint: http::Uri = endpoint_s
        .parse()
        .map_err(|_| invalid("provider.endpoint", format!("{endpoint_s:?} is not a URL")))?;
    // a password in the URL would travel into every message naming the provider
    if endpoint
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(invalid(
            "provider.endpoint",
            "must not carry credentials (user@host): they come from secret_id_env / secret_key_env"
                .into(),
        ));
    }
    if !matches!(endpoint.scheme_str(), Some("http") | Some("https"))
        || endpoint.authority().is_none()
    {
        return Err(invalid(
            "provider.endpoint",
            format!("{endpoint_s:?} must be http://host[:port] or https://host[:port]"),
        ));
    }
    let env_name =
        |v: Option<String>, d: &str, field: &'static str| -> Result<String, ConfigError> {
            let v = v.unwrap_or_else(|| d.into());
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(invalid(
                    field,
                    format!("{v:?} is not an environment variable name"),
                ));
            }
            Ok(v)
        };
    let retry_budget = Duration::from_millis(f.retry_budget_ms.unwrap_or(2_000));
    if retry_budget.is_zero() || retry_budget > Duration::from_secs(60) {
        return Err(invalid(
            "provider.retry_budget_ms",
            "must be between 1 and 60000".into(),
        ));
    }
    let call_timeout = Duration::from_millis(f.call_timeout_ms.unwrap_or(1_000));
    if call_timeout.is_zero() {
        return Err(invalid(
            "provider.call_timeout_ms",
            "must be greater than 0".into(),
        ));
    }
    let max_concurrent_calls = f.max_concurrent_calls.unwrap_or(16);
    if max_concurrent_calls == 0 || max_concurrent_calls > 4096 {
        return Err(invalid(
            "provider.max_concurrent_calls",
            "must be between 1 and 4096".into(),
        ));
    }
    Ok(Some(ProviderSettings {
        kind,
        endpoint,
        region,
        secret_id_env: env_name(
            f.secret_id_env,
            "SEALGATE_PROVIDER_SECRET_ID",
            "provider.secret_id_env",
        )?,
        secret_key_env: env_name(
            f.secret_key_env,
            "SEALGATE_PROVIDER_SECRET_KEY",
            "provider.secret_key_env",
        )?,
        retry_budget,
        call_timeout,
        max_concurrent_calls,
    }))
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Proxy listen address.
    pub listen: SocketAddr,
    /// Upstream base URL (http://host:port[/base]).
    pub upstream: http::Uri,
    /// Policy directory.
    pub policies: PathBuf,
    /// Data directory of the key store.
    pub data_dir: PathBuf,
    /// Root key file, if not the default `<data-dir>/root.key`.
    pub root_key_file: Option<PathBuf>,
    /// `[store] url`: the PostgreSQL key store (`postgres://…`) the nodes of
    /// a fleet share; `None` = the embedded store in `data_dir`.
    pub store_url: Option<String>,
    /// KMS listener address, if the KMS faces are served.
    pub kms_listen: Option<SocketAddr>,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`), if served.
    pub admin_listen: Option<SocketAddr>,
    /// Default maximum body size the proxy buffers.
    pub max_body_bytes: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream response-head timeout.
    pub upstream_timeout: Duration,
    /// Client header-read timeout.
    pub header_read_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// Data-key cache.
    pub cache: CacheSettings,
    /// Log filter (`RUST_LOG` wins when set).
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Maximum number of CMKs in the store.
    pub max_keys: usize,
    /// Most client connections the proxy holds open at once; past it a new
    /// connection is closed at once (default 10,000).
    pub max_connections: usize,
    /// KMS quota overrides per dialect (`[kms.<dialect>.quotas]`, and the
    /// older flat `[kms_quotas]`), validated against each dialect's names.
    pub kms_quotas: KmsQuotas,
    /// `[tls]`: TLS on the proxy listener (plaintext when absent).
    pub tls: Option<ListenerTls>,
    /// `[kms_tls]`: TLS on the KMS listener (plaintext when absent).
    pub kms_tls: Option<ListenerTls>,
    /// `h2c` (default true): plaintext listeners also accept HTTP/2 with
    /// prior knowledge; false serves HTTP/1.1 only.
    pub h2c: bool,
    /// `[upstream_tls]`: trust and name for an `https://` upstream.
    pub upstream_tls: UpstreamTls,
    /// `upstream_http2` (default false): speak HTTP/2 to the upstream (ALPN
    /// `h2` over TLS, prior-knowledge h2c over `http://`).
    pub upstream_http2: bool,
    /// The audit log.
    pub audit: AuditSettings,
    /// Policy hot reload.
    pub reload: ReloadSettings,
    /// `shadow` (default false): run every route in shadow mode — traffic
    /// passes unchanged and what the policies would do is reported.
    pub shadow: bool,
    /// `shadow_capture`: observe JSON bodies into a capture file for
    /// `sealgate policy suggest`.
    pub shadow_capture: Option<ShadowCapture>,
    /// `[proxy] unmatched_hosts` (default pass).
    pub unmatched_hosts: UnmatchedHosts,
    /// `[keys] create_policy_keys` (default: only on an empty store).
    pub create_policy_keys: PolicyKeyCreation,
    /// `[limits]`: quotas counted in Redis, shared by the nodes (`None`:
    /// counted in this process).
    pub limits: Option<crate::limits::LimitsConfig>,
    /// `[provider]`: the remote KMS holding the CMKs (`None`: the local store).
    pub provider: Option<ProviderSettings>,
    /// `[console]`: the web console (`None`: off, the default).
    pub console: Option<ConsoleSettings>,
}

/// `[console]`: where the web console listens (see `docs/console.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// `listen` (`--console-listen`): a loopback address unless `tls` is set.
    pub listen: SocketAddr,
    /// `[console.tls]`: TLS on the console listener; with `client_ca_file`,
    /// a verified client certificate authenticates (no token needed).
    pub tls: Option<ListenerTls>,
    /// `sample_ms` (default 5000, at least 100): how often the counters
    /// are sampled for the console's plots (120 samples are kept).
    pub sample_every: Duration,
}

/// `[console]` with `--console-listen` over the file's `listen`; `None`
/// when neither sets an address. A non-loopback address needs TLS.
fn console_settings(
    f: FileConsole,
    flag: Option<&str>,
) -> Result<Option<ConsoleSettings>, ConfigError> {
    let tls = listener_tls(
        f.tls,
        ListenerTlsFlags {
            table: "console.tls",
            cert_flag: "console.tls.cert_file",
            key_flag: "console.tls.key_file",
            ca_flag: "console.tls.client_ca_file",
            cert: &None,
            key: &None,
            client_ca: &None,
        },
    )?;
    let Some(listen) = flag.or(f.listen.as_deref()) else {
        if tls.is_some() {
            return Err(ConfigError::Invalid {
                field: "console.tls",
                message:
                    "[console.tls] needs a console address: [console] listen or --console-listen"
                        .into(),
            });
        }
        return Ok(None);
    };
    let listen = addr("console.listen", listen)?;
    let sample_every = match f.sample_ms {
        None => Duration::from_secs(5),
        Some(ms) if ms >= 100 => Duration::from_millis(ms),
        Some(_) => {
            return Err(ConfigError::Invalid {
                field: "console.sample_ms",
                message: "must be at least 100".into(),
            })
        }
    };
    if !listen.ip().is_loopback() && tls.is_none() {
        return Err(ConfigError::Invalid {
            field: "console.listen",
            message: format!(
                "{listen} is not a loopback address: the console serves other hosts only over TLS; \
                 set [console.tls] cert_file and key_file (client_ca_file for mTLS), or listen on \
                 127.0.0.1"
            ),
        });
    }
    Ok(Some(ConsoleSettings {
        listen,
        tls,
        sample_every,
    }))
}

/// Reads, parses and validates `path` (if any) and applies `overrides`.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    validate(read_and_parse(path)?, overrides)
}

/// Where the key store lives: the data directory and the root key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    /// Data directory of the key store.
    pub data_dir: PathBuf,
    /// Root key file, if not the default (`SEALGATE_ROOT_KEY`, else
    /// `<data-dir>/root.key`).
    pub root_key_file: Option<PathBuf>,
    /// The PostgreSQL store's URL, if the store is not the embedded one.
    pub url: Option<String>,
}

/// The key store's location from the config file `path` (if any) and
/// `overrides`, resolved exactly as [`load`] resolves it for `serve`, without
/// validating the rest: the admin commands (`keys`, `credentials`, `rewrap`)
/// need no upstream, but must open the store `serve` opens.
pub fn store_location(
    path: Option<&Path>,
    overrides: &Overrides,
) -> Result<StoreLocation, ConfigError> {
    let mut file = read_and_parse(path)?;
    if let Some(p) = provider_settings(file.provider.take())? {
        // a provider node keeps no key store: there is none to administer
        return Err(ConfigError::Invalid {
            field: "provider",
            message: format!(
                "the CMKs of this config are held by the {} KMS at {}, and its nodes keep no \
                 key store: manage the keys in that KMS",
                p.kind.name(),
                p.endpoint
            ),
        });
    }
    let location = store_location_of(&file, overrides);
    check_store_url(location.url.as_deref())?;
    Ok(location)
}

/// A node whose CMKs live in a remote KMS holds no key store (no root key,
/// no store file): the settings only a local store uses are refused rather
/// than silently ignored.
fn check_provider_node(
    p: &ProviderSettings,
    store: &StoreLocation,
    kms_listen: bool,
) -> Result<(), ConfigError> {
    let refuse = |field: &'static str, what: &str| {
        Err(ConfigError::Invalid {
            field,
            message: format!(
                "{what} cannot be used with [provider]: the CMKs are held by the {} KMS, and \
                 this node keeps no key store of its own",
                p.kind.name()
            ),
        })
    };
    if kms_listen {
        return refuse(
            "kms_listen",
            "the KMS listener (it serves the local key store)",
        );
    }
    if store.url.is_some() {
        return refuse("store.url", "a key store URL");
    }
    if store.root_key_file.is_some() {
        return refuse("root_key_file", "a root key file");
    }
    Ok(())
}

/// A `store.url` must be a PostgreSQL URL; the error never repeats it (it
/// may hold a password).
fn check_store_url(url: Option<&str>) -> Result<(), ConfigError> {
    match url {
        None => Ok(()),
        Some(u) => crate::keys::StoreUrl::parse(u)
            .map(drop)
            .map_err(|message| ConfigError::Invalid {
                field: "store.url",
                message,
            }),
    }
}

/// Flags win over the file; the file wins over the default.
fn store_location_of(f: &FileConfig, o: &Overrides) -> StoreLocation {
    StoreLocation {
        url: o
            .store_url
            .clone()
            .or_else(|| f.store.url.clone())
            .filter(|u| !u.is_empty()),
        data_dir: o
            .data_dir
            .clone()
            .or_else(|| f.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        root_key_file: o.root_key_file.clone().or_else(|| f.root_key_file.clone()),
    }
}

fn read_and_parse(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let (name, text) = match path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
        ),
        None => ("<defaults>".to_string(), String::new()),
    };
    parse(&name, &text)
}

fn parse(name: &str, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: name.to_string(),
        message: e.to_string(),
    })
}

fn addr(field: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| ConfigError::Invalid {
        field,
        message: format!("{s:?} is not an address like 127.0.0.1:8080"),
    })
}

/// `[kms_quotas]` first, then the typed tables (which win on a name both set).
fn kms_quotas(f: &FileConfig) -> Result<KmsQuotas, ConfigError> {
    let mut q = KmsQuotas::default();
    for (name, rate) in &f.kms_quotas {
        q.set_legacy(name, *rate)?;
    }
    for (dialect, table) in [
        (QuotaDialect::Tencent, &f.kms.tencent.quotas),
        (QuotaDialect::Alibaba, &f.kms.alibaba.quotas),
        (QuotaDialect::Infisical, &f.kms.infisical.quotas),
    ] {
        for (name, rate) in table {
            q.set(dialect, name, *rate)?;
        }
    }
    Ok(q)
}

fn validate(mut f: FileConfig, o: &Overrides) -> Result<Config, ConfigError> {
    let kms_quotas = kms_quotas(&f)?;
    let provider = provider_settings(f.provider.take())?;
    let store = store_location_of(&f, o);
    check_store_url(store.url.as_deref())?;
    let listen = addr(
        "listen",
        o.listen
            .as_deref()
            .or(f.listen.as_deref())
            .unwrap_or(DEFAULT_LISTEN),
    )?;
    let upstream_s = o
        .upstream
        .clone()
        .or(f.upstream)
        .ok_or(ConfigError::Invalid {
            field: "upstream",
            message: "an upstream base URL is required (--upstream http://127.0.0.1:3000)".into(),
        })?;
    let upstream: http::Uri = upstream_s.parse().map_err(|_| ConfigError::Invalid {
        field: "upstream",
        message: format!("{upstream_s:?} is not a URL"),
    })?;
    match upstream.scheme_str() {
        Some("http") | Some("https") if upstream.authority().is_some() => {}
        _ => {
            return Err(ConfigError::Invalid {
                field: "upstream",
                message: format!("{upstream_s:?} must be http://host:port or https://host:port"),
            })
        }
    }
    let kms_listen = match o.kms_listen.as_deref().or(f.kms_listen.as_deref()) {
        Some(s) => Some(addr("kms_listen", s)?),
        None => None,
    };
    if let Some(p) = &provider {
        check_provider_node(p, &store, kms_listen.is_some())?;
    }
    let admin_listen = match o.admin_listen.as_deref().or(f.admin_listen.as_deref()) {
        Some(s) => Some(addr("admin_listen", s)?),
        None => None,
    };
    let audit_sink = match (
        o.audit_file.clone().or(f.audit.file),
        f.audit.stdout.unwrap_or(false),
    ) {
        (Some(_), true) if o.audit_file.is_none() => {
            return Err(ConfigError::Invalid {
                field: "audit",
                message: "set either audit.file or audit.stdout, not both".into(),
            })
        }
        (Some(p), _) => Some(AuditSink::File(p)),
        (None, true) => Some(AuditSink::Stdout),
        (None, false) => None,
    };
    let audit_queue = f.audit.queue.unwrap_or(8192);
    if audit_queue == 0 {
        return Err(ConfigError::Invalid {
            field: "audit.queue",
            message: "must be greater than 0".into(),
        });
    }
    let log_level = o
        .log_level
        .clone()
        .or(f.log.level)
        .unwrap_or_else(|| "info".into());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
        return Err(ConfigError::Invalid {
            field: "log.level",
            message: format!(
                "{log_level:?} is not a log filter like \"info\" or \"sealgate=debug,warn\": {e}"
            ),
        });
    }
    let max_body_bytes = f.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body_bytes == 0 {
        return Err(ConfigError::Invalid {
            field: "max_body_bytes",
            message: "must be greater than 0".into(),
        });
    }
    let ms = |v: Option<u64>, d: u64, field: &'static str| -> Result<Duration, ConfigError> {
        match v.unwrap_or(d) {
            0 => Err(ConfigError::Invalid {
                field,
                message: "must be greater than 0".into(),
            }),
            n => Ok(Duration::from_millis(n)),
        }
    };
    let cache = CacheSettings {
        enabled: f.cache.enabled.unwrap_or(true),
        max_age: Duration::from_secs(f.cache.max_age_secs.unwrap_or(300)),
        max_messages: f.cache.max_messages.unwrap_or(1 << 20),
        max_bytes: f.cache.max_bytes.unwrap_or(1 << 36),
        capacity: f.cache.capacity.unwrap_or(1024),
    };
    if cache.max_messages > 1 << 32 {
        return Err(ConfigError::Invalid {
            field: "cache.max_messages",
            message: "must be at most 2^32 (AES-GCM random-nonce bound)".into(),
        });
    }
    if cache.max_age.is_zero() || cache.max_age > Duration::from_secs(86_400) {
        return Err(ConfigError::Invalid {
            field: "cache.max_age_secs",
            message:
                "must be between 1 and 86400 (a cached key outlives a disable until it expires)"
                    .into(),
        });
    }
    let log_format = match o.log_format.as_deref().or(f.log.format.as_deref()) {
        None | Some("pretty") => LogFormat::Pretty,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::Invalid {
                field: "log.format",
                message: format!("{other:?}: expected \"pretty\" or \"json\""),
            })
        }
    };
    let tls = listener_tls(
        f.tls,
        ListenerTlsFlags {
            table: "tls",
            cert_flag: "--tls-cert",
            key_flag: "--tls-key",
            ca_flag: "--tls-client-ca",
            cert: &o.tls_cert,
            key: &o.tls_key,
            client_ca: &o.tls_client_ca,
        },
    )?;
    let kms_tls_from_flags =
        o.kms_tls_cert.is_some() || o.kms_tls_key.is_some() || o.kms_tls_client_ca.is_some();
    let kms_tls = listener_tls(
        f.kms_tls,
        ListenerTlsFlags {
            table: "kms_tls",
            cert_flag: "--kms-tls-cert",
            key_flag: "--kms-tls-key",
            ca_flag: "--kms-tls-client-ca",
            cert: &o.kms_tls_cert,
            key: &o.kms_tls_key,
            client_ca: &o.kms_tls_client_ca,
        },
    )?;
    // a flag is named before the file's table: it is what the user just typed
    let upstream_tls_source = if o.upstream_ca.is_some() {
        Some("--upstream-ca")
    } else if o.upstream_server_name.is_some() {
        Some("--upstream-server-name")
    } else if f.upstream_tls.is_some() {
        Some("upstream_tls")
    } else {
        None
    };
    let upstream_tls = match upstream_tls_source {
        None => UpstreamTls::default(),
        Some(field) if upstream.scheme_str() != Some("https") => {
            return Err(ConfigError::Invalid {
                field,
                message: format!("applies only to an https:// upstream, not {upstream_s:?}"),
            })
        }
        Some(_) => {
            let t = f.upstream_tls.unwrap_or_default();
            let ca_file = o.upstream_ca.clone().or(t.ca_file);
            let (server_name, name_field) = match &o.upstream_server_name {
                Some(n) => (Some(n.clone()), "--upstream-server-name"),
                None => (t.server_name, "upstream_tls.server_name"),
            };
            if let Some(name) = &server_name {
                if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                    return Err(ConfigError::Invalid {
                        field: name_field,
                        message: format!("{name:?} is not a DNS name or IP address"),
                    });
                }
            }
            UpstreamTls {
                ca_file,
                server_name,
            }
        }
    };
    if kms_tls.is_some() && kms_listen.is_none() {
        return Err(ConfigError::Invalid {
            field: if kms_tls_from_flags {
                "--kms-tls-cert"
            } else {
                "kms_tls"
            },
            message: "set kms_listen / --kms-listen too (there is no KMS listener to put TLS on)"
                .into(),
        });
    }
    let shadow_capture = match o.shadow_capture.clone().or(f.shadow_capture) {
        None => None,
        Some(file) => {
            let max_lines = f
                .shadow_capture_max_lines
                .unwrap_or(DEFAULT_CAPTURE_MAX_LINES);
            if max_lines == 0 {
                return Err(ConfigError::Invalid {
                    field: "shadow_capture_max_lines",
                    message: "must be greater than 0".into(),
                });
            }
            let sample = f.shadow_capture_sample.unwrap_or(1.0);
            if !(sample > 0.0 && sample <= 1.0) {
                return Err(ConfigError::Invalid {
                    field: "shadow_capture_sample",
                    message: "must be a fraction in (0, 1], e.g. 0.1 for one request in ten".into(),
                });
            }
            Some(ShadowCapture {
                file,
                max_lines,
                sample,
            })
        }
    };
    Ok(Config {
        provider,
        shadow: o.shadow.or(f.shadow).unwrap_or(false),
        shadow_capture,
        tls,
        kms_tls,
        h2c: f.h2c.unwrap_or(true),
        upstream_tls,
        upstream_http2: f.upstream_http2.unwrap_or(false),
        listen,
        upstream,
        policies: o
            .policies
            .clone()
            .or(f.policies)
            .unwrap_or_else(|| PathBuf::from("policies")),
        data_dir: store.data_dir,
        store_url: store.url,
        root_key_file: store.root_key_file,
        kms_listen,
        admin_listen,
        max_body_bytes,
        connect_timeout: ms(f.timeouts.connect_ms, 2_000, "timeouts.connect_ms")?,
        upstream_timeout: ms(f.timeouts.upstream_ms, 30_000, "timeouts.upstream_ms")?,
        header_read_timeout: ms(f.timeouts.header_read_ms, 10_000, "timeouts.header_read_ms")?,
        drain_timeout: ms(f.timeouts.drain_ms, 30_000, "timeouts.drain_ms")?,
        cache,
        log_level,
        log_format,
        max_keys: f.max_keys.unwrap_or(10_000),
        max_connections: match f.max_connections.unwrap_or(10_000) {
            0 => {
                return Err(ConfigError::Invalid {
                    field: "max_connections",
                    message: "must be greater than 0".into(),
                })
            }
            n => n,
        },
        kms_quotas,
        audit: AuditSettings {
            sink: audit_sink,
            queue: audit_queue,
        },
        reload: ReloadSettings {
            watch: f.reload.watch.unwrap_or(true),
            poll: ms(f.reload.poll_ms, 1_000, "reload.poll_ms")?,
        },
        unmatched_hosts: f.proxy.unmatched_hosts.unwrap_or_default(),
        create_policy_keys: match o.create_policy_keys.or(f.keys.create_policy_keys) {
            None => PolicyKeyCreation::EmptyStoreOnly,
            Some(true) => PolicyKeyCreation::Always,
            Some(false) => PolicyKeyCreation::Never,
        },
        limits: limits_config(o.limits.clone(), f.limits)?,
        console: console_settings(f.console, o.console_listen.as_deref())?,
    })
}

/// `[limits]` with the `--limits` URL over the file's; `None` without a URL
/// (then `nodes` and `prefix` must not be set either: they would do nothing).
fn limits_config(
    flag: Option<String>,
    f: FileLimits,
) -> Result<Option<crate::limits::LimitsConfig>, ConfigError> {
    let Some(url) = flag.or(f.url) else {
        if f.nodes.is_some() || f.prefix.is_some() {
            return Err(ConfigError::Invalid {
                field: "limits",
                message: "limits.nodes and limits.prefix need limits.url (or --limits)".into(),
            });
        }
        return Ok(None);
    };
    let limits = crate::limits::LimitsConfig {
        url,
        nodes: f.nodes.unwrap_or(1),
        prefix: f
            .prefix
            .unwrap_or_else(|| crate::limits::DEFAULT_PREFIX.to_string()),
    };
    limits.validate().map_err(|message| ConfigError::Invalid {
        field: "limits",
        message,
    })?;
    Ok(Some(limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(upstream: &str) -> Overrides {
        Overrides {
            upstream: Some(upstream.into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_need_only_an_upstream() {
        let c = validate(parse("t", "").unwrap(), &ov("http://127.0.0.1:3000")).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY);
        assert!(c.kms_listen.is_none());
        assert!(c.cache.enabled);
    }

    #[test]
    fn the_store_location_is_resolved_as_for_serve_without_an_upstream() {
        let f = parse("t", "data_dir = \"/a\"\nroot_key_file = \"/k\"").unwrap();
        let l = store_location_of(&f, &Overrides::default());
        assert_eq!(
            (l.data_dir, l.root_key_file),
            (PathBuf::from("/a"), Some(PathBuf::from("/k")))
        );
        let o = Overrides {
            data_dir: Some("/b".into()),
            ..Default::default()
        };
        assert_eq!(store_location_of(&f, &o).data_dir, PathBuf::from("/b"));
        let l = store_location_of(&parse("t", "").unwrap(), &Overrides::default());
        assert_eq!(l.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        // serve's config agrees
        let c = validate(parse("t", "").unwrap(), &ov("http://x:1")).unwrap();
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        let e = store_location(Some(Path::new("/nonexistent/sg.toml")), &o).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/sg.toml"), "{e}");
    }

    #[test]
    fn the_store_url_comes_from_the_flag_then_the_file_and_is_checked() {
        let f = parse("t", "[store]\nurl = \"postgres://a@h:5432/file\"").unwrap();
        let l = store_location_of(&f, &Overrides::default());
        assert_eq!(l.url.as_deref(), Some("postgres://a@h:5432/file"));
        let o = Overrides {
            store_url: Some("postgres://a@h:5432/flag".into()),
            ..Default::default()
        };
        assert_eq!(
            store_location_of(&f, &o).url.as_deref(),
            Some("postgres://a@h:5432/flag")
        );
        assert_eq!(
            store_location_of(&parse("t", "").unwrap(), &o).url,
            o.store_url
        );
        assert!(
            store_location_of(&parse("t", "").unwrap(), &Overrides::default())
                .url
                .is_none()
        );
        let bad = parse(
            "t",
            "upstream = \"http://127.0.0.1:1\"\n[store]\nurl = \"mysql://u:pw1234@h/db\"",
        )
        .unwrap();
        let e = validate(bad, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.url") && !e.contains("pw1234"), "{e}");
        let o = Overrides {
            store_url: Some("nonsense".into()),
            ..Default::default()
        };
        assert!(store_location(None, &o).is_err());
    }

    #[test]
    fn create_policy_keys_defaults_to_an_empty_store_only_and_the_flag_wins() {
        let c = |text: &str, flag: Option<bool>| {
            let o = Overrides {
                create_policy_keys: flag,
                ..ov("http://x:1")
            };
            validate(parse("t", text).unwrap(), &o)
                .unwrap()
                .create_policy_keys
        };
        assert_eq!(c("", None), PolicyKeyCreation::EmptyStoreOnly);
        let on = "[keys]\ncreate_policy_keys = true";
        let off = "[keys]\ncreate_policy_keys = false";
        assert_eq!(c(on, None), PolicyKeyCreation::Always);
        assert_eq!(c(off, None), PolicyKeyCreation::Never);
        assert_eq!(c(off, Some(true)), PolicyKeyCreation::Always);
        assert_eq!(c(on, Some(false)), PolicyKeyCreation::Never);
        let e = parse("t", "[keys]\ncreate_keys = true").unwrap_err();
        assert!(e.to_string().contains("create_keys"), "{e}");
    }

    #[test]
    fn provider_settings_are_validated() {
        let base = "upstream = \"http://x:1\"\n[provider]\n";
        let parse = |name: &str, text: &str| {
            parse(name, text).and_then(|f| validate(f, &Overrides::default()))
        };
        let c = parse(
            "a.toml",
            &format!("{base}kind = \"tencent\"\nregion = \"ap-guangzhou\""),
        )
        .unwrap();
        let p = c.provider.unwrap();
        assert_eq!(p.kind, ProviderKind::Tencent);
        assert_eq!(p.endpoint.to_string(), "https://kms.tencentcloudapi.com/");
        assert_eq!(p.retry_budget, Duration::from_millis(2000));
        assert_eq!(p.secret_key_env, "SEALGATE_PROVIDER_SECRET_KEY");
        let c = parse(
            "a.toml",
            &format!("{base}kind = \"alibaba\"\nregion = \"cn-hangzhou\""),
        )
        .unwrap();
        assert_eq!(
            c.provider.unwrap().endpoint.to_string(),
            "https://kms.cn-hangzhou.aliyuncs.com/"
        );
        assert!(parse("a.toml", &format!("{base}kind = \"infisical\""))
            .unwrap()
            .provider
            .is_some());
        assert!(parse("a.toml", &format!("{base}kind = \"local\""))
            .unwrap()
            .provider
            .is_none());
        for (extra, field) in [
            ("kind = \"tencent\"", "provider.region"),
            ("kind = \"aws\"", "provider.kind"),
            (
                "kind = \"tencent\"\nregion = \"r\"\nendpoint = \"http://u:p@h:1\"",
                "provider.endpoint",
            ),
            (
                "kind = \"tencent\"\nregion = \"r\"\nsecret_key_env = \"A B\"",
                "provider.secret_key_env",
            ),
            (
                "kind = \"tencent\"\nregion = \"r\"\nretry_budget_ms = 0",
                "provider.retry_budget_ms",
            ),
            (
                "kind = \"tencent\"\nregion = \"r\"\nmax_concurrent_calls = 0",
                "provider.max_concurrent_calls",
            ),
        ] {
            let e = parse("a.toml", &format!("{base}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
    }

    #[test]
    fn a_provider_node_refuses_what_only_a_local_store_uses() {
        let provider = "[provider]\nkind = \"tencent\"\nregion = \"r\"\n";
        for (before, field) in [
            ("kms_listen = \"127.0.0.1:0\"\n", "kms_listen"),
            ("root_key_file = \"/k\"\n", "root_key_file"),
            ("[store]\nurl = \"postgres://u@h:5432/d\"\n", "store.url"),
        ] {
            let text = format!("upstream = \"http://x:1\"\n{before}{provider}");
            let e = validate(parse("a.toml", &text).unwrap(), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("tencent KMS"), "{e}");
            // without [provider] the same settings are fine
            let plain = format!("upstream = \"http://x:1\"\n{before}");
            assert!(validate(parse("a.toml", &plain).unwrap(), &Overrides::default()).is_ok());
        }
        // the admin commands have no store to open for such a config
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealgate.toml");
        std::fs::write(&path, provider).unwrap();
        let e = store_location(Some(&path), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("keep no key store"), "{e}");
    }

    #[test]
    fn missing_upstream_is_a_clear_error() {
        let e = validate(parse("t", "").unwrap(), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("upstream"), "{e}");
    }

    #[test]
    fn unknown_field_names_the_file_and_field() {
        let e = parse("sealgate.toml", "listn = \"x\"").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("sealgate.toml") && s.contains("listn"), "{s}");
        let e = parse("a.toml", "[cache]\nmax_agee_secs = 3").unwrap_err();
        assert!(e.to_string().contains("max_agee_secs"));
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = parse(
            "t",
            "listen = \"127.0.0.1:9000\"\nupstream = \"http://127.0.0.1:1\"\ndata_dir = \"/a\"",
        )
        .unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:9001".into()),
            data_dir: Some("/b".into()),
            ..Default::default()
        };
        let c = validate(f, &o).unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert_eq!(c.upstream.port_u16(), Some(1));
    }

    #[test]
    fn operations_settings_parse_and_flags_win() {
        let f = parse(
            "t",
            "upstream = \"http://x:1\"\nadmin_listen = \"127.0.0.1:9090\"\n[audit]\nfile = \"/var/log/a.jsonl\"\nqueue = 16\n[reload]\nwatch = false\npoll_ms = 250\n[timeouts]\ndrain_ms = 1500\n[log]\nlevel = \"debug\"",
        )
        .unwrap();
        let c = validate(f, &Overrides::default()).unwrap();
        assert_eq!(c.admin_listen.unwrap().port(), 9090);
        assert_eq!(
            c.audit.sink,
            Some(AuditSink::File(PathBuf::from("/var/log/a.jsonl")))
        );
        assert_eq!(c.audit.queue, 16);
        assert!(!c.reload.watch);
        assert_eq!(c.reload.poll, Duration::from_millis(250));
        assert_eq!(c.drain_timeout, Duration::from_millis(1500));
        assert_eq!(c.log_level, "debug");
        let o = Overrides {
            admin_listen: Some("127.0.0.1:9191".into()),
            audit_file: Some("/tmp/b.jsonl".into()),
            log_level: Some("warn".into()),
            ..ov("http://x:1")
        };
        let c = validate(parse("t", "[audit]\nstdout = true").unwrap(), &o).unwrap();
        assert_eq!(c.admin_listen.unwrap().port(), 9191);
        assert_eq!(c.audit.sink, Some(AuditSink::File("/tmp/b.jsonl".into())));
        assert_eq!(c.log_level, "warn");
        let c = validate(
            parse("t", "[audit]\nstdout = true").unwrap(),
            &ov("http://x:1"),
        )
        .unwrap();
        assert_eq!(c.audit.sink, Some(AuditSink::Stdout));
        let c = validate(parse("t", "").unwrap(), &ov("http://x:1")).unwrap();
        assert_eq!(c.audit.sink, None);
        assert!(c.reload.watch);
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, field) in [
            ("upstream = \"ftp://x\"", "upstream"),
            ("upstream = \"http://x:1\"\nlisten = \"nope\"", "listen"),
            (
                "upstream = \"http://x:1\"\nmax_body_bytes = 0",
                "max_body_bytes",
            ),
            (
                "upstream = \"http://x:1\"\n[cache]\nmax_messages = 9999999999999",
                "cache.max_messages",
            ),
            (
                "upstream = \"http://x:1\"\n[timeouts]\nupstream_ms = 0",
                "timeouts.upstream_ms",
            ),
            (
                "upstream = \"http://x:1\"\n[log]\nformat = \"xml\"",
                "log.format",
            ),
            (
                "upstream = \"http://x:1\"\n[log]\nlevel = \"sealgate=loud\"",
                "log.level",
            ),
            (
                "upstream = \"http://x:1\"\nadmin_listen = \"9090\"",
                "admin_listen",
            ),
            (
                "upstream = \"http://x:1\"\n[audit]\nfile = \"a\"\nstdout = true",
                "audit",
            ),
            (
                "upstream = \"http://x:1\"\n[reload]\npoll_ms = 0",
                "reload.poll_ms",
            ),
        ] {
            let e = validate(parse("t", text).unwrap(), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn tls_tables_parse_with_their_defaults() {
        let text = r#"
upstream = "https://api.internal:8443/v1"
kms_listen = "127.0.0.1:9000"
h2c = false
upstream_http2 = true
[tls]
cert_file = "c.pem"
key_file = "k.pem"
client_ca_file = "ca.pem"
[kms_tls]
cert_file = "kc.pem"
key_file = "kk.pem"
http2 = false
[upstream_tls]
ca_file = "up-ca.pem"
server_name = "api.example"
"#;
        let c = validate(parse("t", text).unwrap(), &Overrides::default()).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("c.pem"));
        assert_eq!(tls.client_ca_file, Some(PathBuf::from("ca.pem")));
        assert!(tls.http2, "h2 is offered unless switched off");
        let kms = c.kms_tls.unwrap();
        assert!(!kms.http2 && kms.client_ca_file.is_none());
        assert!(!c.h2c && c.upstream_http2);
        assert_eq!(c.upstream_tls.server_name.as_deref(), Some("api.example"));
        assert_eq!(c.upstream_tls.ca_file, Some(PathBuf::from("up-ca.pem")));

        let plain = validate(parse("t", "").unwrap(), &ov("http://127.0.0.1:3000")).unwrap();
        assert!(plain.tls.is_none() && plain.kms_tls.is_none());
        assert!(plain.h2c && !plain.upstream_http2);
    }

    #[test]
    fn tls_mistakes_are_refused() {
        for (text, field) in [
            (
                "upstream = \"http://x:1\"\n[upstream_tls]\nca_file = \"a\"",
                "upstream_tls",
            ),
            (
                "upstream = \"https://x:1\"\n[upstream_tls]\nserver_name = \"a b\"",
                "upstream_tls.server_name",
            ),
            (
                "upstream = \"http://x:1\"\n[kms_tls]\ncert_file = \"a\"\nkey_file = \"b\"",
                "kms_tls",
            ),
        ] {
            let e = validate(parse("t", text).unwrap(), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
        let e = parse("t", "[tls]\ncert_file = \"a\"").unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
        let e = parse("t", "[tls]\ncert_file = \"a\"\nkey_file = \"b\"\nca = 1").unwrap_err();
        assert!(e.to_string().contains("ca"), "{e}");
    }

    #[test]
    fn tls_flags_make_the_tables_and_win_over_the_file() {
        // flags alone make every table
        let o = Overrides {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            tls_client_ca: Some("ca.pem".into()),
            kms_listen: Some("127.0.0.1:9000".into()),
            kms_tls_cert: Some("kc.pem".into()),
            kms_tls_key: Some("kk.pem".into()),
            upstream_ca: Some("up-ca.pem".into()),
            upstream_server_name: Some("api.example".into()),
            ..ov("https://api.internal:8443")
        };
        let c = validate(parse("t", "").unwrap(), &o).unwrap();
        assert_eq!(
            c.tls,
            Some(ListenerTls {
                cert_file: "c.pem".into(),
                key_file: "k.pem".into(),
                client_ca_file: Some("ca.pem".into()),
                http2: true,
            })
        );
        assert_eq!(
            c.kms_tls,
            Some(ListenerTls {
                cert_file: "kc.pem".into(),
                key_file: "kk.pem".into(),
                client_ca_file: None,
                http2: true,
            })
        );
        assert_eq!(
            c.upstream_tls,
            UpstreamTls {
                ca_file: Some("up-ca.pem".into()),
                server_name: Some("api.example".into()),
            }
        );

        // over a file: each flag replaces its key, the others stay
        let text = r#"
upstream = "https://api.internal:8443"
kms_listen = "127.0.0.1:9000"
[tls]
cert_file = "file-c.pem"
key_file = "file-k.pem"
http2 = false
[kms_tls]
cert_file = "file-kc.pem"
key_file = "file-kk.pem"
client_ca_file = "file-kca.pem"
[upstream_tls]
ca_file = "file-up.pem"
server_name = "file.example"
"#;
        let o = Overrides {
            tls_client_ca: Some("ca.pem".into()),
            kms_tls_cert: Some("kc.pem".into()),
            kms_tls_key: Some("kk.pem".into()),
            upstream_ca: Some("up-ca.pem".into()),
            ..Default::default()
        };
        let c = validate(parse("t", text).unwrap(), &o).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(
            (tls.cert_file, tls.key_file, tls.client_ca_file, tls.http2),
            (
                "file-c.pem".into(),
                "file-k.pem".into(),
                Some("ca.pem".into()),
                false
            )
        );
        let kms = c.kms_tls.unwrap();
        assert_eq!(
            (kms.cert_file, kms.key_file, kms.client_ca_file),
            (
                "kc.pem".into(),
                "kk.pem".into(),
                Some("file-kca.pem".into())
            )
        );
        assert_eq!(c.upstream_tls.ca_file, Some("up-ca.pem".into()));
        assert_eq!(c.upstream_tls.server_name.as_deref(), Some("file.example"));
    }

    #[test]
    fn tls_flag_mistakes_name_the_flag() {
        let cases: [(Overrides, &str, &str); 7] = [
            (
                Overrides {
                    tls_cert: Some("c".into()),
                    ..Default::default()
                },
                "--tls-key",
                "--tls-cert",
            ),
            (
                Overrides {
                    tls_key: Some("k".into()),
                    ..Default::default()
                },
                "--tls-cert",
                "--tls-key",
            ),
            (
                Overrides {
                    tls_client_ca: Some("ca".into()),
                    ..Default::default()
                },
                "--tls-client-ca",
                "--tls-cert",
            ),
            (
                Overrides {
                    kms_listen: Some("127.0.0.1:9000".into()),
                    kms_tls_cert: Some("c".into()),
                    ..Default::default()
                },
                "--kms-tls-key",
                "--kms-tls-cert",
            ),
            (
                Overrides {
                    kms_tls_cert: Some("c".into()),
                    kms_tls_key: Some("k".into()),
                    ..Default::default()
                },
                "--kms-tls-cert",
                "--kms-listen",
            ),
            (
                Overrides {
                    upstream_ca: Some("ca".into()),
                    ..Default::default()
                },
                "--upstream-ca",
                "https://",
            ),
            (
                Overrides {
                    upstream: Some("https://x:1".into()),
                    upstream_server_name: Some("a b".into()),
                    ..Default::default()
                },
                "--upstream-server-name",
                "a b",
            ),
        ];
        for (o, field, said) in cases {
            let o = Overrides {
                upstream: o.upstream.clone().or(Some("http://x:1".into())),
                ..o
            };
            let e = validate(parse("t", "").unwrap(), &o).unwrap_err();
            let s = e.to_string();
            assert!(s.contains(field) && s.contains(said), "{o:?}: {s}");
        }
        // a lone key flag replaces the file's key, the certificate stays
        let c = validate(
            parse("t", "[tls]\ncert_file = \"c\"\nkey_file = \"k\"").unwrap(),
            &Overrides {
                tls_key: Some("k2".into()),
                ..ov("http://x:1")
            },
        )
        .unwrap();
        assert_eq!(c.tls.unwrap().key_file, PathBuf::from("k2"));
    }

    #[test]
    fn shadow_settings_parse_validate_and_flags_win() {
        let f = parse(
            "t",
            "upstream = \"http://x:1\"\nshadow = true\nshadow_capture = \"/tmp/c.jsonl\"\nshadow_capture_max_lines = 10\nshadow_capture_sample = 0.5",
        )
        .unwrap();
        let c = validate(f, &Overrides::default()).unwrap();
        assert!(c.shadow);
        let cap = c.shadow_capture.unwrap();
        assert_eq!(
            (cap.file, cap.max_lines, cap.sample),
            (PathBuf::from("/tmp/c.jsonl"), 10, 0.5)
        );
        let c = validate(parse("t", "").unwrap(), &ov("http://x:1")).unwrap();
        assert!(!c.shadow && c.shadow_capture.is_none());
        let o = Overrides {
            shadow: Some(true),
            shadow_capture: Some("/tmp/d.jsonl".into()),
            ..ov("http://x:1")
        };
        let c = validate(parse("t", "").unwrap(), &o).unwrap();
        assert!(c.shadow);
        assert_eq!(
            c.shadow_capture.unwrap().max_lines,
            DEFAULT_CAPTURE_MAX_LINES
        );
        for bad in [
            "shadow_capture_sample = 0.0",
            "shadow_capture_sample = 1.5",
            "shadow_capture_max_lines = 0",
        ] {
            let text = format!("shadow_capture = \"/tmp/c\"\n{bad}");
            let e = validate(parse("t", &text).unwrap(), &ov("http://x:1")).unwrap_err();
            assert!(e.to_string().contains("shadow_capture_"), "{bad}: {e}");
        }
    }

    #[test]
    fn kms_quota_tables_are_typed_per_dialect() {
        let text = "[kms.tencent.quotas]\nEncrypt = 500\n\
                    [kms.alibaba.quotas]\nsymmetric-crypto = 2000\n\
                    [kms.infisical.quotas]\nwrite = 120\n";
        let c = validate(parse("t", text).unwrap(), &ov("http://x:1")).unwrap();
        assert_eq!(c.kms_quotas.tencent["Encrypt"], Quota::per_second(500));
        assert_eq!(
            c.kms_quotas.alibaba["symmetric-crypto"],
            Quota::per_second(2000)
        );
        assert_eq!(c.kms_quotas.infisical["write"], Quota::per_minute(120));
    }

    #[test]
    fn an_unknown_kms_quota_name_is_an_error_naming_it_and_the_dialect() {
        let err = |text: &str| {
            validate(parse("t", text).unwrap(), &ov("http://x:1"))
                .unwrap_err()
                .to_string()
        };
        let e = err("[kms.tencent.quotas]\nEncrpyt = 5\n");
        assert!(
            e.contains("kms.tencent.quotas") && e.contains("\"Encrpyt\""),
            "{e}"
        );
        assert!(e.contains("Tencent action"), "{e}");
        let e = err("[kms.alibaba.quotas]\nEncrypt = 5\n");
        assert!(
            e.contains("kms.alibaba.quotas") && e.contains("\"Encrypt\""),
            "{e}"
        );
        assert!(
            e.contains("Alibaba quota class") && e.contains("symmetric-crypto"),
            "{e}"
        );
        let e = err("[kms.infisical.quotas]\nread_per_minute = 5\n");
        assert!(
            e.contains("kms.infisical.quotas") && e.contains("read_per_minute"),
            "{e}"
        );
        // a dialect sealgate does not have is refused by the parser
        let e = err_parse("[kms.aws.quotas]\nEncrypt = 5\n");
        assert!(e.contains("aws"), "{e}");
    }

    fn err_parse(text: &str) -> String {
        match parse("t", text) {
            Err(e) => e.to_string(),
            Ok(f) => validate(f, &ov("http://x:1")).unwrap_err().to_string(),
        }
    }

    #[test]
    fn the_flat_kms_quotas_table_still_loads_and_is_validated() {
        let text = "[kms_quotas]\nEncrypt = 500\n\"alibaba:read\" = 7\n\
                    infisical_login_per_minute = 9\n";
        let c = validate(parse("t", text).unwrap(), &ov("http://x:1")).unwrap();
        assert_eq!(c.kms_quotas.tencent["Encrypt"], Quota::per_second(500));
        assert_eq!(c.kms_quotas.alibaba["read"], Quota::per_second(7));
        assert_eq!(c.kms_quotas.infisical["login"], Quota::per_minute(9));
        for bad in ["Encrpyt", "alibaba:reads", "infisical_lgoin_per_minute"] {
            let e = err_parse(&format!("[kms_quotas]\n\"{bad}\" = 1\n"));
            assert!(e.contains("kms_quotas") && e.contains(bad), "{e}");
        }
        // the typed table wins over the flat one
        let text = "[kms_quotas]\nEncrypt = 1\n[kms.tencent.quotas]\nEncrypt = 2\n";
        let c = validate(parse("t", text).unwrap(), &ov("http://x:1")).unwrap();
        assert_eq!(c.kms_quotas.tencent["Encrypt"], Quota::per_second(2));
    }
}
