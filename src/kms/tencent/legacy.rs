//! Tencent Cloud KMS's legacy API 2.0 (`/v2/index.php`, the form the
//! `qcloudapi-sdk-python` SDK speaks): its action list, the mapping of its
//! lower-camel parameters onto the API 3.0 requests of [`wire`], and the
//! shaping of answers into its flat body
//! (`{"code": 0, "message": "", "codeDesc": "Success", "requestId", …}`).
//!
//! Pure: [`translate`] turns a legacy action and its parameters into a
//! [`Call`] (one or two API 3.0 steps); [`run`] parses the steps, hands each
//! to the face's dispatcher and shapes what comes back. Signature, replay
//! cache (a `Nonce` + `Timestamp` is used once), credential scope and rate
//! limits are the face's, the same as for API 3.0.
//!
//! Where the legacy documents are silent (ScheduleKeyDeletion and
//! CancelKeyDeletion have no legacy page; SetKeyAttributes documents only
//! `alias`), the API 3.0 rules apply under lower-camel names; see
//! docs/kms-tencent.md.

use serde_json::{Map, Value};

use super::wire::{self, codes, Action, Request, TencentError, COMMON_PARAMS};

/// The legacy table's code for a replayed request (Nonce + Timestamp reused).
pub const REPLAY_CODE: i64 = wire::LEGACY_REPLAY;

/// The data key size the legacy GenerateDataKey uses when a request names
/// neither `keySpec` nor `numberOfBytes`: seed 002 marks both optional,
/// with "a default value used for those not specified"; AES_256, the spec
/// of its example (API 3.0, by contrast, requires one of the two).
pub const DEFAULT_KEY_SPEC: &str = "AES_256";

/// The legacy name of the symmetric usage (`ENCRYPT_DECRYPT` in API 3.0).
pub const LEGACY_ENCRYPT_DECRYPT: &str = "ENCRYPT/DECRYPT";

/// Longest alias the legacy CreateKey / SetKeyAttributes take (API 3.0: 60).
pub const MAX_LEGACY_ALIAS: usize = 32;

/// CreateKey's own legacy codes (its error table): an invalid `keyUsage`.
pub const CODE_INVALID_KEY_USAGE: i64 = 4490;
/// CreateKey's own legacy codes: the alias is already taken.
pub const CODE_ALIAS_EXISTS: i64 = 4500;
/// CreateKey's own legacy codes: the account's CMK limit is reached.
pub const CODE_CMK_LIMIT: i64 = 4510;

/// The actions the legacy API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyAction {
    /// Data key under a CMK (seed 002).
    GenerateDataKey,
    /// Encrypt with a CMK.
    Encrypt,
    /// Decrypt a ciphertext blob.
    Decrypt,
    /// Make a CMK (`alias`, `description`, `keyUsage`, `type`).
    CreateKey,
    /// A CMK's `keyMetadata`.
    GetKeyAttributes,
    /// Change a CMK's `alias` (and `description`).
    SetKeyAttributes,
    /// Enable a CMK.
    EnableKey,
    /// Disable a CMK.
    DisableKey,
    /// Page through the CMKs (`offset`, `limit`).
    ListKey,
    /// Schedule a disabled CMK's deletion.
    ScheduleKeyDeletion,
    /// Cancel a scheduled deletion.
    CancelKeyDeletion,
}

/// Every legacy action by its wire name, with the API 3.0 action it runs
/// (SetKeyAttributes may also run UpdateKeyDescription).
pub const ACTIONS: &[(&str, LegacyAction, Action)] = &[
    (
        "GenerateDataKey",
        LegacyAction::GenerateDataKey,
        Action::GenerateDataKey,
    ),
    ("Encrypt", LegacyAction::Encrypt, Action::Encrypt),
    ("Decrypt", LegacyAction::Decrypt, Action::Decrypt),
    ("CreateKey", LegacyAction::CreateKey, Action::CreateKey),
    (
        "GetKeyAttributes",
        LegacyAction::GetKeyAttributes,
        Action::DescribeKey,
    ),
    (
        "SetKeyAttributes",
        LegacyAction::SetKeyAttributes,
        Action::UpdateAlias,
    ),
    ("EnableKey", LegacyAction::EnableKey, Action::EnableKey),
    ("DisableKey", LegacyAction::DisableKey, Action::DisableKey),
    ("ListKey", LegacyAction::ListKey, Action::ListKeys),
    (
        "ScheduleKeyDeletion",
        LegacyAction::ScheduleKeyDeletion,
        Action::ScheduleKeyDeletion,
    ),
    (
        "CancelKeyDeletion",
        LegacyAction::CancelKeyDeletion,
        Action::CancelKeyDeletion,
    ),
];

