//! The key store on PostgreSQL: the same semantics as the embedded store
//! (one test body run on both backends), two stores racing on one database,
//! propagation from one node to another (lag measured and printed), the
//! wrong root key, migrations under concurrent starts, export/import both
//! ways, and two real `sealgate serve` processes sharing one store.
//!
//! Needs a PostgreSQL server: `SEALGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without one each test prints
//! a `skipped:` line and passes, unless `SEALGATE_REQUIRE_SERVICES=1` (CI),
//! which makes it fail. Each test works in a schema of its own, dropped at
//! the end, so the tests run in parallel and leave nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealgate::cli::credentials::{self as creds_cli, CredentialsCommand};
use sealgate::cli::keys::{self as keys_cli, KeysCommand, StoreArgs};
use sealgate::clock::{unix_now, Clock, ManualClock};
use sealgate::keys::*;
use sealgate::secret::{RootKey, SecretBytes};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// How long a correctness check waits for propagation: generous, so a
/// loaded machine is slow, not failing (the bound itself is measured and
/// printed, never asserted on time).
const DEADLINE: Duration = Duration::from_secs(30);
const DAY: u64 = 86_400;

fn root() -> RootKey {
    RootKey::from_bytes([0x42; 32])
}

/// A schema of its own in the test database; dropped on drop.
struct Scratch {
    base: String,
    schema: String,
}

/// Runs `f` with a fresh client on a thread of its own: the synchronous
/// client must not run inside a tokio runtime, and some tests have one.
fn with_client<R: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut postgres::Client) -> R + Send + 'static,
) -> Result<R, String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        Ok(f(&mut c))
    })
    .join()
    .unwrap()
}

impl Scratch {
    /// `None` (after printing why) when PostgreSQL is unreachable and not
    /// required.
    fn new() -> Option<Scratch> {
        let base = std::env::var("SEALGATE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let schema = format!("sg_test_{}", uuid::Uuid::new_v4().simple());
        let create = format!("CREATE SCHEMA {schema}");
        match with_client(&base, move |c| c.batch_execute(&create)) {
            Ok(Ok(())) => Some(Scratch { base, schema }),
            Ok(Err(e)) => panic!("cannot create a test schema in {base}: {e}"),
            Err(e) => {
                if std::env::var("SEALGATE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                    panic!("PostgreSQL at {base} is required (SEALGATE_REQUIRE_SERVICES=1): {e}");
                }
                eprintln!(
                    "skipped: set SEALGATE_TEST_POSTGRES_URL to a reachable PostgreSQL \
                     (tried {base}: {e})"
                );
                None
            }
        }
    }

    /// The store URL: the test database with the schema first in the
    /// search path.
    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.schema)
    }

    /// One number from the schema (`SELECT count(*) …`).
    fn number(&self, sql: &str) -> i64 {
        let sql = sql.to_string();
        with_client(&self.url(), move |c| {
            c.query_one(&sql, &[]).unwrap().get::<_, i64>(0)
        })
        .unwrap()
    }

    fn open(&self, dir: &Path) -> KeyStore {
        self.open_with(dir, root(), StoreOptions::default())
            .unwrap()
    }

    fn open_with(
        &self,
        dir: &Path,
        key: RootKey,
        options: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        KeyStore::open_postgres(&self.url(), dir, RootKeySource::Key(key), options)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        let _ = with_client(&self.base, move |c| c.batch_execute(&drop_schema));
    }
}

fn aliased(alias: &str) -> CreateKeyRequest {
    CreateKeyRequest {
        alias: Some(alias.into()),
        ..Default::default()
    }
}

fn clocked(clock: &Arc<ManualClock>) -> StoreOptions {
    StoreOptions {
        clock: clock.clone(),
        ..StoreOptions::default()
    }
}

