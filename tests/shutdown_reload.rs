//! The real `sealgate serve` binary and real signals: SIGHUP reloads the
//! policies under a load of requests with none failing, and SIGTERM with
//! requests in flight lets them all complete and exits 0 with the audit log
//! flushed and closed.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The server of these tests: the audit log on, a long drain window.
fn start_server(upstream: std::net::SocketAddr, policy: &str) -> ServeProcess {
    ServeProcess::start(
        upstream,
        policy,
        "[audit]\nfile = \"{dir}/audit.jsonl\"\n[timeouts]\ndrain_ms = 60000\n",
    )
}

const V1: &str = r#"
[[route]]
name = "people"
methods = ["POST"]
path = "/people"
key = "people-key"
request.encrypt = ["$.ssn"]
response.decrypt = ["$.ssn"]
"#;

const V2: &str = r#"
[[route]]
name = "people"
methods = ["POST"]
path = "/people"
key = "people-key"
request.encrypt = ["$.ssn", "$.name"]
response.decrypt = ["$.ssn", "$.name"]
"#;

fn sealed(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("sg1."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_under_load_and_no_request_fails() {
    let up = recording_upstream(echo()).await;
    let mut server = start_server(up.addr, V1);
    let url = format!("http://{}/people", server.proxy);

    // a bounded load: 4 clients sending back to back until told to stop
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (url, stop, sent) = (url.clone(), stop.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..2000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let body = format!(r#"{{"name":"n{c}-{i}","ssn":"{c}-{i}"}}"#);
                let (status, _, got) = send_json("POST", &url, &body).await;
                sent.fetch_add(1, Ordering::SeqCst);
                if status != 200 || got != body {
                    failures.push((status, got));
                }
            }
            failures
        }));
    }
    // the load is running before the signal
    wait_until("20 requests of load before the signal", || {
        sent.load(Ordering::SeqCst) >= 20
    })
    .await;
    std::fs::write(server.policy_file(), V2).unwrap();
    server.signal("HUP");
    let line = server.wait_log("policies reloaded");
    assert_eq!(line["fields"]["trigger"], "SIGHUP");
    let after_reload = up.requests().len();
    // keep the load going past the reload, then stop it
    wait_until("40 more requests after the reload", || {
        sent.load(Ordering::SeqCst) >= after_reload + 40
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let failures = c.await.unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
    }

    // before the reload only ssn was sealed; after it, name too
    let seen = up.requests();
    let bodies: Vec<serde_json::Value> = seen
        .iter()
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect();
    assert!(bodies.iter().all(|b| sealed(&b["ssn"])));
    assert!(!sealed(&bodies[0]["name"]), "v1 leaves name in clear");
    // a request that took its snapshot before the swap may still arrive
    // after the reload was logged: at most one per client
    let late_v1 = bodies[after_reload..]
        .iter()
        .filter(|b| !sealed(&b["name"]))
        .count();
    assert!(late_v1 <= 4, "{late_v1} requests used v1 after the reload");
    assert!(bodies.len() > after_reload + 4);
    let body = r#"{"name":"last","ssn":"x"}"#;
    let (status, _, got) = send_json("POST", &url, body).await;
    assert_eq!((status, got.as_str()), (200, body));
    let last: serde_json::Value =
        serde_json::from_slice(&up.requests().last().unwrap().body).unwrap();
    assert!(sealed(&last["name"]), "v2 is in force");

    server.signal("TERM");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    sealgate::audit::verify_file(&server.dir.join("audit.jsonl")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    // a slow upstream: it holds every response until the test opens the gate
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let up = gated_upstream(gate.clone(), arrived.clone()).await;
    let mut server = start_server(up, V1);
    let url = format!("http://{}/people", server.proxy);

    const N: usize = 6;
    let mut inflight = Vec::new();
    for i in 0..N {
        let url = url.clone();
        inflight.push(tokio::spawn(async move {
            let body = format!(r#"{{"name":"n{i}","ssn":"s{i}"}}"#);
            let (status, _, got) = send_json("POST", &url, &body).await;
            (status, got, body)
        }));
    }
    wait_until("every request to reach the upstream", || {
        arrived.load(Ordering::SeqCst) >= N
    })
    .await;
    server.signal("TERM");
    server.wait_log("shutting down: draining in-flight requests");
    // new connections are refused once the listener is closed
    let proxy = server.proxy;
    wait_for(
        "the proxy to refuse connections after SIGTERM",
        || async move {
            tokio::net::TcpStream::connect(proxy)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "sealgate waits for in-flight requests"
    );
    gate.add_permits(N);
    for r in inflight {
        let (status, got, body) = r.await.unwrap();
        assert_eq!(status, 200, "{got}");
        assert_eq!(got, body);
    }
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "exit code after a clean drain");

    // the audit log was flushed and closed: every batch is in it
    let report = sealgate::audit::verify_file(&server.dir.join("audit.jsonl")).unwrap();
    assert!(report.closed, "audit_close is the last record");
    let text = std::fs::read_to_string(server.dir.join("audit.jsonl")).unwrap();
    let sealed_batches = text
        .lines()
        .filter(|l| l.contains("\"action\":\"seal_fields\""))
        .count();
    assert_eq!(sealed_batches, N);
    for i in 0..N {
        assert!(
            !text.contains(&format!("\"s{i}\"")),
            "a value in the audit log"
        );
    }
}

/// An upstream that echoes each body once a permit is available.
async fn gated_upstream(
    gate: Arc<tokio::sync::Semaphore>,
    arrived: Arc<AtomicUsize>,
) -> std::net::SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let gate = gate.clone();
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let gate = gate.clone();
                        let arrived = arrived.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            arrived.fetch_add(1, Ordering::SeqCst);
                            gate.acquire().await.unwrap().forget();
                            let mut r = hyper::Response::new(http_body_util::Full::new(body));
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, hyper::Error>(r)
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    addr
}
