//! Live subscriptions over `/graphql/ws`, end to end against the real binary: both
//! WebSocket protocols, `connection_init` credentials (basic, bearer, key case), tenant
//! isolation and filters, slow subscribers, reconnects, container events, and two gateways
//! sharing one PostgreSQL database (LISTEN/NOTIFY), and `berth admin`'s container changes
//! reaching subscribers from outside the gateway.
//!
//! Absence is proven by ordering, never by sleeping: to show a subscriber does not get event
//! X, raise X, then an event Y it must get; its first message has to be Y.

mod common;
#[path = "common/ws.rs"]
mod ws;

use std::time::{Duration, Instant};

use common::{Auth, Berth, Customer, Opts};
use serde_json::{json, Value};
use ws::{Frame, Protocol, Ws, WAIT};

const ALARMS: &str = "subscription { alarms { id container level message unix } }";

/// A customer with one container on a fresh server.
async fn customer_with_container(berth: &Berth, name: &str) -> (Customer, i64) {
    let customer = berth.fixture_customer(name).await;
    let server = berth.fixture_server(None).await;
    let uid = berth.fixture_container(&customer.username, &server.name, 512, 1024).await;
    (customer, uid)
}

fn authorization(auth: &Auth) -> String {
    auth.header().expect("credentials")
}

/// Raises an alarm through GraphQL and returns its id.
async fn raise(berth: &Berth, auth: Auth, container: i64, message: &str, level: i64) -> i64 {
    let data = berth
        .gql_ok(
            auth,
            "mutation($c: Int!, $m: String!, $l: Int) { raiseAlarm(container: $c, message: $m, level: $l) { id } }",
            json!({ "c": container, "m": message, "l": level }),
        )
        .await;
    data["raiseAlarm"]["id"].as_i64().expect("alarm id")
}

/// Raises an alarm through REST (`POST /api/alarms/raise/<uid>`, raw body as message),
/// with basic credentials or with `?key=`; returns its id.
async fn raise_rest(berth: &Berth, auth: Option<&Auth>, key: Option<&str>, container: i64, message: &str) -> i64 {
    let mut url = berth.url(&format!("/api/alarms/raise/{container}"));
    if let Some(key) = key {
        url.push_str(&format!("?key={key}"));
    }
    let mut request = berth.http().post(url).body(message.to_owned());
    if let Some(auth) = auth {
        request = request.header("Authorization", authorization(auth));
    }
    let response = request.send().await.expect("POST /api/alarms/raise");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(status, 201, "REST raise failed: {body}");
    body["id"].as_i64().expect("alarm id")
}

/// The alarm in a subscription result; asserts its id, container and message.
fn assert_alarm(data: &Value, id: i64, container: i64, message: &str) {
    let alarm = &data["alarms"];
    assert_eq!(alarm["id"], id, "unexpected alarm {alarm}");
    assert_eq!(alarm["container"], container, "{alarm}");
    assert_eq!(alarm["message"], message, "{alarm}");
    assert!(alarm["unix"].as_i64().is_some_and(|u| u > 0), "{alarm}");
}

/// Makes sure operation `sub` is live before the test relies on it (a subscription starts
/// when the server gets to it, with no acknowledgement in either protocol): fires events it
/// must receive until the last one fired arrives. `fire` returns the value found at `key`
/// (a JSON pointer into `payload.data`) of the result it causes. Afterwards the operation's
/// next result is whatever happens next.
async fn sync_with<F, Fut>(ws: &mut Ws, sub: &str, key: &str, mut fire: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + WAIT;
    let mut last = fire().await;
    loop {
        match ws.frame_within(Duration::from_millis(250)).await {
            None => {
                assert!(Instant::now() < deadline, "operation {sub} never became live");
                last = fire().await;
            }
            Some(Frame::Json(m)) if m["id"] == sub && m["type"] == ws.protocol.data_type() => {
                // An earlier probe, when the operation went live before it: keep reading.
                if m["payload"]["data"].pointer(key) == Some(&last) {
                    return;
                }
            }
            Some(other) => panic!("while waiting for operation {sub} to go live: {other:?}"),
        }
    }
}

/// [`sync_with`] for an alarms subscription: probes are alarms on `container` of `level`.
async fn sync(ws: &mut Ws, sub: &str, berth: &Berth, auth: &Auth, container: i64, level: i64) {
    sync_with(ws, sub, "/alarms/id", || {
        let auth = auth.clone();
        async move { json!(raise(berth, auth, container, "sync", level).await) }
    })
    .await;
}

/// A socket of `customer` on `protocol` with a live subscription to [`ALARMS`], and its id.
async fn live_alarms(berth: &Berth, customer: &Customer, uid: i64, protocol: Protocol) -> (Ws, String) {
    let mut ws = Ws::open(berth.addr, protocol, &authorization(&customer.auth())).await;
    let sub = ws.subscribe(ALARMS, json!({})).await;
    sync(&mut ws, &sub, berth, &customer.auth(), uid, 1).await;
    (ws, sub)
}

// 1. Both protocols deliver alarms raised through GraphQL and through REST (basic and key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocols_deliver_alarms_from_graphql_and_rest() {
    let berth = Berth::start().await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    for protocol in Protocol::ALL {
        let mut ws = Ws::open(berth.addr, protocol, &authorization(&kratos.auth())).await;
        let sub = ws.subscribe(ALARMS, json!({})).await;
        sync(&mut ws, &sub, &berth, &kratos.auth(), uid, 1).await;

        let id = raise(&berth, kratos.auth(), uid, "x", 2).await;
        let data = ws.next_data(&sub).await;
        assert_alarm(&data, id, uid, "x");
        assert_eq!(data["alarms"]["level"], 2);

        let id = raise_rest(&berth, Some(&kratos.auth()), None, uid, "via rest {not json}").await;
        assert_alarm(&ws.next_data(&sub).await, id, uid, "via rest {not json}");

        let key = berth
            .http()
            .get(berth.url(&format!("/api/alarm_key/{uid}")))
            .header("Authorization", authorization(&kratos.auth()))
            .send()
            .await
            .expect("GET /api/alarm_key")
            .json::<Value>()
            .await
            .expect("alarm key JSON");
        let key = key["alarm_key"].as_str().expect("alarm_key").to_owned();
        let id = raise_rest(&berth, None, Some(&key), uid, "via key").await;
        assert_alarm(&ws.next_data(&sub).await, id, uid, "via key");
        ws.close().await;
    }
}

