//! `berth serve` flags of alarm delivery and the start of its background worker.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};

use berth_service::delivery::{Delivery, DeliveryConfig, DEFAULT_PUSHBULLET_URL, DEFAULT_PUSHOVER_URL};

/// Where alarms go: service base URLs and what customer destinations may reach.
#[derive(Args, Clone, Debug)]
pub struct DeliveryArgs {
    /// Base URL of the Pushover API (alarms are POSTed to <base>/1/messages.json).
    #[arg(long = "pushover-url", env = "BERTH_PUSHOVER_URL", default_value = DEFAULT_PUSHOVER_URL)]
    pub pushover_url: String,
    /// Base URL of the Pushbullet API (alarms are POSTed to <base>/v2/pushes).
    #[arg(long = "pushbullet-url", env = "BERTH_PUSHBULLET_URL", default_value = DEFAULT_PUSHBULLET_URL)]
    pub pushbullet_url: String,
    /// Let customer webhooks (slack_webhook, webhook_url) and customer XMPP servers (the
    /// JID's domain, without --xmpp-server) reach loopback, private and link-local
    /// addresses. Off by default: those destinations could probe the operator's network.
    #[arg(long = "allow-private-webhooks", env = "BERTH_ALLOW_PRIVATE_WEBHOOKS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub allow_private_webhooks: bool,
    /// XMPP server (host:port) every alarm login connects to, instead of the JID's domain.
    #[arg(long = "xmpp-server", env = "BERTH_XMPP_SERVER")]
    pub xmpp_server: Option<String>,
    /// Allow XMPP logins without TLS when the server offers no STARTTLS (tests only: the
    /// customer's password would cross the network in clear).
    #[arg(long = "xmpp-allow-plaintext", env = "BERTH_XMPP_ALLOW_PLAINTEXT", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub xmpp_allow_plaintext: bool,
    /// Seconds a gateway's hold on an alarm delivery outlasts the attempt (or the wait
    /// before the next one) it is in: a delivery whose gateway died is resumed by any
    /// gateway this long after that attempt should have ended.
    #[arg(long = "delivery-lease", env = "BERTH_DELIVERY_LEASE", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub delivery_lease: u64,
}

impl DeliveryArgs {
    /// The raisers' handle for the service; its worker runs on `store` until the handle and
    /// all its clones are gone.
    pub fn start(&self, store: berth_store::Store) -> anyhow::Result<Delivery> {
        let config = DeliveryConfig {
            pushover_url: self.pushover_url.clone(),
            pushbullet_url: self.pushbullet_url.clone(),
            allow_private_webhooks: self.allow_private_webhooks,
            xmpp_server: self.xmpp_server.clone(),
            xmpp_allow_plaintext: self.xmpp_allow_plaintext,
            lease: std::time::Duration::from_secs(self.delivery_lease),
            ..DeliveryConfig::default()
        };
        let (delivery, worker) = Delivery::new(config).map_err(anyhow::Error::msg)?;
        if self.allow_private_webhooks {
            tracing::warn!("customer webhooks may reach private addresses (--allow-private-webhooks)");
        }
        tokio::spawn(worker.run(store));
        Ok(delivery)
    }
}
