//! Tags and loopboxes over GraphQL, end to end: their life cycles, filters, path rules,
//! duplicates, tenant isolation, and bad input that changes nothing.

mod common;

use common::{error_code, Berth, Customer};
use serde_json::{json, Value};

const CREATE_TAG: &str =
    "mutation($name: String!, $note: String) { createTag(name: $name, note: $note) { id name note } }";
const CREATE_BOX: &str = "mutation($c: Int!, $f: String!, $m: String!, $ro: Boolean) {
  createLoopbox(input: { container: $c, filename: $f, mountpoint: $m, ro: $ro }) { id container filename mountpoint ro tags }
}";
const LIST_BOXES: &str = "query($c: Int, $tags: [String!], $first: Int, $after: String) {
  loopboxes(container: $c, tags: $tags, first: $first, after: $after) {
    edges { node { id container filename tags } } pageInfo { hasNextPage endCursor }
  }
}";

struct World {
    berth: Berth,
    kratos: Customer,
    zeus: Customer,
    k1: i64,
    k2: i64,
    z1: i64,
}

async fn world(berth: Berth) -> World {
    let kratos = berth.fixture_customer("kratos").await;
    let zeus = berth.fixture_customer("zeus").await;
    let server = berth.fixture_server(None).await;
    let k1 = berth.fixture_container("kratos", &server.name, 100, 100).await;
    let k2 = berth.fixture_container("kratos", &server.name, 100, 100).await;
    let z1 = berth.fixture_container("zeus", &server.name, 100, 100).await;
    World { berth, kratos, zeus, k1, k2, z1 }
}

