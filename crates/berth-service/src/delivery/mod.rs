//! Alarm delivery to a container's channels: XMPP, Pushover, Pushbullet, Slack and a signed
//! webhook (seed "Alarms"; spec §5.7).
//!
//! Flow: in the transaction that stores an alarm, `Delivery::schedule` picks the
//! container's complete channels ([`channels_for`]), takes the container's delivery slot
//! with one conditional `UPDATE` (`berth_store::alarm_delivery::claim`: at most one delivery
//! per `alarm_freq` seconds per container, agreed by every gateway on the same PostgreSQL)
//! and adds one pending delivery per channel to `alarm_deliveries`. The delivery is thus as
//! durable as the alarm: a gateway that crashes or restarts loses none. An alarm whose slot
//! is taken is still stored and published; only delivery is skipped.
//!
//! The [`DeliveryWorker`] of every `berth serve` leases due deliveries (woken at once by its
//! own raises, else every [`DeliveryConfig::poll`]) and sends each on its channel, as the
//! container has it configured at that moment, with up to [`DeliveryConfig::attempts`]
//! attempts and jittered exponential backoff (1 s, then 4 s by default); retries happen on
//! transport errors, 408, 429 and 5xx. Before each attempt and each wait it records the
//! attempt and extends its lease. When a gateway dies, its leases run out
//! ([`DeliveryConfig::lease`] past the attempt's or wait's end) and any gateway resumes
//! those deliveries at the next attempt: delivery is at least once, so a receiver may see
//! an alarm twice (same `id`) after a crash. Leases, due times and `alarm_freq` slots
//! (delivery here, quota alarms in `Service::quota_alarm_due`) are set and compared on
//! the database's clock ([`berth_store::database_millis`]), so gateways whose clocks
//! disagree still agree on who holds what. Outcomes are logged with channel and status and
//! counted in [`DeliveryMetrics`]; they never reach the raiser.
//!
//! Customer URLs (`slack_webhook`, `webhook_url`) pass [`ssrf`]: loopback, private,
//! link-local and unspecified addresses are refused, both as literals and as the addresses a
//! name resolves to, unless the operator allows them (`--allow-private-webhooks`). So does
//! the XMPP server a customer's JID names, unless the operator set `--xmpp-server`.
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

