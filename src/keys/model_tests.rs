//! Unit tests of the key state machine (no I/O: a fake material source).

use super::*;

struct Fake(u8);

impl MaterialSource for Fake {
    fn new_key_id(&mut self) -> KeyId {
        self.0 += 1;
        KeyId::from_bytes([self.0; 16])
    }
    fn sealed_material(
        &mut self,
        key: KeyId,
        version: u32,
        _usage: KeyUsage,
    ) -> Result<Vec<u8>, KeyError> {
        Ok([&key.as_bytes()[..], &version.to_be_bytes()].concat())
    }
}

const LIMITS: Limits = Limits { max_keys: 3 };

fn run(st: &mut State, src: &mut Fake, cmd: KeyCommand, now: u64) -> Result<KeyMetadata, KeyError> {
    let plan = st.plan(Change::Command(cmd), now, LIMITS, src)?;
    let Outcome::Key(id) = plan.outcome else {
        panic!("not a key outcome")
    };
    st.commit(plan.mutations);
    Ok(st.key(&id).unwrap().metadata.clone())
}

fn create(st: &mut State, src: &mut Fake, alias: &str) -> Result<KeyMetadata, KeyError> {
    run(
        st,
        src,
        KeyCommand::Create(CreateKeyRequest {
            alias: Some(alias.into()),
            ..Default::default()
        }),
        1000,
    )
}

