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

use berth_model::Credential;
use berth_service::revocation::{Revocations, Revoked};
use berth_service::Service;

use crate::connection_end::{ConnectionEnd, EndReason};

/// The registry of one router's sessions; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Sessions(Arc<Registry>);

/// The open sessions of each credential, by session id (one password may hold thousands).
type Open = HashMap<Credential, HashMap<u64, Arc<ConnectionEnd>>>;

#[derive(Default)]
struct Registry {
    open: Mutex<Open>,
    next_id: AtomicU64,
    /// Started with the first session: a task ending sessions on revocations.
    watcher: OnceLock<()>,
}

/// One registered session; leaves the registry when dropped.
pub(crate) struct Session {
    registry: Arc<Registry>,
    credential: Credential,
    id: u64,
}

impl Sessions {
    /// Registers a session opened with `credential` (before checking it), which a
    /// revocation ends through `end`.
    pub(crate) fn open(&self, service: &Service, credential: Credential, end: Arc<ConnectionEnd>) -> Session {
        self.0.watcher.get_or_init(|| {
            // The feed is taken here, so no revocation after this call is missed.
            let feed = service.revocations();
            tokio::spawn(watch(Arc::downgrade(&self.0), feed));
        });
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        self.0.lock().entry(credential.clone()).or_default().insert(id, end);
        Session { registry: self.0.clone(), credential, id }
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

    fn end(&self, credential: Option<&Credential>, why: EndReason) {
        let open = self.lock();
        let endings: Vec<&Arc<ConnectionEnd>> = match credential {
            Some(c) => open.get(c).into_iter().flat_map(HashMap::values).collect(),
            None => open.values().flat_map(HashMap::values).collect(),
        };
        for ending in endings {
            ending.end(why);
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
            Revoked::One(credential) => registry.end(Some(&credential), EndReason::Revoked),
            Revoked::Everything => registry.end(None, EndReason::Interrupted),
        }
    }
}
