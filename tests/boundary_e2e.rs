//! No request reaches the upstream unsealed by a protocol trick: bodies
//! without a length (HTTP/2, chunked), path spellings a framework reads as
//! the sealed path, method overrides, member names that fold to a sealed
//! name, host tricks, bodies on methods no sealing route lists, content
//! codings and JSON media types. Real sockets on 127.0.0.1, sealgate
//! in-process, a recording upstream; every test asserts the upstream never
//! saw the plaintext.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "123-45-6789";

const POLICY: &str = r#"
[[route]]
name = "users-create"
methods = ["POST"]
path = "/users"
key = "boundary-key"
context = "users"
request.encrypt = ["$.ssn", "$.user.ssn"]
response.decrypt = ["$.ssn"]

[[route]]
name = "users-write"
methods = ["PUT", "PATCH"]
path = "/users/{id}"
key = "boundary-key"
context = "users"
request.encrypt = ["$.ssn"]

[[route]]
name = "users-read"
methods = ["GET"]
path = "/users/{id}"
key = "boundary-key"
context = "users"
response.decrypt = ["$.ssn"]

[[route]]
name = "notes"
methods = ["POST"]
path = "/notes"
key = "boundary-key"
request.encrypt = ["$.ssn"]
on_non_json = "pass"

[[route]]
name = "deep"
methods = ["POST"]
path = "/deep"
key = "boundary-key"
request.encrypt = ["$..ssn"]

[[route]]
name = "small"
methods = ["POST"]
path = "/small"
key = "boundary-key"
request.encrypt = ["$.ssn"]
max_body_bytes = 160
"#;

const HOST_POLICY: &str = r#"
[[route]]
name = "api-users"
methods = ["POST"]
host = "api.example.com"
path = "/users"
key = "boundary-key"
request.encrypt = ["$.ssn"]
"#;

const BODY: &str = r#"{"name":"Ann","ssn":"123-45-6789"}"#;

async fn start_policy(
    upstream: SocketAddr,
    policy: &str,
    tweak: impl FnOnce(&mut sealgate::config::Config),
) -> sealgate::app::App {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.toml"), policy).unwrap();
    let mut cfg = test_config(&dir, &format!("http://{upstream}"));
    tweak(&mut cfg);
    sealgate::app::start(cfg).await.unwrap()
}

async fn start(upstream: SocketAddr) -> sealgate::app::App {
    start_policy(upstream, POLICY, |_| {}).await
}

/// The one promise: whatever the upstream received, the plaintext is not in it.
fn assert_never_leaked(up: &Recorder) {
    for s in up.requests() {
        let body = String::from_utf8_lossy(&s.body);
        assert!(
            !body.contains(SECRET) && !s.uri.contains(SECRET),
            "plaintext reached the upstream: {} {} {body}",
            s.method,
            s.uri
        );
    }
}

/// The error code of a JSON error body.
fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<not an error body: {body}>"))
}

/// A body of one data frame whose length is not known in advance: hyper
/// sends it chunked over HTTP/1.1 and without `content-length` over HTTP/2.
struct Unsized(Option<Bytes>);

impl Body for Unsized {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}

fn unsized_request(
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: &str,
) -> Request<Unsized> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = content_type {
        b = b.header("content-type", t);
    }
    b.body(Unsized(Some(Bytes::from(body.to_owned())))).unwrap()
}

async fn read_resp(resp: hyper::Response<hyper::body::Incoming>) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("timed out")
}

