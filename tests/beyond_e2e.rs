//! Beyond the basics, end to end: searchable (deterministic) fields with
//! lookups by query string against json-server, sealed path parameters,
//! rotation (new writes under the new version, old ones still open,
//! `Sealgate-Stale-Key`), and the minimum decryption version.

mod common;

use bytes::Bytes;
use common::*;
use serde_json::Value;

fn is_det(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("sgd1."))
}

fn setup_policy(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/examples/searchable.toml");
    std::fs::copy(file, dir.join("policies/searchable.toml")).unwrap();
}

#[tokio::test]
async fn records_created_with_a_deterministic_email_are_found_by_query() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.json");
    std::fs::write(&db, r#"{"people": []}"#).unwrap();
    let js = json_server(db.clone()).await;
    setup_policy(dir.path());
    let app = sealgate::app::start(test_config(dir.path(), &format!("http://{}", js.addr)))
        .await
        .unwrap();
    let base = format!("http://{}", app.proxy_addr);

    for (name, email, notes) in [
        ("Alice", "alice@example.com", "likes tea"),
        ("Bob", "bob@example.com", "likes coffee"),
        ("Alice2", "alice@example.com", "second account"),
    ] {
        let body = format!(
            r#"{{"name":"{name}","email":"{email}","ssn":"111-{name}","notes":"{notes}"}}"#
        );
        let (s, _, b) = send_json("POST", &format!("{base}/people"), &body).await;
        assert_eq!(s, 201, "{b}");
        let created: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(
            created["email"], email,
            "the create response is opened: {b}"
        );
    }

    // at rest: deterministic envelopes, equal for equal emails; notes random
    let (text, v) = db_json(&db, |v| {
        v["people"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    assert!(
        !text.contains("alice@example.com") && !text.contains("likes tea"),
        "{text}"
    );
    let rows = v["people"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| is_det(&r["email"]) && is_det(&r["ssn"])),
        "{text}"
    );
    assert_eq!(
        rows[0]["email"], rows[2]["email"],
        "equal emails seal equal"
    );
    assert_ne!(rows[0]["email"], rows[1]["email"]);
    assert!(rows[0]["notes"].as_str().unwrap().starts_with("sg1."));

    // the lookup by email through the proxy finds both Alices, opened
    let (s, _, b) = send(
        "GET",
        &format!("{base}/people?email=alice%40example.com"),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let found: Value = serde_json::from_str(&b).unwrap();
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 2, "{b}");
    assert!(
        found.iter().all(|r| r["email"] == "alice@example.com"),
        "{b}"
    );
    let mut notes: Vec<&str> = found.iter().map(|r| r["notes"].as_str().unwrap()).collect();
    notes.sort();
    assert_eq!(notes, ["likes tea", "second account"]);

    // unencoded '@' works too, and other query params pass untouched
    let (s, _, b) = send(
        "GET",
        &format!("{base}/people?email=bob@example.com&name=Bob"),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let found: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{b}");
    assert_eq!(found[0]["ssn"], "111-Bob");

    // straight to json-server with the plaintext: nothing matches
    let (_, _, b) = send(
        "GET",
        &format!("http://{}/people?email=alice@example.com", js.addr),
        &[],
        "",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&b)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    app.shutdown().await;
}

#[tokio::test]
async fn path_parameters_are_sealed_like_the_stored_field() {
    let dir = tempfile::tempdir().unwrap();
    setup_policy(dir.path());
    let up = recording_upstream(echo()).await;
    let app = sealgate::app::start(test_config(dir.path(), &format!("http://{}", up.addr)))
        .await
        .unwrap();
    let base = format!("http://{}", app.proxy_addr);

    // the body field as stored
    send_json(
        "POST",
        &format!("{base}/people"),
        r#"{"ssn":"123-45-6789"}"#,
    )
    .await;
    // the lookup by path
    let (s, _, _) = send("GET", &format!("{base}/people/by-ssn/123-45-6789"), &[], "").await;
    assert_eq!(s, 200);
    let seen = up.requests();
    let stored: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let env = stored["ssn"].as_str().unwrap();
    assert!(env.starts_with("sgd1."), "{stored}");
    assert_eq!(seen[1].uri, format!("/people/by-ssn/{env}"));
    app.shutdown().await;
}

/// An upstream that stores the last PUT body and returns it on GET.
fn store_and_return() -> Reply {
    let stored = std::sync::Arc::new(std::sync::Mutex::new(Bytes::from_static(b"{}")));
    std::sync::Arc::new(move |seen: &Seen| {
        if seen.method == "PUT" {
            *stored.lock().unwrap() = seen.body.clone();
        }
        let body = stored.lock().unwrap().clone();
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(body))
            .unwrap()
    })
}

#[tokio::test]
async fn rotation_new_writes_use_the_new_version_and_old_ones_report_stale() {
    let dir = tempfile::tempdir().unwrap();
    setup_policy(dir.path());
    let up = recording_upstream(store_and_return()).await;
    let app = sealgate::app::start(test_config(dir.path(), &format!("http://{}", up.addr)))
        .await
        .unwrap();
    let base = format!("http://{}", app.proxy_addr);
    let body = r#"{"email":"a@example.com","notes":"n"}"#;
    let id = app.store.describe("people").unwrap().key_id;

    let (s, h, _) = send_json("PUT", &format!("{base}/people/1"), body).await;
    assert_eq!(s, 200);
    assert!(h.get("sealgate-stale-key").is_none());
    let v1: Value = serde_json::from_slice(&up.requests()[0].body).unwrap();

    // rotate in the same process: the cached data keys are dropped at once
    app.store.rotate("people").unwrap();
    let (s, h, b) = send("GET", &format!("{base}/people/1"), &[], "").await;
    assert_eq!(s, 200, "{b}");
    let opened: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (opened["email"].as_str(), opened["notes"].as_str()),
        (Some("a@example.com"), Some("n"))
    );
    assert_eq!(
        h.get("sealgate-stale-key").and_then(|v| v.to_str().ok()),
        Some(format!("{id}:1").as_str()),
        "an old version still opens and is reported"
    );

    let (s, h, b) = send_json("PUT", &format!("{base}/people/1"), body).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        h.get("sealgate-stale-key").is_none(),
        "fresh writes are not stale"
    );
    let v2: Value = serde_json::from_slice(&up.requests()[2].body).unwrap();
    assert_ne!(
        v1["email"], v2["email"],
        "a rotation changes the deterministic envelope"
    );
    let parse = |v: &Value, f: &str| {
        let t = v[f].as_str().unwrap();
        if t.starts_with("sgd1.") {
            sealgate::envelope::DetEnvelope::parse(t)
                .unwrap()
                .cmk()
                .version
        } else {
            sealgate::envelope::Envelope::parse(t)
                .unwrap()
                .cmk()
                .version
        }
    };
    assert_eq!((parse(&v1, "email"), parse(&v1, "notes")), (1, 1));
    assert_eq!((parse(&v2, "email"), parse(&v2, "notes")), (2, 2));

    // once version 1 is retired, envelopes under it no longer open
    let (s, _, _) = send_json("PUT", &format!("{base}/people/1"), body).await;
    assert_eq!(s, 200);
    app.store.set_min_decryption_version("people", 2).unwrap();
    let (s, _, b) = send("GET", &format!("{base}/people/1"), &[], "").await;
    assert_eq!(s, 200, "version 2 still opens: {b}");
    // put the v1 record back behind the proxy's back
    let raw = serde_json::to_string(&v1).unwrap();
    send_json("PUT", &format!("http://{}/people/1", up.addr), &raw).await;
    let (s, _, b) = send("GET", &format!("{base}/people/1"), &[], "").await;
    assert_eq!(s, 503, "{b}");
    assert!(b.contains("key_unavailable"), "{b}");
    assert!(
        app.store.set_min_decryption_version("people", 3).is_err(),
        "cannot exceed the primary"
    );
    app.shutdown().await;
}

