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

// ---- the fast path (plain-path selectors) agrees with the general one ----

/// Sites found, or why the body was refused.
type Found = Result<Vec<(usize, usize, String)>, String>;

/// Sites with their labels as `String`s.
fn owned(found: Result<Vec<Site<'_>>, String>) -> Found {
    found.map(|v| {
        v.into_iter()
            .map(|(s, e, l)| (s, e, l.into_owned()))
            .collect()
    })
}

/// Sites found by each path, sorted; or whether each refused the body.
fn both_paths(body: &[u8], sel: &[&str]) -> (Found, Found) {
    let s = set(sel);
    let plans = fast::plans(&s).expect("plain paths");
    let mut f = owned(fast::find(body, plans).map_err(|e| format!("{e:?}")));
    let mut g = owned(general_sites::<()>(body, &s).map_err(|e| format!("{e:?}")));
    for v in [&mut f, &mut g].into_iter().flatten() {
        v.sort();
        v.dedup();
    }
    (f, g)
}

fn assert_paths_agree(body: &[u8], sel: &[&str]) {
    let (f, g) = both_paths(body, sel);
    match (&f, &g) {
        (Ok(a), Ok(b)) => assert_eq!(
            a,
            b,
            "body {:?} selectors {sel:?}",
            String::from_utf8_lossy(body)
        ),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "paths disagree on {:?} with {sel:?}: fast {f:?}, general {g:?}",
            String::from_utf8_lossy(body)
        ),
    }
}

#[test]
fn plain_paths_are_planned_and_others_are_not() {
    use fast::PathStep::*;
    assert_eq!(fast::plan("$"), Some(vec![]));
    assert_eq!(
        fast::plan("$.a['b c'][\"d\"][*].*[12]"),
        Some(vec![
            Name("a".into()),
            Name("b c".into()),
            Name("d".into()),
            Wild,
            Wild,
            Index(12)
        ])
    );
    assert_eq!(fast::plan("$.été_1"), Some(vec![Name("été_1".into())]));
    // compiled once with the selector, the same plan
    let compiled = Selector::compile("$.a[*].b").unwrap();
    assert_eq!(
        compiled.plain_path(),
        Some(&[Name("a".into()), Wild, Name("b".into())][..])
    );
    assert_eq!(Selector::compile("$..a").unwrap().plain_path(), None);
    for other in [
        "$..a",
        "$.a[?@.b]",
        "$[-1]",
        "$[0:2]",
        "$['a','b']",
        "$['a\\'b']",
        "$[ 0 ]",
        "$.1a",
    ] {
        assert_eq!(fast::plan(other), None, "{other}");
    }
}

#[test]
fn fast_path_finds_what_the_general_path_finds() {
    let bodies: &[&[u8]] = &[
        br#"{"ssn":"1","cards":[{"number":"4111","x":1},{"number":2}],"a":{"b":{"c":[1,[2,3]]}}}"#,
        br#"[{"ssn":1},{"ssn":{"ssn":2}},3,"s"]"#,
        br#"{"a.b":1,"a":{"b":2},"s\u0073n":"esc","\\":{"x":[]}}"#,
        br#"{"n":[-0,1.5e+300,0.0,-12E-3,123456789012345678901234567890],"t":true,"f":false,"z":null}"#,
        b" \n{ \"ssn\" : \"\\ud83d\\ude00 \\\" \\/\" , \"e\":{} ,\"l\":[ ]}\t",
        br#""just a string""#,
        b"12",
    ];
    let selectors: &[&[&str]] = &[
        &["$.ssn"],
        &["$[*].ssn", "$[1].ssn.ssn"],
        &["$.cards[*].number", "$.cards[0]"],
        &["$.*", "$.a.b.c[1][0]"],
        &["$['a.b']", "$.a.b", "$.*.x", "$.ssn"],
        &["$.n[*]", "$.n[4]", "$.t"],
        &["$"],
        &["$.a", "$.a.b"],
    ];
    for body in bodies {
        for sel in selectors {
            assert_paths_agree(body, sel);
        }
    }
}

