//! Answers kept per customer (`berth-graphql/src/kept_answers.rs`), seen from outside: a
//! repeated query is served the kept answer, and every way of changing what it shows — a
//! GraphQL mutation, the REST shim, `berth admin` in another process, another gateway on
//! the same PostgreSQL — is seen by the very next request. Nothing is ever served to a
//! customer but its own.

mod common;

use common::{Auth, Berth, Engine, Opts};
use serde_json::{json, Value};

const PAGE: &str = "{ me { company } containers(first: 10) { nodes { uid name note tags } } }";

/// `berth_graphql_kept_answers_served_total` on this gateway.
async fn served(berth: &Berth) -> u64 {
    let text = berth.http().get(berth.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("berth_graphql_kept_answers_served_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Runs `query` and says whether the answer was a kept one.
async fn ask(berth: &Berth, auth: Auth, query: &str) -> (Value, bool) {
    let before = served(berth).await;
    let data = berth.gql_ok(auth, query, json!({})).await;
    (data, served(berth).await > before)
}

async fn changes_are_seen_by_the_next_request(engine: Engine) {
    let Some(b) = common::start(engine, Opts::default()).await else { return };
    let ann = b.fixture_customer("ann").await;
    let bob = b.fixture_customer("bob").await;
    let server = b.fixture_server(None).await;
    let ann_uid = b.fixture_container("ann", &server.name, 100, 100).await;
    let bob_uid = b.fixture_container("bob", &server.name, 100, 100).await;

    let (first, kept) = ask(&b, ann.auth(), PAGE).await;
    assert!(!kept, "nothing was kept yet");
    let (again, kept) = ask(&b, ann.auth(), PAGE).await;
    assert!(kept, "the same query, nothing changed: the kept answer");
    assert_eq!(again, first);

    // Another customer with the very same text gets its own answer, never ann's.
    let (bobs, _) = ask(&b, bob.auth(), PAGE).await;
    assert_eq!(bobs["containers"]["nodes"][0]["uid"], bob_uid, "{bobs}");
    let (bobs_again, kept) = ask(&b, bob.auth(), PAGE).await;
    assert!(kept);
    assert_eq!(bobs_again, bobs);
    let (anns, _) = ask(&b, ann.auth(), PAGE).await;
    assert_eq!(anns["containers"]["nodes"][0]["uid"], ann_uid, "{anns}");

    // A GraphQL mutation.
    b.gql_ok(ann.auth(), r#"mutation { updateMe(input: { company: "Acme" }) { company } }"#, json!({})).await;
    let (after, kept) = ask(&b, ann.auth(), PAGE).await;
    assert!(!kept);
    assert_eq!(after["me"]["company"], "Acme", "{after}");

    // The REST shim.
    let body = json!({ "note": "set over REST" }).to_string();
    let url = b.url(&format!("/api/containers/{ann_uid}"));
    let status = b
        .http()
        .post(url)
        .basic_auth(&ann.username, Some(&ann.password))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "REST update: {status}");
    let (after, kept) = ask(&b, ann.auth(), PAGE).await;
    assert!(!kept);
    assert_eq!(after["containers"]["nodes"][0]["note"], "set over REST", "{after}");

    // `berth admin`, another process writing the same database.
    let second = b.fixture_container("ann", &server.name, 100, 100).await;
    let (after, kept) = ask(&b, ann.auth(), PAGE).await;
    assert!(!kept);
    let uids: Vec<&Value> = after["containers"]["nodes"].as_array().unwrap().iter().map(|n| &n["uid"]).collect();
    assert!(uids.contains(&&json!(second)), "{after}");

    // Bob's answer was not touched by any of ann's changes.
    let (bobs_now, kept) = ask(&b, bob.auth(), PAGE).await;
    assert!(kept, "ann's changes do not move bob's version");
    assert_eq!(bobs_now, bobs);

    // What every customer reads (here a server's address, shown on each container) moves
    // everyone's answers.
    let with_server = "{ containers(first: 10) { nodes { uid server { name } } } }";
    ask(&b, bob.auth(), with_server).await;
    assert!(ask(&b, bob.auth(), with_server).await.1);
    b.admin(&["distro", "add", "--name", "trixie", "--path", "/srv/distros/trixie"]).await;
    assert!(!ask(&b, bob.auth(), with_server).await.1, "a shared change moves every customer's answers");
}

/// Answers that are not a function of the database, and answers with errors, are never kept.
async fn volatile_and_failed_answers_are_not_kept(engine: Engine) {
    let Some(b) = common::start(engine, Opts::default()).await else { return };
    let cid = b.fixture_customer("cid").await;
    let created = b.gql_ok(cid.auth(), r#"mutation { createToken(name: "ci") { token } }"#, json!({})).await;
    let bearer = Auth::bearer(created["createToken"]["token"].as_str().unwrap());
    let tokens = "{ me { tokens { name lastUsedAt } } }";
    for _ in 0..2 {
        assert!(!ask(&b, bearer.clone(), tokens).await.1, "lastUsedAt moves on every bearer request");
    }
    // A bearer client's other answers are kept: using a token moves no version.
    ask(&b, bearer.clone(), "{ me { company } }").await;
    assert!(ask(&b, bearer.clone(), "{ me { company } }").await.1);

    // Metric series and usage figures move no version (agents write them every minute).
    let server = b.fixture_server(None).await;
    let uid = b.fixture_container("cid", &server.name, 100, 100).await;
    let volatile = format!(
        "{{ containerMetrics(container: {uid}, kind: \"cpu\") {{ unix value }} \
           container(uid: {uid}) {{ runtime {{ state memoryUsed }} }} }}"
    );
    for _ in 0..2 {
        assert!(!ask(&b, cid.auth(), &volatile).await.1, "metric series and usage are never kept");
    }
    let state = format!("{{ container(uid: {uid}) {{ runtime {{ state }} }} }}");
    ask(&b, cid.auth(), &state).await;
    assert!(ask(&b, cid.auth(), &state).await.1, "the lifecycle state is kept");

    let missing = "{ container(uid: 999999) { name } }";
    for _ in 0..2 {
        let before = served(&b).await;
        let body = b.gql(cid.auth(), missing, json!({})).await;
        assert_eq!(common::error_code(&body), Some("NOT_FOUND"), "{body}");
        assert_eq!(served(&b).await, before, "an answer with errors is not kept");
    }
    // Mutations are never answered from the table, however often the same text is sent.
    let mutation = r#"mutation { updateMe(input: { company: "Same" }) { company } }"#;
    for _ in 0..2 {
        let before = served(&b).await;
        b.gql_ok(cid.auth(), mutation, json!({})).await;
        assert_eq!(served(&b).await, before);
    }
}

on_both_engines!(changes_are_seen_by_the_next_request, volatile_and_failed_answers_are_not_kept);

/// Two gateways on one PostgreSQL: a change committed through one is seen by the next
/// request to the other, which had the old answer kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_one_gateway_is_seen_by_the_next_request_to_another() {
    let Some(g1) = Berth::start_postgres().await else { return };
    let g2 = Berth::start_with(Opts { database: Some(g1.database_url.clone()), ..Opts::default() }).await;
    let dee = g1.fixture_customer("dee").await;
    ask(&g2, dee.auth(), "{ me { company } }").await;
    assert!(ask(&g2, dee.auth(), "{ me { company } }").await.1);
    g1.gql_ok(dee.auth(), r#"mutation { updateMe(input: { company: "Elsewhere" }) { company } }"#, json!({})).await;
    let (after, kept) = ask(&g2, dee.auth(), "{ me { company } }").await;
    assert!(!kept);
    assert_eq!(after["me"]["company"], "Elsewhere");
}

/// `--kept-answers-mib 0`: every answer is computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_may_keep_none() {
    let b = Berth::start_with(Opts { args: vec!["--kept-answers-mib".into(), "0".into()], ..Opts::default() }).await;
    let eve = b.fixture_customer("eve").await;
    for _ in 0..3 {
        assert!(!ask(&b, eve.auth(), "{ me { company } }").await.1);
    }
}
