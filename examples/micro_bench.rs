//! Micro-benchmarks of the proxy's hot path, with no network: seal and open
//! of one field, the JSON rewrite per KB, whole-body seal/open of 1, 5 and
//! 20 fields, the data-key cache hit, sealing with a remote provider at warm
//! cache and cold (one round trip to sealgate's own Tencent KMS face on
//! loopback: the floor of a cold start, before any network distance), and
//! the key store's KMS Encrypt path.
//!
//! `cargo run --release --example micro_bench [-- --quick] [-- --json]`
//! `[-- --only TEXT] [-- --iters N]`
//!
//! `--only TEXT` runs only the rows whose name contains `TEXT` (and skips
//! the sections that have none). `--iters N` runs each row exactly `N`
//! times, once, with no calibration: for counting instructions with
//! `valgrind --tool=callgrind` (divide a function's inclusive count, e.g.
//! `policy::rewrite::rewrite_into` or `proxy::fields::open_fields`, by N).
//!
//! Each line is `name  ns/op (wall)  ns/op (thread CPU)  ops/s`, the median
//! of 5 rounds. Thread CPU time comes from `/proc/thread-self/schedstat`
//! (nanoseconds on CPU), so a preempted round does not inflate it.
//! `--json` prints one JSON object per line instead, for the report script.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealgate::envelope::{self, Envelope, SealingKey};
use sealgate::keys::{CacheConfig, DataKeyCache, KeyProvider, KeyStore, RootKeySource};
use sealgate::policy::{self, SelectorSet};
use sealgate::proxy::counts::FieldCounts;
use sealgate::proxy::error::BodySide;
use sealgate::proxy::fields;
use sealgate::secret::{DataKey, DekCipher};

/// Nanoseconds this thread has been on a CPU (0 when unreadable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct Bench {
    json: bool,
    round: Duration,
    /// Only rows whose name contains this.
    only: Option<String>,
    /// Exactly this many calls per row, one round (for callgrind).
    iters: Option<u64>,
}

impl Bench {
    /// True when the row `name` is to run.
    fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|o| name.contains(o))
    }

    /// Runs `f` in rounds of about `self.round`; prints the median round.
    fn run(&self, name: &str, mut f: impl FnMut()) -> f64 {
        if !self.wants(name) {
            return 0.0;
        }
        if let Some(n) = self.iters {
            let c0 = thread_cpu_ns();
            for _ in 0..n {
                f();
            }
            let cpu = (thread_cpu_ns() - c0) as f64 / n as f64;
            println!("{name:<48} {n} calls {cpu:>10.1} ns CPU");
            return cpu;
        }
        // calibrate: how many calls fill a round
        let mut n: u64 = 1;
        loop {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            if t.elapsed() >= self.round / 4 || n >= 1 << 30 {
                break;
            }
            n *= 2;
        }
        n *= 4;
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let c0 = thread_cpu_ns();
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            let wall = t.elapsed().as_nanos() as f64 / n as f64;
            let cpu = (thread_cpu_ns() - c0) as f64 / n as f64;
            rounds.push((wall, cpu));
        }
        rounds.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (wall, cpu) = rounds[2];
        if self.json {
            println!(
                "{{\"name\":\"{name}\",\"ns_wall\":{wall:.1},\"ns_cpu\":{cpu:.1},\"ops_per_s\":{:.0}}}",
                1e9 / wall
            );
        } else {
            println!(
                "{name:<48} {wall:>10.1} ns/op {cpu:>10.1} ns CPU {:>12.0} ops/s",
                1e9 / wall
            );
        }
        cpu
    }

    fn note(&self, text: &str) {
        if self.json {
            println!("{{\"note\":{:?}}}", text);
        } else {
            println!("{text}");
        }
    }
}

/// A JSON string value of exactly `n` bytes of content, quoted.
fn string_value(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 2);
    v.push(b'"');
    v.extend((0..n).map(|i| b'a' + (i % 26) as u8));
    v.push(b'"');
    v
}

