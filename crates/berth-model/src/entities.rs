//! Plain rows as the store returns them. Derived values (uid, ip, hostname, key lists) come
//! from `crate::ids`, so every front door shows the same thing.

use serde::{Deserialize, Serialize};

/// Unix seconds, UTC.
pub type Unix = i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub company: Option<String>,
    pub vat: Option<String>,
    pub uuid: String,
    pub active: bool,
    pub created_at: Unix,
}

/// Login material of a customer; never leaves the service layer.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub customer_id: i64,
    pub password_hash: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub created_at: Unix,
    pub last_used_at: Option<Unix>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub id: i64,
    pub name: String,
    pub address: String,
    /// Capacity in MB.
    pub memory: i64,
    /// Capacity in MB.
    pub storage: i64,
    pub uuid: String,
    pub owner_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Distro {
    pub id: i64,
    pub name: String,
    /// Root filesystem directory on the servers; operator-only.
    pub path: String,
    pub uuid: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomDistro {
    pub id: i64,
    /// The storage container that holds the image.
    pub container_id: i64,
    pub name: String,
    pub path: String,
    pub note: Option<String>,
    pub uuid: String,
}

/// The desired state of a container. `generation` moves forward on every change that must
/// restart it; the agent compares it with what it observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub id: i64,
    pub customer_id: i64,
    pub server_id: i64,
    pub name: String,
    pub memory: i64,
    pub storage: i64,
    pub uuid: String,
    pub distro_id: Option<i64>,
    pub custom_distro_id: Option<i64>,
    pub ssh_keys_raw: Option<String>,
    pub jid: Option<String>,
    #[serde(skip)]
    pub jid_secret: Option<String>,
    pub jid_destinations: Option<String>,
    pub pushover_user: Option<String>,
    pub pushover_token: Option<String>,
    pub pushover_sound: Option<String>,
    pub pushbullet_token: Option<String>,
    pub slack_webhook: Option<String>,
    /// Berth's signed alarm webhook (not in the reference); its secret is never read back.
    pub webhook_url: Option<String>,
    pub quota_threshold: i64,
    pub alarm_freq: i64,
    pub nofollow: bool,
    pub note: Option<String>,
    pub custom_distros_storage: bool,
    pub secret_uuid: Option<String>,
    #[serde(skip)]
    pub alarm_key: Option<String>,
    pub max_alarms: i64,
    pub generation: i64,
    pub last_reboot: Unix,
    pub ssh_keys_mtime: Unix,
    pub created_at: Unix,
    pub updated_at: Unix,
}

impl Container {
    pub fn uid(&self) -> i64 {
        crate::ids::uid_of(self.id)
    }
    pub fn ip(&self) -> String {
        crate::ids::container_ip(self.id).to_string()
    }
    pub fn hostname(&self) -> String {
        crate::ids::hostname_of(&self.name)
    }
    pub fn ssh_keys(&self) -> Vec<String> {
        crate::ids::split_ssh_keys(self.ssh_keys_raw.as_deref())
    }
}

/// A directed link `container → to`; traffic flows only when both directions exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContainerLink {
    pub container_id: i64,
    pub to_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Portmap {
    pub id: i64,
    pub server_id: i64,
    pub container_id: i64,
    pub proto: Proto,
    pub public_port: i64,
    pub private_port: i64,
    pub created_at: Unix,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loopbox {
    pub id: i64,
    pub container_id: i64,
    pub filename: String,
    pub mountpoint: String,
    pub ro: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub uuid: String,
    pub note: Option<String>,
    pub created_at: Unix,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub note: Option<String>,
}

/// What a tag can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Tagged {
    Container,
    Domain,
    Loopbox,
    CustomDistro,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub id: i64,
    pub container_id: i64,
    pub unix: Unix,
    /// 0 system (reserved), 1 user, 2 exception, 3 traceback, 4 log.
    pub level: i64,
    pub color: String,
    pub msg: String,
    pub line: Option<i64>,
    pub func: Option<String>,
    pub filename: Option<String>,
    pub class: Option<String>,
    pub vassal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct News {
    pub id: i64,
    pub content: String,
    pub public: bool,
    pub created_at: Unix,
}

/// The series the collector stores per container and day (spec §4.20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ContainerMetric {
    Cpu,
    Mem,
    MemRss,
    MemCache,
    IoRead,
    IoWrite,
    NetRx,
    NetTx,
    Quota,
}

impl ContainerMetric {
    pub const ALL: [ContainerMetric; 9] = [
        ContainerMetric::Cpu,
        ContainerMetric::Mem,
        ContainerMetric::MemRss,
        ContainerMetric::MemCache,
        ContainerMetric::IoRead,
        ContainerMetric::IoWrite,
        ContainerMetric::NetRx,
        ContainerMetric::NetTx,
        ContainerMetric::Quota,
    ];
    /// The name used in routes and in the store (`mem.rss`, `io.write`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerMetric::Cpu => "cpu",
            ContainerMetric::Mem => "mem",
            ContainerMetric::MemRss => "mem.rss",
            ContainerMetric::MemCache => "mem.cache",
            ContainerMetric::IoRead => "io.read",
            ContainerMetric::IoWrite => "io.write",
            ContainerMetric::NetRx => "net.rx",
            ContainerMetric::NetTx => "net.tx",
            ContainerMetric::Quota => "quota",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// The series stored per domain, container and day (spec §4.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DomainMetric {
    NetRx,
    NetTx,
    Hits,
}

impl DomainMetric {
    pub const ALL: [DomainMetric; 3] = [DomainMetric::NetRx, DomainMetric::NetTx, DomainMetric::Hits];
    pub fn as_str(self) -> &'static str {
        match self {
            DomainMetric::NetRx => "net.rx",
            DomainMetric::NetTx => "net.tx",
            DomainMetric::Hits => "hits",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// One calendar day (UTC) of a metric series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Day {
    pub year: i64,
    pub month: i64,
    pub day: i64,
}

/// A stored day of samples: the JSON text `[[unix, value], ...]` kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricDay {
    pub container_id: i64,
    pub day: Day,
    pub json: Option<String>,
}

/// Where what a customer can read stood at one moment: the version of the customer's own
/// rows and the version of what every customer reads (servers, distros, news). Both only
/// grow, and each moves with every committed change of its rows, whoever commits it; an
/// answer computed under one `DataVersion` is still right while the database reports the
/// same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataVersion {
    pub shared: i64,
    pub customer: i64,
}
