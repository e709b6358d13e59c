//! Known-answer vectors for the provider envelope form (`sg2.`), generated
//! independently from the documented layout by
//! `tests/tools/provider_envelope_vectors.py` (Python `cryptography`
//! AES-GCM): sealgate seals to exactly those texts, parses the key id, the
//! context template and the blob back out, and opens them; a changed
//! context, key id, template or blob does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sealgate::envelope::{
    provider_field, seal_with_nonce, CmkRef, Envelope, EnvelopeError, SealingKey, WrappedDek,
};
use sealgate::secret::{DataKey, DekCipher};
use serde_json::Value;

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/provider_envelope_vectors.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn key_id(doc: &Value) -> [u8; 16] {
    hex::decode(doc["key_id_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn key(doc: &Value, template: &str, blob: &[u8]) -> SealingKey {
    let dek: [u8; 32] = hex::decode(doc["dek_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    SealingKey {
        cmk: CmkRef {
            key_id: key_id(doc),
            version: 0,
        },
        wrapped: WrappedDek([0; 40]),
        cipher: DekCipher::new(&DataKey::from_bytes(dek)),
        remote: Some(provider_field(&key_id(doc), template, blob).unwrap()),
    }
}

#[test]
fn provider_vectors_seal_to_the_exact_text_and_open() {
    let doc = vectors();
    let valid = doc["valid"].as_array().unwrap();
    assert!(valid.len() >= 5);
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let blob = hex::decode(
            doc["blobs_hex"][v["blob"].as_str().unwrap()]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let template = v["template"].as_str().unwrap();
        let k = key(&doc, template, &blob);
        let nonce: [u8; 12] = hex::decode(v["nonce_hex"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let ctx = v["context"].as_str().unwrap().as_bytes();
        let value = v["value"].as_str().unwrap();
        let expect = v["envelope"].as_str().unwrap();
        assert_eq!(
            seal_with_nonce(&k, value.as_bytes(), ctx, nonce).unwrap(),
            expect,
            "{name}"
        );
        let env = Envelope::parse(expect).unwrap();
        assert_eq!(env.provider_blob(), Some(&blob[..]), "{name}");
        assert_eq!(env.provider_template(), Some(template), "{name}");
        assert_eq!(env.cmk().key_id, key_id(&doc), "{name}");
        let opened = env.open(&k.cipher, ctx).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(opened.json()).unwrap(),
            serde_json::from_str::<Value>(value).unwrap(),
            "{name}"
        );
        // bound to its context
        let mut other = ctx.to_vec();
        other.push(b'x');
        assert_eq!(
            env.open(&k.cipher, &other).unwrap_err(),
            EnvelopeError::DoesNotOpen,
            "{name}"
        );
        // the key id, the template (when there is one) and the blob are
        // covered by the AAD: change one bit of each
        let blob_at = 1 + 16 + 1 + template.len() + if blob.len() < 128 { 1 } else { 2 };
        let mut places = vec![2, blob_at + 3];
        if !template.is_empty() {
            places.push(18);
        }
        for at in places {
            let mut raw = URL_SAFE_NO_PAD.decode(&expect[4..]).unwrap();
            raw[at] ^= 0x01;
            let moved = format!("sg2.{}", URL_SAFE_NO_PAD.encode(&raw));
            assert_eq!(
                Envelope::parse(&moved)
                    .unwrap()
                    .open(&k.cipher, ctx)
                    .unwrap_err(),
                EnvelopeError::DoesNotOpen,
                "{name} byte {at}"
            );
        }
    }
}

/// The size overhead for a 16-byte string, a 5-byte template and a blob of
/// n bytes: flags, key id, two lengths, template, blob, nonce, tag (see
/// docs/envelope.md).
#[test]
fn provider_form_overhead_is_as_documented() {
    let doc = vectors();
    let v = &doc["valid"][0];
    assert_eq!(v["name"], "string_16_bytes");
    let text = v["envelope"].as_str().unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&text[4..]).unwrap();
    assert_eq!(v["template"], "users");
    // flags 1 + key id 16 + length 1 + template 5 + length 1 + blob 48 +
    // nonce 12 + tag 16 = 100 bytes of overhead
    assert_eq!(raw.len() - 16, 1 + 16 + 1 + 5 + 1 + 48 + 12 + 16);
    // as a JSON string: 4 prefix + base64url + 2 quotes
    assert_eq!(text.len() + 2, 4 + (116 * 4usize).div_ceil(3) + 2);
}
