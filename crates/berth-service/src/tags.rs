//! Tags of a customer (spec §4.14, §4.15). Tags are referenced by name everywhere else.

use berth_model::{validate, Tag};
use berth_store::tags;

use crate::{Caller, Error, Result, Service};

/// Changes to a tag; `None` leaves a field alone, `note: Some(None)` clears the note.
#[derive(Debug, Clone, Default)]
pub struct TagChange {
    pub name: Option<String>,
    pub note: Option<Option<String>>,
}

impl Service {
    pub async fn tags(&self, caller: &Caller) -> Result<Vec<Tag>> {
        let mut conn = self.store.read().await?;
        Ok(tags::of_customer(&mut conn, caller.customer_id).await?)
    }

    pub async fn tag(&self, caller: &Caller, id: i64) -> Result<Tag> {
        let mut conn = self.store.read().await?;
        tags::owned(&mut conn, caller.customer_id, id).await?.ok_or(Error::NotFound("tag"))
    }

    /// Creates a tag; a name the customer already uses is a conflict. Unlike the reference
    /// (Q18) an empty name is refused: it could never be referenced.
    pub async fn create_tag(&self, caller: &Caller, name: &str, note: Option<&str>) -> Result<Tag> {
        validate::name("name", name)?;
        validate::note(note)?;
        let mut tx = self.store.write().await?;
        let tag = tags::insert(&mut tx, caller.customer_id, name, note).await.map_err(duplicate)?;
        tx.commit().await?;
        Ok(tag)
    }

    pub async fn update_tag(&self, caller: &Caller, id: i64, change: TagChange) -> Result<Tag> {
        if let Some(name) = &change.name {
            validate::name("name", name)?;
        }
        validate::note(change.note.as_ref().and_then(|n| n.as_deref()))?;
        let mut tx = self.store.write().await?;
        let current = tags::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("tag"))?;
        let name = change.name.unwrap_or(current.name);
        let note = change.note.unwrap_or(current.note);
        tags::update(&mut tx, id, &name, note.as_deref()).await.map_err(duplicate)?;
        let updated = tags::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("tag"))?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes a tag and its attachments to containers, domains and loopboxes.
    pub async fn delete_tag(&self, caller: &Caller, id: i64) -> Result<()> {
        let mut tx = self.store.write().await?;
        tags::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("tag"))?;
        tags::delete(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn duplicate(e: berth_store::StoreError) -> Error {
    match e {
        berth_store::StoreError::Unique => Error::conflict("you already have a tag with this name"),
        other => other.into(),
    }
}
