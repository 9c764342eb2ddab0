//! Platform distros (operator-managed root filesystems).

use berth_model::Distro;
use sqlx::{AnyConnection, FromRow};

use crate::fetch::{with_ids, Fetch};
use crate::{new_uuid, StoreResult};

#[derive(FromRow, serde::Deserialize)]
struct DistroRow {
    id: i64,
    name: String,
    path: String,
    uuid: String,
    note: Option<String>,
}

impl From<DistroRow> for Distro {
    fn from(r: DistroRow) -> Self {
        Distro { id: r.id, name: r.name, path: r.path, uuid: r.uuid, note: r.note }
    }
}

const COLUMNS: &str = "id, name, path, uuid, note";

pub async fn insert(conn: &mut AnyConnection, name: &str, path: &str, note: Option<&str>) -> StoreResult<Distro> {
    let row: DistroRow = sqlx::query_as(&format!(
        "INSERT INTO distros (name, path, uuid, note) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(path)
    .bind(new_uuid())
    .bind(note)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub async fn all(conn: &mut AnyConnection) -> StoreResult<Vec<Distro>> {
    let rows: Vec<DistroRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM distros ORDER BY id")).fetch_all(conn).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn get(conn: &mut AnyConnection, id: i64) -> StoreResult<Option<Distro>> {
    let row: Option<DistroRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM distros WHERE id = $1")).bind(id).fetch_optional(conn).await?;
    Ok(row.map(Into::into))
}

/// Distros by id, in one statement (DataLoader batches).
pub async fn many(conn: &mut impl Fetch, ids: &[i64]) -> StoreResult<Vec<Distro>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {COLUMNS} FROM distros WHERE id IN ({})", crate::placeholders(1, ids.len()));
    let rows: Vec<DistroRow> = conn.fetch_all(&sql, &with_ids(&[], ids)).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
