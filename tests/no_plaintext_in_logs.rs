//! With trace logging on, no plaintext of a sealed field or of a sealed
//! query or path parameter, no KMS plaintext and no credential secret or
//! token reaches the logs, the audit log, the metrics or the shadow capture,
//! whatever happens to the request; and a node whose CMKs live in a remote
//! KMS (`[provider]`, this same sealgate's Tencent face) writes its
//! provider SecretKey nowhere, on success and on failure.

mod common;

use common::*;
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

const POLICY: &str = r#"
[[route]]
name = "users"
path = "/users"
key = "log-test"
request.encrypt = ["$.ssn", "$.card"]
response.decrypt = ["$.ssn", "$.card"]

[[route]]
name = "people-by-ssn"
methods = ["GET"]
path = "/people/by-ssn/{ssn}"
key = "log-test"
context = "people"
path_params = ["ssn"]

[[route]]
name = "people-search"
methods = ["GET"]
path = "/people"
key = "log-test"
context = "people"
query_params = ["email"]
"#;

// multi-threaded: the provider node below waits for its remote calls with
// block_in_place while this runtime serves the KMS face it calls
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_field_plaintext() {
    let buf = Buf::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let up = recording_upstream(echo()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.toml"), POLICY).unwrap();
    let mut cfg = test_config(dir.path(), &format!("http://{}", up.addr));
    let audit_path = dir.path().join("audit.jsonl");
    cfg.audit.sink = Some(sealgate::config::AuditSink::File(audit_path.clone()));
    cfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.kms_listen = Some("127.0.0.1:0".parse().unwrap());
    // unmatched requests are captured for `policy suggest`
    let capture_path = dir.path().join("capture.jsonl");
    cfg.shadow_capture = Some(sealgate::config::ShadowCapture {
        file: capture_path.clone(),
        max_lines: 1000,
        sample: 1.0,
    });
    let app = sealgate::app::start(cfg).await.unwrap();
    let url = format!("http://{}/users", app.proxy_addr);
    let secret_ssn = "SSN-SECRET-314159";
    let secret_card = "CARD-SECRET-271828";
    let (s, _, _) = send_json(
        "POST",
        &url,
        &format!(r#"{{"ssn":"{secret_ssn}","card":"{secret_card}"}}"#),
    )
    .await;
    assert_eq!(s, 200);
    // error paths: broken JSON, duplicate keys, wrong media type
    let (s, _, b) = send_json("POST", &url, &format!(r#"{{"ssn":"{secret_ssn}""#)).await;
    assert_eq!(s, 400, "broken JSON: {b}");
    let (s, _, b) = send_json(
        "POST",
        &url,
        &format!(r#"{{"ssn":"x","ssn":"{secret_ssn}"}}"#),
    )
    .await;
    assert_eq!(s, 400, "duplicate keys: {b}");
    let (s, _, b) = send("POST", &url, &[("content-type", "text/plain")], secret_card).await;
    assert_eq!(s, 415, "wrong media type: {b}");
    // sealed URL parameters: the upstream sees envelopes, the logs neither
    // the value nor its percent-encoding
    let base = format!("http://{}", app.proxy_addr);
    let path_ssn = "219-09-9999";
    let (s, _, b) = send("GET", &format!("{base}/people/by-ssn/{path_ssn}"), &[], "").await;
    assert_eq!(s, 200, "{b}");
    let query_email = "query.secret@example.com";
    let query_email_enc = "query.secret%40example.com";
    let (s, _, b) = send(
        "GET",
        &format!("{base}/people?email={query_email_enc}"),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // a refused sealed parameter (not UTF-8) is an error path too
    let (s, _, b) = send(
        "GET",
        &format!("{base}/people?email=%FF{query_email_enc}"),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 400, "bad percent-encoding: {b}");
    let upstream_uris: Vec<String> = up.requests().iter().map(|r| r.uri.clone()).collect();
    let sealed_uris: Vec<&String> = upstream_uris
        .iter()
        .filter(|u| u.starts_with("/people"))
        .collect();
    assert_eq!(sealed_uris.len(), 2, "{upstream_uris:?}");
    for u in &sealed_uris {
        assert!(
            u.contains("sgd1.") && !u.contains(path_ssn) && !u.contains("query.secret"),
            "the upstream got {u}"
        );
    }
    // unmatched requests go to the shadow capture: sensitive-looking path
    // segments and body values, none of which may be written
    let unmatched_email = "capture.secret@example.com";
    let unmatched_ssn = "078-05-1120";
    let (s, _, b) = send(
        "GET",
        &format!("{base}/accounts/by-email/capture.secret%40example.com/orders/31337"),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = send_json(
        "POST",
        &format!("{base}/patients/{unmatched_ssn}"),
        &format!(r#"{{"contact":"{unmatched_email}"}}"#),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // the KMS face: a plaintext through Infisical's encrypt, with a bad token too
    let kms = format!("http://{}", app.kms_addr.unwrap());
    let cred = app.store.create_credential(None).unwrap();
    let secret = String::from_utf8(cred.secret.expose().to_vec()).unwrap();
    let (_, _, login) = send_json(
        "POST",
        &format!("{kms}/api/v1/auth/universal-auth/login"),
        &format!(r#"{{"clientId":"{}","clientSecret":"{secret}"}}"#, cred.id),
    )
    .await;
    let token = serde_json::from_str::<serde_json::Value>(&login).unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = format!("Bearer {token}");
    // a bad token: refused, and neither token logged
    let (s, _, _) = send(
        "GET",
        &format!("{kms}/api/v1/kms/keys?projectId=p1"),
        &[("authorization", "Bearer BAD-TOKEN-SECRET-112358")],
        "",
    )
    .await;
    assert_eq!(s, 403, "a bad bearer token is Infisical's TokenError");
    let (_, _, created) = send(
        "POST",
        &format!("{kms}/api/v1/kms/keys"),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        r#"{"name":"logkey","projectId":"p1"}"#,
    )
    .await;
    let key_id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine as _;
    let kms_secret = "KMS-SECRET-161803";
    let pt = base64::engine::general_purpose::STANDARD.encode(kms_secret);
    let (s, _, _) = send(
        "POST",
        &format!("{kms}/api/v1/kms/keys/{key_id}/encrypt"),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        &format!(r#"{{"plaintext":"{pt}"}}"#),
    )
    .await;
    assert_eq!(s, 200);
    // metrics after all of it
    let (_, _, metrics) = send(
        "GET",
        &format!("http://{}/metrics", app.admin_addr.unwrap()),
        &[],
        "",
    )
    .await;
    assert!(metrics.contains("sealgate_"), "{metrics}");

    // a provider node: this sealgate's Tencent face holds its CMKs
    let provider_cred = app.store.create_credential(None).unwrap();
    let provider_secret = String::from_utf8(provider_cred.secret.expose().to_vec()).unwrap();
    std::env::set_var("SG_NOPLAIN_PROVIDER_ID", &provider_cred.id);
    std::env::set_var("SG_NOPLAIN_PROVIDER_KEY", &provider_secret);
    let live = app
        .store
        .create(sealgate::keys::CreateKeyRequest::default())
        .unwrap()
        .key_id
        .to_string();
    let doomed = app
        .store
        .create(sealgate::keys::CreateKeyRequest::default())
        .unwrap()
        .key_id
        .to_string();
    let pdir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(pdir.path().join("policies")).unwrap();
    std::fs::write(
        pdir.path().join("policies/p.toml"),
        format!(
            r#"
[[route]]
name = "live"
path = "/live"
key = "{live}"
request.encrypt = ["$.ssn"]
response.decrypt = ["$.ssn"]

[[route]]
name = "doomed"
path = "/doomed"
key = "{doomed}"
request.encrypt = ["$.ssn"]
"#
        ),
    )
    .unwrap();
    let mut pcfg = test_config(pdir.path(), &format!("http://{}", up.addr));
    let paudit_path = pdir.path().join("audit.jsonl");
    pcfg.audit.sink = Some(sealgate::config::AuditSink::File(paudit_path.clone()));
    pcfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let settings = sealgate::config::ProviderSettings {
        kind: sealgate::config::ProviderKind::Tencent,
        endpoint: kms.parse().unwrap(),
        region: "ap-guangzhou".into(),
        secret_id_env: "SG_NOPLAIN_PROVIDER_ID".into(),
        secret_key_env: "SG_NOPLAIN_PROVIDER_KEY".into(),
        retry_budget: std::time::Duration::from_millis(300),
        call_timeout: std::time::Duration::from_millis(200),
        max_concurrent_calls: 4,
    };
    pcfg.provider = Some(settings.clone());
    let papp = sealgate::app::start(pcfg).await.unwrap();
    let purl = format!("http://{}", papp.proxy_addr);
    let (s, _, b) = send_json(
        "POST",
        &format!("{purl}/live"),
        &format!(r#"{{"ssn":"{secret_ssn}"}}"#),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b.contains(secret_ssn), "echoed and opened: {b}");
    // a failure path: the remote key is disabled after start-up
    app.store.disable(&doomed).unwrap();
    let (s, _, doomed_body) = send_json("POST", &format!("{purl}/doomed"), r#"{"ssn":"1"}"#).await;
    assert_eq!(s, 503, "{doomed_body}");
    let (_, _, pmetrics) = send(
        "GET",
        &format!("http://{}/metrics", papp.admin_addr.unwrap()),
        &[],
        "",
    )
    .await;
    assert!(
        pmetrics
            .contains("sealgate_provider_calls_total{action=\"GenerateDataKey\",outcome=\"ok\"} 1"),
        "{pmetrics}"
    );
    papp.shutdown().await;
    // and a provider that cannot be reached stops start-up, saying so
    let ddir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ddir.path().join("policies")).unwrap();
    std::fs::copy(
        pdir.path().join("policies/p.toml"),
        ddir.path().join("policies/p.toml"),
    )
    .unwrap();
    let mut dcfg = test_config(ddir.path(), &format!("http://{}", up.addr));
    dcfg.provider = Some(sealgate::config::ProviderSettings {
        endpoint: "http://127.0.0.1:9".parse().unwrap(),
        ..settings
    });
    let start_error = match sealgate::app::start(dcfg).await {
        Ok(_) => panic!("started without its provider"),
        Err(e) => e.to_string(),
    };
    assert!(
        start_error.contains("tencent KMS at http://127.0.0.1:9"),
        "{start_error}"
    );
    let paudit = std::fs::read_to_string(&paudit_path).unwrap_or_default();
    for (what, text) in [
        ("audit log", paudit.as_str()),
        ("metrics", pmetrics.as_str()),
        ("error body", doomed_body.as_str()),
        ("start-up error", start_error.as_str()),
    ] {
        assert!(
            !text.contains(&provider_secret),
            "the provider secret appeared in the {what}"
        );
        assert!(
            !text.contains(secret_ssn),
            "the field plaintext appeared in the {what}"
        );
    }
    app.shutdown().await;
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    assert!(
        audit.lines().count() > 2,
        "the audit log was written: {audit}"
    );
    let must_not_leak = [
        secret_ssn,
        secret_card,
        kms_secret,
        pt.as_str(),
        secret.as_str(),
        provider_secret.as_str(),
        token.as_str(),
        "BAD-TOKEN-SECRET-112358",
        path_ssn,
        query_email,
        query_email_enc,
        unmatched_email,
        "capture.secret%40example.com",
        unmatched_ssn,
    ];
    for s in must_not_leak {
        assert!(!audit.contains(s), "{s} appeared in the audit log");
        assert!(!metrics.contains(s), "{s} appeared in the metrics");
    }

    // the capture has the unmatched requests' findings, as templates only
    let capture = std::fs::read_to_string(&capture_path).unwrap();
    assert!(
        capture.contains("/accounts/by-email/{email}/orders/{id}")
            && capture.contains("/patients/{national_id}"),
        "the capture was written: {capture}"
    );
    for s in must_not_leak.iter().chain(&["31337"]) {
        assert!(!capture.contains(s), "{s} appeared in the shadow capture");
    }
    // and `policy suggest` drafts one route with a searchable path parameter
    let mut draft = Vec::new();
    sealgate::cli::policy::run_to(
        sealgate::cli::policy::PolicyCommand::Suggest {
            capture: capture_path.clone(),
            key: "log-test".into(),
        },
        &mut draft,
        &mut std::io::sink(),
    )
    .unwrap();
    let draft = String::from_utf8(draft).unwrap();
    assert!(
        draft.contains("path = \"/accounts/by-email/{email}/orders/{id}\"")
            && draft.contains("path_params = [")
            && draft.contains("  \"email\","),
        "{draft}"
    );
    assert!(!draft.contains("capture.secret") && !draft.contains(unmatched_ssn));

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("done"), "the log capture works: {logs}");
    assert!(logs.lines().count() > 5);
    for s in must_not_leak {
        assert!(!logs.contains(s), "{s} appeared in the logs");
    }
    assert!(
        logs.contains("path=/people/by-ssn/{ssn}"),
        "the done line names the route's path template: {logs}"
    );
}
