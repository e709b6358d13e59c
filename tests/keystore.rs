//! The key store end to end: on-disk layout and secrecy, lifecycle, crypto
//! operations, credentials, backup/restore, and the CLI both directly and
//! through the admin socket of a store held by "the server". With
//! `SEALGATE_TEST_STORE=postgres` the stores are on PostgreSQL (see
//! `tests/common`), except in the tests about the data directory's files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealgate::cli::credentials::{self, CredentialsCommand};
use sealgate::cli::keys::{self as keys_cli, CliError, KeysCommand, StoreArgs};
use sealgate::clock::ManualClock;
use sealgate::envelope::WrappedDek;
use sealgate::keys::keywrap::{unwrap_dek, wrap_dek};
use sealgate::keys::root::encode_root_key;
use sealgate::keys::*;
use sealgate::secret::{CmkMaterial, DataKey, RootKey, SecretBytes};

fn root() -> RootKey {
    RootKey::from_bytes([0x42; 32])
}

fn open_with(dir: &Path, key: RootKey, options: StoreOptions) -> Result<KeyStore, StoreError> {
    common::open_store(dir, RootKeySource::Key(key), options)
}

/// Whether this test is about the embedded store alone (with
/// `SEALGATE_TEST_STORE=postgres` it prints why it is skipped).
fn embedded_only(what: &str) -> bool {
    if common::on_postgres() {
        eprintln!("skipped on PostgreSQL: this test is about {what}");
        return true;
    }
    false
}

fn open(dir: &Path) -> KeyStore {
    open_with(dir, root(), StoreOptions::default()).unwrap()
}

fn with_clock(dir: &Path, clock: Arc<ManualClock>) -> KeyStore {
    open_with(
        dir,
        root(),
        StoreOptions {
            clock,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn aliased(alias: &str) -> CreateKeyRequest {
    CreateKeyRequest {
        alias: Some(alias.into()),
        ..Default::default()
    }
}

#[test]
fn empty_directory_just_works_and_root_key_file_is_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = common::open_store(
        &dir,
        RootKeySource::File(dir.join("root.key")),
        StoreOptions::default(),
    )
    .unwrap();
    let meta = std::fs::metadata(dir.join("root.key")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let k = store.create(aliased("first")).unwrap();
    drop(store);
    let store = common::open_store(
        &dir,
        RootKeySource::File(dir.join("root.key")),
        StoreOptions::default(),
    )
    .unwrap();
    assert_eq!(store.describe("first").unwrap(), k);
}

#[test]
fn second_opener_gets_a_clear_error() {
    if embedded_only("the file lock of the data directory") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let err = open_with(tmp.path(), root(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)), "{err}");
    assert!(err.to_string().contains("in use by another process"));
    drop(store);
    // Another test in this binary may be spawning a child at this moment: the
    // child shares the lock's file description from fork until exec (then
    // close-on-exec drops it), so the lock can outlive `drop` by that window.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open_with(tmp.path(), root(), StoreOptions::default()) {
            Ok(_) => break,
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("reopening after drop: {e}"),
        }
    }
}

#[test]
fn wrong_root_key_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path()).create(aliased("k")).unwrap();
    let err = open_with(
        tmp.path(),
        RootKey::from_bytes([1; 32]),
        StoreOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::WrongRootKey(_)), "{err}");
    // and the right key still opens it, with the key intact
    assert_eq!(open(tmp.path()).verify().unwrap().keys, 1);
}

#[test]
fn missing_root_key_file_for_existing_store_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let keyfile = tmp.path().join("root.key");
    let dir = tmp.path().join("data");
    let src = RootKeySource::File(keyfile.clone());
    common::open_store(&dir, src.clone(), StoreOptions::default()).unwrap();
    std::fs::remove_file(&keyfile).unwrap();
    let err = common::open_store(&dir, src, StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("restore the root key"), "{err}");
    assert!(!keyfile.exists(), "no new root key may replace a lost one");
}

/// True if any 32-byte window of `haystack`, used as an AES-KW key, unwraps
/// one of `wrapped` — i.e. CMK material lies in clear in `haystack`.
/// Windows with more than 4 bytes of 0x00 or of 0xFF are skipped: redb
/// files are mostly zero pages and all-ones allocator bitmaps, and random
/// material looks like that with probability ~4e-7.
fn material_in_clear(haystack: &[u8], wrapped: &[WrappedDek]) -> bool {
    haystack.windows(32).any(|w| {
        let count = |v: u8| w.iter().filter(|b| **b == v).count();
        if count(0x00) > 4 || count(0xFF) > 4 {
            return false;
        }
        let kek = CmkMaterial::from_slice(w).unwrap();
        wrapped.iter().any(|x| unwrap_dek(&kek, x).is_some())
    })
}

#[test]
fn store_file_holds_no_key_material_in_clear() {
    if embedded_only("the layout of keys.redb") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mut wrapped = Vec::new();
    for alias in ["a", "b"] {
        store.create(aliased(alias)).unwrap();
        wrapped.push(store.generate_data_key(alias).unwrap().1);
        store.rotate(alias).unwrap();
        wrapped.push(store.generate_data_key(alias).unwrap().1);
    }
    let cred = store.create_credential(None).unwrap();
    drop(store);
    let raw = std::fs::read(tmp.path().join("keys.redb")).unwrap();
    assert!(!material_in_clear(&raw, &wrapped));
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(root().expose()));
    assert!(!contains(cred.secret.expose()));
    assert!(contains(cred.id.as_bytes()), "the scan does read the file");

    // The detector finds material that is there.
    let kek = CmkMaterial::from_bytes([0x5A; 32]);
    let w = wrap_dek(&kek, &DataKey::from_bytes([1; 32])).unwrap();
    let mut planted = raw[..1000].to_vec();
    planted.extend_from_slice(kek.expose());
    assert!(material_in_clear(&planted, &[w]));
}

