//! The channels an alarm goes out on, one [`Channel`] implementation each, and
//! [`channels_for`], which picks the complete ones of a container (spec §5.7).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use berth_model::{Alarm, Container};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::ssrf;

/// Which kind of channel; also the `channel` label of logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Xmpp,
    Pushover,
    Pushbullet,
    Slack,
    Webhook,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 5] =
        [ChannelKind::Xmpp, ChannelKind::Pushover, ChannelKind::Pushbullet, ChannelKind::Slack, ChannelKind::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Xmpp => "xmpp",
            ChannelKind::Pushover => "pushover",
            ChannelKind::Pushbullet => "pushbullet",
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one delivery attempt tells the retry loop.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The destination is not allowed (SSRF guard) or not usable; retrying cannot help.
    #[error("refused: {0}")]
    Refused(String),
    /// The service answered with a non-success status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Connection, TLS, timeout or protocol trouble.
    #[error("transport: {0}")]
    Transport(String),
    /// The service rejected the credentials or the request for good.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl SendError {
    /// Whether another attempt may succeed: transport trouble, 408, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Transport(_) => true,
            SendError::Status(code) => *code == 408 || *code == 429 || *code >= 500,
            SendError::Refused(_) | SendError::Rejected(_) => false,
        }
    }

    /// The HTTP status, for logs.
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Status(code) => Some(*code),
            _ => None,
        }
    }

    fn from_reqwest(error: reqwest::Error) -> SendError {
        if let Some(refused) = ssrf::refusal_in(&error) {
            return SendError::Refused(refused.0);
        }
        SendError::Transport(error_chain(&error))
    }
}

/// An error and its sources on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// One alarm as the channels present it.
#[derive(Debug, Clone)]
pub struct Notification {
    pub customer_id: i64,
    pub container_uid: i64,
    pub container_name: String,
    pub alarm: Alarm,
}

impl Notification {
    pub fn title(&self) -> String {
        format!("Berth alarm: {} ({})", self.container_name, self.container_uid)
    }

    /// One line of text for chat-like channels.
    pub fn text(&self) -> String {
        format!("[{} ({})] {}", self.container_name, self.container_uid, self.alarm.msg)
    }

    /// The webhook body: the alarm as the REST API shows it, plus the container's name.
    pub fn webhook_json(&self) -> serde_json::Value {
        let a = &self.alarm;
        json!({
            "id": a.id,
            "container": self.container_uid,
            "container_name": self.container_name,
            "unix": a.unix,
            "level": a.level,
            "color": a.color,
            "msg": a.msg,
            "line": a.line,
            "func": a.func,
            "filename": a.filename,
            "class": a.class,
            "vassal": a.vassal,
        })
    }
}

/// A place alarms are delivered to. Implementations make one attempt; retries, backoff,
/// throttling and logging are the caller's.
#[async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> ChannelKind;
    /// Where it goes, safe to log (no tokens, no secrets).
    fn target(&self) -> String;
    async fn send(&self, note: &Notification) -> Result<(), SendError>;
}

/// What channels need from the operator: HTTP clients, service base URLs, XMPP settings.
#[derive(Clone)]
pub struct ChannelContext {
    /// For the operator-configured services (Pushover, Pushbullet).
    pub(crate) client: reqwest::Client,
    /// For customer URLs: no redirects, no proxy, private addresses refused unless allowed.
    pub(crate) guarded_client: reqwest::Client,
    pub(crate) allow_private: bool,
    pub(crate) pushover_base: String,
    pub(crate) pushbullet_base: String,
    pub(crate) xmpp: super::xmpp::XmppSettings,
}

