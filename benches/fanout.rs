//! WebSocket fan-out load tool (not criterion): opens N `graphql-transport-ws` subscriptions
//! `subscription { alarms { id } }` of one customer on a RUNNING `berth serve`, raises ONE
//! alarm per round through `POST /graphql`, and measures the time from just before that POST
//! until each subscriber has the alarm. Also reports the server's RSS per idle subscriber
//! (VmRSS of `--server-pid` before and after opening the subscriptions).
//!
//! ```sh
//! cargo bench -p berth-benches --bench fanout -- --addr 127.0.0.1:8080 --user kratos --password deimos \
//!     --container 30001 --subscribers 10000 --rounds 20 --server-pid 1234 --sources 8
//! ```
//! benches/fanout.sh starts the server, raises the fd limit and runs this. Without `--addr` it
//! prints its usage and exits 0 (so a plain `cargo bench` passes).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    addr: SocketAddr,
    user: String,
    password: String,
    container: i64,
    subscribers: usize,
    rounds: usize,
    server_pid: Option<u32>,
    sources: u8,
    open_concurrency: usize,
    /// Worker threads of the measuring client (0: one per core, tokio's default).
    client_threads: usize,
}

fn args() -> Option<Args> {
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut a = Args {
        addr: "127.0.0.1:0".parse().unwrap(),
        user: String::new(),
        password: String::new(),
        container: 0,
        subscribers: 10_000,
        rounds: 20,
        server_pid: None,
        sources: 8,
        open_concurrency: 256,
        client_threads: 0,
    };
    let mut have_addr = false;
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => {
                a.addr = v.parse().expect("--addr IP:PORT");
                have_addr = true;
            }
            "--user" => a.user = v,
            "--password" => a.password = v,
            "--container" => a.container = v.parse().expect("--container UID"),
            "--subscribers" => a.subscribers = v.parse().expect("--subscribers N"),
            "--rounds" => a.rounds = v.parse().expect("--rounds N"),
            "--server-pid" => a.server_pid = Some(v.parse().expect("--server-pid PID")),
            "--sources" => a.sources = v.parse().expect("--sources K (1..=250)"),
            "--open-concurrency" => a.open_concurrency = v.parse().expect("--open-concurrency N"),
            "--client-threads" => a.client_threads = v.parse().expect("--client-threads N"),
            other => panic!("unknown flag {other}"),
        }
    }
    have_addr.then_some(a)
}

/// CPU time (ns) all threads of a process have run so far, from the scheduler's own
/// accounting (`/proc/PID/task/*/schedstat`): fine enough to tell one round from another.
fn sched_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Context switches (voluntary and not) of all threads of a process so far: a client
/// woken for every message instead of reading them in batches shows here.
fn switches(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A server message, as far as the measurement reads it.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    payload: Option<NextPayload>,
}

#[derive(serde::Deserialize)]
struct NextPayload {
    data: Option<AlarmData>,
}

#[derive(serde::Deserialize)]
struct AlarmData {
    alarms: AlarmId,
}

#[derive(serde::Deserialize)]
struct AlarmId {
    id: i64,
}

/// Where each subscriber's task records what it last received, and when. The collector wakes
/// once per round (when the count reaches its target), not once per message: a channel
/// send per message woke the collecting thread thousands of times a round, and that
/// context switching was most of this client's own CPU, taken from the cores it shares
/// with the server it measures.
struct Arrivals {
    start: Instant,
    /// Per subscriber: the last alarm id it received (-1: its stream ended or failed).
    alarm: Vec<AtomicI64>,
    /// Per subscriber: when that message was read, in ns since `start`.
    at_ns: Vec<AtomicU64>,
    /// Messages recorded so far, over all subscribers and rounds.
    count: AtomicUsize,
    /// `count` at which the collector wants waking.
    wake_at: AtomicUsize,
    reached: Notify,
}

impl Arrivals {
    fn new(subscribers: usize) -> Self {
        Arrivals {
            start: Instant::now(),
            alarm: (0..subscribers).map(|_| AtomicI64::new(0)).collect(),
            at_ns: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicUsize::new(0),
            wake_at: AtomicUsize::new(usize::MAX),
            reached: Notify::new(),
        }
    }

    fn record(&self, i: usize, alarm: i64, at: Instant) {
        self.at_ns[i].store(at.duration_since(self.start).as_nanos() as u64, Ordering::Relaxed);
        self.alarm[i].store(alarm, Ordering::Relaxed);
        // Release: the collector that sees the count also sees the slot above.
        let count = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if count == self.wake_at.load(Ordering::Acquire) || alarm < 0 {
            self.reached.notify_one();
        }
    }

