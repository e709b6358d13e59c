//! `sealgate.toml.example` is true of the code: with every setting line
//! uncommented it loads (unknown keys are refused, so a key the example
//! names that sealgate does not read fails here), and as shipped it loads
//! too.

use std::path::Path;

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sealgate.toml.example"))
        .unwrap()
}

fn load(text: &str) -> Result<sealgate::config::Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealgate.toml");
    std::fs::write(&file, text).unwrap();
    sealgate::config::load(Some(&file), &sealgate::config::Overrides::default())
        .map_err(|e| e.to_string())
}

#[test]
fn the_example_loads_as_shipped_and_with_every_setting_uncommented() {
    let text = example();
    load(&text).unwrap();
    let mut settings = 0;
    let all: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if !l.starts_with("##") => {
                settings += 1;
                rest.to_owned()
            }
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        // [upstream_tls] applies only to an https:// upstream
        .replace("\"http://127.0.0.1:3000\"", "\"https://127.0.0.1:3000\"");
    assert!(settings > 40, "the example lists every key: {settings}");
    // a [provider] node refuses what only a local store uses (kms_listen,
    // [store] url, root_key_file): every key at once loads with the local
    // kind, and the [provider] table as written loads on its own
    let provider = "kind = \"tencent\"";
    assert_eq!(all.matches(provider).count(), 1);
    let config =
        load(&all.replace(provider, "kind = \"local\"")).unwrap_or_else(|e| panic!("{e}\n{all}"));
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert!(config.provider.is_none() && config.kms_listen.is_some());
    // the shipped example with its [provider] table alone uncommented
    let mut in_provider = false;
    let provider_node: String = text
        .lines()
        .map(|l| {
            in_provider = l.starts_with("# [provider]") || (in_provider && !l.is_empty());
            match l.strip_prefix("# ") {
                Some(rest) if in_provider => rest.to_owned(),
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = load(&provider_node).unwrap_or_else(|e| panic!("{e}\n{provider_node}"));
    assert!(config.provider.is_some());
    let err = load(&all).unwrap_err();
    assert!(
        err.contains("kms_listen") && err.contains("[provider]"),
        "{err}"
    );
    // a key sealgate does not read is refused, so the test above means something
    let err = load(&format!("no_such_key = 1\n{all}")).unwrap_err();
    assert!(err.contains("no_such_key"), "{err}");
}
