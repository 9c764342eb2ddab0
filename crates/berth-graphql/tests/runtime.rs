//! `Container.runtime`, `Container.logs` and `exec`: translation and tenancy, against a fake
//! `ContainerControl` (the real agent and backends are tested in their own crates).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_service::runtime::{ContainerControl, ExecCommand, ExecResult, LogEntry, ObservedState, RuntimeReport};
use berth_service::{Caller, Result, Service, ServiceConfig};
use berth_store::{accounts, containers, servers, Store};
use serde_json::{json, Value};

struct NoDns;

#[async_trait]
impl berth_service::dns::DomainOwnership for NoDns {
    async fn txt_contains(&self, _name: &str, _needle: &str) -> Result<bool> {
        Ok(false)
    }
}

#[derive(Default)]
struct FakeControl {
    execs: Mutex<Vec<(i64, ExecCommand)>>,
    stopped: Mutex<Vec<i64>>,
}

#[async_trait]
impl ContainerControl for FakeControl {
    async fn exec(&self, container_id: i64, cmd: ExecCommand) -> Result<ExecResult> {
        if self.stopped.lock().unwrap().contains(&container_id) {
            return Err(berth_service::runtime::not_running());
        }
        self.execs.lock().unwrap().push((container_id, cmd.clone()));
        Ok(ExecResult { exit_code: 7, stdout: cmd.stdin, stderr: vec![0xff, b'e'], timed_out: true })
    }

    async fn logs(&self, _container_id: i64, since: Option<f64>, until: Option<f64>) -> Result<Vec<LogEntry>> {
        Ok(vec![
            LogEntry { unix: since.unwrap_or(0.0), line: "first".into() },
            LogEntry { unix: until.unwrap_or(9.5), line: "last".into() },
        ])
    }
}

struct World {
    service: Service,
    schema: berth_graphql::BerthSchema,
    me: Caller,
    server: i64,
    mine: berth_model::Container,
    theirs: berth_model::Container,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
    let service =
        Service::new(store.clone(), ServiceConfig { domain_ownership: Arc::new(NoDns), auth: Default::default() });
    let mut tx = store.write().await.unwrap();
    let new = |u| accounts::NewCustomer { username: u, password_hash: "h", email: "", company: None, vat: None };
    let me = accounts::insert_customer(&mut tx, &new("me")).await.unwrap().id;
    let other = accounts::insert_customer(&mut tx, &new("other")).await.unwrap().id;
    let server = servers::insert(
        &mut tx,
        &servers::NewServer { name: "s1", address: "192.0.2.1", memory: 1000, storage: 1000, owner_id: Some(me) },
    )
    .await
    .unwrap()
    .id;
    let mk =
        |customer_id, name| containers::NewContainer { customer_id, server_id: server, name, memory: 1, storage: 1 };
    let mine = containers::insert(&mut tx, &mk(me, "mine")).await.unwrap();
    let theirs = containers::insert(&mut tx, &mk(other, "theirs")).await.unwrap();
    tx.commit().await.unwrap();
    let schema = berth_graphql::schema(service.clone());
    World { service, schema, me: Caller { customer_id: me }, server, mine, theirs, _dir: dir }
}

impl World {
    async fn run(&self, query: &str, vars: Value) -> Value {
        let request = async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(vars));
        let request = berth_graphql::prepare_request(request, &self.service, Some(self.me));
        let mut response = self.schema.execute(request).await;
        berth_graphql::ensure_codes(&mut response);
        serde_json::to_value(&response).unwrap()
    }
}

fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {response}"))
}

const RUNTIME: &str = "query($uid: Int!) { container(uid: $uid) { generation runtime { state pid startedAt \
    observedGeneration lastError memoryUsed diskUsed } } }";

