use serde_json::json;

use super::*;
use crate::kms::tencent::wire::{error_body as api3_error_body, ParamStyle};

/// Flat legacy parameters as the SDK sends them.
fn flat(pairs: &[(&str, &str)]) -> Value {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wire::params_from_flat(&pairs, ParamStyle::Legacy).unwrap()
}

/// Runs `name` with `pairs` against a dispatcher that records the requests
/// and answers each with `answer`.
fn run_with(
    name: &str,
    pairs: &[(&str, &str)],
    answer: Value,
) -> (Result<Value, TencentError>, Vec<Request>) {
    let mut seen = Vec::new();
    let out = translate(name, flat(pairs)).and_then(|call| {
        run(call, |r| {
            seen.push(r);
            Ok(answer.clone())
        })
    });
    (out, seen)
}

#[test]
fn envelope_shapes() {
    let ok = success_body(
        "r-3",
        json!({"keyId": "k", "ciphertextBlob": "c", "plaintext": "p"}),
    );
    assert_eq!(
        ok,
        json!({"code": 0, "message": "", "codeDesc": "Success", "requestId": "r-3",
               "keyId": "k", "ciphertextBlob": "c", "plaintext": "p"})
    );
    let lerr = error_body("r-4", &TencentError::missing("keyId"));
    assert_eq!(lerr["code"], 4000);
    assert_eq!(lerr["codeDesc"], "MissingParameter");
    // A replay: a signature failure in API 3.0, 4500 in the legacy table.
    let replay = error_body("r-5", &TencentError::replayed());
    assert_eq!(replay["code"], REPLAY_CODE);
    assert_eq!(replay["codeDesc"], "AuthFailure.SignatureFailure");
    assert!(
        replay["message"].as_str().unwrap().contains("Nonce"),
        "{replay}"
    );
    assert_eq!(
        api3_error_body("r-5", &TencentError::replayed())["Response"]["Error"]["Code"],
        "AuthFailure.SignatureFailure"
    );
    assert_eq!(legacy_code("AuthFailure.SignatureFailure"), 4100);
    assert_eq!(legacy_code("AuthFailure.SignatureExpire"), 4500);
    assert_eq!(legacy_code("ResourceUnavailable.CmkNotFound"), 5000);
    assert_eq!(legacy_code("ResourceUnavailable.CmkDisabled"), 5000);
}

#[test]
fn legacy_messages_name_parameters_as_sent() {
    assert_eq!(
        legacy_spelling("Invalid parameter `KeySpec`: AES_128 or AES_256."),
        "Invalid parameter `keySpec`: AES_128 or AES_256."
    );
    assert_eq!(
        legacy_spelling("missing `KeySpec or NumberOfBytes`"),
        "missing `keySpec or numberOfBytes`"
    );
    assert_eq!(legacy_spelling("`Tags.0.TagKey`"), "`tags.0.tagKey`");
    // Common parameters, header names and plain words stay.
    for same in [
        "`Action`",
        "`Nonce`",
        "`X-TC-Action`",
        "`body`",
        "no quotes KeyId",
    ] {
        assert_eq!(legacy_spelling(same), same);
    }
    let body = error_body("r", &TencentError::missing("KeyId"));
    assert_eq!(
        body["message"],
        "The request is missing a required parameter `keyId`."
    );
}

#[test]
fn legacy_generate_data_key_defaults_to_aes_256() {
    let with = |v: Value| {
        let mut v = v;
        apply_defaults(Action::GenerateDataKey, &mut v);
        match wire::parse_request(Action::GenerateDataKey, &v) {
            Ok(Request::GenerateDataKey(g)) => Ok(g.number_of_bytes),
            Ok(_) => Err("another request"),
            Err(e) => Err(e.code),
        }
    };
    assert_eq!(with(json!({"KeyId": "k"})), Ok(32));
    assert_eq!(with(json!({"KeyId": "k", "KeySpec": ""})), Ok(32));
    assert_eq!(with(json!({"KeyId": "k", "KeySpec": "AES_128"})), Ok(16));
    assert_eq!(with(json!({"KeyId": "k", "NumberOfBytes": "24"})), Ok(24));
    assert_eq!(
        with(json!({"KeyId": "k", "KeySpec": "AES_9"})),
        Err("InvalidParameter")
    );
    // Other actions are left alone; API 3.0 keeps its rule.
    let mut v = json!({"KeyId": "k"});
    apply_defaults(Action::Encrypt, &mut v);
    assert_eq!(v, json!({"KeyId": "k"}));
    assert!(wire::parse_request(Action::GenerateDataKey, &json!({"KeyId": "k"})).is_err());
}