impl ChannelContext {
    pub(crate) fn new(config: &super::DeliveryConfig) -> Result<ChannelContext, String> {
        let timeout = config.request_timeout;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut guarded = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if !config.allow_private_webhooks {
            guarded = guarded.dns_resolver(std::sync::Arc::new(ssrf::GuardedResolver));
        }
        let guarded_client = guarded.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(ChannelContext {
            client,
            guarded_client,
            allow_private: config.allow_private_webhooks,
            pushover_base: config.pushover_url.trim_end_matches('/').to_owned(),
            pushbullet_base: config.pushbullet_url.trim_end_matches('/').to_owned(),
            xmpp: super::xmpp::XmppSettings {
                server: config.xmpp_server.clone(),
                allow_plaintext: config.xmpp_allow_plaintext,
                allow_private: config.allow_private_webhooks,
                timeout,
            },
        })
    }
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The container's complete channels (spec §5.7): XMPP needs `jid`, `jid_secret` and
/// `jid_destinations`; Pushover `pushover_user` and `pushover_token`; Pushbullet
/// `pushbullet_token`; Slack `slack_webhook`; the signed webhook `webhook_url` and a secret.
pub fn channels_for(
    ctx: &ChannelContext,
    container: &Container,
    webhook_url: Option<&str>,
    webhook_secret: Option<&str>,
) -> Vec<Box<dyn Channel>> {
    let mut out: Vec<Box<dyn Channel>> = Vec::new();
    if let (Some(jid), Some(secret), Some(destinations)) = (
        set(&container.jid),
        container.jid_secret.as_deref().filter(|s| !s.is_empty()),
        set(&container.jid_destinations),
    ) {
        let destinations: Vec<String> =
            destinations.split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect();
        if !destinations.is_empty() {
            out.push(Box::new(super::xmpp::Xmpp {
                settings: ctx.xmpp.clone(),
                jid: jid.to_owned(),
                password: secret.to_owned(),
                destinations,
            }));
        }
    }
    if let (Some(user), Some(token)) = (set(&container.pushover_user), set(&container.pushover_token)) {
        out.push(Box::new(Pushover {
            client: ctx.client.clone(),
            base: ctx.pushover_base.clone(),
            user: user.to_owned(),
            token: token.to_owned(),
            sound: set(&container.pushover_sound).map(str::to_owned),
        }));
    }
    if let Some(token) = set(&container.pushbullet_token) {
        out.push(Box::new(Pushbullet {
            client: ctx.client.clone(),
            base: ctx.pushbullet_base.clone(),
            token: token.to_owned(),
        }));
    }
    if let Some(url) = set(&container.slack_webhook) {
        out.push(Box::new(Slack {
            client: ctx.guarded_client.clone(),
            allow_private: ctx.allow_private,
            url: url.to_owned(),
        }));
    }
    if let (Some(url), Some(secret)) =
        (webhook_url.map(str::trim).filter(|u| !u.is_empty()), webhook_secret.filter(|s| !s.is_empty()))
    {
        out.push(Box::new(Webhook {
            client: ctx.guarded_client.clone(),
            allow_private: ctx.allow_private,
            url: url.to_owned(),
            secret: secret.to_owned(),
        }));
    }
    out
}

/// Maps an HTTP answer to the attempt's outcome.
async fn outcome(response: Result<reqwest::Response, reqwest::Error>) -> Result<(), SendError> {
    let response = response.map_err(SendError::from_reqwest)?;
    let status = response.status();
    // Read (a bounded amount of) the body so the connection can be reused.
    let _ = tokio::time::timeout(Duration::from_secs(5), response.bytes()).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Status(status.as_u16()))
    }
}

/// Slack incoming webhook: `POST {"text": …}` to the container's `slack_webhook`.
pub struct Slack {
    client: reqwest::Client,
    allow_private: bool,
    url: String,
}

#[async_trait]
impl Channel for Slack {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Slack
    }

    fn target(&self) -> String {
        host_of(&self.url)
    }

    async fn send(&self, note: &Notification) -> Result<(), SendError> {
        let url = ssrf::check_url(&self.url, self.allow_private).map_err(|r| SendError::Refused(r.0))?;
        outcome(self.client.post(url).json(&json!({ "text": note.text() })).send().await).await
    }
}

