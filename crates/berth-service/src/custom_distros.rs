//! Custom distros (spec §4.8, §4.9): images kept in a customer's storage container and usable
//! by its other containers on the same server. Q14 (`.`/`..` paths), Q15 (deleting one
//! deleted its users) and Q16 (update always failed) are fixed.

use std::collections::HashMap;

use berth_model::{validate, ContainerEvent, ContainerEventKind, CustomDistro, Event};
use berth_store::{containers, custom_distros};

use crate::containers::owned_container;
use crate::{Caller, Error, Result, Service};

#[derive(Debug, Clone)]
pub struct NewCustomDistro {
    /// Uid of the storage container.
    pub container: i64,
    pub name: String,
    pub path: String,
    pub note: Option<String>,
}

/// Changes to a custom distro; `None` leaves a field alone, `note: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct CustomDistroChange {
    pub name: Option<String>,
    pub path: Option<String>,
    pub note: Option<Option<String>>,
}

fn duplicate(e: berth_store::StoreError) -> Error {
    match e {
        berth_store::StoreError::Unique => {
            Error::conflict("this container already has a custom distro with this name or path")
        }
        other => other.into(),
    }
}

impl Service {
    /// Every custom distro stored in one of the caller's containers.
    pub async fn custom_distros(&self, caller: &Caller) -> Result<Vec<CustomDistro>> {
        let mut conn = self.store.read().await?;
        Ok(custom_distros::of_customer(&mut conn, caller.customer_id).await?)
    }

    /// The custom distros the container `uid` may use: stored in another of the caller's
    /// containers on the same server.
    pub async fn custom_distros_usable_by(&self, caller: &Caller, uid: i64) -> Result<Vec<CustomDistro>> {
        let mut conn = self.store.read().await?;
        let c = owned_container(&mut conn, caller, uid).await?;
        Ok(custom_distros::usable_by(&mut conn, caller.customer_id, c.server_id, c.id).await?)
    }

    pub async fn custom_distro(&self, caller: &Caller, id: i64) -> Result<CustomDistro> {
        let mut conn = self.store.read().await?;
        custom_distros::owned(&mut conn, caller.customer_id, id).await?.ok_or(Error::NotFound("custom distro"))
    }

    /// Registers an image kept in a storage container (`custom_distros_storage` set).
    pub async fn create_custom_distro(&self, caller: &Caller, new: NewCustomDistro) -> Result<CustomDistro> {
        validate::name("name", &new.name)?;
        validate::custom_distro_path(&new.path)?;
        validate::note(new.note.as_deref())?;
        let mut tx = self.store.write().await?;
        let c = owned_container(&mut tx, caller, new.container).await?;
        if !c.custom_distros_storage {
            return Err(Error::forbidden("the container is not a custom distro storage"));
        }
        let created = custom_distros::insert(&mut tx, c.id, &new.name, &new.path, new.note.as_deref())
            .await
            .map_err(duplicate)?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_custom_distro(
        &self,
        caller: &Caller,
        id: i64,
        change: CustomDistroChange,
    ) -> Result<CustomDistro> {
        if let Some(name) = &change.name {
            validate::name("name", name)?;
        }
        if let Some(path) = &change.path {
            validate::custom_distro_path(path)?;
        }
        validate::note(change.note.as_ref().and_then(|n| n.as_deref()))?;
        let mut tx = self.store.write().await?;
        let current =
            custom_distros::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("custom distro"))?;
        let name = change.name.unwrap_or(current.name);
        let path = change.path.unwrap_or(current.path);
        let note = change.note.unwrap_or(current.note);
        custom_distros::update(&mut tx, id, &name, &path, note.as_deref()).await.map_err(duplicate)?;
        let updated = custom_distros::get(&mut tx, id).await?.ok_or(Error::NotFound("custom distro"))?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes a custom distro; containers using it lose it and restart, in the same
    /// transaction (Q15 fixed: the reference deleted them).
    pub async fn delete_custom_distro(&self, caller: &Caller, id: i64) -> Result<()> {
        let mut tx = self.store.write().await?;
        custom_distros::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("custom distro"))?;
        let restarted = containers::clear_custom_distro(&mut tx, id).await?;
        custom_distros::delete(&mut tx, id).await?;
        tx.commit().await?;
        for (container_id, customer_id, generation) in restarted {
            self.publish(Event::Container(ContainerEvent {
                customer_id,
                container_id,
                kind: ContainerEventKind::Restart,
                generation,
                state: None,
            }))
            .await;
        }
        Ok(())
    }

    /// The caller's custom distros among these ids, in one statement.
    pub async fn custom_distros_by_ids(&self, caller: &Caller, ids: &[i64]) -> Result<HashMap<i64, CustomDistro>> {
        let mut conn = self.store.read().await?;
        Ok(custom_distros::owned_many(&mut conn, caller.customer_id, ids)
            .await?
            .into_iter()
            .map(|d| (d.id, d))
            .collect())
    }
}
