//! Accept loop: one task per connection, TLS (rustls) when configured,
//! HTTP/1.1 and HTTP/2 (ALPN `h2` over TLS, h2c with prior knowledge over
//! plaintext), graceful shutdown (stop accepting, let in-flight requests
//! finish).

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use super::{pipeline, ProxyState};
use crate::tls::Acceptor;

/// Serves the proxy on `listener` (through `acceptor`: plaintext or TLS)
/// until `shutdown` resolves, then waits up to `drain` for in-flight
/// connections.
pub async fn run(
    listener: TcpListener,
    acceptor: Acceptor,
    state: Arc<ProxyState>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(if acceptor.http2() {
        builder
    } else {
        builder.http1_only()
    });
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(state.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // over the cap a connection is closed at once: the server
                // keeps serving the ones it has instead of drowning
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, limit = state.max_connections, "connection limit reached; closing new connection");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                // subscribed now, so a connection still in its handshake at
                // shutdown is drained like the others
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _slot = slot;
                    let io = match acceptor.accept(stream).await {
                        Ok(io) => io,
                        Err(e) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                    };
                    let info = io.info();
                    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(pipeline::handle(state, peer, req).await) }
                    });
                    // no upgrades: the pipeline drops `Upgrade` as hop-by-hop
                    // (and `http1_only` holds only without them)
                    let conn = builder.serve_connection(TokioIo::new(io), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "connection ended with error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain deadline reached; closing remaining connections"),
    }
}
