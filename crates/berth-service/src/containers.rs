//! Containers: list, create (with the overselling check), update every settable key of spec
//! §4.3 in one transaction, reboot, secret uuid; plus the batch reads the GraphQL loaders
//! use, each filtered by the caller so a batch can never show another tenant's rows.
//!
//! Quirk fixes taken from spec §8: the update is all-or-nothing (Q7); `ssh_keys` must be a
//! list (Q8); unknown `distro`/`custom_distro` and `distro: null` are conflicts while
//! `custom_distro: null` unsets (Q9); validation failures are typed errors and the
//! overselling check runs only when memory or storage change (Q10); the secret uuid really
//! regenerates (Q12); sizes must stay positive (Q30); names must not be empty (Q31).

use std::collections::HashMap;

use berth_model::{
    id_of_uid, validate, Container, ContainerEvent, ContainerEventKind, Distro, Event, Loopbox, Server, Tagged,
};
use berth_store::{containers, custom_distros, distros, links, loopboxes, servers, tags, unix_now, AnyConnection};

use crate::{Caller, Error, Result, Service};

/// Largest page a list returns.
pub const MAX_PAGE: usize = 100;
/// Page size when the client names none.
pub const DEFAULT_PAGE: usize = 20;

/// One page of a list in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

/// Checks a requested page size: `None` is the default, 0..=MAX_PAGE is accepted.
pub fn page_size(first: Option<i64>) -> Result<usize> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (0..=MAX_PAGE as i64).contains(&n) => Ok(n as usize),
        Some(_) => Err(Error::bad_input("first", format!("must be between 0 and {MAX_PAGE}"))),
    }
}

/// Splits a `limit + 1` fetch into a page and "is there more".
pub(crate) fn into_page<T>(mut rows: Vec<T>, size: usize) -> Page<T> {
    let has_next = rows.len() > size;
    rows.truncate(size);
    Page { items: rows, has_next }
}

/// What to create: `server` is the server's address (as the REST API takes it) or its name.
#[derive(Debug, Clone)]
pub struct NewContainer {
    pub server: String,
    pub name: String,
    pub memory: i64,
    pub storage: i64,
}

/// Changes to a container. `None` leaves a field alone; for nullable fields `Some(None)`
/// clears it.
#[derive(Debug, Clone, Default)]
pub struct ContainerChange {
    pub name: Option<String>,
    pub note: Option<Option<String>>,
    pub quota_threshold: Option<i64>,
    pub jid: Option<Option<String>>,
    pub jid_secret: Option<Option<String>>,
    pub jid_destinations: Option<Option<String>>,
    pub nofollow: Option<bool>,
    pub pushover_user: Option<Option<String>>,
    pub pushover_token: Option<Option<String>>,
    pub pushover_sound: Option<Option<String>>,
    pub alarm_freq: Option<i64>,
    pub pushbullet_token: Option<Option<String>>,
    pub slack_webhook: Option<Option<String>>,
    /// Berth's signed alarm webhook (not in the reference; no restart).
    pub webhook_url: Option<Option<String>>,
    pub custom_distros_storage: Option<bool>,
    pub ssh_keys: Option<Vec<String>>,
    /// `Some(None)` is refused: a distro cannot be unset (Q9).
    pub distro: Option<Option<i64>>,
    pub custom_distro: Option<Option<i64>>,
    pub memory: Option<i64>,
    pub storage: Option<i64>,
    /// What a new memory or storage does on a server the caller does not own.
    pub sizes_elsewhere: SizesElsewhere,
    /// Replaces the tag set; unknown names are dropped.
    pub tags: Option<Vec<String>>,
    /// Uid of a container (any customer's) to add an outgoing link to.
    pub link: Option<i64>,
    /// Uid of a container to remove the outgoing link to.
    pub unlink: Option<i64>,
    /// `true` requests a restart.
    pub reboot: bool,
}

/// Memory and storage are the server owner's to change. What a different value asked on a
/// server the caller does not own does depends on the API's contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SizesElsewhere {
    /// `Forbidden`: a mistake is reported, not hidden (GraphQL).
    #[default]
    Refused,
    /// Left as they are while the rest of the change applies: the reference API's
    /// behaviour (spec §4.3 step 5), which its clients rely on when they post back a
    /// whole container.
    Ignored,
}