/// Waits (bounded by [`DEADLINE`]) until `cond` holds; answers how long it took.
fn wait_until(what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---- the same semantics on both backends ----

/// The key store's rules, exercised on `store`; then the store is dropped,
/// `reopen` opens it again and everything must still be there.
fn exercise_semantics(store: KeyStore, clock: &ManualClock, reopen: &dyn Fn() -> KeyStore) {
    let t0 = clock.unix_secs();
    let k = store
        .create(CreateKeyRequest {
            alias: Some("orders".into()),
            description: "order records".into(),
            tags: vec![Tag {
                tag_key: "team".into(),
                tag_value: "billing".into(),
            }],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(k.key_state, KeyState::Enabled);
    assert_eq!(k.primary_version, Some(1));
    assert_eq!(k.tags[0].tag_value, "billing");
    assert_eq!(
        store.create(aliased("orders")).unwrap_err(),
        KeyError::AliasAlreadyExists
    );

    // versions: every one still opens what it sealed
    let c1 = store.encrypt("orders", b"one", b"ctx").unwrap();
    assert_eq!(c1.version, 1);
    let m = store.rotate("orders").unwrap();
    assert_eq!(m.primary_version, Some(2));
    assert_eq!(m.versions.len(), 2);
    let c2 = store.encrypt("orders", b"two", b"ctx").unwrap();
    assert_eq!(c2.version, 2);
    let open = |c: &Ciphertext| {
        store
            .decrypt(&c.blob, b"ctx")
            .map(|d| d.plaintext.expose().to_vec())
    };
    assert_eq!(open(&c1).unwrap(), b"one");
    assert_eq!(open(&c2).unwrap(), b"two");
    assert_eq!(
        store.decrypt(&c1.blob, b"other").unwrap_err(),
        KeyError::DoesNotOpen
    );

    // minimum decryption version
    store.set_min_decryption_version("orders", 2).unwrap();
    assert_eq!(open(&c1).unwrap_err(), KeyError::VersionRetired);
    assert_eq!(open(&c2).unwrap(), b"two");
    assert!(store.set_min_decryption_version("orders", 3).is_err());
    store.set_min_decryption_version("orders", 1).unwrap();
    assert_eq!(open(&c1).unwrap(), b"one");

    // the state machine
    store.disable("orders").unwrap();
    assert_eq!(
        store.encrypt("orders", b"x", b"ctx").unwrap_err(),
        KeyError::CmkDisabled
    );
    assert_eq!(open(&c1).unwrap_err(), KeyError::CmkDisabled);
    store.enable("orders").unwrap();
    assert_eq!(open(&c1).unwrap(), b"one");

    // aliases: one per key, unique, movable
    let spare = store.create(aliased("spare")).unwrap();
    let spare_id = spare.key_id.to_string();
    assert_eq!(
        store.update_alias(&spare_id, "orders").unwrap_err(),
        KeyError::AliasAlreadyExists
    );
    store.delete_alias("spare").unwrap();
    assert_eq!(store.describe(&spare_id).unwrap().alias, None);
    assert_eq!(store.resolve("spare").unwrap_err(), KeyError::CmkNotFound);
    store.move_alias("orders", &spare_id).unwrap();
    assert_eq!(store.resolve("orders").unwrap(), spare.key_id);
    assert_eq!(store.describe(&k.key_id.to_string()).unwrap().alias, None);
    store.move_alias("orders", &k.key_id.to_string()).unwrap();
    assert_eq!(store.resolve("orders").unwrap(), k.key_id);

    // deletion windows
    assert!(matches!(
        store.schedule_deletion(&spare_id, 6).unwrap_err(),
        KeyError::InvalidParameter(_)
    ));
    let m = store.schedule_deletion(&spare_id, 7).unwrap();
    assert_eq!(m.key_state, KeyState::PendingDelete);
    assert_eq!(m.deletion_date, Some(t0 + 7 * DAY));
    assert!(store.purge_due(t0 + 6 * DAY).unwrap().is_empty());
    assert_eq!(
        store.cancel_deletion(&spare_id).unwrap().key_state,
        KeyState::Disabled
    );
    store.schedule_deletion(&spare_id, 7).unwrap();
    assert_eq!(store.purge_due(t0 + 8 * DAY).unwrap(), vec![spare.key_id]);
    assert_eq!(
        store.describe(&spare_id).unwrap_err(),
        KeyError::CmkNotFound
    );

    // credentials
    let other = store.create(aliased("other")).unwrap();
    let cred = store
        .create_credential(Some(vec!["orders".into()]))
        .unwrap();
    assert_eq!(
        store.lookup_secret(&cred.id).unwrap().expose(),
        cred.secret.expose()
    );
    assert!(store.allowed(&cred.id, "orders"));
    assert!(!store.allowed(&cred.id, &other.key_id.to_string()));
    let kept = store.create_credential(None).unwrap();
    store.revoke_credential(&cred.id).unwrap();
    assert!(store.lookup_secret(&cred.id).is_none());
    assert!(!store.allowed(&cred.id, "orders"));
    assert!(store.allowed(&kept.id, "other"));

    // automatic rotation, once per due date
    clock.set_unix_secs(t0 + 10 * DAY);
    store.enable_rotation("orders", Some(7)).unwrap();
    assert!(store.rotate_due(t0 + 16 * DAY).unwrap().is_empty());
    assert_eq!(store.rotate_due(t0 + 18 * DAY).unwrap(), vec![k.key_id]);
    assert!(store.rotate_due(t0 + 18 * DAY).unwrap().is_empty());
    assert_eq!(store.describe("orders").unwrap().primary_version, Some(3));

    // EXTERNAL material, and an asymmetric key pair (which never rotates)
    let ext = store
        .create(CreateKeyRequest {
            alias: Some("ext".into()),
            origin: KeyOrigin::External,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ext.key_state, KeyState::PendingImport);
    assert_eq!(
        store.encrypt("ext", b"x", b"").unwrap_err(),
        KeyError::CmkPendingImport
    );
    let m = store
        .import_key_material("ext", &SecretBytes::new(vec![9; 32]))
        .unwrap();
    assert_eq!(
        (m.key_state, m.primary_version),
        (KeyState::Enabled, Some(1))
    );
    let c_ext = store.encrypt("ext", b"external", b"").unwrap();
    store
        .create(CreateKeyRequest {
            alias: Some("ec".into()),
            key_usage: KeyUsage::AsymmetricSignVerifyEcc,
            ..Default::default()
        })
        .unwrap();
    let ec_pub = store
        .with_private_key("ec", |_, k| k.public_key_der())
        .unwrap()
        .unwrap();
    assert_eq!(store.rotate("ec").unwrap_err(), KeyError::UsageMismatch);

    // everything is durable
    let keys = store.list(0, 100);
    let credentials = store.list_credentials();
    let report = store.verify().unwrap();
    assert_eq!(
        (report.keys, report.versions, report.credentials),
        (4, 6, 2)
    );
    drop(store);
    let again = reopen();
    assert_eq!(again.list(0, 100), keys);
    assert_eq!(again.list_credentials(), credentials);
    assert_eq!(
        again.decrypt(&c1.blob, b"ctx").unwrap().plaintext.expose(),
        b"one"
    );
    assert!(again.lookup_secret(&cred.id).is_none());
    assert_eq!(
        again.lookup_secret(&kept.id).unwrap().expose(),
        kept.secret.expose()
    );
    assert_eq!(
        again.decrypt(&c_ext.blob, b"").unwrap().plaintext.expose(),
        b"external"
    );
    assert_eq!(
        again
            .with_private_key("ec", |_, k| k.public_key_der())
            .unwrap()
            .unwrap(),
        ec_pub
    );
    assert_eq!(again.verify().unwrap(), report);
}

#[test]
fn the_embedded_store_keeps_the_shared_semantics() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000));
    let open = || KeyStore::open(tmp.path(), RootKeySource::Key(root()), clocked(&clock)).unwrap();
    exercise_semantics(open(), &clock, &open);
}

#[test]
fn the_postgres_store_keeps_the_shared_semantics() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000));
    let open = || db.open_with(tmp.path(), root(), clocked(&clock)).unwrap();
    exercise_semantics(open(), &clock, &open);
    // deleted keys stay as tombstones without material, so other nodes learn
    assert_eq!(
        db.number("SELECT count(*) FROM sealgate_keys WHERE record IS NULL AND alias IS NULL"),
        1
    );
    assert!(
        !tmp.path().join(store::DB_FILE).exists(),
        "no key material in the data directory"
    );
}

