//! Why a WebSocket connection must end, told to it from outside: its credential was
//! revoked, revocations may have been missed, or the gateway is stopping.
//!
//! Each connection has one [`ConnectionEnd`], held by the registries that may end it
//! (`crate::sessions` by credential, [`WebSocketShutdown`] all of them) and polled by the
//! connection at each of its wake-ups, that is at every delivery: an atomic load and a
//! waker kept, never a lock (a cancellation token per connection took two locks per poll,
//! one of them shared by every connection).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

/// Why a connection must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// Its credential was revoked.
    Revoked,
    /// Revocations may have been missed; the client must authenticate again.
    Interrupted,
    /// The gateway is stopping.
    ServerStopping,
}

/// One connection's end; the first reason given wins.
#[derive(Debug, Default)]
pub(crate) struct ConnectionEnd {
    waker: AtomicWaker,
    why: OnceLock<EndReason>,
}

impl ConnectionEnd {
    pub(crate) fn end(&self, why: EndReason) {
        let _ = self.why.set(why);
        self.waker.wake();
    }

    /// Ready once the connection must end, with why.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<EndReason> {
        if let Some(why) = self.why.get() {
            return Poll::Ready(*why);
        }
        self.waker.register(cx.waker());
        // Ended between the check and the registration: the wake may have gone to the old waker.
        match self.why.get() {
            Some(why) => Poll::Ready(*why),
            None => Poll::Pending,
        }
    }
}

/// Closes this gateway's WebSockets when it stops: each gets 1001 Going Away, so clients
/// reconnect at once (to another gateway, if there is one) instead of seeing the
/// connection drop.
#[derive(Debug, Clone, Default)]
pub struct WebSocketShutdown(Arc<Shutdown>);

#[derive(Debug, Default)]
struct Shutdown {
    stopping: AtomicBool,
    open: Mutex<HashMap<u64, Arc<ConnectionEnd>>>,
    next_id: AtomicU64,
    tracker: tokio_util::task::TaskTracker,
}

/// A connection's place among the open ones, left when dropped.
pub(crate) struct OpenConnection {
    shutdown: Arc<Shutdown>,
    id: u64,
    pub(crate) end: Arc<ConnectionEnd>,
}

impl WebSocketShutdown {
    /// Tells every open WebSocket to close; one opened from now on closes at once.
    pub fn begin(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
        for end in self.0.open.lock().unwrap_or_else(PoisonError::into_inner).values() {
            end.end(EndReason::ServerStopping);
        }
        self.0.tracker.close();
    }

    /// Waits until every WebSocket has closed, at most `grace` (a client that does not read
    /// may never take its close frame); whether all did.
    pub async fn finished(&self, grace: std::time::Duration) -> bool {
        tokio::time::timeout(grace, self.0.tracker.wait()).await.is_ok()
    }

    /// Registers a new connection, which `begin` ends.
    pub(crate) fn open(&self) -> OpenConnection {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let end = Arc::new(ConnectionEnd::default());
        self.0.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, end.clone());
        // After the insertion: a `begin` that did not see it has set the flag already.
        if self.0.stopping.load(Ordering::SeqCst) {
            end.end(EndReason::ServerStopping);
        }
        OpenConnection { shutdown: self.0.clone(), id, end }
    }

    /// `fut`, counted until it completes by [`WebSocketShutdown::finished`].
    pub(crate) fn track<F: std::future::Future>(&self, fut: F) -> tokio_util::task::task_tracker::TrackedFuture<F> {
        self.0.tracker.track_future(fut)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.shutdown.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(end: &ConnectionEnd) -> Option<EndReason> {
        match end.poll(&mut Context::from_waker(futures::task::noop_waker_ref())) {
            Poll::Ready(why) => Some(why),
            Poll::Pending => None,
        }
    }

    #[test]
    fn shutdown_ends_open_and_later_connections_and_the_first_reason_wins() {
        let shutdown = WebSocketShutdown::default();
        let open = shutdown.open();
        open.end.end(EndReason::Revoked);
        let quiet = shutdown.open();
        assert_eq!(ended(&quiet.end), None);
        shutdown.begin();
        assert_eq!(ended(&quiet.end), Some(EndReason::ServerStopping));
        assert_eq!(ended(&open.end), Some(EndReason::Revoked), "ended once, for the first reason");
        assert_eq!(ended(&shutdown.open().end), Some(EndReason::ServerStopping), "opened while stopping");
        drop((open, quiet));
        assert!(shutdown.0.open.lock().unwrap().is_empty(), "closed connections leave the registry");
    }
}
