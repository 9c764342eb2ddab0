//! Containers: the desired state rows the agent reconciles.

use berth_model::Container;
use sqlx::{AnyConnection, FromRow};

use crate::{flags, new_uuid, unix_now, StoreResult};

#[derive(FromRow)]
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
    pushover_sound, pushbullet_token, slack_webhook, quota_threshold, alarm_freq, nofollow, note, \
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

/// Uids of all of a customer's containers, in id order (`me.containers`).
pub async fn ids_of_customer(conn: &mut AnyConnection, customer_id: i64) -> StoreResult<Vec<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM containers WHERE customer_id = $1 ORDER BY id")
        .bind(customer_id)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}