#[test]
fn lifecycle_disabled_and_pending_delete_keys_neither_seal_nor_open() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let store = with_clock(tmp.path(), clock.clone());
    let k = store.create(aliased("orders")).unwrap();
    assert_eq!(k.create_time, 1_000_000);
    let ct = store.encrypt("orders", b"secret", b"ctx").unwrap();
    assert_eq!(ct.key_id, k.key_id);
    let (cmk, wrapped, _) = store.generate_data_key("orders").unwrap();

    store.disable("orders").unwrap();
    assert_eq!(
        store.encrypt("orders", b"x", b"").unwrap_err(),
        KeyError::CmkDisabled
    );
    assert_eq!(
        store.decrypt(&ct.blob, b"ctx").unwrap_err(),
        KeyError::CmkDisabled
    );
    assert_eq!(
        store.unwrap_data_key(&cmk, &wrapped).unwrap_err(),
        KeyError::CmkDisabled
    );
    store.enable(&k.key_id.to_string()).unwrap();
    assert_eq!(
        store.decrypt(&ct.blob, b"ctx").unwrap().plaintext.expose(),
        b"secret"
    );

    let m = store.schedule_deletion("orders", 7).unwrap();
    assert_eq!(m.key_state, KeyState::PendingDelete);
    assert_eq!(m.deletion_date, Some(1_000_000 + 7 * 86_400));
    assert_eq!(
        store.decrypt(&ct.blob, b"ctx").unwrap_err(),
        KeyError::CmkPendingDelete
    );
    assert_eq!(
        store.generate_data_key("orders").unwrap_err(),
        KeyError::CmkPendingDelete
    );
    assert_eq!(
        store.cancel_deletion("orders").unwrap().key_state,
        KeyState::Disabled
    );
    store.schedule_deletion("orders", 7).unwrap();

    assert!(store
        .purge_due(1_000_000 + 7 * 86_400 - 1)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.purge_due(1_000_000 + 7 * 86_400).unwrap(),
        vec![k.key_id]
    );
    assert_eq!(
        store.decrypt(&ct.blob, b"ctx").unwrap_err(),
        KeyError::CmkNotFound
    );
    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.describe("orders").unwrap_err(), KeyError::CmkNotFound);
    store.create(aliased("orders")).unwrap();
}

#[test]
fn encrypt_binds_context_and_limits_size() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.create(aliased("k")).unwrap();
    let ct = store.encrypt("k", &[7; 4096], b"{\"a\":\"b\"}").unwrap();
    assert_eq!(
        store.decrypt(&ct.blob, b"{\"a\":\"c\"}").unwrap_err(),
        KeyError::DoesNotOpen
    );
    assert!(matches!(
        store.encrypt("k", &[7; 4097], b""),
        Err(KeyError::InvalidParameter(_))
    ));
    assert!(matches!(
        store.decrypt(b"garbage", b""),
        Err(KeyError::InvalidParameter(_))
    ));
    assert_eq!(
        store.encrypt("missing", b"x", b"").unwrap_err(),
        KeyError::CmkNotFound
    );
}

#[test]
fn every_version_still_opens_after_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(10_000));
    let store = with_clock(tmp.path(), clock.clone());
    store.create(aliased("k")).unwrap();
    let mut blobs = Vec::new();
    let mut deks = Vec::new();
    for v in 1..=3u32 {
        let ct = store.encrypt("k", format!("v{v}").as_bytes(), b"").unwrap();
        assert_eq!(ct.version, v);
        blobs.push(ct);
        let (cmk, w, dek) = store.generate_data_key("k").unwrap();
        assert_eq!(cmk.version, v);
        deks.push((cmk, w, dek));
        if v < 3 {
            assert_eq!(store.rotate("k").unwrap().primary_version, Some(v + 1));
        }
    }
    drop(store);
    let store = with_clock(tmp.path(), clock.clone());
    for (i, ct) in blobs.iter().enumerate() {
        let pt = store.decrypt(&ct.blob, b"").unwrap().plaintext;
        assert_eq!(pt.expose(), format!("v{}", i + 1).as_bytes());
    }
    for (cmk, w, dek) in &deks {
        assert_eq!(
            store.unwrap_data_key(cmk, w).unwrap().expose(),
            dek.expose()
        );
    }
    let mut bad = deks[0].0;
    bad.version = 9;
    assert_eq!(
        store.unwrap_data_key(&bad, &deks[0].1).unwrap_err(),
        KeyError::VersionNotFound
    );
    bad.version = 2;
    assert_eq!(
        store.unwrap_data_key(&bad, &deks[0].1).unwrap_err(),
        KeyError::DoesNotOpen
    );
}

#[test]
fn automatic_rotation_happens_when_due() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let store = with_clock(tmp.path(), clock.clone());
    let a = store.create(aliased("a")).unwrap().key_id;
    store.create(aliased("b")).unwrap();
    assert!(matches!(
        store.enable_rotation("a", Some(6)),
        Err(KeyError::InvalidParameter(_))
    ));
    store.enable_rotation("a", Some(30)).unwrap();
    let day = 86_400;
    assert!(store.rotate_due(30 * day - 1).unwrap().is_empty());
    assert_eq!(store.rotate_due(30 * day).unwrap(), vec![a]);
    assert_eq!(store.describe("a").unwrap().primary_version, Some(2));
    assert_eq!(store.describe("b").unwrap().primary_version, Some(1));
    assert!(store.rotate_due(30 * day + 1).unwrap().is_empty());
    // disabled keys wait
    store.disable("a").unwrap();
    assert!(store.rotate_due(90 * day).unwrap().is_empty());
    store.enable("a").unwrap();
    store.disable_rotation("a").unwrap();
    assert!(store.rotate_due(90 * day).unwrap().is_empty());
}