/// Whether two rows differ in a field whose change must restart the container (spec §4.3
/// step 12). Note, tags and ssh keys are not among them.
fn needs_restart(old: &Container, new: &Container) -> bool {
    old.name != new.name
        || old.distro_id != new.distro_id
        || old.memory != new.memory
        || old.storage != new.storage
        || old.alarm_freq != new.alarm_freq
        || old.jid != new.jid
        || old.jid_secret != new.jid_secret
        || old.jid_destinations != new.jid_destinations
        || old.pushover_user != new.pushover_user
        || old.pushover_token != new.pushover_token
        || old.pushover_sound != new.pushover_sound
        || old.pushbullet_token != new.pushbullet_token
        || old.slack_webhook != new.slack_webhook
        || old.quota_threshold != new.quota_threshold
        || old.custom_distros_storage != new.custom_distros_storage
        || old.custom_distro_id != new.custom_distro_id
        || old.nofollow != new.nofollow
}

fn check_text(field: &str, value: &Option<Option<String>>) -> Result<()> {
    validate::optional_text(field, value.as_ref().and_then(|v| v.as_deref()))
}

/// Validates everything that needs no database, before a transaction is opened.
fn validate_change(change: &ContainerChange) -> Result<()> {
    if let Some(name) = &change.name {
        validate::name("name", name)?;
    }
    validate::note(change.note.as_ref().and_then(|n| n.as_deref()))?;
    if let Some(q) = change.quota_threshold {
        validate::quota_threshold(q)?;
    }
    if let Some(f) = change.alarm_freq {
        validate::alarm_freq(f)?;
    }
    check_text("jid", &change.jid)?;
    check_text("jid_secret", &change.jid_secret)?;
    check_text("jid_destinations", &change.jid_destinations)?;
    check_text("pushover_user", &change.pushover_user)?;
    check_text("pushover_token", &change.pushover_token)?;
    check_text("pushover_sound", &change.pushover_sound)?;
    check_text("pushbullet_token", &change.pushbullet_token)?;
    check_text("slack_webhook", &change.slack_webhook)?;
    check_text("webhook_url", &change.webhook_url)?;
    if let Some(keys) = &change.ssh_keys {
        validate::ssh_keys(keys)?;
    }
    if let Some(m) = change.memory {
        validate::megabytes("memory", m)?;
    }
    if let Some(s) = change.storage {
        validate::megabytes("storage", s)?;
    }
    if let Some(tags) = &change.tags {
        validate::tag_names(tags)?;
    }
    Ok(())
}

/// Memory and storage still free on a server for a container asking for `memory`/`storage`
/// (its own current size excluded). Storage is checked first, as the reference does on
/// update; equal to the free amount is allowed.
async fn check_capacity(
    conn: &mut AnyConnection,
    server: &Server,
    except: Option<i64>,
    memory: i64,
    storage: i64,
    storage_first: bool,
) -> Result<()> {
    containers::lock_server(conn, server.id).await?;
    let (used_memory, used_storage) = servers::used_capacity(conn, server.id, except).await?;
    let memory_ok = memory <= server.memory - used_memory;
    let storage_ok = storage <= server.storage - used_storage;
    let order = if storage_first { [false, true] } else { [true, false] };
    for is_memory in order {
        if is_memory && !memory_ok {
            return Err(Error::conflict("not enough memory"));
        }
        if !is_memory && !storage_ok {
            return Err(Error::conflict("not enough storage"));
        }
    }
    Ok(())
}

/// The caller's container with this uid; foreign and unknown uids look the same.
pub(crate) async fn owned_container(conn: &mut AnyConnection, caller: &Caller, uid: i64) -> Result<Container> {
    let id = id_of_uid(uid).ok_or(Error::NotFound("container"))?;
    containers::owned(conn, caller.customer_id, id).await?.ok_or(Error::NotFound("container"))
}

/// The bus event for a committed change of `c`.
pub(crate) fn container_event(c: &Container, kind: ContainerEventKind) -> Event {
    Event::Container(ContainerEvent {
        customer_id: c.customer_id,
        container_id: c.id,
        kind,
        generation: c.generation,
        state: None,
    })
}

impl Service {
    /// A page of the caller's containers in id order after the container `after_id` (a
    /// cursor), optionally only those carrying one of
    /// `tags` (each container once).
    pub async fn containers_page(
        &self,
        caller: &Caller,
        after_id: Option<i64>,
        first: Option<i64>,
        tags: &[String],
    ) -> Result<Page<Container>> {
        let size = page_size(first)?;
        validate::filter_texts("tags", tags.iter().map(String::as_str))?;
        let after = after_id.filter(|id| *id > 0);
        let mut conn = self.store.reads().await?;
        let rows = containers::page_of_customer(&mut conn, caller.customer_id, after, size as i64 + 1, tags).await?;
        Ok(into_page(rows, size))
    }

