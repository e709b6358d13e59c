//! What each fuzz target checks, as plain functions of the input bytes.
//!
//! The cargo-fuzz targets in `fuzz_targets/` are one-liners calling these;
//! `tests/fuzz_regressions.rs` includes this file too and replays the seed
//! corpus and every recorded crash through the same functions, so the
//! normal test suite exercises them. A check panics only when sealgate
//! panics or breaks one of the properties asserted here.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;

use sealgate::envelope::{self, CmkRef, Envelope, SealingKey, ValueKind, WrappedDek};
use sealgate::keys::blob;
use sealgate::kms::alibaba::{
    advance, instance, instance_actions, sign as ali_sign, wire as ali_wire,
};
use sealgate::kms::tencent::{sign as tc_sign, wire as tc_wire};
use sealgate::policy::{self, PolicySet, SelectorSet};
use sealgate::secret::{CmkMaterial, DataKey, DekCipher, SecretBytes};

/// Unix time the Tencent seed requests were signed at.
pub const TENCENT_NOW: i64 = 1_795_434_443;
/// Unix time the Alibaba seed requests were signed at.
pub const ALIBABA_NOW: i64 = 1_795_435_286;
/// The made-up Tencent test credential of `tests/sdk/vectors`.
pub const TENCENT_ID: &str = "AKIDsealgateTEST0001";
const TENCENT_SECRET: &str = "sealgate-test-secret-key-0001";
/// The made-up Alibaba test credential of `tests/sdk/vectors`.
pub const ALIBABA_ID: &str = "LTAIsealgateTEST0001";
const ALIBABA_SECRET: &str = "sealgate-test-secret-0001";
/// The client key id of the captured instance-API requests.
pub const INSTANCE_CLIENT_ID: &str = "KAAP.sealgate-test-client-0001";
/// The public half of the captured instance-API client key.
pub const INSTANCE_CLIENT_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAq3HwEq/DJbtgOZTdUHCu\n\
5+oM6l5n9SHMa1FMfLlZlq2Acy8JJWra3Ako0dhgdzO5Wq/b0XXcw262tZj1iyeQ\n\
hqYKM1o6wkHfZVPU2yIO5gfYXpg7S7O80UV/KPjWO6MNp0/KdjALzOVD7KV+jziS\n\
kmRkX7TCSz00XiVTwXStRZLzQmoP3c+xPXib7mrDPxKlsmgq1L5S2vmsPULCaDaK\n\
mlSP8dsRVZ42vxOc5eGFHq1tRiiYgW2hfVfVFcQ0lxUhq/e3j2/ag7I337ZcOE+t\n\
rtnnnXpN8rHmSGsbfC82pDGynipzGmXBav0b7tEt2PmZb+lZGt4oUS2GqBdGHeAK\n\
bwIDAQAB\n\
-----END PUBLIC KEY-----\n";

/// The context every fuzzed envelope is sealed and opened under.
pub const ENVELOPE_CONTEXT: &[u8] = b"route:users|ssn";
/// The context every fuzzed KMS blob is sealed and opened under.
pub const BLOB_CONTEXT: &[u8] = b"{\"a\":\"b\"}";
/// The selectors the rewrite target runs.
pub const REWRITE_SELECTORS: &[&str] = &[
    "$.ssn",
    "$.cards[*].number",
    "$..secret",
    "$.profile",
    "$['a b'].c",
];

/// The fixed sealing key of the envelope target (DEK 0x07…, CMK 0x5a…/3).
pub fn envelope_key() -> SealingKey {
    SealingKey {
        cmk: CmkRef {
            key_id: [0x5a; 16],
            version: 3,
        },
        wrapped: WrappedDek([0xa5; 40]),
        cipher: DekCipher::new(&DataKey::from_bytes([7; 32])),
        remote: None,
    }
}

/// The fixed CMK version and material of the blob target.
pub fn blob_key() -> (CmkRef, CmkMaterial) {
    (
        CmkRef {
            key_id: [0x11; 16],
            version: 7,
        },
        CmkMaterial::from_bytes([3; 32]),
    )
}

// ---------------------------------------------------------------- envelope

