//! Alarms over GraphQL, end to end: raising, listing newest first with filters, pages and
//! `totalCount`, retention, alarm keys, bad input and tenant isolation.

mod common;

use common::{error_code, start, Berth, Customer, Engine, Opts};
use serde_json::{json, Value};

const RAISE: &str =
    "mutation($c: Int!, $m: String!, $level: Int, $color: String, $class: String, $line: Int, $unix: Int) {
  raiseAlarm(container: $c, message: $m, level: $level, color: $color, class: $class, line: $line, unix: $unix) {
    id container level message unix color class line
  }
}";

const LIST: &str =
    "query($first: Int, $after: String, $c: Int, $level: Int, $class: String, $color: String, $line: Int) {
  alarms(first: $first, after: $after, container: $c, level: $level, class: $class, color: $color, line: $line) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id container level message unix } }
  }
}";

struct World {
    berth: Berth,
    kratos: Customer,
    zeus: Customer,
    k_uid: i64,
    z_uid: i64,
}

async fn world(engine: Engine) -> Option<World> {
    let berth = start(engine, Opts::default()).await?;
    let kratos = berth.fixture_customer("kratos").await;
    let zeus = berth.fixture_customer("zeus").await;
    let server = berth.fixture_server(None).await;
    let k_uid = berth.fixture_container("kratos", &server.name, 100, 100).await;
    let z_uid = berth.fixture_container("zeus", &server.name, 100, 100).await;
    Some(World { berth, kratos, zeus, k_uid, z_uid })
}

fn messages(data: &Value) -> Vec<String> {
    data["alarms"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["message"].as_str().expect("message").to_owned())
        .collect()
}

