//! Unit and property tests for the envelope: round trips, strict decoding,
//! tamper detection, and the JSON value typing against serde_json.

use super::format::{put_varint, read_varint_u32};
use super::value::{escaped_len, prepare, quote, unescape_string, Plain};
use super::*;
use crate::secret::DataKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn key_with(dek: [u8; 32], version: u32) -> SealingKey {
    SealingKey {
        cmk: CmkRef {
            key_id: [0x11; 16],
            version,
        },
        wrapped: WrappedDek([0x22; 40]),
        cipher: DekCipher::new(&DataKey::from_bytes(dek)),
        remote: None,
    }
}

fn key() -> SealingKey {
    key_with([7; 32], 1)
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(42)
}

fn roundtrip(value: &[u8], ctx: &[u8]) -> Vec<u8> {
    let k = key();
    let text = seal(&k, value, ctx, &mut rng()).unwrap();
    let env = Envelope::parse(&text).unwrap();
    env.open(&k.cipher, ctx).unwrap().json().to_vec()
}

/// Re-encodes `raw` as envelope text (for building malformed inputs).
fn text_of(raw: &[u8]) -> String {
    format!("sg1.{}", URL_SAFE_NO_PAD.encode(raw))
}

fn decoded(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(&text[4..]).unwrap()
}

#[test]
fn numbers_keep_their_exact_text() {
    for v in [
        "12345678901234567890.000",
        "1e400",
        "-0.0",
        "1E+2",
        "0",
        "-123.4500e-7",
    ] {
        assert_eq!(roundtrip(v.as_bytes(), b"c"), v.as_bytes(), "{v}");
    }
}

#[test]
fn other_values_keep_their_exact_text() {
    for v in [
        "true",
        "false",
        "null",
        "{}",
        "[]",
        r#"{"b": [1, 2.50, {"c": null}], "a" : "x"}"#,
        "[1,\n 2]",
    ] {
        assert_eq!(roundtrip(v.as_bytes(), b""), v.as_bytes(), "{v}");
    }
}

#[test]
fn surrounding_whitespace_is_dropped() {
    assert_eq!(roundtrip(b" \n 42\t", b""), b"42");
    assert_eq!(roundtrip(b"  \"a\" ", b""), b"\"a\"");
}

