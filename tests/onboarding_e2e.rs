//! Onboarding an existing API, end to end with json-server as the upstream:
//! shadow mode (traffic unchanged, would-be seals reported, a capture
//! written), `sealgate policy suggest` drafting a policy from that capture
//! which then seals for real, and migration mode over stored plaintext.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs of this test binary (one global subscriber).
fn logs() -> Buf {
    static LOGS: std::sync::OnceLock<Buf> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Buf::default();
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        buf
    })
    .clone()
}

const ANN: &str = r#"{"name":"Ann","email":"ann@example.com","ssn":"123-45-6789","cards":[{"number":"4111111111111111","brand":"visa"},{"number":"5500005555555559","brand":"mc"}]}"#;
const BOB: &str = r#"{"name":"Bob","email":"bob@example.com","ssn":"987-65-4321","cards":[{"number":"378282246310005","brand":"amex"}]}"#;
const SECRETS: [&str; 7] = [
    "ann@example.com",
    "123-45-6789",
    "4111111111111111",
    "5500005555555559",
    "bob@example.com",
    "987-65-4321",
    "378282246310005",
];

fn is_envelope(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("sg1."))
}

/// The value of one sample line of the metrics exposition (0 when absent).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

fn sealgate_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .output()
        .unwrap()
}

const SHADOW_POLICY: &str = r#"
[[route]]
name = "shadow-users-create"
methods = ["POST"]
path = "/users"
key = "shadow-demo"
context = "users"
mode = "shadow"
request.encrypt = ["$.ssn", "$.email", "$.cards[*].number", "$.phone"]
response.decrypt = ["$.ssn", "$.email", "$.cards[*].number"]
"#;

