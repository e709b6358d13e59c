//! Backup and restore of a whole key store: every key kind and state
//! sealgate supports, exported and imported into a FRESH data directory under
//! the same root key, and everything sealed or signed before the export still
//! opens or verifies after the import — through the library and through the
//! real `sealgate keys export` / `keys import` commands.

mod common;

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use sealgate::keys::asymmetric::{self, RsaPadding, SignInput, SigningAlgorithm};
use sealgate::keys::*;
use sealgate::secret::{RootKey, SecretBytes};

fn root() -> RootKey {
    RootKey::from_bytes([0x5a; 32])
}

/// The store of `dir`: embedded, or on PostgreSQL (`SEALGATE_TEST_STORE`).
fn open(dir: &Path) -> KeyStore {
    common::open_store(dir, RootKeySource::Key(root()), StoreOptions::default()).unwrap()
}

fn create(store: &KeyStore, alias: &str, usage: KeyUsage, origin: KeyOrigin) -> KeyId {
    store
        .create(CreateKeyRequest {
            alias: Some(alias.into()),
            description: format!("{alias} for the backup test"),
            key_usage: usage,
            origin,
            tags: vec![Tag {
                tag_key: "kind".into(),
                tag_value: alias.into(),
            }],
            owner: "backup-test".into(),
        })
        .unwrap()
        .key_id
}

/// Four values recorded together: (key alias or envelope text, then three
/// byte strings a check needs).
type Sealed = (String, Vec<u8>, Vec<u8>, Vec<u8>);

/// What was made before the export and must still open or verify after it.
struct Evidence {
    /// (key alias, KMS ciphertext blob, context, plaintext)
    blobs: Vec<Sealed>,
    /// (`sg1.` or `sgd1.` envelope text, context, label AAD, JSON value)
    envelopes: Vec<Sealed>,
    /// (key alias, algorithm, public key DER, signature over `MESSAGE`)
    signatures: Vec<(String, SigningAlgorithm, Vec<u8>, Vec<u8>)>,
    /// (key alias, RSA-OAEP-SHA256 ciphertext of `MESSAGE` under its public key)
    rsa_ciphertexts: Vec<(String, Vec<u8>)>,
    /// (credential id, secret, revoked)
    credentials: Vec<(String, SecretBytes, bool)>,
    /// The KeyId of the key that has no alias.
    unaliased: KeyId,
}

const MESSAGE: &[u8] = b"signed and sealed before the backup";

/// The symmetric keys whose blobs and envelopes are checked: (alias, rotations).
const SYMMETRIC: [(&str, KeyUsage, u32); 2] = [
    ("sym-256", KeyUsage::EncryptDecrypt, 2),
    ("sym-128", KeyUsage::EncryptDecryptAes128, 1),
];

/// Every signing usage the store serves, with one algorithm each.
const SIGNING: [(&str, KeyUsage, SigningAlgorithm); 5] = [
    (
        "sign-rsa-2048",
        KeyUsage::AsymmetricSignVerifyRsa2048,
        SigningAlgorithm::RsaPssSha256,
    ),
    (
        "sign-rsa-3072",
        KeyUsage::AsymmetricSignVerifyRsa3072,
        SigningAlgorithm::RsaPkcs1Sha384,
    ),
    (
        "sign-rsa-4096",
        KeyUsage::AsymmetricSignVerifyRsa4096,
        SigningAlgorithm::RsaPssSha512,
    ),
    (
        "sign-p256",
        KeyUsage::AsymmetricSignVerifyEcc,
        SigningAlgorithm::EcdsaP256Sha256,
    ),
    (
        "sign-p384",
        KeyUsage::AsymmetricSignVerifyEcdsa384,
        SigningAlgorithm::EcdsaP384Sha384,
    ),
];

/// Every asymmetric decryption usage the store serves.
const DECRYPTING: [(&str, KeyUsage); 2] = [
    ("dec-rsa-2048", KeyUsage::AsymmetricDecryptRsa2048),
    ("dec-rsa-3072", KeyUsage::AsymmetricDecryptRsa3072),
];