#[test]
fn strings_come_back_as_the_same_string() {
    let cases: &[(&str, &str)] = &[
        (r#""hello""#, "hello"),
        (r#""""#, ""),
        (r#""a\"b\\c\/d""#, "a\"b\\c/d"),
        (r#""\u00e9\u4e2d\ud83d\ude00""#, "é中😀"),
        (r#""tab\tnl\nctl\u0001""#, "tab\tnl\nctl\u{1}"),
        ("\"é中😀\"", "é中😀"),
    ];
    for (json, expect) in cases {
        let out = roundtrip(json.as_bytes(), b"ctx");
        assert_eq!(out, serde_json::to_string(expect).unwrap().as_bytes());
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(&back, expect);
    }
}

#[test]
fn string_is_stored_unescaped() {
    let k = key();
    let plain = seal(&k, br#""abc""#, b"", &mut rng()).unwrap();
    let escaped = seal(&k, br#""\u0061\u0062c""#, b"", &mut rng()).unwrap();
    // Same nonce (same seeded RNG), same unescaped bytes: same envelope.
    assert_eq!(plain, escaped);
    let env = Envelope::parse(&plain).unwrap();
    assert_eq!(env.value_kind(), ValueKind::String);
    assert_eq!(env.plaintext_len(), 3);
}

#[test]
fn invalid_values_are_refused() {
    let k = key();
    for v in [
        &b""[..],
        b"   ",
        b"tru",
        b"1 2",
        b"[1,]",
        b"{\"a\":}",
        b"\"abc",
        b"\"a\"b\"",
        b"\"\\x\"",
        b"\"\\ud800\"",
        b"\"\\udc00\"",
        b"\"\\ud800\\u0041\"",
        b"\"\x01\"",
        b"\"\xff\"",
        b"[\"\xff\"]",
        b"01",
        b"NaN",
        b"'a'",
    ] {
        assert_eq!(
            seal(&k, v, b"", &mut rng()),
            Err(EnvelopeError::InvalidValue),
            "{:?}",
            String::from_utf8_lossy(v)
        );
    }
}

#[test]
fn other_context_does_not_open() {
    let k = key();
    let text = seal(&k, b"\"secret\"", b"/users#$.ssn", &mut rng()).unwrap();
    let env = Envelope::parse(&text).unwrap();
    assert_eq!(
        env.open(&k.cipher, b"/users#$.name").unwrap_err(),
        EnvelopeError::DoesNotOpen
    );
    assert_eq!(
        env.open(&k.cipher, b"").unwrap_err(),
        EnvelopeError::DoesNotOpen
    );
    assert!(env.open(&k.cipher, b"/users#$.ssn").is_ok());
}

#[test]
fn wrong_key_does_not_open() {
    let k = key();
    let other = key_with([8; 32], 1);
    let text = seal(&k, b"1", b"", &mut rng()).unwrap();
    let env = Envelope::parse(&text).unwrap();
    assert_eq!(
        env.open(&other.cipher, b"").unwrap_err(),
        EnvelopeError::DoesNotOpen
    );
}

#[test]
fn header_fields_are_readable_before_opening() {
    let k = key_with([7; 32], 300);
    let text = seal(&k, b"[1]", b"", &mut rng()).unwrap();
    let env = Envelope::parse(&text).unwrap();
    assert_eq!(env.cmk(), k.cmk);
    assert_eq!(env.wrapped(), &k.wrapped);
    assert_eq!(env.value_kind(), ValueKind::Json);
}

#[test]
fn overhead_for_a_16_byte_string() {
    let k = key();
    let text = seal(&k, b"\"0123456789abcdef\"", b"ctx", &mut rng()).unwrap();
    let raw = decoded(&text);
    assert_eq!(raw.len() - 16, 86, "binary overhead");
    assert_eq!(text.len(), 140, "envelope characters");
    assert_eq!(serde_json::to_string(&text).unwrap().len(), 142);
}

#[test]
fn large_values_and_contexts_take_the_heap_path() {
    let big = format!("\"{}\"", "x".repeat(5000));
    let ctx = vec![b'c'; 1000];
    assert_eq!(roundtrip(big.as_bytes(), &ctx), big.as_bytes());
}

#[test]
fn prefix_and_version() {
    assert!(looks_like_envelope("sg1.AAAA"));
    assert!(looks_like_envelope("sg2.AAAA"));
    assert!(!looks_like_envelope("sg.AAAA"));
    assert!(!looks_like_envelope("sgx.AAAA"));
    assert!(!looks_like_envelope("hello"));
    assert!(!looks_like_envelope(""));
    let k = key();
    let text = seal(&k, b"1", b"", &mut rng()).unwrap();
    let v9 = text.replacen("sg1.", "sg9.", 1);
    assert_eq!(
        Envelope::parse(&v9).unwrap_err(),
        EnvelopeError::UnsupportedVersion
    );
    // sg2. is the provider form: an sg1. body under it does not open as one
    let v2 = text.replacen("sg1.", "sg2.", 1);
    if let Ok(env) = Envelope::parse(&v2) {
        assert!(env.provider_blob().is_some());
        assert_eq!(
            env.open(&k.cipher, b"").unwrap_err(),
            EnvelopeError::DoesNotOpen
        );
    }
    assert_eq!(
        Envelope::parse(&text[4..]).unwrap_err(),
        EnvelopeError::Malformed("missing sg1. prefix")
    );
}

#[test]
fn padding_and_noncanonical_base64_are_refused() {
    let k = key();
    // 86 + 1 = 87 bytes: 87 % 3 == 0, so use a 2-byte value to get a
    // partial final group that padding and trailing bits apply to.
    let text = seal(&k, b"12", b"", &mut rng()).unwrap();
    assert_eq!(decoded(&text).len() % 3, 1);
    assert!(Envelope::parse(&text).is_ok());
    assert_eq!(
        Envelope::parse(&format!("{text}==")).unwrap_err(),
        EnvelopeError::Malformed("invalid base64url")
    );
    // The last char of a 1-byte final group carries 4 unused bits; setting
    // one decodes to the same bytes but is not canonical.
    let last = text.as_bytes()[text.len() - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|&c| c == last).unwrap();
    assert_eq!(idx & 0x0f, 0, "canonical encoding has zero trailing bits");
    let mut bad = text.clone().into_bytes();
    *bad.last_mut().unwrap() = alphabet[idx | 1];
    let bad = String::from_utf8(bad).unwrap();
    assert_eq!(
        Envelope::parse(&bad).unwrap_err(),
        EnvelopeError::Malformed("invalid base64url")
    );
    // Standard-alphabet characters are not base64url.
    let std_alpha = text.replace('-', "+").replace('_', "/");
    if std_alpha != text {
        assert!(Envelope::parse(&std_alpha).is_err());
    }
}

#[test]
fn truncation_is_refused() {
    let k = key();
    let text = seal(&k, b"\"abcdef\"", b"", &mut rng()).unwrap();
    let raw = decoded(&text);
    for cut in 0..raw.len() {
        let t = text_of(&raw[..cut]);
        let r = Envelope::parse(&t).and_then(|e| e.open(&k.cipher, b""));
        assert!(r.is_err(), "cut at {cut}");
    }
    for cut in 0..text.len() {
        assert!(
            Envelope::parse(&text[..cut])
                .and_then(|e| e.open(&k.cipher, b""))
                .is_err(),
            "text cut at {cut}"
        );
    }
}

#[test]
fn reserved_flags_and_unknown_kinds_are_refused() {
    let k = key();
    let raw = decoded(&seal(&k, b"1", b"", &mut rng()).unwrap());
    for flags in [0x04u8, 0x80, 0x02, 0x03] {
        let mut r = raw.clone();
        r[0] = flags;
        assert!(
            matches!(
                Envelope::parse(&text_of(&r)),
                Err(EnvelopeError::Malformed(_))
            ),
            "flags {flags:#x}"
        );
    }
    // Kind flipped from JSON to string parses (it is a valid kind) but the
    // AAD covers the flags, so it does not open.
    let mut r = raw.clone();
    r[0] = 1;
    let env = Envelope::parse(&text_of(&r)).unwrap();
    assert_eq!(
        env.open(&k.cipher, b"").unwrap_err(),
        EnvelopeError::DoesNotOpen
    );
}

#[test]
fn non_minimal_varint_is_refused() {
    let k = key();
    let raw = decoded(&seal(&k, b"1", b"", &mut rng()).unwrap());
    // Version 1 is the single byte 0x01 at offset 17; 0x81 0x00 is the same
    // value in two bytes.
    assert_eq!(raw[17], 1);
    let mut r = raw[..17].to_vec();
    r.extend_from_slice(&[0x81, 0x00]);
    r.extend_from_slice(&raw[18..]);
    assert_eq!(
        Envelope::parse(&text_of(&r)).unwrap_err(),
        EnvelopeError::Malformed("non-minimal CMK version")
    );
}

#[test]
fn varint_bounds() {
    let mut buf = [0u8; 10];
    for v in [0u32, 1, 127, 128, 300, 16383, 16384, u32::MAX] {
        let n = put_varint(&mut buf, u64::from(v));
        assert_eq!(read_varint_u32(&buf[..n]).unwrap(), (v, n), "{v}");
    }
    assert_eq!(put_varint(&mut buf, u64::from(u32::MAX)), 5);
    // 2^32 needs 33 bits: out of range for a u32.
    let n = put_varint(&mut buf, 1 << 32);
    assert!(read_varint_u32(&buf[..n]).is_err());
    // Six bytes never.
    assert!(read_varint_u32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
    // Non-minimal forms.
    assert!(read_varint_u32(&[0x80, 0x00]).is_err());
    assert!(read_varint_u32(&[0xff, 0x80, 0x00]).is_err());
    // Truncated.
    assert!(read_varint_u32(&[0x80]).is_err());
}

#[test]
fn opened_debug_is_redacted() {
    let out = {
        let k = key();
        let text = seal(&k, b"\"hunter2\"", b"", &mut rng()).unwrap();
        Envelope::parse(&text)
            .unwrap()
            .open(&k.cipher, b"")
            .unwrap()
    };
    assert!(!format!("{out:?}").contains("hunter2"));
}

/// Arbitrary JSON values (serde_json's own model), nested a few levels.
fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON string literal for `s` with a random choice of escapes per char.
fn arb_string_literal() -> impl Strategy<Value = (String, String)> {
    prop::collection::vec((any::<char>(), 0u8..4), 0..40).prop_map(|chars| {
        let mut s = String::new();
        let mut lit = String::from("\"");
        for (c, how) in chars {
            s.push(c);
            match (c, how) {
                ('"', _) => lit.push_str("\\\""),
                ('\\', _) => lit.push_str("\\\\"),
                (c, _) if (c as u32) < 0x20 => lit.push_str(&format!("\\u{:04X}", c as u32)),
                ('/', 1) => lit.push_str("\\/"),
                (c, 2) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        lit.push_str(&format!("\\u{u:04x}"));
                    }
                }
                (c, _) => lit.push(c),
            }
        }
        lit.push('"');
        (s, lit)
    })
}

proptest! {
    #[test]
    fn prop_roundtrip_any_json_value(v in arb_json(), pretty in any::<bool>(), ctx in prop::collection::vec(any::<u8>(), 0..40)) {
        let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
        let out = roundtrip(text.as_bytes(), &ctx);
        if v.is_string() {
            prop_assert_eq!(out, serde_json::to_vec(&v).unwrap());
        } else {
            prop_assert_eq!(out, text.into_bytes());
        }
    }

    #[test]
    fn prop_roundtrip_number_text(n in r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,5})?") {
        prop_assert_eq!(roundtrip(n.as_bytes(), b"n"), n.into_bytes());
    }

    #[test]
    fn prop_string_literal_roundtrip((s, lit) in arb_string_literal()) {
        let out = roundtrip(lit.as_bytes(), b"s");
        prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
    }

    #[test]
    fn prop_unescape_matches_serde_json(lit in r#""([^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}|\\.|"){0,12}""#) {
        let ours = unescape_string(lit.as_bytes()).map(|p| p.bytes().to_vec());
        let theirs = serde_json::from_str::<String>(&lit);
        match (ours, theirs) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b.into_bytes()),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "disagree on {:?}: ours {:?} serde {:?}", lit, a.is_ok(), b.is_ok()),
        }
    }

    #[test]
    fn prop_quote_is_serde_json_and_sized_exactly(s in any::<String>()) {
        let q = quote(&s).unwrap();
        let expect = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(&q[..], expect.as_bytes());
        prop_assert_eq!(escaped_len(s.as_bytes()), q.len());
        prop_assert_eq!(q.capacity(), q.len());
    }

    #[test]
    fn prop_any_single_byte_change_fails(
        v in arb_json(),
        pos in any::<prop::sample::Index>(),
        repl in any::<u8>(),
    ) {
        let k = key();
        let text = seal(&k, serde_json::to_string(&v).unwrap().as_bytes(), b"ctx", &mut rng()).unwrap();
        let mut bytes = text.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != repl);
        bytes[i] = repl;
        // Non-UTF-8 results cannot even be a &str; those are trivially refused.
        if let Ok(t) = String::from_utf8(bytes) {
            let r = Envelope::parse(&t).and_then(|e| e.open(&k.cipher, b"ctx"));
            prop_assert!(r.is_err(), "changed byte {} still opens", i);
        }
    }

    #[test]
    fn prop_any_single_base64_char_change_fails(
        v in arb_json(),
        pos in any::<prop::sample::Index>(),
        repl in prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()),
    ) {
        let k = key();
        let text = seal(&k, serde_json::to_string(&v).unwrap().as_bytes(), b"ctx", &mut rng()).unwrap();
        let mut bytes = text.clone().into_bytes();
        let i = 4 + pos.index(bytes.len() - 4);
        prop_assume!(bytes[i] != repl);
        bytes[i] = repl;
        let t = String::from_utf8(bytes).unwrap();
        let r = Envelope::parse(&t).and_then(|e| e.open(&k.cipher, b"ctx"));
        prop_assert!(r.is_err(), "changed char {} still opens", i);
    }

    #[test]
    fn prop_decoder_never_panics_on_strings(s in any::<String>()) {
        let k = key();
        let _ = Envelope::parse(&s).and_then(|e| e.open(&k.cipher, b""));
        let _ = looks_like_envelope(&s);
    }

    #[test]
    fn prop_decoder_never_panics_on_base64_bodies(body in "[A-Za-z0-9_=+/-]{0,200}") {
        let k = key();
        let _ = Envelope::parse(&format!("sg1.{body}")).and_then(|e| e.open(&k.cipher, b""));
    }

    #[test]
    fn prop_decoder_never_panics_on_binary_bodies(raw in prop::collection::vec(any::<u8>(), 0..200), flags in 0u8..4) {
        let k = key();
        let mut raw = raw;
        if let Some(f) = raw.first_mut() { *f = flags; }
        let _ = Envelope::parse(&text_of(&raw)).and_then(|e| e.open(&k.cipher, b""));
    }
}

