//! The command-line contract (design §7): `serve` start-up and its failures, `schema`,
//! `migrate`, and every `admin` subcommand.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{berth_command, Auth, Berth};
use serde_json::{json, Value};

/// Runs `berth <args>` to completion (bounded), with the given extra environment.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = berth_command();
    cmd.args(args).envs(env.iter().copied()).stdin(Stdio::null());
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("berth {args:?} did not finish within 60 s"))
        .expect("run berth")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last line of stderr: where `berth` puts its one-line error (logs come before it).
fn error_line(out: &Output) -> String {
    stderr(out).lines().last().unwrap_or_default().to_owned()
}

/// Asserts a failed run with the error line containing every one of `needles`.
fn assert_fails_with(out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "expected failure, got success; stdout: {}", stdout(out));
    let line = error_line(out);
    assert!(line.starts_with("berth"), "error line should start with `berth`: {line:?}\nstderr: {}", stderr(out));
    for needle in needles {
        assert!(line.contains(needle), "error line {line:?} should mention {needle:?}\nstderr: {}", stderr(out));
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ---------------------------------------------------------------------------------------
// serve

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_creates_its_state_dir_and_database_and_prints_its_address() {
    let berth = Berth::start().await;
    assert_ne!(berth.addr.port(), 0, "the printed address carries the real port");
    assert!(berth.state_dir.is_dir(), "state dir {} created", berth.state_dir.display());
    assert!(berth.state_dir.join("berth.db").is_file(), "SQLite database created in the state dir");
    let health = berth.http().get(berth.url("/healthz")).send().await.expect("GET /healthz");
    assert_eq!(health.status(), 200);
    // Migrated: the schema's tables are there.
    assert_eq!(berth.count("customers").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_taken_port_exits_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = run(&["serve", "--listen", &addr, "--state-dir", state.to_str().unwrap()], &[]).await;
    assert_fails_with(&out, &["cannot listen on", &addr]);
    assert!(!stdout(&out).contains("listening"), "must not claim to listen: {}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_bad_database_url_exits_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--state-dir", state, "--database", "mysql://x/y"], &[]).await;
    assert_fails_with(&out, &["database"]);

    // Unreachable PostgreSQL: refused quickly, and the password never shows.
    let unreachable = "postgres://berth:sekrit-pw@127.0.0.1:1/berth";
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--state-dir", state, "--database", unreachable], &[]).await;
    assert_fails_with(&out, &["database"]);
    assert!(!stderr(&out).contains("sekrit-pw"), "password leaked: {}", stderr(&out));

    // The environment variable is read as well.
    let out =
        run(&["serve", "--listen", "127.0.0.1:0", "--state-dir", state], &[("BERTH_DATABASE_URL", "nonsense")]).await;
    assert_fails_with(&out, &["database"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_an_unusable_state_dir_exits_with_a_clear_message() {
    // Tests run as root, so permission bits would not stop a write: put the state dir
    // under a regular file instead, which nobody can create directories in.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let state = file.join("state");
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--state-dir", state.to_str().unwrap()], &[]).await;
    assert_fails_with(&out, &["state directory", state.to_str().unwrap()]);
}

// ---------------------------------------------------------------------------------------
// schema, migrate

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_output_matches_the_committed_schema_graphql() {
    let out = run(&["schema"], &[]).await;
    assert!(out.status.success(), "berth schema failed: {}", stderr(&out));
    let committed_path = repo_root().join("schema.graphql");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    let generated = stdout(&out);
    assert!(generated.contains("type Query"), "berth schema printed no SDL: {generated}");
    if generated != committed {
        let first_difference = generated.lines().zip(committed.lines()).position(|(a, b)| a != b).map_or_else(
            || "one is a prefix of the other".to_owned(),
            |i| format!("first difference at line {}", i + 1),
        );
        panic!(
            "schema.graphql is out of date with the code ({first_difference}).\n\
             Regenerate it from the repository root with:\n    cargo run -q -p berth -- schema > schema.graphql"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_and_then_keeps_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let out = run(&["migrate", "--state-dir", state], &[]).await;
    assert!(out.status.success(), "berth migrate failed: {}", stderr(&out));
    let said = stdout(&out);
    assert!(said.starts_with("applied ") && said.trim().ends_with("; database is up to date"), "{said}");
    let out = run(&["migrate", "--state-dir", state], &[]).await;
    assert!(out.status.success(), "berth migrate failed: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "database is up to date", "nothing left to apply");
    let db = dir.path().join("state/berth.db");
    assert!(db.is_file());
    let store = berth_store::Store::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM sqlite_master WHERE type = 'table' AND name IN ('customers', 'containers', 'servers')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(tables, 3);
    store.close().await;

    let out = run(&["migrate", "--database", "mysql://nope"], &[]).await;
    assert_fails_with(&out, &["database"]);
}

/// A result that cannot be written (stdout on a full disk, a closed pipe) is a clear error
/// and a non-zero exit, not a panic; `admin` says its change was committed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_stdout_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let to_full_disk = |args: &[&str]| {
        let mut cmd = berth_command();
        cmd.args(args).stdin(Stdio::null()).stdout(std::fs::File::create("/dev/full").unwrap()).stderr(Stdio::piped());
        // Not `output()`: it would replace stdout with a pipe.
        let child = cmd.spawn().expect("run berth");
        async move { tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap() }
    };
    let out = to_full_disk(&["schema"]).await;
    assert_fails_with(&out, &["standard output"]);
    let out =
        to_full_disk(&["admin", "--state-dir", state, "customer", "add", "--username", "zeus", "--password", "p"])
            .await;
    assert_fails_with(&out, &["committed", "standard output"]);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let again =
        run(&["admin", "--state-dir", state, "customer", "add", "--username", "zeus", "--password", "p"], &[]).await;
    assert_fails_with(&again, &["zeus"]);
}

/// A failed `distro build` says what it was doing and why, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distro_build_failures_name_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("rootfs");
    let out = run(
        &["distro", "build", "busybox", "--into", into.to_str().unwrap(), "--busybox", "/nonexistent/busybox"],
        &[],
    )
    .await;
    assert_fails_with(&out, &["/nonexistent/busybox", "No such file or directory"]);
    assert_eq!(error_line(&out).matches("os error 2").count(), 1, "{}", error_line(&out));
}

/// Without `--state-dir`: `$XDG_STATE_HOME/berth` when it is absolute, else
/// `~/.local/state/berth` (a relative XDG_STATE_HOME is ignored, as XDG says).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_state_dir_follows_xdg() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = |env: Vec<(&'static str, std::path::PathBuf)>| {
        let mut cmd = berth_command();
        cmd.arg("migrate").current_dir(dir.path()).stdin(Stdio::null());
        for key in ["BERTH_STATE_DIR", "BERTH_DATABASE_URL", "XDG_STATE_HOME", "HOME"] {
            cmd.env_remove(key);
        }
        cmd.envs(env);
        async move { tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.unwrap().unwrap() }
    };
    let out = migrate(vec![("XDG_STATE_HOME", dir.path().join("xdg")), ("HOME", dir.path().join("home"))]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("xdg/berth/berth.db").is_file());
    let out = migrate(vec![("XDG_STATE_HOME", "relative".into()), ("HOME", dir.path().join("home"))]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("home/.local/state/berth/berth.db").is_file());
    assert!(!dir.path().join("relative").exists(), "a relative XDG_STATE_HOME is not used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_works_on_postgres() {
    let Some(pg) = common::PgDatabase::create().await else { return };
    for expected in ["applied ", "database is up to date"] {
        let out = run(&["migrate", "--database", &pg.url], &[]).await;
        assert!(out.status.success(), "berth migrate failed: {}", stderr(&out));
        assert!(stdout(&out).starts_with(expected), "{}", stdout(&out));
    }
    let store = berth_store::Store::connect(&pg.url).await.unwrap();
    let (n,): (i64,) =
        sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM customers").fetch_one(store.pool()).await.unwrap();
    assert_eq!(n, 0);
    store.close().await;
    // `pg` drops the database when it goes out of scope.
}

// ---------------------------------------------------------------------------------------
// admin

/// `berth admin` must fail with `needle` in its error line, print nothing on stdout, and
/// leave `table` as it was.
async fn admin_refuses(berth: &Berth, args: &[&str], needle: &str, table: &str) {
    let before = berth.count(table).await;
    let out = berth.admin_output(args).await;
    assert_fails_with(&out, &[needle]);
    assert_eq!(stdout(&out), "", "a refused command prints nothing on stdout");
    assert_eq!(berth.count(table).await, before, "berth admin {args:?} changed {table}");
}

fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().expect("a JSON object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// No stored secret of any kind in an admin answer.
fn assert_no_secrets(v: &Value) {
    let text = v.to_string();
    for secret in ["argon2", "password", "hash", "jid_secret", "alarm_key", "secret_uuid"] {
        assert!(!text.contains(secret), "admin output leaks {secret}: {text}");
    }
}

async fn admin_objects(berth: &Berth) {
    let customer = berth
        .admin(&[
            "customer",
            "add",
            "--username",
            "kratos",
            "--password",
            "deimos",
            "--company",
            "Olympus",
            "--vat",
            "IT1",
            "--email",
            "k@example.com",
        ])
        .await;
    assert_no_secrets(&customer);
    for key in ["id", "uuid", "username", "company", "vat", "email"] {
        assert!(customer.get(key).is_some(), "customer JSON has {key}: {customer}");
    }
    assert_eq!(customer["username"], "kratos");
    assert_eq!(customer["company"], "Olympus");
    assert_eq!(customer["vat"], "IT1");
    assert_eq!(uuid_len(&customer["uuid"]), 36);
    // The stored password is an argon2id hash, not the password.
    let mut conn = berth.store().await.read().await.unwrap();
    let creds = berth_store::accounts::credentials(&mut conn, "kratos").await.unwrap().unwrap();
    drop(conn);
    assert!(creds.password_hash.starts_with("$argon2id$"), "argon2id: {}", creds.password_hash);

    let server = berth
        .admin(&[
            "server",
            "add",
            "--name",
            "s1",
            "--address",
            "192.0.2.10",
            "--memory",
            "1000",
            "--storage",
            "5000",
            "--owner",
            "kratos",
        ])
        .await;
    assert_eq!(server["name"], "s1");
    assert_eq!(server["address"], "192.0.2.10");
    assert_eq!(server["owner_id"], customer["id"]);
    assert!(server["id"].is_i64() && server["uuid"].is_string(), "{server}");

    let distro = berth.admin(&["distro", "add", "--name", "busybox", "--path", "/srv/berth/distros/busybox"]).await;
    assert_eq!(keys(&distro), ["id", "name", "path", "uuid"]);

    let container = berth
        .admin(&[
            "container",
            "add",
            "--customer",
            "kratos",
            "--server",
            "s1",
            "--name",
            "web",
            "--memory",
            "800",
            "--storage",
            "1000",
        ])
        .await;
    assert_no_secrets(&container);
    let id = container["id"].as_i64().expect("container id");
    assert_eq!(container["uid"].as_i64(), Some(30000 + id));
    assert_eq!(container["ip"].as_str(), Some(berth_model::container_ip(id).to_string().as_str()));
    assert_eq!(uuid_len(&container["uuid"]), 36);
    assert_eq!(container["memory"], 800);

    let domain = berth.admin(&["domain", "add", "--customer", "kratos", "--name", "example.com"]).await;
    assert_eq!(domain["name"], "example.com");
    assert!(domain["id"].is_i64() && domain["uuid"].is_string(), "{domain}");

    let news = berth.admin(&["news", "add", "--content", "maintenance tonight", "--public"]).await;
    assert_eq!(news["public"], true);
    assert!(news["id"].is_i64());
    let private = berth.admin(&["news", "add", "--content", "customers only"]).await;
    assert_eq!(private["public"], false);

    let token = berth.admin(&["token", "add", "--customer", "kratos", "--name", "ci"]).await;
    let bearer = token["token"].as_str().expect("token").to_owned();
    assert!(bearer.starts_with("berth_"), "{bearer}");
    assert_eq!(token["name"], "ci");
    // The printed token works against the running server.
    let me = berth
        .gql_ok(Auth::bearer(&bearer), "{ me { username company vat uuid servers { name address } } }", json!({}))
        .await;
    assert_eq!(me["me"]["username"], "kratos");
    assert_eq!(me["me"]["servers"], json!([{ "name": "s1", "address": "192.0.2.10" }]));
    assert_eq!(me["me"]["uuid"], customer["uuid"]);
    // Default token name.
    let unnamed = berth.admin(&["token", "add", "--customer", "kratos"]).await;
    assert!(unnamed["token"].is_string());
}

fn uuid_len(v: &Value) -> usize {
    v.as_str().map_or(0, str::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_print_one_json_line_each() {
    let berth = Berth::start().await;
    admin_objects(&berth).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_on_postgres() {
    let Some(berth) = Berth::start_postgres().await else { return };
    admin_objects(&berth).await;
    admin_refusals(&berth).await;
}

async fn admin_refusals(berth: &Berth) {
    berth.admin(&["customer", "add", "--username", "zeus", "--password", "olympus"]).await;
    berth
        .admin(&[
            "server",
            "add",
            "--name",
            "small",
            "--address",
            "2001:db8::1",
            "--memory",
            "1000",
            "--storage",
            "1000",
        ])
        .await;

    // Customers.
    admin_refuses(
        berth,
        &["customer", "add", "--username", "zeus", "--password", "x"],
        "customer zeus already exists",
        "customers",
    )
    .await;
    admin_refuses(berth, &["customer", "add", "--username", "a:b", "--password", "x"], "username", "customers").await;
    admin_refuses(berth, &["customer", "add", "--username", "", "--password", "x"], "username", "customers").await;
    let long = "u".repeat(256);
    admin_refuses(berth, &["customer", "add", "--username", &long, "--password", "x"], "username", "customers").await;
    admin_refuses(berth, &["customer", "add", "--username", "hera", "--password", ""], "password", "customers").await;

    // Servers.
    admin_refuses(
        berth,
        &["server", "add", "--name", "s9", "--address", "not-an-ip", "--memory", "1", "--storage", "1"],
        "address",
        "servers",
    )
    .await;
    admin_refuses(
        berth,
        &["server", "add", "--name", "s9", "--address", "192.0.2.9", "--memory", "0", "--storage", "1"],
        "memory",
        "servers",
    )
    .await;
    admin_refuses(
        berth,
        &["server", "add", "--name", "s9", "--address", "192.0.2.9", "--memory", "1", "--storage=-5"],
        "storage",
        "servers",
    )
    .await;
    admin_refuses(
        berth,
        &["server", "add", "--name", "small", "--address", "192.0.2.9", "--memory", "1", "--storage", "1"],
        "server small already exists",
        "servers",
    )
    .await;
    admin_refuses(
        berth,
        &[
            "server",
            "add",
            "--name",
            "s9",
            "--address",
            "192.0.2.9",
            "--memory",
            "1",
            "--storage",
            "1",
            "--owner",
            "nobody",
        ],
        "nobody",
        "servers",
    )
    .await;

    // Distros.
    admin_refuses(berth, &["distro", "add", "--name", "rel", "--path", "relative/dir"], "absolute", "distros").await;
    admin_refuses(berth, &["distro", "add", "--name", "", "--path", "/srv/x"], "name", "distros").await;

    // Containers: overselling is refused with the numbers, and nothing is created.
    berth
        .admin(&[
            "container",
            "add",
            "--customer",
            "zeus",
            "--server",
            "small",
            "--name",
            "a",
            "--memory",
            "800",
            "--storage",
            "100",
        ])
        .await;
    admin_refuses(
        berth,
        &[
            "container",
            "add",
            "--customer",
            "zeus",
            "--server",
            "small",
            "--name",
            "b",
            "--memory",
            "500",
            "--storage",
            "100",
        ],
        "server small has 200 MB of memory free, 500 requested",
        "containers",
    )
    .await;
    admin_refuses(
        berth,
        &[
            "container",
            "add",
            "--customer",
            "zeus",
            "--server",
            "small",
            "--name",
            "b",
            "--memory",
            "100",
            "--storage",
            "901",
        ],
        "server small has 900 MB of storage free, 901 requested",
        "containers",
    )
    .await;
    admin_refuses(
        berth,
        &[
            "container",
            "add",
            "--customer",
            "zeus",
            "--server",
            "small",
            "--name",
            "b",
            "--memory",
            "0",
            "--storage",
            "1",
        ],
        "memory",
        "containers",
    )
    .await;
    admin_refuses(
        berth,
        &[
            "container",
            "add",
            "--customer",
            "nobody",
            "--server",
            "small",
            "--name",
            "b",
            "--memory",
            "1",
            "--storage",
            "1",
        ],
        "nobody",
        "containers",
    )
    .await;
    admin_refuses(
        berth,
        &[
            "container",
            "add",
            "--customer",
            "zeus",
            "--server",
            "nowhere",
            "--name",
            "b",
            "--memory",
            "1",
            "--storage",
            "1",
        ],
        "nowhere",
        "containers",
    )
    .await;
    // Exactly what is left still fits.
    berth
        .admin(&[
            "container",
            "add",
            "--customer",
            "zeus",
            "--server",
            "small",
            "--name",
            "b",
            "--memory",
            "200",
            "--storage",
            "900",
        ])
        .await;

    // Domains: globally unique, whoever asks.
    berth.admin(&["domain", "add", "--customer", "zeus", "--name", "zeus.example"]).await;
    admin_refuses(
        berth,
        &["domain", "add", "--customer", "zeus", "--name", "zeus.example"],
        "domain zeus.example already exists",
        "domains",
    )
    .await;
    let long_domain = format!("{}.example", "d".repeat(250));
    admin_refuses(berth, &["domain", "add", "--customer", "zeus", "--name", &long_domain], "name", "domains").await;
    admin_refuses(berth, &["domain", "add", "--customer", "nobody", "--name", "x.example"], "nobody", "domains").await;

    // News and tokens.
    admin_refuses(berth, &["news", "add", "--content", "  "], "content", "news").await;
    admin_refuses(berth, &["token", "add", "--customer", "nobody"], "nobody", "api_tokens").await;
    admin_refuses(berth, &["token", "add", "--customer", "zeus", "--name", ""], "name", "api_tokens").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_refuse_bad_input_and_change_nothing() {
    let berth = Berth::start().await;
    admin_refusals(&berth).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_the_database_from_the_environment_and_the_state_dir() {
    let berth = Berth::start().await;
    let out = run(
        &["admin", "customer", "add", "--username", "ares", "--password", "war"],
        &[("BERTH_DATABASE_URL", &berth.database_url)],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let state = berth.state_dir.to_str().unwrap();
    let out = run(&["admin", "--state-dir", state, "token", "add", "--customer", "ares"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let token: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON line");
    let me = berth.gql_ok(Auth::bearer(token["token"].as_str().unwrap()), "{ me { username } }", json!({})).await;
    assert_eq!(me["me"]["username"], "ares");
    // A missing required option is a usage error, not a crash.
    let out =
        run(&["admin", "customer", "add", "--username", "x"], &[("BERTH_DATABASE_URL", &berth.database_url)]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--password"), "{}", stderr(&out));
}