// ---- concurrency ----

/// Writers and readers on one store at once (tests/keystore.rs's case, on
/// either backend).
fn writers_and_readers_at_once(store: Arc<KeyStore>) {
    store.create(aliased("shared")).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut blobs = Vec::new();
                for i in 0..10 {
                    store.create(aliased(&format!("t{t}-{i}"))).unwrap();
                    if i % 3 == 0 {
                        store.rotate("shared").unwrap();
                    }
                    blobs.push(store.encrypt("shared", &[t as u8, i], b"").unwrap());
                }
                blobs
            })
        })
        .collect();
    let blobs: Vec<Ciphertext> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(store.list(0, 100).total_count, 41);
    assert_eq!(store.describe("shared").unwrap().primary_version, Some(17));
    for ct in &blobs {
        assert_eq!(store.decrypt(&ct.blob, b"").unwrap().plaintext.len(), 2);
    }
    assert_eq!(store.verify().unwrap().keys, 41);
}

#[test]
fn writers_and_readers_at_once_on_the_embedded_store() {
    let tmp = tempfile::tempdir().unwrap();
    writers_and_readers_at_once(Arc::new(
        KeyStore::open(
            tmp.path(),
            RootKeySource::Key(root()),
            StoreOptions::default(),
        )
        .unwrap(),
    ));
}

#[test]
fn writers_and_readers_at_once_on_the_postgres_store() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    writers_and_readers_at_once(Arc::new(db.open(tmp.path())));
}

#[test]
fn the_key_limit_holds_across_nodes() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let limited = || StoreOptions {
        max_keys: 5,
        ..StoreOptions::default()
    };
    let nodes = [
        Arc::new(db.open_with(tmp.path(), root(), limited()).unwrap()),
        Arc::new(db.open_with(tmp.path(), root(), limited()).unwrap()),
    ];
    let results: Vec<Result<KeyMetadata, KeyError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let node = nodes[i % 2].clone();
                s.spawn(move || node.create(aliased(&format!("n{i}"))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        5,
        "{results:?}"
    );
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| *e == KeyError::LimitExceeded));
    assert_eq!(db.number("SELECT count(*) FROM sealgate_keys"), 5);
}