async fn raise_list_page_and_delete(engine: Engine) {
    let Some(w) = world(engine).await else { return };
    let b = &w.berth;
    let raised = b.gql_ok(w.kratos.auth(), RAISE, json!({ "c": w.k_uid, "m": "\"quoted\" raw text" })).await;
    let first = &raised["raiseAlarm"];
    assert_eq!(first["container"], w.k_uid);
    assert_eq!(first["level"], 1, "level defaults to 1");
    assert_eq!(first["color"], "#ffffff");
    assert_eq!(first["message"], "\"quoted\" raw text", "messages are stored as given");
    assert!(first["unix"].as_i64().unwrap() > 1_600_000_000, "unix defaults to now");

    for (i, class) in ["a", "b", "a", "b"].iter().enumerate() {
        let vars = json!({ "c": w.k_uid, "m": format!("m{i}"), "level": 2 + (i as i64 % 2), "class": class,
            "color": "ff0000", "line": i, "unix": 2_000_000_000 + i as i64 });
        let made = b.gql_ok(w.kratos.auth(), RAISE, vars).await;
        assert_eq!(made["raiseAlarm"]["color"], "#ff0000", "a missing # is prepended");
    }
    b.gql_ok(w.zeus.auth(), RAISE, json!({ "c": w.z_uid, "m": "zeus only" })).await;

    // Newest first by unix; zeus' alarm is not in kratos' list.
    let all = b.gql_ok(w.kratos.auth(), LIST, json!({})).await;
    assert_eq!(all["alarms"]["totalCount"], 5);
    assert_eq!(messages(&all), ["m3", "m2", "m1", "m0", "\"quoted\" raw text"]);

    // Pages of two, following the cursor, with a stable total.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = b.gql_ok(w.kratos.auth(), LIST, json!({ "first": 2, "after": after })).await;
        assert_eq!(page["alarms"]["totalCount"], 5);
        seen.extend(messages(&page));
        if !page["alarms"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["alarms"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, messages(&all));

    // Exact-match filters combine with AND.
    let a = b.gql_ok(w.kratos.auth(), LIST, json!({ "class": "a" })).await;
    assert_eq!((messages(&a), a["alarms"]["totalCount"].clone()), (vec!["m2".to_owned(), "m0".to_owned()], json!(2)));
    let l3 = b.gql_ok(w.kratos.auth(), LIST, json!({ "level": 3, "class": "b" })).await;
    assert_eq!(messages(&l3), ["m3", "m1"]);
    let line = b.gql_ok(w.kratos.auth(), LIST, json!({ "line": 2, "color": "#ff0000" })).await;
    assert_eq!(messages(&line), ["m2"]);
    let mine = b.gql_ok(w.kratos.auth(), LIST, json!({ "c": w.k_uid, "level": 1 })).await;
    assert_eq!(messages(&mine), ["\"quoted\" raw text"]);

    // One alarm, then delete it.
    let id = first["id"].as_i64().unwrap();
    let one = b.gql_ok(w.kratos.auth(), "query($id: Int!) { alarm(id: $id) { message } }", json!({ "id": id })).await;
    assert_eq!(one["alarm"]["message"], "\"quoted\" raw text");
    let gone = b.gql_ok(w.kratos.auth(), "mutation($id: Int!) { deleteAlarm(id: $id) }", json!({ "id": id })).await;
    assert_eq!(gone["deleteAlarm"], id);
    let again = b.gql(w.kratos.auth(), "query($id: Int!) { alarm(id: $id) { id } }", json!({ "id": id })).await;
    assert_eq!(error_code(&again), Some("NOT_FOUND"));
    assert_eq!(b.count("alarms").await, 5);
}

async fn bad_input_is_typed_and_stores_nothing(engine: Engine) {
    let Some(w) = world(engine).await else { return };
    let b = &w.berth;
    let cases = [
        (json!({ "c": w.k_uid, "m": "x", "level": 0 }), "FORBIDDEN"),
        (json!({ "c": w.k_uid, "m": "x", "level": -3 }), "FORBIDDEN"),
        (json!({ "c": w.k_uid, "m": "x", "color": "#ff00" }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid, "m": "x", "color": "#gg0000" }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid, "m": "x", "line": -1 }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid, "m": "x", "class": "c".repeat(256) }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid, "m": "nul\u{0}inside" }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid, "m": "x", "level": "high" }), "BAD_USER_INPUT"),
        (json!({ "c": "30001", "m": "x" }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid, "m": "x", "unix": -5 }), "BAD_USER_INPUT"),
        // Past what GraphQL's 32-bit Int can give back.
        (json!({ "c": w.k_uid, "m": "x", "unix": 9_999_999_999_i64 }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid, "m": "x", "level": 2_147_483_648_i64 }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid, "m": "x", "line": 2_147_483_648_i64 }), "BAD_USER_INPUT"),
        (json!({ "c": w.k_uid + 1000, "m": "x" }), "NOT_FOUND"),
        (json!({ "c": 5, "m": "x" }), "NOT_FOUND"),
    ];
    for (vars, code) in cases {
        let body = b.gql(w.kratos.auth(), RAISE, vars.clone()).await;
        assert_eq!(error_code(&body), Some(code), "{vars}: {body}");
        assert!(body["data"].is_null() || body["data"]["raiseAlarm"].is_null(), "{body}");
    }
    assert_eq!(b.count("alarms").await, 0, "no rejected alarm was stored");

    // Without credentials nothing answers.
    let anon = b.gql(common::Auth::None, RAISE, json!({ "c": w.k_uid, "m": "x" })).await;
    assert_eq!(error_code(&anon), Some("UNAUTHENTICATED"));
    let list = b.gql(w.kratos.auth(), LIST, json!({ "first": 1000 })).await;
    assert_eq!(error_code(&list), Some("BAD_USER_INPUT"));
    let list = b.gql(w.kratos.auth(), LIST, json!({ "after": "not-a-cursor" })).await;
    assert_eq!(error_code(&list), Some("BAD_USER_INPUT"));
    assert_eq!(b.count("alarms").await, 0);
}