/// A legacy request ready to run: which legacy action (for the answer's
/// shape and codes) and the API 3.0 steps, in order, with their parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    action: LegacyAction,
    steps: Vec<(Action, Value)>,
}

impl Call {
    /// The legacy action.
    pub fn action(&self) -> LegacyAction {
        self.action
    }

    /// The API 3.0 action whose quota (and audit name) the call counts
    /// against: its first step.
    pub fn quota_action(&self) -> Action {
        self.steps
            .first()
            .map(|(a, _)| *a)
            .unwrap_or(Action::DescribeKey)
    }
}

/// The legacy action named `name`, or `InvalidAction` listing the served ones.
pub fn parse_action(name: &str) -> Result<(LegacyAction, Action), TencentError> {
    ACTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, l, a)| (*l, *a))
        .ok_or_else(|| {
            let names: Vec<&str> = ACTIONS.iter().map(|(n, _, _)| *n).collect();
            TencentError::new(
                codes::INVALID_ACTION,
                format!(
                    "The requested action does not exist; the legacy /v2/index.php API serves {}.",
                    names.join(", ")
                ),
            )
        })
}

/// A string parameter (flat parameters are strings; a JSON number is taken
/// in its text form), `None` when absent or blank.
fn text(m: &Map<String, Value>, name: &str) -> Result<Option<String>, TencentError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(TencentError::invalid(name, "must be a string")),
    }
}

/// The legacy alias rule: API 3.0's characters, at most 32 of them.
fn check_alias(alias: &str) -> Result<(), TencentError> {
    if alias.len() > MAX_LEGACY_ALIAS {
        return Err(TencentError::value(
            codes::INVALID_ALIAS,
            "Alias",
            "1-32 letters, digits, - and _, starting with a letter or digit",
        ));
    }
    wire::check_alias("Alias", alias)
}

/// Turns legacy action `name` with `params` (already in API 3.0 spelling,
/// as [`wire::params_from_flat`] with [`wire::ParamStyle::Legacy`] builds
/// them: `keyId` → `KeyId`) into the steps to run. Checks what only the
/// legacy API says (alias length, `keyUsage` and `type` values) and fills
/// in its defaults; the API 3.0 rules are checked by [`run`].
pub fn translate(name: &str, params: Value) -> Result<Call, TencentError> {
    let (action, api3) = parse_action(name)?;
    let mut m = match params {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => {
            return Err(TencentError::invalid(
                "body",
                "the request body must be a JSON object",
            ))
        }
    };
    let coded = |e: TencentError| legacy_coded(action, e);
    let steps = match action {
        LegacyAction::GenerateDataKey => {
            let mut v = Value::Object(m);
            apply_defaults(Action::GenerateDataKey, &mut v);
            vec![(api3, v)]
        }
        LegacyAction::CreateKey => {
            if let Some(alias) = text(&m, "Alias").map_err(coded)? {
                check_alias(&alias).map_err(coded)?;
            }
            match text(&m, "KeyUsage").map_err(coded)?.as_deref() {
                None | Some(LEGACY_ENCRYPT_DECRYPT) | Some("ENCRYPT_DECRYPT") => {}
                Some(_) => {
                    return Err(coded(TencentError::value(
                        codes::INVALID_KEY_USAGE,
                        "KeyUsage",
                        "the legacy API makes ENCRYPT/DECRYPT keys only",
                    )))
                }
            }
            m.insert("KeyUsage".into(), Value::String("ENCRYPT_DECRYPT".into()));
            // Legacy type 2 is a "quantum" key, not API 3.0's EXTERNAL one.
            match text(&m, "Type").map_err(coded)?.as_deref() {
                None | Some("1") => {}
                Some("2") => {
                    return Err(TencentError::new(
                        codes::UNSUPPORTED_OPERATION,
                        "Quantum keys (type 2) are not supported by this KMS; use type 1.",
                    ))
                }
                Some(_) => return Err(TencentError::value(codes::INVALID_TYPE, "Type", "1 or 2")),
            }
            m.insert("Type".into(), Value::from(1));
            // API 3.0 parameters the legacy CreateKey does not have.
            m.remove("Tags");
            m.remove("HsmClusterId");
            vec![(api3, Value::Object(m))]
        }
        LegacyAction::SetKeyAttributes => {
            let key_id = m.get("KeyId").cloned();
            let alias = text(&m, "Alias").map_err(coded)?;
            let description = m.get("Description").cloned();
            if alias.is_none() && description.is_none() {
                return Err(TencentError::missing("Alias"));
            }
            let mut steps = Vec::new();
            let with_key = |fields: Vec<(&str, Value)>| {
                let mut p = Map::new();
                if let Some(k) = &key_id {
                    p.insert("KeyId".into(), k.clone());
                }
                for (n, v) in fields {
                    p.insert(n.into(), v);
                }
                Value::Object(p)
            };
            if let Some(a) = alias {
                check_alias(&a).map_err(coded)?;
                steps.push((
                    Action::UpdateAlias,
                    with_key(vec![("Alias", Value::String(a))]),
                ));
            }
            if let Some(d) = description {
                steps.push((
                    Action::UpdateKeyDescription,
                    with_key(vec![("Description", d)]),
                ));
            }
            steps
        }
        LegacyAction::ListKey => {
            // The legacy ListKey has no Role: always the caller's own keys.
            m.remove("Role");
            vec![(api3, Value::Object(m))]
        }
        _ => vec![(api3, Value::Object(m))],
    };
    Ok(Call { action, steps })
}

