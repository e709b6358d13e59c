//! TLS with rustls (aws-lc-rs): the listeners' server configs with a
//! certificate that reloads from disk, optional client-certificate auth
//! (mTLS), the per-connection acceptor, and the upstream client's config.
//!
//! Reload: [`ReloadingCert`] is the server config's certificate resolver.
//! On every handshake it compares the certificate and key files' metadata
//! (modification time, size, inode) with what it loaded; when either changed
//! it re-reads both and, if they parse and the key matches the certificate,
//! serves the new pair from that handshake on. Connections already open keep
//! the certificate they were made with; nothing is dropped. A pair that does
//! not load (a half-written file, a key for another certificate) is logged
//! and the previous pair stays in service until a good one appears.
//!
//! The CA files reload the same way. A listener's `client_ca_file` is
//! checked on every accepted connection: when it changed, the listener's
//! server config is rebuilt with a verifier over the new CAs (and a fresh
//! session cache, so no session made under the old CAs resumes). The
//! upstream's `ca_file` is checked whenever a new upstream connection starts
//! a handshake ([`ReloadingUpstreamTrust`] is both the client config's
//! certificate verifier and its session store, which it empties on a
//! reload). A CA file that does not load keeps the previous CAs in service,
//! with a warning.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
    WebPkiServerVerifier,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, ServerConfig, SignatureScheme,
};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{ListenerTls, UpstreamTls};

/// ALPN id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a TLS config could not be built; each names the file to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's bytes).
        message: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key} is not the private key of the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = zeroize::Zeroizing::new(read(path)?);
    // the parser's message never carries key bytes
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        message: format!("no usable PRIVATE KEY block: {e}"),
    })
}

/// Reads a PEM file of CA certificates into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

type Stamps = (Option<FileStamp>, Option<FileStamp>);

#[derive(Debug)]
struct Loaded {
    stamps: Stamps,
    key: Arc<CertifiedKey>,
    /// Files seen changed but not loadable: not re-read (nor re-logged)
    /// on every handshake until they change again.
    failed: Option<Stamps>,
}

/// A server certificate that follows its PEM files (see the module docs).
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    loaded: Mutex<Loaded>,
}

impl ReloadingCert {
    /// Loads the pair now; an error here stops startup.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let provider = provider();
        let stamps = (stamp(cert_file), stamp(key_file));
        let key = Self::read_pair(cert_file, key_file, &provider)?;
        Ok(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            loaded: Mutex::new(Loaded {
                stamps,
                key,
                failed: None,
            }),
        })
    }

    fn read_pair(
        cert_file: &Path,
        key_file: &Path,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, TlsError> {
        let certs = load_certs(cert_file)?;
        let key = load_key(key_file)?;
        let ck = CertifiedKey::from_der(certs, key, provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            },
            other => TlsError::Pem {
                path: key_file.to_path_buf(),
                message: format!("key not usable: {other}"),
            },
        })?;
        Ok(Arc::new(ck))
    }

    /// The pair to serve now, re-read first if either file changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let now = (stamp(&self.cert_file), stamp(&self.key_file));
        let mut loaded = match self.loaded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if now != loaded.stamps && loaded.failed.as_ref() != Some(&now) {
            match Self::read_pair(&self.cert_file, &self.key_file, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                    *loaded = Loaded {
                        stamps: now,
                        key,
                        failed: None,
                    };
                }
                Err(e) => {
                    // keep serving the last good pair; retry when the files change again
                    tracing::warn!(error = %e, "TLS certificate changed but did not load; keeping the previous one");
                    loaded.failed = Some(now);
                }
            }
        }
        loaded.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls server config for one listener: the reloading certificate,
/// mTLS when `client_ca_file` is set, ALPN `h2` (if `http2`) and `http/1.1`.
/// (The client CA file is read once here; [`Acceptor`] follows it.)
pub fn server_config(tls: &ListenerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = Arc::new(ReloadingCert::load(&tls.cert_file, &tls.key_file)?);
    build_server_config(tls, resolver, provider())
}

