//! Live WebSocket sessions by the credential they were opened with, so that a revoked
//! credential (a changed password, a revoked token; on any gateway) ends them at once.
//!
//! A session is registered *before* its credential is checked: a revocation committed
//! after the check finds it, and one committed before makes the check fail. When
//! revocations may have been missed (the gateway's PostgreSQL listener reconnected), every
//! session ends and its client reconnects, presenting its credentials again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};

use berth_model::Credential;
use berth_service::revocation::{Revocations, Revoked};
use berth_service::Service;
use futures::task::AtomicWaker;

/// Why a session must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// Its credential was revoked.
    Revoked,
    /// Revocations may have been missed; the client must authenticate again.
    Interrupted,
}

/// The registry of one router's sessions; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Sessions(Arc<Registry>);

/// The open sessions of each credential, by session id (one password may hold thousands).
type Open = HashMap<Credential, HashMap<u64, Arc<Ending>>>;

#[derive(Default)]
struct Registry {
    open: Mutex<Open>,
    next_id: AtomicU64,
    /// Started with the first session: a task ending sessions on revocations.
    watcher: OnceLock<()>,
}

/// Polled by the session's connection at each of its wake-ups (every delivery), so it is
/// an atomic load and a waker kept, never a lock.
#[derive(Default)]
struct Ending {
    waker: AtomicWaker,
    why: OnceLock<SessionEnd>,
}

/// One registered session; leaves the registry when dropped.
pub(crate) struct Session {
    registry: Arc<Registry>,
    credential: Credential,
    id: u64,
    ending: Arc<Ending>,
}

impl Sessions {
    /// Registers a session opened with `credential` (before checking it).
    pub(crate) fn open(&self, service: &Service, credential: Credential) -> Session {
        self.0.watcher.get_or_init(|| {
            // The feed is taken here, so no revocation after this call is missed.
            let feed = service.revocations();
            tokio::spawn(watch(Arc::downgrade(&self.0), feed));
        });
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let ending = Arc::new(Ending::default());
        self.0.lock().entry(credential.clone()).or_default().insert(id, ending.clone());
        Session { registry: self.0.clone(), credential, id, ending }
    }
}

impl Session {
    /// Ready once the session must end, with why.
    pub(crate) fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        if let Some(why) = self.ending.why.get() {
            return Poll::Ready(*why);
        }
        self.ending.waker.register(cx.waker());
        // Ended between the check and the registration: the wake may have gone to the old waker.
        match self.ending.why.get() {
            Some(why) => Poll::Ready(*why),
            None => Poll::Pending,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut open = self.registry.lock();
        if let Some(sessions) = open.get_mut(&self.credential) {
            sessions.remove(&self.id);
            if sessions.is_empty() {
                open.remove(&self.credential);
            }
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn end(&self, credential: Option<&Credential>, why: SessionEnd) {
        let open = self.lock();
        let endings: Vec<&Arc<Ending>> = match credential {
            Some(c) => open.get(c).into_iter().flat_map(HashMap::values).collect(),
            None => open.values().flat_map(HashMap::values).collect(),
        };
        for ending in endings {
            let _ = ending.why.set(why);
            ending.waker.wake();
        }
    }
}

/// Ends the sessions of each revoked credential; all of them when revocations may have been
/// missed. Stops once the router's registry is gone.
async fn watch(registry: Weak<Registry>, mut feed: Revocations) {
    loop {
        let revoked = feed.next().await;
        let Some(registry) = registry.upgrade() else { return };
        match revoked {
            Revoked::One(credential) => registry.end(Some(&credential), SessionEnd::Revoked),
            Revoked::Everything => registry.end(None, SessionEnd::Interrupted),
        }
    }
}
