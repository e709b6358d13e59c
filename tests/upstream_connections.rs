//! The upstream connection a client connection owns (plaintext HTTP/1.1
//! upstream): its requests share one upstream connection, each client
//! connection has its own, the target goes out in origin form, and an
//! upstream that closes a kept-alive connection between requests — with
//! or without saying so — costs the client nothing and gets no request twice.
//!
//! The upstream here is raw TCP, so the test sees every connection and every
//! request line exactly as sealgate wrote them.

mod common;

use common::ServeProcess;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the upstream treats a connection after each answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterAnswer {
    /// Keeps it open for the next request.
    KeepAlive,
    /// Says `Connection: close`, then closes it.
    CloseAnnounced,
    /// Closes it without a word (as an idle timeout does).
    CloseSilently,
}

struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Request line and body of every request, in order.
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

/// Reads one request head and its `Content-Length` body; `None` at EOF.
async fn read_request<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Option<(String, String)> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let request_line = line.trim_end().to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).await.ok()?;
    Some((request_line, String::from_utf8_lossy(&body).into_owned()))
}

async fn raw_upstream(after: AfterAnswer) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (c, q) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let q = q.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                while let Some(req) = read_request(&mut stream).await {
                    let n = {
                        let mut seen = q.lock().unwrap();
                        seen.push(req);
                        seen.len()
                    };
                    let body = format!("{{\"n\":{n}}}");
                    let close = if after == AfterAnswer::CloseAnnounced {
                        "Connection: close\r\n"
                    } else {
                        ""
                    };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{close}\r\n{body}",
                        body.len()
                    );
                    if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    if after != AfterAnswer::KeepAlive {
                        return; // dropped: the connection closes
                    }
                }
            });
        }
    });
    RawUpstream {
        addr,
        connections,
        requests,
    }
}

/// One kept-alive client connection to the proxy, speaking HTTP/1.1 by hand.
struct RawClient(BufReader<TcpStream>);

impl RawClient {
    async fn connect(proxy: SocketAddr) -> RawClient {
        RawClient(BufReader::new(TcpStream::connect(proxy).await.unwrap()))
    }

    /// Sends one request and returns the status and body of the answer.
    async fn request(&mut self, method: &str, target: &str, body: &str) -> (u16, String) {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0.get_mut().write_all(head.as_bytes()).await.unwrap();
        let mut status_line = String::new();
        self.0.read_line(&mut status_line).await.unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line, got {status_line:?}"));
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            self.0.read_line(&mut h).await.unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; length];
        self.0.read_exact(&mut body).await.unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

/// No route: every request passes through.
const NO_ROUTES: &str = "";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_keeps_one_upstream_connection_of_its_own() {
    let up = raw_upstream(AfterAnswer::KeepAlive).await;
    let sg = ServeProcess::start(up.addr, NO_ROUTES, "");
    let mut a = RawClient::connect(sg.proxy).await;
    let mut b = RawClient::connect(sg.proxy).await;
    for i in 0..5 {
        let (status, _) = a.request("GET", &format!("/items/{i}?page=2"), "").await;
        assert_eq!(status, 200);
        let (status, _) = b.request("POST", "/items", "{\"x\":1}").await;
        assert_eq!(status, 200);
    }
    // both client connections stay open throughout: each owns one upstream connection
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    let seen = up.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 10, "every request reached the upstream once");
    // the upstream gets the origin form, as from any HTTP/1.1 client
    assert!(
        seen.iter()
            .any(|(line, _)| line == "GET /items/3?page=2 HTTP/1.1"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(line, _)| !line.contains("http://")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_after_each_answer_costs_the_client_nothing() {
    for after in [AfterAnswer::CloseAnnounced, AfterAnswer::CloseSilently] {
        let up = raw_upstream(after).await;
        let sg = ServeProcess::start(up.addr, NO_ROUTES, "");
        let mut client = RawClient::connect(sg.proxy).await;
        for i in 0..6 {
            let body = format!("{{\"i\":{i}}}");
            let (status, answer) = client.request("POST", "/items", &body).await;
            assert_eq!(status, 200, "request {i}: {answer}");
            // a silently closed connection may be found closed only when the
            // next request is written to it: the request is sent again on a
            // new connection only if the old one never took it
            assert_eq!(
                answer,
                format!("{{\"n\":{}}}", i + 1),
                "request {i} reached the upstream once"
            );
        }
        let seen = up.requests.lock().unwrap().clone();
        let bodies: Vec<&str> = seen.iter().map(|(_, b)| b.as_str()).collect();
        let expected: Vec<String> = (0..6).map(|i| format!("{{\"i\":{i}}}")).collect();
        assert_eq!(bodies, expected, "each body once, in order");
        assert_eq!(
            up.connections.load(Ordering::SeqCst),
            6,
            "one connection per answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_path_in_the_upstream_url_prefixes_the_origin_form_target() {
    let up = raw_upstream(AfterAnswer::KeepAlive).await;
    let dir = tempfile::tempdir().unwrap().keep();
    // the upstream URL carries a base path: written over the default one
    let sg = ServeProcess::start_with_flags(
        dir,
        up.addr,
        NO_ROUTES,
        "",
        &["--upstream", &format!("http://{}/api/v2/", up.addr)],
    );
    let mut client = RawClient::connect(sg.proxy).await;
    let (status, _) = client.request("GET", "/users?id=7", "").await;
    assert_eq!(status, 200);
    let seen = up.requests.lock().unwrap().clone();
    assert_eq!(seen[0].0, "GET /api/v2/users?id=7 HTTP/1.1");
}
