//! Alarm delivery to a container's channels: XMPP, Pushover, Pushbullet, Slack and a signed
//! webhook (seed "Alarms"; spec §5.7).
//!
//! Flow: [`crate::Service`] stores an alarm, commits, and hands it to [`Delivery::enqueue`]
//! (a bounded in-process queue: the raiser never waits, a full queue drops and counts). The
//! [`DeliveryWorker`] task spawned by `berth serve` takes each job, loads the container,
//! picks its complete channels ([`channels_for`]) and takes the container's delivery slot in
//! the database with one conditional `UPDATE` (`berth_store::alarm_delivery::claim`): at most
//! one delivery per `alarm_freq` seconds per container, agreed by every gateway on the same
//! PostgreSQL. An alarm whose slot is taken is still stored and published; only delivery is
//! skipped. Each channel then gets up to [`DeliveryConfig::attempts`] attempts with jittered
//! exponential backoff (1 s, then 4 s by default); retries happen on transport errors, 408,
//! 429 and 5xx. Failures are logged with channel and status and counted in
//! [`DeliveryMetrics`]; they never reach the raiser.
//!
//! Customer URLs (`slack_webhook`, `webhook_url`) pass [`ssrf`]: loopback, private,
//! link-local and unspecified addresses are refused, both as literals and as the addresses a
//! name resolves to, unless the operator allows them (`--allow-private-webhooks`).
//!
//! # Verifying the signed webhook
//!
//! A container's `webhook_url` receives `POST` requests with a JSON body (the alarm:
//! `id`, `container` (uid), `container_name`, `unix`, `level`, `color`, `msg`, `line`,
//! `func`, `filename`, `class`, `vassal`) and two headers:
//!
//! - `X-Berth-Timestamp: <unix seconds>`
//! - `X-Berth-Signature: sha256=<hex>`, where `<hex>` is the lowercase hexadecimal
//!   HMAC-SHA256 of the bytes `<timestamp>.<body>` (the timestamp header value, a dot, the
//!   raw request body exactly as received), keyed by the container's webhook secret (the
//!   string returned by `rotateWebhookSecret`, as UTF-8 bytes).
//!
//! A receiver recomputes the HMAC over the raw body, compares it with the header in
//! constant time, and rejects timestamps older than a few minutes (replays). In Python:
//!
//! ```text
//! expected = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
//! ok = hmac.compare_digest(expected, signature) and abs(time.time() - int(ts)) < 300
//! ```
//!
//! The webhook is active when both `webhook_url` and a secret are set: set the URL with
//! `updateContainer`, then call `rotateWebhookSecret` once and keep the secret it returns
//! (it is never shown again).

mod channels;
pub mod ssrf;
mod xmpp;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_model::Alarm;
use berth_store::{alarm_delivery, containers, Store};
use rand::Rng as _;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

pub use channels::{channels_for, webhook_signature, Channel, ChannelContext, ChannelKind, Notification, SendError};

use crate::{Caller, Error, Result, Service};

/// Operator settings of alarm delivery (`berth serve` flags).
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Base URL of the Pushover API (`<base>/1/messages.json`).
    pub pushover_url: String,
    /// Base URL of the Pushbullet API (`<base>/v2/pushes`).
    pub pushbullet_url: String,
    /// Lets customer URLs reach private and loopback addresses (tests, closed networks).
    pub allow_private_webhooks: bool,
    /// `host:port` every XMPP login connects to instead of the JID's domain (port 5222).
    pub xmpp_server: Option<String>,
    /// Lets XMPP log in without TLS when the server offers no STARTTLS (tests only).
    pub xmpp_allow_plaintext: bool,
    /// Jobs waiting for the worker; more are dropped (and counted).
    pub queue_capacity: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Attempts per channel, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; each further wait is 4 times longer (±20 % jitter).
    pub first_backoff: Duration,
    /// Bound on one attempt (connect, TLS, request, answer).
    pub request_timeout: Duration,
}

