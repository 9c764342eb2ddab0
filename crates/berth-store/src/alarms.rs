//! Alarms of containers: stored, filtered, paged and pruned to each container's
//! `max_alarms`.

use berth_model::Alarm;
use sqlx::{AnyConnection, FromRow};

use crate::fetch::{Arg, Fetch};
use crate::StoreResult;

#[derive(FromRow, serde::Deserialize)]
struct AlarmRow {
    id: i64,
    container_id: i64,
    unix: i64,
    level: i64,
    color: String,
    msg: String,
    line: Option<i64>,
    func: Option<String>,
    filename: Option<String>,
    class: Option<String>,
    vassal: Option<String>,
}

impl From<AlarmRow> for Alarm {
    fn from(r: AlarmRow) -> Self {
        Alarm {
            id: r.id,
            container_id: r.container_id,
            unix: r.unix,
            level: r.level,
            color: r.color,
            msg: r.msg,
            line: r.line,
            func: r.func,
            filename: r.filename,
            class: r.class,
            vassal: r.vassal,
        }
    }
}

const A_COLUMNS: &str = "a.id, a.container_id, a.unix, a.level, a.color, a.msg, a.line, a.func, a.filename, \
    a.class, a.vassal";

/// An alarm to store; the caller has validated every field.
#[derive(Debug, Clone)]
pub struct NewAlarm<'a> {
    pub container_id: i64,
    pub unix: i64,
    pub level: i64,
    pub color: &'a str,
    pub msg: &'a str,
    pub line: Option<i64>,
    pub func: Option<&'a str>,
    pub filename: Option<&'a str>,
    pub class: Option<&'a str>,
    pub vassal: Option<&'a str>,
}

pub async fn insert(conn: &mut AnyConnection, new: &NewAlarm<'_>) -> StoreResult<Alarm> {
    let row: AlarmRow = sqlx::query_as(
        "INSERT INTO alarms (container_id, unix, level, color, msg, line, func, filename, class, vassal) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         RETURNING id, container_id, unix, level, color, msg, line, func, filename, class, vassal",
    )
    .bind(new.container_id)
    .bind(new.unix)
    .bind(new.level)
    .bind(new.color)
    .bind(new.msg)
    .bind(new.line)
    .bind(new.func)
    .bind(new.filename)
    .bind(new.class)
    .bind(new.vassal)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Deletes the oldest alarms (smallest `unix`, then smallest id) of a container until fewer
/// than `max_alarms` remain, making room for one more. Returns how many were deleted.
pub async fn prune_for_insert(conn: &mut AnyConnection, container_id: i64, max_alarms: i64) -> StoreResult<u64> {
    let (count,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM alarms WHERE container_id = $1")
        .bind(container_id)
        .fetch_one(&mut *conn)
        .await?;
    let excess = count - max_alarms.max(1) + 1;
    if excess <= 0 {
        return Ok(0);
    }
    let done = sqlx::query(
        "DELETE FROM alarms WHERE id IN (SELECT id FROM alarms WHERE container_id = $1 \
         ORDER BY unix ASC, id ASC LIMIT $2)",
    )
    .bind(container_id)
    .bind(excess)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The alarm `id` if its container belongs to `customer_id`.
pub async fn owned(conn: &mut AnyConnection, customer_id: i64, id: i64) -> StoreResult<Option<Alarm>> {
    let row: Option<AlarmRow> = sqlx::query_as(&format!(
        "SELECT {A_COLUMNS} FROM alarms a JOIN containers c ON c.id = a.container_id \
         WHERE a.id = $1 AND c.customer_id = $2"
    ))
    .bind(id)
    .bind(customer_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

pub async fn delete(conn: &mut AnyConnection, id: i64) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM alarms WHERE id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// Exact-match filters over one customer's alarms, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AlarmQuery {
    pub customer_id: i64,
    pub container_id: Option<i64>,
    pub level: Option<i64>,
    pub line: Option<i64>,
    pub class: Option<String>,
    pub vassal: Option<String>,
    pub color: Option<String>,
    pub filename: Option<String>,
    pub func: Option<String>,
}

/// Where a listing starts and how it is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Newest first (`unix` desc, id desc), skipping `offset`, at most `limit` rows.
    NewestFirst { offset: i64, limit: i64 },
    /// Oldest first (`unix` asc, id asc), skipping `offset`, at most `limit` rows.
    OldestFirst { offset: i64, limit: i64 },
    /// Newest first, strictly after the alarm at (`unix`, `id`) in that order (keyset).
    NewestAfter { unix: i64, id: i64, limit: i64 },
}

/// `FROM … WHERE …` of a filtered listing and its arguments, numbered from `$1`.
fn filtered<'a>(q: &'a AlarmQuery) -> (String, Vec<Arg<'a>>) {
    let mut sql = String::from("FROM alarms a JOIN containers c ON c.id = a.container_id WHERE c.customer_id = $1");
    let mut args = vec![Arg::Int(q.customer_id)];
    let mut add = |sql: &mut String, column: &str, arg: Arg<'a>| {
        args.push(arg);
        sql.push_str(&format!(" AND a.{column} = ${}", args.len()));
    };
    if let Some(v) = q.container_id {
        add(&mut sql, "container_id", Arg::Int(v));
    }
    if let Some(v) = q.level {
        add(&mut sql, "level", Arg::Int(v));
    }
    if let Some(v) = q.line {
        add(&mut sql, "line", Arg::Int(v));
    }
    for (column, value) in
        [("class", &q.class), ("vassal", &q.vassal), ("color", &q.color), ("filename", &q.filename), ("func", &q.func)]
    {
        if let Some(v) = value {
            add(&mut sql, column, Arg::Text(v));
        }
    }
    (sql, args)
}

/// How many alarms match the filters.
pub async fn count(conn: &mut impl Fetch, q: &AlarmQuery) -> StoreResult<i64> {
    let (from, args) = filtered(q);
    let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) {from}");
    let row: Option<(i64,)> = conn.fetch_optional(&sql, &args).await?;
    Ok(row.map_or(0, |(n,)| n))
}

