//! A client behaving like uwsgiit-py (spec §9) against the REST shim: the standard-library
//! Python client in tests/python/uwsgi_client.py runs the flows of uwsgiit-py's test-suite
//! (tests/python/flows.py, spec §9.3); the test passes when every flow does.

mod common;
mod rest_common;

use std::process::Stdio;

use common::{Berth, Opts};

fn python3() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var("BERTH_REQUIRE_ALL").as_deref() != Ok("1"), "BERTH_REQUIRE_ALL=1 but python3 is missing");
        eprintln!("skipping: python3 not installed");
        return None;
    }
    Some("python3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uwsgiit_py_flows_pass() {
    let Some(python) = python3() else { return };
    // The ownership check of random names must fail fast: a resolver address where nothing
    // listens (and the uuid names have a single label, so no TXT query is even made).
    let dns = ([127, 0, 0, 1], rest_common::free_port()).into();
    let b = Berth::start_with(Opts { dns_server: Some(dns), ..Opts::default() }).await;
    let kratos = b.fixture_customer("kratos").await;
    let server = b.fixture_server(None).await;
    let uid = b.fixture_container("kratos", &server.name, 512, 1024).await;
    b.fixture_container("kratos", &server.name, 512, 1024).await;
    b.admin(&["distro", "add", "--name", "Saucy Salamander - Ubuntu 13.10 (64 bit)", "--path", "/distros/saucy"]).await;
    b.admin(&["distro", "add", "--name", "Jessie", "--path", "/distros/jessie"]).await;
    let domain =
        b.admin(&["domain", "add", "--customer", "kratos", "--name", "python.test"]).await["id"].as_i64().unwrap();
    b.admin(&["news", "add", "--content", "hello world", "--public"]).await;
    b.admin(&["news", "add", "--content", "customers only"]).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/flows.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(b.url("/api"))
        .arg(&kratos.username)
        .arg(&kratos.password)
        .arg(uid.to_string())
        .arg(domain.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flows.py failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("all flows passed"), "{stdout}");
    // The flows left the state they describe.
    assert_eq!(b.count("loopboxes").await, 0);
    assert_eq!(b.count("tags").await, 0);
    assert_eq!(b.count("alarms").await, 1, "the alarm raised with the key");
    assert_eq!(b.count("domains").await, 1);
}
