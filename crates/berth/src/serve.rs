//! `berth serve`: open the database, build the service, compose the routes, listen.

use std::sync::Arc;
use std::time::Duration;

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
    // Password changes made through other gateways reach this one's remembered logins.
    service.watch_revocations();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = match &args.server {
        Some(server) => Some(start_agent(&args, server, service.clone(), stop_rx)?),
        None => None,
    };
    let websockets = berth_graphql::WebSocketShutdown::default();
    let graphql = berth_graphql::GraphqlOptions {
        max_websockets_per_customer: usize::try_from(args.max_websockets_per_customer).unwrap_or(usize::MAX),
        shutdown: websockets.clone(),
        kept_answers_bytes: args.kept_answers_mib.saturating_mul(1024 * 1024),
    };
    let app = app(service, telemetry.clone(), &args.api_prefix, graphql);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // A reader that closed stdout does not stop the gateway: the line is also logged.
    if let Err(e) = crate::cli::write_stdout(&format!("berth listening on http://{addr}\n")) {
        tracing::warn!(error = %format!("{e:#}"), "cannot announce the listening address on stdout");
    }
    tracing::info!(%addr, backend = %args.backend, "serving");
    let shutdown = {
        let websockets = websockets.clone();
        async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            // Upgraded connections are not hyper's any more: axum's graceful shutdown
            // neither waits for nor closes them.
            websockets.begin();
        }
    };
    crate::http_server::serve(listener, app, shutdown, HTTP_SHUTDOWN_GRACE).await;
    if !websockets.finished(WEBSOCKET_CLOSE_GRACE).await {
        tracing::warn!(grace = ?WEBSOCKET_CLOSE_GRACE, "some WebSockets did not take their close frame in time");
    }
    if let Some(agent) = agent {
        // The agent finishes what it is doing and leaves containers running for the next one.
        let _ = agent.await;
    }
    store.close().await;
    telemetry.shutdown();
    Ok(())
}

/// The in-process agent for `server`, on the backend `--backend` names. Containers keep
/// running when `berth serve` stops; the next agent adopts them.
fn start_agent(
    args: &ServeArgs,
    server: &str,
    service: Service,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let backend: Arc<dyn berth_backend::Backend> = match args.backend.as_str() {
        "jail" => {
            anyhow::ensure!(
                nix::unistd::geteuid().is_root(),
                "the jail backend needs root (namespaces, cgroups, loop devices); run as root or omit --server"
            );
            let root = args.db.state_dir().join("jail");
            std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
            Arc::new(berth_jail::JailBackend::new(berth_jail::JailOptions {
                root,
                cgroup_parent: args.agent.jail_cgroup_parent.clone(),
                // This very binary (even if replaced on disk since), through its hidden verb.
                helper: berth_jail::HelperCommand {
                    program: "/proc/self/exe".into(),
                    args: vec![crate::JAIL_HELPER.to_owned()],
                },
            }))
        }
        other => anyhow::bail!("the {other} backend is not available in this build yet; use --backend jail"),
    };
    let options = berth_agent::AgentOptions {
        resync: Duration::from_secs(args.agent.resync_secs),
        sample_every: Duration::from_secs(args.agent.sample_secs),
        stop_grace: Duration::from_secs(args.agent.stop_grace_secs),
        ..berth_agent::AgentOptions::default()
    };
    let agent = berth_agent::Agent::new(service, backend, server, options);
    tracing::info!(server, backend = %args.backend, "agent starting");
    Ok(tokio::spawn(agent.run(async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    })))
}

/// How long a stopping gateway waits for the HTTP requests in progress to finish.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a stopping gateway waits for its WebSockets to take their close frames.
const WEBSOCKET_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The content type of what `/metrics` writes, as Prometheus negotiates it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn app(service: Service, telemetry: Telemetry, api_prefix: &str, graphql: berth_graphql::GraphqlOptions) -> Router {
    let metrics = telemetry.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                // prometheus-client writes OpenMetrics text (`_total` samples, `# EOF`); a
                // 0.0.4 label would have scrapers parse it as the older format and lose types.
                async move { ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response() }
            }),
        )
        .merge(berth_graphql::router(service.clone(), telemetry.graphql.clone(), graphql))
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
