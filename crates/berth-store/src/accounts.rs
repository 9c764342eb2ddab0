//! Customers, their login material and their API tokens.

use berth_model::{ApiToken, Credentials, Customer};
use sqlx::{AnyConnection, FromRow};

use crate::fetch::{Arg, Fetch};
use crate::{flags, new_uuid, unix_now, StoreResult};

#[derive(FromRow, serde::Deserialize)]
struct CustomerRow {
    id: i64,
    username: String,
    email: String,
    company: Option<String>,
    vat: Option<String>,
    uuid: String,
    active: i64,
    created_at: i64,
}

impl From<CustomerRow> for Customer {
    fn from(r: CustomerRow) -> Self {
        Customer {
            id: r.id,
            username: r.username,
            email: r.email,
            company: r.company,
            vat: r.vat,
            uuid: r.uuid,
            active: flags::from_db(r.active),
            created_at: r.created_at,
        }
    }
}

const CUSTOMER_COLUMNS: &str = "id, username, email, company, vat, uuid, active, created_at";

pub struct NewCustomer<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub email: &'a str,
    pub company: Option<&'a str>,
    pub vat: Option<&'a str>,
}

pub async fn insert_customer(conn: &mut AnyConnection, new: &NewCustomer<'_>) -> StoreResult<Customer> {
    let now = unix_now();
    let row: CustomerRow = sqlx::query_as(&format!(
        "INSERT INTO customers (username, password_hash, email, company, vat, uuid, active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) RETURNING {CUSTOMER_COLUMNS}"
    ))
    .bind(new.username)
    .bind(new.password_hash)
    .bind(new.email)
    .bind(new.company)
    .bind(new.vat)
    .bind(new_uuid())
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub async fn customer(conn: &mut impl Fetch, id: i64) -> StoreResult<Option<Customer>> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1");
    let row: Option<CustomerRow> = conn.fetch_optional(&sql, &[Arg::Int(id)]).await?;
    Ok(row.map(Into::into))
}

pub async fn customer_by_username(conn: &mut AnyConnection, username: &str) -> StoreResult<Option<Customer>> {
    let row: Option<CustomerRow> =
        sqlx::query_as(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE username = $1"))
            .bind(username)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Into::into))
}

pub async fn credentials(conn: &mut AnyConnection, username: &str) -> StoreResult<Option<Credentials>> {
    let row: Option<(i64, String, i64)> =
        sqlx::query_as("SELECT id, password_hash, active FROM customers WHERE username = $1")
            .bind(username)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(customer_id, password_hash, active)| Credentials {
        customer_id,
        password_hash,
        active: flags::from_db(active),
    }))
}

/// Replaces the profile fields a customer may change.
pub async fn update_profile(
    conn: &mut AnyConnection,
    id: i64,
    email: &str,
    company: Option<&str>,
    vat: Option<&str>,
) -> StoreResult<()> {
    sqlx::query("UPDATE customers SET email = $2, company = $3, vat = $4, updated_at = $5 WHERE id = $1")
        .bind(id)
        .bind(email)
        .bind(company)
        .bind(vat)
        .bind(unix_now())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_password_hash(conn: &mut AnyConnection, id: i64, password_hash: &str) -> StoreResult<()> {
    sqlx::query("UPDATE customers SET password_hash = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(password_hash)
        .bind(unix_now())
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(FromRow)]
struct TokenRow {
    id: i64,
    customer_id: i64,
    name: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: r.id,
            customer_id: r.customer_id,
            name: r.name,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

pub async fn insert_token(
    conn: &mut AnyConnection,
    customer_id: i64,
    name: &str,
    secret_hash: &str,
) -> StoreResult<ApiToken> {
    let row: TokenRow = sqlx::query_as(
        "INSERT INTO api_tokens (customer_id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4) \
         RETURNING id, customer_id, name, created_at, last_used_at",
    )
    .bind(customer_id)
    .bind(name)
    .bind(secret_hash)
    .bind(unix_now())
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub async fn tokens_of(conn: &mut AnyConnection, customer_id: i64) -> StoreResult<Vec<ApiToken>> {
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, customer_id, name, created_at, last_used_at FROM api_tokens \
         WHERE customer_id = $1 ORDER BY id",
    )
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The stored hash of a token's secret and its owner, for verification.
pub async fn token_secret(conn: &mut AnyConnection, token_id: i64) -> StoreResult<Option<(i64, String)>> {
    Ok(sqlx::query_as("SELECT customer_id, secret_hash FROM api_tokens WHERE id = $1")
        .bind(token_id)
        .fetch_optional(conn)
        .await?)
}

pub async fn touch_token(conn: &mut AnyConnection, token_id: i64) -> StoreResult<()> {
    sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
        .bind(token_id)
        .bind(unix_now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes one of the customer's tokens; `false` when it has no such token.
pub async fn delete_token(conn: &mut AnyConnection, customer_id: i64, token_id: i64) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND customer_id = $2")
        .bind(token_id)
        .bind(customer_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
