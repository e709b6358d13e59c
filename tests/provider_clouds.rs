//! `[provider] kind = "alibaba"` and `kind = "infisical"` end to end (the
//! Tencent provider, with its fault injection, is `provider_tencent`): the
//! "cloud" is a second sealgate serving that KMS face on loopback (in-process, a key and
//! a credential made in its store); the provider nodes are the real
//! `sealgate serve` binary with fresh data directories.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::Value;

fn policy(key: &str) -> String {
    format!(
        r#"
[[route]]
name = "create"
methods = ["POST"]
path = "/t/{{tenant}}"
key = "{key}"
context = "t:{{tenant}}"
request.encrypt = ["$.ssn"]

[[route]]
name = "read"
methods = ["GET"]
path = "/t/{{tenant}}"
key = "{key}"
context = "t:{{tenant}}"
response.decrypt = ["$.ssn"]
"#
    )
}

/// The environment variables holding `kind`'s SecretId and SecretKey.
fn env_names(kind: &str) -> (String, String) {
    let k = kind.to_uppercase();
    (format!("SG_TEST_{k}_ID"), format!("SG_TEST_{k}_KEY"))
}

fn provider_toml(kind: &str, endpoint: SocketAddr) -> String {
    // Infisical has no regions
    let region = match kind {
        "infisical" => "",
        _ => "region = \"cn-hangzhou\"\n",
    };
    let (id, secret) = env_names(kind);
    format!(
        "\n[provider]\nkind = \"{kind}\"\nendpoint = \"http://{endpoint}\"\n{region}secret_id_env = \"{id}\"\nsecret_key_env = \"{secret}\"\n"
    )
}

fn node(upstream: SocketAddr, policy: &str, config: &str) -> (ServeProcess, SocketAddr) {
    let dir = tempfile::tempdir().unwrap().keep();
    let s = ServeProcess::start_with_flags(
        dir,
        upstream,
        policy,
        config,
        &["--admin-listen", "127.0.0.1:0"],
    );
    let admin = s.wait_log("admin listening (/metrics, /healthz, /readyz)");
    let admin = admin["fields"]["listen"].as_str().unwrap().parse().unwrap();
    (s, admin)
}

async fn calls(admin: SocketAddr, action: &str) -> u64 {
    let (_, _, body) = send("GET", &format!("http://{admin}/metrics"), &[], "").await;
    let prefix = format!(r#"sealgate_provider_calls_total{{action="{action}",outcome="ok"}} "#);
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alibaba_provider_node_seals_and_a_fresh_node_opens() {
    provider_node_seals_and_a_fresh_node_opens("alibaba").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infisical_provider_node_seals_and_a_fresh_node_opens() {
    provider_node_seals_and_a_fresh_node_opens("infisical").await;
}

/// A `kind` provider node: start-up and `policy check` refuse a key the
/// remote lacks; sealing makes one GenerateDataKey per route whatever the
/// tenant; a fresh node opens with one Decrypt.
async fn provider_node_seals_and_a_fresh_node_opens(kind: &str) {
    let kms = start_kms_fixture(&[]).await;
    let key = kms
        .app
        .store
        .create(sealgate::keys::CreateKeyRequest::default())
        .unwrap()
        .key_id
        .to_string();
    let (id_var, secret_var) = env_names(kind);
    std::env::set_var(id_var, &kms.id);
    std::env::set_var(secret_var, &kms.secret);
    let upstream = recording_upstream(last_post_upstream()).await;
    let config = provider_toml(kind, kms.app.kms_addr.unwrap());

    // a key the KMS does not have stops start-up, naming it
    let missing = "00000000-0000-4000-8000-000000000000";
    let dir = tempfile::tempdir().unwrap().keep();
    let (status, err) = ServeProcess::start_fails(&dir, upstream.addr, &policy(missing), &config);
    assert!(!status.success());
    assert!(
        err.contains(missing) && err.contains(&format!("{kind} KMS")),
        "{err}"
    );
    assert!(!err.contains(&kms.secret));

    // `policy check --config` asks the provider too
    std::fs::write(
        dir.join("sealgate.toml"),
        format!("upstream = \"http://127.0.0.1:9\"\n{config}"),
    )
    .unwrap();
    let check = |key: &str| {
        let pdir = tempfile::tempdir().unwrap().keep();
        std::fs::write(pdir.join("p.toml"), policy(key)).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = sealgate::cli::policy::run_to(
            sealgate::cli::policy::PolicyCommand::Check {
                dir: pdir,
                allow_label_gaps: false,
                data_dir: None,
                root_key_file: None,
                config: Some(dir.join("sealgate.toml")),
            },
            &mut out,
            &mut err,
        );
        (r.is_ok(), String::from_utf8(err).unwrap())
    };
    let (ok, err) = check(missing);
    assert!(!ok);
    assert!(
        err.contains(missing) && err.contains(&format!("{kind} KMS")),
        "{err}"
    );
    assert!(!err.contains(&kms.secret));
    let (ok, err) = check(&key);
    assert!(ok, "{err}");

    let (a, admin) = node(upstream.addr, &policy(&key), &config);
    assert_eq!(calls(admin, "DescribeKey").await, 1);
    for (i, tenant) in ["acme", "globex", "acme", "initech"].iter().enumerate() {
        let url = format!("http://{}/t/{tenant}", a.proxy);
        let (status, _, body) = send_json("POST", &url, &format!(r#"{{"ssn":"ssn-{i}"}}"#)).await;
        assert_eq!(status, 200, "{body}");
        let stored: Value =
            serde_json::from_slice(&upstream.requests().last().unwrap().body).unwrap();
        let sealed = stored["ssn"].as_str().unwrap();
        assert!(sealed.starts_with("sg2."), "{sealed}");
        let (status, _, body) = send("GET", &url, &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["ssn"],
            format!("ssn-{i}")
        );
    }
    // searchable fields need CMK material here: refused with [provider]
    let searchable = policy(&key).replacen(
        "request.encrypt = [\"$.ssn\"]",
        "request.deterministic = [\"$.ssn\"]",
        1,
    );
    let sdir = tempfile::tempdir().unwrap().keep();
    let (status, err) = ServeProcess::start_fails(&sdir, upstream.addr, &searchable, &config);
    assert!(!status.success());
    assert!(err.contains("searchable"), "{err}");

    // one data key for the route, whatever the tenant; nothing to decrypt
    // (Infisical: the key is made here and encrypted there, after one
    // universal-auth login)
    if kind == "infisical" {
        assert_eq!(calls(admin, "Encrypt").await, 1);
        assert_eq!(calls(admin, "Login").await, 1);
    } else {
        assert_eq!(calls(admin, "GenerateDataKey").await, 1);
    }
    assert_eq!(calls(admin, "Decrypt").await, 0);

    // a fresh node opens what the first sealed: one remote Decrypt
    let (b, badmin) = node(upstream.addr, &policy(&key), &config);
    for _ in 0..3 {
        let (status, _, body) =
            send("GET", &format!("http://{}/t/initech", b.proxy), &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["ssn"],
            "ssn-3"
        );
    }
    assert_eq!(calls(badmin, "Decrypt").await, 1);
    if kind == "infisical" {
        assert_eq!(calls(badmin, "Login").await, 1);
    }
    drop(a);
    drop(b);
}
