//! Crash safety: a key operation that returned success survives SIGKILL.
//!
//! The test binary re-invokes itself (the ignored `crash_child` test, found
//! through an env var) as a child that creates keys, rotates them, encrypts
//! and wraps DEKs, printing one `ACK …` line after each operation returned.
//! The parent kills it with SIGKILL after a random number of
//! acknowledgements, reopens the store and checks that everything
//! acknowledged is there and still opens what it sealed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::Rng;
use sealgate::envelope::{CmkRef, WrappedDek};
use sealgate::keys::{CreateKeyRequest, KeyId, KeyProvider, KeyStore, RootKeySource, StoreOptions};
use sealgate::secret::RootKey;

const CHILD_DIR_ENV: &str = "SEALGATE_CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "SEALGATE_CRASH_CHILD_ROUND";
const ROUNDS: usize = 5;
const MAX_ACKS_PER_ROUND: usize = 40;

fn root() -> RootKey {
    RootKey::from_bytes([0x17; 32])
}

fn open(dir: &Path) -> KeyStore {
    KeyStore::open(dir, RootKeySource::Key(root()), StoreOptions::default()).unwrap()
}

fn plaintext(alias: &str, version: u32) -> Vec<u8> {
    format!("plaintext of {alias} under v{version}").into_bytes()
}

/// The child: works until killed, acknowledging each completed operation.
#[test]
#[ignore = "child process of acknowledged_operations_survive_sigkill"]
fn crash_child() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("run by the crash test");
    let round = std::env::var(CHILD_ROUND_ENV).expect("run by the crash test");
    let store = open(Path::new(&dir));
    let mut previous: Option<String> = None;
    for i in 0.. {
        let alias = format!("r{round}-k{i}");
        let m = store
            .create(CreateKeyRequest {
                alias: Some(alias.clone()),
                ..Default::default()
            })
            .unwrap();
        println!("ACK CREATE {} {alias}", m.key_id);
        for version in 1..=3u32 {
            if version > 1 {
                let r = store.rotate(&alias).unwrap();
                assert_eq!(r.primary_version, Some(version));
                println!("ACK ROTATE {} {version}", m.key_id);
            }
            let ct = store
                .encrypt(&alias, &plaintext(&alias, version), b"ctx")
                .unwrap();
            println!(
                "ACK CT {} {} {}",
                m.key_id,
                B64.encode(&ct.blob),
                B64.encode(plaintext(&alias, version))
            );
            let (cmk, wrapped, dek) = store.generate_data_key(&alias).unwrap();
            println!(
                "ACK DEK {} {} {} {}",
                m.key_id,
                cmk.version,
                B64.encode(wrapped.0),
                B64.encode(dek.expose())
            );
        }
        if let Some(p) = &previous {
            let r = store.rotate(p).unwrap();
            println!(
                "ACK ROTATE {} {}",
                r.key_id,
                r.primary_version.unwrap_or_default()
            );
        }
        previous = Some(alias);
    }
}

#[derive(Default)]
struct Acked {
    /// key → (alias, highest acknowledged version)
    keys: HashMap<KeyId, (String, u32)>,
    /// (blob, plaintext)
    ciphertexts: Vec<(Vec<u8>, Vec<u8>)>,
    /// (cmk, wrapped, dek)
    deks: Vec<(CmkRef, WrappedDek, Vec<u8>)>,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let f: Vec<&str> = line.split(' ').collect();
        let id = |s: &str| KeyId::parse(s).unwrap();
        match f[0] {
            "CREATE" => {
                self.keys.insert(id(f[1]), (f[2].to_string(), 1));
            }
            "ROTATE" => {
                let v: u32 = f[2].parse().unwrap();
                let entry = self.keys.get_mut(&id(f[1])).unwrap();
                entry.1 = entry.1.max(v);
            }
            "CT" => self
                .ciphertexts
                .push((B64.decode(f[2]).unwrap(), B64.decode(f[3]).unwrap())),
            "DEK" => {
                let cmk = CmkRef {
                    key_id: *id(f[1]).as_bytes(),
                    version: f[2].parse().unwrap(),
                };
                let wrapped = WrappedDek(B64.decode(f[3]).unwrap().try_into().unwrap());
                self.deks.push((cmk, wrapped, B64.decode(f[4]).unwrap()));
            }
            other => panic!("unknown ack {other}"),
        }
    }

    fn check(&self, store: &KeyStore) {
        let report = store.verify().unwrap();
        assert!(report.keys >= self.keys.len());
        for (id, (alias, version)) in &self.keys {
            let m = store
                .describe(&id.to_string())
                .unwrap_or_else(|e| panic!("acknowledged key {id} lost: {e}"));
            assert_eq!(m.alias.as_deref(), Some(alias.as_str()));
            assert!(
                m.primary_version.unwrap() >= *version,
                "acknowledged rotation of {id} to v{version} lost"
            );
            assert_eq!(store.resolve(alias).unwrap(), *id);
        }
        for (blob, pt) in &self.ciphertexts {
            let got = store.decrypt(blob, b"ctx").unwrap();
            assert_eq!(got.plaintext.expose(), pt.as_slice());
        }
        for (cmk, wrapped, dek) in &self.deks {
            let got = store.unwrap_data_key(cmk, wrapped).unwrap();
            assert_eq!(got.expose().as_slice(), dek.as_slice());
        }
    }
}

#[test]
fn acknowledged_operations_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut acked = Acked::default();
    let mut total_acks = 0;
    for round in 0..ROUNDS {
        let target = rng.gen_range(1..=MAX_ACKS_PER_ROUND);
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &dir)
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // (the harness's "test crash_child ... " shares the first line)
            if let Some(pos) = line.find("ACK ") {
                let ack = &line[pos + 4..];
                acked.record(ack);
                seen += 1;
                if seen == target {
                    break;
                }
            }
        }
        assert_eq!(seen, target, "child stopped before being killed");
        // SIGKILL, in the middle of whatever the child does next
        child.kill().unwrap();
        child.wait().unwrap();
        total_acks += seen;

        let store = open(&dir);
        acked.check(&store);
    }
    assert!(total_acks >= ROUNDS);
    assert!(!acked.keys.is_empty());
}
