//! Telemetry as an operator sees it: Prometheus text at /metrics and OTLP traces sent to
//! the standard OTEL_EXPORTER_OTLP_ENDPOINT (a real HTTP receiver on 127.0.0.1 here).

mod common;
#[path = "common/ws.rs"]
mod ws;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use common::{Auth, Berth, Opts};
use serde_json::json;
use ws::{Protocol, Ws};

/// The /metrics body, after checking it is labelled as the OpenMetrics text it is.
async fn metrics_text(berth: &Berth) -> String {
    let response = berth.http().get(berth.url("/metrics")).send().await.expect("GET /metrics");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    let text = response.text().await.expect("metrics body");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    text
}

/// The value of the first sample line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_operations_and_statements() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    for _ in 0..3 {
        berth.gql_ok(kratos.auth(), "query MeProbe { me { username } }", json!({})).await;
    }
    let text = metrics_text(&berth).await;
    assert!(text.contains("# TYPE berth_http_requests counter"), "{text}");
    let requests = sample(&text, r#"berth_http_requests_total{method="POST",route="/graphql",status="200"}"#);
    assert!(requests.is_some_and(|n| n >= 3.0), "requests: {requests:?}\n{text}");
    let operations = sample(&text, r#"berth_graphql_operation_duration_seconds_count{operation="MeProbe"}"#);
    assert_eq!(operations, Some(3.0), "{text}");
    let statements = sample(&text, "berth_sql_statements_total").expect("statement counter");
    assert!(statements > 0.0);
    assert!(text.contains("berth_graphql_open_subscriptions"), "{text}");
    assert_eq!(sample(&text, "berth_graphql_subscribers_cut_off_total"), Some(0.0), "{text}");
    assert!(text.contains(r#"berth_alarm_deliveries_total{channel="slack",outcome="delivered"} 0"#), "{text}");
    // Unmatched paths share one label instead of creating one series per path.
    berth.http().get(berth.url("/no/such/path/12345")).send().await.unwrap();
    let text = metrics_text(&berth).await;
    assert!(!text.contains("12345"), "raw paths must not become labels");
    // Nor do made-up methods, nor operation names past the first 256 (clients choose both).
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    berth.http().request(brew, berth.url("/healthz")).send().await.unwrap();
    for i in 0..300 {
        berth.gql_ok(Auth::None, &format!("query Invented{i} {{ __typename }}"), json!({})).await;
    }
    let text = metrics_text(&berth).await;
    assert!(!text.contains("BREW"), "made-up methods must not become labels");
    let series = text.lines().filter(|l| l.starts_with("berth_graphql_operation_duration_seconds_count{")).count();
    assert!(series <= 256 + 2, "operation names must stay bounded: {series} series");
    assert!(sample(&text, r#"berth_graphql_operation_duration_seconds_count{operation="other"}"#).is_some(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_receiver() {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    let berth = Berth::start_with(Opts {
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint), ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into())],
        ..Opts::default()
    })
    .await;
    let kratos = berth.fixture_customer("kratos").await;
    berth.gql_ok(Auth::None, "query TelemetryProbe { news { content } }", json!({})).await;
    berth
        .gql_ok(
            kratos.auth(),
            "mutation SecretProbe($p: String!) { updateMe(input: { password: $p }) { username } }",
            json!({"p": "hunter2-secret"}),
        )
        .await;
    // Over a WebSocket: a query (traced and timed as over HTTP), a subscription and the
    // connection itself, each with its span.
    let kratos = Auth::basic(&kratos.username, "hunter2-secret");
    let mut socket = Ws::open(berth.addr, Protocol::TransportWs, &kratos.header().expect("basic")).await;
    let query = socket.subscribe("query SocketProbe { me { username } }", json!({})).await;
    assert_eq!(socket.next_data(&query).await["me"]["username"], "kratos");
    assert_eq!(socket.message_for(&query).await["type"], "complete");
    let watch = socket.subscribe("subscription AlarmWatch { alarms { id } }", json!({})).await;
    socket.stop(&watch).await;
    assert_eq!(socket.message_for(&watch).await["type"], "complete");
    socket.close().await;
    let text = metrics_text(&berth).await;
    let over_the_socket = sample(&text, r#"berth_graphql_operation_duration_seconds_count{operation="SocketProbe"}"#);
    assert_eq!(over_the_socket, Some(1.0), "{text}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = received.lock().unwrap().join("\n");
        let expected = ["graphql TelemetryProbe", "graphql SecretProbe", "graphql SocketProbe", "graphql AlarmWatch"];
        if expected.iter().all(|name| all.contains(name)) && all.contains("graphql websocket") {
            assert!(all.contains("\"service.name\""), "resource names the service");
            assert!(!all.contains("hunter2-secret"), "spans must not carry variables or query text");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no span for the operations arrived; got:\n{all}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(berth);
    receiver.abort();
}
