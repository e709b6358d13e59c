//! The `EncryptionContext` of the Tencent and Alibaba faces: what binds a
//! ciphertext to its context. PURE.
//!
//! The client sends a JSON object as a string; the ciphertext is bound to a
//! canonical form of it — the top-level members sorted by name, compact
//! JSON — so member order and spacing do not matter. Those bytes are the
//! additional data of every blob sealed with a context, in every dialect:
//! changing how they are built would stop existing ciphertexts opening.

use std::collections::BTreeMap;

use serde_json::Value;

/// A parsed `EncryptionContext`: as sent, and canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext {
    /// As sent.
    pub raw: String,
    /// Sorted, compact JSON of the object: the bytes a ciphertext is bound to.
    pub canonical: String,
}

/// Why an `EncryptionContext` string was refused (each face words it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextError {
    /// Longer than the dialect's limit, in characters.
    TooLong,
    /// Not a JSON object.
    NotAnObject,
    /// A member's value is not a string (where the dialect requires strings).
    NotStrings,
}

/// What a dialect accepts as a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextRules {
    /// Longest accepted string, in characters.
    pub max_chars: usize,
    /// Whether every member's value must be a string.
    pub strings_only: bool,
}

/// Parses `s` under `rules` and builds its canonical form.
pub fn parse(s: &str, rules: ContextRules) -> Result<EncryptionContext, ContextError> {
    if s.chars().count() > rules.max_chars {
        return Err(ContextError::TooLong);
    }
    let Ok(Value::Object(members)) = serde_json::from_str::<Value>(s) else {
        return Err(ContextError::NotAnObject);
    };
    if rules.strings_only && members.values().any(|v| !v.is_string()) {
        return Err(ContextError::NotStrings);
    }
    let sorted: BTreeMap<String, Value> = members.into_iter().collect();
    let canonical = serde_json::to_string(&sorted).map_err(|_| ContextError::NotAnObject)?;
    Ok(EncryptionContext {
        raw: s.to_string(),
        canonical,
    })
}

/// The additional data of a seal or open: the canonical context, or nothing.
pub fn aad(ctx: &Option<EncryptionContext>) -> &[u8] {
    ctx.as_ref().map(|c| c.canonical.as_bytes()).unwrap_or(b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: ContextRules = ContextRules {
        max_chars: 1024,
        strings_only: false,
    };
    const STRINGS: ContextRules = ContextRules {
        max_chars: 8192,
        strings_only: true,
    };

    #[test]
    fn order_and_spacing_do_not_change_the_bound_bytes() {
        let a = parse(r#"{ "b" : "2", "a":"1" }"#, ANY).unwrap();
        let b = parse(r#"{"a":"1","b":"2"}"#, STRINGS).unwrap();
        // the exact bytes existing ciphertexts were sealed with
        assert_eq!(a.canonical, r#"{"a":"1","b":"2"}"#);
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(a.raw, r#"{ "b" : "2", "a":"1" }"#);
        assert_eq!(aad(&Some(a)), br#"{"a":"1","b":"2"}"#);
        assert_eq!(aad(&None), b"");
    }

    #[test]
    fn non_string_values_are_kept_or_refused_by_rule() {
        let s = r#"{"n":1,"o":{"y":true}}"#;
        assert_eq!(parse(s, ANY).unwrap().canonical, s);
        assert_eq!(parse(s, STRINGS), Err(ContextError::NotStrings));
    }

    #[test]
    fn length_and_shape_are_checked() {
        let long = format!(r#"{{"k":"{}"}}"#, "é".repeat(1020));
        assert_eq!(parse(&long, ANY), Err(ContextError::TooLong));
        assert!(parse(&long, STRINGS).is_ok(), "counted in characters");
        for bad in ["[]", "\"x\"", "{", ""] {
            assert_eq!(parse(bad, ANY), Err(ContextError::NotAnObject), "{bad}");
        }
    }
}
