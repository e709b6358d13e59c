//! sealgate in front of a real legacy REST API: json-server (npm) with a
//! JSON file as its database, driven through the shipped demo policy.

mod common;

use common::*;
use serde_json::Value;

const SECRETS: [&str; 6] = [
    "123-45-6789",
    "ann@example.com",
    "4111111111111111",
    "5500005555555559",
    "987-65-4321",
    "bob@example.com",
];

fn is_envelope(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("sg1."))
}

#[tokio::test]
async fn json_server_stores_only_envelopes_and_clients_read_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.json");
    std::fs::write(&db, r#"{"users": []}"#).unwrap();
    let js = json_server(db.clone()).await;

    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/demo.toml");
    std::fs::copy(demo, dir.path().join("policies/demo.toml")).unwrap();
    let app = sealgate::app::start(test_config(dir.path(), &format!("http://{}", js.addr)))
        .await
        .unwrap();
    let base = format!("http://{}", app.proxy_addr);

    // create
    let ann = r#"{"name":"Ann","email":"ann@example.com","ssn":"123-45-6789","cards":[{"number":"4111111111111111","brand":"visa"},{"number":"5500005555555559","brand":"mc"}]}"#;
    let (s, _, b) = send_json("POST", &format!("{base}/users"), ann).await;
    assert_eq!(s, 201, "{b}");
    let created: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        created["ssn"], "123-45-6789",
        "the create response is opened: {b}"
    );
    let id = created["id"].clone();

    // the database file holds envelopes only, including inside arrays of objects
    let (text, v) = db_json(&db, |v| !v["users"][0].is_null()).await;
    for s in SECRETS {
        assert!(!text.contains(s), "{s} is stored in clear: {text}");
    }
    let row = &v["users"][0];
    assert!(
        is_envelope(&row["ssn"]) && is_envelope(&row["email"]),
        "{row}"
    );
    assert!(
        is_envelope(&row["cards"][0]["number"]) && is_envelope(&row["cards"][1]["number"]),
        "{row}"
    );
    assert_eq!(row["name"], "Ann");
    assert_eq!(row["cards"][1]["brand"], "mc");

    // read one and list, through the proxy: the original values
    let (s, _, b) = send("GET", &format!("{base}/users/{id}"), &[], "").await;
    assert_eq!(s, 200, "{b}");
    let one: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(one["ssn"], "123-45-6789");
    assert_eq!(one["email"], "ann@example.com");
    assert_eq!(one["cards"][1]["number"], "5500005555555559");
    let (s, _, b) = send("GET", &format!("{base}/users"), &[], "").await;
    assert_eq!(s, 200, "{b}");
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(list[0]["cards"][0]["number"], "4111111111111111");

    // update (PATCH and PUT): still sealed at rest, read back in clear
    let (s, _, b) = send_json(
        "PATCH",
        &format!("{base}/users/{id}"),
        r#"{"ssn":"987-65-4321"}"#,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = send_json(
        "PUT",
        &format!("{base}/users/{id}"),
        r#"{"name":"Bob","email":"bob@example.com","ssn":"987-65-4321","cards":[]}"#,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (text, v) = db_json(&db, |v| v["users"][0]["name"] == "Bob").await;
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{s} is stored in clear after update: {text}"
        );
    }
    assert!(is_envelope(&v["users"][0]["ssn"]));
    let (_, _, b) = send("GET", &format!("{base}/users/{id}"), &[], "").await;
    let one: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (
            one["name"].as_str(),
            one["email"].as_str(),
            one["ssn"].as_str()
        ),
        (Some("Bob"), Some("bob@example.com"), Some("987-65-4321"))
    );

    // straight from json-server: envelopes
    let (s, _, b) = send("GET", &format!("http://{}/users/{id}", js.addr), &[], "").await;
    assert_eq!(s, 200);
    let raw: Value = serde_json::from_str(&b).unwrap();
    assert!(
        is_envelope(&raw["ssn"]) && is_envelope(&raw["email"]),
        "{raw}"
    );
    app.shutdown().await;
}
