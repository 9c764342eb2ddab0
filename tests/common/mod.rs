//! Black-box harness: runs the real `berth` binary and talks to it like a user would.
//!
//! ```ignore
//! mod common;
//! use common::{Auth, Berth};
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn example() {
//!     let berth = Berth::start().await;                    // SQLite in a fresh state dir
//!     let kratos = berth.fixture_customer("kratos").await; // via `berth admin customer add`
//!     let server = berth.fixture_server(Some("kratos")).await;
//!     let uid = berth.fixture_container(&kratos.username, &server.name, 512, 1024).await;
//!     let data = berth.gql_ok(kratos.auth(), "{ me { username } }", json!({})).await;
//!     assert_eq!(data["me"]["username"], "kratos");
//! }
//! ```
//!
//! Starting
//! - [`Berth::start`] / [`Berth::start_with`]`(`[`Opts`]`)`: spawns `berth serve --listen
//!   127.0.0.1:0 --state-dir <temp>/state` and learns the port from the printed
//!   `berth listening on http://ADDR` line (30 s timeout). The child is SIGKILLed on drop;
//!   its stderr (the log) goes to [`Berth::log`], printed when a start fails.
//! - [`Berth::start_postgres`]: the same on a fresh PostgreSQL database
//!   (`CREATE DATABASE berth_e2e_<random>` on `BERTH_TEST_POSTGRES_URL`, dropped on drop).
//!   Returns `None` (the test should return) when that variable is unset, or panics when
//!   `BERTH_REQUIRE_ALL=1`.
//! - [`Berth::kill9`] / [`Berth::restart`]: SIGKILL the server (only the pid it spawned) and
//!   start it again on the same state dir and database.
//!
//! Talking to it
//! - [`Berth::gql`]`(auth, query, variables) -> Value`: the JSON body, whatever the status.
//! - [`Berth::gql_ok`]: asserts there are no `errors` and returns `data`.
//! - [`Berth::gql_raw`]: status, headers and body, for error-path tests.
//! - [`error_code`]`(&body)`: `errors[0].extensions.code`.
//! - [`Berth::http`] + [`Berth::url`]: a plain reqwest client for anything else;
//!   [`Berth::http_from`]`(127.0.0.x)` + [`Berth::gql_raw_with`] to come from another peer
//!   address (per-peer limits).
//! - [`Auth`]: `Basic(user, password)`, `Bearer(token)`, `None`, `Raw(header value)`.
//!
//! Operator side and fixtures
//! - [`Berth::admin`]`(&["customer", "add", ...]) -> Value`: runs `berth admin …` on the same
//!   database and parses its one JSON line; panics if it fails. [`Berth::admin_output`]
//!   returns the raw output for tests of failures.
//! - [`Berth::fixture_customer`]`(name) -> Customer { username, password, uuid, id }`,
//!   [`Berth::fixture_server`]`(owner) -> Server { id, name, address }` (10 GB memory,
//!   100 GB storage), [`Berth::fixture_container`]`(customer, server, memory, storage) -> uid`.
//! - [`Berth::store`]: a `berth_store::Store` on the same database, to check what is stored
//!   (or that nothing changed); [`Berth::count`]`(table)` counts the rows of a table.
//! - [`PgDatabase::create`]: just a fresh PostgreSQL database (dropped on drop), for tests
//!   that run other commands on it; [`berth_command`]: the binary without inherited `BERTH_*`.
#![allow(dead_code)]

pub mod dns;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use berth_store::Store;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

/// The `berth` binary cargo built for this test.
pub const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// How long `berth serve` may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Credentials for one request.
#[derive(Debug, Clone)]
pub enum Auth {
    Basic(String, String),
    Bearer(String),
    None,
    /// The exact `Authorization` header value (for malformed-header tests).
    Raw(String),
}

impl Auth {
    pub fn basic(username: &str, password: &str) -> Auth {
        Auth::Basic(username.to_owned(), password.to_owned())
    }

    pub fn bearer(token: &str) -> Auth {
        Auth::Bearer(token.to_owned())
    }

    /// The `Authorization` header value, if any.
    pub fn header(&self) -> Option<String> {
        match self {
            Auth::Basic(u, p) => {
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))
            }
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
            Auth::None => None,
            Auth::Raw(v) => Some(v.clone()),
        }
    }
}