#[tokio::test]
async fn shadow_passes_traffic_unchanged_reports_and_its_capture_drafts_a_working_policy() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.json");
    std::fs::write(&db, r#"{"users": []}"#).unwrap();
    let js = json_server(db.clone()).await;
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/shadow.toml"), SHADOW_POLICY).unwrap();
    let capture = dir.path().join("capture.jsonl");
    let mut cfg = test_config(dir.path(), &format!("http://{}", js.addr));
    cfg.shadow_capture = Some(sealgate::config::ShadowCapture {
        file: capture.clone(),
        max_lines: 1000,
        sample: 1.0,
    });
    let app = sealgate::app::start(cfg).await.unwrap();
    let base = format!("http://{}", app.proxy_addr);

    // create two users and read them back through the proxy
    for body in [ANN, BOB] {
        let (s, _, b) = send_json("POST", &format!("{base}/users"), body).await;
        assert_eq!(s, 201, "{b}");
        let created: Value = serde_json::from_str(&b).unwrap();
        let sent: Value = serde_json::from_str(body).unwrap();
        assert_eq!(created["ssn"], sent["ssn"]);
    }
    let (s, _, via_proxy) = send("GET", &format!("{base}/users"), &[], "").await;
    assert_eq!(s, 200);
    let (_, _, direct) = send("GET", &format!("http://{}/users", js.addr), &[], "").await;
    assert_eq!(
        via_proxy, direct,
        "shadow mode changes no byte of a response"
    );
    let (s, _, one) = send("GET", &format!("{base}/users/1"), &[], "").await;
    assert_eq!(s, 200);
    assert!(one.contains("ann@example.com"), "{one}");

    // the upstream stored plaintext: nothing was sealed
    let (text, v) = db_json(&db, |v| v["users"].as_array().is_some_and(|a| a.len() == 2)).await;
    for s in SECRETS {
        assert!(text.contains(s), "{s} should be stored as sent: {text}");
    }
    assert_eq!(v["users"][0]["cards"][1]["number"], "5500005555555559");

    // metrics: what would have been sealed and opened; the selector that matched nothing
    let m = app.metrics.render(None);
    let route = "route=\"shadow-users-create\"";
    assert_eq!(
        metric(
            &m,
            &format!("sealgate_shadow_fields_total{{{route},direction=\"request\",op=\"seal\"}}")
        ),
        7,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("sealgate_shadow_fields_total{{{route},direction=\"response\",op=\"open\"}}")
        ),
        7,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!(
                "sealgate_shadow_unmatched_selectors_total{{{route},direction=\"request\",selector=\"$.phone\"}}"
            )
        ),
        2,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "sealgate_fields_sealed_total{route=\"shadow-users-create\"}"
        ),
        0
    );
    // one log line per shadow request, with counts and selectors, never a value
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let shadow_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("shadow-users-create") && l.contains("sealgate::proxy::shadow"))
        .collect();
    assert_eq!(shadow_lines.len(), 2, "{log}");
    assert!(
        shadow_lines[0].contains("would_seal_request=4")
            && shadow_lines[0].contains("request:$.phone"),
        "{}",
        shadow_lines[0]
    );
    for s in SECRETS {
        assert!(!log.contains(s), "{s} reached the logs");
    }

    // the capture: field paths and classes of every JSON body, never a value
    let cap = std::fs::read_to_string(&capture).unwrap();
    for s in SECRETS {
        assert!(!cap.contains(s), "{s} in the capture: {cap}");
    }
    let obs: Vec<Value> = cap
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |method: &str, path: &str, dir: &str, field: &str, class: &str| {
        obs.iter().any(|o| {
            o["method"] == method
                && o["path"] == path
                && o["direction"] == dir
                && o["field"] == field
                && o["class"] == class
        })
    };
    assert!(
        has("POST", "/users", "request", "$.email", "email"),
        "{cap}"
    );
    assert!(
        has(
            "POST",
            "/users",
            "request",
            "$.cards[*].number",
            "card_number"
        ),
        "{cap}"
    );
    // unmatched requests are captured too
    assert!(
        has("GET", "/users", "response", "$[*].ssn", "national_id"),
        "{cap}"
    );
    // paths are captured as templates: not even an id is a value in the capture
    assert!(
        has("GET", "/users/{id}", "response", "$.ssn", "national_id"),
        "{cap}"
    );
    app.shutdown().await;
    drop(js);

    // draft a policy from the capture with the real binary, and check it
    let out = sealgate_cli(&[
        "policy",
        "suggest",
        "--capture",
        capture.to_str().unwrap(),
        "--key",
        "onboarded",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let draft = String::from_utf8(out.stdout).unwrap();
    assert!(
        draft.contains("looks like a payment card number"),
        "{draft}"
    );
    let fresh = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fresh.path().join("policies")).unwrap();
    std::fs::write(fresh.path().join("policies/draft.toml"), &draft).unwrap();
    let out = sealgate_cli(&[
        "policy",
        "check",
        fresh.path().join("policies").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "the draft fails policy check: {}\n{draft}",
        String::from_utf8_lossy(&out.stderr)
    );

    // the draft, enforced in front of a fresh json-server, seals those fields
    let db2 = fresh.path().join("db.json");
    std::fs::write(&db2, r#"{"users": []}"#).unwrap();
    let js2 = json_server(db2.clone()).await;
    let app2 = sealgate::app::start(test_config(fresh.path(), &format!("http://{}", js2.addr)))
        .await
        .unwrap();
    let base2 = format!("http://{}", app2.proxy_addr);
    let (s, _, b) = send_json("POST", &format!("{base2}/users"), ANN).await;
    assert_eq!(s, 201, "{b}");
    let created: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(created["email"], "ann@example.com", "opened for the client");
    let (text, v) = db_json(&db2, |v| !v["users"][0].is_null()).await;
    for s in &SECRETS[..4] {
        assert!(
            !text.contains(s),
            "{s} stored in clear under the draft: {text}"
        );
    }
    let row = &v["users"][0];
    assert!(
        is_envelope(&row["email"]) && is_envelope(&row["ssn"]),
        "{row}"
    );
    assert!(is_envelope(&row["cards"][1]["number"]), "{row}");
    assert_eq!(row["name"], "Ann");
    let (s, _, b) = send("GET", &format!("{base2}/users/{}", created["id"]), &[], "").await;
    assert_eq!(s, 200);
    let one: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(one["ssn"], "123-45-6789");
    assert_eq!(one["cards"][0]["number"], "4111111111111111");
    let (_, _, b) = send("GET", &format!("{base2}/users"), &[], "").await;
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(list[0]["email"], "ann@example.com");
    app2.shutdown().await;
}

const MIGRATE_POLICY: &str = r#"
[[route]]
name = "migrate-users-one"
methods = ["GET", "PUT", "PATCH"]
path = "/users/{id}"
key = "migrate-demo"
context = "users"
mode = "migrate"
request.encrypt = ["$.ssn", "$.email"]
response.decrypt = ["$.ssn", "$.email"]

[[route]]
name = "migrate-users-list"
methods = ["GET"]
path = "/users"
key = "migrate-demo"
context = "users"
mode = "migrate"
response.decrypt = ["$[*].ssn", "$[*].email"]
"#;

#[tokio::test]
async fn migration_passes_stored_plaintext_seals_on_write_and_counts_both() {
    let _ = logs();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.json");
    std::fs::write(
        &db,
        r#"{"users": [
            {"id": 1, "name": "Ann", "email": "ann@example.com", "ssn": "123-45-6789"},
            {"id": 2, "name": "Bob", "email": "bob@example.com", "ssn": "987-65-4321"}
        ]}"#,
    )
    .unwrap();
    let js = json_server(db.clone()).await;
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/migrate.toml"), MIGRATE_POLICY).unwrap();
    let app = sealgate::app::start(test_config(dir.path(), &format!("http://{}", js.addr)))
        .await
        .unwrap();
    let base = format!("http://{}", app.proxy_addr);
    let passed = |route: &str| {
        metric(
            &app.metrics.render(None),
            &format!("sealgate_fields_plaintext_passed_total{{route=\"{route}\"}}"),
        )
    };
    let sealed = |route: &str| {
        metric(
            &app.metrics.render(None),
            &format!("sealgate_fields_sealed_total{{route=\"{route}\"}}"),
        )
    };

    // reads of records stored before sealgate: plaintext passes, counted
    let (s, _, b) = send("GET", &format!("{base}/users/1"), &[], "").await;
    assert_eq!(s, 200, "{b}");
    let one: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(one["ssn"], "123-45-6789");
    assert_eq!(passed("migrate-users-one"), 2);
    let (_, _, b) = send("GET", &format!("{base}/users"), &[], "").await;
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(list[1]["email"], "bob@example.com");
    assert_eq!(passed("migrate-users-list"), 4);

    // the next write seals Ann's record
    let (s, _, b) = send_json(
        "PATCH",
        &format!("{base}/users/1"),
        r#"{"email":"ann@example.com","ssn":"123-45-6789"}"#,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let patched: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(patched["email"], "ann@example.com", "opened for the client");
    assert_eq!(sealed("migrate-users-one"), 2);
    let (text, v) = db_json(&db, |v| is_envelope(&v["users"][0]["ssn"])).await;
    assert!(is_envelope(&v["users"][0]["email"]), "{text}");
    assert!(!text.contains("123-45-6789") && !text.contains("ann@example.com"));
    assert_eq!(
        v["users"][1]["ssn"], "987-65-4321",
        "Bob is not migrated yet"
    );

    // the list now opens Ann and passes Bob
    let (_, _, b) = send("GET", &format!("{base}/users"), &[], "").await;
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(list[0]["ssn"], "123-45-6789");
    assert_eq!(list[1]["ssn"], "987-65-4321");
    assert_eq!(passed("migrate-users-list"), 6);

    // migrate Bob: after that a full read passes no plaintext
    let (s, _, _) = send_json(
        "PUT",
        &format!("{base}/users/2"),
        r#"{"name":"Bob","email":"bob@example.com","ssn":"987-65-4321"}"#,
    )
    .await;
    assert_eq!(s, 200);
    let (text, _) = db_json(&db, |v| is_envelope(&v["users"][1]["ssn"])).await;
    for s in [
        "ann@example.com",
        "123-45-6789",
        "bob@example.com",
        "987-65-4321",
    ] {
        assert!(!text.contains(s), "{s} still stored in clear: {text}");
    }
    let (_, _, b) = send("GET", &format!("{base}/users"), &[], "").await;
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(list[1]["email"], "bob@example.com");
    assert_eq!(
        passed("migrate-users-list"),
        6,
        "migration done: no more plaintext passed"
    );
    let opened = metric(
        &app.metrics.render(None),
        "sealgate_fields_opened_total{route=\"migrate-users-list\"}",
    );
    assert_eq!(opened, 2 + 4);
    app.shutdown().await;
}
