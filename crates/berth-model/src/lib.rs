//! Berth's entities, identifiers and validation rules.
//!
//! **Architecture Invariant:** this crate does no I/O. It knows nothing about SQL, HTTP or
//! GraphQL; every rule that decides whether a value is acceptable lives here or in
//! `berth-service`, never in a front door.

pub mod entities;
pub mod error;
pub mod events;
pub mod ids;
pub mod validate;

pub use entities::*;
pub use error::{Error, Result};
pub use events::{ContainerEvent, ContainerEventKind, Credential, Event};
pub use ids::*;
