//! What a customer's reads depend on besides their own arguments, as one comparable value:
//! an answer computed after a [`ReadStamp`] was taken is still right while a new stamp is
//! equal to it.

use berth_model::{DataVersion, Day};
use berth_store::versions;

use crate::metrics::today_utc;
use crate::{Caller, Result, Service};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStamp {
    /// Moves with every committed change of a row the customer can read (any process).
    pub data: DataVersion,
    /// The UTC day: metrics default to today's series, and a container's domains are the
    /// ones it served today.
    pub day: Day,
}

impl Service {
    /// The caller's stamp now: one point read.
    pub async fn read_stamp(&self, caller: &Caller) -> Result<ReadStamp> {
        let day = today_utc();
        let mut conn = self.store.reads().await?;
        let data = versions::data_version(&mut conn, caller.customer_id).await?;
        Ok(ReadStamp { data, day })
    }
}
