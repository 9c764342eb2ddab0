//! Alarm delivery to the container's channels (issue 3): every channel against a real local
//! receiver, `alarm_freq` enforced in the database (also across two gateways on one
//! PostgreSQL), retries, the SSRF guard and the signed webhook; XMPP against a real prosody.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use common::{error_code, Berth, Customer, Opts};
use serde_json::{json, Value};

/// Bound on waiting for something that must happen.
const DEADLINE: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{} body is not JSON: {e}", self.path))
    }

    fn form(&self) -> Vec<(String, String)> {
        form_decode(std::str::from_utf8(&self.body).expect("form body is UTF-8"))
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Recorded>>,
    /// Statuses to answer, in order, before falling back to 200.
    script: Mutex<VecDeque<u16>>,
}

/// A tiny HTTP server on 127.0.0.1 that records every request.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.requests.lock().unwrap().push(Recorded { method, path: uri.path().to_owned(), headers, body });
    let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_on(addr: SocketAddr) -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver");
        });
        Receiver { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer the next requests with these statuses.
    fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    fn requests(&self, path_prefix: &str) -> Vec<Recorded> {
        let all = self.state.requests.lock().unwrap();
        all.iter().filter(|r| r.path.starts_with(path_prefix)).cloned().collect()
    }

    /// Waits until at least `n` requests under `path_prefix` arrived (panics after DEADLINE).
    async fn wait_for(&self, path_prefix: &str, n: usize) -> Vec<Recorded> {
        let started = tokio::time::Instant::now();
        loop {
            let got = self.requests(path_prefix);
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "expected {n} request(s) to {path_prefix}, got {}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `application/x-www-form-urlencoded` decoding.
fn form_decode(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The server's log without ANSI colour codes.
fn log_text(berth: &Berth) -> String {
    let raw = std::fs::read_to_string(&berth.log).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until `n` log lines contain every one of `needles` (panics after DEADLINE).
async fn wait_log(berth: &Berth, needles: &[&str], n: usize) -> Vec<String> {
    let started = tokio::time::Instant::now();
    loop {
        let lines: Vec<String> = log_text(berth)
            .lines()
            .filter(|l| needles.iter().all(|needle| l.contains(needle)))
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(started.elapsed() < DEADLINE, "expected {n} log line(s) with {needles:?}; log:\n{}", log_text(berth));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn opts(receiver: &Receiver, allow_private: bool) -> Opts {
    let mut env = vec![("RUST_LOG".to_owned(), "info".to_owned())];
    if allow_private {
        env.push(("BERTH_ALLOW_PRIVATE_WEBHOOKS".to_owned(), "1".to_owned()));
    }
    Opts {
        args: vec![
            "--pushover-url".to_owned(),
            receiver.url("/pushover"),
            "--pushbullet-url".to_owned(),
            receiver.url("/pushbullet"),
        ],
        env,
        ..Opts::default()
    }
}

/// A customer with one container; returns both.
async fn customer_with_container(berth: &Berth, name: &str) -> (Customer, i64) {
    let customer = berth.fixture_customer(name).await;
    let server = berth.fixture_server(None).await;
    let uid = berth.fixture_container(&customer.username, &server.name, 512, 1024).await;
    (customer, uid)
}

const UPDATE: &str = "mutation($uid: Int!, $input: UpdateContainerInput!) {
  updateContainer(uid: $uid, input: $input) { uid name alarmFreq }
}";

const RAISE: &str = "mutation($c: Int!, $m: String!) { raiseAlarm(container: $c, message: $m) { id message } }";

async fn update(berth: &Berth, who: &Customer, uid: i64, input: Value) -> Value {
    berth.gql_ok(who.auth(), UPDATE, json!({ "uid": uid, "input": input })).await
}

async fn raise(berth: &Berth, who: &Customer, uid: i64, msg: &str) -> i64 {
    let data = berth.gql_ok(who.auth(), RAISE, json!({ "c": uid, "m": msg })).await;
    data["raiseAlarm"]["id"].as_i64().expect("alarm id")
}

async fn container_name(berth: &Berth, who: &Customer, uid: i64) -> String {
    let data =
        berth.gql_ok(who.auth(), "query($uid: Int!) { container(uid: $uid) { name } }", json!({ "uid": uid })).await;
    data["container"]["name"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushover_pushbullet_and_slack_get_the_alarm() {
    let receiver = Receiver::start().await;
    let berth = Berth::start_with(opts(&receiver, true)).await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    // An incomplete channel (Pushover without a token) stays silent.
    let (zeus, zuid) = customer_with_container(&berth, "zeus").await;
    update(&berth, &zeus, zuid, json!({ "pushoverUser": "only-user" })).await;
    update(
        &berth,
        &kratos,
        uid,
        json!({
            "pushoverUser": "u-kratos",
            "pushoverToken": "t-kratos",
            "pushoverSound": "siren",
            "pushbulletToken": "pb-kratos",
            "slackWebhook": receiver.url("/slack/T000/B000/XXXX"),
        }),
    )
    .await;
    let name = container_name(&berth, &kratos, uid).await;
    raise(&berth, &zeus, zuid, "nobody hears this").await;
    let id = raise(&berth, &kratos, uid, "disk quota at 95% & <rising>").await;

    let pushover = receiver.wait_for("/pushover", 1).await;
    assert_eq!(pushover[0].method, Method::POST);
    assert_eq!(pushover[0].path, "/pushover/1/messages.json");
    assert!(pushover[0].header("content-type").unwrap().starts_with("application/x-www-form-urlencoded"));
    let form = pushover[0].form();
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(field("token"), Some("t-kratos"));
    assert_eq!(field("user"), Some("u-kratos"));
    assert_eq!(field("message"), Some("disk quota at 95% & <rising>"));
    assert_eq!(field("sound"), Some("siren"));
    let title = field("title").unwrap();
    assert!(title.contains(&name) && title.contains(&uid.to_string()), "{title}");

    let pushbullet = receiver.wait_for("/pushbullet", 1).await;
    assert_eq!(pushbullet[0].method, Method::POST);
    assert_eq!(pushbullet[0].path, "/pushbullet/v2/pushes");
    assert_eq!(pushbullet[0].header("access-token"), Some("pb-kratos"));
    let body = pushbullet[0].json();
    assert_eq!(body["type"], "note");
    assert_eq!(body["body"], "disk quota at 95% & <rising>");
    assert!(body["title"].as_str().unwrap().contains(&name), "{body}");

    let slack = receiver.wait_for("/slack", 1).await;
    assert_eq!(slack[0].method, Method::POST);
    assert_eq!(slack[0].path, "/slack/T000/B000/XXXX");
    assert!(slack[0].header("content-type").unwrap().starts_with("application/json"));
    let text = slack[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("disk quota at 95% & <rising>") && text.contains(&name), "{text}");

    // Each channel got exactly this alarm once; zeus's incomplete Pushover got nothing.
    wait_log(&berth, &["alarm delivered", &format!("alarm={id} ")], 3).await;
    assert_eq!(receiver.requests("/").len(), 3, "{:?}", receiver.requests("/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_freq_allows_one_delivery_per_interval() {
    let receiver = Receiver::start().await;
    let berth = Berth::start_with(opts(&receiver, true)).await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    let updated =
        update(&berth, &kratos, uid, json!({ "alarmFreq": 60, "slackWebhook": receiver.url("/slack/k") })).await;
    assert_eq!(updated["updateContainer"]["alarmFreq"], 60);
    let first = raise(&berth, &kratos, uid, "first").await;
    let second = raise(&berth, &kratos, uid, "second").await;
    // The second alarm is processed (and skipped) by the worker...
    wait_log(&berth, &["alarm delivery skipped: alarm_freq", &format!("alarm={second} ")], 1).await;
    let got = receiver.wait_for("/slack", 1).await;
    wait_log(&berth, &["alarm delivered", &format!("alarm={first} ")], 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].json()["text"].as_str().unwrap().ends_with("first"));
    // ...but both alarms are stored.
    let alarms = berth
        .gql_ok(kratos.auth(), "query($c: Int) { alarms(container: $c) { totalCount } }", json!({ "c": uid }))
        .await;
    assert_eq!(alarms["alarms"]["totalCount"], 2);
    // The slot is in the database: a restarted gateway still honours it.
    let mut berth = berth;
    berth.restart().await;
    let third = raise(&berth, &kratos, uid, "third").await;
    wait_log(&berth, &["alarm delivery skipped: alarm_freq", &format!("alarm={third} ")], 1).await;
    assert_eq!(receiver.requests("/slack").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried() {
    let receiver = Receiver::start().await;
    let berth = Berth::start_with(opts(&receiver, true)).await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    update(&berth, &kratos, uid, json!({ "slackWebhook": receiver.url("/slack/retry") })).await;
    receiver.script(&[500]);
    let id = raise(&berth, &kratos, uid, "flaky").await;
    let got = receiver.wait_for("/slack", 2).await;
    assert_eq!(got[0].body, got[1].body, "the retry sends the same alarm");
    let retried =
        wait_log(&berth, &["alarm delivery failed, retrying", "channel=slack", &format!("alarm={id} ")], 1).await;
    assert!(retried[0].contains("500"), "{retried:?}");
    let delivered = wait_log(&berth, &["alarm delivered", "channel=slack", &format!("alarm={id} ")], 1).await;
    assert!(delivered[0].contains("attempt=2"), "{delivered:?}");
    assert_eq!(receiver.requests("/slack").len(), 2);
}

/// A committed alarm's delivery outlives the gateway that raised it: the gateway dies while
/// it waits to retry, and the next one resumes the delivery once the lease runs out, at the
/// next attempt, with the same alarm.
async fn a_delivery_outlives_a_crash_of_its_gateway(engine: common::Engine) {
    let receiver = Receiver::start().await;
    let mut opts = opts(&receiver, true);
    opts.args.extend(["--delivery-lease".to_owned(), "1".to_owned()]);
    let Some(mut berth) = common::start(engine, opts).await else { return };
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    update(&berth, &kratos, uid, json!({ "slackWebhook": receiver.url("/slack/crash") })).await;
    receiver.script(&[503]);
    let id = raise(&berth, &kratos, uid, "outlives its gateway").await;
    let alarm = format!("alarm={id} ");
    // Logged once the gateway holds the delivery for its second attempt (about 1 s away).
    wait_log(&berth, &["alarm delivery failed, retrying", &alarm], 1).await;
    berth.kill9().await;
    assert_eq!(berth.count("alarm_deliveries").await, 1, "the delivery is still pending");
    assert_eq!(receiver.requests("/slack").len(), 1);

    berth.restart().await;
    let delivered = wait_log(&berth, &["alarm delivered", "channel=slack", &alarm], 1).await;
    assert!(delivered[0].contains("attempt=2"), "{delivered:?}");
    let got = receiver.requests("/slack");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].body, got[1].body, "the same alarm");
    assert!(got[1].json()["text"].as_str().unwrap().ends_with("outlives its gateway"));
    assert_eq!(berth.count("alarm_deliveries").await, 0, "done: nothing left pending");
    // And so says /metrics, at the worker's next poll.
    let started = tokio::time::Instant::now();
    loop {
        let text = berth.http().get(berth.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if text.lines().any(|l| l == "berth_alarm_deliveries_pending 0") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no pending gauge at 0 in /metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_engines!(a_delivery_outlives_a_crash_of_its_gateway);

/// A host name (not `localhost`) that resolves only to loopback addresses, if this machine
/// has one (`/etc/hosts` usually maps the hostname).
async fn loopback_name() -> Option<String> {
    let name = std::fs::read_to_string("/etc/hostname").ok()?.trim().to_owned();
    if name.is_empty() || name == "localhost" {
        return None;
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 80)).await.ok()?.collect();
    (!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())).then_some(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_refused_without_the_operator_flag() {
    let receiver = Receiver::start().await;
    // Operator URLs (Pushover, Pushbullet) are trusted; customer URLs and XMPP servers are not.
    let berth = Berth::start_with(opts(&receiver, false)).await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    update(&berth, &kratos, uid, json!({ "pushbulletToken": "pb" })).await;
    // Set behind the API's back (the API refuses literal private URLs, see
    // `private_urls_are_bad_input`): what delivery does with a URL that is private now.
    let mut targets = vec![receiver.url("/slack/literal")];
    if let Some(name) = loopback_name().await {
        targets.push(format!("http://{name}:{}/slack/by-name", receiver.addr.port()));
    } else {
        eprintln!("no host name resolving to loopback here: only the literal address is tested");
    }
    let store = berth.store().await;
    // An XMPP account whose server (the JID's domain) is loopback: refused the same way.
    sqlx::query(
        "UPDATE containers SET jid = 'kratos@127.0.0.1', jid_secret = 's', jid_destinations = 'ops@example.com' \
         WHERE id = $1",
    )
    .bind(uid - 30000)
    .execute(store.pool())
    .await
    .unwrap();
    for target in &targets {
        sqlx::query("UPDATE containers SET slack_webhook = $1 WHERE id = $2")
            .bind(target.as_str())
            .bind(uid - 30000)
            .execute(store.pool())
            .await
            .unwrap();
        // Let the previous alarm's slot expire.
        sqlx::query("UPDATE containers SET last_alarm_delivery = 0 WHERE id = $1")
            .bind(uid - 30000)
            .execute(store.pool())
            .await
            .unwrap();
        let before = receiver.requests("/pushbullet").len();
        let id = raise(&berth, &kratos, uid, "to the intranet").await;
        receiver.wait_for("/pushbullet", before + 1).await;
        let refused = wait_log(&berth, &["alarm not delivered", "channel=slack", &format!("alarm={id} ")], 1).await;
        assert!(refused[0].contains("refused"), "{refused:?}");
        let refused = wait_log(&berth, &["alarm not delivered", "channel=xmpp", &format!("alarm={id} ")], 1).await;
        assert!(refused[0].contains("refused") && refused[0].contains("127.0.0.1:5222"), "{refused:?}");
    }
    assert!(receiver.requests("/slack").is_empty(), "{:?}", receiver.requests("/slack"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_one_postgres_agree_on_alarm_freq() {
    let receiver = Receiver::start().await;
    let Some(one) = Berth::start_postgres_with(opts(&receiver, true)).await else {
        return;
    };
    let mut second = opts(&receiver, true);
    second.database = Some(one.database_url.clone());
    let two = Berth::start_with(second).await;
    let (kratos, uid) = customer_with_container(&one, "kratos").await;
    update(&one, &kratos, uid, json!({ "slackWebhook": receiver.url("/slack/pg") })).await;
    let (a, b) = tokio::join!(raise(&one, &kratos, uid, "via one"), raise(&two, &kratos, uid, "via two"));
    let got = receiver.wait_for("/slack", 1).await;
    // Whichever gateway lost the race logs the skip.
    let started = tokio::time::Instant::now();
    loop {
        let skipped = [(&one, a), (&two, b)]
            .iter()
            .filter(|(g, id)| {
                log_text(g)
                    .lines()
                    .any(|l| l.contains("alarm delivery skipped: alarm_freq") && l.contains(&format!("alarm={id} ")))
            })
            .count();
        if skipped == 1 {
            break;
        }
        assert!(skipped == 0 && started.elapsed() < DEADLINE, "expected one skip, got {skipped}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.requests("/slack").len(), 1, "{got:?}");
    drop(two);
}

/// A prosody XMPP server of the test's own: config, data and log in a temp dir, c2s on a
/// free port of 127.0.0.1, no s2s, no HTTP. Killed (its pid only) and removed on drop.
struct Prosody {
    child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

const XMPP_HOST: &str = "berth.test";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

impl Prosody {
    /// `None` (skip) when prosody is not installed, unless `BERTH_REQUIRE_ALL=1`.
    async fn start() -> Option<Prosody> {
        if !on_path("prosody") || !on_path("prosodyctl") {
            assert!(
                std::env::var("BERTH_REQUIRE_ALL").as_deref() != Ok("1"),
                "BERTH_REQUIRE_ALL=1 but prosody is not installed (apt-get install prosody)"
            );
            eprintln!("skipping XMPP test: prosody not installed");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("berth-prosody-").tempdir().unwrap();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let path = |p: &str| dir.path().join(p).display().to_string();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        // Test-only settings: no TLS (no certificate), plain authentication in clear.
        let config = format!(
            r#"run_as_root = true
pidfile = "{pid}"
data_path = "{data}"
certificates = "{certs}"
interfaces = {{ "127.0.0.1" }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "offline"; }}
modules_disabled = {{ "s2s" }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
log = {{ debug = "{log}" }}
VirtualHost "{XMPP_HOST}"
"#,
            pid = path("prosody.pid"),
            data = path("data"),
            certs = path("certs"),
            log = path("prosody.log"),
        );
        let config_path = dir.path().join("prosody.cfg.lua");
        std::fs::write(&config_path, config).unwrap();
        for (user, password) in [("sender", "pw-sender"), ("dest1", "pw-1"), ("dest2", "pw-2")] {
            let out = tokio::process::Command::new("prosodyctl")
                .arg("--config")
                .arg(&config_path)
                .args(["register", user, XMPP_HOST, password])
                .output()
                .await
                .expect("run prosodyctl");
            assert!(out.status.success(), "prosodyctl register {user}: {out:?}");
        }
        let child = tokio::process::Command::new("prosody")
            .arg("--config")
            .arg(&config_path)
            .arg("-F")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn prosody");
        let prosody = Prosody { child, port, dir };
        let started = tokio::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                started.elapsed() < DEADLINE,
                "prosody did not listen on {port}; its log:\n{}",
                std::fs::read_to_string(prosody.dir.path().join("prosody.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(prosody)
    }

    /// The offline messages prosody stored for `user` (they were never online), as raw text.
    fn offline_store(&self, user: &str) -> String {
        fn walk(dir: &std::path::Path, user: &str, out: &mut String) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, user, out);
                } else if path.to_string_lossy().contains("offline")
                    && path.file_stem().is_some_and(|s| s.to_string_lossy() == user)
                {
                    out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        let mut out = String::new();
        walk(&self.dir.path().join("data"), user, &mut out);
        out
    }

    async fn wait_offline(&self, user: &str, needle: &str) -> String {
        let started = tokio::time::Instant::now();
        loop {
            let stored = self.offline_store(user);
            if stored.contains(needle) {
                return stored;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{user} got no message with {needle:?}; stored: {stored:?}; prosody log:\n{}",
                std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        // The pid this test spawned, nothing else; then wait so the temp dir goes last.
        let _ = self.child.start_kill();
        if let Some(pid) = self.child.id() {
            for _ in 0..200 {
                match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    Ok(stat) if !stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z')) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_messages_reach_every_destination() {
    let Some(prosody) = Prosody::start().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let mut options = opts(&receiver, false);
    options.args.extend([
        "--xmpp-server".to_owned(),
        format!("127.0.0.1:{}", prosody.port),
        "--xmpp-allow-plaintext".to_owned(),
    ]);
    let berth = Berth::start_with(options).await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    update(
        &berth,
        &kratos,
        uid,
        json!({
            "jid": format!("sender@{XMPP_HOST}"),
            "jidSecret": "pw-sender",
            "jidDestinations": format!("dest1@{XMPP_HOST}, dest2@{XMPP_HOST}"),
        }),
    )
    .await;
    let name = container_name(&berth, &kratos, uid).await;
    let id = raise(&berth, &kratos, uid, "oom killer <fired> & restarted").await;
    for user in ["dest1", "dest2"] {
        let stored = prosody.wait_offline(user, "oom killer <fired> & restarted").await;
        assert!(stored.contains(&name), "{stored}");
        assert!(stored.contains(&format!("sender@{XMPP_HOST}")), "{stored}");
    }
    wait_log(&berth, &["alarm delivered", "channel=xmpp", &format!("alarm={id} ")], 1).await;

    // A wrong password fails for good: logged, not retried, nothing sent.
    let (zeus, zuid) = customer_with_container(&berth, "zeus").await;
    update(
        &berth,
        &zeus,
        zuid,
        json!({
            "jid": format!("sender@{XMPP_HOST}"),
            "jidSecret": "wrong",
            "jidDestinations": format!("dest1@{XMPP_HOST}"),
        }),
    )
    .await;
    let bad = raise(&berth, &zeus, zuid, "never sent").await;
    let failed = wait_log(&berth, &["alarm not delivered", "channel=xmpp", &format!("alarm={bad} ")], 1).await;
    assert!(failed[0].contains("authentication failed") && failed[0].contains("attempt=1"), "{failed:?}");
    assert!(!prosody.offline_store("dest1").contains("never sent"));
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The receiver's side of the README recipe: HMAC-SHA256 keyed by the secret over
/// `<timestamp>.<raw body>`, lowercase hex, `sha256=` prefix.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

const ROTATE: &str = "mutation($uid: Int!) { rotateWebhookSecret(uid: $uid) }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_is_signed() {
    let receiver = Receiver::start().await;
    let berth = Berth::start_with(opts(&receiver, true)).await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    let (zeus, _) = customer_with_container(&berth, "zeus").await;
    let hook = receiver.url("/hook/kratos");
    update(&berth, &kratos, uid, json!({ "webhookUrl": hook })).await;
    let shown = berth
        .gql_ok(kratos.auth(), "query($uid: Int!) { container(uid: $uid) { name webhookUrl } }", json!({ "uid": uid }))
        .await;
    assert_eq!(shown["container"]["webhookUrl"], hook.as_str());
    let name = shown["container"]["name"].as_str().unwrap().to_owned();

    let old = berth.gql_ok(kratos.auth(), ROTATE, json!({ "uid": uid })).await["rotateWebhookSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = berth.gql_ok(kratos.auth(), ROTATE, json!({ "uid": uid })).await["rotateWebhookSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 64);
    assert_ne!(old, secret, "rotation makes a new secret");
    // Another customer's container looks missing.
    let foreign = berth.gql(zeus.auth(), ROTATE, json!({ "uid": uid })).await;
    assert_eq!(error_code(&foreign), Some("NOT_FOUND"), "{foreign}");

    let id = raise(&berth, &kratos, uid, "signed & sealed").await;
    let got = receiver.wait_for("/hook", 1).await;
    let request = &got[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/hook/kratos");
    assert!(request.header("content-type").unwrap().starts_with("application/json"));
    let timestamp = request.header("x-berth-timestamp").expect("timestamp header");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - timestamp.parse::<i64>().unwrap()).abs() < 300, "{timestamp}");
    let signature = request.header("x-berth-signature").expect("signature header");
    assert_eq!(signature, expected_signature(&secret, timestamp, &request.body));
    assert_ne!(signature, expected_signature(&old, timestamp, &request.body), "the old secret no longer signs");
    let mut tampered = request.body.to_vec();
    tampered[1] ^= 1;
    assert_ne!(signature, expected_signature(&secret, timestamp, &tampered));
    let body = request.json();
    assert_eq!(body["id"], id);
    assert_eq!(body["container"], uid);
    assert_eq!(body["container_name"], name.as_str());
    assert_eq!(body["msg"], "signed & sealed");
    assert_eq!(body["level"], 1);
    assert_eq!(body["color"], "#ffffff");
    wait_log(&berth, &["alarm delivered", "channel=webhook", &format!("alarm={id} ")], 1).await;

    // Clearing the URL turns the channel off.
    update(&berth, &kratos, uid, json!({ "webhookUrl": null })).await;
    let shown = berth
        .gql_ok(kratos.auth(), "query($uid: Int!) { container(uid: $uid) { webhookUrl } }", json!({ "uid": uid }))
        .await;
    assert!(shown["container"]["webhookUrl"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_urls_are_bad_input() {
    let receiver = Receiver::start().await;
    let berth = Berth::start_with(opts(&receiver, false)).await;
    let (kratos, uid) = customer_with_container(&berth, "kratos").await;
    for (field, url) in [
        ("slackWebhook", "http://127.0.0.1:9/x"),
        ("slackWebhook", "http://localhost/x"),
        ("webhookUrl", "http://10.0.0.1/hook"),
        ("webhookUrl", "http://[::1]:8080/"),
        ("webhookUrl", "http://169.254.169.254/latest/meta-data/"),
        ("webhookUrl", "ftp://example.com/"),
        ("webhookUrl", "not a url"),
        ("jid", "kratos@127.0.0.1"),
        ("jid", "kratos@10.0.0.7/laptop"),
        ("jid", "kratos@[::1]"),
    ] {
        let body = berth.gql(kratos.auth(), UPDATE, json!({ "uid": uid, "input": { field: url } })).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{field} {url}: {body}");
    }
    // Public URLs are accepted (no DNS at update time; delivery checks what they resolve to).
    update(
        &berth,
        &kratos,
        uid,
        json!({
            "slackWebhook": "https://hooks.slack.com/services/T0/B0/X",
            "webhookUrl": "https://ops.example.com/berth",
            "jid": "kratos@jabber.example.com",
        }),
    )
    .await;
    let shown = berth
        .gql_ok(
            kratos.auth(),
            "query($uid: Int!) { container(uid: $uid) { slackWebhook webhookUrl } }",
            json!({ "uid": uid }),
        )
        .await;
    assert_eq!(shown["container"]["webhookUrl"], "https://ops.example.com/berth");
    assert_eq!(shown["container"]["slackWebhook"], "https://hooks.slack.com/services/T0/B0/X");
}
