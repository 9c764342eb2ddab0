//! Tenant isolation on every REST route, and bad input per route: zeus' requests on kratos'
//! containers, domains, tags, loopboxes, alarms, custom distros, port-mapping servers and
//! metrics see nothing and change nothing (checked in the database), never echo kratos'
//! data, and are answered exactly like requests on ids that do not exist.

mod common;
mod rest_common;

use common::Auth;
use rest_common::{call, world, Reply, World};
use serde_json::json;

const FORBIDDEN: &str = r#"{"error": "Forbidden"}"#;
const NOT_FOUND: &str = r#"{"error": "Not found"}"#;
const BAD_REQUEST: &str = r#"{"error": "Bad Request"}"#;
const TOO_LARGE: &str = r#"{"error": "Request entity too large"}"#;
const CONFLICT: &str = r#"{"error": "Conflict"}"#;

/// Everything kratos owns, with its secret-ish marker strings.
struct Kratos {
    tag: i64,
    domain: i64,
    loopbox: i64,
    alarm: i64,
    custom_distro: i64,
    portmap: i64,
}

/// Strings of kratos' data that must never reach zeus.
const MARKERS: &[&str] = &[
    "kratos-secret-note",
    "kratos.test",
    "kratos-tag",
    "kratos-box",
    "kratos-alarm",
    "kratos-distro",
    "kratos-company",
];

fn path(s: impl AsRef<str>) -> String {
    format!("/api/{}", s.as_ref())
}