// 2. Each customer's alarms reach only that customer; subscribing to someone else's (or an
// unknown) container is NOT_FOUND, never data.
/// One connection runs at most 100 subscriptions at once: the 101st is refused with a typed
/// error and the others go on; completing one frees its place; another connection of the
/// same customer has its own 100. Levels keep the probes that prove a subscription live
/// apart: the hundred hear level 1, the one that takes the freed place level 2, the other
/// connection level 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_runs_at_most_a_hundred_subscriptions() {
    let berth = Berth::start().await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    let of_level = "subscription($l: Int) { alarms(level: $l) { id container level message unix } }";
    for protocol in Protocol::ALL {
        let mut ws = Ws::open(berth.addr, protocol, &authorization(&kratos.auth())).await;
        let mut ids = Vec::new();
        for _ in 0..100 {
            ids.push(ws.subscribe(of_level, json!({ "l": 1 })).await);
        }
        let over = ws.subscribe(of_level, json!({ "l": 1 })).await;
        let errors = ws.expect_error(&over).await;
        assert_eq!(errors[0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS", "{errors}");
        assert!(errors[0]["message"].as_str().unwrap().contains("100"), "{errors}");

        let stopped = ids.remove(0);
        ws.stop(&stopped).await;
        let done = ws.message_for(&stopped).await;
        assert_eq!(done["type"], "complete", "{done}");
        let freed = ws.subscribe(of_level, json!({ "l": 2 })).await;
        sync(&mut ws, &freed, &berth, &kratos.auth(), uid, 2).await;

        let id = raise(&berth, kratos.auth(), uid, "to all ninety-nine", 1).await;
        let mut waiting: std::collections::HashSet<String> = ids.iter().cloned().collect();
        while !waiting.is_empty() {
            let m = match ws.frame().await {
                Frame::Json(m) => m,
                other => panic!("expected a result ({}), got {other:?}", protocol.name()),
            };
            let sub = m["id"].as_str().unwrap_or_default().to_owned();
            assert!(waiting.remove(&sub), "a result for {sub}, which is stopped, refused or already served: {m}");
            assert_eq!(m["type"], protocol.data_type(), "{m}");
            assert_eq!(m["payload"]["data"]["alarms"]["id"], id, "{m}");
        }
        let mut other = Ws::open(berth.addr, protocol, &authorization(&kratos.auth())).await;
        let elsewhere = other.subscribe(of_level, json!({ "l": 3 })).await;
        sync(&mut other, &elsewhere, &berth, &kratos.auth(), uid, 3).await;
        ws.close().await;
        other.close().await;
    }
}

const REVOKE_TOKEN: &str = "mutation($id: ID!) { revokeToken(id: $id) }";
const CHANGE_PASSWORD: &str = "mutation($p: String!) { updateMe(input: { password: $p }) { username } }";

/// A fresh bearer token of `who`: (the token, its id).
async fn new_token(berth: &Berth, who: &Customer) -> (String, String) {
    let created =
        berth.gql_ok(who.auth(), r#"mutation { createToken(name: "ws") { token info { id } } }"#, json!({})).await;
    let token = created["createToken"]["token"].as_str().expect("token").to_owned();
    let id = created["createToken"]["info"]["id"].as_str().expect("token id").to_owned();
    (format!("Bearer {token}"), id)
}

/// Asserts the server ended the session because its credential was revoked: close 4403,
/// after a `connection_error` on the legacy protocol.
async fn assert_revoked(ws: &mut Ws) {
    let mut frame = ws.frame().await;
    if ws.protocol == Protocol::LegacyWs {
        match frame {
            Frame::Json(m) if m["type"] == "connection_error" => {
                assert!(m["payload"]["message"].as_str().unwrap().contains("revoked"), "{m}");
            }
            other => panic!("expected connection_error, got {other:?}"),
        }
        frame = ws.frame().await;
    }
    match frame {
        Frame::Close(Some((4403, reason))) => assert!(reason.contains("revoked"), "{reason}"),
        other => panic!("expected close 4403 ({}), got {other:?}", ws.protocol.name()),
    }
}

/// A revoked credential ends the live sessions opened with it, and only those: revoking a
/// token closes its sockets while the owner's password sessions go on; changing the
/// password closes those; another customer's sessions never notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_credentials_end_their_live_sessions() {
    let berth = Berth::start().await;
    let (zeus, zeus_uid) = customer_with_container(&berth, "zeus").await;
    let (mut bystander, zeus_sub) = live_alarms(&berth, &zeus, zeus_uid, Protocol::TransportWs).await;
    for (n, protocol) in Protocol::ALL.into_iter().enumerate() {
        let (kratos, uid) = customer_with_container(&berth, &format!("kratos{n}")).await;
        let (bearer, token_id) = new_token(&berth, &kratos).await;
        // Each session hears one level only, so neither sees the other's probes.
        let of_level = "subscription($l: Int) { alarms(level: $l) { id container level message unix } }";
        let mut by_token = Ws::open(berth.addr, protocol, &bearer).await;
        let token_sub = by_token.subscribe(of_level, json!({ "l": 1 })).await;
        sync(&mut by_token, &token_sub, &berth, &kratos.auth(), uid, 1).await;
        let mut by_password = Ws::open(berth.addr, protocol, &authorization(&kratos.auth())).await;
        let password_sub = by_password.subscribe(of_level, json!({ "l": 2 })).await;
        sync(&mut by_password, &password_sub, &berth, &kratos.auth(), uid, 2).await;

        berth.gql_ok(kratos.auth(), REVOKE_TOKEN, json!({ "id": token_id })).await;
        assert_revoked(&mut by_token).await;
        let id = raise(&berth, kratos.auth(), uid, "after the token went", 2).await;
        assert_alarm(&by_password.next_data(&password_sub).await, id, uid, "after the token went");
        // The same token cannot open a new session.
        let mut again = Ws::connect(berth.addr, protocol).await;
        again.send_init(json!({ "Authorization": bearer })).await;
        assert!(!matches!(again.frame().await, Frame::Json(m) if m["type"] == "connection_ack"));

        berth.gql_ok(kratos.auth(), CHANGE_PASSWORD, json!({ "p": "a-new-secret" })).await;
        assert_revoked(&mut by_password).await;

        let id = raise(&berth, zeus.auth(), zeus_uid, "zeus goes on", 1).await;
        assert_alarm(&bystander.next_data(&zeus_sub).await, id, zeus_uid, "zeus goes on");
    }
    bystander.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_reach_only_their_owner() {
    let berth = Berth::start().await;
    let (a, a_uid) = customer_with_container(&berth, "alice").await;
    let (b, b_uid) = customer_with_container(&berth, "bob").await;
    let mut ws_a = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&a.auth())).await;
    let mut ws_b = Ws::open(berth.addr, Protocol::LegacyWs, &authorization(&b.auth())).await;
    let sub_a = ws_a.subscribe(ALARMS, json!({})).await;
    let sub_b = ws_b.subscribe(ALARMS, json!({})).await;
    sync(&mut ws_a, &sub_a, &berth, &a.auth(), a_uid, 1).await;
    sync(&mut ws_b, &sub_b, &berth, &b.auth(), b_uid, 1).await;

    let a1 = raise(&berth, a.auth(), a_uid, "a1", 1).await;
    let b1 = raise(&berth, b.auth(), b_uid, "b1", 1).await;
    let b2 = raise(&berth, b.auth(), b_uid, "b2", 1).await;
    let a2 = raise(&berth, a.auth(), a_uid, "a2", 1).await;
    // Each sees exactly its own, in order: the other's alarms, raised in between, never came.
    assert_alarm(&ws_a.next_data(&sub_a).await, a1, a_uid, "a1");
    assert_alarm(&ws_a.next_data(&sub_a).await, a2, a_uid, "a2");
    assert_alarm(&ws_b.next_data(&sub_b).await, b1, b_uid, "b1");
    assert_alarm(&ws_b.next_data(&sub_b).await, b2, b_uid, "b2");

    // Someone else's container, a uid that does not exist, a number that is no uid at all.
    for protocol in Protocol::ALL {
        let mut ws = Ws::open(berth.addr, protocol, &authorization(&a.auth())).await;
        for container in [b_uid, 999_999, 5] {
            for query in [
                "subscription($c: Int) { alarms(container: $c) { id message } }",
                "subscription($c: Int) { containerEvents(container: $c) { container kind } }",
            ] {
                let sub = ws.subscribe(query, json!({ "c": container })).await;
                let errors = ws.expect_error(&sub).await;
                assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{query} on {container}: {errors}");
            }
        }
        // The connection still works, and still sees nothing of bob's.
        let sub = ws.subscribe(ALARMS, json!({})).await;
        sync(&mut ws, &sub, &berth, &a.auth(), a_uid, 1).await;
        raise(&berth, b.auth(), b_uid, "b3", 1).await;
        let a3 = raise(&berth, a.auth(), a_uid, "a3", 1).await;
        assert_alarm(&ws.next_data(&sub).await, a3, a_uid, "a3");
        ws.close().await;
    }
}

// 3. `container:` and `level:` keep only matching alarms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_keep_only_matching_alarms() {
    let berth = Berth::start().await;
    let (c, uid1) = customer_with_container(&berth, "carol").await;
    let server = berth.fixture_server(None).await;
    let uid2 = berth.fixture_container(&c.username, &server.name, 512, 1024).await;
    let filtered = "subscription($c: Int, $l: Int) { alarms(container: $c, level: $l) { id container level message } }";
    // (variables, the probe's container and level, alarms it must not get, the one it gets)
    let cases = [
        (json!({ "c": uid1 }), (uid1, 1), vec![(uid2, 1), (uid2, 3)], (uid1, 2)),
        (json!({ "l": 3 }), (uid1, 3), vec![(uid1, 2), (uid2, 1), (uid1, 1)], (uid2, 3)),
        (json!({ "c": uid2, "l": 3 }), (uid2, 3), vec![(uid1, 3), (uid2, 2), (uid2, 1)], (uid2, 3)),
    ];
    for (n, (variables, probe, skipped, wanted)) in cases.into_iter().enumerate() {
        // One filtered operation per connection, each connection gone before the next.
        let protocol = Protocol::ALL[n % 2];
        let mut ws = Ws::open(berth.addr, protocol, &authorization(&c.auth())).await;
        let sub = ws.subscribe(filtered, variables.clone()).await;
        sync(&mut ws, &sub, &berth, &c.auth(), probe.0, probe.1).await;
        for (container, level) in skipped {
            raise(&berth, c.auth(), container, "skipped", level).await;
        }
        let id = raise(&berth, c.auth(), wanted.0, "wanted", wanted.1).await;
        let data = ws.next_data(&sub).await;
        assert_eq!(data["alarms"]["id"], id, "filter {variables}: the first alarm must be the matching one: {data}");
        assert_eq!(data["alarms"]["container"], wanted.0);
        assert_eq!(data["alarms"]["level"], wanted.1);
        ws.close().await;
    }
}

