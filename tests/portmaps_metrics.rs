//! Port mappings and metric reads over GraphQL, end to end: user flows, bad input and
//! tenant isolation.

mod common;

use berth_model::{ContainerMetric, Day, DomainMetric};
use common::{error_code, start, Berth, Engine, Opts};
use serde_json::{json, Value};

const CREATE: &str = "mutation($s: String!, $c: Int!, $proto: String!, $pub: Int!, $priv: Int!) {
  createPortmapping(server: $s, input: { container: $c, proto: $proto, publicPort: $pub, privatePort: $priv }) {
    id proto publicPort privatePort container containerIp
  }
}";
const LIST: &str =
    "query($s: String!) { portmappings(server: $s) { id proto publicPort privatePort container containerIp } }";
const DELETE: &str = "mutation($s: String!, $id: Int!) { deletePortmapping(server: $s, id: $id) }";

async fn mtime(berth: &Berth, server_id: i64) -> i64 {
    let (t,): (i64,) = sqlx::query_as("SELECT portmappings_mtime FROM servers WHERE id = $1")
        .bind(server_id)
        .fetch_one(berth.store().await.pool())
        .await
        .unwrap();
    t
}

async fn port_mappings_on_owned_servers(engine: Engine) {
    let Some(b) = start(engine, Opts::default()).await else {
        return;
    };
    let kratos = b.fixture_customer("kratos").await;
    let zeus = b.fixture_customer("zeus").await;
    let own = b.fixture_server(Some("kratos")).await;
    let shared = b.fixture_server(None).await;
    let c1 = b.fixture_container("kratos", &own.name, 100, 100).await;
    let c2 = b.fixture_container("kratos", &own.name, 100, 100).await;
    let elsewhere = b.fixture_container("kratos", &shared.name, 100, 100).await;
    let zeus_c = b.fixture_container("zeus", &shared.name, 100, 100).await;
    let s = own.address.as_str();

    let made =
        b.gql_ok(kratos.auth(), CREATE, json!({ "s": s, "c": c1, "proto": "tcp", "pub": 9000, "priv": 8000 })).await;
    let m = &made["createPortmapping"];
    assert_eq!(
        (m["proto"].as_str(), m["publicPort"].as_i64(), m["privatePort"].as_i64()),
        (Some("tcp"), Some(9000), Some(8000))
    );
    assert_eq!(m["container"], c1);
    assert_eq!(m["containerIp"], format!("10.0.0.{}", c1 - 30000 + 2));
    assert!(mtime(&b, own.id).await > 0, "the server's mapping list is marked as changed");
    // The lowest allowed port, another protocol, another container.
    b.gql_ok(kratos.auth(), CREATE, json!({ "s": s, "c": c2, "proto": "udp", "pub": 9000, "priv": 1024 })).await;
    let listed = b.gql_ok(kratos.auth(), LIST, json!({ "s": s })).await;
    assert_eq!(listed["portmappings"].as_array().unwrap().len(), 2);
    assert_eq!(listed["portmappings"][0], made["createPortmapping"]);

    // Q13 fixed: the same public port on the same server is taken, whichever container asks.
    let dup = b.gql(kratos.auth(), CREATE, json!({ "s": s, "c": c2, "proto": "tcp", "pub": 9000, "priv": 8001 })).await;
    assert_eq!(error_code(&dup), Some("CONFLICT"), "{dup}");
    let bad: [(Value, &str); 9] = [
        (json!({ "s": s, "c": c1, "proto": "icmp", "pub": 9100, "priv": 8000 }), "BAD_USER_INPUT"),
        (json!({ "s": s, "c": c1, "proto": "tcp", "pub": 1023, "priv": 8000 }), "BAD_USER_INPUT"),
        (json!({ "s": s, "c": c1, "proto": "tcp", "pub": 65536, "priv": 8000 }), "BAD_USER_INPUT"),
        (json!({ "s": s, "c": c1, "proto": "tcp", "pub": 3022, "priv": 8000 }), "BAD_USER_INPUT"),
        (json!({ "s": s, "c": c1, "proto": "tcp", "pub": 9100, "priv": 80 }), "BAD_USER_INPUT"),
        (json!({ "s": s, "c": c1, "proto": "tcp", "pub": "9100", "priv": 8000 }), "BAD_USER_INPUT"),
        // A container of kratos on another server, and someone else's container.
        (json!({ "s": s, "c": elsewhere, "proto": "tcp", "pub": 9100, "priv": 8000 }), "BAD_USER_INPUT"),
        (json!({ "s": s, "c": zeus_c, "proto": "tcp", "pub": 9100, "priv": 8000 }), "NOT_FOUND"),
        // A server kratos does not own.
        (json!({ "s": shared.address, "c": elsewhere, "proto": "tcp", "pub": 9100, "priv": 8000 }), "FORBIDDEN"),
    ];
    for (vars, code) in bad {
        let body = b.gql(kratos.auth(), CREATE, vars.clone()).await;
        assert_eq!(error_code(&body), Some(code), "{vars}: {body}");
    }
    assert_eq!(b.count("portmaps").await, 2, "nothing rejected was stored");

    // Zeus can neither see nor change kratos' server's mappings.
    let id = m["id"].as_i64().unwrap();
    let peek = b.gql(zeus.auth(), LIST, json!({ "s": s })).await;
    assert_eq!(error_code(&peek), Some("FORBIDDEN"));
    assert!(!peek.to_string().contains("9000"), "{peek}");
    let add =
        b.gql(zeus.auth(), CREATE, json!({ "s": s, "c": zeus_c, "proto": "tcp", "pub": 9200, "priv": 8000 })).await;
    assert_eq!(error_code(&add), Some("FORBIDDEN"));
    let del = b.gql(zeus.auth(), DELETE, json!({ "s": s, "id": id })).await;
    assert_eq!(error_code(&del), Some("FORBIDDEN"));
    let unknown = b.gql(kratos.auth(), DELETE, json!({ "s": s, "id": id + 999 })).await;
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"));
    assert_eq!(b.count("portmaps").await, 2);

    sqlx::query("UPDATE servers SET portmappings_mtime = 0").execute(b.store().await.pool()).await.unwrap();
    let gone = b.gql_ok(kratos.auth(), DELETE, json!({ "s": s, "id": id })).await;
    assert_eq!(gone["deletePortmapping"], id);
    assert!(mtime(&b, own.id).await > 0, "a removal marks the server's mapping list as changed too");
    let listed = b.gql_ok(kratos.auth(), LIST, json!({ "s": s })).await;
    assert_eq!(listed["portmappings"].as_array().unwrap().len(), 1);
    // The freed public port can be mapped again.
    b.gql_ok(kratos.auth(), CREATE, json!({ "s": s, "c": c2, "proto": "tcp", "pub": 9000, "priv": 8001 })).await;
}

