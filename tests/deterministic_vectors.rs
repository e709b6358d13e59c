//! Known-answer tests for the deterministic field envelope, `sgd1.`
//! (tests/data/deterministic_vectors.json, written by
//! tests/tools/deterministic_vectors.py with Python's AES-GCM-SIV from the
//! documented layout), and for the AES-256-GCM-SIV primitive against RFC 8452.
//!
//! Expected values come from the file; the code under test only ever
//! produces the values compared against them.

use std::sync::Arc;

use aes_gcm_siv::aead::{Aead, AeadInPlace, Payload};
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sealgate::envelope::{
    looks_deterministic, seal_deterministic, CmkRef, DetEnvelope, DetKey, EnvelopeError, WrappedDek,
};
use sealgate::keys::{CacheConfig, DataKeyCache, KeyError, KeyProvider};
use sealgate::secret::{CmkMaterial, DataKey};
use serde_json::Value;
use sha2::Sha256;

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/deterministic_vectors.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hex_array<const N: usize>(v: &Value) -> [u8; N] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// One vector's inputs, read from the file.
struct Inputs {
    key_id: [u8; 16],
    version: u32,
    material: [u8; 32],
    route_context: String,
    /// `route_context || 0x00 || label`: what the AAD binds.
    field_context: Vec<u8>,
}

fn inputs(doc: &Value, v: &Value) -> Inputs {
    let version = u32::try_from(v["cmk_version"].as_u64().unwrap()).unwrap();
    let route_context = v["route_context"].as_str().unwrap().to_string();
    let mut field_context = route_context.as_bytes().to_vec();
    field_context.push(0);
    field_context.extend_from_slice(v["label"].as_str().unwrap().as_bytes());
    Inputs {
        key_id: hex_array(&doc["cmk_key_id_hex"]),
        version,
        material: hex_array(&doc["cmk_material_hex"][version.to_string()]),
        route_context,
        field_context,
    }
}

impl Inputs {
    fn cmk(&self) -> CmkRef {
        CmkRef {
            key_id: self.key_id,
            version: self.version,
        }
    }

    /// The derived key, as documented, with the raw HMAC.
    fn documented_key(&self) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.material).unwrap();
        mac.update(b"sealgate derive v1\0");
        mac.update(b"deterministic field\0");
        mac.update(self.route_context.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The key as the code under test derives it.
    fn det_key(&self) -> DetKey {
        let label = [b"deterministic field\0", self.route_context.as_bytes()].concat();
        let key =
            sealgate::keys::derive::derive_key(&CmkMaterial::from_bytes(self.material), &label);
        DetKey::new(self.cmk(), &key)
    }
}