// 4. Bearer tokens work in connection_init, and the key is matched case-insensitively.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_and_any_key_case() {
    let berth = Berth::start().await;
    let (d, uid) = customer_with_container(&berth, "dora").await;
    let token = berth.gql_ok(d.auth(), r#"mutation { createToken(name: "ws") { token } }"#, json!({})).await;
    let token = token["createToken"]["token"].as_str().expect("token").to_owned();
    let admin_token = berth.admin(&["token", "add", "--customer", "dora"]).await;
    let admin_token = admin_token["token"].as_str().expect("admin token").to_owned();
    let cases = [
        ("Authorization", format!("Bearer {token}")),
        ("authorization", format!("Bearer {admin_token}")),
        ("AUTHORIZATION", authorization(&d.auth())),
    ];
    for protocol in Protocol::ALL {
        for (key, value) in &cases {
            let mut ws = Ws::connect(berth.addr, protocol).await;
            ws.init_ok(json!({ *key: value })).await;
            let sub = ws.subscribe(ALARMS, json!({})).await;
            sync(&mut ws, &sub, &berth, &Auth::bearer(&token), uid, 1).await;
            let id = raise(&berth, Auth::bearer(&token), uid, "bearer", 1).await;
            assert_alarm(&ws.next_data(&sub).await, id, uid, "bearer");
            ws.close().await;
        }
    }
}

/// Asserts the connection was refused as its protocol says, and that an operation sent right
/// behind the `connection_init` never ran.
async fn assert_refused(ws: &mut Ws, sub: &str, what: &str) {
    match ws.protocol {
        Protocol::TransportWs => match ws.frame().await {
            // graphql-transport-ws: 4403 Forbidden for refused credentials.
            Frame::Close(Some((code, _))) => assert_eq!(code, 4403, "{what}: close code"),
            other => panic!("{what}: expected close 4403, got {other:?}"),
        },
        Protocol::LegacyWs => {
            match ws.frame().await {
                Frame::Json(m) => {
                    assert_eq!(m["type"], "connection_error", "{what}: {m}");
                    assert!(m["payload"]["message"].is_string(), "{what}: {m}");
                }
                other => panic!("{what}: expected connection_error, got {other:?}"),
            }
            // Then the connection closes (1011, as the protocol's reference server does);
            // nothing else comes.
            match ws.frame().await {
                Frame::Close(Some((1011, _))) => {}
                other => {
                    panic!("{what}: expected the end after connection_error, got {other:?} (operation {sub} ran?)")
                }
            }
        }
    }
}

// 5. A bad connection_init ends the connection with the protocol's error; nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connection_init_is_refused() {
    let berth = Berth::start().await;
    let (e, uid) = customer_with_container(&berth, "erin").await;
    let wrong = Auth::basic(&e.username, "not-the-password");
    let bad_inits = [
        ("wrong password", json!({ "Authorization": authorization(&wrong) })),
        ("unknown user", json!({ "Authorization": authorization(&Auth::basic("nobody", "x")) })),
        ("unknown token", json!({ "Authorization": "Bearer 0123456789abcdef" })),
        ("malformed basic", json!({ "Authorization": "Basic !!!not-base64" })),
        ("unknown scheme", json!({ "Authorization": "Token abc" })),
        ("not a string", json!({ "Authorization": 42 })),
        ("no authorization", json!({ "other": "x" })),
        ("missing payload", Value::Null),
        ("payload not an object", json!("Basic abc")),
    ];
    for protocol in Protocol::ALL {
        for (what, payload) in &bad_inits {
            let mut ws = Ws::connect(berth.addr, protocol).await;
            ws.send_init(payload.clone()).await;
            // Pipelined right behind the init: must never run.
            let sub = ws.subscribe(ALARMS, json!({})).await;
            assert_refused(&mut ws, &sub, &format!("{} / {what}", protocol.name())).await;
        }
        // An operation before any connection_init is refused too (graphql-transport-ws:
        // 4401 Unauthorized).
        let mut ws = Ws::connect(berth.addr, protocol).await;
        let sub = ws.subscribe(ALARMS, json!({})).await;
        match ws.frame().await {
            Frame::Close(Some((code, _))) if protocol == Protocol::TransportWs => assert_eq!(code, 4401),
            Frame::Close(_) | Frame::Ended(_) if protocol == Protocol::LegacyWs => {}
            other => panic!("{}: subscribe before init: got {other:?} (operation {sub})", protocol.name()),
        }
    }
    // Refusals leave nothing behind: the right credentials still work (a few failures are
    // well under the per-user and per-peer login limits).
    let mut ws = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&e.auth())).await;
    let sub = ws.subscribe(ALARMS, json!({})).await;
    sync(&mut ws, &sub, &berth, &e.auth(), uid, 1).await;
    let id = raise(&berth, e.auth(), uid, "after refusals", 1).await;
    assert_alarm(&ws.next_data(&sub).await, id, uid, "after refusals");
    ws.close().await;
    // The legacy protocol's connection_terminate ends the connection with a normal close.
    let mut ws = Ws::open(berth.addr, Protocol::LegacyWs, &authorization(&e.auth())).await;
    ws.send(json!({ "type": "connection_terminate" })).await;
    assert_eq!(ws.frame().await, Frame::Close(Some((1000, String::new()))));
}

// 5c. What a client sends is bounded: a message longer than a `/graphql` body may be (1 MiB)
// closes the connection with 1009 Message Too Big; a subscription whose document and
// variables pass 16 KiB (it would hold them as long as it runs) is refused BAD_USER_INPUT
// and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_subscriptions_are_refused() {
    let berth = Berth::start().await;
    let (g, uid) = customer_with_container(&berth, "gert").await;
    let padded = |query: &str, bytes: usize| format!("{query}{}", " ".repeat(bytes));
    for protocol in Protocol::ALL {
        let what = protocol.name();
        let mut ws = Ws::open(berth.addr, protocol, &authorization(&g.auth())).await;
        let long = ws.subscribe(&padded(ALARMS, 20 * 1024), json!({})).await;
        let errors = ws.expect_error(&long).await;
        assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT", "{what}: {errors}");
        let heavy = ws.subscribe(ALARMS, json!({ "unused": "x".repeat(20 * 1024) })).await;
        let errors = ws.expect_error(&heavy).await;
        assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT", "{what}: {errors}");
        // A long query (not a subscription) still runs, and so does a short subscription.
        let query = ws.subscribe(&padded("{ me { company } }", 100 * 1024), json!({})).await;
        assert!(ws.next_data(&query).await["me"].is_object(), "{what}");
        assert_eq!(ws.message_for(&query).await["type"], "complete", "{what}");
        let sub = ws.subscribe(ALARMS, json!({})).await;
        sync(&mut ws, &sub, &berth, &g.auth(), uid, 1).await;

        // An operation id longer than 128 bytes: closed with 4400, nothing runs.
        let mut other = Ws::open(berth.addr, protocol, &authorization(&g.auth())).await;
        let long_id = "i".repeat(129);
        other.send(json!({ "type": protocol.subscribe_type(), "id": long_id, "payload": { "query": ALARMS } })).await;
        match other.frame().await {
            Frame::Close(Some((code, _))) => assert_eq!(code, 4400, "{what}"),
            frame => panic!("{what}: expected close 4400, got {frame:?}"),
        }

        ws.subscribe(&padded(ALARMS, 2 * 1024 * 1024), json!({})).await;
        loop {
            match ws.frame().await {
                // A probe of the sync above, still on its way.
                Frame::Json(m) if m["id"] == sub => continue,
                Frame::Close(Some((code, reason))) => {
                    assert_eq!(code, 1009, "{what}: {reason}");
                    break;
                }
                other => panic!("{what}: expected close 1009, got {other:?}"),
            }
        }
    }
}