#[tokio::test]
async fn runtime_field() {
    let w = world().await;
    let r = w.run(RUNTIME, json!({ "uid": w.mine.uid() })).await;
    assert_eq!(
        r["data"]["container"]["runtime"],
        json!({ "state": "PENDING", "pid": null, "startedAt": null, "observedGeneration": 0, "lastError": null,
                "memoryUsed": 0, "diskUsed": 0 })
    );
    let report = RuntimeReport {
        state: ObservedState::Running,
        pid: Some(4321),
        started_at: Some(1_700_000_000),
        observed_generation: 1,
        last_error: None,
    };
    w.service.report_runtime(w.mine.id, report.clone()).await.unwrap();
    w.service.report_usage(w.mine.id, 3 << 30, 1 << 20).await.unwrap();
    let r = w.run(RUNTIME, json!({ "uid": w.mine.uid() })).await;
    assert_eq!(
        r["data"]["container"]["runtime"],
        json!({ "state": "RUNNING", "pid": 4321, "startedAt": 1_700_000_000, "observedGeneration": 1,
                "lastError": null, "memoryUsed": 3i64 << 30, "diskUsed": 1 << 20 })
    );
    let failed = RuntimeReport {
        state: ObservedState::Stopped,
        pid: None,
        started_at: None,
        last_error: Some("custom distros are not supported by this backend yet".into()),
        ..report
    };
    w.service.report_runtime(w.mine.id, failed).await.unwrap();
    let r = w.run(RUNTIME, json!({ "uid": w.mine.uid() })).await;
    assert_eq!(r["data"]["container"]["runtime"]["state"], "FAILED");
    assert_eq!(r["data"]["container"]["runtime"]["lastError"], "custom distros are not supported by this backend yet");

    // In a page, through the loader; another tenant's container stays invisible.
    w.service
        .report_runtime(
            w.theirs.id,
            RuntimeReport {
                state: ObservedState::Running,
                pid: Some(1),
                started_at: None,
                observed_generation: 1,
                last_error: None,
            },
        )
        .await
        .unwrap();
    let r = w.run("{ containers { edges { node { uid runtime { state } } } } }", json!({})).await;
    assert_eq!(
        r["data"]["containers"]["edges"],
        json!([{ "node": { "uid": w.mine.uid(), "runtime": { "state": "FAILED" } } }])
    );
    let r = w.run(RUNTIME, json!({ "uid": w.theirs.uid() })).await;
    assert_eq!(code(&r), "NOT_FOUND");
}

const EXEC: &str = "mutation($uid: Int!, $argv: [String!]!, $stdin: String, $env: [EnvVar!], $t: Int) { \
    exec(uid: $uid, argv: $argv, stdin: $stdin, env: $env, timeoutSecs: $t) { exitCode stdout stderr timedOut } }";
const LOGS: &str = "query($uid: Int!, $since: Float, $until: Float) { container(uid: $uid) { \
    logs(since: $since, until: $until) { unix line } } }";

#[tokio::test]
async fn exec_and_logs() {
    let w = world().await;
    let mine = w.mine.uid();
    // No agent for the server in this gateway.
    let r = w.run(EXEC, json!({ "uid": mine, "argv": ["id"] })).await;
    assert_eq!(code(&r), "UNAVAILABLE", "{r}");
    let r = w.run(LOGS, json!({ "uid": mine })).await;
    assert_eq!(code(&r), "UNAVAILABLE", "{r}");

    let control = Arc::new(FakeControl::default());
    w.service.register_control(w.server, control.clone());
    let r = w
        .run(
            EXEC,
            json!({ "uid": mine, "argv": ["sh", "-c", "cat"], "stdin": "héllo", "env": [{ "name": "A", "value": "1" }],
                    "t": 5 }),
        )
        .await;
    assert_eq!(r["data"]["exec"], json!({ "exitCode": 7, "stdout": "héllo", "stderr": "\u{fffd}e", "timedOut": true }));
    {
        let execs = control.execs.lock().unwrap();
        let (id, cmd) = &execs[0];
        assert_eq!(*id, w.mine.id);
        assert_eq!(cmd.argv, ["sh", "-c", "cat"]);
        assert_eq!(cmd.env, [("A".to_owned(), "1".to_owned())]);
        assert_eq!(cmd.timeout_secs, Some(5));
    }

    let r = w.run(LOGS, json!({ "uid": mine, "since": 1.25, "until": 2.5 })).await;
    assert_eq!(
        r["data"]["container"]["logs"],
        json!([{ "unix": 1.25, "line": "first" }, { "unix": 2.5, "line": "last" }])
    );

    // Typed errors.
    let r = w.run(EXEC, json!({ "uid": mine, "argv": [] })).await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    assert_eq!(r["errors"][0]["extensions"]["field"], "argv");
    let r = w.run(EXEC, json!({ "uid": mine, "argv": ["x"], "t": 601 })).await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    let r = w.run(LOGS, json!({ "uid": mine, "since": 3.0, "until": 2.0 })).await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    control.stopped.lock().unwrap().push(w.mine.id);
    let r = w.run(EXEC, json!({ "uid": mine, "argv": ["id"] })).await;
    assert_eq!(code(&r), "CONFLICT");
    assert_eq!(r["errors"][0]["message"], "conflict: container is not running");

    // Tenancy: another customer's container is NOT_FOUND, like an unknown uid.
    for uid in [w.theirs.uid(), 99_999] {
        let r = w.run(EXEC, json!({ "uid": uid, "argv": ["id"] })).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = w.run(LOGS, json!({ "uid": uid })).await;
        assert_eq!(code(&r), "NOT_FOUND");
    }
    assert_eq!(control.execs.lock().unwrap().len(), 1, "nothing else reached the agent");
}
