//! Loopboxes (spec §4.16, §4.17): created with enforced path rules (Q19 fixed), otherwise
//! immutable except for their tags.

use std::collections::HashMap;

use berth_model::{validate, Loopbox, Tagged};
use berth_store::{loopboxes, tags};

use crate::containers::{into_page, owned_container, page_size, Page};
use crate::{Caller, Error, Result, Service};

#[derive(Debug, Clone)]
pub struct NewLoopbox {
    /// Uid of the caller's container.
    pub container: i64,
    pub filename: String,
    pub mountpoint: String,
    pub ro: bool,
}

impl Service {
    /// A page of the caller's loopboxes in id order, optionally of one container (which must
    /// be the caller's) and/or carrying one of `tags`.
    pub async fn loopboxes_page(
        &self,
        caller: &Caller,
        container_uid: Option<i64>,
        tags: &[String],
        after: Option<i64>,
        first: Option<i64>,
    ) -> Result<Page<Loopbox>> {
        let size = page_size(first)?;
        validate::filter_texts("tags", tags.iter().map(String::as_str))?;
        let mut conn = self.store.read().await?;
        let container_id = match container_uid {
            Some(uid) => Some(owned_container(&mut conn, caller, uid).await?.id),
            None => None,
        };
        let rows = loopboxes::page_of_customer(
            &mut conn,
            caller.customer_id,
            container_id,
            after.filter(|a| *a > 0),
            size as i64 + 1,
            tags,
        )
        .await?;
        Ok(into_page(rows, size))
    }

    pub async fn loopbox(&self, caller: &Caller, id: i64) -> Result<Loopbox> {
        let mut conn = self.store.read().await?;
        loopboxes::owned(&mut conn, caller.customer_id, id).await?.ok_or(Error::NotFound("loopbox"))
    }

    /// Creates a loopbox in one of the caller's containers. Paths that could escape the home
    /// or cover a platform directory are bad input; a filename or mountpoint already used in
    /// that container is a conflict.
    pub async fn create_loopbox(&self, caller: &Caller, new: NewLoopbox) -> Result<Loopbox> {
        validate::loopbox_filename(&new.filename)?;
        validate::loopbox_mountpoint(&new.mountpoint)?;
        let mut tx = self.store.write().await?;
        let container = owned_container(&mut tx, caller, new.container).await?;
        let created = loopboxes::insert(&mut tx, container.id, &new.filename, &new.mountpoint, new.ro).await.map_err(
            |e| match e {
                berth_store::StoreError::Unique => {
                    Error::conflict("this container already has a loopbox with this filename or mountpoint")
                }
                other => other.into(),
            },
        )?;
        tx.commit().await?;
        Ok(created)
    }

    /// Replaces a loopbox's tags (unknown names dropped); every other field is immutable.
    pub async fn set_loopbox_tags(&self, caller: &Caller, id: i64, names: &[String]) -> Result<Loopbox> {
        validate::tag_names(names)?;
        let mut tx = self.store.write().await?;
        let b = loopboxes::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("loopbox"))?;
        let ids = tags::ids_by_names(&mut tx, caller.customer_id, names).await?;
        tags::set(&mut tx, Tagged::Loopbox, b.id, &ids).await?;
        tx.commit().await?;
        Ok(b)
    }

    /// Deletes the record; the platform unmounts it, the image file stays.
    pub async fn delete_loopbox(&self, caller: &Caller, id: i64) -> Result<()> {
        let mut tx = self.store.write().await?;
        loopboxes::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("loopbox"))?;
        loopboxes::delete(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Tag names of the caller's loopboxes, in one statement.
    pub async fn tags_of_loopboxes(&self, caller: &Caller, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
        let mut conn = self.store.reads().await?;
        Ok(tags::owned_names_of(&mut conn, Tagged::Loopbox, caller.customer_id, ids).await?)
    }
}