const CONTAINER_METRICS: &str = "query($c: Int!, $k: String!, $y: Int, $m: Int, $d: Int) {
  containerMetrics(container: $c, kind: $k, year: $y, month: $m, day: $d) { unix value }
}";
const DOMAIN_METRICS: &str =
    "query($d: Int!, $k: String!) { domainMetrics(domain: $d, kind: $k) { container samples { unix value } } }";

fn samples(v: &Value) -> Vec<(i64, i64)> {
    v.as_array().expect("samples").iter().map(|s| (s["unix"].as_i64().unwrap(), s["value"].as_i64().unwrap())).collect()
}

async fn metrics_by_day_kind_and_owner(engine: Engine) {
    let Some(b) = start(engine, Opts::default()).await else {
        return;
    };
    let kratos = b.fixture_customer("kratos").await;
    let zeus = b.fixture_customer("zeus").await;
    let server = b.fixture_server(None).await;
    let uid = b.fixture_container("kratos", &server.name, 100, 100).await;
    let zeus_uid = b.fixture_container("zeus", &server.name, 100, 100).await;
    let domain = b.admin(&["domain", "add", "--customer", "kratos", "--name", "metrics.test"]).await;
    let domain_id = domain["id"].as_i64().unwrap();
    let (id, zeus_id) = (uid - 30000, zeus_uid - 30000);
    let today = berth_service::metrics::today_utc();
    let past = Day { year: 2024, month: 2, day: 29 };
    {
        let mut conn = b.store().await.read().await.unwrap();
        use berth_store::metrics::{append_container_sample as add, append_domain_sample as add_d};
        add(&mut conn, id, ContainerMetric::IoWrite, today, 10, 111).await.unwrap();
        add(&mut conn, id, ContainerMetric::IoWrite, today, 20, 222).await.unwrap();
        add(&mut conn, id, ContainerMetric::IoRead, today, 10, 5).await.unwrap();
        add(&mut conn, id, ContainerMetric::Cpu, past, 7, 70).await.unwrap();
        add_d(&mut conn, domain_id, id, DomainMetric::Hits, today, 10, 3).await.unwrap();
        // Zeus' container reporting hits for kratos' domain is not shown to kratos.
        add_d(&mut conn, domain_id, zeus_id, DomainMetric::Hits, today, 10, 9).await.unwrap();
    }

    // Default day is today (UTC); Q23 fixed: io.write is the write series.
    let w = b.gql_ok(kratos.auth(), CONTAINER_METRICS, json!({ "c": uid, "k": "io.write" })).await;
    assert_eq!(samples(&w["containerMetrics"]), [(10, 111), (20, 222)]);
    let r = b.gql_ok(kratos.auth(), CONTAINER_METRICS, json!({ "c": uid, "k": "io.read" })).await;
    assert_eq!(samples(&r["containerMetrics"]), [(10, 5)]);
    let cpu =
        b.gql_ok(kratos.auth(), CONTAINER_METRICS, json!({ "c": uid, "k": "cpu", "y": 2024, "m": 2, "d": 29 })).await;
    assert_eq!(samples(&cpu["containerMetrics"]), [(7, 70)]);
    let empty = b.gql_ok(kratos.auth(), CONTAINER_METRICS, json!({ "c": uid, "k": "quota" })).await;
    assert_eq!(samples(&empty["containerMetrics"]), []);

    let d = b.gql_ok(kratos.auth(), DOMAIN_METRICS, json!({ "d": domain_id, "k": "hits" })).await;
    assert_eq!(d["domainMetrics"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["domainMetrics"][0]["container"], uid);
    assert_eq!(samples(&d["domainMetrics"][0]["samples"]), [(10, 3)]);

    // Bad input.
    for (vars, code) in [
        (json!({ "c": uid, "k": "hits" }), "BAD_USER_INPUT"),
        (json!({ "c": uid, "k": "cpu", "y": 2023, "m": 2, "d": 29 }), "BAD_USER_INPUT"),
        (json!({ "c": uid, "k": "cpu", "m": 13 }), "BAD_USER_INPUT"),
        (json!({ "c": uid, "k": "cpu", "d": "one" }), "BAD_USER_INPUT"),
        (json!({ "c": zeus_uid, "k": "cpu" }), "NOT_FOUND"),
        (json!({ "c": 12, "k": "cpu" }), "NOT_FOUND"),
    ] {
        let body = b.gql(kratos.auth(), CONTAINER_METRICS, vars.clone()).await;
        assert_eq!(error_code(&body), Some(code), "{vars}: {body}");
    }
    let bad_kind = b.gql(kratos.auth(), DOMAIN_METRICS, json!({ "d": domain_id, "k": "cpu" })).await;
    assert_eq!(error_code(&bad_kind), Some("BAD_USER_INPUT"));
    let foreign = b.gql(zeus.auth(), DOMAIN_METRICS, json!({ "d": domain_id, "k": "hits" })).await;
    assert_eq!(error_code(&foreign), Some("NOT_FOUND"));
    assert!(!foreign.to_string().contains("metrics.test"), "{foreign}");
    let foreign = b.gql(zeus.auth(), CONTAINER_METRICS, json!({ "c": uid, "k": "io.write" })).await;
    assert_eq!(error_code(&foreign), Some("NOT_FOUND"));
    assert!(!foreign.to_string().contains("111"), "{foreign}");
}

on_both_engines!(port_mappings_on_owned_servers, metrics_by_day_kind_and_owner);