    /// Waits until `target` messages have been recorded in all (or a subscriber ended).
    async fn wait_for(&self, target: usize, deadline: tokio::time::Instant) -> Result<(), usize> {
        self.wake_at.store(target, Ordering::Release);
        loop {
            let count = self.count.load(Ordering::Acquire);
            if count >= target || self.alarm.iter().any(|a| a.load(Ordering::Relaxed) < 0) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, self.reached.notified()).await.is_err() {
                return Err(count);
            }
        }
    }
}

/// Opens one subscription; returns once the subscribe message is sent, leaving a task that
/// records every `next` it receives in `arrivals` (alarm id, when).
async fn open_one(i: usize, a: &Args, authorization: &str, arrivals: Arc<Arrivals>) -> Result<(), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    // Spread the client side over 127.0.0.2.. so ephemeral ports never run out.
    let source = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(a.sources)) as u8);
    socket.bind(SocketAddr::new(source.into(), 0)).map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket.connect(a.addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let mut request = format!("ws://{}/graphql/ws", a.addr).into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    // tungstenite zero-fills its read buffer up to `read_buffer_size` before every read: at
    // the default 128 KiB that memset (and malloc's mmap/munmap of the buffer) cost the
    // measuring client more CPU than the server spent per message, on the same 2 cores.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": authorization } });
    ws.send(Message::text(init.to_string())).await.map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                match v["type"].as_str() {
                    Some("connection_ack") => break,
                    Some("ping") => ws.send(Message::text(r#"{"type":"pong"}"#)).await.map_err(|e| e.to_string())?,
                    _ => return Err(format!("expected connection_ack, got {t}")),
                }
            }
            Some(Ok(Message::Close(f))) => return Err(format!("closed before ack: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("ended before ack".into()),
        }
    }
    let sub = json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { alarms { id } }" } });
    ws.send(Message::text(sub.to_string())).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(message) = ws.next().await {
            let Ok(Message::Text(t)) = message else {
                if message.is_err() {
                    break;
                }
                continue;
            };
            let at = Instant::now();
            // Typed and borrowed: a serde_json::Value per message was the client's own cost.
            let Ok(incoming) = serde_json::from_str::<Incoming>(&t) else { continue };
            match incoming.kind {
                "next" => {
                    let id = incoming.payload.and_then(|p| p.data).map_or(-1, |d| d.alarms.id);
                    arrivals.record(i, id, at);
                }
                "ping" => {
                    let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
                }
                "error" | "complete" => {
                    eprintln!("subscriber {i}: {t}");
                    arrivals.record(i, -1, at);
                }
                _ => {}
            }
        }
        // The collector stops waiting for a subscriber whose stream is gone.
        arrivals.record(i, -1, Instant::now());
    });
    Ok(())
}