/// Fills `store` with every key kind and state, and seals, signs and
/// encrypts under each key that can.
fn populate(store: &Arc<KeyStore>) -> Evidence {
    let mut ev = Evidence {
        blobs: Vec::new(),
        envelopes: Vec::new(),
        signatures: Vec::new(),
        rsa_ciphertexts: Vec::new(),
        credentials: Vec::new(),
        unaliased: KeyId::from_bytes([0; 16]),
    };
    let cache = DataKeyCache::with_system_clock(store.clone(), CacheConfig::default());
    // symmetric keys: a blob, an envelope and a deterministic envelope per
    // version, so every version (not only the primary) must survive
    for (alias, usage, rotations) in SYMMETRIC {
        create(store, alias, usage, KeyOrigin::Kms);
        for round in 0..=rotations {
            if round > 0 {
                store.rotate(alias).unwrap();
                cache.clear();
            }
            seal_evidence(store, &cache, alias, round, &mut ev);
        }
    }
    // EXTERNAL: one with imported material (sealing works), one still waiting
    create(
        store,
        "ext-imported",
        KeyUsage::EncryptDecrypt,
        KeyOrigin::External,
    );
    store
        .import_key_material("ext-imported", &SecretBytes::new(vec![0x17; 32]))
        .unwrap();
    seal_evidence(store, &cache, "ext-imported", 0, &mut ev);
    create(
        store,
        "ext-pending",
        KeyUsage::EncryptDecrypt,
        KeyOrigin::External,
    );
    // disabled and pending deletion, each with data sealed while it was usable
    for alias in ["disabled", "pending-delete"] {
        create(store, alias, KeyUsage::EncryptDecrypt, KeyOrigin::Kms);
        seal_evidence(store, &cache, alias, 0, &mut ev);
    }
    store.disable("disabled").unwrap();
    store.schedule_deletion("pending-delete", 7).unwrap();
    // asymmetric keys: signatures and RSA ciphertexts made before the export
    for (alias, usage, alg) in SIGNING {
        create(store, alias, usage, KeyOrigin::Kms);
        let (public, sig) = store
            .with_private_key(alias, |_, k| {
                (
                    k.public_key_der().unwrap(),
                    k.sign(alg, SignInput::Raw(MESSAGE)).unwrap(),
                )
            })
            .unwrap();
        ev.signatures.push((alias.into(), alg, public, sig));
    }
    for (alias, usage) in DECRYPTING {
        create(store, alias, usage, KeyOrigin::Kms);
        let public = store
            .with_private_key(alias, |_, k| k.public_key_der().unwrap())
            .unwrap();
        ev.rsa_ciphertexts
            .push((alias.into(), rsa_oaep_encrypt(&public, MESSAGE)));
    }
    // a key without an alias, found by KeyId only
    ev.unaliased = store.create(CreateKeyRequest::default()).unwrap().key_id;
    let blob = store
        .encrypt(&ev.unaliased.to_string(), MESSAGE, b"unaliased")
        .unwrap()
        .blob;
    ev.blobs.push((
        ev.unaliased.to_string(),
        blob,
        b"unaliased".to_vec(),
        MESSAGE.to_vec(),
    ));
    // credentials: unrestricted, limited to one key, revoked
    for (allowed, revoke) in [
        (None, false),
        (Some(vec!["sym-256".to_string()]), false),
        (None, true),
    ] {
        let c = store.create_credential(allowed).unwrap();
        if revoke {
            store.revoke_credential(&c.id).unwrap();
        }
        ev.credentials.push((c.id, c.secret, revoke));
    }
    ev
}

/// One KMS blob, one data key blob, one `sg1.` and one `sgd1.` envelope
/// under the current primary of `alias`.
fn seal_evidence(
    store: &KeyStore,
    cache: &DataKeyCache,
    alias: &str,
    round: u32,
    ev: &mut Evidence,
) {
    let context = format!("{alias}/{round}").into_bytes();
    let plaintext = format!("value {round} of {alias}").into_bytes();
    let ct = store.encrypt(alias, &plaintext, &context).unwrap();
    ev.blobs
        .push((alias.into(), ct.blob, context.clone(), plaintext.clone()));
    let dk = store
        .generate_data_key_blob(alias, DataKeySpec::Aes256, &context)
        .unwrap();
    ev.blobs.push((
        alias.into(),
        dk.blob,
        context.clone(),
        dk.plaintext.expose().to_vec(),
    ));
    let value = format!("\"field {round} of {alias}\"").into_bytes();
    let aad = [context.as_slice(), b"\0ssn"].concat();
    let sk = cache.sealing_key(alias, &context, value.len()).unwrap();
    let sealed = sealgate::envelope::seal(&sk, &value, &aad, &mut rand::thread_rng()).unwrap();
    assert!(sealed.starts_with("sg1."), "{sealed}");
    ev.envelopes
        .push((sealed, context.clone(), aad.clone(), value.clone()));
    let det = cache.deterministic_key(alias, &context).unwrap();
    let sealed = sealgate::envelope::seal_deterministic(&det, &value, &aad).unwrap();
    assert!(sealed.starts_with("sgd1."), "{sealed}");
    ev.envelopes.push((sealed, context, aad, value));
}

