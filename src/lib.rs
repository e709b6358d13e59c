//! sealgate: a transparent envelope-encryption proxy for HTTP/JSON APIs, and
//! a KMS that speaks the Tencent Cloud, Alibaba Cloud and Infisical dialects.
//!
//! Policy files pick JSON fields by JSONPath in requests and responses;
//! sealgate seals them on the way to the upstream and opens them on the way
//! back, so the upstream stores only ciphertext and the application changes
//! no code.
//!
//! # Where everything lives
//!
//! | module | what it is |
//! |---|---|
//! | `main.rs` | the binary: parses the command line with [`cli::Cli`], calls [`cli`] |
//! | [`cli`] | the parser ([`cli::Cli`]) and subcommands: `serve`, `keys`, `credentials`, `policy check|suggest`, `dev-cert`, `audit verify`, `completions`, `man` |
//! | [`app`] | wiring: config → key store → data-key cache → policies → listeners |
//! | [`config`] | `sealgate.toml` → [`config::Config`]: read, parse, validate; flags win |
//! | [`hardening`] | start-up process hardening: no core dumps, memory locked where allowed |
//! | [`secret`] | key newtypes: zeroized on drop, redacted `Debug`, never `Serialize` |
//! | [`policy`] | PURE: policy files → compiled routes, record roots and JSONPath selectors; labels and the label check; the byte-splicing JSON rewrite |
//! | [`envelope`] | PURE: the `sg1.` field envelope, AES-256-GCM with AAD, type-preserving |
//! | [`keys`] | the CMK store (redb, root key, state machine, versions), DEK wrap (RFC 3394), the data-key cache, the admin socket |
//! | [`listen`] | the one accept loop of every listener: TLS, connection cap, header timeout, drain |
//! | [`clock`] | the one source of time: the [`clock::Clock`] trait (monotonic instant, unix wall seconds), the system clock, the manual clock tests drive |
//! | [`ratelimit`] | token buckets per caller and action, on a [`clock::Clock`] |
//! | [`limits`] | where quotas are counted: in this process, or fleet-wide in Redis (GCRA in one Lua script) with a per-node fallback |
//! | [`kms`] | the KMS listener and its faces: `tencent`, `alibaba`, `infisical`; shared once: access, replay cache, form decoding, encryption context, the typed outcome audit and metrics record |
//! | [`proxy`] | the reverse proxy: server, the protocol boundary (host, method, body, media type), the phases of a request, upstream client, errors → responses |
//! | [`tls`] | rustls for every listener (reloading certificate, mTLS, ALPN h2) and the upstream client |
//! | [`metrics`] | Prometheus counters and histograms; the admin listener (`/metrics`, `/healthz`, `/readyz`) |
//! | [`console`] | the web console (`--console-listen`): routes and live counts, shadow findings and policy drafts, keys, audit; server-rendered, token log-in |
//! | [`access_log`] | the per-request access line: pre-formatted, batched to standard error by a writer thread, bounded (drops are counted) |
//! | [`audit`] | the hash-chained JSON-lines audit log of key operations and field batches; its verifier |
//! | [`rewrap`] | re-sealing stored envelopes under the primary version after a rotation (`sealgate rewrap`) |
//! | [`reload`] | policy hot reload (SIGHUP, file change): validate, create keys, swap |
//!
//! # One request through the proxy
//!
//! 1. [`listen::serve`] accepts (TLS via [`tls::Acceptor`] when configured;
//!    HTTP/1.1 or HTTP/2) and [`proxy::server`] hands each request to
//!    [`proxy::pipeline::handle`].
//! 2. *route*: a request id is kept or made; the host the request
//!    is really for (RFC 9112: one `Host`, an absolute-form authority wins)
//!    and the method it will run (override headers refused) are settled; the
//!    route is matched ([`policy::PolicySet::match_route`]: method, host, path
//!    read as upstream frameworks read it); the route's rate limit is
//!    checked. No route: the request streams through untouched.
//! 3. *request headers*, *request body*: whether there is a body is learnt from the body
//!    (HTTP/2 needs no length); the body is read up to the limit (413 over it);
//!    [`policy::rewrite`] finds the selected values and splices in, for each,
//!    [`envelope::seal`] under a data key from [`keys::DataKeyCache`] (one
//!    key-store call per data key, not per request). The AAD binds each value
//!    to the route's context and the field's label (its member path from
//!    its record: `records` says where records sit).
//! 4. *upstream*: hop-by-hop headers out, `X-Forwarded-*` in,
//!    `Accept-Encoding: identity` when the response must be rewritten; the
//!    pooled client forwards it ([`proxy::upstream`]; refused → 502, slow → 504).
//! 5. *response headers*, *response body*: the response's selected envelopes are parsed,
//!    their DEKs unwrapped (cached) and opened back to the original JSON.
//! 6. *logging*: one access line with the request id, route, status and
//!    counts — never a value — written off the request path by [`access_log`].
//!
//! Every error becomes a JSON body with a stable code in exactly one place,
//! [`proxy::error::ProxyError::answer`].
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod access_log;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod envelope;
pub mod hardening;
pub mod keys;
pub mod kms;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod rewrap;
pub mod secret;
pub mod tls;
