//! The GraphQL endpoint as HTTP: GraphiQL served from the binary, limits on depth,
//! complexity and body size, and typed errors for malformed requests.

mod common;
#[path = "common/ws.rs"]
mod ws;

use common::{error_code, Auth, Berth};
use serde_json::json;
use ws::{Protocol, Ws};

/// A document whose argument value is nested `depth` deep.
fn nested(depth: usize) -> String {
    format!("{{ me(x: {}1{}) {{ company }} }}", "[".repeat(depth), "]".repeat(depth))
}

// A value nested 2,000 deep (4 KB, no credentials) overflowed a worker's stack and aborted
// the gateway. Refused before anything parses it, over POST, GET and the socket; the
// gateway goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_documents_are_refused_not_fatal() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    let post = berth.http().post(berth.url("/graphql")).json(&json!({ "query": nested(2000) })).send().await.unwrap();
    assert_eq!(post.status(), 400);
    let body: serde_json::Value = post.json().await.unwrap();
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let get = berth.http().get(berth.url("/graphql")).query(&[("query", nested(500))]).send().await.unwrap();
    assert_eq!(get.status(), 400);
    for protocol in Protocol::ALL {
        let mut socket = Ws::open(berth.addr, protocol, &kratos.auth().header().unwrap()).await;
        let id = socket.subscribe(&nested(2000), json!({})).await;
        let errors = socket.expect_error(&id).await;
        assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT", "{errors}");
        socket.close().await;
    }
    // Nesting a real query needs stays fine, and the gateway is alive.
    let body = berth.gql(kratos.auth(), &nested(20), json!({})).await;
    assert!(!body["errors"][0]["message"].as_str().unwrap().contains("nested"), "{body}");
    assert_eq!(berth.http().get(berth.url("/healthz")).send().await.unwrap().status(), 200);
}

