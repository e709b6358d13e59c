//! The JSON the docs say a command prints is what it prints: every
//! `sealgate … --json` line in README.md or docs/*.md followed by a
//! `# {…}` comment line is run (its `--data-dir` pointed at a fresh store)
//! and its output must have the documented members; and the member names
//! docs/keys.md lists for `keys create --json` and the `credentials`
//! subcommands are checked against the real output.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn sealgate(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_STORE_URL")
        .env_remove("SEALGATE_ROOT_KEY")
        .current_dir(data.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sealgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sealgate {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A fresh store; its data directory.
fn store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["keys", "init", "--data-dir", d])
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_ROOT_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (dir, data)
}

fn members(v: &Value) -> Vec<String> {
    let mut m: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    m.sort();
    m
}

#[test]
fn every_documented_json_output_has_the_documented_members() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    files.sort();
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, pair) in lines.windows(2).enumerate() {
            let (cmd, shown) = (pair[0].trim(), pair[1].trim());
            let Some(doc_json) = shown.strip_prefix("# ") else {
                continue;
            };
            if !cmd.starts_with("sealgate ") || !cmd.contains("--json") {
                continue;
            }
            let at = format!("{}:{}", file.display(), i + 1);
            let documented: Value = serde_json::from_str(doc_json)
                .unwrap_or_else(|e| panic!("{at}: the documented output is not JSON ({e})"));
            let (_dir, data) = store();
            let mut args: Vec<String> = cmd.split_whitespace().skip(1).map(String::from).collect();
            if let Some(p) = args.iter().position(|a| a == "--data-dir") {
                args[p + 1] = data.display().to_string();
            } else {
                args.extend(["--data-dir".into(), data.display().to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let real = sealgate(&data, &args);
            assert_eq!(
                members(&real),
                members(&documented),
                "{at}: `{cmd}` prints other members than the docs show"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no documented --json output found");
}

#[test]
fn the_json_names_docs_keys_md_lists_are_the_real_ones() {
    let (_dir, data) = store();
    let d = data.to_str().unwrap();
    // "`keys create --json` prints the new key (`KeyId`, `Alias`, `KeyState`, …)"
    let key = sealgate(
        &data,
        &[
            "keys",
            "create",
            "--alias",
            "orders",
            "--data-dir",
            d,
            "--json",
        ],
    );
    for m in ["KeyId", "Alias", "KeyState"] {
        assert!(key.get(m).is_some(), "keys create --json lacks {m}: {key}");
    }
    // "`credentials create --json` prints {"id": "AKID…", "secret": "…"}"
    let cred = sealgate(&data, &["credentials", "create", "--data-dir", d, "--json"]);
    assert_eq!(members(&cred), ["id", "secret"]);
    assert!(cred["id"].as_str().unwrap().starts_with("AKID"), "{cred}");
    // "`list` prints [{"id", "created_at", "revoked", "allowed_keys"}]"
    let list = sealgate(&data, &["credentials", "list", "--data-dir", d, "--json"]);
    let first = &list.as_array().expect("a list")[0];
    assert_eq!(
        members(first),
        ["allowed_keys", "created_at", "id", "revoked"]
    );
    // "`revoke` the revoked credential in that shape"
    let id = cred["id"].as_str().unwrap();
    let revoked = sealgate(
        &data,
        &["credentials", "revoke", id, "--data-dir", d, "--json"],
    );
    assert_eq!(members(&revoked), members(first));
    assert_eq!(revoked["revoked"], true);
}
