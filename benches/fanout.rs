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
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
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

/// CPU time (user + system, all threads) a process has used so far, in ms. /proc counts
/// it in clock ticks of USER_HZ, which Linux fixes at 100 for user space.
fn cpu_ms(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, so utime
    // (14) and stime (15) are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10)
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

/// Opens one subscription; returns once the subscribe message is sent, leaving a task that
/// reports every `next` it receives as (subscriber, alarm id, when).
async fn open_one(
    i: usize,
    a: &Args,
    authorization: &str,
    tx: mpsc::UnboundedSender<(usize, i64, Instant)>,
) -> Result<(), String> {
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
                    let _ = tx.send((i, id, at));
                }
                "ping" => {
                    let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
                }
                "error" | "complete" => {
                    eprintln!("subscriber {i}: {t}");
                    let _ = tx.send((i, -1, at));
                }
                _ => {}
            }
        }
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

    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, i64, Instant)>();
    let opening = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..a.subscribers)
        .map(|i| {
            let a = a.clone();
            let authorization = authorization.clone();
            let tx = tx.clone();
            async move { open_one(i, &a, &authorization, tx).await }
        })
        .buffer_unordered(a.open_concurrency)
        .collect()
        .await;
    drop(tx);
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
    let cpu_now = || (a.server_pid.and_then(|p| cpu_ms(&p.to_string())), cpu_ms("self"));
    let mut cpu_at_start = (None, None);
    for round in 0..=a.rounds {
        let t0 = Instant::now();
        let data = graphql(&http, &a, &authorization, &raise).await;
        let posted = t0.elapsed();
        let id = data["raiseAlarm"]["id"].as_i64().expect("alarm id");
        let mut seen = vec![false; a.subscribers];
        let mut got = 0usize;
        let mut latencies = Vec::with_capacity(a.subscribers);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while got < a.subscribers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((i, alarm, at))) => {
                    assert!(alarm >= 0, "subscriber {i} ended (see above)");
                    if alarm == id && !seen[i] {
                        seen[i] = true;
                        got += 1;
                        latencies.push(at.duration_since(t0).as_secs_f64() * 1e3);
                    }
                }
                Ok(None) => panic!("every subscriber task ended"),
                Err(_) => {
                    panic!("round {round}: only {got} of {} subscribers got alarm {id} within 60 s", a.subscribers)
                }
            }
        }
        let last = latencies.iter().cloned().fold(0.0, f64::max);
        if round == 0 {
            println!("warm-up round: all {} subscribers had alarm {id} after {last:.1} ms", a.subscribers);
            tokio::time::sleep(Duration::from_secs(2)).await;
            rss_after = a.server_pid.and_then(vm_rss_kib);
            cpu_at_start = cpu_now();
        } else {
            println!("round {round}: POST {:.1} ms, all delivered after {last:.1} ms", posted.as_secs_f64() * 1e3);
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
    let per_round = |start: Option<u64>, end: Option<u64>| {
        start.zip(end).map_or("?".to_owned(), |(s, e)| format!("{:.1}", (e - s) as f64 / a.rounds.max(1) as f64))
    };
    println!(
        "RESULT CPU per round ms (pauses between rounds included, idle): server={} client={}",
        per_round(cpu_at_start.0, cpu_at_end.0),
        per_round(cpu_at_start.1, cpu_at_end.1)
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let per = (after.saturating_sub(before)) as f64 / a.subscribers as f64;
        println!("RESULT server VmRSS: before={before} KiB after={after} KiB => {per:.1} KiB per idle subscriber");
    }
}