// 5b. graphql-transport-ws: subscribing under an id still running closes the connection with
// 4409 instead of silently replacing the subscription; an id whose operation completed
// may be used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_id_is_not_reused() {
    let berth = Berth::start().await;
    let (f, uid) = customer_with_container(&berth, "fiona").await;
    let subscribe = |id: &str, query: &str| json!({ "type": "subscribe", "id": id, "payload": { "query": query } });
    // Apart by level, so that syncing one never sends the other a result.
    let (level_1, level_2) =
        (ALARMS.replace("alarms", "alarms(level: 1)"), ALARMS.replace("alarms", "alarms(level: 2)"));
    let mut ws = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&f.auth())).await;
    ws.send(subscribe("a", &level_1)).await;
    sync(&mut ws, "a", &berth, &f.auth(), uid, 1).await;
    // Completed by the client, then used again: fine.
    ws.stop("a").await;
    assert_eq!(ws.message_for("a").await["type"], "complete");
    ws.send(subscribe("a", &level_1)).await;
    sync(&mut ws, "a", &berth, &f.auth(), uid, 1).await;
    // Completed by the server (an operation that fails), then used again: fine.
    ws.send(subscribe("q", "subscription { nope }")).await;
    ws.expect_error("q").await;
    ws.send(subscribe("q", &level_2)).await;
    sync(&mut ws, "q", &berth, &f.auth(), uid, 2).await;
    // Still running: 4409, and the running subscription was not replaced before the close.
    ws.send(subscribe("a", "subscription { containerEvents { kind } }")).await;
    loop {
        match ws.frame().await {
            // The alarm raised to sync "q" reached the running "a" as well.
            Frame::Json(m) if m["id"] == "a" && m["type"] == "next" => {
                assert!(m["payload"]["data"]["alarms"].is_object())
            }
            Frame::Close(Some((code, reason))) => {
                assert_eq!((code, reason.as_str()), (4409, "Subscriber for a already exists"));
                break;
            }
            other => panic!("expected close 4409, got {other:?}"),
        }
    }
    // async-graphql also takes the legacy `start` as `subscribe`: the same rule holds.
    let mut ws = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&f.auth())).await;
    ws.send(subscribe("s", &level_1)).await;
    sync(&mut ws, "s", &berth, &f.auth(), uid, 1).await;
    ws.send(json!({ "type": "start", "id": "s", "payload": { "query": level_2 } })).await;
    assert!(matches!(ws.frame().await, Frame::Close(Some((4409, _)))));
    // A connection the client ends without a close frame of its own still gets one.
    let mut ws = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&f.auth())).await;
    ws.send(json!({ "type": "connection_terminate" })).await;
    assert_eq!(ws.frame().await, Frame::Close(Some((1000, String::new()))));
    // Legacy: a second connection_init is refused, and the close says so (1011).
    let mut ws = Ws::open(berth.addr, Protocol::LegacyWs, &authorization(&f.auth())).await;
    ws.send_init(json!({ "Authorization": authorization(&f.auth()) })).await;
    assert!(matches!(ws.frame().await, Frame::Json(m) if m["type"] == "connection_error"));
    assert!(matches!(ws.frame().await, Frame::Close(Some((1011, _)))));
}

/// Raises `count` alarms with message `message` on `container`, `batch` per GraphQL request
/// (aliases `a0: raiseAlarm(...) a1: ...`); returns their ids in order.
async fn raise_many(berth: &Berth, auth: &Auth, container: i64, message: &str, count: usize, batch: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let n = batch.min(count - ids.len());
        let mut query = String::from("mutation($c: Int!, $m: String!) {");
        for i in 0..n {
            query.push_str(&format!(" a{i}: raiseAlarm(container: $c, message: $m, level: 1) {{ id }}"));
        }
        query.push('}');
        let data = berth.gql_ok(auth.clone(), &query, json!({ "c": container, "m": message })).await;
        for i in 0..n {
            ids.push(data[format!("a{i}")]["id"].as_i64().expect("alarm id"));
        }
    }
    ids
}

/// Alarms in the burst of the slow-subscriber test: more than the bus queue
/// (`berth_store::events::SUBSCRIBER_QUEUE` = 1024) plus what the kernel buffers of the
/// stuck connection hold (its messages are 32 KiB each).
const BURST: usize = 1500;

// 6. A subscriber that never reads does not hold back another; when it finally reads it gets
// what was queued for it, then an error saying it fell behind (SUBSCRIBER_LAGGED), then
// `complete`: a bounded queue, not an unbounded buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_subscriber_does_not_hold_back_others() {
    let berth = Berth::start().await;
    let (f, uid) = customer_with_container(&berth, "fred").await;
    let auth = authorization(&f.auth());

    // The stuck one asks for the (large) message; a small receive buffer makes its window
    // fill after a few frames, so the server's writes to it stall early.
    let mut stuck = Ws::connect_with(berth.addr, Protocol::TransportWs, Some(4096)).await;
    stuck.init_ok(json!({ "Authorization": auth })).await;
    let stuck_sub = stuck.subscribe("subscription { alarms { id message } }", json!({})).await;
    sync(&mut stuck, &stuck_sub, &berth, &f.auth(), uid, 1).await;
    let mut reader = Ws::open(berth.addr, Protocol::TransportWs, &auth).await;
    let reader_sub = reader.subscribe("subscription { alarms { id } }", json!({})).await;
    sync(&mut reader, &reader_sub, &berth, &f.auth(), uid, 1).await;

    // The reader reads everything, concurrently with the burst.
    let reading = tokio::spawn(async move {
        let mut got = Vec::with_capacity(BURST);
        let started = Instant::now();
        while got.len() < BURST {
            let data = reader.next_data(&reader_sub).await;
            got.push(data["alarms"]["id"].as_i64().expect("alarm id"));
        }
        (got, started.elapsed())
    });
    let message = "m".repeat(32 * 1024);
    let started = Instant::now();
    let ids = raise_many(&berth, &f.auth(), uid, &message, BURST, 100).await;
    let raised_in = started.elapsed();
    let (got, read_in) = tokio::time::timeout(Duration::from_secs(120), reading)
        .await
        .expect("the reading subscriber did not get the burst in time")
        .expect("reader task");
    eprintln!("raised {BURST} alarms in {raised_in:?}; the reader had them all after {read_in:?}");
    assert_eq!(got, ids, "the reading subscriber gets every alarm, in order");

    // Now the stuck one reads: what was queued for it, then the lag error, then complete.
    let mut delivered = 0usize;
    let mut previous = 0i64;
    let lagged = loop {
        let m = stuck.message_for(&stuck_sub).await;
        assert_eq!(m["type"], "next", "{m}");
        if let Some(errors) = m["payload"].get("errors") {
            break errors.clone();
        }
        let id = m["payload"]["data"]["alarms"]["id"].as_i64().expect("alarm id");
        assert!(id > previous, "alarms arrive in order");
        previous = id;
        delivered += 1;
    };
    eprintln!("the stuck subscriber got {delivered} alarms before the lag error: {lagged}");
    assert_eq!(lagged[0]["extensions"]["code"], "SUBSCRIBER_LAGGED", "{lagged}");
    assert!(delivered < BURST, "it got all {delivered}: it was never behind, the test proves nothing");
    assert_eq!(stuck.message_for(&stuck_sub).await["type"], "complete");

    // The connection itself is still fine: a new subscription works.
    let again = stuck.subscribe("subscription { alarms { id } }", json!({})).await;
    sync(&mut stuck, &again, &berth, &f.auth(), uid, 1).await;
    stuck.close().await;
}

/// The server's resident memory, in KiB.
fn rss_kib(berth: &Berth) -> u64 {
    let pid = berth.pid().expect("the server runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in KiB")
}

/// Distinct subscriptions on the stuck connection of the next test, and the burst it misses.
const STUCK_SUBSCRIPTIONS: usize = 40;
const STUCK_BURST: usize = 300;

