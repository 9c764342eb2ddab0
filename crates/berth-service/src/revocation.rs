//! Revoked credentials reach every gateway. A password change or a revoked token is
//! announced on the event bus after its commit ([`Event::Revoked`]); each gateway then
//! forgets the password it remembered ([`Service::watch_revocations`]) and ends the live
//! sessions opened with that credential (`berth-graphql`'s sessions, through
//! [`Service::revocations`]). Bearer tokens need nothing more: each use reads the store.

use std::sync::Arc;
use std::time::Duration;

use berth_model::{Credential, Event};
use berth_store::events::EventBus;
use tokio::sync::broadcast;

use crate::Service;

/// What a gateway must now treat as revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// This credential, on whatever gateway it was revoked.
    One(Credential),
    /// Every credential: revocations may have been missed (this gateway's PostgreSQL
    /// listener reconnected, or the reader fell behind).
    Everything,
}

/// Revocations committed on any gateway, from the moment the feed was taken; a feed that
/// loses events says so ([`Revoked::Everything`]) and goes on.
pub struct Revocations {
    bus: Arc<dyn EventBus>,
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Revocations {
    pub async fn next(&mut self) -> Revoked {
        loop {
            match self.rx.recv().await {
                Ok(event) => {
                    if let Event::Revoked { credential, .. } = &*event {
                        return Revoked::One(credential.clone());
                    }
                }
                Err(lost) => {
                    tracing::warn!(error = %lost, "revocations may have been missed: every credential counts as revoked");
                    // Keeps a bus that keeps failing from spinning; what is revoked during
                    // the pause is covered by `Everything`, acted on after the new feed exists.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.rx = self.bus.subscribe();
                    return Revoked::Everything;
                }
            }
        }
    }
}

impl Service {
    /// A feed of revocations; none committed after this returns is missed.
    pub fn revocations(&self) -> Revocations {
        Revocations { bus: self.bus.clone(), rx: self.bus.subscribe() }
    }

    /// Keeps this gateway's remembered passwords in step with the password changes made on
    /// any gateway (each remembers a verified password for a few minutes). `berth serve`
    /// runs it once.
    pub fn watch_revocations(&self) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        let mut feed = self.revocations();
        tokio::spawn(async move {
            loop {
                match feed.next().await {
                    Revoked::One(Credential::Password { username }) => service.forget_logins(&username),
                    Revoked::One(Credential::Token { .. }) => {}
                    Revoked::Everything => service.auth.forget_everyone(),
                }
            }
        })
    }

    /// Announces a committed revocation. Call after `commit()`.
    pub(crate) async fn revoked(&self, customer_id: i64, credential: Credential) {
        self.publish(Event::Revoked { customer_id, credential }).await;
    }
}
