//! With debug logging on, no plaintext of a sealed field reaches the logs,
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
    let app = sealgate::app::start(test_config(dir.path(), &format!("http://{}", up.addr)))
        .await
        .unwrap();
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
    app.shutdown().await;

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("done"), "the log capture works: {logs}");
    assert!(logs.lines().count() > 5);
    for s in [secret_ssn, secret_card] {
        assert!(!logs.contains(s), "{s} appeared in the logs");
    }
}