pub const DEFAULT_PUSHOVER_URL: &str = "https://api.pushover.net";
pub const DEFAULT_PUSHBULLET_URL: &str = "https://api.pushbullet.com";

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            pushover_url: DEFAULT_PUSHOVER_URL.to_owned(),
            pushbullet_url: DEFAULT_PUSHBULLET_URL.to_owned(),
            allow_private_webhooks: false,
            xmpp_server: None,
            xmpp_allow_plaintext: false,
            queue_capacity: 1024,
            concurrency: 32,
            attempts: 3,
            first_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// How one channel's delivery of one alarm ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Every attempt failed, or the service rejected it for good.
    Failed,
    /// The destination is not allowed (SSRF guard).
    Refused,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Delivered, Outcome::Failed, Outcome::Refused];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

/// Delivery counters (monotonic), for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    outcomes: [[AtomicU64; 3]; 5],
    retries: [AtomicU64; 5],
    throttled: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

impl DeliveryMetrics {
    /// Channel deliveries that ended with `outcome`.
    pub fn count(&self, channel: ChannelKind, outcome: Outcome) -> u64 {
        self.outcomes[channel.index()][outcome as usize].load(Ordering::Relaxed)
    }

    /// Attempts after the first one.
    pub fn retries(&self, channel: ChannelKind) -> u64 {
        self.retries[channel.index()].load(Ordering::Relaxed)
    }

    /// Alarms not delivered because the container's `alarm_freq` slot was taken.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Alarms not delivered because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Alarms not delivered because the database could not be read or updated.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Every `(channel, outcome, count)`.
    pub fn snapshot(&self) -> Vec<(ChannelKind, Outcome, u64)> {
        ChannelKind::ALL.iter().flat_map(|c| Outcome::ALL.iter().map(move |o| (*c, *o, self.count(*c, *o)))).collect()
    }

    fn record(&self, channel: ChannelKind, outcome: Outcome) {
        self.outcomes[channel.index()][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// One committed alarm waiting for delivery.
#[derive(Debug)]
struct Job {
    customer_id: i64,
    alarm: Alarm,
}

/// The raiser's side of delivery: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Delivery {
    tx: mpsc::Sender<Job>,
    metrics: Arc<DeliveryMetrics>,
    allow_private: bool,
}

/// The background side: run it once with [`DeliveryWorker::run`].
pub struct DeliveryWorker {
    rx: mpsc::Receiver<Job>,
    ctx: ChannelContext,
    policy: RetryPolicy,
    concurrency: usize,
    metrics: Arc<DeliveryMetrics>,
}

#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    attempts: u32,
    first_backoff: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): first × 4^(attempt-1), ±20 %.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.first_backoff.saturating_mul(4u32.saturating_pow(attempt.saturating_sub(1)));
        base.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
    }
}

impl Delivery {
    /// The queue and its worker.
    pub fn new(config: DeliveryConfig) -> std::result::Result<(Delivery, DeliveryWorker), String> {
        let ctx = ChannelContext::new(&config)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let metrics = Arc::new(DeliveryMetrics::default());
        let delivery = Delivery { tx, metrics: metrics.clone(), allow_private: config.allow_private_webhooks };
        let worker = DeliveryWorker {
            rx,
            ctx,
            policy: RetryPolicy { attempts: config.attempts.max(1), first_backoff: config.first_backoff },
            concurrency: config.concurrency.max(1),
            metrics,
        };
        Ok((delivery, worker))
    }

    pub fn metrics(&self) -> Arc<DeliveryMetrics> {
        self.metrics.clone()
    }

    /// Queues a committed alarm; drops it (logged, counted) when the queue is full.
    pub(crate) fn enqueue(&self, customer_id: i64, alarm: &Alarm) {
        let job = Job { customer_id, alarm: alarm.clone() };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    alarm = job.alarm.id,
                    container = job.alarm.container_id,
                    "alarm delivery queue full: not delivered"
                );
            }
            Err(mpsc::error::TrySendError::Closed(job)) => {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(alarm = job.alarm.id, "alarm delivery worker stopped: not delivered");
            }
        }
    }

    /// The update-time check of a customer URL field (cheap: no DNS): `BadInput` on `field`.
    pub fn check_customer_url(&self, field: &str, url: &str) -> Result<()> {
        check_customer_url(field, url, self.allow_private)
    }
}

