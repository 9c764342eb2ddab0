//! Containers: the desired state rows the agent reconciles.

use std::collections::HashMap;

use berth_model::Container;
use sqlx::{AnyConnection, FromRow};

use crate::fetch::{Arg, Fetch};
use crate::{flags, new_uuid, unix_now, StoreError, StoreResult};

#[derive(FromRow, serde::Deserialize)]
pub(crate) struct ContainerRow {
    id: i64,
    customer_id: i64,
    server_id: i64,
    name: String,
    memory: i64,
    storage: i64,
    uuid: String,
    distro_id: Option<i64>,
    custom_distro_id: Option<i64>,
    ssh_keys_raw: Option<String>,
    jid: Option<String>,
    jid_secret: Option<String>,
    jid_destinations: Option<String>,
    pushover_user: Option<String>,
    pushover_token: Option<String>,
    pushover_sound: Option<String>,
    pushbullet_token: Option<String>,
    slack_webhook: Option<String>,
    webhook_url: Option<String>,
    quota_threshold: i64,
    alarm_freq: i64,
    nofollow: i64,
    note: Option<String>,
    custom_distros_storage: i64,
    secret_uuid: Option<String>,
    alarm_key: Option<String>,
    max_alarms: i64,
    generation: i64,
    last_reboot: i64,
    ssh_keys_mtime: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<ContainerRow> for Container {
    fn from(r: ContainerRow) -> Self {
        Container {
            id: r.id,
            customer_id: r.customer_id,
            server_id: r.server_id,
            name: r.name,
            memory: r.memory,
            storage: r.storage,
            uuid: r.uuid,
            distro_id: r.distro_id,
            custom_distro_id: r.custom_distro_id,
            ssh_keys_raw: r.ssh_keys_raw,
            jid: r.jid,
            jid_secret: r.jid_secret,
            jid_destinations: r.jid_destinations,
            pushover_user: r.pushover_user,
            pushover_token: r.pushover_token,
            pushover_sound: r.pushover_sound,
            pushbullet_token: r.pushbullet_token,
            slack_webhook: r.slack_webhook,
            webhook_url: r.webhook_url,
            quota_threshold: r.quota_threshold,
            alarm_freq: r.alarm_freq,
            nofollow: flags::from_db(r.nofollow),
            note: r.note,
            custom_distros_storage: flags::from_db(r.custom_distros_storage),
            secret_uuid: r.secret_uuid,
            alarm_key: r.alarm_key,
            max_alarms: r.max_alarms,
            generation: r.generation,
            last_reboot: r.last_reboot,
            ssh_keys_mtime: r.ssh_keys_mtime,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Every column, in `ContainerRow` order; prefix with a table alias where joins need it.
pub(crate) const COLUMNS: &str = "id, customer_id, server_id, name, memory, storage, uuid, distro_id, \
    custom_distro_id, ssh_keys_raw, jid, jid_secret, jid_destinations, pushover_user, pushover_token, \
    pushover_sound, pushbullet_token, slack_webhook, webhook_url, quota_threshold, alarm_freq, nofollow, note, \
    custom_distros_storage, secret_uuid, alarm_key, max_alarms, generation, last_reboot, ssh_keys_mtime, \
    created_at, updated_at";

pub struct NewContainer<'a> {
    pub customer_id: i64,
    pub server_id: i64,
    pub name: &'a str,
    pub memory: i64,
    pub storage: i64,
}

pub async fn insert(conn: &mut AnyConnection, new: &NewContainer<'_>) -> StoreResult<Container> {
    let now = unix_now();
    let row: ContainerRow = sqlx::query_as(&format!(
        "INSERT INTO containers (customer_id, server_id, name, memory, storage, uuid, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
    ))
    .bind(new.customer_id)
    .bind(new.server_id)
    .bind(new.name)
    .bind(new.memory)
    .bind(new.storage)
    .bind(new_uuid())
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Any container by id (operator and agent paths; customers go through [`owned`]).
pub async fn get(conn: &mut AnyConnection, id: i64) -> StoreResult<Option<Container>> {
    let row: Option<ContainerRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM containers WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Into::into))
}

/// The container `id` if, and only if, it belongs to `customer_id`.
pub async fn owned(conn: &mut AnyConnection, customer_id: i64, id: i64) -> StoreResult<Option<Container>> {
    let row: Option<ContainerRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM containers WHERE id = $1 AND customer_id = $2"))
            .bind(id)
            .bind(customer_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Into::into))
}

/// Containers by id, in one statement (DataLoader batches); callers filter by owner.
pub async fn many(conn: &mut AnyConnection, ids: &[i64]) -> StoreResult<Vec<Container>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {COLUMNS} FROM containers WHERE id IN ({})", crate::placeholders(1, ids.len()));
    let mut query = sqlx::query_as::<_, ContainerRow>(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    Ok(query.fetch_all(conn).await?.into_iter().map(Into::into).collect())
}

/// Ids of a customer's containers, in id order. Fetched as one row (the ids joined by
/// commas) rather than one row per container: every row costs sqlx's SQLite driver a
/// hand-off between threads, and REST `/api/me` lists all of them (10,000 rows took
/// ~0.1 s of CPU). `string_agg … ORDER BY` is the same in SQLite (≥ 3.44) and PostgreSQL.
pub async fn ids_of_customer(conn: &mut AnyConnection, customer_id: i64) -> StoreResult<Vec<i64>> {
    let (joined,): (Option<String>,) =
        sqlx::query_as("SELECT string_agg(CAST(id AS TEXT), ',' ORDER BY id) FROM containers WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_one(conn)
            .await?;
    joined
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| id.parse().map_err(|_| StoreError::Corrupt(format!("container id {id:?}"))))
        .collect()
}

/// One page of a customer's containers in id order, after `after_id`, optionally only those
/// carrying one of `tags` (each container once). Fetches `limit` rows.
pub async fn page_of_customer(
    conn: &mut impl Fetch,
    customer_id: i64,
    after_id: Option<i64>,
    limit: i64,
    tags: &[String],
) -> StoreResult<Vec<Container>> {
    let mut sql = format!("SELECT {COLUMNS} FROM containers c WHERE c.customer_id = $1 AND c.id > $2");
    if !tags.is_empty() {
        sql.push_str(" AND ");
        sql.push_str(&crate::tags::has_any_tag_sql(berth_model::Tagged::Container, "c.id", "$1", 4, tags.len()));
    }
    sql.push_str(" ORDER BY c.id LIMIT $3");
    let mut args = vec![Arg::Int(customer_id), Arg::Int(after_id.unwrap_or(0)), Arg::Int(limit)];
    args.extend(tags.iter().map(|tag| Arg::Text(tag)));
    let rows: Vec<ContainerRow> = conn.fetch_all(&sql, &args).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The customer's containers among `ids`, in one statement.
pub async fn owned_many(conn: &mut AnyConnection, customer_id: i64, ids: &[i64]) -> StoreResult<Vec<Container>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM containers WHERE customer_id = $1 AND id IN ({})",
        crate::placeholders(2, ids.len())
    );
    let mut query = sqlx::query_as::<_, ContainerRow>(&sql).bind(customer_id);
    for id in ids {
        query = query.bind(*id);
    }
    Ok(query.fetch_all(conn).await?.into_iter().map(Into::into).collect())
}