/// How to start `berth serve`.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// `--database`; default: the SQLite file berth creates in its state dir.
    pub database: Option<String>,
    /// `--dns-server` for the domain ownership check.
    pub dns_server: Option<SocketAddr>,
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
    /// Extra environment for the child.
    pub env: Vec<(String, String)>,
}

/// A customer made by [`Berth::fixture_customer`].
#[derive(Debug, Clone)]
pub struct Customer {
    pub username: String,
    pub password: String,
    pub uuid: String,
    pub id: i64,
}

impl Customer {
    pub fn auth(&self) -> Auth {
        Auth::basic(&self.username, &self.password)
    }
}

/// A server made by [`Berth::fixture_server`].
#[derive(Debug, Clone)]
pub struct Server {
    pub id: i64,
    pub name: String,
    pub address: String,
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body parsed as JSON, or `Value::String` with the text when it is not JSON.
    pub body: Value,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `errors[0].extensions.code` of a GraphQL answer.
pub fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// A running `berth serve` and everything it needs; all of it goes away on drop.
pub struct Berth {
    child: Option<Child>,
    /// Where the server listens.
    pub addr: SocketAddr,
    /// The database the server and `admin` use.
    pub database_url: String,
    /// The state dir passed as `--state-dir`.
    pub state_dir: PathBuf,
    /// The server's stderr (its log).
    pub log: PathBuf,
    opts: Opts,
    http: reqwest::Client,
    store: OnceCell<Store>,
    counter: AtomicU64,
    pg: Option<PgDatabase>,
    // Last: removed after the child is dead.
    root: tempfile::TempDir,
}

impl Berth {
    /// `berth serve` on SQLite in a fresh state dir.
    pub async fn start() -> Berth {
        Berth::start_with(Opts::default()).await
    }

    pub async fn start_with(opts: Opts) -> Berth {
        Berth::launch(opts, None).await
    }

    /// `berth serve` on a fresh PostgreSQL database; `None` when PostgreSQL is not configured
    /// (see the module docs).
    pub async fn start_postgres() -> Option<Berth> {
        Berth::start_postgres_with(Opts::default()).await
    }

    pub async fn start_postgres_with(mut opts: Opts) -> Option<Berth> {
        let pg = PgDatabase::create().await?;
        opts.database = Some(pg.url.clone());
        Some(Berth::launch(opts, Some(pg)).await)
    }

    async fn launch(opts: Opts, pg: Option<PgDatabase>) -> Berth {
        let root = tempfile::Builder::new().prefix("berth-e2e-").tempdir().expect("temp dir");
        let state_dir = root.path().join("state");
        let database_url = match &opts.database {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", state_dir.join("berth.db").display()),
        };
        let mut berth = Berth {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            state_dir,
            log: root.path().join("berth.log"),
            opts,
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client"),
            store: OnceCell::new(),
            counter: AtomicU64::new(0),
            pg,
            root,
        };
        berth.spawn().await;
        berth
    }

