//! Observed state of containers (migration 0003): what the agent last saw of each one, next
//! to the desired row in `containers`, plus what the agent reads to build its specs.

use std::collections::HashMap;

use berth_model::{Container, Distro, Loopbox};
use sqlx::{AnyConnection, FromRow};

use crate::containers::{ContainerRow, COLUMNS as CONTAINER_COLUMNS};
use crate::{flags, placeholders, StoreResult};

/// One `container_runtime` row.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ContainerRuntime {
    pub container_id: i64,
    /// As the agent reported it (`RUNNING`, `STOPPED`).
    pub state: String,
    pub pid: Option<i64>,
    /// Unix seconds the running instance started.
    pub started_at: Option<i64>,
    /// The desired generation the observed instance was built from.
    pub observed_generation: i64,
    pub last_error: Option<String>,
    pub memory_bytes: i64,
    pub disk_bytes: i64,
    /// Unix seconds of the last quota alarm (0: never).
    pub last_quota_alarm: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "r.container_id, r.state, r.pid, r.started_at, r.observed_generation, r.last_error, \
    r.memory_bytes, r.disk_bytes, r.last_quota_alarm, r.updated_at";

/// The lifecycle part of a report; usage and the quota gate are written separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    pub state: &'a str,
    pub pid: Option<i64>,
    pub started_at: Option<i64>,
    pub observed_generation: i64,
    pub last_error: Option<&'a str>,
}

/// Inserts or replaces the lifecycle columns of a container's row; usage and the quota gate
/// keep their values.
pub async fn upsert(conn: &mut AnyConnection, container_id: i64, obs: &Observation<'_>, now: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO container_runtime (container_id, state, pid, started_at, observed_generation, last_error, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (container_id) DO UPDATE SET state = excluded.state, pid = excluded.pid, \
         started_at = excluded.started_at, observed_generation = excluded.observed_generation, \
         last_error = excluded.last_error, updated_at = excluded.updated_at",
    )
    .bind(container_id)
    .bind(obs.state)
    .bind(obs.pid)
    .bind(obs.started_at)
    .bind(obs.observed_generation)
    .bind(obs.last_error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records memory and disk use; `false` when the container has no row yet (never observed).
pub async fn set_usage(
    conn: &mut AnyConnection,
    container_id: i64,
    memory_bytes: i64,
    disk_bytes: i64,
    now: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE container_runtime SET memory_bytes = $2, disk_bytes = $3, updated_at = $4 WHERE container_id = $1",
    )
    .bind(container_id)
    .bind(memory_bytes)
    .bind(disk_bytes)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(conn: &mut AnyConnection, container_id: i64) -> StoreResult<Option<ContainerRuntime>> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM container_runtime r WHERE r.container_id = $1"))
        .bind(container_id)
        .fetch_optional(conn)
        .await?)
}

/// Rows of the customer's containers among `container_ids`, in one statement (DataLoader
/// batches); containers never observed have none.
pub async fn owned_many(
    conn: &mut AnyConnection,
    customer_id: i64,
    container_ids: &[i64],
) -> StoreResult<Vec<ContainerRuntime>> {
    if container_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM container_runtime r JOIN containers c ON c.id = r.container_id \
         WHERE c.customer_id = $1 AND r.container_id IN ({})",
        placeholders(2, container_ids.len())
    );
    let mut query = sqlx::query_as::<_, ContainerRuntime>(&sql).bind(customer_id);
    for id in container_ids {
        query = query.bind(*id);
    }
    Ok(query.fetch_all(conn).await?)
}