fn build_server_config(
    tls: &ListenerTls,
    resolver: Arc<ReloadingCert>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Config(format!("client_ca_file {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = if tls.http2 {
        vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
    } else {
        vec![ALPN_HTTP11.to_vec()]
    };
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct LoadedServerConfig {
    ca_stamp: Option<FileStamp>,
    config: Arc<ServerConfig>,
    /// The client CA file seen changed but not loadable (see [`Loaded`]).
    failed: Option<Option<FileStamp>>,
}

/// A listener's server config that follows its `client_ca_file` (see the
/// module docs); the certificate resolver is shared by every rebuild.
#[derive(Debug)]
pub struct ReloadingServerConfig {
    tls: ListenerTls,
    resolver: Arc<ReloadingCert>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    loaded: Mutex<LoadedServerConfig>,
}

impl ReloadingServerConfig {
    /// Loads the certificate pair and the client CAs now; an error here
    /// stops startup.
    pub fn load(tls: &ListenerTls) -> Result<Self, TlsError> {
        let provider = provider();
        let resolver = Arc::new(ReloadingCert::load(&tls.cert_file, &tls.key_file)?);
        let ca_stamp = tls.client_ca_file.as_deref().and_then(stamp);
        let config = build_server_config(tls, resolver.clone(), provider.clone())?;
        Ok(Self {
            tls: tls.clone(),
            resolver,
            provider,
            loaded: Mutex::new(LoadedServerConfig {
                ca_stamp,
                config,
                failed: None,
            }),
        })
    }

    /// The config for a new connection, rebuilt first if the client CA file
    /// changed (and loads).
    pub fn current(&self) -> Arc<ServerConfig> {
        let mut loaded = match self.loaded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let Some(ca) = &self.tls.client_ca_file else {
            return loaded.config.clone();
        };
        let now = stamp(ca);
        if now != loaded.ca_stamp && loaded.failed.as_ref() != Some(&now) {
            match build_server_config(&self.tls, self.resolver.clone(), self.provider.clone()) {
                Ok(config) => {
                    tracing::info!(client_ca = %ca.display(), "TLS client CA reloaded");
                    *loaded = LoadedServerConfig {
                        ca_stamp: now,
                        config,
                        failed: None,
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS client CA file changed but did not load; keeping the previous CAs");
                    loaded.failed = Some(now);
                }
            }
        }
        loaded.config.clone()
    }
}

/// How one listener takes connections: plaintext or TLS, and which HTTP
/// versions it serves.
#[derive(Clone)]
pub struct Acceptor {
    tls: Option<Arc<ReloadingServerConfig>>,
    http2: bool,
    handshake_timeout: Duration,
    /// Shared by the clones of one listener's acceptor: one warning per
    /// listener per [`PLAIN_HTTP_LOG_EVERY`].
    plain_http: Arc<PlainHttpNotice>,
}

/// How often, at most, plain HTTP on a TLS listener is logged.
pub const PLAIN_HTTP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Rate limit of the "plain HTTP on a TLS port" warning: a misconfigured
/// client retries in a loop, and each attempt must not be a log line.
#[derive(Debug, Default)]
pub struct PlainHttpNotice {
    /// When the last warning was logged, and attempts since.
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl PlainHttpNotice {
    /// Counts one attempt at `now`; `Some(attempts not logged before it)`
    /// when this one is to be logged.
    pub fn note(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, skipped) = &mut *state;
        if last.is_some_and(|t| now.saturating_duration_since(t) < PLAIN_HTTP_LOG_EVERY) {
            *skipped += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(skipped))
    }
}

/// Whether the first byte a client sent starts plaintext HTTP rather than
/// a TLS record (handshake records begin with 0x16; every HTTP/1 method
/// and the HTTP/2 preface `PRI` begin with an upper-case letter).
fn starts_plain_http(first: u8) -> bool {
    first.is_ascii_uppercase()
}

impl Acceptor {
    /// Plaintext; `h2c` also accepts HTTP/2 with prior knowledge.
    pub fn plain(h2c: bool) -> Self {
        Self {
            tls: None,
            http2: h2c,
            handshake_timeout: Duration::from_secs(10),
            plain_http: Arc::default(),
        }
    }

    /// TLS when `tls` is set, else plaintext with `h2c` as given; a TLS
    /// handshake must finish within `handshake_timeout`.
    pub fn new(
        tls: Option<&ListenerTls>,
        h2c: bool,
        handshake_timeout: Duration,
    ) -> Result<Self, TlsError> {
        Ok(match tls {
            None => Self {
                handshake_timeout,
                ..Self::plain(h2c)
            },
            Some(t) => Self {
                tls: Some(Arc::new(ReloadingServerConfig::load(t)?)),
                http2: t.http2,
                handshake_timeout,
                plain_http: Arc::default(),
            },
        })
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether HTTP/2 is served (ALPN `h2` over TLS, h2c over plaintext).
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// Finishes the TLS handshake (if any) on an accepted connection.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<ServerStream> {
        let Some(tls) = &self.tls else {
            return Ok(ServerStream::Plain(tcp));
        };
        let tls = tokio_rustls::TlsAcceptor::from(tls.current());
        let handshake = async {
            // peeked, not read: the bytes stay for rustls
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await? == 1 && starts_plain_http(first[0]) {
                self.plain_http_seen(&tcp);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plain HTTP on a TLS port",
                ));
            }
            tls.accept(tcp).await
        };
        match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(s)) => Ok(ServerStream::Tls(Box::new(s))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }

    /// Logs (rate-limited) a client that spoke plain HTTP to this TLS
    /// listener: otherwise the client sees a closed connection and the
    /// operator sees nothing, a common and puzzling misconfiguration.
    fn plain_http_seen(&self, tcp: &TcpStream) {
        let Some(skipped) = self.plain_http.note(std::time::Instant::now()) else {
            return;
        };
        let addr = |a: io::Result<std::net::SocketAddr>| {
            a.map_or_else(|_| "?".to_string(), |a| a.to_string())
        };
        tracing::warn!(
            listener = %addr(tcp.local_addr()),
            peer = %addr(tcp.peer_addr()),
            not_logged_since_last = skipped,
            "plain HTTP received on a TLS port; the client must use https:// (connection \
             closed; logged at most once a minute per listener)"
        );
    }
}

/// An accepted connection, plaintext or TLS.
pub enum ServerStream {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// What the proxy's server knows about a request's connection; put into
/// every request's extensions (`req.extensions().get::<ConnectionInfo>()`),
/// e.g. for `X-Forwarded-Proto` and the caller's identity.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The connection is TLS.
    pub tls: bool,
    /// The client's leaf certificate, when it presented one (mTLS).
    pub client_certificate: Option<CertificateDer<'static>>,
}

impl ServerStream {
    /// The facts about this connection a request handler may want.
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            tls: matches!(self, Self::Tls(_)),
            client_certificate: self
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned()),
        }
    }

    /// The ALPN protocol agreed in the handshake, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// The client's certificate chain (mTLS), leaf first.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(s) => s.get_ref().1.peer_certificates(),
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[derive(Debug)]
struct LoadedTrust {
    stamp: Option<FileStamp>,
    verifier: Arc<WebPkiServerVerifier>,
    sessions: Arc<ClientSessionMemoryCache>,
    /// The CA file seen changed but not loadable (see [`Loaded`]).
    failed: Option<Option<FileStamp>>,
}

