//! `[provider] kind = "tencent"` end to end: the "cloud" is a second
//! sealgate serving its Tencent KMS face on loopback (in-process, with a
//! key and a credential made in its store), fronted by a tiny hyper server
//! that passes calls through or injects faults on command (500, 429,
//! `RequestLimitExceeded`, no answer) and counts what it sees. The provider
//! nodes are the real `sealgate serve` binary with fresh data directories.

mod common;
#[path = "common/fault_front.rs"]
mod fault_front;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use common::*;
use fault_front::{front, Mode};
use serde_json::Value;

/// A policy sealing `$.ssn` on POST /t/{tenant} (the context names the
/// tenant: per record, yet one data key for the route) and opening it on
/// GET; and routes POST /c{i} with contexts of their own (each needs a data
/// key of its own: a cold cache entry).
fn policy(key: &str) -> String {
    let mut p = format!(
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
    );
    for i in 0..12 {
        p.push_str(&format!(
            r#"
[[route]]
name = "cold{i}"
methods = ["POST"]
path = "/c{i}"
key = "{key}"
context = "c{i}"
request.encrypt = ["$.ssn"]
"#
        ));
    }
    p
}

/// The `[provider]` table; the
/// credential is read from env vars named per test.
fn provider_toml(endpoint: SocketAddr, env: &str, extra: &str) -> String {
    format!(
        r#"
[provider]
kind = "tencent"
endpoint = "http://{endpoint}"
region = "ap-guangzhou"
secret_id_env = "{env}_ID"
secret_key_env = "{env}_KEY"
{extra}
"#
    )
}

struct Cloud {
    kms: KmsFixture,
    key_id: String,
}

async fn cloud(env: &str) -> Cloud {
    let kms = start_kms_fixture(&[]).await;
    let key = kms
        .app
        .store
        .create(sealgate::keys::CreateKeyRequest {
            alias: Some("people".into()),
            ..Default::default()
        })
        .unwrap();
    // the provider nodes inherit these (names unique per test)
    std::env::set_var(format!("{env}_ID"), &kms.id);
    std::env::set_var(format!("{env}_KEY"), &kms.secret);
    Cloud {
        key_id: key.key_id.to_string(),
        kms,
    }
}

/// Starts a provider node in a fresh directory; returns it and its admin address.
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

