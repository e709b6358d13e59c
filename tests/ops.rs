//! Operations, in-process through real sockets on 127.0.0.1: a /metrics
//! scrape whose counters match the traffic sent, /healthz and /readyz, the
//! audit log and its verifier, policy reload on file change and on demand,
//! and the drain on shutdown.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = r#"
[[route]]
name = "users"
methods = ["POST"]
path = "/users"
key = "test-key"
context = "users"
request.encrypt = ["$.ssn", "$.cards[*].number", "$.profile"]
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
name = "limited"
path = "/limited"
key = "test-key"
request.encrypt = ["$.a"]
rate_limit = { per_second = 1, burst = 2 }
"#;

/// Four selected values: ssn, two card numbers, profile.
const BODY: &str = r#"{"name":"Ann","ssn":"123-45-6789","cards":[{"number":"4111111111111111"},{"number":4222222222222}],"profile":{"age":41}}"#;

/// Echoes request bodies; `/strict/…` answers a plaintext ssn.
fn upstream_reply() -> Reply {
    Arc::new(|s: &Seen| {
        let body = if s.uri.starts_with("/strict/") {
            bytes::Bytes::from_static(br#"{"ssn":"999-99-9999"}"#)
        } else {
            s.body.clone()
        };
        let mut r = hyper::Response::new(http_body_util::Full::new(body));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
}

fn dir_with_policy(policy: &str) -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.toml"), policy).unwrap();
    dir
}

async fn start_in(
    dir: &std::path::Path,
    upstream: std::net::SocketAddr,
    tweak: impl FnOnce(&mut sealgate::config::Config),
) -> sealgate::app::App {
    let mut cfg = test_config(dir, &format!("http://{upstream}"));
    cfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.reload.watch = false;
    tweak(&mut cfg);
    sealgate::app::start(cfg).await.unwrap()
}

/// The value of one series (exact name and labels) in a scrape.
fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

async fn scrape(app: &sealgate::app::App) -> String {
    let (status, headers, body) = send(
        "GET",
        &format!("http://{}/metrics", app.admin_addr.unwrap()),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    body
}

#[tokio::test]
async fn metrics_counters_match_the_traffic_sent() {
    let up = recording_upstream(upstream_reply()).await;
    let dir = dir_with_policy(POLICY);
    let app = start_in(&dir, up.addr, |_| {}).await;
    let base = format!("http://{}", app.proxy_addr);

    const N: usize = 7;
    for _ in 0..N {
        let (status, _, got) = send_json("POST", &format!("{base}/users"), BODY).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got, BODY);
    }
    for _ in 0..3 {
        let (status, _, _) = send("GET", &format!("{base}/elsewhere"), &[], "").await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = send("GET", &format!("{base}/strict/1"), &[], "").await;
    assert_eq!(status, 502, "a plaintext field on a refuse route");
    let mut limited = 0;
    for _ in 0..10 {
        let (status, _, _) = send_json("POST", &format!("{base}/limited"), r#"{"a":1}"#).await;
        if status == 429 {
            limited += 1;
            break;
        }
        assert_eq!(status, 200);
    }
    assert_eq!(limited, 1, "the route's burst of 2 runs out");

    let m = scrape(&app).await;
    let get = |series: &str| metric(&m, series).unwrap_or_else(|| panic!("{series} missing:\n{m}"));
    assert_eq!(
        get(r#"sealgate_requests_total{route="users",method="POST",status="200"}"#),
        N as f64
    );
    assert_eq!(
        get(r#"sealgate_requests_total{route="-",method="GET",status="200"}"#),
        3.0
    );
    assert_eq!(
        get(r#"sealgate_requests_total{route="strict-read",method="GET",status="502"}"#),
        1.0
    );
    assert_eq!(
        get(r#"sealgate_fields_sealed_total{route="users"}"#),
        (4 * N) as f64
    );
    assert_eq!(
        get(r#"sealgate_fields_opened_total{route="users"}"#),
        (4 * N) as f64
    );
    assert_eq!(
        get(r#"sealgate_open_failures_total{reason="plaintext"}"#),
        1.0
    );
    assert_eq!(
        get(r#"sealgate_rate_limited_total{source="proxy",action="limited"}"#),
        1.0
    );
    // both latencies are observed once per proxied users request
    assert_eq!(
        get(r#"sealgate_upstream_seconds_count{route="users"}"#),
        N as f64
    );
    assert_eq!(
        get(r#"sealgate_proxy_overhead_seconds_count{route="users"}"#),
        N as f64
    );
    assert_eq!(
        get(r#"sealgate_proxy_overhead_seconds_bucket{route="users",le="+Inf"}"#),
        N as f64
    );
    // one data key for the users partition (+1 for the limited route's),
    // every other lookup served from the cache: sealing reserves a request's
    // 4 fields in one lookup, opening looks up each of the 4 envelopes
    let sealed_and_opened = (N * (1 + 4)) as f64;
    let stats = app.cache.stats();
    assert_eq!(
        get("sealgate_dek_cache_hits_total") + get("sealgate_dek_cache_misses_total"),
        sealed_and_opened + 2.0,
        "{stats:?}"
    );
    assert_eq!(get("sealgate_dek_cache_misses_total"), 2.0);
    assert_eq!(
        get(r#"sealgate_key_operations_total{source="proxy",action="GenerateDataKey"}"#),
        2.0
    );
    assert_eq!(get("sealgate_dek_cache_provider_calls_total"), 2.0);
    assert_eq!(get(r#"sealgate_policy_reloads_total{result="ok"}"#), 0.0);
    assert!(
        !m.contains("123-45-6789") && !m.contains("4111111111111111"),
        "no field value in a metric"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn healthz_and_readyz_answer_and_readyz_turns_503_while_draining() {
    // an upstream that holds every response until the gate opens
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let up = gated_upstream(gate.clone(), arrived.clone()).await;
    let dir = dir_with_policy(POLICY);
    let app = start_in(&dir, up, |c| c.drain_timeout = Duration::from_secs(60)).await;
    let admin = app.admin_addr.unwrap();

    let (status, _, body) = send("GET", &format!("http://{admin}/healthz"), &[], "").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send("GET", &format!("http://{admin}/readyz"), &[], "").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["checks"]["routes"], 3);
    assert_eq!(v["checks"]["store_keys"], true);
    let (status, _, _) = send("GET", &format!("http://{admin}/nope"), &[], "").await;
    assert_eq!(status, 404);

    // one request in flight, then shutdown begins
    let url = format!("http://{}/users", app.proxy_addr);
    let inflight = tokio::spawn(async move { send_json("POST", &url, BODY).await });
    wait_until("the request to reach the upstream", || {
        arrived.load(Ordering::SeqCst) == 1
    })
    .await;
    let shutdown = tokio::spawn(app.shutdown());
    let readyz = format!("http://{admin}/readyz");
    let body = wait_for("/readyz to say 503 once shutdown begins", || {
        let readyz = readyz.clone();
        async move {
            let (status, _, body) = send("GET", &readyz, &[], "").await;
            (status == 503).then_some(body)
        }
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["checks"]["draining"], true);
    assert!(!shutdown.is_finished(), "shutdown waits for the request");
    gate.add_permits(1);
    let (status, _, got) = inflight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(got, BODY);
    shutdown.await.unwrap();
}

#[tokio::test]
async fn the_audit_log_records_key_operations_and_batches_and_verifies() {
    let up = recording_upstream(upstream_reply()).await;
    let dir = dir_with_policy(POLICY);
    let audit_path = dir.join("audit.jsonl");
    let ap = audit_path.clone();
    let app = start_in(&dir, up.addr, move |c| {
        c.audit.sink = Some(sealgate::config::AuditSink::File(ap));
    })
    .await;
    let (status, _, _) = send(
        "POST",
        &format!("http://{}/users", app.proxy_addr),
        &[
            ("content-type", "application/json"),
            ("x-request-id", "rid-audit-1"),
        ],
        BODY,
    )
    .await;
    assert_eq!(status, 200);
    let key_id = app.store.resolve("test-key").unwrap().to_string();
    // an admin command through the socket the CLI uses
    let client = sealgate::keys::admin::AdminClient::new(app.config.data_dir.join("admin.sock"));
    tokio::task::spawn_blocking(move || {
        client
            .request(&sealgate::keys::admin::AdminRequest::Execute {
                command: sealgate::keys::KeyCommand::Rotate {
                    key: "test-key".into(),
                },
            })
            .unwrap()
    })
    .await
    .unwrap();
    app.shutdown().await;

    let text = std::fs::read_to_string(&audit_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |action: &str| {
        lines
            .iter()
            .find(|l| l["action"] == action)
            .unwrap_or_else(|| panic!("no {action} record in:\n{text}"))
    };
    let seal = find("seal_fields");
    assert_eq!(seal["request_id"], "rid-audit-1");
    assert_eq!(seal["route"], "users");
    assert_eq!(seal["count"], 4);
    assert_eq!(seal["key_version"], 1);
    assert_eq!(seal["result"], "ok");
    assert!(seal["caller"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        seal["key_id"], key_id,
        "the record names the CMK by its KeyId"
    );
    let open = find("open_fields");
    assert_eq!(open["count"], 4);
    let gen = find("generate_data_key");
    assert_eq!(gen["request_id"], "rid-audit-1");
    assert_eq!(gen["key_id"], key_id);
    let rot = find("admin.Rotate");
    assert_eq!(rot["result"], "ok");
    assert_eq!(rot["key_id"], key_id);
    assert_eq!(rot["key_version"], 2);
    assert_eq!(lines.last().unwrap()["action"], "audit_close");
    for secret in [
        "123-45-6789",
        "4111111111111111",
        "4222222222222",
        "\"age\"",
    ] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }

    // the whole file verifies, through the CLI too
    let r = sealgate::audit::verify_file(&audit_path).unwrap();
    assert_eq!(r.lines as usize, lines.len());
    assert!(r.closed);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["audit", "verify"])
        .arg(&audit_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // one byte edited in the seal record: verify names that line
    let seal_line = text
        .lines()
        .position(|l| l.contains("\"seal_fields\""))
        .unwrap();
    let mut bytes = text.clone().into_bytes();
    let at = text
        .lines()
        .take(seal_line)
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + text
            .lines()
            .nth(seal_line)
            .unwrap()
            .find("\"count\":4")
            .unwrap()
        + "\"count\":".len();
    assert_eq!(bytes[at], b'4');
    bytes[at] = b'5';
    let edited = dir.join("edited.jsonl");
    std::fs::write(&edited, &bytes).unwrap();
    let e = sealgate::audit::verify_file(&edited).unwrap_err();
    assert_eq!(e.line as usize, seal_line + 1, "{e}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["audit", "verify"])
        .arg(&edited)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("line {}", seal_line + 1)), "{err}");
}

const POLICY_V1: &str = r#"
[[route]]
name = "people"
methods = ["POST"]
path = "/people"
key = "people-key"
request.encrypt = ["$.ssn"]
response.decrypt = ["$.ssn"]
"#;

const POLICY_V2: &str = r#"
[[route]]
name = "people"
methods = ["POST"]
path = "/people"
key = "people-key-2"
request.encrypt = ["$.ssn", "$.name"]
response.decrypt = ["$.ssn", "$.name"]
"#;

const PERSON: &str = r#"{"name":"Bo","ssn":"111-22-3333"}"#;

/// Sends one person through and returns the body the upstream stored.
async fn stored_person(app: &sealgate::app::App, up: &Recorder) -> serde_json::Value {
    let (status, _, got) =
        send_json("POST", &format!("http://{}/people", app.proxy_addr), PERSON).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, PERSON);
    serde_json::from_slice(&up.requests().last().unwrap().body).unwrap()
}

fn is_sealed(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("sg1."))
}

#[tokio::test]
async fn reload_on_demand_swaps_valid_sets_and_keeps_the_old_one_on_a_bad_file() {
    let up = recording_upstream(echo()).await;
    let dir = dir_with_policy(POLICY_V1);
    // V2 names a new key: creating it on reload is asked for explicitly
    let app = start_in(&dir, up.addr, |c| {
        c.create_policy_keys = sealgate::config::PolicyKeyCreation::Always
    })
    .await;
    let v = stored_person(&app, &up).await;
    assert!(is_sealed(&v["ssn"]) && v["name"] == "Bo");

    // a bad file: refused, the problem names file, route and field
    std::fs::write(
        dir.join("policies/test.toml"),
        POLICY_V2.replace("\"$.name\"", "\"$..[\""),
    )
    .unwrap();
    let e = app.reload_policies("test").await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("test.toml") && msg.contains("people") && msg.contains("request.encrypt"),
        "{msg}"
    );
    let v = stored_person(&app, &up).await;
    assert!(
        is_sealed(&v["ssn"]) && v["name"] == "Bo",
        "the running set stays"
    );
    assert!(
        app.store.resolve("people-key-2").is_err(),
        "no key made for a refused set"
    );

    // a good file: swapped in, and its new key made
    std::fs::write(dir.join("policies/test.toml"), POLICY_V2).unwrap();
    let r = app.reload_policies("test").await.unwrap();
    assert_eq!(r.routes, 1);
    assert_eq!(r.created_keys, vec!["people-key-2".to_string()]);
    assert!(app.store.resolve("people-key-2").is_ok());
    let v = stored_person(&app, &up).await;
    assert!(is_sealed(&v["ssn"]) && is_sealed(&v["name"]));

    let m = scrape(&app).await;
    assert_eq!(
        metric(&m, r#"sealgate_policy_reloads_total{result="ok"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, r#"sealgate_policy_reloads_total{result="failed"}"#),
        Some(1.0)
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_reload_naming_a_key_the_store_lacks_is_refused_by_default() {
    let up = recording_upstream(echo()).await;
    let dir = dir_with_policy(POLICY_V1);
    let app = start_in(&dir, up.addr, |_| {}).await;
    assert!(
        app.store.resolve("people-key").is_ok(),
        "first start creates"
    );
    // a typo'd key on a store in use: refused, nothing created, V1 stays
    std::fs::write(dir.join("policies/test.toml"), POLICY_V2).unwrap();
    let e = app.reload_policies("test").await.unwrap_err().to_string();
    assert!(
        e.contains("route \"people\"")
            && e.contains("test.toml")
            && e.contains("names key \"people-key-2\"")
            && e.contains("create_policy_keys"),
        "{e}"
    );
    assert!(app.store.resolve("people-key-2").is_err());
    assert_eq!(app.store.list(0, 10).total_count, 1);
    let v = stored_person(&app, &up).await;
    assert!(
        is_sealed(&v["ssn"]) && v["name"] == "Bo",
        "V1 stays in force"
    );
    // once the key exists, the same file reloads
    app.store.create_alias_key("people-key-2", "").unwrap();
    let r = app.reload_policies("test").await.unwrap();
    assert!(r.created_keys.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn a_changed_policy_file_is_picked_up_by_the_watcher() {
    let up = recording_upstream(echo()).await;
    let dir = dir_with_policy(POLICY_V1);
    let app = start_in(&dir, up.addr, |c| {
        c.reload.watch = true;
        c.reload.poll = Duration::from_millis(20);
        c.create_policy_keys = sealgate::config::PolicyKeyCreation::Always;
    })
    .await;
    let v = stored_person(&app, &up).await;
    assert!(!is_sealed(&v["name"]));
    std::fs::write(dir.join("policies/test.toml"), POLICY_V2).unwrap();
    // the watcher polls; wait (bounded) for the new set to take effect
    let (app_ref, up_ref) = (&app, &up);
    wait_for("the watcher to reload the changed file", || async move {
        is_sealed(&stored_person(app_ref, up_ref).await["name"]).then_some(())
    })
    .await;
    assert!(app.store.resolve("people-key-2").is_ok());
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_returns_at_the_drain_deadline_with_a_request_stuck() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let up = gated_upstream(gate.clone(), arrived.clone()).await;
    let dir = dir_with_policy(POLICY);
    const DRAIN: Duration = Duration::from_millis(300);
    let app = start_in(&dir, up, |c| c.drain_timeout = DRAIN).await;
    let url = format!("http://{}/users", app.proxy_addr);
    let _stuck = tokio::spawn(async move { send_json("POST", &url, BODY).await });
    wait_until("the request to reach the upstream", || {
        arrived.load(Ordering::SeqCst) == 1
    })
    .await;
    // the gate never opens: shutdown must still come back, at the deadline
    // (not before: the request is still in flight) and not long after it
    let started = std::time::Instant::now();
    tokio::time::timeout(DRAIN + Duration::from_secs(30), app.shutdown())
        .await
        .expect("shutdown did not return within 30 s of its drain deadline");
    let took = started.elapsed();
    assert!(
        took >= DRAIN,
        "shutdown returned after {took:?}, before the {DRAIN:?} drain deadline"
    );
}

/// An upstream that echoes each body once a permit is available.
async fn gated_upstream(
    gate: Arc<tokio::sync::Semaphore>,
    arrived: Arc<AtomicUsize>,
) -> std::net::SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let gate = gate.clone();
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let gate = gate.clone();
                        let arrived = arrived.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            arrived.fetch_add(1, Ordering::SeqCst);
                            gate.acquire().await.unwrap().forget();
                            let mut r = hyper::Response::new(http_body_util::Full::new(body));
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, hyper::Error>(r)
                        }
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
    addr
}

// ---- keys named by policies, at start-up (the real binary) ----

/// A policy whose key is a typo of the store's `orders`.
const TYPO_POLICY: &str = r#"
[[route]]
name = "orders"
methods = ["POST"]
path = "/orders"
key = "ordres"
request.encrypt = ["$.card"]
"#;

fn open_store(dir: &std::path::Path) -> sealgate::keys::KeyStore {
    use sealgate::keys::{KeyStore, RootKeySource, StoreOptions};
    // where `serve` finds the root key with no root_key_file and no env
    let data = dir.join("data");
    KeyStore::open(
        &data,
        RootKeySource::File(data.join("root.key")),
        StoreOptions::default(),
    )
    .unwrap()
}

/// A working directory whose key store is in use: it holds the key `orders`.
fn dir_with_store_in_use() -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    open_store(&dir).create_alias_key("orders", "").unwrap();
    dir
}

const NO_UPSTREAM: &str = "127.0.0.1:9";

#[test]
fn a_policy_key_the_store_in_use_lacks_is_a_start_error_naming_route_file_and_key() {
    let dir = dir_with_store_in_use();
    let (status, err) =
        ServeProcess::start_fails(&dir, NO_UPSTREAM.parse().unwrap(), TYPO_POLICY, "");
    assert!(!status.success());
    let file = dir.join("policies/p.toml");
    let said = format!(
        "route \"orders\" in {} names key \"ordres\", which the key store does not have",
        file.display()
    );
    assert!(err.contains(&said), "{err}");
    assert!(err.contains("create_policy_keys = true"), "{err}");
    // and no CMK was made for the typo
    let store = open_store(&dir);
    assert!(store.resolve("ordres").is_err());
    assert_eq!(store.list(0, 10).total_count, 1);
}

#[test]
fn create_policy_keys_false_refuses_even_on_a_new_store() {
    let dir = tempfile::tempdir().unwrap().keep();
    let (status, err) = ServeProcess::start_fails(
        &dir,
        NO_UPSTREAM.parse().unwrap(),
        TYPO_POLICY,
        "[keys]\ncreate_policy_keys = false",
    );
    assert!(!status.success());
    assert!(err.contains("names key \"ordres\""), "{err}");
}

#[test]
fn create_policy_keys_true_creates_a_missing_key_and_warns() {
    let dir = dir_with_store_in_use();
    let server = ServeProcess::start_in(
        dir.clone(),
        NO_UPSTREAM.parse().unwrap(),
        TYPO_POLICY,
        "[keys]\ncreate_policy_keys = true",
    );
    let line = server.wait_log(
        "created a CMK named by a policy that the key store did not have; \
         if the name is a typo, fix the policy before data is sealed under it",
    );
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["fields"]["alias"], "ordres", "{line}");
    assert_eq!(line["fields"]["route"], "orders", "{line}");
    drop(server);
    assert_eq!(open_store(&dir).list(0, 10).total_count, 2);
}

#[test]
fn the_first_start_on_a_new_data_dir_creates_the_policy_keys_at_warn() {
    // the demo path: nothing configured, an empty data directory
    let server = ServeProcess::start(NO_UPSTREAM.parse().unwrap(), TYPO_POLICY, "");
    let line = server.wait_log(
        "created a CMK named by a policy that the key store did not have; \
         if the name is a typo, fix the policy before data is sealed under it",
    );
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["fields"]["alias"], "ordres", "{line}");
    let dir = server.dir.clone();
    drop(server);
    assert!(open_store(&dir).resolve("ordres").is_ok());
}

#[test]
fn the_readme_demo_command_still_starts_on_a_new_data_dir() {
    // README "The two commands": `serve --upstream … --policies policies`,
    // run from a fresh directory (only --listen added: 8080 may be taken)
    let cwd = tempfile::tempdir().unwrap();
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["serve", "--upstream", "http://127.0.0.1:3000", "--policies"])
        .arg(&policies)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env_remove("RUST_LOG")
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_ROOT_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut listening = false;
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains("sealgate proxy listening") {
            listening = true;
            break;
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "the demo did not start:\n{}", seen.join("\n"));
    let data = cwd.path().join("sealgate-data");
    let store = sealgate::keys::KeyStore::open(
        &data,
        sealgate::keys::RootKeySource::File(data.join("root.key")),
        sealgate::keys::StoreOptions::default(),
    )
    .unwrap();
    assert!(store.resolve("demo").is_ok(), "the CMK the README names");
    // and only it: the walkthrough says one CMK is created
    let keys = store.list(0, 100);
    assert_eq!(keys.total_count, 1, "{:?}", keys.keys);
}

// ---- `sealgate config check`: what `serve` would load, without starting ----

/// Runs `sealgate config check --config` on `dir` (policy `policy`, config
/// lines `extra`); returns success, stdout and stderr.
fn config_check(dir: &std::path::Path, policy: &str, extra: &str) -> (bool, String, String) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.toml"), policy).unwrap();
    let config = dir.join("sealgate.toml");
    std::fs::write(
        &config,
        format!(
            "upstream = \"http://127.0.0.1:3000\"\npolicies = {:?}\ndata_dir = {:?}\n{extra}\n",
            dir.join("policies").display().to_string(),
            dir.join("data").display().to_string(),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_ROOT_KEY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_validates_config_policies_and_keys_without_starting() {
    // everything in place
    let dir = dir_with_store_in_use();
    let good = TYPO_POLICY.replace("ordres", "orders");
    let (ok, out, err) = config_check(&dir, &good, "");
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("config OK") && out.contains("keys OK"),
        "{out}"
    );

    // a typo'd key on a store in use: the start-up error, before starting
    let (ok, _, err) = config_check(&dir, TYPO_POLICY, "");
    assert!(!ok);
    assert!(
        err.contains("route 'orders': field 'key'") && err.contains("key 'ordres' is not in"),
        "{err}"
    );
    // … unless serve is told to create it
    let (ok, out, _) = config_check(&dir, TYPO_POLICY, "[keys]\ncreate_policy_keys = true");
    assert!(ok && out.contains("will create key 'ordres'"), "{out}");
    assert!(
        open_store(&dir).resolve("ordres").is_err(),
        "the check creates nothing"
    );

    // a key name serve would refuse
    let (ok, _, err) = config_check(&dir, &TYPO_POLICY.replace("ordres", "Demo key!"), "");
    assert!(
        !ok && err.contains("neither a KeyId nor a valid alias"),
        "{err}"
    );

    // a config mistake names the field
    let (ok, _, err) = config_check(&dir, &good, "listn = \"x\"");
    assert!(!ok && err.contains("listn"), "{err}");

    // no store yet: serve would create it; the check does not
    let fresh = tempfile::tempdir().unwrap();
    let (ok, out, err) = config_check(fresh.path(), TYPO_POLICY, "");
    assert!(ok, "{err}");
    assert!(out.contains("no key store in"), "{out}");
    assert!(!fresh.path().join("data").exists());
}

#[tokio::test]
async fn the_kms_listener_caps_connections_as_the_proxy_does() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = recording_upstream(upstream_reply()).await;
    let dir = dir_with_policy(POLICY);
    let app = start_in(&dir, up.addr, |c| {
        c.kms_listen = Some("127.0.0.1:0".parse().unwrap());
        c.max_connections = 1;
    })
    .await;
    let kms = app.kms_addr.unwrap();
    const ASK: &[u8] = b"GET /not-kms HTTP/1.1\r\nhost: kms\r\n\r\n";
    // a first connection is answered, so it holds the one slot ...
    let mut a = tokio::net::TcpStream::connect(kms).await.unwrap();
    a.write_all(ASK).await.unwrap();
    let mut buf = [0u8; 512];
    let n = a.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 404"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // ... and a second one is closed without an answer
    let mut c = tokio::net::TcpStream::connect(kms).await.unwrap();
    let _ = c.write_all(ASK).await;
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("the connection past the cap is closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    // the held connection still serves
    a.write_all(ASK).await.unwrap();
    let n = a.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 404"));
    app.shutdown().await;
}

const ACCESS_POLICY: &str = r#"
[[route]]
name = "orders"
methods = ["POST"]
path = "/orders/{id}"
key = "orders-key"
request.encrypt = ["$.card"]
"#;

/// The per-request `done` line, as the real binary writes it (batched by
/// its writer thread): the request's id and method, the route, the
/// route's template for a path, the counts — never the path as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_line_names_the_request_by_its_template_and_counts() {
    let up = recording_upstream(echo()).await;
    let server = ServeProcess::start(up.addr, ACCESS_POLICY, "");
    let base = format!("http://{}", server.proxy);
    let (status, headers, _) = send(
        "POST",
        &format!("{base}/orders/alice%40example.com"),
        &[
            ("content-type", "application/json"),
            ("x-request-id", "access-line-1"),
        ],
        r#"{"card":"4111-1111-1111-1111"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-request-id"], "access-line-1");
    let line = server.wait_log("done");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["target"], "sealgate::proxy::pipeline", "{line}");
    let f = &line["fields"];
    assert_eq!(f["status"], 200, "{line}");
    assert_eq!(f["route"], "orders", "{line}");
    assert_eq!(f["path"], "/orders/{id}", "{line}");
    assert_eq!(
        (&f["sealed"], &f["opened"], &f["plaintext_passed"]),
        (&1.into(), &0.into(), &0.into()),
        "{line}"
    );
    assert!(f["micros"].as_u64().is_some(), "{line}");
    let span =
        serde_json::json!({"method": "POST", "request_id": "access-line-1", "name": "request"});
    assert_eq!(line["span"], span, "{line}");
    assert_eq!(line["spans"], serde_json::json!([span]), "{line}");
    let text = line.to_string();
    assert!(!text.contains("alice") && !text.contains("4111"), "{text}");

    // a request no route matches: the path with personal data redacted
    let (status, headers, _) = send(
        "GET",
        &format!("{base}/accounts/bob%40example.com/orders"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let id = headers["x-request-id"].to_str().unwrap().to_string();
    let line = server.wait_log("done");
    assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
    assert_eq!(line["span"]["method"], "GET", "{line}");
    assert_eq!(line["fields"]["route"], "-", "{line}");
    let path = line["fields"]["path"].as_str().unwrap();
    assert!(
        path.starts_with("/accounts/") && !path.contains("bob"),
        "{line}"
    );
}
