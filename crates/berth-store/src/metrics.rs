//! Per-day metric series of containers and domains. Each row keeps a whole day's samples as
//! the JSON text `[[unix, value], ...]`, served verbatim by the REST shim.

use berth_model::{ContainerMetric, Day, DomainMetric};
use sqlx::AnyConnection;

use crate::StoreResult;

/// The stored text of one container series for one day: `None` when there is no row,
/// `Some(None)` for a row without text.
pub async fn container_day(
    conn: &mut AnyConnection,
    container_id: i64,
    kind: ContainerMetric,
    day: Day,
) -> StoreResult<Option<Option<String>>> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT json FROM container_metrics \
         WHERE container_id = $1 AND kind = $2 AND year = $3 AND month = $4 AND day = $5",
    )
    .bind(container_id)
    .bind(kind.as_str())
    .bind(day.year)
    .bind(day.month)
    .bind(day.day)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(json,)| json))
}

/// Every container's stored text of one domain series for one day, by container id.
pub async fn domain_day(
    conn: &mut AnyConnection,
    domain_id: i64,
    kind: DomainMetric,
    day: Day,
) -> StoreResult<Vec<(i64, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT container_id, json FROM domain_metrics \
         WHERE domain_id = $1 AND kind = $2 AND year = $3 AND month = $4 AND day = $5 ORDER BY container_id",
    )
    .bind(domain_id)
    .bind(kind.as_str())
    .bind(day.year)
    .bind(day.month)
    .bind(day.day)
    .fetch_all(conn)
    .await?)
}

/// The text of one sample, formatted as the reference collector writes it.
fn sample(unix: i64, value: i64) -> String {
    format!("[{unix}, {value}]")
}

/// The `SET` clause that appends a sample to an existing row's text in one statement, so two
/// writers never lose each other's samples (no read-modify-write). `$first` holds the text
/// of a fresh one-sample array, `$first+1` the bare sample.
fn append_sql(table: &str, first: usize) -> String {
    let col = format!("{table}.json");
    format!(
        "json = CASE WHEN {col} IS NULL OR {col} = '[]' THEN ${first} \
         ELSE SUBSTR({col}, 1, LENGTH({col}) - 1) || ', ' || ${second} || ']' END",
        second = first + 1
    )
}

/// Appends `[unix, value]` to a container's series of that day, creating the row.
pub async fn append_container_sample(
    conn: &mut AnyConnection,
    container_id: i64,
    kind: ContainerMetric,
    day: Day,
    unix: i64,
    value: i64,
) -> StoreResult<()> {
    let one = sample(unix, value);
    sqlx::query(&format!(
        "INSERT INTO container_metrics (container_id, kind, year, month, day, json) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (container_id, kind, year, month, day) DO UPDATE SET {}",
        append_sql("container_metrics", 7)
    ))
    .bind(container_id)
    .bind(kind.as_str())
    .bind(day.year)
    .bind(day.month)
    .bind(day.day)
    .bind(format!("[{one}]"))
    .bind(format!("[{one}]"))
    .bind(one)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends `[unix, value]` to a domain's series as served by one container on that day.
pub async fn append_domain_sample(
    conn: &mut AnyConnection,
    domain_id: i64,
    container_id: i64,
    kind: DomainMetric,
    day: Day,
    unix: i64,
    value: i64,
) -> StoreResult<()> {
    let one = sample(unix, value);
    sqlx::query(&format!(
        "INSERT INTO domain_metrics (domain_id, container_id, kind, year, month, day, json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (domain_id, container_id, kind, year, month, day) DO UPDATE SET {}",
        append_sql("domain_metrics", 8)
    ))
    .bind(domain_id)
    .bind(container_id)
    .bind(kind.as_str())
    .bind(day.year)
    .bind(day.month)
    .bind(day.day)
    .bind(format!("[{one}]"))
    .bind(format!("[{one}]"))
    .bind(one)
    .execute(conn)
    .await?;
    Ok(())
}
