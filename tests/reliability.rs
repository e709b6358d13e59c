//! Reliability: bad input, hostile clients, upstream and key-store faults.
//! Real sockets on 127.0.0.1, sealgate started in-process, a recording
//! upstream; every wait is bounded. Each refusal is a clear JSON error with
//! the right status, nothing refused reaches the upstream, and after every
//! hostile client a normal request still succeeds.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single wait in this file (never a timing assertion).
const BOUND: Duration = Duration::from_secs(20);

const POLICY: &str = r#"
[[route]]
name = "users"
methods = ["POST", "PUT"]
path = "/users"
key = "test-key"
context = "users"
request.encrypt = ["$.ssn", "$.card"]
response.decrypt = ["$.ssn", "$.card"]

[[route]]
name = "user-read"
methods = ["GET"]
path = "/users/{id}"
key = "test-key"
context = "users"
response.decrypt = ["$.ssn", "$.card"]

[[route]]
name = "strict-read"
methods = ["GET"]
path = "/strict/{id}"
key = "test-key"
context = "users"
response.decrypt = ["$.ssn"]
on_plaintext = "refuse"

[[route]]
name = "lenient-read"
methods = ["GET"]
path = "/lenient/{id}"
key = "test-key"
context = "users"
response.decrypt = ["$.ssn"]
on_open_failure = "keep-envelope"

[[route]]
name = "records"
methods = ["PUT", "GET"]
path = "/records/{id}"
key = "test-key"
context = "records:{id}"
request.encrypt = ["$.ssn"]
response.decrypt = ["$.ssn"]

[[route]]
name = "orders"
methods = ["POST"]
path = "/orders"
key = "test-key"
context = "orders"
request.encrypt = ["$.ssn"]
"#;

/// A recording upstream whose reply body for GETs the test sets; other
/// requests are echoed.
struct Upstream {
    rec: Recorder,
    next: Arc<Mutex<(String, Vec<u8>)>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let next = Arc::new(Mutex::new(("application/json".to_string(), b"{}".to_vec())));
        let n = next.clone();
        let reply: Reply = Arc::new(move |s: &Seen| {
            let (ct, body) = if s.method == "GET" {
                n.lock().unwrap().clone()
            } else {
                ("application/json".to_string(), s.body.to_vec())
            };
            let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert("content-type", ct.parse().unwrap());
            r
        });
        Upstream {
            rec: recording_upstream(reply).await,
            next,
        }
    }

    fn answer_gets_with(&self, content_type: &str, body: impl AsRef<[u8]>) {
        *self.next.lock().unwrap() = (content_type.to_string(), body.as_ref().to_vec());
    }

    fn count(&self) -> usize {
        self.rec.requests().len()
    }
}

fn data_dir() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.toml"), POLICY).unwrap();
    dir
}

/// A config on `dir` with the root key in a file of its own outside the
/// data directory (`<dir>/root.key`), so no test depends on the environment.
fn config(dir: &Path, upstream: SocketAddr) -> sealgate::config::Config {
    let mut cfg = test_config(dir, &format!("http://{upstream}"));
    cfg.root_key_file = Some(dir.join("root.key"));
    cfg
}

async fn start_with(
    upstream: SocketAddr,
    tweak: impl FnOnce(&mut sealgate::config::Config),
) -> sealgate::app::App {
    let dir = data_dir();
    let mut cfg = config(&dir, upstream);
    tweak(&mut cfg);
    sealgate::app::start(cfg).await.unwrap()
}

/// The error code of a sealgate JSON error body (panics if it is not one).
fn code(body: &str) -> String {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"));
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"))
        .to_string()
}

/// A normal sealed request still works (and reaches the upstream once).
async fn still_serves(app: &sealgate::app::App, up: &Upstream) {
    let before = up.count();
    let body = r#"{"ssn":"000-00-0000","name":"ok"}"#;
    let (s, _, got) = send_json("POST", &format!("http://{}/users", app.proxy_addr), body).await;
    assert_eq!(s, 200, "sealgate stopped serving: {got}");
    assert_eq!(got, body);
    assert_eq!(up.count(), before + 1);
}

