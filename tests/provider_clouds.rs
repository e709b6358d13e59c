//! `[provider] kind = "alibaba"` and `kind = "infisical"` end to end (the
//! Tencent provider is `provider_tencent`): the "cloud" is a second
//! sealgate serving that KMS face on loopback (in-process, a key and a
//! credential made in its store), behind the fault-injecting front of
//! `common/fault_front.rs` for the fault tests; the provider nodes are the
//! real `sealgate serve` binary with fresh data directories.

mod common;
#[path = "common/fault_front.rs"]
mod fault_front;

use std::net::SocketAddr;

use common::*;
use fault_front::{front, Mode};
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
    let (id, secret) = env_names(kind);
    provider_toml_with(kind, endpoint, &id, &secret, "")
}

fn provider_toml_with(
    kind: &str,
    endpoint: SocketAddr,
    id: &str,
    secret: &str,
    extra: &str,
) -> String {
    // Infisical has no regions
    let region = match kind {
        "infisical" => "",
        _ => "region = \"cn-hangzhou\"\n",
    };
    format!(
        "\n[provider]\nkind = \"{kind}\"\nendpoint = \"http://{endpoint}\"\n{region}secret_id_env = \"{id}\"\nsecret_key_env = \"{secret}\"\n{extra}\n"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alibaba_faults_are_retried_then_answered_503_and_cached_keys_keep_serving() {
    faults_are_retried_then_answered_503(
        "alibaba",
        "GenerateDataKey",
        &[
            (
                Mode::Answer(
                    400,
                    r#"{"Code":"Rejected.Throttling","Message":"QPS Limit Exceeded","RequestId":"x"}"#,
                ),
                "throttled",
            ),
            (Mode::Status(503), "server_error"),
            (
                Mode::Answer(
                    500,
                    r#"{"Code":"InternalFailure","Message":"x","RequestId":"x"}"#,
                ),
                "server_error",
            ),
            (Mode::Hang, "timeout"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infisical_faults_are_retried_then_answered_503_and_cached_keys_keep_serving() {
    faults_are_retried_then_answered_503(
        "infisical",
        "Encrypt",
        &[
            (Mode::Status(429), "throttled"),
            (Mode::Status(502), "server_error"),
            (Mode::Status(500), "server_error"),
            (Mode::Hang, "timeout"),
        ],
    )
    .await;
}

/// A `kind` provider node behind the fault front: each fault is retried
/// (at least two attempts, counted under `outcome`), then answered 503
/// `key_unavailable` naming the provider and never the secret, while a
/// route whose data key is cached keeps sealing and opening; once the KMS
/// answers again the next miss succeeds, without a restart. `action` is
/// the call that makes a data key.
async fn faults_are_retried_then_answered_503(kind: &str, action: &str, faults: &[(Mode, &str)]) {
    let kms = start_kms_fixture(&[]).await;
    let key = kms
        .app
        .store
        .create(sealgate::keys::CreateKeyRequest::default())
        .unwrap()
        .key_id
        .to_string();
    let k = kind.to_uppercase();
    let (id_var, secret_var) = (format!("SG_TEST_{k}_F_ID"), format!("SG_TEST_{k}_F_KEY"));
    std::env::set_var(&id_var, &kms.id);
    std::env::set_var(&secret_var, &kms.secret);
    let front = front(kms.app.kms_addr.unwrap()).await;
    let upstream = recording_upstream(last_post_upstream()).await;
    let config = provider_toml_with(
        kind,
        front.addr,
        &id_var,
        &secret_var,
        "retry_budget_ms = 600\ncall_timeout_ms = 150",
    );
    let mut policy = policy(&key);
    for i in 0..faults.len() + 1 {
        policy.push_str(&format!(
            "\n[[route]]\nname = \"cold{i}\"\nmethods = [\"POST\"]\npath = \"/c{i}\"\nkey = \"{key}\"\ncontext = \"c{i}\"\nrequest.encrypt = [\"$.ssn\"]\n"
        ));
    }
    let (a, admin) = node(upstream.addr, &policy, &config);
    let warm = format!("http://{}/t/warm", a.proxy);
    let (status, _, body) = send_json("POST", &warm, r#"{"ssn":"1"}"#).await;
    assert_eq!(status, 200, "{body}");

    for (i, (mode, outcome)) in faults.iter().enumerate() {
        front.set(*mode);
        let before = front.total();
        let cold = format!("http://{}/c{i}", a.proxy);
        let (status, _, body) = send_json("POST", &cold, r#"{"ssn":"2"}"#).await;
        assert_eq!(status, 503, "{mode:?}: {body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["error"]["code"], "key_unavailable", "{body}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&format!("{kind} KMS at http://")), "{msg}");
        assert!(!body.contains(&kms.secret));
        assert!(front.total() - before >= 2, "{mode:?} was not retried");
        let (_, _, metrics) = send("GET", &format!("http://{admin}/metrics"), &[], "").await;
        let line =
            format!(r#"sealgate_provider_calls_total{{action="{action}",outcome="{outcome}"}} "#);
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |v| v.parse().unwrap());
        assert!(n >= 2, "{mode:?}: {n} attempts counted as {outcome}");
        assert!(!metrics.contains(&kms.secret));
        // the cached data key keeps serving
        let (status, _, _) = send_json("POST", &warm, &format!(r#"{{"ssn":"w{i}"}}"#)).await;
        assert_eq!(status, 200, "{mode:?}");
        let (status, _, body) = send("GET", &warm, &[], "").await;
        assert_eq!(status, 200, "{mode:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["ssn"],
            format!("w{i}")
        );
    }

    // recovery without a restart
    front.set(Mode::Pass);
    let (status, _, body) =
        send_json("POST", &format!("http://{}/c0", a.proxy), r#"{"ssn":"4"}"#).await;
    assert_eq!(status, 200, "{body}");
    let mut a = a;
    let _ = a.child.kill();
    let _ = a.child.wait();
    for l in a.drain_logs() {
        assert!(
            !l.to_string().contains(&kms.secret),
            "secret in a log line: {l}"
        );
    }
}
