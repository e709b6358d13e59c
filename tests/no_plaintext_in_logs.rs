//! With trace logging on, no plaintext of a sealed field, no KMS plaintext
//! and no credential secret reaches the logs, the audit log or the metrics,
//! whatever happens to the request.

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
"#;

#[tokio::test]
async fn debug_logs_hold_no_field_plaintext() {
    let buf = Buf::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
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
    send_json("POST", &url, &format!(r#"{{"ssn":"{secret_ssn}""#)).await;
    send_json(
        "POST",
        &url,
        &format!(r#"{{"ssn":"x","ssn":"{secret_ssn}"}}"#),
    )
    .await;
    send("POST", &url, &[("content-type", "text/plain")], secret_card).await;
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
    app.shutdown().await;
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    assert!(
        audit.lines().count() > 2,
        "the audit log was written: {audit}"
    );
    for s in [
        secret_ssn,
        secret_card,
        kms_secret,
        pt.as_str(),
        secret.as_str(),
    ] {
        assert!(!audit.contains(s), "{s} appeared in the audit log");
        assert!(!metrics.contains(s), "{s} appeared in the metrics");
    }

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("done"), "the log capture works: {logs}");
    assert!(logs.lines().count() > 5);
    for s in [
        secret_ssn,
        secret_card,
        kms_secret,
        pt.as_str(),
        secret.as_str(),
    ] {
        assert!(!logs.contains(s), "{s} appeared in the logs");
    }
}
