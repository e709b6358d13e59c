//! Every shipped policy file loads, and the examples do what their comments say.

use std::path::{Path, PathBuf};

use sealgate::cli::policy::{run_to, PolicyCommand};
use sealgate::policy::{load_dir, rewrite, PolicySet, Route};

/// The demo's directory: what the README's first command loads.
fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The example policies, a directory of their own.
fn examples_dir() -> PathBuf {
    policies_dir().join("examples")
}

/// Every `*.toml` file the repository ships: the demo and the examples.
fn shipped_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [policies_dir(), examples_dir()] {
        files.extend(
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml")),
        );
    }
    files.sort();
    files
}

/// The demo and every example loaded together, as one set: they must not
/// overlap, so a user can copy any of them beside the demo.
fn shipped() -> PolicySet {
    let sources: Vec<(String, String)> = shipped_files()
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read_to_string(f).unwrap()))
        .collect();
    PolicySet::from_sources(&sources).unwrap_or_else(|e| panic!("{e}"))
}

fn route<'a>(set: &'a PolicySet, method: &str, host: Option<&str>, path: &str) -> &'a Route {
    set.match_route(method, host, path)
        .unwrap_or_else(|| panic!("no route for {method} {path}"))
        .route
}

/// Labels `rewrite` visits for `body` under the given selectors.
fn labels(body: &str, selectors: &sealgate::policy::SelectorSet) -> Vec<String> {
    let mut seen = Vec::new();
    rewrite::<()>(body.as_bytes(), selectors, |site| {
        seen.push(site.label.to_owned());
        Ok(None)
    })
    .unwrap();
    seen.sort();
    seen
}