/// The matching alarms in the window's order.
pub async fn list(conn: &mut impl Fetch, q: &AlarmQuery, window: Window) -> StoreResult<Vec<Alarm>> {
    let (from, mut args) = filtered(q);
    let mut sql = format!("SELECT {A_COLUMNS} {from}");
    let next = |args: &Vec<Arg>| args.len() + 1;
    match window {
        Window::NewestFirst { offset, limit } => {
            let n = next(&args);
            sql.push_str(&format!(" ORDER BY a.unix DESC, a.id DESC LIMIT ${n} OFFSET ${}", n + 1));
            args.push(Arg::Int(limit));
            args.push(Arg::Int(offset));
        }
        Window::OldestFirst { offset, limit } => {
            let n = next(&args);
            sql.push_str(&format!(" ORDER BY a.unix ASC, a.id ASC LIMIT ${n} OFFSET ${}", n + 1));
            args.push(Arg::Int(limit));
            args.push(Arg::Int(offset));
        }
        Window::NewestAfter { unix, id, limit } => {
            let n = next(&args);
            sql.push_str(&format!(
                " AND (a.unix < ${n} OR (a.unix = ${n} AND a.id < ${})) ORDER BY a.unix DESC, a.id DESC LIMIT ${}",
                n + 1,
                n + 2
            ));
            args.push(Arg::Int(unix));
            args.push(Arg::Int(id));
            args.push(Arg::Int(limit));
        }
    }
    let rows: Vec<AlarmRow> = conn.fetch_all(&sql, &args).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Stores a fresh alarm key on a container (the caller generated it).
pub async fn set_alarm_key(conn: &mut AnyConnection, container_id: i64, key: &str) -> StoreResult<()> {
    sqlx::query("UPDATE containers SET alarm_key = $2 WHERE id = $1")
        .bind(container_id)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// A container's owner, alarm key and whether the owner is active, for key authentication.
pub async fn alarm_key_of(
    conn: &mut AnyConnection,
    container_id: i64,
) -> StoreResult<Option<(i64, Option<String>, bool)>> {
    let row: Option<(i64, Option<String>, i64)> = sqlx::query_as(
        "SELECT c.customer_id, c.alarm_key, u.active FROM containers c JOIN customers u ON u.id = c.customer_id \
         WHERE c.id = $1",
    )
    .bind(container_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(customer, key, active)| (customer, key, crate::flags::from_db(active))))
}