#[test]
fn two_stores_racing_on_one_database_lose_no_alias_and_no_version() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let nodes = [Arc::new(db.open(tmp.path())), Arc::new(db.open(tmp.path()))];

    // 16 clients, 8 per node, create the same alias at once: one wins
    let results: Vec<Result<KeyMetadata, KeyError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let node = nodes[i % 2].clone();
                s.spawn(move || node.create(aliased("race")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| *e == KeyError::AliasAlreadyExists));
    let key = won[0].key_id;

    // 8 clients rotate it 3 times each, alternating nodes: 24 distinct versions
    let versions: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let node = nodes[i % 2].clone();
                s.spawn(move || {
                    (0..3)
                        .map(|_| node.rotate("race").unwrap().primary_version.unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (2..=25).collect::<Vec<u32>>(), "{versions:?}");

    // and distinct aliases created at once all land
    std::thread::scope(|s| {
        for i in 0..16 {
            let node = nodes[i % 2].clone();
            s.spawn(move || node.create(aliased(&format!("k{i}"))).unwrap());
        }
    });
    for node in &nodes {
        wait_until("both nodes to hold 17 keys", || {
            node.list(0, 0).total_count == 17
        });
        let m = node.describe(&key.to_string()).unwrap();
        assert_eq!(m.versions.len(), 25);
        assert_eq!(m.primary_version, Some(25));
        node.verify().unwrap();
    }
    assert_eq!(db.number("SELECT count(*) FROM sealgate_keys"), 17);

    // every node runs the scheduled rotation; a due key rotates once
    nodes[0].enable_rotation("race", Some(7)).unwrap();
    let due = unix_now() + 8 * DAY;
    let rotated: Vec<Vec<KeyId>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let node = nodes[i % 2].clone();
                s.spawn(move || node.rotate_due(due).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(rotated.concat(), vec![key], "{rotated:?}");
    assert_eq!(
        db.number(
            "SELECT jsonb_array_length(record->'Metadata'->'Versions')::bigint \
             FROM sealgate_keys WHERE alias = 'race'"
        ),
        26,
        "one rotation, not one per node"
    );
}

// ---- propagation ----

#[test]
fn a_change_on_one_node_reaches_the_other_node_and_its_cache() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let a = Arc::new(db.open(tmp.path()));
    let b = Arc::new(db.open(tmp.path()));
    let cache_b = DataKeyCache::with_system_clock(b.clone(), CacheConfig::default());
    let mut lags: Vec<(&str, Duration)> = Vec::new();
    // the listener's propagation: B's revision reaches the one A wrote
    // (memory only: no catch-up pull is involved)
    let mut changed = |what: &'static str| {
        let target = a.revision();
        let lag = wait_until(what, || b.revision() >= target);
        lags.push((what, lag));
    };

    let k = a.create(aliased("shared")).unwrap();
    changed("create");
    assert_eq!(b.describe("shared").unwrap(), k);
    let sealing = cache_b.sealing_key("shared", b"p", 16).unwrap();
    assert_eq!(sealing.cmk.version, 1);

    a.rotate("shared").unwrap();
    changed("rotate");
    assert_eq!(b.describe("shared").unwrap().primary_version, Some(2));
    assert_eq!(
        cache_b.sealing_key("shared", b"p", 16).unwrap().cmk.version,
        2,
        "the epoch moved: the cached v1 DEK is dropped"
    );

    a.disable("shared").unwrap();
    changed("disable");
    assert_eq!(
        cache_b.sealing_key("shared", b"p", 16).unwrap_err(),
        KeyError::CmkDisabled,
        "a disabled key stops sealing on the other node, cached DEKs included"
    );
    assert_eq!(
        b.encrypt("shared", b"x", b"").unwrap_err(),
        KeyError::CmkDisabled
    );
    a.enable("shared").unwrap();
    changed("enable");
    assert!(cache_b.sealing_key("shared", b"p", 16).is_ok());

    let other = a.create(aliased("other")).unwrap();
    a.delete_alias("other").unwrap();
    a.update_alias(&other.key_id.to_string(), "renamed")
        .unwrap();
    changed("alias");
    assert_eq!(b.resolve("renamed").unwrap(), other.key_id);

    let epoch = b.epoch();
    let cred = a.create_credential(None).unwrap();
    changed("credential");
    assert_eq!(
        b.epoch(),
        epoch,
        "a credential change keeps cached data keys"
    );
    assert_eq!(
        b.lookup_secret(&cred.id).unwrap().expose(),
        cred.secret.expose()
    );
    a.revoke_credential(&cred.id).unwrap();
    changed("revoke");
    assert!(b.lookup_secret(&cred.id).is_none());
    assert!(!b.credential_for_check(&cred.id).1);

    a.schedule_deletion("renamed", 7).unwrap();
    changed("schedule deletion");
    assert_eq!(
        b.describe("renamed").unwrap().key_state,
        KeyState::PendingDelete
    );
    let far = unix_now() + 31 * DAY;
    assert_eq!(a.purge_due(far).unwrap(), vec![other.key_id]);
    changed("purge");
    assert!(b.list(0, 10).keys.iter().all(|m| m.key_id != other.key_id));

    // B counted what it applied, and measured the lag itself
    let stats = b.backend_stats().unwrap();
    assert!(stats.rows_applied >= 9, "{stats:?}");
    assert!(stats.sync_pulls > 0, "{stats:?}");
    assert!(
        stats.max_lag > Duration::ZERO && stats.max_lag >= stats.last_lag,
        "{stats:?}"
    );
    println!(
        "propagation lag measured by node B (database clock): last {:?}, max {:?}",
        stats.last_lag, stats.max_lag
    );
    let worst = lags.iter().map(|(_, d)| *d).max().unwrap();
    let shown: Vec<String> = lags
        .iter()
        .map(|(w, d)| format!("{w} {:.1} ms", d.as_secs_f64() * 1e3))
        .collect();
    println!(
        "propagation lag A -> B (LISTEN/NOTIFY, 500 ms poll fallback): {}; worst {:.1} ms",
        shown.join(", "),
        worst.as_secs_f64() * 1e3
    );
}

#[test]
fn a_change_without_a_notification_arrives_by_the_poll() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let b = db.open(tmp.path());
    b.create(aliased("quiet")).unwrap();
    // a write that sends no NOTIFY, as if the notification were lost
    let sql = "UPDATE sealgate_keys SET revision = nextval('sealgate_revision'), \
               record = jsonb_set(record, '{Metadata,Description}', '\"set by hand\"')";
    with_client(&db.url(), move |c| c.execute(sql, &[]).unwrap()).unwrap();
    let lag = wait_until("the poll to bring the change", || {
        b.list(0, 1).keys[0].description == "set by hand"
    });
    println!("un-notified change applied by the poll after {lag:?}");
}