/// Pushover: `POST <base>/1/messages.json`, form `token, user, message, title[, sound]`.
pub struct Pushover {
    client: reqwest::Client,
    base: String,
    user: String,
    token: String,
    sound: Option<String>,
}

/// Pushover's limit on `message`, in characters.
const PUSHOVER_MAX_MESSAGE: usize = 1024;

#[async_trait]
impl Channel for Pushover {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Pushover
    }

    fn target(&self) -> String {
        self.base.clone()
    }

    async fn send(&self, note: &Notification) -> Result<(), SendError> {
        let message: String = note.alarm.msg.chars().take(PUSHOVER_MAX_MESSAGE).collect();
        let title = note.title();
        let mut form = vec![
            ("token", self.token.as_str()),
            ("user", self.user.as_str()),
            ("message", message.as_str()),
            ("title", title.as_str()),
        ];
        if let Some(sound) = &self.sound {
            form.push(("sound", sound.as_str()));
        }
        let url = format!("{}/1/messages.json", self.base);
        let result = outcome(self.client.post(url).form(&form).send().await).await;
        match result {
            // Pushover answers 4xx for bad tokens or users: retrying will not fix them.
            Err(SendError::Status(code @ 400..=499)) if code != 408 && code != 429 => {
                Err(SendError::Rejected(format!("HTTP status {code} (check pushover_user/pushover_token)")))
            }
            other => other,
        }
    }
}

/// Pushbullet: `POST <base>/v2/pushes` with `Access-Token`, JSON `{"type": "note", …}`.
pub struct Pushbullet {
    client: reqwest::Client,
    base: String,
    token: String,
}

#[async_trait]
impl Channel for Pushbullet {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Pushbullet
    }

    fn target(&self) -> String {
        self.base.clone()
    }

    async fn send(&self, note: &Notification) -> Result<(), SendError> {
        let url = format!("{}/v2/pushes", self.base);
        let body = json!({ "type": "note", "title": note.title(), "body": note.alarm.msg });
        outcome(self.client.post(url).header("Access-Token", &self.token).json(&body).send().await).await
    }
}

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed by the secret>` (see the module
/// docs of [`crate::delivery`] for the receiver's side).
pub fn webhook_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The generic signed webhook: `POST` the alarm as JSON to `webhook_url` with
/// `X-Berth-Timestamp` and `X-Berth-Signature`.
pub struct Webhook {
    client: reqwest::Client,
    allow_private: bool,
    url: String,
    secret: String,
}

#[async_trait]
impl Channel for Webhook {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn target(&self) -> String {
        host_of(&self.url)
    }

    async fn send(&self, note: &Notification) -> Result<(), SendError> {
        let url = ssrf::check_url(&self.url, self.allow_private).map_err(|r| SendError::Refused(r.0))?;
        let body = serde_json::to_vec(&note.webhook_json()).expect("JSON values serialize");
        // Each attempt is signed afresh, so a retry carries a current timestamp.
        let timestamp = berth_store::unix_now();
        let signature = webhook_signature(&self.secret, timestamp, &body);
        outcome(
            self.client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Berth-Timestamp", timestamp.to_string())
                .header("X-Berth-Signature", signature)
                .body(body)
                .send()
                .await,
        )
        .await
    }
}

/// Scheme, host and port of a URL (never its path: Slack puts its secret there).
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<invalid url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog") is a
        // well-known vector; here the message is "<ts>.<body>".
        let sig = webhook_signature("key", 1, b"x");
        let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
        mac.update(b"1.x");
        assert_eq!(sig, format!("sha256={}", hex(&mac.finalize().into_bytes())));
        let mut known = HmacSha256::new_from_slice(b"key").unwrap();
        known.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex(&known.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn logs_never_show_url_paths() {
        assert_eq!(host_of("https://hooks.slack.com/services/T000/B000/SECRET"), "https://hooks.slack.com");
        assert_eq!(host_of("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
    }
}