// 6b. A connection that stops reading pins a bounded number of the gateway's *bytes*, not
// only of messages: its subscriptions share one budget (4 MiB), past which each is cut off
// with SUBSCRIBER_LAGGED and what it held is freed. Counted in messages alone (1024 per
// subscription), these 40 subscriptions would pin 40 × 300 alarms × 32 KiB ≈ 375 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_connection_pins_a_bounded_number_of_bytes() {
    let berth = Berth::start().await;
    let (f, uid) = customer_with_container(&berth, "hoarder").await;
    let mut stuck = Ws::connect_with(berth.addr, Protocol::TransportWs, Some(4096)).await;
    stuck.init_ok(json!({ "Authorization": authorization(&f.auth()) })).await;
    // Distinct documents, so that each runs on its own (identical ones share one execution).
    let mut subs = Vec::new();
    for i in 0..STUCK_SUBSCRIPTIONS {
        subs.push(stuck.subscribe(&format!("subscription {{ alarms{i}: alarms {{ id message }} }}"), json!({})).await);
    }
    // Live: probes until every subscription has the last one.
    let deadline = Instant::now() + WAIT;
    let mut probe = raise(&berth, f.auth(), uid, "probe", 1).await;
    let mut seen = std::collections::HashMap::<String, i64>::new();
    while subs.iter().any(|s| seen.get(s) != Some(&probe)) {
        match stuck.frame_within(Duration::from_millis(250)).await {
            None => {
                assert!(Instant::now() < deadline, "the subscriptions never all went live");
                probe = raise(&berth, f.auth(), uid, "probe", 1).await;
            }
            Some(Frame::Json(m)) if m["type"] == "next" => {
                let id = m["id"].as_str().expect("operation id").to_owned();
                let data = m["payload"]["data"].as_object().expect("data").values().next().cloned();
                seen.insert(id, data.and_then(|a| a["id"].as_i64()).expect("alarm id"));
            }
            Some(other) => panic!("while waiting for the subscriptions to go live: {other:?}"),
        }
    }

    let before = rss_kib(&berth);
    let message = "m".repeat(32 * 1024);
    raise_many(&berth, &f.auth(), uid, &message, STUCK_BURST, 20).await;
    let after = rss_kib(&berth);
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("server VmRSS {before} KiB before the burst, {after} KiB after: +{grown_mib} MiB");
    assert!(grown_mib < 96, "a stuck connection pins {grown_mib} MiB of the gateway");

    // Every subscription was cut off: read on, each ends with SUBSCRIBER_LAGGED, then
    // `complete`; nothing of the other alarms' data is lost in between (ids in order).
    let mut ended = std::collections::HashSet::new();
    let mut lagged = std::collections::HashSet::new();
    let mut last = std::collections::HashMap::<String, i64>::new();
    while ended.len() < subs.len() {
        let Frame::Json(m) = stuck.frame().await else { panic!("the connection ended") };
        let id = m["id"].as_str().expect("operation id").to_owned();
        match m["type"].as_str() {
            Some("next") => {
                if let Some(errors) = m["payload"].get("errors") {
                    assert_eq!(errors[0]["extensions"]["code"], "SUBSCRIBER_LAGGED", "{m}");
                    lagged.insert(id);
                } else {
                    let data = m["payload"]["data"].as_object().expect("data").values().next().cloned();
                    let alarm = data.and_then(|a| a["id"].as_i64()).expect("alarm id");
                    assert!(last.insert(id.clone(), alarm).is_none_or(|before| before < alarm), "in order: {m}");
                }
            }
            Some("complete") => {
                assert!(lagged.contains(&id), "{id} completed without the lag error");
                ended.insert(id);
            }
            _ => panic!("unexpected {m}"),
        }
    }
    let metrics = berth.http().get(berth.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let cut_off = metrics.lines().find(|l| l.starts_with("berth_graphql_subscribers_cut_off_total "));
    assert_eq!(cut_off, Some(format!("berth_graphql_subscribers_cut_off_total {STUCK_SUBSCRIPTIONS}").as_str()));
    stuck.close().await;
}

// 7. Close and reconnect with the same credentials: subscribe and receive again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_the_same_credentials() {
    let berth = Berth::start().await;
    let (g, uid) = customer_with_container(&berth, "gina").await;
    for protocol in Protocol::ALL {
        for round in 0..3 {
            let mut ws = Ws::open(berth.addr, protocol, &authorization(&g.auth())).await;
            let sub = ws.subscribe(ALARMS, json!({})).await;
            sync(&mut ws, &sub, &berth, &g.auth(), uid, 1).await;
            let message = format!("round {round}");
            let id = raise(&berth, g.auth(), uid, &message, 1).await;
            assert_alarm(&ws.next_data(&sub).await, id, uid, &message);
            if round == 1 {
                // Dropped without a close handshake this time.
                drop(ws);
            } else {
                ws.close().await;
            }
        }
    }
}

// 8. Container events: an update and a reboot of a container reach its owner's
// `containerEvents(container:)`, with the kind and the (bumped) generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_events_follow_updates_and_reboots() {
    let berth = Berth::start().await;
    let (h, uid) = customer_with_container(&berth, "hank").await;
    let (other, other_uid) = customer_with_container(&berth, "ivan").await;
    let reboot = "mutation($u: Int!) { updateContainer(uid: $u, input: { reboot: true }) { uid generation } }";
    for protocol in Protocol::ALL {
        let mut ws = Ws::open(berth.addr, protocol, &authorization(&h.auth())).await;
        let sub = ws
            .subscribe(
                "subscription($c: Int) { containerEvents(container: $c) { container kind generation state } }",
                json!({ "c": uid }),
            )
            .await;
        sync_with(&mut ws, &sub, "/containerEvents/generation", || async {
            let data = berth.gql_ok(h.auth(), reboot, json!({ "u": uid })).await;
            data["updateContainer"]["generation"].clone()
        })
        .await;

        // Someone else's reboot first: never seen.
        berth.gql_ok(other.auth(), reboot, json!({ "u": other_uid })).await;
        let rebooted = berth.gql_ok(h.auth(), reboot, json!({ "u": uid })).await;
        let event = ws.next_data(&sub).await["containerEvents"].clone();
        assert_eq!(event["container"], uid, "{event}");
        assert_eq!(event["kind"], "RESTART", "{event}");
        assert_eq!(event["generation"], rebooted["updateContainer"]["generation"], "{event}");
        assert!(event["state"].is_null(), "{event}");

        // A change without restart: UPDATED, generation unchanged.
        let noted = berth
            .gql_ok(
                h.auth(),
                "mutation($u: Int!) { updateContainer(uid: $u, input: { note: \"hello\" }) { uid generation } }",
                json!({ "u": uid }),
            )
            .await;
        let event = ws.next_data(&sub).await["containerEvents"].clone();
        assert_eq!(event["kind"], "UPDATED", "{event}");
        assert_eq!(event["generation"], noted["updateContainer"]["generation"], "{event}");
        assert_eq!(event["generation"], rebooted["updateContainer"]["generation"], "{event}");
        ws.close().await;
    }

    // Without `container:`, a container created through GraphQL is announced as CREATED.
    let own = berth.fixture_server(Some(&h.username)).await;
    let mut ws = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&h.auth())).await;
    let sub = ws.subscribe("subscription { containerEvents { container kind generation } }", json!({})).await;
    sync_with(&mut ws, &sub, "/containerEvents/generation", || async {
        berth.gql_ok(h.auth(), reboot, json!({ "u": uid })).await["updateContainer"]["generation"].clone()
    })
    .await;
    berth.gql_ok(other.auth(), reboot, json!({ "u": other_uid })).await;
    let created = berth
        .gql_ok(
            h.auth(),
            "mutation($s: String!) { createContainer(input: { server: $s, name: \"fresh\", memory: 128, storage: 256 }) { uid generation } }",
            json!({ "s": own.name }),
        )
        .await["createContainer"]
        .clone();
    let event = ws.next_data(&sub).await["containerEvents"].clone();
    assert_eq!(event["kind"], "CREATED", "{event}");
    assert_eq!(event["container"], created["uid"], "{event}");
    assert_eq!(event["generation"], created["generation"], "{event}");
    ws.close().await;
}

