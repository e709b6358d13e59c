//! The PostgreSQL key store when PostgreSQL fails: a private PostgreSQL
//! (initdb in a temporary directory, on a free port) that the tests kill
//! with SIGKILL and start again, under real `sealgate serve` processes.
//!
//! - With PostgreSQL killed, a node keeps sealing and opening with what it
//!   has loaded; a KMS call that must write (CreateKey in each dialect) and
//!   a cold miss (a key version or key another node made that this node has
//!   not loaded) fail within 2 s, measured from sending the request to the
//!   answer, in each API's internal-error shape (Tencent `InternalError`,
//!   Alibaba `InternalFailure`, Infisical 500 `InternalServerError`, the
//!   proxy's 503 `key_unavailable`). When PostgreSQL returns on the same
//!   data directory and port, the same calls succeed without a restart.
//! - A SIGKILL loop: clients create keys and versions through the Alibaba
//!   face while PostgreSQL is killed and restarted; afterwards a fresh node
//!   finds every key and version whose creation was acknowledged.
//!
//! Needs PostgreSQL's server binaries (`initdb` on the PATH or under
//! `/usr/lib/postgresql/*/bin`; as root they run as the `postgres` user).
//! Without them each test prints a `skipped:` line and passes, unless
//! `SEALGATE_REQUIRE_SERVICES=1` (CI), which makes it fail.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealgate::keys::{CreateKeyRequest, KeyStore, RootKeySource, StoreOptions};
use sealgate::kms::alibaba::sign as ali_sign;
use sealgate::secret::RootKey;
use serde_json::{json, Value};

/// The bound the issue states for a write or a cold miss while PostgreSQL
/// is down, from sending the request to its answer.
const FAIL_BOUND: Duration = Duration::from_secs(2);

fn root() -> RootKey {
    RootKey::from_bytes([0x5a; 32])
}

// ---- a private PostgreSQL ----

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn pg_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("initdb"))
            .find(|f| f.is_file())
    });
    let initdb = on_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin/initdb"))
            .filter(|f| f.is_file())
            .collect();
        found.sort_by_key(|p| {
            p.components()
                .nth(4)
                .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        found.pop()
    })?;
    // /usr/local/bin/initdb may be a link into the version's bin directory
    let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
    let dir = initdb.parent()?.to_path_buf();
    (dir.join("pg_ctl").is_file() && dir.join("postgres").is_file()).then_some(dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `id -u/-g postgres`.
fn postgres_ids() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, "postgres"]).output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().parse().ok())?
    };
    Some((id("-u")?, id("-g")?))
}

