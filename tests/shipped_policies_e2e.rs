//! The shipped policies, end to end through the real binary, against an
//! upstream that stores records and answers in the shapes the policies'
//! comments describe: create, read one, read the list (wrapped and paged),
//! update, read again. The upstream only ever holds envelopes; every read
//! opens. (`demo.toml` runs against json-server in `json_server_e2e`,
//! `searchable.toml` in `beyond_e2e`; the other four here.)

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{recording_upstream, send, Recorder, Seen, ServeProcess};
use http_body_util::Full;
use hyper::Response;
use serde_json::{json, Value};

type Collections = Arc<Mutex<BTreeMap<String, Vec<Value>>>>;

fn respond(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn find<'a>(docs: &'a mut [Value], id: &str) -> Option<&'a mut Value> {
    docs.iter_mut().find(|d| {
        d.get("id").and_then(Value::as_str) == Some(id)
            || d.get("_id").and_then(Value::as_str) == Some(id)
    })
}

fn merge(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// A REST store: `/users` and `/payments` page lists as `{"items": […]}`;
/// `/db/{c}/…` answers like a CouchDB-style document gateway (`_bulk` takes
/// `{"docs": […]}`, `_find` answers `{"docs": […]}`, `_export` answers
/// `{"rows": [{"id", "doc"}]}`).
fn rest_store(data: Collections) -> common::Reply {
    Arc::new(move |s: &Seen| {
        let path = s.uri.split('?').next().unwrap_or("");
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body: Value = serde_json::from_slice(&s.body).unwrap_or(Value::Null);
        let mut data = data.lock().unwrap();
        let m = s.method.as_str();
        match (m, seg.as_slice()) {
            ("POST", [coll]) => {
                let docs = data.entry(coll.to_string()).or_default();
                let mut rec = body;
                rec["id"] = json!(format!("{}", docs.len() + 1));
                docs.push(rec.clone());
                respond(201, rec)
            }
            ("GET", [coll]) => {
                let docs = data.get(*coll).cloned().unwrap_or_default();
                let total = docs.len();
                respond(
                    200,
                    json!({"items": docs, "next_cursor": null, "total": total}),
                )
            }
            ("GET", ["support", "export"]) => respond(
                200,
                json!(data.get("support/customers").cloned().unwrap_or_default()),
            ),
            ("GET", [coll, id]) => {
                let id = if *id == "me" { "1" } else { id };
                match data.get_mut(*coll).and_then(|d| find(d, id)) {
                    Some(rec) => respond(200, rec.clone()),
                    None => respond(404, json!({"error": "not found"})),
                }
            }
            ("PUT" | "PATCH", [coll, id]) => match data.get_mut(*coll).and_then(|d| find(d, id)) {
                Some(rec) => {
                    merge(rec, &body);
                    respond(200, rec.clone())
                }
                None => respond(404, json!({"error": "not found"})),
            },
            ("PUT", ["db", c, "docs", id]) => {
                let docs = data.entry(format!("db/{c}")).or_default();
                let mut doc = body;
                doc["_id"] = json!(id);
                docs.retain(|d| d["_id"] != json!(id));
                docs.push(doc.clone());
                respond(201, doc)
            }
            ("POST", ["db", c, "docs"]) => {
                let docs = data.entry(format!("db/{c}")).or_default();
                let mut doc = body;
                doc["_id"] = json!(format!("d{}", docs.len() + 1));
                docs.push(doc.clone());
                respond(201, doc)
            }
            ("GET", ["db", c, "docs", id]) => {
                match data.get_mut(&format!("db/{c}")).and_then(|d| find(d, id)) {
                    Some(doc) => respond(200, doc.clone()),
                    None => respond(404, json!({"error": "not_found"})),
                }
            }
            ("POST", ["db", c, "_bulk"]) => {
                let docs = data.entry(format!("db/{c}")).or_default();
                let mut n = 0;
                for d in body["docs"].as_array().cloned().unwrap_or_default() {
                    let mut d = d;
                    d["_id"] = json!(format!("b{}", docs.len() + 1));
                    docs.push(d);
                    n += 1;
                }
                respond(201, json!({"ok": true, "inserted": n}))
            }
            ("POST", ["db", c, "_find"]) => {
                let docs = data.get(&format!("db/{c}")).cloned().unwrap_or_default();
                respond(
                    200,
                    json!({"docs": docs, "bookmark": "g1AAAA", "warning": null}),
                )
            }
            ("POST" | "PUT" | "PATCH", [area @ ("support" | "onboarding"), kind, id]) => {
                let docs = data.entry(format!("{area}/{kind}")).or_default();
                let mut rec = body;
                rec["id"] = json!(id);
                match find(docs, id) {
                    Some(old) => merge(old, &rec),
                    None => docs.push(rec),
                }
                let rec = find(docs, id).map(|r| r.clone()).unwrap_or(Value::Null);
                respond(200, rec)
            }
            ("GET", [area @ ("support" | "onboarding"), kind, id]) => {
                match data
                    .get_mut(&format!("{area}/{kind}"))
                    .and_then(|d| find(d, id))
                {
                    Some(rec) => respond(200, rec.clone()),
                    None => respond(404, json!({"error": "not found"})),
                }
            }
            ("GET", ["db", c, "_export", ..]) => {
                let docs = data.get(&format!("db/{c}")).cloned().unwrap_or_default();
                let rows: Vec<Value> = docs
                    .iter()
                    .map(|d| json!({"id": d["_id"], "key": d["_id"], "doc": d}))
                    .collect();
                respond(
                    200,
                    json!({"total_rows": rows.len(), "offset": 0, "rows": rows}),
                )
            }
            _ => respond(404, json!({"error": "no such route in the test store"})),
        }
    })
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies/examples")
            .join(name),
    )
    .unwrap()
}

