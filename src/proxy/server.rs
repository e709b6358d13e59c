//! The proxy's listener: [`crate::listen::serve`] with the proxy pipeline
//! as its handler.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::upstream::OwnedConn;
use super::{pipeline, ProxyState};
use crate::listen::{self, ListenLimits};
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
    let limits = ListenLimits {
        max_connections: state.max_connections,
        header_read_timeout: state.header_read_timeout,
        drain,
    };
    listen::serve_per_connection("proxy", listener, acceptor, limits, shutdown, move |peer| {
        let state = state.clone();
        // the upstream connection this client connection owns, if any
        let owned = Arc::new(OwnedConn::default());
        move |req| pipeline::handle(state.clone(), peer, owned.clone(), req)
    })
    .await;
}
