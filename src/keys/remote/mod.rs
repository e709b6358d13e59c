//! Remote KMS providers: sealgate as the caching client of a cloud KMS
//! that holds the CMKs (`[provider]` in the config).
//!
//! Sealing asks the remote `GenerateDataKey` for a fresh DEK and carries its
//! CiphertextBlob in every envelope of the provider form (`sg2.`); opening
//! asks the remote `Decrypt` for it. The data-key cache in front makes this
//! affordable: a warm cache makes no remote call at all (see the seam in
//! `keys::cache`).
//!
//! Each call runs on the provider's own small runtime (its client pool and
//! timers live there), and the calling thread waits for it inside
//! [`without_stalling`]. At most `max_concurrent_calls` calls are in flight
//! at once; a failed attempt that may succeed later (a timeout, a network
//! error, a 5xx, throttling) is retried with full-jitter exponential
//! backoff until the retry budget is spent, and then the key operation
//! fails with [`KeyError::Unavailable`] naming the provider. A throttled
//! attempt waits at least `THROTTLE_PAUSE` before the next, to honour the
//! remote quota.
//!
//! The SecretKey is read from the environment once, kept zeroized on drop,
//! and goes nowhere but the HMAC: messages name the provider, the action
//! and the remote error code only.

pub mod alibaba;
pub mod infisical;
pub mod tencent;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rand::Rng;
use tokio::sync::Semaphore;

use super::provider::{KeyError, KeyProvider, RemoteDataKey};
use crate::config::{ProviderKind, ProviderSettings};
use crate::envelope::{CmkRef, WrappedDek};
use crate::metrics::Metrics;
use crate::secret::{DataKey, SecretBytes};

/// Shortest pause after a throttled attempt.
const THROTTLE_PAUSE: Duration = Duration::from_millis(100);
/// First backoff step (doubled per attempt, full jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Largest response body read from the provider.
const MAX_RESPONSE: usize = 64 * 1024;

/// Runs `f`, which blocks, without stalling the async runtime the caller is
/// on: inside `block_in_place` on a multi-threaded runtime (its other tasks
/// move to another worker meanwhile); directly elsewhere (plain threads,
/// blocking-pool threads, a current-thread runtime in tests).
pub fn without_stalling<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The provider's credential: the SecretId (public) and the SecretKey.
pub struct Credentials {
    /// SecretId / AccessKeyId: may appear in the start-up line.
    pub id: String,
    /// SecretKey / AccessKeySecret: zeroized on drop, never printed.
    pub secret: SecretBytes,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// SecretKeys taken out of the environment by [`take_secret_env`], by
/// variable name.
fn taken() -> &'static std::sync::Mutex<std::collections::HashMap<String, SecretBytes>> {
    static TAKEN: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, SecretBytes>>,
    > = std::sync::OnceLock::new();
    TAKEN.get_or_init(Default::default)
}

/// Moves the provider's SecretKey out of the environment into memory that
/// is zeroized on drop, so child processes and later `getenv` calls never
/// see it. `serve` calls this before any thread exists (`unsetenv` races
/// with `getenv` in other threads); the environment block the process was
/// started with (`/proc/<pid>/environ`) keeps the text until exit.
pub fn take_secret_env(s: &ProviderSettings) {
    if let Some(raw) = std::env::var_os(&s.secret_key_env) {
        std::env::remove_var(&s.secret_key_env);
        let bytes = std::os::unix::ffi::OsStringExt::into_vec(raw);
        taken()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(s.secret_key_env.clone(), SecretBytes::new(bytes));
    }
}

impl Credentials {
    /// Reads the credential from the environment variables the settings
    /// name (the SecretKey from where [`take_secret_env`] put it, if it
    /// ran); the error names the variable, never a value.
    pub fn from_env(s: &ProviderSettings) -> Result<Credentials, String> {
        let unset = |name: &str| format!("environment variable {name} is not set");
        let id = std::env::var(&s.secret_id_env)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| unset(&s.secret_id_env))?;
        let stashed = taken()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&s.secret_key_env)
            .cloned();
        let secret = match stashed {
            Some(v) => v,
            None => SecretBytes::new(
                std::env::var(&s.secret_key_env)
                    .map(String::into_bytes)
                    .unwrap_or_default(),
            ),
        };
        if secret.is_empty() {
            return Err(unset(&s.secret_key_env));
        }
        Ok(Credentials { id, secret })
    }
}