fn open_text(text: &str, key: &SealingKey) {
    let Ok(env) = Envelope::parse(text) else {
        return;
    };
    // accessors must agree with each other on any parsed envelope
    let _ = (env.cmk(), env.wrapped(), env.value_kind());
    let len = env.plaintext_len();
    if let Ok(opened) = env.open(&key.cipher, ENVELOPE_CONTEXT) {
        let json = opened.json();
        assert!(
            std::str::from_utf8(json)
                .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()),
            "an opened envelope must be one JSON value"
        );
        if env.value_kind() == ValueKind::Json {
            assert_eq!(json.len(), len, "a JSON value opens to its sealed length");
        }
        assert!(
            env.open(&key.cipher, b"another place").is_err(),
            "an envelope must not open under another context"
        );
    }
}

/// Envelope decoder: `data` as envelope text, then as the decoded bytes
/// behind the `sg1.` prefix (so mutations reach the binary header), then as
/// a JSON value sealed and opened again (round trip, type-preserving).
pub fn envelope(data: &[u8]) {
    let key = envelope_key();
    if let Ok(text) = std::str::from_utf8(data) {
        open_text(text, &key);
    }
    open_text(
        &format!("{}{}", envelope::PREFIX, URL_SAFE_NO_PAD.encode(data)),
        &key,
    );

    // The reference: one JSON value in UTF-8 text. Numbers out of f64's
    // range are valid JSON and are sealed as their exact text.
    // A string must decode (no lone surrogate), as serde_json decodes it.
    let valid = if trim_json_ws(data).first() == Some(&b'"') {
        serde_json::from_slice::<String>(data).is_ok()
    } else {
        std::str::from_utf8(data)
            .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok())
    };
    match envelope::seal_with_nonce(&key, data, ENVELOPE_CONTEXT, [9; 12]) {
        Ok(text) => {
            assert!(valid, "seal accepted a value that is not JSON");
            let env = Envelope::parse(&text).expect("an envelope we sealed parses");
            let opened = env
                .open(&key.cipher, ENVELOPE_CONTEXT)
                .expect("an envelope we sealed opens");
            match env.value_kind() {
                ValueKind::Json => {
                    assert_eq!(
                        opened.json(),
                        trim_json_ws(data),
                        "non-strings keep their exact text"
                    );
                }
                ValueKind::String => {
                    let back: Value =
                        serde_json::from_slice(opened.json()).expect("the opened value is JSON");
                    let original: Value = serde_json::from_slice(data).expect("a JSON string");
                    assert_eq!(back, original, "the string comes back as it went in");
                }
            }
            assert!(env.open(&key.cipher, b"elsewhere").is_err());
        }
        Err(_) => assert!(!valid, "seal refused a valid JSON value"),
    }
}

/// `data` without JSON whitespace (space, tab, LF, CR) at either end.
fn trim_json_ws(data: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = data.iter().position(|b| !ws(b)).unwrap_or(data.len());
    let end = data.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &data[start..end]
}

// ------------------------------------------------------------------ policy

/// Policy loader: `data` as the text of one policy file; when it loads,
/// describing it and matching a few requests must not panic.
pub fn policy_load(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let Ok(set) = PolicySet::from_sources(&[("fuzz.toml".to_string(), text)]) else {
        return;
    };
    let _ = set.describe();
    for (method, host, path) in [
        ("POST", Some("api.example.com"), "/users"),
        ("GET", None, "/users/42/cards/%2e%2e/x"),
        ("PUT", Some("h"), "//a/./b/../c/"),
    ] {
        if let Some(m) = set.match_route(method, host, path) {
            assert!(set.routes().iter().any(|r| std::ptr::eq(r, m.route)));
        }
        let _ = policy::ambiguous_path(path);
    }
}

// ----------------------------------------------------------------- rewrite

/// True when `needle` is `v` or a value nested in it.
fn contains(v: &Value, needle: &Value) -> bool {
    v == needle
        || match v {
            Value::Array(items) => items.iter().any(|i| contains(i, needle)),
            Value::Object(m) => m.values().any(|i| contains(i, needle)),
            _ => false,
        }
}

