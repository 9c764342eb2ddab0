//! Domains of a customer, their tags, and who served them today (the `hits` domain metric).

use std::collections::HashMap;

use berth_model::{Day, Domain, DomainMetric, Tagged};
use sqlx::{AnyConnection, FromRow};

use crate::fetch::{with_ids, Arg, Fetch};
use crate::{new_uuid, placeholders, tags, unix_now, StoreResult};

#[derive(FromRow, serde::Deserialize)]
struct DomainRow {
    id: i64,
    customer_id: i64,
    name: String,
    uuid: String,
    note: Option<String>,
    created_at: i64,
}

impl From<DomainRow> for Domain {
    fn from(r: DomainRow) -> Self {
        Domain {
            id: r.id,
            customer_id: r.customer_id,
            name: r.name,
            uuid: r.uuid,
            note: r.note,
            created_at: r.created_at,
        }
    }
}

const COLUMNS: &str = "id, customer_id, name, uuid, note, created_at";
const D_COLUMNS: &str = "d.id, d.customer_id, d.name, d.uuid, d.note, d.created_at";

pub async fn insert(conn: &mut AnyConnection, customer_id: i64, name: &str) -> StoreResult<Domain> {
    let row: DomainRow = sqlx::query_as(&format!(
        "INSERT INTO domains (customer_id, name, uuid, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
         RETURNING {COLUMNS}"
    ))
    .bind(customer_id)
    .bind(name)
    .bind(new_uuid())
    .bind(unix_now())
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// The domain `id` if, and only if, it belongs to `customer_id`.
pub async fn owned(conn: &mut AnyConnection, customer_id: i64, id: i64) -> StoreResult<Option<Domain>> {
    let row: Option<DomainRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM domains WHERE id = $1 AND customer_id = $2"))
            .bind(id)
            .bind(customer_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Into::into))
}

/// The customer's domain with exactly this name (case-sensitive, as the reference).
pub async fn owned_by_name(conn: &mut AnyConnection, customer_id: i64, name: &str) -> StoreResult<Option<Domain>> {
    let row: Option<DomainRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM domains WHERE name = $1 AND customer_id = $2"))
            .bind(name)
            .bind(customer_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Into::into))
}

/// Whether any customer holds a domain with exactly this name.
pub async fn name_taken(conn: &mut AnyConnection, name: &str) -> StoreResult<bool> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM domains WHERE name = $1").bind(name).fetch_optional(conn).await?;
    Ok(row.is_some())
}

