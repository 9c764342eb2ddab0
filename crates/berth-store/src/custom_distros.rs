//! Custom distros: images a customer keeps in one of its storage containers.

use berth_model::CustomDistro;
use sqlx::{AnyConnection, FromRow};

use crate::{new_uuid, placeholders, StoreResult};

#[derive(FromRow)]
struct CustomDistroRow {
    id: i64,
    container_id: i64,
    name: String,
    path: String,
    note: Option<String>,
    uuid: String,
}

impl From<CustomDistroRow> for CustomDistro {
    fn from(r: CustomDistroRow) -> Self {
        CustomDistro { id: r.id, container_id: r.container_id, name: r.name, path: r.path, note: r.note, uuid: r.uuid }
    }
}

/// Columns qualified with the alias `d`.
const COLUMNS: &str = "d.id, d.container_id, d.name, d.path, d.note, d.uuid";

pub async fn insert(
    conn: &mut AnyConnection,
    container_id: i64,
    name: &str,
    path: &str,
    note: Option<&str>,
) -> StoreResult<CustomDistro> {
    let row: CustomDistroRow = sqlx::query_as(
        "INSERT INTO custom_distros (container_id, name, path, note, uuid) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, container_id, name, path, note, uuid",
    )
    .bind(container_id)
    .bind(name)
    .bind(path)
    .bind(note)
    .bind(new_uuid())
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Any custom distro by id (the service checks who may use it).
pub async fn get(conn: &mut AnyConnection, id: i64) -> StoreResult<Option<CustomDistro>> {
    let row: Option<CustomDistroRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM custom_distros d WHERE d.id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Into::into))
}

/// The custom distro `id` if its storage container belongs to `customer_id`.
pub async fn owned(conn: &mut AnyConnection, customer_id: i64, id: i64) -> StoreResult<Option<CustomDistro>> {
    let row: Option<CustomDistroRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM custom_distros d JOIN containers c ON c.id = d.container_id \
         WHERE d.id = $1 AND c.customer_id = $2"
    ))
    .bind(id)
    .bind(customer_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// The customer's custom distros among `ids`, in one statement (DataLoader batches).
pub async fn owned_many(conn: &mut AnyConnection, customer_id: i64, ids: &[i64]) -> StoreResult<Vec<CustomDistro>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM custom_distros d JOIN containers c ON c.id = d.container_id \
         WHERE c.customer_id = $1 AND d.id IN ({})",
        placeholders(2, ids.len())
    );
    let mut query = sqlx::query_as::<_, CustomDistroRow>(&sql).bind(customer_id);
    for id in ids {
        query = query.bind(*id);
    }
    Ok(query.fetch_all(conn).await?.into_iter().map(Into::into).collect())
}

/// Every custom distro stored in one of the customer's containers, in id order.
pub async fn of_customer(conn: &mut AnyConnection, customer_id: i64) -> StoreResult<Vec<CustomDistro>> {
    let rows: Vec<CustomDistroRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM custom_distros d JOIN containers c ON c.id = d.container_id \
         WHERE c.customer_id = $1 ORDER BY d.id"
    ))
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Custom distros a container may use: stored in another container of the same customer on
/// the same server (spec §5.5).
pub async fn usable_by(
    conn: &mut AnyConnection,
    customer_id: i64,
    server_id: i64,
    container_id: i64,
) -> StoreResult<Vec<CustomDistro>> {
    let rows: Vec<CustomDistroRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM custom_distros d JOIN containers c ON c.id = d.container_id \
         WHERE c.customer_id = $1 AND c.server_id = $2 AND c.id <> $3 ORDER BY d.id"
    ))
    .bind(customer_id)
    .bind(server_id)
    .bind(container_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn update(conn: &mut AnyConnection, id: i64, name: &str, path: &str, note: Option<&str>) -> StoreResult<()> {
    sqlx::query("UPDATE custom_distros SET name = $2, path = $3, note = $4 WHERE id = $1")
        .bind(id)
        .bind(name)
        .bind(path)
        .bind(note)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut AnyConnection, id: i64) -> StoreResult<()> {
    sqlx::query("DELETE FROM custom_distros WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}