/// JSON rewrite: the fixed selectors over `data`, each selected value
/// replaced by a marker (every third left alone). When it rewrites, the
/// output is valid JSON, equals the input with exactly the reported spans
/// replaced, and the selectors find markers (or the untouched values) there.
pub fn json_rewrite(data: &[u8]) {
    let selectors = SelectorSet::compile(REWRITE_SELECTORS).expect("fixed selectors compile");
    let base = data.as_ptr() as usize;
    let mut spans: Vec<(usize, usize, Option<Vec<u8>>)> = Vec::new();
    let result = policy::rewrite(data, &selectors, |site| {
        let start = site.raw.as_ptr() as usize - base;
        assert!(
            serde_json::from_slice::<Value>(site.raw).is_ok(),
            "a selected span is one JSON value"
        );
        assert!(!site.label.is_empty(), "no selector here picks the root");
        let n = spans.len();
        let new = (n % 3 != 2).then(|| format!("\"@sealed-{n}@\"").into_bytes());
        spans.push((start, start + site.raw.len(), new.clone()));
        Ok::<_, std::convert::Infallible>(new)
    });
    let parsed = serde_json::from_slice::<Value>(data);
    match result {
        Ok(out) => {
            assert!(parsed.is_ok(), "rewrite accepted a body serde_json refuses");
            let mut expected = Vec::new();
            let mut at = 0;
            let mut replaced = false;
            for (start, end, new) in &spans {
                assert!(*start >= at, "spans are disjoint and in document order");
                if let Some(new) = new {
                    expected.extend_from_slice(&data[at..*start]);
                    expected.extend_from_slice(new);
                    at = *end;
                    replaced = true;
                }
            }
            expected.extend_from_slice(&data[at..]);
            match out {
                None => assert!(!replaced, "replacements were returned but dropped"),
                Some(out) => {
                    assert!(replaced, "output without a replacement");
                    assert_eq!(out, expected, "bytes outside the selected spans changed");
                    let doc: Value =
                        serde_json::from_slice(&out).expect("rewritten body is valid JSON");
                    for sel in &selectors {
                        for node in sel.select(&doc).expect("selector runs on output") {
                            let ok = node
                                .value
                                .as_str()
                                .is_some_and(|s| s.starts_with("@sealed-"))
                                || spans.iter().any(|(s, e, new)| {
                                    new.is_none()
                                        && serde_json::from_slice::<Value>(&data[*s..*e])
                                            .is_ok_and(|v| contains(&v, node.value))
                                });
                            assert!(ok, "a selected value escaped the rewrite");
                        }
                    }
                }
            }
        }
        Err(policy::RewriteError::Unlocatable) => panic!("a selected node was not located"),
        Err(policy::RewriteError::NotJson(_)) => {
            assert!(
                parsed.is_err(),
                "serde_json accepts what the scanner refused"
            )
        }
        Err(_) => {}
    }
}

// ------------------------------------------------------------ raw requests

