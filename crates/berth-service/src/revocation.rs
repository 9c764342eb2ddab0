//! Revoked credentials reach every gateway. A password change or a revoked token is
//! announced on the event bus after its commit ([`Event::Revoked`]); each gateway then
//! forgets the password it remembered ([`Service::watch_revocations`]) and ends the live
//! sessions opened with that credential (`berth-graphql`'s sessions, through
//! [`Service::revocations`]). Bearer tokens need nothing more: each use reads the store.

use std::sync::Arc;
use std::time::Duration;

use berth_model::{Credential, Event};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::events::SubscriptionEnd;
use crate::Service;

/// Revocations committed on any gateway, from the moment the feed was taken.
pub struct Revocations {
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Revocations {
    /// The next revoked credential. `Err` means some may have been missed (this gateway's
    /// PostgreSQL listener reconnected, or the reader fell behind): treat every credential
    /// as revoked, and take a fresh feed.
    pub async fn next(&mut self) -> Result<Credential, SubscriptionEnd> {
        loop {
            match self.rx.recv().await {
                Ok(event) => {
                    if let Event::Revoked { credential, .. } = &*event {
                        return Ok(credential.clone());
                    }
                }
                Err(RecvError::Lagged(n)) => return Err(SubscriptionEnd::Lagged(n)),
                Err(RecvError::Closed) => return Err(SubscriptionEnd::Closed),
            }
        }
    }
}

impl Service {
    /// A feed of revocations; none committed after this returns is missed.
    pub fn revocations(&self) -> Revocations {
        Revocations { rx: self.bus.subscribe() }
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
                    Ok(Credential::Password { username }) => service.forget_logins(&username),
                    Ok(Credential::Token { .. }) => {}
                    Err(end) => {
                        tracing::warn!(%end, "revocations may have been missed: every remembered password is forgotten");
                        // Fresh feed first: a revocation in between is covered by forgetting all.
                        feed = service.revocations();
                        service.auth.forget_everyone();
                        // The new feed keeps what comes meanwhile; this only keeps a bus that
                        // keeps failing from spinning.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    }

    /// Announces a committed revocation. Call after `commit()`.
    pub(crate) async fn revoked(&self, customer_id: i64, credential: Credential) {
        self.publish(Event::Revoked { customer_id, credential }).await;
    }
}
