//! The one accept loop every HTTP listener runs (the proxy and the KMS
//! faces): one task per connection, TLS (rustls) when configured, HTTP/1.1
//! and HTTP/2 (ALPN `h2` over TLS, h2c with prior knowledge over plaintext),
//! a cap on open connections, a timeout on reading a request head, and a
//! graceful shutdown that stops accepting and lets in-flight requests finish
//! for up to a drain deadline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::tls::Acceptor;

/// How a listener treats its connections (from the config's
/// `max_connections` and `[timeouts]`, the same for every listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    /// Open connections at most; a new one past the cap is closed at once.
    pub max_connections: usize,
    /// How long a client may take to send a request head (HTTP/1).
    pub header_read_timeout: Duration,
    /// How long in-flight connections may finish after shutdown begins.
    pub drain: Duration,
}

/// Serves `handler` on `listener` (through `acceptor`: plaintext or TLS)
/// until `shutdown` resolves, then drains. Each request carries the
/// connection's [`ConnectionInfo`](crate::tls::ConnectionInfo) in its
/// extensions; `name` names the listener in log lines.
pub async fn serve<H, Fut, B>(
    name: &'static str,
    listener: TcpListener,
    acceptor: Acceptor,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(SocketAddr, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_per_connection(name, listener, acceptor, limits, shutdown, move |peer| {
        let handler = handler.clone();
        move |req| handler(peer, req)
    })
    .await;
}

/// [`serve`] with a handler made for each connection by `connection`
/// (given the peer's address), so state can live as long as the
/// connection does — the proxy keeps the connection's own upstream
/// connection there.
pub async fn serve_per_connection<M, H, Fut, B>(
    name: &'static str,
    listener: TcpListener,
    acceptor: Acceptor,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
    connection: M,
) where
    M: Fn(SocketAddr) -> H,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(if acceptor.http2() {
        builder
    } else {
        builder.http1_only()
    });
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // over the cap a connection is closed at once: the server
                // keeps serving the ones it has instead of drowning
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(listener = name, %peer, limit = limits.max_connections, "connection limit reached; closing new connection");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let handler = Arc::new(connection(peer));
                // subscribed now, so a connection still in its handshake at
                // shutdown is drained like the others
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _slot = slot;
                    let io = match acceptor.accept(stream).await {
                        Ok(io) => io,
                        Err(e) => {
                            tracing::debug!(listener = name, error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                    };
                    let info = io.info();
                    let svc = service_fn(move |mut req: Request<Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        // the handler's future is made where it will run, not
                        // made here and moved (it is several KB)
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    // no upgrades: the proxy drops `Upgrade` as hop-by-hop
                    // (and `http1_only` holds only without them)
                    let conn = builder.serve_connection(TokioIo::new(io), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(listener = name, error = %e, "connection ended with error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = name, "all connections drained"),
        () = tokio::time::sleep(limits.drain) => tracing::warn!(listener = name, "drain deadline reached; closing remaining connections"),
    }
}
