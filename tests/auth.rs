//! Authentication over HTTP: basic auth, bearer tokens, password changes, and the
//! rate limiting of failed logins (design §5, §6).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{error_code, Auth, Berth, Response};
use serde_json::{json, Value};

const ME: &str = "{ me { username } }";

fn assert_unauthenticated(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: expected HTTP 401, got {} {}", r.status, r.body);
    assert_eq!(error_code(&r.body), Some("UNAUTHENTICATED"), "{what}: {}", r.body);
    assert!(r.body.get("data").is_none_or(Value::is_null), "{what}: no data on a refused request: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_accepts_the_right_password_only() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    let data = berth.gql_ok(kratos.auth(), ME, json!({})).await;
    assert_eq!(data["me"]["username"], "kratos");

    let wrong = berth.gql_raw(Auth::basic("kratos", "not-the-password"), ME, json!({})).await;
    assert_unauthenticated(&wrong, "wrong password");
    assert!(wrong.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{:?}", wrong.headers);
    // An unknown user looks exactly like a wrong password.
    let unknown = berth.gql_raw(Auth::basic("nobody", "x"), ME, json!({})).await;
    assert_unauthenticated(&unknown, "unknown user");
    assert_eq!(unknown.body, wrong.body);
    // The password is case-sensitive and whole.
    let upper = kratos.password.to_uppercase();
    assert_unauthenticated(&berth.gql_raw(Auth::basic("kratos", &upper), ME, json!({})).await, "case changed");
    let prefix = &kratos.password[..kratos.password.len() - 1];
    assert_unauthenticated(&berth.gql_raw(Auth::basic("kratos", prefix), ME, json!({})).await, "prefix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_may_contain_colons() {
    let berth = Berth::start().await;
    berth.admin(&["customer", "add", "--username", "zeus", "--password", "a:b:c"]).await;
    let data = berth.gql_ok(Auth::basic("zeus", "a:b:c"), ME, json!({})).await;
    assert_eq!(data["me"]["username"], "zeus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorization_headers_are_401() {
    let berth = Berth::start().await;
    berth.fixture_customer("kratos").await;
    let no_colon = format!("Basic {}", base64_of("kratos"));
    for raw in [
        "Basic !!!notbase64",
        "Basic",
        "Bearer",
        "Digest abc",
        "Basic a b",
        &no_colon,
        "Bearer not-a-berth-token",
        "Bearer berth_x_y",
    ] {
        let r = berth.gql_raw(Auth::Raw(raw.to_owned()), ME, json!({})).await;
        assert_unauthenticated(&r, raw);
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_is_public_without_credentials_and_me_is_not() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    berth.admin(&["news", "add", "--content", "for everyone", "--public"]).await;
    berth.admin(&["news", "add", "--content", "for customers"]).await;

    let anonymous = berth.gql_ok(Auth::None, "{ news { content public } }", json!({})).await;
    assert_eq!(anonymous["news"], json!([{ "content": "for everyone", "public": true }]));
    let customer = berth.gql_ok(kratos.auth(), "{ news { content } }", json!({})).await;
    let contents: Vec<&str> =
        customer["news"].as_array().unwrap().iter().filter_map(|n| n["content"].as_str()).collect();
    assert_eq!(contents.len(), 2, "{customer}");
    assert!(contents.contains(&"for customers"));

    let me = berth.gql_raw(Auth::None, ME, json!({})).await;
    assert_eq!(error_code(&me.body), Some("UNAUTHENTICATED"), "{}", me.body);
    assert!(me.body["data"].is_null(), "{}", me.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_authenticate_until_revoked_and_are_stored_hashed() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    let zeus = berth.fixture_customer("zeus").await;

    let created = berth
        .gql_ok(
            kratos.auth(),
            "mutation($n: String!) { createToken(name: $n) { token info { id name } } }",
            json!({ "n": "laptop" }),
        )
        .await;
    let token = created["createToken"]["token"].as_str().expect("token").to_owned();
    let id = created["createToken"]["info"]["id"].as_str().expect("token id").to_owned();
    assert_eq!(created["createToken"]["info"]["name"], "laptop");

    // It authenticates.
    let me = berth.gql_ok(Auth::bearer(&token), ME, json!({})).await;
    assert_eq!(me["me"]["username"], "kratos");

    // Listed without its secret: no field of the answer holds any part of it.
    let listed = berth.gql_ok(kratos.auth(), "{ me { tokens { id name createdAt lastUsedAt } } }", json!({})).await;
    assert_eq!(listed["me"]["tokens"][0]["id"], id.as_str());
    assert_eq!(listed["me"]["tokens"][0]["name"], "laptop");
    assert!(listed["me"]["tokens"][0]["lastUsedAt"].is_i64(), "use is recorded: {listed}");
    // `berth_<id>_<secret>`; the secret itself may contain '_'.
    let secret = token.splitn(3, '_').nth(2).expect("token secret");
    assert!(secret.len() >= 32, "token carries a long secret: {token}");
    assert!(!listed.to_string().contains(secret), "secret leaked in token list: {listed}");

    // The database holds a hash of the secret, never the token or the secret.
    let mut conn = berth.store().await.read().await.unwrap();
    let (owner, hash) = berth_store::accounts::token_secret(&mut conn, id.parse().unwrap()).await.unwrap().unwrap();
    drop(conn);
    assert_eq!(owner, kratos.id);
    assert!(
        !hash.contains(secret) && !hash.contains(&token) && !token.contains(&hash),
        "token stored in clear: {hash}"
    );

    // Another customer cannot revoke it, nor tell it exists.
    let revoke = "mutation($id: ID!) { revokeToken(id: $id) }";
    let foreign = berth.gql(zeus.auth(), revoke, json!({ "id": id })).await;
    assert_eq!(error_code(&foreign), Some("NOT_FOUND"), "{foreign}");
    let missing = berth.gql(zeus.auth(), revoke, json!({ "id": "999999" })).await;
    assert_eq!(foreign["errors"][0]["message"], missing["errors"][0]["message"]);
    berth.gql_ok(Auth::bearer(&token), ME, json!({})).await;

    // A token cannot be guessed by changing its secret.
    let tampered = format!("{}{}", &token[..token.len() - 1], if token.ends_with('A') { 'B' } else { 'A' });
    assert_unauthenticated(&berth.gql_raw(Auth::bearer(&tampered), ME, json!({})).await, "tampered token");

    // Revoked by its owner: it stops working at once; revoking twice is NOT_FOUND.
    let done = berth.gql_ok(kratos.auth(), revoke, json!({ "id": id })).await;
    assert_eq!(done["revokeToken"], true);
    assert_unauthenticated(&berth.gql_raw(Auth::bearer(&token), ME, json!({})).await, "revoked token");
    let again = berth.gql(kratos.auth(), revoke, json!({ "id": id })).await;
    assert_eq!(error_code(&again), Some("NOT_FOUND"), "{again}");
    assert_eq!(berth.count("api_tokens").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_retires_the_old_one() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    // Logged in once: the old password is remembered by the server.
    berth.gql_ok(kratos.auth(), ME, json!({})).await;
    let change = "mutation($p: String!) { updateMe(input: { password: $p }) { username } }";
    berth.gql_ok(kratos.auth(), change, json!({ "p": "brand-new:pass" })).await;

    assert_unauthenticated(&berth.gql_raw(kratos.auth(), ME, json!({})).await, "old password after change");
    let data = berth.gql_ok(Auth::basic("kratos", "brand-new:pass"), ME, json!({})).await;
    assert_eq!(data["me"]["username"], "kratos");

    // An empty password is refused and changes nothing.
    let empty = berth.gql(Auth::basic("kratos", "brand-new:pass"), change, json!({ "p": "" })).await;
    assert_eq!(error_code(&empty), Some("BAD_USER_INPUT"), "{empty}");
    berth.gql_ok(Auth::basic("kratos", "brand-new:pass"), ME, json!({})).await;
}

/// Failed logins: per user and per peer, refused with 429 *before* hashing.
///
/// Limits come from `AuthConfig::default()`: a burst of `user_burst` per username and
/// `peer_burst` per peer, one more per `refill`. Since the limiter refills while the burst
/// runs, the number of 429s we can be sure of is computed from the measured duration, so a
/// slow machine makes the test weaker, never flaky.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_per_user_and_per_peer() {
    let limits = berth_service::auth::AuthConfig::default();
    let refills = |elapsed: Duration| (elapsed.as_secs_f64() / limits.refill.as_secs_f64()).ceil() as usize + 1;
    let berth = Berth::start().await;
    let hermes = berth.fixture_customer("hermes").await;
    let apollo = berth.fixture_customer("apollo").await;
    let athena = berth.fixture_customer("athena").await;
    let local = berth.http_from("127.0.0.1".parse().unwrap());

    // Hermes is logged in (his password is remembered) before the attack starts.
    assert_eq!(berth.gql_raw_with(&local, hermes.auth(), ME, json!({})).await.status, 200);

    // The attack: 40 wrong passwords for hermes from 127.0.0.1.
    const BURST: usize = 40;
    let started = Instant::now();
    let mut limited = 0;
    for i in 0..BURST {
        let r = berth.gql_raw_with(&local, Auth::basic("hermes", &format!("guess-{i}")), ME, json!({})).await;
        match r.status {
            401 => {
                assert_eq!(error_code(&r.body), Some("UNAUTHENTICATED"), "{}", r.body);
                assert!(i < BURST - 1 || limited > 0, "never limited");
            }
            429 => {
                limited += 1;
                assert_eq!(error_code(&r.body), Some("RATE_LIMITED"), "{}", r.body);
                let retry: u64 =
                    r.header("retry-after").expect("Retry-After on 429").parse().expect("Retry-After seconds");
                assert!(retry >= 1, "Retry-After {retry}");
            }
            other => panic!("attempt {i}: unexpected HTTP {other}: {}", r.body),
        }
        if i == 0 {
            assert_eq!(r.status, 401, "the first failure is not limited");
        }
    }
    let elapsed = started.elapsed();
    eprintln!("user burst: {limited} of {BURST} limited in {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(60),
        "a burst of {BURST} logins took {elapsed:?}: limiting must come before hashing"
    );
    let allowed = limits.user_burst as usize + refills(elapsed);
    assert!(
        limited >= BURST.saturating_sub(allowed),
        "only {limited} of {BURST} failed logins were limited in {elapsed:?} (at most {allowed} may pass)"
    );

    // Another user, from another peer address, is not affected.
    let other_peer = berth.http_from("127.0.0.2".parse().unwrap());
    let r = berth.gql_raw_with(&other_peer, apollo.auth(), ME, json!({})).await;
    assert_eq!(r.status, 200, "apollo from 127.0.0.2: {}", r.body);
    // Hermes's remembered login still works: an attacker cannot lock out a session.
    let r = berth.gql_raw_with(&local, hermes.auth(), ME, json!({})).await;
    assert_eq!(r.status, 200, "hermes's remembered login: {}", r.body);

    // The per-peer limit: one wrong password each for many usernames from 127.0.0.3.
    // The per-user limit cannot explain a 429 here; only the peer's can.
    let spray = berth.http_from("127.0.0.3".parse().unwrap());
    const SPRAY: usize = 50;
    let started = Instant::now();
    let mut limited = 0;
    for i in 0..SPRAY {
        let r = berth.gql_raw_with(&spray, Auth::basic(&format!("ghost{i}"), "x"), ME, json!({})).await;
        match r.status {
            401 => {}
            429 => {
                limited += 1;
                assert_eq!(error_code(&r.body), Some("RATE_LIMITED"), "{}", r.body);
                assert!(r.header("retry-after").is_some());
            }
            other => panic!("spray {i}: unexpected HTTP {other}: {}", r.body),
        }
    }
    let elapsed = started.elapsed();
    eprintln!("peer spray: {limited} of {SPRAY} limited in {elapsed:?}");
    let allowed = limits.peer_burst as usize + refills(elapsed);
    assert!(
        limited >= SPRAY.saturating_sub(allowed),
        "only {limited} of {SPRAY} sprayed logins limited in {elapsed:?}"
    );
    assert!(limited > 0 || elapsed > Duration::from_secs(30), "the peer limit never applied in {elapsed:?}");
    // ... while athena, never seen before, logs in fine from yet another address.
    let fresh = berth.http_from(IpAddr::from([127, 0, 0, 4]));
    assert_eq!(berth.gql_raw_with(&fresh, athena.auth(), ME, json!({})).await.status, 200);
}

/// Only *failed* logins count against the limits (design §6): many customers behind one
/// address (an office NAT) each logging in correctly once are never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_logins_do_not_count_against_the_peer_limit() {
    let limits = berth_service::auth::AuthConfig::default();
    let berth = Berth::start().await;
    let office = berth.http_from("127.0.0.5".parse().unwrap());
    let count = limits.peer_burst as usize + 10;
    let mut customers = Vec::new();
    for i in 0..count {
        customers.push(berth.fixture_customer(&format!("clerk{i}")).await);
    }
    for clerk in &customers {
        let r = berth.gql_raw_with(&office, clerk.auth(), ME, json!({})).await;
        assert_eq!(r.status, 200, "{} logging in correctly from a shared address: {}", clerk.username, r.body);
    }
}
