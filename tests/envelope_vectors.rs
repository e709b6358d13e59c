//! Known-answer tests for the field envelope (tests/data/envelope_vectors.json)
//! and for the AES-256-GCM calls the envelope makes, against published vectors.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sealgate::envelope::{
    looks_like_envelope, seal_with_nonce, CmkRef, Envelope, EnvelopeError, SealingKey, WrappedDek,
};
use sealgate::secret::{DataKey, DekCipher};
use serde_json::Value;

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/envelope_vectors.json"
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

fn sealing_key(doc: &Value, version: u32) -> SealingKey {
    SealingKey {
        cmk: CmkRef {
            key_id: hex_array(&doc["cmk_key_id_hex"]),
            version,
        },
        wrapped: WrappedDek(hex_array(&doc["wrapped_dek_hex"])),
        cipher: DekCipher::new(&DataKey::from_bytes(hex_array(&doc["dek_hex"]))),
        remote: None,
    }
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

#[test]
fn wrapped_dek_is_the_rfc3394_wrap_of_the_dek() {
    let doc = vectors();
    let kek: [u8; 32] = hex_array(&doc["kek_hex"]);
    let dek: [u8; 32] = hex_array(&doc["dek_hex"]);
    let wrapped = aes_kw::KekAes256::from(kek).wrap_vec(&dek).unwrap();
    assert_eq!(
        hex::encode(wrapped),
        doc["wrapped_dek_hex"].as_str().unwrap()
    );
}

#[test]
fn valid_vectors_seal_to_the_exact_text_and_open() {
    let doc = vectors();
    let valid = doc["valid"].as_array().unwrap();
    assert!(valid.len() >= 10);
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let version = u32::try_from(v["cmk_version"].as_u64().unwrap()).unwrap();
        let key = sealing_key(&doc, version);
        let nonce: [u8; 12] = hex_array(&v["nonce_hex"]);
        let ctx = v["context"].as_str().unwrap().as_bytes();
        let value = v["value"].as_str().unwrap().as_bytes();
        let expect = v["envelope"].as_str().unwrap();

        let sealed = seal_with_nonce(&key, value, ctx, nonce).unwrap();
        assert_eq!(sealed, expect, "{name}");
        assert!(looks_like_envelope(&sealed), "{name}");

        let env = Envelope::parse(expect).unwrap();
        assert_eq!(env.cmk(), key.cmk, "{name}");
        assert_eq!(env.wrapped(), &key.wrapped, "{name}");
        let opened = env.open(&key.cipher, ctx).unwrap();
        assert_eq!(
            std::str::from_utf8(opened.json()).unwrap(),
            v["opened"].as_str().unwrap(),
            "{name}"
        );
        // The opened text is the same JSON value as the input.
        let a: Value = serde_json::from_slice(opened.json()).unwrap_or(Value::Null);
        let b: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
        assert_eq!(a, b, "{name}");
    }
}