/// Sessions remembered per upstream name, as rustls's default.
const UPSTREAM_SESSIONS: usize = 256;

/// The upstream's trust in its `ca_file`, following the file (see the
/// module docs): the client config's certificate verifier and its session
/// store at once, so a reload also forgets sessions made under the old CAs
/// (a resumed session would skip the certificate check).
#[derive(Debug)]
pub struct ReloadingUpstreamTrust {
    ca_file: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    loaded: Mutex<LoadedTrust>,
}

impl ReloadingUpstreamTrust {
    /// Loads the CA file now; an error here stops startup.
    pub fn load(ca_file: &Path) -> Result<Self, TlsError> {
        let provider = provider();
        let stamp = stamp(ca_file);
        let verifier = Self::read(ca_file, &provider)?;
        Ok(Self {
            ca_file: ca_file.to_path_buf(),
            provider,
            loaded: Mutex::new(LoadedTrust {
                stamp,
                verifier,
                sessions: Arc::new(ClientSessionMemoryCache::new(UPSTREAM_SESSIONS)),
                failed: None,
            }),
        })
    }

    fn read(
        ca_file: &Path,
        provider: &Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
        let roots = Arc::new(load_roots(ca_file)?);
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Config(format!("upstream ca_file {}: {e}", ca_file.display())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoadedTrust> {
        match self.loaded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The verifier and session cache in service, re-read first if the CA
    /// file changed.
    fn current(&self) -> (Arc<WebPkiServerVerifier>, Arc<ClientSessionMemoryCache>) {
        let now = stamp(&self.ca_file);
        let mut loaded = self.lock();
        if now != loaded.stamp && loaded.failed.as_ref() != Some(&now) {
            match Self::read(&self.ca_file, &self.provider) {
                Ok(verifier) => {
                    tracing::info!(ca_file = %self.ca_file.display(), "upstream TLS CA reloaded");
                    *loaded = LoadedTrust {
                        stamp: now,
                        verifier,
                        sessions: Arc::new(ClientSessionMemoryCache::new(UPSTREAM_SESSIONS)),
                        failed: None,
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream TLS CA file changed but did not load; keeping the previous CAs");
                    loaded.failed = Some(now);
                }
            }
        }
        (loaded.verifier.clone(), loaded.sessions.clone())
    }

    /// The sessions in service, without looking at the file.
    fn sessions(&self) -> Arc<ClientSessionMemoryCache> {
        self.lock().sessions.clone()
    }

    /// The verifier in service, without looking at the file.
    fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        self.lock().verifier.clone()
    }
}

impl ServerCertVerifier for ReloadingUpstreamTrust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current().0.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

/// Lookups that start a handshake (a ticket or a TLS 1.2 session to
/// resume) check the CA file first; the rest use the cache in service.
impl ClientSessionStore for ReloadingUpstreamTrust {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.sessions().set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.sessions().kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.sessions().set_tls12_session(server_name, value)
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.current().1.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.sessions().remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.sessions().insert_tls13_ticket(server_name, value)
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.current().1.take_tls13_ticket(server_name)
    }
}

/// The rustls client config for an `https://` upstream: the CA file's roots
/// when given (followed on disk, see [`ReloadingUpstreamTrust`]), else the
/// system's. ALPN is set by the connector.
pub fn upstream_client_config(tls: &UpstreamTls) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    if let Some(ca) = &tls.ca_file {
        let trust = Arc::new(ReloadingUpstreamTrust::load(ca)?);
        let mut config = builder
            .dangerous()
            .with_custom_certificate_verifier(trust.clone())
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::store(trust);
        return Ok(config);
    }
    // the system's roots
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "system CA certificate not loaded");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!(ignored, "system CA certificates not usable");
    }
    if added == 0 {
        return Err(TlsError::Config(
            "no system CA certificates found; set upstream_tls.ca_file".into(),
        ));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The fixed server name of `[upstream_tls] server_name`, if set.
pub fn upstream_server_name(tls: &UpstreamTls) -> Result<Option<ServerName<'static>>, TlsError> {
    tls.server_name
        .as_deref()
        .map(|n| {
            ServerName::try_from(n.to_string()).map_err(|_| {
                TlsError::Config(format!("upstream_tls.server_name {n:?} is not a name"))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, hosts: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        // write beside and rename, as an operator's tooling would
        std::fs::write(dir.join("cert.tmp"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.tmp"), key.serialize_pem()).unwrap();
        std::fs::rename(dir.join("cert.tmp"), &c).unwrap();
        std::fs::rename(dir.join("key.tmp"), &k).unwrap();
        (c, k, cert.der().to_vec())
    }

    #[test]
    fn reloads_a_replaced_pair_and_keeps_the_old_one_when_the_new_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, der1) = write_pair(dir.path(), &["one.test"]);
        let r = ReloadingCert::load(&c, &k).unwrap();
        assert_eq!(r.current().end_entity_cert().unwrap().as_ref(), &der1[..]);

        let (_, _, der2) = write_pair(dir.path(), &["two.test"]);
        assert_eq!(r.current().end_entity_cert().unwrap().as_ref(), &der2[..]);

        // a truncated certificate file: the previous pair keeps serving
        std::fs::write(&c, "-----BEGIN CERTIFICATE-----\nAAAA").unwrap();
        assert_eq!(r.current().end_entity_cert().unwrap().as_ref(), &der2[..]);

        // a key from another pair: refused as a mismatch, old pair kept
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_, k3, _) = write_pair(a.path(), &["three.test"]);
        let (c2, _, _) = write_pair(b.path(), &["four.test"]);
        std::fs::copy(&c2, &c).unwrap();
        std::fs::copy(&k3, &k).unwrap();
        let e = ReloadingCert::load(&c, &k).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        assert_eq!(r.current().end_entity_cert().unwrap().as_ref(), &der2[..]);
        assert_eq!(r.current().end_entity_cert().unwrap().as_ref(), &der2[..]);

        // a good pair again: served from the next handshake on
        let (_, _, der5) = write_pair(dir.path(), &["five.test"]);
        assert_eq!(r.current().end_entity_cert().unwrap().as_ref(), &der5[..]);
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = ReloadingCert::load(&missing, &missing).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let e = load_certs(&junk).unwrap_err();
        assert!(e.to_string().contains("junk.pem"), "{e}");
        let e = load_key(&junk).unwrap_err();
        assert!(e.to_string().contains("junk.pem"), "{e}");
    }

    #[test]
    fn server_config_is_rebuilt_only_when_the_client_ca_file_changes_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, _) = write_pair(dir.path(), &["localhost"]);
        let ca = dir.path().join("ca.pem");
        std::fs::copy(&c, &ca).unwrap();
        let r = ReloadingServerConfig::load(&ListenerTls {
            cert_file: c,
            key_file: k,
            client_ca_file: Some(ca.clone()),
            http2: true,
        })
        .unwrap();
        let first = r.current();
        assert!(Arc::ptr_eq(&first, &r.current()), "unchanged: same config");

        let other = tempfile::tempdir().unwrap();
        let (c2, _, _) = write_pair(other.path(), &["ca.test"]);
        std::fs::copy(&c2, dir.path().join("ca.tmp")).unwrap();
        std::fs::rename(dir.path().join("ca.tmp"), &ca).unwrap();
        let second = r.current();
        assert!(!Arc::ptr_eq(&first, &second), "a new CA file: rebuilt");
        assert!(Arc::ptr_eq(&second, &r.current()));

        std::fs::write(&ca, "junk").unwrap();
        assert!(Arc::ptr_eq(&second, &r.current()), "broken: kept");
        assert!(Arc::ptr_eq(&second, &r.current()));
    }

    #[test]
    fn upstream_trust_follows_its_ca_file_and_forgets_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _, der) = write_pair(dir.path(), &["up.test"]);
        let ca = dir.path().join("ca.pem");
        std::fs::copy(&c, &ca).unwrap();
        let t = ReloadingUpstreamTrust::load(&ca).unwrap();
        let name = ServerName::try_from("up.test").unwrap();
        let leaf = CertificateDer::from(der);
        let verify = |t: &ReloadingUpstreamTrust| {
            t.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        };
        let (v1, s1) = t.current();
        assert!(Arc::ptr_eq(&v1, &t.current().0), "unchanged: same verifier");

        let other = tempfile::tempdir().unwrap();
        let (c2, _, _) = write_pair(other.path(), &["other.test"]);
        std::fs::copy(&c2, dir.path().join("ca.tmp")).unwrap();
        std::fs::rename(dir.path().join("ca.tmp"), &ca).unwrap();
        let (v2, s2) = t.current();
        assert!(!Arc::ptr_eq(&v1, &v2) && !Arc::ptr_eq(&s1, &s2));
        assert!(verify(&t).is_err(), "the old root is gone");

        std::fs::write(&ca, "junk").unwrap();
        let (v3, s3) = t.current();
        assert!(
            Arc::ptr_eq(&v2, &v3) && Arc::ptr_eq(&s2, &s3),
            "broken: kept"
        );
    }

    #[test]
    fn plain_http_is_told_from_tls_and_its_warning_is_rate_limited() {
        for b in b"GET POST PUT DELETE HEAD OPTIONS PATCH PRI" {
            assert!(*b == b' ' || starts_plain_http(*b), "{}", *b as char);
        }
        // a TLS handshake record, and an SSLv2-style hello
        assert!(!starts_plain_http(0x16) && !starts_plain_http(0x80));
        let n = PlainHttpNotice::default();
        let t0 = std::time::Instant::now();
        assert_eq!(n.note(t0), Some(0));
        assert_eq!(n.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(n.note(t0 + Duration::from_secs(59)), None);
        assert_eq!(n.note(t0 + PLAIN_HTTP_LOG_EVERY), Some(2));
        assert_eq!(n.note(t0 + PLAIN_HTTP_LOG_EVERY), None);
    }

    #[test]
    fn alpn_follows_the_http2_switch() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, _) = write_pair(dir.path(), &["localhost"]);
        let mut t = ListenerTls {
            cert_file: c,
            key_file: k,
            client_ca_file: None,
            http2: true,
        };
        assert_eq!(
            server_config(&t).unwrap().alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        t.http2 = false;
        assert_eq!(
            server_config(&t).unwrap().alpn_protocols,
            vec![b"http/1.1".to_vec()]
        );
    }
}