/// [`Delivery::check_customer_url`] for services without delivery: private addresses refused.
pub fn check_customer_url(field: &str, url: &str, allow_private: bool) -> Result<()> {
    ssrf::check_url(url, allow_private).map(|_| ()).map_err(|refused| Error::bad_input(field, refused.0))
}

impl DeliveryWorker {
    /// Serves the queue until every [`Delivery`] handle is dropped.
    pub async fn run(mut self, store: Store) {
        let in_flight = Arc::new(Semaphore::new(self.concurrency));
        while let Some(job) = self.rx.recv().await {
            let (note, channels) = match self.prepare(&store, &job).await {
                Ok(Some(ready)) => ready,
                Ok(None) => continue,
                Err(error) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(alarm = job.alarm.id, container = job.alarm.container_id, %error, "alarm delivery: cannot prepare");
                    continue;
                }
            };
            let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (policy, metrics) = (self.policy, self.metrics.clone());
            tokio::spawn(async move {
                deliver(note, channels, policy, metrics).await;
                drop(permit);
            });
        }
    }

    /// The container's channels if it has any and its `alarm_freq` slot was free (and is
    /// now taken); `None` when there is nothing to do.
    async fn prepare(&self, store: &Store, job: &Job) -> Result<Option<(Notification, Vec<Box<dyn Channel>>)>> {
        let container_id = job.alarm.container_id;
        let (container, webhook) = {
            let mut conn = store.read().await?;
            let Some(container) = containers::get(&mut conn, container_id).await? else {
                return Ok(None);
            };
            let webhook = alarm_delivery::webhook(&mut conn, container_id).await?.unwrap_or_default();
            (container, webhook)
        };
        let channels = channels_for(&self.ctx, &container, webhook.0.as_deref(), webhook.1.as_deref());
        if channels.is_empty() {
            return Ok(None);
        }
        let mut tx = store.write().await?;
        let claimed = alarm_delivery::claim(&mut tx, container_id, berth_store::unix_now()).await?;
        tx.commit().await?;
        if !claimed {
            self.metrics.throttled.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                alarm = job.alarm.id,
                container = container.uid(),
                alarm_freq = container.alarm_freq,
                "alarm delivery skipped: alarm_freq"
            );
            return Ok(None);
        }
        let note = Notification {
            customer_id: job.customer_id,
            container_uid: container.uid(),
            container_name: container.name.clone(),
            alarm: job.alarm.clone(),
        };
        Ok(Some((note, channels)))
    }
}