async fn other_tenants_alarms_are_invisible_and_untouchable(engine: Engine) {
    let Some(w) = world(engine).await else { return };
    let b = &w.berth;
    let made = b.gql_ok(w.kratos.auth(), RAISE, json!({ "c": w.k_uid, "m": "secret kratos text" })).await;
    let id = made["raiseAlarm"]["id"].as_i64().unwrap();

    // Zeus' view: nothing of kratos', and kratos' ids look exactly like unknown ones.
    let list = b.gql_ok(w.zeus.auth(), LIST, json!({})).await;
    assert_eq!(list["alarms"]["totalCount"], 0);
    let foreign = b.gql(w.zeus.auth(), "query($id: Int!) { alarm(id: $id) { message } }", json!({ "id": id })).await;
    let unknown =
        b.gql(w.zeus.auth(), "query($id: Int!) { alarm(id: $id) { message } }", json!({ "id": id + 999 })).await;
    assert_eq!(error_code(&foreign), Some("NOT_FOUND"));
    assert_eq!(foreign["errors"][0]["message"], unknown["errors"][0]["message"]);
    assert!(!foreign.to_string().contains("secret"), "{foreign}");

    let by_container = b.gql(w.zeus.auth(), LIST, json!({ "c": w.k_uid })).await;
    assert_eq!(error_code(&by_container), Some("NOT_FOUND"));
    let raise = b.gql(w.zeus.auth(), RAISE, json!({ "c": w.k_uid, "m": "from zeus" })).await;
    assert_eq!(error_code(&raise), Some("NOT_FOUND"));
    let delete = b.gql(w.zeus.auth(), "mutation($id: Int!) { deleteAlarm(id: $id) }", json!({ "id": id })).await;
    assert_eq!(error_code(&delete), Some("NOT_FOUND"));
    let key =
        b.gql(w.zeus.auth(), "mutation($c: Int!) { regenerateAlarmKey(container: $c) }", json!({ "c": w.k_uid })).await;
    assert_eq!(error_code(&key), Some("NOT_FOUND"));

    // Nothing changed: kratos still has exactly his alarm, and no key was set.
    let list = b.gql_ok(w.kratos.auth(), LIST, json!({})).await;
    assert_eq!(messages(&list), ["secret kratos text"]);
    let (keys,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM containers WHERE alarm_key IS NOT NULL")
        .fetch_one(b.store().await.pool())
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

async fn retention_drops_the_oldest(engine: Engine) {
    let Some(w) = world(engine).await else { return };
    let b = &w.berth;
    sqlx::query("UPDATE containers SET max_alarms = 3").execute(b.store().await.pool()).await.unwrap();
    // Raised out of time order: the smallest `unix` goes first, not the first inserted.
    for (unix, m) in [(300, "c"), (100, "a"), (200, "b"), (400, "d"), (500, "e")] {
        b.gql_ok(w.kratos.auth(), RAISE, json!({ "c": w.k_uid, "m": m, "unix": unix })).await;
    }
    let list = b.gql_ok(w.kratos.auth(), LIST, json!({})).await;
    assert_eq!(messages(&list), ["e", "d", "c"]);
    assert_eq!(list["alarms"]["totalCount"], 3);
    // Zeus' container is not pruned by kratos' alarms.
    b.gql_ok(w.zeus.auth(), RAISE, json!({ "c": w.z_uid, "m": "z" })).await;
    assert_eq!(b.count("alarms").await, 4);
}

async fn alarm_keys_are_fresh_uuids(engine: Engine) {
    let Some(w) = world(engine).await else { return };
    let b = &w.berth;
    let q = "mutation($c: Int!) { regenerateAlarmKey(container: $c) }";
    let k1 =
        b.gql_ok(w.kratos.auth(), q, json!({ "c": w.k_uid })).await["regenerateAlarmKey"].as_str().unwrap().to_owned();
    let k2 =
        b.gql_ok(w.kratos.auth(), q, json!({ "c": w.k_uid })).await["regenerateAlarmKey"].as_str().unwrap().to_owned();
    assert_eq!(k1.len(), 36);
    assert_eq!(k1.matches('-').count(), 4);
    assert_ne!(k1, k2, "each call makes a new key");
    let (stored,): (Option<String>,) = sqlx::query_as("SELECT alarm_key FROM containers WHERE id = $1")
        .bind(w.k_uid - 30000)
        .fetch_one(b.store().await.pool())
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(k2.as_str()), "the newest key replaces the old one");
}

on_both_engines!(
    raise_list_page_and_delete,
    bad_input_is_typed_and_stores_nothing,
    other_tenants_alarms_are_invisible_and_untouchable,
    retention_drops_the_oldest,
    alarm_keys_are_fresh_uuids
);
