//! Quotas shared by a fleet through Redis (`--limits redis://…`): the nodes
//! share one bucket per (caller, class); when Redis goes away each node falls
//! back to its share of the quota and comes back without a restart.
//!
//! Needs Redis: `SEALGATE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
//! Without it the tests print a "skipped" line, unless
//! `SEALGATE_REQUIRE_SERVICES=1` (CI sets it), which makes them fail. The
//! outage test runs its own `redis-server` on a free port so it can kill it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealgate::clock::SystemClock;
use sealgate::limits::{Limiter, LimitsConfig, SharedLimits};
use sealgate::ratelimit::{Quota, RateLimiter};

/// A key prefix no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    format!("sgtest-{test}-{}", uuid::Uuid::new_v4().simple())
}

/// One node's limiter for a table with one quota class, `Encrypt`.
fn node(url: &str, prefix: &str, nodes: u32, quota: Quota) -> (Limiter, Arc<SharedLimits>) {
    let shared = Arc::new(
        SharedLimits::new(LimitsConfig {
            url: url.to_string(),
            nodes,
            prefix: prefix.to_string(),
        })
        .unwrap(),
    );
    let table = RateLimiter::new(
        SystemClock,
        Quota::per_second(1_000_000),
        [("Encrypt".to_string(), quota)].into_iter().collect(),
    );
    (Limiter::new("tencent", table, Some(shared.clone())), shared)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_bucket() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let prefix = unique_prefix("burst");
    // one token a minute, five at once: the fleet gets five, not fifteen
    let quota = Quota {
        burst: 5,
        ..Quota::per_minute(1)
    };
    let nodes: Vec<_> = (0..3).map(|_| node(&url, &prefix, 3, quota)).collect();
    let started = Instant::now();
    let mut accepted = 0;
    for round in 0..10 {
        for (limiter, _) in &nodes {
            if limiter.check("AKIDfleet", "Encrypt").await.is_ok() {
                accepted += 1;
            }
            let _ = round;
        }
    }
    let refills = started.elapsed().as_secs() / 60;
    assert!(
        (5..=5 + refills).contains(&accepted),
        "accepted {accepted} of 30 across three nodes"
    );
    for (_, shared) in &nodes {
        let s = shared.stats();
        assert!(
            s.up && s.shared_decisions == 10 && s.fallback_decisions == 0,
            "{s:?}"
        );
    }
    // another caller has its own bucket; a refused one says when to retry
    let (limiter, _) = &nodes[0];
    assert!(limiter.check("AKIDother", "Encrypt").await.is_ok());
    let retry = limiter.check("AKIDfleet", "Encrypt").await.unwrap_err();
    assert!(
        retry.0 > Duration::from_secs(1) && retry.0 <= Duration::from_secs(60),
        "{retry:?}"
    );
    // an action without a quota of its own uses the table's default, and a
    // quota of 0 refuses without asking Redis
    let before = nodes[1].1.stats().shared_decisions;
    let off = RateLimiter::new(
        SystemClock,
        Quota::per_second(1_000),
        [("Disabled".to_string(), Quota::per_second(0))]
            .into_iter()
            .collect(),
    );
    let off = Limiter::new("tencent", off, Some(nodes[1].1.clone()));
    assert!(off.check("AKIDfleet", "Disabled").await.is_err());
    assert_eq!(nodes[1].1.stats().shared_decisions, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_t_seconds_the_fleet_stays_within_rate_times_t_plus_burst() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let prefix = unique_prefix("rate");
    let (rate, burst) = (200u32, 20u32);
    let quota = Quota {
        burst,
        ..Quota::per_second(rate)
    };
    let accepted = Arc::new(AtomicU64::new(0));
    let tried = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_millis(2_500);
    let started = Instant::now();
    let mut tasks = Vec::new();
    // three nodes, each with two callers' worth of concurrent clients
    for _ in 0..3 {
        let (limiter, _) = node(&url, &prefix, 3, quota);
        let limiter = Arc::new(limiter);
        for _ in 0..4 {
            let (limiter, accepted, tried) = (limiter.clone(), accepted.clone(), tried.clone());
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < run_for {
                    tried.fetch_add(1, Ordering::Relaxed);
                    if limiter.check("AKIDload", "Encrypt").await.is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (accepted, tried) = (
        accepted.load(Ordering::Relaxed),
        tried.load(Ordering::Relaxed),
    );
    let bound = f64::from(rate) * elapsed + f64::from(burst);
    println!(
        "three nodes, {elapsed:.2} s: {tried} tried, {accepted} accepted, bound {bound:.0} (rate·T + burst); one node alone would allow {bound:.0}, three counting apart {:.0}",
        3.0 * bound
    );
    assert!(
        tried as f64 > 2.0 * bound,
        "the load must exceed the quota for the bound to mean anything: {tried} tried"
    );
    assert!(
        accepted as f64 <= bound,
        "{accepted} accepted over {elapsed:.2} s exceeds {rate}·T + {burst} = {bound:.0}"
    );
    // and the quota is really granted, not refused wholesale
    assert!(
        accepted as f64 >= 0.5 * f64::from(rate) * elapsed,
        "{accepted} accepted over {elapsed:.2} s"
    );
}

/// A private `redis-server` on a free port, killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start_on(port: u16, dir: tempfile::TempDir) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PrivateRedis { child, port, dir }
    }

    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port, tempfile::tempdir().unwrap())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs it; returns what restarts it on the same port.
    fn kill(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (port, dir)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_node_keeps_its_share_and_recovers_by_itself() {
    if common::redis_url().is_none() {
        return; // no Redis here, and so most likely no redis-server either
    }
    let redis = PrivateRedis::start();
    let prefix = unique_prefix("outage");
    // ten a minute for the fleet of two nodes: five each while Redis is away
    let (limiter, shared) = node(&redis.url(), &prefix, 2, Quota::per_minute(10));
    for i in 0..10 {
        assert!(limiter.check("AKIDa", "Encrypt").await.is_ok(), "#{i}");
    }
    assert!(limiter.check("AKIDa", "Encrypt").await.is_err());
    assert!(shared.stats().up);

    let (port, dir) = redis.kill();
    let mut accepted = 0;
    for _ in 0..8 {
        if limiter.check("AKIDa", "Encrypt").await.is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 5, "the node's share of 10/min over 2 nodes");
    let s = shared.stats();
    assert!(
        !s.up && s.outages == 1 && s.fallback_decisions == 8,
        "{s:?}"
    );

    // back on the same port with empty state: within the retry interval the
    // node asks Redis again, and decisions are shared once more
    let redis = PrivateRedis::start_on(port, dir);
    tokio::time::sleep(sealgate::limits::REDIS_RETRY + Duration::from_millis(200)).await;
    common::wait_for("the limiter to use Redis again", || {
        let (limiter, shared) = (&limiter, &shared);
        async move {
            let _ = limiter.check("AKIDb", "Encrypt").await;
            shared.stats().up.then_some(())
        }
    })
    .await;
    let s = shared.stats();
    assert_eq!(s.outages, 1, "{s:?}");
    let before = s.shared_decisions;
    assert!(limiter.check("AKIDc", "Encrypt").await.is_ok());
    assert_eq!(shared.stats().shared_decisions, before + 1);
    drop(redis);
}

const POLICY: &str = r#"
[[route]]
name = "limited"
path = "/limited"
key = "k"
rate_limit = { per_second = 1, burst = 3 }

[[route]]
name = "free"
path = "/free"
key = "k"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_share_a_route_rate_limit() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let up = common::recording_upstream(common::fixed_json(r#"{"ok":true}"#)).await;
    let extra = format!(
        "[limits]\nurl = \"{url}\"\nnodes = 2\nprefix = \"{}\"\n[keys]\ncreate_policy_keys = true\n",
        unique_prefix("serve")
    );
    let a = common::ServeProcess::start(up.addr, POLICY, &extra);
    let b = common::ServeProcess::start(up.addr, POLICY, &extra);
    let started = Instant::now();
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..12 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, headers, body) =
            common::send("GET", &format!("http://{}/limited", node.proxy), &[], "").await;
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(headers.contains_key("retry-after"), "{headers:?}");
                assert!(body.contains("rate_limited"), "{body}");
            }
            s => panic!("unexpected {s}: {body}"),
        }
    }
    let refills = started.elapsed().as_secs();
    assert!(
        (3..=3 + refills).contains(&ok),
        "{ok} of 12 passed across two nodes (burst 3, 1/s; per node it would be 6)"
    );
    assert_eq!(ok + limited, 12);
    // a route without a rate limit never waits on Redis, and is not limited
    for node in [&a, &b] {
        for _ in 0..10 {
            let (status, _, _) =
                common::send("GET", &format!("http://{}/free", node.proxy), &[], "").await;
            assert_eq!(status, 200);
        }
    }
}
