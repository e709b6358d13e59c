//! The web console (`sealgate serve --console-listen`), against the real
//! binary with a real upstream, shadow mode and a capture file:
//!
//! - plain HTTP: log-in (no session → redirect to the log-in page or 401,
//!   a wrong token 401, no CSRF token 403, another origin 403, log-out),
//!   the security headers of every answer;
//! - no page shows a sealed value: records with known plaintext go through
//!   an enforcing route, a shadow route and an unmatched captured path,
//!   then every page (and the draft) is fetched;
//! - a non-loopback address without TLS is refused at start;
//! - in a real browser (tests/console/console_flow.mjs: playwright-core
//!   driving Debian's headless Chromium), keyboard only: log in, see the
//!   routes, send shadow traffic, see the findings, select two, download
//!   the draft, which `sealgate policy check` accepts. Screenshots land in
//!   target/console-screenshots/. Skipped (with a "skipped:" line) when
//!   Chromium is missing, unless SEALGATE_REQUIRE_SERVICES=1.

mod common;

use common::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

const POLICY: &str = r#"
[[route]]
name = "patients"
methods = ["POST"]
path = "/patients"
key = "console-demo"
context = "patients"
request.encrypt = ["$.ssn", "$.email"]
response.decrypt = ["$.ssn", "$.email"]

[[route]]
name = "shadow-users"
methods = ["POST"]
path = "/users"
key = "console-demo"
context = "users"
mode = "shadow"
request.encrypt = ["$.email"]
"#;

/// Values that must never appear on a console page.
const SECRETS: [&str; 6] = [
    "ann@example.com",
    "123-45-6789",
    "bob@example.com",
    "456-78-9012",
    "4111111111111111",
    "5500005555555559",
];

const PATIENT: &str = r#"{"name":"Ann","email":"ann@example.com","ssn":"123-45-6789"}"#;
const USER: &str = r#"{"name":"Bob","email":"bob@example.com","ssn":"456-78-9012"}"#;
const ORDER: &str =
    r#"{"item":"book","cards":[{"number":"4111111111111111"},{"number":"5500005555555559"}]}"#;

