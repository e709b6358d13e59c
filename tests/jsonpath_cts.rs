//! The RFC 9535 JSONPath Compliance Test Suite against sealgate's selector layer.
//!
//! Every case runs: valid selectors must compile and yield the expected
//! values and Normalized Paths (in order; for cases with several allowed
//! orders, any of them); invalid selectors must fail to compile. Cases known
//! to fail are listed, each with the reason, in
//! `tests/data/jsonpath-cts-known-failures.txt`; the test fails when an
//! unlisted case fails AND when a listed case passes, so the list stays true.

use std::collections::BTreeMap;
use std::path::Path;

use sealgate::policy::Selector;
use serde_json::Value;

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `name :: why` lines; `#` comments and blank lines skipped.
fn known_failures() -> BTreeMap<String, String> {
    let mut known = BTreeMap::new();
    for (n, line) in data("jsonpath-cts-known-failures.txt").lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, why) = line
            .split_once(" :: ")
            .unwrap_or_else(|| panic!("line {}: expected 'case name :: reason'", n + 1));
        assert!(!why.trim().is_empty(), "line {}: give a reason", n + 1);
        assert!(
            known.insert(name.to_owned(), why.to_owned()).is_none(),
            "line {}: listed twice",
            n + 1
        );
    }
    known
}

/// Runs one case; `Err` says how it failed.
fn run_case(case: &Value) -> Result<(), String> {
    let selector = case["selector"].as_str().ok_or("case has no selector")?;
    if case["invalid_selector"].as_bool() == Some(true) {
        return match Selector::compile(selector) {
            Ok(_) => Err("invalid selector compiled".into()),
            Err(_) => Ok(()),
        };
    }
    let compiled = Selector::compile(selector).map_err(|e| format!("did not compile: {e}"))?;
    let found = compiled
        .select(&case["document"])
        .map_err(|e| format!("select failed: {e}"))?;
    let values: Vec<&Value> = found.iter().map(|s| s.value).collect();
    let paths: Vec<&str> = found.iter().map(|s| s.path.as_str()).collect();

    let expected: Vec<(&Value, Option<&Value>)> = if let Some(one) = case.get("result") {
        vec![(one, case.get("result_paths"))]
    } else {
        let all = case["results"].as_array().ok_or("case has no result(s)")?;
        let all_paths = case.get("results_paths").and_then(Value::as_array);
        all.iter()
            .enumerate()
            .map(|(i, r)| (r, all_paths.and_then(|p| p.get(i))))
            .collect()
    };
    let ok = expected.iter().any(|(want, want_paths)| {
        let values_ok = want
            .as_array()
            .is_some_and(|w| w.iter().collect::<Vec<_>>() == values);
        let paths_ok = match want_paths {
            None => true,
            Some(p) => p.as_array().is_some_and(|w| {
                w.iter().map(Value::as_str).collect::<Vec<_>>()
                    == paths.iter().map(|p| Some(*p)).collect::<Vec<_>>()
            }),
        };
        values_ok && paths_ok
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "got values {} paths {:?}",
            serde_json::to_string(&values).unwrap_or_default(),
            paths
        ))
    }
}

#[test]
fn rfc9535_compliance_suite() {
    let suite: Value = serde_json::from_str(&data("jsonpath-cts/cts.json")).unwrap();
    let cases = suite["tests"].as_array().unwrap();
    let known = known_failures();
    let (mut passed, mut failed_known) = (0, 0);
    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap().to_owned();
        seen.insert(name.clone());
        // A panic inside the engine counts as a failure of that case, not of the run.
        let outcome =
            std::panic::catch_unwind(|| run_case(case)).unwrap_or_else(|_| Err("panicked".into()));
        match (outcome, known.contains_key(&name)) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => now_passing.push(name),
            (Err(_), true) => failed_known += 1,
            (Err(why), false) => unexpected.push(format!("{name}: {why}")),
        }
    }
    let stale: Vec<&String> = known.keys().filter(|k| !seen.contains(*k)).collect();
    println!(
        "JSONPath CTS: {} cases, {passed} pass, {failed_known} known failures, {} unexpected failures, {} listed but passing",
        cases.len(),
        unexpected.len(),
        now_passing.len()
    );
    assert!(
        unexpected.is_empty(),
        "cases failing that are not in the known-failures list:\n{}",
        unexpected.join("\n")
    );
    assert!(
        now_passing.is_empty(),
        "listed as known failures but now pass (remove them from the list):\n{}",
        now_passing.join("\n")
    );
    assert!(stale.is_empty(), "listed cases not in the suite: {stale:?}");
}