fn rsa_oaep_encrypt(public_der: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_der).unwrap()).unwrap();
    let mut out = vec![0u8; public.ciphertext_size()];
    let n = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
        .unwrap()
        .len();
    out.truncate(n);
    out
}

/// Opens one envelope (either kind) through a fresh cache on `store`.
fn open_envelope(cache: &DataKeyCache, text: &str, context: &[u8], aad: &[u8]) -> Vec<u8> {
    if let Ok(det) = sealgate::envelope::DetEnvelope::parse(text) {
        let key = cache
            .deterministic_opening_key(&det.cmk(), context)
            .unwrap();
        return det.open(&key, aad).unwrap().json().to_vec();
    }
    let env = sealgate::envelope::Envelope::parse(text).unwrap();
    let cipher = cache.opening_key(&env.cmk(), env.wrapped()).unwrap();
    env.open(&cipher, aad).unwrap().json().to_vec()
}

/// Checks that `restored` holds what `original` held, in the same states,
/// and that every piece of evidence opens or verifies against it.
fn check_restored(original: &[KeyMetadata], restored: &Arc<KeyStore>, ev: &Evidence) {
    // the same keys, in the same states, with the same aliases, tags, versions
    let listed = restored.list(0, 1000);
    assert_eq!(listed.total_count, original.len());
    for m in original {
        let r = restored.describe(&m.key_id.to_string()).unwrap();
        assert_eq!(&r, m, "key {} changed in the round trip", m.key_id);
    }
    assert_eq!(
        restored.describe("pending-delete").unwrap().key_state,
        KeyState::PendingDelete
    );
    assert_eq!(
        restored.describe("disabled").unwrap().key_state,
        KeyState::Disabled
    );
    assert_eq!(
        restored.describe("ext-pending").unwrap().key_state,
        KeyState::PendingImport
    );
    assert_eq!(restored.describe("sym-256").unwrap().versions.len(), 3);
    assert!(restored.describe(&ev.unaliased.to_string()).is_ok());
    // states are kept, so the disabled and pending keys refuse until brought back
    let disabled_blob = ev.blobs.iter().find(|b| b.0 == "disabled").unwrap();
    assert_eq!(
        restored
            .decrypt(&disabled_blob.1, &disabled_blob.2)
            .unwrap_err(),
        KeyError::CmkDisabled
    );
    restored.enable("disabled").unwrap();
    restored.cancel_deletion("pending-delete").unwrap();
    restored.enable("pending-delete").unwrap();

    // every version's material opens as what its key is
    let report = restored.verify().unwrap();
    assert_eq!(report.keys, original.len());

    for (key, blob, context, plaintext) in &ev.blobs {
        let d = restored
            .decrypt(blob, context)
            .unwrap_or_else(|e| panic!("a blob of {key} does not open after restore: {e}"));
        assert_eq!(d.plaintext.expose(), plaintext.as_slice(), "{key}");
    }
    let cache = DataKeyCache::with_system_clock(restored.clone(), CacheConfig::default());
    for (text, context, aad, value) in &ev.envelopes {
        assert_eq!(&open_envelope(&cache, text, context, aad), value, "{text}");
    }
    for (alias, alg, public, sig) in &ev.signatures {
        assert!(
            asymmetric::verify(public, *alg, SignInput::Raw(MESSAGE), sig).unwrap(),
            "{alias}: old signature"
        );
        // the restored private key is the same key: same public key, and a
        // new signature verifies under the public key published before
        let (new_public, new_sig) = restored
            .with_private_key(alias, |_, k| {
                (
                    k.public_key_der().unwrap(),
                    k.sign(*alg, SignInput::Raw(MESSAGE)).unwrap(),
                )
            })
            .unwrap();
        assert_eq!(&new_public, public, "{alias}");
        assert!(asymmetric::verify(public, *alg, SignInput::Raw(MESSAGE), &new_sig).unwrap());
    }
    for (alias, ct) in &ev.rsa_ciphertexts {
        let pt = restored
            .with_private_key(alias, |_, k| k.decrypt(RsaPadding::OaepSha256, ct))
            .unwrap()
            .unwrap();
        assert_eq!(pt.expose(), MESSAGE, "{alias}");
    }
    for (id, secret, revoked) in &ev.credentials {
        match restored.lookup_secret(id) {
            Some(s) => assert!(!revoked && &s == secret, "credential {id}"),
            None => assert!(*revoked, "credential {id} lost in the round trip"),
        }
    }
    let limited = &ev.credentials[1].0;
    assert!(restored.allowed(limited, "sym-256"));
    assert!(!restored.allowed(limited, "sym-128"));
    assert_eq!(restored.list_credentials().len(), ev.credentials.len());
}