async fn graphql(http: &reqwest::Client, a: &Args, authorization: &str, query: &str) -> Value {
    let resp = http
        .post(format!("http://{}/graphql", a.addr))
        .header("Authorization", authorization)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("POST /graphql");
    let body: Value = resp.json().await.expect("JSON answer");
    assert!(body.get("errors").is_none(), "GraphQL errors: {body}");
    body["data"].clone()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn main() {
    let Some(a) = args() else {
        eprintln!(
            "usage: fanout --addr IP:PORT --user U --password P --container UID [--subscribers 10000] \
             [--rounds 20] [--server-pid PID] [--sources 8] [--open-concurrency 256] [--client-threads 0]"
        );
        return;
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if a.client_threads > 0 {
        runtime.worker_threads(a.client_threads);
    }
    let runtime = runtime.enable_all().build().unwrap();
    runtime.block_on(run(Arc::new(a)));
}

async fn run(a: Arc<Args>) {
    let authorization =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", a.user, a.password)));
    let http = reqwest::Client::new();
    // One authenticated request first: the password check is then cached, so the N
    // connection_inits below cost no argon2 each.
    graphql(&http, &a, &authorization, "{ me { company } }").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = a.server_pid.and_then(vm_rss_kib);

    let arrivals = Arc::new(Arrivals::new(a.subscribers));
    let opening = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..a.subscribers)
        .map(|i| {
            let a = a.clone();
            let authorization = authorization.clone();
            let arrivals = arrivals.clone();
            async move { open_one(i, &a, &authorization, arrivals).await }
        })
        .buffer_unordered(a.open_concurrency)
        .collect()
        .await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        panic!("{} of {} subscriptions failed to open; first: {first}", failed.len(), a.subscribers);
    }
    println!("opened {} subscriptions in {:.2?}", a.subscribers, opening.elapsed());

    // Round 0 is the warm-up: it proves every subscription is registered (subscribe has no
    // acknowledgement in graphql-transport-ws) and is not counted.
    let raise = format!("mutation {{ raiseAlarm(container: {}, message: \"fanout\") {{ id }} }}", a.container);
    let mut per_subscriber: Vec<f64> = Vec::new();
    let mut all_delivered: Vec<f64> = Vec::new();
    let mut post_times: Vec<f64> = Vec::new();
    let mut rss_after = None;
    // CPU of both processes from the end of the warm-up to the end of the last round: per
    // round, what one fan-out costs the server and this client on the shared cores.
    // Without --server-pid the server's figures read as 0.
    let server_pid = a.server_pid.map(|p| p.to_string()).unwrap_or_default();
    let cpu_now = || (sched_ns(&server_pid), sched_ns("self"));
    let mut cpu_at_start = (0, 0);
    for round in 0..=a.rounds {
        let cpu_before = (sched_ns(&server_pid), sched_ns("self"));
        let sw_before = (switches(&server_pid), switches("self"));
        let t0 = Instant::now();
        let data = graphql(&http, &a, &authorization, &raise).await;
        let posted = t0.elapsed();
        let id = data["raiseAlarm"]["id"].as_i64().expect("alarm id");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let target = (round + 1) * a.subscribers;
        if let Err(got) = arrivals.wait_for(target, deadline).await {
            panic!(
                "round {round}: only {} of {} subscribers got alarm {id} within 60 s",
                got + a.subscribers - target,
                a.subscribers
            );
        }
        let t0_ns = t0.duration_since(arrivals.start).as_nanos() as u64;
        let mut latencies = Vec::with_capacity(a.subscribers);
        for i in 0..a.subscribers {
            let alarm = arrivals.alarm[i].load(Ordering::Relaxed);
            assert!(alarm >= 0, "subscriber {i} ended (see above)");
            assert_eq!(alarm, id, "subscriber {i} got alarm {alarm} in round {round}, not {id}");
            let at_ns = arrivals.at_ns[i].load(Ordering::Relaxed);
            latencies.push(at_ns.saturating_sub(t0_ns) as f64 / 1e6);
        }
        let last = latencies.iter().cloned().fold(0.0, f64::max);
        if round == 0 {
            println!("warm-up round: all {} subscribers had alarm {id} after {last:.1} ms", a.subscribers);
            tokio::time::sleep(Duration::from_secs(2)).await;
            rss_after = a.server_pid.and_then(vm_rss_kib);
            cpu_at_start = cpu_now();
        } else {
            let (server, client) = (sched_ns(&server_pid) - cpu_before.0, sched_ns("self") - cpu_before.1);
            println!(
                "round {round}: POST {:.1} ms, all delivered after {last:.1} ms; switches {} {}; CPU server {:.1} ms, client {:.1} ms",
                posted.as_secs_f64() * 1e3,
                switches(&server_pid) - sw_before.0,
                switches("self") - sw_before.1,
                server as f64 / 1e6,
                client as f64 / 1e6
            );
            per_subscriber.extend(latencies);
            all_delivered.push(last);
            post_times.push(posted.as_secs_f64() * 1e3);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu_at_end = cpu_now();
    let sort = |v: &mut Vec<f64>| v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    sort(&mut per_subscriber);
    sort(&mut all_delivered);
    sort(&mut post_times);
    println!("RESULT subscribers={} rounds={}", a.subscribers, a.rounds);
    println!(
        "RESULT per-subscriber delivery ms: p50={:.1} p99={:.1} max={:.1} (n={})",
        percentile(&per_subscriber, 50.0),
        percentile(&per_subscriber, 99.0),
        percentile(&per_subscriber, 100.0),
        per_subscriber.len()
    );
    println!(
        "RESULT all-delivered per round ms: p50={:.1} p99={:.1} min={:.1}",
        percentile(&all_delivered, 50.0),
        percentile(&all_delivered, 99.0),
        percentile(&all_delivered, 0.0)
    );
    println!(
        "RESULT raiseAlarm POST ms: p50={:.1} p99={:.1}",
        percentile(&post_times, 50.0),
        percentile(&post_times, 99.0)
    );
    let per_round = |start: u64, end: u64| (end - start) as f64 / 1e6 / a.rounds.max(1) as f64;
    println!(
        "RESULT CPU per round ms (pauses between rounds included, idle): server={:.1} client={:.1}",
        per_round(cpu_at_start.0, cpu_at_end.0),
        per_round(cpu_at_start.1, cpu_at_end.1)
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let per = (after.saturating_sub(before)) as f64 / a.subscribers as f64;
        println!("RESULT server VmRSS: before={before} KiB after={after} KiB => {per:.1} KiB per idle subscriber");
    }
}
