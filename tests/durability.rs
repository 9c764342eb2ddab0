//! An acknowledged write survives `kill -9` (design §6): every mutation the server answered
//! is there after a SIGKILL and a restart on the same state dir.

mod common;

use common::{Auth, Berth};
use serde_json::{json, Value};

const UPDATE_COMPANY: &str = "mutation($c: String!) { updateMe(input: { company: $c }) { company } }";
const CREATE_TOKEN: &str = "mutation($n: String!) { createToken(name: $n) { token info { name } } }";

/// Several rounds of: acknowledged writes, SIGKILL straight after the answer, restart, check.
async fn acknowledged_writes_survive(mut berth: Berth) {
    let kratos = berth.fixture_customer("kratos").await;
    let mut tokens: Vec<(String, String)> = Vec::new();
    for round in 0..5 {
        let company = format!("Olympus {round}");
        let answer = berth.gql_ok(kratos.auth(), UPDATE_COMPANY, json!({ "c": company })).await;
        assert_eq!(answer["updateMe"]["company"], company.as_str());
        let name = format!("token-{round}");
        let created = berth.gql_ok(kratos.auth(), CREATE_TOKEN, json!({ "n": name })).await;
        tokens.push((name, created["createToken"]["token"].as_str().expect("token").to_owned()));

        // No grace: the process dies the instant the last answer was read.
        berth.restart().await;

        let me = berth.gql_ok(kratos.auth(), "{ me { company tokens { name } } }", json!({})).await;
        assert_eq!(me["me"]["company"], company.as_str(), "round {round}: profile update lost");
        let names: Vec<&str> =
            me["me"]["tokens"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
        let expected: Vec<&str> = tokens.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected, "round {round}: token list after restart");
        for (name, token) in &tokens {
            let me = berth.gql_ok(Auth::bearer(token), "{ me { username } }", json!({})).await;
            assert_eq!(me["me"]["username"], "kratos", "round {round}: token {name} no longer works");
        }
    }
}

/// Many writes in flight at once; every one that was acknowledged must be there.
async fn concurrent_acknowledged_writes_survive(mut berth: Berth) {
    let kratos = berth.fixture_customer("kratos").await;
    // One login first, so the burst below exercises writes, not the login rate limiter.
    berth.gql_ok(kratos.auth(), "{ me { username } }", json!({})).await;
    let berth_ref = &berth;
    let answers: Vec<Value> = futures::future::join_all((0..20).map(|i| {
        let auth = kratos.auth();
        async move { berth_ref.gql(auth, CREATE_TOKEN, json!({ "n": format!("burst-{i}") })).await }
    }))
    .await;
    let mut acknowledged: Vec<String> =
        answers.iter().filter_map(|a| a["data"]["createToken"]["info"]["name"].as_str().map(str::to_owned)).collect();
    assert_eq!(acknowledged.len(), 20, "every concurrent write is answered: {answers:?}");
    berth.restart().await;
    let me = berth.gql_ok(kratos.auth(), "{ me { tokens { name } } }", json!({})).await;
    let mut stored: Vec<String> =
        me["me"]["tokens"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect();
    acknowledged.sort();
    stored.sort();
    assert_eq!(stored, acknowledged, "acknowledged writes lost across kill -9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_sqlite() {
    acknowledged_writes_survive(Berth::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acknowledged_writes_survive_kill_9_on_sqlite() {
    concurrent_acknowledged_writes_survive(Berth::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_postgres() {
    let Some(berth) = Berth::start_postgres().await else { return };
    acknowledged_writes_survive(berth).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acknowledged_writes_survive_kill_9_on_postgres() {
    let Some(berth) = Berth::start_postgres().await else { return };
    concurrent_acknowledged_writes_survive(berth).await;
}
