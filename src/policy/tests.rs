use super::*;

fn load(text: &str) -> Result<PolicySet, PolicyError> {
    PolicySet::from_sources(&[("p.toml".to_owned(), text.to_owned())])
}

fn route(name: &str, extra: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\nkey = \"k\"\n{extra}\n")
}

fn matched<'a>(
    set: &'a PolicySet,
    method: &str,
    host: Option<&str>,
    path: &str,
) -> Option<&'a str> {
    set.match_route(method, host, path)
        .map(|m| m.route.name.as_str())
}

fn only_problem(text: &str) -> Problem {
    let err = load(text).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    err.problems.into_iter().next().unwrap()
}

#[test]
fn a_literal_beats_a_param_beats_a_wildcard() {
    let set = load(
        &[
            route("me", "path = \"/users/me\""),
            route("one", "path = \"/users/{id}\""),
            route("rest", "path = \"/users/*\""),
            route("cards", "path = \"/users/{id}/cards\""),
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(matched(&set, "GET", None, "/users/me"), Some("me"));
    assert_eq!(matched(&set, "GET", None, "/users/42"), Some("one"));
    assert_eq!(matched(&set, "GET", None, "/users/42/cards"), Some("cards"));
    assert_eq!(
        matched(&set, "GET", None, "/users/42/files/a"),
        Some("rest")
    );
    assert_eq!(
        matched(&set, "GET", None, "/users"),
        Some("rest"),
        "/* matches zero segments"
    );
    assert_eq!(matched(&set, "GET", None, "/orders/1"), None);
}

#[test]
fn host_then_path_then_methods_decide() {
    let set = load(
        &[
            route("any", "path = \"/users/{id}\""),
            route("get", "path = \"/users/{id}\"\nmethods = [\"GET\"]"),
            route("hosted", "path = \"/users/*\"\nhost = \"api.example.com\""),
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(matched(&set, "GET", None, "/users/1"), Some("get"));
    assert_eq!(matched(&set, "DELETE", None, "/users/1"), Some("any"));
    assert_eq!(
        matched(&set, "GET", Some("API.example.com:8443"), "/users/1"),
        Some("hosted")
    );
    assert_eq!(
        matched(&set, "GET", Some("other.example.com"), "/users/1"),
        Some("get")
    );
}

#[test]
fn spelling_variants_of_a_path_cannot_dodge_a_route() {
    let set = load(&route(
        "one",
        "path = \"/users/{id}\"\nmethods = [\"POST\"]",
    ))
    .unwrap();
    for path in [
        "/users/1",
        "/USERS/1",
        "/users/1/",
        "//users//1",
        "/users/./1",
        "/x/../users/1",
        "/%75sers/1",
        "/users/1?x=/admin",
    ] {
        assert_eq!(matched(&set, "POST", None, path), Some("one"), "{path}");
    }
    assert_eq!(matched(&set, "post", None, "/users/1"), Some("one"));
    assert_eq!(matched(&set, "GET", None, "/users/1"), None);
    assert!(ambiguous_path("/users/./1").is_some());
    assert!(ambiguous_path("/users%2F1").is_some());
    assert!(ambiguous_path("/users//1").is_some());
    assert!(ambiguous_path("/users/1?next=//x").is_none());
    assert!(ambiguous_path("/users/1").is_none());
}

#[test]
fn context_substitutes_decoded_path_params() {
    let set = load(&route(
        "docs",
        "path = \"/db/{collection}/docs/{id}\"\ncontext = \"db:{collection}\"",
    ))
    .unwrap();
    let m = set
        .match_route("GET", None, "/db/pat%69ents/docs/7")
        .unwrap();
    assert_eq!(m.context(), "db:patients");
    assert_eq!(
        m.params,
        vec![
            ("collection".into(), "patients".into()),
            ("id".into(), "7".into())
        ]
    );
    let set = load(&route("plain", "path = \"/a\"")).unwrap();
    assert_eq!(
        set.match_route("GET", None, "/a").unwrap().context(),
        "plain"
    );
}

#[test]
fn content_types_default_to_json_with_any_charset() {
    let set = load(&route("r", "path = \"/a\"")).unwrap();
    let r = &set.routes()[0];
    assert!(r.accepts_content_type(Some("application/json")));
    assert!(r.accepts_content_type(Some("Application/JSON; charset=utf-8")));
    assert!(r.accepts_content_type(Some("application/merge-patch+json")));
    assert!(!r.accepts_content_type(Some("text/plain")));
    assert!(!r.accepts_content_type(Some("application/jsonx")));
    assert!(!r.accepts_content_type(None));
    let set = load(&route(
        "r",
        "path = \"/a\"\ncontent_types = [\"text/plain\"]",
    ))
    .unwrap();
    assert!(set.routes()[0].accepts_content_type(Some("text/plain")));
    assert!(!set.routes()[0].accepts_content_type(Some("application/json")));
}

#[test]
fn defaults_are_the_safe_choices() {
    let set = load(&route("r", "path = \"/a\"")).unwrap();
    let r = &set.routes()[0];
    assert_eq!(r.on_non_json, OnNonJson::Refuse);
    assert_eq!(r.on_plaintext, OnPlaintext::Pass);
    assert_eq!(r.on_open_failure, OnOpenFailure::Refuse);
    assert_eq!(r.max_body_bytes, None);
    assert_eq!(r.rate_limit, None);
    assert!(r.methods().is_none());
}

#[test]
fn every_option_is_read() {
    let set = load(&route(
        "full",
        r#"methods = ["post", "PUT"]
path = "/users/{id}"
host = "API.example.com"
content_types = ["application/json"]
context = "users:{id}"
request.encrypt = ["$.ssn", "$.cards[*].number"]
request.decrypt = ["$.token"]
response.decrypt = ["$.ssn"]
response.encrypt = ["$.note"]
on_non_json = "pass"
on_plaintext = "refuse"
on_open_failure = "keep-envelope"
max_body_bytes = 4194304
rate_limit = { per_second = 50, burst = 100 }"#,
    ))
    .unwrap();
    let r = &set.routes()[0];
    assert_eq!(r.methods().unwrap(), ["POST", "PUT"]);
    assert_eq!(r.host(), Some("api.example.com"));
    assert_eq!(r.request.encrypt.len(), 2);
    assert_eq!(r.request.decrypt.len(), 1);
    assert_eq!(r.response.encrypt.len(), 1);
    assert_eq!(r.on_non_json, OnNonJson::Pass);
    assert_eq!(r.on_plaintext, OnPlaintext::Refuse);
    assert_eq!(r.on_open_failure, OnOpenFailure::KeepEnvelope);
    assert_eq!(r.max_body_bytes, Some(4_194_304));
    assert_eq!(
        r.rate_limit,
        Some(RateLimitSpec {
            per_second: 50,
            burst: 100
        })
    );
    let d = set.describe();
    assert!(d.contains("POST,PUT /users/{id} on api.example.com"), "{d}");
    assert!(
        d.contains("request   encrypt $.ssn, $.cards[*].number"),
        "{d}"
    );
    assert!(d.contains("50 requests/s, burst 100"), "{d}");
}

#[test]
fn problems_name_file_route_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "path = \"/a\"\nrequest.encrypt = [\"$.a\", \"$[\"]",
            "request.encrypt[1]",
            "not a valid JSONPath",
        ),
        (
            "path = \"/a\"\nresponse.decrypt = [\"$\"]",
            "response.decrypt[0]",
            "whole body",
        ),
        ("path = \"users\"", "path", "starts with '/'"),
        ("path = \"/a/*/b\"", "path", "last segment"),
        ("path = \"/a/{id}/{id}\"", "path", "twice"),
        ("path = \"/a/x{id}\"", "path", "neither a literal"),
        (
            "path = \"/a\"\nmethods = [\"PSOT\"]",
            "methods",
            "not an HTTP method",
        ),
        ("path = \"/a\"\nmethods = []", "methods", "omit"),
        (
            "path = \"/a\"\ncontext = \"u:{id}\"",
            "context",
            "not a parameter",
        ),
        ("path = \"/a\"\nhost = \"https://x/\"", "host", "not a host"),
        (
            "path = \"/a\"\ncontent_types = [\"json\"]",
            "content_types",
            "not a media type",
        ),
        (
            "path = \"/a\"\nmax_body_bytes = 0",
            "max_body_bytes",
            "greater than 0",
        ),
        (
            "path = \"/a\"\nrate_limit = { per_second = 0 }",
            "rate_limit.per_second",
            "greater than 0",
        ),
        (
            "path = \"/a\"\non_non_json = \"drop\"",
            "on_non_json",
            "unknown variant",
        ),
        (
            "path = \"/a\"\nrequest.encrpyt = [\"$.a\"]",
            "request",
            "unknown field `encrpyt`",
        ),
        ("path = \"/a\"\ncolour = 1", "colour", "unknown field"),
        (
            "path = \"/a\"\nmethods = \"GET\"",
            "methods",
            "expected a sequence",
        ),
        (
            "path = \"/a\"\nrequest.encrypt = [\"$.a\"]\nrequest.decrypt = [\"$.a\"]",
            "request.decrypt",
            "both encrypted and decrypted",
        ),
    ];
    for (extra, field, words) in cases {
        let p = only_problem(&route("bad-route", extra));
        assert_eq!(p.file, "p.toml", "{extra}");
        assert_eq!(p.route.as_deref(), Some("bad-route"), "{extra}: {p}");
        assert_eq!(p.field.as_deref(), Some(*field), "{extra}: {p}");
        assert!(p.message.contains(words), "{extra}: {p}");
        let shown = p.to_string();
        assert!(
            shown.starts_with("p.toml: route 'bad-route': field"),
            "{shown}"
        );
    }
}

#[test]
fn a_missing_required_field_is_named() {
    let p = only_problem("[[route]]\nname = \"r\"\npath = \"/a\"\n");
    assert_eq!(p.field.as_deref(), Some("key"));
    assert_eq!(p.route.as_deref(), Some("r"));
}

#[test]
fn toml_syntax_errors_name_the_file_and_line() {
    let p = only_problem("[[route]\nname = 1");
    assert_eq!(p.file, "p.toml");
    assert!(p.message.contains("line 1"), "{p}");
    let p = only_problem("routes = 1");
    assert_eq!(p.field.as_deref(), Some("routes"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let err = load(
        &[
            route("a", "path = \"a\""),
            route(
                "b",
                "path = \"/b\"\nmethods = [\"NOPE\"]\nmax_body_bytes = 0",
            ),
        ]
        .concat(),
    )
    .unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
}

#[test]
fn duplicate_names_across_files_are_refused() {
    let err = PolicySet::from_sources(&[
        ("one.toml".into(), route("users", "path = \"/a\"")),
        ("two.toml".into(), route("users", "path = \"/b\"")),
    ])
    .unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.file, "two.toml");
    assert_eq!(p.field.as_deref(), Some("name"));
    assert!(p.message.contains("one.toml"), "{p}");
}

#[test]
fn ambiguous_overlaps_are_refused() {
    let ambiguous = [
        ("path = \"/users/{id}\"", "path = \"/users/{name}\""),
        ("path = \"/users/*\"", "path = \"/USERS/*\""),
        (
            "path = \"/u/{id}\"\nmethods = [\"GET\", \"POST\"]",
            "path = \"/u/{x}\"\nmethods = [\"POST\"]",
        ),
        (
            "path = \"/u\"\nhost = \"a.example\"",
            "path = \"/u\"\nhost = \"A.example\"",
        ),
    ];
    for (a, b) in ambiguous {
        let err = load(&[route("first", a), route("second", b)].concat()).unwrap_err();
        let p = &err.problems[0];
        assert_eq!(p.route.as_deref(), Some("second"));
        assert_eq!(p.field.as_deref(), Some("path"));
        assert!(p.message.contains("'first'"), "{p}");
    }
    let fine = [
        ("path = \"/users/me\"", "path = \"/users/{id}\""),
        ("path = \"/users/{id}\"", "path = \"/users/*\""),
        ("path = \"/{a}/b\"", "path = \"/a/{b}\""),
        (
            "path = \"/u\"\nmethods = [\"GET\"]",
            "path = \"/u\"\nmethods = [\"POST\"]",
        ),
        ("path = \"/u\"\nmethods = [\"GET\"]", "path = \"/u\""),
        (
            "path = \"/u\"\nhost = \"a.example\"",
            "path = \"/u\"\nhost = \"b.example\"",
        ),
        ("path = \"/u\"\nhost = \"a.example\"", "path = \"/u\""),
        ("path = \"/u/{id}\"", "path = \"/v/{id}\""),
    ];
    for (a, b) in fine {
        load(&[route("first", a), route("second", b)].concat())
            .unwrap_or_else(|e| panic!("{a} / {b}: {e}"));
    }
}

#[test]
fn left_most_literal_wins_between_crossed_templates() {
    let set = load(
        &[
            route("pa", "path = \"/{a}/b\""),
            route("ap", "path = \"/a/{b}\""),
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(matched(&set, "GET", None, "/a/b"), Some("ap"));
    assert_eq!(matched(&set, "GET", None, "/z/b"), Some("pa"));
}

#[test]
fn empty_set_matches_nothing() {
    let set = PolicySet::empty();
    assert!(set.match_route("GET", None, "/").is_none());
    assert!(set.describe().contains("no routes"));
    assert!(PolicySet::from_sources(&[]).unwrap().is_empty());
}

#[test]
fn normalized_paths_read_back_into_steps() {
    assert_eq!(
        parse_normalized_path("$['a'][3]['it\\'s \\\\ \\u000b']"),
        Some(vec![
            Step::Member("a".into()),
            Step::Index(3),
            Step::Member("it's \\ \u{b}".into())
        ])
    );
    assert_eq!(parse_normalized_path("$"), Some(vec![]));
    assert_eq!(parse_normalized_path("$.a"), None);
    assert_eq!(parse_normalized_path("$['a'"), None);
    assert_eq!(
        label_of(&parse_normalized_path("$['cards'][3]['number']").unwrap()),
        "cards.number"
    );
    assert_eq!(
        label_of(&parse_normalized_path("$[0]['ssn']").unwrap()),
        "ssn"
    );
}
