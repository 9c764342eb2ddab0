//! Logging, traces and Prometheus metrics.
//!
//! - Logs: `RUST_LOG` (default `info`) to stderr.
//! - Traces: a span per HTTP request (tower-http) and per GraphQL operation
//!   (async-graphql's tracing extension); exported over OTLP (HTTP/JSON) when the standard
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//! - Metrics at `/metrics`: requests and latency by route, GraphQL latency by operation,
//!   open subscriptions, alarm deliveries by channel and outcome, and
//!   `berth_sql_statements_total` — sqlx logs every statement as a
//!   `sqlx::query` event and a layer counts them, which is how tests prove a nested page
//!   costs a constant number of statements.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, OnceLock};

use berth_service::delivery::DeliveryMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, EnvFilter, Layer};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: &'static str,
    outcome: &'static str,
}

/// Alarm deliveries by channel and outcome, read from the delivery worker's own counters at
/// each scrape (the worker starts after the registry is built, hence the late binding).
#[derive(Debug, Default)]
struct DeliveryCollector(Arc<OnceLock<Arc<DeliveryMetrics>>>);

impl Collector for DeliveryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(metrics) = self.0.get() else {
            return Ok(());
        };
        let family = Family::<DeliveryLabels, Counter>::default();
        for (channel, outcome, count) in metrics.snapshot() {
            family
                .get_or_create(&DeliveryLabels { channel: channel.as_str(), outcome: outcome.as_str() })
                .inc_by(count);
        }
        let metric = encoder.encode_descriptor(
            "berth_alarm_deliveries",
            "Alarm deliveries by channel and outcome",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)?;
        let pending = Gauge::<i64, AtomicI64>::default();
        pending.set(i64::try_from(metrics.pending()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "berth_alarm_deliveries_pending",
            "Alarm deliveries not done yet (waiting, in flight or between retries), of every gateway on the database",
            None,
            pending.metric_type(),
        )?;
        pending.encode(metric)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// Everything `serve` reports on; cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pub graphql: berth_graphql::GraphqlMetrics,
    deliveries: Arc<OnceLock<Arc<DeliveryMetrics>>>,
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding metrics into a String cannot fail");
        out
    }

    /// Reports the delivery worker's counters from now on.
    pub fn attach_deliveries(&self, metrics: Arc<DeliveryMetrics>) {
        let _ = self.deliveries.set(metrics);
    }

    /// Flushes spans still waiting for export.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.tracer {
            if let Err(e) = provider.shutdown() {
                eprintln!("berth: flushing traces failed: {e}");
            }
        }
    }
}

struct StatementCounter(Counter<u64, AtomicU64>);

impl<S: tracing::Subscriber> Layer<S> for StatementCounter {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        self.0.inc();
    }
}

fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
}

/// Installs logging and tracing and builds the metrics registry. Call outside the async
/// runtime: the OTLP exporter's blocking HTTP client owns a runtime of its own.
pub fn init() -> anyhow::Result<Telemetry> {
    let statements: Counter<u64, AtomicU64> = Counter::default();
    let mut registry = Registry::default();
    registry.register("berth_sql_statements", "SQL statements executed", statements.clone());
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register("berth_http_requests", "HTTP requests answered, by route and status", requests.clone());
    let latency =
        Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
    registry.register("berth_http_request_duration_seconds", "HTTP request latency by route", latency.clone());
    let graphql = berth_graphql::GraphqlMetrics::register(&mut registry);
    let deliveries: Arc<OnceLock<Arc<DeliveryMetrics>>> = Arc::default();
    registry.register_collector(Box::new(DeliveryCollector(deliveries.clone())));

    let tracer = if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("berth").build();
        Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
    } else {
        None
    };
    let otel = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("berth"))
            .with_filter(EnvFilter::new("info,berth=debug,tower_http=debug,async_graphql=info,sqlx=warn"))
    });
    let counter = StatementCounter(statements)
        .with_filter(filter::Targets::new().with_target("sqlx::query", tracing::Level::DEBUG));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let _ = tracing_subscriber::registry().with(fmt).with(counter).with(otel).try_init();
    Ok(Telemetry { registry: Arc::new(registry), requests, latency, graphql, deliveries, tracer })
}

/// The method as a label: the standard ones by name, any other token (clients may send any)
/// as `other`, so that the label set stays bounded.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every request by its route pattern (never the raw path, which would let
/// clients create unbounded label sets) and method.
pub async fn track(State(telemetry): State<Telemetry>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    telemetry
        .latency
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    telemetry.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    response
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::method_label;

    #[test]
    fn only_standard_methods_become_labels() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::CONNECT), "other");
    }
}