/// One remote operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A fresh DEK under a CMK.
    GenerateDataKey,
    /// A DEK back from its CiphertextBlob.
    Decrypt,
    /// A CMK's metadata (start-up check).
    DescribeKey,
    /// A DEK made here, encrypted under a CMK (KMSs without GenerateDataKey).
    Encrypt,
    /// A fresh access token (token-authenticated KMSs).
    Login,
}

impl Action {
    /// The action's name on the wire and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Action::GenerateDataKey => "GenerateDataKey",
            Action::Decrypt => "Decrypt",
            Action::DescribeKey => "DescribeKey",
            Action::Encrypt => "Encrypt",
            Action::Login => "Login",
        }
    }
}

/// What one attempt came to, when it did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// May succeed if tried again (timeout, network, 5xx); the outcome label
    /// and a safe description.
    Retry(&'static str, String),
    /// The remote quota is exceeded: retry after a pause.
    Throttled(String),
    /// Final: the remote said no.
    Final(KeyError),
}

/// A wire dialect of a remote KMS: builds signed requests, reads answers.
pub trait Dialect: Send + Sync {
    /// The signed request for `action` with its JSON parameters.
    fn request(
        &self,
        action: Action,
        params: &serde_json::Value,
        now: i64,
    ) -> Result<http::Request<Full<Bytes>>, KeyError>;

    /// The response's result object, or why there is none.
    fn response(&self, status: http::StatusCode, body: &[u8])
        -> Result<serde_json::Value, Failure>;

