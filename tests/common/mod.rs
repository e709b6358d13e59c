//! Shared pieces of the end-to-end tests: a recording upstream, json-server,
//! a plain HTTP client, and sealgate started in-process on 127.0.0.1:0.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// What the recording upstream answers: a function of the request.
pub type Reply = Arc<dyn Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync>;

/// A reply that stores the last POSTed body and answers every other request
/// with it (JSON): a one-record upstream.
pub fn last_post_upstream() -> Reply {
    let kept: Arc<Mutex<Bytes>> = Arc::new(Mutex::new(Bytes::new()));
    Arc::new(move |s: &Seen| {
        let body = if s.method == "POST" {
            *kept.lock().unwrap() = s.body.clone();
            s.body.clone()
        } else {
            kept.lock().unwrap().clone()
        };
        let mut r = Response::new(Full::new(body));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
}

/// An in-process hyper upstream that records every request.
pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Starts a recording upstream whose answers come from `reply`.
pub async fn recording_upstream(reply: Reply) -> Recorder {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    let reply = reply.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let s = Seen {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        };
                        let resp = reply(&s);
                        seen.lock().unwrap().push(s);
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Recorder { addr, seen }
}

/// A reply that echoes the request body back as JSON with status 200.
pub fn echo() -> Reply {
    Arc::new(|s: &Seen| {
        let mut r = Response::new(Full::new(s.body.clone()));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
}

/// A reply with a fixed JSON body.
pub fn fixed_json(body: &'static str) -> Reply {
    Arc::new(move |_s: &Seen| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends a request and returns status, headers and body.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, http::HeaderMap, String) {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = client()
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// JSON POST/PUT/… helper.
pub async fn send_json(method: &str, url: &str, body: &str) -> (u16, http::HeaderMap, String) {
    send(method, url, &[("content-type", "application/json")], body).await
}

/// Runs tests/tools/setup.sh once per test binary; returns the tools dir.
pub fn tools_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new("bash")
            .arg(root.join("tests/tools/setup.sh"))
            .output()
            .expect("run tests/tools/setup.sh");
        assert!(
            out.status.success(),
            "tests/tools/setup.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
                .to_string(),
        )
    })
    .clone()
}

/// A running json-server on a JSON file; killed on drop.
pub struct JsonServer {
    pub addr: SocketAddr,
    pub db: PathBuf,
    child: std::process::Child,
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts json-server on a free port with `db` (a JSON file it owns).
///
/// The port is picked by binding and releasing it, so another listener of a
/// parallel test can take it first: then json-server fails to bind and exits,
/// and a new port is tried. Ready means json-server itself answers `/db`.
pub async fn json_server(db: PathBuf) -> JsonServer {
    let bin = tools_dir().join("npm/node_modules/.bin/json-server");
    for _attempt in 0..5 {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new(&bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--quiet",
            ])
            .arg(&db)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start json-server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut server = JsonServer {
            addr,
            db: db.clone(),
            child,
        };
        for _ in 0..200 {
            if server.child.try_wait().ok().flatten().is_some() {
                break; // it exited: most likely the port was taken
            }
            // probe without panicking: until json-server listens, the port
            // may refuse or belong to a short-lived listener of another test
            let probe = Request::get(format!("http://{addr}/db"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if let Ok(r) = client().request(probe).await {
                let powered = r
                    .headers()
                    .get("x-powered-by")
                    .is_some_and(|v| v == "Express");
                if r.status() == 200 && powered && server.child.try_wait().ok().flatten().is_none()
                {
                    return server;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(server);
    }
    panic!("json-server did not start");
}

/// A config for an in-process sealgate: ephemeral ports, the data and
/// policy directories under `dir`.
pub fn test_config(dir: &std::path::Path, upstream: &str) -> sealgate::config::Config {
    sealgate::config::load(
        None,
        &sealgate::config::Overrides {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some(upstream.into()),
            policies: Some(dir.join("policies")),
            data_dir: Some(dir.join("data")),
            store_url: store_url_for(&dir.join("data")),
            ..Default::default()
        },
    )
    .unwrap()
}

/// A sealgate started in-process for the KMS faces' tests.
pub struct KmsFixture {
    /// The running app (KMS listener on 127.0.0.1, no upstream behind the proxy).
    pub app: sealgate::app::App,
    /// Its temporary working directory (policies/ and data/ inside).
    pub dir: PathBuf,
    /// An unrestricted credential's id.
    pub id: String,
    /// Its secret.
    pub secret: String,
}

impl KmsFixture {
    /// The KMS listener's `host:port`.
    pub fn host(&self) -> String {
        self.app.kms_addr.unwrap().to_string()
    }

    /// Shuts the app down (which closes and flushes the audit log of
    /// [`start_audited_kms_fixture`]) and returns its `kms.*` records, after
    /// checking the whole log verifies.
    #[allow(dead_code)]
    pub async fn kms_audit_records(self) -> Vec<serde_json::Value> {
        let path = self.dir.join("audit.jsonl");
        self.app.shutdown().await;
        sealgate::audit::verify_file(&path).unwrap();
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["action"].as_str().is_some_and(|a| a.starts_with("kms.")))
            .collect()
    }

    /// A second credential, optionally limited to some keys: (id, secret).
    pub fn credential(&self, allowed: Option<Vec<String>>) -> (String, String) {
        let c = self.app.store.create_credential(allowed).unwrap();
        (c.id, String::from_utf8(c.secret.expose().to_vec()).unwrap())
    }
}

/// Starts sealgate with a KMS listener, the given quota overrides
/// (the older `[kms_quotas]` names: Tencent action, `alibaba:<class>`,
/// `infisical_<class>_per_minute`) and one unrestricted credential.
pub async fn start_kms_fixture(quotas: &[(&str, u32)]) -> KmsFixture {
    start_kms_fixture_with(quotas, |_| {}).await
}

/// [`start_kms_fixture`] with its audit log written to `<dir>/audit.jsonl`
/// (read it with [`KmsFixture::kms_audit_records`]).
#[allow(dead_code)]
pub async fn start_audited_kms_fixture() -> KmsFixture {
    start_kms_fixture_with(&[], |cfg| {
        let path = cfg.data_dir.parent().unwrap().join("audit.jsonl");
        cfg.audit.sink = Some(sealgate::config::AuditSink::File(path));
    })
    .await
}

async fn start_kms_fixture_with(
    quotas: &[(&str, u32)],
    tweak: impl FnOnce(&mut sealgate::config::Config),
) -> KmsFixture {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let mut cfg = test_config(&dir, "http://127.0.0.1:9");
    cfg.kms_listen = Some("127.0.0.1:0".parse().unwrap());
    for (k, v) in quotas {
        cfg.kms_quotas.set_legacy(k, *v).unwrap();
    }
    tweak(&mut cfg);
    let app = sealgate::app::start(cfg).await.unwrap();
    let c = app.store.create_credential(None).unwrap();
    let secret = String::from_utf8(c.secret.expose().to_vec()).unwrap();
    KmsFixture {
        app,
        dir,
        id: c.id,
        secret,
    }
}

/// A running `sealgate serve` (the real binary) with JSON logs on stderr;
/// killed on drop if still running.
pub struct ServeProcess {
    /// The child process.
    pub child: std::process::Child,
    /// Its JSON log lines, as they come (stderr is drained to the end).
    logs: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Lines read while waiting for another one, kept for later waits.
    backlog: std::cell::RefCell<Vec<serde_json::Value>>,
    /// The proxy's address.
    pub proxy: SocketAddr,
    /// Its working directory: `policies/p.toml`, `data/`, `sealgate.toml`.
    pub dir: PathBuf,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sealgate serve --config` in `dir`: writes `policy` as
/// `policies/p.toml` and the config [`ServeProcess::start`] describes.
fn serve_command(
    dir: &std::path::Path,
    upstream: SocketAddr,
    policy: &str,
    extra: &str,
) -> std::process::Command {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.toml"), policy).unwrap();
    // on PostgreSQL ([`on_postgres`]) unless the test names a store itself
    let store = match store_url_for(&dir.join("data")) {
        Some(url) if !extra.contains("[store]") => format!("[store]\nurl = \"{url}\"\n"),
        _ => String::new(),
    };
    let config = format!(
        r#"
listen = "127.0.0.1:0"
upstream = "http://{upstream}"
policies = "{policies}"
data_dir = "{data}"
[reload]
watch = false
[log]
level = "info"
format = "json"
{store}{extra}
"#,
        policies = dir.join("policies").display(),
        data = dir.join("data").display(),
        extra = extra.replace("{dir}", &dir.display().to_string()),
    );
    std::fs::write(dir.join("sealgate.toml"), config).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"));
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("sealgate.toml"))
        .env_remove("RUST_LOG")
        .env_remove("SEALGATE_DATA_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    cmd
}

impl ServeProcess {
    /// Writes `policy` as `policies/p.toml` and a config (listen on
    /// 127.0.0.1:0, `upstream`, no file watching, JSON logs at info) with
    /// `extra` TOML tables appended (`{dir}` in it stands for the working
    /// directory), starts `sealgate serve --config`, and
    /// waits (bounded) until the proxy listens.
    pub fn start(upstream: SocketAddr, policy: &str, extra: &str) -> ServeProcess {
        let dir = tempfile::tempdir().unwrap().keep();
        Self::start_in(dir, upstream, policy, extra)
    }

    /// [`start`](Self::start) in a working directory the caller prepared
    /// (e.g. a key store already in `data/`).
    pub fn start_in(dir: PathBuf, upstream: SocketAddr, policy: &str, extra: &str) -> ServeProcess {
        Self::start_with_flags(dir, upstream, policy, extra, &[])
    }

    /// [`start_in`](Self::start_in) with command-line `flags` after the
    /// config (for settings only a flag or a top-level key sets, e.g.
    /// `--kms-listen 127.0.0.1:0`).
    pub fn start_with_flags(
        dir: PathBuf,
        upstream: SocketAddr,
        policy: &str,
        extra: &str,
        flags: &[&str],
    ) -> ServeProcess {
        use std::io::BufRead;
        let mut child = serve_command(&dir, upstream, policy, extra)
            .args(flags)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        // drained to the end: a closed pipe would fail the server's logging
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut s = ServeProcess {
            child,
            logs,
            backlog: Default::default(),
            proxy: "127.0.0.1:1".parse().unwrap(),
            dir,
        };
        let ready = s.wait_log("sealgate proxy listening");
        s.proxy = ready["fields"]["listen"].as_str().unwrap().parse().unwrap();
        s
    }

    /// Runs `sealgate serve` as [`start_in`](Self::start_in) would, expecting
    /// it to refuse to start: waits (bounded) for it to exit and returns its
    /// exit status and standard error. Panics if it is still running.
    pub fn start_fails(
        dir: &std::path::Path,
        upstream: SocketAddr,
        policy: &str,
        extra: &str,
    ) -> (std::process::ExitStatus, String) {
        let mut child = serve_command(dir, upstream, policy, extra)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT_BOUND;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sealgate serve did not exit: it started");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }

    /// Waits (bounded, 60 s) for a log line whose message is `message`;
    /// lines seen earlier while waiting for others count too.
    pub fn wait_log(&self, message: &str) -> serde_json::Value {
        let mut backlog = self.backlog.borrow_mut();
        if let Some(i) = backlog
            .iter()
            .position(|v| v["fields"]["message"] == message)
        {
            return backlog.remove(i);
        }
        loop {
            match self.logs.recv_timeout(std::time::Duration::from_secs(60)) {
                Ok(v) if v["fields"]["message"] == message => return v,
                Ok(v) => backlog.push(v),
                Err(e) => panic!("no log line {message:?}: {e}"),
            }
        }
    }

    /// Every log line not yet taken by [`wait_log`](Self::wait_log), up to
    /// the end of the log (call after the process ended; bounded wait).
    pub fn drain_logs(&self) -> Vec<serde_json::Value> {
        let mut out: Vec<_> = self.backlog.borrow_mut().drain(..).collect();
        while let Ok(v) = self.logs.recv_timeout(std::time::Duration::from_secs(60)) {
            out.push(v);
        }
        out
    }

    /// Sends a signal (`HUP`, `TERM`, …) with `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// The data directory (key store, admin socket).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The policy file.
    pub fn policy_file(&self) -> PathBuf {
        self.dir.join("policies/p.toml")
    }
}

/// Runs tests/sdk/setup.sh once per test binary (the pinned official SDKs in
/// a venv under target/); returns the venv's python.
pub fn sdk_python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new("bash")
            .arg(root.join("tests/sdk/setup.sh"))
            .output()
            .expect("run tests/sdk/setup.sh");
        assert!(
            out.status.success(),
            "tests/sdk/setup.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.trim().lines().last().unwrap_or("").trim())
    })
    .clone()
}

/// How long [`wait_for`] waits: generous, so a loaded machine is slow, not failing.
pub const WAIT_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls `probe` (every 10 ms) until it yields `Some`, at most [`WAIT_BOUND`];
/// panics naming `what` instead of hanging. The one "wait until" of the tests.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT_BOUND;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {WAIT_BOUND:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// [`wait_for`] a plain condition another task or process makes true.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, || std::future::ready(cond().then_some(()))).await
}

/// Waits (bounded, as [`wait_for`]) until json-server's database file at
/// `path` parses and shows `ready`; returns its text and value.
pub async fn db_json(
    path: &std::path::Path,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> (String, serde_json::Value) {
    wait_for("json-server to write the expected state", || {
        let got = std::fs::read_to_string(path).ok().and_then(|text| {
            let v = serde_json::from_str::<serde_json::Value>(&text).ok()?;
            ready(&v).then_some((text, v))
        });
        std::future::ready(got)
    })
    .await
}

/// Runs tests/sdk/setup-node.sh once per test binary (the pinned official
/// Node SDKs under target/); returns the directory holding their node_modules.
pub fn sdk_node_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new("bash")
            .arg(root.join("tests/sdk/setup-node.sh"))
            .output()
            .expect("run tests/sdk/setup-node.sh");
        assert!(
            out.status.success(),
            "tests/sdk/setup-node.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.trim().lines().last().unwrap_or("").trim())
    })
    .clone()
}

/// Makes a dkms-gcs client key with openssl as docs/kms-alibaba.md shows;
/// returns (client key JSON file, public key PEM file).
pub fn make_client_key(dir: &std::path::Path, id: &str, password: &str) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["genrsa", "-out", "client.key", "2048"]);
    run(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "client.key",
        "-subj",
        "/CN=sealgate-test-client",
        "-days",
        "3650",
        "-out",
        "client.crt",
    ]);
    let pass = format!("pass:{password}");
    run(&[
        "pkcs12",
        "-export",
        "-inkey",
        "client.key",
        "-in",
        "client.crt",
        "-passout",
        &pass,
        "-out",
        "client.p12",
    ]);
    run(&[
        "pkey",
        "-in",
        "client.key",
        "-pubout",
        "-out",
        "client_pub.pem",
    ]);
    let p12 = std::fs::read(dir.join("client.p12")).unwrap();
    let json = serde_json::json!({"KeyId": id, "PrivateKeyData": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, p12)});
    let key_file = dir.join("clientKey.json");
    std::fs::write(&key_file, json.to_string()).unwrap();
    (key_file, dir.join("client_pub.pem"))
}