/// A revocation on one gateway reaches the other through PostgreSQL: the session opened on
/// gateway 2 with the token revoked on gateway 1 ends, and the password changed on
/// gateway 1 no longer works on gateway 2, though gateway 2 had just verified it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocations_reach_every_gateway() {
    let Some(g1) = Berth::start_postgres().await else { return };
    let g2 = Berth::start_with(Opts { database: Some(g1.database_url.clone()), ..Opts::default() }).await;
    let (kratos, uid) = customer_with_container(&g1, "kratos").await;
    let (bearer, token_id) = new_token(&g1, &kratos).await;
    let mut by_token = Ws::open(g2.addr, Protocol::TransportWs, &bearer).await;
    let sub = by_token.subscribe(ALARMS, json!({})).await;
    sync(&mut by_token, &sub, &g1, &kratos.auth(), uid, 1).await;
    g1.gql_ok(kratos.auth(), REVOKE_TOKEN, json!({ "id": token_id })).await;
    assert_revoked(&mut by_token).await;

    let mut by_password = Ws::open(g2.addr, Protocol::LegacyWs, &authorization(&kratos.auth())).await;
    g2.gql_ok(kratos.auth(), "{ me { username } }", json!({})).await;
    g1.gql_ok(kratos.auth(), CHANGE_PASSWORD, json!({ "p": "a-new-secret" })).await;
    assert_revoked(&mut by_password).await;
    // Gateway 2 forgets the password it remembered once it hears of the change (another
    // task than the sockets', so soon rather than in order); it used to keep it 5 minutes.
    let deadline = Instant::now() + WAIT;
    loop {
        let old = g2.gql(kratos.auth(), "{ me { username } }", json!({})).await;
        if common::error_code(&old) == Some("UNAUTHENTICATED") {
            break;
        }
        assert!(Instant::now() < deadline, "gateway 2 still accepts the old password: {old}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g2.gql_ok(Auth::basic(&kratos.username, "a-new-secret"), "{ me { username } }", json!({})).await;
}

// 9. Two gateways on one PostgreSQL database: what is raised on one reaches subscribers on
// the other (LISTEN/NOTIFY), both ways, still per tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_events_through_postgres() {
    let Some(g1) = Berth::start_postgres().await else { return };
    // A second `berth serve` on the same database (g1 owns the database and drops it last).
    let g2 = Berth::start_with(Opts { database: Some(g1.database_url.clone()), ..Opts::default() }).await;
    let (j, uid) = customer_with_container(&g1, "jane").await;
    let (k, k_uid) = customer_with_container(&g1, "karl").await;

    let mut on1 = Ws::open(g1.addr, Protocol::TransportWs, &authorization(&j.auth())).await;
    let mut on2 = Ws::open(g2.addr, Protocol::LegacyWs, &authorization(&j.auth())).await;
    let sub1 = on1.subscribe(ALARMS, json!({})).await;
    let sub2 = on2.subscribe(ALARMS, json!({})).await;
    // Probes raised on the *other* gateway: live means live across gateways.
    sync(&mut on1, &sub1, &g2, &j.auth(), uid, 1).await;
    sync(&mut on2, &sub2, &g1, &j.auth(), uid, 1).await;
    // on1 has also seen g1's probes for on2 (same customer): one more alarm marks the end.
    let mark = raise(&g2, j.auth(), uid, "mark", 1).await;
    loop {
        if on1.next_data(&sub1).await["alarms"]["id"] == mark {
            break;
        }
    }
    assert_eq!(on2.next_data(&sub2).await["alarms"]["id"], mark);

    // Raised on gateway 2 → gateway 1 (and 2); another tenant's alarm in between is unseen.
    raise(&g2, k.auth(), k_uid, "karl's", 1).await;
    let from2 = raise(&g2, j.auth(), uid, "from gateway 2", 2).await;
    assert_alarm(&on1.next_data(&sub1).await, from2, uid, "from gateway 2");
    assert_alarm(&on2.next_data(&sub2).await, from2, uid, "from gateway 2");
    // Raised on gateway 1 (through REST) → gateway 2.
    raise(&g1, k.auth(), k_uid, "karl's again", 1).await;
    let from1 = raise_rest(&g1, Some(&j.auth()), None, uid, "from gateway 1").await;
    assert_alarm(&on2.next_data(&sub2).await, from1, uid, "from gateway 1");
    assert_alarm(&on1.next_data(&sub1).await, from1, uid, "from gateway 1");

    // An alarm too large for one NOTIFY payload (8000 bytes) arrives whole.
    let large: String = "äöü \"quoted\" \\ ".repeat(2000);
    let big = raise(&g2, j.auth(), uid, &large, 1).await;
    assert_alarm(&on1.next_data(&sub1).await, big, uid, &large);
    assert_alarm(&on2.next_data(&sub2).await, big, uid, &large);

    // Container events travel too.
    let events = on2
        .subscribe(
            "subscription($c: Int) { containerEvents(container: $c) { container kind generation } }",
            json!({ "c": uid }),
        )
        .await;
    let reboot = "mutation($u: Int!) { updateContainer(uid: $u, input: { reboot: true }) { generation } }";
    // on2 also carries the alarms operation: probes here are reboots, which it does not see.
    sync_with(&mut on2, &events, "/containerEvents/generation", || async {
        g1.gql_ok(j.auth(), reboot, json!({ "u": uid })).await["updateContainer"]["generation"].clone()
    })
    .await;
    let generation = g1.gql_ok(j.auth(), reboot, json!({ "u": uid })).await["updateContainer"]["generation"].clone();
    let event = on2.next_data(&events).await["containerEvents"].clone();
    assert_eq!(event["kind"], "RESTART", "{event}");
    assert_eq!(event["generation"], generation, "{event}");

    on1.close().await;
    on2.close().await;
    drop(g2);
    drop(g1);
}

// 9b. `berth admin` runs in a process of its own, out of reach of the gateway's bus: the
// containers it creates and removes are announced all the same (CREATED, DELETED), on SQLite
// through the outbox `berth serve` polls, on PostgreSQL by NOTIFY; still only to their owner.
async fn operator_container_changes_reach_subscribers(berth: Berth) {
    let (l, uid) = customer_with_container(&berth, "lena").await;
    let (other, _) = customer_with_container(&berth, "mona").await;
    let server = berth.fixture_server(None).await;
    let mut ws = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&l.auth())).await;
    let sub = ws.subscribe("subscription { containerEvents { container kind generation } }", json!({})).await;
    let reboot = "mutation($u: Int!) { updateContainer(uid: $u, input: { reboot: true }) { generation } }";
    sync_with(&mut ws, &sub, "/containerEvents/generation", || async {
        berth.gql_ok(l.auth(), reboot, json!({ "u": uid })).await["updateContainer"]["generation"].clone()
    })
    .await;

    // Another customer's container, created and removed by the operator: never seen.
    let theirs = berth.fixture_container(&other.username, &server.name, 64, 64).await;
    berth.admin(&["container", "remove", "--uid", &theirs.to_string()]).await;
    let mine = berth.fixture_container(&l.username, &server.name, 64, 64).await;
    let event = ws.next_data(&sub).await["containerEvents"].clone();
    assert_eq!((event["kind"].as_str(), event["container"].as_i64()), (Some("CREATED"), Some(mine)), "{event}");
    berth.admin(&["container", "remove", "--uid", &uid.to_string()]).await;
    let event = ws.next_data(&sub).await["containerEvents"].clone();
    assert_eq!((event["kind"].as_str(), event["container"].as_i64()), (Some("DELETED"), Some(uid)), "{event}");
    // A refused command announces nothing: the next event is the one after it.
    let out = berth.admin_output(&["container", "remove", "--uid", &uid.to_string()]).await;
    assert!(!out.status.success(), "removing a removed container must fail");
    berth.admin(&["container", "remove", "--uid", &mine.to_string()]).await;
    let event = ws.next_data(&sub).await["containerEvents"].clone();
    assert_eq!((event["kind"].as_str(), event["container"].as_i64()), (Some("DELETED"), Some(mine)), "{event}");
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_container_changes_reach_subscribers_on_sqlite() {
    operator_container_changes_reach_subscribers(Berth::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_container_changes_reach_subscribers_through_postgres() {
    let Some(berth) = Berth::start_postgres().await else { return };
    operator_container_changes_reach_subscribers(berth).await;
}

// 10. Queries and mutations over the socket run as over HTTP (the caller's DataLoaders:
// `tags`, `server`), and every error carries `extensions.code`, as on `/graphql`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_over_the_socket_run_as_over_http() {
    let berth = Berth::start().await;
    let (l, uid) = customer_with_container(&berth, "lena").await;
    let query = "query($u: Int!) { container(uid: $u) { uid tags server { name } } me { username } }";
    let over_http = berth.gql_ok(l.auth(), query, json!({ "u": uid })).await;
    for protocol in Protocol::ALL {
        let mut ws = Ws::open(berth.addr, protocol, &authorization(&l.auth())).await;
        let op = ws.subscribe(query, json!({ "u": uid })).await;
        assert_eq!(ws.next_data(&op).await, over_http, "{}", protocol.name());
        assert_eq!(ws.message_for(&op).await["type"], "complete");

        let op = ws
            .subscribe(
                "mutation($u: Int!) { raiseAlarm(container: $u, message: \"over ws\") { id message } }",
                json!({ "u": uid }),
            )
            .await;
        assert_eq!(ws.next_data(&op).await["raiseAlarm"]["message"], "over ws");
        assert_eq!(ws.message_for(&op).await["type"], "complete");

        // A client message several times the socket's read buffer arrives whole.
        let long = format!("{query}\n# {}", "padding ".repeat(3 * berth_graphql::WS_READ_BUFFER / 8));
        let op = ws.subscribe(&long, json!({ "u": uid })).await;
        assert_eq!(ws.next_data(&op).await, over_http, "{}", protocol.name());
        assert_eq!(ws.message_for(&op).await["type"], "complete");

        for (bad, code) in [
            ("subscription { alarms { nope } }", "BAD_USER_INPUT"),
            ("subscription { alarms(level: \"x\") { id } }", "BAD_USER_INPUT"),
            ("subscription {", "BAD_USER_INPUT"),
            // One root field per subscription (GraphQL's rule; async-graphql would merge two).
            ("subscription { alarms { id } containerEvents { kind } }", "BAD_USER_INPUT"),
            (
                "subscription { alarms { id } ...E } fragment E on SubscriptionRoot { containerEvents { kind } }",
                "BAD_USER_INPUT",
            ),
            ("subscription { __typename }", "BAD_USER_INPUT"),
            ("query { container(uid: 1) { uid } }", "NOT_FOUND"),
        ] {
            let op = ws.subscribe(bad, json!({})).await;
            // Refused before it ran (a request error): graphql-transport-ws says so with
            // `error`, and nothing follows. A field's error (NOT_FOUND) ran: a result carrying
            // it, then `complete`, as on the legacy protocol always.
            let refused_before_running = code == "BAD_USER_INPUT";
            let m = ws.message_for(&op).await;
            let errors = if protocol == Protocol::TransportWs && refused_before_running {
                assert_eq!(m["type"], "error", "{bad}: {m}");
                ws.send(json!({ "type": "ping" })).await;
                assert_eq!(ws.frame().await, Frame::Json(json!({ "type": "pong" })), "{bad}: no complete after error");
                m["payload"].clone()
            } else {
                assert_eq!(m["type"], protocol.data_type(), "{bad}: {m}");
                assert!(m["payload"]["data"].is_null(), "{bad}: {m}");
                assert_eq!(ws.message_for(&op).await["type"], "complete", "{bad}");
                m["payload"]["errors"].clone()
            };
            assert_eq!(errors[0]["extensions"]["code"], code, "{bad}: {errors}");
        }
        ws.close().await;
    }
}

// 11. On PostgreSQL a burst far larger than `max_alarms` (here 1: each alarm is pruned by the
// next one, often before a gateway heard of it) still reaches subscribers complete and in
// order, on both gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_on_postgres_reaches_every_gateway_complete() {
    let Some(g1) = Berth::start_postgres().await else { return };
    let g2 = Berth::start_with(Opts { database: Some(g1.database_url.clone()), ..Opts::default() }).await;
    let (m, uid) = customer_with_container(&g1, "mona").await;
    sqlx::query("UPDATE containers SET max_alarms = 1 WHERE id = $1")
        .bind(uid - 30_000)
        .execute(g1.store().await.pool())
        .await
        .expect("set max_alarms");
    let mut readers = Vec::new();
    for gateway in [&g1, &g2] {
        let mut ws = Ws::open(gateway.addr, Protocol::TransportWs, &authorization(&m.auth())).await;
        let sub = ws.subscribe("subscription { alarms { id message } }", json!({})).await;
        sync(&mut ws, &sub, gateway, &m.auth(), uid, 1).await;
        readers.push((ws, sub));
    }
    // g1's reader also saw g2's probes: a mark raised now ends what came before.
    let mark = raise(&g2, m.auth(), uid, "mark", 1).await;
    for (ws, sub) in &mut readers {
        while ws.next_data(sub).await["alarms"]["id"] != mark {}
    }
    const COUNT: usize = 400;
    let readers: Vec<_> = readers
        .into_iter()
        .map(|(mut ws, sub)| {
            tokio::spawn(async move {
                let mut got = Vec::with_capacity(COUNT);
                while got.len() < COUNT {
                    let data = ws.next_data(&sub).await;
                    assert_eq!(data["alarms"]["message"], "burst", "{data}");
                    got.push(data["alarms"]["id"].as_i64().expect("alarm id"));
                }
                got
            })
        })
        .collect();
    let ids = raise_many(&g2, &m.auth(), uid, "burst", COUNT, 100).await;
    for reader in readers {
        let got = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("a subscriber did not get the burst in time")
            .expect("reader task");
        assert_eq!(got, ids, "every alarm of the burst, in order");
    }
    drop(g2);
    drop(g1);
}

