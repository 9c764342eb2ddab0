//! Per-operation telemetry of the GraphQL API: a tracing span per operation (named, never
//! carrying the query text or variables, which may hold passwords), latency by operation,
//! errors, and how many subscriptions are open (Prometheus).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_graphql::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::Instrument as _;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation name the client gave, `anonymous`, or `other` (see
    /// [`MAX_OPERATION_NAMES`]).
    pub operation: String,
}

#[derive(Clone)]
pub struct GraphqlMetrics {
    duration: Family<OperationLabels, Histogram>,
    errors: Family<OperationLabels, Counter>,
    open_subscriptions: Gauge,
    subscribers_cut_off: Counter,
    kept_answers_served: Counter,
    names: Arc<OperationNames>,
}

/// Operation names become labels, and clients choose them: every distinct value is a series
/// kept for the life of the process. The first [`MAX_OPERATION_NAMES`] names of at most
/// [`MAX_NAME_LEN`] bytes are kept as they are; any other is counted as `other`.
pub const MAX_OPERATION_NAMES: usize = 256;
pub const MAX_NAME_LEN: usize = 64;

#[derive(Default)]
struct OperationNames(Mutex<HashSet<String>>);

impl OperationNames {
    fn label(&self, name: Option<String>) -> String {
        let Some(name) = name else { return "anonymous".to_owned() };
        if name.len() > MAX_NAME_LEN {
            return "other".to_owned();
        }
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if known.contains(&name) || (known.len() < MAX_OPERATION_NAMES && known.insert(name.clone())) {
            name
        } else {
            "other".to_owned()
        }
    }
}

impl GraphqlMetrics {
    /// Metric families not attached to any registry (tests, tools).
    pub fn detached() -> GraphqlMetrics {
        GraphqlMetrics::register(&mut Registry::default())
    }

    pub fn register(registry: &mut Registry) -> GraphqlMetrics {
        let metrics = GraphqlMetrics {
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))),
            errors: Family::default(),
            open_subscriptions: Gauge::default(),
            subscribers_cut_off: Counter::default(),
            kept_answers_served: Counter::default(),
            names: Arc::default(),
        };
        registry.register(
            "berth_graphql_operation_duration_seconds",
            "Time to execute a GraphQL query or mutation, by operation name",
            metrics.duration.clone(),
        );
        registry.register(
            "berth_graphql_operation_errors",
            "GraphQL operations answered with errors",
            metrics.errors.clone(),
        );
        registry.register(
            "berth_graphql_open_subscriptions",
            "GraphQL subscriptions open now",
            metrics.open_subscriptions.clone(),
        );
        registry.register(
            "berth_graphql_subscribers_cut_off",
            "GraphQL subscriptions ended because their subscriber fell behind (SUBSCRIBER_LAGGED)",
            metrics.subscribers_cut_off.clone(),
        );
        registry.register(
            "berth_graphql_kept_answers_served",
            "GraphQL queries answered with an answer kept from before, nothing the customer can read having changed since",
            metrics.kept_answers_served.clone(),
        );
        metrics
    }
}

impl GraphqlMetrics {
    /// One more open subscription (per subscriber: identical subscriptions share one
    /// execution, so the schema extension cannot count them).
    pub(crate) fn open_subscription(&self) -> OpenSubscription {
        self.open_subscriptions.inc();
        OpenSubscription(self.open_subscriptions.clone())
    }

    /// The count of subscribers cut off for falling behind, for whoever cuts them off.
    pub(crate) fn subscribers_cut_off(&self) -> Counter {
        self.subscribers_cut_off.clone()
    }
}

/// Counts one open subscription until dropped, however the subscription ends.
pub(crate) struct OpenSubscription(Gauge);

impl Drop for OpenSubscription {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs one query or mutation with its span, latency and error count.
///
/// Done here rather than as a schema extension: any extension at all sends async-graphql
/// down its slow path for every field (a registry lookup and a boxed future per field),
/// which was a tenth of the nested page's CPU. Subscriptions are counted by
/// [`GraphqlMetrics::open_subscription`] and traced by [`subscription_span`].
pub(crate) async fn execute_observed(
    schema: &crate::BerthSchema,
    metrics: &GraphqlMetrics,
    mut request: async_graphql::Request,
) -> Response {
    let label = metrics.operation_label(&mut request);
    execute_labelled(schema, metrics, label, request).await
}

/// [`execute_observed`] for a request whose label the caller already took.
pub(crate) async fn execute_labelled(
    schema: &crate::BerthSchema,
    metrics: &GraphqlMetrics,
    label: String,
    request: async_graphql::Request,
) -> Response {
    let started = Instant::now();
    let span = operation_span(&label);
    let response = schema.execute(request).instrument(span).await;
    let labels = OperationLabels { operation: label };
    metrics.duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    if response.is_err() {
        metrics.errors.get_or_create(&labels).inc();
    }
    response
}

fn operation_span(label: &str) -> tracing::Span {
    tracing::info_span!("graphql.operation", otel.name = %format!("graphql {label}"), operation = %label)
}

impl GraphqlMetrics {
    /// The label of the operation the request runs (see [`MAX_OPERATION_NAMES`]).
    pub(crate) fn operation_label(&self, request: &mut async_graphql::Request) -> String {
        self.names.label(operation_name(request))
    }

    /// One query answered with an answer kept from before (`kept_answers.rs`): counted,
    /// timed and traced as the operation it answers, since for the client it is one.
    pub(crate) fn kept_answer_served(&self, label: &str, started: Instant) {
        let _span = operation_span(label).entered();
        self.kept_answers_served.inc();
        let labels = OperationLabels { operation: label.to_owned() };
        self.duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }
}

/// The span of one subscriber's subscription, a child of its connection's, open for as long
/// as it runs. Its `ended_by` is the code of the error that ended it (`SUBSCRIBER_LAGGED`,
/// …), empty when the client or the stream completed it.
pub(crate) fn subscription_span(
    metrics: &GraphqlMetrics,
    connection: &tracing::Span,
    request: &mut async_graphql::Request,
) -> tracing::Span {
    let name = metrics.names.label(operation_name(request));
    tracing::info_span!(
        parent: connection,
        "graphql.subscription",
        otel.name = %format!("graphql {name}"),
        operation = %name,
        ended_by = tracing::field::Empty,
    )
}

/// The name async-graphql gives the operation it runs: the one the client chose, else the
/// name of the document's only operation (an anonymous one has none).
fn operation_name(request: &mut async_graphql::Request) -> Option<String> {
    use async_graphql::parser::types::DocumentOperations;
    if let Some(name) = &request.operation_name {
        return Some(name.clone());
    }
    match &request.parsed_query().ok()?.operations {
        DocumentOperations::Single(_) => None,
        DocumentOperations::Multiple(named) if named.len() == 1 => named.keys().next().map(|n| n.to_string()),
        DocumentOperations::Multiple(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_name_labels_stay_bounded() {
        let names = OperationNames::default();
        assert_eq!(names.label(None), "anonymous");
        for i in 0..MAX_OPERATION_NAMES {
            assert_eq!(names.label(Some(format!("Op{i}"))), format!("Op{i}"));
        }
        assert_eq!(names.label(Some("OneTooMany".into())), "other");
        assert_eq!(names.label(Some("Op7".into())), "Op7", "a known name keeps its label");
        let fresh = OperationNames::default();
        assert_eq!(fresh.label(Some("x".repeat(MAX_NAME_LEN + 1))), "other");
        assert_eq!(fresh.label(Some("x".repeat(MAX_NAME_LEN))), "x".repeat(MAX_NAME_LEN));
    }
}