/// The shared Redis the fleet tests use (`SEALGATE_TEST_REDIS_URL`, default
/// `redis://127.0.0.1:6379`), or `None` after printing a "skipped" line when
/// it does not answer — unless `SEALGATE_REQUIRE_SERVICES=1` (CI), which
/// makes a missing Redis fail the test.
#[allow(dead_code)]
pub fn redis_url() -> Option<String> {
    let url = std::env::var("SEALGATE_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
    let reachable = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok();
    if reachable {
        return Some(url);
    }
    if std::env::var("SEALGATE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("Redis at {url} is required (SEALGATE_REQUIRE_SERVICES=1) and does not answer");
    }
    eprintln!("skipped: set SEALGATE_TEST_REDIS_URL to a reachable Redis ({url} did not answer)");
    None
}

// ---- the suites on PostgreSQL ----

/// `SEALGATE_TEST_STORE=postgres` runs the suites that start sealgate
/// through these helpers ([`test_config`], [`start_kms_fixture`],
/// [`ServeProcess`], [`open_store`], [`store_env`]) on the PostgreSQL key
/// store instead of the embedded one: each store a fresh schema in
/// `SEALGATE_TEST_POSTGRES_URL`'s database (default
/// `postgres://postgres@127.0.0.1:5432/test`).
pub const TEST_STORE_ENV: &str = "SEALGATE_TEST_STORE";

/// Whether the suites run on PostgreSQL ([`TEST_STORE_ENV`]).
pub fn on_postgres() -> bool {
    match std::env::var(TEST_STORE_ENV).as_deref() {
        Ok("postgres") => true,
        Ok("") | Ok("embedded") | Err(_) => false,
        Ok(other) => panic!("{TEST_STORE_ENV}={other}: expected postgres or embedded"),
    }
}

/// The stores made for data directories: data dir → URL.
fn store_urls() -> &'static Mutex<std::collections::HashMap<PathBuf, String>> {
    static URLS: OnceLock<Mutex<std::collections::HashMap<PathBuf, String>>> = OnceLock::new();
    URLS.get_or_init(Default::default)
}

