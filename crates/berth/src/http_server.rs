//! The HTTP server loop: what `axum::serve` does, plus a timer, so that hyper closes a
//! connection whose request headers do not arrive in time. Without one, a client could
//! hold connections open without sending a request (or with half its headers) until the
//! gateway ran out of file descriptors, and every customer's requests waited.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may wait idle for its next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes; then lets the requests in
/// progress finish, for at most `grace`. Upgraded connections (WebSockets) are not waited
/// for: they are hyper's no more.
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>, grace: Duration) {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    // Each connection holds a receiver until it ends; `stop` tells them to finish.
    let (stop, stopping) = tokio::sync::watch::channel(());
    let (open, _) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Live events come in bursts (Stopping, Stopped, Starting, Running within
        // milliseconds): with Nagle on, every message after the first of a burst would
        // wait for the client's (possibly delayed, up to 40 ms) ACK of the one before.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        let service = app.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            request.map(Body::new)
        });
        let connection =
            http1.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).with_upgrades();
        let mut stopping = stopping.clone();
        let held = open.subscribe();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let mut told = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(e) = served {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stopping.changed(), if !told => {
                        told = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(held);
        });
    }
    drop(listener);
    let _ = stop.send(());
    if tokio::time::timeout(grace, open.closed()).await.is_err() {
        tracing::warn!(?grace, "requests still open after the grace: stopping anyway");
    }
}
