//! A record opens wherever the API puts it: through the real binary, a
//! record written in any of the public API conventions of
//! `tests/data/api-shapes/` (bare, top-level array, wrapped list with
//! pagination members, `data`/`attributes`/`_embedded`/`value`/`edges[*].node`/
//! `hits[*]._source`) opens when read back in every other convention of the
//! same context; and the shipped policies' list routes open what their
//! create routes sealed, against an upstream that stores and pages records
//! the way the policies' comments describe.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{recording_upstream, send, Seen, ServeProcess};
use http_body_util::Full;
use hyper::Response;
use sealgate::policy::{Selector, Step};
use serde_json::{json, Value};

const SSN: &str = "123-45-6789";
const EMAIL: &str = "ann@example.com";
const CARD: &str = "4111111111111111";
const FIELDS: &str = r#"["$.ssn", "$.email", "$.cards[*].number"]"#;

struct Shape {
    name: String,
    roots: Vec<String>,
    one: Option<Value>,
    list: Option<Value>,
}

fn shapes() -> Vec<Shape> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/api-shapes");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for f in files {
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let roots: Vec<String> = v["record_roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        if roots.iter().any(|r| !r.starts_with('$')) {
            // one record per line (NDJSON): not one JSON document
            continue;
        }
        let opt = |x: &Value| (!x.is_null()).then(|| x.clone());
        // a single record answered bare (DRF, Stripe) sits at the root
        let mut roots = roots;
        if v["one"].get("ssn").is_some() && !roots.iter().any(|r| r == "$") {
            roots.push("$".to_owned());
        }
        out.push(Shape {
            name: f.file_stem().unwrap().to_str().unwrap().to_owned(),
            roots,
            one: opt(&v["one"]),
            list: opt(&v["list"]),
        });
    }
    assert!(out.len() >= 12, "the api-shapes matrix is vendored");
    out
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// One write route and one read route per shape, all in context "users";
/// and a read route for NDJSON (each line is a record: no `records`).
fn matrix_policy(shapes: &[Shape]) -> String {
    let mut p = format!(
        r#"
[[route]]
name = "r-ndjson"
methods = ["GET"]
path = "/r/ndjson"
key = "users"
context = "users"
on_plaintext = "refuse"
response.decrypt = {FIELDS}
"#
    );
    for s in shapes {
        let roots = toml_list(&s.roots);
        p.push_str(&format!(
            r#"
[[route]]
name = "w-{n}"
methods = ["POST"]
path = "/w/{n}"
key = "users"
context = "users"
request.records = {roots}
request.encrypt = {FIELDS}

[[route]]
name = "r-{n}"
methods = ["GET"]
path = "/r/{n}"
key = "users"
context = "users"
on_plaintext = "refuse"
records = {roots}
response.decrypt = {FIELDS}
"#,
            n = s.name
        ));
    }
    p
}

/// The records of `body` at `roots` (objects that carry an `ssn`), with their paths.
fn records_at(body: &Value, roots: &[String]) -> Vec<(Vec<Step>, Value)> {
    let mut out = Vec::new();
    for r in roots {
        let sel = Selector::compile(r).unwrap();
        for node in sel.select(body).unwrap() {
            if node.value.get("ssn").is_some() && !out.iter().any(|(s, _)| *s == node.steps) {
                out.push((node.steps.clone(), node.value.clone()));
            }
        }
    }
    out
}

fn pointer(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| match s {
            Step::Member(m) => format!("/{}", m.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => format!("/{i}"),
        })
        .collect()
}

/// `template` with every record at `roots` replaced by `record`.
fn with_record(template: &Value, roots: &[String], record: &Value) -> Value {
    let mut body = template.clone();
    let places = records_at(template, roots);
    assert!(!places.is_empty(), "the template has records at {roots:?}");
    for (steps, _) in places {
        if steps.is_empty() {
            body = record.clone();
        } else {
            *body.pointer_mut(&pointer(&steps)).unwrap() = record.clone();
        }
    }
    body
}

/// An upstream that records writes and answers reads with `serve`
/// (JSON, or NDJSON when the body is set through [`NDJSON`]).
fn store_reply(serve: Arc<Mutex<Bytes>>) -> common::Reply {
    Arc::new(move |s: &Seen| {
        let body = if s.method == "GET" {
            serve.lock().unwrap().clone()
        } else {
            Bytes::from_static(b"{}")
        };
        let ndjson = body.starts_with(NDJSON);
        let body = if ndjson {
            body.slice(NDJSON.len()..)
        } else {
            body
        };
        let mut r = Response::new(Full::new(body));
        let ct = if ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        r.headers_mut().insert("content-type", ct.parse().unwrap());
        r
    })
}

