//! Per-caller reveal by a verified JWT claim, end to end through real
//! sockets on 127.0.0.1: a record is written (sealed) through the proxy,
//! then read back with tokens signed HS256 (a shared secret file), RS256 (a
//! PEM public key) and ES256 (a JWKS), and with tokens that must never
//! reveal: the claim missing, expired, signed with another key, `alg: none`,
//! HS256 signed with the RSA public key (algorithm confusion). Keys are
//! generated at test time and named by paths relative to the policy file.
//! The audit log names the rule and why a token was refused — never a token
//! or a claim's value.

mod common;

use common::*;
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const POLICY: &str = r#"
[[route]]
name = "people-write"
methods = ["POST"]
path = "/support/people"
key = "reveal-key"
context = "people"
request.encrypt = ["$.ssn", "$.cards[*].number"]

[[route]]
name = "hs"
methods = ["GET"]
path = "/support/hs/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ jwt_claim = "role", value = "support" }]
mask = "null"
[route.reveal.jwt]
hs256_secret_file = "keys/hs256.secret"

[[route]]
name = "pk"
methods = ["GET"]
path = "/support/pk/{id}"
key = "reveal-key"
context = "people"
response.decrypt = ["$.ssn", "$.cards[*].number"]
[route.reveal]
to = [{ jwt_claim = "groups", value = "support" }]
mask = { keep_last = 4 }
[route.reveal.jwt]
public_key_file = "keys/rsa.pem"
jwks_file = "keys/idp.jwks.json"
issuer = "https://idp.test/"
audience = "sealgate"
"#;

const RECORD: &str =
    r#"{"name":"Ann","ssn":"123-45-6789","cards":[{"number":"4111111111111111"}]}"#;
const SECRET: &[u8] = b"an HS256 secret of 32+ bytes, for tests only\n";

/// Signing keys for the test identity provider.
struct Keys {
    rsa: EncodingKey,
    rsa_public_pem: String,
    ec: EncodingKey,
}

/// A data dir whose policies/ holds the policy and, under policies/keys/,
/// the HS256 secret, the RSA public key (PEM) and the EC key as a JWKS.
fn setup() -> (PathBuf, Keys) {
    let dir = tempfile::tempdir().unwrap().keep();
    let keys_dir = dir.join("policies/keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    std::fs::write(dir.join("policies/jwt.toml"), POLICY).unwrap();
    std::fs::write(keys_dir.join("hs256.secret"), SECRET).unwrap();

    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    std::fs::write(keys_dir.join("rsa.pem"), rsa.public_key_pem()).unwrap();
    let ec = rcgen::KeyPair::generate().unwrap();
    let point = ec.public_key_raw();
    let b64 =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
         "x": b64(&point[1..33]), "y": b64(&point[33..])},
    ]});
    std::fs::write(keys_dir.join("idp.jwks.json"), jwks.to_string()).unwrap();
    let keys = Keys {
        rsa: EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap(),
        rsa_public_pem: rsa.public_key_pem(),
        ec: EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
    };
    (dir, keys)
}

async fn start(dir: &Path, upstream: SocketAddr) -> sealgate::app::App {
    let mut cfg = test_config(dir, &format!("http://{upstream}"));
    cfg.audit.sink = Some(sealgate::config::AuditSink::File(dir.join("audit.jsonl")));
    sealgate::app::start(cfg).await.unwrap()
}

