//! The REST shim route by route (spec §1–§4 as amended by §8): status lines (literal reason
//! phrases read from the raw socket), headers, body shapes and bytes, for success and every
//! error path the spec names.

mod common;
mod rest_common;

use common::Auth;
use rest_common::{basic_line, call_with, delete, get, post, python_separators, raw, send, world, World};
use serde_json::{json, Value};

const FORBIDDEN: &str = r#"{"error": "Forbidden"}"#;
const NOT_FOUND: &str = r#"{"error": "Not found"}"#;
const CONFLICT: &str = r#"{"error": "Conflict"}"#;
const BAD_REQUEST: &str = r#"{"error": "Bad Request"}"#;
const TOO_LARGE: &str = r#"{"error": "Request entity too large"}"#;
const RANGE_BAD: &str = r#"{"error": "Requested Range Not Satisfiable"}"#;
const METHOD_NOT_ALLOWED: &str = r#"{"error": "Method not allowed"}"#;
const OK: &str = r#"{"message": "Ok"}"#;
const UNAUTHORIZED: &str = r#"{"error": "Unauthorized"}"#;

fn p(path: impl AsRef<str>) -> String {
    format!("/api/{}", path.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_headers_auth_and_cors() {
    let w = world().await;
    let b = &w.berth;

    // Success: Content-Type exactly, CORS header, Python separators.
    let me = get(b, &p("me"), &w.k).await;
    me.expect_json(200);
    assert_eq!(me.header("access-control-allow-origin"), Some("*"));
    assert!(python_separators(&me.text), "{}", me.text);
    let c = get(b, &p(format!("containers/{}", w.k1)), &w.k).await;
    assert!(c.text.contains(&format!("\"uid\": {}", w.k1)), "{}", c.text);
    assert!(python_separators(&c.text), "{}", c.text);

    // 401 in every flavour: body, challenge, CORS, JSON.
    let wrong = Auth::basic("kratos", "nope");
    let no_colon = Auth::Raw("Basic a3JhdG9z".into()); // base64("kratos")
    for auth in [
        Auth::None,
        wrong,
        no_colon,
        Auth::Raw("Basic !!!".into()),
        Auth::Raw("Digest abc".into()),
        Auth::Raw("Basic".into()),
        Auth::basic("ghost", "x"),
    ] {
        for path in ["me", "containers", "distros", "tags", "alarms", "loopboxes", "domains", "custom_distros/"] {
            let r = get(b, &p(path), &auth).await;
            assert_eq!(r.expect_json(401), json!({"error": "Unauthorized"}), "{auth:?} {path}");
            assert_eq!(r.text, UNAUTHORIZED);
            assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"uwsgi.it api\""));
            assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        }
    }
    // Q1 fixed: passwords may contain ':' (split on the first one).
    b.admin(&["customer", "add", "--username", "colon", "--password", "a:b:c"]).await;
    get(b, &p("me"), &Auth::basic("colon", "a:b:c")).await.expect_json(200);
    // The scheme is case-insensitive.
    let lower = Auth::basic("kratos", &w.kratos.password).header().unwrap().replacen("Basic", "bAsIc", 1);
    get(b, &p("me"), &Auth::Raw(lower)).await.expect_json(200);

    // Hex headers for browser clients.
    let hex = |s: &str| s.bytes().map(|c| format!("{c:02x}")).collect::<String>();
    let (u, pw) = (hex("kratos"), hex(&w.kratos.password));
    let r =
        call_with(b, "GET", &p("me"), &Auth::None, None, &[("X-uwsgi-it-username", &u), ("X-uwsgi-it-password", &pw)])
            .await;
    assert_eq!(r.expect_json(200)["uuid"], w.kratos.uuid.as_str());
    for headers in [
        vec![("X-uwsgi-it-username", u.as_str())],
        vec![("X-uwsgi-it-password", pw.as_str())],
        vec![("X-uwsgi-it-username", u.as_str()), ("X-uwsgi-it-password", "zz")],
        vec![("X-uwsgi-it-username", "kratos"), ("X-uwsgi-it-password", pw.as_str())],
    ] {
        let r = call_with(b, "GET", &p("me"), &Auth::None, None, &headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
    }
    // An Authorization header alone decides, even when unusable.
    let r = call_with(
        b,
        "GET",
        &p("me"),
        &Auth::Raw("Basic !!!".into()),
        None,
        &[("X-uwsgi-it-username", &u), ("X-uwsgi-it-password", &pw)],
    )
    .await;
    assert_eq!(r.status, 401);

    // CORS pre-flight: no auth, no handler, the three headers, empty body.
    for path in [
        "me",
        "me/",
        "containers",
        &format!("containers/{}", w.z1),
        "alarms/raise/1",
        "portmappings/1.2.3.4",
        "metrics/container.cpu/1",
        "tags/5",
    ] {
        let r = send(b, "OPTIONS", &p(path), &Auth::None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.text, "", "{path}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST,DELETE,OPTIONS"));
        assert_eq!(r.header("access-control-allow-headers"), Some("X-uwsgi-it-username,X-uwsgi-it-password"));
    }

    // Literal reason phrases (§1.6): FORBIDDEN and NOT FOUND upper-case.
    let auth = basic_line("kratos", &w.kratos.password);
    let r = raw(b, &format!("GET /api/containers/{} HTTP/1.1\r\n{auth}", w.z1), b"").await;
    assert_eq!((r.status, r.reason.as_str(), r.text.as_str()), (403, "FORBIDDEN", FORBIDDEN));
    let r = raw(b, &format!("GET /api/domains/100 HTTP/1.1\r\n{auth}"), b"").await;
    assert_eq!((r.status, r.reason.as_str(), r.text.as_str()), (404, "NOT FOUND", NOT_FOUND));
    let r = raw(b, &format!("GET /api/metrics/container.cpu/{} HTTP/1.1\r\n{auth}", w.z1), b"").await;
    assert_eq!((r.status, r.reason.as_str(), r.text.as_str()), (403, "FORBIDDEN", "Forbidden\n"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = raw(b, "GET /api/me HTTP/1.1", b"").await;
    assert_eq!((r.status, r.reason.as_str()), (401, "Unauthorized"));
    let r = raw(b, &format!("GET /api/me HTTP/1.1\r\n{auth}"), b"").await;
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    let tag = br#"{"name": "phr"}"#;
    let r = raw(b, &format!("POST /api/tags HTTP/1.1\r\n{auth}\r\nContent-Length: {}", tag.len()), tag).await;
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
    // Unmatched URLs: 404 as well.
    let r = raw(b, &format!("GET /api/nothing/here HTTP/1.1\r\n{auth}"), b"").await;
    assert_eq!((r.status, r.reason.as_str()), (404, "NOT FOUND"));
    // Path numbers are `[0-9]+` (§1.1): a sign is not a number there either.
    for path in ["containers/abc", "containers/+30001", "containers/-1", "tags/%2B1", "alarms/+1", "loopboxes/1e3"] {
        let r = raw(b, &format!("GET /api/{path} HTTP/1.1\r\n{auth}"), b"").await;
        assert_eq!(r.status, 404, "{path}: not a path number, so no route matches");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_slash_bodies_and_limits() {
    let w = world().await;
    let b = &w.berth;
    let k = &w.k;
    let tag = post(b, &p("tags"), k, r#"{"name": "t1"}"#).await.expect_json(201);
    let tag_id = tag["id"].as_i64().unwrap();
    let domain =
        b.admin(&["domain", "add", "--customer", "kratos", "--name", "slash.test"]).await["id"].as_i64().unwrap();
    post(b, &p("loopboxes"), k, &format!(r#"{{"container": {}, "filename": "f", "mountpoint": "m"}}"#, w.k1))
        .await
        .expect_json(201);
    let lb = get(b, &p("loopboxes"), k).await.json()[0]["id"].as_i64().unwrap();
    post(b, &p(format!("alarms/raise/{}", w.k1)), k, "x").await.expect_json(201);
    let alarm = get(b, &p("alarms"), k).await.json()[0]["id"].as_i64().unwrap();

    // Every route with and without a trailing slash.
    for path in [
        "me".to_owned(),
        "me/containers".into(),
        "containers".into(),
        format!("containers/{}", w.k1),
        format!("containers/{}/domains", w.k1),
        "distros".into(),
        "custom_distros".into(),
        format!("custom_distros/{}", w.k1),
        "domains".into(),
        format!("domains/{domain}"),
        format!("domains/{domain}/containers"),
        "tags".into(),
        format!("tags/{tag_id}"),
        "news".into(),
        "loopboxes".into(),
        format!("loopboxes/{lb}"),
        "alarms".into(),
        format!("alarms/{alarm}"),
        format!("metrics/container.cpu/{}", w.k1),
        format!("metrics/domain.hits/{domain}"),
        format!("portmappings/{}", w.owned.address),
    ] {
        get(b, &p(&path), k).await.expect_json(200);
        if !path.starts_with("portmappings") {
            get(b, &p(format!("{path}/")), k).await.expect_json(200);
        }
    }
    // `<ip>` is the rest of the path: a trailing slash names another (unknown) server.
    get(b, &p(format!("portmappings/{}/", w.owned.address)), k).await.expect(403, FORBIDDEN);

    // JSON whatever the Content-Type (curl's form type, text/plain, none).
    for ct in ["application/x-www-form-urlencoded", "text/plain", "application/json"] {
        let r = call_with(b, "POST", &p("me"), k, Some(&format!(r#"{{"company": "{ct}"}}"#)), &[("Content-Type", ct)])
            .await;
        assert_eq!(r.expect_json(200)["company"], ct);
    }
    assert_eq!(post(b, &p("me"), k, r#"{"vat": "IT1"}"#).await.expect_json(200)["vat"], "IT1");
    // Q34 fixed: non-string values come back as stored (text).
    assert_eq!(post(b, &p("me"), k, r#"{"vat": 123}"#).await.expect_json(200)["vat"], "123");
    assert_eq!(get(b, &p("me"), k).await.json()["vat"], "123");
    // `{}` is a no-op on `me`.
    post(b, &p("me"), k, "{}").await.expect_json(200);

    // Invalid and non-object JSON: 400, nothing changed.
    let before = get(b, &p("me"), k).await.json();
    for bad in ["{", "{\"company\": }", "not json", "[1, 2]", "\"company\"", "12"] {
        post(b, &p("me"), k, bad).await.expect(400, BAD_REQUEST);
        post(b, &p(format!("containers/{}", w.k1)), k, bad).await.expect(400, BAD_REQUEST);
        post(b, &p("tags"), k, bad).await.expect(400, BAD_REQUEST);
        post(b, &p("loopboxes"), k, bad).await.expect(400, BAD_REQUEST);
        post(b, &p("containers"), k, bad).await.expect(400, BAD_REQUEST);
    }
    assert_eq!(get(b, &p("me"), k).await.json(), before);
    assert_eq!(b.count("tags").await, 1);
    assert_eq!(b.count("loopboxes").await, 1);

    // Falsy bodies: 403 on containers/<uid>, loopboxes/<id>, portmappings.
    let pm = p(format!("portmappings/{}", w.owned.address));
    for falsy in ["{}", "null", "[]", "0", "\"\"", "false", ""] {
        post(b, &p(format!("containers/{}", w.k1)), k, falsy).await.expect(403, FORBIDDEN);
        post(b, &p(format!("loopboxes/{lb}")), k, falsy).await.expect(403, FORBIDDEN);
        post(b, &pm, k, falsy).await.expect(403, FORBIDDEN);
        delete(b, &pm, k, Some(falsy)).await.expect(403, FORBIDDEN);
    }

    // 64 KiB: exactly the limit passes the size check, one byte more is 413 — declared by
    // Content-Length or streamed chunked without one. Nothing is changed by a 413.
    let auth = basic_line("kratos", &w.kratos.password);
    let padded = |len: usize| {
        let head = r#"{"company": ""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
    };
    let at_limit = padded(65536);
    let over = padded(65537);
    // (The service may refuse a 65 KB company name; the size check itself must pass.)
    let r = post(b, &p("me"), k, &at_limit).await;
    assert_ne!(r.status, 413, "{}", r.text);
    let before = get(b, &p("me"), k).await.json();
    for path in [
        "me".to_owned(),
        "containers".into(),
        format!("containers/{}", w.k1),
        "tags".into(),
        format!("tags/{tag_id}"),
        "domains".into(),
        format!("domains/{domain}"),
        "loopboxes".into(),
        format!("loopboxes/{lb}"),
        format!("alarms/raise/{}", w.k1),
        format!("portmappings/{}", w.owned.address),
        format!("custom_distros/{}", w.k1),
    ] {
        post(b, &p(&path), k, &over).await.expect(413, TOO_LARGE);
        let r =
            raw(b, &format!("POST /api/{path} HTTP/1.1\r\n{auth}\r\nContent-Length: {}", over.len()), over.as_bytes())
                .await;
        assert_eq!((r.status, r.text.as_str()), (413, TOO_LARGE), "{path}");
        let mut chunked = Vec::new();
        for piece in over.as_bytes().chunks(4096) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let r = raw(b, &format!("POST /api/{path} HTTP/1.1\r\n{auth}\r\nTransfer-Encoding: chunked"), &chunked).await;
        assert_eq!((r.status, r.text.as_str()), (413, TOO_LARGE), "chunked {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    delete(b, &p("domains"), k, Some(&over)).await.expect(413, TOO_LARGE);
    assert_eq!(get(b, &p("me"), k).await.json(), before);
    assert_eq!((b.count("alarms").await, b.count("tags").await, b.count("containers").await), (1, 1, 5));
    // A chunked body under the limit is read whole (Q27: no Content-Length needed).
    let small = br#"{"company": "chunky"}"#;
    let body = [format!("{:x}\r\n", small.len()).as_bytes(), small, b"\r\n0\r\n\r\n"].concat();
    let r = raw(b, &format!("POST /api/me HTTP/1.1\r\n{auth}\r\nTransfer-Encoding: chunked"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(get(b, &p("me"), k).await.json()["company"], "chunky");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_public_and_private() {
    let w = world().await;
    let b = &w.berth;
    b.admin(&["news", "add", "--content", "public one", "--public"]).await;
    b.admin(&["news", "add", "--content", "customers only"]).await;
    let contents = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| {
                assert!(n["date"].is_i64(), "{n}");
                n["content"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    for auth in [
        Auth::None,
        Auth::basic("None", "None"),
        Auth::basic("kratos", "wrong"),
        Auth::Raw("Basic !!!".into()),
        Auth::Raw("Bearer x".into()),
    ] {
        for path in ["news", "news/"] {
            let r = get(b, &p(path), &auth).await;
            assert_eq!(contents(r.expect_json(200)), ["public one"], "{auth:?}");
        }
    }
    let mut all = contents(get(b, &p("news"), &w.k).await.expect_json(200));
    all.sort();
    assert_eq!(all, ["customers only", "public one"]);
    let hex = |s: &str| s.bytes().map(|c| format!("{c:02x}")).collect::<String>();
    let r = call_with(
        b,
        "GET",
        &p("news"),
        &Auth::None,
        None,
        &[("X-uwsgi-it-username", &hex("zeus")), ("X-uwsgi-it-password", &hex(&w.zeus.password))],
    )
    .await;
    assert_eq!(contents(r.expect_json(200)).len(), 2);
    // Any method behaves like GET; OPTIONS on news is no pre-flight (§2.3).
    assert_eq!(contents(send(b, "OPTIONS", &p("news"), &Auth::None).await.expect_json(200)), ["public one"]);
    assert_eq!(contents(send(b, "POST", &p("news"), &Auth::None).await.expect_json(200)), ["public one"]);
}

async fn raise(w: &World, query: &str, body: &str) -> rest_common::Reply {
    post(&w.berth, &p(format!("alarms/raise/{}{query}", w.k1)), &w.k, body).await
}

fn msgs(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|a| a["msg"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_listing_range_and_raise() {
    let w = world().await;
    let b = &w.berth;
    let k = &w.k;
    for i in 0..10 {
        let class = if i % 2 == 0 { "even" } else { "odd" };
        let r = raise(
            &w,
            &format!("?unix={}&class={class}&level={}&line={i}", 1_600_000_000 + i, 1 + i % 3),
            &format!("a{i}"),
        )
        .await;
        assert_eq!(r.expect_json(201)["message"], "Created");
    }
    let list = |q: &str| {
        let q = q.to_owned();
        async move { get(b, &p(format!("alarms{q}")), k).await }
    };
    assert_eq!(msgs(&list("").await.expect_json(200)), ["a9", "a8", "a7", "a6", "a5", "a4", "a3", "a2", "a1", "a0"]);
    assert_eq!(msgs(&list("?range=3").await.expect_json(200)), ["a9", "a8", "a7"]);
    // A repeated key: the last value wins (§1.3).
    assert_eq!(msgs(&list("?range=1&range=2").await.expect_json(200)), ["a9", "a8"]);
    assert!(python_separators(&list("?range=2").await.text));
    assert_eq!(msgs(&list("?range=3-6").await.expect_json(200)), ["a6", "a5", "a4"]);
    assert_eq!(msgs(&list("?range=6-3").await.expect_json(200)), ["a3", "a4", "a5"], "Q21 replicated");
    assert_eq!(msgs(&list("?range=0").await.expect_json(200)), Vec::<String>::new());
    assert_eq!(msgs(&list("?range=9-10").await.expect_json(200)), ["a0"], "Q20 fixed: numeric comparison");
    assert_eq!(msgs(&list("?range=5-20").await.expect_json(200)), ["a4", "a3", "a2", "a1", "a0"]);
    for bad in ["6-a", "6-", "-a", "a", "", "1-2-3", "-1"] {
        let r = list(&format!("?range={bad}")).await;
        assert_eq!((r.status, r.text.as_str()), (416, RANGE_BAD), "range={bad}");
        let r = list(&format!("?with_total&range={bad}")).await;
        assert_eq!(r.status, 416, "with_total&range={bad}");
    }
    // with_total: an object with the count before the window.
    let t = list("?with_total&range=3-6").await.expect_json(200);
    assert_eq!(t["total"], 10);
    assert_eq!(msgs(&t["alarms"]), ["a6", "a5", "a4"]);
    let t = list("?with_total=&class=odd").await.expect_json(200);
    assert_eq!(
        (t["total"].as_i64(), msgs(&t["alarms"])),
        (Some(5), vec!["a9".into(), "a7".into(), "a5".into(), "a3".into(), "a1".into()])
    );
    // Filters.
    assert_eq!(msgs(&list("?class=even&range=2").await.expect_json(200)), ["a8", "a6"]);
    assert_eq!(msgs(&list("?line=4").await.expect_json(200)), ["a4"]);
    assert_eq!(msgs(&list("?level=3&class=odd").await.expect_json(200)), ["a5"]);
    assert_eq!(msgs(&list(&format!("?container={}", w.k1)).await.expect_json(200)).len(), 10);
    assert_eq!(msgs(&list(&format!("?container={}", w.k2)).await.expect_json(200)).len(), 0);
    for bad in ["?level=x", "?line=1.5"] {
        list(bad).await.expect(400, BAD_REQUEST);
    }
    for bad in [format!("?container={}", w.z1), "?container=abc".into(), "?container=99999".into()] {
        list(&bad).await.expect(403, FORBIDDEN);
    }
    // Alarm object shape.
    let a = list("?range=1").await.expect_json(200)[0].clone();
    let keys: std::collections::BTreeSet<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["class", "color", "container", "filename", "func", "id", "level", "line", "msg", "unix", "vassal"].into()
    );
    assert_eq!(
        (a["container"].as_i64(), a["color"].as_str(), a["unix"].as_i64()),
        (Some(w.k1), Some("#ffffff"), Some(1_600_000_009))
    );
    let id = a["id"].as_i64().unwrap();
    assert_eq!(get(b, &p(format!("alarms/{id}")), k).await.expect_json(200), a);
    // Any other method on alarms lists (reference), DELETE on an item deletes.
    assert_eq!(msgs(&send(b, "DELETE", &p("alarms"), k).await.expect_json(200)).len(), 10);
    delete(b, &p(format!("alarms/{id}")), k, None).await.expect(200, OK);
    get(b, &p(format!("alarms/{id}")), k).await.expect(403, FORBIDDEN);
    delete(b, &p(format!("alarms/{id}")), k, None).await.expect(403, FORBIDDEN);
    assert_eq!(b.count("alarms").await, 9);

    // Raising: raw body verbatim, query fields, checks.
    let before = b.count("alarms").await;
    raise(&w, "?color=00ff00&vassal=v&func=f&filename=app.py", "\"myalarm\"").await.expect_json(201);
    let top = list("?vassal=v").await.expect_json(200)[0].clone();
    assert_eq!(
        (top["msg"].as_str(), top["color"].as_str(), top["level"].as_i64()),
        (Some("\"myalarm\""), Some("#00ff00"), Some(1))
    );
    assert_eq!((top["func"].as_str(), top["filename"].as_str()), (Some("f"), Some("app.py")));
    raise(&w, "?vassal=raw", "{not json at all").await.expect_json(201);
    assert_eq!(list("?vassal=raw").await.json()[0]["msg"], "{not json at all");
    raise(&w, "?vassal=empty", "").await.expect_json(201);
    assert_eq!(list("?vassal=empty").await.json()[0]["msg"], "");
    assert_eq!(b.count("alarms").await, before + 3);
    let before = before + 3;
    raise(&w, "?level=0", "x").await.expect(403, FORBIDDEN);
    raise(&w, "?level=-2", "x").await.expect(403, FORBIDDEN);
    raise(&w, "?color=%23ff00", "x").await.expect(409, CONFLICT);
    raise(&w, "?color=red", "x").await.expect(409, CONFLICT);
    raise(&w, "?line=-1", "x").await.expect(409, CONFLICT);
    raise(&w, "?line=abc", "x").await.expect(409, CONFLICT);
    raise(&w, "?level=abc", "x").await.expect(400, BAD_REQUEST);
    raise(&w, "?unix=soon", "x").await.expect(400, BAD_REQUEST);
    assert_eq!(b.count("alarms").await, before, "refused raises store nothing");
    // Other methods: 405 after auth and lookup.
    get(b, &p(format!("alarms/raise/{}", w.k1)), k).await.expect(405, METHOD_NOT_ALLOWED);
    get(b, &p(format!("alarms/raise/{}", w.z1)), k).await.expect(403, FORBIDDEN);
    get(b, &p(format!("alarms/raise/{}", w.k1)), &Auth::None).await.expect(401, UNAUTHORIZED);
    // The trigger alias.
    post(b, &p(format!("alarms/trigger/{}?vassal=trig", w.k1)), k, "t").await.expect_json(201);
    assert_eq!(list("?vassal=trig").await.json()[0]["msg"], "t");

    // Alarm key: a GET regenerates; the key authenticates raises of that container only.
    let key1 = get(b, &p(format!("alarm_key/{}", w.k1)), k).await.expect_json(200);
    assert_eq!(key1["message"], "Ok");
    let key1 = key1["alarm_key"].as_str().unwrap().to_owned();
    assert_eq!(key1.len(), 36);
    let by_key = |uid: i64, key: String, body: &'static str| async move {
        post(b, &p(format!("alarms/raise/{uid}?key={key}&vassal=key")), &Auth::None, body).await
    };
    by_key(w.k1, key1.clone(), "via key").await.expect_json(201);
    assert_eq!(list("?vassal=key").await.json()[0]["msg"], "via key");
    let key2 = post(b, &p(format!("alarm_key/{}", w.k1)), k, "").await.expect_json(200)["alarm_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(key1, key2);
    by_key(w.k1, key1.clone(), "old key").await.expect(401, UNAUTHORIZED);
    by_key(w.k1, key2[..35].to_owned(), "short").await.expect(401, UNAUTHORIZED);
    by_key(w.k2, key2.clone(), "other container").await.expect(401, UNAUTHORIZED);
    by_key(w.k1, "x".repeat(36), "garbage").await.expect(401, UNAUTHORIZED);
    by_key(w.k1, key2.clone(), "new key").await.expect_json(201);
    // Credentials present (even wrong ones) mean the key is not consulted.
    let r = post(b, &p(format!("alarms/raise/{}?key={key2}", w.k1)), &Auth::basic("kratos", "wrong"), "x").await;
    assert_eq!(r.status, 401);
    assert_eq!(msgs(&list("?vassal=key").await.json()), ["new key", "via key"]);
    get(b, &p(format!("alarm_key/{}", w.z1)), k).await.expect(403, FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_routes() {
    use berth_model::{ContainerMetric, Day, DomainMetric};
    let w = world().await;
    let b = &w.berth;
    let k = &w.k;
    let domain = b.admin(&["domain", "add", "--customer", "kratos", "--name", "m.test"]).await["id"].as_i64().unwrap();
    let zdomain = b.admin(&["domain", "add", "--customer", "zeus", "--name", "z.test"]).await["id"].as_i64().unwrap();
    let today = berth_service::metrics::today_utc();
    let past = Day { year: 2024, month: 2, day: 29 };

    // Empty: `[]` with an Expires header.
    for kind in ["io.read", "io.write", "net.rx", "net.tx", "cpu", "mem", "mem.rss", "mem.cache", "quota"] {
        let r = get(b, &p(format!("metrics/container.{kind}/{}", w.k1)), k).await;
        assert_eq!((r.status, r.text.as_str()), (200, "[]"), "{kind}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("expires").is_some_and(|e| e.ends_with(" GMT")), "{:?}", r.header("expires"));
    }
    for kind in ["net.rx", "net.tx", "hits"] {
        let r = get(b, &p(format!("metrics/domain.{kind}/{domain}")), k).await;
        assert_eq!((r.status, r.text.as_str()), (200, "[]"), "{kind}");
        assert!(r.header("expires").is_some());
    }
    {
        let mut conn = b.store().await.read().await.unwrap();
        use berth_store::metrics::{append_container_sample as add, append_domain_sample as add_d};
        let id = w.k1 - 30000;
        add(&mut conn, id, ContainerMetric::IoWrite, today, 1420070400, 123456).await.unwrap();
        add(&mut conn, id, ContainerMetric::IoWrite, today, 1420070700, 123999).await.unwrap();
        add(&mut conn, id, ContainerMetric::IoRead, today, 1420070400, 5).await.unwrap();
        add(&mut conn, id, ContainerMetric::Cpu, past, 7, 70).await.unwrap();
        add_d(&mut conn, domain, id, DomainMetric::Hits, today, 10, 3).await.unwrap();
        add_d(&mut conn, domain, w.k2 - 30000, DomainMetric::Hits, today, 11, 4).await.unwrap();
        add(&mut conn, w.z1 - 30000, ContainerMetric::Cpu, today, 1, 1).await.unwrap();
    }
    let r = get(b, &p(format!("metrics/container.io.write/{}", w.k1)), k).await;
    assert_eq!(r.text, "[[1420070400, 123456], [1420070700, 123999]]", "verbatim; Q23 fixed");
    let r = get(b, &p(format!("metrics/container.io.read/{}", w.k1)), k).await;
    assert_eq!(r.text, "[[1420070400, 5]]");
    let r = get(b, &p(format!("metrics/container.cpu/{}?year=2024&month=2&day=29", w.k1)), k).await;
    assert_eq!(r.text, "[[7, 70]]");
    assert_eq!(get(b, &p(format!("metrics/container.cpu/{}", w.k1)), k).await.text, "[]");
    let r = get(b, &p(format!("metrics/domain.hits/{domain}")), k).await;
    assert_eq!(
        r.text,
        format!(
            "[{{ \"container\": {}, \"metrics\": [[10, 3]] }},{{ \"container\": {}, \"metrics\": [[11, 4]] }}]",
            w.k1, w.k2
        )
    );
    // Q24 fixed: today expires soon, past days much later.
    let expires = |r: &rest_common::Reply| httpdate_secs(r.header("expires").unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t = expires(&get(b, &p(format!("metrics/container.io.write/{}", w.k1)), k).await) - now;
    let past_ttl =
        expires(&get(b, &p(format!("metrics/container.cpu/{}?year=2024&month=2&day=29", w.k1)), k).await) - now;
    assert!(t <= 301, "today's TTL {t}");
    assert!(past_ttl > 3600, "past day's TTL {past_ttl}");
    // Foreign or unknown: plain-text 403.
    for path in [
        format!("metrics/container.cpu/{}", w.z1),
        "metrics/container.cpu/99999".into(),
        "metrics/container.cpu/1".into(),
        format!("metrics/domain.hits/{zdomain}"),
        "metrics/domain.hits/99999".into(),
    ] {
        let r = get(b, &p(&path), k).await;
        assert_eq!((r.status, r.text.as_str()), (403, "Forbidden\n"), "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    }
    // Bad parameters: 400 (Q33); unknown kinds match no route.
    for q in ["?year=x", "?month=13", "?day=0", "?year=2023&month=2&day=29"] {
        get(b, &p(format!("metrics/container.cpu/{}{q}", w.k1)), k).await.expect(400, BAD_REQUEST);
    }
    get(b, &p(format!("metrics/container.hits/{}", w.k1)), k).await.expect(404, NOT_FOUND);
    get(b, &p(format!("metrics/domain.cpu/{domain}")), k).await.expect(404, NOT_FOUND);
}

fn httpdate_secs(text: &str) -> i64 {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let parts: Vec<&str> = text.split_whitespace().collect();
    let day: i64 = parts[1].parse().unwrap();
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == parts[2])
        .unwrap() as i64
        + 1;
    let year: i64 = parts[3].parse().unwrap();
    let hms: Vec<i64> = parts[4].split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_mappings_rules() {
    let w = world().await;
    let b = &w.berth;
    let k = &w.k;
    let pm = p(format!("portmappings/{}", w.owned.address));
    let map = |c: i64, proto: &str, public: i64, private: i64| {
        json!({"container": c, "proto": proto, "public_port": public, "private_port": private}).to_string()
    };
    post(b, &pm, k, &map(w.k1, "tcp", 1024, 65535)).await.expect_json(201);
    post(b, &pm, k, &map(w.k1, "udp", 1024, 8000)).await.expect_json(201);
    post(b, &pm, k, &map(w.k2, "tcp", 9000, 8000)).await.expect_json(201);
    // Numeric strings are accepted like the reference's int().
    post(b, &pm, k, r#"{"container": "CONTAINER", "proto": "tcp", "public_port": "9001", "private_port": "8001"}"#.replace("CONTAINER", &w.k2.to_string()).as_str())
        .await
        .expect_json(201);
    let n = b.count("portmaps").await;
    assert_eq!(n, 4);
    for bad in [
        map(w.k1, "tcp", 1999, 8000),
        map(w.k1, "tcp", 3022, 8000),
        map(w.k1, "tcp", 3026, 8000),
        map(w.k1, "tcp", 1023, 8000),
        map(w.k1, "tcp", 65536, 8000),
        map(w.k1, "tcp", 9100, 1023),
        map(w.k1, "tcp", 9100, 65536),
        map(w.k1, "icmp", 9100, 8000),
        map(w.k1, "TCP", 9100, 8000),
        // Q13 fixed: a public port is unique per server and protocol, across containers.
        map(w.k1, "tcp", 9000, 8000),
        map(w.k2, "tcp", 9000, 8001),
        // Not on this server / not kratos' / unknown.
        map(w.k3, "tcp", 9100, 8000),
        map(w.z2, "tcp", 9100, 8000),
        map(w.z1, "tcp", 9100, 8000),
        map(99999, "tcp", 9100, 8000),
        r#"{"proto": "tcp", "public_port": 9100, "private_port": 8000}"#.to_owned(),
        format!(r#"{{"container": {}, "proto": "tcp", "public_port": "x", "private_port": 8000}}"#, w.k1),
        format!(r#"{{"container": {}, "proto": 5, "public_port": 9100, "private_port": 8000}}"#, w.k1),
    ] {
        post(b, &pm, k, &bad).await.expect(403, FORBIDDEN);
    }
    assert_eq!(b.count("portmaps").await, n, "refused mappings store nothing");
    let list = get(b, &pm, k).await.expect_json(200);
    assert_eq!(list.as_array().unwrap().len(), 4);
    let first = list.as_array().unwrap().iter().find(|m| m["public_port"] == 1024 && m["proto"] == "tcp").unwrap();
    let keys: std::collections::BTreeSet<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["container", "container_ip", "id", "private_port", "proto", "public_port"].into());
    // Other methods list too.
    assert_eq!(send(b, "PUT", &pm, k).await.expect_json(200), list);
    // Delete: id required, must be on this server.
    let id = first["id"].as_i64().unwrap();
    delete(b, &pm, k, Some(r#"{"idx": 1}"#)).await.expect(403, FORBIDDEN);
    delete(b, &pm, k, Some(r#"{"id": 99999}"#)).await.expect(403, FORBIDDEN);
    delete(b, &p(format!("portmappings/{}", w.zeus_server.address)), k, Some(&format!(r#"{{"id": {id}}}"#)))
        .await
        .expect(403, FORBIDDEN);
    delete(b, &pm, k, Some("{bad")).await.expect(400, BAD_REQUEST);
    assert_eq!(b.count("portmaps").await, n);
    delete(b, &pm, k, Some(&format!(r#"{{"id": {id}}}"#))).await.expect(200, OK);
    assert_eq!(b.count("portmaps").await, n - 1);
    // The freed port can be mapped again.
    post(b, &pm, k, &map(w.k2, "tcp", 1024, 8002)).await.expect_json(201);
    // A private port is unique per container and protocol.
    post(b, &pm, k, &map(w.k2, "tcp", 9300, 8002)).await.expect(403, FORBIDDEN);
    // Servers kratos does not own, unknown addresses, garbage.
    for ip in [w.platform.address.as_str(), w.zeus_server.address.as_str(), "10.9.9.9", "not-an-ip", "1.2.3.4/extra"] {
        get(b, &p(format!("portmappings/{ip}")), k).await.expect(403, FORBIDDEN);
        post(b, &p(format!("portmappings/{ip}")), k, &map(w.k1, "tcp", 9500, 8000)).await.expect(403, FORBIDDEN);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_distros_routes() {
    let w = world().await;
    let b = &w.berth;
    let k = &w.k;
    let cd = |uid: i64| p(format!("custom_distros/{uid}"));
    // Not a storage container yet: 403.
    post(b, &cd(w.k1), k, r#"{"name": "mine", "path": "mine"}"#).await.expect(403, FORBIDDEN);
    post(b, &p(format!("containers/{}", w.k1)), k, r#"{"custom_distros_storage": true}"#).await.expect_json(200);
    let created =
        post(b, &cd(w.k1), k, r#"{"name": "mine", "path": "mine-1.0_x", "note": "n"}"#).await.expect_json(201);
    assert_eq!(created["message"], "Created");
    for bad in [
        r#"{"name": "mine", "path": "other"}"#,       // duplicate name
        r#"{"name": "other", "path": "mine-1.0_x"}"#, // duplicate path
        r#"{"name": "x", "path": ".."}"#,             // Q14
        r#"{"name": "x", "path": "."}"#,
        r#"{"name": "x", "path": "a/b"}"#,
        r#"{"name": "x", "path": "a b"}"#,
        r#"{"name": "", "path": "p"}"#,
        r#"{"name": "x", "path": ""}"#,
        r#"{"path": "p"}"#,
    ] {
        post(b, &cd(w.k1), k, bad).await.expect(403, FORBIDDEN);
    }
    assert_eq!(b.count("custom_distros").await, 1);
    let mine = get(b, &p("custom_distros/"), k).await.expect_json(200);
    assert_eq!(mine, get(b, &p("custom_distros"), k).await.expect_json(200));
    let id = mine[0]["id"].as_i64().unwrap();
    assert_eq!(mine, json!([{"id": id, "name": "mine", "container": w.k1}]));
    // Usable by another container of kratos on the same server, not by itself nor by k3.
    assert_eq!(get(b, &cd(w.k2), k).await.expect_json(200), json!([{"id": id, "name": "mine"}]));
    assert_eq!(get(b, &cd(w.k1), k).await.expect_json(200), json!([]));
    assert_eq!(get(b, &cd(w.k3), k).await.expect_json(200), json!([]));
    get(b, &cd(w.z1), k).await.expect(403, FORBIDDEN);
    // Detail, update (Q16 fixed), validation on update.
    let one = p(format!("custom_distro/{id}"));
    let d = get(b, &one, k).await.expect_json(200);
    assert_eq!(
        (d["container"].as_i64(), d["path"].as_str(), d["note"].as_str()),
        (Some(w.k1), Some("mine-1.0_x"), Some("n"))
    );
    assert_eq!(d["uuid"].as_str().unwrap().len(), 36);
    let d = post(b, &one, k, r#"{"name": "renamed", "note": "m"}"#).await.expect_json(200);
    assert_eq!(
        (d["name"].as_str(), d["note"].as_str(), d["path"].as_str()),
        (Some("renamed"), Some("m"), Some("mine-1.0_x"))
    );
    post(b, &one, k, r#"{"path": ".."}"#).await.expect(403, FORBIDDEN);
    get(b, &p("custom_distro/"), k).await.expect(403, FORBIDDEN);
    get(b, &p("custom_distro/99999"), k).await.expect(403, FORBIDDEN);
    // Use it from k2; the detail names it (Q6); k3 (other server) cannot.
    let c =
        post(b, &p(format!("containers/{}", w.k2)), k, &format!(r#"{{"custom_distro": {id}}}"#)).await.expect_json(200);
    assert_eq!((c["custom_distro"].as_i64(), c["custom_distro_name"].as_str()), (Some(id), Some("renamed")));
    let r = post(b, &p(format!("containers/{}", w.k3)), k, &format!(r#"{{"custom_distro": {id}}}"#)).await;
    assert_eq!(r.expect_json(409)["error"], "Conflict");
    let r = post(b, &p(format!("containers/{}", w.k1)), k, &format!(r#"{{"custom_distro": {id}}}"#)).await;
    assert_eq!(r.status, 409, "not from its own storage container");
    let listed = get(b, &p("containers"), k).await.json();
    let k2 = listed.as_array().unwrap().iter().find(|c| c["uid"] == w.k2).unwrap();
    assert_eq!(k2["custom_distro_name"], "renamed");
    // Delete (Q15 fixed): the user is kept and loses the reference.
    let before = get(b, &p(format!("containers/{}", w.k2)), k).await.json()["generation"].as_i64().unwrap();
    delete(b, &one, k, None).await.expect(200, OK);
    let c = get(b, &p(format!("containers/{}", w.k2)), k).await.expect_json(200);
    assert_eq!(c["custom_distro"], Value::Null);
    assert!(c.get("custom_distro_name").is_none_or(|v| v.is_null()));
    assert!(c["generation"].as_i64().unwrap() > before, "the user reboots");
    assert_eq!(b.count("containers").await, 5);
    get(b, &one, k).await.expect(403, FORBIDDEN);
    // custom_distro: null unsets (Q9).
    post(b, &cd(w.k1), k, r#"{"name": "again", "path": "again"}"#).await.expect_json(201);
    let id = get(b, &p("custom_distros"), k).await.json()[0]["id"].as_i64().unwrap();
    post(b, &p(format!("containers/{}", w.k2)), k, &format!(r#"{{"custom_distro": {id}}}"#)).await.expect_json(200);
    let c = post(b, &p(format!("containers/{}", w.k2)), k, r#"{"custom_distro": null}"#).await.expect_json(200);
    assert_eq!(c["custom_distro"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_create_update_and_no_delete() {
    let w = world().await;
    let b = &w.berth;
    let k = &w.k;
    let addr = &w.owned.address;
    let create = |body: Value| async move { post(b, &p("containers"), k, &body.to_string()).await };
    // Q3 replicated: 200 with an error body; the limits are exact.
    let used_mem = 1000; // k1 + k2
    let r = create(json!({"server": addr, "name": "big", "memory": 10000 - used_mem + 1, "storage": 10})).await;
    assert_eq!(r.expect_json(200), json!({"error": "Conflict", "reason": "not enough memory"}));
    let r = create(json!({"server": addr, "name": "big", "memory": 10, "storage": 100000 - 2000 + 1})).await;
    assert_eq!(r.expect_json(200), json!({"error": "Conflict", "reason": "not enough storage"}));
    for (m, s, reason) in [(0, 10, "not enough memory"), (-5, 10, "not enough memory"), (10, 0, "not enough storage")] {
        let r = create(json!({"server": addr, "name": "z", "memory": m, "storage": s})).await;
        assert_eq!(r.expect_json(200), json!({"error": "Conflict", "reason": reason}), "{m} {s}");
    }
    // Missing keys, foreign/unknown servers: 403.
    for body in [
        json!({"name": "x", "memory": 1, "storage": 1}),
        json!({"server": addr, "memory": 1, "storage": 1}),
        json!({"server": addr, "name": "x", "storage": 1}),
        json!({"server": addr, "name": "x", "memory": 1}),
        json!({"server": w.platform.address, "name": "x", "memory": 1, "storage": 1}),
        json!({"server": w.zeus_server.address, "name": "x", "memory": 1, "storage": 1}),
        json!({"server": "10.99.99.99", "name": "x", "memory": 1, "storage": 1}),
    ] {
        create(body.clone()).await.expect(403, FORBIDDEN);
    }
    assert_eq!(b.count("containers").await, 5);
    // Exactly the free amount is allowed; numeric strings are accepted.
    let r = create(json!({"server": addr, "name": "full", "memory": "9000", "storage": 98000})).await;
    assert_eq!(r.expect_json(201)["message"], "Created");
    let r = create(json!({"server": addr, "name": "more", "memory": 1, "storage": 1})).await;
    assert_eq!(r.expect_json(200)["error"], "Conflict");
    assert_eq!(b.count("containers").await, 6);
    let full = get(b, &p("containers"), k)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "full")
        .unwrap()
        .clone();
    for key in [
        "uid",
        "name",
        "hostname",
        "ip",
        "memory",
        "storage",
        "uuid",
        "distro",
        "distro_name",
        "custom_distro",
        "custom_distro_name",
        "server",
        "server_address",
        "tags",
    ] {
        assert!(full.get(key).is_some(), "summary has {key}: {full}");
    }
    // me/containers is the same handler.
    assert_eq!(get(b, &p("me/containers"), k).await.expect_json(200), get(b, &p("containers"), k).await.json());

    // Update: every key of §4.3; the generation moves only for restart-relevant changes.
    let uid = w.k1;
    let path = p(format!("containers/{uid}"));
    let generation = |c: &Value| c["generation"].as_i64().unwrap_or_else(|| panic!("generation in {c}"));
    let mut last = generation(&get(b, &path, k).await.expect_json(200));
    b.admin(&["distro", "add", "--name", "deb", "--path", "/d/deb"]).await;
    let tag = post(b, &p("tags"), k, r#"{"name": "web"}"#).await.expect_json(201);
    let _ = tag;
    for (body, bumps, check) in [
        (json!({"note": "just a note"}), false, ("note", json!("just a note"))),
        (
            json!({"ssh_keys": ["ssh-ed25519 AAA k1", "ssh-rsa BBB k2"]}),
            false,
            ("ssh_keys", json!(["ssh-ed25519 AAA k1", "ssh-rsa BBB k2"])),
        ),
        (json!({"tags": ["web", "unknown"]}), false, ("tags", json!(["web"]))),
        (json!({"name": "my app.v2"}), true, ("hostname", json!("my-app-v2"))),
        // No upper bound (§4.3 step 11): above 100 the alarm waits for use past the storage.
        (json!({"quota_threshold": 150}), true, ("quota_threshold", json!(150))),
        (json!({"quota_threshold": 75}), true, ("quota_threshold", json!(75))),
        // Below 60 is raised to 60 — the default, so nothing changes.
        (json!({"alarm_freq": 30}), false, ("alarm_freq", json!(60))),
        (json!({"alarm_freq": "120"}), true, ("alarm_freq", json!(120))),
        (json!({"jid": "a@b.example"}), true, ("jid", json!("a@b.example"))),
        (json!({"jid_secret": "s"}), true, ("jid", json!("a@b.example"))),
        (json!({"jid_destinations": "c@d.example"}), true, ("jid_destinations", json!("c@d.example"))),
        (json!({"pushover_user": "u"}), true, ("pushover_user", json!("u"))),
        (json!({"pushover_token": "t"}), true, ("pushover_token", json!("t"))),
        (json!({"pushover_sound": "s"}), true, ("pushover_sound", json!("s"))),
        (json!({"pushbullet_token": "pb"}), true, ("pushbullet_token", json!("pb"))),
        (json!({"slack_webhook": "https://h.example"}), true, ("slack_webhook", json!("https://h.example"))),
        (json!({"nofollow": "t"}), true, ("nofollow", json!(true))),
        (json!({"nofollow": 0}), true, ("nofollow", json!(false))),
        (json!({"custom_distros_storage": "True"}), true, ("custom_distros_storage", json!(true))),
        (json!({"distro": 1}), true, ("distro_name", json!("deb"))),
        (json!({"memory": 400}), true, ("memory", json!(400))),
        (json!({"storage": "900"}), true, ("storage", json!(900))),
        (json!({"reboot": 0}), true, ("name", json!("my app.v2"))),
        (json!({"link": w.z1}), true, ("linked_to", json!([w.z1]))),
        (json!({"unlink": w.z1}), true, ("linked_to", json!([]))),
        (json!({"unknown_key": 1, "note": "n2"}), false, ("note", json!("n2"))),
        // Same values again: nothing restart-relevant changes.
        (json!({"name": "my app.v2", "quota_threshold": 75, "memory": 400}), false, ("memory", json!(400))),
    ] {
        let c = post(b, &path, k, &body.to_string()).await.expect_json(200);
        assert_eq!(c[check.0], check.1, "{body}: {c}");
        let g = generation(&c);
        assert_eq!(g, if bumps { last + 1 } else { last }, "generation after {body}");
        assert_eq!(generation(&get(b, &path, k).await.json()), g);
        last = g;
    }
    assert!(get(b, &path, k).await.json().get("jid_secret").is_none());
    // Failures: 409 with a reason (Q9, Q10, Q30, Q31), 400 for non-list keys (Q8); nothing
    // changes — Q7: all or nothing even when tags/link come first.
    let before = get(b, &path, k).await.json();
    let rows = |t: &'static str| async move { b.count(t).await };
    let links_before = rows("container_links").await;
    for (body, status) in [
        (json!({"tags": [], "distro": 999}), 409),
        (json!({"tags": [], "link": w.z1, "distro": null}), 409),
        (json!({"link": w.z1, "unlink": w.k2}), 409),
        (json!({"ssh_keys": [], "memory": 0}), 409),
        (json!({"note": "x", "storage": -1}), 409),
        (json!({"tags": [], "memory": 100000}), 409),
        (json!({"tags": [], "storage": 1000000}), 409),
        (json!({"tags": [], "name": ""}), 409),
        (json!({"tags": [], "name": null}), 409),
        (json!({"tags": [], "link": uid}), 409),
        (json!({"tags": [], "link": 99999}), 409),
        (json!({"tags": [], "link": "abc"}), 409),
        (json!({"tags": [], "unlink": w.k2}), 409),
        (json!({"tags": [], "nofollow": "maybe"}), 409),
        (json!({"tags": [], "quota_threshold": "x"}), 409),
        (json!({"tags": [], "custom_distro": 12345}), 409),
        (json!({"tags": [], "ssh_keys": "ssh-rsa AAA"}), 400),
        (json!({"note": "x", "tags": "web"}), 400),
        (json!({"ssh_keys": [1, 2]}), 400),
    ] {
        let r = post(b, &path, k, &body.to_string()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        if status == 409 {
            let v = r.expect_json(409);
            assert_eq!(v["error"], "Conflict", "{body}");
            assert!(v["reason"].is_string(), "{body}: {v}");
        } else {
            r.expect(400, BAD_REQUEST);
        }
        assert_eq!(get(b, &path, k).await.json(), before, "unchanged after {body}");
    }
    assert_eq!(rows("container_links").await, links_before);
    // Memory on a server kratos does not own (k3 on the platform server).
    let k3 = get(b, &p(format!("containers/{}", w.k3)), k).await.json();
    // The reference silently ignores the keys there and applies the rest (spec §4.3 step 5),
    // so a client posting back a whole container with other sizes still renames it.
    post(b, &p(format!("containers/{}", w.k3)), k, r#"{"memory": 500, "storage": 1000}"#).await.expect_json(200);
    assert_eq!(get(b, &p(format!("containers/{}", w.k3)), k).await.json(), k3);
    let r = post(b, &p(format!("containers/{}", w.k3)), k, r#"{"memory": 700, "storage": 9, "note": "sized"}"#).await;
    let shown = r.expect_json(200);
    assert_eq!((&shown["memory"], &shown["storage"], &shown["note"]), (&k3["memory"], &k3["storage"], &json!("sized")));
    let mut expected = k3.clone();
    expected["note"] = json!("sized");
    assert_eq!(get(b, &p(format!("containers/{}", w.k3)), k).await.json(), expected, "only the note changed");

    // DELETE never deletes (Q5); other methods show the detail.
    let shown = delete(b, &path, k, None).await.expect_json(200);
    assert_eq!(shown, get(b, &path, k).await.json());
    assert_eq!(send(b, "PUT", &path, k).await.expect_json(200), shown);
    assert_eq!(delete(b, &p("containers"), k, None).await.expect_json(200), get(b, &p("containers"), k).await.json());
    assert_eq!(b.count("containers").await, 6);
    // Foreign/unknown/low uids: 403.
    for u in [w.z1, 99999, 30000, 1] {
        get(b, &p(format!("containers/{u}")), k).await.expect(403, FORBIDDEN);
        post(b, &p(format!("containers/{u}")), k, r#"{"note": "x"}"#).await.expect(403, FORBIDDEN);
    }
    // containers/<uid>/domains: GET only, 404 for foreign.
    assert_eq!(get(b, &p(format!("containers/{uid}/domains")), k).await.expect_json(200), json!([]));
    post(b, &p(format!("containers/{uid}/domains")), k, "{}").await.expect(405, METHOD_NOT_ALLOWED);
    get(b, &p(format!("containers/{}/domains", w.z1)), k).await.expect(404, NOT_FOUND);
    // Q12 fixed: regenerate_secret_uuid works.
    assert_eq!(get(b, &path, k).await.json()["secret_uuid"], Value::Null);
    get(b, &p(format!("regenerate_secret_uuid/{uid}")), k).await.expect(200, OK);
    let s1 = get(b, &path, k).await.json()["secret_uuid"].as_str().unwrap().to_owned();
    post(b, &p(format!("regenerate_secret_uuid/{uid}")), k, "").await.expect(200, OK);
    assert_ne!(get(b, &path, k).await.json()["secret_uuid"].as_str().unwrap(), s1);
    get(b, &p(format!("regenerate_secret_uuid/{}", w.z1)), k).await.expect(403, FORBIDDEN);
    // Tag filter: OR semantics, each container once (Q2 fixed).
    post(b, &p("tags"), k, r#"{"name": "db"}"#).await.expect_json(201);
    post(b, &path, k, r#"{"tags": ["web", "db"]}"#).await.expect_json(200);
    post(b, &p(format!("containers/{}", w.k2)), k, r#"{"tags": ["db"]}"#).await.expect_json(200);
    let tagged: Vec<i64> = get(b, &p("containers?tags=web,db"), k)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["uid"].as_i64().unwrap())
        .collect();
    assert_eq!(tagged, [w.k1, w.k2]);
    let tagged = get(b, &p("containers?tags=web"), k).await.json();
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    assert_eq!(get(b, &p("containers?tags=nope"), k).await.json(), json!([]));
    // As the reference splits it: an empty name matches no tag, so `tags=` lists nothing.
    assert_eq!(get(b, &p("containers?tags="), k).await.json(), json!([]));
    assert_eq!(get(b, &p("containers?tags=,,,"), k).await.json(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_tags_loopboxes_routes() {
    let w = world().await;
    let b = &w.berth;
    let k = &w.k;
    // Tags.
    let t = post(b, &p("tags"), k, r#"{"name": "web", "note": "front"}"#).await;
    assert_eq!(t.status, 201);
    let t = t.json();
    assert_eq!((t["name"].as_str(), t["note"].as_str()), (Some("web"), Some("front")));
    let tid = t["id"].as_i64().unwrap();
    post(b, &p("tags"), k, r#"{"name": "web"}"#).await.expect(409, CONFLICT);
    send(b, "PUT", &p("tags"), k).await.expect(405, METHOD_NOT_ALLOWED);
    assert_eq!(get(b, &p("tags"), k).await.expect_json(200), json!([{"id": tid, "name": "web"}]));
    assert_eq!(
        get(b, &p(format!("tags/{tid}")), k).await.expect_json(200),
        json!({"id": tid, "name": "web", "note": "front"})
    );
    let u = post(b, &p(format!("tags/{tid}")), k, r#"{"note": 5}"#).await.expect_json(200);
    assert_eq!(u, json!({"id": tid, "name": "web", "note": "5"}), "Q34 fixed");
    post(b, &p("tags"), k, r#"{"name": "db"}"#).await.expect_json(201);
    post(b, &p(format!("tags/{tid}")), k, r#"{"name": "db"}"#).await.expect(409, CONFLICT);
    send(b, "PUT", &p(format!("tags/{tid}")), k).await.expect(405, METHOD_NOT_ALLOWED);
    for m in ["GET", "POST", "DELETE", "PUT"] {
        let r = send(b, m, &p("tags/99999"), k).await;
        r.expect(404, NOT_FOUND);
    }

    // Domains.
    let d = b.admin(&["domain", "add", "--customer", "kratos", "--name", "k.test"]).await["id"].as_i64().unwrap();
    let listed = get(b, &p("domains"), k).await.expect_json(200);
    assert_eq!(listed[0].as_object().unwrap().len(), 4, "no note in list items: {listed}");
    let u = post(b, &p(format!("domains/{d}")), k, r#"{"note": 123, "tags": ["web", "nope"], "name": "ignored"}"#)
        .await
        .expect_json(200);
    assert_eq!(
        (u["note"].clone(), u["tags"].clone(), u["name"].clone()),
        (json!("123"), json!(["web"]), json!("k.test"))
    );
    post(b, &p(format!("domains/{d}")), k, "{}").await.expect_json(200);
    post(b, &p(format!("domains/{d}")), k, r#"{"tags": "web"}"#).await.expect(400, BAD_REQUEST);
    send(b, "PUT", &p(format!("domains/{d}")), k).await.expect(405, METHOD_NOT_ALLOWED);
    send(b, "PUT", &p("domains"), k).await.expect(405, METHOD_NOT_ALLOWED);
    for m in ["GET", "POST", "DELETE", "PUT"] {
        send(b, m, &p("domains/99999"), k).await.expect(404, NOT_FOUND);
    }
    // Taken name (any customer) → 409 before any DNS lookup.
    post(b, &p("domains"), k, r#"{"name": "k.test"}"#).await.expect(409, CONFLICT);
    delete(b, &p("domains"), k, Some(r#"{"name": "nope.test"}"#)).await.expect(404, NOT_FOUND);
    delete(b, &p("domains"), k, Some(r#"{"nome": "k.test"}"#)).await.expect(400, BAD_REQUEST);
    assert_eq!(get(b, &p(format!("domains/{d}/containers")), k).await.expect_json(200), json!([]));
    post(b, &p(format!("domains/{d}/containers")), k, "{}").await.expect(405, METHOD_NOT_ALLOWED);
    {
        let mut conn = b.store().await.read().await.unwrap();
        berth_store::metrics::append_domain_sample(
            &mut conn,
            d,
            w.k1 - 30000,
            berth_model::DomainMetric::Hits,
            berth_service::metrics::today_utc(),
            1,
            1,
        )
        .await
        .unwrap();
    }
    let served = get(b, &p(format!("domains/{d}/containers")), k).await.expect_json(200);
    assert_eq!(
        (served[0]["uid"].as_i64(), served[0]["id"].as_i64()),
        (Some(w.k1), Some(w.k1 - 30000)),
        "Q17: id is the pk"
    );
    let doms = get(b, &p(format!("containers/{}/domains", w.k1)), k).await.expect_json(200);
    assert_eq!(doms[0]["name"], "k.test");
    delete(b, &p(format!("domains/{d}")), k, None).await.expect(200, OK);
    assert_eq!(b.count("domains").await, 0);

    // Loopboxes.
    let mk = |c: i64, f: &str, m: &str| json!({"container": c, "filename": f, "mountpoint": m}).to_string();
    post(b, &p("loopboxes"), k, &mk(w.k1, "img/disk1", "mnt/one")).await.expect_json(201);
    for bad in [
        mk(w.k1, "../etc/passwd", "m2"),
        mk(w.k1, "/abs", "m2"),
        mk(w.k1, "a/./b", "m2"),
        mk(w.k1, "a//b", "m2"),
        mk(w.k1, "trail/", "m2"),
        mk(w.k1, "f2", "vassals"),
        mk(w.k1, "f2", "etc"),
        mk(w.k1, "f2", "a/.."),
        mk(w.k1, "img/disk1", "m2"), // duplicate filename
        mk(w.k1, "f2", "mnt/one"),   // duplicate mountpoint
        json!({"container": w.k1, "filename": "f2", "mountpoint": "m2", "ro": null}).to_string(),
        json!({"container": w.k1, "filename": "f2", "mountpoint": "m2", "ro": "yes"}).to_string(),
        // The reference would store "false" as read-only (truthiness, Q25): refused, not guessed.
        json!({"container": w.k1, "filename": "f2", "mountpoint": "m2", "ro": "false"}).to_string(),
        json!({"container": w.k1, "filename": "f2", "mountpoint": "m2", "ro": 2}).to_string(),
        json!({"container": w.k1, "filename": "f".repeat(65), "mountpoint": "m2"}).to_string(),
    ] {
        post(b, &p("loopboxes"), k, &bad).await.expect(409, CONFLICT);
    }
    for bad in [
        json!({"filename": "f2", "mountpoint": "m2"}).to_string(),
        json!({"container": w.k1, "mountpoint": "m2"}).to_string(),
        json!({"container": w.k1, "filename": "f2"}).to_string(),
        mk(w.z1, "f2", "m2"),
        mk(99999, "f2", "m2"),
        json!({"container": "abc", "filename": "f2", "mountpoint": "m2"}).to_string(),
    ] {
        post(b, &p("loopboxes"), k, &bad).await.expect(403, FORBIDDEN);
    }
    assert_eq!(b.count("loopboxes").await, 1);
    post(
        b,
        &p("loopboxes"),
        k,
        &json!({"container": w.k2, "filename": "img/disk1", "mountpoint": "mnt/one", "ro": 1}).to_string(),
    )
    .await
    .expect_json(201);
    let all = get(b, &p("loopboxes"), k).await.expect_json(200);
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[1]["ro"], true);
    let only = get(b, &p(format!("loopboxes?container={}", w.k2)), k).await.expect_json(200);
    assert_eq!(only.as_array().unwrap().len(), 1);
    get(b, &p(format!("loopboxes?container={}", w.z1)), k).await.expect(403, FORBIDDEN);
    get(b, &p("loopboxes?container=x"), k).await.expect(403, FORBIDDEN);
    let id = only[0]["id"].as_i64().unwrap();
    let t =
        post(b, &p(format!("loopboxes/{id}")), k, r#"{"tags": ["web"], "filename": "changed"}"#).await.expect_json(200);
    assert_eq!(
        (t["tags"].clone(), t["filename"].clone()),
        (json!(["web"]), json!("img/disk1")),
        "only tags are honoured"
    );
    assert_eq!(get(b, &p("loopboxes?tags=web,db"), k).await.json().as_array().unwrap().len(), 1);
    post(b, &p(format!("loopboxes/{id}")), k, r#"{"tags": "web"}"#).await.expect(400, BAD_REQUEST);
    // Deleting a tag removes it from what carried it.
    delete(b, &p(format!("tags/{tid}")), k, None).await.expect(200, OK);
    assert_eq!(get(b, &p(format!("loopboxes/{id}")), k).await.json()["tags"], json!([]));
    delete(b, &p(format!("loopboxes/{id}")), k, None).await.expect(200, OK);
    get(b, &p(format!("loopboxes/{id}")), k).await.expect(403, FORBIDDEN);
    delete(b, &p(format!("loopboxes/{id}")), k, None).await.expect(403, FORBIDDEN);
    assert_eq!(b.count("loopboxes").await, 1);
}