struct Api {
    base: String,
    host: &'static str,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("host", self.host)];
        if !text.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        let (status, _, answer) =
            send(method, &format!("{}{path}", self.base), &headers, &text).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        serde_json::from_str(&answer).unwrap()
    }
}

/// No request the upstream saw, and nothing it stores, holds a plaintext.
fn assert_upstream_sealed(up: &Recorder, data: &Collections, plain: &[&str]) {
    for s in up.requests() {
        let body = String::from_utf8_lossy(&s.body);
        for p in plain {
            assert!(
                !body.contains(p),
                "{} {} sent {p} in clear: {body}",
                s.method,
                s.uri
            );
        }
    }
    let stored = serde_json::to_string(&*data.lock().unwrap()).unwrap();
    for p in plain {
        assert!(!stored.contains(p), "the upstream stores {p} in clear");
    }
    assert!(stored.contains("sg1."), "the upstream stores envelopes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_payments_open_in_every_route_lists_included() {
    let data: Collections = Default::default();
    let up = recording_upstream(rest_store(data.clone())).await;
    let sg = ServeProcess::start(up.addr, &shipped("users-payments.toml"), "");
    let api = Api {
        base: format!("http://{}", sg.proxy),
        host: "api.example.com",
    };
    let ann = json!({"name": "Ann", "ssn": "123-45-6789", "email": "ann@example.com",
                     "cards": [{"number": "4111111111111111", "exp": "12/29"}]});
    let created = api.call("POST", "/users", Some(ann)).await;
    assert_eq!(created["ssn"], "123-45-6789", "users-create opens its echo");
    let id = created["id"].as_str().unwrap().to_owned();
    let bob = json!({"name": "Bob", "ssn": "987-65-4320", "email": "bob@example.com", "cards": []});
    api.call("POST", "/users", Some(bob)).await;

    let one = api.call("GET", &format!("/users/{id}"), None).await;
    assert_eq!(one["email"], "ann@example.com");
    assert_eq!(one["cards"][0]["number"], "4111111111111111");
    let me = api.call("GET", "/users/me", None).await;
    assert_eq!(me["ssn"], "123-45-6789");
    let list = api.call("GET", "/users", None).await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][0]["ssn"], "123-45-6789", "{list}");
    assert_eq!(list["items"][1]["email"], "bob@example.com", "{list}");
    assert_eq!(list["items"][0]["cards"][0]["number"], "4111111111111111");

    let updated = api
        .call(
            "PATCH",
            &format!("/users/{id}"),
            Some(json!({"email": "ann@new.example"})),
        )
        .await;
    assert_eq!(updated["email"], "ann@new.example");
    let list = api.call("GET", "/users", None).await;
    assert_eq!(list["items"][0]["email"], "ann@new.example", "{list}");
    assert_eq!(list["items"][0]["ssn"], "123-45-6789", "{list}");

    let pay = json!({"amount": 1200, "card": {"number": "5500005555555559", "holder": "Ann Lee"},
                     "billing_address": "1 Main St"});
    let p = api.call("POST", "/payments", Some(pay)).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let p = api.call("GET", &format!("/payments/{pid}"), None).await;
    assert_eq!(p["card"]["holder"], "Ann Lee");
    let pays = api.call("GET", "/payments", None).await;
    assert_eq!(
        pays["items"][0]["card"]["number"], "5500005555555559",
        "{pays}"
    );
    assert_eq!(pays["items"][0]["billing_address"], "1 Main St", "{pays}");
    assert_eq!(pays["items"][0]["amount"], 1200);

    assert_upstream_sealed(
        &up,
        &data,
        &[
            "123-45-6789",
            "ann@example.com",
            "ann@new.example",
            "4111111111111111",
            "987-65-4320",
            "5500005555555559",
            "Ann Lee",
            "1 Main St",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_open_in_get_find_and_export_bulk_inserts_included() {
    let data: Collections = Default::default();
    let up = recording_upstream(rest_store(data.clone())).await;
    let sg = ServeProcess::start(up.addr, &shipped("documents.toml"), "");
    let api = Api {
        base: format!("http://{}", sg.proxy),
        host: "docs.internal",
    };
    let doc = |name: &str, nid: &str| {
        json!({"patient": {"name": name, "dob": "1980-02-03", "national_id": nid},
               "code": "E11", "notes": [{"at": 1, "text": format!("{name} seen")}]})
    };
    let put = api
        .call(
            "PUT",
            "/db/patients/docs/p-1",
            Some(doc("Ann Lee", "NID-111")),
        )
        .await;
    assert_eq!(put["patient"]["national_id"], "NID-111");
    let ins = api
        .call("POST", "/db/patients/docs", Some(doc("Bob Roe", "NID-222")))
        .await;
    assert_eq!(ins["notes"][0]["text"], "Bob Roe seen");
    let bulk = json!({"docs": [doc("Cy Poe", "NID-333"), doc("Di Wu", "NID-444")]});
    api.call("POST", "/db/patients/_bulk", Some(bulk)).await;

    let got = api.call("GET", "/db/patients/docs/p-1", None).await;
    assert_eq!(got["patient"]["name"], "Ann Lee");
    assert_eq!(got["code"], "E11", "codes stay in clear");
    let found = api
        .call(
            "POST",
            "/db/patients/_find",
            Some(json!({"selector": {"code": "E11"}})),
        )
        .await;
    let names: Vec<&str> = found["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["patient"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ann Lee", "Bob Roe", "Cy Poe", "Di Wu"], "{found}");
    let export = api.call("GET", "/db/patients/_export/2026/12", None).await;
    let rows = export["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[3]["doc"]["patient"]["national_id"], "NID-444",
        "{export}"
    );
    assert_eq!(
        rows[2]["doc"]["notes"][0]["text"], "Cy Poe seen",
        "{export}"
    );

    // a document copied into another collection does not open there
    let sealed = data.lock().unwrap()["db/patients"][0].clone();
    data.lock()
        .unwrap()
        .insert("db/archive".into(), vec![sealed]);
    let (status, _, text) = send(
        "GET",
        &format!("{}/db/archive/docs/p-1", api.base),
        &[("host", "docs.internal")],
        "",
    )
    .await;
    assert_eq!(status, 502, "{text}");
    assert!(!text.contains("Ann Lee"), "{text}");

    assert_upstream_sealed(
        &up,
        &data,
        &[
            "Ann Lee", "NID-111", "Bob Roe", "NID-222", "Cy Poe", "NID-333", "Di Wu", "NID-444",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_reveal_opens_for_support_and_masks_for_everyone_else() {
    let data: Collections = Default::default();
    let up = recording_upstream(rest_store(data.clone())).await;
    // the policy names its JWT key relative to its own file
    let key = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/examples/keys/DEMO-idp-es256.pub.pem");
    let policy = shipped("support-reveal.toml").replace(
        "\"keys/DEMO-idp-es256.pub.pem\"",
        &format!("{:?}", key.display().to_string()),
    );
    let sg = ServeProcess::start(up.addr, &policy, "");
    let base = format!("http://{}", sg.proxy);
    let customer = json!({"name": "Ann", "ssn": "123-45-6789", "notes": "prefers email",
                          "cards": [{"number": "4111111111111111"}]});
    let (status, _, text) = send(
        "POST",
        &format!("{base}/support/customers/7"),
        &[("content-type", "application/json")],
        &customer.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (_, _, text) = send(
        "GET",
        &format!("{base}/support/customers/7"),
        &[("x-role", "support")],
        "",
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ssn"], "123-45-6789", "support sees it: {v}");
    assert_eq!(v["cards"][0]["number"], "4111111111111111");
    let (_, _, text) = send("GET", &format!("{base}/support/customers/7"), &[], "").await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ssn"], "*******6789", "everyone else gets the mask: {v}");
    assert_eq!(
        v["notes"], "prefers email",
        "notes are opened for every caller"
    );
    assert!(
        !text.contains("123-45-6789") && !text.contains("4111111111111111"),
        "{text}"
    );
    // the export (a top-level array) gives envelopes to whoever is not billing
    let (status, _, text) = send(
        "GET",
        &format!("{base}/support/export"),
        &[("x-role", "support")],
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v[0]["ssn"].as_str().unwrap().starts_with("sg1."), "{v}");
    assert_upstream_sealed(
        &up,
        &data,
        &["123-45-6789", "4111111111111111", "prefers email"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_shadow_passes_traffic_and_migrate_seals_on_the_next_write() {
    let data: Collections = Default::default();
    // an account stored in clear before sealgate
    data.lock().unwrap().insert(
        "onboarding/accounts".into(),
        vec![json!({"id": "a1", "iban": "DE89370400440532013000", "phone": "+14155552671"})],
    );
    let up = recording_upstream(rest_store(data.clone())).await;
    let sg = ServeProcess::start(up.addr, &shipped("onboarding.toml"), "");
    let base = format!("http://{}", sg.proxy);
    let call = |m: &'static str, path: String, body: Value| {
        let base = base.clone();
        async move {
            let text = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            let h: &[(&str, &str)] = if text.is_empty() {
                &[]
            } else {
                &[("content-type", "application/json")]
            };
            send(m, &format!("{base}{path}"), h, &text).await
        }
    };
    // shadow: the request passes unchanged
    let (status, _, _) = call(
        "PUT",
        "/onboarding/customers/c1".into(),
        json!({"email": "c@example.com"}),
    )
    .await;
    assert_eq!(status, 200);
    let seen = up.requests().last().unwrap().body.clone();
    assert!(
        String::from_utf8_lossy(&seen).contains("c@example.com"),
        "shadow passes traffic unchanged"
    );
    // migrate: the stored plaintext reads as it is ...
    let (status, _, text) = call("GET", "/onboarding/accounts/a1".into(), Value::Null).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("DE89370400440532013000"), "{text}");
    // ... and the next write seals it
    let (status, _, _) = call(
        "PUT",
        "/onboarding/accounts/a1".into(),
        json!({"iban": "DE89370400440532013000", "phone": "+14155552671"}),
    )
    .await;
    assert_eq!(status, 200);
    let stored = serde_json::to_string(&data.lock().unwrap()["onboarding/accounts"]).unwrap();
    assert!(
        !stored.contains("DE89370400440532013000") && stored.contains("sg1."),
        "{stored}"
    );
    let (_, _, text) = call("GET", "/onboarding/accounts/a1".into(), Value::Null).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["iban"], "DE89370400440532013000", "{v}");
    assert_eq!(v["phone"], "+14155552671", "{v}");
}
