//! `sealgate rewrap` while `sealgate serve` holds the key store: the real
//! binaries, the rewrap going through the server's admin socket. Records
//! sealed through the proxy, the key rotated with `sealgate keys rotate`
//! (admin socket), then rewrapped (one document, and `--lines`); the
//! results carry the new version, open through the proxy, and still open
//! once the old version is retired.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

const POLICY: &str = r#"
[[route]]
name = "people"
methods = ["POST"]
path = "/people"
key = "people-key"
context = "people"
request.encrypt = ["$.notes"]
request.deterministic = ["$.email"]
response.decrypt = ["$.notes", "$.email"]

[[route]]
name = "person"
methods = ["GET"]
path = "/people/{id}"
key = "people-key"
context = "people"
response.decrypt = ["$.notes", "$.email"]
"#;

/// `sealgate serve` with POLICY, once both the proxy and the admin socket listen.
fn start_server(upstream: std::net::SocketAddr) -> ServeProcess {
    let s = ServeProcess::start(upstream, POLICY, "");
    s.wait_log("admin socket listening");
    s
}

/// Runs the sealgate binary with `args` and `stdin`.
fn sealgate(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .envs(common::store_env(args))
        .env_remove("RUST_LOG")
        .env_remove("SEALGATE_ROOT_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // written from a thread: a large input must not block on a full pipe
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

async fn sealgate_async(args: Vec<String>, stdin: Vec<u8>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sealgate(&args, &stdin)
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The CMK version of an `sg1.` or `sgd1.` envelope.
fn version(envelope: &Value) -> u32 {
    let t = envelope.as_str().unwrap();
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
}

/// An upstream that echoes POSTs and answers `GET /people/{id}` with what
/// the test put in `stored`.
fn upstream_reply(stored: Arc<Mutex<HashMap<String, String>>>) -> Reply {
    Arc::new(move |s: &Seen| {
        let body = if s.method == "GET" {
            let id = s.uri.rsplit('/').next().unwrap_or_default().to_string();
            Bytes::from(stored.lock().unwrap().get(&id).cloned().unwrap_or_default())
        } else {
            s.body.clone()
        };
        let mut r = hyper::Response::new(Full::new(body));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_through_the_admin_socket_while_the_server_runs() {
    let stored = Arc::new(Mutex::new(HashMap::new()));
    let up = recording_upstream(upstream_reply(stored.clone())).await;
    let server = start_server(up.addr);
    let base = format!("http://{}", server.proxy);
    let data = server.data_dir().display().to_string();

    // two records sealed through the proxy under version 1
    let people = [
        r#"{"email":"a@x.io","n":1,"notes":"secret one"}"#,
        r#"{"email":"b@x.io","n":2,"notes":"secret two"}"#,
    ];
    let mut v1 = Vec::new();
    for p in people {
        let (s, _, b) = send_json("POST", &format!("{base}/people"), p).await;
        assert_eq!(s, 200, "{b}");
        let sealed: Value = serde_json::from_slice(&up.requests().last().unwrap().body).unwrap();
        assert_eq!(
            (version(&sealed["notes"]), version(&sealed["email"])),
            (1, 1)
        );
        v1.push(sealed);
    }

    // rotate through the admin socket (the server holds the store)
    let out = sealgate_async(
        vec![
            "keys".into(),
            "rotate".into(),
            "--data-dir".into(),
            data.clone(),
            "people-key".into(),
        ],
        vec![],
    )
    .await;
    assert!(out.status.success(), "rotate: {}", text(&out.stderr));

    let rewrap = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "rewrap".into(),
            "--data-dir".into(),
            data.clone(),
            "--context".into(),
            "people".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // one document
    let doc = serde_json::to_vec(&v1[0]).unwrap();
    let out = sealgate_async(rewrap(&[]), doc).await;
    assert!(out.status.success(), "rewrap: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("rewrapped 2 envelope(s); 0 already under the primary"),
        "{}",
        text(&out.stderr)
    );
    let one: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one["n"], 1);
    assert_eq!((version(&one["notes"]), version(&one["email"])), (2, 2));
    assert_ne!(one["notes"], v1[0]["notes"]);

    // a rewrapped deterministic value equals what the proxy seals now
    let (s, _, b) = send_json("POST", &format!("{base}/people"), people[0]).await;
    assert_eq!(s, 200, "{b}");
    let fresh: Value = serde_json::from_slice(&up.requests().last().unwrap().body).unwrap();
    assert_eq!(fresh["email"], one["email"]);

    // JSON lines: both records, a blank line between them
    let mut lines = Vec::new();
    for v in &v1 {
        lines.extend(serde_json::to_vec(v).unwrap());
        lines.extend(b"\n\n");
    }
    let out = sealgate_async(rewrap(&["--lines"]), lines).await;
    assert!(
        out.status.success(),
        "rewrap --lines: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("rewrapped 4 envelope(s)"),
        "{}",
        text(&out.stderr)
    );
    let rewrapped: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rewrapped.len(), 2);
    for (i, r) in rewrapped.iter().enumerate() {
        assert_eq!(r["n"], i + 1);
        assert_eq!((version(&r["notes"]), version(&r["email"])), (2, 2));
    }
    assert_eq!(rewrapped[0]["email"], one["email"]);

    // a stream longer than one batch (256 lines): every line comes back, in order
    let mut long = Vec::new();
    for i in 0..600 {
        let mut v = v1[i % 2].clone();
        v["n"] = i.into();
        long.extend(serde_json::to_vec(&v).unwrap());
        long.push(b'\n');
    }
    let out = sealgate_async(rewrap(&["--lines"]), long).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("rewrapped 1200 envelope(s); 0 already"),
        "{}",
        text(&out.stderr)
    );
    let all: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 600);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["n"], i);
        assert_eq!(r["email"], rewrapped[i % 2]["email"]);
        assert_eq!(version(&r["notes"]), 2);
    }

    // a second run finds everything current
    let again = serde_json::to_vec(&rewrapped[1]).unwrap();
    let out = sealgate_async(rewrap(&[]), again).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("rewrapped 0 envelope(s); 2 already under the primary"),
        "{}",
        text(&out.stderr)
    );

    // retire version 1: the originals no longer open, the rewrapped ones do
    let out = sealgate_async(
        vec![
            "keys".into(),
            "set-min-decryption-version".into(),
            "--data-dir".into(),
            data.clone(),
            "people-key".into(),
            "2".into(),
        ],
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    {
        let mut m = stored.lock().unwrap();
        m.insert("old".to_string(), v1[0].to_string());
        m.insert("1".to_string(), rewrapped[0].to_string());
        m.insert("2".to_string(), rewrapped[1].to_string());
    }
    // through the admin socket the server has the change when the command
    // returns; on PostgreSQL it follows within the propagation bound
    wait_for("version 1 to be refused", || async {
        let (s, _, _) = send("GET", &format!("{base}/people/old"), &[], "").await;
        (s == 503).then_some(())
    })
    .await;
    for (i, p) in people.iter().enumerate() {
        let (s, _, b) = send("GET", &format!("{base}/people/{}", i + 1), &[], "").await;
        assert_eq!(s, 200, "{b}");
        let got: Value = serde_json::from_str(&b).unwrap();
        let want: Value = serde_json::from_str(p).unwrap();
        assert_eq!(got, want);
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_rewrap_errors_read_as_the_direct_path_and_exit_1() {
    let up = recording_upstream(echo()).await;
    let server = start_server(up.addr);
    let base = format!("http://{}", server.proxy);
    let data = server.data_dir().display().to_string();
    let (s, _, b) = send_json(
        "POST",
        &format!("{base}/people"),
        r#"{"email":"a@x.io","notes":"secret"}"#,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let sealed: Value = serde_json::from_slice(&up.requests().last().unwrap().body).unwrap();
    let args = |ctx: &str, lines: bool| {
        let mut a: Vec<String> = ["rewrap", "--data-dir", &data, "--context", ctx]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if lines {
            a.push("--lines".into());
        }
        a
    };

    // the wrong context: the direct path's message, naming the path, no value
    let out = sealgate_async(args("other", false), sealed.to_string().into_bytes()).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"error: the envelope at $["email"] does not open (wrong --context, moved, or damaged)"#),
        "{err}"
    );
    assert!(!err.contains("secret") && !err.contains("a@x.io"), "{err}");
    assert!(out.stdout.is_empty());

    // an envelope moved to another field fails mid-stream: exit 1, and the
    // failing line is not written
    let moved = serde_json::json!({ "elsewhere": sealed["notes"] });
    let input = format!("{sealed}\n{moved}\n");
    let out = sealgate_async(args("people", true), input.into_bytes()).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"the envelope at $["elsewhere"] does not open"#),
        "{err}"
    );
    assert!(!text(&out.stdout).contains("elsewhere"));

    // not JSON: the same message as the direct path
    let out = sealgate_async(args("people", false), b"{nope".to_vec()).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("error: input is not JSON"),
        "{}",
        text(&out.stderr)
    );

    // an unknown --key: the store's error
    let mut a = args("people", false);
    a.extend(["--key".to_string(), "no-such-key".to_string()]);
    let out = sealgate_async(a, sealed.to_string().into_bytes()).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"error: the envelope at $["email"]: "#),
        "{err}"
    );

    // a document larger than one admin request: refused before sending (on
    // PostgreSQL the command reads the store itself: no admin socket)
    if !common::on_postgres() {
        let big = format!(
            r#"{{"blob":"{}"}}"#,
            "x".repeat(sealgate::keys::admin::MAX_REQUEST_BYTES)
        );
        let out = sealgate_async(args("people", false), big.into_bytes()).await;
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("larger than the server's admin socket takes")
                && err.contains("stop the server to rewrap it directly"),
            "{err}"
        );
    }

    // the server is still serving after all that
    let (s, _, _) = send_json("POST", &format!("{base}/people"), r#"{"notes":"x"}"#).await;
    assert_eq!(s, 200);
    drop(server);
}