#[test]
fn plain_borrows_when_no_escape_is_needed() {
    let (kind, p) = prepare(b"\"plain\"").unwrap();
    assert_eq!(kind, ValueKind::String);
    assert!(matches!(p, Plain::Borrowed(b"plain")));
    let (_, p) = prepare(b"\"a\\nb\"").unwrap();
    assert!(matches!(p, Plain::Owned(_)));
    assert_eq!(p.bytes(), b"a\nb");
}

#[test]
fn seal_append_writes_the_same_envelope_after_existing_bytes() {
    let k = key();
    let mut out = b"{\"a\":\"".to_vec();
    seal_append(
        &k,
        b"\"4111\"",
        b"ctx",
        &mut StdRng::seed_from_u64(7),
        &mut out,
    )
    .unwrap();
    let text = std::str::from_utf8(&out[6..]).unwrap();
    assert_eq!(&out[..6], b"{\"a\":\"");
    // same nonce, same bytes as seal()
    let alone = seal(&k, b"\"4111\"", b"ctx", &mut StdRng::seed_from_u64(7)).unwrap();
    assert_eq!(text, alone);
    let env = Envelope::parse(text).unwrap();
    assert_eq!(env.open(&k.cipher, b"ctx").unwrap().json(), b"\"4111\"");
    // a value that is not JSON leaves the buffer as it was
    let before = out.clone();
    assert!(seal_append(&k, b"{nope", b"ctx", &mut rng(), &mut out).is_err());
    assert_eq!(out, before);
}

