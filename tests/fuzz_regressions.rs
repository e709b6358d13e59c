//! The fuzz targets' checks in the normal suite: every seed of
//! `fuzz/seeds/<target>/` and every recorded crash of
//! `fuzz/regressions/<target>/` is replayed through the same function the
//! cargo-fuzz target calls (`fuzz/src/lib.rs`, included here).
//!
//! Regenerate the seeds with
//! `cargo test --test fuzz_regressions -- --ignored write_seed_corpus`.

#[allow(unreachable_pub, dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("envelope", checks::envelope),
    ("policy_load", checks::policy_load),
    ("json_rewrite", checks::json_rewrite),
    ("tencent_wire", checks::tencent_wire),
    ("tencent_sign", checks::tencent_sign),
    ("alibaba_wire", checks::alibaba_wire),
    ("alibaba_sign", checks::alibaba_sign),
    ("alibaba_instance", checks::alibaba_instance),
    ("keys_blob", checks::keys_blob),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    files(&fuzz_dir().join("seeds").join(target))
}

#[test]
fn every_target_has_seeds_and_they_replay_clean() {
    for (name, check) in TARGETS {
        let seeds = seeds(name);
        assert!(
            seeds.len() >= 3,
            "fuzz/seeds/{name} has {} seeds; run write_seed_corpus",
            seeds.len()
        );
        for (path, bytes) in seeds {
            let r = std::panic::catch_unwind(|| check(&bytes));
            assert!(r.is_ok(), "{name} panics on seed {}", path.display());
        }
    }
}

#[test]
fn recorded_crashes_no_longer_crash() {
    for (name, check) in TARGETS {
        for (path, bytes) in files(&fuzz_dir().join("regressions").join(name)) {
            let r = std::panic::catch_unwind(|| check(&bytes));
            assert!(r.is_ok(), "{name} still crashes on {}", path.display());
        }
    }
}

#[test]
fn fuzz_targets_and_the_run_script_name_the_same_targets() {
    let script = std::fs::read_to_string(fuzz_dir().join("run.sh")).unwrap();
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let src = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|_| panic!("fuzz_targets/{name}.rs missing"));
        assert!(
            src.contains(&format!("sealgate_fuzz::{name}(data)")),
            "fuzz_targets/{name}.rs must call the check of the same name"
        );
        assert!(script.contains(name), "run.sh does not run {name}");
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}

/// The signature seeds are real signed requests, so the fuzzer starts past
/// the signature check; a flipped signature byte is refused.
#[test]
fn signature_seeds_verify_and_a_flipped_byte_does_not() {
    for (name, verifies, min) in [
        (
            "tencent_sign",
            checks::tencent_verifies as fn(&[u8]) -> bool,
            4,
        ),
        ("alibaba_sign", checks::alibaba_verifies, 5),
        ("alibaba_instance", checks::alibaba_instance_verifies, 3),
    ] {
        let mut n = 0;
        for (path, bytes) in seeds(name) {
            if !verifies(&bytes) {
                continue;
            }
            n += 1;
            let raw = checks::RawRequest::parse(&bytes).unwrap();
            let mut flipped = raw.clone();
            let at = flipped
                .headers
                .iter()
                .position(|(k, _)| k.eq_ignore_ascii_case("authorization"));
            match at {
                Some(i) => {
                    let v = &mut flipped.headers[i].1;
                    let last = v.pop().unwrap();
                    v.push(if last == 'A' { 'B' } else { 'A' });
                }
                None => {
                    // v1 / RPC: the signature is a query or form parameter
                    flipped.query = flipped.query.replacen("Signature=", "Signature=A", 1);
                    let body = String::from_utf8(flipped.body.clone()).unwrap();
                    flipped.body = body.replacen("Signature=", "Signature=A", 1).into_bytes();
                }
            }
            assert!(
                !verifies(&flipped.render()),
                "{} verifies with a changed signature",
                path.display()
            );
        }
        assert!(n >= min, "only {n} of the {name} seeds verify");
    }
}

