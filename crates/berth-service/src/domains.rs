//! Domains of a customer: listing, the DNS-checked add, note/tags, delete, and which of the
//! customer's containers served them today (spec §4.4, §4.10–§4.12, Q11 fixed).

use std::collections::HashMap;

use berth_model::{validate, Container, Domain, Tagged};
use berth_store::{containers, domains, tags};

use crate::metrics::today_utc;
use crate::{Caller, Error, Result, Service};

/// Changes to a domain; `None` leaves a field as it is. `note: Some(None)` clears it;
/// `tags` replaces the set (names of the customer's tags, unknown names dropped).
#[derive(Debug, Default, Clone)]
pub struct DomainChange {
    pub note: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
}

/// One page of domains and whether more follow.
#[derive(Debug, Clone)]
pub struct DomainPage {
    pub domains: Vec<Domain>,
    pub has_next: bool,
}

impl Service {
    /// The customer's domains in id order after `after`, carrying any of `tags` when given.
    pub async fn domains(
        &self,
        caller: &Caller,
        tags: &[String],
        first: Option<i64>,
        after: Option<i64>,
    ) -> Result<DomainPage> {
        let limit = crate::containers::page_size(first)? as i64;
        validate::filter_texts("tags", tags.iter().map(String::as_str))?;
        let mut conn = self.store.read().await?;
        let mut rows = domains::page(&mut conn, caller.customer_id, tags, after, limit + 1).await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(DomainPage { domains: rows, has_next })
    }

    pub async fn domain(&self, caller: &Caller, id: i64) -> Result<Domain> {
        let mut conn = self.store.read().await?;
        domains::owned(&mut conn, caller.customer_id, id).await?.ok_or(Error::NotFound("domain"))
    }

    /// Adds a domain after proving DNS ownership: a TXT record `uwsgi:<customer uuid>` on
    /// the name or a parent (spec §6.6). A name held by anyone is a conflict; a failed check
    /// is forbidden. The DNS check runs before the write transaction opens, so a slow
    /// resolver never holds the writer lock.
    pub async fn add_domain(&self, caller: &Caller, name: &str) -> Result<Domain> {
        validate::name("name", name)?;
        let uuid = {
            let mut conn = self.store.read().await?;
            if domains::name_taken(&mut conn, name).await? {
                return Err(Error::conflict("a domain with this name already exists"));
            }
            let me = berth_store::accounts::customer(&mut conn, caller.customer_id).await?;
            me.ok_or(Error::Unauthenticated)?.uuid
        };
        let needle = format!("uwsgi:{uuid}");
        if !self.domain_ownership.txt_contains(name, &needle).await? {
            return Err(Error::forbidden(format!("no DNS TXT record {needle:?} found on {name} or its parent names")));
        }
        let mut tx = self.store.write().await?;
        // A concurrent add of the same name fails on the unique index: a conflict.
        let domain = domains::insert(&mut tx, caller.customer_id, name).await?;
        tx.commit().await?;
        Ok(domain)
    }

    pub async fn update_domain(&self, caller: &Caller, id: i64, change: DomainChange) -> Result<Domain> {
        if let Some(note) = &change.note {
            validate::note(note.as_deref())?;
        }
        if let Some(names) = &change.tags {
            validate::tag_names(names)?;
        }
        let mut tx = self.store.write().await?;
        domains::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("domain"))?;
        if let Some(note) = &change.note {
            domains::set_note(&mut tx, id, note.as_deref()).await?;
        }
        if let Some(names) = &change.tags {
            let ids = tags::ids_by_names(&mut tx, caller.customer_id, names).await?;
            tags::set(&mut tx, Tagged::Domain, id, &ids).await?;
            domains::touch(&mut tx, id).await?;
        }
        let updated = domains::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("domain"))?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes one of the customer's domains with its tags and metric rows.
    pub async fn delete_domain(&self, caller: &Caller, id: i64) -> Result<Domain> {
        let mut tx = self.store.write().await?;
        let domain = domains::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("domain"))?;
        domains::delete(&mut tx, domain.id).await?;
        tx.commit().await?;
        Ok(domain)
    }

    pub async fn delete_domain_by_name(&self, caller: &Caller, name: &str) -> Result<Domain> {
        if !validate::may_be_stored(name) {
            return Err(Error::NotFound("domain"));
        }
        let mut tx = self.store.write().await?;
        let domain =
            domains::owned_by_name(&mut tx, caller.customer_id, name).await?.ok_or(Error::NotFound("domain"))?;
        domains::delete(&mut tx, domain.id).await?;
        tx.commit().await?;
        Ok(domain)
    }

    /// Tag names of the customer's domains among `ids` (DataLoader batch, one statement).
    pub async fn domain_tags(&self, caller: &Caller, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
        let mut conn = self.store.read().await?;
        Ok(domains::tag_names(&mut conn, caller.customer_id, ids).await?)
    }

    /// For each of `container_ids`, the caller's domains it served today (UTC), i.e. with a
    /// `hits` row for today; containers and domains of other customers never appear (Q11
    /// fixed). One SQL statement for the whole batch.
    pub async fn domains_served_today(
        &self,
        caller: &Caller,
        container_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<Domain>>> {
        let mut conn = self.store.reads().await?;
        Ok(domains::served_by_containers(&mut conn, caller.customer_id, container_ids, today_utc()).await?)
    }

    /// For each of `domain_ids`, the caller's containers that served it today (UTC).
    pub async fn containers_serving_today(
        &self,
        caller: &Caller,
        domain_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<Container>>> {
        let mut conn = self.store.read().await?;
        let serving = domains::serving_containers(&mut conn, caller.customer_id, domain_ids, today_utc()).await?;
        let mut ids: Vec<i64> = serving.values().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let by_id: HashMap<i64, Container> = containers::many(&mut conn, &ids)
            .await?
            .into_iter()
            .filter(|c| c.customer_id == caller.customer_id)
            .map(|c| (c.id, c))
            .collect();
        Ok(serving
            .into_iter()
            .map(|(domain, ids)| (domain, ids.iter().filter_map(|id| by_id.get(id).cloned()).collect()))
            .collect())
    }

    /// The containers serving one of the caller's domains today (spec §4.12).
    pub async fn domain_containers(&self, caller: &Caller, domain_id: i64) -> Result<Vec<Container>> {
        self.domain(caller, domain_id).await?;
        Ok(self.containers_serving_today(caller, &[domain_id]).await?.remove(&domain_id).unwrap_or_default())
    }

    /// The caller's domains served today by one of the caller's containers (spec §4.4).
    pub async fn container_domains(&self, caller: &Caller, uid: i64) -> Result<Vec<Domain>> {
        let id = berth_model::id_of_uid(uid).ok_or(Error::NotFound("container"))?;
        {
            let mut conn = self.store.read().await?;
            containers::owned(&mut conn, caller.customer_id, id).await?.ok_or(Error::NotFound("container"))?;
        }
        Ok(self.domains_served_today(caller, &[id]).await?.remove(&id).unwrap_or_default())
    }
}