use berth_model::{Alarm, Container};
use berth_store::alarm_delivery::{self, PendingDelivery};
use berth_store::{containers, AnyConnection, Store};
use rand::Rng as _;
use tokio::sync::{mpsc, Semaphore};

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
    /// Deliveries in flight at once (per gateway).
    pub concurrency: usize,
    /// Attempts per channel, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; each further wait is 4 times longer (±20 % jitter).
    pub first_backoff: Duration,
    /// Bound on one attempt (connect, TLS, request, answer).
    pub request_timeout: Duration,
    /// How long past the expected end of its attempt (or of its wait before the next one) a
    /// gateway's hold on a delivery lasts. A delivery whose gateway died is resumed by any
    /// gateway this long after that end.
    pub lease: Duration,
    /// How often the worker looks for deliveries it was not told of: added by another
    /// gateway, or left by one that died.
    pub poll: Duration,
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
            concurrency: 32,
            attempts: 3,
            first_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
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
    errors: AtomicU64,
    pending: AtomicU64,
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

    /// Database failures of the worker (each retried: the delivery stays pending).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Deliveries not done yet, of every gateway on the database, as this worker last
    /// counted them (at most one poll interval old).
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Every `(channel, outcome, count)`.
    pub fn snapshot(&self) -> Vec<(ChannelKind, Outcome, u64)> {
        ChannelKind::ALL.iter().flat_map(|c| Outcome::ALL.iter().map(move |o| (*c, *o, self.count(*c, *o)))).collect()
    }

    fn record(&self, channel: ChannelKind, outcome: Outcome) {
        self.outcomes[channel.index()][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// What a raise arranged for its alarm's delivery; reported once the raise commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheduled {
    /// The container has no complete channel.
    Nothing,
    /// The container's `alarm_freq` slot was taken: the alarm is stored, not delivered.
    Throttled,
    /// One pending delivery per channel was added.
    Channels,
}

/// The raiser's side of delivery: cheap to clone, never waits for a delivery.
#[derive(Clone)]
pub struct Delivery {
    ctx: Arc<ChannelContext>,
    /// Tells this process's worker that deliveries were added (capacity 1: one wake-up is
    /// as good as many).
    wake: mpsc::Sender<()>,
    metrics: Arc<DeliveryMetrics>,
}

/// The background side: run it once with [`DeliveryWorker::run`].
pub struct DeliveryWorker {
    wake: mpsc::Receiver<()>,
    sender: Arc<Sender>,
    concurrency: usize,
    poll: Duration,
}

/// What each delivery task needs, shared by all of them.
struct Sender {
    ctx: Arc<ChannelContext>,
    policy: RetryPolicy,
    /// The longest one attempt may take (XMPP: connect, then the session, each bounded).
    attempt_bound: Duration,
    lease: Duration,
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
    /// The raiser's handle and its worker.
    pub fn new(config: DeliveryConfig) -> std::result::Result<(Delivery, DeliveryWorker), String> {
        let ctx = Arc::new(ChannelContext::new(&config)?);
        let (wake_tx, wake_rx) = mpsc::channel(1);
        let metrics = Arc::new(DeliveryMetrics::default());
        let delivery = Delivery { ctx: ctx.clone(), wake: wake_tx, metrics: metrics.clone() };
        let sender = Sender {
            ctx,
            policy: RetryPolicy { attempts: config.attempts.max(1), first_backoff: config.first_backoff },
            attempt_bound: config.request_timeout.saturating_mul(2),
            lease: config.lease,
            metrics,
        };
        let worker = DeliveryWorker {
            wake: wake_rx,
            sender: Arc::new(sender),
            concurrency: config.concurrency.max(1),
            poll: config.poll.max(Duration::from_millis(10)),
        };
        Ok((delivery, worker))
    }

    pub fn metrics(&self) -> Arc<DeliveryMetrics> {
        self.metrics.clone()
    }

    /// In the raise's own transaction: when the container has complete channels and its
    /// `alarm_freq` slot is free, takes the slot and adds one pending delivery per channel,
    /// so the delivery is exactly as durable as the alarm.
    pub(crate) async fn schedule(
        &self,
        tx: &mut AnyConnection,
        container: &Container,
        alarm: &Alarm,
    ) -> Result<Scheduled> {
        let (url, secret) = alarm_delivery::webhook(tx, container.id).await?.unwrap_or_default();
        let channels = channels_for(&self.ctx, container, url.as_deref(), secret.as_deref());
        if channels.is_empty() {
            return Ok(Scheduled::Nothing);
        }
        let now = berth_store::database_millis(tx).await?;
        if !alarm_delivery::claim(tx, container.id, now / 1000).await? {
            return Ok(Scheduled::Throttled);
        }
        let json = serde_json::to_string(alarm).map_err(|e| Error::Internal(format!("alarm to JSON: {e}")))?;
        for channel in &channels {
            alarm_delivery::schedule(tx, container.id, container.customer_id, channel.kind().as_str(), &json, now)
                .await?;
        }
        Ok(Scheduled::Channels)
    }

    /// After the raise committed: wakes the worker, or reports the throttled alarm.
    pub(crate) fn committed(&self, scheduled: Scheduled, container: &Container, alarm: &Alarm) {
        match scheduled {
            Scheduled::Nothing => {}
            Scheduled::Throttled => {
                self.metrics.throttled.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    alarm = alarm.id,
                    container = container.uid(),
                    alarm_freq = container.alarm_freq,
                    "alarm delivery skipped: alarm_freq"
                );
            }
            // Full means a wake-up is already pending; closed means `berth serve` is stopping
            // (the rows stay for the next start).
            Scheduled::Channels => drop(self.wake.try_send(())),
        }
    }

    /// The update-time check of a customer URL field (cheap: no DNS): `BadInput` on `field`.
    pub fn check_customer_url(&self, field: &str, url: &str) -> Result<()> {
        check_customer_url(field, url, self.ctx.allow_private)
    }

    /// The update-time check of a JID (cheap: no DNS): a domain that is a private address
    /// literal is `BadInput`, unless the operator's `--xmpp-server` carries every login or
    /// private destinations are allowed. Delivery checks what a name resolves to.
    fn check_customer_jid(&self, jid: &str) -> Result<()> {
        if self.ctx.xmpp.server.is_some() || self.ctx.allow_private {
            return Ok(());
        }
        match xmpp::literal_address(jid) {
            Some(ip) if ssrf::is_forbidden(ip) => {
                Err(Error::bad_input("jid", format!("{ip} is a private address: alarms cannot be delivered there")))
            }
            _ => Ok(()),
        }
    }
}

