//! The command line (design §7): `serve`, `schema`, `migrate`, `admin …`, `distro …`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "Control plane for container hosting")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (GraphQL, REST, health, metrics) and the in-process agent.
    Serve(ServeArgs),
    /// Print the GraphQL schema (SDL), identical to schema.graphql.
    Schema,
    /// Bring the database schema up to date and exit.
    Migrate(DbArgs),
    /// Operator commands working directly on the database.
    Admin(crate::admin::AdminArgs),
    /// Distros: root filesystems containers run on.
    #[command(subcommand)]
    Distro(DistroCommand),
}

#[derive(Subcommand)]
pub enum DistroCommand {
    /// Build a distro rootfs; register it with `berth admin distro add --path DIR`.
    Build {
        /// Which distro: `busybox` (from the host's busybox-static).
        #[arg(value_parser = ["busybox"])]
        kind: String,
        /// Directory to build into; must be absent or empty.
        #[arg(long)]
        into: PathBuf,
        /// The statically linked busybox to use.
        #[arg(long, default_value = berth_backend::distro::HOST_BUSYBOX)]
        busybox: PathBuf,
    },
}

/// Where the database is. Shared by every command that opens it.
#[derive(Args, Clone, Debug)]
pub struct DbArgs {
    /// Database URL: `sqlite://PATH` or `postgres://…`. Default: berth.db in the state dir.
    #[arg(long = "database", env = "BERTH_DATABASE_URL", global = true)]
    pub database: Option<String>,
    /// Directory for Berth's own state (the default SQLite database among it). Default:
    /// $XDG_STATE_HOME/berth, else ~/.local/state/berth, else ./.berth when HOME is unset.
    #[arg(long = "state-dir", env = "BERTH_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Host backend the agent uses.
    #[arg(long, env = "BERTH_BACKEND", default_value = "jail", value_parser = ["jail", "nspawn", "docker"])]
    pub backend: String,
    /// Name of the server this process's agent manages.
    #[arg(long, env = "BERTH_SERVER")]
    pub server: Option<String>,
    /// DNS server (IP:port) for the domain ownership check; default: the system resolvers.
    #[arg(long = "dns-server", env = "BERTH_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,
    /// Path prefix of the uwsgi.it-compatible REST API.
    #[arg(long = "api-prefix", env = "BERTH_API_PREFIX", default_value = "/api", value_parser = parse_prefix)]
    pub api_prefix: String,
    /// WebSockets (`/graphql/ws`) one customer may hold open at once on this gateway; more
    /// are refused (close 1013, try again later), so that no customer takes the sockets all
    /// customers' live alarms share.
    #[arg(long = "max-websockets-per-customer", env = "BERTH_MAX_WEBSOCKETS_PER_CUSTOMER",
          default_value_t = berth_graphql::DEFAULT_MAX_WEBSOCKETS_PER_CUSTOMER as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_websockets_per_customer: u64,
    /// MiB of GraphQL query answers kept to be served again while nothing the customer can
    /// read has changed (checked against the database on every request); 0 keeps none.
    #[arg(long = "kept-answers-mib", env = "BERTH_KEPT_ANSWERS_MIB",
          default_value_t = berth_graphql::DEFAULT_KEPT_ANSWERS_MIB,
          value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub kept_answers_mib: u64,
    #[command(flatten)]
    pub delivery: crate::alarm_delivery::DeliveryArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

/// The in-process agent, active when `--server` names the server this host is.
#[derive(Args, Clone, Debug)]
pub struct AgentArgs {
    /// Seconds between full reconciliations (events trigger one container at once).
    #[arg(long = "agent-resync", env = "BERTH_AGENT_RESYNC", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub resync_secs: u64,
    /// Seconds between resource samples (metrics, quota and OOM checks).
    #[arg(long = "agent-sample", env = "BERTH_AGENT_SAMPLE", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sample_secs: u64,
    /// Seconds a container gets between SIGTERM and SIGKILL when it stops.
    #[arg(long = "stop-grace", env = "BERTH_STOP_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub stop_grace_secs: u64,
    /// Cgroup directory (under each controller's root) that holds the jails' cgroups.
    #[arg(long = "jail-cgroup-parent", env = "BERTH_JAIL_CGROUP_PARENT", default_value = "berth", value_parser = parse_cgroup_name)]
    pub jail_cgroup_parent: String,
}

fn parse_cgroup_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !value.starts_with('.');
    if ok {
        Ok(value.to_owned())
    } else {
        Err("a cgroup name: letters, digits, '-', '_', '.', not starting with '.'".to_owned())
    }
}

fn parse_prefix(value: &str) -> Result<String, String> {
    let trimmed = value.trim_end_matches('/');
    if !trimmed.starts_with('/') || trimmed.len() < 2 {
        return Err("the prefix must start with '/' and name a path, e.g. /api".to_owned());
    }
    Ok(trimmed.to_owned())
}

impl DbArgs {
    /// The state directory: `--state-dir`, else `$XDG_STATE_HOME/berth`, else
    /// `~/.local/state/berth`, else `./.berth`. A relative `XDG_STATE_HOME` is ignored, as
    /// the XDG base directory specification says.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| std::path::Path::new(v).is_absolute()) {
            return PathBuf::from(xdg).join("berth");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/state/berth");
        }
        PathBuf::from(".berth")
    }

    /// The database URL, creating the state directory when the default SQLite file is used.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database {
            return Ok(url.clone());
        }
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create state directory {}", dir.display()))?;
        let probe = dir.join(".berth-write-test");
        std::fs::write(&probe, b"").with_context(|| format!("state directory {} is not writable", dir.display()))?;
        let _ = std::fs::remove_file(probe);
        Ok(format!("sqlite://{}", dir.join("berth.db").display()))
    }

    pub async fn open_store(&self) -> anyhow::Result<berth_store::Store> {
        let url = self.database_url()?;
        berth_store::Store::open(&url).await.context("cannot open the database")
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            // Outside the runtime: the OTLP exporter's blocking client owns its own.
            let telemetry = tokio::task::spawn_blocking(crate::telemetry::init).await??;
            crate::serve::run(args, telemetry).await
        }
        Command::Schema => write_stdout(&berth_graphql::sdl()),
        Command::Migrate(db) => {
            let store = berth_store::Store::connect(&db.database_url()?).await.context("cannot open the database")?;
            let applied = store.migrate().await.context("cannot migrate the database");
            store.close().await;
            write_stdout(&match applied? {
                0 => "database is up to date\n".to_owned(),
                1 => "applied 1 migration; database is up to date\n".to_owned(),
                n => format!("applied {n} migrations; database is up to date\n"),
            })
        }
        Command::Admin(args) => crate::admin::run(args).await,
        Command::Distro(DistroCommand::Build { kind: _, into, busybox }) => {
            berth_backend::distro::build_busybox(&busybox, &into)?;
            write_stdout(&format!("busybox distro built in {}\n", into.display()))
        }
    }
}

/// Writes a command's result to stdout. `print!` would panic on a closed pipe or a full
/// disk; this answers an error the caller can word, and a non-zero exit.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write to standard output")
}