// 12. A connection that never sends connection_init is closed (graphql-transport-ws: 4408
// after the server's init timeout, 10 s); one that did is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_init_is_closed_in_time() {
    let berth = Berth::start().await;
    let (n, uid) = customer_with_container(&berth, "nina").await;
    let mut acked = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&n.auth())).await;
    let mut silent: Vec<Ws> = Vec::new();
    for protocol in Protocol::ALL {
        silent.push(Ws::connect(berth.addr, protocol).await);
    }
    let started = Instant::now();
    for ws in &mut silent {
        match ws.frame_within(Duration::from_secs(40)).await {
            Some(Frame::Close(Some((code, _)))) => assert_eq!(code, 4408, "{}", ws.protocol.name()),
            other => panic!("{}: expected close 4408, got {other:?}", ws.protocol.name()),
        }
    }
    assert!(started.elapsed() >= Duration::from_secs(5), "closed too early: {:?}", started.elapsed());
    // The acknowledged connection outlived the timeout and still works.
    let sub = acked.subscribe(ALARMS, json!({})).await;
    sync(&mut acked, &sub, &berth, &n.auth(), uid, 1).await;
    let id = raise(&berth, n.auth(), uid, "still here", 1).await;
    assert_alarm(&acked.next_data(&sub).await, id, uid, "still here");
    acked.close().await;
}

// 13. A gateway whose LISTEN connection is killed (PostgreSQL restart, network) cannot know
// what was sent meanwhile: its subscribers get SUBSCRIPTION_INTERRUPTED (never a silent gap)
// and, since a revocation may be among what was missed, its sockets close with 1012; a
// client that reconnects hears events again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_interrupts_sessions_then_events_flow_again() {
    let Some(g1) = Berth::start_postgres().await else { return };
    let (o, uid) = customer_with_container(&g1, "olga").await;
    for protocol in Protocol::ALL {
        let mut ws = Ws::open(g1.addr, protocol, &authorization(&o.auth())).await;
        let sub = ws.subscribe(ALARMS, json!({})).await;
        sync(&mut ws, &sub, &g1, &o.auth(), uid, 1).await;

        let (killed,): (i64,) = sqlx::query_as(
            "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
        )
        .fetch_one(g1.store().await.pool())
        .await
        .expect("terminate the listener");
        assert!(killed >= 1, "no listener connection found");

        // The subscription's error and end, and the session's, race: any order, but the
        // socket closes with 1012 and nothing else comes.
        loop {
            match ws.frame().await {
                Frame::Close(Some((code, reason))) => {
                    assert_eq!(code, 1012, "{reason}");
                    break;
                }
                Frame::Json(m) if m["type"] == "connection_error" && protocol == Protocol::LegacyWs => {}
                Frame::Json(m) if m["id"] == sub && m["type"] == "complete" => {}
                Frame::Json(m) if m["id"] == sub => {
                    let code = &m["payload"]["errors"][0]["extensions"]["code"];
                    assert_eq!(code, "SUBSCRIPTION_INTERRUPTED", "{m}");
                }
                other => panic!("expected the session to end ({}), got {other:?}", protocol.name()),
            }
        }

        // Reconnected (probes until one arrives: the listener reconnects on its own).
        let mut ws = Ws::open(g1.addr, protocol, &authorization(&o.auth())).await;
        let sub = ws.subscribe(ALARMS, json!({})).await;
        sync(&mut ws, &sub, &g1, &o.auth(), uid, 1).await;
        let id = raise(&g1, o.auth(), uid, "after the reconnect", 1).await;
        assert_alarm(&ws.next_data(&sub).await, id, uid, "after the reconnect");
        ws.close().await;
    }
}