fn skip_or_fail(why: &str) {
    if std::env::var("SEALGATE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("a private PostgreSQL is required (SEALGATE_REQUIRE_SERVICES=1): {why}");
    }
    eprintln!("skipped: {why}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL cluster of its own in a temporary directory, listening on
/// 127.0.0.1 on a free port; stopped and removed on drop (panics included).
struct PrivatePg {
    /// The temporary directory (`pg/data`, `pg/log`, the socket in `pg`).
    tmp: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePg {
    /// initdb and start; `None` (after printing why) when PostgreSQL's
    /// server binaries are missing and not required.
    fn start() -> Option<PrivatePg> {
        let Some(bin) = pg_bin() else {
            skip_or_fail("no initdb on the PATH or under /usr/lib/postgresql/*/bin");
            return None;
        };
        let as_postgres = is_root();
        let tmp = tempfile::Builder::new()
            .prefix("sealgate-pg-")
            .tempdir()
            .unwrap();
        let pg = tmp.path().join("pg");
        std::fs::create_dir(&pg).unwrap();
        if as_postgres {
            // initdb and postgres refuse to run as root
            let Some((uid, gid)) = postgres_ids() else {
                skip_or_fail("running as root and there is no postgres user to run initdb as");
                return None;
            };
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&pg, Some(uid), Some(gid)).unwrap();
        }
        let db = PrivatePg {
            tmp,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = db.data().display().to_string();
        let out = db.tool(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "-N"],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        db.start_server();
        Some(db)
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("pg")
    }

    fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Runs one of PostgreSQL's programs (as the postgres user when root).
    fn tool(&self, name: &str, args: &[&str]) -> std::process::Output {
        let program = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .current_dir(self.dir())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server on the data directory and waits until it accepts
    /// connections (after crash recovery, when it was killed).
    fn start_server(&self) {
        let data = self.data().display().to_string();
        let log = self.dir().join("log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir().display()
        );
        let out = self.tool(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The postmaster's pid, from its lock file.
    fn postmaster(&self) -> Option<i32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILLs the postmaster, then waits (bounded) until its children
    /// (which exit when they see it gone) have exited too, so the cluster
    /// can start again on the same data directory.
    fn kill(&self) {
        let pm = self.postmaster().expect("the server runs");
        let children = children_of(pm);
        signal(pm, "KILL");
        let deadline = Instant::now() + common::WAIT_BOUND;
        while std::iter::once(pm)
            .chain(children.iter().copied())
            .any(is_running)
        {
            assert!(Instant::now() < deadline, "PostgreSQL's processes linger");
            std::thread::sleep(Duration::from_millis(10));
        }
        // the dead postmaster may stay a zombie a while (its parent is
        // whatever reaps orphans here), and PostgreSQL takes a lock file
        // naming a pid that still exists as held: they are stale now
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
        let socket_lock = self.dir().join(format!(".s.PGSQL.{}.lock", self.port));
        let _ = std::fs::remove_file(socket_lock);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        // SIGKILL reaches stopped processes too (a test that failed while
        // PostgreSQL was frozen); the data is thrown away with the directory
        if let Some(pm) = self.postmaster().filter(|p| is_running(*p)) {
            for p in std::iter::once(pm).chain(children_of(pm)) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(p.to_string())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// Whether a process exists and is not a zombie.
fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The pids whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

fn signal(pid: i32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Whether a process is stopped (SIGSTOP).
fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? == "T"))
        .unwrap_or(false)
}

// ---- nodes ----

/// A node's working directory with the shared root key as `data/root.key`.
fn node_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap().keep();
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = data.join("root.key");
    std::fs::write(
        &file,
        sealgate::keys::root::encode_root_key(&root()).as_bytes(),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    d
}

/// A node in this process (the library, as `sealgate keys` uses it).
/// The tests' own runtime (two workers: the upstream and the clients).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A library node (this process) that makes the store's `hot` key and a
/// credential; returns it with the credential's id and secret.
fn seed(url: &str) -> (KeyStore, String, String) {
    let c = library_node(url);
    c.create(CreateKeyRequest {
        alias: Some("hot".into()),
        ..Default::default()
    })
    .unwrap();
    let cred = c.create_credential(None).unwrap();
    let (id, secret) = (
        cred.id.clone(),
        String::from_utf8(cred.secret.expose().to_vec()).unwrap(),
    );
    (c, id, secret)
}

fn library_node(url: &str) -> KeyStore {
    let dir = tempfile::tempdir().unwrap().keep();
    KeyStore::open_postgres(
        url,
        dir,
        RootKeySource::Key(root()),
        StoreOptions::default(),
    )
    .unwrap()
}

const POLICY: &str = r#"
[[route]]
name = "records-create"
methods = ["POST"]
path = "/records/{id}"
key = "hot"
context = "records"
request.encrypt = ["$.ssn"]

[[route]]
name = "records-read"
methods = ["GET"]
path = "/records/{id}"
key = "hot"
context = "records"
response.decrypt = ["$.ssn"]
"#;

/// An upstream keeping one body per path: POST stores, GET answers it.
fn records_upstream() -> common::Reply {
    let kept: Arc<Mutex<HashMap<String, bytes::Bytes>>> = Arc::default();
    Arc::new(move |s: &common::Seen| {
        let mut kept = kept.lock().unwrap();
        let body = if s.method == "POST" {
            kept.insert(s.uri.clone(), s.body.clone());
            s.body.clone()
        } else {
            kept.get(&s.uri).cloned().unwrap_or_default()
        };
        let mut r = hyper::Response::new(http_body_util::Full::new(body));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
}

/// A serve node on the store with a KMS listener: (process, KMS address).
fn serve_node(url: &str, upstream: std::net::SocketAddr) -> (common::ServeProcess, String) {
    // quotas out of the way: the loop's clients call as fast as answered
    let extra = format!(
        "[store]\nurl = \"{url}\"\n[kms.alibaba.quotas]\nCreateKey = 100000\nwrite = 100000\n"
    );
    let node = common::ServeProcess::start_with_flags(
        node_dir(),
        upstream,
        POLICY,
        &extra,
        &["--kms-listen", "127.0.0.1:0"],
    );
    let kms = node.wait_log("KMS listening (Tencent, Alibaba, Infisical dialects)")["fields"]
        ["listen"]
        .as_str()
        .unwrap()
        .to_string();
    (node, kms)
}

// ---- the three KMS dialects, raw signed requests ----

/// Signs and sends a Tencent API 3.0 call (TC3); the parsed body.
async fn tencent(kms: &str, id: &str, secret: &str, action: &str, params: Value) -> Value {
    let body = params.to_string();
    // a signature is accepted once, and TC3 signs the body and the second,
    // not the action: step back within the ±300 s window on a repeat
    static USED: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());
    let ts = {
        let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
        let mut ts = sealgate::clock::unix_now() as i64;
        while used.contains(&(body.clone(), ts)) {
            ts -= 1;
        }
        used.push((body.clone(), ts));
        ts
    };
    let all = common::tc3_signed_headers(kms, id, secret, action, ts, &body);
    let (status, _, text) =
        common::send_owned_headers("POST", &format!("http://{kms}/"), &all, &body).await;
    assert_eq!(status, 200, "Tencent answers 200 always: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Signs (RPC, HMAC-SHA1) and sends an Alibaba call: status and body.
async fn alibaba(
    kms: &str,
    id: &str,
    secret: &str,
    action: &str,
    params: &[(&str, &str)],
) -> (u16, Value) {
    let ts = ali_sign::format_acs_date(sealgate::clock::unix_now() as i64).unwrap();
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut p: Vec<(&str, &str)> = vec![
        ("Action", action),
        ("Version", "2016-01-20"),
        ("Format", "JSON"),
        ("AccessKeyId", id),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", &nonce),
        ("Timestamp", &ts),
    ];
    p.extend_from_slice(params);
    let sig = ali_sign::sign_rpc(secret.as_bytes(), "POST", &p);
    p.push(("Signature", &sig));
    let query = ali_sign::form_encode(&p);
    let (status, _, text) = common::send("POST", &format!("http://{kms}/?{query}"), &[], "").await;
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// Sends an Infisical call with a bearer token: status and body.
async fn infisical(kms: &str, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, _, text) = common::send(
        method,
        &format!("http://{kms}{path}"),
        &[
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ],
        body,
    )
    .await;
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

async fn infisical_token(kms: &str, id: &str, secret: &str) -> String {
    let (status, _, text) = common::send_json(
        "POST",
        &format!("http://{kms}/api/v1/auth/universal-auth/login"),
        &json!({"clientId": id, "clientSecret": secret}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["accessToken"].as_str().unwrap().to_string()
}

/// Runs `call` and answers its outcome and how long it took.
async fn timed<T>(call: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = call.await;
    (out, start.elapsed())
}

fn assert_fast(what: &str, took: Duration) {
    println!("{what}: answered in {took:?}");
    assert!(
        took < FAIL_BOUND,
        "{what} took {took:?}, over the {FAIL_BOUND:?} bound"
    );
}

fn assert_tencent_internal(v: &Value) {
    assert_eq!(v["Response"]["Error"]["Code"], "InternalError", "{v}");
    assert!(v["Response"]["RequestId"].is_string(), "{v}");
}

fn assert_alibaba_internal((status, v): &(u16, Value)) {
    assert_eq!(
        (*status, v["Code"].as_str()),
        (500, Some("InternalFailure")),
        "{v}"
    );
    for field in ["RequestId", "HostId", "Message", "Recommend"] {
        assert!(v[field].is_string(), "{field} missing: {v}");
    }
}

fn assert_infisical_internal((status, v): &(u16, Value)) {
    assert_eq!(*status, 500, "{v}");
    assert_eq!(v["statusCode"], 500, "{v}");
    assert_eq!(v["error"], "InternalServerError", "{v}");
    assert!(v["message"].is_string(), "{v}");
    assert!(
        v["reqId"].as_str().is_some_and(|r| r.starts_with("req-")),
        "{v}"
    );
}

fn assert_key_unavailable(status: u16, body: &str) {
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "key_unavailable", "{v}");
}

#[test]
fn with_postgres_killed_loaded_keys_work_writes_and_cold_misses_fail_fast_and_all_recovers() {
    let Some(pg) = PrivatePg::start() else { return };
    let url = pg.url();
    let rt = runtime();
    let upstream = rt.block_on(common::recording_upstream(records_upstream()));

    // node C (this process) makes the store, the proxy's key and a credential
    let (c, id, secret) = seed(&url);
    // nodes A and B: real serve processes
    let (a, kms_a) = serve_node(&url, upstream.addr);
    let (b, kms_b) = serve_node(&url, upstream.addr);
    let proxy = |node: &common::ServeProcess, method: &str, path: &str, body: &str| {
        rt.block_on(timed(common::send(
            method,
            &format!("http://{}{path}", node.proxy),
            &[("content-type", "application/json")],
            body,
        )))
    };
    // A warms up: seals and opens (its data keys cached), and has a key and
    // an Infisical token for the KMS calls
    let ((s, _, body), _) = proxy(&a, "POST", "/records/1", r#"{"ssn":"111-11-1111"}"#);
    assert_eq!(s, 200, "{body}");
    let ((s, _, body), _) = proxy(&a, "GET", "/records/1", "");
    assert_eq!((s, body.as_str()), (200, r#"{"ssn":"111-11-1111"}"#));
    let token = rt.block_on(infisical_token(&kms_a, &id, &secret));
    let loaded = rt.block_on(tencent(
        &kms_a,
        &id,
        &secret,
        "CreateKey",
        json!({"Alias": "loaded"}),
    ))["Response"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();

    // A stops (SIGSTOP); meanwhile B rotates the proxy's key (through its
    // Alibaba face, so B has the new version when it answers) and seals a
    // record under version 2, and C makes a key: none of it reaches A
    let a_pid = a.child.id() as i32;
    signal(a_pid, "STOP");
    common_wait("A to stop", || is_stopped(a_pid));
    let hot = c.describe("hot").unwrap().key_id.to_string();
    let (s, v) = rt.block_on(alibaba(
        &kms_b,
        &id,
        &secret,
        "CreateKeyVersion",
        &[("KeyId", &hot)],
    ));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["KeyVersion"]["KeyVersionId"], format!("{hot}-v2"), "{v}");
    let unseen = c
        .create(CreateKeyRequest {
            alias: Some("unseen".into()),
            ..Default::default()
        })
        .unwrap()
        .key_id
        .to_string();
    let ((s, _, body), _) = proxy(&b, "POST", "/records/2", r#"{"ssn":"222-22-2222"}"#);
    assert_eq!(s, 200, "{body}");

    // PostgreSQL is killed; A resumes
    pg.kill();
    let killed_at = Instant::now();
    signal(a_pid, "CONT");

    // (c) a cold miss on the proxy: B's record names version 2, which A has
    // not loaded
    let ((s, _, body), took) = proxy(&a, "GET", "/records/2", "");
    assert_key_unavailable(s, &body);
    assert_fast("proxy open of an envelope under an unloaded version", took);

    // (a) what A has loaded works: sealing and opening through the proxy,
    // and a KMS call on a loaded key
    let ((s, _, body), _) = proxy(&a, "POST", "/records/3", r#"{"ssn":"333-33-3333"}"#);
    assert_eq!(s, 200, "{body}");
    let ((s, _, body), _) = proxy(&a, "GET", "/records/3", "");
    assert_eq!((s, body.as_str()), (200, r#"{"ssn":"333-33-3333"}"#));
    let ((s, _, body), _) = proxy(&a, "GET", "/records/1", "");
    assert_eq!((s, body.as_str()), (200, r#"{"ssn":"111-11-1111"}"#));
    let enc = rt.block_on(tencent(
        &kms_a,
        &id,
        &secret,
        "Encrypt",
        json!({"KeyId": loaded, "Plaintext": "aGVsbG8="}),
    ));
    assert!(enc["Response"]["CiphertextBlob"].is_string(), "{enc}");

    // (b) KMS calls that must write, one per dialect
    let (v, took) = rt.block_on(timed(tencent(
        &kms_a,
        &id,
        &secret,
        "CreateKey",
        json!({"Alias": "during-outage"}),
    )));
    assert_tencent_internal(&v);
    assert_fast("Tencent CreateKey", took);
    let (got, took) = rt.block_on(timed(alibaba(
        &kms_a,
        &id,
        &secret,
        "CreateKey",
        &[("Description", "during the outage")],
    )));
    assert_alibaba_internal(&got);
    assert_fast("Alibaba CreateKey", took);
    let (got, took) = rt.block_on(timed(infisical(
        &kms_a,
        &token,
        "POST",
        "/api/v1/kms/keys",
        &json!({"projectId": "p", "name": "during-outage"}).to_string(),
    )));
    assert_infisical_internal(&got);
    assert_fast("Infisical CreateKey", took);

    // (c) cold misses on the KMS faces: C's key, which A has not loaded
    let (v, took) = rt.block_on(timed(tencent(
        &kms_a,
        &id,
        &secret,
        "DescribeKey",
        json!({"KeyId": unseen}),
    )));
    assert_tencent_internal(&v);
    assert_fast("Tencent DescribeKey of an unloaded key", took);
    let (got, took) = rt.block_on(timed(alibaba(
        &kms_a,
        &id,
        &secret,
        "DescribeKey",
        &[("KeyId", &unseen)],
    )));
    assert_alibaba_internal(&got);
    assert_fast("Alibaba DescribeKey of an unloaded key", took);
    let (got, took) = rt.block_on(timed(infisical(
        &kms_a,
        &token,
        "POST",
        &format!("/api/v1/kms/keys/{unseen}/encrypt"),
        r#"{"plaintext":"aGVsbG8="}"#,
    )));
    assert_infisical_internal(&got);
    assert_fast("Infisical encrypt under an unloaded key", took);
    println!(
        "all outage checks done {:?} after the kill",
        killed_at.elapsed()
    );

    // (d) PostgreSQL returns on the same data directory and port: the same
    // calls succeed, A never restarted
    pg.start_server();
    let back = Instant::now();
    let recovered = rt.block_on(common::wait_for("A to open version 2 again", || async {
        let (s, _, body) =
            common::send("GET", &format!("http://{}/records/2", a.proxy), &[], "").await;
        (s == 200).then_some(body)
    }));
    assert_eq!(recovered, r#"{"ssn":"222-22-2222"}"#);
    println!(
        "A recovered {:?} after PostgreSQL accepted connections",
        back.elapsed()
    );
    let v = rt.block_on(tencent(
        &kms_a,
        &id,
        &secret,
        "CreateKey",
        json!({"Alias": "after-outage"}),
    ));
    assert!(v["Response"]["KeyId"].is_string(), "{v}");
    let (s, v) = rt.block_on(alibaba(
        &kms_a,
        &id,
        &secret,
        "CreateKey",
        &[("Description", "after the outage")],
    ));
    assert_eq!(s, 200, "{v}");
    let ali_key = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let (s, v) = rt.block_on(infisical(
        &kms_a,
        &token,
        "POST",
        "/api/v1/kms/keys",
        &json!({"projectId": "p", "name": "after-outage"}).to_string(),
    ));
    assert_eq!(s, 200, "{v}");
    let inf_key = v["key"]["id"].as_str().unwrap().to_string();
    let v = rt.block_on(tencent(
        &kms_a,
        &id,
        &secret,
        "DescribeKey",
        json!({"KeyId": unseen}),
    ));
    assert_eq!(v["Response"]["KeyMetadata"]["Alias"], "unseen", "{v}");
    // the keys made after the outage are in PostgreSQL: a new node finds them
    let fresh = library_node(&url);
    for key in ["after-outage", &ali_key, &inf_key] {
        fresh.describe(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    assert!(fresh.describe("during-outage").is_err());
    drop((a, b));
}

#[test]
fn with_postgres_frozen_writes_and_cold_misses_fail_within_the_bound_at_once_and_resume() {
    let Some(pg) = PrivatePg::start() else { return };
    let url = pg.url();
    let rt = runtime();
    let upstream = rt.block_on(common::recording_upstream(records_upstream()));
    let (c, id, secret) = seed(&url);
    drop(c);
    let (a, kms) = serve_node(&url, upstream.addr);
    let token = rt.block_on(infisical_token(&kms, &id, &secret));
    let seal = |n: u32| {
        rt.block_on(common::send(
            "POST",
            &format!("http://{}/records/{n}", a.proxy),
            &[("content-type", "application/json")],
            r#"{"ssn":"555-55-5555"}"#,
        ))
        .0
    };
    assert_eq!(seal(1), 200);

    // PostgreSQL stops answering but keeps its sockets open (SIGSTOP): no
    // connection is refused or reset, so only the waits bound the calls
    let pm = pg.postmaster().unwrap();
    let frozen: Vec<i32> = std::iter::once(pm).chain(children_of(pm)).collect();
    for p in &frozen {
        signal(*p, "STOP");
    }
    common_wait("PostgreSQL to stop", || {
        frozen.iter().all(|p| is_stopped(*p))
    });
    let unknown = uuid::Uuid::new_v4().to_string();
    let describe_unknown = [("KeyId", unknown.as_str())];
    let no_params: [(&str, &str); 0] = [];
    let infisical_create = json!({"projectId": "p", "name": "frozen"}).to_string();
    // all at once: a stuck call must not add its wait to the next one's
    let (tc, ali, inf, miss) = rt.block_on(async {
        tokio::join!(
            timed(tencent(
                &kms,
                &id,
                &secret,
                "CreateKey",
                json!({"Alias": "frozen"}),
            )),
            timed(alibaba(&kms, &id, &secret, "CreateKey", &no_params)),
            timed(infisical(
                &kms,
                &token,
                "POST",
                "/api/v1/kms/keys",
                &infisical_create,
            )),
            timed(alibaba(
                &kms,
                &id,
                &secret,
                "DescribeKey",
                &describe_unknown,
            )),
        )
    });
    assert_tencent_internal(&tc.0);
    assert_fast("Tencent CreateKey, PostgreSQL frozen", tc.1);
    assert_alibaba_internal(&ali.0);
    assert_fast("Alibaba CreateKey, PostgreSQL frozen", ali.1);
    assert_infisical_internal(&inf.0);
    assert_fast("Infisical CreateKey, PostgreSQL frozen", inf.1);
    assert_alibaba_internal(&miss.0);
    assert_fast(
        "Alibaba DescribeKey of an unloaded key, PostgreSQL frozen",
        miss.1,
    );
    // and one after the other, behind the stuck ones
    let (v, took) = rt.block_on(timed(tencent(
        &kms,
        &id,
        &secret,
        "CreateKey",
        json!({"Alias": "frozen-2"}),
    )));
    assert_tencent_internal(&v);
    assert_fast("a second Tencent CreateKey, PostgreSQL frozen", took);
    // the warm path never waits for the database
    let start = Instant::now();
    assert_eq!(seal(2), 200);
    let took = start.elapsed();
    println!("a warm seal, PostgreSQL frozen: {took:?}");

    for p in &frozen {
        signal(*p, "CONT");
    }
    let back = Instant::now();
    rt.block_on(common::wait_for("CreateKey to succeed again", || async {
        let v = tencent(&kms, &id, &secret, "CreateKey", json!({"Alias": "thawed"})).await;
        v["Response"]["KeyId"].is_string().then_some(())
    }));
    println!("writes resumed {:?} after PostgreSQL did", back.elapsed());
    let fresh = library_node(&url);
    fresh.describe("thawed").unwrap();
    for alias in ["frozen", "frozen-2"] {
        assert!(
            fresh.describe(alias).is_err(),
            "{alias} was not acknowledged"
        );
    }
    drop(a);
}

/// [`common::wait_until`] for plain threads.
fn common_wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + common::WAIT_BOUND;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the loop's clients were told: each key created, each version made.
#[derive(Default)]
struct Acknowledged {
    /// KeyId → the KeyVersionIds acknowledged (CreateKey's primary one
    /// first).
    keys: HashMap<String, Vec<String>>,
    failures: usize,
}

#[test]
fn postgres_sigkilled_in_a_loop_loses_no_acknowledged_key_or_version() {
    const ROUNDS: usize = 5;
    const CLIENTS: usize = 4;
    let Some(pg) = PrivatePg::start() else { return };
    let url = pg.url();
    let rt = runtime();
    let upstream = rt.block_on(common::recording_upstream(common::echo()));
    let (c, id, secret) = seed(&url);
    drop(c);
    let (node, kms) = serve_node(&url, upstream.addr);

    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (kms, id, secret) = (kms.clone(), id.clone(), secret.clone());
            let (acked, stop) = (acked.clone(), stop.clone());
            rt.spawn(async move {
                let mut mine: Vec<String> = Vec::new();
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    // every third call creates a key, the others add versions
                    let got = if mine.is_empty() || n % 3 == 0 {
                        alibaba(&kms, &id, &secret, "CreateKey", &[]).await
                    } else {
                        let key = mine[n % mine.len()].clone();
                        alibaba(&kms, &id, &secret, "CreateKeyVersion", &[("KeyId", &key)]).await
                    };
                    let failed = {
                        let mut a = acked.lock().unwrap();
                        match got {
                            (200, v) if v["KeyMetadata"].is_object() => {
                                let key = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
                                let primary = v["KeyMetadata"]["PrimaryKeyVersion"]
                                    .as_str()
                                    .unwrap()
                                    .to_string();
                                a.keys.insert(key.clone(), vec![primary]);
                                mine.push(key);
                                false
                            }
                            (200, v) => {
                                let key = v["KeyVersion"]["KeyId"].as_str().unwrap().to_string();
                                let version = v["KeyVersion"]["KeyVersionId"]
                                    .as_str()
                                    .unwrap()
                                    .to_string();
                                a.keys.get_mut(&key).unwrap().push(version);
                                false
                            }
                            // the outage's answer; anything else is a bug
                            failed => {
                                assert_alibaba_internal(&failed);
                                a.failures += 1;
                                true
                            }
                        }
                    };
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();

    let start = Instant::now();
    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(300 + 150 * round as u64));
        pg.kill();
        std::thread::sleep(Duration::from_millis(200));
        pg.start_server();
    }
    // a last stretch with PostgreSQL up, then the clients stop
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for client in clients {
        rt.block_on(client).unwrap();
    }
    let loop_time = start.elapsed();
    drop(node);

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let versions: usize = acked.keys.values().map(Vec::len).sum();
    println!(
        "{ROUNDS} SIGKILLs in {loop_time:?}: {} keys and {versions} versions acknowledged, {} calls failed",
        acked.keys.len(),
        acked.failures
    );
    assert!(
        acked.keys.len() >= CLIENTS && versions > acked.keys.len(),
        "the clients got work done between the kills"
    );
    assert!(acked.failures > 0, "the kills were felt");
    // a new node reads PostgreSQL: every acknowledged key and version is there
    let fresh = library_node(&url);
    for (key, versions) in &acked.keys {
        let m = fresh
            .describe(key)
            .unwrap_or_else(|e| panic!("acknowledged key {key} is lost: {e}"));
        let have: Vec<String> = m
            .versions
            .iter()
            .map(|v| sealgate::kms::alibaba::face::version_id(&m.key_id, v.version))
            .collect();
        for v in versions {
            assert!(
                have.contains(v),
                "acknowledged version {v} is lost: {have:?}"
            );
        }
    }
}
