//! Tags of a customer and their attachment to containers, domains, loopboxes and custom
//! distros. Tags are referenced by name in every API; ids stay internal.

use std::collections::HashMap;

use berth_model::{Tag, Tagged};
use sqlx::{AnyConnection, FromRow};

use crate::fetch::{with_ids, Arg, Fetch};
use crate::{placeholders, unix_now, StoreResult};

#[derive(FromRow)]
struct TagRow {
    id: i64,
    customer_id: i64,
    name: String,
    note: Option<String>,
}

impl From<TagRow> for Tag {
    fn from(r: TagRow) -> Self {
        Tag { id: r.id, customer_id: r.customer_id, name: r.name, note: r.note }
    }
}

/// The join table and its object column for each taggable kind.
fn join_table(kind: Tagged) -> (&'static str, &'static str) {
    match kind {
        Tagged::Container => ("container_tags", "container_id"),
        Tagged::Domain => ("domain_tags", "domain_id"),
        Tagged::Loopbox => ("loopbox_tags", "loopbox_id"),
        Tagged::CustomDistro => ("custom_distro_tags", "custom_distro_id"),
    }
}

pub async fn insert(conn: &mut AnyConnection, customer_id: i64, name: &str, note: Option<&str>) -> StoreResult<Tag> {
    let now = unix_now();
    let row: TagRow = sqlx::query_as(
        "INSERT INTO tags (customer_id, name, note, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
         RETURNING id, customer_id, name, note",
    )
    .bind(customer_id)
    .bind(name)
    .bind(note)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub async fn of_customer(conn: &mut AnyConnection, customer_id: i64) -> StoreResult<Vec<Tag>> {
    let rows: Vec<TagRow> =
        sqlx::query_as("SELECT id, customer_id, name, note FROM tags WHERE customer_id = $1 ORDER BY id")
            .bind(customer_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The tag `id` if it belongs to `customer_id`.
pub async fn owned(conn: &mut AnyConnection, customer_id: i64, id: i64) -> StoreResult<Option<Tag>> {
    let row: Option<TagRow> =
        sqlx::query_as("SELECT id, customer_id, name, note FROM tags WHERE id = $1 AND customer_id = $2")
            .bind(id)
            .bind(customer_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Into::into))
}

pub async fn update(conn: &mut AnyConnection, id: i64, name: &str, note: Option<&str>) -> StoreResult<()> {
    sqlx::query("UPDATE tags SET name = $2, note = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(name)
        .bind(note)
        .bind(unix_now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a tag; its attachments go with it (ON DELETE CASCADE).
pub async fn delete(conn: &mut AnyConnection, id: i64) -> StoreResult<()> {
    sqlx::query("DELETE FROM tags WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Ids of the customer's tags with these names, in the order given, unknown names dropped
/// (the reference ignores them) and duplicates removed.
pub async fn ids_by_names(conn: &mut AnyConnection, customer_id: i64, names: &[String]) -> StoreResult<Vec<i64>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let sql =
        format!("SELECT id, name FROM tags WHERE customer_id = $1 AND name IN ({})", placeholders(2, names.len()));
    let mut query = sqlx::query_as::<_, (i64, String)>(&sql).bind(customer_id);
    for name in names {
        query = query.bind(name.as_str());
    }
    let found: HashMap<String, i64> = query.fetch_all(conn).await?.into_iter().map(|(id, n)| (n, id)).collect();
    let mut ids = Vec::new();
    for name in names {
        if let Some(id) = found.get(name) {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
    }
    Ok(ids)
}

/// Replaces the tag set of one object.
pub async fn set(conn: &mut AnyConnection, kind: Tagged, object_id: i64, tag_ids: &[i64]) -> StoreResult<()> {
    let (table, column) = join_table(kind);
    sqlx::query(&format!("DELETE FROM {table} WHERE {column} = $1")).bind(object_id).execute(&mut *conn).await?;
    for tag_id in tag_ids {
        sqlx::query(&format!("INSERT INTO {table} ({column}, tag_id) VALUES ($1, $2)"))
            .bind(object_id)
            .bind(*tag_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Tag names of many objects of one kind in one statement, each list in tag id order.
pub async fn names_of(
    conn: &mut AnyConnection,
    kind: Tagged,
    object_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    if object_ids.is_empty() {
        return Ok(out);
    }
    let (table, column) = join_table(kind);
    let sql = format!(
        "SELECT j.{column}, t.name FROM {table} j JOIN tags t ON t.id = j.tag_id \
         WHERE j.{column} IN ({}) ORDER BY t.id",
        placeholders(1, object_ids.len())
    );
    let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
    for id in object_ids {
        query = query.bind(*id);
    }
    for (object_id, name) in query.fetch_all(conn).await? {
        out.entry(object_id).or_default().push(name);
    }
    Ok(out)
}

/// SQL condition "object carries one of the tags named $n…" for list filters, as
/// `EXISTS (…)` so an object matching two tags appears once (Q2 fixed). `object` is the
/// qualified id column of the outer query; `first` the number of the first name placeholder
/// and `customer` the placeholder holding the customer id.
pub fn has_any_tag_sql(kind: Tagged, object: &str, customer: &str, first: usize, count: usize) -> String {
    let (table, column) = join_table(kind);
    format!(
        "EXISTS (SELECT 1 FROM {table} j JOIN tags t ON t.id = j.tag_id \
         WHERE j.{column} = {object} AND t.customer_id = {customer} AND t.name IN ({}))",
        placeholders(first, count)
    )
}

/// Like [`names_of`], but only the customer's tags, so a batch keyed by object ids can never
/// show another tenant's tag names.
pub async fn owned_names_of(
    conn: &mut impl Fetch,
    kind: Tagged,
    customer_id: i64,
    object_ids: &[i64],
) -> StoreResult<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    if object_ids.is_empty() {
        return Ok(out);
    }
    let (table, column) = join_table(kind);
    // Driven by the object ids through the join table's primary key, in its order (object,
    // tag id): `+t.customer_id` keeps SQLite from starting at every tag of the customer and
    // probing each against the id list, which grew with the customer's tag count and sorted
    // the result in a temporary b-tree. PostgreSQL reads `+x` as `x`.
    let sql = format!(
        "SELECT j.{column}, t.name FROM {table} j JOIN tags t ON t.id = j.tag_id \
         WHERE +t.customer_id = $1 AND j.{column} IN ({}) ORDER BY j.{column}, j.tag_id",
        placeholders(2, object_ids.len())
    );
    let rows: Vec<(i64, String)> = conn.fetch_all(&sql, &with_ids(&[Arg::Int(customer_id)], object_ids)).await?;
    for (object_id, name) in rows {
        out.entry(object_id).or_default().push(name);
    }
    Ok(out)
}
