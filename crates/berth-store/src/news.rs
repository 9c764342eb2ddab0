//! Operator news items.

use berth_model::News;
use sqlx::{AnyConnection, FromRow};

use crate::{flags, unix_now, StoreResult};

#[derive(FromRow)]
struct NewsRow {
    id: i64,
    content: String,
    public: i64,
    created_at: i64,
}

impl From<NewsRow> for News {
    fn from(r: NewsRow) -> Self {
        News { id: r.id, content: r.content, public: flags::from_db(r.public), created_at: r.created_at }
    }
}

pub async fn insert(conn: &mut AnyConnection, content: &str, public: bool) -> StoreResult<News> {
    let row: NewsRow = sqlx::query_as(
        "INSERT INTO news (content, public, created_at) VALUES ($1, $2, $3) \
         RETURNING id, content, public, created_at",
    )
    .bind(content)
    .bind(flags::to_db(public))
    .bind(unix_now())
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// The most recent `limit` items, newest first; only public ones unless `include_private`.
pub async fn latest(conn: &mut AnyConnection, include_private: bool, limit: i64) -> StoreResult<Vec<News>> {
    let rows: Vec<NewsRow> = sqlx::query_as(
        "SELECT id, content, public, created_at FROM news WHERE public = 1 OR $1 = 1 \
         ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(flags::to_db(include_private))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
