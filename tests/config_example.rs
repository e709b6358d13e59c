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
    let config = load(&all).unwrap_or_else(|e| panic!("{e}\n{all}"));
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    // a key sealgate does not read is refused, so the test above means something
    let err = load(&format!("no_such_key = 1\n{all}")).unwrap_err();
    assert!(err.contains("no_such_key"), "{err}");
}