    /// A scratch directory that lives as long as this `Berth`.
    pub fn scratch(&self) -> &Path {
        self.root.path()
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "berth is already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open log file");
        let mut cmd = berth_command();
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--state-dir").arg(&self.state_dir);
        if let Some(db) = &self.opts.database {
            cmd.arg("--database").arg(db);
        }
        if let Some(dns) = self.opts.dns_server {
            cmd.arg("--dns-server").arg(dns.to_string());
        }
        cmd.args(&self.opts.args);
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log)).kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn berth serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read berth stdout") {
                if let Some(addr) = line.strip_prefix("berth listening on http://") {
                    return Some(addr.trim().parse::<SocketAddr>().expect("listening address"));
                }
                eprintln!("[berth stdout] {line}");
            }
            None
        })
        .await;
        let addr = match found {
            Ok(Some(addr)) => addr,
            outcome => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let why =
                    if outcome.is_err() { "did not print its address in time" } else { "exited before listening" };
                panic!("berth serve {why}; its log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[berth stdout] {line}");
            }
        });
        self.addr = addr;
        self.child = Some(child);
    }

    /// SIGKILLs the server (the pid this harness spawned, nothing else) and waits for it.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL berth");
            child.wait().await.expect("reap berth");
        }
    }

    /// SIGTERMs the server (the pid this harness spawned, nothing else) and waits until it
    /// exits, at most 20 s; its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let mut child = self.child.take().expect("berth is running");
        let pid = child.id().expect("berth's pid");
        kill(Pid::from_raw(i32::try_from(pid).expect("pid")), Signal::SIGTERM).expect("SIGTERM berth");
        tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("berth did not exit within 20 s of SIGTERM")
            .expect("reap berth")
    }

    /// SIGKILLs the server and starts it again on the same state dir and database.
    pub async fn restart(&mut self) {
        self.kill9().await;
        self.spawn().await;
    }

    /// The pid of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A client whose connections come from `local` (e.g. 127.0.0.2: another peer address).
    pub fn http_from(&self, local: IpAddr) -> reqwest::Client {
        reqwest::Client::builder().local_address(local).timeout(Duration::from_secs(60)).build().expect("http client")
    }

    /// POSTs a GraphQL operation and returns status, headers and body.
    pub async fn gql_raw(&self, auth: Auth, query: &str, variables: Value) -> Response {
        self.gql_raw_with(&self.http, auth, query, variables).await
    }

    /// Like [`Berth::gql_raw`] through a given client (see [`Berth::http_from`]).
    pub async fn gql_raw_with(&self, client: &reqwest::Client, auth: Auth, query: &str, variables: Value) -> Response {
        let mut request = client.post(self.url("/graphql")).json(&json!({ "query": query, "variables": variables }));
        if let Some(value) = auth.header() {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.expect("POST /graphql");
        into_response(response).await
    }

    /// The JSON body of a GraphQL answer, whatever its status.
    pub async fn gql(&self, auth: Auth, query: &str, variables: Value) -> Value {
        self.gql_raw(auth, query, variables).await.body
    }

    /// `data` of a GraphQL answer that must have no errors.
    pub async fn gql_ok(&self, auth: Auth, query: &str, variables: Value) -> Value {
        let response = self.gql_raw(auth, query, variables).await;
        assert!(
            response.status == 200 && response.body.get("errors").is_none(),
            "GraphQL operation failed (HTTP {}): {}\nquery: {query}",
            response.status,
            response.body
        );
        response.body["data"].clone()
    }

    /// Runs `berth admin <args> --database <this database>`; panics unless it succeeds and
    /// prints one JSON line, which it returns.
    pub async fn admin(&self, args: &[&str]) -> Value {
        let out = self.admin_output(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "berth admin {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "berth admin {args:?} must print one line, printed: {stdout:?}");
        serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("berth admin {args:?} printed non-JSON {stdout:?}: {e}"))
    }

    /// Runs `berth admin <args> --database <this database>` and returns what happened.
    pub async fn admin_output(&self, args: &[&str]) -> Output {
        berth_command()
            .arg("admin")
            .args(args)
            .arg("--database")
            .arg(&self.database_url)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run berth admin")
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.counter.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// A customer `name` with a generated password.
    pub async fn fixture_customer(&self, name: &str) -> Customer {
        let password = format!("pw-{name}-{:08x}", rand::random::<u32>());
        let made = self.admin(&["customer", "add", "--username", name, "--password", &password]).await;
        Customer {
            username: name.to_owned(),
            password,
            uuid: made["uuid"].as_str().expect("customer uuid").to_owned(),
            id: made["id"].as_i64().expect("customer id"),
        }
    }

    /// A server with 10 000 MB of memory and 100 000 MB of storage, optionally owned.
    pub async fn fixture_server(&self, owner: Option<&str>) -> Server {
        let name = self.unique("server");
        let n = self.counter.load(Ordering::Relaxed);
        let address = format!("192.0.2.{}", n % 250 + 1);
        let mut args =
            vec!["server", "add", "--name", &name, "--address", &address, "--memory", "10000", "--storage", "100000"];
        if let Some(owner) = owner {
            args.extend(["--owner", owner]);
        }
        let made = self.admin(&args).await;
        Server { id: made["id"].as_i64().expect("server id"), name, address }
    }

    /// A container of `customer` on `server` (both by name); returns its uid.
    pub async fn fixture_container(&self, customer: &str, server: &str, memory: i64, storage: i64) -> i64 {
        let name = self.unique("container");
        let (memory, storage) = (memory.to_string(), storage.to_string());
        let made = self
            .admin(&[
                "container",
                "add",
                "--customer",
                customer,
                "--server",
                server,
                "--name",
                &name,
                "--memory",
                &memory,
                "--storage",
                &storage,
            ])
            .await;
        made["uid"].as_i64().expect("container uid")
    }

    /// A store on the same database as the server (connected once, then shared).
    pub async fn store(&self) -> &Store {
        self.store
            .get_or_init(|| async { Store::connect(&self.database_url).await.expect("connect to the test database") })
            .await
    }

    /// Rows in `table` (a fixed table name from the test, never user input).
    pub async fn count(&self, table: &str) -> i64 {
        let store = self.store().await;
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"))
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("count {table}: {e}"));
        n
    }
}

