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
    shared: i64,
    customer: i64,
}

/// The versions a customer's reads stand at. A scope never written yet is at 0.
pub async fn data_version(conn: &mut impl Fetch, customer_id: i64) -> StoreResult<DataVersion> {
    let sql = "SELECT COALESCE(MAX(CASE WHEN scope = $1 THEN version END), 0) AS shared, \
               COALESCE(MAX(CASE WHEN scope = $2 THEN version END), 0) AS customer \
               FROM data_versions WHERE scope IN ($1, $2)";
    let row: Option<VersionRow> = conn.fetch_optional(sql, &[Arg::Int(SHARED), Arg::Int(customer_id)]).await?;
    Ok(row.map_or(DataVersion { shared: 0, customer: 0 }, |r| DataVersion { shared: r.shared, customer: r.customer }))
}