#[test]
fn a_miss_pulls_once_so_a_fresh_version_opens_on_the_other_node_at_once() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let a = db.open(tmp.path());
    let b = db.open(tmp.path());
    for round in 0..20 {
        // no waiting: B may not have heard of the key or version yet; its
        // miss pulls once and finds it
        let alias = format!("fresh{round}");
        a.create(aliased(&alias)).unwrap();
        let c = a.encrypt(&alias, b"v1", b"").unwrap();
        assert_eq!(b.decrypt(&c.blob, b"").unwrap().plaintext.expose(), b"v1");
        a.rotate(&alias).unwrap();
        let c = a.encrypt(&alias, b"v2", b"").unwrap();
        assert_eq!(c.version, 2);
        assert_eq!(b.decrypt(&c.blob, b"").unwrap().plaintext.expose(), b"v2");
    }
}

#[test]
fn warm_requests_make_no_database_round_trip_and_a_miss_makes_one() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(db.open(tmp.path()));
    store.create(aliased("hot")).unwrap();
    let cache = DataKeyCache::with_system_clock(store.clone(), CacheConfig::default());
    let sealing = cache.sealing_key("hot", b"p", 16).unwrap();
    let before = store.backend_stats().unwrap().round_trips;
    for _ in 0..500 {
        let s = cache.sealing_key("hot", b"p", 16).unwrap();
        assert_eq!(s.cmk, sealing.cmk);
        cache.opening_key(&s.cmk, &s.wrapped).unwrap();
        store.describe("hot").unwrap();
        let c = store.encrypt("hot", b"x", b"").unwrap();
        store.decrypt(&c.blob, b"").unwrap();
    }
    assert_eq!(store.backend_stats().unwrap().round_trips, before);
    // a key this node does not know: one pull, then "not found"
    assert_eq!(
        store.describe("nowhere").unwrap_err(),
        KeyError::CmkNotFound
    );
    assert_eq!(store.backend_stats().unwrap().round_trips, before + 1);
}

#[test]
fn connections_the_server_closes_are_replaced_without_a_failed_request() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // store A's connections carry a name of their own, to be found and closed
    let name = format!("sgt_{}", &db.schema[8..24]);
    let url = format!("{}&application_name={name}", db.url());
    let a = KeyStore::open_postgres(
        &url,
        tmp.path(),
        RootKeySource::Key(root()),
        StoreOptions::default(),
    )
    .unwrap();
    let b = db.open(tmp.path());
    a.create(aliased("before")).unwrap();
    let count = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'");
    wait_until("A's request and listener connections", || {
        db.number(&count) == 2
    });

    // the server closes both (a restart, a failover, an idle timeout)
    let killed = db.number(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{name}'"
    ));
    assert_eq!(killed, 2);
    // reads go on from memory; the next writes connect again, none fails
    assert!(a.describe("before").is_ok());
    a.create(aliased("after")).unwrap();
    assert_eq!(a.rotate("before").unwrap().primary_version, Some(2));
    // and the listener reconnects: B's change reaches A's memory
    b.create(aliased("from-b")).unwrap();
    let target = b.revision();
    wait_until("A's listener to reconnect and pull", || {
        a.revision() >= target
    });
    assert!(a
        .list(0, 10)
        .keys
        .iter()
        .any(|m| m.alias.as_deref() == Some("from-b")));
}

#[test]
fn a_write_waiting_for_the_database_does_not_hold_up_warm_requests() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(db.open(tmp.path()));
    store.create(aliased("hot")).unwrap();
    // another session holds the store-wide lock, as a slow writer would
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let url = db.url();
    let holder = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = c.transaction().unwrap();
        tx.execute(
            "SELECT pg_advisory_xact_lock(29543, hashtext(current_schema()))",
            &[],
        )
        .unwrap();
        held_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        tx.commit().unwrap();
    });
    held_rx.recv().unwrap();
    // one worker thread: a write blocking it would stall every other task
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let s = store.clone();
    let stuck = rt.spawn(async move { s.create(aliased("late")) });
    wait_until("the write to wait for the store lock", || {
        db.number(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid = 29543 \
             AND objid = (hashtext(current_schema())::bigint & 4294967295)::oid",
        ) == 1
    });
    let s = store.clone();
    let warm = rt.spawn(async move {
        for _ in 0..100 {
            s.describe("hot").unwrap();
            tokio::task::yield_now().await;
        }
    });
    rt.block_on(warm).unwrap();
    assert!(
        !stuck.is_finished(),
        "warm requests ran while the write still waited"
    );
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    let created = rt.block_on(stuck).unwrap().unwrap();
    assert_eq!(created.alias.as_deref(), Some("late"));
}