/// Takes the container's quota-alarm slot at `now` if the last quota alarm is at least
/// `alarm_freq` seconds old (never less than `min_freq`): one conditional `UPDATE`, so
/// concurrent agents (or a restarted one) raise at most one per interval. `false` also when
/// the container has no runtime row.
pub async fn claim_quota_alarm(
    conn: &mut AnyConnection,
    container_id: i64,
    now: i64,
    min_freq: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE container_runtime SET last_quota_alarm = $2 WHERE container_id = $1 AND last_quota_alarm <= $2 - \
         COALESCE((SELECT CASE WHEN alarm_freq < $3 THEN $3 ELSE alarm_freq END FROM containers WHERE id = $1), $3)",
    )
    .bind(container_id)
    .bind(now)
    .bind(min_freq)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the OOM kill counter of the container's cgroup; returns how many kills are new
/// since the last record. A counter lower than the record (a new cgroup) is taken as the
/// new base without any new kill. `0` when the container has no runtime row yet.
pub async fn advance_oom_kills(conn: &mut AnyConnection, container_id: i64, count: i64) -> StoreResult<i64> {
    let old: Option<(i64,)> = sqlx::query_as("SELECT oom_kills FROM container_runtime WHERE container_id = $1")
        .bind(container_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((old,)) = old else { return Ok(0) };
    if count != old {
        set_oom_kills(conn, container_id, count).await?;
    }
    Ok((count - old).max(0))
}

/// Sets the OOM kill counter's base (after a start: the new instance's counter).
pub async fn set_oom_kills(conn: &mut AnyConnection, container_id: i64, count: i64) -> StoreResult<()> {
    sqlx::query("UPDATE container_runtime SET oom_kills = $2 WHERE container_id = $1")
        .bind(container_id)
        .bind(count)
        .execute(conn)
        .await?;
    Ok(())
}

/// A container as the agent needs it: the desired row, its platform distro, its loopboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentContainer {
    pub container: Container,
    pub distro: Option<Distro>,
    pub loopboxes: Vec<Loopbox>,
}

/// The containers of a server (or only `only`, when it is on that server) with their
/// distros and loopboxes, in id order: three statements whatever their number.
pub async fn of_server(
    conn: &mut AnyConnection,
    server_id: i64,
    only: Option<i64>,
) -> StoreResult<Vec<AgentContainer>> {
    let only = only.unwrap_or(0);
    let rows: Vec<ContainerRow> = sqlx::query_as(&format!(
        "SELECT {CONTAINER_COLUMNS} FROM containers WHERE server_id = $1 AND ($2 = 0 OR id = $2) ORDER BY id"
    ))
    .bind(server_id)
    .bind(only)
    .fetch_all(&mut *conn)
    .await?;
    let containers: Vec<Container> = rows.into_iter().map(Into::into).collect();
    if containers.is_empty() {
        return Ok(Vec::new());
    }
    let mut distro_ids: Vec<i64> = containers.iter().filter_map(|c| c.distro_id).collect();
    distro_ids.sort_unstable();
    distro_ids.dedup();
    let distros: HashMap<i64, Distro> =
        crate::distros::many(&mut *conn, &distro_ids).await?.into_iter().map(|d| (d.id, d)).collect();
    let boxes: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
        "SELECT b.id, b.container_id, b.filename, b.mountpoint, b.ro FROM loopboxes b \
         JOIN containers c ON c.id = b.container_id WHERE c.server_id = $1 AND ($2 = 0 OR c.id = $2) ORDER BY b.id",
    )
    .bind(server_id)
    .bind(only)
    .fetch_all(&mut *conn)
    .await?;
    let mut per: HashMap<i64, Vec<Loopbox>> = HashMap::new();
    for (id, container_id, filename, mountpoint, ro) in boxes {
        per.entry(container_id).or_default().push(Loopbox {
            id,
            container_id,
            filename,
            mountpoint,
            ro: flags::from_db(ro),
        });
    }
    Ok(containers
        .into_iter()
        .map(|container| AgentContainer {
            distro: container.distro_id.and_then(|id| distros.get(&id).cloned()),
            loopboxes: per.remove(&container.id).unwrap_or_default(),
            container,
        })
        .collect())
}
