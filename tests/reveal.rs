//! Per-caller reveal and masking end to end, through real sockets on
//! 127.0.0.1: a record is written (sealed) through the proxy, then read back
//! by callers who are let see its fields in clear (a role header, a source
//! block, an mTLS certificate subject) and by callers who get each mask.
//! The audit log records every decision and no value.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = r#"
[[route]]
name = "people-write"
methods = ["POST"]
path = "/support/people"
key = "reveal-key"
context = "people"
request.encrypt = ["$.ssn", "$.cards[*].number"]

[[route]]
name = "keep"
methods = ["GET"]
path = "/support/keep/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ header = "x-role", value = "support" }]
mask = { keep_last = 4 }

[[route]]
name = "fixed"
methods = ["GET"]
path = "/support/fixed/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ header = "x-role", value = "support" }]
mask = { fixed = "[hidden]" }
fields = ["$.ssn"]

[[route]]
name = "null"
methods = ["GET"]
path = "/support/null/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ header = "x-role", value = "support" }]
mask = "null"

[[route]]
name = "envelope"
methods = ["GET"]
path = "/support/envelope/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ header = "x-role", value = "support" }]
mask = "envelope"
fields = ["$.ssn"]

[[route]]
name = "local"
methods = ["GET"]
path = "/support/local/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ source = "127.0.0.0/8" }]
mask = "null"

[[route]]
name = "remote"
methods = ["GET"]
path = "/support/remote/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ source = "10.0.0.0/8" }, { source = "fd00::/8" }]
mask = "null"

[[route]]
name = "cert"
methods = ["GET"]
path = "/support/cert/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ cert_subject = "CN=billing, O=Acme" }]
mask = "null"
"#;

const RECORD: &str = r#"{"name":"Ann","ssn":"123-45-6789","cards":[{"number":"4111111111111111"},{"number":4222222222222}]}"#;

fn dir_with_policy() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/reveal.toml"), POLICY).unwrap();
    dir
}

async fn start(
    dir: &Path,
    upstream: SocketAddr,
    tweak: impl FnOnce(&mut sealgate::config::Config),
) -> sealgate::app::App {
    let mut cfg = test_config(dir, &format!("http://{upstream}"));
    cfg.audit.sink = Some(sealgate::config::AuditSink::File(dir.join("audit.jsonl")));
    tweak(&mut cfg);
    sealgate::app::start(cfg).await.unwrap()
}

