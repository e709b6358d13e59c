//! The Tencent KMS legacy API 2.0 (`/v2/index.php`) driven by its own
//! official SDK, `qcloudapi-sdk-python` 2.0.15 (`tests/sdk/tencent_legacy_flow.py`),
//! against the real `sealgate serve` binary with its KMS listener on TLS
//! (the SDK speaks HTTPS only) on an ephemeral port: every key-management
//! action, the access rules (a key-limited, a revoked and a wrong
//! credential), the legacy replay rule (a Nonce + Timestamp is used once),
//! and the audit records of those requests.

mod common;

use std::path::Path;
use std::process::Command;

use common::ServeProcess;
use serde_json::Value;

/// `sealgate ARGS…`, which must succeed; its standard output.
fn sealgate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .envs(common::store_env(args))
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sealgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new credential made through the running server's admin socket
/// (`sealgate credentials create --json`): (id, secret).
fn credential(data: &Path, allow: &[&str]) -> (String, String) {
    let data = data.display().to_string();
    let mut args = vec!["credentials", "create", "--data-dir", &data, "--json"];
    for k in allow {
        args.extend(["--allow-key", k]);
    }
    let v: Value = serde_json::from_str(&sealgate(&args)).unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

/// The `sealgate serve` binary with a TLS KMS listener on 127.0.0.1:0, an
/// audit file, `more` config tables, and the CA its certificate chains to;
/// returns the process, the KMS address and the CA file.
fn serve_kms_over_tls(more: &str) -> (ServeProcess, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let certs = dir.join("certs");
    sealgate(&["dev-cert", "--out", &certs.display().to_string()]);
    let extra = format!(
        "[kms_tls]\ncert_file = \"{{dir}}/certs/server.pem\"\nkey_file = \"{{dir}}/certs/server-key.pem\"\n[audit]\nfile = \"{{dir}}/audit.jsonl\"\n{more}"
    );
    let serve = ServeProcess::start_with_flags(
        dir,
        "127.0.0.1:9".parse().unwrap(),
        "",
        &extra,
        &["--kms-listen", "127.0.0.1:0"],
    );
    let ready = serve.wait_log("KMS listening (Tencent, Alibaba, Infisical dialects)");
    assert_eq!(ready["fields"]["tls"], true, "{ready}");
    let kms = ready["fields"]["listen"].as_str().unwrap().to_string();
    assert_ne!(kms.rsplit(':').next(), Some("443"));
    (serve, kms, certs.join("ca.pem"))
}

/// The flow's JSON lines, and whether it exited 0.
fn run_flow(args: &[String], ca: &Path) -> (bool, Vec<Value>, String) {
    let py = common::sdk_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/tencent_legacy_flow.py");
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .env("SSL_CERT_FILE", ca)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), lines, report)
}

/// The audit file's records (written by the server as it answers).
fn audit_records(serve: &ServeProcess) -> Vec<Value> {
    std::fs::read_to_string(serve.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn legacy_sdk_manages_keys_with_the_v3_access_rules() {
    let (serve, kms, ca) = serve_kms_over_tls("");
    let data = serve.data_dir();
    let (id, secret) = credential(&data, &[]);
    // limited to a key the flow never touches
    sealgate(&[
        "keys",
        "create",
        "--data-dir",
        &data.display().to_string(),
        "--alias",
        "some-other-key",
    ]);
    let (limited_id, limited_secret) = credential(&data, &["some-other-key"]);
    let (revoked_id, revoked_secret) = credential(&data, &[]);
    sealgate(&[
        "credentials",
        "revoke",
        "--data-dir",
        &data.display().to_string(),
        &revoked_id,
    ]);

    let args: Vec<String> = [
        "--endpoint",
        &kms,
        "--secret-id",
        &id,
        "--secret-key",
        &secret,
        "--limited-id",
        &limited_id,
        "--limited-key",
        &limited_secret,
        "--revoked-id",
        &revoked_id,
        "--revoked-key",
        &revoked_secret,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, lines, report) = run_flow(&args, &ca);
    assert!(ok, "legacy flow failed:\n{report}");
    let step = |name: &str| {
        lines
            .iter()
            .find(|l| l["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}:\n{report}"))
    };
    for name in [
        "CreateKey.keyMetadata",
        "SetKeyAttributes.applied",
        "SetKeyAttributes.aliasTaken",
        "Encrypt.disabled",
        "Encrypt.enabled",
        "ListKey.all",
        "ScheduleKeyDeletion.state",
        "CancelKeyDeletion.state",
        "CreateKey.keyUsage",
        "limited.GetKeyAttributes",
        "limited.CreateKey",
        "revoked.DisableKey",
        "wrongSecret.ListKey",
        "replay.second",
        "replay.second.changedNothing",
        "done",
    ] {
        assert_eq!(step(name)["ok"], true, "{name}:\n{report}");
    }
    assert!(lines.iter().all(|l| l["ok"] == true), "{report}");
    let key_id = step("done")["key_id"].as_str().unwrap().to_string();

    // The server's own records of what the legacy SDK did: the action as
    // sent, the key, and the legacy refusal's code (not "ok").
    let audit = audit_records(&serve);
    let has = |action: &str, result: &str, key: Option<&str>| {
        audit.iter().any(|r| {
            r["action"] == format!("kms.tencent.{action}")
                && r["result"] == result
                && key.is_none_or(|k| r["key_id"] == k)
        })
    };
    let key = Some(key_id.as_str());
    assert!(has("CreateKey", "ok", None), "{audit:?}");
    assert!(has("GetKeyAttributes", "ok", key), "{audit:?}");
    assert!(has("SetKeyAttributes", "ok", key), "{audit:?}");
    assert!(has("DisableKey", "ok", key), "{audit:?}");
    assert!(
        has("Encrypt", "ResourceUnavailable.CmkDisabled", key),
        "{audit:?}"
    );
    assert!(
        has("GetKeyAttributes", "AuthFailure.UnauthorizedOperation", key),
        "{audit:?}"
    );
    assert!(
        has("ListKey", "AuthFailure.SignatureFailure", None),
        "{audit:?}"
    );
    assert!(
        has("CreateKey", "InvalidParameterValue.InvalidKeyUsage", None),
        "{audit:?}"
    );
}

#[test]
fn legacy_actions_count_against_the_api3_quota() {
    // GetKeyAttributes runs DescribeKey: its quota (2/s here) holds.
    let (serve, kms, ca) = serve_kms_over_tls("[kms.tencent.quotas]\nDescribeKey = 2\n");
    let (id, secret) = credential(&serve.data_dir(), &[]);
    let args: Vec<String> = [
        "--endpoint",
        &kms,
        "--secret-id",
        &id,
        "--secret-key",
        &secret,
        "--burst",
        "30",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, lines, report) = run_flow(&args, &ca);
    assert!(ok, "burst failed:\n{report}");
    let burst = lines
        .iter()
        .find(|l| l["step"] == "burst")
        .unwrap_or_else(|| panic!("no burst:\n{report}"));
    let codes: Vec<(i64, String)> = burst["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_i64().unwrap(), c[1].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(codes.len(), 30);
    assert!(
        codes[..2].iter().all(|(c, _)| *c == 0),
        "the first 2 are within quota: {codes:?}"
    );
    assert!(
        codes
            .iter()
            .any(|(c, d)| *c == 4400 && d == "RequestLimitExceeded"),
        "30 back-to-back calls at 2/s must hit the quota: {codes:?}"
    );
    assert!(codes
        .iter()
        .all(|(c, d)| *c == 0 || (*c == 4400 && d == "RequestLimitExceeded")));
}