/// Rebuilds each valid vector from the layout as documented (module rustdoc
/// and docs/envelope.md) with the raw AES-GCM primitive, so the document and
/// the code cannot drift apart.
#[test]
fn valid_vectors_follow_the_documented_layout() {
    let doc = vectors();
    let key_id: [u8; 16] = hex_array(&doc["cmk_key_id_hex"]);
    let wrapped: [u8; 40] = hex_array(&doc["wrapped_dek_hex"]);
    let dek: [u8; 32] = hex_array(&doc["dek_hex"]);
    let gcm = Aes256Gcm::new(&dek.into());
    for v in doc["valid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let value = v["value"].as_str().unwrap();
        let ctx = v["context"].as_str().unwrap().as_bytes();
        let nonce: [u8; 12] = hex_array(&v["nonce_hex"]);
        let (kind, mut plaintext) = match serde_json::from_str::<Value>(value) {
            Ok(Value::String(s)) => (1u8, s.into_bytes()),
            _ => (0u8, value.trim().as_bytes().to_vec()),
        };
        let mut header = vec![kind];
        header.extend_from_slice(&key_id);
        header.extend_from_slice(&leb128(v["cmk_version"].as_u64().unwrap()));
        header.extend_from_slice(&wrapped);
        header.extend_from_slice(&nonce);
        let mut aad = b"sg1".to_vec();
        aad.extend_from_slice(&header);
        aad.extend_from_slice(&leb128(ctx.len() as u64));
        aad.extend_from_slice(ctx);
        let tag = gcm
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut plaintext)
            .unwrap();
        let mut raw = header;
        raw.extend_from_slice(&plaintext);
        raw.extend_from_slice(&tag);
        let text = format!("sg1.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(text, v["envelope"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn invalid_vectors_fail_with_the_named_error() {
    let doc = vectors();
    let key = sealing_key(&doc, 1);
    let invalid = doc["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 10);
    for v in invalid {
        let name = v["name"].as_str().unwrap();
        let text = v["envelope"].as_str().unwrap();
        let ctx = v["context"].as_str().unwrap().as_bytes();
        let got = Envelope::parse(text).and_then(|e| e.open(&key.cipher, ctx));
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

/// One published AES-256-GCM vector: key, nonce, plaintext, AAD, ciphertext, tag (hex).
struct Published {
    source: &'static str,
    key: &'static str,
    nonce: &'static str,
    plaintext: &'static str,
    aad: &'static str,
    ciphertext: &'static str,
    tag: &'static str,
}

/// Published AES-256-GCM vectors with 96-bit nonces (the only size the
/// envelope uses).
const PUBLISHED: &[Published] = &[
    // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", rev. 2005,
    // Appendix B, Test Case 16 (AES-256, 60-byte plaintext, 20-byte AAD).
    Published {
        source: "McGrew-Viega GCM spec, Test Case 16",
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        tag: "76fc6ece0f4e1768cddf8853bb2d551b",
    },
    // NIST CAVP, GCM test vectors, gcmEncryptExtIV256.rsp
    // (https://csrc.nist.gov/Projects/cryptographic-algorithm-validation-program/CAVP-TESTING-BLOCK-CIPHER-MODES),
    // [Keylen = 256] [IVlen = 96] [PTlen = 128] [AADlen = 160] [Taglen = 128].
    Published {
        source: "NIST CAVP gcmEncryptExtIV256.rsp, PTlen 128, AADlen 160",
        key: "83688deb4af8007f9b713b47cfa6c73e35ea7a3aa4ecdb414dded03bf7a0fd3a",
        nonce: "0b459724904e010a46901cf3",
        plaintext: "33d893a2114ce06fc15d55e454cf90c3",
        aad: "794a14ccd178c8ebfd1379dc704c5e208f9d8424",
        ciphertext: "cc66bee423e3fcd4c0865715e9586696",
        tag: "0fb291bd3dba94a1dfd8b286cfb97ac5",
    },
    // NIST CAVP gcmEncryptExtIV256.rsp, [PTlen = 0] [AADlen = 0], Count = 0.
    Published {
        source: "NIST CAVP gcmEncryptExtIV256.rsp, PTlen 0, AADlen 0",
        key: "b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4",
        nonce: "516c33929df5a3284ff463d7",
        plaintext: "",
        aad: "",
        ciphertext: "",
        tag: "bdc1ac884d332457a1d2664f168c76f0",
    },
];

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

/// The envelope seals and opens through `DekCipher` with the detached
/// in-place calls; check exactly those calls against the published vectors.
#[test]
fn dek_cipher_matches_published_aes_256_gcm_vectors() {
    for p in PUBLISHED {
        let key = DataKey::from_slice(&unhex(p.key)).unwrap();
        let cipher = DekCipher::new(&key);
        let nonce = unhex(p.nonce);
        let aad = unhex(p.aad);
        let mut buf = unhex(p.plaintext);
        let tag = cipher
            .cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buf)
            .unwrap();
        assert_eq!(buf, unhex(p.ciphertext), "{}", p.source);
        assert_eq!(hex::encode(tag), p.tag, "{}", p.source);

        cipher
            .cipher()
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buf, &tag)
            .unwrap();
        assert_eq!(buf, unhex(p.plaintext), "{}", p.source);

        // A flipped tag bit is refused, and the buffer still holds only
        // ciphertext (the tag is checked before decrypting).
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        let mut ct = unhex(p.ciphertext);
        assert!(cipher
            .cipher()
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut ct, &bad_tag)
            .is_err());
        assert_eq!(ct, unhex(p.ciphertext), "{}", p.source);
    }
}
