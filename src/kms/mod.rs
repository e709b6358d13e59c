//! The HTTP faces of the key store: Tencent Cloud KMS, Alibaba Cloud KMS and
//! Infisical KMS, all on one listener.
//!
//! The dispatcher reads a bounded body, tells the dialect apart by the
//! request itself (`X-TC-*` headers or Tencent's `SecretId`/`/v2/index.php`,
//! `x-acs-*` headers or Alibaba's `AccessKeyId`, `x-kms-apiname` for the
//! Alibaba instance API, `/api/` paths for Infisical) and hands it to that
//! face. Each face checks the caller, rate-limits, calls the shared
//! [`KeyStore`](crate::keys::KeyStore), and answers in its own shape.
//!
//! Every face has one shape: a dialect is its signature check (`sign`), its
//! wire parse (`wire`), a table of actions grouped by family, and its error
//! encoding (`errors`). What they share exists once, here: who the caller
//! is and which keys it may use ([`access`]), the replay cache ([`replay`]),
//! query and form decoding ([`form`]), the canonical EncryptionContext
//! ([`context`]), the signing primitives ([`signing`]), the limiter's quota
//! table ([`crate::ratelimit::QuotaTable`]) and the accept loop
//! ([`crate::listen`]). A face answers with a [`KmsReply`]: its response and
//! a typed [`KmsOutcome`] that the audit log and the metrics record without
//! reading the request or the response again.

/// A closed set of wire strings as an enum with `as_str` and `parse`; the
/// faces' parameter types (key specs, usages, states, algorithms) use it.
macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident { $($var:ident = $s:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum $name { $($var),* }

        impl $name {
            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),* }
            }
            /// Parses the wire spelling (case-sensitive).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$var),)* _ => None }
            }
        }
    };
}

pub mod access;
pub mod alibaba;
pub mod context;
pub mod form;
pub mod infisical;
pub mod replay;
pub mod signing;
pub mod tencent;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::keys::KeyId;

/// Largest KMS request body read (Alibaba's instance API allows 3 MB).
pub const MAX_KMS_BODY: usize = 4 * 1024 * 1024;

/// One KMS request, body read.
#[derive(Debug, Clone)]
pub struct KmsRequest {
    /// Method.
    pub method: Method,
    /// Target (path and query).
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
    /// The client's address.
    pub peer: SocketAddr,
}

impl KmsRequest {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The headers as a signature verifier reads them (name, text value;
    /// values that are not text are left out), with the target's authority
    /// as `host` when no Host header was sent (HTTP/2 sends `:authority`).
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
            .collect();
        if !self.headers.contains_key(http::header::HOST) {
            if let Some(a) = self.uri.authority() {
                headers.push(("host", a.as_str()));
            }
        }
        headers
    }

    /// The request as a signature verifier sees it, over `headers` (from
    /// [`Self::header_pairs`]).
    pub fn signing_parts<'a>(
        &'a self,
        headers: &'a [(&'a str, &'a str)],
    ) -> signing::RequestParts<'a> {
        signing::RequestParts {
            method: self.method.as_str(),
            path: self.uri.path(),
            query: self.uri.query().unwrap_or(""),
            headers,
            body: &self.body,
        }
    }

    /// Parameters of the query string and, for a form body, the form, in order.
    pub fn flat_params(&self) -> Vec<(String, String)> {
        let mut out = form::decode(self.uri.query().unwrap_or("")).unwrap_or_default();
        let is_form = self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            out.extend(form::decode(&String::from_utf8_lossy(&self.body)).unwrap_or_default());
        }
        out
    }
}

/// A dialect of the KMS API. Handlers are synchronous (the store does
/// blocking, synced writes); the dispatcher runs them off the async threads.
pub trait Face: Send + Sync {
    /// Answers one request in this dialect's shape, with what it came to.
    fn handle(&self, req: KmsRequest) -> KmsReply;
}

/// A face's answer: the HTTP response, and the typed outcome that audit and
/// metrics record (they never read the request or the response again).
#[derive(Debug)]
pub struct KmsReply {
    /// What goes back to the client.
    pub response: Response<Full<Bytes>>,
    /// What the request came to.
    pub outcome: KmsOutcome,
}

/// What one KMS request came to, as the face itself knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsOutcome {
    /// The dialect that answered.
    pub dialect: Dialect,
    /// The dialect's action name (`Encrypt`, `AdvanceDecrypt`, Infisical's
    /// route names such as `EncryptData`); [`UNKNOWN_ACTION`] when the
    /// request was refused before its action was known.
    pub action: &'static str,
    /// The credential id that proved itself (an AccessKeyId, SecretId,
    /// client key id or universal-auth clientId); `None` when none did.
    pub credential: Option<String>,
    /// The key the request touched (resolved from an alias or a blob), once
    /// the face got that far.
    pub key: Option<KeyId>,
    /// The dialect's error code; `None` for a success.
    pub code: Option<&'static str>,
    /// Refused by a rate limit (or a full replay cache).
    pub limited: bool,
}

