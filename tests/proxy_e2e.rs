//! The proxy end to end: real sockets on 127.0.0.1, a recording upstream,
//! sealgate started in-process.

mod common;

use common::*;
use serde_json::Value;
use std::sync::Arc;

const POLICY: &str = r#"
[[route]]
name = "users"
methods = ["POST", "PUT"]
path = "/users"
key = "test-key"
context = "users"
request.encrypt = ["$.ssn", "$.cards[*].number", "$.profile"]
response.decrypt = ["$.ssn", "$.cards[*].number", "$.profile"]

[[route]]
name = "user-read"
methods = ["GET"]
path = "/users/{id}"
key = "test-key"
context = "users"
response.decrypt = ["$.ssn", "$.cards[*].number", "$.profile"]

[[route]]
name = "strict-read"
methods = ["GET"]
path = "/strict/{id}"
key = "test-key"
context = "users"
response.decrypt = ["$.ssn"]
on_plaintext = "refuse"

[[route]]
name = "found"
methods = ["GET"]
path = "/found/{id}"
key = "test-key"
context = "users"
open_all = true

[[route]]
name = "found-stream"
methods = ["GET"]
path = "/stream/{id}"
key = "test-key"
context = "users"
open_all = true
open_labels = ["ssn"]

[[route]]
name = "limited"
path = "/limited"
key = "test-key"
request.encrypt = ["$.a"]
rate_limit = { per_second = 1, burst = 2 }
"#;

async fn start(upstream: std::net::SocketAddr) -> sealgate::app::App {
    start_with(upstream, |_| {}).await
}

async fn start_with(
    upstream: std::net::SocketAddr,
    tweak: impl FnOnce(&mut sealgate::config::Config),
) -> sealgate::app::App {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.toml"), POLICY).unwrap();
    let mut cfg = test_config(&dir, &format!("http://{upstream}"));
    tweak(&mut cfg);
    sealgate::app::start(cfg).await.unwrap()
}