/// Writes `bytes` on a fresh connection, optionally half-closes, and reads
/// whatever comes back until the server closes (bounded).
async fn raw(addr: SocketAddr, bytes: &[u8], half_close: bool) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // the server may close before taking everything; that is its right
    let _ = s.write_all(bytes).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw HTTP/1.1 response ("" → 0).
fn raw_status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn raw_body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

// ------------------------------------------------------------- bad input

#[tokio::test]
async fn bad_request_bodies_get_clear_errors_and_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let app = start_with(up.rec.addr, |c| c.max_body_bytes = 64 * 1024).await;
    let url = format!("http://{}/users", app.proxy_addr);
    let deep = format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000));
    let deep_obj = format!(r#"{{"ssn":{}1{}}}"#, "[".repeat(5_000), "]".repeat(5_000));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            br#"{"ssn": "123-45-6789""#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "trailing garbage",
            br#"{"ssn":"1"} x"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "not JSON at all",
            b"ssn=123-45-6789".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "deeply nested array",
            deep.into_bytes(),
            400,
            "invalid_json",
        ),
        (
            "deeply nested field",
            deep_obj.into_bytes(),
            400,
            "invalid_json",
        ),
        (
            "invalid UTF-8",
            b"{\"ssn\":\"12\xff\xfe3\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "invalid UTF-8 elsewhere",
            b"{\"ssn\":\"1\",\"n\":\"\xc3\x28\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "lone surrogate",
            br#"{"ssn":"\ud800"}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "duplicate key",
            br#"{"ssn":"1","ssn":"123-45-6789"}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "escaped duplicate key",
            br#"{"ssn":"1","\u0073sn":"123-45-6789"}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "over the limit",
            format!(r#"{{"ssn":"{}"}}"#, "9".repeat(70_000)).into_bytes(),
            413,
            "body_too_large",
        ),
    ];
    for (what, body, status, want) in cases {
        let req = hyper::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = tokio::time::timeout(BOUND, client().request(req))
            .await
            .unwrap()
            .unwrap();
        let s = resp.status().as_u16();
        let b = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let b = String::from_utf8_lossy(&b).into_owned();
        assert_eq!(s, status, "{what}: {b}");
        assert_eq!(code(&b), want, "{what}: {b}");
        assert!(
            !b.contains("123-45-6789"),
            "{what}: error echoes the value: {b}"
        );
        if what.starts_with("deeply") {
            assert!(b.contains("deeply"), "{what}: the error says why: {b}");
        }
    }
    assert_eq!(up.count(), 0, "a refused body reached the upstream");
    still_serves(&app, &up).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_sealing_route_refuses_a_body_that_is_not_declared_json() {
    let up = Upstream::start().await;
    let app = start_with(up.rec.addr, |_| {}).await;
    let url = format!("http://{}/users", app.proxy_addr);
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let (s, _, b) = send("POST", &url, &headers, r#"{"ssn":"123-45-6789"}"#).await;
        assert_eq!(s, 415, "{ct:?}: {b}");
        assert_eq!(code(&b), "unsupported_media_type");
    }
    assert_eq!(up.count(), 0);
    still_serves(&app, &up).await;
    app.shutdown().await;
}

#[tokio::test]
async fn huge_numbers_round_trip_exactly_or_are_refused_clearly() {
    let up = Upstream::start().await;
    let app = start_with(up.rec.addr, |_| {}).await;
    let url = format!("http://{}/users", app.proxy_addr);
    // beyond f64 precision: kept byte for byte, sealed or not
    let body = r#"{"ssn":123456789012345678901234567890.000000000000000000001,"n":-98765432109876543210987654321e-5}"#;
    let (s, _, got) = send_json("POST", &url, body).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        got, body,
        "numbers must come back with the exact digits sent"
    );
    let seen = up.rec.requests();
    let stored = String::from_utf8_lossy(&seen[0].body).into_owned();
    assert!(!stored.contains("1234567890123"), "{stored}");
    assert!(
        stored.contains("-98765432109876543210987654321e-5"),
        "{stored}"
    );
    // beyond f64 range: sealed exactly when selected; either way never altered
    for body in [r#"{"ssn":1e400}"#, r#"{"ssn":"1","n":-1e99999}"#] {
        let before = up.count();
        let (s, _, got) = send_json("POST", &url, body).await;
        if s == 200 {
            assert_eq!(got, body, "an out-of-range number was altered");
        } else {
            assert_eq!(s, 400, "{body}: {got}");
            assert_eq!(code(&got), "invalid_json");
            assert_eq!(up.count(), before, "refused but forwarded");
        }
    }
    still_serves(&app, &up).await;
    app.shutdown().await;
}