/// Sends raw HTTP/1.1 bytes and returns the status and body of the answer.
async fn raw_h1(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = bounded(TcpStream::connect(addr)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    bounded(s.read_to_end(&mut out)).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn h1_post(target: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// True when the upstream's last request had `ssn` sealed.
fn last_sealed(up: &Recorder) -> bool {
    up.requests().last().is_some_and(|s| {
        serde_json::from_slice::<Value>(&s.body)
            .ok()
            .and_then(|v| v["ssn"].as_str().map(|t| t.starts_with("sg1.")))
            .unwrap_or(false)
    })
}

#[tokio::test]
async fn h2c_bodies_without_length_are_judged_by_the_body() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let tcp = bounded(TcpStream::connect(app.proxy_addr)).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = format!("http://{}/users", app.proxy_addr);
    for ct in [None, Some("text/plain"), Some("application/octet-stream")] {
        let resp = bounded(h2.send_request(unsized_request("POST", &uri, ct, BODY)))
            .await
            .unwrap();
        let (status, body) = read_resp(resp).await;
        assert_eq!(status, 415, "{ct:?}: {body}");
        assert_eq!(code(&body), "unsupported_media_type");
    }
    assert!(up.requests().is_empty(), "nothing may reach the upstream");
    // JSON without a length is sealed as usual
    let resp = bounded(h2.send_request(unsized_request(
        "POST",
        &uri,
        Some("application/json"),
        BODY,
    )))
    .await
    .unwrap();
    let (status, body) = read_resp(resp).await;
    assert_eq!(status, 200, "{body}");
    assert!(last_sealed(&up));
    assert_never_leaked(&up);
    app.shutdown().await;
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[tokio::test]
async fn h2_over_tls_bodies_without_length_are_judged_by_the_body() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = sealgate::cli::devcert::generate(&[], 1).unwrap();
    certs.write(certs_dir.path()).unwrap();
    let up = recording_upstream(echo()).await;
    let app = start_policy(up.addr, POLICY, |c| {
        c.tls = Some(sealgate::config::ListenerTls {
            cert_file: certs_dir.path().join("server.pem"),
            key_file: certs_dir.path().join("server-key.pem"),
            client_ca_file: None,
            http2: true,
        })
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&certs.ca_cert_pem) {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = bounded(TcpStream::connect(app.proxy_addr)).await.unwrap();
    let tls = bounded(
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = "https://localhost/users";
    for ct in [None, Some("text/plain")] {
        let resp = bounded(h2.send_request(unsized_request("POST", uri, ct, BODY)))
            .await
            .unwrap();
        let (status, body) = read_resp(resp).await;
        assert_eq!(status, 415, "{ct:?}: {body}");
    }
    assert!(up.requests().is_empty());
    let resp =
        bounded(h2.send_request(unsized_request("POST", uri, Some("application/json"), BODY)))
            .await
            .unwrap();
    let (status, body) = read_resp(resp).await;
    assert_eq!(status, 200, "{body}");
    assert!(last_sealed(&up));
    assert_never_leaked(&up);
    app.shutdown().await;
}

#[tokio::test]
async fn h1_chunked_body_without_content_type_is_refused() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let req = unsized_request(
        "POST",
        &format!("http://{}/users", app.proxy_addr),
        None,
        BODY,
    );
    let resp = bounded(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Unsized>()
            .request(req),
    )
    .await
    .unwrap();
    let (status, body) = read_resp(resp).await;
    assert_eq!(status, 415, "{body}");
    assert!(up.requests().is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn path_spellings_a_framework_reads_as_the_sealed_path_are_sealed_or_refused() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let base = format!("http://{}", app.proxy_addr);
    // matrix parameters (servlet containers drop them) and format suffixes
    // (Rails, Django REST, Spring) route to the sealing route
    for (method, path) in [
        ("POST", "/users;x=1"),
        ("POST", "/users;"),
        ("POST", "/users%3b"),
        ("POST", "/users%3Bjsessionid=1"),
        ("POST", "/users.json"),
        ("POST", "/users.xml"),
        ("POST", "/users."),
        ("POST", "/USERS/"),
        ("POST", "/u%C5%BFers"),
        ("PUT", "/users/1;x=1"),
        ("PATCH", "/users/1.json"),
    ] {
        let n = up.requests().len();
        let (status, _, body) = send_json(method, &format!("{base}{path}"), BODY).await;
        assert_eq!(status, 200, "{method} {path}: {body}");
        assert_eq!(up.requests().len(), n + 1);
        assert!(
            last_sealed(&up),
            "{method} {path} reached the upstream unsealed"
        );
    }
    // double encoding and a servlet dot segment are refused outright
    for path in ["/users%253b", "/users%253bx=1", "/x/..;/users"] {
        let n = up.requests().len();
        let (status, _, body) = send_json("POST", &format!("{base}{path}"), BODY).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (400, "ambiguous_path"),
            "{path}"
        );
        assert_eq!(up.requests().len(), n, "{path}");
    }
    assert_never_leaked(&up);
    app.shutdown().await;
}

#[tokio::test]
async fn method_overrides_are_refused_on_covered_paths() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let url = format!("http://{}/users/1", app.proxy_addr);
    for header in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let (status, _, body) = send(
            "POST",
            &url,
            &[("content-type", "application/json"), (header, "PATCH")],
            BODY,
        )
        .await;
        assert_eq!(status, 400, "{header}: {body}");
        assert_eq!(code(&body), "method_override_refused");
    }
    let (status, _, body) = send_json("POST", &format!("{url}?_method=PATCH"), BODY).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "method_override_refused")
    );
    // a form body with `_method` inside: POST has no route here, but PATCH seals
    let (status, _, body) = send(
        "POST",
        &url,
        &[("content-type", "application/x-www-form-urlencoded")],
        "_method=PATCH&ssn=123-45-6789",
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "unsealed_method_body")
    );
    assert!(up.requests().is_empty());
    // an override that names the request's own method, or on a path no
    // policy covers, passes
    let (status, _, _) = send(
        "PATCH",
        &url,
        &[
            ("content-type", "application/json"),
            ("x-http-method-override", "PATCH"),
        ],
        BODY,
    )
    .await;
    assert_eq!(status, 200);
    assert!(last_sealed(&up));
    let (status, _, _) = send(
        "POST",
        &format!("http://{}/elsewhere", app.proxy_addr),
        &[("x-http-method-override", "PATCH")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_never_leaked(&up);
    app.shutdown().await;
}

#[tokio::test]
async fn member_names_that_fold_to_a_sealed_name_are_refused() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let base = format!("http://{}", app.proxy_addr);
    for (path, body) in [
        ("/users", r#"{"ssn":"x","SSN":"123-45-6789"}"#),
        ("/users", r#"{"SSN":"123-45-6789"}"#),
        ("/users", r#"{"Ssn":"123-45-6789"}"#),
        ("/users", "{\"\u{17f}\u{17f}n\":\"123-45-6789\"}"),
        ("/users", r#"{"\u017f\u017fn":"123-45-6789"}"#),
        ("/users", r#"{"USER":{"ssn":"123-45-6789"}}"#),
        ("/users", r#"{"user":{"sSn":"123-45-6789"}}"#),
        ("/deep", r#"{"a":{"SSN":"123-45-6789"}}"#),
        ("/deep", "{\"a\":[{\"\u{17f}sn\":\"123-45-6789\"}]}"),
    ] {
        let (status, _, got) = send_json("POST", &format!("{base}{path}"), body).await;
        assert_eq!(status, 400, "{path} {body}: {got}");
        assert_eq!(code(&got), "invalid_json", "{body}");
        assert!(!got.contains(SECRET), "no plaintext in error bodies");
    }
    assert!(up.requests().is_empty());
    // names that merely start alike are not folded
    let (status, _, _) = send_json(
        "POST",
        &format!("{base}/users"),
        r#"{"ssn":"123-45-6789","ssn_note":"x","SSNs":1}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert!(last_sealed(&up));
    assert_never_leaked(&up);
    app.shutdown().await;
}

#[tokio::test]
async fn host_tricks_are_answered_as_rfc_9112_says_and_routed_by_authority() {
    let up = recording_upstream(echo()).await;
    let app = start_policy(up.addr, HOST_POLICY, |_| {}).await;
    // no Host at all: 400
    let (status, body) = raw_h1(app.proxy_addr, &h1_post("/users", "", BODY)).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "missing_host"),
        "{body}"
    );
    // two Host headers: 400
    let (status, body) = raw_h1(
        app.proxy_addr,
        &h1_post(
            "/users",
            "host: a.example\r\nhost: api.example.com\r\n",
            BODY,
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(up.requests().is_empty());
    // absolute form: the target's authority wins over Host
    let (status, body) = raw_h1(
        app.proxy_addr,
        &h1_post(
            "http://api.example.com/users",
            "host: other.example\r\n",
            BODY,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        last_sealed(&up),
        "absolute-form target dodged the host route"
    );
    let seen = up.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        last.headers.get("x-forwarded-host").unwrap(),
        "api.example.com",
        "the upstream is told the host that was routed on"
    );
    // HTTP/1.0 without Host while routes are host-scoped: 400
    let (status, body) = raw_h1(
        app.proxy_addr,
        &h1_post("/users", "", BODY).replace("HTTP/1.1", "HTTP/1.0"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_never_leaked(&up);
    app.shutdown().await;
}

#[tokio::test]
async fn unmatched_hosts_refuse_answers_421_and_pass_forwards() {
    let up = recording_upstream(echo()).await;
    let app = start_policy(up.addr, HOST_POLICY, |c| {
        c.unmatched_hosts = sealgate::config::UnmatchedHosts::Refuse
    })
    .await;
    let (status, body) = raw_h1(
        app.proxy_addr,
        &h1_post("/users", "host: api-alias.example.com\r\n", BODY),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (421, "misdirected_request"),
        "{body}"
    );
    assert!(up.requests().is_empty());
    let (status, _) = raw_h1(
        app.proxy_addr,
        &h1_post("/users", "host: API.example.com:443\r\n", BODY),
    )
    .await;
    assert_eq!(status, 200);
    assert!(last_sealed(&up));
    assert_never_leaked(&up);
    app.shutdown().await;

    // the default passes another name (documented): only the switch refuses it
    let up = recording_upstream(echo()).await;
    let app = start_policy(up.addr, HOST_POLICY, |_| {}).await;
    let (status, _) = raw_h1(
        app.proxy_addr,
        &h1_post("/users", "host: api-alias.example.com\r\n", r#"{"a":1}"#),
    )
    .await;
    assert_eq!(status, 200);
    app.shutdown().await;
}

#[tokio::test]
async fn h2_authority_is_the_host() {
    let up = recording_upstream(echo()).await;
    let app = start_policy(up.addr, HOST_POLICY, |_| {}).await;
    let tcp = bounded(TcpStream::connect(app.proxy_addr)).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://api.example.com/users")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    let (status, body) = read_resp(bounded(h2.send_request(req)).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(last_sealed(&up));
    // :authority and a Host naming another host: refused
    let req = Request::post("http://api.example.com/users")
        .header("host", "other.example")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    let (status, body) = read_resp(bounded(h2.send_request(req)).await.unwrap()).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "ambiguous_host"),
        "{body}"
    );
    assert_eq!(up.requests().len(), 1);
    assert_never_leaked(&up);
    app.shutdown().await;
}

#[tokio::test]
async fn bodies_on_methods_no_sealing_route_lists_are_refused() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let url = format!("http://{}/users/1", app.proxy_addr);
    for method in ["GET", "DELETE", "POST", "OPTIONS"] {
        let (status, _, body) = send_json(method, &url, BODY).await;
        assert_eq!(status, 400, "{method}: {body}");
        assert_eq!(code(&body), "unsealed_method_body");
    }
    assert!(up.requests().is_empty());
    // the same methods without a body pass
    for method in ["GET", "DELETE"] {
        let (status, _, _) = send(method, &url, &[], "").await;
        assert_eq!(status, 200, "{method}");
    }
    assert_never_leaked(&up);
    app.shutdown().await;
}

#[tokio::test]
async fn content_codings_are_refused_both_ways() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let (status, _, body) = send(
        "POST",
        &format!("http://{}/users", app.proxy_addr),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        BODY,
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (415, "compressed_body"),
        "{body}"
    );
    assert!(up.requests().is_empty());
    app.shutdown().await;

    // a compressed upstream answer on a route that must open it: 502
    let up = recording_upstream(std::sync::Arc::new(|_s: &Seen| {
        let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"\x1f\x8b compressed")));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r.headers_mut()
            .insert("content-encoding", "gzip".parse().unwrap());
        r
    }))
    .await;
    let app = start(up.addr).await;
    let (status, _, body) = send(
        "GET",
        &format!("http://{}/users/1", app.proxy_addr),
        &[],
        "",
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (502, "upstream_compressed"),
        "{body}"
    );
    assert_eq!(
        up.requests()[0].headers.get("accept-encoding").unwrap(),
        "identity"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn every_json_media_type_is_sealed_and_the_rest_refused() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let base = format!("http://{}", app.proxy_addr);
    for (path, ct) in [
        ("/users", "text/json"),
        ("/users", "application/x-json"),
        ("/users", "application/merge-patch+json"),
        ("/users", "application/vnd.api+json"),
        ("/users", "application/json; charset=UTF-8"),
        ("/notes", "text/json"),
        ("/notes", "application/problem+json"),
    ] {
        let (status, _, body) = send(
            "POST",
            &format!("{base}{path}"),
            &[("content-type", ct)],
            BODY,
        )
        .await;
        assert_eq!(status, 200, "{path} {ct}: {body}");
        assert!(last_sealed(&up), "{path} {ct} passed unsealed");
    }
    let n = up.requests().len();
    for (path, ct, want) in [
        (
            "/users",
            "application/json-patch+json",
            (415, "json_patch_refused"),
        ),
        (
            "/notes",
            "application/json-patch+json",
            (415, "json_patch_refused"),
        ),
        (
            "/users",
            "application/json; charset=utf-16",
            (415, "unsupported_media_type"),
        ),
        (
            "/notes",
            "application/json; charset=iso-8859-1",
            (415, "unsupported_media_type"),
        ),
        (
            "/notes",
            "application/x-ndjson",
            (415, "unsupported_media_type"),
        ),
        (
            "/users",
            "text/plain, application/json",
            (400, "ambiguous_content_type"),
        ),
    ] {
        let (status, _, body) = send(
            "POST",
            &format!("{base}{path}"),
            &[("content-type", ct)],
            BODY,
        )
        .await;
        assert_eq!((status, code(&body).as_str()), want, "{path} {ct}: {body}");
    }
    // two Content-Type headers (the client cannot send these: raw bytes)
    let (status, body) = raw_h1(
        app.proxy_addr,
        &format!(
            "POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        ),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "ambiguous_content_type"),
        "{body}"
    );
    // JSON a lenient parser reads but sealgate cannot: never passed, even on
    // a route that passes non-JSON bodies
    for body in [
        format!("\u{feff}{BODY}"),
        r#"{ssn:'123-45-6789'}"#.to_owned(),
        r#"{"ssn":"123-45-6789",}"#.to_owned(),
    ] {
        let (status, _, got) = send_json("POST", &format!("{base}/notes"), &body).await;
        assert_eq!(
            (status, code(&got).as_str()),
            (400, "invalid_json"),
            "{body}"
        );
    }
    assert_eq!(up.requests().len(), n, "refused bodies reach nothing");
    assert_never_leaked(&up);
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_that_would_not_read_back_sealed_is_refused_on_the_way_in() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let url = format!("http://{}/small", app.proxy_addr);
    // under the limit as sent, over it sealed
    let body =
        r#"{"ssn":"123-45-6789","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    assert!(body.len() < 160);
    let (status, _, got) = send_json("POST", &url, body).await;
    assert_eq!(
        (status, code(&got).as_str()),
        (413, "sealed_body_too_large"),
        "{got}"
    );
    assert!(up.requests().is_empty());
    let (status, _, got) = send_json("POST", &url, r#"{"a":1}"#).await;
    assert_eq!(status, 200, "{got}");
    app.shutdown().await;
}