/// [`KmsOutcome::action`] of a request refused before its action was known.
pub const UNKNOWN_ACTION: &str = "unknown";

impl KmsOutcome {
    /// An outcome of `dialect` with nothing known yet.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            action: UNKNOWN_ACTION,
            credential: None,
            key: None,
            code: None,
            limited: false,
        }
    }

    /// `ok`, or the error code.
    pub fn result(&self) -> &'static str {
        self.code.unwrap_or("ok")
    }
}

/// The key one request touched, noted where the face resolves it (the
/// access check, an alias, a blob's header). The first key noted stays:
/// for ReEncrypt that is the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyNote(Cell<Option<KeyId>>);

impl KeyNote {
    /// Notes `id` unless a key is noted already.
    pub fn note(&self, id: KeyId) {
        if self.0.get().is_none() {
            self.0.set(Some(id));
        }
    }

    /// The key noted, if any.
    pub fn get(&self) -> Option<KeyId> {
        self.0.get()
    }
}

/// Which dialect a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Tencent Cloud KMS (API 3.0, v1 signature, legacy /v2/index.php).
    Tencent,
    /// Alibaba Cloud KMS OpenAPI (RPC style).
    Alibaba,
    /// Alibaba Cloud KMS instance API (protobuf).
    AlibabaInstance,
    /// Infisical KMS.
    Infisical,
}

impl Dialect {
    /// The name audit lines and metrics use (`kms.<name>.<Action>`, the
    /// `source` label): the instance API counts as `alibaba`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Tencent => "tencent",
            Dialect::Alibaba | Dialect::AlibabaInstance => "alibaba",
            Dialect::Infisical => "infisical",
        }
    }
}

/// Tells the dialect from the request itself.
pub fn dialect(req: &KmsRequest) -> Option<Dialect> {
    let path = req.uri.path();
    if path.starts_with("/api/") {
        return Some(Dialect::Infisical);
    }
    if req.headers.contains_key("x-kms-apiname") {
        return Some(Dialect::AlibabaInstance);
    }
    if req.headers.contains_key("x-tc-action") || path == "/v2/index.php" {
        return Some(Dialect::Tencent);
    }
    if req.headers.contains_key("x-acs-action") {
        return Some(Dialect::Alibaba);
    }
    let params = req.flat_params();
    let has = |k: &str| params.iter().any(|(n, _)| n == k);
    if has("SecretId") {
        return Some(Dialect::Tencent);
    }
    if has("AccessKeyId")
        || params
            .iter()
            .any(|(n, v)| n == "Version" && v == "2016-01-20")
    {
        return Some(Dialect::Alibaba);
    }
    None
}

/// The faces this listener serves (a missing one answers 404).
#[derive(Clone, Default)]
pub struct Faces {
    /// Tencent Cloud KMS.
    pub tencent: Option<Arc<dyn Face>>,
    /// Alibaba Cloud KMS (both APIs).
    pub alibaba: Option<Arc<dyn Face>>,
    /// Infisical KMS.
    pub infisical: Option<Arc<dyn Face>>,
}

fn plain_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"error": {"code": "unknown_dialect", "message": message}});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn dispatch(
    faces: Faces,
    peer: SocketAddr,
    req: http::Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_KMS_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return plain_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
            )
        }
    };
    let req = KmsRequest {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
        peer,
    };
    let face = match dialect(&req) {
        Some(Dialect::Tencent) => faces.tencent,
        Some(Dialect::Alibaba) | Some(Dialect::AlibabaInstance) => faces.alibaba,
        Some(Dialect::Infisical) => faces.infisical,
        None => None,
    };
    let Some(face) = face else {
        return plain_error(
            StatusCode::NOT_FOUND,
            "not a KMS request this listener serves",
        );
    };
    match tokio::task::spawn_blocking(move || face.handle(req)).await {
        Ok(r) => r.response,
        Err(_) => plain_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// Serves the KMS faces on `listener` (through `acceptor`: plaintext or
/// TLS) until `shutdown` resolves, with the same connection cap, header
/// timeout and drain as every listener ([`crate::listen`]).
pub async fn serve(
    listener: TcpListener,
    acceptor: crate::tls::Acceptor,
    faces: Faces,
    shutdown: impl Future<Output = ()>,
    limits: crate::listen::ListenLimits,
) {
    crate::listen::serve(
        "kms",
        listener,
        acceptor,
        limits,
        shutdown,
        move |peer, req| dispatch(faces.clone(), peer, req),
    )
    .await;
}