/// [`Delivery::check_customer_url`] for services without delivery: private addresses refused.
pub fn check_customer_url(field: &str, url: &str, allow_private: bool) -> Result<()> {
    ssrf::check_url(url, allow_private).map(|_| ()).map_err(|refused| Error::bad_input(field, refused.0))
}

impl DeliveryWorker {
    /// Works through the pending deliveries of every gateway on `store` until every
    /// [`Delivery`] handle is dropped: at once when this process adds some, else every
    /// `poll` (deliveries added by other gateways, and those whose gateway died).
    pub async fn run(mut self, store: Store) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        loop {
            let mut permits = vec![slots.clone().acquire_owned().await.expect("the semaphore is never closed")];
            permits.extend(std::iter::from_fn(|| slots.clone().try_acquire_owned().ok()));
            let wanted = permits.len();
            let leased = self.sender.lease(&store, wanted).await;
            let more_may_be_due = leased.len() == wanted;
            for (job, permit) in leased.into_iter().zip(permits) {
                let (sender, store) = (self.sender.clone(), store.clone());
                tokio::spawn(async move {
                    sender.work(&store, job).await;
                    drop(permit);
                });
            }
            if more_may_be_due {
                continue;
            }
            tokio::select! {
                woken = self.wake.recv() => if woken.is_none() { return },
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

impl Sender {
    /// Up to `wanted` due deliveries, now ours; none when the database fails (logged).
    async fn lease(&self, store: &Store, wanted: usize) -> Vec<PendingDelivery> {
        let token: i64 = rand::thread_rng().gen();
        let leased = async {
            let mut conn = store.read().await?;
            let now = berth_store::database_millis(&mut conn).await?;
            let until = now + millis(self.attempt_bound + self.lease);
            let pending = alarm_delivery::pending(&mut conn).await?;
            self.metrics.pending.store(u64::try_from(pending).unwrap_or(0), Ordering::Relaxed);
            let due = alarm_delivery::due(&mut conn, now, wanted as i64).await?;
            drop(conn);
            if due.is_empty() {
                return Ok(Vec::new());
            }
            let mut tx = store.write().await?;
            let leased = alarm_delivery::lease(&mut tx, &due, now, until, token).await?;
            tx.commit().await?;
            Ok::<_, Error>(leased)
        };
        leased.await.unwrap_or_else(|error| {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "alarm delivery: cannot read the pending deliveries");
            Vec::new()
        })
    }

    /// Carries one delivery through its remaining attempts, keeping the lease ahead of
    /// each; stops without a trace when the lease is lost (another gateway has it).
    async fn work(&self, store: &Store, job: PendingDelivery) {
        let (note, channel) = match self.channel_now(store, &job).await {
            Ok(Some(ready)) => ready,
            Ok(None) => {
                self.finish(store, &job).await;
                tracing::info!(delivery = job.id, channel = %job.channel, "alarm delivery dropped: channel no longer set");
                return;
            }
            Err(error) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(delivery = job.id, %error, "alarm delivery: cannot prepare");
                return;
            }
        };
        let (kind, target) = (channel.kind(), channel.target());
        let (uid, id) = (note.container_uid, note.alarm.id);
        let mut attempt = u32::try_from(job.attempts).unwrap_or(u32::MAX).saturating_add(1);
        loop {
            if attempt > self.policy.attempts {
                // The gateway that made the last attempt died during it.
                self.finish(store, &job).await;
                tracing::warn!(channel = %kind, %target, container = uid, alarm = id, "alarm not delivered: out of attempts");
                self.metrics.record(kind, Outcome::Failed);
                return;
            }
            if !self.renew(store, &job, attempt, self.attempt_bound).await {
                return;
            }
            match channel.send(&note).await {
                Ok(()) => {
                    self.finish(store, &job).await;
                    tracing::info!(channel = %kind, %target, container = uid, alarm = id, attempt, "alarm delivered");
                    self.metrics.record(kind, Outcome::Delivered);
                    return;
                }
                Err(error) if error.is_retryable() && attempt < self.policy.attempts => {
                    let wait = self.policy.backoff(attempt);
                    if !self.renew(store, &job, attempt, wait).await {
                        return;
                    }
                    tracing::warn!(channel = %kind, %target, container = uid, alarm = id, attempt,
                        status = error.status(), %error, retry_in_ms = wait.as_millis() as u64, "alarm delivery failed, retrying");
                    self.metrics.retries[kind.index()].fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(error) => {
                    let outcome = match error {
                        SendError::Refused(_) => Outcome::Refused,
                        _ => Outcome::Failed,
                    };
                    self.finish(store, &job).await;
                    tracing::warn!(channel = %kind, %target, container = uid, alarm = id, attempt,
                        status = error.status(), %error, "alarm not delivered");
                    self.metrics.record(kind, outcome);
                    return;
                }
            }
        }
    }

    /// The alarm and the job's channel as the container has it configured now; `None` when
    /// the container is gone or the channel was switched off meanwhile.
    async fn channel_now(
        &self,
        store: &Store,
        job: &PendingDelivery,
    ) -> Result<Option<(Notification, Box<dyn Channel>)>> {
        let alarm: Alarm = serde_json::from_str(&job.alarm)
            .map_err(|e| Error::Internal(format!("pending delivery {} holds no alarm: {e}", job.id)))?;
        let mut conn = store.read().await?;
        let Some(container) = containers::get(&mut conn, job.container_id).await? else {
            return Ok(None);
        };
        let (url, secret) = alarm_delivery::webhook(&mut conn, job.container_id).await?.unwrap_or_default();
        let channel = channels_for(&self.ctx, &container, url.as_deref(), secret.as_deref())
            .into_iter()
            .find(|c| c.kind().as_str() == job.channel);
        Ok(channel.map(|channel| {
            let note = Notification {
                customer_id: job.customer_id,
                container_uid: container.uid(),
                container_name: container.name.clone(),
                alarm,
            };
            (note, channel)
        }))
    }

    /// Counts attempt `attempt` as started and holds the lease for `ahead` plus the lease
    /// margin; `false` (stop) when the lease is another's now or the database fails.
    async fn renew(&self, store: &Store, job: &PendingDelivery, attempt: u32, ahead: Duration) -> bool {
        let renewed = async {
            let mut tx = store.write().await?;
            let until = berth_store::database_millis(&mut tx).await? + millis(ahead + self.lease);
            let held = alarm_delivery::renew(&mut tx, job.id, job.lease_token, i64::from(attempt), until).await?;
            tx.commit().await?;
            Ok::<_, Error>(held)
        };
        match renewed.await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(delivery = job.id, "alarm delivery: lease lost to another gateway");
                false
            }
            Err(error) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(delivery = job.id, %error, "alarm delivery: cannot renew the lease; resumed once it runs out");
                false
            }
        }
    }

    /// Removes a delivery that is done, before its outcome is logged and counted (so an
    /// observer of the outcome finds the row gone); on a database failure the row stays and
    /// the alarm may be sent again once the lease runs out (at-least-once).
    async fn finish(&self, store: &Store, job: &PendingDelivery) {
        let finished = async {
            let mut tx = store.write().await?;
            alarm_delivery::finish(&mut tx, job.id, job.lease_token).await?;
            tx.commit().await?;
            Ok::<_, Error>(())
        };
        if let Err(error) = finished.await {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(delivery = job.id, %error, "alarm delivery: cannot remove a finished delivery");
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// A fresh webhook secret: 32 random bytes, hex.
fn new_webhook_secret() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    channels::hex(&bytes)
}

impl Service {
    /// The update-time check of the customer destinations in `change` (`slack_webhook`,
    /// `webhook_url`, `jid`): cheap, without DNS; delivery checks the resolved addresses again.
    /// An empty string switches the channel off and is always accepted.
    pub(crate) fn check_alarm_destinations(&self, change: &crate::containers::ContainerChange) -> Result<()> {
        let allow_private = self.delivery.as_ref().is_some_and(|d| d.ctx.allow_private);
        for (field, value) in [("slack_webhook", &change.slack_webhook), ("webhook_url", &change.webhook_url)] {
            if let Some(Some(url)) = value {
                if !url.trim().is_empty() {
                    check_customer_url(field, url, allow_private)?;
                }
            }
        }
        if let (Some(delivery), Some(Some(jid))) = (&self.delivery, &change.jid) {
            delivery.check_customer_jid(jid)?;
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
        let (service, caller, uid, worker, dir) = world_without_worker(allow_private).await;
        tokio::spawn(worker.run(service.store().clone()));
        (service, caller, uid, dir)
    }

    /// [`world`] with its delivery worker not started yet (as if its gateway were down).
    async fn world_without_worker(allow_private: bool) -> (Service, Caller, i64, DeliveryWorker, tempfile::TempDir) {
        use berth_store::{accounts, servers};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
        let config = DeliveryConfig {
            allow_private_webhooks: allow_private,
            first_backoff: Duration::from_millis(10),
            request_timeout: Duration::from_millis(500),
            lease: Duration::from_millis(100),
            poll: Duration::from_millis(20),
            ..DeliveryConfig::default()
        };
        let (delivery, worker) = Delivery::new(config).unwrap();
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
        (service, Caller { customer_id: customer }, c.uid(), worker, dir)
    }

    async fn pending(service: &Service) -> i64 {
        let mut conn = service.store().read().await.unwrap();
        alarm_delivery::pending(&mut conn).await.unwrap()
    }

    /// Leases every due delivery as a gateway would, then records `attempts` started.
    async fn lease_as_another_gateway(service: &Service, until: i64, attempts: i64) {
        let now = berth_store::unix_millis();
        let due = alarm_delivery::due(&mut service.store().read().await.unwrap(), now, 10).await.unwrap();
        let mut tx = service.store().write().await.unwrap();
        for job in alarm_delivery::lease(&mut tx, &due, now, until, 42).await.unwrap() {
            assert!(alarm_delivery::renew(&mut tx, job.id, 42, attempts, until).await.unwrap());
        }
        tx.commit().await.unwrap();
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
        assert_eq!(metrics.errors(), 0);
        assert_eq!(pending(&service).await, 0, "finished deliveries leave no row");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_left_by_a_dead_gateway_is_resumed_once_its_lease_runs_out() {
        let (service, caller, uid, worker, _dir) = world_without_worker(true).await;
        let metrics = service.delivery_metrics().unwrap();
        let (url, hits) = answering(200).await;
        set_slack(&service, uid, &url).await;
        // Raised while no worker runs: the delivery waits in the database.
        service.raise_alarm(&caller, alarm(uid, "kept")).await.unwrap();
        assert_eq!(pending(&service).await, 1);
        // A gateway took it, started attempt 1 and died.
        let until = berth_store::unix_millis() + 300;
        lease_as_another_gateway(&service, until, 1).await;
        tokio::spawn(worker.run(service.store().clone()));
        eventually("the resumed delivery", || hits.load(Ordering::SeqCst) == 1).await;
        assert!(berth_store::unix_millis() >= until, "sent while another gateway held the lease");
        eventually("its outcome", || metrics.count(ChannelKind::Slack, Outcome::Delivered) == 1).await;
        assert_eq!(pending(&service).await, 0);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "sent once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worker_reports_what_is_pending() {
        let (service, caller, uid, worker, _dir) = world_without_worker(true).await;
        let metrics = service.delivery_metrics().unwrap();
        let (url, _hits) = answering(200).await;
        set_slack(&service, uid, &url).await;
        service.raise_alarm(&caller, alarm(uid, "held")).await.unwrap();
        // Held by another gateway for long: pending, and not this worker's to send.
        lease_as_another_gateway(&service, berth_store::unix_millis() + 600_000, 1).await;
        tokio::spawn(worker.run(service.store().clone()));
        eventually("pending 1", || metrics.pending() == 1).await;
        let mut tx = service.store().write().await.unwrap();
        let id: (i64,) = sqlx::query_as("SELECT id FROM alarm_deliveries").fetch_one(&mut *tx).await.unwrap();
        assert!(alarm_delivery::finish(&mut tx, id.0, 42).await.unwrap());
        tx.commit().await.unwrap();
        eventually("pending 0", || metrics.pending() == 0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_whose_last_attempt_died_is_given_up() {
        let (service, caller, uid, worker, _dir) = world_without_worker(true).await;
        let metrics = service.delivery_metrics().unwrap();
        let (url, hits) = answering(200).await;
        set_slack(&service, uid, &url).await;
        service.raise_alarm(&caller, alarm(uid, "late")).await.unwrap();
        lease_as_another_gateway(&service, berth_store::unix_millis(), 3).await;
        tokio::spawn(worker.run(service.store().clone()));
        eventually("the given-up delivery", || metrics.count(ChannelKind::Slack, Outcome::Failed) == 1).await;
        assert_eq!(pending(&service).await, 0);
        assert_eq!(hits.load(Ordering::SeqCst), 0, "three attempts are all there are");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_channel_switched_off_before_delivery_gets_nothing() {
        let (service, caller, uid, worker, _dir) = world_without_worker(true).await;
        let (url, hits) = answering(200).await;
        set_slack(&service, uid, &url).await;
        service.raise_alarm(&caller, alarm(uid, "unwanted")).await.unwrap();
        set_slack(&service, uid, "").await;
        tokio::spawn(worker.run(service.store().clone()));
        let started = std::time::Instant::now();
        while pending(&service).await > 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "the delivery was never dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0);
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