#[test]
fn a_write_and_a_miss_waiting_past_the_unreachable_bound_on_a_live_database_succeed() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(db.open(tmp.path()));
    store.create(aliased("first")).unwrap();
    // another session holds the store-wide lock longer than the bound on
    // an unreachable database: the database answers, it is only slow
    let hold = sealgate::keys::pg::UNREACHABLE_TIMEOUT + Duration::from_secs(1);
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let url = db.url();
    let holder = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = c.transaction().unwrap();
        tx.execute(
            "SELECT pg_advisory_xact_lock(29543, hashtext(current_schema()))",
            &[],
        )
        .unwrap();
        held_tx.send(()).unwrap();
        std::thread::sleep(hold);
        tx.commit().unwrap();
    });
    held_rx.recv().unwrap();
    let start = Instant::now();
    let s = store.clone();
    let write = std::thread::spawn(move || s.create(aliased("late")));
    // a second write waits for the first (this node's writer lock), and a
    // miss waits behind it on the connection
    let s = store.clone();
    let second = std::thread::spawn(move || s.create(aliased("later")));
    let s = store.clone();
    let miss = std::thread::spawn(move || s.describe("nowhere"));
    assert_eq!(
        write.join().unwrap().unwrap().alias.as_deref(),
        Some("late")
    );
    assert_eq!(
        second.join().unwrap().unwrap().alias.as_deref(),
        Some("later")
    );
    assert_eq!(miss.join().unwrap().unwrap_err(), KeyError::CmkNotFound);
    let took = start.elapsed();
    holder.join().unwrap();
    println!("writes behind a lock held {hold:?} done after {took:?}");
    assert!(took >= sealgate::keys::pg::UNREACHABLE_TIMEOUT, "{took:?}");
}

// ---- root key, schema ----

#[test]
fn a_wrong_root_key_is_refused_naming_the_store_and_writes_nothing() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    db.open(tmp.path()).create(aliased("k")).unwrap();
    let check = |db: &Scratch| {
        (
            db.number("SELECT count(*) FROM sealgate_keys"),
            db.number("SELECT max(revision) FROM sealgate_keys"),
            db.number("SELECT count(*) FROM sealgate_meta"),
        )
    };
    let before = check(&db);
    let err = db
        .open_with(
            tmp.path(),
            RootKey::from_bytes([1; 32]),
            StoreOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongRootKey(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("wrong root key"), "{msg}");
    assert!(
        msg.contains("postgres://") && msg.contains("@"),
        "names the store: {msg}"
    );
    assert_eq!(check(&db), before);
    assert_eq!(db.open(tmp.path()).verify().unwrap().keys, 1);
}

#[test]
fn nodes_starting_together_migrate_once_and_agree_on_one_root_key() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let opened: Vec<Result<KeyStore, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6u8)
            .map(|i| {
                let db = &db;
                let dir = tmp.path();
                // nodes 0-3 share a root key, 4 and 5 bring others
                let key = if i < 4 {
                    root()
                } else {
                    RootKey::from_bytes([i; 32])
                };
                s.spawn(move || db.open_with(dir, key, StoreOptions::default()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(db.number("SELECT count(*) FROM sealgate_schema_version"), 1);
    assert_eq!(db.number("SELECT count(*) FROM sealgate_meta"), 1);
    // whichever root key initialised the store, only its holders open it
    let ok = opened.iter().filter(|r| r.is_ok()).count();
    let wrong = opened
        .iter()
        .filter(|r| matches!(r, Err(StoreError::WrongRootKey(_))))
        .count();
    assert_eq!(
        ok + wrong,
        6,
        "{:?}",
        opened
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.to_string()))
            .collect::<Vec<_>>()
    );
    assert!(ok == 4 || ok == 1, "4 sharers or 1 outsider won: {ok}");
    // opening again migrates nothing
    drop(opened);
    let _ = db.open_with(tmp.path(), root(), StoreOptions::default());
    assert_eq!(db.number("SELECT count(*) FROM sealgate_schema_version"), 1);
}

#[test]
fn admin_commands_do_not_create_a_store_in_an_empty_database() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let err = KeyStore::open_postgres_existing(
        &db.url(),
        tmp.path(),
        RootKeySource::Key(root()),
        StoreOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Uninitialized(_)), "{err}");
    assert!(err.to_string().contains("keys init --store"), "{err}");
    assert_eq!(
        db.number("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"),
        0
    );
    let bad = KeyStore::open_postgres(
        "mysql://user:hunter2@host/db",
        tmp.path(),
        RootKeySource::Key(root()),
        StoreOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("postgres://") && !bad.contains("hunter2"),
        "{bad}"
    );
}

// ---- export / import both ways, through the CLI ----

fn args(dir: &Path, keyfile: &Path, url: Option<String>) -> StoreArgs {
    StoreArgs {
        data_dir: dir.to_path_buf(),
        root_key_file: Some(keyfile.to_path_buf()),
        store_url: url,
        json: true,
    }
}