/// Runs `f` with a client of the test database on a thread of its own
/// (the synchronous client must not run inside a tokio runtime).
fn with_test_db<R: Send + 'static>(
    f: impl FnOnce(&mut postgres::Client) -> R + Send + 'static,
) -> R {
    let base = std::env::var("SEALGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&base, postgres::NoTls).unwrap_or_else(|e| {
            panic!("{TEST_STORE_ENV}=postgres needs PostgreSQL at {base}: {e}")
        });
        f(&mut c)
    })
    .join()
    .unwrap()
}

/// The PostgreSQL store of `data_dir` when [`on_postgres`]: made (a fresh
/// schema) on first ask, the same URL after. Schemas are named after the
/// test process; those of test processes that have ended are dropped when
/// the first one is made.
pub fn store_url_for(data_dir: &std::path::Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let mut urls = store_urls().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(u) = urls.get(data_dir) {
        return Some(u.clone());
    }
    let pid = std::process::id();
    let schema = format!("sg_suite_{pid}_{}", uuid::Uuid::new_v4().simple());
    let first = urls.is_empty();
    let create = format!("CREATE SCHEMA {schema}");
    with_test_db(move |c| {
        if first {
            let stale: Vec<String> = c
                .query(
                    "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'sg\\_suite\\_%'",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .filter(|s| {
                    s.split('_')
                        .nth(2)
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|p| {
                            p != pid && !std::path::Path::new(&format!("/proc/{p}")).exists()
                        })
                })
                .collect();
            for s in stale {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"));
            }
        }
        c.batch_execute(&create).unwrap();
    });
    let base = std::env::var("SEALGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    urls.insert(data_dir.to_path_buf(), url.clone());
    Some(url)
}

/// The environment a `sealgate` command needs to reach the store of the
/// data directory named in `args` (after `--data-dir`): on PostgreSQL,
/// `SEALGATE_STORE_URL` ([`store_url_for`] that directory); nothing on the
/// embedded store.
pub fn store_env<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<(String, String)> {
    let dir = args
        .iter()
        .map(|a| a.as_ref())
        .skip_while(|a| *a != "--data-dir")
        .nth(1);
    dir.and_then(|d| store_url_for(std::path::Path::new(d)))
        .map(|u| vec![("SEALGATE_STORE_URL".to_string(), u)])
        .unwrap_or_default()
}

/// [`store_env`] for a data directory.
pub fn store_env_of(data_dir: &std::path::Path) -> Vec<(String, String)> {
    store_env(&[std::ffi::OsStr::new("--data-dir"), data_dir.as_os_str()])
}

/// Opens the key store of `dir` as the suites run it: embedded, or on
/// PostgreSQL ([`on_postgres`]; the same store each time for one `dir`).
pub fn open_store(
    dir: &std::path::Path,
    root: sealgate::keys::RootKeySource,
    options: sealgate::keys::StoreOptions,
) -> Result<sealgate::keys::KeyStore, sealgate::keys::StoreError> {
    match store_url_for(dir) {
        Some(url) => sealgate::keys::KeyStore::open_postgres(&url, dir, root, options),
        None => sealgate::keys::KeyStore::open(dir, root, options),
    }
}

/// The headers of a Tencent API 3.0 POST of `body` as `action`, signed with
/// TC3-HMAC-SHA256 at `timestamp` (Authorization last), to send as they are
/// or altered.
pub fn tc3_signed_headers(
    host: &str,
    id: &str,
    secret: &str,
    action: &str,
    timestamp: i64,
    body: &str,
) -> Vec<(String, String)> {
    use sealgate::kms::tencent::sign::{tc3_authorization, RequestParts};
    let ts = timestamp.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("host", host),
        ("x-tc-action", action),
        ("x-tc-version", "2019-01-18"),
        ("x-tc-region", "ap-guangzhou"),
        ("x-tc-timestamp", ts.as_str()),
    ];
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let auth = tc3_authorization(
        id,
        secret.as_bytes(),
        "kms",
        timestamp,
        &parts,
        &["content-type", "host"],
    )
    .unwrap();
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    out.push(("authorization".into(), auth));
    out
}

/// [`send`] with owned header pairs.
pub async fn send_owned_headers(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, http::HeaderMap, String) {
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    send(method, url, &refs, body).await
}
