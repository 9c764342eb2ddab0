//! Loopboxes: image files inside a container home, loop-mounted at a directory of it.

use std::collections::HashMap;

use berth_model::{Loopbox, Tagged};
use sqlx::{AnyConnection, FromRow};

use crate::fetch::{with_ids, Arg, Fetch};
use crate::{flags, placeholders, StoreResult};

#[derive(FromRow, serde::Deserialize)]
struct LoopboxRow {
    id: i64,
    container_id: i64,
    filename: String,
    mountpoint: String,
    ro: i64,
}

impl From<LoopboxRow> for Loopbox {
    fn from(r: LoopboxRow) -> Self {
        Loopbox {
            id: r.id,
            container_id: r.container_id,
            filename: r.filename,
            mountpoint: r.mountpoint,
            ro: flags::from_db(r.ro),
        }
    }
}

/// Columns qualified with the alias `b`, as every query below names the table.
const COLUMNS: &str = "b.id, b.container_id, b.filename, b.mountpoint, b.ro";

pub async fn insert(
    conn: &mut AnyConnection,
    container_id: i64,
    filename: &str,
    mountpoint: &str,
    ro: bool,
) -> StoreResult<Loopbox> {
    let row: LoopboxRow = sqlx::query_as(
        "INSERT INTO loopboxes (container_id, filename, mountpoint, ro) VALUES ($1, $2, $3, $4) \
         RETURNING id, container_id, filename, mountpoint, ro",
    )
    .bind(container_id)
    .bind(filename)
    .bind(mountpoint)
    .bind(flags::to_db(ro))
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// The loopbox `id` if its container belongs to `customer_id`.
pub async fn owned(conn: &mut AnyConnection, customer_id: i64, id: i64) -> StoreResult<Option<Loopbox>> {
    let row: Option<LoopboxRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM loopboxes b JOIN containers c ON c.id = b.container_id \
         WHERE b.id = $1 AND c.customer_id = $2"
    ))
    .bind(id)
    .bind(customer_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// One page of the customer's loopboxes in id order, optionally of one container and/or
/// carrying one of `tags` (each loopbox once).
pub async fn page_of_customer(
    conn: &mut AnyConnection,
    customer_id: i64,
    container_id: Option<i64>,
    after_id: Option<i64>,
    limit: i64,
    tags: &[String],
) -> StoreResult<Vec<Loopbox>> {
    let mut sql = format!(
        "SELECT {COLUMNS} FROM loopboxes b JOIN containers c ON c.id = b.container_id \
         WHERE c.customer_id = $1 AND b.id > $2 AND ($3 = 0 OR b.container_id = $3)"
    );
    if !tags.is_empty() {
        sql.push_str(" AND ");
        sql.push_str(&crate::tags::has_any_tag_sql(Tagged::Loopbox, "b.id", "$1", 5, tags.len()));
    }
    sql.push_str(" ORDER BY b.id LIMIT $4");
    let mut query = sqlx::query_as::<_, LoopboxRow>(&sql)
        .bind(customer_id)
        .bind(after_id.unwrap_or(0))
        .bind(container_id.unwrap_or(0))
        .bind(limit);
    for tag in tags {
        query = query.bind(tag.as_str());
    }
    Ok(query.fetch_all(conn).await?.into_iter().map(Into::into).collect())
}

/// Loopboxes of the customer's containers among `container_ids`, per container, in id
/// order, in one statement.
pub async fn of_containers(
    conn: &mut impl Fetch,
    customer_id: i64,
    container_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<Loopbox>>> {
    let mut out: HashMap<i64, Vec<Loopbox>> = HashMap::new();
    if container_ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM loopboxes b JOIN containers c ON c.id = b.container_id \
         WHERE c.customer_id = $1 AND b.container_id IN ({}) ORDER BY b.id",
        placeholders(2, container_ids.len())
    );
    let rows: Vec<LoopboxRow> = conn.fetch_all(&sql, &with_ids(&[Arg::Int(customer_id)], container_ids)).await?;
    for row in rows {
        let b: Loopbox = row.into();
        out.entry(b.container_id).or_default().push(b);
    }
    Ok(out)
}

pub async fn delete(conn: &mut AnyConnection, id: i64) -> StoreResult<()> {
    sqlx::query("DELETE FROM loopboxes WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}