fn ids(data: &Value) -> Vec<i64> {
    data["loopboxes"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_lifecycle_and_isolation_sqlite() {
    tags_lifecycle_and_isolation(Berth::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_lifecycle_and_isolation_postgres() {
    if let Some(berth) = Berth::start_postgres().await {
        tags_lifecycle_and_isolation(berth).await;
    }
}

async fn tags_lifecycle_and_isolation(berth: Berth) {
    let w = world(berth).await;
    let b = &w.berth;
    let k = w.kratos.auth();
    let z = w.zeus.auth();

    let web = b.gql_ok(k.clone(), CREATE_TAG, json!({ "name": "web", "note": "front" })).await["createTag"].clone();
    assert_eq!(web["name"], "web");
    assert_eq!(web["note"], "front");
    let web_id = web["id"].as_i64().unwrap();
    // Names are unique per customer only.
    let body = b.gql(k.clone(), CREATE_TAG, json!({ "name": "web" })).await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
    let zeus_web = b.gql_ok(z.clone(), CREATE_TAG, json!({ "name": "web" })).await["createTag"]["id"].as_i64().unwrap();
    for bad in [json!({ "name": "" }), json!({ "name": "t".repeat(256) }), json!({ "name": 5 }), json!({})] {
        let body = b.gql(k.clone(), CREATE_TAG, bad.clone()).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{bad}: {body}");
    }
    assert_eq!(b.count("tags").await, 2, "failed creations leave nothing");

    let db = b.gql_ok(k.clone(), CREATE_TAG, json!({ "name": "db" })).await["createTag"]["id"].as_i64().unwrap();
    let list = b.gql_ok(k.clone(), "{ tags { id name } }", json!({})).await;
    assert_eq!(list["tags"], json!([{ "id": web_id, "name": "web" }, { "id": db, "name": "db" }]));

    let upd = "mutation($id: Int!, $input: UpdateTagInput!) { updateTag(id: $id, input: $input) { id name note } }";
    let r = b.gql_ok(k.clone(), upd, json!({ "id": db, "input": { "name": "database", "note": "n" } })).await;
    assert_eq!(r["updateTag"], json!({ "id": db, "name": "database", "note": "n" }));
    let body = b.gql(k.clone(), upd, json!({ "id": db, "input": { "name": "web" } })).await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
    let r = b.gql_ok(k.clone(), upd, json!({ "id": db, "input": { "note": null } })).await;
    assert_eq!(r["updateTag"]["note"], Value::Null);

    // Zeus's tag of the same name is not kratos's: using it by name attaches kratos's own.
    b.gql_ok(
        k.clone(),
        "mutation($c: Int!) { updateContainer(uid: $c, input: { tags: [\"web\", \"database\"] }) { uid } }",
        json!({ "c": w.k1 }),
    )
    .await;
    let filtered = b
        .gql_ok(k.clone(), "{ containers(tags: [\"web\", \"database\"]) { edges { node { uid tags } } } }", json!({}))
        .await;
    assert_eq!(
        filtered["containers"]["edges"],
        json!([{ "node": { "uid": w.k1, "tags": ["web", "database"] } }]),
        "each container once"
    );
    let zf = b.gql_ok(z.clone(), "{ containers(tags: [\"web\"]) { edges { node { uid } } } }", json!({})).await;
    assert_eq!(zf["containers"]["edges"], json!([]));

    // Another customer's tag (and an unknown id) is NOT_FOUND for every operation.
    for id in [web_id, 999_999] {
        for (q, v) in [
            ("query($id: Int!) { tag(id: $id) { id } }", json!({ "id": id })),
            (upd, json!({ "id": id, "input": { "name": "pwned" } })),
            ("mutation($id: Int!) { deleteTag(id: $id) }", json!({ "id": id })),
        ] {
            let body = b.gql(z.clone(), q, v).await;
            assert_eq!(error_code(&body), Some("NOT_FOUND"), "{q}: {body}");
        }
    }
    let mine = b.gql_ok(k.clone(), "query($id: Int!) { tag(id: $id) { name note } }", json!({ "id": web_id })).await;
    assert_eq!(mine["tag"], json!({ "name": "web", "note": "front" }), "unchanged");

    // Deleting detaches it everywhere.
    b.gql_ok(k.clone(), "mutation($id: Int!) { deleteTag(id: $id) }", json!({ "id": web_id })).await;
    let c = b.gql_ok(k.clone(), "query($c: Int!) { container(uid: $c) { tags } }", json!({ "c": w.k1 })).await;
    assert_eq!(c["container"]["tags"], json!(["database"]));
    let body = b.gql(k.clone(), "query($id: Int!) { tag(id: $id) { id } }", json!({ "id": web_id })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    let zt = b.gql_ok(z.clone(), "query($id: Int!) { tag(id: $id) { name } }", json!({ "id": zeus_web })).await;
    assert_eq!(zt["tag"]["name"], "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopboxes_lifecycle_filters_and_paths_sqlite() {
    loopboxes_lifecycle_filters_and_paths(Berth::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopboxes_lifecycle_filters_and_paths_postgres() {
    if let Some(berth) = Berth::start_postgres().await {
        loopboxes_lifecycle_filters_and_paths(berth).await;
    }
}

async fn loopboxes_lifecycle_filters_and_paths(berth: Berth) {
    let w = world(berth).await;
    let b = &w.berth;
    let k = w.kratos.auth();

    let x = b.gql_ok(k.clone(), CREATE_BOX, json!({ "c": w.k1, "f": "images/x.img", "m": "data/x", "ro": true })).await
        ["createLoopbox"]
        .clone();
    assert_eq!(x["container"], w.k1);
    assert_eq!(x["ro"], true);
    assert_eq!(x["tags"], json!([]));
    let x_id = x["id"].as_i64().unwrap();
    let y_id = b.gql_ok(k.clone(), CREATE_BOX, json!({ "c": w.k2, "f": "images/x.img", "m": "data/x" })).await
        ["createLoopbox"]["id"]
        .as_i64()
        .unwrap();
    let y2_id = b.gql_ok(k.clone(), CREATE_BOX, json!({ "c": w.k2, "f": "y2", "m": "y2" })).await["createLoopbox"]
        ["id"]
        .as_i64()
        .unwrap();
    let before = b.count("loopboxes").await;

    // Duplicates within one container conflict; path rules are enforced (Q19 fixed).
    for (f, m) in [("images/x.img", "other"), ("other.img", "data/x")] {
        let body = b.gql(k.clone(), CREATE_BOX, json!({ "c": w.k1, "f": f, "m": m })).await;
        assert_eq!(error_code(&body), Some("CONFLICT"), "{f} {m}: {body}");
    }
    let long = "f".repeat(65);
    for (f, m) in [
        ("../escape.img", "data/e"),
        ("a.img", "../../etc"),
        ("/abs.img", "data/e"),
        ("a.img", "/abs"),
        ("a.img", "data/"),
        ("a/./b.img", "data/e"),
        ("a//b.img", "data/e"),
        ("a.img", "etc"),
        ("a.img", "vassals"),
        ("", "data/e"),
        ("a.img", ""),
        (long.as_str(), "data/e"),
    ] {
        let body = b.gql(k.clone(), CREATE_BOX, json!({ "c": w.k1, "f": f, "m": m })).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{f:?} {m:?}: {body}");
    }
    let body = b.gql(k.clone(), CREATE_BOX, json!({ "c": w.k1, "f": "a", "m": "b", "ro": "false" })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "ro must be a boolean: {body}");
    // Another customer's container, or none.
    for c in [w.z1, 99_999, 5] {
        let body = b.gql(k.clone(), CREATE_BOX, json!({ "c": c, "f": "a.img", "m": "a" })).await;
        assert_eq!(error_code(&body), Some("NOT_FOUND"), "{c}: {body}");
    }
    assert_eq!(b.count("loopboxes").await, before, "failed creations leave nothing");

    // Lists: all, per container, paged.
    assert_eq!(ids(&b.gql_ok(k.clone(), LIST_BOXES, json!({})).await), vec![x_id, y_id, y2_id]);
    assert_eq!(ids(&b.gql_ok(k.clone(), LIST_BOXES, json!({ "c": w.k2 })).await), vec![y_id, y2_id]);
    let page = b.gql_ok(k.clone(), LIST_BOXES, json!({ "first": 2 })).await;
    assert_eq!(ids(&page), vec![x_id, y_id]);
    assert_eq!(page["loopboxes"]["pageInfo"]["hasNextPage"], true);
    let cursor = page["loopboxes"]["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    let rest = b.gql_ok(k.clone(), LIST_BOXES, json!({ "first": 2, "after": cursor })).await;
    assert_eq!(ids(&rest), vec![y2_id]);
    assert_eq!(rest["loopboxes"]["pageInfo"]["hasNextPage"], false);
    for bad in [json!({ "first": 101 }), json!({ "first": -1 }), json!({ "after": "garbage" })] {
        let body = b.gql(k.clone(), LIST_BOXES, bad.clone()).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{bad}: {body}");
    }

    // Tags: only tags are settable; unknown names are dropped; the filter is an OR, each once.
    for t in ["t1", "t2"] {
        b.gql_ok(k.clone(), CREATE_TAG, json!({ "name": t })).await;
    }
    let set = "mutation($id: Int!, $tags: [String!]!) { updateLoopbox(id: $id, input: { tags: $tags }) { id filename tags } }";
    let r = b.gql_ok(k.clone(), set, json!({ "id": x_id, "tags": ["t1", "t2", "nope"] })).await;
    assert_eq!(r["updateLoopbox"]["tags"], json!(["t1", "t2"]));
    b.gql_ok(k.clone(), set, json!({ "id": y2_id, "tags": ["t2"] })).await;
    let tagged = b.gql_ok(k.clone(), LIST_BOXES, json!({ "tags": ["t1", "t2"] })).await;
    assert_eq!(ids(&tagged), vec![x_id, y2_id]);
    assert_eq!(ids(&b.gql_ok(k.clone(), LIST_BOXES, json!({ "tags": ["t1"], "c": w.k2 })).await), Vec::<i64>::new());

    // Zeus: nothing visible, nothing changeable.
    let z = w.zeus.auth();
    assert_eq!(ids(&b.gql_ok(z.clone(), LIST_BOXES, json!({})).await), Vec::<i64>::new());
    let body = b.gql(z.clone(), LIST_BOXES, json!({ "c": w.k1 })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
    for id in [x_id, 99_999] {
        for (q, v) in [
            ("query($id: Int!) { loopbox(id: $id) { id } }", json!({ "id": id })),
            (set, json!({ "id": id, "tags": [] })),
            ("mutation($id: Int!) { deleteLoopbox(id: $id) }", json!({ "id": id })),
        ] {
            let body = b.gql(z.clone(), q, v).await;
            assert_eq!(error_code(&body), Some("NOT_FOUND"), "{q}: {body}");
        }
    }
    let still = b.gql_ok(k.clone(), "query($id: Int!) { loopbox(id: $id) { tags ro } }", json!({ "id": x_id })).await;
    assert_eq!(still["loopbox"], json!({ "tags": ["t1", "t2"], "ro": true }));

    // Nested under the container, with tags.
    let c = b
        .gql_ok(
            k.clone(),
            "query($c: Int!) { container(uid: $c) { loopboxes { id mountpoint tags } } }",
            json!({ "c": w.k1 }),
        )
        .await;
    assert_eq!(c["container"]["loopboxes"], json!([{ "id": x_id, "mountpoint": "data/x", "tags": ["t1", "t2"] }]));

    // Delete.
    b.gql_ok(k.clone(), "mutation($id: Int!) { deleteLoopbox(id: $id) }", json!({ "id": x_id })).await;
    let body = b.gql(k.clone(), "query($id: Int!) { loopbox(id: $id) { id } }", json!({ "id": x_id })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    assert_eq!(b.count("loopboxes").await, before - 1);
    assert_eq!(b.count("loopbox_tags").await, 1, "only y2's tag remains");
}