#[tokio::test]
async fn unmatched_requests_pass_through_untouched() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let body = r#"{"ssn": "123-45-6789",   "x": 1.50}"#;
    let (status, headers, got) = send(
        "POST",
        &format!("http://{}/other/path?q=1", app.proxy_addr),
        &[
            ("content-type", "application/json"),
            ("x-request-id", "rid-1"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("x-app", "a"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got, body, "pass-through must not touch the body");
    assert_eq!(headers.get("x-request-id").unwrap(), "rid-1");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/other/path?q=1");
    assert_eq!(&seen[0].body[..], body.as_bytes());
    assert!(
        seen[0].headers.get("x-hop").is_none(),
        "header named by Connection must be dropped"
    );
    assert_eq!(seen[0].headers.get("x-app").unwrap(), "a");
    assert_eq!(seen[0].headers.get("x-request-id").unwrap(), "rid-1");
    assert_eq!(seen[0].headers.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(seen[0].headers.get("x-forwarded-proto").unwrap(), "http");
    app.shutdown().await;
}

#[tokio::test]
async fn selected_fields_are_sealed_upstream_and_opened_for_the_client() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let body = r#"{"name":"Ann","ssn":"123-45-6789","cards":[{"number":"4111111111111111","exp":"12/30"},{"number":4222222222222}],"profile":{"age":41,"tags":["a"]},"n":1.50e3}"#;
    let (status, headers, got) =
        send_json("POST", &format!("http://{}/users", app.proxy_addr), body).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, body, "the client gets back exactly what it sent");
    assert!(headers.get("x-request-id").is_some());

    let seen = up.requests();
    let stored = std::str::from_utf8(&seen[0].body).unwrap();
    for secret in [
        "123-45-6789",
        "4111111111111111",
        "4222222222222",
        "\"age\"",
    ] {
        assert!(
            !stored.contains(secret),
            "{secret} reached the upstream in clear: {stored}"
        );
    }
    let v: Value = serde_json::from_str(stored).unwrap();
    assert!(v["ssn"].as_str().unwrap().starts_with("sg1."));
    assert!(v["cards"][0]["number"]
        .as_str()
        .unwrap()
        .starts_with("sg1."));
    assert!(v["cards"][1]["number"]
        .as_str()
        .unwrap()
        .starts_with("sg1."));
    assert!(v["profile"].as_str().unwrap().starts_with("sg1."));
    assert_eq!(v["cards"][0]["exp"], "12/30");
    assert!(
        stored.contains(r#""n":1.50e3"#),
        "untouched values keep their exact text: {stored}"
    );
    assert_eq!(
        seen[0].headers.get("content-length").unwrap(),
        &stored.len().to_string()
    );
    assert_eq!(seen[0].headers.get("accept-encoding").unwrap(), "identity");
    app.shutdown().await;
}

#[tokio::test]
async fn refusals_never_reach_the_upstream() {
    let up = recording_upstream(echo()).await;
    let app = start_with(up.addr, |c| c.max_body_bytes = 64).await;
    let base = format!("http://{}", app.proxy_addr);
    let (s, h, b) = send(
        "POST",
        &format!("{base}/users"),
        &[("content-type", "text/plain")],
        "ssn=1",
    )
    .await;
    assert_eq!(s, 415, "{b}");
    let e: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(e["error"]["code"], "unsupported_media_type");
    assert_eq!(
        e["error"]["request_id"],
        h.get("x-request-id").unwrap().to_str().unwrap()
    );
    let (s, _, b) = send_json("POST", &format!("{base}/users"), r#"{"ssn": "123-45-6789""#).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        !b.contains("123-45-6789"),
        "error body must not echo the value: {b}"
    );
    let (s, _, b) = send_json(
        "POST",
        &format!("{base}/users"),
        r#"{"ssn":"1","ssn":"123-45-6789"}"#,
    )
    .await;
    assert_eq!(s, 400, "duplicate keys must be refused: {b}");
    let big = format!(r#"{{"ssn":"{}"}}"#, "9".repeat(100));
    let (s, _, b) = send_json("POST", &format!("{base}/users"), &big).await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "body_too_large"
    );
    assert!(
        up.requests().is_empty(),
        "nothing refused may reach the upstream"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn upstream_faults_map_to_502_and_504() {
    // refused: a port with nothing listening
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = start(port).await;
    let (s, _, b) = send("GET", &format!("http://{}/x", app.proxy_addr), &[], "").await;
    assert_eq!(s, 502, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "upstream_unavailable"
    );
    app.shutdown().await;

    // slow: accepts, never answers
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = slow.accept().await {
            held.push(s);
        }
    });
    let app = start_with(slow_addr, |c| {
        c.upstream_timeout = std::time::Duration::from_millis(300)
    })
    .await;
    let (s, _, b) = send("GET", &format!("http://{}/x", app.proxy_addr), &[], "").await;
    assert_eq!(s, 504, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "upstream_timeout"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn tampered_or_moved_envelopes_are_refused_without_plaintext() {
    // First seal a record through the proxy to get real envelopes.
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let (s, _, _) = send_json(
        "POST",
        &format!("http://{}/users", app.proxy_addr),
        r#"{"ssn":"123-45-6789","cards":[{"number":"4111111111111111"}]}"#,
    )
    .await;
    assert_eq!(s, 200);
    let stored: Value = serde_json::from_slice(&up.requests()[0].body).unwrap();
    let ssn_env = stored["ssn"].as_str().unwrap().to_string();
    let card_env = stored["cards"][0]["number"].as_str().unwrap().to_string();
    let base = app.config.data_dir.parent().unwrap().to_path_buf();
    app.shutdown().await;

    // An upstream that serves (a) the good record, (b) the ssn envelope
    // moved into the card field, (c) a flipped character.
    let mut flipped = ssn_env.clone().into_bytes();
    let i = flipped.len() - 5;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let good = format!(r#"{{"ssn":"{ssn_env}","cards":[{{"number":"{card_env}"}}]}}"#);
    let moved = format!(r#"{{"ssn":"{card_env}"}}"#);
    let bad = format!(r#"{{"ssn":"{flipped}"}}"#);
    let (good, moved, bad) = (Arc::new(good), Arc::new(moved), Arc::new(bad));
    let reply: Reply = Arc::new(move |s: &Seen| {
        let body = match s.uri.as_str() {
            "/users/1" => good.to_string(),
            "/users/2" => moved.to_string(),
            "/users/3" => bad.to_string(),
            "/users/4" => r#"{"ssn":"123-45-6789"}"#.to_string(),
            _ => r#"{"ssn":"123-45-6789"}"#.to_string(),
        };
        let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        r.headers_mut().insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        r
    });
    let up2 = recording_upstream(reply).await;
    // a fresh process on the same data directory and policies
    let app = sealgate::app::start(test_config(&base, &format!("http://{}", up2.addr)))
        .await
        .unwrap();
    let base = format!("http://{}", app.proxy_addr);
    let (s, _, b) = send("GET", &format!("{base}/users/1"), &[], "").await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["ssn"], "123-45-6789");
    assert_eq!(v["cards"][0]["number"], "4111111111111111");
    for path in ["/users/2", "/users/3"] {
        let (s, _, b) = send("GET", &format!("{base}{path}"), &[], "").await;
        assert_eq!(s, 502, "{path}: {b}");
        let e: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(e["error"]["code"], "field_does_not_open", "{b}");
        assert!(!b.contains("4111") && !b.contains("123-45"), "{b}");
    }
    // plaintext in place of an envelope: passed (migration) by default, refused when strict
    let (s, _, b) = send("GET", &format!("{base}/users/4"), &[], "").await;
    assert_eq!((s, b.as_str()), (200, r#"{"ssn":"123-45-6789"}"#));
    let (s, _, b) = send("GET", &format!("{base}/strict/4"), &[], "").await;
    assert_eq!(s, 502, "{b}");
    assert!(!b.contains("123-45"), "{b}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_burst_costs_one_key_store_operation_and_a_disable_stops_sealing() {
    let up = recording_upstream(echo()).await;
    // a max age far above any burst, however loaded the machine: the DEK
    // cannot expire mid-burst and cost a second key-store call
    let app = start_with(up.addr, |c| {
        c.cache.max_age = std::time::Duration::from_secs(600)
    })
    .await;
    let before = app.cache.stats().provider_calls;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = format!("http://{}/users", app.proxy_addr);
        tasks.push(tokio::spawn(async move {
            send_json("POST", &url, &format!(r#"{{"ssn":"{i:09}"}}"#))
                .await
                .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // one generate-and-wrap; opening the echoed envelopes reuses that DEK
    let calls = app.cache.stats().provider_calls - before;
    assert_eq!(calls, 1, "40 requests cost {calls} key-store operations");

    app.store.disable("test-key").unwrap();
    // once the cached data keys are gone, a disabled CMK never seals again;
    // dropping them stands for their expiry, which keys::cache tests at
    // max_age on a manual clock (no wall-clock wait here)
    app.cache.clear();
    let (s, _, b) = send_json(
        "POST",
        &format!("http://{}/users", app.proxy_addr),
        r#"{"ssn":"1"}"#,
    )
    .await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "key_unavailable"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_route_rate_limit_answers_429_with_retry_after() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let url = format!("http://{}/limited", app.proxy_addr);
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (s, h, _) = send_json("POST", &url, r#"{"a":1}"#).await;
        if s == 429 {
            assert!(h.get("retry-after").is_some());
        }
        codes.push(s);
    }
    assert_eq!(&codes[..2], &[200, 200], "{codes:?}");
    assert!(codes[2..].contains(&429), "{codes:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_compressed_response_is_never_passed_half_processed() {
    let reply: Reply = Arc::new(|_s: &Seen| {
        let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
            b"\x1f\x8b garbage",
        )));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r.headers_mut()
            .insert("content-encoding", "gzip".parse().unwrap());
        r
    });
    let up = recording_upstream(reply).await;
    let app = start(up.addr).await;
    let (s, _, b) = send(
        "GET",
        &format!("http://{}/users/1", app.proxy_addr),
        &[("accept-encoding", "gzip")],
        "",
    )
    .await;
    assert_eq!(s, 502, "{b}");
    assert_eq!(
        up.requests()[0].headers.get("accept-encoding").unwrap(),
        "identity"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_are_closed_and_old_ones_serve() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = recording_upstream(echo()).await;
    let app = start_with(up.addr, |c| c.max_connections = 2).await;
    let a = tokio::net::TcpStream::connect(app.proxy_addr)
        .await
        .unwrap();
    let mut b = tokio::net::TcpStream::connect(app.proxy_addr)
        .await
        .unwrap();
    // give the server time to take both into its count
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut c = tokio::net::TcpStream::connect(app.proxy_addr)
        .await
        .unwrap();
    let _ = c.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("the third connection is closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "the third connection must be closed without an answer"
    );
    // the held connections still work
    b.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let n = b.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // and once one closes, a new one is served
    drop(a);
    drop(b);
    // the server notices the closes asynchronously: retry (bounded) until a slot is free
    let url = format!("http://{}/x", app.proxy_addr);
    let status = wait_for("a freed slot to serve a new connection", || {
        let req = http::Request::get(&url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        async move { client().request(req).await.ok().map(|r| r.status()) }
    })
    .await;
    assert_eq!(status, 200);
    app.shutdown().await;
}

#[tokio::test]
async fn open_all_opens_envelopes_wherever_they_sit_with_no_paths_listed() {
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let (s, _, _) = send_json(
        "POST",
        &format!("http://{}/users", app.proxy_addr),
        r#"{"ssn":"123-45-6789","cards":[{"number":"4111111111111111"}],"profile":{"age":41}}"#,
    )
    .await;
    assert_eq!(s, 200);
    let stored = String::from_utf8(up.requests()[0].body.to_vec()).unwrap();
    let base = app.config.data_dir.parent().unwrap().to_path_buf();
    app.shutdown().await;

    // an upstream that lists stored records: the route names no response paths
    let listed = Arc::new(format!("[{stored},{stored}]"));
    let reply: Reply = Arc::new(move |_s: &Seen| {
        let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
            listed.to_string(),
        )));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    });
    let up2 = recording_upstream(reply).await;
    let app = sealgate::app::start(test_config(&base, &format!("http://{}", up2.addr)))
        .await
        .unwrap();
    let (s, _, b) = send(
        "GET",
        &format!("http://{}/found/1", app.proxy_addr),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    for i in 0..2 {
        assert_eq!(v[i]["ssn"], "123-45-6789", "{b}");
        assert_eq!(v[i]["cards"][0]["number"], "4111111111111111", "{b}");
        assert_eq!(v[i]["profile"]["age"], 41, "type restored: {b}");
    }
    assert!(!b.contains("sg1."), "{b}");
    app.shutdown().await;
}

#[tokio::test]
async fn open_all_opens_envelopes_split_across_chunks_of_a_text_stream() {
    use http_body_util::StreamBody;
    // seal one value through the proxy
    let up = recording_upstream(echo()).await;
    let app = start(up.addr).await;
    let (s, _, _) = send_json(
        "POST",
        &format!("http://{}/users", app.proxy_addr),
        r#"{"ssn":"123-45-6789"}"#,
    )
    .await;
    assert_eq!(s, 200);
    let stored: Value = serde_json::from_slice(&up.requests()[0].body).unwrap();
    let env = stored["ssn"].as_str().unwrap().to_string();
    let base = app.config.data_dir.parent().unwrap().to_path_buf();
    app.shutdown().await;

    // an NDJSON upstream that sends the envelope in 7-byte chunks
    let text = format!("{{\"ssn\":\"{env}\"}}\nplain line\n{{\"ssn\":\"{env}\"}}\n");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = text.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| {
                        let chunks: Vec<
                            Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
                        > = served
                            .as_bytes()
                            .chunks(7)
                            .map(|c| Ok(hyper::body::Frame::data(bytes::Bytes::copy_from_slice(c))))
                            .collect();
                        let body = StreamBody::new(futures_util::stream::iter(chunks));
                        let mut r = hyper::Response::new(body);
                        r.headers_mut()
                            .insert("content-type", "application/x-ndjson".parse().unwrap());
                        async move { Ok::<_, std::convert::Infallible>(r) }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    let app = sealgate::app::start(test_config(&base, &format!("http://{addr}")))
        .await
        .unwrap();
    let (s, _, b) = send(
        "GET",
        &format!("http://{}/stream/1", app.proxy_addr),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        "{\"ssn\":\"123-45-6789\"}\nplain line\n{\"ssn\":\"123-45-6789\"}\n"
    );
    app.shutdown().await;
}