/// The bench body: `f01`..`f20` (32-byte strings) and filler up to `size` bytes.
pub fn body(size: usize) -> Vec<u8> {
    let mut s = String::from("{\"id\":12345,\"kind\":\"bench\"");
    for i in 1..=20 {
        s.push_str(&format!(
            ",\"f{i:02}\":\"value-{i:02}-abcdefghijklmnopqrstuvw\""
        ));
    }
    s.push_str(",\"items\":[");
    let mut first = true;
    while s.len() + 60 < size {
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str("{\"sku\":\"ABC-1234\",\"qty\":3,\"price\":19.99,\"ok\":true}");
    }
    s.push_str("]}");
    s.into_bytes()
}

fn selectors(n: usize) -> SelectorSet {
    let texts: Vec<String> = (1..=n).map(|i| format!("$.f{i:02}")).collect();
    SelectorSet::compile(&texts).expect("selectors compile")
}

/// Counts provider calls, to show the warm path makes none.
struct Counting(Arc<KeyStore>, std::sync::atomic::AtomicU64);

impl KeyProvider for Counting {
    fn generate_data_key(
        &self,
        key: &str,
    ) -> Result<(envelope::CmkRef, envelope::WrappedDek, DataKey), sealgate::keys::KeyError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.generate_data_key(key)
    }
    fn unwrap_data_key(
        &self,
        cmk: &envelope::CmkRef,
        wrapped: &envelope::WrappedDek,
    ) -> Result<DataKey, sealgate::keys::KeyError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.unwrap_data_key(cmk, wrapped)
    }
}

/// A remote KMS stand-in: data keys with an 81-byte CiphertextBlob (the
/// size sealgate's own KMS face returns), counted; no network, so the rows
/// below measure what a warm cache costs with `[provider]` set.
struct FakeRemote(std::sync::atomic::AtomicU64);