/// Rebuilds each valid vector from the layout as documented (module rustdoc
/// of `envelope::deterministic` and the README) with the raw HMAC and
/// AES-GCM-SIV crates, so the document, the file and the code cannot drift.
#[test]
fn valid_vectors_follow_the_documented_layout() {
    let doc = vectors();
    let valid = doc["valid"].as_array().unwrap();
    assert!(valid.len() >= 10);
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let inp = inputs(&doc, v);
        let dk = inp.documented_key();
        assert_eq!(
            hex::encode(dk),
            v["derived_key_hex"].as_str().unwrap(),
            "{name}"
        );
        let value = v["value"].as_str().unwrap();
        let (kind, plaintext) = match serde_json::from_str::<Value>(value) {
            Ok(Value::String(s)) => (1u8, s.into_bytes()),
            _ => (0u8, value.trim().as_bytes().to_vec()),
        };
        let mut header = vec![kind];
        header.extend_from_slice(&inp.key_id);
        header.extend_from_slice(&leb128(u64::from(inp.version)));
        let mut aad = b"sgd1".to_vec();
        aad.extend_from_slice(&header);
        aad.extend_from_slice(&leb128(inp.field_context.len() as u64));
        aad.extend_from_slice(&inp.field_context);
        let sealed = Aes256GcmSiv::new(&dk.into())
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .unwrap();
        let mut raw = header;
        raw.extend_from_slice(&sealed);
        let text = format!("sgd1.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(text, v["envelope"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn valid_vectors_seal_to_the_exact_text_and_open() {
    let doc = vectors();
    for v in doc["valid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let inp = inputs(&doc, v);
        let key = inp.det_key();
        let value = v["value"].as_str().unwrap().as_bytes();
        let expect = v["envelope"].as_str().unwrap();

        let sealed = seal_deterministic(&key, value, &inp.field_context).unwrap();
        assert_eq!(sealed, expect, "{name}");
        assert!(looks_deterministic(&sealed), "{name}");

        let env = DetEnvelope::parse(expect).unwrap();
        assert_eq!(env.cmk(), inp.cmk(), "{name}");
        let opened = env.open(&key, &inp.field_context).unwrap();
        assert_eq!(
            std::str::from_utf8(opened.json()).unwrap(),
            v["opened"].as_str().unwrap(),
            "{name}"
        );
        let a: Value = serde_json::from_slice(opened.json()).unwrap();
        let b: Value = serde_json::from_slice(value).unwrap();
        assert_eq!(a, b, "{name}");
    }
}

/// A provider holding one CMK version's material, deriving as documented
/// (not through `keys::derive`), so the data-key cache's label is checked.
struct OneVersion {
    cmk: CmkRef,
    material: [u8; 32],
}

impl KeyProvider for OneVersion {
    fn generate_data_key(&self, _: &str) -> Result<(CmkRef, WrappedDek, DataKey), KeyError> {
        Err(KeyError::UnsupportedKeyUsage)
    }

    fn unwrap_data_key(&self, _: &CmkRef, _: &WrappedDek) -> Result<DataKey, KeyError> {
        Err(KeyError::UnsupportedKeyUsage)
    }

    fn derive_key(
        &self,
        key: &str,
        version: Option<u32>,
        label: &[u8],
    ) -> Result<(CmkRef, DataKey), KeyError> {
        let ours = key == "people-key"
            || key == sealgate::keys::KeyId::from_bytes(self.cmk.key_id).to_string();
        if !ours || version.is_some_and(|n| n != self.cmk.version) {
            return Err(KeyError::CmkNotFound);
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.material).unwrap();
        mac.update(b"sealgate derive v1\0");
        mac.update(label);
        Ok((
            self.cmk,
            DataKey::from_bytes(mac.finalize().into_bytes().into()),
        ))
    }
}

/// The path the proxy and `sealgate rewrap` take: the data-key cache asks
/// the provider for the route context's key, by alias (sealing, primary)
/// and by CMK version (opening).
#[test]
fn the_data_key_cache_derives_the_documented_key() {
    let doc = vectors();
    for v in doc["valid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let inp = inputs(&doc, v);
        let cache = DataKeyCache::with_system_clock(
            Arc::new(OneVersion {
                cmk: inp.cmk(),
                material: inp.material,
            }),
            CacheConfig::default(),
        );
        let sealer = cache
            .deterministic_key("people-key", inp.route_context.as_bytes())
            .unwrap();
        assert_eq!(sealer.cmk, inp.cmk(), "{name}");
        let value = v["value"].as_str().unwrap().as_bytes();
        let sealed = seal_deterministic(&sealer, value, &inp.field_context).unwrap();
        assert_eq!(sealed, v["envelope"].as_str().unwrap(), "{name}");
        let opener = cache
            .deterministic_opening_key(&inp.cmk(), inp.route_context.as_bytes())
            .unwrap();
        let opened = DetEnvelope::parse(&sealed)
            .unwrap()
            .open(&opener, &inp.field_context)
            .unwrap();
        assert_eq!(
            std::str::from_utf8(opened.json()).unwrap(),
            v["opened"].as_str().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn invalid_vectors_fail_with_the_named_error() {
    let doc = vectors();
    let invalid = doc["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 10);
    for v in invalid {
        let name = v["name"].as_str().unwrap();
        let inp = inputs(&doc, v);
        let text = v["envelope"].as_str().unwrap();
        let got = DetEnvelope::parse(text).and_then(|e| e.open(&inp.det_key(), &inp.field_context));
        let err = got.err().unwrap_or_else(|| panic!("{name}: opened"));
        let kind = match err {
            EnvelopeError::Malformed(_) => "Malformed",
            EnvelopeError::UnsupportedVersion => "UnsupportedVersion",
            EnvelopeError::DoesNotOpen => "DoesNotOpen",
            other => panic!("{name}: unexpected {other:?}"),
        };
        assert_eq!(kind, v["error"].as_str().unwrap(), "{name}");
    }
}

/// Equal inputs give equal text, and each input that the documentation
/// says is bound (label, route context, version) changes it.
#[test]
fn the_vectors_show_what_is_bound() {
    let doc = vectors();
    let by_name = |n: &str| -> String {
        doc["valid"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no vector {n}"))["envelope"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let base = by_name("string_email");
    for other in [
        "same_value_other_label",
        "same_value_other_context",
        "same_value_version_2",
        "version_300_two_byte_varint",
    ] {
        assert_ne!(base, by_name(other), "{other}");
    }
    // the 2-byte varint makes the envelope one byte longer before encoding
    let len = |t: &str| URL_SAFE_NO_PAD.decode(&t[5..]).unwrap().len();
    assert_eq!(len(&by_name("version_300_two_byte_varint")), len(&base) + 1);
    // 34 bytes of overhead: 18 header + 16 tag
    assert_eq!(len(&base), "alice@example.com".len() + 34);
}

/// RFC 8452 Appendix C.2 (AEAD_AES_256_GCM_SIV) vectors: key, nonce,
/// plaintext, AAD, result (ciphertext || tag), hex.
const RFC8452: &[(&str, &str, &str, &str, &str)] = &[
    (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "030000000000000000000000",
        "",
        "",
        "07f5f4169bbf55a8400cd47ea6fd400f",
    ),
    (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "030000000000000000000000",
        "0100000000000000",
        "",
        "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28",
    ),
];

/// The envelope seals with the detached in-place call; check that call
/// against published AES-256-GCM-SIV results.
#[test]
fn aes_256_gcm_siv_matches_rfc8452() {
    for (key, nonce, plaintext, aad, result) in RFC8452 {
        let key: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
        let cipher = Aes256GcmSiv::new(&key.into());
        let nonce = hex::decode(nonce).unwrap();
        let aad = hex::decode(aad).unwrap();
        let mut buf = hex::decode(plaintext).unwrap();
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buf)
            .unwrap();
        buf.extend_from_slice(&tag);
        assert_eq!(hex::encode(&buf), *result);
    }
}
