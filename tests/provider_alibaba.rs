//! `[provider] kind = "alibaba"` end to end: the "cloud" is a second
//! sealgate serving its Alibaba KMS face on loopback (in-process, a key and
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

fn provider_toml(endpoint: SocketAddr) -> String {
    format!(
        r#"
[provider]
kind = "alibaba"
endpoint = "http://{endpoint}"
region = "cn-hangzhou"
secret_id_env = "SG_TEST_ALI_ID"
secret_key_env = "SG_TEST_ALI_KEY"
"#
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
    let kms = start_kms_fixture(&[]).await;
    let key = kms
        .app
        .store
        .create(sealgate::keys::CreateKeyRequest::default())
        .unwrap()
        .key_id
        .to_string();
    std::env::set_var("SG_TEST_ALI_ID", &kms.id);
    std::env::set_var("SG_TEST_ALI_KEY", &kms.secret);
    let upstream = recording_upstream(last_post_upstream()).await;
    let config = provider_toml(kms.app.kms_addr.unwrap());

    // a key the KMS does not have stops start-up, naming it
    let missing = "00000000-0000-4000-8000-000000000000";
    let dir = tempfile::tempdir().unwrap().keep();
    let (status, err) = ServeProcess::start_fails(&dir, upstream.addr, &policy(missing), &config);
    assert!(!status.success());
    assert!(
        err.contains(missing) && err.contains("alibaba KMS"),
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
        err.contains(missing) && err.contains("alibaba KMS"),
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
    // one data key for the route, whatever the tenant; nothing to decrypt
    assert_eq!(calls(admin, "GenerateDataKey").await, 1);
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
    drop(a);
    drop(b);
}