// 14. Identical subscriptions of one customer share one execution on the gateway, yet each
// subscriber is its own: all receive, one leaving does not end the others', the gauge
// counts subscribers, and a fresh subscriber after everyone left starts anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_subscriptions_share_an_execution_but_not_a_fate() {
    let berth = Berth::start().await;
    let (a, uid) = customer_with_container(&berth, "sharer").await;
    let open_gauge = || async {
        let text = berth.http().get(berth.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find(|l| l.starts_with("berth_graphql_open_subscriptions "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap()
    };
    let mut sockets = vec![];
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs, Protocol::TransportWs] {
        let mut ws = Ws::open(berth.addr, protocol, &authorization(&a.auth())).await;
        let sub = ws.subscribe(ALARMS, json!({})).await;
        sync(&mut ws, &sub, &berth, &a.auth(), uid, 1).await;
        sockets.push((ws, sub));
    }
    assert_eq!(open_gauge().await, 3.0);
    let id = raise(&berth, a.auth(), uid, "to all three", 1).await;
    for (ws, sub) in &mut sockets {
        // Probes of the later `sync`s may still be queued ahead of it.
        loop {
            let data = ws.next_data(sub).await;
            if data["alarms"]["id"] == id {
                assert_alarm(&data, id, uid, "to all three");
                break;
            }
        }
    }
    let (first, _) = sockets.remove(0);
    first.close().await;
    let id = raise(&berth, a.auth(), uid, "to the two left", 1).await;
    for (ws, sub) in &mut sockets {
        assert_alarm(&ws.next_data(sub).await, id, uid, "to the two left");
    }
    for _ in 0..100 {
        if open_gauge().await == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open_gauge().await, 2.0, "one subscriber left");
    for (ws, _) in sockets.drain(..) {
        ws.close().await;
    }
    let mut ws = Ws::open(berth.addr, Protocol::TransportWs, &authorization(&a.auth())).await;
    let sub = ws.subscribe(ALARMS, json!({})).await;
    sync(&mut ws, &sub, &berth, &a.auth(), uid, 1).await;
    let id = raise(&berth, a.auth(), uid, "after everyone left", 1).await;
    assert_alarm(&ws.next_data(&sub).await, id, uid, "after everyone left");
    ws.close().await;
}

// 16. A gateway that stops (SIGTERM) closes its WebSockets with 1001 Going Away, on both
// protocols, so clients reconnect at once instead of seeing the connection drop; it exits
// cleanly and promptly while they are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_closes_its_sockets_with_going_away() {
    let mut berth = Berth::start().await;
    let (l, uid) = customer_with_container(&berth, "leaver").await;
    let mut sockets = Vec::new();
    for protocol in Protocol::ALL {
        sockets.push(live_alarms(&berth, &l, uid, protocol).await);
    }
    // One that never sent connection_init goes too.
    let mut unacknowledged = Ws::connect(berth.addr, Protocol::TransportWs).await;
    let status = berth.terminate().await;
    assert!(status.success(), "berth serve exited with {status}");
    for (ws, sub) in &mut sockets {
        loop {
            match ws.frame().await {
                // A probe of the sync above, still on its way.
                Frame::Json(m) if m["id"] == *sub => continue,
                Frame::Close(Some((code, reason))) => {
                    assert_eq!(code, 1001, "{}: {reason}", ws.protocol.name());
                    break;
                }
                other => panic!("{}: expected close 1001, got {other:?}", ws.protocol.name()),
            }
        }
    }
    assert!(matches!(unacknowledged.frame().await, Frame::Close(Some((1001, _)))));
}

// 17. A connection that sends no request headers (none, or half) is closed after 30 s, and
// so is a kept-alive one that stays idle that long: they cannot hold the gateway's file
// descriptors. A WebSocket, quiet as a subscriber is, stays open past that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_http_connections_are_closed_but_quiet_websockets_stay() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let berth = Berth::start().await;
    let (q, uid) = customer_with_container(&berth, "quiet").await;
    let (mut ws, sub) = live_alarms(&berth, &q, uid, Protocol::TransportWs).await;
    let silent = tokio::net::TcpStream::connect(berth.addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(berth.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: berth\r\n").await.unwrap();
    let mut kept = tokio::net::TcpStream::connect(berth.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: berth\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 512];
    assert!(kept.read(&mut answer).await.unwrap() > 0, "a first answer");
    for (what, mut stream) in [("silent", silent), ("half", half), ("kept-alive", kept)] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(45), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the {what} connection was still open after 45 s");
    }
    // The WebSocket, quiet all that time, still delivers.
    let id = raise(&berth, q.auth(), uid, "still here", 1).await;
    loop {
        let data = ws.next_data(&sub).await;
        if data["alarms"]["id"] == id {
            break;
        }
    }
    ws.close().await;
}

/// Sends `connection_init` with `authorization` and a subscription to [`ALARMS`] right
/// behind it. Acknowledged: the socket and the subscription's id. Refused: it must be the
/// refusal of a customer over its socket limit, and the subscription must not have run.
async fn init_within_limit(berth: &Berth, protocol: Protocol, authorization: &str) -> Option<(Ws, String)> {
    let mut ws = Ws::connect(berth.addr, protocol).await;
    ws.send_init(json!({ "Authorization": authorization })).await;
    let sub = ws.subscribe(ALARMS, json!({})).await;
    let what = format!("{}: socket over the limit", protocol.name());
    match (protocol, ws.frame().await) {
        (_, Frame::Json(m)) if m["type"] == "connection_ack" => return Some((ws, sub)),
        // 1013 Try Again Later: clients retry it, unlike 4403 (refused credentials).
        (Protocol::TransportWs, Frame::Close(Some((code, reason)))) => {
            assert_eq!(code, 1013, "{what}: {reason}");
            assert!(reason.contains("at most 2"), "{what}: the reason says the limit: {reason}");
        }
        (Protocol::LegacyWs, Frame::Json(m)) if m["type"] == "connection_error" => {
            let message = m["payload"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("too many WebSockets"), "{what}: {m}");
            match ws.frame().await {
                Frame::Close(Some((1011, _))) => {}
                other => {
                    panic!("{what}: expected the end after connection_error, got {other:?} (operation {sub} ran?)")
                }
            }
        }
        (_, other) => panic!("{what}: expected connection_ack or the limit's refusal, got {other:?}"),
    }
    None
}

/// [`init_within_limit`] until acknowledged: a closed socket's place comes back once the
/// gateway saw it close. Panics when none came back within [`WAIT`].
async fn init_once_a_place_is_free(berth: &Berth, protocol: Protocol, authorization: &str) -> Ws {
    let deadline = Instant::now() + WAIT;
    loop {
        match init_within_limit(berth, protocol, authorization).await {
            Some((ws, _)) => return ws,
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            None => panic!("{}: a closed socket's place never came back", protocol.name()),
        }
    }
}

// 15. A customer holds at most --max-websockets-per-customer sockets on a gateway: one more
// is refused (graphql-transport-ws: 1013 Try Again Later; graphql-ws: connection_error) and
// runs nothing; other customers are untouched; refused credentials take no place; a closed
// socket gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_holds_at_most_its_limit_of_sockets() {
    let opts = Opts { args: vec!["--max-websockets-per-customer".into(), "2".into()], ..Opts::default() };
    let berth = Berth::start_with(opts).await;
    let (h, uid) = customer_with_container(&berth, "hana").await;
    let (other, other_uid) = customer_with_container(&berth, "ivan").await;
    let (h_auth, other_auth) = (authorization(&h.auth()), authorization(&other.auth()));
    for protocol in Protocol::ALL {
        // The places of the previous protocol's sockets come back once the gateway saw them
        // close.
        let first = init_once_a_place_is_free(&berth, protocol, &h_auth).await;
        // A wrong password is refused for itself and takes no place.
        let wrong = authorization(&Auth::basic(&h.username, "not-the-password"));
        let mut refused = Ws::connect(berth.addr, protocol).await;
        refused.send_init(json!({ "Authorization": wrong })).await;
        let sub = refused.subscribe(ALARMS, json!({})).await;
        assert_refused(&mut refused, &sub, &format!("{}: wrong password", protocol.name())).await;
        let (mut second, sub) =
            init_within_limit(&berth, protocol, &h_auth).await.expect("the second socket is within the limit");
        assert!(init_within_limit(&berth, protocol, &h_auth).await.is_none(), "{}: a third socket", protocol.name());
        // Another customer is not limited by this one's sockets, and its alarms flow.
        let mut others = Vec::new();
        for _ in 0..2 {
            others.push(init_within_limit(&berth, protocol, &other_auth).await.expect("another customer's socket"));
        }
        let (mut others, other_subs): (Vec<Ws>, Vec<String>) = others.into_iter().unzip();
        let other_sub = other_subs[0].clone();
        sync(&mut others[0], &other_sub, &berth, &other.auth(), other_uid, 1).await;
        let id = raise(&berth, other.auth(), other_uid, "other customer", 1).await;
        assert_alarm(&others[0].next_data(&other_sub).await, id, other_uid, "other customer");
        // The customer at its limit still receives on the sockets it holds.
        sync(&mut second, &sub, &berth, &h.auth(), uid, 1).await;
        let id = raise(&berth, h.auth(), uid, "at the limit", 1).await;
        assert_alarm(&second.next_data(&sub).await, id, uid, "at the limit");
        // Closing one gives its place back.
        first.close().await;
        let third = init_once_a_place_is_free(&berth, protocol, &h_auth).await;
        for ws in [second, third].into_iter().chain(others) {
            ws.close().await;
        }
    }
}
