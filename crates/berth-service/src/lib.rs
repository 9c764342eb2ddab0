//! Every business operation of Berth, written once for every front door.
//!
//! A front door (GraphQL, REST, the CLI) authenticates through [`auth`], gets a [`Caller`]
//! and calls a method of [`Service`]. The method checks ownership, validates, and applies the
//! change in one store transaction.
//!
//! **Architecture Invariant:** this crate knows nothing about HTTP or GraphQL.
//! **Architecture Invariant:** a customer's object is looked up *with* the caller's id, so
//! another tenant's object is indistinguishable from a missing one (`Error::NotFound`).

pub mod account;
pub mod admin;
pub mod alarms;
pub mod auth;
pub mod containers;
pub mod custom_distros;
pub mod delivery;
pub mod distros;
pub mod dns;
pub mod domains;
pub mod events;
pub mod loopboxes;
pub mod metrics;
pub mod portmaps;
pub mod read_stamp;
pub mod revocation;
pub mod runtime;
pub mod tags;

use std::sync::Arc;

pub use berth_model::{Error, Result};
use berth_store::events::{EventBus, LocalBus};
pub use berth_store::Store;

/// The authenticated customer on whose behalf an operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller {
    pub customer_id: i64,
}

/// Operator settings that shape the service.
#[derive(Clone)]
pub struct ServiceConfig {
    /// Who answers the TXT ownership check of new domains.
    pub domain_ownership: Arc<dyn dns::DomainOwnership>,
    pub auth: auth::AuthConfig,
}

/// The service: shared by every front door of one process. One `Arc`: resolvers, loaders
/// and handlers clone it per request, and one atomic increment is all a clone costs.
#[derive(Clone)]
pub struct Service(Arc<Parts>);

/// What a [`Service`] holds (reached through `Deref`; the fields stay private).
#[derive(Clone)]
pub struct Parts {
    store: Store,
    auth: Arc<auth::Authenticator>,
    domain_ownership: Arc<dyn dns::DomainOwnership>,
    bus: Arc<dyn EventBus>,
    /// Where committed alarms go for delivery to the containers' channels (`berth serve`).
    delivery: Option<delivery::Delivery>,
    /// Exec and logs of the containers of servers whose agent runs in this process.
    controls: runtime::Controls,
}

impl Service {
    /// A service whose events stay in this process (right for SQLite and for tests).
    pub fn new(store: Store, config: ServiceConfig) -> Service {
        Service(Arc::new(Parts {
            auth: Arc::new(auth::Authenticator::new(config.auth)),
            domain_ownership: config.domain_ownership,
            bus: Arc::new(LocalBus::new()),
            delivery: None,
            controls: runtime::Controls::default(),
            store,
        }))
    }

    /// Replaces the event bus (PostgreSQL: LISTEN/NOTIFY across gateways).
    pub fn with_bus(mut self, bus: Arc<dyn EventBus>) -> Service {
        Arc::make_mut(&mut self.0).bus = bus;
        self
    }

    /// Delivers committed alarms to the containers' channels through `delivery`.
    pub fn with_delivery(mut self, delivery: delivery::Delivery) -> Service {
        Arc::make_mut(&mut self.0).delivery = Some(delivery);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl std::ops::Deref for Service {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}