#[test]
fn fast_path_refuses_what_the_general_path_refuses() {
    let bad: &[&[u8]] = &[
        b"",
        b"{",
        b"{\"a\":1,}",
        b"[1,]",
        b"{\"a\" 1}",
        b"01",
        b"-",
        b"1.",
        b"1e",
        b".5",
        b"+1",
        b"1e400",
        b"-1e400",
        b"tru",
        b"nulls",
        b"\"\\ud800\"",
        b"\"\\udc00\"",
        b"\"\\ud800\\u0041\"",
        b"\"\\x\"",
        b"\"a\x01\"",
        b"\"\\u12g4\"",
        b"{\"a\":1}{}",
        b"[1 2]",
        b"{\"a\":1,\"a\":2}",
        b"{\"a\":1,\"\\u0061\":2}",
        b"{1:2}",
        b"\xff",
        b"{\"a\":\"\xc3\x28\"}",
    ];
    for body in bad {
        let (f, g) = both_paths(body, &["$.a"]);
        assert!(
            f.is_err() && g.is_err(),
            "{:?}: fast {f:?}, general {g:?}",
            String::from_utf8_lossy(body)
        );
    }
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    for n in [126, 127, 128, 129] {
        assert_paths_agree(deep(n).as_bytes(), &["$[0]"]);
    }
    let deep_obj = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    for n in [126, 127, 128] {
        assert_paths_agree(deep_obj(n).as_bytes(), &["$.a.a"]);
    }
}

proptest::proptest! {
    #[test]
    fn fast_and_general_paths_agree_on_token_soup(tokens in proptest::collection::vec(0usize..22, 0..24), sel in 0usize..4) {
        const T: [&str; 22] = [
            "{", "}", "[", "]", ",", ":", "\"a\"", "\"b\"", "\"\\u0061\"", "1", "-0.5e3",
            "1e999", "true", "nul", " ", "\"\\ud800\"", "\"x\\n\"", "0", "01", "\"a\":", "{\"a\":", "[{",
        ];
        let body: String = tokens.iter().map(|&i| T[i]).collect();
        let sels: [&[&str]; 4] = [&["$.a"], &["$[*]"], &["$.a[0].b", "$.*"], &["$"]];
        assert_paths_agree(body.as_bytes(), sels[sel]);
    }
}

#[test]
fn plain_run_stops_where_a_string_needs_attention() {
    let slow = |b: &[u8]| {
        b.iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .unwrap_or(b.len())
    };
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"abc".to_vec(),
        b"abcdefghijklmnop".to_vec(),
        "héllo wörld, ünïcode ✓ text".as_bytes().to_vec(),
    ];
    // every special byte at every position of a 20-byte run, after ASCII and after UTF-8
    for special in [b'"', b'\\', 0x00, 0x0a, 0x1f] {
        for at in 0..20 {
            for filler in [b'a', 0xc3, 0xff, 0x20, 0x7f] {
                let mut v = vec![filler; 20];
                v[at] = special;
                cases.push(v);
            }
        }
    }
    for c in &cases {
        assert_eq!(fast::plain_run(c), slow(c), "{c:?}");
    }
}

// ---- record roots: labels relative to the record, on both paths ----

fn sites_in_records(body: &str, roots: &[&str], sel: &[&str]) -> (Found, Found) {
    let roots: Vec<Selector> = roots
        .iter()
        .map(|r| Selector::compile(r).unwrap())
        .collect();
    let s = set(sel).with_records(roots);
    let plans = fast::plans(&s).expect("plain paths");
    let mut f = owned(fast::find(body.as_bytes(), plans).map_err(|e| format!("{e:?}")));
    let mut g = owned(general_sites::<()>(body.as_bytes(), &s).map_err(|e| format!("{e:?}")));
    for v in [&mut f, &mut g].into_iter().flatten() {
        v.sort();
        v.dedup();
    }
    (f, g)
}

fn labels_of(found: &Found) -> Vec<String> {
    found
        .as_ref()
        .unwrap()
        .iter()
        .map(|(_, _, l)| l.clone())
        .collect()
}