/// A prefix on the body `serve` holds: answer it as NDJSON, one record per line.
const NDJSON: &[u8] = b"NDJSON:";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_in_any_shape_opens_in_every_shape() {
    let shapes = shapes();
    let serve = Arc::new(Mutex::new(Bytes::new()));
    let up = recording_upstream(store_reply(serve.clone())).await;
    let sg = ServeProcess::start(up.addr, &matrix_policy(&shapes), "");
    let base = format!("http://{}", sg.proxy);
    let mut reads = 0;
    for w in &shapes {
        for (kind, body) in [("one", &w.one), ("list", &w.list)] {
            let Some(body) = body else { continue };
            let (status, _, text) = send(
                "POST",
                &format!("{base}/w/{}", w.name),
                &[("content-type", "application/json")],
                &body.to_string(),
            )
            .await;
            assert_eq!(status, 200, "write {} {kind}: {text}", w.name);
            let stored = up.requests().last().unwrap().body.clone();
            let stored_text = String::from_utf8_lossy(&stored);
            for plain in [SSN, EMAIL, CARD] {
                assert!(
                    !stored_text.contains(plain),
                    "write {} {kind}: {plain} reached the upstream: {stored_text}",
                    w.name
                );
            }
            let stored: Value = serde_json::from_slice(&stored).unwrap();
            let sealed = records_at(&stored, &w.roots);
            assert!(!sealed.is_empty(), "write {} {kind}: no record", w.name);
            for (_, rec) in &sealed {
                assert!(rec["ssn"].as_str().unwrap().starts_with("sg1."), "{rec}");
                assert!(rec["cards"][0]["number"]
                    .as_str()
                    .unwrap()
                    .starts_with("sg1."));
            }
            let record = &sealed[0].1;
            for r in &shapes {
                for (rkind, template) in [("one", &r.one), ("list", &r.list)] {
                    let Some(template) = template else { continue };
                    let answer = with_record(template, &r.roots, record);
                    *serve.lock().unwrap() = Bytes::from(answer.to_string());
                    let (status, _, text) =
                        send("GET", &format!("{base}/r/{}", r.name), &[], "").await;
                    let what = format!("written as {} {kind}, read as {} {rkind}", w.name, r.name);
                    assert_eq!(status, 200, "{what}: {text}");
                    let got: Value = serde_json::from_str(&text).unwrap();
                    let opened = records_at(&got, &r.roots);
                    assert!(!opened.is_empty(), "{what}: {text}");
                    for (_, rec) in opened {
                        assert_eq!(rec["ssn"], SSN, "{what}: {text}");
                        assert_eq!(rec["email"], EMAIL, "{what}: {text}");
                        assert_eq!(rec["cards"][0]["number"], CARD, "{what}: {text}");
                    }
                    reads += 1;
                }
            }
            // NDJSON (one record per line, an export's shape): each line is a record
            let mut lines = NDJSON.to_vec();
            for _ in 0..2 {
                lines.extend_from_slice(record.to_string().as_bytes());
                lines.push(b'\n');
            }
            *serve.lock().unwrap() = Bytes::from(lines);
            let (status, headers, text) = send("GET", &format!("{base}/r/ndjson"), &[], "").await;
            assert_eq!(
                status, 200,
                "written as {} {kind}, read as ndjson: {text}",
                w.name
            );
            assert_eq!(headers["content-type"], "application/x-ndjson");
            let got: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(got.len(), 2, "{text}");
            for rec in got {
                assert_eq!(rec["ssn"], SSN, "ndjson: {text}");
                assert_eq!(rec["cards"][0]["number"], CARD, "ndjson: {text}");
            }
            reads += 1;
        }
    }
    assert!(reads > 300, "the whole matrix ran: {reads} reads");
}