#[test]
fn every_shipped_policy_file_loads_alone_and_together() {
    let files = shipped_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["demo.toml", "documents.toml", "users-payments.toml"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let mut total = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let set = PolicySet::from_sources(&[(file.display().to_string(), text)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!set.routes().is_empty(), "{} has no routes", file.display());
        for r in set.routes() {
            assert_eq!(r.file(), file.display().to_string());
        }
        total += set.routes().len();
    }
    assert_eq!(shipped().routes().len(), total);
}

#[test]
fn demo_seals_on_write_and_opens_the_same_labels_on_read() {
    let set = shipped();
    let create = set
        .match_route("POST", Some("localhost:8080"), "/users")
        .unwrap();
    let list = set.match_route("GET", None, "/users").unwrap();
    let one = set.match_route("GET", None, "/users/7").unwrap();
    let patch = set.match_route("PATCH", None, "/users/7").unwrap();
    assert_eq!(create.route.name, "demo-users-create");
    assert_eq!(list.route.name, "demo-users-list");
    assert_eq!(one.route.name, "demo-users-read");
    assert_eq!(patch.route.name, "demo-users-update");
    for m in [&create, &list, &one, &patch] {
        assert_eq!(m.route.key, "demo");
        assert_eq!(m.context(), "users");
    }

    let record = r#"{"name":"Ada","ssn":"078-05-1120","email":"ada@example.com","cards":[{"number":"4111111111111111"},{"number":"5500000000000004"}]}"#;
    let sealed = labels(record, &create.route.request.encrypt);
    assert_eq!(sealed, ["cards.number", "cards.number", "email", "ssn"]);
    let listed = labels(
        &format!("[{record},{record}]"),
        &list.route.response.decrypt,
    );
    let mut once = listed.clone();
    once.dedup();
    assert_eq!(once, ["cards.number", "email", "ssn"]);
    assert_eq!(listed.len(), 8);
    assert_eq!(labels(record, &one.route.response.decrypt), sealed);
    assert_eq!(labels(record, &patch.route.request.encrypt), sealed);
    assert!(list.route.request.is_empty());
}

#[test]
fn users_payments_precedence_is_as_documented() {
    let set = shipped();
    let host = Some("api.example.com");
    assert_eq!(route(&set, "GET", host, "/users/me").name, "users-me");
    assert_eq!(route(&set, "GET", host, "/users/42").name, "users-read");
    assert_eq!(
        route(&set, "PUT", host, "/users/42/avatar").name,
        "users-avatar"
    );
    assert_eq!(
        route(&set, "POST", host, "/users/42/notes").name,
        "users-other"
    );
    assert_eq!(route(&set, "DELETE", host, "/users/42").name, "users-other");
    assert_eq!(
        route(&set, "POST", host, "/payments").name,
        "payments-create"
    );
    // Without the API's host, only the host-less demo routes apply.
    assert_eq!(
        route(&set, "GET", None, "/users/42").name,
        "demo-users-read"
    );
    assert!(set.match_route("POST", None, "/payments").is_none());

    let pay = route(&set, "POST", host, "/payments");
    assert!(pay.accepts_content_type(Some("application/vnd.example.payment+json")));
    assert_eq!(pay.max_body_bytes, Some(65536));
    let other = route(&set, "POST", host, "/users/1/x");
    assert_eq!(
        labels(
            r#"{"a":{"ssn":"1"},"b":[{"ssn":"2"}]}"#,
            &other.request.encrypt
        ),
        ["a.ssn", "b.ssn"]
    );
}

#[test]
fn documents_bind_fields_to_their_collection() {
    let set = shipped();
    let host = Some("docs.internal");
    let put = set
        .match_route("PUT", host, "/db/patients/docs/p-1")
        .unwrap();
    assert_eq!(put.route.name, "docs-put");
    assert_eq!(put.context(), "db:patients");
    let get = set
        .match_route("GET", host, "/db/archive/docs/p-1")
        .unwrap();
    assert_eq!(get.context(), "db:archive");
    let doc = r#"{"_id":"p-1","patient":{"name":"A","dob":"1990-01-01","national_id":"X"},"notes":[{"at":1,"text":"n"}]}"#;
    let bulk = set.match_route("POST", host, "/db/patients/_bulk").unwrap();
    assert_eq!(
        labels(
            &format!(r#"{{"docs":[{doc}]}}"#),
            &bulk.route.request.encrypt
        ),
        [
            "notes.text",
            "patient.dob",
            "patient.name",
            "patient.national_id"
        ],
        "a document in a bulk insert has the labels it has when put alone"
    );
    assert_eq!(
        labels(doc, &put.route.request.encrypt),
        labels(
            &format!(r#"{{"docs":[{doc}]}}"#),
            &bulk.route.request.encrypt
        )
    );
    let export = set
        .match_route("GET", host, "/db/patients/_export/2024/01")
        .unwrap();
    assert_eq!(export.route.name, "docs-export");
}

/// `sealgate policy check DIR` on one shipped directory: its stdout.
fn check(dir: PathBuf) -> String {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run_to(
        PolicyCommand::Check {
            dir,
            allow_label_gaps: false,
            data_dir: None,
            root_key_file: None,
            config: None,
        },
        &mut out,
        &mut err,
    )
    .unwrap();
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out).unwrap()
}

#[test]
fn policy_check_describes_the_shipped_sets() {
    let demo = check(policies_dir());
    assert!(demo.contains("route demo-users-create"), "{demo}");
    assert!(
        demo.contains("request   encrypt $.ssn, $.email, $.cards[*].number"),
        "{demo}"
    );
    assert!(demo.contains("policy OK"), "{demo}");
    let examples = check(examples_dir());
    assert!(
        examples.contains("query     seal deterministically: email (as email)"),
        "searchable URL parameters are described: {examples}"
    );
    assert!(examples.contains("policy OK"), "{examples}");
}

#[test]
fn the_demo_directory_holds_the_demo_alone() {
    // The README's first command loads `policies/`: one CMK, `demo`, and no
    // example's key created beside it.
    let set = load_dir(&policies_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!set.routes().is_empty());
    for r in set.routes() {
        assert_eq!(r.key, "demo", "route {} of the demo directory", r.name);
        assert!(r.file().ends_with("demo.toml"), "{}", r.file());
    }
}

#[test]
fn policy_check_reports_every_problem_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[[route]]\nname = \"x\"\nkey = \"k\"\npath = \"/a\"\nrequest.encrypt = [\"$[\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.toml"), "[[route]]\nname = \"y\"\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let failed = run_to(
        PolicyCommand::Check {
            dir: dir.path().to_owned(),
            allow_label_gaps: false,
            data_dir: None,
            root_key_file: None,
            config: None,
        },
        &mut out,
        &mut err,
    )
    .unwrap_err();
    assert_eq!(failed.0.problems.len(), 2);
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.contains("a.toml: route 'x': field 'request.encrypt[0]'"),
        "{err}"
    );
    assert!(err.contains("b.toml: route 'y'"), "{err}");
    assert!(out.is_empty());
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let err = load_dir(Path::new("/nonexistent/policies")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/policies"), "{err}");
}

#[test]
fn onboarding_examples_run_in_shadow_and_migrate_mode() {
    use sealgate::policy::RouteMode;
    let set = shipped();
    let shadow = route(&set, "POST", None, "/onboarding/customers/new");
    assert_eq!(shadow.mode, RouteMode::Shadow);
    let migrate = route(&set, "GET", None, "/onboarding/accounts/7");
    assert_eq!(migrate.mode, RouteMode::Migrate);
    assert!(set.describe().contains("mode      migrate"));
}

