use super::*;
use crate::policy::selector::Selector;

fn set(texts: &[&str]) -> SelectorSet {
    SelectorSet::new(
        texts
            .iter()
            .map(|t| Selector::compile(t).unwrap())
            .collect(),
    )
}

/// Replaces each site with `"<label>=<raw>"` and records what it saw.
fn wrap(body: &str, sel: &[&str]) -> (Option<String>, Vec<(String, String)>) {
    let mut seen = Vec::new();
    let out = rewrite::<std::convert::Infallible>(body.as_bytes(), &set(sel), |site| {
        let raw = String::from_utf8(site.raw.to_vec()).unwrap();
        seen.push((site.label.to_owned(), raw.clone()));
        Ok(Some(
            serde_json::to_vec(&format!("{}={}", site.label, raw)).unwrap(),
        ))
    })
    .unwrap();
    (out.map(|b| String::from_utf8(b).unwrap()), seen)
}

fn rewrite_err(body: &[u8], sel: &[&str]) -> RewriteError<()> {
    rewrite::<()>(body, &set(sel), |_| Ok(Some(b"0".to_vec()))).unwrap_err()
}

#[test]
fn everything_but_the_selected_value_stays_byte_for_byte() {
    let body =
        "{ \"z\" :1.50e+2,\n\t\"ssn\"  :  \"123-45-6789\" ,\"a\":[1, 2 ,3],\"u\":\"\\u00e9\"}\n";
    let (out, seen) = wrap(body, &["$.ssn"]);
    assert_eq!(
        out.unwrap(),
        "{ \"z\" :1.50e+2,\n\t\"ssn\"  :  \"ssn=\\\"123-45-6789\\\"\" ,\"a\":[1, 2 ,3],\"u\":\"\\u00e9\"}\n"
    );
    assert_eq!(seen, vec![("ssn".into(), "\"123-45-6789\"".into())]);
}

#[test]
fn numbers_reach_the_callback_exactly_as_written() {
    let body = r#"{"n": 12345678901234567890.000000000000000001, "m": -0.0, "e": 1E-7}"#;
    let (_, seen) = wrap(body, &["$.n", "$.m", "$.e"]);
    let raws: Vec<&str> = seen.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        raws,
        ["12345678901234567890.000000000000000001", "-0.0", "1E-7"]
    );
}

#[test]
fn array_elements_are_visited_in_document_order_with_indexless_labels() {
    let body = r#"{"cards":[{"number":"4111"},{"x":1},{"number":"5500"}]}"#;
    let (out, seen) = wrap(body, &["$.cards[*].number"]);
    assert_eq!(
        seen,
        vec![
            ("cards.number".into(), "\"4111\"".into()),
            ("cards.number".into(), "\"5500\"".into())
        ]
    );
    assert_eq!(
        out.unwrap(),
        r#"{"cards":[{"number":"cards.number=\"4111\""},{"x":1},{"number":"cards.number=\"5500\""}]}"#
    );
}

