//! Directed container links (`container → to`). A link may point at any customer's
//! container; traffic flows only when both directions exist.

use std::collections::HashMap;

use sqlx::AnyConnection;

use crate::fetch::{with_ids, Arg, Fetch};
use crate::{placeholders, StoreResult};

pub async fn insert(conn: &mut AnyConnection, container_id: i64, to_id: i64) -> StoreResult<()> {
    sqlx::query("INSERT INTO container_links (container_id, to_id) VALUES ($1, $2)")
        .bind(container_id)
        .bind(to_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a link; `false` when there was none.
pub async fn delete(conn: &mut AnyConnection, container_id: i64, to_id: i64) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM container_links WHERE container_id = $1 AND to_id = $2")
        .bind(container_id)
        .bind(to_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn exists(conn: &mut AnyConnection, container_id: i64, to_id: i64) -> StoreResult<bool> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT to_id FROM container_links WHERE container_id = $1 AND to_id = $2")
            .bind(container_id)
            .bind(to_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some())
}

/// Outgoing link targets of the customer's containers among `container_ids`, in target
/// order, in one statement.
pub async fn targets_of(
    conn: &mut impl Fetch,
    customer_id: i64,
    container_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<i64>>> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    if container_ids.is_empty() {
        return Ok(out);
    }
    // In primary-key order (from, to): each container's targets still come in `to_id` order,
    // and SQLite needs no temporary b-tree to sort them.
    let sql = format!(
        "SELECT l.container_id, l.to_id FROM container_links l JOIN containers c ON c.id = l.container_id \
         WHERE c.customer_id = $1 AND l.container_id IN ({}) ORDER BY l.container_id, l.to_id",
        placeholders(2, container_ids.len())
    );
    let rows: Vec<(i64, i64)> = conn.fetch_all(&sql, &with_ids(&[Arg::Int(customer_id)], container_ids)).await?;
    for (from, to) in rows {
        out.entry(from).or_default().push(to);
    }
    Ok(out)
}

/// Incoming links of `container_ids`, counting only sources that belong to the customer, so
/// another tenant's containers are never revealed.
pub async fn own_sources_of(
    conn: &mut AnyConnection,
    customer_id: i64,
    container_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<i64>>> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    if container_ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT l.to_id, l.container_id FROM container_links l JOIN containers c ON c.id = l.container_id \
         WHERE c.customer_id = $1 AND l.to_id IN ({}) ORDER BY l.container_id",
        placeholders(2, container_ids.len())
    );
    let mut query = sqlx::query_as::<_, (i64, i64)>(&sql).bind(customer_id);
    for id in container_ids {
        query = query.bind(*id);
    }
    for (to, from) in query.fetch_all(conn).await? {
        out.entry(to).or_default().push(from);
    }
    Ok(out)
}