#[test]
fn labels_start_at_the_record_whatever_wraps_it() {
    for (body, roots) in [
        (r#"{"ssn":"a","cards":[{"number":"1"}]}"#, vec!["$"]),
        (r#"[{"ssn":"a","cards":[{"number":"1"}]}]"#, vec!["$[*]"]),
        (
            r#"{"items":[{"ssn":"a","cards":[{"number":"1"}]}],"next":"x","ssn":"page"}"#,
            vec!["$.items[*]"],
        ),
        (
            r#"{"data":{"users":{"edges":[{"node":{"ssn":"a","cards":[{"number":"1"}]}}]}}}"#,
            vec!["$.data.user", "$.data.users.edges[*].node"],
        ),
        (
            r#"{"data":[{"type":"u","attributes":{"ssn":"a","cards":[{"number":"1"}]}}]}"#,
            vec!["$.data.attributes", "$.data[*].attributes"],
        ),
    ] {
        let (f, g) = sites_in_records(body, &roots, &["$.ssn", "$.cards[*].number"]);
        assert_eq!(f, g, "{body}");
        assert_eq!(labels_of(&f), ["ssn", "cards.number"], "{body}");
    }
}

#[test]
fn the_innermost_record_labels_a_value_two_roots_reach() {
    // HAL: the page is a record ($) and so is each embedded one
    let body = r#"{"ssn":"top","_embedded":{"users":[{"ssn":"a"}]}}"#;
    let (f, g) = sites_in_records(body, &["$", "$._embedded.users[*]"], &["$.ssn"]);
    assert_eq!(f, g);
    assert_eq!(labels_of(&f), ["ssn", "ssn"]);
    // a descendant selector reaches the embedded one from both roots
    let s = set(&["$..ssn"]).with_records(vec![
        Selector::compile("$").unwrap(),
        Selector::compile("$._embedded.users[*]").unwrap(),
    ]);
    let mut g = general_sites::<()>(body.as_bytes(), &s).unwrap();
    g.sort();
    g.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let labels: Vec<&str> = g.iter().map(|(_, _, l)| &**l).collect();
    assert_eq!(labels, ["ssn", "ssn"]);
}

#[test]
fn member_names_folding_to_a_sealed_name_are_refused_by_both_paths() {
    use super::folds_to;
    assert!(folds_to("SSN", "ssn") && folds_to("Ssn", "ssn"));
    assert!(folds_to("\u{17f}\u{17f}n", "ssn"), "long s folds to s");
    assert!(folds_to("\u{212a}ey", "key"), "KELVIN SIGN folds to k");
    assert!(!folds_to("ssn", "ssn") && !folds_to("ssn_x", "ssn") && !folds_to("ssn", "ss"));
    for body in [
        r#"{"ssn":"x","SSN":"1"}"#,
        r#"{"SSN":"1"}"#,
        "{\"\u{17f}sn\":\"1\"}",
        r#"{"\u017fsn":"1"}"#,
    ] {
        let (f, g) = both_paths(body.as_bytes(), &["$.ssn"]);
        assert!(
            f.as_ref().is_err_and(|e| e.contains("Folded"))
                && g.as_ref().is_err_and(|e| e.contains("FoldedKey")),
            "{body}: fast {f:?}, general {g:?}"
        );
    }
    // only where a plan names the member: `SSN` under `other` is not `$.ssn`
    let (f, _) = both_paths(br#"{"ssn":"1","other":{"SSN":2}}"#, &["$.ssn"]);
    assert!(f.is_ok(), "{f:?}");
}

#[test]
fn duplicates_are_found_in_skipped_objects_of_any_size() {
    // names that share length, first and last byte, and names that do not
    let names: Vec<String> = (0..40)
        .map(|i| match i % 3 {
            0 => format!("k{i:02}k"),
            1 => format!("n{}", "x".repeat(i)),
            _ => format!("{i}"),
        })
        .collect();
    for n in [2, 3, 8, 9, 40] {
        let members: Vec<String> = names[..n]
            .iter()
            .map(|k| format!("\"{k}\":[{{\"{k}\":1}}]"))
            .collect();
        let distinct = format!(r#"{{"ssn":1,"x":{{{}}}}}"#, members.join(","));
        assert_paths_agree(distinct.as_bytes(), &["$.ssn"]);
        assert!(rewrite::<()>(distinct.as_bytes(), &set(&["$.ssn"]), |_| Ok(None)).is_ok());
        for (a, b) in [(0, n - 1), (n / 2, n / 2 + 1), (0, 1)] {
            if b >= n || a == b {
                continue;
            }
            let mut dup = members.clone();
            dup[b] = format!("\"{}\":0", names[a]);
            let body = format!(r#"{{"ssn":1,"x":{{{}}}}}"#, dup.join(","));
            assert!(
                matches!(
                    rewrite_err(body.as_bytes(), &["$.ssn"]),
                    RewriteError::DuplicateKey { offset: 13 }
                ),
                "{body}"
            );
            // the same name spelled with an escape
            let escaped = names[a]
                .replacen('k', "\\u006b", 1)
                .replacen('n', "\\u006e", 1);
            dup[b] = format!("\"{escaped}\":0");
            let body = format!(r#"{{"ssn":1,"x":{{{}}}}}"#, dup.join(","));
            if escaped != names[a] {
                assert!(
                    matches!(
                        rewrite_err(body.as_bytes(), &["$.ssn"]),
                        RewriteError::DuplicateKey { offset: 13 }
                    ),
                    "{body}"
                );
            }
        }
    }
}