/// The same value under a wrong label (an absolute selector on a list
/// route, the mistake records fix) is refused, and the error names the
/// route, the field's place and label, and the reason class — never the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_that_does_not_open_is_named_without_its_value() {
    let serve = Arc::new(Mutex::new(Bytes::new()));
    let up = recording_upstream(store_reply(serve.clone())).await;
    let policy = format!(
        r#"
[[route]]
name = "create"
methods = ["POST"]
path = "/users"
key = "users"
context = "users"
request.encrypt = {FIELDS}

[[route]]
name = "list-without-records"
methods = ["GET"]
path = "/users"
key = "users"
context = "users"
response.decrypt = ["$.items[*].ssn"]
"#
    );
    let sg = ServeProcess::start(up.addr, &policy, "");
    let base = format!("http://{}", sg.proxy);
    let (status, _, _) = send(
        "POST",
        &format!("{base}/users"),
        &[("content-type", "application/json")],
        &json!({"ssn": SSN, "email": EMAIL, "cards": [{"number": CARD}]}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let stored: Value = serde_json::from_slice(&up.requests().last().unwrap().body).unwrap();
    *serve.lock().unwrap() = Bytes::from(json!({"items": [stored], "total": 1}).to_string());
    let (status, _, text) = send("GET", &format!("{base}/users"), &[], "").await;
    assert_eq!(status, 502, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(err["error"]["code"], "field_does_not_open", "{text}");
    for part in [
        "route 'list-without-records'",
        "$['items'][0]['ssn']",
        "label 'items.ssn'",
        "wrong label or context",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(!text.contains(SSN) && !text.contains("sg1."), "{text}");
    let line = sg.wait_log("field does not open");
    assert_eq!(line["fields"]["route"], "list-without-records", "{line}");
    assert_eq!(line["fields"]["label"], "items.ssn", "{line}");
    assert_eq!(line["fields"]["reason"], "does_not_open", "{line}");
    assert!(!line.to_string().contains(SSN), "{line}");
}

/// An envelope sealed under another route's key (another tenant's) does not
/// open through a route whose key differs, unless the route lists that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_opens_only_envelopes_of_its_own_keys() {
    let serve = Arc::new(Mutex::new(Bytes::new()));
    let up = recording_upstream(store_reply(serve.clone())).await;
    let route = |name: &str, key: &str, extra: &str| {
        format!(
            r#"
[[route]]
name = "{name}-write"
methods = ["POST"]
path = "/{name}"
key = "{key}"
context = "shared"
request.encrypt = ["$.ssn"]

[[route]]
name = "{name}-read"
methods = ["GET"]
path = "/{name}"
key = "{key}"
context = "shared"
response.decrypt = ["$.ssn"]
{extra}
"#
        )
    };
    let policy = format!(
        "{}{}{}",
        route("a", "tenant-a", ""),
        route("b", "tenant-b", ""),
        route("c", "tenant-c", "open_keys = [\"tenant-a\"]")
    );
    let sg = ServeProcess::start(up.addr, &policy, "");
    let base = format!("http://{}", sg.proxy);
    let (status, _, _) = send(
        "POST",
        &format!("{base}/a"),
        &[("content-type", "application/json")],
        &json!({ "ssn": SSN }).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let planted = up.requests().last().unwrap().body.clone();
    *serve.lock().unwrap() = planted;
    let (status, _, text) = send("GET", &format!("{base}/a"), &[], "").await;
    assert_eq!((status, text.contains(SSN)), (200, true), "{text}");
    let (status, _, text) = send("GET", &format!("{base}/b"), &[], "").await;
    assert_eq!(
        status, 502,
        "tenant b must not open tenant a's envelope: {text}"
    );
    assert!(
        text.contains("foreign_key") && !text.contains(SSN),
        "{text}"
    );
    let (status, _, text) = send("GET", &format!("{base}/c"), &[], "").await;
    assert_eq!(
        (status, text.contains(SSN)),
        (200, true),
        "open_keys: {text}"
    );
}

/// A route that opens every envelope it finds (`open_all`) opens a record
/// sealed bare when it comes back inside a page, and leaves an envelope of
/// a key the route does not name as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_all_finds_records_in_pages_and_only_its_own_keys() {
    let serve = Arc::new(Mutex::new(Bytes::new()));
    let up = recording_upstream(store_reply(serve.clone())).await;
    let policy = r#"
[[route]]
name = "write"
methods = ["POST"]
path = "/users"
key = "users"
context = "users"
request.encrypt = ["$.ssn"]

[[route]]
name = "write-other"
methods = ["POST"]
path = "/other"
key = "other"
context = "users"
request.encrypt = ["$.ssn"]

[[route]]
name = "read-all"
methods = ["GET"]
path = "/users"
key = "users"
context = "users"
open_all = true
"#;
    let sg = ServeProcess::start(up.addr, policy, "");
    let base = format!("http://{}", sg.proxy);
    let mut sealed = Vec::new();
    for path in ["/users", "/other"] {
        let (status, _, _) = send(
            "POST",
            &format!("{base}{path}"),
            &[("content-type", "application/json")],
            &json!({ "ssn": SSN }).to_string(),
        )
        .await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&up.requests().last().unwrap().body).unwrap();
        sealed.push(v);
    }
    *serve.lock().unwrap() = Bytes::from(
        json!({"data": {"users": {"edges": [{"node": sealed[0]}, {"node": sealed[1]}]}}})
            .to_string(),
    );
    let (status, _, text) = send("GET", &format!("{base}/users"), &[], "").await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let edges = &v["data"]["users"]["edges"];
    assert_eq!(edges[0]["node"]["ssn"], SSN, "{text}");
    assert!(
        edges[1]["node"]["ssn"]
            .as_str()
            .unwrap()
            .starts_with("sg1."),
        "another key's envelope stays sealed: {text}"
    );
}
