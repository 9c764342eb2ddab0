//! Servers, their owners and capacity use.

use berth_model::Server;
use sqlx::{AnyConnection, FromRow};

use crate::fetch::{with_ids, Arg, Fetch};
use crate::{new_uuid, StoreResult};

#[derive(FromRow, serde::Deserialize)]
struct ServerRow {
    id: i64,
    name: String,
    address: String,
    memory: i64,
    storage: i64,
    uuid: String,
    owner_id: Option<i64>,
}

impl From<ServerRow> for Server {
    fn from(r: ServerRow) -> Self {
        Server {
            id: r.id,
            name: r.name,
            address: r.address,
            memory: r.memory,
            storage: r.storage,
            uuid: r.uuid,
            owner_id: r.owner_id,
        }
    }
}

const COLUMNS: &str = "id, name, address, memory, storage, uuid, owner_id";

pub struct NewServer<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub memory: i64,
    pub storage: i64,
    pub owner_id: Option<i64>,
}

pub async fn insert(conn: &mut AnyConnection, new: &NewServer<'_>) -> StoreResult<Server> {
    let row: ServerRow = sqlx::query_as(&format!(
        "INSERT INTO servers (name, address, memory, storage, uuid, owner_id) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(new.name)
    .bind(new.address)
    .bind(new.memory)
    .bind(new.storage)
    .bind(new_uuid())
    .bind(new.owner_id)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub async fn get(conn: &mut AnyConnection, id: i64) -> StoreResult<Option<Server>> {
    let row: Option<ServerRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM servers WHERE id = $1")).bind(id).fetch_optional(conn).await?;
    Ok(row.map(Into::into))
}

pub async fn by_name(conn: &mut AnyConnection, name: &str) -> StoreResult<Option<Server>> {
    let row: Option<ServerRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM servers WHERE name = $1"))
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Into::into))
}

/// Servers at an address (addresses are not unique; callers decide what several mean).
pub async fn by_address(conn: &mut AnyConnection, address: &str) -> StoreResult<Vec<Server>> {
    let rows: Vec<ServerRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM servers WHERE address = $1 ORDER BY id"))
        .bind(address)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn owned_by(conn: &mut AnyConnection, customer_id: i64) -> StoreResult<Vec<Server>> {
    let rows: Vec<ServerRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM servers WHERE owner_id = $1 ORDER BY id"))
            .bind(customer_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Servers by id, in one statement (DataLoader batches).
pub async fn many(conn: &mut AnyConnection, ids: &[i64]) -> StoreResult<Vec<Server>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {COLUMNS} FROM servers WHERE id IN ({})", crate::placeholders(1, ids.len()));
    let mut query = sqlx::query_as::<_, ServerRow>(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    Ok(query.fetch_all(conn).await?.into_iter().map(Into::into).collect())
}

/// The servers among `ids` the customer may see: those it owns and those running one of its
/// containers. One row per server, however many containers it runs (the nested page and
/// the REST list used to fetch one row per container).
pub async fn visible_to(conn: &mut impl Fetch, customer_id: i64, ids: &[i64]) -> StoreResult<Vec<Server>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM servers s WHERE s.id IN ({}) AND (s.owner_id = $1 OR EXISTS \
         (SELECT 1 FROM containers c WHERE c.server_id = s.id AND c.customer_id = $1)) ORDER BY s.id",
        crate::placeholders(2, ids.len())
    );
    let rows: Vec<ServerRow> = conn.fetch_all(&sql, &with_ids(&[Arg::Int(customer_id)], ids)).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Memory and storage (MB) already promised to containers on a server, optionally leaving one
/// container out (the one being resized).
pub async fn used_capacity(
    conn: &mut AnyConnection,
    server_id: i64,
    except_container: Option<i64>,
) -> StoreResult<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(memory), 0) AS BIGINT), CAST(COALESCE(SUM(storage), 0) AS BIGINT) \
         FROM containers WHERE server_id = $1 AND id <> $2",
    )
    .bind(server_id)
    .bind(except_container.unwrap_or(0))
    .fetch_one(conn)
    .await?)
}

/// Addresses of the Legions a server belongs to.
pub async fn legion_addresses(conn: &mut AnyConnection, server_id: i64) -> StoreResult<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT l.address FROM legions l JOIN legion_nodes n ON n.legion_id = l.id \
         WHERE n.server_id = $1 ORDER BY l.id",
    )
    .bind(server_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}