async fn get(app: &sealgate::app::App, path: &str, rid: &str, token: Option<&str>) -> Value {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("x-request-id", rid)];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (status, _, body) = send(
        "GET",
        &format!("http://{}{path}", app.proxy_addr),
        &headers,
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn unsigned(claims: &Value) -> String {
    let b64 =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

#[tokio::test]
async fn only_a_verified_token_with_the_claim_sees_clear_values() {
    let up = recording_upstream(last_post_upstream()).await;
    let (dir, keys) = setup();
    let app = start(&dir, up.addr).await;
    let (status, _, _) = send_json(
        "POST",
        &format!("http://{}/support/people", app.proxy_addr),
        RECORD,
    )
    .await;
    assert_eq!(status, 200);

    let now = get_current_timestamp();
    let secret = EncodingKey::from_secret(&SECRET[..SECRET.len() - 1]);
    let support = json!({"sub": "u1", "role": "support", "exp": now + 300});
    let viewer = json!({"sub": "u2", "role": "viewer", "exp": now + 300});
    let expired = json!({"sub": "u1", "role": "support", "exp": now - 3600});
    let hs = |c: &Value| sign(Algorithm::HS256, None, c, &secret);
    let other_secret = EncodingKey::from_secret(&[7u8; 40]);
    let mut tokens = Vec::new();
    let app_ref = &app;
    let mut read = |rid: &'static str, token: Option<String>| {
        tokens.extend(token.clone());
        async move { get(app_ref, "/support/hs/1", rid, token.as_deref()).await }
    };

    let v = read("hs-ok", Some(hs(&support))).await;
    assert_eq!(v["ssn"], "123-45-6789", "{v}");
    assert_eq!(v["cards"][0]["number"], "4111111111111111");
    assert_eq!(v["name"], "Ann");
    let masked = [
        ("hs-viewer", Some(hs(&viewer))),
        ("hs-expired", Some(hs(&expired))),
        (
            "hs-other-key",
            Some(sign(Algorithm::HS256, None, &support, &other_secret)),
        ),
        ("hs-none", Some(unsigned(&support))),
        ("hs-missing", None),
    ];
    for (rid, token) in masked {
        let v = read(rid, token).await;
        assert_eq!(v["ssn"], Value::Null, "{rid}: {v}");
        assert_eq!(v["cards"][0]["number"], Value::Null, "{rid}: {v}");
        assert_eq!(v["name"], "Ann");
    }

    // public keys: RS256 from a PEM file, ES256 from a JWKS (by kid), iss and aud checked
    let idp = |groups: Value| {
        json!({"sub": "u3", "groups": groups, "exp": now + 300,
               "iss": "https://idp.test/", "aud": "sealgate"})
    };
    let rs = sign(
        Algorithm::RS256,
        None,
        &idp(json!(["ops", "support"])),
        &keys.rsa,
    );
    let es = sign(
        Algorithm::ES256,
        Some("ec-1"),
        &idp(json!(["support"])),
        &keys.ec,
    );
    for (rid, token) in [("rs-ok", &rs), ("es-ok", &es)] {
        let v = get(&app, "/support/pk/1", rid, Some(token.as_str())).await;
        assert_eq!(v["ssn"], "123-45-6789", "{rid}: {v}");
        tokens.push(token.clone());
    }
    let mut wrong_iss = idp(json!(["support"]));
    wrong_iss["iss"] = json!("https://evil.test/");
    let not_support = sign(
        Algorithm::ES256,
        Some("ec-1"),
        &idp(json!(["ops"])),
        &keys.ec,
    );
    // algorithm confusion: HS256 "signed" with the RSA public key as the secret
    let confused = sign(
        Algorithm::HS256,
        None,
        &idp(json!(["support"])),
        &EncodingKey::from_secret(keys.rsa_public_pem.as_bytes()),
    );
    let masked = [
        (
            "pk-iss",
            sign(Algorithm::RS256, None, &wrong_iss, &keys.rsa),
        ),
        ("pk-groups", not_support),
        ("pk-confused", confused),
        ("pk-none", unsigned(&idp(json!(["support"])))),
    ];
    for (rid, token) in &masked {
        let v = get(&app, "/support/pk/1", rid, Some(token.as_str())).await;
        assert_eq!(v["ssn"], "*******6789", "{rid}: {v}");
        assert_eq!(v["cards"][0]["number"], "************1111", "{rid}: {v}");
        tokens.push(token.clone());
    }

    app.shutdown().await;
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    // claim values ("viewer" also names a request id, so look for it as a JSON string)
    for secret in [
        "123-45-6789",
        "4111111111111111",
        "\"viewer\"",
        "\"ops\"",
        "u1",
        "u3",
    ] {
        assert!(!text.contains(secret), "{secret} is in the audit log");
    }
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        assert!(!text.contains(payload), "a token is in the audit log");
        assert!(
            signature.is_empty() || !text.contains(signature),
            "a token signature is in the audit log"
        );
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decision = |rid: &str| {
        lines
            .iter()
            .find(|l| l["action"] == "reveal_fields" && l["request_id"] == rid)
            .unwrap_or_else(|| panic!("no reveal_fields line for {rid}:\n{text}"))
    };
    for (rid, rule) in [
        ("hs-ok", "jwt_claim role"),
        ("rs-ok", "jwt_claim groups"),
        ("es-ok", "jwt_claim groups"),
    ] {
        let d = decision(rid);
        assert_eq!(d["result"], "revealed", "{d}");
        assert_eq!(d["rule"], rule, "{d}");
        assert!(d.get("reason").is_none(), "{d}");
    }
    for (rid, reason) in [
        ("hs-viewer", "jwt_claim role: claim does not match"),
        ("hs-expired", "jwt_claim role: token rejected: expired"),
        (
            "hs-other-key",
            "jwt_claim role: token rejected: bad signature",
        ),
        (
            "hs-none",
            "jwt_claim role: token rejected: alg none (unsigned)",
        ),
        ("hs-missing", "jwt_claim role: no token"),
        ("pk-iss", "jwt_claim groups: token rejected: wrong issuer"),
        ("pk-groups", "jwt_claim groups: claim does not match"),
        (
            "pk-confused",
            "jwt_claim groups: token rejected: alg not accepted",
        ),
        (
            "pk-none",
            "jwt_claim groups: token rejected: alg none (unsigned)",
        ),
    ] {
        let d = decision(rid);
        assert_eq!(d["result"], "masked", "{d}");
        assert!(d.get("rule").is_none(), "{d}");
        assert_eq!(d["reason"], reason, "{d}");
    }
    sealgate::audit::verify_file(&dir.join("audit.jsonl")).unwrap();
}

#[tokio::test]
async fn a_policy_whose_key_file_is_bad_does_not_load_and_says_which() {
    let (dir, _) = setup();
    let policies = dir.join("policies");
    std::fs::write(policies.join("keys/hs256.secret"), b"too short\n").unwrap();
    std::fs::remove_file(policies.join("keys/rsa.pem")).unwrap();
    let err = sealgate::policy::load_dir(&policies)
        .unwrap_err()
        .to_string();
    for want in [
        "route 'hs'",
        "reveal.jwt.hs256_secret_file",
        "at least 32 bytes",
        "route 'pk'",
        "reveal.jwt.public_key_file",
        "rsa.pem",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("too short"),
        "the secret is in the error:\n{err}"
    );
}