    pub async fn container(&self, caller: &Caller, uid: i64) -> Result<Container> {
        let mut conn = self.store.read().await?;
        owned_container(&mut conn, caller, uid).await
    }

    /// Creates a container on a server the caller owns. An unknown server, or one of someone
    /// else (or of the platform): `Forbidden`, alike; not enough room: `Conflict` with
    /// reason "not enough memory" / "not enough storage".
    pub async fn create_container(&self, caller: &Caller, new: NewContainer) -> Result<Container> {
        validate::name("name", &new.name)?;
        validate::megabytes("memory", new.memory)?;
        validate::megabytes("storage", new.storage)?;
        validate::text("server", &new.server, validate::MAX_TEXT)?;
        let mut tx = self.store.write().await?;
        let server = self.resolve_server(&mut tx, caller, &new.server).await?;
        check_capacity(&mut tx, &server, None, new.memory, new.storage, false).await?;
        let created = containers::insert(
            &mut tx,
            &containers::NewContainer {
                customer_id: caller.customer_id,
                server_id: server.id,
                name: &new.name,
                memory: new.memory,
                storage: new.storage,
            },
        )
        .await?;
        tx.commit().await?;
        self.publish(container_event(&created, ContainerEventKind::Created)).await;
        Ok(created)
    }

    /// One of the caller's servers, by address (the REST form) or, failing that, by name;
    /// addresses are not unique, so among several the one the caller owns wins.
    async fn resolve_server(&self, conn: &mut AnyConnection, caller: &Caller, server: &str) -> Result<Server> {
        let mut candidates = servers::by_address(conn, server).await?;
        if candidates.is_empty() {
            candidates.extend(servers::by_name(conn, server).await?);
        }
        let mut owned: Vec<Server> =
            candidates.into_iter().filter(|s| s.owner_id == Some(caller.customer_id)).collect();
        match owned.len() {
            1 => Ok(owned.remove(0)),
            // Unknown and someone else's answer alike, so no customer can tell which
            // names and addresses exist.
            0 => Err(Error::forbidden("containers can only be created on servers you own")),
            _ => Err(Error::conflict("several of your servers have this address; use the server name")),
        }
    }

