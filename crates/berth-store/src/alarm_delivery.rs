//! Alarm delivery state of a container: the `alarm_freq` gate shared by every gateway and the
//! signed webhook target (migration 0002).

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