impl Berth {
    /// SIGKILLs the server (the pid this harness spawned) and waits until it is gone,
    /// without an async context: for `Drop` impls of fixtures that must outlive it.
    pub fn kill9_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            if let Some(pid) = child.id() {
                wait_gone(pid);
            }
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        // Dead before its database (dropped with `self.pg` right after this) and temp dir go.
        self.kill9_now();
        drop(self.store.take());
    }
}

/// Waits (bounded) until the process `pid` no longer exists or is a zombie.
fn wait_gone(pid: u32) -> bool {
    for _ in 0..200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z')) => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

/// `berth` with none of the caller's `BERTH_*` settings, so tests see only what they pass.
pub fn berth_command() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BERTH_") {
            cmd.env_remove(&key);
        }
    }
    cmd.kill_on_drop(true);
    cmd
}

async fn into_response(response: reqwest::Response) -> Response {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("read response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Response { status, headers, body }
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    /// `None` when `BERTH_TEST_POSTGRES_URL` is unset (panics instead with `BERTH_REQUIRE_ALL=1`).
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = match std::env::var("BERTH_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("BERTH_REQUIRE_ALL").as_deref() != Ok("1"),
                    "BERTH_REQUIRE_ALL=1 but BERTH_TEST_POSTGRES_URL is not set"
                );
                eprintln!("skipping PostgreSQL test: BERTH_TEST_POSTGRES_URL not set");
                return None;
            }
        };
        let name = format!("berth_e2e_{:016x}", rand::random::<u64>());
        let admin = Store::connect(&admin_url).await.expect("connect to BERTH_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.expect("create test database");
        admin.close().await;
        let slash = admin_url.rfind('/').expect("BERTH_TEST_POSTGRES_URL must end in /<database>");
        let url = format!("{}/{name}", &admin_url[..slash]);
        Some(PgDatabase { url, admin_url, name })
    }
}

impl Drop for PgDatabase {
    /// Drops the database from a thread of its own (works inside a runtime, and on panics).
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let admin = Store::connect(&admin_url).await.map_err(|e| e.to_string())?;
                let dropped = sqlx::query(&sql).execute(admin.pool()).await.map_err(|e| e.to_string());
                admin.close().await;
                dropped.map(|_| ())
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {name}: {done:?}");
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1, for a DNS server a test starts later.
/// Chosen below the kernel's ephemeral range (32768+), so the many outgoing connections of
/// a test run cannot be holding it as their local port by the time the server binds it.
pub fn free_dns_port() -> u16 {
    for _ in 0..1000 {
        let port = 20000 + (rand::random::<u16>() % 12000);
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no free port for a test DNS server");
}

/// Which database a server runs on; tests made with [`on_both_engines!`] run on both.
#[derive(Debug, Clone, Copy)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// `berth serve` on `engine`; `None` (test skipped) when PostgreSQL is not configured.
pub async fn start(engine: Engine, opts: Opts) -> Option<Berth> {
    match engine {
        Engine::Sqlite => Some(Berth::start_with(opts).await),
        Engine::Postgres => Berth::start_postgres_with(opts).await,
    }
}

/// `on_both_engines!(name, ...)`: tests `name::sqlite` and `name::postgres` calling
/// `name(engine)`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Engine::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Engine::Postgres).await
            }
        }
    )*};
}
