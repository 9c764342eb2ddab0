//! Data versions (`data_versions`, moved only by the triggers of migration 0007): one number
//! per customer and one shared by every customer, each moving with every committed change
//! of the rows it covers.

use berth_model::DataVersion;

use crate::fetch::{Arg, Fetch};
use crate::StoreResult;

/// The scope of what every customer reads; customer ids start at 1.
const SHARED: i64 = 0;

#[derive(sqlx::FromRow, serde::Deserialize)]
struct VersionRow {
    scope: i64,
    version: i64,
}

/// The versions a customer's reads stand at. A scope never written yet is at 0.
pub async fn data_version(conn: &mut impl Fetch, customer_id: i64) -> StoreResult<DataVersion> {
    let sql = "SELECT scope, version FROM data_versions WHERE scope IN ($1, $2)";
    let rows: Vec<VersionRow> = conn.fetch_all(sql, &[Arg::Int(SHARED), Arg::Int(customer_id)]).await?;
    let of = |scope: i64| rows.iter().find(|r| r.scope == scope).map_or(0, |r| r.version);
    Ok(DataVersion { shared: of(SHARED), customer: of(customer_id) })
}