/// Sends one alarm on every channel at once, each with its retries.
async fn deliver(
    note: Notification,
    channels: Vec<Box<dyn Channel>>,
    policy: RetryPolicy,
    metrics: Arc<DeliveryMetrics>,
) {
    let note = Arc::new(note);
    let mut tasks = JoinSet::new();
    for channel in channels {
        let (note, metrics) = (note.clone(), metrics.clone());
        tasks.spawn(async move { send_with_retry(channel.as_ref(), &note, policy, &metrics).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn send_with_retry(
    channel: &dyn Channel,
    note: &Notification,
    policy: RetryPolicy,
    metrics: &DeliveryMetrics,
) -> Outcome {
    let kind = channel.kind();
    let target = channel.target();
    let mut attempt = 1;
    loop {
        match channel.send(note).await {
            Ok(()) => {
                tracing::info!(channel = %kind, %target, container = note.container_uid, alarm = note.alarm.id, attempt, "alarm delivered");
                metrics.record(kind, Outcome::Delivered);
                return Outcome::Delivered;
            }
            Err(error) if error.is_retryable() && attempt < policy.attempts => {
                let wait = policy.backoff(attempt);
                tracing::warn!(channel = %kind, %target, container = note.container_uid, alarm = note.alarm.id, attempt,
                    status = error.status(), %error, retry_in_ms = wait.as_millis() as u64, "alarm delivery failed, retrying");
                metrics.retries[kind.index()].fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(error) => {
                let outcome = match error {
                    SendError::Refused(_) => Outcome::Refused,
                    _ => Outcome::Failed,
                };
                tracing::warn!(channel = %kind, %target, container = note.container_uid, alarm = note.alarm.id, attempt,
                    status = error.status(), %error, "alarm not delivered");
                metrics.record(kind, outcome);
                return outcome;
            }
        }
    }
}

/// A fresh webhook secret: 32 random bytes, hex.
fn new_webhook_secret() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    channels::hex(&bytes)
}

impl Service {
    /// The update-time check of the customer URLs in `change` (`slack_webhook`,
    /// `webhook_url`): cheap, without DNS; delivery checks the resolved addresses again.
    /// An empty string switches the channel off and is always accepted.
    pub(crate) fn check_alarm_urls(&self, change: &crate::containers::ContainerChange) -> Result<()> {
        let allow_private = self.delivery.as_ref().is_some_and(|d| d.allow_private);
        for (field, value) in [("slack_webhook", &change.slack_webhook), ("webhook_url", &change.webhook_url)] {
            if let Some(Some(url)) = value {
                if !url.trim().is_empty() {
                    check_customer_url(field, url, allow_private)?;
                }
            }
        }
        Ok(())
    }

    /// The delivery counters, when this service delivers alarms (`berth serve`).
    pub fn delivery_metrics(&self) -> Option<Arc<DeliveryMetrics>> {
        self.delivery.as_ref().map(Delivery::metrics)
    }

    /// Replaces the container's webhook signing secret and returns it; the only time it is
    /// ever shown.
    pub async fn rotate_webhook_secret(&self, caller: &Caller, uid: i64) -> Result<String> {
        let id = berth_model::id_of_uid(uid).ok_or(Error::NotFound("container"))?;
        let mut tx = self.store.write().await?;
        containers::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("container"))?;
        let secret = new_webhook_secret();
        alarm_delivery::set_webhook_secret(&mut tx, id, &secret).await?;
        tx.commit().await?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_four_with_jitter() {
        let policy = RetryPolicy { attempts: 3, first_backoff: Duration::from_secs(1) };
        for _ in 0..100 {
            let first = policy.backoff(1);
            let second = policy.backoff(2);
            assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200), "{first:?}");
            assert!(second >= Duration::from_millis(3200) && second <= Duration::from_millis(4800), "{second:?}");
        }
    }

    /// A minimal HTTP server on 127.0.0.1 answering every request with `status`, counting.
    async fn answering(status: u16) -> (String, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then as many body bytes as Content-Length says.
                    loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, hits)
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let started = std::time::Instant::now();
        while !check() {
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A service with delivery on a fresh SQLite store, one customer and container.
    async fn world(allow_private: bool) -> (Service, Caller, i64, tempfile::TempDir) {
        use berth_store::{accounts, servers};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
        let config = DeliveryConfig {
            allow_private_webhooks: allow_private,
            first_backoff: Duration::from_millis(10),
            ..DeliveryConfig::default()
        };
        let (delivery, worker) = Delivery::new(config).unwrap();
        tokio::spawn(worker.run(store.clone()));
        let dns = crate::dns::TxtOverDns::new(Some(([127, 0, 0, 1], 9).into())).unwrap();
        let service = Service::new(
            store.clone(),
            crate::ServiceConfig { domain_ownership: Arc::new(dns), auth: Default::default() },
        )
        .with_delivery(delivery);
        let mut tx = store.write().await.unwrap();
        let new = accounts::NewCustomer { username: "k", password_hash: "h", email: "", company: None, vat: None };
        let customer = accounts::insert_customer(&mut tx, &new).await.unwrap().id;
        let server = servers::insert(
            &mut tx,
            &servers::NewServer { name: "s", address: "192.0.2.1", memory: 1000, storage: 1000, owner_id: None },
        )
        .await
        .unwrap();
        let c = containers::insert(
            &mut tx,
            &containers::NewContainer { customer_id: customer, server_id: server.id, name: "c", memory: 1, storage: 1 },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        (service, Caller { customer_id: customer }, c.uid(), dir)
    }

    async fn set_slack(service: &Service, uid: i64, url: &str) {
        let mut conn = service.store().read().await.unwrap();
        sqlx::query("UPDATE containers SET slack_webhook = $1, last_alarm_delivery = 0 WHERE id = $2")
            .bind(url)
            .bind(uid - berth_model::UID_BASE)
            .execute(&mut *conn)
            .await
            .unwrap();
    }

    fn alarm(uid: i64, msg: &str) -> crate::alarms::RaiseAlarm {
        crate::alarms::RaiseAlarm { container: uid, msg: msg.to_owned(), ..Default::default() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_count_every_outcome() {
        let (service, caller, uid, _dir) = world(true).await;
        let metrics = service.delivery_metrics().unwrap();
        let (ok_url, ok_hits) = answering(200).await;
        set_slack(&service, uid, &ok_url).await;
        service.raise_alarm(&caller, alarm(uid, "one")).await.unwrap();
        service.raise_alarm(&caller, alarm(uid, "two")).await.unwrap();
        eventually("a delivery and a throttle", || {
            metrics.count(ChannelKind::Slack, Outcome::Delivered) == 1 && metrics.throttled() == 1
        })
        .await;
        assert_eq!(ok_hits.load(Ordering::SeqCst), 1);

        let (bad_url, bad_hits) = answering(503).await;
        set_slack(&service, uid, &bad_url).await;
        service.raise_alarm(&caller, alarm(uid, "three")).await.unwrap();
        eventually("a failure", || metrics.count(ChannelKind::Slack, Outcome::Failed) == 1).await;
        assert_eq!(bad_hits.load(Ordering::SeqCst), 3, "three attempts");
        assert_eq!(metrics.retries(ChannelKind::Slack), 2);

        // A 4xx is not retried.
        let (gone_url, gone_hits) = answering(404).await;
        set_slack(&service, uid, &gone_url).await;
        service.raise_alarm(&caller, alarm(uid, "four")).await.unwrap();
        eventually("a second failure", || metrics.count(ChannelKind::Slack, Outcome::Failed) == 2).await;
        assert_eq!(gone_hits.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.retries(ChannelKind::Slack), 2);
        assert_eq!((metrics.dropped(), metrics.errors()), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn private_targets_are_refused_and_counted() {
        let (service, caller, uid, _dir) = world(false).await;
        let metrics = service.delivery_metrics().unwrap();
        let (url, hits) = answering(200).await;
        set_slack(&service, uid, &url).await;
        service.raise_alarm(&caller, alarm(uid, "x")).await.unwrap();
        eventually("a refusal", || metrics.count(ChannelKind::Slack, Outcome::Refused) == 1).await;
        set_slack(&service, uid, &url.replace("127.0.0.1", "localhost")).await;
        service.raise_alarm(&caller, alarm(uid, "y")).await.unwrap();
        eventually("a second refusal", || metrics.count(ChannelKind::Slack, Outcome::Refused) == 2).await;
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        assert_eq!(metrics.retries(ChannelKind::Slack), 0, "refusals are final");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webhook_secrets_rotate_for_the_owner_only() {
        let (service, caller, uid, _dir) = world(false).await;
        let first = service.rotate_webhook_secret(&caller, uid).await.unwrap();
        let second = service.rotate_webhook_secret(&caller, uid).await.unwrap();
        assert_ne!(first, second);
        let mut conn = service.store().read().await.unwrap();
        let stored = alarm_delivery::webhook(&mut conn, uid - berth_model::UID_BASE).await.unwrap();
        assert_eq!(stored, Some((None, Some(second))));
        let stranger = Caller { customer_id: caller.customer_id + 1 };
        assert_eq!(service.rotate_webhook_secret(&stranger, uid).await.unwrap_err(), Error::NotFound("container"));
    }

    #[test]
    fn secrets_are_fresh_hex() {
        let (a, b) = (new_webhook_secret(), new_webhook_secret());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