#[test]
fn alias_rules() {
    for ok in ["a", "A-1_b", "0abc", &"x".repeat(60), "kms", "KMSx-1"] {
        assert_eq!(validate_alias(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "_a",
        "a b",
        "a.b",
        "é",
        &"x".repeat(61),
        "kms-mine",
        "KMS-mine",
        "9999aed0-4956-11e9-bc70-5254005e86b4",
    ] {
        assert_eq!(validate_alias(bad), Err(KeyError::InvalidAlias), "{bad}");
    }
}

#[test]
fn create_makes_an_enabled_key_with_version_1() {
    let (mut st, mut src) = (State::default(), Fake(0));
    let m = create(&mut st, &mut src, "orders").unwrap();
    assert_eq!(m.key_state, KeyState::Enabled);
    assert_eq!(m.create_time, 1000);
    assert_eq!(m.primary_version, Some(1));
    assert_eq!(m.versions.len(), 1);
    assert_eq!(m.key_usage, KeyUsage::EncryptDecrypt);
    assert_eq!(st.resolve("orders").unwrap().metadata.key_id, m.key_id);
    assert_eq!(
        st.resolve(&m.key_id.to_string()).unwrap().metadata.key_id,
        m.key_id
    );
    assert_eq!(st.resolve("nope").unwrap_err(), KeyError::CmkNotFound);
}

#[test]
fn create_checks_every_parameter() {
    let (mut st, mut src) = (State::default(), Fake(0));
    create(&mut st, &mut src, "taken").unwrap();
    let try_create = |st: &mut State, src: &mut Fake, req: CreateKeyRequest| {
        run(st, src, KeyCommand::Create(req), 1)
    };
    assert_eq!(
        create(&mut st, &mut src, "taken").unwrap_err(),
        KeyError::AliasAlreadyExists
    );
    assert_eq!(
        create(&mut st, &mut src, "kms-x").unwrap_err(),
        KeyError::InvalidAlias
    );
    let long = CreateKeyRequest {
        description: "d".repeat(1025),
        ..Default::default()
    };
    assert!(matches!(
        try_create(&mut st, &mut src, long),
        Err(KeyError::InvalidParameter(_))
    ));
    let exact = CreateKeyRequest {
        description: "d".repeat(1024),
        ..Default::default()
    };
    assert!(try_create(&mut st, &mut src, exact).is_ok());
    let tag = |k: &str| Tag {
        tag_key: k.into(),
        tag_value: "v".into(),
    };
    let dup = CreateKeyRequest {
        tags: vec![tag("a"), tag("b"), tag("a")],
        ..Default::default()
    };
    assert_eq!(
        try_create(&mut st, &mut src, dup).unwrap_err(),
        KeyError::DuplicateTagKey
    );
    // SM2 has no implementation here; EXTERNAL material is symmetric only
    for (key_usage, origin) in [
        (KeyUsage::AsymmetricSignVerifySm2, KeyOrigin::Kms),
        (KeyUsage::AsymmetricDecryptSm2, KeyOrigin::Kms),
        (KeyUsage::AsymmetricSignVerifyRsa2048, KeyOrigin::External),
    ] {
        let req = CreateKeyRequest {
            key_usage,
            origin,
            ..Default::default()
        };
        assert_eq!(
            try_create(&mut st, &mut src, req).unwrap_err(),
            KeyError::UnsupportedKeyUsage
        );
    }
    assert_eq!(st.key_count(), 2);
}

#[test]
fn key_limit_is_enforced() {
    let (mut st, mut src) = (State::default(), Fake(0));
    for a in ["a", "b", "c"] {
        create(&mut st, &mut src, a).unwrap();
    }
    assert_eq!(
        create(&mut st, &mut src, "d").unwrap_err(),
        KeyError::LimitExceeded
    );
}

#[test]
fn plan_alone_changes_nothing() {
    let (st, mut src) = (State::default(), Fake(0));
    let plan = st
        .plan(
            Change::Command(KeyCommand::Create(CreateKeyRequest::default())),
            1,
            LIMITS,
            &mut src,
        )
        .unwrap();
    assert_eq!(plan.mutations.len(), 1);
    assert_eq!(st.key_count(), 0);
}

#[test]
fn enable_disable_and_deletion_lifecycle() {
    let (mut st, mut src) = (State::default(), Fake(0));
    let k = create(&mut st, &mut src, "k").unwrap().key_id.to_string();
    let m = run(
        &mut st,
        &mut src,
        KeyCommand::Disable { key: "k".into() },
        2,
    )
    .unwrap();
    assert_eq!(m.key_state, KeyState::Disabled);
    let m = run(&mut st, &mut src, KeyCommand::Enable { key: k.clone() }, 3).unwrap();
    assert_eq!(m.key_state, KeyState::Enabled);

    for days in [6, 31] {
        let r = run(
            &mut st,
            &mut src,
            KeyCommand::ScheduleDeletion {
                key: k.clone(),
                pending_window_days: days,
            },
            4,
        );
        assert!(matches!(r, Err(KeyError::InvalidParameter(_))), "{days}");
    }
    let m = run(
        &mut st,
        &mut src,
        KeyCommand::ScheduleDeletion {
            key: k.clone(),
            pending_window_days: 7,
        },
        100,
    )
    .unwrap();
    assert_eq!(m.key_state, KeyState::PendingDelete);
    assert_eq!(m.deletion_date, Some(100 + 7 * DAY));
    assert_eq!(
        run(&mut st, &mut src, KeyCommand::Enable { key: k.clone() }, 5).unwrap_err(),
        KeyError::CmkPendingDelete
    );
    assert_eq!(
        run(&mut st, &mut src, KeyCommand::Rotate { key: k.clone() }, 5).unwrap_err(),
        KeyError::CmkPendingDelete
    );
    let m = run(
        &mut st,
        &mut src,
        KeyCommand::CancelDeletion { key: k.clone() },
        6,
    )
    .unwrap();
    assert_eq!(m.key_state, KeyState::Disabled);
    assert_eq!(m.deletion_date, None);
    assert!(matches!(
        run(&mut st, &mut src, KeyCommand::CancelDeletion { key: k }, 7),
        Err(KeyError::InvalidState(_))
    ));
}

#[test]
fn rotation_makes_new_primary_and_keeps_old_versions() {
    let (mut st, mut src) = (State::default(), Fake(0));
    create(&mut st, &mut src, "k").unwrap();
    let m = run(
        &mut st,
        &mut src,
        KeyCommand::Rotate { key: "k".into() },
        50,
    )
    .unwrap();
    assert_eq!(m.primary_version, Some(2));
    assert_eq!(m.last_rotate_time, Some(50));
    let rec = st.resolve("k").unwrap();
    assert!(rec.sealed(1).is_some() && rec.sealed(2).is_some());
    assert_eq!(check_record(rec), Ok(()));

    for days in [6, 366] {
        assert!(run(
            &mut st,
            &mut src,
            KeyCommand::EnableRotation {
                key: "k".into(),
                rotate_days: Some(days)
            },
            1
        )
        .is_err());
    }
    let m = run(
        &mut st,
        &mut src,
        KeyCommand::EnableRotation {
            key: "k".into(),
            rotate_days: Some(7),
        },
        100,
    )
    .unwrap();
    assert!(m.key_rotation_enabled);
    assert_eq!(m.next_rotate_time, Some(100 + 7 * DAY));
    let id = m.key_id;
    let plan = st
        .plan(
            Change::AutoRotate { key: id },
            200 + 7 * DAY,
            LIMITS,
            &mut src,
        )
        .unwrap();
    st.commit(plan.mutations);
    let m = &st.key(&id).unwrap().metadata;
    assert_eq!(m.primary_version, Some(3));
    assert_eq!(m.next_rotate_time, Some(200 + 14 * DAY));
    let m = run(
        &mut st,
        &mut src,
        KeyCommand::DisableRotation { key: "k".into() },
        1,
    )
    .unwrap();
    assert!(!m.key_rotation_enabled && m.next_rotate_time.is_none());
}

#[test]
fn external_key_waits_for_material() {
    let (mut st, mut src) = (State::default(), Fake(0));
    let m = run(
        &mut st,
        &mut src,
        KeyCommand::Create(CreateKeyRequest {
            origin: KeyOrigin::External,
            ..Default::default()
        }),
        1,
    )
    .unwrap();
    assert_eq!(m.key_state, KeyState::PendingImport);
    assert!(m.versions.is_empty() && m.primary_version.is_none());
    let key = m.key_id.to_string();
    assert_eq!(
        run(
            &mut st,
            &mut src,
            KeyCommand::Enable { key: key.clone() },
            1
        )
        .unwrap_err(),
        KeyError::CmkPendingImport
    );
    // deletion cancelled before import goes back to waiting
    run(
        &mut st,
        &mut src,
        KeyCommand::ScheduleDeletion {
            key: key.clone(),
            pending_window_days: 7,
        },
        1,
    )
    .unwrap();
    let m = run(
        &mut st,
        &mut src,
        KeyCommand::CancelDeletion { key: key.clone() },
        1,
    )
    .unwrap();
    assert_eq!(m.key_state, KeyState::PendingImport);

    let import = |st: &State, src: &mut Fake| {
        st.plan(
            Change::ImportMaterial {
                key: m.key_id,
                sealed: vec![1, 2, 3],
            },
            9,
            LIMITS,
            src,
        )
    };
    let plan = import(&st, &mut src).unwrap();
    st.commit(plan.mutations);
    let got = &st.key(&m.key_id).unwrap().metadata;
    assert_eq!(got.key_state, KeyState::Enabled);
    assert_eq!(got.primary_version, Some(1));
    assert!(matches!(
        import(&st, &mut src),
        Err(KeyError::InvalidState(_))
    ));
    assert!(matches!(
        run(&mut st, &mut src, KeyCommand::Rotate { key }, 1),
        Err(KeyError::InvalidState(_))
    ));
}

#[test]
fn alias_update_frees_the_old_alias() {
    let (mut st, mut src) = (State::default(), Fake(0));
    create(&mut st, &mut src, "old").unwrap();
    create(&mut st, &mut src, "other").unwrap();
    let upd = |a: &str| KeyCommand::UpdateAlias {
        key: "old".into(),
        alias: a.into(),
    };
    assert_eq!(
        run(&mut st, &mut src, upd("other"), 1).unwrap_err(),
        KeyError::AliasAlreadyExists
    );
    assert_eq!(
        run(&mut st, &mut src, upd("bad alias"), 1).unwrap_err(),
        KeyError::InvalidAlias
    );
    run(&mut st, &mut src, upd("new"), 1).unwrap();
    assert!(st.resolve("old").is_err());
    assert!(st.resolve("new").is_ok());
    create(&mut st, &mut src, "old").unwrap();
}

#[test]
fn purge_removes_the_key_and_its_alias() {
    let (mut st, mut src) = (State::default(), Fake(0));
    let id = create(&mut st, &mut src, "k").unwrap().key_id;
    assert!(st
        .plan(Change::Purge { key: id }, 1, LIMITS, &mut src)
        .is_err());
    run(
        &mut st,
        &mut src,
        KeyCommand::ScheduleDeletion {
            key: "k".into(),
            pending_window_days: 7,
        },
        1,
    )
    .unwrap();
    let plan = st
        .plan(Change::Purge { key: id }, 1, LIMITS, &mut src)
        .unwrap();
    st.commit(plan.mutations);
    assert_eq!(st.key_count(), 0);
    assert!(st.resolve("k").is_err());
}

#[test]
fn restore_skips_identical_and_refuses_different() {
    let (mut st, mut src) = (State::default(), Fake(0));
    create(&mut st, &mut src, "a").unwrap();
    let backup = Backup {
        format: Backup::FORMAT.into(),
        created_at: 1,
        key_check: vec![],
        keys: st.keys().cloned().collect(),
        credentials: vec![],
    };
    let plan = st
        .plan(
            Change::RestoreBackup(Box::new(backup.clone())),
            1,
            LIMITS,
            &mut src,
        )
        .unwrap();
    assert!(plan.mutations.is_empty());
    assert_eq!(
        plan.outcome,
        Outcome::Restored(ImportReport {
            keys_unchanged: 1,
            ..Default::default()
        })
    );
    // the key changed since the backup: refuse
    run(
        &mut st,
        &mut src,
        KeyCommand::Disable { key: "a".into() },
        2,
    )
    .unwrap();
    assert!(matches!(
        st.plan(
            Change::RestoreBackup(Box::new(backup.clone())),
            1,
            LIMITS,
            &mut src
        ),
        Err(KeyError::ImportConflict(_))
    ));
    // into an empty store, where another key took the alias: refuse
    let mut other = State::default();
    let mut src2 = Fake(100);
    create(&mut other, &mut src2, "a").unwrap();
    assert!(matches!(
        other.plan(
            Change::RestoreBackup(Box::new(backup.clone())),
            1,
            LIMITS,
            &mut src2
        ),
        Err(KeyError::ImportConflict(_))
    ));
    let empty = State::default();
    let plan = empty
        .plan(
            Change::RestoreBackup(Box::new(backup)),
            1,
            LIMITS,
            &mut src2,
        )
        .unwrap();
    assert_eq!(plan.mutations.len(), 1);
}

#[test]
fn from_records_refuses_duplicate_aliases() {
    let (mut st, mut src) = (State::default(), Fake(0));
    create(&mut st, &mut src, "a").unwrap();
    let mut rec = st.keys().next().unwrap().clone();
    let first = rec.clone();
    rec.metadata.key_id = KeyId::from_bytes([99; 16]);
    assert!(State::from_records(vec![first, rec], vec![]).is_err());
}

#[test]
fn metadata_serializes_with_tencent_names() {
    let (mut st, mut src) = (State::default(), Fake(0));
    let m = create(&mut st, &mut src, "a").unwrap();
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["KeyId"], m.key_id.to_string());
    assert_eq!(v["Alias"], "a");
    assert_eq!(v["KeyState"], "Enabled");
    assert_eq!(v["KeyUsage"], "ENCRYPT_DECRYPT");
    assert_eq!(v["CreateTime"], 1000);
    assert_eq!(
        "ASYMMETRIC_SIGN_VERIFY_RSA_2048"
            .parse::<KeyUsage>()
            .unwrap(),
        KeyUsage::AsymmetricSignVerifyRsa2048
    );
    assert!("ENCRYPT".parse::<KeyUsage>().is_err());
}

#[test]
fn every_usage_is_one_spec_and_purpose_and_back() {
    for u in KeyUsage::ALL {
        let (spec, purpose) = u.parts();
        assert_eq!(KeyUsage::from_parts(spec, purpose), Some(u), "{u:?}");
    }
    assert_eq!(
        KeyUsage::from_parts(KeySpec::Aes256, KeyPurpose::SignVerify),
        None
    );
    assert_eq!(
        KeyUsage::from_parts(KeySpec::EcP256, KeyPurpose::EncryptDecrypt),
        None
    );
    // the stored spelling is what it always was
    assert_eq!(
        serde_json::to_string(&KeyUsage::AsymmetricSignVerifyEcc).unwrap(),
        "\"ASYMMETRIC_SIGN_VERIFY_ECC\""
    );
}