    /// The parameters of each action (the dialect's own names).
    fn params(&self, call: &Call<'_>) -> serde_json::Value;

    /// Reads a generated data key from a GenerateDataKey result.
    fn data_key(&self, result: &serde_json::Value) -> Result<RemoteDataKey, KeyError>;

    /// Reads the plaintext DEK from a Decrypt result.
    fn plaintext(&self, result: &serde_json::Value) -> Result<DataKey, KeyError>;

    /// Checks a DescribeKey result: the key exists and can make data keys.
    fn usable(&self, result: &serde_json::Value) -> Result<(), KeyError>;

    /// The key's own id in a DescribeKey result (a key may be named by an
    /// alias in the policies), if the answer holds one.
    fn key_id(&self, result: &serde_json::Value) -> Option<String> {
        result
            .get("KeyMetadata")
            .and_then(|m| m.get("KeyId"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    }

    /// True for a KMS without GenerateDataKey: the DEK is made here and
    /// sent through [`Call::Encrypt`]; [`wrapped_key`](Self::wrapped_key)
    /// reads the result.
    fn wraps_local_keys(&self) -> bool {
        false
    }

    /// The data key made here, with the blob an Encrypt of it returned.
    fn wrapped_key(
        &self,
        key: &str,
        result: &serde_json::Value,
        dek: DataKey,
    ) -> Result<RemoteDataKey, KeyError> {
        let _ = (key, result, dek);
        Err(KeyError::UnsupportedKeyUsage)
    }

    /// For a token-authenticated KMS: the login request to send first,
    /// when no token is held or it is about to expire (at `now`).
    fn login(&self, now: Instant) -> Option<Result<http::Request<Full<Bytes>>, KeyError>> {
        let _ = now;
        None
    }

    /// Reads a login answer received at `now` and keeps its token.
    fn logged_in(
        &self,
        status: http::StatusCode,
        body: &[u8],
        now: Instant,
    ) -> Result<(), Failure> {
        let _ = (status, body, now);
        Ok(())
    }
}

/// One call and its inputs; a data key's calls carry the context template
/// (canonical form) it is bound to.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// GenerateDataKey under this key, for this template.
    GenerateDataKey(&'a str, &'a str),
    /// Decrypt this blob, made for this template.
    Decrypt(&'a [u8], &'a str),
    /// DescribeKey of this key.
    DescribeKey(&'a str),
    /// Encrypt this DEK (made here) under this key, for this template.
    Encrypt(&'a str, &'a DataKey, &'a str),
}

impl Call<'_> {
    /// The action it is.
    pub fn action(&self) -> Action {
        match self {
            Call::GenerateDataKey(..) => Action::GenerateDataKey,
            Call::Decrypt(..) => Action::Decrypt,
            Call::DescribeKey(_) => Action::DescribeKey,
            Call::Encrypt(..) => Action::Encrypt,
        }
    }
}

/// The marker sealgate puts in the remote EncryptionContext of every DEK
/// it asks for (and hands back on Decrypt): a DEK made for sealgate fields
/// does not decrypt through a plain Decrypt without it.
pub const CONTEXT_MARKER: (&str, &str) = ("sealgate", "field-dek");

/// The member of the EncryptionContext that names the route's context
/// template (canonical form).
pub const CONTEXT_TEMPLATE: &str = "context";

/// The EncryptionContext sealgate sends for a data key of the route whose
/// context template (canonical form) is `template`: the marker and the
/// template, as a JSON object string (members sorted by name).
pub fn encryption_context(template: &str) -> String {
    let mut m = serde_json::Map::new();
    m.insert(CONTEXT_TEMPLATE.into(), template.into());
    m.insert(CONTEXT_MARKER.0.into(), CONTEXT_MARKER.1.into());
    serde_json::Value::Object(m).to_string()
}

/// Decodes canonical standard Base64 (what re-encodes to the same text).
pub(crate) fn b64_exact(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let v = b64.decode(s).ok()?;
    (b64.encode(&v) == s).then_some(v)
}

/// How a cloud KMS (Tencent, Alibaba) spells the key states and the
/// symmetric usage in `DescribeKey`'s `KeyMetadata`; their GenerateDataKey
/// and Decrypt answers share one shape (`KeyId`, `CiphertextBlob`,
/// `Plaintext`), read by [`cloud_data_key`] and [`cloud_plaintext`].
pub(crate) struct CloudSpelling {
    /// `tencent` or `alibaba`, for messages.
    pub name: &'static str,
    /// The state of a key scheduled for deletion.
    pub pending_delete: &'static str,
    /// The symmetric usage.
    pub encrypt_decrypt: &'static str,
}

/// A GenerateDataKey result: the remote KeyId, the Base64 blob, the DEK.
pub(crate) fn cloud_data_key(
    cloud: &CloudSpelling,
    r: &serde_json::Value,
) -> Result<RemoteDataKey, KeyError> {
    use serde_json::Value;
    let bad = || {
        KeyError::Unavailable(format!(
            "{} KMS answered GenerateDataKey without a usable data key",
            cloud.name
        ))
    };
    let key_id = r.get("KeyId").and_then(Value::as_str).ok_or_else(bad)?;
    let blob = r
        .get("CiphertextBlob")
        .and_then(Value::as_str)
        .and_then(b64_exact)
        .ok_or_else(bad)?;
    let key = plaintext_of(r).ok_or_else(bad)?;
    Ok(RemoteDataKey {
        cmk: cmk_of(key_id),
        blob,
        key,
    })
}

/// A Decrypt result's 32-byte DEK.
pub(crate) fn cloud_plaintext(
    cloud: &CloudSpelling,
    r: &serde_json::Value,
) -> Result<DataKey, KeyError> {
    plaintext_of(r).ok_or_else(|| {
        KeyError::Unavailable(format!(
            "{} KMS answered Decrypt without a 32-byte key",
            cloud.name
        ))
    })
}

/// Whether a DescribeKey result names an enabled symmetric key.
pub(crate) fn cloud_usable(cloud: &CloudSpelling, r: &serde_json::Value) -> Result<(), KeyError> {
    use serde_json::Value;
    let meta = r.get("KeyMetadata").ok_or(KeyError::CmkNotFound)?;
    match meta.get("KeyState").and_then(Value::as_str) {
        Some("Enabled") => {}
        Some("Disabled") => return Err(KeyError::CmkDisabled),
        Some(s) if s == cloud.pending_delete => return Err(KeyError::CmkPendingDelete),
        Some("PendingImport") => return Err(KeyError::CmkPendingImport),
        _ => {
            return Err(KeyError::InvalidState(
                "the remote CMK is not enabled".into(),
            ))
        }
    }
    match meta.get("KeyUsage").and_then(Value::as_str) {
        Some(u) if u == cloud.encrypt_decrypt => Ok(()),
        None => Ok(()),
        Some(_) => Err(KeyError::UsageMismatch),
    }
}

/// The 32-byte DEK in a result's `Plaintext` (Base64).
pub(crate) fn plaintext_of(r: &serde_json::Value) -> Option<DataKey> {
    decode_key(r.get("Plaintext").and_then(serde_json::Value::as_str)?)
}

/// A 32-byte DEK from its standard Base64: decoded into a zeroized buffer
/// on the stack (no heap copy of the key), `None` for any other length.
pub(crate) fn decode_key(text: &str) -> Option<DataKey> {
    use base64::Engine as _;
    let mut buf = zeroize::Zeroizing::new([0u8; 48]);
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(text, &mut buf[..])
        .ok()?;
    DataKey::from_slice(&buf[..n])
}

/// A request body that may hold a secret (a DEK made here, a client
/// secret): its bytes are wiped when the last reference to them is dropped
/// (hyper drops it once sent; a copy hyper makes into its own write buffer
/// is out of our reach).
struct Wiped(Vec<u8>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

/// `value` as a JSON request body that is wiped once sent; `value`'s own
/// strings are zeroized too. The body is written into a buffer of its
/// exact size, so no partial copy is left behind by a reallocation.
pub(crate) fn secret_json_body(value: &mut serde_json::Value) -> Result<Bytes, KeyError> {
    /// Counts the bytes written.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let bad = || KeyError::Unavailable("request could not be encoded".into());
    let mut n = Count(0);
    let out = serde_json::to_writer(&mut n, &*value)
        .map_err(|_| bad())
        .and_then(|()| {
            let mut out = Vec::with_capacity(n.0);
            serde_json::to_writer(&mut out, &*value).map_err(|_| bad())?;
            Ok(out)
        });
    scrub(value);
    Ok(Bytes::from_owner(Wiped(out?)))
}

/// Reads a response body of at most `limit` bytes into a zeroized buffer
/// that never reallocates in place (it grows by copying into a new
/// zeroized buffer), so the only copies left unwiped are hyper's own
/// receive buffers, which are out of our reach.
async fn collect_wiped<B>(
    mut body: B,
    limit: usize,
    hint: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let cut = || Failure::Retry("network", "answer was cut off".into());
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(hint.min(limit)));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| cut())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = out.len() + data.len();
        if len > limit {
            return Err(cut());
        }
        if len > out.capacity() {
            let mut grown =
                zeroize::Zeroizing::new(Vec::with_capacity(len.max(out.capacity() * 2).min(limit)));
            grown.extend_from_slice(&out);
            out = grown;
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// A KeyProvider backed by a remote KMS.
pub struct RemoteProvider {
    /// The dialect's name (`tencent`).
    kind: ProviderKind,
    /// The endpoint, as messages name it.
    endpoint: String,
    /// The SecretId (for the start-up line).
    secret_id: String,
    /// Request building and answer reading.
    dialect: Arc<dyn Dialect>,
    /// The client runtime (taken on drop, shut down in the background).
    rt: Option<tokio::runtime::Runtime>,
    /// The pooled HTTP client (lives on `rt`).
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Bounds the calls in flight.
    limit: Arc<Semaphore>,
    /// Most time one key operation spends, retries included.
    retry_budget: Duration,
    /// Most time one attempt may take.
    call_timeout: Duration,
    /// Where calls are counted.
    metrics: Arc<Metrics>,
    /// The key ids (as [`cmk_of`] names them) of the keys the policies
    /// name, from their DescribeKey answers (a policy may name an alias).
    resolved: std::sync::RwLock<std::collections::HashMap<String, [u8; 16]>>,
}

impl std::fmt::Debug for RemoteProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteProvider")
            .field("kind", &self.kind.name())
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for RemoteProvider {
    fn drop(&mut self) {
        // dropping a runtime from async code panics; this never blocks
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl RemoteProvider {
    /// A provider for the settings, with credentials from the environment.
    pub fn new(settings: &ProviderSettings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let creds = Credentials::from_env(settings)?;
        let secret_id = creds.id.clone();
        let dialect: Arc<dyn Dialect> = match settings.kind {
            ProviderKind::Tencent => Arc::new(tencent::Tencent::new(settings, creds)?),
            ProviderKind::Alibaba => Arc::new(alibaba::Alibaba::new(settings, creds)?),
            ProviderKind::Infisical => Arc::new(infisical::Infisical::new(settings, creds)?),
        };
        let mut p = Self::with_dialect(settings, dialect, metrics)?;
        p.secret_id = secret_id;
        Ok(p)
    }

    /// The SecretId in use (public; the start-up line names it).
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// A provider speaking `dialect` (tests pass their own).
    pub fn with_dialect(
        settings: &ProviderSettings,
        dialect: Arc<dyn Dialect>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sealgate-provider")
            .enable_all()
            .build()
            .map_err(|e| format!("provider runtime: {e}"))?;
        let https = settings.endpoint.scheme_str() == Some("https");
        let tls = if https {
            crate::tls::upstream_client_config(&crate::config::UpstreamTls::default())
                .map_err(|e| e.to_string())?
        } else {
            crate::proxy::upstream::empty_client_config()?
        };
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(settings.call_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = {
            let _guard = rt.enter();
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(connector)
        };
        metrics.watch_provider();
        Ok(RemoteProvider {
            kind: settings.kind,
            endpoint: settings.endpoint.to_string(),
            secret_id: String::new(),
            dialect,
            rt: Some(rt),
            client,
            limit: Arc::new(Semaphore::new(settings.max_concurrent_calls)),
            retry_budget: settings.retry_budget,
            call_timeout: settings.call_timeout,
            metrics,
            resolved: Default::default(),
        })
    }

    /// How messages name this provider: `tencent KMS at <endpoint>`.
    pub fn describe(&self) -> String {
        format!("{} KMS at {}", self.kind.name(), self.endpoint)
    }

    /// Checks that every key in `keys` exists at the provider and can make
    /// data keys (DescribeKey); the error names the first that cannot.
    pub fn check_keys<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        for key in keys {
            let result = self.call(Call::DescribeKey(key)).and_then(|r| {
                self.dialect.usable(&r)?;
                Ok(self.dialect.key_id(&r))
            });
            match result {
                Ok(id) => {
                    // what envelopes under this key carry as its id
                    let id = cmk_of(id.as_deref().unwrap_or(key)).key_id;
                    self.resolved
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(key.to_owned(), id);
                }
                Err(KeyError::Unavailable(why)) => return Err(why),
                Err(e) => {
                    return Err(format!(
                        "the policies name key {key:?}, which the {} cannot use: {e}",
                        self.describe()
                    ))
                }
            }
        }
        Ok(())
    }

    /// Makes one call with retries within the budget; returns its result
    /// object. Blocks the calling thread (without stalling its runtime).
    fn call(&self, call: Call<'_>) -> Result<serde_json::Value, KeyError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| KeyError::Unavailable(format!("{} is shut down", self.describe())))?;
        let action = call.action();
        let params = self.dialect.params(&call);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = Attempts {
            dialect: Arc::clone(&self.dialect),
            client: self.client.clone(),
            limit: Arc::clone(&self.limit),
            metrics: Arc::clone(&self.metrics),
            budget: self.retry_budget,
            call_timeout: self.call_timeout,
            describe: self.describe(),
        };
        rt.spawn(async move {
            let _ = tx.send(task.run(action, params).await);
        });
        without_stalling(|| rx.recv()).unwrap_or_else(|_| {
            Err(KeyError::Unavailable(format!(
                "{}: the call was abandoned",
                self.describe()
            )))
        })
    }
}

/// What the spawned call needs (owned, so it runs on the provider runtime).
struct Attempts {
    dialect: Arc<dyn Dialect>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    limit: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    budget: Duration,
    call_timeout: Duration,
    describe: String,
}

impl Attempts {
    /// Tries until success, a final answer, or the budget is spent; then
    /// wipes the parameters (an Encrypt's carry a DEK made here).
    async fn run(
        self,
        action: Action,
        mut params: serde_json::Value,
    ) -> Result<serde_json::Value, KeyError> {
        let out = self.attempts(action, &params).await;
        scrub(&mut params);
        out
    }

    /// The attempts of [`run`](Self::run).
    async fn attempts(
        &self,
        action: Action,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, KeyError> {
        let deadline = tokio::time::Instant::now() + self.budget;
        let unavailable = |why: &str| {
            KeyError::Unavailable(format!(
                "{} is unavailable ({} {why}); retried for up to {} ms",
                self.describe,
                action.name(),
                self.budget.as_millis()
            ))
        };
        let mut attempt: u32 = 0;
        loop {
            let permit = match tokio::time::timeout_at(deadline, self.limit.acquire()).await {
                Ok(Ok(p)) => p,
                _ => return Err(unavailable("waited for a free call slot")),
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let started = Instant::now();
            let outcome = self.once(action, params, left.min(self.call_timeout)).await;
            drop(permit);
            let (label, failure) = match outcome {
                Ok(v) => {
                    self.metrics
                        .provider_call(action.name(), "ok", started.elapsed());
                    return Ok(v);
                }
                Err(Failure::Final(e)) => {
                    self.metrics
                        .provider_call(action.name(), "refused", started.elapsed());
                    return Err(match e {
                        KeyError::Unavailable(why) => {
                            KeyError::Unavailable(format!("{}: {why}", self.describe))
                        }
                        other => other,
                    });
                }
                Err(Failure::Throttled(why)) => ("throttled", why),
                Err(Failure::Retry(label, why)) => (label, why),
            };
            self.metrics
                .provider_call(action.name(), label, started.elapsed());
            attempt += 1;
            let step = BACKOFF_BASE.saturating_mul(1 << attempt.min(6));
            let mut pause =
                Duration::from_millis(rand::thread_rng().gen_range(0..=step.as_millis() as u64));
            if label == "throttled" {
                pause = pause.max(THROTTLE_PAUSE);
            }
            let now = tokio::time::Instant::now();
            if now + pause >= deadline {
                return Err(unavailable(&failure));
            }
            tracing::debug!(
                provider = %self.describe,
                action = action.name(),
                outcome = label,
                attempt,
                "remote key provider call failed; retrying"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt within `timeout`.
    async fn once(
        &self,
        action: Action,
        params: &serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, Failure> {
        let started = tokio::time::Instant::now();
        if let Some(login) = self.dialect.login(Instant::now()) {
            let login = login.map_err(Failure::Final)?;
            let sent = Instant::now();
            let (status, body) = tokio::time::timeout(timeout, self.exchange(login))
                .await
                .map_err(|_| Failure::Retry("timeout", "login timed out".into()))??;
            let outcome = self.dialect.logged_in(status, &body, sent);
            let label = match &outcome {
                Ok(()) => "ok",
                Err(Failure::Final(_)) => "refused",
                Err(Failure::Throttled(_)) => "throttled",
                Err(Failure::Retry(l, _)) => l,
            };
            self.metrics
                .provider_call(Action::Login.name(), label, sent.elapsed());
            outcome?;
        }
        let timeout = timeout.saturating_sub(started.elapsed());
        let now = crate::clock::unix_now() as i64;
        let req = self
            .dialect
            .request(action, params, now)
            .map_err(Failure::Final)?;
        // the answer may hold a data key: our copy is wiped after parsing
        let (status, body) = tokio::time::timeout(timeout, self.exchange(req))
            .await
            .map_err(|_| Failure::Retry("timeout", "timed out".into()))??;
        self.dialect.response(status, &body)
    }

    /// Sends one request and reads its answer (bounded) into a buffer
    /// that is wiped on drop (it may hold a data key or a token).
    async fn exchange(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, zeroize::Zeroizing<Vec<u8>>), Failure> {
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|_| Failure::Retry("network", "could not be reached".into()))?;
        let status = resp.status();
        let hint = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(4096);
        let body = collect_wiped(resp.into_body(), MAX_RESPONSE, hint).await?;
        Ok((status, body))
    }
}

/// Refuses a policy set a provider node cannot serve: searchable
/// (deterministic) fields derive their key from CMK material inside the
/// holder, and a remote KMS does not derive keys for us; a context template
/// longer than an `sg2.` envelope carries cannot bind a data key.
pub fn check_policies(set: &crate::policy::PolicySet) -> Result<(), String> {
    let max = crate::envelope::MAX_PROVIDER_TEMPLATE_LEN;
    if let Some(route) = set
        .routes()
        .iter()
        .find(|r| crate::policy::canonical_context(r.context_template()).len() > max)
    {
        return Err(format!(
            "route {:?} in {} has a context longer than {max} bytes; with [provider] the \
             context binds each data key at the remote KMS and travels in every envelope",
            route.name,
            route.file()
        ));
    }
    match set.routes().iter().find(|r| {
        !r.request.deterministic.is_empty()
            || !r.response.deterministic.is_empty()
            || !r.searchable.is_empty()
    }) {
        Some(route) => Err(format!(
            "route {:?} in {} has searchable (deterministic) fields, which need the CMK \
             material in sealgate's own key store; they are not available with [provider]",
            route.name,
            route.file()
        )),
        None => Ok(()),
    }
}

/// Zeroizes every string of a parsed answer (its Base64 `Plaintext`
/// holds a data key) or of a request's parameters before it is dropped.
pub(crate) fn scrub(v: &mut serde_json::Value) {
    use zeroize::Zeroize as _;
    match v {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(a) => a.iter_mut().for_each(scrub),
        serde_json::Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

/// A stand-in CmkRef for a remote key: its KeyId's UUID bytes when it is a
/// UUID, else the first 16 bytes of its SHA-256 (version 0: the remote KMS
/// tracks versions inside its blob).
pub fn cmk_of(remote_key_id: &str) -> CmkRef {
    let key_id = match uuid::Uuid::parse_str(remote_key_id) {
        Ok(u) => *u.as_bytes(),
        Err(_) => {
            use sha2::Digest;
            let h = sha2::Sha256::digest(remote_key_id.as_bytes());
            let mut id = [0u8; 16];
            id.copy_from_slice(&h[..16]);
            id
        }
    };
    CmkRef { key_id, version: 0 }
}

impl KeyProvider for RemoteProvider {
    fn generate_data_key(&self, _key: &str) -> Result<(CmkRef, WrappedDek, DataKey), KeyError> {
        // a remote provider's DEKs travel as CiphertextBlobs (`sg2.`)
        Err(KeyError::UnsupportedKeyUsage)
    }

    fn unwrap_data_key(&self, _cmk: &CmkRef, _wrapped: &WrappedDek) -> Result<DataKey, KeyError> {
        // an `sg1.` envelope names a CMK of a local store, which this node has not
        Err(KeyError::CmkNotFound)
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn key_id_of(&self, key: &str) -> Option<[u8; 16]> {
        let known = self
            .resolved
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied();
        Some(known.unwrap_or_else(|| cmk_of(key).key_id))
    }

    fn generate_remote_data_key(
        &self,
        key: &str,
        template: &str,
    ) -> Result<RemoteDataKey, KeyError> {
        if self.dialect.wraps_local_keys() {
            let dek = DataKey::generate(&mut rand::rngs::OsRng);
            let mut result = self.call(Call::Encrypt(key, &dek, template))?;
            let out = self.dialect.wrapped_key(key, &result, dek);
            scrub(&mut result);
            return out;
        }
        let mut result = self.call(Call::GenerateDataKey(key, template))?;
        let out = self.dialect.data_key(&result);
        scrub(&mut result);
        out
    }

    fn decrypt_remote_data_key(&self, blob: &[u8], template: &str) -> Result<DataKey, KeyError> {
        let mut result = self.call(Call::Decrypt(blob, template))?;
        let out = self.dialect.plaintext(&result);
        scrub(&mut result);
        out
    }

    fn note_coalesced(&self) {
        self.metrics.provider_coalesced();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encryption_context_names_the_template_and_the_marker() {
        assert_eq!(
            encryption_context("t:{}"),
            r#"{"context":"t:{}","sealgate":"field-dek"}"#
        );
        // what the KMS faces bind to (sorted, compact): the same bytes
        let rules = crate::kms::context::ContextRules {
            max_chars: 1024,
            strings_only: true,
        };
        let ctx = encryption_context("db \"x\" {}");
        assert_eq!(
            crate::kms::context::parse(&ctx, rules).unwrap().canonical,
            ctx
        );
        assert_ne!(encryption_context("a"), encryption_context("b"));
    }

    #[test]
    fn a_data_key_decodes_only_at_32_bytes() {
        use base64::Engine as _;
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert_eq!(decode_key(&b64(32)).unwrap().expose(), &[7u8; 32]);
        for n in [0, 16, 31, 33, 36, 64] {
            assert!(decode_key(&b64(n)).is_none(), "{n}");
        }
        assert!(decode_key("not base64!").is_none());
    }

    #[test]
    fn a_secret_body_is_exact_and_its_source_is_wiped() {
        let mut v = serde_json::json!({"plaintext": "c2VjcmV0", "n": 1});
        let expect = serde_json::to_vec(&v).unwrap();
        let body = secret_json_body(&mut v).unwrap();
        assert_eq!(&body[..], &expect[..]);
        // the parameters' strings are zeroized (emptied)
        assert_eq!(v["plaintext"], "");
        assert_eq!(v["n"], 1);
    }

    #[tokio::test]
    async fn a_response_is_read_into_one_wiped_buffer_within_its_limit() {
        use http_body_util::StreamBody;
        let frames = |parts: Vec<&'static [u8]>| {
            StreamBody::new(futures_util::stream::iter(parts.into_iter().map(|p| {
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(p)))
            })))
        };
        // grows past its hint (by copying into a new wiped buffer)
        let got = collect_wiped(frames(vec![b"abc", b"defgh", b"ij"]), 64, 2)
            .await
            .unwrap();
        assert_eq!(&got[..], b"abcdefghij");
        // a hint as large as the body: one buffer, never grown
        let got = collect_wiped(frames(vec![b"abc", b"def"]), 64, 6)
            .await
            .unwrap();
        assert_eq!((got.len(), got.capacity()), (6, 6));
        // past the limit: cut off
        assert!(matches!(
            collect_wiped(frames(vec![b"abc", b"def"]), 5, 2).await,
            Err(Failure::Retry("network", _))
        ));
    }

    #[test]
    fn a_remote_key_is_named_by_its_uuid_or_a_hash_of_its_id() {
        let u = "7f4861ce-d7b8-4708-839b-c4ee8eac7de6";
        assert_eq!(
            cmk_of(u).key_id,
            *uuid::Uuid::parse_str(u).unwrap().as_bytes()
        );
        assert_ne!(cmk_of("key-a").key_id, cmk_of("key-b").key_id);
        assert_eq!(cmk_of("key-a").version, 0);
    }
}
