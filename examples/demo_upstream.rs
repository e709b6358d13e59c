//! A tiny in-memory REST API to put sealgate in front of: the "legacy API"
//! of the README walkthrough.
//!
//! `cargo run --example demo_upstream -- 127.0.0.1:3000`
//!
//! Routes (json-server style): `GET/POST /users`, `GET/PUT/PATCH/DELETE
//! /users/{id}`. Every stored record is printed as it is stored, so you can
//! see what the upstream holds: with sealgate in front, envelopes only.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Db = Arc<Mutex<(u64, BTreeMap<u64, Value>)>>;

fn json(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    r
}

async fn handle(db: Db, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut guard = match db.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let (next_id, rows) = &mut *guard;
    let not_found = || {
        json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found"}),
        )
    };
    Ok(match (method, segs.as_slice()) {
        (Method::GET, ["users"]) => json(
            StatusCode::OK,
            &Value::Array(rows.values().cloned().collect()),
        ),
        (Method::POST, ["users"]) => match parsed {
            Some(Value::Object(mut m)) => {
                *next_id += 1;
                m.insert("id".into(), Value::from(*next_id));
                let v = Value::Object(m);
                println!("stored users/{next_id}: {v}");
                rows.insert(*next_id, v.clone());
                json(StatusCode::CREATED, &v)
            }
            _ => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "expected a JSON object"}),
            ),
        },
        (m, ["users", id]) => {
            let Ok(id) = id.parse::<u64>() else {
                return Ok(not_found());
            };
            match m {
                Method::GET => rows
                    .get(&id)
                    .map_or_else(not_found, |v| json(StatusCode::OK, v)),
                Method::DELETE => rows
                    .remove(&id)
                    .map_or_else(not_found, |_| json(StatusCode::OK, &serde_json::json!({}))),
                Method::PUT | Method::PATCH => match (rows.get_mut(&id), parsed) {
                    (Some(Value::Object(row)), Some(Value::Object(new))) => {
                        if m == Method::PUT {
                            *row = Map::new();
                        }
                        row.extend(new);
                        row.insert("id".into(), Value::from(id));
                        println!("stored users/{id}: {}", Value::Object(row.clone()));
                        json(StatusCode::OK, &Value::Object(row.clone()))
                    }
                    (None, _) => not_found(),
                    _ => json(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({"error": "expected a JSON object"}),
                    ),
                },
                _ => json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &serde_json::json!({"error": "method not allowed"}),
                ),
            }
        }
        _ => not_found(),
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "demo upstream listening on http://{}",
        listener.local_addr()?
    );
    let db: Db = Arc::new(Mutex::new((0, BTreeMap::new())));
    loop {
        let (stream, _) = listener.accept().await?;
        let db = db.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(db.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
