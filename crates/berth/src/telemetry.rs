//! Logging and Prometheus metrics.
//!
//! Every SQL statement sqlx runs is logged as a `sqlx::query` event; a layer counts them into
//! `berth_sql_statements_total`, which is how tests prove a nested page costs a constant
//! number of statements.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, EnvFilter, Layer};

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding metrics into a String cannot fail");
        out
    }
}

struct StatementCounter(Counter<u64, AtomicU64>);

impl<S: tracing::Subscriber> Layer<S> for StatementCounter {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        self.0.inc();
    }
}

/// Installs logging (RUST_LOG, default `info`) and returns the metrics registry.
pub fn init() -> Metrics {
    let statements: Counter<u64, AtomicU64> = Counter::default();
    let mut registry = Registry::default();
    registry.register("berth_sql_statements", "SQL statements executed", statements.clone());
    let counter = StatementCounter(statements)
        .with_filter(filter::Targets::new().with_target("sqlx::query", tracing::Level::DEBUG));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let _ = tracing_subscriber::registry().with(fmt).with(counter).try_init();
    Metrics { registry: Arc::new(registry) }
}