#[test]
fn data_keys_re_encrypt_and_random() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.create(aliased("a")).unwrap();
    let b = store.create(aliased("b")).unwrap();
    for (spec, len) in [
        (DataKeySpec::from_params(Some("AES_128"), None).unwrap(), 16),
        (DataKeySpec::from_params(Some("AES_256"), None).unwrap(), 32),
        (
            DataKeySpec::from_params(Some("AES_128"), Some(7)).unwrap(),
            7,
        ),
        (DataKeySpec::from_params(None, Some(1024)).unwrap(), 1024),
    ] {
        let dk = store.generate_data_key_blob("a", spec, b"c").unwrap();
        assert_eq!(dk.plaintext.len(), len);
        let back = store.decrypt(&dk.blob, b"c").unwrap();
        assert_eq!(back.plaintext, dk.plaintext);
    }
    for bad in [
        DataKeySpec::from_params(None, Some(0)),
        DataKeySpec::from_params(None, Some(1025)),
        DataKeySpec::from_params(Some("AES_512"), None),
        DataKeySpec::from_params(None, None),
    ] {
        assert!(matches!(bad, Err(KeyError::InvalidParameter(_))));
    }

    let ct = store.encrypt("a", b"move me", b"src").unwrap();
    let re = store.re_encrypt(&ct.blob, b"src", "b", b"dst").unwrap();
    assert_eq!(re.source_key_id, ct.key_id);
    assert_eq!(re.ciphertext.key_id, b.key_id);
    assert_eq!(
        store
            .decrypt(&re.ciphertext.blob, b"dst")
            .unwrap()
            .plaintext
            .expose(),
        b"move me"
    );
    assert_eq!(
        store
            .re_encrypt(&ct.blob, b"wrong", "b", b"dst")
            .unwrap_err(),
        KeyError::DoesNotOpen
    );

    assert_eq!(store.generate_random(1024).unwrap().len(), 1024);
    assert!(store.generate_random(0).is_err());
    assert!(store.generate_random(1025).is_err());
    assert_ne!(
        store.generate_random(32).unwrap(),
        store.generate_random(32).unwrap()
    );
}

