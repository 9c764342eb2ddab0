//! Berth's GraphQL API: the schema (split by domain), per-request DataLoaders, limits, and
//! the axum routes that serve it.
//!
//! **Architecture Invariant:** resolvers translate and nothing more: they read arguments,
//! call one `berth_service::Service` method, and shape the answer. No rule is decided here.
//! **Architecture Invariant:** only this crate derives GraphQL types.

mod account;
mod alarms;
mod connection_end;
mod containers;
pub(crate) mod cursor;
mod custom_distros;
mod customer_sockets;
mod domains;
mod error;
mod graphiql;
mod http;
mod kept_answers;
mod lag_queue;
mod loaders;
mod loopboxes;
mod metrics;
mod operation;
mod parsed_queries;
mod portmaps;
mod prefetch;
mod runtime;
mod sessions;
mod shared_streams;
mod subscriptions;
mod tags;
mod telemetry;
mod websocket;
mod ws_messages;
mod ws_operations;

use async_graphql::{MergedObject, Schema};
use berth_service::{Caller, Service};

pub use connection_end::WebSocketShutdown;
pub use customer_sockets::DEFAULT_MAX_WEBSOCKETS_PER_CUSTOMER;
pub use error::{ensure_codes, gql_error, ErrorCode};
pub use http::{router, GraphqlOptions};
pub use kept_answers::DEFAULT_KEPT_ANSWERS_MIB;
pub use loaders::{set_loader_delay, LOADER_DELAY};
pub use telemetry::GraphqlMetrics;
pub use websocket::{MAX_SUBSCRIPTIONS_PER_SOCKET, WS_READ_BUFFER};

#[derive(MergedObject, Default)]
pub struct Query(
    account::AccountQuery,
    alarms::AlarmQuery,
    domains::DomainQuery,
    metrics::MetricsQuery,
    portmaps::PortmapQuery,
    containers::ContainerQuery,
    custom_distros::DistroQuery,
    loopboxes::LoopboxQuery,
    tags::TagQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    alarms::AlarmMutation,
    domains::DomainMutation,
    portmaps::PortmapMutation,
    containers::ContainerMutation,
    custom_distros::CustomDistroMutation,
    loopboxes::LoopboxMutation,
    tags::TagMutation,
    runtime::RuntimeMutation,
);

pub type BerthSchema = Schema<Query, Mutation, subscriptions::SubscriptionRoot>;

/// Deepest query accepted; the deepest legitimate nesting is well below it.
pub const MAX_DEPTH: usize = 12;
/// Highest total complexity accepted (a page of 100 containers with every relation fits).
pub const MAX_COMPLEXITY: usize = 20_000;

/// The schema with its limits, holding the service every resolver calls. Per-operation
/// telemetry is the executors' (`telemetry::execute_observed`), not a schema extension.
pub fn schema(service: Service) -> BerthSchema {
    Schema::build(Query::default(), Mutation::default(), subscriptions::SubscriptionRoot)
        .data(service)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), subscriptions::SubscriptionRoot).finish().sdl()
}

/// Per-request data: who is calling, and DataLoaders built for this request only, so one
/// tenant's cache can never answer another's request.
pub fn prepare_request(
    request: async_graphql::Request,
    service: &Service,
    caller: Option<Caller>,
) -> async_graphql::Request {
    with_request_data(parsed_queries::attach(request), service, caller)
}

/// [`prepare_request`] for a request whose document is attached already.
pub(crate) fn with_request_data(
    request: async_graphql::Request,
    service: &Service,
    caller: Option<Caller>,
) -> async_graphql::Request {
    match caller {
        Some(caller) => {
            request.data(caller).data(prefetch::Prefetched::default()).data(loaders::Loaders::new(service, caller))
        }
        None => request,
    }
}

/// The caller of this request, or `UNAUTHENTICATED`.
pub(crate) fn caller(ctx: &async_graphql::Context<'_>) -> async_graphql::Result<Caller> {
    ctx.data_opt::<Caller>().copied().ok_or_else(|| gql_error(berth_service::Error::Unauthenticated))
}

pub(crate) fn service<'a>(ctx: &async_graphql::Context<'a>) -> &'a Service {
    ctx.data_unchecked::<Service>()
}