fn run_keys(cmd: KeysCommand) -> serde_json::Value {
    let mut out = Vec::new();
    keys_cli::run_to(cmd, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn export_and_import_move_a_deployment_between_embedded_and_postgres_both_ways() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let keyfile = tmp.path().join("root.key");
    let embedded = args(&tmp.path().join("embedded"), &keyfile, None);
    let pg = args(&tmp.path().join("node"), &keyfile, Some(db.url()));

    // embedded → PostgreSQL
    run_keys(KeysCommand::Init {
        store: embedded.clone(),
    });
    let (sealed, cred) = {
        let s = KeyStore::open(
            &embedded.data_dir,
            RootKeySource::File(keyfile.clone()),
            StoreOptions::default(),
        )
        .unwrap();
        s.create(aliased("moved")).unwrap();
        s.rotate("moved").unwrap();
        (
            s.encrypt("moved", b"from embedded", b"").unwrap(),
            s.create_credential(None).unwrap(),
        )
    };
    let out = tmp.path().join("embedded.json");
    run_keys(KeysCommand::Export {
        store: embedded.clone(),
        out: out.clone(),
    });
    // the admin commands refuse a database without a store; `init` makes it
    let mut sink = Vec::new();
    let err = keys_cli::run_to(
        KeysCommand::Import {
            store: pg.clone(),
            file: out.clone(),
        },
        &mut sink,
    )
    .unwrap_err();
    assert!(err.to_string().contains("keys init --store"), "{err}");
    run_keys(KeysCommand::Init { store: pg.clone() });
    let report = run_keys(KeysCommand::Import {
        store: pg.clone(),
        file: out.clone(),
    });
    assert_eq!(report["KeysImported"], 1, "{report}");
    assert_eq!(report["CredentialsImported"], 1, "{report}");
    let listed = run_keys(KeysCommand::List {
        store: pg.clone(),
        offset: 0,
        limit: 10,
    });
    assert_eq!(listed["TotalCount"], 1, "{listed}");
    let mut out_creds = Vec::new();
    creds_cli::run_to(
        CredentialsCommand::List { store: pg.clone() },
        &mut out_creds,
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&out_creds).contains(&cred.id));

    // PostgreSQL → a fresh embedded store
    let from_pg = {
        let s = KeyStore::open_postgres(
            &db.url(),
            &pg.data_dir,
            RootKeySource::File(keyfile.clone()),
            StoreOptions::default(),
        )
        .unwrap();
        assert_eq!(
            s.decrypt(&sealed.blob, b"").unwrap().plaintext.expose(),
            b"from embedded"
        );
        s.create(aliased("born-in-pg")).unwrap();
        s.encrypt("born-in-pg", b"from postgres", b"").unwrap()
    };
    let out2 = tmp.path().join("pg.json");
    run_keys(KeysCommand::Export {
        store: pg.clone(),
        out: out2.clone(),
    });
    let back = args(&tmp.path().join("back"), &keyfile, None);
    run_keys(KeysCommand::Init {
        store: back.clone(),
    });
    let report = run_keys(KeysCommand::Import {
        store: back.clone(),
        file: out2,
    });
    assert_eq!(report["KeysImported"], 2, "{report}");
    let s = KeyStore::open(
        &back.data_dir,
        RootKeySource::File(keyfile.clone()),
        StoreOptions::default(),
    )
    .unwrap();
    assert_eq!(
        s.decrypt(&sealed.blob, b"").unwrap().plaintext.expose(),
        b"from embedded"
    );
    assert_eq!(
        s.decrypt(&from_pg.blob, b"").unwrap().plaintext.expose(),
        b"from postgres"
    );
    assert_eq!(
        s.lookup_secret(&cred.id).unwrap().expose(),
        cred.secret.expose()
    );
    // importing the same backup again changes nothing
    let again = run_keys(KeysCommand::Import {
        store: pg.clone(),
        file: out,
    });
    assert_eq!(again["KeysUnchanged"], 1, "{again}");
}

// ---- two real `sealgate serve` processes ----

const FLEET_POLICY: &str = r#"
[[route]]
name = "records-create"
methods = ["POST"]
path = "/records"
key = "fleet"
context = "records"
request.encrypt = ["$.ssn"]

[[route]]
name = "records-read"
methods = ["GET"]
path = "/records"
key = "fleet"
context = "records"
response.decrypt = ["$.ssn"]
"#;

fn sealgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .env_remove("SEALGATE_DATA_DIR")
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_STORE_URL")
        .output()
        .unwrap()
}