/// `sealgate serve` with the console on, its token and addresses.
struct Served {
    child: std::process::Child,
    proxy: String,
    console: String,
    token: String,
    dir: PathBuf,
    /// Every stderr line, as it comes.
    lines: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(upstream: std::net::SocketAddr) -> Served {
    serve_with(upstream, "", |_| {})
}

/// [`serve`] with `extra` TOML in the `[console]` table (`{dir}` stands for
/// the working directory), after `prepare` ran on that directory.
fn serve_with(upstream: std::net::SocketAddr, extra: &str, prepare: impl FnOnce(&Path)) -> Served {
    let dir = tempfile::tempdir().unwrap().keep();
    prepare(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.toml"), POLICY).unwrap();
    let config = format!(
        r#"
listen = "127.0.0.1:0"
upstream = "http://{upstream}"
policies = "{d}/policies"
data_dir = "{d}/data"
shadow_capture = "{d}/capture.jsonl"
[audit]
file = "{d}/audit.jsonl"
[console]
sample_ms = 200
{extra}
[reload]
watch = false
[log]
level = "info"
format = "json"
"#,
        d = dir.display(),
        extra = extra.replace("{dir}", &dir.display().to_string()),
    );
    std::fs::write(dir.join("sealgate.toml"), config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("sealgate.toml"))
        .args(["--console-listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let (mut console, mut token, mut proxy) = (None, None, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while console.is_none() || proxy.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("sealgate serve printed its console and proxy addresses");
        if let Some(rest) = line.strip_prefix("sealgate console: ") {
            // "http://ADDR/ log-in token: TOKEN (printed once; not logged)"
            let (url, rest) = rest.split_once(' ').unwrap();
            console = Some(url.trim_end_matches('/').to_string());
            let t = rest.strip_prefix("log-in token: ").unwrap();
            token = Some(t.split_whitespace().next().unwrap().to_string());
        } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["fields"]["message"] == "sealgate proxy listening" {
                proxy = Some(format!(
                    "http://{}",
                    v["fields"]["listen"].as_str().unwrap()
                ));
                assert!(
                    v["fields"]["console_listener"]
                        .as_str()
                        .is_some_and(|c| c != "off"),
                    "{line}"
                );
            }
        }
    }
    Served {
        child,
        proxy: proxy.unwrap(),
        console: console.unwrap(),
        token: token.unwrap(),
        dir,
        lines,
    }
}

/// The value of `name` in a page's hidden input.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The session cookie a response sets (`name=value`).
fn session_cookie(h: &http::HeaderMap) -> String {
    let c = h
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap();
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"),
        "{c}"
    );
    c.split(';').next().unwrap().to_string()
}

fn assert_secure_headers(h: &http::HeaderMap, what: &str) {
    let csp = h
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .unwrap();
    assert_eq!(csp, sealgate::console::CSP, "{what}");
    for needed in [
        "default-src 'self'",
        "script-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(needed), "{what}: {csp}");
    }
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["cache-control"], "no-store", "{what}");
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Logs in over plain HTTP; returns (session cookie, CSRF token).
async fn log_in(s: &Served) -> (String, String) {
    let (st, h, page) = send("GET", &format!("{}/login", s.console), &[], "").await;
    assert_eq!(st, 200);
    let anon = session_cookie(&h);
    let csrf = hidden(&page, "csrf");
    let (st, h, _) = send(
        "POST",
        &format!("{}/login", s.console),
        &[FORM, ("cookie", &anon)],
        &format!("csrf={csrf}&token={}", s.token),
    )
    .await;
    assert_eq!(st, 303);
    assert_eq!(h["location"], "/routes");
    let cookie = session_cookie(&h);
    assert_ne!(cookie, anon, "a new session id on log-in");
    let (st, _, page) = send(
        "GET",
        &format!("{}/routes", s.console),
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(st, 200, "{page}");
    (cookie, hidden(&page, "csrf"))
}

#[tokio::test]
async fn the_console_logs_in_with_the_token_and_refuses_forms_without_their_csrf_token() {
    let up = recording_upstream(echo()).await;
    let s = serve(up.addr);
    let url = |p: &str| format!("{}{p}", s.console);

    // no session: pages redirect to the log-in page, a form post is 401
    for p in ["/", "/routes", "/findings", "/keys", "/audit"] {
        let (st, h, _) = send("GET", &url(p), &[], "").await;
        assert_eq!(st, 303, "{p}");
        assert_eq!(h["location"], "/login", "{p}");
        assert_secure_headers(&h, p);
    }
    let (st, h, _) = send("POST", &url("/findings/draft"), &[FORM], "f=x&key=k").await;
    assert_eq!(st, 401);
    assert_secure_headers(&h, "draft without a session");

    // the log-in page: a labelled token field, a CSRF token, an anonymous session
    let (st, h, page) = send("GET", &url("/login"), &[], "").await;
    assert_eq!(st, 200);
    assert_secure_headers(&h, "/login");
    assert!(
        page.contains("<label for=\"token\">") && !page.contains("<script"),
        "{page}"
    );
    let anon = session_cookie(&h);
    let csrf = hidden(&page, "csrf");

    // a wrong token: 401, still not logged in
    let (st, h, page) = send(
        "POST",
        &url("/login"),
        &[FORM, ("cookie", &anon)],
        &format!("csrf={csrf}&token=wrong{}", &s.token[5..]),
    )
    .await;
    assert_eq!(st, 401, "{page}");
    assert!(h.get("set-cookie").is_none());
    let (st, _, _) = send("GET", &url("/routes"), &[("cookie", &anon)], "").await;
    assert_eq!(st, 303);
    // the right token without the form's CSRF token (or with another one): 403
    for body in [
        format!("token={}", s.token),
        format!("csrf={}&token={}", "0".repeat(64), s.token),
    ] {
        let (st, _, _) = send("POST", &url("/login"), &[FORM, ("cookie", &anon)], &body).await;
        assert_eq!(st, 403, "{body}");
    }
    // without the session the form came with: 403
    let (st, _, _) = send(
        "POST",
        &url("/login"),
        &[FORM],
        &format!("csrf={csrf}&token={}", s.token),
    )
    .await;
    assert_eq!(st, 403);

    let (cookie, csrf) = log_in(&s).await;
    let (st, h, page) = send("GET", &url("/routes"), &[("cookie", &cookie)], "").await;
    assert_eq!(st, 200);
    assert_secure_headers(&h, "/routes");
    for name in ["patients", "shadow-users", "console-demo", "$.ssn"] {
        assert!(page.contains(name), "{name}: {page}");
    }
    // the anonymous session did not become a logged-in one
    let (st, _, _) = send("GET", &url("/routes"), &[("cookie", &anon)], "").await;
    assert_eq!(st, 303);

    // a logged-in form post without its CSRF token, with a wrong one, or
    // from another origin: 403
    for (headers, body) in [
        (
            vec![FORM, ("cookie", cookie.as_str())],
            "f=x&key=k".to_string(),
        ),
        (
            vec![FORM, ("cookie", cookie.as_str())],
            format!("csrf={}&f=x&key=k", "1".repeat(64)),
        ),
        (
            vec![
                FORM,
                ("cookie", cookie.as_str()),
                ("origin", "http://evil.example"),
            ],
            format!("csrf={csrf}&f=x&key=k"),
        ),
    ] {
        let (st, h, _) = send("POST", &url("/findings/draft"), &headers, &body).await;
        assert_eq!(st, 403, "{body} {headers:?}");
        assert_secure_headers(&h, "refused draft");
    }
    // with it, but nothing selected: 400 with the reason
    let (st, _, page) = send(
        "POST",
        &url("/findings/draft"),
        &[FORM, ("cookie", &cookie)],
        &format!("csrf={csrf}&key=k"),
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("Select at least one finding"), "{page}");

    // the stylesheet is served from the binary; nothing else is fetched
    let (st, h, css) = send("GET", &url("/static/console.css"), &[], "").await;
    assert_eq!(st, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(css.contains("sealgate console"));
    let (st, _, _) = send("DELETE", &url("/routes"), &[("cookie", &cookie)], "").await;
    assert_eq!(st, 405);

    // log-out (a form with the CSRF token) ends the session
    let (st, _, _) = send("POST", &url("/logout"), &[FORM, ("cookie", &cookie)], "").await;
    assert_eq!(st, 403, "log-out needs the CSRF token too");
    let (st, h, _) = send(
        "POST",
        &url("/logout"),
        &[FORM, ("cookie", &cookie)],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(st, 303);
    assert_eq!(h["location"], "/login");
    let (st, _, _) = send("GET", &url("/routes"), &[("cookie", &cookie)], "").await;
    assert_eq!(st, 303);

    // the token was printed once, on its own line (read by `serve`), and
    // is in no log line since: not the start line, not the log-in lines
    let mut later = Vec::new();
    while let Ok(l) = s.lines.recv_timeout(Duration::from_millis(500)) {
        later.push(l);
    }
    assert!(
        later.iter().any(|l| l.contains("console: logged in")),
        "{later:?}"
    );
    assert!(
        later.iter().all(|l| !l.contains(&s.token)),
        "the token appears in a later line"
    );
}

#[tokio::test]
async fn no_console_page_shows_a_sealed_or_observed_value() {
    let up = recording_upstream(echo()).await;
    let s = serve(up.addr);
    // an enforcing route (sealed, then opened on the way back), a shadow
    // route and a path no route matches (both captured)
    for (path, body) in [("/patients", PATIENT), ("/users", USER), ("/orders", ORDER)] {
        let (st, _, b) = send_json("POST", &format!("{}{path}", s.proxy), body).await;
        assert_eq!(st, 200, "{path}: {b}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&b).unwrap(),
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            "{path}: the client gets its record back as sent"
        );
    }
    // the upstream stored the enforcing route's fields sealed
    let stored = String::from_utf8_lossy(&up.requests()[0].body).into_owned();
    assert!(
        !stored.contains("123-45-6789") && stored.contains("sg1."),
        "{stored}"
    );

    // a KMS credential, made through the admin socket while serve runs
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args([
            "credentials",
            "create",
            "--json",
            "--allow-key",
            "console-demo",
        ])
        .arg("--data-dir")
        .arg(s.dir.join("data"))
        .env_remove("SEALGATE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let field = |k: &str| {
        cred[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {cred}"))
            .to_string()
    };
    let (cred_id, cred_secret) = (field("id"), field("secret"));

    let (cookie, csrf) = log_in(&s).await;
    let get = |p: &'static str| {
        let url = format!("{}{p}", s.console);
        let cookie = cookie.clone();
        async move {
            let (st, _, page) = send("GET", &url, &[("cookie", &cookie)], "").await;
            assert_eq!(st, 200, "{p}: {page}");
            page
        }
    };
    // the findings are read from the capture as it grows
    let mut findings = String::new();
    for _ in 0..50 {
        findings = get("/findings").await;
        if findings.contains("/orders") && findings.contains("/users") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for shown in [
        "$.ssn",
        "$.email",
        "$.cards[*].number",
        "national_id",
        "card_number",
    ] {
        assert!(
            findings.contains(&sealgate_html(shown)),
            "{shown}: {findings}"
        );
    }
    // the counts come from the metrics counters, sampled for the plots
    let mut routes = String::new();
    for _ in 0..50 {
        routes = get("/routes").await;
        if routes.contains("aria-label=\"Fields sealed: 2 in the last") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        routes
            .contains("<svg class=\"plot\" role=\"img\" aria-label=\"Fields sealed: 2 in the last"),
        "{routes}"
    );
    assert!(routes.contains("per 200 ms, last 24 s"), "{routes}");
    let keys = get("/keys").await;
    assert!(
        keys.contains("console-demo") && keys.contains("ENCRYPT_DECRYPT"),
        "{keys}"
    );
    assert!(keys.contains(&cred_id), "{keys}");
    assert!(
        !keys.contains(&cred_secret),
        "the keys page shows a credential's secret"
    );
    let audit = get("/audit").await;
    assert!(audit.contains("Verified"), "{audit}");

    // every finding selected: the draft
    let ids: Vec<String> = findings
        .match_indices("name=\"f\" value=\"")
        .map(|(i, m)| findings[i + m.len()..i + m.len() + 16].to_string())
        .collect();
    assert!(ids.len() >= 4, "{findings}");
    let form: Vec<String> = ids.iter().map(|i| format!("f={i}")).collect();
    let (st, h, draft) = send(
        "POST",
        &format!("{}/findings/draft", s.console),
        &[FORM, ("cookie", &cookie)],
        &format!("csrf={csrf}&key=console-demo&{}", form.join("&")),
    )
    .await;
    assert_eq!(st, 200, "{draft}");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert!(
        draft.contains("[[route]]") && draft.contains("\"$.ssn\""),
        "{draft}"
    );

    for (what, text) in [
        ("/routes", &routes),
        ("/findings", &findings),
        ("/keys", &keys),
        ("/audit", &audit),
        ("the draft", &draft),
    ] {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{what} shows {secret}");
        }
    }
    // a reload shows on the routes page: one that took effect, one refused
    let hup = || {
        let ok = std::process::Command::new("kill")
            .arg("-HUP")
            .arg(s.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let routes_until = |want: &'static str| {
        let get = &get;
        async move {
            for _ in 0..100 {
                let page = get("/routes").await;
                if page.contains(want) {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the routes page never said {want:?}");
        }
    };
    hup();
    let page = routes_until("2 route(s) in force").await;
    assert!(
        page.contains("Reloaded") && page.contains("SIGHUP"),
        "{page}"
    );
    std::fs::write(s.dir.join("policies/p.toml"), "[[route]]\nname = \"x\"\n").unwrap();
    hup();
    let page = routes_until("Refused").await;
    assert!(page.contains("1 ok, 1 refused"), "{page}");
    assert!(
        page.contains("shadow-users"),
        "the running set stays: {page}"
    );

    // and the draft is what `policy check` accepts
    let check_dir = s.dir.join("draft");
    std::fs::create_dir_all(&check_dir).unwrap();
    std::fs::write(check_dir.join("draft.toml"), &draft).unwrap();
    policy_check(&check_dir);
}

/// What `text` looks like in the pages (HTML-escaped).
fn sealgate_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn policy_check(dir: &Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["policy", "check"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "policy check of the draft failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_console_on_another_host_needs_tls() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args([
            "serve",
            "--upstream",
            "http://127.0.0.1:9",
            "--console-listen",
            "0.0.0.0:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--policies")
        .arg(dir.path())
        .env_remove("SEALGATE_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("console.listen")
            && err.contains("not a loopback address")
            && err.contains("TLS"),
        "{err}"
    );
}

/// The system's Chromium, or `None` after a "skipped:" line (a failure
/// under SEALGATE_REQUIRE_SERVICES=1).
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("SEALGATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("SEALGATE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "Chromium is required (SEALGATE_REQUIRE_SERVICES=1) and {} is missing: apt-get install chromium",
            path.display()
        );
    }
    eprintln!(
        "skipped: the console browser test needs Chromium at {} (apt-get install chromium, or set SEALGATE_CHROMIUM)",
        path.display()
    );
    None
}

/// Runs tests/console/setup.sh (playwright-core under target/); its directory.
fn playwright_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("tests/console/setup.sh"))
        .output()
        .expect("run tests/console/setup.sh");
    assert!(
        out.status.success(),
        "tests/console/setup.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.trim().lines().last().unwrap_or("").trim())
}

#[tokio::test]
async fn in_a_browser_findings_become_a_policy_draft_that_passes_the_check() {
    let Some(chromium) = chromium() else { return };
    let node_dir = playwright_dir();
    let up = recording_upstream(echo()).await;
    let s = serve(up.addr);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("console-screenshots");
    let draft_dir = s.dir.join("draft");
    std::fs::create_dir_all(&draft_dir).unwrap();
    let download = draft_dir.join("draft.toml");
    let traffic = serde_json::json!({
        "routes": ["patients", "shadow-users"],
        "key": "console-demo",
        "draft_key": "console-demo",
        "requests": [
            {"method": "POST", "path": "/patients", "body": serde_json::from_str::<serde_json::Value>(PATIENT).unwrap()},
            {"method": "POST", "path": "/users", "body": serde_json::from_str::<serde_json::Value>(USER).unwrap()},
            {"method": "POST", "path": "/orders", "body": serde_json::from_str::<serde_json::Value>(ORDER).unwrap()},
        ],
        "expect_fields": ["$.email", "$.ssn", "$.cards[*].number"],
        // in page order: POST /orders comes before POST /users
        "select": [
            "$.cards[*].number in the request body of POST /orders",
            "$.ssn in the request body of POST /users",
        ],
    });
    let script = root.join("tests/console/console_flow.mjs");
    let args: Vec<String> = vec![
        "--node-dir".into(),
        node_dir.display().to_string(),
        "--chromium".into(),
        chromium.display().to_string(),
        "--console".into(),
        s.console.clone(),
        "--token".into(),
        s.token.clone(),
        "--proxy".into(),
        s.proxy.clone(),
        "--shots".into(),
        shots.display().to_string(),
        "--download".into(),
        download.display().to_string(),
        "--secrets".into(),
        SECRETS.join(","),
        "--traffic".into(),
        traffic.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .args(&args)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console_flow.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "login page",
        "wrong token refused",
        "logged in",
        "routes page",
        "findings empty before traffic",
        "shadow traffic sent",
        "findings page",
        "two findings selected",
        "draft downloaded",
        "keys page",
        "audit page",
        "logged out",
        "done",
    ] {
        assert!(
            stdout.contains(&format!("{{\"step\":\"{step}\",\"ok\":true")),
            "no step {step}:\n{stdout}"
        );
    }
    // the draft holds the two findings selected, and no other, and loads
    let draft = std::fs::read_to_string(&download).unwrap();
    assert!(draft.contains("\"$.ssn\""), "{draft}");
    assert!(draft.contains("path = \"/orders\""), "{draft}");
    assert!(!draft.contains("\"$.email\""), "{draft}");
    for secret in SECRETS {
        assert!(!draft.contains(secret), "the draft holds {secret}");
    }
    policy_check(&draft_dir);
    for page in ["login", "routes", "findings", "keys", "audit"] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
}

#[test]
fn a_console_on_another_host_loads_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealgate.toml");
    let load = |text: &str| {
        std::fs::write(&file, text).unwrap();
        sealgate::config::load(Some(&file), &sealgate::config::Overrides::default())
    };
    let c = load(
        "upstream = \"http://127.0.0.1:9\"\n[console]\nlisten = \"0.0.0.0:9443\"\n\
         [console.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
    )
    .unwrap();
    let console = c.console.unwrap();
    assert_eq!(console.listen.to_string(), "0.0.0.0:9443");
    assert_eq!(console.sample_every, Duration::from_secs(5));
    assert!(console.tls.is_some());
    assert!(load("upstream = \"http://127.0.0.1:9\"\n")
        .unwrap()
        .console
        .is_none());
    let e = load("upstream = \"http://127.0.0.1:9\"\n[console]\nlisten = \"[::]:9443\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a loopback address"), "{e}");
    let e = load(
        "upstream = \"http://127.0.0.1:9\"\n[console]\nlisten = \"127.0.0.1:1\"\nsample_ms = 5\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("console.sample_ms"), "{e}");
}

/// A TLS connection to the console, with a client certificate or not.
async fn tls_get(
    addr: &str,
    dir: &Path,
    client_cert: bool,
    path: &str,
) -> Result<(u16, http::HeaderMap, String), String> {
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let certs = |f: &str| {
        CertificateDer::pem_file_iter(dir.join(f))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("ca.pem") {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = if client_cert {
        b.with_client_auth_cert(
            certs("client.pem"),
            PrivateKeyDer::from_pem_file(dir.join("client-key.pem")).unwrap(),
        )
        .unwrap()
    } else {
        b.with_no_client_auth()
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", addr)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        headers,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

#[tokio::test]
async fn with_mtls_a_verified_client_certificate_logs_in() {
    let up = recording_upstream(echo()).await;
    let s = serve_with(
        up.addr,
        "[console.tls]\ncert_file = \"{dir}/certs/server.pem\"\nkey_file = \"{dir}/certs/server-key.pem\"\nclient_ca_file = \"{dir}/certs/ca.pem\"",
        |dir| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
                .args(["dev-cert", "--out"])
                .arg(dir.join("certs"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        },
    );
    let addr = s
        .console
        .strip_prefix("https://")
        .expect("an https console");
    let certs = s.dir.join("certs");
    // no client certificate: the handshake (or the first request) fails
    assert!(tls_get(addr, &certs, false, "/routes").await.is_err());
    // a verified one: the pages, no token needed, a Secure session cookie
    let (st, h, page) = tls_get(addr, &certs, true, "/routes").await.unwrap();
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("shadow-users"), "{page}");
    let cookie = h["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert_secure_headers(&h, "/routes over mTLS");
}
