//! Port mappings of dedicated servers: public `server:port` → container private port.

use berth_model::{Portmap, Proto};
use sqlx::{AnyConnection, FromRow};

use crate::{placeholders, unix_now, StoreError, StoreResult};

#[derive(FromRow)]
struct PortmapRow {
    id: i64,
    server_id: i64,
    container_id: i64,
    proto: String,
    public_port: i64,
    private_port: i64,
    created_at: i64,
}

impl TryFrom<PortmapRow> for Portmap {
    type Error = StoreError;
    fn try_from(r: PortmapRow) -> Result<Self, StoreError> {
        let proto =
            Proto::parse(&r.proto).ok_or_else(|| StoreError::Corrupt(format!("portmap proto {:?}", r.proto)))?;
        Ok(Portmap {
            id: r.id,
            server_id: r.server_id,
            container_id: r.container_id,
            proto,
            public_port: r.public_port,
            private_port: r.private_port,
            created_at: r.created_at,
        })
    }
}

const COLUMNS: &str = "id, server_id, container_id, proto, public_port, private_port, created_at";

pub struct NewPortmap {
    pub server_id: i64,
    pub container_id: i64,
    pub proto: Proto,
    pub public_port: i64,
    pub private_port: i64,
}

/// Inserts a mapping; a taken `(server, proto, public_port)` or `(container, proto,
/// private_port)` is `StoreError::Unique`.
pub async fn insert(conn: &mut AnyConnection, new: &NewPortmap) -> StoreResult<Portmap> {
    let row: PortmapRow = sqlx::query_as(&format!(
        "INSERT INTO portmaps (server_id, container_id, proto, public_port, private_port, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(new.server_id)
    .bind(new.container_id)
    .bind(new.proto.as_str())
    .bind(new.public_port)
    .bind(new.private_port)
    .bind(unix_now())
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Every mapping on these servers (all containers, as the reference lists them), by id.
pub async fn of_servers(conn: &mut AnyConnection, server_ids: &[i64]) -> StoreResult<Vec<Portmap>> {
    if server_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM portmaps WHERE server_id IN ({}) ORDER BY id",
        placeholders(1, server_ids.len())
    );
    let mut query = sqlx::query_as::<_, PortmapRow>(&sql);
    for id in server_ids {
        query = query.bind(*id);
    }
    query.fetch_all(conn).await?.into_iter().map(TryInto::try_into).collect()
}

/// Mapping `id` if it is on one of `server_ids`.
pub async fn on_servers(conn: &mut AnyConnection, server_ids: &[i64], id: i64) -> StoreResult<Option<Portmap>> {
    if server_ids.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM portmaps WHERE id = $1 AND server_id IN ({})",
        placeholders(2, server_ids.len())
    );
    let mut query = sqlx::query_as::<_, PortmapRow>(&sql).bind(id);
    for sid in server_ids {
        query = query.bind(*sid);
    }
    query.fetch_optional(conn).await?.map(TryInto::try_into).transpose()
}

pub async fn delete(conn: &mut AnyConnection, id: i64) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM portmaps WHERE id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// Marks a server's mapping list as changed, so its agent reloads the rules.
pub async fn touch_server(conn: &mut AnyConnection, server_id: i64) -> StoreResult<()> {
    sqlx::query("UPDATE servers SET portmappings_mtime = $2 WHERE id = $1")
        .bind(server_id)
        .bind(unix_now())
        .execute(conn)
        .await?;
    Ok(())
}

/// A server's `portmappings_mtime`.
pub async fn server_mtime(conn: &mut AnyConnection, server_id: i64) -> StoreResult<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT portmappings_mtime FROM servers WHERE id = $1")
        .bind(server_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(t,)| t))
}
