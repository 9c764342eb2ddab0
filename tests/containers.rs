//! Containers over GraphQL, end to end: creation with the overselling check, every update key
//! and its effect on `generation`, links, reboots, secret uuids, custom distros, tenant
//! isolation and bad input that changes nothing.

mod common;

use berth_model::{Day, DomainMetric};
use common::{error_code, Auth, Berth, Customer, Server};
use serde_json::{json, Value};

const CREATE: &str = "mutation($server: String!, $name: String!, $memory: Int!, $storage: Int!) {
  createContainer(input: { server: $server, name: $name, memory: $memory, storage: $storage }) {
    uid name memory storage generation server { name address }
  }
}";

const UPDATE: &str = "mutation($uid: Int!, $input: UpdateContainerInput!) {
  updateContainer(uid: $uid, input: $input) { uid generation }
}";

const DETAIL: &str = "query($uid: Int!) {
  container(uid: $uid) {
    uid name hostname ip memory storage uuid generation lastReboot note quotaThreshold alarmFreq nofollow
    jid jidDestinations pushoverUser pushoverToken pushoverSound pushbulletToken slackWebhook
    customDistrosStorage secretUuid sshKeys tags linkedTo linkedFrom legionAddress
    distro { id name } customDistro { id name } server { name address }
    domains { name } loopboxes { id }
  }
}";

struct World {
    berth: Berth,
    kratos: Customer,
    zeus: Customer,
    /// Owned by kratos.
    own: Server,
    /// Owned by nobody (a shared platform server).
    shared: Server,
}

async fn world(berth: Berth) -> World {
    let kratos = berth.fixture_customer("kratos").await;
    let zeus = berth.fixture_customer("zeus").await;
    let own = berth.fixture_server(Some("kratos")).await;
    let shared = berth.fixture_server(None).await;
    World { berth, kratos, zeus, own, shared }
}

async fn detail(b: &Berth, auth: Auth, uid: i64) -> Value {
    b.gql_ok(auth, DETAIL, json!({ "uid": uid })).await["container"].clone()
}

async fn update_err(b: &Berth, auth: Auth, uid: i64, input: Value) -> (String, Value) {
    let body = b.gql(auth, UPDATE, json!({ "uid": uid, "input": input })).await;
    assert!(body["data"].is_null() || body["data"]["updateContainer"].is_null(), "expected an error: {body}");
    (error_code(&body).unwrap_or("<none>").to_owned(), body)
}

async fn generation(b: &Berth, auth: Auth, uid: i64) -> i64 {
    detail(b, auth, uid).await["generation"].as_i64().unwrap()
}