#[test]
fn external_key_material_import() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let k = store
        .create(CreateKeyRequest {
            alias: Some("ext".into()),
            origin: KeyOrigin::External,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(k.key_state, KeyState::PendingImport);
    assert_eq!(
        store.encrypt("ext", b"x", b"").unwrap_err(),
        KeyError::CmkPendingImport
    );
    assert!(matches!(
        store.import_key_material("ext", &SecretBytes::new(vec![1; 31])),
        Err(KeyError::InvalidParameter(_))
    ));
    let m = store
        .import_key_material("ext", &SecretBytes::new(vec![9; 32]))
        .unwrap();
    assert_eq!(m.key_state, KeyState::Enabled);
    // the imported material is what wraps DEKs
    let (cmk, wrapped, dek) = store.generate_data_key("ext").unwrap();
    assert_eq!(cmk.version, 1);
    let mine = unwrap_dek(&CmkMaterial::from_bytes([9; 32]), &wrapped).unwrap();
    assert_eq!(mine.expose(), dek.expose());
    assert!(matches!(
        store.import_key_material("ext", &SecretBytes::new(vec![9; 32])),
        Err(KeyError::InvalidState(_))
    ));
    assert!(store.rotate("ext").is_err());
}

#[test]
fn key_limit_and_create_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_with(
        tmp.path(),
        root(),
        StoreOptions {
            max_keys: 2,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let tags = vec![Tag {
        tag_key: "team".into(),
        tag_value: "pay".into(),
    }];
    let a = store
        .create(CreateKeyRequest {
            alias: Some("a".into()),
            description: "orders".into(),
            tags: tags.clone(),
            owner: "AKIDx".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (a.tags, a.description, a.owner),
        (tags, "orders".into(), "AKIDx".into())
    );
    assert_eq!(
        store.create(aliased("a")).unwrap_err(),
        KeyError::AliasAlreadyExists
    );
    store.create(CreateKeyRequest::default()).unwrap();
    assert_eq!(
        store.create(aliased("c")).unwrap_err(),
        KeyError::LimitExceeded
    );
    let list = store.list(1, 10);
    assert_eq!(list.total_count, 2);
    assert_eq!(list.keys.len(), 1);
    let mut pages: Vec<_> = [store.list(0, 1), store.list(1, 1), store.list(2, 1)]
        .into_iter()
        .flat_map(|p| p.keys)
        .map(|k| k.key_id)
        .collect();
    pages.sort();
    let mut all: Vec<_> = store.list(0, 10).keys.iter().map(|k| k.key_id).collect();
    all.sort();
    assert_eq!(pages, all);
    store.update_alias("a", "renamed").unwrap();
    store.update_description("renamed", "new").unwrap();
    assert_eq!(store.describe("renamed").unwrap().description, "new");
    assert_eq!(store.resolve("a").unwrap_err(), KeyError::CmkNotFound);
}

#[test]
fn credentials_lookup_allow_and_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = store.create(aliased("a")).unwrap();
    store.create(aliased("b")).unwrap();
    assert_eq!(
        store
            .create_credential(Some(vec!["nope".into()]))
            .unwrap_err(),
        KeyError::CmkNotFound
    );
    let all = store.create_credential(None).unwrap();
    let only_a = store.create_credential(Some(vec!["a".into()])).unwrap();
    assert!(all.id.starts_with("AKID") && all.id.len() == 36);
    assert!(all.id[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(all.secret.len(), 40);
    assert_ne!(all.secret, only_a.secret);
    assert!(!format!("{all:?}").contains(std::str::from_utf8(all.secret.expose()).unwrap()));

    assert!(store.allowed(&all.id, "b"));
    assert!(store.allowed(&only_a.id, "a"));
    assert!(store.allowed(&only_a.id, &a.key_id.to_string()));
    assert!(!store.allowed(&only_a.id, "b"));
    assert!(!store.allowed("AKIDnobody", "a"));

    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.lookup_secret(&all.id).unwrap(), all.secret);
    assert_eq!(store.list_credentials().len(), 2);
    assert!(store.revoke_credential(&all.id).unwrap().revoked);
    assert!(store.lookup_secret(&all.id).is_none());
    assert!(!store.allowed(&all.id, "a"));
    assert!(store.lookup_secret(&only_a.id).is_some());
    assert!(store.lookup_secret("AKIDnobody").is_none());
}

#[test]
fn backup_restores_keys_that_open_old_ciphertexts() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("one"));
    store.create(aliased("a")).unwrap();
    store.rotate("a").unwrap();
    let ct = store.encrypt("a", b"keep", b"").unwrap();
    let cred = store.create_credential(None).unwrap();
    let backup = store.export();
    let json = serde_json::to_string(&backup).unwrap();
    assert!(!json.contains(std::str::from_utf8(cred.secret.expose()).unwrap()));

    // restore into a new data dir with the same root key
    let two = open(&tmp.path().join("two"));
    let report = two.import(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!((report.keys_imported, report.credentials_imported), (1, 1));
    assert_eq!(
        two.decrypt(&ct.blob, b"").unwrap().plaintext.expose(),
        b"keep"
    );
    assert_eq!(two.lookup_secret(&cred.id).unwrap(), cred.secret);
    // again: nothing to do
    let again = two.import(backup.clone()).unwrap();
    assert_eq!((again.keys_imported, again.keys_unchanged), (0, 1));
    // a changed key is never overwritten, and nothing else is imported
    two.disable("a").unwrap();
    store.create(aliased("b")).unwrap();
    let newer = store.export();
    assert!(matches!(
        two.import(newer),
        Err(KeyError::ImportConflict(_))
    ));
    assert!(two.describe("b").is_err());
    // a store with another root key refuses the backup
    let other = open_with(
        &tmp.path().join("three"),
        RootKey::from_bytes([3; 32]),
        StoreOptions::default(),
    )
    .unwrap();
    assert!(matches!(
        other.import(backup),
        Err(KeyError::InvalidParameter(_))
    ));
    assert_eq!(other.list(0, 10).total_count, 0);
}

// ---- CLI ----

fn args(dir: &Path, keyfile: &Path) -> StoreArgs {
    StoreArgs {
        data_dir: dir.to_path_buf(),
        root_key_file: Some(keyfile.to_path_buf()),
        store_url: common::store_url_for(dir),
        json: true,
    }
}

fn keys(cmd: KeysCommand) -> Result<serde_json::Value, CliError> {
    let mut out = Vec::new();
    keys_cli::run_to(cmd, &mut out)?;
    Ok(serde_json::from_slice(&out).unwrap())
}

fn creds(cmd: CredentialsCommand) -> Result<serde_json::Value, CliError> {
    let mut out = Vec::new();
    credentials::run_to(cmd, &mut out)?;
    Ok(serde_json::from_slice(&out).unwrap())
}

fn create_cmd(store: StoreArgs, alias: &str) -> KeysCommand {
    KeysCommand::Create {
        store,
        alias: Some(alias.into()),
        description: "d".into(),
        usage: "ENCRYPT_DECRYPT".into(),
        key_type: 1,
        tags: vec!["env=prod".into()],
        owner: String::new(),
    }
}

/// Runs the whole key/credential CLI against `s` and checks what a user sees.
fn exercise_cli(s: &StoreArgs, backup_file: &Path) -> String {
    let created = keys(create_cmd(s.clone(), "cli-key")).unwrap();
    let id = created["KeyId"].as_str().unwrap().to_string();
    assert_eq!(created["Alias"], "cli-key");
    assert_eq!(created["KeyState"], "Enabled");
    assert_eq!(created["Tags"][0]["TagKey"], "env");

    let err = keys(create_cmd(s.clone(), "cli-key")).unwrap_err();
    assert!(
        matches!(err, CliError::Key(KeyError::AliasAlreadyExists)),
        "{err}"
    );

    let listed = keys(KeysCommand::List {
        store: s.clone(),
        offset: 0,
        limit: 10,
    })
    .unwrap();
    assert!(listed["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["KeyId"] == id.as_str()));

    let rotated = keys(KeysCommand::Rotate {
        store: s.clone(),
        key: "cli-key".into(),
    })
    .unwrap();
    assert_eq!(rotated["PrimaryVersion"], 2);
    let d = keys(KeysCommand::Disable {
        store: s.clone(),
        key: id.clone(),
    })
    .unwrap();
    assert_eq!(d["KeyState"], "Disabled");
    let e = keys(KeysCommand::Enable {
        store: s.clone(),
        key: id.clone(),
    })
    .unwrap();
    assert_eq!(e["KeyState"], "Enabled");
    let sd = keys(KeysCommand::ScheduleDeletion {
        store: s.clone(),
        key: id.clone(),
        days: 7,
    })
    .unwrap();
    assert_eq!(sd["KeyState"], "PendingDelete");
    let cd = keys(KeysCommand::CancelDeletion {
        store: s.clone(),
        key: id.clone(),
    })
    .unwrap();
    assert_eq!(cd["KeyState"], "Disabled");
    let desc = keys(KeysCommand::Describe {
        store: s.clone(),
        key: "cli-key".into(),
    })
    .unwrap();
    assert_eq!(desc["Versions"].as_array().unwrap().len(), 2);
    let missing = keys(KeysCommand::Describe {
        store: s.clone(),
        key: "nope".into(),
    })
    .unwrap_err();
    assert!(
        matches!(&missing, CliError::KeyNotFound(k) if k == "nope"),
        "{missing}"
    );

    let c = creds(CredentialsCommand::Create {
        store: s.clone(),
        allow_keys: vec!["cli-key".into()],
    })
    .unwrap();
    let cid = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["secret"].as_str().unwrap().len(), 40);
    let l = creds(CredentialsCommand::List { store: s.clone() }).unwrap();
    assert!(l.to_string().contains(&cid));
    assert!(!l.to_string().contains(c["secret"].as_str().unwrap()));
    let r = creds(CredentialsCommand::Revoke {
        store: s.clone(),
        id: cid,
    })
    .unwrap();
    assert_eq!(r["revoked"], true);

    let exported = keys(KeysCommand::Export {
        store: s.clone(),
        out: backup_file.to_path_buf(),
    })
    .unwrap();
    assert!(exported["Keys"].as_u64().unwrap() >= 1);
    let mode = std::fs::metadata(backup_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // never overwrites
    assert!(keys(KeysCommand::Export {
        store: s.clone(),
        out: backup_file.to_path_buf(),
    })
    .is_err());
    let imported = keys(KeysCommand::Import {
        store: s.clone(),
        file: backup_file.to_path_buf(),
    })
    .unwrap();
    assert_eq!(imported["KeysImported"], 0);
    id
}

#[test]
fn cli_works_on_the_data_directory() {
    if embedded_only("a data directory's store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let keyfile = tmp.path().join("root.key");
    let s = args(&dir, &keyfile);
    // the commands do not create a store: `keys init` does
    let e = keys(create_cmd(s.clone(), "cli-key")).unwrap_err();
    assert!(matches!(e, CliError::NoStore(_)), "{e}");
    assert!(!dir.exists() && !keyfile.exists(), "nothing created");
    let made = keys(KeysCommand::Init { store: s.clone() }).unwrap();
    assert_eq!(made["DataDir"], dir.display().to_string());
    let again = keys(KeysCommand::Init { store: s.clone() }).unwrap_err();
    assert!(matches!(again, CliError::StoreExists(_)), "{again}");
    let id = exercise_cli(&s, &tmp.path().join("backup.json"));
    // durable: a fresh open sees it
    let store =
        common::open_store(&dir, RootKeySource::File(keyfile), StoreOptions::default()).unwrap();
    assert_eq!(store.describe("cli-key").unwrap().key_id.to_string(), id);
    assert_eq!(store.verify().unwrap().keys, 1);

    // text output is for people
    drop(store);
    let mut out = Vec::new();
    keys_cli::run_to(
        KeysCommand::Describe {
            store: StoreArgs { json: false, ..s },
            key: "cli-key".into(),
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(&id) && text.contains("Disabled"), "{text}");
}

#[test]
fn cli_goes_through_the_admin_socket_while_the_server_holds_the_store() {
    if embedded_only("the admin socket of a held data directory") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let keyfile = tmp.path().join("root.key");
    // "the server": holds the store (and its lock) and serves admin.sock
    let store = Arc::new(
        common::open_store(
            &dir,
            RootKeySource::File(keyfile.clone()),
            StoreOptions::default(),
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sock: PathBuf = store.admin_socket_path();
    let listener = rt.block_on(async { admin::bind(&sock) }).unwrap();
    rt.spawn(admin::serve_listener(store.clone(), listener));
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let s = args(&dir, &keyfile);
    let id = exercise_cli(&s, &tmp.path().join("backup.json"));
    // the server's own store object saw every change at once
    let m = store.describe(&id).unwrap();
    assert_eq!(m.alias.as_deref(), Some("cli-key"));
    assert_eq!(m.key_state, KeyState::Disabled);
    assert_eq!(store.list_credentials().len(), 1);

    // a key made by the server is visible to the CLI
    store.create(aliased("server-made")).unwrap();
    let d = keys(KeysCommand::Describe {
        store: s.clone(),
        key: "server-made".into(),
    })
    .unwrap();
    assert_eq!(d["KeyState"], "Enabled");

    // garbage on the socket gets an error line, not a dead server
    use std::io::{BufRead, Write};
    let mut raw = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    raw.write_all(b"{not json}\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(raw).read_line(&mut line).unwrap();
    assert!(line.contains("InvalidParameter"), "{line}");
    assert!(keys(KeysCommand::List {
        store: s,
        offset: 0,
        limit: 1
    })
    .is_ok());
    rt.shutdown_background();
}

#[test]
fn root_key_from_base64_text() {
    let tmp = tempfile::tempdir().unwrap();
    let text = encode_root_key(&root()).to_string();
    let store = common::open_store(
        tmp.path(),
        RootKeySource::Base64(text),
        StoreOptions::default(),
    )
    .unwrap();
    store.create(aliased("x")).unwrap();
    drop(store);
    // the same key given directly opens it
    assert!(open(tmp.path()).describe("x").is_ok());
}

#[test]
fn cli_arguments_parse_as_documented() {
    use clap::{CommandFactory, Parser};
    #[derive(Parser)]
    struct Keys {
        #[command(subcommand)]
        cmd: KeysCommand,
    }
    #[derive(Parser)]
    struct Creds {
        #[command(subcommand)]
        cmd: CredentialsCommand,
    }
    Keys::command().debug_assert();
    Creds::command().debug_assert();
    let k = Keys::try_parse_from([
        "keys",
        "create",
        "--alias",
        "orders",
        "--tag",
        "env=prod",
        "--type",
        "2",
        "--json",
        "--data-dir",
        "/d",
    ])
    .unwrap();
    let KeysCommand::Create {
        store,
        alias,
        key_type,
        tags,
        ..
    } = k.cmd
    else {
        panic!("not create")
    };
    assert_eq!(
        (store.json, store.data_dir, alias, key_type, tags),
        (
            true,
            PathBuf::from("/d"),
            Some("orders".into()),
            2,
            vec!["env=prod".into()]
        )
    );
    let k = Keys::try_parse_from(["keys", "schedule-deletion", "orders"]).unwrap();
    let KeysCommand::ScheduleDeletion { store, days, .. } = k.cmd else {
        panic!("not schedule-deletion")
    };
    // the default data directory is `serve`'s
    assert_eq!(
        (store.data_dir, days, store.json),
        (sealgate::config::DEFAULT_DATA_DIR.into(), 30, false)
    );
    let c = Creds::try_parse_from(["c", "create", "--allow-key", "a", "--allow-key", "b"]).unwrap();
    assert!(
        matches!(c.cmd, CredentialsCommand::Create { allow_keys, .. } if allow_keys == ["a", "b"])
    );
}

#[test]
fn asymmetric_keys_sign_decrypt_persist_and_stay_in_their_lane() {
    use sealgate::keys::asymmetric::{self, RsaPadding, SignInput, SigningAlgorithm};
    let tmp = tempfile::tempdir().unwrap();
    let usage = |alias: &str, key_usage| CreateKeyRequest {
        alias: Some(alias.into()),
        key_usage,
        ..Default::default()
    };
    let (ec_pub, rsa_pub, sig) = {
        let store = open(tmp.path());
        store
            .create(usage("ec", KeyUsage::AsymmetricSignVerifyEcc))
            .unwrap();
        store
            .create(usage("rsa-dec", KeyUsage::AsymmetricDecryptRsa2048))
            .unwrap();
        let sig = store
            .with_private_key("ec", |_, k| {
                k.sign(SigningAlgorithm::EcdsaP256Sha256, SignInput::Raw(b"m"))
            })
            .unwrap()
            .unwrap();
        let ec_pub = store
            .with_private_key("ec", |_, k| k.public_key_der())
            .unwrap()
            .unwrap();
        let rsa_pub = store
            .with_private_key("rsa-dec", |_, k| k.public_key_der())
            .unwrap()
            .unwrap();
        // symmetric operations refuse asymmetric keys and the other way round
        assert_eq!(
            store.encrypt("ec", b"x", b"").unwrap_err(),
            KeyError::UsageMismatch
        );
        assert!(matches!(
            store.rotate("ec").unwrap_err(),
            KeyError::UsageMismatch
        ));
        store.create(aliased("sym")).unwrap();
        assert_eq!(
            store.with_private_key("sym", |_, _| ()).unwrap_err(),
            KeyError::UsageMismatch
        );
        // SM2 is refused at creation
        assert_eq!(
            store
                .create(usage("sm2", KeyUsage::AsymmetricSignVerifySm2))
                .unwrap_err(),
            KeyError::UnsupportedKeyUsage
        );
        store.disable("ec").unwrap();
        assert_eq!(
            store.with_private_key("ec", |_, _| ()).unwrap_err(),
            KeyError::CmkDisabled
        );
        store.enable("ec").unwrap();
        (ec_pub, rsa_pub, sig)
    };
    // after reopening, the same private keys answer
    let store = open(tmp.path());
    assert!(asymmetric::verify(
        &ec_pub,
        SigningAlgorithm::EcdsaP256Sha256,
        SignInput::Raw(b"m"),
        &sig
    )
    .unwrap());
    assert_eq!(
        store
            .with_private_key("ec", |_, k| k.public_key_der())
            .unwrap()
            .unwrap(),
        ec_pub
    );
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&rsa_pub).unwrap()).unwrap();
    let mut ct = vec![0u8; 256];
    let n = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, b"hello", &mut ct, None)
        .unwrap()
        .len();
    let pt = store
        .with_private_key("rsa-dec", |_, k| {
            k.decrypt(RsaPadding::OaepSha256, &ct[..n])
        })
        .unwrap()
        .unwrap();
    assert_eq!(pt.expose(), b"hello");
    // the store file holds the private keys sealed only: no PKCS#8 header in clear
    drop(store);
    if common::on_postgres() {
        return;
    }
    let raw = std::fs::read(tmp.path().join("keys.redb")).unwrap();
    let has_rsa_oid = raw
        .windows(9)
        .any(|w| w == [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]);
    assert!(
        !has_rsa_oid,
        "rsaEncryption OID found in clear in the store file"
    );
}

#[test]
fn aes_128_keys_encrypt_and_decrypt() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store
        .create(CreateKeyRequest {
            alias: Some("a128".into()),
            key_usage: KeyUsage::EncryptDecryptAes128,
            ..Default::default()
        })
        .unwrap();
    let ct = store.encrypt("a128", b"short", b"ctx").unwrap();
    assert_eq!(
        store.decrypt(&ct.blob, b"ctx").unwrap().plaintext.expose(),
        b"short"
    );
    assert_eq!(
        store.decrypt(&ct.blob, b"other").unwrap_err(),
        KeyError::DoesNotOpen
    );
    // it rotates like any symmetric key, and old blobs still open
    store.rotate("a128").unwrap();
    assert_eq!(
        store.decrypt(&ct.blob, b"ctx").unwrap().plaintext.expose(),
        b"short"
    );
}

// ---- the CLI never creates a store by mistake (the real binary) ----

/// Runs the real binary in `cwd` with a clean environment plus `env`.
fn sealgate_bin(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_ROOT_KEY")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn commands_on_a_mistyped_data_dir_fail_naming_it_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("x/typo");
    let t = typo.to_str().unwrap();
    let runs: [&[&str]; 6] = [
        &["keys", "list", "--data-dir", t],
        &["keys", "describe", "--data-dir", t, "orders"],
        &["keys", "create", "--data-dir", t, "--alias", "orders"],
        &["keys", "import", "--data-dir", t, "backup.json"],
        &["credentials", "list", "--data-dir", t],
        &["credentials", "create", "--data-dir", t],
    ];
    for args in runs {
        let out = sealgate_bin(tmp.path(), args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("no key store in {t}")) && err.contains("sealgate keys init"),
            "{args:?}: {err}"
        );
        assert!(!tmp.path().join("x").exists(), "{args:?} created {t}");
    }
    // rewrap too (it reads stdin only once the store is open)
    let out = sealgate_bin(
        tmp.path(),
        &["rewrap", "--data-dir", t, "--context", "c"],
        &[],
    );
    assert!(
        stderr_of(&out).contains(&format!("no key store in {t}")),
        "{out:?}"
    );
    // and the default data directory is not created either
    let out = sealgate_bin(tmp.path(), &["keys", "list"], &[]);
    assert!(
        stderr_of(&out).contains("no key store in sealgate-data"),
        "{out:?}"
    );
    assert!(!tmp.path().join("sealgate-data").exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn keys_init_creates_the_store_the_other_commands_then_find() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let out = sealgate_bin(tmp.path(), &["keys", "init", "--data-dir", d], &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Created key store in {d}")));
    assert!(data.join("keys.redb").exists() && data.join("root.key").exists());
    // a second init refuses, leaving the store alone
    let out = sealgate_bin(tmp.path(), &["keys", "init", "--data-dir", d], &[]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("already holds a key store"),
        "{out:?}"
    );
    let out = sealgate_bin(
        tmp.path(),
        &["keys", "create", "--data-dir", d, "--alias", "orders"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = sealgate_bin(tmp.path(), &["keys", "list", "--data-dir", d], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("orders"),
        "{out:?}"
    );
}

#[test]
fn the_store_is_found_through_sealgate_data_dir_and_the_config_like_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("store");
    let keyfile = tmp.path().join("root.key");
    let out = sealgate_bin(
        tmp.path(),
        &["keys", "init", "--root-key-file", keyfile.to_str().unwrap()],
        &[("SEALGATE_DATA_DIR", &data)],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        data.join("keys.redb").exists(),
        "SEALGATE_DATA_DIR is honoured"
    );
    let out = sealgate_bin(
        tmp.path(),
        &[
            "keys",
            "create",
            "--alias",
            "via-env",
            "--root-key-file",
            keyfile.to_str().unwrap(),
        ],
        &[("SEALGATE_DATA_DIR", &data)],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));

    // a config file names the store and its root key, as for `serve`
    let config = tmp.path().join("sealgate.toml");
    std::fs::write(
        &config,
        format!(
            "upstream = \"http://127.0.0.1:3000\"\ndata_dir = {:?}\nroot_key_file = {:?}\n",
            data.display().to_string(),
            keyfile.display().to_string()
        ),
    )
    .unwrap();
    let list = |args: &[&str], env: &[(&str, &Path)]| {
        let out = sealgate_bin(tmp.path(), args, env);
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let c = config.to_str().unwrap();
    assert!(list(&["keys", "list", "--config", c], &[]).contains("via-env"));
    assert!(list(&["keys", "list"], &[("SEALGATE_CONFIG", &config)]).contains("via-env"));
    assert!(list(&["credentials", "list", "--config", c], &[]).contains("ID"));
    // a flag wins over the file
    let other = tmp.path().join("other");
    let out = sealgate_bin(
        tmp.path(),
        &[
            "keys",
            "list",
            "--config",
            c,
            "--data-dir",
            other.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        stderr_of(&out).contains(&format!("no key store in {}", other.display())),
        "{out:?}"
    );
    // a config file that does not read is an error naming it
    let out = sealgate_bin(
        tmp.path(),
        &["keys", "list", "--config", "/nonexistent/sg.toml"],
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("/nonexistent/sg.toml"), "{out:?}");
}

// ---- errors name the thing and the rule (the real binary) ----

#[test]
fn cli_errors_name_the_thing_and_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let ok = |args: &[&str]| {
        let out = sealgate_bin(tmp.path(), args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fails = |args: &[&str]| {
        let out = sealgate_bin(tmp.path(), args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        stderr_of(&out)
    };
    ok(&["keys", "init", "--data-dir", d]);
    let every_usage = [
        "ENCRYPT_DECRYPT",
        "ENCRYPT_DECRYPT_AES_128",
        "ASYMMETRIC_DECRYPT_RSA_2048",
        "ASYMMETRIC_DECRYPT_RSA_3072",
        "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
        "ASYMMETRIC_SIGN_VERIFY_RSA_3072",
        "ASYMMETRIC_SIGN_VERIFY_RSA_4096",
        "ASYMMETRIC_SIGN_VERIFY_ECC",
        "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
    ];
    // a bad usage lists every valid one, asymmetric ones included; so does --help
    let err = fails(&["keys", "create", "--data-dir", d, "--usage", "FOO"]);
    let help = ok(&["keys", "create", "--help"]);
    for u in every_usage {
        assert!(err.contains(u), "{u} missing from: {err}");
        assert!(help.contains(u), "{u} missing from --help: {help}");
    }
    assert!(err.contains("FOO"), "{err}");
    // a bad alias quotes the rule
    let err = fails(&["keys", "create", "--data-dir", d, "--alias", "kms-x"]);
    assert!(
        err.contains("invalid alias \"kms-x\"") && err.contains("1-60 characters"),
        "{err}"
    );
    // a missing key is named
    let err = fails(&["keys", "describe", "--data-dir", d, "nosuch"]);
    assert!(err.contains("\"nosuch\""), "{err}");
    let err = fails(&["keys", "enable", "--data-dir", d, "nosuch2"]);
    assert!(err.contains("\"nosuch2\""), "{err}");
    // rotating an asymmetric key says only symmetric keys rotate
    ok(&[
        "keys",
        "create",
        "--data-dir",
        d,
        "--alias",
        "signer",
        "--usage",
        "ASYMMETRIC_SIGN_VERIFY_ECC",
    ]);
    let err = fails(&["keys", "rotate", "--data-dir", d, "signer"]);
    assert!(
        err.contains("\"signer\" is ASYMMETRIC_SIGN_VERIFY_ECC")
            && err
                .contains("only symmetric keys (ENCRYPT_DECRYPT, ENCRYPT_DECRYPT_AES_128) rotate"),
        "{err}"
    );
    // a missing audit log is missing, not a broken chain at "line 0"
    let err = fails(&["audit", "verify", "missing.jsonl"]);
    assert!(
        err.contains("audit log missing.jsonl does not exist") && !err.contains("line 0"),
        "{err}"
    );
}

#[test]
fn admin_commands_log_without_colour_and_warn_about_the_root_key_only_at_creation() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    // stderr is a pipe here, as under systemd or in a script
    let out = sealgate_bin(tmp.path(), &["keys", "init", "--data-dir", d], &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("created a new root key"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escapes in a pipe: {err:?}");
    // later calls on the same store stay quiet about it
    for args in [
        &["keys", "list", "--data-dir", d][..],
        &["keys", "create", "--data-dir", d, "--alias", "quiet"][..],
        &["credentials", "list", "--data-dir", d][..],
    ] {
        let out = sealgate_bin(tmp.path(), args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        assert_eq!(stderr_of(&out), "", "{args:?} logged");
    }
    // a store created around a key file already in the data directory
    // warns that it lives there, once
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(data.join("root.key"), other.join("root.key")).unwrap();
    let o = other.to_str().unwrap();
    let out = sealgate_bin(tmp.path(), &["keys", "init", "--data-dir", o], &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("the root key lives inside the data directory"),
        "{}",
        stderr_of(&out)
    );
    let out = sealgate_bin(tmp.path(), &["keys", "list", "--data-dir", o], &[]);
    assert_eq!(stderr_of(&out), "");
}

/// The column each header of `table`'s first line starts at.
fn header_columns(table: &str, headers: &[&str]) -> Vec<usize> {
    let head = table.lines().next().unwrap();
    headers.iter().map(|h| head.find(h).unwrap()).collect()
}

/// A cell starts at each column: the character before it is a blank and the
/// cell's first character is not.
fn starts_cells_at(line: &str, cols: &[usize]) -> bool {
    let b = line.as_bytes();
    cols.iter()
        .all(|&c| c < b.len() && b[c] != b' ' && (c == 0 || b[c - 1] == b' '))
}

fn is_rfc3339_utc(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        && s.ends_with('Z')
}

#[test]
fn keys_and_credentials_list_as_aligned_columns_with_rfc3339_times() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let ok = |args: &[&str]| {
        let out = sealgate_bin(tmp.path(), args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["keys", "init", "--data-dir", d]);
    let long = "a-rather-long-alias-for-the-orders-table-key-v2";
    ok(&["keys", "create", "--data-dir", d, "--alias", "k"]);
    ok(&[
        "keys",
        "create",
        "--data-dir",
        d,
        "--alias",
        long,
        "--usage",
        "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
    ]);
    let table = ok(&["keys", "list", "--data-dir", d]);
    let headers = ["KEY ID", "ALIAS", "STATE", "USAGE", "VERSION", "CREATED"];
    let cols = header_columns(&table, &headers);
    let rows: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|l| !l.contains(" of "))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    for row in &rows {
        assert!(starts_cells_at(row, &cols), "misaligned:\n{table}");
        let created = &row[cols[5]..];
        assert!(is_rfc3339_utc(created), "{created:?} in:\n{table}");
    }
    assert!(table.contains(long) && table.contains("ASYMMETRIC_SIGN_VERIFY_ECDSA384"));
    assert!(table.lines().all(|l| l == l.trim_end()), "trailing blanks");
    // --json keeps its shape: numbers, PascalCase
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["keys", "list", "--data-dir", d, "--json"])).unwrap();
    assert_eq!(json["TotalCount"], 2);
    assert!(json["Keys"][0]["CreateTime"].is_u64(), "{json}");

    ok(&["credentials", "create", "--data-dir", d, "--allow-key", "k"]);
    ok(&["credentials", "create", "--data-dir", d]);
    let table = ok(&["credentials", "list", "--data-dir", d]);
    let cols = header_columns(&table, &["ID", "CREATED", "REVOKED", "KEYS"]);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    for row in &rows {
        assert!(starts_cells_at(row, &cols), "misaligned:\n{table}");
        let created = row[cols[1]..].split(' ').next().unwrap();
        assert!(is_rfc3339_utc(created), "{created:?} in:\n{table}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["credentials", "list", "--data-dir", d, "--json"])).unwrap();
    assert!(json[0]["created_at"].is_u64(), "{json}");
}