async fn setup(w: &World) -> Kratos {
    let b = &w.berth;
    let k = &w.k;
    let ok = |r: Reply, s: u16| {
        assert!(r.status == s, "setup: {} {}", r.status, r.text);
        r
    };
    ok(call(b, "POST", &path("me"), k, Some(r#"{"company": "kratos-company"}"#)).await, 200);
    ok(
        call(
            b,
            "POST",
            &path(format!("containers/{}", w.k1)),
            k,
            Some(r#"{"note": "kratos-secret-note", "custom_distros_storage": true}"#),
        )
        .await,
        200,
    );
    let tag = ok(
        call(b, "POST", &path("tags"), k, Some(r#"{"name": "kratos-tag", "note": "kratos-secret-note"}"#)).await,
        201,
    )
    .json()["id"]
        .as_i64()
        .unwrap();
    ok(call(b, "POST", &path(format!("containers/{}", w.k1)), k, Some(r#"{"tags": ["kratos-tag"]}"#)).await, 200);
    let domain =
        b.admin(&["domain", "add", "--customer", "kratos", "--name", "kratos.test"]).await["id"].as_i64().unwrap();
    ok(
        call(
            b,
            "POST",
            &path(format!("domains/{domain}")),
            k,
            Some(r#"{"note": "kratos-secret-note", "tags": ["kratos-tag"]}"#),
        )
        .await,
        200,
    );
    ok(
        call(
            b,
            "POST",
            &path("loopboxes"),
            k,
            Some(&json!({"container": w.k1, "filename": "kratos-box", "mountpoint": "kratos-box-mnt"}).to_string()),
        )
        .await,
        201,
    );
    let loopbox = ok(call(b, "GET", &path("loopboxes"), k, None).await, 200).json()[0]["id"].as_i64().unwrap();
    ok(
        call(b, "POST", &path(format!("alarms/raise/{}?class=kratos-alarm", w.k1)), k, Some("kratos-alarm body")).await,
        201,
    );
    let alarm = ok(call(b, "GET", &path("alarms"), k, None).await, 200).json()[0]["id"].as_i64().unwrap();
    ok(
        call(
            b,
            "POST",
            &path(format!("custom_distros/{}", w.k1)),
            k,
            Some(r#"{"name": "kratos-distro", "path": "kratos-distro"}"#),
        )
        .await,
        201,
    );
    let custom_distro =
        ok(call(b, "GET", &path("custom_distros/"), k, None).await, 200).json()[0]["id"].as_i64().unwrap();
    let pm = path(format!("portmappings/{}", w.owned.address));
    ok(
        call(
            b,
            "POST",
            &pm,
            k,
            Some(&json!({"container": w.k1, "proto": "tcp", "public_port": 9000, "private_port": 8000}).to_string()),
        )
        .await,
        201,
    );
    let portmap = ok(call(b, "GET", &pm, k, None).await, 200).json()[0]["id"].as_i64().unwrap();
    ok(call(b, "GET", &path(format!("alarm_key/{}", w.k1)), k, None).await, 200);
    {
        use berth_model::{ContainerMetric, DomainMetric};
        let mut conn = b.store().await.read().await.unwrap();
        let today = berth_service::metrics::today_utc();
        berth_store::metrics::append_container_sample(&mut conn, w.k1 - 30000, ContainerMetric::Cpu, today, 1, 424242)
            .await
            .unwrap();
        berth_store::metrics::append_domain_sample(
            &mut conn,
            domain,
            w.k1 - 30000,
            DomainMetric::Hits,
            today,
            1,
            434343,
        )
        .await
        .unwrap();
    }
    Kratos { tag, domain, loopbox, alarm, custom_distro, portmap }
}

/// A snapshot of every table zeus could touch, to compare after the attempts.
async fn snapshot(w: &World) -> String {
    let store = w.berth.store().await;
    let mut out = String::new();
    for (table, cols) in [
        ("customers", "id, username, password_hash, email, company, vat"),
        (
            "containers",
            "id, customer_id, name, memory, storage, distro_id, custom_distro_id, ssh_keys_raw, note, nofollow, \
             custom_distros_storage, secret_uuid, alarm_key, generation, quota_threshold, alarm_freq, jid",
        ),
        ("container_links", "container_id, to_id"),
        ("container_tags", "container_id, tag_id"),
        ("domain_tags", "domain_id, tag_id"),
        ("loopbox_tags", "loopbox_id, tag_id"),
        ("tags", "id, customer_id, name, note"),
        ("domains", "id, customer_id, name, note"),
        ("loopboxes", "id, container_id, filename, mountpoint, ro"),
        ("alarms", "id, container_id, msg, level"),
        ("custom_distros", "id, container_id, name, path, note"),
        ("portmaps", "id, server_id, container_id, public_port, private_port"),
        ("container_metrics", "container_id, kind, json"),
        ("domain_metrics", "domain_id, container_id, kind, json"),
    ] {
        let sql = format!(
            "SELECT {} FROM {table} ORDER BY 1",
            cols.split(", ")
                .map(|c| format!("COALESCE(CAST({c} AS TEXT), '~')"))
                .collect::<Vec<_>>()
                .join(" || '|' || ")
        );
        let rows: Vec<(String,)> =
            sqlx::query_as(&sql).fetch_all(store.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.push_str(&format!("{table}: {rows:?}\n"));
    }
    out
}

#[track_caller]
fn no_leak(r: &Reply, what: &str) {
    for m in MARKERS {
        assert!(!r.text.contains(m), "{what} leaked {m}: {}", r.text);
    }
    assert!(!r.text.contains("424242") && !r.text.contains("434343"), "{what} leaked metrics: {}", r.text);
}

/// Zeus' attempt on `foreign` and on the unknown `unknown` must be answered alike.
async fn same_as_unknown(
    w: &World,
    method: &str,
    foreign: &str,
    unknown: &str,
    body: Option<&str>,
    expect: (u16, &str),
) {
    let a = call(&w.berth, method, &path(foreign), &w.z, body).await;
    let u = call(&w.berth, method, &path(unknown), &w.z, body).await;
    no_leak(&a, foreign);
    assert_eq!((a.status, a.text.as_str()), expect, "{method} {foreign} {body:?}");
    assert_eq!((u.status, u.text.as_str()), expect, "{method} {unknown} {body:?}");
    assert_eq!(a.header("content-type"), u.header("content-type"));
}

/// `on_both_worlds!(check, sqlite_test, postgres_test)`: two tests running `check` on the
/// REST world of a SQLite gateway and of a PostgreSQL one.
macro_rules! on_both_worlds {
    ($check:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $check(world().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(b) = common::Berth::start_postgres().await else { return };
            $check(rest_common::world_on(b).await).await;
        }
    };
}

on_both_worlds!(
    zeus_sees_and_changes_nothing,
    zeus_sees_and_changes_nothing_of_kratos,
    zeus_sees_and_changes_nothing_of_kratos_postgres
);

async fn zeus_sees_and_changes_nothing(w: World) {
    let b = &w.berth;
    let z = &w.z;
    let kr = setup(&w).await;
    // Zeus has objects of its own too (so lists are not trivially empty).
    call(b, "POST", &path("tags"), z, Some(r#"{"name": "zeus-tag"}"#)).await;
    let before = snapshot(&w).await;

    let (k1, k2, z1) = (w.k1, w.k2, w.z1);
    let unknown_uid = 39999;
    // Containers.
    for m in ["GET", "POST", "DELETE", "PUT"] {
        same_as_unknown(
            &w,
            m,
            &format!("containers/{k1}"),
            &format!("containers/{unknown_uid}"),
            Some(r#"{"note": "pwned", "tags": [], "reboot": 1, "link": 30001}"#),
            (403, FORBIDDEN),
        )
        .await;
    }
    same_as_unknown(
        &w,
        "GET",
        &format!("containers/{k1}/domains"),
        &format!("containers/{unknown_uid}/domains"),
        None,
        (404, NOT_FOUND),
    )
    .await;
    same_as_unknown(
        &w,
        "GET",
        &format!("regenerate_secret_uuid/{k1}"),
        &format!("regenerate_secret_uuid/{unknown_uid}"),
        None,
        (403, FORBIDDEN),
    )
    .await;
    same_as_unknown(&w, "GET", &format!("alarm_key/{k1}"), &format!("alarm_key/{unknown_uid}"), None, (403, FORBIDDEN))
        .await;
    // Linking to kratos' container is allowed by the spec (any customer's); unlinking a link
    // zeus does not have is a conflict. Neither touches kratos' container.
    let r = call(b, "POST", &path(format!("containers/{z1}")), z, Some(&format!(r#"{{"unlink": {k1}}}"#))).await;
    assert_eq!(r.status, 409);
    no_leak(&r, "unlink");
    // Creating on kratos' server.
    let r = call(
        b,
        "POST",
        &path("containers"),
        z,
        Some(&json!({"server": w.owned.address, "name": "x", "memory": 1, "storage": 1}).to_string()),
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN));
    let r = call(
        b,
        "POST",
        &path("containers"),
        z,
        Some(&json!({"server": "10.77.77.77", "name": "x", "memory": 1, "storage": 1}).to_string()),
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN));
    // Using kratos' custom distro / tags on zeus' container.
    let r = call(
        b,
        "POST",
        &path(format!("containers/{z1}")),
        z,
        Some(&format!(r#"{{"custom_distro": {}}}"#, kr.custom_distro)),
    )
    .await;
    assert_eq!(r.status, 409);
    no_leak(&r, "custom_distro");
    let r = call(b, "POST", &path(format!("containers/{z1}")), z, Some(r#"{"tags": ["kratos-tag"]}"#)).await;
    assert_eq!(r.json()["tags"], json!([]), "kratos' tag names mean nothing to zeus");
    let zkey = call(b, "GET", &path(format!("alarm_key/{z1}")), z, None).await.json()["alarm_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let after_zeus_tags = snapshot(&w).await;

    // Lists show only zeus' objects.
    for list in [
        "me",
        "containers",
        "me/containers",
        "containers?tags=kratos-tag",
        "domains",
        "domains?tags=kratos-tag",
        "tags",
        "loopboxes",
        "loopboxes?tags=kratos-tag",
        "alarms",
        "alarms?class=kratos-alarm",
        "alarms?with_total",
        "custom_distros/",
        "news",
        "distros",
    ] {
        let r = call(b, "GET", &path(list), z, None).await;
        assert_eq!(r.status, 200, "{list}");
        no_leak(&r, list);
        assert!(
            !r.text.contains(&format!("{k1}")) && !r.text.contains(&format!("{k2}")),
            "{list} shows kratos' uids: {}",
            r.text
        );
    }
    let t = call(b, "GET", &path("alarms?with_total"), z, None).await.json();
    assert_eq!(t["total"], 0);
    // Filters naming kratos' containers are refused like unknown ones.
    same_as_unknown(
        &w,
        "GET",
        &format!("loopboxes?container={k1}"),
        &format!("loopboxes?container={unknown_uid}"),
        None,
        (403, FORBIDDEN),
    )
    .await;
    same_as_unknown(
        &w,
        "GET",
        &format!("alarms?container={k1}"),
        &format!("alarms?container={unknown_uid}"),
        None,
        (403, FORBIDDEN),
    )
    .await;
    // Custom distros.
    same_as_unknown(
        &w,
        "GET",
        &format!("custom_distros/{k1}"),
        &format!("custom_distros/{unknown_uid}"),
        None,
        (403, FORBIDDEN),
    )
    .await;
    same_as_unknown(
        &w,
        "POST",
        &format!("custom_distros/{k1}"),
        &format!("custom_distros/{unknown_uid}"),
        Some(r#"{"name": "z", "path": "z"}"#),
        (403, FORBIDDEN),
    )
    .await;
    for m in ["GET", "POST", "DELETE"] {
        same_as_unknown(
            &w,
            m,
            &format!("custom_distro/{}", kr.custom_distro),
            "custom_distro/99999",
            Some(r#"{"name": "pwned"}"#),
            (403, FORBIDDEN),
        )
        .await;
    }
    // Domains.
    for m in ["GET", "POST", "DELETE", "PUT"] {
        same_as_unknown(
            &w,
            m,
            &format!("domains/{}", kr.domain),
            "domains/99999",
            Some(r#"{"note": "pwned", "tags": []}"#),
            (404, NOT_FOUND),
        )
        .await;
    }
    same_as_unknown(
        &w,
        "GET",
        &format!("domains/{}/containers", kr.domain),
        "domains/99999/containers",
        None,
        (404, NOT_FOUND),
    )
    .await;
    let r = call(b, "DELETE", &path("domains"), z, Some(r#"{"name": "kratos.test"}"#)).await;
    assert_eq!((r.status, r.text.as_str()), (404, NOT_FOUND));
    // Adding kratos' domain name: taken (409), no detail.
    let r = call(b, "POST", &path("domains"), z, Some(r#"{"name": "kratos.test"}"#)).await;
    assert_eq!((r.status, r.text.as_str()), (409, CONFLICT));
    // Tags.
    for m in ["GET", "POST", "DELETE", "PUT"] {
        same_as_unknown(
            &w,
            m,
            &format!("tags/{}", kr.tag),
            "tags/99999",
            Some(r#"{"name": "pwned"}"#),
            (404, NOT_FOUND),
        )
        .await;
    }
    // Loopboxes.
    for m in ["GET", "POST", "DELETE", "PUT"] {
        same_as_unknown(
            &w,
            m,
            &format!("loopboxes/{}", kr.loopbox),
            "loopboxes/99999",
            Some(r#"{"tags": []}"#),
            (403, FORBIDDEN),
        )
        .await;
    }
    let r = call(
        b,
        "POST",
        &path("loopboxes"),
        z,
        Some(&json!({"container": k1, "filename": "z", "mountpoint": "z"}).to_string()),
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN));
    // Alarms.
    for m in ["GET", "DELETE", "POST"] {
        same_as_unknown(&w, m, &format!("alarms/{}", kr.alarm), "alarms/99999", None, (403, FORBIDDEN)).await;
    }
    same_as_unknown(
        &w,
        "POST",
        &format!("alarms/raise/{k1}"),
        &format!("alarms/raise/{unknown_uid}"),
        Some("zeus was here"),
        (403, FORBIDDEN),
    )
    .await;
    same_as_unknown(
        &w,
        "POST",
        &format!("alarms/trigger/{k1}"),
        &format!("alarms/trigger/{unknown_uid}"),
        Some("zeus was here"),
        (403, FORBIDDEN),
    )
    .await;
    // Zeus' own alarm key does not open kratos' container.
    let r = call(b, "POST", &path(format!("alarms/raise/{k1}?key={zkey}")), &Auth::None, Some("x")).await;
    assert_eq!(r.status, 401);
    // Port mappings on kratos' server.
    let pm = format!("portmappings/{}", w.owned.address);
    for (m, body) in [
        ("GET", None),
        ("POST", Some(json!({"container": z1, "proto": "tcp", "public_port": 9100, "private_port": 8000}).to_string())),
        ("POST", Some(json!({"container": k1, "proto": "tcp", "public_port": 9100, "private_port": 8000}).to_string())),
        ("DELETE", Some(json!({"id": kr.portmap}).to_string())),
        ("PUT", None),
    ] {
        same_as_unknown(&w, m, &pm, "portmappings/10.66.66.66", body.as_deref(), (403, FORBIDDEN)).await;
    }
    // Zeus cannot delete kratos' mapping through zeus' own server either.
    let r = call(
        b,
        "DELETE",
        &path(format!("portmappings/{}", w.zeus_server.address)),
        z,
        Some(&json!({"id": kr.portmap}).to_string()),
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN));
    // Metrics.
    for kind in ["cpu", "io.read", "mem"] {
        same_as_unknown(
            &w,
            "GET",
            &format!("metrics/container.{kind}/{k1}"),
            &format!("metrics/container.{kind}/{unknown_uid}"),
            None,
            (403, "Forbidden\n"),
        )
        .await;
    }
    same_as_unknown(
        &w,
        "GET",
        &format!("metrics/domain.hits/{}", kr.domain),
        "metrics/domain.hits/99999",
        None,
        (403, "Forbidden\n"),
    )
    .await;

    assert_eq!(snapshot(&w).await, after_zeus_tags, "zeus changed something of kratos");
    // The only difference with the first snapshot: zeus' own alarm key.
    let strip_keys = |s: &str| s.lines().filter(|l| !l.starts_with("containers:")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip_keys(&snapshot(&w).await), strip_keys(&before));
    // Kratos still sees all of it.
    let k = &w.k;
    assert_eq!(call(b, "GET", &path(format!("containers/{k1}")), k, None).await.json()["note"], "kratos-secret-note");
    assert_eq!(call(b, "GET", &path(format!("tags/{}", kr.tag)), k, None).await.status, 200);
    assert_eq!(call(b, "GET", &path(format!("metrics/container.cpu/{k1}")), k, None).await.text, "[[1, 424242]]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_per_route_changes_nothing() {
    let w = world().await;
    let b = &w.berth;
    let k = &w.k;
    let kr = setup(&w).await;
    let before = snapshot(&w).await;
    let k1 = w.k1;
    let big = format!(r#"{{"note": "{}"}}"#, "x".repeat(70_000));
    let pm = format!("portmappings/{}", w.owned.address);
    // Every body-reading route: invalid JSON, non-object JSON, oversized bodies.
    let routes = [
        "me".to_owned(),
        "containers".into(),
        format!("containers/{k1}"),
        "domains".into(),
        format!("domains/{}", kr.domain),
        "tags".into(),
        format!("tags/{}", kr.tag),
        "loopboxes".into(),
        format!("loopboxes/{}", kr.loopbox),
        pm.clone(),
        format!("custom_distros/{k1}"),
        format!("custom_distro/{}", kr.custom_distro),
    ];
    for route in &routes {
        for bad in ["{", "{'a': 1}", "nope", "{\"a\": 1,}"] {
            let r = call(b, "POST", &path(route), k, Some(bad)).await;
            assert_eq!((r.status, r.text.as_str()), (400, BAD_REQUEST), "POST {route} {bad}");
        }
        for non_object in ["[1]", "\"text\"", "42", "true"] {
            let r = call(b, "POST", &path(route), k, Some(non_object)).await;
            assert_eq!((r.status, r.text.as_str()), (400, BAD_REQUEST), "POST {route} {non_object} (Q28)");
        }
        let r = call(b, "POST", &path(route), k, Some(&big)).await;
        assert_eq!((r.status, r.text.as_str()), (413, TOO_LARGE), "POST {route} oversized");
    }
    for route in ["domains".to_owned(), pm.clone()] {
        let r = call(b, "DELETE", &path(&route), k, Some("{")).await;
        assert_eq!((r.status, r.text.as_str()), (400, BAD_REQUEST), "DELETE {route}");
        let r = call(b, "DELETE", &path(&route), k, Some(&big)).await;
        assert_eq!(r.status, 413, "DELETE {route}");
    }
    let r = call(b, "POST", &path(format!("alarms/raise/{k1}")), k, Some(&big)).await;
    assert_eq!((r.status, r.text.as_str()), (413, TOO_LARGE));

    // Wrong types.
    for (route, body, status) in [
        (format!("containers/{k1}"), r#"{"memory": "lots"}"#, 409),
        (format!("containers/{k1}"), r#"{"name": ["a"]}"#, 409),
        (format!("containers/{k1}"), r#"{"note": {"a": 1}}"#, 409),
        (format!("containers/{k1}"), r#"{"distro": "one"}"#, 409),
        (format!("containers/{k1}"), r#"{"ssh_keys": {"k": "v"}}"#, 400),
        (format!("containers/{k1}"), r#"{"tags": [1, 2]}"#, 400),
        (format!("domains/{}", kr.domain), r#"{"tags": [1]}"#, 400),
        (format!("domains/{}", kr.domain), r#"{"note": ["x"]}"#, 400),
        (format!("loopboxes/{}", kr.loopbox), r#"{"tags": [true]}"#, 400),
        ("loopboxes".into(), r#"{"container": [1], "filename": "a", "mountpoint": "b"}"#, 403),
        ("loopboxes".into(), &json!({"container": k1, "filename": 5, "mountpoint": "b"}).to_string(), 409),
        ("domains".into(), r#"{"name": 5}"#, 400),
        ("containers".into(), r#"{"server": 5, "name": "x", "memory": 1, "storage": 1}"#, 403),
        (pm.clone(), r#"{"container": "x", "proto": "tcp", "public_port": 9100, "private_port": 8000}"#, 403),
    ] {
        let r = call(b, "POST", &path(&route), k, Some(body)).await;
        assert_eq!(r.status, status, "POST {route} {body}: {}", r.text);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Path traversal in loopbox paths.
    for (f, m) in [
        ("../../etc/shadow", "m"),
        ("f", "../../root"),
        ("/etc/passwd", "m"),
        ("f", "/mnt"),
        ("a/../b", "m"),
        ("f", "./x"),
        ("f", "x/."),
        ("f", "logs"),
        ("f", "run"),
        ("f", "tmp"),
        ("..", "m"),
    ] {
        let r = call(
            b,
            "POST",
            &path("loopboxes"),
            k,
            Some(&json!({"container": k1, "filename": f, "mountpoint": m}).to_string()),
        )
        .await;
        assert_eq!((r.status, r.text.as_str()), (409, CONFLICT), "{f} {m}");
    }
    // Unknown/foreign uids and ports out of range.
    for (f, m) in [(w.z1, "m"), (99999, "m"), (0, "m"), (-5, "m")] {
        let r = call(
            b,
            "POST",
            &path("loopboxes"),
            k,
            Some(&json!({"container": f, "filename": "ok", "mountpoint": m}).to_string()),
        )
        .await;
        assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN), "{f}");
    }
    for (public, private) in
        [(0, 8000), (-1, 8000), (70000, 8000), (9100, 0), (9100, 99999), (1999, 8000), (i64::MAX, 8000)]
    {
        let r = call(
            b,
            "POST",
            &path(&pm),
            k,
            Some(&json!({"container": k1, "proto": "tcp", "public_port": public, "private_port": private}).to_string()),
        )
        .await;
        assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN), "{public} {private}");
    }
    for uid in ["0", "1", "30000", "99999999999999999999", "-1"] {
        let r = call(b, "GET", &path(format!("containers/{uid}")), k, None).await;
        assert!(r.status == 403 || r.status == 404, "containers/{uid}: {}", r.status);
    }
    assert_eq!(snapshot(&w).await, before, "bad input changed something");
}

/// A NUL in a text that is only looked up (a filter, a name to delete, a username) is answered
/// alike on SQLite and PostgreSQL, which cannot even be asked for one: a clear 4xx or typed
/// error, never a 500.
async fn nul_in_looked_up_texts(w: World) {
    let b = &w.berth;
    let k = &w.k;
    let domain = b.admin(&["domain", "add", "--customer", "kratos", "--name", "nul.example"]).await["id"].clone();
    let before = snapshot(&w).await;
    for route in [
        "containers?tags=a%00b",
        "domains?tags=a%00b",
        "loopboxes?tags=a%00b",
        "alarms/?vassal=a%00b",
        "alarms/?class=%00",
    ] {
        let r = call(b, "GET", &path(route), k, None).await;
        assert!((400..500).contains(&r.status), "GET {route}: {} {}", r.status, r.text);
    }
    let r = call(b, "DELETE", &path("domains"), k, Some(r#"{"name": "d\u0000"}"#)).await;
    assert_eq!((r.status, r.text.as_str()), (404, NOT_FOUND));
    let nul_user = Auth::basic("kra\0tos", &w.kratos.password);
    assert_eq!(call(b, "GET", &path("me"), &nul_user, None).await.status, 401);
    let r = b.gql_raw(nul_user, "{ me { username } }", json!({})).await;
    assert_eq!((r.status, common::error_code(&r.body)), (401, Some("UNAUTHENTICATED")), "{}", r.body);

    let update = "mutation($id: Int!) { updateDomain(id: $id, input: { tags: [\"a\\u0000b\"] }) { id } }";
    let body = b.gql(k.clone(), update, json!({ "id": domain })).await;
    assert_eq!(common::error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = b.gql(k.clone(), r#"{ portmappings(server: "a\u0000b") { id } }"#, json!({})).await;
    assert_eq!(common::error_code(&body), Some("FORBIDDEN"), "as any server not yours: {body}");
    for query in [
        r#"{ containers(first: 10, tags: ["a\u0000b"]) { edges { node { uid } } } }"#,
        r#"{ domains(first: 10, tags: ["a\u0000b"]) { edges { node { id } } } }"#,
        r#"{ alarms(first: 10, vassal: "a\u0000b") { totalCount } }"#,
    ] {
        let body = b.gql(k.clone(), query, json!({})).await;
        assert_eq!(common::error_code(&body), Some("BAD_USER_INPUT"), "{query}: {body}");
    }
    assert_eq!(snapshot(&w).await, before);
}

on_both_worlds!(nul_in_looked_up_texts, nul_in_looked_up_texts_sqlite, nul_in_looked_up_texts_postgres);

/// A browser request made for a page of another origin carries the basic credentials the
/// browser remembers (a form post, an `<img>`, a link, a credentialed `fetch`); it is
/// refused before it acts. CORS clients (the `X-uwsgi-it-*` headers), scripts and the
/// user's own navigation work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_foreign_pages_are_refused() {
    let w = world().await;
    let (b, k, k1) = (&w.berth, &w.k, w.k1);
    let me_before = call(b, "GET", &path("me"), k, None).await.text;
    let container_before = call(b, "GET", &path(format!("containers/{k1}")), k, None).await.text;
    let site = |site: &'static str, mode: &'static str| [("sec-fetch-site", site), ("sec-fetch-mode", mode)];
    let post_me = |headers: Vec<(&'static str, &'static str)>| async move {
        rest_common::call_with(b, "POST", &path("me"), k, Some(r#"{"company": "Forged"}"#), &headers).await
    };
    let form = vec![("content-type", "text/plain"), ("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")];
    let r = post_me(form).await;
    assert_eq!((r.status, r.text.as_str()), (403, FORBIDDEN));
    // A credentialed fetch is mode cors, but a CORS client cannot send Authorization itself.
    assert_eq!(post_me(site("cross-site", "cors").to_vec()).await.status, 403);
    assert_eq!(post_me(site("same-site", "navigate").to_vec()).await.status, 403, "a sibling subdomain is foreign");
    // Without Fetch Metadata (plain HTTP to a remote host, older browsers): the Origin tells.
    assert_eq!(post_me(vec![("origin", "http://attacker.example")]).await.status, 403);
    assert_eq!(post_me(vec![("origin", "null")]).await.status, 403);
    // An <img> would regenerate the alarm key (a GET that changes state).
    let r = rest_common::call_with(b, "GET", &path(format!("alarm_key/{k1}")), k, None, &site("cross-site", "no-cors"))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(call(b, "GET", &path(format!("containers/{k1}")), k, None).await.text, container_before);
    assert_eq!(call(b, "GET", &path("me"), k, None).await.text, me_before, "nothing changed");

    // A CORS client of another site, the user's own navigation, this origin, and a script.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let (user, password) = (hex(&w.kratos.username), hex(&w.kratos.password));
    let cors_client = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "cors"),
        ("origin", "https://panel.example"),
        ("x-uwsgi-it-username", user.as_str()),
        ("x-uwsgi-it-password", password.as_str()),
    ];
    let r = rest_common::call_with(b, "GET", &path("me"), &Auth::None, None, &cors_client).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(rest_common::call_with(b, "GET", &path("me"), k, None, &site("none", "navigate")).await.status, 200);
    let own_origin = format!("http://{}", b.addr);
    let r = rest_common::call_with(b, "GET", &path("me"), k, None, &[("origin", own_origin.as_str())]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(b, "POST", &path("tags"), k, Some(r#"{"name": "by-script"}"#)).await;
    assert_eq!(r.status, 201, "{}", r.text);
}