impl KeyProvider for FakeRemote {
    fn generate_data_key(
        &self,
        _key: &str,
    ) -> Result<(envelope::CmkRef, envelope::WrappedDek, DataKey), sealgate::keys::KeyError> {
        Err(sealgate::keys::KeyError::UnsupportedKeyUsage)
    }
    fn unwrap_data_key(
        &self,
        _cmk: &envelope::CmkRef,
        _wrapped: &envelope::WrappedDek,
    ) -> Result<DataKey, sealgate::keys::KeyError> {
        Err(sealgate::keys::KeyError::CmkNotFound)
    }
    fn is_remote(&self) -> bool {
        true
    }
    fn generate_remote_data_key(
        &self,
        _key: &str,
        _template: &str,
    ) -> Result<sealgate::keys::RemoteDataKey, sealgate::keys::KeyError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(sealgate::keys::RemoteDataKey {
            cmk: envelope::CmkRef {
                key_id: [1; 16],
                version: 0,
            },
            blob: vec![0xab; 81],
            key: DataKey::generate(&mut rand::thread_rng()),
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let b = Bench {
        json: args.iter().any(|a| a == "--json"),
        round: Duration::from_millis(if quick { 40 } else { 200 }),
        only: value_of("--only"),
        iters: value_of("--iters").map(|n| n.parse().expect("--iters N")),
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        KeyStore::open(dir.path(), RootKeySource::Auto, Default::default()).expect("store opens"),
    );
    store
        .create_alias_key("bench", "micro bench")
        .expect("key created");
    let counting = Arc::new(Counting(
        store.clone(),
        std::sync::atomic::AtomicU64::new(0),
    ));
    let cache = DataKeyCache::with_system_clock(counting.clone(), CacheConfig::default());
    let cold = DataKeyCache::with_system_clock(
        store.clone(),
        CacheConfig {
            enabled: false,
            ..CacheConfig::default()
        },
    );
    let mut rng = rand::thread_rng();
    let ctx = b"bench\0f01";

    b.note("# crypto floor");
    let key = DataKey::from_bytes([7; 32]);
    b.run("aes-256-gcm key schedule (DekCipher::new)", || {
        black_box(DekCipher::new(black_box(&key)));
    });
    let sk: Arc<SealingKey> = cache.sealing_key("bench", b"bench", 16).expect("key");

    b.note("# one field, envelope only (cached cipher)");
    for n in [16usize, 256, 4096] {
        let v = string_value(n);
        b.run(&format!("seal {n} B string"), || {
            black_box(envelope::seal(&sk, black_box(&v), ctx, &mut rng).expect("seals"));
        });
        let text = envelope::seal(&sk, &v, ctx, &mut rng).expect("seals");
        b.run(&format!("open {n} B string (parse + open)"), || {
            let env = Envelope::parse(black_box(&text)).expect("parses");
            black_box(env.open(&sk.cipher, ctx).expect("opens"));
        });
    }

    b.note("# data-key cache hit");
    b.run("cache sealing_key (hit)", || {
        black_box(cache.sealing_key("bench", b"bench", 16).expect("key"));
    });
    b.run("cache opening_key (hit)", || {
        black_box(cache.opening_key(&sk.cmk, &sk.wrapped).expect("key"));
    });
    b.run("cache off: sealing_key (generate + wrap)", || {
        black_box(cold.sealing_key("bench", b"bench", 16).expect("key"));
    });
    b.run("cache off: opening_key (unwrap + key schedule)", || {
        black_box(cold.opening_key(&sk.cmk, &sk.wrapped).expect("key"));
    });

    b.note("# one field through the cache (what a request pays per field)");
    for n in [16usize, 256] {
        let v = string_value(n);
        b.run(&format!("cache hit + seal {n} B"), || {
            let k = cache.sealing_key("bench", b"bench", n).expect("key");
            black_box(envelope::seal(&k, black_box(&v), ctx, &mut rng).expect("seals"));
        });
        let text = envelope::seal(&sk, &v, ctx, &mut rng).expect("seals");
        b.run(&format!("parse + cache hit + open {n} B"), || {
            let env = Envelope::parse(black_box(&text)).expect("parses");
            let c = cache.opening_key(&env.cmk(), env.wrapped()).expect("key");
            black_box(env.open(&c, ctx).expect("opens"));
        });
    }

    b.note("# JSON rewrite, identity callback (parse, index, select, splice)");
    for size in [1024usize, 16 * 1024] {
        let doc = body(size);
        for n in [1usize, 5, 20] {
            let sel = selectors(n);
            let cpu = b.run(&format!("rewrite {}B body, {n} fields", doc.len()), || {
                let out = policy::rewrite::<()>(black_box(&doc), &sel, |site| {
                    Ok(Some(site.raw.to_vec()))
                })
                .expect("rewrites");
                black_box(out);
            });
            b.note(&format!(
                "    = {:.0} ns CPU per KB",
                cpu / (doc.len() as f64 / 1024.0)
            ));
        }
    }

    b.note("# whole body: seal / open the selected fields (proxy::fields)");
    let mut sealed_bodies = Vec::new();
    for size in [1024usize, 16 * 1024] {
        let doc = body(size);
        for n in [1usize, 5, 20] {
            let sel = selectors(n);
            let mut counts = FieldCounts::default();
            b.run(
                &format!("seal_fields {}B body, {n} fields", doc.len()),
                || {
                    black_box(
                        fields::seal_fields(
                            &cache,
                            "bench",
                            "bench",
                            "bench",
                            &doc,
                            &sel,
                            &mut counts,
                            BodySide::Request,
                        )
                        .expect("seals"),
                    );
                },
            );
            let sealed = fields::seal_fields(
                &cache,
                "bench",
                "bench",
                "bench",
                &doc,
                &sel,
                &mut counts,
                BodySide::Request,
            )
            .expect("seals")
            .expect("something sealed");
            b.run(
                &format!("open_fields {}B body, {n} fields", sealed.len()),
                || {
                    black_box(
                        fields::open_fields(
                            &cache,
                            fields::OpenScope {
                                route: "bench",
                                keys: &[],
                            },
                            "bench",
                            &sealed,
                            &sel,
                            policy::OnPlaintext::Refuse,
                            policy::OnOpenFailure::Refuse,
                            &mut counts,
                            BodySide::Response,
                        )
                        .expect("opens"),
                    );
                },
            );
            sealed_bodies.push((sealed, sel));
        }
    }

    let doc = body(1024);
    let sel5 = selectors(5);
    if b.wants("key-store calls") {
        b.note("# key-store operations per request, warm cache");
        let before = counting.1.load(std::sync::atomic::Ordering::Relaxed);
        let mut counts = FieldCounts::default();
        let requests = 10_000u64;
        for _ in 0..requests {
            fields::seal_fields(
                &cache,
                "bench",
                "bench",
                "bench",
                &doc,
                &sel5,
                &mut counts,
                BodySide::Request,
            )
            .expect("seals");
            let (sealed, sel) = &sealed_bodies[1];
            fields::open_fields(
                &cache,
                fields::OpenScope {
                    route: "bench",
                    keys: &[],
                },
                "bench",
                sealed,
                sel,
                policy::OnPlaintext::Refuse,
                policy::OnOpenFailure::Refuse,
                &mut counts,
                BodySide::Response,
            )
            .expect("opens");
        }
        let calls = counting.1.load(std::sync::atomic::Ordering::Relaxed) - before;
        if b.json {
            println!(
                "{{\"name\":\"key-store calls per request (warm)\",\"requests\":{},\"calls\":{calls}}}",
                requests * 2
            );
        } else {
            println!(
                "key-store calls over {} warm requests (5 fields sealed, 5 opened): {calls}",
                requests * 2
            );
        }
    }

    b.note("# remote provider ([provider]), warm cache: the same body, sg2. envelopes");
    let remote = Arc::new(FakeRemote(std::sync::atomic::AtomicU64::new(0)));
    let remote_cache = DataKeyCache::with_system_clock(remote.clone(), CacheConfig::default());
    let doc = body(1024);
    let mut counts = FieldCounts::default();
    b.run(
        &format!("seal_fields {}B body, 5 fields, remote provider", doc.len()),
        || {
            black_box(
                fields::seal_fields(
                    &remote_cache,
                    "bench",
                    "bench",
                    "bench",
                    &doc,
                    &sel5,
                    &mut counts,
                    BodySide::Request,
                )
                .expect("seals"),
            );
        },
    );
    let remote_calls = remote.0.load(std::sync::atomic::Ordering::Relaxed);
    if b.json {
        println!("{{\"name\":\"remote provider calls (warm)\",\"calls\":{remote_calls}}}");
    } else {
        println!("remote provider calls over every seal above: {remote_calls}");
    }

    if b.only
        .as_deref()
        .is_none_or(|o| o.contains("remote") || o.contains("data-key cache of"))
    {
        remote_cold_start(&b, &doc, &sel5);
    }

    b.note("# KMS Encrypt (no HTTP face wired yet: KeyStore::encrypt, rate limiter off)");
    let pt = [0x42u8; 32];
    b.run("KeyStore::encrypt 32 B", || {
        black_box(
            store
                .encrypt("bench", black_box(&pt), b"ctx")
                .expect("encrypts"),
        );
    });
    let ct = store.encrypt("bench", &pt, b"ctx").expect("encrypts");
    b.run("KeyStore::decrypt 32 B", || {
        black_box(
            store
                .decrypt(black_box(&ct.blob), b"ctx")
                .expect("decrypts"),
        );
    });
}

/// The cold-start cost with `[provider]`: the first seal of a route (one
/// `GenerateDataKey`) and the first open of a data key sealed elsewhere (one
/// `Decrypt`), each a real round trip of the Tencent dialect — TC3 signing,
/// HTTP/1.1 on loopback, the face's verification and key store — to an
/// in-process sealgate serving its KMS face. A cloud KMS adds its network
/// distance and its own service time.
fn remote_cold_start(b: &Bench, doc: &[u8], sel: &SelectorSet) {
    use sealgate::config::{load, Overrides};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("policies")).expect("policies dir");
    let mut cfg = load(
        None,
        &Overrides {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some("http://127.0.0.1:9".into()),
            policies: Some(dir.path().join("policies")),
            data_dir: Some(dir.path().join("data")),
            kms_listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        },
    )
    .expect("config");
    for action in ["GenerateDataKey", "Decrypt", "DescribeKey"] {
        cfg.kms_quotas
            .set_legacy(action, 1_000_000)
            .expect("quota override");
    }
    let app = rt
        .block_on(sealgate::app::start(cfg))
        .expect("the KMS face starts");
    let key = app
        .store
        .create(sealgate::keys::CreateKeyRequest::default())
        .expect("key")
        .key_id
        .to_string();
    let cred = app.store.create_credential(None).expect("credential");
    std::env::set_var("SG_BENCH_PROVIDER_ID", &cred.id);
    std::env::set_var(
        "SG_BENCH_PROVIDER_KEY",
        String::from_utf8_lossy(cred.secret.expose()).as_ref(),
    );
    let toml = dir.path().join("provider.toml");
    std::fs::write(
        &toml,
        format!(
            "upstream = \"http://127.0.0.1:9\"\n[provider]\nkind = \"tencent\"\n\
             endpoint = \"http://{}\"\nregion = \"ap-guangzhou\"\n\
             secret_id_env = \"SG_BENCH_PROVIDER_ID\"\nsecret_key_env = \"SG_BENCH_PROVIDER_KEY\"\n",
            app.kms_addr.expect("KMS listener")
        ),
    )
    .expect("provider config");
    let settings = load(Some(&toml), &Overrides::default())
        .expect("provider config loads")
        .provider
        .expect("[provider]");
    let provider = Arc::new(
        sealgate::keys::remote::RemoteProvider::new(
            &settings,
            Arc::new(sealgate::metrics::Metrics::new()),
        )
        .expect("provider"),
    );
    provider
        .check_keys([key.as_str()])
        .expect("the key is usable");

    b.note("# remote provider, cold: one round trip to sealgate's Tencent face on loopback");
    let cache = DataKeyCache::with_system_clock(provider.clone(), CacheConfig::default());
    let mut counts = FieldCounts::default();
    let mut route = 0u64;
    // a new route each time: its first seal makes one GenerateDataKey
    b.run(
        &format!(
            "seal_fields {}B body, 5 fields, remote, cold route",
            doc.len()
        ),
        || {
            route += 1;
            let partition = format!("cold-{route}");
            black_box(
                fields::seal_fields(
                    &cache,
                    &key,
                    &partition,
                    "bench",
                    doc,
                    sel,
                    &mut counts,
                    BodySide::Request,
                )
                .expect("seals"),
            );
        },
    );
    let sealed = fields::seal_fields(
        &cache,
        &key,
        "bench",
        "bench",
        doc,
        sel,
        &mut counts,
        BodySide::Request,
    )
    .expect("seals")
    .expect("something sealed");
    let small = CacheConfig {
        capacity: 4,
        ..CacheConfig::default()
    };
    // a node that has not seen the data key: one Decrypt, then the 5 opens
    b.run(
        &format!(
            "open_fields {}B body, 5 fields, remote, cold node",
            sealed.len()
        ),
        || {
            let fresh = DataKeyCache::with_system_clock(provider.clone(), small.clone());
            black_box(
                fields::open_fields(
                    &fresh,
                    fields::OpenScope {
                        route: "bench",
                        keys: &[],
                    },
                    "bench",
                    &sealed,
                    sel,
                    policy::OnPlaintext::Refuse,
                    policy::OnOpenFailure::Refuse,
                    &mut counts,
                    BodySide::Response,
                )
                .expect("opens"),
            );
        },
    );
    b.run(
        "an empty data-key cache of 4 (made per cold open above)",
        || {
            black_box(DataKeyCache::with_system_clock(
                provider.clone(),
                small.clone(),
            ));
        },
    );
    drop(provider);
    rt.block_on(app.shutdown());
}
