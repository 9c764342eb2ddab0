//! `berth serve`: open the database, build the service, compose the routes, listen.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use berth_service::{Service, ServiceConfig};

use crate::cli::ServeArgs;
use crate::telemetry::{self, Telemetry};

pub async fn run(args: ServeArgs, telemetry: Telemetry) -> anyhow::Result<()> {
    let store = args.db.open_store().await?;
    let config = ServiceConfig {
        domain_ownership: Arc::new(berth_service::dns::TxtOverDns::new(args.dns_server)?),
        auth: Default::default(),
    };
    let url = args.db.database_url()?;
    let bus = berth_store::events::bus_for(&store, &url).await.context("cannot start the event bus")?;
    let delivery = args.delivery.start(store.clone())?;
    let service = Service::new(store.clone(), config).with_bus(bus).with_delivery(delivery);
    if let Some(metrics) = service.delivery_metrics() {
        telemetry.attach_deliveries(metrics);
    }
    let app = app(service, telemetry.clone(), &args.api_prefix);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("berth listening on http://{addr}");
    tracing::info!(%addr, backend = %args.backend, "serving");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    store.close().await;
    telemetry.shutdown();
    Ok(())
}

fn app(service: Service, telemetry: Telemetry, api_prefix: &str) -> Router {
    let metrics = telemetry.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response() }
            }),
        )
        .merge(berth_graphql::router(service.clone(), telemetry.graphql.clone()))
        .nest(api_prefix, berth_rest::router(service))
        .route_layer(axum::middleware::from_fn_with_state(telemetry, telemetry::track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