// A client that sends half a request does not keep a stopping gateway alive: it waits for
// requests in progress a while (10 s), then exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_hold_a_stopping_gateway() {
    use tokio::io::AsyncWriteExt as _;
    let mut berth = Berth::start().await;
    let mut half = tokio::net::TcpStream::connect(berth.addr).await.unwrap();
    half.write_all(b"POST /graphql HTTP/1.1\r\nHost: berth\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    // The request has reached the server before the signal.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let status = berth.terminate().await;
    assert!(status.success(), "{status}");
    drop(half);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_is_served_from_the_binary() {
    let berth = Berth::start().await;
    let page = berth
        .http()
        .get(berth.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("GraphiQL"), "{html}");
    // Every script and stylesheet comes from this server, none from a CDN.
    let assets: Vec<&str> = html.split(['"', '\'']).filter(|s| s.ends_with(".js") || s.ends_with(".css")).collect();
    assert!(assets.len() >= 4, "{assets:?}");
    for asset in assets {
        assert!(asset.starts_with("/graphql/assets/"), "external asset {asset}");
        let r = berth.http().get(berth.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let ty = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ty.starts_with("text/javascript") || ty.starts_with("text/css"), "{asset}: {ty}");
        assert!(r.bytes().await.unwrap().len() > 1000, "{asset} is not the real bundle");
    }
    let missing = berth.http().get(berth.url("/graphql/assets/../../etc/passwd")).send().await.unwrap();
    assert_ne!(missing.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_and_complexity_are_limited() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    // Domains and containers refer to each other, so depth is only bounded by the limit.
    let mut deep = String::from("uid");
    for _ in 0..8 {
        deep = format!("domains {{ containers {{ {deep} }} }}");
    }
    let query = format!("{{ containers(first: 1) {{ edges {{ node {{ {deep} }} }} }} }}");
    let body = berth.gql(kratos.auth(), &query, json!({})).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(body.to_string().contains("nested too deep"), "{body}");

    let page =
        "containers(first: 100) { edges { node { uid name hostname ip memory storage uuid note tags sshKeys } } }";
    let many: String = (0..20).map(|i| format!("a{i}: {page} ")).collect();
    let body = berth.gql(kratos.auth(), &format!("{{ {many} }}"), json!({})).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(body.to_string().to_lowercase().contains("complex"), "{body}");

    // A legitimate nested page stays within both limits.
    berth
        .gql_ok(
            kratos.auth(),
            "{ containers(first: 100) { edges { node { uid server { name } distro { name } tags loopboxes { filename } linkedTo domains { name } } } } }",
            json!({}),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_typed_errors() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    let post = |body: Vec<u8>| {
        let request = berth
            .http()
            .post(berth.url("/graphql"))
            .header("content-type", "application/json")
            .header("authorization", Auth::basic(&kratos.username, &kratos.password).header().unwrap())
            .body(body);
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = post(b"{not json".to_vec()).await;
    assert_eq!((status, error_code(&body)), (400, Some("BAD_USER_INPUT")), "{body}");
    let (status, body) = post(b"[1, 2]".to_vec()).await;
    assert_eq!((status, error_code(&body)), (400, Some("BAD_USER_INPUT")), "{body}");
    let huge = format!("{{\"query\": \"{{ me {{ username }} }}\", \"x\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let (status, body) = post(huge.into_bytes()).await;
    assert_eq!((status, error_code(&body)), (413, Some("BAD_USER_INPUT")), "{body}");
    // Wrong argument types and unknown fields are the client's to fix, with a code.
    let body = berth.gql(kratos.auth(), "{ container(uid: \"abc\") { uid } }", json!({})).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = berth.gql(kratos.auth(), "{ me { password } }", json!({})).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = berth.gql(kratos.auth(), "{ me { username ", json!({})).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
}

/// GET answers queries only: a mutation over GET (a link or an `<img>` on another site, sent
/// with the browser's remembered basic credentials) is refused before it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_answers_queries_and_refuses_mutations() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    let authorization = Auth::basic(&kratos.username, &kratos.password).header().unwrap();
    let get = |query: &str, operation: Option<&str>| {
        let mut params = vec![("query", query.to_owned())];
        params.extend(operation.map(|name| ("operationName", name.to_owned())));
        let request = berth.http().get(berth.url("/graphql")).query(&params).header("authorization", &authorization);
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let allow = r.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
            (status, allow, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, _, body) = get("{ me { company } }", None).await;
    assert_eq!(status, 200, "{body}");
    let company = body["data"]["me"]["company"].clone();
    let with_variables = |variables: &str| {
        let params = [
            ("query", "query ($first: Int) { containers(first: $first) { edges { node { uid } } } }"),
            ("variables", variables),
        ];
        berth.http().get(berth.url("/graphql")).query(&params).header("authorization", &authorization).send()
    };
    let r = with_variables(r#"{"first": 1}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["errors"].is_null() && body["data"]["containers"]["edges"].is_array(), "{body}");
    let r = with_variables("{not json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json().await.unwrap()), Some("BAD_USER_INPUT"));

    let mutation = r#"mutation { updateMe(input: { company: "Changed over GET" }) { company } }"#;
    let (status, allow, body) = get(mutation, None).await;
    assert_eq!((status, allow.as_deref(), error_code(&body)), (405, Some("POST"), Some("BAD_USER_INPUT")), "{body}");
    let two = format!("query Read {{ me {{ company }} }} {}", mutation.replacen("mutation", "mutation Write", 1));
    let (status, _, body) = get(&two, Some("Write")).await;
    assert_eq!((status, error_code(&body)), (405, Some("BAD_USER_INPUT")), "{body}");
    let (status, _, body) = get(&two, Some("Read")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["me"]["company"], company, "nothing changed: {body}");

    // The same mutation over POST runs.
    let body = berth.gql_ok(kratos.auth(), mutation, json!({})).await;
    assert_eq!(body["updateMe"]["company"], "Changed over GET", "{body}");
}

/// A page on another site can make a browser POST a form (no preflight) with the basic
/// credentials the browser remembers; the body would be read as JSON. Such a request is
/// refused before it runs, while curl (no `Origin`) and browser clients sending JSON work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_form_posts_are_refused() {
    let berth = Berth::start().await;
    let kratos = berth.fixture_customer("kratos").await;
    let authorization = Auth::basic(&kratos.username, &kratos.password).header().unwrap();
    let mutation = |company: &str| {
        let query = format!("mutation {{ updateMe(input: {{ company: \"{company}\" }}) {{ company }} }}");
        json!({ "query": query })
    };
    let post = |origin: Option<&str>, content_type: Option<&str>, company: &str| {
        let mut request = berth
            .http()
            .post(berth.url("/graphql"))
            .header("authorization", &authorization)
            .body(mutation(company).to_string());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let company =
        || async { berth.gql_ok(kratos.auth(), "{ me { company } }", json!({})).await["me"]["company"].clone() };
    let before = company().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("Text/Plain;charset=UTF-8"),
        None,
    ] {
        let (status, body) = post(Some("http://attacker.example"), content_type, "Forged").await;
        assert_eq!((status, error_code(&body)), (403, Some("FORBIDDEN")), "{content_type:?}: {body}");
    }
    assert_eq!(company().await, before, "nothing ran");

    // curl's form type without Origin, and a browser client sending JSON, both run.
    let (status, body) = post(None, Some("application/x-www-form-urlencoded"), "By curl").await;
    assert_eq!((status, &body["data"]["updateMe"]["company"]), (200, &json!("By curl")), "{body}");
    let (status, body) = post(Some(&berth.url("")), Some("application/json"), "By GraphiQL").await;
    assert_eq!((status, &body["data"]["updateMe"]["company"]), (200, &json!("By GraphiQL")), "{body}");
}