#[test]
fn support_reveal_example_reveals_to_four_callers_and_masks_the_rest() {
    use sealgate::policy::{Mask, RevealTo};
    let set = shipped();
    let read = route(&set, "GET", None, "/support/customers/7");
    let reveal = read.reveal.as_ref().expect("the read route has reveal");
    assert_eq!(reveal.mask, Mask::KeepLast(4));
    let fields: Vec<&str> = reveal.fields.iter().map(|s| s.as_str()).collect();
    assert_eq!(fields, ["$.ssn", "$.cards[*].number"]);
    let rules: Vec<String> = reveal.to.iter().map(RevealTo::describe).collect();
    assert_eq!(
        rules,
        [
            "header x-role",
            "cert_subject CN=billing, O=Example Corp",
            "source 10.20.0.0/16",
            "jwt_claim groups"
        ]
    );
    // the jwt_claim rule's key ships beside the policy (a demo public key, ES256)
    let jwt = reveal
        .jwt
        .as_ref()
        .expect("the jwt_claim rule has its keys");
    assert_eq!(jwt.keys.len(), 1);
    assert_eq!(jwt.keys[0].alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(jwt.issuer, ["https://idp.example.com/"]);
    assert_eq!(jwt.audience, ["sealgate-support"]);
    assert!(set
        .describe()
        .contains("JWT from authorization: Bearer verified with ES256"));
    let export = route(&set, "GET", None, "/support/export");
    let reveal = export.reveal.as_ref().unwrap();
    assert_eq!(reveal.mask, Mask::Envelope);
    assert_eq!(
        reveal.fields.len(),
        3,
        "default: every response.decrypt field"
    );
    assert!(
        reveal.open_unmasked.is_empty(),
        "a masked caller gets nothing opened"
    );
    assert!(route(&set, "POST", None, "/support/customers/7")
        .reveal
        .is_none());
}

#[test]
fn policy_check_refuses_key_names_serve_would_refuse() {
    // `policy check` passed these, then `serve` failed at start creating them
    for (key, ok) in [
        ("Demo key!", false),
        ("kms-reserved", false),
        ("-leading-dash", false),
        ("alias/demo", false),
        (&*"k".repeat(61), false),
        ("demo", true),
        ("Orders_2024-v2", true),
        ("0b6e3c42-5b1f-4a7e-9a51-3d0c2f1e8a77", true),
    ] {
        let text = format!(
            "[[route]]\nname = \"r\"\npath = \"/a\"\nkey = {key:?}\n\
             [[route]]\nname = \"s\"\npath = \"/b\"\nkey = \"other\"\nopen_keys = [{key:?}]\n"
        );
        let mut problems = Vec::new();
        let set = PolicySet::from_sources(&[("p.toml".to_string(), text)]);
        match set {
            Ok(_) => assert!(ok, "{key:?} passed the check"),
            Err(e) => {
                assert!(!ok, "{key:?} was refused: {e}");
                problems.extend(e.problems);
            }
        }
        if !ok {
            // the route's key is refused naming the field and the rule
            for field in ["key", "open_keys[0]"] {
                let p = problems
                    .iter()
                    .find(|p| p.field.as_deref() == Some(field))
                    .unwrap_or_else(|| panic!("{key:?} {field}: {problems:?}"));
                assert!(
                    p.message.contains("neither a KeyId nor a valid alias")
                        && p.message.contains(key),
                    "{p}"
                );
            }
        }
    }
}

#[test]
fn policy_check_with_a_data_dir_reports_keys_the_store_lacks() {
    use sealgate::keys::{KeyStore, RootKeySource, StoreOptions};
    let tmp = tempfile::tempdir().unwrap();
    let (data, keyfile) = (tmp.path().join("data"), tmp.path().join("root.key"));
    KeyStore::open(
        &data,
        RootKeySource::File(keyfile.clone()),
        StoreOptions::default(),
    )
    .unwrap()
    .create_alias_key("present", "")
    .unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.toml"),
        "[[route]]\nname = \"a\"\npath = \"/a\"\nkey = \"present\"\n\
         [[route]]\nname = \"b\"\npath = \"/b\"\nkey = \"absent\"\n\
         [[route]]\nname = \"c\"\npath = \"/c\"\nkey = \"present\"\nopen_keys = [\"gone\"]\n",
    )
    .unwrap();
    let check = |data_dir: Option<PathBuf>| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = run_to(
            PolicyCommand::Check {
                dir: policies.clone(),
                allow_label_gaps: true,
                data_dir,
                root_key_file: Some(keyfile.clone()),
                config: None,
            },
            &mut out,
            &mut err,
        );
        (r, String::from_utf8(err).unwrap())
    };
    // without a store, only the files are checked
    assert!(check(None).0.is_ok());
    let (r, err) = check(Some(data.clone()));
    let problems = r.unwrap_err().0.problems;
    assert_eq!(problems.len(), 2, "{err}");
    let file = policies.join("p.toml").display().to_string();
    assert!(
        err.contains(&format!("{file}: route 'b': field 'key'"))
            && err.contains("key 'absent' is not in the key store"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}: route 'c': field 'open_keys'"))
            && err.contains("key 'gone'"),
        "{err}"
    );
    assert!(!err.contains("'present'"), "{err}");
    // a data dir without a store is a problem naming it, and stays uncreated
    let typo = tmp.path().join("typo");
    let (r, err) = check(Some(typo.clone()));
    assert!(r.is_err());
    assert!(
        err.contains(&format!("no key store in {}", typo.display())),
        "{err}"
    );
    assert!(!typo.exists());
}