/// Writes every customer-settable column of `c` (the service computed the new row) and
/// stamps `updated_at`.
pub async fn save(conn: &mut AnyConnection, c: &Container) -> StoreResult<()> {
    sqlx::query(
        "UPDATE containers SET name = $2, memory = $3, storage = $4, distro_id = $5, custom_distro_id = $6, \
         ssh_keys_raw = $7, jid = $8, jid_secret = $9, jid_destinations = $10, pushover_user = $11, \
         pushover_token = $12, pushover_sound = $13, pushbullet_token = $14, slack_webhook = $15, \
         quota_threshold = $16, alarm_freq = $17, nofollow = $18, note = $19, custom_distros_storage = $20, \
         secret_uuid = $21, generation = $22, last_reboot = $23, ssh_keys_mtime = $24, updated_at = $25, \
         webhook_url = $26 WHERE id = $1",
    )
    .bind(c.id)
    .bind(c.name.as_str())
    .bind(c.memory)
    .bind(c.storage)
    .bind(c.distro_id)
    .bind(c.custom_distro_id)
    .bind(c.ssh_keys_raw.as_deref())
    .bind(c.jid.as_deref())
    .bind(c.jid_secret.as_deref())
    .bind(c.jid_destinations.as_deref())
    .bind(c.pushover_user.as_deref())
    .bind(c.pushover_token.as_deref())
    .bind(c.pushover_sound.as_deref())
    .bind(c.pushbullet_token.as_deref())
    .bind(c.slack_webhook.as_deref())
    .bind(c.quota_threshold)
    .bind(c.alarm_freq)
    .bind(flags::to_db(c.nofollow))
    .bind(c.note.as_deref())
    .bind(flags::to_db(c.custom_distros_storage))
    .bind(c.secret_uuid.as_deref())
    .bind(c.generation)
    .bind(c.last_reboot)
    .bind(c.ssh_keys_mtime)
    .bind(unix_now())
    .bind(c.webhook_url.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a container; its loopboxes, links, port mappings, alarms, metrics and runtime
/// rows go with it (ON DELETE CASCADE). Returns whether it existed.
pub async fn delete(conn: &mut AnyConnection, id: i64) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM containers WHERE id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// Requests a restart: one generation step and a fresh reboot time.
pub async fn bump_generation(conn: &mut AnyConnection, id: i64) -> StoreResult<()> {
    let now = unix_now();
    sqlx::query("UPDATE containers SET generation = generation + 1, last_reboot = $2, updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Unsets a custom distro on every container using it, restarting each (Q15 fixed: the
/// reference deleted those containers). Run before deleting the custom distro. Returns
/// `(id, customer_id, generation)` of each container touched.
pub async fn clear_custom_distro(conn: &mut AnyConnection, custom_distro_id: i64) -> StoreResult<Vec<(i64, i64, i64)>> {
    let now = unix_now();
    Ok(sqlx::query_as(
        "UPDATE containers SET custom_distro_id = NULL, generation = generation + 1, last_reboot = $2, \
         updated_at = $2 WHERE custom_distro_id = $1 RETURNING id, customer_id, generation",
    )
    .bind(custom_distro_id)
    .bind(now)
    .fetch_all(conn)
    .await?)
}

/// Serialises capacity checks on one server: a no-op write takes the row lock on PostgreSQL
/// (SQLite already has one writer), so two concurrent creations cannot both pass the
/// overselling check.
pub async fn lock_server(conn: &mut AnyConnection, server_id: i64) -> StoreResult<()> {
    sqlx::query("UPDATE servers SET memory = memory WHERE id = $1").bind(server_id).execute(conn).await?;
    Ok(())
}

/// Legion addresses of the servers of the customer's containers among `container_ids`.
pub async fn legion_addresses_of(
    conn: &mut AnyConnection,
    customer_id: i64,
    container_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    if container_ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT c.id, l.address FROM containers c JOIN legion_nodes n ON n.server_id = c.server_id \
         JOIN legions l ON l.id = n.legion_id WHERE c.customer_id = $1 AND c.id IN ({}) ORDER BY l.id",
        crate::placeholders(2, container_ids.len())
    );
    let mut query = sqlx::query_as::<_, (i64, String)>(&sql).bind(customer_id);
    for id in container_ids {
        query = query.bind(*id);
    }
    for (cid, address) in query.fetch_all(conn).await? {
        out.entry(cid).or_default().push(address);
    }
    Ok(out)
}