fn all_metadata(store: &KeyStore) -> Vec<KeyMetadata> {
    store.list(0, 1000).keys
}

#[test]
fn a_backup_of_every_key_kind_restores_into_a_fresh_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let original = Arc::new(open(&tmp.path().join("original")));
    let ev = populate(&original);
    let metadata = all_metadata(&original);
    assert_eq!(metadata.len(), 14);
    // the original store passes its own check (asymmetric versions included)
    assert_eq!(original.verify().unwrap().keys, 14);
    let backup = serde_json::to_string(&original.export()).unwrap();
    drop(original);

    let restored = Arc::new(open(&tmp.path().join("fresh")));
    let report = restored
        .import(serde_json::from_str(&backup).unwrap())
        .unwrap();
    assert_eq!((report.keys_imported, report.credentials_imported), (14, 3));
    // importing the same backup again changes nothing
    let again = restored
        .import(serde_json::from_str(&backup).unwrap())
        .unwrap();
    assert_eq!((again.keys_imported, again.keys_unchanged), (0, 14));
    check_restored(&metadata, &restored, &ev);
    drop(restored);
    // and it is durable: a reopen sees the same
    let reopened = Arc::new(open(&tmp.path().join("fresh")));
    assert_eq!(reopened.verify().unwrap().keys, 14);
}

#[test]
fn a_backup_whose_private_key_was_swapped_is_refused() {
    // the check is per key usage: an RSA key's sealed bytes moved onto an
    // ECDSA key (same root key, re-sealed for that key id) do not import
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("a"));
    create(
        &store,
        "p256",
        KeyUsage::AsymmetricSignVerifyEcc,
        KeyOrigin::Kms,
    );
    let mut backup = store.export();
    backup.keys[0].metadata.key_usage = KeyUsage::AsymmetricSignVerifyRsa2048;
    let fresh = open(&tmp.path().join("b"));
    let e = fresh.import(backup).unwrap_err();
    assert!(
        e.to_string()
            .contains("is not a private key of the key's usage"),
        "{e}"
    );
    assert_eq!(fresh.list(0, 10).total_count, 0);
}

fn sealgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .envs(common::store_env(args))
        .env_remove("SEALGATE_ROOT_KEY")
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keys_export_and_import_commands_restore_every_key_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let keyfile = tmp.path().join("root.key");
    let old = tmp.path().join("old");
    let new = tmp.path().join("new");
    let backup = tmp.path().join("backup.json");
    let (ev, metadata) = {
        let store = Arc::new(
            common::open_store(
                &old,
                RootKeySource::File(keyfile.clone()),
                StoreOptions::default(),
            )
            .unwrap(),
        );
        let ev = populate(&store);
        (ev, all_metadata(&store))
    };
    let (old_s, new_s, key_s, backup_s) = (
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        keyfile.to_str().unwrap(),
        backup.to_str().unwrap(),
    );
    let out = sealgate(&[
        "keys",
        "export",
        "--data-dir",
        old_s,
        "--root-key-file",
        key_s,
        "--out",
        backup_s,
    ]);
    let said = ok(&out, "keys export");
    assert!(
        said.contains("Exported 14 keys and 3 credentials"),
        "{said}"
    );
    // a restore goes into a store made for it (only `init` creates one)
    let out = sealgate(&[
        "keys",
        "init",
        "--data-dir",
        new_s,
        "--root-key-file",
        key_s,
    ]);
    ok(&out, "keys init");
    let out = sealgate(&[
        "keys",
        "import",
        "--data-dir",
        new_s,
        "--root-key-file",
        key_s,
        backup_s,
    ]);
    let said = ok(&out, "keys import");
    assert!(
        said.contains("Imported 14 keys (0 already present), 3 credentials"),
        "{said}"
    );
    let restored = Arc::new(
        common::open_store(&new, RootKeySource::File(keyfile), StoreOptions::default()).unwrap(),
    );
    check_restored(&metadata, &restored, &ev);
}