    /// Applies a change to one of the caller's containers, all or nothing. The generation
    /// moves by exactly one when a restart-relevant field changes value, a link is added or
    /// removed, or a reboot is requested.
    ///
    /// Memory and storage are the owner's to change: on a server the caller does not own, a
    /// *different* value is refused or ignored as `change.sizes_elsewhere` says; sending the
    /// current value is accepted as a no-op either way.
    pub async fn update_container(&self, caller: &Caller, uid: i64, change: ContainerChange) -> Result<Container> {
        validate_change(&change)?;
        self.check_alarm_destinations(&change)?;
        let mut tx = self.store.write().await?;
        let old = owned_container(&mut tx, caller, uid).await?;
        let mut new = old.clone();
        let now = unix_now();

        if let Some(v) = change.name {
            new.name = v;
        }
        if let Some(v) = change.note {
            new.note = v;
        }
        if let Some(v) = change.quota_threshold {
            new.quota_threshold = v;
        }
        macro_rules! set_opt {
            ($($field:ident),*) => {$(
                if let Some(v) = change.$field { new.$field = v; }
            )*};
        }
        set_opt!(
            jid,
            jid_secret,
            jid_destinations,
            pushover_user,
            pushover_token,
            pushover_sound,
            pushbullet_token,
            slack_webhook,
            webhook_url
        );
        if let Some(v) = change.nofollow {
            new.nofollow = v;
        }
        if let Some(v) = change.alarm_freq {
            new.alarm_freq = validate::alarm_freq(v)?;
        }
        if let Some(v) = change.custom_distros_storage {
            new.custom_distros_storage = v;
        }
        if let Some(keys) = &change.ssh_keys {
            // The key file is regenerated without a restart; the stamp moves even for
            // identical keys, as in the reference.
            new.ssh_keys_raw = Some(berth_model::join_ssh_keys(keys));
            new.ssh_keys_mtime = now;
        }
        match change.distro {
            None => {}
            Some(None) => return Err(Error::conflict("a distro cannot be unset")),
            Some(Some(id)) => {
                distros::get(&mut tx, id).await?.ok_or_else(|| Error::conflict("no such distro"))?;
                new.distro_id = Some(id);
            }
        }
        match change.custom_distro {
            None => {}
            Some(None) => new.custom_distro_id = None,
            Some(Some(id)) => {
                // One answer for every failure, so another tenant's distros stay invisible.
                let usable = match custom_distros::get(&mut tx, id).await? {
                    Some(d) if d.container_id != old.id => {
                        containers::get(&mut tx, d.container_id).await?.is_some_and(|store| {
                            store.customer_id == caller.customer_id && store.server_id == old.server_id
                        })
                    }
                    _ => false,
                };
                if !usable {
                    return Err(Error::conflict("no such custom distro usable by this container"));
                }
                new.custom_distro_id = Some(id);
            }
        }
        if let Some(v) = change.memory {
            new.memory = v;
        }
        if let Some(v) = change.storage {
            new.storage = v;
        }
        if new.memory != old.memory || new.storage != old.storage {
            let server = servers::get(&mut tx, old.server_id)
                .await?
                .ok_or_else(|| Error::internal("container without server"))?;
            if server.owner_id == Some(caller.customer_id) {
                check_capacity(&mut tx, &server, Some(old.id), new.memory, new.storage, true).await?;
            } else if change.sizes_elsewhere == SizesElsewhere::Ignored {
                (new.memory, new.storage) = (old.memory, old.storage);
            } else {
                return Err(Error::forbidden("memory and storage can only be changed on servers you own"));
            }
        }
        if let Some(names) = &change.tags {
            let ids = tags::ids_by_names(&mut tx, caller.customer_id, names).await?;
            tags::set(&mut tx, Tagged::Container, old.id, &ids).await?;
        }
        let mut restart = change.reboot || needs_restart(&old, &new);
        if let Some(uid) = change.link {
            let target = id_of_uid(uid).ok_or_else(|| Error::conflict("no such container to link to"))?;
            if target == old.id {
                return Err(Error::conflict("a container cannot link to itself"));
            }
            if containers::get(&mut tx, target).await?.is_none() {
                return Err(Error::conflict("no such container to link to"));
            }
            if links::exists(&mut tx, old.id, target).await? {
                return Err(Error::conflict("link already exists"));
            }
            links::insert(&mut tx, old.id, target).await?;
            restart = true;
        }
        if let Some(uid) = change.unlink {
            let removed = match id_of_uid(uid) {
                Some(target) => links::delete(&mut tx, old.id, target).await?,
                None => false,
            };
            if !removed {
                return Err(Error::conflict("no such link"));
            }
            restart = true;
        }
        if restart {
            new.generation = old.generation + 1;
            new.last_reboot = now;
        }
        containers::save(&mut tx, &new).await?;
        let saved = containers::get(&mut tx, old.id).await?.ok_or_else(|| Error::internal("container vanished"))?;
        tx.commit().await?;
        let kind = if restart { ContainerEventKind::Restart } else { ContainerEventKind::Updated };
        self.publish(container_event(&saved, kind)).await;
        Ok(saved)
    }

    /// Requests a restart of one of the caller's containers.
    pub async fn reboot_container(&self, caller: &Caller, uid: i64) -> Result<Container> {
        self.update_container(caller, uid, ContainerChange { reboot: true, ..Default::default() }).await
    }

    /// Gives the container a fresh random secret uuid (Q12 fixed).
    pub async fn regenerate_secret_uuid(&self, caller: &Caller, uid: i64) -> Result<Container> {
        let mut tx = self.store.write().await?;
        let mut c = owned_container(&mut tx, caller, uid).await?;
        c.secret_uuid = Some(berth_store::new_uuid());
        containers::save(&mut tx, &c).await?;
        let saved = containers::get(&mut tx, c.id).await?.ok_or_else(|| Error::internal("container vanished"))?;
        tx.commit().await?;
        self.publish(container_event(&saved, ContainerEventKind::Updated)).await;
        Ok(saved)
    }

    // Batch reads for DataLoaders: one statement each, keyed by container id, the caller's
    // rows only.

    /// The caller's containers among these ids.
    pub async fn containers_by_ids(&self, caller: &Caller, ids: &[i64]) -> Result<HashMap<i64, Container>> {
        let mut conn = self.store.read().await?;
        Ok(containers::owned_many(&mut conn, caller.customer_id, ids).await?.into_iter().map(|c| (c.id, c)).collect())
    }

    /// Servers by id that the caller may see (owned, or running one of its containers).
    pub async fn servers_by_ids(&self, caller: &Caller, server_ids: &[i64]) -> Result<HashMap<i64, Server>> {
        let mut conn = self.store.reads().await?;
        let servers = servers::visible_to(&mut conn, caller.customer_id, server_ids).await?;
        Ok(servers.into_iter().map(|s| (s.id, s)).collect())
    }