async fn metric(admin: SocketAddr, line_prefix: &str) -> u64 {
    let (_, _, body) = send("GET", &format!("http://{admin}/metrics"), &[], "").await;
    body.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ssn_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["ssn"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_node_seals_with_remote_data_keys_and_a_fresh_node_opens_them() {
    let env = "SG_TEST_TC_E2E";
    let cloud = cloud(env).await;
    let front = front(cloud.kms.app.kms_addr.unwrap()).await;
    let upstream = recording_upstream(last_post_upstream()).await;
    let config = provider_toml(front.addr, env, "");
    // the route names the remote key by its KeyId
    let policy = self::policy(&cloud.key_id);
    let (a, admin) = node(upstream.addr, &policy, &config);
    // start-up checked the key with DescribeKey, and made nothing
    assert_eq!(front.count("DescribeKey"), 1);
    assert_eq!(front.count("CreateKey"), 0);
    // nor anything local: no root key, no key store, no data directory
    assert_only_config_files(&a);

    let url = |n: &ServeProcess| format!("http://{}/t/acme", n.proxy);
    let (status, _, body) = send_json("POST", &url(&a), r#"{"ssn":"123-45-6789","n":1}"#).await;
    assert_eq!(status, 200, "{body}");
    let stored = upstream.requests().last().unwrap().body.clone();
    let sealed = ssn_of(&stored);
    assert!(sealed.starts_with("sg2."), "{sealed}");
    // the size docs/envelope.md states: flags, the key id, the route's
    // canonical context template `t:{}` with its length, 1-byte length,
    // the face's 81-byte CiphertextBlob of a 32-byte key, nonce, 11 bytes,
    // tag
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&sealed[4..])
        .unwrap();
    assert_eq!(raw.len(), 1 + 16 + 1 + 4 + 1 + 81 + 12 + 11 + 16);
    assert_eq!(&raw[1..17], uuid_bytes(&cloud.key_id));
    assert_eq!(&raw[18..22], b"t:{}");
    // the cloud bound the data key to that template and sealgate's marker:
    // its Decrypt without them fails
    let blob = &raw[23..23 + 81];
    let store = &cloud.kms.app.store;
    assert!(store
        .decrypt(blob, br#"{"context":"t:{}","sealgate":"field-dek"}"#)
        .is_ok());
    assert!(store.decrypt(blob, br#"{"sealgate":"field-dek"}"#).is_err());
    assert!(store
        .decrypt(blob, br#"{"context":"t:acme","sealgate":"field-dek"}"#)
        .is_err());
    assert!(!String::from_utf8_lossy(&stored).contains("123-45-6789"));
    assert_eq!(front.count("GenerateDataKey"), 1);

    // another tenant (another rendered context, bound in the AAD) shares
    // the route's data key: no remote call per record
    let other = format!("http://{}/t/globex", a.proxy);
    let (status, _, _) = send_json("POST", &other, r#"{"ssn":"555-55-5555"}"#).await;
    assert_eq!(status, 200);
    let (status, _, body) = send("GET", &other, &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["ssn"],
        "555-55-5555"
    );
    assert_eq!(front.count("GenerateDataKey"), 1);

    // warm: more requests, no remote call at all
    for i in 0..20 {
        let (status, _, _) =
            send_json("POST", &url(&a), &format!(r#"{{"ssn":"000-00-{i:04}"}}"#)).await;
        assert_eq!(status, 200);
        let (status, _, body) = send("GET", &url(&a), &[], "").await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["ssn"],
            format!("000-00-{i:04}")
        );
    }
    assert_eq!(front.count("GenerateDataKey"), 1);
    assert_eq!(front.count("Decrypt"), 0, "the DEK made here opens here");
    assert_eq!(
        metric(
            admin,
            r#"sealgate_provider_calls_total{action="GenerateDataKey",outcome="ok"}"#
        )
        .await,
        1
    );

    // a reload checks the new set's keys with the provider, creates none
    let missing = "00000000-0000-4000-8000-0000000000aa";
    let extra = format!(
        "{policy}\n[[route]]\nname = \"extra\"\nmethods = [\"POST\"]\npath = \"/extra\"\nkey = \"{missing}\"\nrequest.encrypt = [\"$.ssn\"]\n"
    );
    std::fs::write(a.policy_file(), extra).unwrap();
    a.signal("HUP");
    let refused = a.wait_log("policy reload refused; the running policies stay in force");
    assert!(refused.to_string().contains(missing), "{refused}");
    std::fs::write(a.policy_file(), &policy).unwrap();
    a.signal("HUP");
    let reloaded = a.wait_log("policies reloaded");
    assert_eq!(reloaded["fields"]["created_keys"], 0);
    assert_eq!(front.count("CreateKey"), 0);

    // a fresh node (new data dir, no root key of the cloud, no key store
    // of its own in use) opens what the first sealed: one remote Decrypt
    send_json("POST", &url(&a), r#"{"ssn":"987-65-4321"}"#).await;
    let (b, _) = node(upstream.addr, &policy, &config);
    for _ in 0..3 {
        let (status, _, body) = send("GET", &url(&b), &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["ssn"],
            "987-65-4321"
        );
    }
    assert_eq!(front.count("Decrypt"), 1);
    assert_only_config_files(&a);
    assert_only_config_files(&b);

    // the SecretKey is in no log line of either node, nor in /metrics
    let (_, _, metrics) = send("GET", &format!("http://{admin}/metrics"), &[], "").await;
    assert!(!metrics.contains(&cloud.kms.secret));
    for n in [a, b] {
        drop_and_check_logs(n, &cloud.kms.secret, &cloud.kms.id);
    }
}

fn uuid_bytes(id: &str) -> [u8; 16] {
    *uuid::Uuid::parse_str(id).unwrap().as_bytes()
}

/// A provider node holds no root key and no CMK: its working directory
/// holds what the test wrote (policies, config) and nothing else.
fn assert_only_config_files(n: &ServeProcess) {
    let mut names: Vec<String> = std::fs::read_dir(&n.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["policies", "sealgate.toml"], "{:?}", n.dir);
    assert!(!n.data_dir().exists());
}

/// Stops a node and checks that no log line holds `secret`, and that the
/// SecretId `id` appears in the start-up line only.
fn drop_and_check_logs(mut n: ServeProcess, secret: &str, id: &str) {
    let _ = n.child.kill();
    let _ = n.child.wait();
    let lines = n.drain_logs();
    assert!(!lines.is_empty());
    for l in &lines {
        let text = l.to_string();
        assert!(!text.contains(secret), "secret in a log line: {text}");
        if text.contains(id) {
            assert_eq!(
                l["fields"]["message"],
                "CMKs are held by a remote KMS; this node caches its data keys",
                "{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_provider_lacks_stops_start_up() {
    let env = "SG_TEST_TC_MISSING";
    let cloud = cloud(env).await;
    let upstream = recording_upstream(last_post_upstream()).await;
    let dir = tempfile::tempdir().unwrap().keep();
    // the refusal is the KMS's final answer, not a timeout: a loaded machine
    // may take longer than the default 1 s per call (2 s in all) to get it,
    // and an unanswered DescribeKey names the KMS but not the key
    let config = provider_toml(
        cloud.kms.app.kms_addr.unwrap(),
        env,
        "retry_budget_ms = 30000\ncall_timeout_ms = 30000",
    );
    let missing = "00000000-0000-4000-8000-000000000000";
    let (status, err) = ServeProcess::start_fails(&dir, upstream.addr, &policy(missing), &config);
    assert!(!status.success());
    assert!(err.contains(missing), "{err}");
    assert!(err.contains("tencent KMS"), "{err}");
    assert!(!err.contains(&cloud.kms.secret));
    // the admin commands have no store to open for a provider config, and
    // create none: `rewrap` and `keys` refuse, naming the KMS
    let config_file = dir.join("sealgate.toml");
    for args in [&["rewrap", "--context", "t"][..], &["keys", "list"][..]] {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(args)
            .arg("--config")
            .arg(&config_file)
            .env_remove("SEALGATE_DATA_DIR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // the command refuses before it reads its input, and may have
        // exited already (a loaded machine runs it before this write):
        // then the pipe is closed, and that is not the test's concern
        let written = child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"ssn":"sg2.AAAA"}"#);
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{args:?}: {e}");
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("tencent KMS") && err.contains("keep no key store"),
            "{args:?}: {err}"
        );
    }
    assert!(!dir.join("data").exists());
    // and no region is a config error
    let no_region = config.replace("region = \"ap-guangzhou\"\n", "");
    let (status, err) =
        ServeProcess::start_fails(&dir, upstream.addr, &policy(&cloud.key_id), &no_region);
    assert!(!status.success());
    assert!(err.contains("provider.region"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_then_answered_503_and_cached_keys_keep_serving() {
    let env = "SG_TEST_TC_FAULTS";
    let cloud = cloud(env).await;
    let front = front(cloud.kms.app.kms_addr.unwrap()).await;
    let upstream = recording_upstream(last_post_upstream()).await;
    let config = provider_toml(
        front.addr,
        env,
        "retry_budget_ms = 600\ncall_timeout_ms = 150",
    );
    let (a, admin) = node(upstream.addr, &policy(&cloud.key_id), &config);
    let url = |tenant: &str| format!("http://{}/t/{tenant}", a.proxy);
    let (status, _, _) = send_json("POST", &url("warm"), r#"{"ssn":"1"}"#).await;
    assert_eq!(status, 200);

    for (i, (mode, outcome)) in [
        (Mode::Status(500), "server_error"),
        (Mode::Status(429), "throttled"),
        (
            Mode::Answer(
                200,
                r#"{"Response":{"Error":{"Code":"RequestLimitExceeded","Message":"slow down"},"RequestId":"x"}}"#,
            ),
            "throttled",
        ),
        (Mode::Hang, "timeout"),
    ]
    .into_iter()
    .enumerate()
    {
        front.set(mode);
        let before = front.total();
        // a route with no data key yet: needs the remote
        let cold = format!("http://{}/c{i}", a.proxy);
        let (status, _, body) = send_json("POST", &cold, r#"{"ssn":"2"}"#).await;
        assert_eq!(status, 503, "{mode:?}: {body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["error"]["code"], "key_unavailable", "{body}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains("tencent KMS at http://"), "{msg}");
        assert!(!body.contains(&cloud.kms.secret));
        // retried: more than one attempt reached the front
        assert!(
            front.total() - before >= 2,
            "{mode:?} was not retried"
        );
        assert!(
            metric(
                admin,
                &format!(
                    r#"sealgate_provider_calls_total{{action="GenerateDataKey",outcome="{outcome}"}}"#
                )
            )
            .await
                >= 2
        );
        // the warm tenant keeps sealing and opening from the cache
        let (status, _, _) = send_json("POST", &url("warm"), r#"{"ssn":"3"}"#).await;
        assert_eq!(status, 200, "{mode:?}");
        let (status, _, body) = send("GET", &url("warm"), &[], "").await;
        assert_eq!(status, 200, "{mode:?}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ssn"], "3");
    }

    // recovery without a restart
    front.set(Mode::Pass);
    let (status, _, body) =
        send_json("POST", &format!("http://{}/c0", a.proxy), r#"{"ssn":"4"}"#).await;
    assert_eq!(status, 200, "{body}");
    drop_and_check_logs(a, &cloud.kms.secret, &cloud.kms.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_coalesce_and_a_storm_is_bounded() {
    let env = "SG_TEST_TC_STORM";
    let cloud = cloud(env).await;
    let front = front(cloud.kms.app.kms_addr.unwrap()).await;
    let upstream = recording_upstream(last_post_upstream()).await;
    let config = provider_toml(
        front.addr,
        env,
        "max_concurrent_calls = 2\nretry_budget_ms = 30000\ncall_timeout_ms = 30000",
    );
    let (a, admin) = node(upstream.addr, &policy(&cloud.key_id), &config);
    let proxy = a.proxy;

    // 8 requests needing one new data key while the remote holds the first call
    front.set(Mode::Gate);
    let same: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                send_json(
                    "POST",
                    &format!("http://{proxy}/c0"),
                    &format!(r#"{{"ssn":"{i}"}}"#),
                )
                .await
            })
        })
        .collect();
    wait_until("the first GenerateDataKey reaches the remote", || {
        front.count("GenerateDataKey") == 1
    })
    .await;
    front.release(1);
    for h in same {
        assert_eq!(h.await.unwrap().0, 200);
    }
    assert_eq!(
        front.count("GenerateDataKey"),
        1,
        "one remote call for all 8"
    );
    let blobs: std::collections::HashSet<String> = upstream
        .requests()
        .iter()
        .map(|r| ssn_of(&r.body)[..60].to_string())
        .collect();
    assert_eq!(blobs.len(), 1, "all sealed under the one data key");
    assert_eq!(
        metric(admin, "sealgate_provider_coalesced_total").await
            + metric(admin, "sealgate_dek_cache_hits_total").await,
        7
    );

    // 8 new data keys at once: at most 2 calls in flight at the remote
    let storm: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                send_json(
                    "POST",
                    &format!("http://{proxy}/c{}", i + 1),
                    r#"{"ssn":"x"}"#,
                )
                .await
            })
        })
        .collect();
    wait_until("two calls reach the remote", || {
        front.count("GenerateDataKey") == 3
    })
    .await;
    front.release(8);
    for h in storm {
        assert_eq!(h.await.unwrap().0, 200);
    }
    assert_eq!(front.count("GenerateDataKey"), 9);
    assert!(front.max_in_flight.load(Ordering::SeqCst) <= 2);
}

/// An `sg2.` envelope names its remote key: a route opens only those of
/// its own key and its `open_keys` (refused before any remote call), and
/// the audit log records the remote key of every sealed and opened batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_keys_scope_sg2_envelopes_and_audit_names_the_remote_key() {
    let env = "SG_TEST_TC_SCOPE";
    let cloud = cloud(env).await;
    let other = cloud
        .kms
        .app
        .store
        .create(sealgate::keys::CreateKeyRequest::default())
        .unwrap()
        .key_id
        .to_string();
    let front = front(cloud.kms.app.kms_addr.unwrap()).await;
    let upstream = recording_upstream(last_post_upstream()).await;
    // "people" by its alias on the sealing route, by KeyId on the others:
    // both name one remote key
    let x = &cloud.key_id;
    let policy = format!(
        r#"
[[route]]
name = "seal-x"
methods = ["POST"]
path = "/x/{{tenant}}"
key = "people"
context = "t:{{tenant}}"
request.encrypt = ["$.ssn"]

[[route]]
name = "seal-y"
methods = ["POST"]
path = "/y/{{tenant}}"
key = "{other}"
context = "t:{{tenant}}"
request.encrypt = ["$.ssn"]

[[route]]
name = "read-x"
methods = ["GET"]
path = "/x/{{tenant}}"
key = "{x}"
context = "t:{{tenant}}"
response.decrypt = ["$.ssn"]

[[route]]
name = "read-both"
methods = ["GET"]
path = "/both/{{tenant}}"
key = "{x}"
open_keys = ["{other}"]
context = "t:{{tenant}}"
response.decrypt = ["$.ssn"]
"#
    );
    let audit = "[audit]\nfile = \"{dir}/audit.log\"\n";
    let config = format!("{}{audit}", provider_toml(front.addr, env, ""));
    let (a, _) = node(upstream.addr, &policy, &config);

    // sealed under X (named by alias): read-x opens it
    let (status, _, body) = send_json(
        "POST",
        &format!("http://{}/x/acme", a.proxy),
        r#"{"ssn":"x-1"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send("GET", &format!("http://{}/x/acme", a.proxy), &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ssn"], "x-1");

    // sealed under Y: a fresh node's read-x refuses it without a Decrypt;
    // read-both (open_keys = [Y]) opens it
    let (status, _, body) = send_json(
        "POST",
        &format!("http://{}/y/acme", a.proxy),
        r#"{"ssn":"y-1"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (b, _) = node(upstream.addr, &policy, &config);
    let decrypts = front.count("Decrypt");
    let (status, _, body) = send("GET", &format!("http://{}/x/acme", b.proxy), &[], "").await;
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("foreign_key"), "{body}");
    assert!(!body.contains("y-1"), "{body}");
    assert_eq!(
        front.count("Decrypt"),
        decrypts,
        "refused before the remote"
    );
    let (status, _, body) = send("GET", &format!("http://{}/both/acme", b.proxy), &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ssn"], "y-1");
    assert_eq!(front.count("Decrypt"), decrypts + 1);

    // the audit logs name the remote keys (never key id 0)
    let records = |n: ServeProcess| {
        let path = n.dir.join("audit.log");
        n.signal("TERM");
        let mut n = n;
        let _ = n.child.wait();
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let keyed = |recs: &[Value], action: &str| -> Vec<String> {
        recs.iter()
            .filter(|r| r["action"] == action && r["result"] == "ok")
            .map(|r| r["key_id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let ra = records(a);
    assert_eq!(keyed(&ra, "seal_fields"), [x.clone(), other.clone()]);
    assert_eq!(keyed(&ra, "open_fields"), std::slice::from_ref(x));
    let rb = records(b);
    assert_eq!(keyed(&rb, "open_fields"), std::slice::from_ref(&other));
    // the refusal is audited too
    assert!(
        rb.iter()
            .any(|r| r["action"] == "open_fields" && r["result"] != "ok"),
        "{rb:?}"
    );
    assert!(!ra
        .iter()
        .chain(&rb)
        .any(|r| r["key_id"] == "00000000-0000-0000-0000-000000000000"));
}