async fn get(app: &sealgate::app::App, path: &str, headers: &[(&str, &str)]) -> Value {
    let (status, _, body) = send(
        "GET",
        &format!("http://{}{path}", app.proxy_addr),
        headers,
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn audit_lines(dir: &Path) -> (String, Vec<Value>) {
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (text, lines)
}

fn assert_clear(v: &Value) {
    assert_eq!(v["ssn"], "123-45-6789", "{v}");
    assert_eq!(v["cards"][0]["number"], "4111111111111111", "{v}");
    assert_eq!(v["cards"][1]["number"], 4222222222222u64, "{v}");
    assert_eq!(v["name"], "Ann");
}

#[tokio::test]
async fn a_role_header_sees_clear_values_and_everyone_else_gets_each_mask() {
    let up = recording_upstream(last_post_upstream()).await;
    let dir = dir_with_policy();
    let app = start(&dir, up.addr, |_| {}).await;
    let (status, _, _) = send_json(
        "POST",
        &format!("http://{}/support/people", app.proxy_addr),
        RECORD,
    )
    .await;
    assert_eq!(status, 200);
    let stored: Value = serde_json::from_slice(&up.requests()[0].body).unwrap();
    let sealed_ssn = stored["ssn"].as_str().unwrap().to_owned();
    assert!(sealed_ssn.starts_with("sg1."), "{stored}");

    let support = [("x-role", "support"), ("x-request-id", "rid-support")];
    for route in ["keep", "fixed", "null", "envelope"] {
        assert_clear(&get(&app, &format!("/support/{route}/1"), &support).await);
    }

    // keep_last = 4: strings keep their tail, a number becomes a fixed mask
    let v = get(&app, "/support/keep/1", &[("x-request-id", "rid-masked")]).await;
    assert_eq!(v["ssn"], "*******6789");
    assert_eq!(v["cards"][0]["number"], "************1111");
    assert_eq!(v["cards"][1]["number"], "****");
    assert_eq!(v["name"], "Ann");

    // a wrong role value is no role
    let v = get(&app, "/support/keep/1", &[("x-role", "Support ")]).await;
    assert_eq!(v["ssn"], "*******6789");

    // fixed, only for the fields listed: the card numbers still open
    let v = get(&app, "/support/fixed/1", &[]).await;
    assert_eq!(v["ssn"], "[hidden]");
    assert_eq!(v["cards"][0]["number"], "4111111111111111");

    let v = get(&app, "/support/null/1", &[]).await;
    assert_eq!(v["ssn"], Value::Null);
    assert_eq!(v["cards"][0]["number"], Value::Null);
    assert_eq!(v["cards"][1]["number"], Value::Null);

    // envelope: the ssn is not opened, the card numbers (not listed) are
    let v = get(&app, "/support/envelope/1", &[]).await;
    assert_eq!(v["ssn"], sealed_ssn.as_str());
    assert_eq!(v["cards"][0]["number"], "4111111111111111");

    app.shutdown().await;
    let (text, lines) = audit_lines(&dir);
    for secret in ["123-45-6789", "4111111111111111", "4222222222222", "6789\""] {
        assert!(!text.contains(secret), "{secret} is in the audit log");
    }
    let decisions: Vec<&Value> = lines
        .iter()
        .filter(|l| l["action"] == "reveal_fields")
        .collect();
    assert_eq!(decisions.len(), 4 + 1 + 1 + 3, "{text}");
    let revealed = decisions
        .iter()
        .find(|l| l["request_id"] == "rid-support" && l["route"] == "keep")
        .unwrap();
    assert_eq!(revealed["result"], "revealed");
    assert_eq!(revealed["rule"], "header x-role");
    assert_eq!(revealed["fields"][0], "$.ssn");
    assert_eq!(revealed["fields"][1], "$.cards[*].number");
    assert_eq!(revealed["count"], 3);
    assert!(revealed["caller"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let masked = decisions
        .iter()
        .find(|l| l["request_id"] == "rid-masked")
        .unwrap();
    assert_eq!(masked["result"], "masked");
    assert_eq!(masked["route"], "keep");
    assert!(masked.get("rule").is_none(), "{masked}");
    assert_eq!(masked["count"], 3);
    let fixed = decisions
        .iter()
        .find(|l| l["route"] == "fixed" && l["result"] == "masked")
        .unwrap();
    assert_eq!(fixed["fields"], serde_json::json!(["$.ssn"]));
    assert_eq!(fixed["count"], 1);
    sealgate::audit::verify_file(&dir.join("audit.jsonl")).unwrap();
}

#[tokio::test]
async fn a_source_block_reveals_to_callers_inside_it_only() {
    let up = recording_upstream(last_post_upstream()).await;
    let dir = dir_with_policy();
    let app = start(&dir, up.addr, |_| {}).await;
    send_json(
        "POST",
        &format!("http://{}/support/people", app.proxy_addr),
        RECORD,
    )
    .await;
    assert_clear(&get(&app, "/support/local/1", &[]).await);
    let v = get(&app, "/support/remote/1", &[("x-role", "support")]).await;
    assert_eq!(v["ssn"], Value::Null);
    assert_eq!(v["cards"][0]["number"], Value::Null);
    app.shutdown().await;
    let (_, lines) = audit_lines(&dir);
    let local = lines
        .iter()
        .find(|l| l["route"] == "local" && l["action"] == "reveal_fields")
        .unwrap();
    assert_eq!(local["result"], "revealed");
    assert_eq!(local["rule"], "source 127.0.0.0/8");
    let remote = lines
        .iter()
        .find(|l| l["route"] == "remote" && l["action"] == "reveal_fields")
        .unwrap();
    assert_eq!(remote["result"], "masked");
}

#[tokio::test]
async fn a_policy_with_a_bad_reveal_is_refused_naming_the_field() {
    let bad = r#"
[[route]]
name = "r"
path = "/support/x"
key = "k"
response.decrypt = ["$.ssn"]
[route.reveal]
to = [{ source = "10.0.0.1/8" }, { header = "x-role" }]
mask = { keep_last = 0 }
fields = ["$.other"]
"#;
    let err = sealgate::policy::PolicySet::from_sources(&[("bad.toml".into(), bad.into())])
        .unwrap_err()
        .to_string();
    for want in [
        "reveal.to[0]",
        "10.0.0.0/8",
        "reveal.to[1]",
        "needs a non-empty 'value'",
        "reveal.mask",
        "reveal.fields[0]",
        "not in response.decrypt",
        "bad.toml",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

// ---- mTLS: a certificate subject reveals ----

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    billing: (String, String),
    other: (String, String),
}

/// A CA, a server certificate for localhost, and two client certificates
/// from the same CA: `CN=billing, O=Acme` and `CN=reports, O=Acme`.
fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();

    let client = |cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![format!("{cn}.example")]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, "Acme");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("server-key.pem"),
        server_key.serialize_pem(),
    )
    .unwrap();
    Pki {
        dir,
        ca_pem: ca_cert.pem(),
        billing: client("billing"),
        other: client("reports"),
    }
}

fn client_config(ca: &str, cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = |pem: &str| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        certs(cert),
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
    .unwrap();
    Arc::new(cfg)
}

/// One request over a fresh mTLS connection; returns status and body.
async fn tls_request(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn an_mtls_certificate_subject_reveals_and_another_certificate_does_not() {
    let pki = pki();
    let up = recording_upstream(last_post_upstream()).await;
    let dir = dir_with_policy();
    let tls_dir = pki.dir.path().to_path_buf();
    let app = start(&dir, up.addr, |c| {
        c.tls = Some(sealgate::config::ListenerTls {
            cert_file: tls_dir.join("server.pem"),
            key_file: tls_dir.join("server-key.pem"),
            client_ca_file: Some(tls_dir.join("ca.pem")),
            http2: false,
        })
    })
    .await;
    let billing = client_config(&pki.ca_pem, &pki.billing.0, &pki.billing.1);
    let reports = client_config(&pki.ca_pem, &pki.other.0, &pki.other.1);

    let (status, _) = tls_request(
        app.proxy_addr,
        billing.clone(),
        "POST",
        "/support/people",
        RECORD,
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = tls_request(app.proxy_addr, billing, "GET", "/support/cert/1", "").await;
    assert_eq!(status, 200, "{body}");
    assert_clear(&serde_json::from_str(&body).unwrap());

    let (status, body) = tls_request(app.proxy_addr, reports, "GET", "/support/cert/1", "").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ssn"], Value::Null, "{v}");
    assert_eq!(v["cards"][0]["number"], Value::Null, "{v}");

    app.shutdown().await;
    let (text, lines) = audit_lines(&dir);
    assert!(!text.contains("123-45-6789"));
    let decisions: Vec<&Value> = lines
        .iter()
        .filter(|l| l["action"] == "reveal_fields")
        .collect();
    assert_eq!(decisions.len(), 2, "{text}");
    assert_eq!(decisions[0]["result"], "revealed");
    assert_eq!(decisions[0]["rule"], "cert_subject CN=billing, O=Acme");
    assert_eq!(decisions[0]["subject"], "CN=billing, O=Acme");
    assert_eq!(decisions[1]["result"], "masked");
    assert_eq!(decisions[1]["subject"], "CN=reports, O=Acme");
}
