//! A fast fixed-response upstream for the benchmark harness
//! (`examples/bench/run.sh`): as cheap as an HTTP server gets, so the proxy
//! in front of it is what the benchmark measures.
//!
//! `cargo run --release --example bench_upstream -- 127.0.0.1:18000`
//! `cargo run --release --example bench_upstream -- --write-bodies DIR`
//!
//! Paths are read from the end, so any prefix works (the prefix is what
//! picks a sealgate route):
//! - `PUT …/body/{name}`: stores the request body under `name`; `{"ok":true}`.
//! - `GET …/body/{name}`: the stored body, `application/json`.
//! - anything else: the request body is read and dropped; `{"ok":true}`.
//!
//! It runs on one thread (tokio's current-thread runtime), so pinning it to
//! a core with `taskset` pins all of it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

type Store = Rc<RefCell<HashMap<String, Bytes>>>;

const OK: &[u8] = b"{\"ok\":true}";

/// The bench body: `f01`..`f20` (32-byte strings) and filler up to `size` bytes.
fn body(size: usize) -> String {
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
    s
}

fn json(status: StatusCode, b: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(b));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    store: Store,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await?.to_bytes();
    let mut segs = path.rsplit('/');
    let name = segs.next().unwrap_or("");
    let is_body = segs.next() == Some("body");
    Ok(match (method, is_body) {
        (Method::PUT, true) => {
            store.borrow_mut().insert(name.to_owned(), body);
            json(StatusCode::OK, Bytes::from_static(OK))
        }
        (Method::GET, true) => match store.borrow().get(name) {
            Some(b) => json(StatusCode::OK, b.clone()),
            None => json(
                StatusCode::NOT_FOUND,
                Bytes::from_static(b"{\"error\":\"no such body\"}"),
            ),
        },
        _ => json(StatusCode::OK, Bytes::from_static(OK)),
    })
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--write-bodies") {
        let dir = std::path::PathBuf::from(args.get(1).map_or(".", String::as_str));
        std::fs::create_dir_all(&dir)?;
        for (name, size) in [("plain-1k.json", 1024), ("plain-16k.json", 16 * 1024)] {
            std::fs::write(dir.join(name), body(size))?;
        }
        return Ok(());
    }
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:18000".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "bench upstream listening on http://{}",
            listener.local_addr()?
        );
        let store: Store = Rc::new(RefCell::new(HashMap::new()));
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let store = store.clone();
            tokio::task::spawn_local(async move {
                let svc = service_fn(move |req| handle(store.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