#[test]
fn every_legacy_action_maps_to_an_api3_action_with_a_quota() {
    let quotas = wire::default_quotas();
    for (name, legacy, api3) in ACTIONS {
        assert_eq!(parse_action(name).unwrap(), (*legacy, *api3));
        assert!(
            quotas.iter().any(|(n, _)| *n == api3.name()),
            "{name} → {}",
            api3.name()
        );
    }
    // API 3.0-only actions are not legacy ones; the error lists the served.
    let e = parse_action("DescribeKey").unwrap_err();
    assert_eq!(e.code, "InvalidAction");
    assert!(e.message.contains("GetKeyAttributes"), "{}", e.message);
    assert!(e.message.contains("CancelKeyDeletion"), "{}", e.message);
}

#[test]
fn create_key_takes_the_legacy_usage_and_answers_key_metadata() {
    let created = json!({"KeyId": "k-1", "Alias": "orders", "CreateTime": 7,
        "Description": "d", "KeyState": "Enabled", "KeyUsage": "ENCRYPT_DECRYPT",
        "TagCode": 0, "TagMsg": ""});
    let (out, seen) = run_with(
        "CreateKey",
        &[
            ("alias", "orders"),
            ("description", "d"),
            ("keyUsage", "ENCRYPT/DECRYPT"),
            ("type", "1"),
        ],
        created,
    );
    assert_eq!(
        out.unwrap(),
        json!({"keyMetadata": {"keyId": "k-1", "alias": "orders", "createTime": 7,
            "description": "d", "keyState": "Enabled", "keyUsage": "ENCRYPT/DECRYPT"}})
    );
    match seen.as_slice() {
        [Request::CreateKey(c)] => {
            assert_eq!(c.alias, "orders");
            assert_eq!(c.key_usage, wire::KeyUsage::EncryptDecrypt);
            assert!(!c.external, "legacy type 1 is a KMS-made key");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_key_errors_carry_the_legacy_table_codes() {
    let err = |pairs: &[(&str, &str)]| run_with("CreateKey", pairs, json!({})).0.unwrap_err();
    let e = err(&[("alias", "a"), ("keyUsage", "ASYMMETRIC_SIGN_VERIFY_ECC")]);
    assert_eq!(e.code, "InvalidParameterValue.InvalidKeyUsage");
    assert_eq!(error_body("r", &e)["code"], CODE_INVALID_KEY_USAGE);
    assert!(error_body("r", &e)["message"]
        .as_str()
        .unwrap()
        .contains("`keyUsage`"));
    // Legacy type 2 is a quantum key: not served (never API 3.0's EXTERNAL).
    let e = err(&[("alias", "a"), ("type", "2")]);
    assert_eq!(e.code, "UnsupportedOperation");
    assert_eq!(error_body("r", &e)["code"], 5100);
    assert_eq!(
        err(&[("alias", "a"), ("type", "3")]).code,
        "InvalidParameterValue.InvalidType"
    );
    // Aliases: at most 32 characters here (60 in API 3.0), named as sent.
    let e = err(&[("alias", &"a".repeat(33))]);
    assert_eq!(e.code, "InvalidParameterValue.InvalidAlias");
    assert!(error_body("r", &e)["message"]
        .as_str()
        .unwrap()
        .contains("`alias`"));
    assert!(
        run_with("CreateKey", &[("alias", &"a".repeat(32))], json!({}))
            .0
            .is_ok()
    );
    let e = err(&[("description", "no alias")]);
    assert_eq!(e.code, "MissingParameter");
    assert_eq!(
        error_body("r", &e)["message"],
        "The request is missing a required parameter `alias`."
    );
    // Store refusals get CreateKey's own codes.
    let taken = |_: Request| -> Result<Value, TencentError> {
        Err(TencentError::new(codes::ALIAS_ALREADY_EXISTS, "taken"))
    };
    let call = translate("CreateKey", flat(&[("alias", "a")])).unwrap();
    assert_eq!(
        error_body("r", &run(call, taken).unwrap_err())["code"],
        CODE_ALIAS_EXISTS
    );
    let full = |_: Request| -> Result<Value, TencentError> {
        Err(TencentError::new(codes::CMK_LIMIT_EXCEEDED, "full"))
    };
    let call = translate("CreateKey", flat(&[("alias", "a")])).unwrap();
    assert_eq!(
        error_body("r", &run(call, full).unwrap_err())["code"],
        CODE_CMK_LIMIT
    );
}

#[test]
fn get_key_attributes_answers_the_legacy_key_metadata() {
    let described = json!({"KeyMetadata": {"KeyId": "k-1", "Alias": "a", "CreateTime": 9,
        "Description": "", "KeyState": "Disabled", "KeyUsage": "ENCRYPT_DECRYPT", "Type": 2,
        "Origin": "EXTERNAL", "CreatorUin": 0}});
    let (out, seen) = run_with("GetKeyAttributes", &[("keyId", "k-1")], described);
    assert_eq!(
        out.unwrap(),
        json!({"keyMetadata": {"keyId": "k-1", "alias": "a", "createTime": 9,
            "description": "", "keyState": "Disabled", "keyUsage": "ENCRYPT/DECRYPT", "type": 1}})
    );
    assert!(matches!(seen.as_slice(), [Request::DescribeKey(k)] if k.key_id == "k-1"));
    let e = run_with("GetKeyAttributes", &[], json!({})).0.unwrap_err();
    assert_eq!(
        error_body("r", &e)["message"],
        "The request is missing a required parameter `keyId`."
    );
}

#[test]
fn set_key_attributes_changes_alias_then_description_after_checking_both() {
    let (out, seen) = run_with(
        "SetKeyAttributes",
        &[
            ("keyId", "k-1"),
            ("alias", "renamed"),
            ("description", "new"),
        ],
        json!({}),
    );
    assert_eq!(out.unwrap(), json!({}));
    match seen.as_slice() {
        [Request::UpdateAlias(a), Request::UpdateKeyDescription(d)] => {
            assert_eq!((a.key_id.as_str(), a.alias.as_str()), ("k-1", "renamed"));
            assert_eq!((d.key_id.as_str(), d.description.as_str()), ("k-1", "new"));
        }
        other => panic!("{other:?}"),
    }
    // Only the alias (the documented parameter).
    let (_, seen) = run_with(
        "SetKeyAttributes",
        &[("keyId", "k-1"), ("alias", "x")],
        json!({}),
    );
    assert!(matches!(seen.as_slice(), [Request::UpdateAlias(_)]));
    // A bad description changes nothing: every step is parsed first.
    let long = "d".repeat(1025);
    let (out, seen) = run_with(
        "SetKeyAttributes",
        &[("keyId", "k-1"), ("alias", "x"), ("description", &long)],
        json!({}),
    );
    assert_eq!(out.unwrap_err().code, "InvalidParameter");
    assert!(seen.is_empty());
    // Nothing to set.
    let e = run_with("SetKeyAttributes", &[("keyId", "k-1")], json!({}))
        .0
        .unwrap_err();
    assert_eq!(e.code, "MissingParameter");
    assert!(error_body("r", &e)["message"]
        .as_str()
        .unwrap()
        .contains("`alias`"));
}

#[test]
fn list_key_pages_and_answers_lower_camel_keys() {
    let listed = json!({"Keys": [{"KeyId": "a"}, {"KeyId": "b"}], "TotalCount": 5});
    let (out, seen) = run_with(
        "ListKey",
        &[("offset", "2"), ("limit", "2"), ("role", "1")],
        listed,
    );
    assert_eq!(
        out.unwrap(),
        json!({"keys": [{"keyId": "a"}, {"keyId": "b"}], "totalCount": 5})
    );
    match seen.as_slice() {
        [Request::ListKeys(l)] => assert_eq!((l.offset, l.limit, l.role), (2, 2, 0)),
        other => panic!("{other:?}"),
    }
    let (_, seen) = run_with("ListKey", &[], json!({}));
    match seen.as_slice() {
        [Request::ListKeys(l)] => assert_eq!((l.offset, l.limit), (0, 10)),
        other => panic!("{other:?}"),
    }
    let e = run_with("ListKey", &[("limit", "0")], json!({}))
        .0
        .unwrap_err();
    assert!(error_body("r", &e)["message"]
        .as_str()
        .unwrap()
        .contains("`limit`"));
}

#[test]
fn deletion_actions_take_lower_camel_names() {
    let (out, seen) = run_with(
        "ScheduleKeyDeletion",
        &[("keyId", "k-1"), ("pendingWindowInDays", "7")],
        json!({"DeletionDate": 99, "KeyId": "k-1"}),
    );
    assert_eq!(out.unwrap(), json!({"deletionDate": 99, "keyId": "k-1"}));
    match seen.as_slice() {
        [Request::ScheduleKeyDeletion(s)] => assert_eq!(s.pending_window_in_days, 7),
        other => panic!("{other:?}"),
    }
    let e = run_with(
        "ScheduleKeyDeletion",
        &[("keyId", "k-1"), ("pendingWindowInDays", "3")],
        json!({}),
    )
    .0
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameter.InvalidPendingWindowInDays");
    assert!(error_body("r", &e)["message"]
        .as_str()
        .unwrap()
        .contains("`pendingWindowInDays`"));
    let (out, _) = run_with(
        "CancelKeyDeletion",
        &[("keyId", "k-1")],
        json!({"KeyId": "k-1"}),
    );
    assert_eq!(out.unwrap(), json!({"keyId": "k-1"}));
    for (action, api3) in [("EnableKey", "EnableKey"), ("DisableKey", "DisableKey")] {
        let call = translate(action, flat(&[("keyId", "k-1")])).unwrap();
        assert_eq!(call.quota_action().name(), api3);
        let (out, _) = run_with(action, &[("keyId", "k-1")], json!({}));
        assert_eq!(out.unwrap(), json!({}));
    }
}
