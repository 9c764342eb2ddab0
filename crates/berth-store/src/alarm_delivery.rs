//! Alarm delivery state of a container: the `alarm_freq` gate shared by every gateway and the
//! signed webhook target (migration 0002), and the deliveries not done yet (migration 0006).

use sqlx::AnyConnection;

use crate::StoreResult;

/// The shortest delivery interval, whatever `alarm_freq` says (spec §5.7: min 60, clamped).
pub const MIN_ALARM_FREQ: i64 = 60;

/// Takes the container's delivery slot at `now` if its last delivery is at least
/// `alarm_freq` seconds old: one atomic conditional `UPDATE`, so among gateways (or tasks)
/// racing for the same container exactly one sees `true` per interval.
pub async fn claim(conn: &mut AnyConnection, container_id: i64, now: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE containers SET last_alarm_delivery = $2 WHERE id = $1 \
         AND last_alarm_delivery <= $2 - CASE WHEN alarm_freq < $3 THEN $3 ELSE alarm_freq END",
    )
    .bind(container_id)
    .bind(now)
    .bind(MIN_ALARM_FREQ)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `(webhook_url, webhook_secret)` of a container; `None` when the container is gone.
pub async fn webhook(
    conn: &mut AnyConnection,
    container_id: i64,
) -> StoreResult<Option<(Option<String>, Option<String>)>> {
    Ok(sqlx::query_as("SELECT webhook_url, webhook_secret FROM containers WHERE id = $1")
        .bind(container_id)
        .fetch_optional(conn)
        .await?)
}

/// Replaces the webhook signing secret.
pub async fn set_webhook_secret(conn: &mut AnyConnection, container_id: i64, secret: &str) -> StoreResult<()> {
    sqlx::query("UPDATE containers SET webhook_secret = $2 WHERE id = $1")
        .bind(container_id)
        .bind(secret)
        .execute(conn)
        .await?;
    Ok(())
}

/// When the container's channels last got an alarm (Unix seconds; 0: never).
pub async fn last_delivery(conn: &mut AnyConnection, container_id: i64) -> StoreResult<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT last_alarm_delivery FROM containers WHERE id = $1")
        .bind(container_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(t,)| t))
}

/// A delivery of one alarm to one channel that is not done yet (migration 0006).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingDelivery {
    pub id: i64,
    pub container_id: i64,
    pub customer_id: i64,
    /// The channel's name (`slack`, `webhook`, …).
    pub channel: String,
    /// The alarm as JSON: it may be pruned from `alarms` before it is delivered.
    pub alarm: String,
    /// Attempts already started, by this gateway or one that died.
    pub attempts: i64,
    /// Proves the lease is still the holder's: every later change names it.
    pub lease_token: i64,
}

const PENDING_COLUMNS: &str = "id, container_id, customer_id, channel, alarm, attempts, lease_token";

/// Adds a delivery due at `due_at` (Unix ms); call it in the raise's own transaction.
pub async fn schedule(
    conn: &mut AnyConnection,
    container_id: i64,
    customer_id: i64,
    channel: &str,
    alarm_json: &str,
    due_at: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO alarm_deliveries (container_id, customer_id, channel, alarm, due_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(container_id)
    .bind(customer_id)
    .bind(channel)
    .bind(alarm_json)
    .bind(due_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Up to `limit` deliveries due at `now` and not leased, oldest first: candidates for
/// [`lease`], read without taking the write lock (most polls find none).
pub async fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> StoreResult<Vec<i64>> {
    let due: Vec<(i64,)> = sqlx::query_as(
        "SELECT id FROM alarm_deliveries WHERE due_at <= $1 AND lease_until <= $1 ORDER BY due_at, id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(due.into_iter().map(|(id,)| id).collect())
}

/// Leases those of `ids` still due and free at `now` until `lease_until`, under `token`.
/// Each row is taken by one conditional `UPDATE`, so among gateways racing for a row
/// exactly one gets it; the others skip it.
pub async fn lease(
    conn: &mut AnyConnection,
    ids: &[i64],
    now: i64,
    lease_until: i64,
    token: i64,
) -> StoreResult<Vec<PendingDelivery>> {
    let mut leased = Vec::with_capacity(ids.len());
    for &id in ids {
        let row: Option<PendingDelivery> = sqlx::query_as(&format!(
            "UPDATE alarm_deliveries SET lease_until = $2, lease_token = $3 \
             WHERE id = $1 AND due_at <= $4 AND lease_until <= $4 RETURNING {PENDING_COLUMNS}"
        ))
        .bind(id)
        .bind(lease_until)
        .bind(token)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        leased.extend(row);
    }
    Ok(leased)
}

/// Records that attempt `attempts` starts (or waits) and keeps the lease until
/// `lease_until`; `false` when the lease is no longer the caller's.
pub async fn renew(
    conn: &mut AnyConnection,
    id: i64,
    token: i64,
    attempts: i64,
    lease_until: i64,
) -> StoreResult<bool> {
    let done =
        sqlx::query("UPDATE alarm_deliveries SET attempts = $3, lease_until = $4 WHERE id = $1 AND lease_token = $2")
            .bind(id)
            .bind(token)
            .bind(attempts)
            .bind(lease_until)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes a delivery that is done (delivered or given up); `false` when the lease is no
/// longer the caller's.
pub async fn finish(conn: &mut AnyConnection, id: i64, token: i64) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM alarm_deliveries WHERE id = $1 AND lease_token = $2")
        .bind(id)
        .bind(token)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deliveries not done yet, for `/metrics` and tests.
pub async fn pending(conn: &mut AnyConnection) -> StoreResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM alarm_deliveries").fetch_one(conn).await?;
    Ok(n)
}