#[test]
fn rewrap_reseals_every_envelope_under_the_primary_version() {
    use sealgate::keys::{CacheConfig, DataKeyCache, KeyStore, RootKeySource, StoreOptions};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let open =
        || Arc::new(KeyStore::open(&data, RootKeySource::Auto, StoreOptions::default()).unwrap());
    let ctx = "people";
    let aad = |label: &str| format!("{ctx}\0{label}").into_bytes();
    let doc = {
        let store = open();
        store.create_alias_key("people", "").unwrap();
        let cache = DataKeyCache::with_system_clock(store.clone(), CacheConfig::default());
        let sk = cache.sealing_key("people", ctx.as_bytes(), 8).unwrap();
        let notes = sealgate::envelope::seal(
            &sk,
            br#""secret""#,
            &aad("rows.notes"),
            &mut rand::thread_rng(),
        )
        .unwrap();
        let dk = cache.deterministic_key("people", ctx.as_bytes()).unwrap();
        let email = sealgate::envelope::seal_deterministic(&dk, br#""a@x.io""#, &aad("rows.email"))
            .unwrap();
        // a record in a page: its label starts at the record (`records`)
        let record_notes =
            sealgate::envelope::seal(&sk, br#""paged""#, &aad("notes"), &mut rand::thread_rng())
                .unwrap();
        store.rotate("people").unwrap();
        format!(
            r#"{{"rows":[{{"notes":"{notes}","email":"{email}","n":1}},{{"notes":"{record_notes}"}}]}}"#
        )
    };
    let args = sealgate::cli::rewrap::RewrapArgs {
        store: sealgate::cli::keys::StoreLocationArgs {
            data_dir: Some(data.clone()),
            ..Default::default()
        },
        context: ctx.into(),
        key: None,
        lines: false,
    };
    let mut out = Vec::new();
    let counts = sealgate::cli::rewrap::run_io(&args, &mut doc.as_bytes(), &mut out).unwrap();
    assert_eq!((counts.rewrapped, counts.current), (3, 0));
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["rows"][0]["n"], 1);
    let notes = v["rows"][0]["notes"].as_str().unwrap();
    let email = v["rows"][0]["email"].as_str().unwrap();
    let store = open();
    let cache = DataKeyCache::with_system_clock(store.clone(), CacheConfig::default());
    let env = sealgate::envelope::Envelope::parse(notes).unwrap();
    assert_eq!(env.cmk().version, 2);
    let c = cache.opening_key(&env.cmk(), env.wrapped()).unwrap();
    assert_eq!(
        env.open(&c, &aad("rows.notes")).unwrap().json(),
        br#""secret""#
    );
    let paged =
        sealgate::envelope::Envelope::parse(v["rows"][1]["notes"].as_str().unwrap()).unwrap();
    assert_eq!(paged.cmk().version, 2);
    let c = cache.opening_key(&paged.cmk(), paged.wrapped()).unwrap();
    assert_eq!(
        paged.open(&c, &aad("notes")).unwrap().json(),
        br#""paged""#,
        "re-sealed under the record-relative label it opened with"
    );
    let denv = sealgate::envelope::DetEnvelope::parse(email).unwrap();
    assert_eq!(denv.cmk().version, 2);
    let dk = cache.deterministic_key("people", ctx.as_bytes()).unwrap();
    assert_eq!(
        email,
        sealgate::envelope::seal_deterministic(&dk, br#""a@x.io""#, &aad("rows.email")).unwrap(),
        "a rewrapped deterministic value equals a fresh seal, so lookups keep matching"
    );
    // retire version 1: nothing left needs it
    store.set_min_decryption_version("people", 2).unwrap();
    drop((cache, store));
    // a second run finds everything current; the wrong context does not open
    let text = String::from_utf8(out).unwrap();
    let mut out2 = Vec::new();
    let counts = sealgate::cli::rewrap::run_io(&args, &mut text.as_bytes(), &mut out2).unwrap();
    assert_eq!((counts.rewrapped, counts.current), (0, 3));
    let bad = sealgate::cli::rewrap::RewrapArgs {
        context: "other".into(),
        ..args
    };
    let err =
        sealgate::cli::rewrap::run_io(&bad, &mut text.as_bytes(), &mut Vec::new()).unwrap_err();
    assert!(
        err.contains("does not open") && !err.contains("secret"),
        "{err}"
    );
}