/// One page of the customer's domains in id order, after the domain id `after`, carrying at
/// least one of `tags` when any are given (each domain once). Returns up to `limit` rows.
pub async fn page(
    conn: &mut AnyConnection,
    customer_id: i64,
    tags: &[String],
    after: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<Domain>> {
    let mut sql = format!("SELECT {D_COLUMNS} FROM domains d WHERE d.customer_id = $1 AND d.id > $2");
    if !tags.is_empty() {
        sql.push_str(" AND ");
        sql.push_str(&tags::has_any_tag_sql(Tagged::Domain, "d.id", "$1", 4, tags.len()));
    }
    sql.push_str(" ORDER BY d.id LIMIT $3");
    let mut query = sqlx::query_as::<_, DomainRow>(&sql).bind(customer_id).bind(after.unwrap_or(0)).bind(limit);
    for tag in tags {
        query = query.bind(tag.as_str());
    }
    Ok(query.fetch_all(conn).await?.into_iter().map(Into::into).collect())
}

pub async fn set_note(conn: &mut AnyConnection, id: i64, note: Option<&str>) -> StoreResult<()> {
    sqlx::query("UPDATE domains SET note = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(note)
        .bind(unix_now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves `updated_at` (the private domain list's mtime) without another change.
pub async fn touch(conn: &mut AnyConnection, id: i64) -> StoreResult<()> {
    sqlx::query("UPDATE domains SET updated_at = $2 WHERE id = $1").bind(id).bind(unix_now()).execute(conn).await?;
    Ok(())
}

/// Deletes a domain; its tags and metric rows go with it (ON DELETE CASCADE).
pub async fn delete(conn: &mut AnyConnection, id: i64) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM domains WHERE id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// Tag names of the customer's domains among `ids`, in one statement.
pub async fn tag_names(
    conn: &mut AnyConnection,
    customer_id: i64,
    ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT j.domain_id, t.name FROM domain_tags j JOIN tags t ON t.id = j.tag_id \
         JOIN domains d ON d.id = j.domain_id \
         WHERE d.customer_id = $1 AND t.customer_id = $1 AND j.domain_id IN ({}) ORDER BY t.id",
        placeholders(2, ids.len())
    );
    let mut query = sqlx::query_as::<_, (i64, String)>(&sql).bind(customer_id);
    for id in ids {
        query = query.bind(*id);
    }
    for (id, name) in query.fetch_all(conn).await? {
        out.entry(id).or_default().push(name);
    }
    Ok(out)
}

#[derive(FromRow, serde::Deserialize)]
struct ServedRow {
    served_by: i64,
    #[sqlx(flatten)]
    #[serde(flatten)]
    domain: DomainRow,
}

/// For each of `container_ids`, the domains it served on `day` (a `hits` row exists), both
/// sides restricted to `customer_id` (Q11 fixed); one statement, domains in id order.
///
/// The unary `+` on the `customer_id` tests keeps SQLite from driving the join from
/// `domains_customer`/`containers_customer` (every domain or container of the customer,
/// each probed against the whole id list: ~200 ms at 10,000 rows, see BENCHMARKS.md); the
/// plan starts from the id list instead. PostgreSQL reads `+x` as `x`.
pub async fn served_by_containers(
    conn: &mut impl Fetch,
    customer_id: i64,
    container_ids: &[i64],
    day: Day,
) -> StoreResult<HashMap<i64, Vec<Domain>>> {
    let mut out: HashMap<i64, Vec<Domain>> = HashMap::new();
    if container_ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT DISTINCT m.container_id AS served_by, {D_COLUMNS} FROM domain_metrics m \
         JOIN domains d ON d.id = m.domain_id JOIN containers c ON c.id = m.container_id \
         WHERE +d.customer_id = $1 AND +c.customer_id = $1 AND m.kind = $2 \
         AND m.year = $3 AND m.month = $4 AND m.day = $5 AND m.container_id IN ({}) \
         ORDER BY d.id",
        placeholders(6, container_ids.len())
    );
    let leading = [
        Arg::Int(customer_id),
        Arg::Text(DomainMetric::Hits.as_str()),
        Arg::Int(day.year),
        Arg::Int(day.month),
        Arg::Int(day.day),
    ];
    let rows: Vec<ServedRow> = conn.fetch_all(&sql, &with_ids(&leading, container_ids)).await?;
    for row in rows {
        out.entry(row.served_by).or_default().push(row.domain.into());
    }
    Ok(out)
}

/// For each of `domain_ids`, the ids of the containers that served it on `day`, both sides
/// restricted to `customer_id` (Q11 fixed); container ids ascending.
/// Unary `+` on `customer_id`: see [`served_by_containers`].
pub async fn serving_containers(
    conn: &mut AnyConnection,
    customer_id: i64,
    domain_ids: &[i64],
    day: Day,
) -> StoreResult<HashMap<i64, Vec<i64>>> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    if domain_ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT DISTINCT m.domain_id, m.container_id FROM domain_metrics m \
         JOIN domains d ON d.id = m.domain_id JOIN containers c ON c.id = m.container_id \
         WHERE +d.customer_id = $1 AND +c.customer_id = $1 AND m.kind = $2 \
         AND m.year = $3 AND m.month = $4 AND m.day = $5 AND m.domain_id IN ({}) \
         ORDER BY m.container_id",
        placeholders(6, domain_ids.len())
    );
    let mut query = sqlx::query_as::<_, (i64, i64)>(&sql)
        .bind(customer_id)
        .bind(DomainMetric::Hits.as_str())
        .bind(day.year)
        .bind(day.month)
        .bind(day.day);
    for id in domain_ids {
        query = query.bind(*id);
    }
    for (domain_id, container_id) in query.fetch_all(conn).await? {
        out.entry(domain_id).or_default().push(container_id);
    }
    Ok(out)
}