fn provider_key(blob: &[u8]) -> SealingKey {
    SealingKey {
        cmk: CmkRef {
            key_id: [0x33; 16],
            version: 0,
        },
        wrapped: WrappedDek([0; 40]),
        cipher: DekCipher::new(&DataKey::from_bytes([9; 32])),
        remote: Some(provider_field(&[0x33; 16], "route:{}", blob).unwrap()),
    }
}

#[test]
fn the_provider_form_round_trips_and_carries_the_blob() {
    for blob_len in [1usize, 127, 128, 600, 4096] {
        let blob: Vec<u8> = (0..blob_len).map(|i| (i * 7) as u8).collect();
        let k = provider_key(&blob);
        for value in [&b"\"0123456789abcdef\""[..], b"12.50", b"{\"a\":[1,null]}"] {
            let text = seal(&k, value, b"route\0ssn", &mut rng()).unwrap();
            assert!(text.starts_with("sg2."), "{text}");
            let env = Envelope::parse(&text).unwrap();
            assert_eq!(env.provider_blob(), Some(&blob[..]));
            assert_eq!(env.provider_template(), Some("route:{}"));
            assert_eq!(env.cmk().key_id, [0x33; 16]);
            assert_eq!(env.provider_field(), k.remote.as_deref());
            assert_eq!(env.open(&k.cipher, b"route\0ssn").unwrap().json(), value);
            // bound to its place, like sg1.
            assert_eq!(
                env.open(&k.cipher, b"route\0name").unwrap_err(),
                EnvelopeError::DoesNotOpen
            );
            // the splice form gives the same bytes
            let mut out = Vec::new();
            seal_append(&k, value, b"route\0ssn", &mut rng(), &mut out).unwrap();
            assert_eq!(out, text.as_bytes());
        }
    }
}

