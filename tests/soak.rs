//! A bounded soak: sealing, opening, KMS calls and policy reloads mixed for
//! a fixed time (default 20 s; `SEALGATE_SOAK_SECS` to change), with zero
//! failed requests and memory and file descriptors flat.

mod common;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLICY: &str = r#"
[[route]]
name = "soak"
path = "/users"
key = "soak"
context = "users"
request.encrypt = ["$.ssn", "$.cards[*].number"]
response.decrypt = ["$.ssn", "$.cards[*].number"]
"#;

/// An echo upstream that keeps nothing (a recording one would grow).
async fn echo_upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let mut r = hyper::Response::new(Full::new(body));
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, hyper::Error>(r)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

async fn kms_call(host: &str, id: &str, secret: &str, action: &str, params: &Value) -> Value {
    let body = params.to_string();
    let ts = sealgate::clock::unix_now() as i64;
    let all = common::tc3_signed_headers(host, id, secret, action, ts, &body);
    let (s, _, b) =
        common::send_owned_headers("POST", &format!("http://{host}/"), &all, &body).await;
    assert_eq!(s, 200);
    serde_json::from_str(&b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_fails_nothing_and_stays_flat() {
    let secs: u64 = std::env::var("SEALGATE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/soak.toml"), POLICY).unwrap();
    let mut cfg = test_config(dir.path(), &format!("http://{up}"));
    cfg.kms_listen = Some("127.0.0.1:0".parse().unwrap());
    // the soak measures stability, not the documented quotas (tested elsewhere)
    for action in ["Encrypt", "Decrypt"] {
        cfg.kms_quotas
            .set(sealgate::config::QuotaDialect::Tencent, action, 1_000_000)
            .unwrap();
    }
    let app = Arc::new(sealgate::app::start(cfg).await.unwrap());
    let cred = app.store.create_credential(None).unwrap();
    let (id, secret) = (
        cred.id.clone(),
        String::from_utf8(cred.secret.expose().to_vec()).unwrap(),
    );
    let kms_host = app.kms_addr.unwrap().to_string();
    let key_id = app.store.resolve("soak").unwrap().to_string();

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for worker in 0..3u64 {
        let (ok, failed, url) = (
            ok.clone(),
            failed.clone(),
            format!("http://{}/users", app.proxy_addr),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let body = format!(r#"{{"name":"n{i}","ssn":"{worker}-{i:09}","cards":[{{"number":"4111{i:012}"}}]}}"#);
                let (s, _, b) = send_json("POST", &url, &body).await;
                if s == 200 && b == body {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("proxy request failed: {s} {b}");
                }
            }
        }));
    }
    {
        let (ok, failed) = (ok.clone(), failed.clone());
        let (host, id, secret, key_id) =
            (kms_host.clone(), id.clone(), secret.clone(), key_id.clone());
        tasks.push(tokio::spawn(async move {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let pt = b64.encode(format!("kms-{i}"));
                let e = kms_call(
                    &host,
                    &id,
                    &secret,
                    "Encrypt",
                    &json!({"KeyId": key_id, "Plaintext": pt}),
                )
                .await;
                let blob = e["Response"]["CiphertextBlob"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let d = kms_call(
                    &host,
                    &id,
                    &secret,
                    "Decrypt",
                    &json!({"CiphertextBlob": blob}),
                )
                .await;
                if d["Response"]["Plaintext"] == Value::String(pt) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("kms round trip failed: {e} {d}");
                }
            }
        }));
    }
    {
        let (app, failed) = (app.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if app.reload_policies("soak").await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // sample once warm (a third of the way in) and at the end
    tokio::time::sleep(Duration::from_secs(secs / 3)).await;
    let (rss_warm, fds_warm) = (rss_kb(), fds());
    for t in tasks {
        t.await.unwrap();
    }
    let (rss_end, fds_end) = (rss_kb(), fds());
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "soak {secs}s: {ok} ok, {failed} failed; rss {rss_warm} kB -> {rss_end} kB; fds {fds_warm} -> {fds_end}"
    );
    assert_eq!(failed, 0, "requests that should have succeeded failed");
    assert!(ok > 100, "the load did not run: {ok} requests");
    assert!(
        fds_end <= fds_warm + 16,
        "file descriptors grew: {fds_warm} -> {fds_end}"
    );
    assert!(
        rss_end <= rss_warm + 48 * 1024,
        "memory grew: {rss_warm} kB -> {rss_end} kB"
    );
    // the data-key cache held: a handful of key-store calls for thousands of values
    assert!(
        app.cache.stats().provider_calls < 20,
        "{:?}",
        app.cache.stats()
    );
}
