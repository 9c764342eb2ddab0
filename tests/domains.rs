//! Domains over GraphQL, end to end, with a real DNS server (dnsmasq on 127.0.0.1) answering
//! the ownership check: add (exact name, parent name, wrong owner, no record, taken name),
//! tags and note, delete, the containers-served-today relations, and tenant isolation.

mod common;

use std::net::SocketAddr;

use berth_model::DomainMetric;
use common::dns::{dnsmasq_binary, free_port, start_dnsmasq, Dnsmasq};
use common::{error_code, start, Berth, Customer, Engine, Opts};
use serde_json::{json, Value};

const ADD: &str = "mutation($n: String!) { addDomain(name: $n) { id name uuid note tags } }";
const LIST: &str = "query($tags: [String!], $first: Int, $after: String) {
  domains(tags: $tags, first: $first, after: $after) { pageInfo { hasNextPage endCursor } edges { node { id name tags } } }
}";

fn names(data: &Value) -> Vec<String> {
    data["domains"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
        .collect()
}

struct World {
    berth: Berth,
    _dns: Dnsmasq,
    kratos: Customer,
    zeus: Customer,
}

/// Berth pointed at a dnsmasq that publishes kratos' uuid on `example.test` and on the parent
/// `parent.test`, zeus' uuid on `zeus.test` and `wrong.test`, and nothing for `none.test`.
async fn world(engine: Engine) -> Option<World> {
    let binary = dnsmasq_binary()?;
    let port = free_port();
    let dns_server: SocketAddr = ([127, 0, 0, 1], port).into();
    let berth = start(engine, Opts { dns_server: Some(dns_server), ..Opts::default() }).await?;
    let kratos = berth.fixture_customer("kratos").await;
    let zeus = berth.fixture_customer("zeus").await;
    let records = [
        format!("--txt-record=example.test,\"uwsgi:{}\"", kratos.uuid),
        format!("--txt-record=parent.test,\"v=spf1 -all\",\"uwsgi:{}\"", kratos.uuid),
        format!("--txt-record=zeus.test,\"uwsgi:{}\"", zeus.uuid),
        format!("--txt-record=wrong.test,\"uwsgi:{}\"", zeus.uuid),
        "--txt-record=none.test,\"unrelated\"".to_owned(),
    ];
    let dns = start_dnsmasq(binary, port, &records);
    Some(World { berth, _dns: dns, kratos, zeus })
}

async fn adding_domains_checks_dns(engine: Engine) {
    let Some(w) = world(engine).await else { return };
    let b = &w.berth;

    // TXT on the exact name.
    let added = b.gql_ok(w.kratos.auth(), ADD, json!({ "n": "example.test" })).await;
    let d = &added["addDomain"];
    assert_eq!(
        (d["name"].as_str(), d["note"].clone(), d["tags"].clone()),
        (Some("example.test"), Value::Null, json!([]))
    );
    assert_eq!(d["uuid"].as_str().unwrap().len(), 36);
    // TXT on a parent name authorises any name below it (but only that exact name is added).
    b.gql_ok(w.kratos.auth(), ADD, json!({ "n": "www.shop.parent.test" })).await;

    for (name, code) in [
        ("wrong.test", "FORBIDDEN"),   // TXT names another customer
        ("none.test", "FORBIDDEN"),    // TXT without any uwsgi: value
        ("missing.test", "FORBIDDEN"), // no record at all
        ("example.test", "CONFLICT"),  // already kratos'
        ("", "BAD_USER_INPUT"),
    ] {
        let body = b.gql(w.kratos.auth(), ADD, json!({ "n": name })).await;
        assert_eq!(error_code(&body), Some(code), "{name}: {body}");
    }
    let long = format!("{}.example.test", "a".repeat(250));
    let body = b.gql(w.kratos.auth(), ADD, json!({ "n": long })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");

    // A name held by another customer is a conflict even with a valid record.
    let taken = b.gql(w.zeus.auth(), ADD, json!({ "n": "example.test" })).await;
    assert_eq!(error_code(&taken), Some("CONFLICT"));
    b.gql_ok(w.zeus.auth(), ADD, json!({ "n": "zeus.test" })).await;
    assert_eq!(b.count("domains").await, 3, "only the three proven names were stored");

    let list = b.gql_ok(w.kratos.auth(), LIST, json!({})).await;
    assert_eq!(names(&list), ["example.test", "www.shop.parent.test"]);
}

async fn update_filter_delete_and_isolation(engine: Engine) {
    let Some(w) = world(engine).await else { return };
    let b = &w.berth;
    let id = b.gql_ok(w.kratos.auth(), ADD, json!({ "n": "example.test" })).await["addDomain"]["id"].as_i64().unwrap();
    let other =
        b.gql_ok(w.kratos.auth(), ADD, json!({ "n": "www.parent.test" })).await["addDomain"]["id"].as_i64().unwrap();
    let zeus_id = b.gql_ok(w.zeus.auth(), ADD, json!({ "n": "zeus.test" })).await["addDomain"]["id"].as_i64().unwrap();
    for (who, tag) in [(&w.kratos, "web"), (&w.kratos, "prod"), (&w.zeus, "web")] {
        b.gql_ok(who.auth(), "mutation($n: String!) { createTag(name: $n) { name } }", json!({ "n": tag })).await;
    }

    let update =
        "mutation($id: Int!, $input: UpdateDomainInput!) { updateDomain(id: $id, input: $input) { id note tags } }";
    let up = b
        .gql_ok(
            w.kratos.auth(),
            update,
            json!({ "id": id, "input": { "note": "shop", "tags": ["web", "prod", "unknown"] } }),
        )
        .await;
    assert_eq!(up["updateDomain"]["note"], "shop");
    assert_eq!(up["updateDomain"]["tags"], json!(["web", "prod"]), "unknown tag names are ignored");
    // Omitted fields stay; null clears the note.
    let up = b.gql_ok(w.kratos.auth(), update, json!({ "id": id, "input": { "tags": ["prod"] } })).await;
    assert_eq!(
        (up["updateDomain"]["note"].clone(), up["updateDomain"]["tags"].clone()),
        (json!("shop"), json!(["prod"]))
    );
    let up = b.gql_ok(w.kratos.auth(), update, json!({ "id": id, "input": { "note": null } })).await;
    assert_eq!(up["updateDomain"]["note"], Value::Null);
    b.gql_ok(w.kratos.auth(), update, json!({ "id": other, "input": { "tags": ["web", "prod"] } })).await;

    // Tag filter: any of the tags, each domain once.
    let tagged = b.gql_ok(w.kratos.auth(), LIST, json!({ "tags": ["web", "prod"] })).await;
    assert_eq!(names(&tagged), ["example.test", "www.parent.test"]);
    let web = b.gql_ok(w.kratos.auth(), LIST, json!({ "tags": ["web"] })).await;
    assert_eq!(names(&web), ["www.parent.test"]);
    // Pages.
    let p1 = b.gql_ok(w.kratos.auth(), LIST, json!({ "first": 1 })).await;
    assert_eq!(names(&p1), ["example.test"]);
    assert_eq!(p1["domains"]["pageInfo"]["hasNextPage"], true);
    let p2 =
        b.gql_ok(w.kratos.auth(), LIST, json!({ "first": 1, "after": p1["domains"]["pageInfo"]["endCursor"] })).await;
    assert_eq!(names(&p2), ["www.parent.test"]);
    assert_eq!(p2["domains"]["pageInfo"]["hasNextPage"], false);

    // Zeus: kratos' domains are unknown ids to him, whatever he tries; nothing leaks or changes.
    let one = "query($id: Int!) { domain(id: $id) { name note } }";
    let foreign = b.gql(w.zeus.auth(), one, json!({ "id": id })).await;
    let unknown = b.gql(w.zeus.auth(), one, json!({ "id": id + 999 })).await;
    assert_eq!(error_code(&foreign), Some("NOT_FOUND"));
    assert_eq!(foreign["errors"][0]["message"], unknown["errors"][0]["message"]);
    assert!(!foreign.to_string().contains("example.test"), "{foreign}");
    let up = b.gql(w.zeus.auth(), update, json!({ "id": id, "input": { "note": "mine", "tags": ["web"] } })).await;
    assert_eq!(error_code(&up), Some("NOT_FOUND"));
    let del = b.gql(w.zeus.auth(), "mutation($id: Int!) { deleteDomain(id: $id) }", json!({ "id": id })).await;
    assert_eq!(error_code(&del), Some("NOT_FOUND"));
    let del = b.gql(w.zeus.auth(), "mutation { deleteDomainByName(name: \"example.test\") }", json!({})).await;
    assert_eq!(error_code(&del), Some("NOT_FOUND"));
    let zeus_list = b.gql_ok(w.zeus.auth(), LIST, json!({ "tags": ["web"] })).await;
    assert_eq!(names(&zeus_list), Vec::<String>::new());
    let mine = b.gql_ok(w.kratos.auth(), one, json!({ "id": id })).await;
    assert_eq!(mine["domain"], json!({ "name": "example.test", "note": null }));
    let k_on_z = b.gql(w.kratos.auth(), one, json!({ "id": zeus_id })).await;
    assert_eq!(error_code(&k_on_z), Some("NOT_FOUND"));

    // Delete by id and by name; the metric rows go too.
    let uid = b.fixture_container("kratos", &b.fixture_server(None).await.name, 100, 100).await;
    {
        let mut conn = b.store().await.read().await.unwrap();
        let today = berth_service::metrics::today_utc();
        berth_store::metrics::append_domain_sample(&mut conn, id, uid - 30000, DomainMetric::Hits, today, 1, 1)
            .await
            .unwrap();
    }
    assert_eq!(b.count("domain_metrics").await, 1);
    let gone = b.gql_ok(w.kratos.auth(), "mutation($id: Int!) { deleteDomain(id: $id) }", json!({ "id": id })).await;
    assert_eq!(gone["deleteDomain"], id);
    assert_eq!(b.count("domain_metrics").await, 0);
    let gone = b.gql_ok(w.kratos.auth(), "mutation { deleteDomainByName(name: \"www.parent.test\") }", json!({})).await;
    assert_eq!(gone["deleteDomainByName"], other);
    let again = b.gql(w.kratos.auth(), "mutation { deleteDomainByName(name: \"www.parent.test\") }", json!({})).await;
    assert_eq!(error_code(&again), Some("NOT_FOUND"));
    assert_eq!(b.count("domains").await, 1, "only zeus' domain is left");
}

async fn containers_serving_domains_today(engine: Engine) {
    // No DNS needed: the operator path adds the domains.
    let Some(b) = start(engine, Opts::default()).await else {
        return;
    };
    let kratos = b.fixture_customer("kratos").await;
    let zeus = b.fixture_customer("zeus").await;
    let server = b.fixture_server(None).await;
    let k1 = b.fixture_container("kratos", &server.name, 100, 100).await;
    let k2 = b.fixture_container("kratos", &server.name, 100, 100).await;
    let z1 = b.fixture_container("zeus", &server.name, 100, 100).await;
    let shop = b.admin(&["domain", "add", "--customer", "kratos", "--name", "shop.test"]).await["id"].as_i64().unwrap();
    let blog = b.admin(&["domain", "add", "--customer", "kratos", "--name", "blog.test"]).await["id"].as_i64().unwrap();
    let zeus_d =
        b.admin(&["domain", "add", "--customer", "zeus", "--name", "olymp.test"]).await["id"].as_i64().unwrap();
    {
        let mut conn = b.store().await.read().await.unwrap();
        let today = berth_service::metrics::today_utc();
        let yesterday = berth_service::metrics::day_of_unix(berth_store::unix_now() - 86_400);
        let add = |d: i64, uid: i64, kind, day| (d, uid - 30000, kind, day);
        for (d, c, kind, day) in [
            add(shop, k1, DomainMetric::Hits, today),
            add(shop, k2, DomainMetric::Hits, today),
            add(blog, k1, DomainMetric::NetRx, today),    // not a hits row
            add(blog, k2, DomainMetric::Hits, yesterday), // not today
            add(shop, z1, DomainMetric::Hits, today),     // Q11: zeus' container, kratos' domain
            add(zeus_d, k1, DomainMetric::Hits, today),   // Q11: kratos' container, zeus' domain
        ] {
            berth_store::metrics::append_domain_sample(&mut conn, d, c, kind, day, 1, 1).await.unwrap();
        }
    }
    let q = "query { domains { edges { node { name containers { uid } } } } }";
    let data = b.gql_ok(kratos.auth(), q, json!({})).await;
    let got: Vec<(String, Vec<i64>)> = data["domains"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let uids = e["node"]["containers"].as_array().unwrap().iter().map(|c| c["uid"].as_i64().unwrap()).collect();
            (e["node"]["name"].as_str().unwrap().to_owned(), uids)
        })
        .collect();
    assert_eq!(got, [("shop.test".to_owned(), vec![k1, k2]), ("blog.test".to_owned(), vec![])]);

    let q = "query($uid: Int!) { container(uid: $uid) { domains { id name } } }";
    let data = b.gql_ok(kratos.auth(), q, json!({ "uid": k1 })).await;
    assert_eq!(data["container"]["domains"], json!([{ "id": shop, "name": "shop.test" }]));
    let data = b.gql_ok(zeus.auth(), q, json!({ "uid": z1 })).await;
    assert_eq!(data["container"]["domains"], json!([]), "zeus never sees kratos' domain");
    let data = b.gql_ok(zeus.auth(), "query { domains { edges { node { containers { uid } } } } }", json!({})).await;
    assert_eq!(data["domains"]["edges"][0]["node"]["containers"], json!([]), "nor kratos' container");
}

on_both_engines!(adding_domains_checks_dns, update_filter_delete_and_isolation, containers_serving_domains_today);
