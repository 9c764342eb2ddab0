//! Platform distros: readable by every authenticated customer (spec §4.7).

use berth_model::Distro;
use berth_store::distros;

use crate::{Caller, Result, Service};

impl Service {
    pub async fn distros(&self, _caller: &Caller) -> Result<Vec<Distro>> {
        let mut conn = self.store.read().await?;
        Ok(distros::all(&mut conn).await?)
    }
}