    /// Legion addresses of the servers of the caller's containers.
    pub async fn legion_addresses_of_containers(
        &self,
        caller: &Caller,
        container_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>> {
        let mut conn = self.store.read().await?;
        Ok(containers::legion_addresses_of(&mut conn, caller.customer_id, container_ids).await?)
    }

    /// Tag names of the caller's containers.
    pub async fn tags_of_containers(
        &self,
        caller: &Caller,
        container_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>> {
        let mut conn = self.store.reads().await?;
        Ok(tags::owned_names_of(&mut conn, Tagged::Container, caller.customer_id, container_ids).await?)
    }

    /// Uids each of the caller's containers links to (any customer's containers).
    pub async fn links_of_containers(&self, caller: &Caller, container_ids: &[i64]) -> Result<HashMap<i64, Vec<i64>>> {
        let mut conn = self.store.reads().await?;
        let map = links::targets_of(&mut conn, caller.customer_id, container_ids).await?;
        Ok(map.into_iter().map(|(k, v)| (k, v.into_iter().map(berth_model::uid_of).collect())).collect())
    }

    /// Uids of the caller's own containers that link to each container.
    pub async fn linked_from_containers(
        &self,
        caller: &Caller,
        container_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<i64>>> {
        let mut conn = self.store.read().await?;
        let map = links::own_sources_of(&mut conn, caller.customer_id, container_ids).await?;
        Ok(map.into_iter().map(|(k, v)| (k, v.into_iter().map(berth_model::uid_of).collect())).collect())
    }

    /// Loopboxes of the caller's containers with their tag names (two statements), so a
    /// nested page needs no third round of batching for the tags.
    pub async fn loopboxes_of_containers(
        &self,
        caller: &Caller,
        container_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<(Loopbox, Vec<String>)>>> {
        let mut conn = self.store.reads().await?;
        let boxes = loopboxes::of_containers(&mut conn, caller.customer_id, container_ids).await?;
        let ids: Vec<i64> = boxes.values().flatten().map(|b| b.id).collect();
        let mut names = tags::owned_names_of(&mut conn, Tagged::Loopbox, caller.customer_id, &ids).await?;
        Ok(boxes
            .into_iter()
            .map(|(cid, list)| {
                let list = list
                    .into_iter()
                    .map(|b| {
                        let t = names.remove(&b.id).unwrap_or_default();
                        (b, t)
                    })
                    .collect();
                (cid, list)
            })
            .collect())
    }

    /// Distros by id (distros are platform-wide, any customer may read them).
    pub async fn distros_by_ids(&self, _caller: &Caller, ids: &[i64]) -> Result<HashMap<i64, Distro>> {
        let mut conn = self.store.reads().await?;
        Ok(distros::many(&mut conn, ids).await?.into_iter().map(|d| (d.id, d)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_size(Some(100)).unwrap(), 100);
        assert!(page_size(Some(101)).is_err());
        assert!(page_size(Some(-1)).is_err());
        let page = into_page(vec![1, 2, 3], 2);
        assert_eq!(page, Page { items: vec![1, 2], has_next: true });
    }

    #[test]
    fn restart_fields() {
        let base = Container {
            id: 1,
            customer_id: 1,
            server_id: 1,
            name: "a".into(),
            memory: 1,
            storage: 1,
            uuid: String::new(),
            distro_id: None,
            custom_distro_id: None,
            ssh_keys_raw: None,
            jid: None,
            jid_secret: None,
            jid_destinations: None,
            pushover_user: None,
            pushover_token: None,
            pushover_sound: None,
            pushbullet_token: None,
            slack_webhook: None,
            webhook_url: None,
            quota_threshold: 90,
            alarm_freq: 60,
            nofollow: false,
            note: None,
            custom_distros_storage: false,
            secret_uuid: None,
            alarm_key: None,
            max_alarms: 100,
            generation: 1,
            last_reboot: 0,
            ssh_keys_mtime: 0,
            created_at: 0,
            updated_at: 0,
        };
        let mut quiet = base.clone();
        quiet.note = Some("n".into());
        quiet.ssh_keys_raw = Some("k".into());
        assert!(!needs_restart(&base, &quiet));
        let mut loud = base.clone();
        loud.jid_secret = Some("s".into());
        assert!(needs_restart(&base, &loud));
    }
}