/// Seals `{"ssn": ssn, "card": card}` through `path` and returns the
/// envelopes the upstream stored.
async fn seal_via(
    app: &sealgate::app::App,
    up: &Upstream,
    method: &str,
    path: &str,
    body: &str,
) -> Value {
    let before = up.count();
    let (s, _, b) = send_json(method, &format!("http://{}{path}", app.proxy_addr), body).await;
    assert_eq!(s, 200, "{b}");
    let seen = up.rec.requests();
    assert_eq!(seen.len(), before + 1);
    serde_json::from_slice(&seen[before].body).unwrap()
}

fn flip_char(s: &str, at: usize) -> String {
    let mut c: Vec<char> = s.chars().collect();
    c[at] = if c[at] == 'A' { 'B' } else { 'A' };
    c.into_iter().collect()
}

#[tokio::test]
async fn envelopes_that_do_not_belong_are_refused_with_502_and_no_plaintext() {
    use base64::Engine as _;
    let up = Upstream::start().await;
    let app = start_with(up.rec.addr, |_| {}).await;
    let base = format!("http://{}", app.proxy_addr);
    let stored = seal_via(
        &app,
        &up,
        "POST",
        "/users",
        r#"{"ssn":"123-45-6789","card":"4111111111111111"}"#,
    )
    .await;
    let ssn = stored["ssn"].as_str().unwrap().to_string();
    let card = stored["card"].as_str().unwrap().to_string();
    let order = seal_via(&app, &up, "POST", "/orders", r#"{"ssn":"123-45-6789"}"#).await["ssn"]
        .as_str()
        .unwrap()
        .to_string();
    let rec1 = seal_via(&app, &up, "PUT", "/records/1", r#"{"ssn":"123-45-6789"}"#).await["ssn"]
        .as_str()
        .unwrap()
        .to_string();

    // an envelope of a CMK this store does not hold: another sealgate's
    let other_up = Upstream::start().await;
    let other = start_with(other_up.rec.addr, |_| {}).await;
    let foreign = seal_via(
        &other,
        &other_up,
        "POST",
        "/users",
        r#"{"ssn":"123-45-6789"}"#,
    )
    .await["ssn"]
        .as_str()
        .unwrap()
        .to_string();
    other.shutdown().await;

    // sanity: the genuine articles open
    up.answer_gets_with(
        "application/json",
        format!(r#"{{"ssn":"{ssn}","card":"{card}"}}"#),
    );
    let (s, _, b) = send("GET", &format!("{base}/users/1"), &[], "").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, r#"{"ssn":"123-45-6789","card":"4111111111111111"}"#);
    up.answer_gets_with("application/json", format!(r#"{{"ssn":"{rec1}"}}"#));
    let (s, _, b) = send("GET", &format!("{base}/records/1"), &[], "").await;
    assert_eq!((s, b.as_str()), (200, r#"{"ssn":"123-45-6789"}"#));

    let raw_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&ssn[4..])
        .unwrap();
    let padded = format!(
        "sg1.{}",
        base64::engine::general_purpose::URL_SAFE.encode(&raw_bytes)
    );
    let std_alphabet = format!(
        "sg1.{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw_bytes)
    );
    let mid = ssn.len() / 2;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "tampered ciphertext",
            format!(r#"{{"ssn":"{}"}}"#, flip_char(&ssn, ssn.len() - 30)),
            "/users/1",
        ),
        (
            "tampered key id",
            format!(r#"{{"ssn":"{}"}}"#, flip_char(&ssn, 8)),
            "/users/1",
        ),
        (
            "tampered wrapped key",
            format!(r#"{{"ssn":"{}"}}"#, flip_char(&ssn, 40)),
            "/users/1",
        ),
        (
            "tampered nonce",
            format!(r#"{{"ssn":"{}"}}"#, flip_char(&ssn, 88)),
            "/users/1",
        ),
        (
            "truncated",
            format!(r#"{{"ssn":"{}"}}"#, &ssn[..mid]),
            "/users/1",
        ),
        (
            "truncated by one",
            format!(r#"{{"ssn":"{}"}}"#, &ssn[..ssn.len() - 1]),
            "/users/1",
        ),
        (
            "re-encoded with padding",
            format!(r#"{{"ssn":"{padded}"}}"#),
            "/users/1",
        ),
        (
            "re-encoded in another alphabet",
            format!(r#"{{"ssn":"{std_alphabet}"}}"#),
            "/users/1",
        ),
        (
            "moved from another field",
            format!(r#"{{"ssn":"{card}"}}"#),
            "/users/1",
        ),
        (
            "moved from another route",
            format!(r#"{{"ssn":"{order}"}}"#),
            "/users/1",
        ),
        (
            "moved from another record",
            format!(r#"{{"ssn":"{rec1}"}}"#),
            "/records/2",
        ),
        (
            "from another key",
            format!(r#"{{"ssn":"{foreign}"}}"#),
            "/users/1",
        ),
        (
            "unknown version",
            r#"{"ssn":"sg9.AAAA"}"#.to_string(),
            "/users/1",
        ),
    ];
    for (what, body, path) in &cases {
        if what.contains("alphabet") && !std_alphabet.contains(['+', '/']) {
            continue; // this envelope happens to use neither character
        }
        up.answer_gets_with("application/json", body);
        let (s, _, b) = send("GET", &format!("{base}{path}"), &[], "").await;
        // every one of these is the upstream's bad data, including an
        // envelope naming a CMK this store does not hold
        let c = code(&b);
        assert_eq!((s, c.as_str()), (502, "field_does_not_open"), "{what}: {b}");
        assert!(
            !b.contains("123-45-6789") && !b.contains("4111111111111111"),
            "{what}: {b}"
        );
        assert!(
            !b.contains("sg1."),
            "{what}: the error echoes the envelope: {b}"
        );
    }
    // the route's choice: keep-envelope hands the envelope back untouched
    let tampered = format!(r#"{{"ssn":"{}"}}"#, flip_char(&ssn, ssn.len() - 30));
    up.answer_gets_with("application/json", &tampered);
    let (s, _, b) = send("GET", &format!("{base}/lenient/1"), &[], "").await;
    assert_eq!((s, b.as_str()), (200, tampered.as_str()));
    still_serves(&app, &up).await;
    app.shutdown().await;
}

#[tokio::test]
async fn upstream_plaintext_and_malformed_json_are_handled_as_the_route_says() {
    let up = Upstream::start().await;
    let app = start_with(up.rec.addr, |_| {}).await;
    let base = format!("http://{}", app.proxy_addr);
    // plaintext where an envelope is expected
    let plain = r#"{"ssn":"123-45-6789"}"#;
    up.answer_gets_with("application/json", plain);
    let (s, _, b) = send("GET", &format!("{base}/users/1"), &[], "").await;
    assert_eq!(
        (s, b.as_str()),
        (200, plain),
        "default route passes legacy plaintext"
    );
    let (s, _, b) = send("GET", &format!("{base}/strict/1"), &[], "").await;
    assert_eq!(s, 502, "{b}");
    assert_eq!(code(&b), "field_does_not_open");
    assert!(!b.contains("123-45-6789"), "{b}");
    // malformed JSON where envelopes are expected: no envelope can be
    // opened out of it, so the client gets the upstream's bytes unchanged
    for bad in [
        &br#"{"ssn":"sg1.AAAA""#[..],
        b"<html>oops</html>",
        b"{\"ssn\":\"\xff\"}",
    ] {
        up.answer_gets_with("application/json", bad);
        for path in ["/users/1", "/strict/1"] {
            let (s, _, b) = send("GET", &format!("{base}{path}"), &[], "").await;
            assert_eq!(s, 200, "{path}: {b}");
            assert_eq!(b, String::from_utf8_lossy(bad), "{path}");
        }
    }
    still_serves(&app, &up).await;
    app.shutdown().await;
}

// ------------------------------------------------------ hostile clients

#[tokio::test]
async fn slow_headers_are_cut_off_by_the_header_read_timeout() {
    let up = Upstream::start().await;
    let app = start_with(up.rec.addr, |c| {
        c.header_read_timeout = Duration::from_millis(300)
    })
    .await;
    let mut s = TcpStream::connect(app.proxy_addr).await.unwrap();
    s.write_all(b"GET /users/1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // never finish the head: the server must close the connection by itself
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(BOUND, s.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a connection with an unfinished head stayed open"
    );
    assert!(
        buf.is_empty(),
        "nothing is answered to a head that never ends: {}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(up.count(), 0);
    still_serves(&app, &up).await;
    app.shutdown().await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_refused() {
    let up = Upstream::start().await;
    let app = start_with(up.rec.addr, |_| {}).await;
    let mut many = String::from("GET /users/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let huge = format!(
        "GET /users/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    for (what, req) in [("many", many), ("huge", huge)] {
        let resp = raw(app.proxy_addr, req.as_bytes(), false).await;
        // The server answers 431 and closes with the rest of a 1 MiB head
        // unread, which resets the connection; the reset may reach the
        // client before it reads the answer. Either way nothing got through.
        let reset_first = what == "huge" && resp.is_empty();
        assert!(
            raw_status(&resp) == 431 || reset_first,
            "{what} headers: {}",
            &resp[..resp.len().min(200)]
        );
    }
    assert_eq!(up.count(), 0, "a refused head reached the upstream");
    still_serves(&app, &up).await;
    app.shutdown().await;
}

#[tokio::test]
async fn truncated_and_abandoned_bodies_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let app = start_with(up.rec.addr, |_| {}).await;
    let head = "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    let part = r#"{"ssn":"123-45-6789","#;
    // Content-Length larger than sent, then half-close: the body ends early
    let resp = raw(app.proxy_addr, format!("{head}{part}").as_bytes(), true).await;
    assert_eq!(raw_status(&resp), 400, "{resp}");
    assert_eq!(code(raw_body(&resp)), "body_read_failed");
    assert!(!resp.contains("123-45-6789"));
    // a client that disconnects mid-body
    for _ in 0..20 {
        let mut s = TcpStream::connect(app.proxy_addr).await.unwrap();
        s.write_all(format!("{head}{part}").as_bytes())
            .await
            .unwrap();
        drop(s);
    }
    // a client that resets mid-body
    let s = TcpStream::connect(app.proxy_addr).await.unwrap();
    let mut s = s;
    s.write_all(format!("{head}{part}").as_bytes())
        .await
        .unwrap();
    s.set_zero_linger().unwrap();
    drop(s);
    still_serves(&app, &up).await;
    assert_eq!(
        up.count(),
        1,
        "only the normal request may reach the upstream"
    );
    app.shutdown().await;
}

// ------------------------------------------------------- upstream faults

/// An upstream that answers every request with `head` and `partial` body
/// bytes, then resets the connection.
async fn resetting_upstream(head: &'static str, partial: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(partial.as_bytes()).await;
                let _ = s.flush().await;
                let _ = s.set_zero_linger();
                drop(s);
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_reset_mid_response_is_a_502_and_nothing_half_opened() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n";
    let addr = resetting_upstream(head, r#"{"ssn":"sg1.AAAA"#).await;
    let app = start_with(addr, |_| {}).await;
    let (s, _, b) = send(
        "GET",
        &format!("http://{}/users/1", app.proxy_addr),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 502, "{b}");
    assert_eq!(code(&b), "upstream_body_failed");
    // and a reset before any byte of the head
    let addr2 = resetting_upstream("", "").await;
    let app2 = start_with(addr2, |_| {}).await;
    let (s, _, b) = send(
        "GET",
        &format!("http://{}/users/1", app2.proxy_addr),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 502, "{b}");
    let c = code(&b);
    assert!(c.starts_with("upstream"), "{c}");
    app.shutdown().await;
    app2.shutdown().await;
}

// ------------------------------------------------------------- key store

use sealgate::keys::{CreateKeyRequest, KeyStore, RootKeySource, StoreOptions};

/// Env var naming the directory a child test works on.
const CHILD_ENV: &str = "SEALGATE_RELIABILITY_CHILD_DIR";

fn open_store(dir: &Path) -> Result<KeyStore, sealgate::keys::StoreError> {
    KeyStore::open(
        dir.join("data"),
        RootKeySource::File(dir.join("root.key")),
        StoreOptions {
            max_keys: 1_000_000,
            ..Default::default()
        },
    )
}

/// Every regular file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// Starts sealgate on a fresh directory, seals one value through it and
/// stops it; returns the directory, the stored body and the key id.
async fn store_with_one_sealed_value(up: &Upstream) -> (PathBuf, String, String) {
    let dir = data_dir();
    let app = sealgate::app::start(config(&dir, up.rec.addr))
        .await
        .unwrap();
    let stored = seal_via(&app, up, "POST", "/users", r#"{"ssn":"123-45-6789"}"#).await;
    let key_id = app.store.resolve("test-key").unwrap().to_string();
    app.shutdown().await;
    (dir, stored.to_string(), key_id)
}

/// Starts sealgate again on `dir` and checks the value sealed earlier opens.
async fn still_opens(dir: &Path, up: &Upstream, stored: &str, key_id: &str) {
    let app = sealgate::app::start(config(dir, up.rec.addr))
        .await
        .unwrap();
    assert_eq!(app.store.resolve("test-key").unwrap().to_string(), key_id);
    up.answer_gets_with("application/json", stored);
    let (s, _, b) = send(
        "GET",
        &format!("http://{}/users/1", app.proxy_addr),
        &[],
        "",
    )
    .await;
    assert_eq!((s, b.as_str()), (200, r#"{"ssn":"123-45-6789"}"#));
    app.shutdown().await;
}

#[tokio::test]
async fn a_wrong_or_unusable_root_key_is_refused_at_start_and_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::start().await;
    let (dir, stored, key_id) = store_with_one_sealed_value(&up).await;
    let right = std::fs::read_to_string(dir.join("root.key")).unwrap();
    let before = snapshot(&dir.join("data"));

    let write_key = |name: &str, text: &str, mode: u32| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    use base64::Engine as _;
    let wrong = base64::engine::general_purpose::STANDARD.encode([0x42u8; 32]);
    let cases = [
        (
            "wrong key",
            write_key("wrong.key", &wrong, 0o600),
            "wrong root key",
        ),
        (
            "short key",
            write_key("short.key", "c2hvcnQ=", 0o600),
            "not base64 of 32 bytes",
        ),
        (
            "not base64",
            write_key("junk.key", "%%%", 0o600),
            "not base64 of 32 bytes",
        ),
        (
            "readable by others",
            write_key("open.key", &right, 0o644),
            "chmod 600",
        ),
        ("missing", dir.join("missing.key"), "not found"),
    ];
    for (what, path, want) in cases {
        let mut cfg = config(&dir, up.rec.addr);
        cfg.root_key_file = Some(path.clone());
        let err = match sealgate::app::start(cfg).await {
            Ok(app) => {
                app.shutdown().await;
                panic!("{what}: sealgate started");
            }
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{what}: {err}");
        assert!(
            err.starts_with("key store"),
            "{what}: says what failed: {err}"
        );
        assert!(
            !err.contains(right.trim()) && !err.contains(&wrong),
            "{what}: the error carries key text"
        );
        assert_eq!(
            snapshot(&dir.join("data")),
            before,
            "{what}: the store changed"
        );
    }
    assert!(!dir.join("missing.key").exists(), "a key file was made up");
    still_opens(&dir, &up, &stored, &key_id).await;
}

/// Runs the ignored test `name` of this binary as a child on `dir`,
/// wrapped in `wrapper` (a command line prefix), and returns its stdout.
fn run_child(name: &str, dir: &Path, wrapper: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let (prog, args): (&std::ffi::OsStr, Vec<std::ffi::OsString>) = match wrapper.split_first() {
        Some((p, rest)) => (
            p.as_ref(),
            rest.iter()
                .map(Into::into)
                .chain(std::iter::once(exe.clone().into_os_string()))
                .collect(),
        ),
        None => (exe.as_os_str(), Vec::new()),
    };
    let out = std::process::Command::new(prog)
        .args(args)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn child_lines(stdout: &str, tag: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.find(tag).map(|at| l[at + tag.len()..].trim().to_string()))
        .collect()
}

#[test]
#[ignore = "child of a_read_only_data_directory_is_a_clear_error_and_changes_nothing"]
fn child_read_only() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    match open_store(&dir) {
        Ok(_) => println!("\nRESULT open: OPENED"),
        Err(e) => println!("\nRESULT open: {e}"),
    }
    let fresh = KeyStore::open(
        dir.join("data/new"),
        RootKeySource::File(dir.join("root.key")),
        StoreOptions::default(),
    );
    match fresh {
        Ok(_) => println!("RESULT fresh: OPENED"),
        Err(e) => println!("RESULT fresh: {e}"),
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = rt.block_on(async {
        let cfg = config(&dir, "127.0.0.1:9".parse().unwrap());
        match sealgate::app::start(cfg).await {
            Ok(app) => {
                app.shutdown().await;
                "OPENED".to_string()
            }
            Err(e) => e.to_string(),
        }
    });
    println!("RESULT start: {started}");
}

/// How to run a child without root's override of file permissions:
/// `None` when that cannot be done here.
fn without_dac_override() -> Option<Vec<&'static str>> {
    if !rustix::process::geteuid().is_root() {
        return Some(Vec::new());
    }
    let have_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    have_setpriv.then(|| vec!["setpriv", "--inh-caps=-all", "--bounding-set=-all"])
}

#[tokio::test]
async fn a_read_only_data_directory_is_a_clear_error_and_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let Some(wrapper) = without_dac_override() else {
        eprintln!(
            "SKIPPED: running as root without setpriv, so permissions cannot make the data \
             directory read-only for the child"
        );
        return;
    };
    let up = Upstream::start().await;
    let (dir, stored, key_id) = store_with_one_sealed_value(&up).await;
    let data = dir.join("data");
    let before = snapshot(&data);
    let modes: Vec<(PathBuf, u32)> = std::iter::once(data.clone())
        .chain(before.iter().map(|(p, _)| p.clone()))
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap().permissions().mode();
            (p, m)
        })
        .collect();
    for (p, m) in &modes {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m & 0o555)).unwrap();
    }
    let out = run_child("child_read_only", &dir, &wrapper);
    for (p, m) in modes.iter().rev() {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(*m)).unwrap();
    }
    let results = child_lines(&out, "RESULT ");
    assert_eq!(results.len(), 3, "{out}");
    for r in &results {
        assert!(!r.ends_with("OPENED"), "a read-only store opened: {out}");
        assert!(
            r.contains("Permission denied") && r.contains(&*data.to_string_lossy()),
            "the error names the path and the cause: {r}"
        );
    }
    assert!(results[2].starts_with("start: key store"), "{}", results[2]);
    assert_eq!(snapshot(&data), before, "the read-only store changed");
    still_opens(&dir, &up, &stored, &key_id).await;
}

#[test]
#[ignore = "child of a_full_disk_refuses_writes_cleanly_loses_nothing_and_recovers"]
fn child_full_disk() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = open_store(Path::new(&dir)).unwrap();
    let description = "d".repeat(1000);
    let create = |alias: String| {
        store.create(CreateKeyRequest {
            alias: Some(alias),
            description: description.clone(),
            ..Default::default()
        })
    };
    println!();
    let mut refused = None;
    for i in 0..20_000 {
        match create(format!("fill-{i}")) {
            Ok(m) => println!("ACK {} fill-{i}", m.key_id),
            Err(e) => {
                println!("FULL fill-{i} {e}");
                refused = Some(format!("fill-{i}"));
                break;
            }
        }
    }
    if let Some(alias) = refused {
        // the refused write left nothing behind, in memory or on disk
        println!("REFUSED_VISIBLE {}", store.resolve(&alias).is_ok());
    }
    match store.encrypt("test-key", b"after the disk filled", b"ctx") {
        Ok(_) => println!("READ ok"),
        Err(e) => println!("READ {e}"),
    }
    // Still full: this one may fit in space the failed write freed, or not.
    match create("after-full".into()) {
        Ok(m) => println!("AFTER {} after-full", m.key_id),
        Err(e) => println!("AFTER refused {e}"),
    }

    // Space is freed: raise the soft limit to the hard one. Without a
    // restart, writes go through again.
    use rustix::process::{getrlimit, setrlimit, Resource};
    let hard = getrlimit(Resource::Fsize).maximum;
    setrlimit(
        Resource::Fsize,
        rustix::process::Rlimit {
            current: hard,
            maximum: hard,
        },
    )
    .unwrap();
    println!("RAISED {hard:?}");
    for i in 0..5 {
        match create(format!("recovered-{i}")) {
            Ok(m) => println!("RECOVERED {} recovered-{i}", m.key_id),
            Err(e) => println!("STILL_REFUSED recovered-{i} {e}"),
        }
    }
    match store.create_credential(None) {
        Ok(c) => println!("CREDENTIAL {}", c.id),
        Err(e) => println!("STILL_REFUSED credential {e}"),
    }
    match store.verify() {
        Ok(r) => println!("VERIFY ok {}", r.keys),
        Err(e) => println!("VERIFY {e}"),
    }
}

fn id_alias_lines(out: &str, tag: &str) -> Vec<(String, String)> {
    child_lines(out, tag)
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, alias)| (id.to_string(), alias.to_string()))
        .collect()
}

#[tokio::test]
async fn a_full_disk_refuses_writes_cleanly_loses_nothing_and_recovers() {
    // A full disk simulated without mounts: the child runs with a soft
    // file-size limit (RLIMIT_FSIZE) just above the database's size and
    // SIGXFSZ ignored, so the write that would grow the file fails with
    // EFBIG the way a full disk fails with ENOSPC. The child then raises
    // its soft limit to the hard one, as if space had been freed.
    let up = Upstream::start().await;
    let (dir, stored, key_id) = store_with_one_sealed_value(&up).await;
    let db_len = snapshot(&dir.join("data"))
        .iter()
        .map(|(_, b)| b.len())
        .max()
        .unwrap();
    let keys_before = open_store(&dir).unwrap().list(0, 0).total_count;
    let limit_kib = db_len / 1024 + 256;
    let script = format!("trap '' XFSZ; ulimit -S -f {limit_kib}; exec \"$@\"");
    let out = run_child(
        "child_full_disk",
        &dir,
        &["bash", "-c", Box::leak(script.into_boxed_str()), "child"],
    );
    let mut acked = id_alias_lines(&out, "ACK ");
    let full = child_lines(&out, "FULL ");
    assert_eq!(full.len(), 1, "the limit was never reached: {out}");
    let (refused_alias, full_err) = full[0].split_once(' ').unwrap();
    assert!(
        full_err.contains("File too large") || full_err.contains("No space"),
        "the error says the disk is full: {full_err}"
    );
    assert_eq!(
        child_lines(&out, "REFUSED_VISIBLE "),
        vec!["false"],
        "the refused write shows: {out}"
    );
    assert!(!acked.is_empty(), "nothing was written before the limit");
    assert_eq!(
        child_lines(&out, "READ "),
        vec!["ok"],
        "reads stop working: {out}"
    );
    let after = child_lines(&out, "AFTER ");
    assert_eq!(after.len(), 1, "{out}");
    if !after[0].starts_with("refused") {
        acked.extend(id_alias_lines(&out, "AFTER "));
    }

    // After the limit is raised, the same process writes again.
    assert_eq!(child_lines(&out, "RAISED ").len(), 1, "{out}");
    assert!(
        child_lines(&out, "STILL_REFUSED ").is_empty(),
        "writes stay refused after space is freed: {out}"
    );
    let recovered = id_alias_lines(&out, "RECOVERED ");
    assert_eq!(recovered.len(), 5, "{out}");
    let credential = child_lines(&out, "CREDENTIAL ");
    assert_eq!(credential.len(), 1, "{out}");
    let verified = child_lines(&out, "VERIFY ");
    assert_eq!(verified.len(), 1, "{out}");
    assert!(verified[0].starts_with("ok "), "{out}");
    acked.extend(recovered);

    // Without the limit: the store opens, every acknowledged key (before and
    // after the disk filled) is there with its id, the refused one is not,
    // and every stored version still opens.
    let store = open_store(&dir).unwrap();
    for (id, alias) in &acked {
        assert_eq!(
            &store.resolve(alias).unwrap().to_string(),
            id,
            "{alias} lost"
        );
    }
    assert!(
        store.resolve(refused_alias).is_err(),
        "{refused_alias} half-written"
    );
    assert!(
        store
            .list_credentials()
            .iter()
            .any(|c| c.id == credential[0]),
        "the credential made after recovery is lost"
    );
    let report = store.verify().unwrap();
    assert_eq!(report.keys, keys_before + acked.len(), "{report:?}");
    assert_eq!(verified[0], format!("ok {}", report.keys));
    drop(store);
    still_opens(&dir, &up, &stored, &key_id).await;
}