#[test]
fn the_provider_form_size_is_sg1_overhead_plus_the_blob() {
    // flags 1 + key id 16 + varint(len) + template 8 + varint(len) + blob
    // + nonce 12 + tag 16
    let blob = [0xabu8; 100];
    let k = provider_key(&blob);
    let text = seal(&k, b"\"0123456789abcdef\"", b"c", &mut rng()).unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&text[4..]).unwrap();
    assert_eq!(raw.len(), 1 + 16 + 1 + 8 + 1 + 100 + 12 + 16 + 16);
}

#[test]
fn the_provider_form_is_strictly_parsed() {
    let blob = [5u8; 40];
    let k = provider_key(&blob);
    let text = seal(&k, b"true", b"c", &mut rng()).unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&text[4..]).unwrap();
    let enc = |b: &[u8]| format!("sg2.{}", URL_SAFE_NO_PAD.encode(b));
    // every truncation fails cleanly (no panic), none opens
    for n in 0..raw.len() {
        let t = enc(&raw[..n]);
        if let Ok(env) = Envelope::parse(&t) {
            assert!(env.open(&k.cipher, b"c").is_err());
        }
    }
    // a blob length past the data, zero, or above 4096 (it follows the
    // key id and the 8-byte template)
    let at = 1 + 16 + 1 + 8;
    for len in [0u64, 41, 200, 4097] {
        let mut bad = raw.clone();
        let mut v = [0u8; 10];
        let n = put_varint(&mut v, len);
        bad.splice(at..at + 1, v[..n].iter().copied());
        assert!(
            Envelope::parse(&enc(&bad)).is_err()
                || Envelope::parse(&enc(&bad))
                    .unwrap()
                    .open(&k.cipher, b"c")
                    .is_err()
        );
    }
    // a template length past the data or above 256, a template not UTF-8
    for len in [200u64, 257] {
        let mut bad = raw.clone();
        let mut v = [0u8; 10];
        let n = put_varint(&mut v, len);
        bad.splice(17..18, v[..n].iter().copied());
        assert!(Envelope::parse(&enc(&bad)).is_err(), "{len}");
    }
    let mut bad = raw.clone();
    bad[18] = 0xff;
    assert_eq!(
        Envelope::parse(&enc(&bad)).unwrap_err(),
        EnvelopeError::Malformed("context template is not UTF-8")
    );
    // the key id and the template are in the AAD too
    for i in [3, 20] {
        let mut bad = raw.clone();
        bad[i] ^= 1;
        let env = Envelope::parse(&enc(&bad)).unwrap();
        assert_eq!(
            env.open(&k.cipher, b"c").unwrap_err(),
            EnvelopeError::DoesNotOpen
        );
    }
    // reserved flag bits
    let mut bad = raw.clone();
    bad[0] |= 0x80;
    assert_eq!(
        Envelope::parse(&enc(&bad)).unwrap_err(),
        EnvelopeError::Malformed("reserved flag bits set")
    );
    // a flipped bit in the blob: the header is in the AAD
    let mut bad = raw.clone();
    bad[at + 5] ^= 1;
    let env = Envelope::parse(&enc(&bad)).unwrap();
    assert_eq!(
        env.open(&k.cipher, b"c").unwrap_err(),
        EnvelopeError::DoesNotOpen
    );
    // an empty or oversized blob cannot be carried at all
    assert!(provider_field(&[0; 16], "t", &[]).is_err());
    assert!(provider_field(&[0; 16], "t", &[0; 4097]).is_err());
    assert!(provider_field(&[0; 16], &"t".repeat(257), &[1]).is_err());
    assert!(provider_field(&[0; 16], &"t".repeat(256), &[1]).is_ok());
}

#[test]
fn open_append_appends_what_open_returns_and_nothing_on_failure() {
    let k = key();
    for value in [
        &br#""plain""#[..],
        br#""needs \"escapes\" \n and \u00e9""#,
        b"12.50",
        br#"{"a":[1,true,null]}"#,
    ] {
        let text = seal(&k, value, b"ctx", &mut rng()).unwrap();
        let env = Envelope::parse(&text).unwrap();
        let mut out = b"prefix:".to_vec();
        env.open_append(&k.cipher, b"ctx", &mut out).unwrap();
        let opened = env.open(&k.cipher, b"ctx").unwrap();
        assert_eq!(&out[..7], b"prefix:");
        assert_eq!(&out[7..], opened.json());
        let mut out = b"prefix:".to_vec();
        assert!(env.open_append(&k.cipher, b"other", &mut out).is_err());
        assert_eq!(out, b"prefix:");
    }
}