#[test]
fn a_list_response_labels_match_the_single_record_labels() {
    let (_, list) = wrap(r#"[{"ssn":"1"},{"ssn":"2"}]"#, &["$[*].ssn"]);
    let (_, one) = wrap(r#"{"ssn":"1"}"#, &["$.ssn"]);
    assert_eq!(list[0].0, one[0].0);
    assert_eq!(list.len(), 2);
}

#[test]
fn whole_objects_and_arrays_can_be_selected() {
    let body = r#"{"a": {"b": [1, {"c": null}]}, "d": true}"#;
    let (out, seen) = wrap(body, &["$.a"]);
    assert_eq!(
        seen,
        vec![("a".into(), r#"{"b": [1, {"c": null}]}"#.into())]
    );
    assert_eq!(
        out.unwrap(),
        r#"{"a": "a={\"b\": [1, {\"c\": null}]}", "d": true}"#
    );
}

#[test]
fn the_same_node_selected_twice_is_visited_once() {
    let (_, seen) = wrap(r#"{"ssn":"x"}"#, &["$.ssn", "$['ssn']", "$..ssn", "$.*"]);
    assert_eq!(seen.len(), 1);
}

#[test]
fn a_node_inside_a_selected_node_is_left_to_the_outer_one() {
    let body = r#"{"card":{"number":"4111","cvc":"123"},"n":{"card":{"number":"1"}}}"#;
    let (out, seen) = wrap(body, &["$.card.number", "$..card", "$.card.cvc"]);
    assert_eq!(
        seen.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["card", "n.card"]
    );
    assert!(out.unwrap().starts_with(r#"{"card":"card={"#));
}

#[test]
fn descendant_selectors_find_every_match() {
    let body = r#"{"ssn":1,"a":{"ssn":2,"b":[{"ssn":3}]}}"#;
    let (_, seen) = wrap(body, &["$..ssn"]);
    let mut labels: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    labels.sort();
    assert_eq!(labels, ["a.b.ssn", "a.ssn", "ssn"]);
}

#[test]
fn many_matches_in_a_large_list_are_all_rewritten() {
    let items: Vec<String> = (0..2000)
        .map(|i| format!(r#"{{"id":{i},"card":{{"number":"{i:016}"}}}}"#))
        .collect();
    let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
    let mut count = 0;
    let out = rewrite::<()>(body.as_bytes(), &set(&["$.items[*].card.number"]), |s| {
        count += 1;
        assert_eq!(s.label, "items.card.number");
        Ok(Some(b"\"sealed\"".to_vec()))
    })
    .unwrap()
    .unwrap();
    assert_eq!(count, 2000);
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["items"][1999]["card"]["number"], "sealed");
    assert_eq!(doc["items"][1999]["id"], 1999);
}

#[test]
fn escaped_member_names_are_found() {
    let body = r#"{"s\u0073n" : "x", "other": "\"}{"}"#;
    let (out, seen) = wrap(body, &["$.ssn"]);
    assert_eq!(seen, vec![("ssn".into(), "\"x\"".into())]);
    assert_eq!(
        out.unwrap(),
        r#"{"s\u0073n" : "ssn=\"x\"", "other": "\"}{"}"#
    );
}

#[test]
fn dots_in_member_names_do_not_collide_with_nesting() {
    let (_, flat) = wrap(r#"{"a.b":1}"#, &["$['a.b']"]);
    let (_, nested) = wrap(r#"{"a":{"b":1}}"#, &["$.a.b"]);
    assert_ne!(flat[0].0, nested[0].0);
}

#[test]
fn nothing_replaced_returns_none() {
    let out = rewrite::<()>(br#"{"a":1}"#, &set(&["$.ssn"]), |_| Ok(Some(vec![]))).unwrap();
    assert!(out.is_none());
    let out = rewrite::<()>(br#"{"ssn":1}"#, &set(&["$.ssn"]), |_| Ok(None)).unwrap();
    assert!(out.is_none());
    let out = rewrite::<()>(b"not json", &SelectorSet::default(), |_| Ok(None)).unwrap();
    assert!(
        out.is_none(),
        "no selectors: nothing parsed, nothing refused"
    );
}

#[test]
fn duplicate_member_names_are_refused_anywhere() {
    assert!(matches!(
        rewrite_err(br#"{"ssn":"1","ssn":"2"}"#, &["$.ssn"]),
        RewriteError::DuplicateKey { offset: 0 }
    ));
    assert!(matches!(
        rewrite_err(br#"{"x":[{"a":1,"b":2,"a":3}]}"#, &["$.ssn"]),
        RewriteError::DuplicateKey { offset: 6 }
    ));
    assert!(matches!(
        rewrite_err(br#"{"ssn":"1","s\u0073n":"2"}"#, &["$.ssn"]),
        RewriteError::DuplicateKey { .. }
    ));
}

#[test]
fn deep_nesting_is_a_clear_error() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        rewrite_err(deep.as_bytes(), &["$.a"]),
        RewriteError::TooDeep
    ));
    let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(rewrite::<()>(fine.as_bytes(), &set(&["$.a"]), |_| Ok(None)).is_ok());
}

#[test]
fn not_json_is_refused_without_echoing_the_body() {
    for bad in [
        &b"{\"ssn\": \"123-45-6789\""[..],
        b"{\"a\":1} trailing",
        b"\xff\xfe{}",
        b"{\"ssn\":\"\xc3\x28\"}",
        b"",
    ] {
        match rewrite_err(bad, &["$.ssn"]) {
            RewriteError::NotJson(msg) => assert!(!msg.contains("123-45"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn callback_errors_stop_the_rewrite() {
    let err = rewrite::<&str>(br#"{"a":1,"b":2}"#, &set(&["$.a", "$.b"]), |s| {
        if s.label == "b" {
            Err("nope")
        } else {
            Ok(Some(b"0".to_vec()))
        }
    })
    .unwrap_err();
    assert!(matches!(err, RewriteError::Field("nope")));
}

#[test]
fn filters_select_by_sibling_values() {
    let body = r#"{"cards":[{"kind":"visa","number":"4111"},{"kind":"gift","number":"99"}]}"#;
    let (_, seen) = wrap(body, &["$.cards[?@.kind == 'visa'].number"]);
    assert_eq!(seen, vec![("cards.number".into(), "\"4111\"".into())]);
}

#[test]
fn member_names_needing_escapes_are_located() {
    let body = r#"{"it's \\ \n \u0001 😀 \"q\"": [1, {"x": 2}]}"#;
    let (out, seen) = wrap(body, &["$.*[1].x"]);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, "2");
    assert!(out
        .unwrap()
        .ends_with(r#"{"x": "it's \\\\ \n \u0001 😀 \"q\".x=2"}]}"#));
}