/// The envelope seeds include envelopes sealed under the target's fixed key,
/// so the fuzzer mutates real headers and ciphertexts.
#[test]
fn envelope_and_blob_seeds_open_under_the_fixed_keys() {
    let key = checks::envelope_key();
    let opened = seeds("envelope")
        .iter()
        .filter_map(|(_, b)| std::str::from_utf8(b).ok())
        .filter_map(|t| sealgate::envelope::Envelope::parse(t).ok())
        .filter(|e| e.open(&key.cipher, checks::ENVELOPE_CONTEXT).is_ok())
        .count();
    assert!(opened >= 5, "only {opened} envelope seeds open");
    let (_, material) = checks::blob_key();
    let blobs = seeds("keys_blob")
        .iter()
        .filter(|(_, b)| {
            sealgate::keys::blob::open_blob(
                &material,
                sealgate::keys::blob::BlobCipher::Aes256Gcm,
                b,
                checks::BLOB_CONTEXT,
            )
            .is_ok()
        })
        .count();
    assert!(blobs >= 2, "only {blobs} blob seeds open");
}

// ------------------------------------------------------------ seed writer

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = fuzz_dir().join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn raw_from_vector(v: &serde_json::Value) -> checks::RawRequest {
    use base64::Engine as _;
    let body = match (v.get("body"), v.get("body_b64")) {
        (Some(b), _) => b.as_str().unwrap().as_bytes().to_vec(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_str().unwrap())
            .unwrap(),
        _ => Vec::new(),
    };
    checks::RawRequest {
        method: v["method"].as_str().unwrap_or("POST").to_string(),
        path: v["path"].as_str().unwrap_or("/").to_string(),
        query: v["query"].as_str().unwrap_or("").to_string(),
        headers: v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        body,
    }
}

fn vectors(file: &str) -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk/vectors")
        .join(file);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand when the seeds need regenerating"]
