//! A fault-injecting front for a KMS under test: a small hyper server that
//! passes calls through to the "cloud" (a sealgate KMS face on loopback) or,
//! on command, answers with a status and body of the test's choosing, never
//! answers, or holds each call until released; it counts what it sees.
//! Included with `#[path]` by the provider tests (Tencent, Alibaba,
//! Infisical dialects); the action of a call is read from `X-TC-Action`,
//! `x-acs-action`, or the Infisical path.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What the front does with the next calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the cloud.
    Pass,
    /// Answer this status with an empty JSON object.
    Status(u16),
    /// Answer this status with this JSON body.
    Answer(u16, &'static str),
    /// Never answer.
    Hang,
    /// Hold each call until `release`, then forward it.
    Gate,
}

/// The fault-injecting front of the cloud KMS.
pub struct Front {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    /// The action of every call received, in order.
    pub actions: Arc<Mutex<Vec<String>>>,
    /// Calls being handled now, and the most at once.
    in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Front {
    pub fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    pub fn count(&self, action: &str) -> usize {
        self.actions
            .lock()
            .unwrap()
            .iter()
            .filter(|a| *a == action)
            .count()
    }
    /// Calls received so far, of any action.
    pub fn total(&self) -> usize {
        self.actions.lock().unwrap().len()
    }
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }
}

/// The action a call is: the Tencent or Alibaba action header, else what
/// the Infisical path names.
fn action_of<B>(req: &Request<B>) -> String {
    for h in ["x-tc-action", "x-acs-action"] {
        if let Some(v) = req.headers().get(h).and_then(|v| v.to_str().ok()) {
            return v.to_string();
        }
    }
    let path = req.uri().path();
    let named = [
        ("/login", "Login"),
        ("/encrypt", "Encrypt"),
        ("/decrypt", "Decrypt"),
    ];
    for (end, name) in named {
        if path.ends_with(end) {
            return name.into();
        }
    }
    if req.method() == http::Method::GET {
        return "DescribeKey".into();
    }
    path.to_string()
}

/// Starts a front that forwards to `cloud`.
pub async fn front(cloud: SocketAddr) -> Front {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let f = Front {
        addr: listener.local_addr().unwrap(),
        mode: Arc::new(Mutex::new(Mode::Pass)),
        actions: Default::default(),
        in_flight: Default::default(),
        max_in_flight: Default::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let (mode, actions, in_flight, max_in_flight, gate) = (
        f.mode.clone(),
        f.actions.clone(),
        f.in_flight.clone(),
        f.max_in_flight.clone(),
        f.gate.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (mode, actions, in_flight, max_in_flight, gate) = (
                mode.clone(),
                actions.clone(),
                in_flight.clone(),
                max_in_flight.clone(),
                gate.clone(),
            );
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (mode, actions, in_flight, max_in_flight, gate) = (
                        mode.clone(),
                        actions.clone(),
                        in_flight.clone(),
                        max_in_flight.clone(),
                        gate.clone(),
                    );
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max_in_flight.fetch_max(now, Ordering::SeqCst);
                        actions.lock().unwrap().push(action_of(&req));
                        let m = *mode.lock().unwrap();
                        let out = answer(m, cloud, req, &gate).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, hyper::Error>(out)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    f
}

async fn answer(
    mode: Mode,
    cloud: SocketAddr,
    req: Request<hyper::body::Incoming>,
    gate: &tokio::sync::Semaphore,
) -> Response<Full<Bytes>> {
    let status = |code: u16, body: &str| {
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    match mode {
        Mode::Status(code) => return status(code, "{}"),
        Mode::Answer(code, body) => return status(code, body),
        Mode::Hang => {
            std::future::pending::<()>().await;
        }
        Mode::Gate => {
            gate.acquire().await.unwrap().forget();
        }
        Mode::Pass => {}
    }
    // forward, headers, path and query and all (Host is signed: it passes
    // unchanged)
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut fwd = Request::builder()
        .method(parts.method)
        .uri(format!("http://{cloud}{path}"));
    for (k, v) in &parts.headers {
        fwd = fwd.header(k, v);
    }
    let resp = crate::common::client()
        .request(fwd.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (p, b) = resp.into_parts();
    Response::from_parts(p, Full::new(b.collect().await.unwrap().to_bytes()))
}
