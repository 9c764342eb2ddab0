//! Live events for one customer: the bus carries every tenant's events, a subscription keeps
//! only the caller's (and, when asked, one container's or one level's).

use std::sync::Arc;

use berth_model::{id_of_uid, Alarm, ContainerEvent, Event};
use berth_store::containers;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{Caller, Error, Result, Service};

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionEnd {
    /// The subscriber read too slowly and missed events; it must resubscribe.
    #[error("subscriber fell behind by {0} events and was closed")]
    Lagged(u64),
    /// The event stream was interrupted (the gateway's PostgreSQL listener lost its
    /// connection, or the gateway is stopping): events may have been missed; subscribe again.
    #[error("event stream interrupted; events may have been missed, subscribe again")]
    Closed,
}

/// Which events a subscription keeps, beyond the caller's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFilter {
    pub container_id: Option<i64>,
    pub level: Option<i64>,
}

pub struct Subscription {
    customer_id: i64,
    filter: EventFilter,
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Subscription {
    async fn next_event(&mut self) -> std::result::Result<Arc<Event>, SubscriptionEnd> {
        loop {
            match self.rx.recv().await {
                Ok(event) if event.customer_id() == self.customer_id => return Ok(event),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => return Err(SubscriptionEnd::Lagged(n)),
                Err(RecvError::Closed) => return Err(SubscriptionEnd::Closed),
            }
        }
    }

    /// The next alarm of this customer that passes the filter.
    pub async fn next_alarm(&mut self) -> std::result::Result<Alarm, SubscriptionEnd> {
        loop {
            if let Event::Alarm { alarm, .. } = &*self.next_event().await? {
                let container_ok = self.filter.container_id.is_none_or(|c| c == alarm.container_id);
                let level_ok = self.filter.level.is_none_or(|l| l == alarm.level);
                if container_ok && level_ok {
                    return Ok(alarm.clone());
                }
            }
        }
    }

    /// The next container event of this customer that passes the filter.
    pub async fn next_container_event(&mut self) -> std::result::Result<ContainerEvent, SubscriptionEnd> {
        loop {
            if let Event::Container(event) = &*self.next_event().await? {
                if self.filter.container_id.is_none_or(|c| c == event.container_id) {
                    return Ok(event.clone());
                }
            }
        }
    }
}

impl Service {
    /// Subscribes to the caller's events, optionally of one of its containers (by uid). The
    /// subscription starts before this returns, so nothing committed afterwards is missed.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        container_uid: Option<i64>,
        level: Option<i64>,
    ) -> Result<Subscription> {
        let rx = self.bus.subscribe();
        let container_id = match container_uid {
            Some(uid) => {
                let id = id_of_uid(uid).ok_or(Error::NotFound("container"))?;
                let mut conn = self.store.read().await?;
                containers::owned(&mut conn, caller.customer_id, id).await?.ok_or(Error::NotFound("container"))?;
                Some(id)
            }
            None => None,
        };
        Ok(Subscription { customer_id: caller.customer_id, filter: EventFilter { container_id, level }, rx })
    }

    /// Announces a committed change. Call after `commit()`, never before.
    pub(crate) async fn publish(&self, event: Event) {
        self.bus.publish(event).await;
    }
}