/// Runs `call`: parses every step first (nothing changes if one is
/// invalid), then hands each to `dispatch` in order and shapes the answer
/// in the legacy form (lower-camel fields, without `code` and the rest of
/// the envelope, which [`success_body`] adds).
pub fn run(
    call: Call,
    mut dispatch: impl FnMut(Request) -> Result<Value, TencentError>,
) -> Result<Value, TencentError> {
    let action = call.action;
    let coded = |e: TencentError| legacy_coded(action, e);
    let requests = call
        .steps
        .iter()
        .map(|(a, p)| wire::parse_request(*a, p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(coded)?;
    let mut outputs = Vec::with_capacity(requests.len());
    for r in requests {
        outputs.push(dispatch(r).map_err(coded)?);
    }
    Ok(shape(action, outputs))
}

/// The legacy usage name: `ENCRYPT/DECRYPT` for symmetric keys; keys made
/// through API 3.0 with another usage keep its name.
fn legacy_usage(v: Option<&Value>) -> Value {
    match v.and_then(Value::as_str) {
        Some("ENCRYPT_DECRYPT") | None => Value::String(LEGACY_ENCRYPT_DECRYPT.into()),
        Some(other) => Value::String(other.into()),
    }
}

/// The legacy `keyMetadata` from an API 3.0 one (CreateKey's answer or
/// DescribeKey's `KeyMetadata`): the documented fields only, `type` when
/// asked for (GetKeyAttributes).
fn key_metadata(m: &Value, with_type: bool) -> Value {
    let mut out = Map::new();
    for (from, to) in [
        ("KeyId", "keyId"),
        ("Alias", "alias"),
        ("CreateTime", "createTime"),
        ("Description", "description"),
        ("KeyState", "keyState"),
    ] {
        out.insert(to.into(), m.get(from).cloned().unwrap_or(Value::Null));
    }
    out.insert("keyUsage".into(), legacy_usage(m.get("KeyUsage")));
    if with_type {
        // Legacy type 1 is a normal key, 2 a "quantum" one (never made
        // here); API 3.0's EXTERNAL keys have no legacy type and show as 1.
        out.insert("type".into(), Value::from(1));
    }
    Value::Object(out)
}

fn shape(action: LegacyAction, outputs: Vec<Value>) -> Value {
    let first = outputs.into_iter().next().unwrap_or(Value::Null);
    match action {
        LegacyAction::CreateKey => {
            serde_json::json!({ "keyMetadata": key_metadata(&first, false) })
        }
        LegacyAction::GetKeyAttributes => {
            let m = first.get("KeyMetadata").cloned().unwrap_or(Value::Null);
            serde_json::json!({ "keyMetadata": key_metadata(&m, true) })
        }
        LegacyAction::SetKeyAttributes | LegacyAction::EnableKey | LegacyAction::DisableKey => {
            Value::Object(Map::new())
        }
        _ => lower_camel_deep(first),
    }
}

/// The legacy code an action's own error table gives `e`, if any
/// (CreateKey's: 4490 `keyUsage`, 4500 alias taken, 4510 CMK limit; the
/// alias rule is shared by SetKeyAttributes).
fn legacy_coded(action: LegacyAction, e: TencentError) -> TencentError {
    let own = match (action, e.code) {
        (LegacyAction::CreateKey, codes::INVALID_KEY_USAGE) => Some(CODE_INVALID_KEY_USAGE),
        (LegacyAction::CreateKey, codes::CMK_LIMIT_EXCEEDED) => Some(CODE_CMK_LIMIT),
        (LegacyAction::CreateKey | LegacyAction::SetKeyAttributes, codes::ALIAS_ALREADY_EXISTS) => {
            Some(CODE_ALIAS_EXISTS)
        }
        _ => None,
    };
    match own {
        Some(c) if e.legacy_code.is_none() => e.with_legacy_code(c),
        _ => e,
    }
}

/// Fills in the legacy API's defaults before [`wire::parse_request`]
/// applies the API 3.0 rules: a GenerateDataKey with neither a (non-empty)
/// `keySpec` nor `numberOfBytes` gets [`DEFAULT_KEY_SPEC`].
pub fn apply_defaults(action: Action, params: &mut Value) {
    if action != Action::GenerateDataKey {
        return;
    }
    let Value::Object(m) = params else {
        return;
    };
    let given = |v: Option<&Value>| match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    };
    if !given(m.get("KeySpec")) && !given(m.get("NumberOfBytes")) {
        m.remove("NumberOfBytes");
        m.insert("KeySpec".into(), Value::String(DEFAULT_KEY_SPEC.into()));
    }
}

// ------------------------------------------------------------- envelope

/// The legacy (`/v2/index.php`) numeric code for an API 3.0 code, from the
/// legacy common error code table (4000 bad parameter, 4100 authentication,
/// 4104 key not found, 4300 denied, 4400 over quota, 4500 replay/expired,
/// 5000 resource missing, 5100 operation failed, 6000 internal).
pub fn legacy_code(code: &str) -> i64 {
    match code {
        codes::AUTH_SECRET_ID_NOT_FOUND => 4104,
        codes::AUTH_SIGNATURE_EXPIRE => 4500,
        c if c.starts_with("AuthFailure") => 4100,
        c if c.starts_with("UnauthorizedOperation") => 4300,
        c if c.starts_with("RequestLimitExceeded") || c.starts_with("LimitExceeded") => 4400,
        c if c.starts_with("ResourceUnavailable") || c.starts_with("ResourceNotFound") => 5000,
        c if c.starts_with("FailedOperation") || c.starts_with("UnsupportedOperation") => 5100,
        codes::INTERNAL_ERROR => 6000,
        _ => 4000,
    }
}

/// Lower-camel form of an API 3.0 field name (`CiphertextBlob` → `ciphertextBlob`).
pub fn lower_camel(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `v` with every object member name in lower-camel form, at any depth
/// (`{"Keys": [{"KeyId"}]}` → `{"keys": [{"keyId"}]}`).
pub fn lower_camel_deep(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (lower_camel(&k), lower_camel_deep(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(lower_camel_deep).collect()),
        other => other,
    }
}

/// The legacy success body: the (lower-camel) fields plus `code: 0`,
/// `message: ""`, `codeDesc: "Success"` and `requestId`.
pub fn success_body(request_id: &str, fields: Value) -> Value {
    let mut out = Map::new();
    out.insert("code".into(), Value::from(0));
    out.insert("message".into(), Value::String(String::new()));
    out.insert("codeDesc".into(), Value::String("Success".into()));
    out.insert("requestId".into(), Value::String(request_id.into()));
    if let Value::Object(m) = fields {
        for (k, v) in m {
            out.insert(lower_camel(&k), v);
        }
    }
    Value::Object(out)
}

/// What a legacy client is told when its `Nonce` + `Timestamp` come again.
const REPLAY_MESSAGE: &str = "This Nonce and Timestamp were already used by this SecretId: each pair is accepted once; sign the request again with a new Nonce.";

/// The legacy error body: `{code: <int>, codeDesc: <API 3.0 code>, message, requestId}`.
/// The message names parameters as a legacy client sent them
/// ([`legacy_spelling`]); a replay is explained in the legacy API's terms
/// (its Nonce, not API 3.0's same-second rule).
pub fn error_body(request_id: &str, err: &TencentError) -> Value {
    let replayed =
        err.code == codes::AUTH_SIGNATURE_FAILURE && err.legacy_code == Some(REPLAY_CODE);
    let message = if replayed {
        REPLAY_MESSAGE.to_string()
    } else {
        legacy_spelling(&err.message)
    };
    serde_json::json!({
        "code": err.legacy_code.unwrap_or_else(|| legacy_code(err.code)),
        "codeDesc": err.code,
        "message": message,
        "requestId": request_id,
    })
}

/// A message with the parameter names it quotes (`` `KeySpec` ``,
/// `` `Tags.0.TagKey` ``) in the legacy API's lower-camel spelling
/// (`` `keySpec` ``), the one a legacy client sent: the parsers name
/// parameters in API 3.0 spelling, because [`wire::params_from_flat`] maps
/// legacy names to it. Common parameters (`Action`, `Nonce`, …) are spelled
/// alike in both and stay; so does anything quoted that is not a name.
pub fn legacy_spelling(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd parts are the quoted ones (between a pair of backquotes).
        if i % 2 == 1 {
            let words: Vec<String> = part.split(' ').map(legacy_name).collect();
            out.push_str(&words.join(" "));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// One quoted word in legacy spelling, if it is an API 3.0 parameter name.
fn legacy_name(word: &str) -> String {
    let is_name = word
        .split('.')
        .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric()))
        && word.starts_with(|c: char| c.is_ascii_uppercase());
    if !is_name || COMMON_PARAMS.contains(&word) {
        return word.to_string();
    }
    word.split('.')
        .map(lower_camel)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests;