async fn create_update_and_restart_rules(berth: Berth) {
    let w = world(berth).await;
    let b = &w.berth;
    let k = w.kratos.auth();

    // By address, as the REST API takes it, and by name.
    let made = b
        .gql_ok(
            k.clone(),
            CREATE,
            json!({ "server": w.own.address, "name": "my app.v2", "memory": 512, "storage": 1024 }),
        )
        .await["createContainer"]
        .clone();
    let uid = made["uid"].as_i64().unwrap();
    assert!(uid > 30000);
    assert_eq!(made["server"]["name"], w.own.name.as_str());
    assert_eq!(made["generation"], 1);
    let other = b
        .gql_ok(k.clone(), CREATE, json!({ "server": w.own.name, "name": "second", "memory": 1, "storage": 1 }))
        .await["createContainer"]["uid"]
        .as_i64()
        .unwrap();

    let d = detail(b, k.clone(), uid).await;
    assert_eq!(d["hostname"], "my-app-v2");
    assert_eq!(d["quotaThreshold"], 90);
    assert_eq!(d["alarmFreq"], 60);
    assert_eq!(d["distro"], Value::Null);
    assert_eq!(d["sshKeys"], json!([]));
    assert_eq!(d["legionAddress"], json!([]));
    assert_eq!(d["secretUuid"], Value::Null);

    let list = b
        .gql_ok(k.clone(), "{ containers(first: 10) { edges { node { uid } } pageInfo { hasNextPage } } }", json!({}))
        .await;
    let uids: Vec<i64> =
        list["containers"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["uid"].as_i64().unwrap()).collect();
    assert_eq!(uids, vec![uid, other]);

    // Note, tags and ssh keys do not restart.
    b.gql_ok(k.clone(), "mutation { createTag(name: \"web\") { id } }", json!({})).await;
    let r = b
        .gql_ok(
            k.clone(),
            UPDATE,
            json!({ "uid": uid, "input": { "note": "hello", "tags": ["web", "unknown"], "sshKeys": ["k1", "k2"] } }),
        )
        .await;
    assert_eq!(r["updateContainer"]["generation"], 1);
    let d = detail(b, k.clone(), uid).await;
    assert_eq!(d["note"], "hello");
    assert_eq!(d["tags"], json!(["web"]));
    assert_eq!(d["sshKeys"], json!(["k1", "k2"]));

    // Several restart fields plus an explicit reboot: exactly one step.
    let input = json!({
        "name": "renamed", "jid": "a@b", "jidSecret": "s3cret", "jidDestinations": "c@d", "nofollow": true,
        "pushoverUser": "pu", "pushoverToken": "pt", "pushoverSound": "ps", "alarmFreq": 5, "pushbulletToken": "pb",
        "slackWebhook": "https://hooks.example/x", "quotaThreshold": 80, "customDistrosStorage": true, "reboot": true
    });
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": uid, "input": input })).await;
    assert_eq!(r["updateContainer"]["generation"], 2);
    let d = detail(b, k.clone(), uid).await;
    assert_eq!(d["name"], "renamed");
    assert_eq!(d["alarmFreq"], 60, "alarm_freq below 60 is raised to 60");
    assert_eq!(d["quotaThreshold"], 80);
    assert_eq!(d["nofollow"], true);
    assert_eq!(d["jid"], "a@b");
    assert_eq!(d["slackWebhook"], "https://hooks.example/x");
    assert!(d["lastReboot"].as_i64().unwrap() > 0);
    // The secret is stored but never readable.
    let stored =
        berth_store::containers::get(&mut b.store().await.read().await.unwrap(), uid - 30000).await.unwrap().unwrap();
    assert_eq!(stored.jid_secret.as_deref(), Some("s3cret"));
    let body =
        b.gql(k.clone(), "query($uid: Int!) { container(uid: $uid) { jidSecret } }", json!({ "uid": uid })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "jidSecret is not a readable field: {body}");

    // The same values again change nothing, so nothing restarts.
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": uid, "input": { "name": "renamed", "nofollow": true } })).await;
    assert_eq!(r["updateContainer"]["generation"], 2);

    // Distros: any existing one; unknown or null is a conflict.
    let distro = b.admin(&["distro", "add", "--name", "bookworm", "--path", "/srv/distros/bookworm"]).await;
    let distro_id = distro["id"].as_i64().unwrap();
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": uid, "input": { "distro": distro_id } })).await;
    assert_eq!(r["updateContainer"]["generation"], 3);
    assert_eq!(detail(b, k.clone(), uid).await["distro"], json!({ "id": distro_id, "name": "bookworm" }));
    assert_eq!(update_err(b, k.clone(), uid, json!({ "distro": distro_id + 100 })).await.0, "CONFLICT");
    assert_eq!(update_err(b, k.clone(), uid, json!({ "distro": null })).await.0, "CONFLICT");
    let distros = b.gql_ok(w.zeus.auth(), "{ distros { id name } }", json!({})).await;
    assert_eq!(distros["distros"], json!([{ "id": distro_id, "name": "bookworm" }]));

    // Links: to any container, not to itself, not twice; unlink only existing ones.
    let foreign = b.fixture_container("zeus", &w.shared.name, 10, 10).await;
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": uid, "input": { "link": foreign } })).await;
    assert_eq!(r["updateContainer"]["generation"], 4);
    b.gql_ok(k.clone(), UPDATE, json!({ "uid": other, "input": { "link": uid } })).await;
    let d = detail(b, k.clone(), uid).await;
    assert_eq!(d["linkedTo"], json!([foreign]));
    assert_eq!(d["linkedFrom"], json!([other]));
    for bad in
        [json!({ "link": foreign }), json!({ "link": uid }), json!({ "link": 99999 }), json!({ "unlink": other })]
    {
        assert_eq!(update_err(b, k.clone(), uid, bad.clone()).await.0, "CONFLICT", "{bad}");
    }
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": uid, "input": { "unlink": foreign } })).await;
    assert_eq!(r["updateContainer"]["generation"], 5);
    assert_eq!(detail(b, k.clone(), uid).await["linkedTo"], json!([]));

    // Reboot and secret uuid.
    let r = b
        .gql_ok(k.clone(), "mutation($uid: Int!) { rebootContainer(uid: $uid) { generation } }", json!({ "uid": uid }))
        .await;
    assert_eq!(r["rebootContainer"]["generation"], 6);
    let regen = "mutation($uid: Int!) { regenerateSecretUuid(uid: $uid) { secretUuid generation } }";
    let s1 = b.gql_ok(k.clone(), regen, json!({ "uid": uid })).await["regenerateSecretUuid"].clone();
    let s2 = b.gql_ok(k.clone(), regen, json!({ "uid": uid })).await["regenerateSecretUuid"].clone();
    assert_eq!(s1["secretUuid"].as_str().unwrap().len(), 36);
    assert_ne!(s1["secretUuid"], s2["secretUuid"]);
    assert_eq!(s2["generation"], 6, "a new secret uuid does not restart");

    // Domains served today: a hits row for this container, today in UTC.
    let domain = b.admin(&["domain", "add", "--customer", "kratos", "--name", "served.example.org"]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let today = utc_day(now);
    let mut conn = b.store().await.read().await.unwrap();
    berth_store::metrics::append_domain_sample(
        &mut conn,
        domain["id"].as_i64().unwrap(),
        uid - 30000,
        DomainMetric::Hits,
        today,
        now,
        3,
    )
    .await
    .unwrap();
    drop(conn);
    assert_eq!(detail(b, k.clone(), uid).await["domains"], json!([{ "name": "served.example.org" }]));
    assert_eq!(detail(b, k.clone(), other).await["domains"], json!([]));
}

fn utc_day(unix: i64) -> Day {
    // Howard Hinnant's civil-from-days.
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Day { year: yoe + era * 400 + i64::from(month <= 2), month, day }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_and_restart_rules_sqlite() {
    create_update_and_restart_rules(Berth::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_and_restart_rules_postgres() {
    if let Some(berth) = Berth::start_postgres().await {
        create_update_and_restart_rules(berth).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_and_server_ownership() {
    let w = world(Berth::start().await).await;
    let b = &w.berth;
    let k = w.kratos.auth();
    let create = |server: &str, memory: i64, storage: i64| json!({ "server": server, "name": "c", "memory": memory, "storage": storage });

    // Another customer's container on kratos's server counts against it too.
    b.fixture_container("zeus", &w.own.name, 4000, 40000).await;
    let before = b.count("containers").await;
    let body = b.gql(k.clone(), CREATE, create(&w.own.address, 6001, 1)).await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("not enough memory"), "{body}");
    let body = b.gql(k.clone(), CREATE, create(&w.own.address, 1, 60001)).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("not enough storage"), "{body}");
    for (memory, storage) in [(0, 1), (1, 0), (-5, 1), (1, -1)] {
        let body = b.gql(k.clone(), CREATE, create(&w.own.address, memory, storage)).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{memory}/{storage}: {body}");
    }
    let body = b.gql(k.clone(), CREATE, create(&w.shared.address, 1, 1)).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let body = b.gql(w.zeus.auth(), CREATE, create(&w.own.address, 1, 1)).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    // An unknown server answers as another's does: nobody learns which servers exist.
    let body = b.gql(k.clone(), CREATE, create("203.0.113.77", 1, 1)).await;
    let foreign = b.gql(w.zeus.auth(), CREATE, create(&w.own.address, 1, 1)).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    assert_eq!(body["errors"][0]["message"], foreign["errors"][0]["message"], "{body} / {foreign}");
    let long = "x".repeat(256);
    let body =
        b.gql(k.clone(), CREATE, json!({ "server": w.own.address, "name": long, "memory": 1, "storage": 1 })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body =
        b.gql(k.clone(), CREATE, json!({ "server": w.own.address, "name": "  ", "memory": 1, "storage": 1 })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body =
        b.gql(k.clone(), CREATE, json!({ "server": w.own.address, "name": "c", "memory": "lots", "storage": 1 })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert_eq!(b.count("containers").await, before, "failed creations must leave nothing behind");

    // Exactly the free amount is allowed.
    let uid = b.gql_ok(k.clone(), CREATE, create(&w.own.address, 6000, 60000)).await["createContainer"]["uid"]
        .as_i64()
        .unwrap();
    let body = b.gql(k.clone(), CREATE, create(&w.own.address, 1, 1)).await;
    assert_eq!(error_code(&body), Some("CONFLICT"));

    // Resizing: only upwards into free room; an oversold server does not block other updates.
    assert_eq!(update_err(b, k.clone(), uid, json!({ "memory": 6001 })).await.0, "CONFLICT");
    assert_eq!(update_err(b, k.clone(), uid, json!({ "memory": 0 })).await.0, "BAD_USER_INPUT");
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": uid, "input": { "memory": 3000, "storage": 30000 } })).await;
    assert_eq!(r["updateContainer"]["generation"], 2);
    let d = detail(b, k.clone(), uid).await;
    assert_eq!((d["memory"].as_i64(), d["storage"].as_i64()), (Some(3000), Some(30000)));

    // On a server it does not own, a customer may not resize (the current value is a no-op).
    let on_shared = b.fixture_container("kratos", &w.shared.name, 100, 100).await;
    assert_eq!(update_err(b, k.clone(), on_shared, json!({ "memory": 200 })).await.0, "FORBIDDEN");
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": on_shared, "input": { "memory": 100, "note": "same" } })).await;
    assert_eq!(r["updateContainer"]["generation"], 1);
    assert_eq!(detail(b, k.clone(), on_shared).await["memory"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_all_or_nothing_and_validated() {
    let w = world(Berth::start().await).await;
    let b = &w.berth;
    let k = w.kratos.auth();
    let uid = b.fixture_container("kratos", &w.own.name, 100, 100).await;
    b.gql_ok(k.clone(), "mutation { createTag(name: \"web\") { id } }", json!({})).await;
    let before = detail(b, k.clone(), uid).await;

    // A valid part followed by a failing one: nothing of it stays (Q7 fixed).
    let cases = [
        (json!({ "note": "x", "tags": ["web"], "link": 99999 }), "CONFLICT"),
        (json!({ "name": "new", "unlink": 30001 }), "CONFLICT"),
        (json!({ "note": "x", "memory": 1000000 }), "CONFLICT"),
        (json!({ "name": "" }), "BAD_USER_INPUT"),
        (json!({ "name": "y".repeat(256) }), "BAD_USER_INPUT"),
        (json!({ "jid": "j".repeat(256) }), "BAD_USER_INPUT"),
        (json!({ "slackWebhook": "s".repeat(300), "note": "x" }), "BAD_USER_INPUT"),
        (json!({ "note": "n".repeat(64 * 1024 + 1) }), "BAD_USER_INPUT"),
        (json!({ "tags": ["web"], "note": "n\u{0}" }), "BAD_USER_INPUT"),
        (json!({ "quotaThreshold": 2_147_483_648_i64 }), "BAD_USER_INPUT"),
        (json!({ "quotaThreshold": -1 }), "BAD_USER_INPUT"),
        (json!({ "alarmFreq": -1 }), "BAD_USER_INPUT"),
        (json!({ "sshKeys": [1, 2] }), "BAD_USER_INPUT"),
        (json!({ "sshKeys": ["two\nkeys"] }), "BAD_USER_INPUT"),
        (json!({ "nofollow": "yes" }), "BAD_USER_INPUT"),
        (json!({ "memory": "1000" }), "BAD_USER_INPUT"),
        (json!({ "customDistro": 424242 }), "CONFLICT"),
        (json!({ "bogus": 1 }), "BAD_USER_INPUT"),
    ];
    for (input, code) in cases {
        let (got, body) = update_err(b, k.clone(), uid, input.clone()).await;
        assert_eq!(got, code, "{input}: {body}");
    }
    assert_eq!(detail(b, k.clone(), uid).await, before, "failed updates must change nothing");
    assert_eq!(b.count("container_links").await, 0);
    assert_eq!(b.count("container_tags").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_container_is_not_found() {
    let w = world(Berth::start().await).await;
    let b = &w.berth;
    let z = w.zeus.auth();
    let uid = b.fixture_container("kratos", &w.own.name, 100, 100).await;
    let zeus_uid = b.fixture_container("zeus", &w.shared.name, 100, 100).await;
    let before = detail(b, w.kratos.auth(), uid).await;

    let list = b.gql_ok(z.clone(), "{ containers { edges { node { uid } } } }", json!({})).await;
    assert_eq!(list["containers"]["edges"], json!([{ "node": { "uid": zeus_uid } }]));

    let ops = [
        ("query($uid: Int!) { container(uid: $uid) { uid } }", json!({ "uid": uid })),
        (UPDATE, json!({ "uid": uid, "input": { "note": "pwned" } })),
        (UPDATE, json!({ "uid": uid, "input": { "reboot": true } })),
        ("mutation($uid: Int!) { rebootContainer(uid: $uid) { uid } }", json!({ "uid": uid })),
        ("mutation($uid: Int!) { regenerateSecretUuid(uid: $uid) { uid } }", json!({ "uid": uid })),
        ("query($uid: Int!) { usableCustomDistros(container: $uid) { id } }", json!({ "uid": uid })),
        ("query($uid: Int!) { loopboxes(container: $uid) { edges { node { id } } } }", json!({ "uid": uid })),
    ];
    for (query, vars) in ops {
        let foreign = b.gql(z.clone(), query, vars.clone()).await;
        let mut unknown_vars = vars.clone();
        unknown_vars["uid"] = json!(uid + 1000);
        let unknown = b.gql(z.clone(), query, unknown_vars).await;
        assert_eq!(error_code(&foreign), Some("NOT_FOUND"), "{query}: {foreign}");
        // Indistinguishable from a uid that does not exist.
        assert_eq!(foreign["errors"][0]["message"], unknown["errors"][0]["message"]);
        assert_eq!(error_code(&unknown), Some("NOT_FOUND"));
    }
    for low in [0, 5, 30000, -1] {
        let body = b.gql(z.clone(), "query($uid: Int!) { container(uid: $uid) { uid } }", json!({ "uid": low })).await;
        assert_eq!(error_code(&body), Some("NOT_FOUND"), "{low}: {body}");
    }
    assert_eq!(detail(b, w.kratos.auth(), uid).await, before, "nothing changed");

    // Without credentials nothing is visible.
    let body = b.gql(Auth::None, "{ containers { edges { node { uid } } } }", json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_distros_lifecycle_and_isolation() {
    let w = world(Berth::start().await).await;
    let b = &w.berth;
    let k = w.kratos.auth();
    let storage = b.fixture_container("kratos", &w.own.name, 100, 100).await;
    let user = b.fixture_container("kratos", &w.own.name, 100, 100).await;
    let elsewhere = b.fixture_container("kratos", &w.shared.name, 100, 100).await;
    let zeus_c = b.fixture_container("zeus", &w.own.name, 100, 100).await;
    let create = "mutation($c: Int!, $name: String!, $path: String!) {
      createCustomDistro(input: { container: $c, name: $name, path: $path, note: \"n\" }) { id container name path note uuid }
    }";

    // Only in a storage container.
    let body = b.gql(k.clone(), create, json!({ "c": storage, "name": "img", "path": "img" })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    b.gql_ok(k.clone(), UPDATE, json!({ "uid": storage, "input": { "customDistrosStorage": true } })).await;
    for path in ["..", ".", "a/b", "../etc", ""] {
        let body = b.gql(k.clone(), create, json!({ "c": storage, "name": "img", "path": path })).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{path:?}: {body}");
    }
    let cd = b.gql_ok(k.clone(), create, json!({ "c": storage, "name": "img", "path": "debian-12.img" })).await
        ["createCustomDistro"]
        .clone();
    assert_eq!(cd["container"], storage);
    let cd_id = cd["id"].as_i64().unwrap();
    let body = b.gql(k.clone(), create, json!({ "c": storage, "name": "img", "path": "other" })).await;
    assert_eq!(error_code(&body), Some("CONFLICT"), "{body}");
    // Zeus cannot create in kratos's container.
    let body = b.gql(w.zeus.auth(), create, json!({ "c": storage, "name": "x", "path": "x" })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");

    let usable = "query($c: Int!) { usableCustomDistros(container: $c) { id } }";
    assert_eq!(
        b.gql_ok(k.clone(), usable, json!({ "c": user })).await["usableCustomDistros"],
        json!([{ "id": cd_id }])
    );
    assert_eq!(b.gql_ok(k.clone(), usable, json!({ "c": storage })).await["usableCustomDistros"], json!([]));
    assert_eq!(b.gql_ok(k.clone(), usable, json!({ "c": elsewhere })).await["usableCustomDistros"], json!([]));

    // Not usable from the storage itself, another server, or another customer's container.
    assert_eq!(update_err(b, k.clone(), storage, json!({ "customDistro": cd_id })).await.0, "CONFLICT");
    assert_eq!(update_err(b, k.clone(), elsewhere, json!({ "customDistro": cd_id })).await.0, "CONFLICT");
    assert_eq!(update_err(b, w.zeus.auth(), zeus_c, json!({ "customDistro": cd_id })).await.0, "CONFLICT");
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": user, "input": { "customDistro": cd_id } })).await;
    assert_eq!(r["updateContainer"]["generation"], 2);
    assert_eq!(detail(b, k.clone(), user).await["customDistro"], json!({ "id": cd_id, "name": "img" }));

    // Zeus sees none of it.
    let z = w.zeus.auth();
    assert_eq!(b.gql_ok(z.clone(), "{ customDistros { id } }", json!({})).await["customDistros"], json!([]));
    for (q, v) in [
        ("query($id: Int!) { customDistro(id: $id) { id } }", json!({ "id": cd_id })),
        ("mutation($id: Int!) { updateCustomDistro(id: $id, input: { name: \"z\" }) { id } }", json!({ "id": cd_id })),
        ("mutation($id: Int!) { deleteCustomDistro(id: $id) }", json!({ "id": cd_id })),
    ] {
        let body = b.gql(z.clone(), q, v).await;
        assert_eq!(error_code(&body), Some("NOT_FOUND"), "{q}: {body}");
    }

    // Update (Q16 fixed) with the creation rules.
    let upd = "mutation($id: Int!, $input: UpdateCustomDistroInput!) { updateCustomDistro(id: $id, input: $input) { name path note } }";
    let r = b.gql_ok(k.clone(), upd, json!({ "id": cd_id, "input": { "name": "img2", "note": null } })).await;
    assert_eq!(r["updateCustomDistro"], json!({ "name": "img2", "path": "debian-12.img", "note": null }));
    let body = b.gql(k.clone(), upd, json!({ "id": cd_id, "input": { "path": ".." } })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");

    // Delete (Q15 fixed): the user survives, loses the distro and restarts.
    b.gql_ok(k.clone(), "mutation($id: Int!) { deleteCustomDistro(id: $id) }", json!({ "id": cd_id })).await;
    let d = detail(b, k.clone(), user).await;
    assert_eq!(d["customDistro"], Value::Null);
    assert_eq!(d["generation"], 3);
    let body = b.gql(k.clone(), "query($id: Int!) { customDistro(id: $id) { id } }", json!({ "id": cd_id })).await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    // Unsetting explicitly works too, and restarts only when something was set.
    let r = b.gql_ok(k.clone(), UPDATE, json!({ "uid": user, "input": { "customDistro": null } })).await;
    assert_eq!(r["updateContainer"]["generation"], 3);
    assert_eq!(generation(b, k.clone(), user).await, 3);
}

/// Concurrent creations that fit one by one but not together: the overselling check holds
/// (the server row is locked for the check, so the checks cannot interleave).
async fn concurrent_creations_never_oversell(berth: Berth) {
    let w = world(berth).await;
    let b = &w.berth;
    let attempts = (0..10).map(|i| {
        let vars = json!({ "server": w.own.address, "name": format!("c{i}"), "memory": 2000, "storage": 1 });
        b.gql(w.kratos.auth(), CREATE, vars)
    });
    let answers = futures::future::join_all(attempts).await;
    let created = answers.iter().filter(|a| a["errors"].is_null()).count();
    let refused = answers.iter().filter(|a| error_code(a) == Some("CONFLICT")).count();
    assert_eq!((created, refused), (5, 5), "10 000 MB fit five containers of 2 000 MB: {answers:?}");
    assert_eq!(b.count("containers").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_never_oversell_sqlite() {
    concurrent_creations_never_oversell(Berth::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_never_oversell_postgres() {
    if let Some(berth) = Berth::start_postgres().await {
        concurrent_creations_never_oversell(berth).await;
    }
}