#[test]
fn two_serve_processes_share_one_store_and_follow_each_other() {
    let Some(db) = Scratch::new() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(common::recording_upstream(common::last_post_upstream()));
    // two nodes, each with its own data directory holding the shared root key
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().unwrap().keep())
        .collect();
    let key = sealgate::keys::root::encode_root_key(&root());
    for d in &dirs {
        let data = d.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let file = data.join("root.key");
        std::fs::write(&file, key.as_bytes()).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    let extra = format!("[store]\nurl = \"{}\"\n", db.url());
    // started together: both find an empty store and create the policy's key
    let nodes: Vec<common::ServeProcess> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|d| {
                let (d, extra, addr) = (d.clone(), extra.clone(), upstream.addr);
                s.spawn(move || common::ServeProcess::start_in(d, addr, FLEET_POLICY, &extra))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        db.number("SELECT count(*) FROM sealgate_keys"),
        1,
        "one key"
    );
    for d in &dirs {
        assert!(!d.join("data").join(store::DB_FILE).exists());
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let post = |node: &common::ServeProcess, ssn: &str| {
        rt.block_on(common::send(
            "POST",
            &format!("http://{}/records", node.proxy),
            &[("content-type", "application/json")],
            &format!(r#"{{"ssn":"{ssn}"}}"#),
        ))
        .0
    };
    let get = |node: &common::ServeProcess| {
        let (status, _, body) = rt.block_on(common::send(
            "GET",
            &format!("http://{}/records", node.proxy),
            &[],
            "",
        ));
        (status, body)
    };

    // seal through A, open through B
    assert_eq!(post(a, "123-45-6789"), 200);
    let stored = String::from_utf8_lossy(&upstream.requests().last().unwrap().body).to_string();
    assert!(!stored.contains("123-45-6789"), "{stored}");
    let (status, body) = get(b);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("123-45-6789"), "{body}");

    // rotate and retire version 1 from a third process: A then seals under
    // version 2 and B opens it
    let url = db.url();
    let data_b = dirs[1].join("data").display().to_string();
    let cli = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--store", &url, "--data-dir", &data_b]);
        let out = sealgate(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["keys", "rotate", "fleet"]);
    cli(&["keys", "set-min-decryption-version", "fleet", "2"]);
    let lag = wait_until("A to seal under version 2 and B to open it", || {
        post(a, "222-22-2222") == 200 && get(b) == (200, r#"{"ssn":"222-22-2222"}"#.into())
    });
    println!("rotation seen by both serve processes after {lag:?}");

    // disable: both nodes stop, sealing and opening; enable: both resume
    cli(&["keys", "disable", "fleet"]);
    wait_until("both nodes to refuse the disabled key", || {
        post(a, "333-33-3333") == 503 && get(b).0 == 503
    });
    cli(&["keys", "enable", "fleet"]);
    wait_until("both nodes to use the key again", || {
        post(b, "444-44-4444") == 200 && get(a) == (200, r#"{"ssn":"444-44-4444"}"#.into())
    });
    drop(nodes);
}

#[test]
fn serve_with_the_wrong_root_key_refuses_to_start_naming_the_cause() {
    let Some(db) = Scratch::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    db.open(tmp.path()).create(aliased("fleet")).unwrap();
    let dir = tempfile::tempdir().unwrap().keep();
    // another root key in its data directory
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let other = sealgate::keys::root::encode_root_key(&RootKey::from_bytes([7; 32]));
    let file = dir.join("data/root.key");
    std::fs::write(&file, other.as_bytes()).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let extra = format!("[store]\nurl = \"{}\"\n", db.url());
    let (status, err) = common::ServeProcess::start_fails(
        &dir,
        "127.0.0.1:9".parse().unwrap(),
        FLEET_POLICY,
        &extra,
    );
    assert!(!status.success());
    assert!(err.contains("wrong root key"), "{err}");
    assert_eq!(db.number("SELECT count(*) FROM sealgate_keys"), 1);
}

/// `n` node working directories, each with the shared root key as
/// `data/root.key`.
fn node_dirs(n: usize) -> Vec<PathBuf> {
    let key = sealgate::keys::root::encode_root_key(&root());
    (0..n)
        .map(|_| {
            let d = tempfile::tempdir().unwrap().keep();
            let data = d.join("data");
            std::fs::create_dir_all(&data).unwrap();
            std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            let file = data.join("root.key");
            std::fs::write(&file, key.as_bytes()).unwrap();
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            d
        })
        .collect()
}

#[test]
fn a_fleet_on_one_store_and_one_redis_spends_a_kms_quota_once() {
    let Some(db) = Scratch::new() else { return };
    let Some(redis) = common::redis_url() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(common::recording_upstream(common::echo()));
    // the key and the credential, made once in the shared store
    let tmp = tempfile::tempdir().unwrap();
    let store = db.open(tmp.path());
    let key = store.create(aliased("quota")).unwrap().key_id.to_string();
    let cred = store.create_credential(None).unwrap();
    let secret = String::from_utf8(cred.secret.expose().to_vec()).unwrap();
    drop(store);
    // Infisical's write class, four a minute for the whole fleet: per node
    // counting would give eight (nodes = 1: not even the fallback share of
    // a Redis outage would give four)
    let extra = format!(
        "[store]\nurl = \"{}\"\n[limits]\nurl = \"{redis}\"\nnodes = 1\nprefix = \"sgtest-{}\"\n[kms.infisical.quotas]\nwrite = 4\n[keys]\ncreate_policy_keys = true\n",
        db.url(),
        uuid::Uuid::new_v4().simple()
    );
    let nodes: Vec<common::ServeProcess> = node_dirs(2)
        .into_iter()
        .map(|d| {
            common::ServeProcess::start_with_flags(
                d,
                upstream.addr,
                FLEET_POLICY,
                &extra,
                &["--kms-listen", "127.0.0.1:0"],
            )
        })
        .collect();
    let kms: Vec<String> = nodes
        .iter()
        .map(|n| {
            let line = n.wait_log("KMS listening (Tencent, Alibaba, Infisical dialects)");
            line["fields"]["listen"].as_str().unwrap().to_string()
        })
        .collect();
    // an access token from each node (tokens are per node)
    let tokens: Vec<String> = kms
        .iter()
        .map(|addr| {
            let (status, _, body) = rt.block_on(common::send_json(
                "POST",
                &format!("http://{addr}/api/v1/auth/universal-auth/login"),
                &format!(r#"{{"clientId":"{}","clientSecret":"{secret}"}}"#, cred.id),
            ));
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["accessToken"].as_str().unwrap().to_string()
        })
        .collect();
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..10 {
        let n = i % 2;
        let auth = format!("Bearer {}", tokens[n]);
        let (status, _, body) = rt.block_on(common::send(
            "POST",
            &format!("http://{}/api/v1/kms/keys/{key}/encrypt", kms[n]),
            &[
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
            ],
            r#"{"plaintext":"aGVsbG8="}"#,
        ));
        match status {
            200 => accepted += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}: {body}"),
        }
    }
    assert_eq!(
        (accepted, limited),
        (4, 6),
        "two nodes, one bucket of four a minute in Redis"
    );
    drop(nodes);
}