fn write_seed_corpus() {
    // envelope: sealed values of every type, raw JSON values, near-misses
    let key = checks::envelope_key();
    let values: &[&str] = &[
        r#""123-45-6789""#,
        r#""esc\"aped\n\u00e9\ud83d\ude00""#,
        "4111111111111111",
        "12345678901234567890.000",
        "-1.5e-300",
        "true",
        "null",
        r#"{"age":41,"tags":["a",{"b":null}]}"#,
        "[1,[2,[3]]]",
        r#""""#,
    ];
    for (i, v) in values.iter().enumerate() {
        let text = sealgate::envelope::seal_with_nonce(
            &key,
            v.as_bytes(),
            checks::ENVELOPE_CONTEXT,
            [i as u8; 12],
        )
        .unwrap();
        write("envelope", &format!("sealed-{i}"), text.as_bytes());
        write("envelope", &format!("value-{i}"), v.as_bytes());
    }
    for (i, t) in ["sg1.", "sg2.AAAA", "sg1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="]
        .iter()
        .enumerate()
    {
        write("envelope", &format!("near-{i}"), t.as_bytes());
    }

    // policy_load: the example policies and a route with every knob
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let shipped = files(&policies)
        .into_iter()
        .chain(files(&policies.join("examples")));
    for (p, bytes) in shipped {
        write(
            "policy_load",
            p.file_name().unwrap().to_str().unwrap(),
            &bytes,
        );
    }
    write(
        "policy_load",
        "full-route.toml",
        br#"
[[route]]
name = "users"
methods = ["POST", "PUT"]
host = "api.example.com"
path = "/users/{id}/cards"
key = "test-key"
context = "users:{id}"
request.encrypt = ["$.ssn", "$.cards[*].number", "$.profile"]
response.decrypt = ["$.ssn", "$.cards[*].number", "$.profile"]
on_plaintext = "refuse"
rate_limit = { per_second = 1, burst = 2 }
"#,
    );

    // json_rewrite: bodies the selectors hit in every way
    for (i, body) in [
        r#"{"name":"Ann","ssn":"123-45-6789","cards":[{"number":"4111","exp":"12/30"},{"number":4222}],"profile":{"age":41}}"#,
        r#"{"x":{"secret":{"secret":[1,2]}},"y":[{"secret":"s"}],"a b":{"c":"d"}}"#,
        r#"  {"ssn" : 1.50e3 , "n":"\u0073sn", "\u0073sn2": null }  "#,
        r#"{"cards":[],"profile":null,"ssn":"ü€😀"}"#,
        "[1,2,3]",
    ]
    .iter()
    .enumerate()
    {
        write("json_rewrite", &format!("body-{i}"), body.as_bytes());
    }

    // tencent_wire: action byte + JSON, and flat parameters
    use sealgate::kms::tencent::wire::Action as TcAction;
    let tc_pos = |a: TcAction| TcAction::ALL.iter().position(|x| *x == a).unwrap() as u8;
    for (i, (a, body)) in [
        (TcAction::Encrypt, r#"{"KeyId":"k1","Plaintext":"aGVsbG8=","EncryptionContext":"{\"a\":\"b\"}"}"#),
        (TcAction::Decrypt, r#"{"CiphertextBlob":"AQID","EncryptionContext":"{}"}"#),
        (TcAction::GenerateDataKey, r#"{"KeyId":"alias/k","KeySpec":"AES_256","NumberOfBytes":32}"#),
        (TcAction::CreateKey, r#"{"Alias":"a-1","Description":"d","KeyUsage":"ENCRYPT_DECRYPT","Tags":[{"TagKey":"t","TagValue":"v"}]}"#),
        (TcAction::ListKeyDetail, r#"{"Offset":0,"Limit":200,"OrderType":1,"KeyState":2,"TagFilters":[{"TagKey":"t","TagValue":["v"]}]}"#),
        (TcAction::ScheduleKeyDeletion, r#"{"KeyId":"k","PendingWindowInDays":7}"#),
        (TcAction::Encrypt, "KeyId=k1&Plaintext=aGVsbG8%3D&Tags.0.TagKey=a"),
        (TcAction::GenerateDataKey, "keyId=k1&numberOfBytes=16"),
    ]
    .iter()
    .enumerate()
    {
        let mut bytes = vec![tc_pos(*a)];
        bytes.extend_from_slice(body.as_bytes());
        write("tencent_wire", &format!("params-{i}"), &bytes);
    }

    // tencent_sign: the captured SDK requests
    for (i, v) in vectors("tencent_python_sdk_3.1.192.jsonl")
        .iter()
        .enumerate()
    {
        write(
            "tencent_sign",
            &format!("sdk-{i}"),
            &raw_from_vector(v).render(),
        );
    }

    // alibaba: OpenAPI requests (sign + wire) and instance-API requests
    use sealgate::kms::alibaba::wire::Action as AliAction;
    for (i, v) in vectors("alibaba_python_sdks.jsonl").iter().enumerate() {
        let raw = raw_from_vector(v);
        if v.get("client_key_id").is_some() {
            write("alibaba_instance", &format!("sdk-{i}"), &raw.render());
            continue;
        }
        write("alibaba_sign", &format!("sdk-{i}"), &raw.render());
        let action = v["action"].as_str().unwrap();
        if let Some(a) = AliAction::ALL.iter().position(|x| x.name() == action) {
            let mut bytes = vec![a as u8];
            let params = if raw.query.is_empty() {
                String::from_utf8(raw.body.clone()).unwrap()
            } else {
                raw.query.clone()
            };
            bytes.extend_from_slice(params.as_bytes());
            write("alibaba_wire", &format!("sdk-{i}"), &bytes);
        }
    }

    // keys_blob: blobs sealed under the fixed key, and plaintexts
    let (cmk, material) = checks::blob_key();
    for (i, pt) in [&b""[..], b"hello", &[0u8; 64]].iter().enumerate() {
        let blob = sealgate::keys::blob::seal_blob(
            cmk,
            &material,
            sealgate::keys::blob::BlobCipher::Aes256Gcm,
            pt,
            checks::BLOB_CONTEXT,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        write("keys_blob", &format!("blob-{i}"), &blob);
        write("keys_blob", &format!("plain-{i}"), pt);
    }
}