/// A request in the fuzzers' text form: `METHOD PATH[?QUERY]`, header lines
/// `Name: value`, an empty line, then the body.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl RawRequest {
    /// Parses the text form; `None` when the head is not UTF-8 or malformed.
    pub fn parse(data: &[u8]) -> Option<RawRequest> {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &[][..]),
        };
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.split('\n');
        let (method, target) = lines.next()?.split_once(' ')?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = Vec::new();
        for l in lines {
            let (n, v) = l.split_once(':')?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        Some(RawRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body: body.to_vec(),
        })
    }

    /// The text form.
    pub fn render(&self) -> Vec<u8> {
        let mut out = format!("{} {}", self.method, self.path);
        if !self.query.is_empty() {
            out.push('?');
            out.push_str(&self.query);
        }
        for (n, v) in &self.headers {
            out.push_str(&format!("\n{n}: {v}"));
        }
        out.push_str("\n\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// The header named `name`, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
}

// ----------------------------------------------------------------- tencent

fn tencent_params(action: tc_wire::Action, params: &Value) {
    let _ = tc_wire::parse_request(action, params);
}

/// Tencent request parser: first byte picks the action, the rest is the
/// JSON parameter object, and also flat `a=b&…` parameters in both spellings.
pub fn tencent_wire(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let action = tc_wire::Action::ALL[usize::from(pick) % tc_wire::Action::ALL.len()];
    if let Ok(v) = serde_json::from_slice::<Value>(rest) {
        tencent_params(action, &v);
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(pairs) = tc_sign::form_decode(text) {
            for style in [tc_wire::ParamStyle::Api3, tc_wire::ParamStyle::Legacy] {
                if let Ok(v) = tc_wire::params_from_flat(&pairs, style) {
                    tencent_params(action, &v);
                }
            }
        }
    }
}

/// True when `data` is a request the Tencent checker accepts at [`TENCENT_NOW`].
pub fn tencent_verifies(data: &[u8]) -> bool {
    let Some(raw) = RawRequest::parse(data) else {
        return false;
    };
    let headers = raw.header_refs();
    let parts = tc_sign::RequestParts {
        method: &raw.method,
        path: &raw.path,
        query: &raw.query,
        headers: &headers,
        body: &raw.body,
    };
    let lookup = |id: &str| (id == TENCENT_ID).then(|| SecretBytes::new(TENCENT_SECRET.into()));
    let Ok(v) = tc_sign::verify(
        &parts,
        lookup,
        TENCENT_NOW,
        &tc_sign::VerifyPolicy::default(),
    ) else {
        return false;
    };
    assert_eq!(v.caller.secret_id, TENCENT_ID, "verified as someone else");
    let action = raw
        .header("x-tc-action")
        .or_else(|| {
            v.v1_params.as_ref().and_then(|p| {
                p.iter()
                    .find(|(k, _)| k == "Action")
                    .map(|(_, a)| a.as_str())
            })
        })
        .and_then(|a| tc_wire::parse_action(a).ok());
    if let Some(action) = action {
        match &v.v1_params {
            Some(pairs) => {
                if let Ok(p) = tc_wire::params_from_flat(pairs, tc_wire::ParamStyle::Api3) {
                    tencent_params(action, &p);
                }
            }
            None => {
                if let Ok(p) = serde_json::from_slice::<Value>(&raw.body) {
                    tencent_params(action, &p);
                }
            }
        }
    }
    true
}

/// Tencent signature checker (TC3 and v1) on a request in the text form;
/// a request that verifies goes on to the parameter parser.
pub fn tencent_sign(data: &[u8]) {
    if let Some(raw) = RawRequest::parse(data) {
        if let Some(auth) = raw.header("authorization") {
            let _ = tc_sign::parse_tc3_authorization(auth);
        }
    }
    tencent_verifies(data);
}

// ----------------------------------------------------------------- alibaba

/// Alibaba request parser: first byte picks the action, the rest is the
/// form-encoded parameters.
pub fn alibaba_wire(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let action = ali_wire::Action::ALL[usize::from(pick) % ali_wire::Action::ALL.len()];
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(pairs) = ali_sign::form_decode(text) {
        let _ = ali_wire::parse_request(action, &pairs);
    }
}

/// True when `data` is a request the Alibaba OpenAPI checker accepts at
/// [`ALIBABA_NOW`]; a verified request goes on to the parameter parser.
pub fn alibaba_verifies(data: &[u8]) -> bool {
    let Some(raw) = RawRequest::parse(data) else {
        return false;
    };
    let headers = raw.header_refs();
    let parts = ali_sign::RequestParts {
        method: &raw.method,
        path: &raw.path,
        query: &raw.query,
        headers: &headers,
        body: &raw.body,
    };
    let lookup = |id: &str| (id == ALIBABA_ID).then(|| SecretBytes::new(ALIBABA_SECRET.into()));
    // The cache forgets by its own clock: stand it at the fixed request time.
    let clock = sealgate::clock::ManualClock::new(ALIBABA_NOW.unsigned_abs());
    let nonces = ali_sign::NonceCache::with_clock(16, clock);
    let policy = ali_sign::VerifyPolicy::default();
    let Ok(v) = ali_sign::verify(&parts, lookup, &nonces, ALIBABA_NOW, &policy) else {
        return false;
    };
    assert_eq!(
        v.caller.access_key_id, ALIBABA_ID,
        "verified as someone else"
    );
    assert!(
        ali_sign::verify(&parts, lookup, &nonces, ALIBABA_NOW, &policy).is_err(),
        "a replayed request must be refused"
    );
    if let Ok(action) = ali_wire::parse_action(&v.action) {
        let _ = ali_wire::parse_request(action, &v.params);
    }
    true
}

/// Alibaba signature checker (ACS3 and RPC v1) on a request in the text form.
pub fn alibaba_sign(data: &[u8]) {
    if let Some(raw) = RawRequest::parse(data) {
        if let Some(auth) = raw.header("authorization") {
            let _ = ali_sign::parse_acs3_authorization(auth);
        }
    }
    alibaba_verifies(data);
}

/// True when `data` is an instance-API request whose RSA signature checks
/// out at [`ALIBABA_NOW`] with the captured client key.
pub fn alibaba_instance_verifies(data: &[u8]) -> bool {
    let Some(raw) = RawRequest::parse(data) else {
        return false;
    };
    let headers = raw.header_refs();
    let parts = ali_sign::RequestParts {
        method: &raw.method,
        path: &raw.path,
        query: &raw.query,
        headers: &headers,
        body: &raw.body,
    };
    let _ = instance::string_to_sign(&parts);
    let lookup = |id: &str| {
        (id == INSTANCE_CLIENT_ID)
            .then(|| instance::ClientPublicKey::from_pem(INSTANCE_CLIENT_PEM).ok())
            .flatten()
    };
    instance::verify(&parts, lookup, ALIBABA_NOW).is_ok()
}

/// Alibaba instance API (dkms-gcs): header and RSA signature checks, then
/// the protobuf body of the named action, and the body as an Advance blob.
pub fn alibaba_instance(data: &[u8]) {
    alibaba_instance_verifies(data);
    let Some(raw) = RawRequest::parse(data) else {
        return;
    };
    for action in instance::InstanceAction::ALL {
        let _ = instance_actions::parse(*action, &raw.body);
    }
    let _ = advance::classify(&raw.body);
    let _ = advance::parse_blob(&raw.body);
    // the body as an Encrypt ciphertext: it must not open under a header
    // nothing sealed under
    let (_, material) = blob_key();
    for (algorithm, padding, iv) in [
        (advance::Algorithm::AesGcm, None, vec![0u8; 12]),
        (
            advance::Algorithm::AesCbc,
            Some(advance::PaddingMode::Pkcs7),
            vec![0u8; 16],
        ),
        (
            advance::Algorithm::AesEcb,
            Some(advance::PaddingMode::NoPadding),
            Vec::new(),
        ),
    ] {
        let header = advance::BlobHeader {
            key_id: "fuzz-key".into(),
            key_version_id: "fuzz-key-v1".into(),
            algorithm,
            padding,
            iv,
        };
        assert!(advance::open_detached(&material, &header, &raw.body, b"").is_err());
    }
    if let Some(a) = raw.header("x-kms-apiname") {
        let _ = instance::InstanceAction::from_name(a);
    }
    if let Some(auth) = raw.header("authorization") {
        let _ = B64.decode(auth.trim_start_matches("Bearer ").as_bytes());
    }
}

// -------------------------------------------------------------------- blob

/// KMS ciphertext blob: `data` read as a blob (header, open with the fixed
/// key), and sealed as a plaintext and opened again.
pub fn keys_blob(data: &[u8]) {
    let (cmk, material) = blob_key();
    if let Ok(found) = blob::blob_cmk(data) {
        assert!(data.len() >= blob::BLOB_OVERHEAD);
        if let Ok(plain) =
            blob::open_blob(&material, blob::BlobCipher::Aes256Gcm, data, BLOB_CONTEXT)
        {
            assert_eq!(found, cmk, "a blob opened under a key it does not name");
            assert_eq!(plain.len() + blob::BLOB_OVERHEAD, data.len());
        }
    } else {
        assert!(
            blob::open_blob(&material, blob::BlobCipher::Aes256Gcm, data, BLOB_CONTEXT).is_err()
        );
    }
    let mut rng = rand::rngs::OsRng;
    let sealed = blob::seal_blob(
        cmk,
        &material,
        blob::BlobCipher::Aes256Gcm,
        data,
        BLOB_CONTEXT,
        &mut rng,
    )
    .expect("any plaintext seals");
    assert_eq!(blob::blob_cmk(&sealed).ok(), Some(cmk));
    let opened = blob::open_blob(
        &material,
        blob::BlobCipher::Aes256Gcm,
        &sealed,
        BLOB_CONTEXT,
    )
    .expect("own blob opens");
    assert_eq!(opened.expose(), data);
    assert!(blob::open_blob(&material, blob::BlobCipher::Aes256Gcm, &sealed, b"other").is_err());
}
