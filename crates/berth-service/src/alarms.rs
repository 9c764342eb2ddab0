//! Alarms: the one place every alarm (customer, REST key, agent) is stored and pruned,
//! listing with the reference's `range` window (spec §4.18, §4.19, §4.19b, §5.11), and the
//! per-container alarm key.

use berth_model::{validate, Alarm};
use berth_store::alarms::{self, AlarmQuery, NewAlarm, Window};
use berth_store::containers;
use subtle::ConstantTimeEq;

use crate::{Caller, Error, Result, Service};

/// Exact-match filters of an alarm listing (combined with AND). `container` is a uid.
#[derive(Debug, Clone, Default)]
pub struct AlarmFilter {
    pub container: Option<i64>,
    pub level: Option<i64>,
    pub line: Option<i64>,
    pub class: Option<String>,
    pub vassal: Option<String>,
    pub color: Option<String>,
    pub filename: Option<String>,
    pub func: Option<String>,
}

/// Alarms of a listing and how many matched the filters before any window.
#[derive(Debug, Clone)]
pub struct AlarmPage {
    pub total: i64,
    pub alarms: Vec<Alarm>,
}

/// A keyset page of alarms (GraphQL): newest first.
#[derive(Debug, Clone)]
pub struct AlarmSlice {
    pub total: i64,
    pub alarms: Vec<Alarm>,
    pub has_next: bool,
}

/// An alarm as a customer raises it; `None` takes the default.
#[derive(Debug, Clone, Default)]
pub struct RaiseAlarm {
    /// Container uid.
    pub container: i64,
    pub msg: String,
    /// Default 1; below 1 is forbidden (0 is the platform's).
    pub level: Option<i64>,
    /// `#` is prepended when missing; default `#ffffff`.
    pub color: Option<String>,
    pub class: Option<String>,
    pub vassal: Option<String>,
    pub line: Option<i64>,
    pub filename: Option<String>,
    pub func: Option<String>,
    /// Unix seconds; default now.
    pub unix: Option<i64>,
}

pub const DEFAULT_ALARM_COLOR: &str = "#ffffff";
/// Longest alarm message accepted; the reference has none, an unlimited one is an easy DoS.
pub const MAX_ALARM_MSG: usize = validate::MAX_NOTE;

/// Offset/limit/order of the reference `range` parameter (spec §4.18): `N` is the first N of
/// the newest-first list; `A-B` is the window `[min, max)`, taken from the newest-first list
/// when A ≤ B and, replicating Q21, with the same offset and length from the oldest-first
/// list when A > B. A and B are compared as numbers (Q20 fixed). Malformed values are
/// `BadInput { field: "range" }` (REST: 416).
pub fn range_window(range: &str) -> Result<Window> {
    let bad = || Error::bad_input("range", "requested range not satisfiable");
    let number = |s: &str| -> Result<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    if !range.contains('-') {
        return Ok(Window::NewestFirst { offset: 0, limit: number(range)? });
    }
    let mut parts = range.split('-');
    let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (a, b) = (number(a)?, number(b)?);
    let (lo, hi) = (a.min(b), a.max(b));
    let (offset, limit) = (lo, hi - lo);
    Ok(if a <= b { Window::NewestFirst { offset, limit } } else { Window::OldestFirst { offset, limit } })
}

impl Service {
    fn alarm_query(&self, caller: &Caller, filter: &AlarmFilter, container_id: Option<i64>) -> Result<AlarmQuery> {
        let texts = [&filter.class, &filter.vassal, &filter.color, &filter.filename, &filter.func];
        validate::filter_texts("filter", texts.into_iter().flatten().map(String::as_str))?;
        Ok(AlarmQuery {
            customer_id: caller.customer_id,
            container_id,
            level: filter.level,
            line: filter.line,
            class: filter.class.clone(),
            vassal: filter.vassal.clone(),
            color: filter.color.clone(),
            filename: filter.filename.clone(),
            func: filter.func.clone(),
        })
    }

    /// Resolves the filter's container uid to one of the caller's containers.
    async fn filter_container(
        &self,
        conn: &mut berth_store::AnyConnection,
        caller: &Caller,
        filter: &AlarmFilter,
    ) -> Result<Option<i64>> {
        match filter.container {
            None => Ok(None),
            Some(uid) => {
                let id = berth_model::id_of_uid(uid).ok_or(Error::NotFound("container"))?;
                containers::owned(conn, caller.customer_id, id).await?.ok_or(Error::NotFound("container"))?;
                Ok(Some(id))
            }
        }
    }

    /// The REST listing: the caller's alarms matching `filter`, newest first, cut by the
    /// reference `range` (see [`range_window`]); `total` counts before the range.
    pub async fn alarms(&self, caller: &Caller, filter: &AlarmFilter, range: Option<&str>) -> Result<AlarmPage> {
        let window = range.map(range_window).transpose()?;
        let mut conn = self.store.read().await?;
        let container_id = self.filter_container(&mut conn, caller, filter).await?;
        let q = self.alarm_query(caller, filter, container_id)?;
        let total = alarms::count(&mut conn, &q).await?;
        let window = window.unwrap_or(Window::NewestFirst { offset: 0, limit: total.max(0) });
        let list = alarms::list(&mut conn, &q, window).await?;
        Ok(AlarmPage { total, alarms: list })
    }

    /// The GraphQL listing: newest first, `first` alarms strictly after the alarm at
    /// (`unix`, `id`) of the previous page.
    pub async fn alarm_slice(
        &self,
        caller: &Caller,
        filter: &AlarmFilter,
        first: Option<i64>,
        after: Option<(i64, i64)>,
    ) -> Result<AlarmSlice> {
        let limit = crate::containers::page_size(first)? as i64;
        let mut conn = self.store.read().await?;
        let container_id = self.filter_container(&mut conn, caller, filter).await?;
        let q = self.alarm_query(caller, filter, container_id)?;
        let total = alarms::count(&mut conn, &q).await?;
        let window = match after {
            None => Window::NewestFirst { offset: 0, limit: limit + 1 },
            Some((unix, id)) => Window::NewestAfter { unix, id, limit: limit + 1 },
        };
        let mut list = alarms::list(&mut conn, &q, window).await?;
        let has_next = list.len() as i64 > limit;
        list.truncate(limit as usize);
        Ok(AlarmSlice { total, alarms: list, has_next })
    }

    pub async fn alarm(&self, caller: &Caller, id: i64) -> Result<Alarm> {
        let mut conn = self.store.read().await?;
        alarms::owned(&mut conn, caller.customer_id, id).await?.ok_or(Error::NotFound("alarm"))
    }

    pub async fn delete_alarm(&self, caller: &Caller, id: i64) -> Result<Alarm> {
        let mut tx = self.store.write().await?;
        let alarm = alarms::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("alarm"))?;
        alarms::delete(&mut tx, alarm.id).await?;
        tx.commit().await?;
        Ok(alarm)
    }

    /// A customer raises an alarm on one of its containers (GraphQL, REST, alarm key).
    pub async fn raise_alarm(&self, caller: &Caller, raise: RaiseAlarm) -> Result<Alarm> {
        let level = raise.level.unwrap_or(1);
        validate::user_alarm_level(level)?;
        let id = berth_model::id_of_uid(raise.container).ok_or(Error::NotFound("container"))?;
        self.store_alarm(Some(caller), id, level, raise).await
    }

    /// The platform raises an alarm (level 0: OOM, quota, restarts) on any container; the
    /// agent's path, never reachable from a customer's request.
    pub async fn raise_system_alarm(&self, container_id: i64, msg: &str, color: Option<&str>) -> Result<Alarm> {
        let raise = RaiseAlarm { msg: msg.to_owned(), color: color.map(str::to_owned), ..RaiseAlarm::default() };
        self.store_alarm(None, container_id, 0, raise).await
    }

    /// The one function that stores alarms: validates, then in one transaction deletes the
    /// container's oldest alarms while it holds `max_alarms` or more, inserts, and schedules
    /// the delivery to the container's channels (honouring `alarm_freq`; see
    /// [`crate::delivery`]); once committed, the alarm is announced on the event bus (GraphQL
    /// subscriptions). The raiser never waits for a delivery. `owner` restricts the container
    /// to a customer's.
    async fn store_alarm(
        &self,
        owner: Option<&Caller>,
        container_id: i64,
        level: i64,
        raise: RaiseAlarm,
    ) -> Result<Alarm> {
        validate::text("msg", &raise.msg, MAX_ALARM_MSG)?;
        let color = validate::alarm_color(raise.color.as_deref().unwrap_or(DEFAULT_ALARM_COLOR))?;
        validate::alarm_line(raise.line)?;
        validate::optional_text("class", raise.class.as_deref())?;
        validate::optional_text("vassal", raise.vassal.as_deref())?;
        validate::optional_text("filename", raise.filename.as_deref())?;
        validate::optional_text("func", raise.func.as_deref())?;
        if let Some(unix) = raise.unix {
            validate::alarm_unix(unix)?;
        }
        let unix = raise.unix.unwrap_or_else(berth_store::unix_now);
        let mut tx = self.store.write().await?;
        let container = match owner {
            Some(caller) => containers::owned(&mut tx, caller.customer_id, container_id).await?,
            None => containers::get(&mut tx, container_id).await?,
        }
        .ok_or(Error::NotFound("container"))?;
        alarms::prune_for_insert(&mut tx, container.id, container.max_alarms).await?;
        let new = NewAlarm {
            container_id: container.id,
            unix,
            level,
            color: &color,
            msg: &raise.msg,
            line: raise.line,
            func: raise.func.as_deref(),
            filename: raise.filename.as_deref(),
            class: raise.class.as_deref(),
            vassal: raise.vassal.as_deref(),
        };
        let alarm = alarms::insert(&mut tx, &new).await?;
        let delivery = match &self.delivery {
            Some(delivery) => Some((delivery, delivery.schedule(&mut tx, &container, &alarm).await?)),
            None => None,
        };
        tx.commit().await?;
        self.publish(berth_model::Event::Alarm { customer_id: container.customer_id, alarm: alarm.clone() }).await;
        if let Some((delivery, scheduled)) = delivery {
            delivery.committed(scheduled, &container, &alarm);
        }
        Ok(alarm)
    }

    /// Replaces a container's alarm key with a fresh UUID4 and returns it (spec §4.19b).
    pub async fn regenerate_alarm_key(&self, caller: &Caller, uid: i64) -> Result<String> {
        let id = berth_model::id_of_uid(uid).ok_or(Error::NotFound("container"))?;
        let mut tx = self.store.write().await?;
        containers::owned(&mut tx, caller.customer_id, id).await?.ok_or(Error::NotFound("container"))?;
        let key = berth_store::new_uuid();
        alarms::set_alarm_key(&mut tx, id, &key).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Authenticates the REST raise route's `key` parameter as the owner of container `uid`:
    /// exactly 36 characters, equal (in constant time) to the stored key, owner active.
    pub async fn authenticate_alarm_key(&self, uid: i64, key: &str) -> Result<Caller> {
        if key.len() != 36 {
            return Err(Error::Unauthenticated);
        }
        let id = berth_model::id_of_uid(uid).ok_or(Error::Unauthenticated)?;
        let mut conn = self.store.read().await?;
        match alarms::alarm_key_of(&mut conn, id).await? {
            Some((customer_id, Some(stored), true)) if bool::from(stored.as_bytes().ct_eq(key.as_bytes())) => {
                Ok(Caller { customer_id })
            }
            _ => Err(Error::Unauthenticated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_like_the_reference() {
        assert_eq!(range_window("10").unwrap(), Window::NewestFirst { offset: 0, limit: 10 });
        assert_eq!(range_window("3-6").unwrap(), Window::NewestFirst { offset: 3, limit: 3 });
        // Q21 replicated: same offset and length, oldest-first.
        assert_eq!(range_window("6-3").unwrap(), Window::OldestFirst { offset: 3, limit: 3 });
        // Q20 fixed: numeric comparison.
        assert_eq!(range_window("9-10").unwrap(), Window::NewestFirst { offset: 9, limit: 1 });
        assert_eq!(range_window("5-20").unwrap(), Window::NewestFirst { offset: 5, limit: 15 });
        assert_eq!(range_window("4-4").unwrap(), Window::NewestFirst { offset: 4, limit: 0 });
        for bad in ["6-a", "6-", "-a", "a", "", "1-2-3", "-1", "+5", " 5", "99999999999999999999"] {
            match range_window(bad) {
                Err(Error::BadInput { field, .. }) => assert_eq!(field, "range", "{bad}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod service_tests {
    use std::sync::Arc;

    use berth_store::{accounts, containers, servers, Store};

    use super::*;
    use crate::{Service, ServiceConfig};

    struct World {
        service: Service,
        kratos: Caller,
        zeus: Caller,
        k_uid: i64,
        z_uid: i64,
        _dir: tempfile::TempDir,
    }

    async fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
        // Never asked: nothing here adds a domain.
        let dns = crate::dns::TxtOverDns::new(Some(([127, 0, 0, 1], 9).into())).unwrap();
        let service =
            Service::new(store.clone(), ServiceConfig { domain_ownership: Arc::new(dns), auth: Default::default() });
        let mut tx = store.write().await.unwrap();
        let server = servers::insert(
            &mut tx,
            &servers::NewServer { name: "s", address: "192.0.2.1", memory: 1000, storage: 1000, owner_id: None },
        )
        .await
        .unwrap();
        let mut ids = Vec::new();
        for name in ["kratos", "zeus"] {
            let new = accounts::NewCustomer { username: name, password_hash: "h", email: "", company: None, vat: None };
            let customer = accounts::insert_customer(&mut tx, &new).await.unwrap().id;
            let c =
                containers::NewContainer { customer_id: customer, server_id: server.id, name, memory: 1, storage: 1 };
            ids.push((customer, containers::insert(&mut tx, &c).await.unwrap().id));
        }
        tx.commit().await.unwrap();
        World {
            service,
            kratos: Caller { customer_id: ids[0].0 },
            zeus: Caller { customer_id: ids[1].0 },
            k_uid: berth_model::uid_of(ids[0].1),
            z_uid: berth_model::uid_of(ids[1].1),
            _dir: dir,
        }
    }

    fn raise(container: i64, msg: &str, unix: i64) -> RaiseAlarm {
        RaiseAlarm { container, msg: msg.to_owned(), unix: Some(unix), ..RaiseAlarm::default() }
    }

    fn msgs(page: &AlarmPage) -> Vec<&str> {
        page.alarms.iter().map(|a| a.msg.as_str()).collect()
    }

    #[tokio::test]
    async fn range_and_total_like_the_reference() {
        let w = world().await;
        for i in 0..10 {
            w.service.raise_alarm(&w.kratos, raise(w.k_uid, &format!("a{i}"), 100 + i)).await.unwrap();
        }
        w.service.raise_alarm(&w.zeus, raise(w.z_uid, "zeus", 500)).await.unwrap();
        let all = AlarmFilter::default();
        let page = w.service.alarms(&w.kratos, &all, None).await.unwrap();
        assert_eq!((page.total, page.alarms.len()), (10, 10));
        assert_eq!(msgs(&page)[0], "a9");
        let page = w.service.alarms(&w.kratos, &all, Some("3-6")).await.unwrap();
        assert_eq!((page.total, msgs(&page)), (10, vec!["a6", "a5", "a4"]));
        let page = w.service.alarms(&w.kratos, &all, Some("6-3")).await.unwrap();
        assert_eq!(msgs(&page), ["a3", "a4", "a5"]);
        let page = w.service.alarms(&w.kratos, &all, Some("2")).await.unwrap();
        assert_eq!(msgs(&page), ["a9", "a8"]);
        let page = w.service.alarms(&w.kratos, &all, Some("9-10")).await.unwrap();
        assert_eq!(msgs(&page), ["a0"], "Q20 fixed: numeric comparison");
        let bad = w.service.alarms(&w.kratos, &all, Some("6-a")).await;
        assert!(matches!(bad, Err(Error::BadInput { ref field, .. }) if field == "range"), "{bad:?}");
        let foreign = AlarmFilter { container: Some(w.z_uid), ..AlarmFilter::default() };
        assert_eq!(w.service.alarms(&w.kratos, &foreign, None).await.unwrap_err(), Error::NotFound("container"));
    }

    #[tokio::test]
    async fn every_path_prunes_and_publishes() {
        let w = world().await;
        let mut sub = w.service.subscribe(&w.kratos, None, None).await.unwrap();
        let mut conn = w.service.store.read().await.unwrap();
        sqlx::query("UPDATE containers SET max_alarms = 2").execute(&mut *conn).await.unwrap();
        drop(conn);
        w.service.raise_alarm(&w.kratos, raise(w.k_uid, "old", 1)).await.unwrap();
        let system =
            w.service.raise_system_alarm(w.k_uid - berth_model::UID_BASE, "oom", Some("ff0000")).await.unwrap();
        assert_eq!((system.level, system.color.as_str()), (0, "#ff0000"));
        assert_eq!(sub.next_alarm().await.unwrap().msg, "old");
        assert_eq!(sub.next_alarm().await.unwrap(), system);
        w.service.raise_alarm(&w.kratos, raise(w.k_uid, "new", 2)).await.unwrap();
        let page = w.service.alarms(&w.kratos, &AlarmFilter::default(), None).await.unwrap();
        assert_eq!(msgs(&page), ["oom", "new"], "the oldest made room");
        let zero = RaiseAlarm { level: Some(0), ..raise(w.k_uid, "x", 3) };
        assert!(matches!(w.service.raise_alarm(&w.kratos, zero).await, Err(Error::Forbidden(_))));
        let foreign = w.service.raise_alarm(&w.zeus, raise(w.k_uid, "x", 3)).await;
        assert_eq!(foreign.unwrap_err(), Error::NotFound("container"));
        assert_eq!(w.service.alarms(&w.kratos, &AlarmFilter::default(), None).await.unwrap().total, 2);
    }

    #[tokio::test]
    async fn alarm_keys_authenticate_the_owner() {
        let w = world().await;
        let unset = w.service.authenticate_alarm_key(w.k_uid, &"0".repeat(36)).await;
        assert_eq!(unset.unwrap_err(), Error::Unauthenticated);
        let key = w.service.regenerate_alarm_key(&w.kratos, w.k_uid).await.unwrap();
        assert_eq!(w.service.authenticate_alarm_key(w.k_uid, &key).await.unwrap(), w.kratos);
        // The key belongs to one container only; short, wrong and stale keys fail alike.
        assert!(w.service.authenticate_alarm_key(w.z_uid, &key).await.is_err());
        assert!(w.service.authenticate_alarm_key(w.k_uid, &key[..35]).await.is_err());
        let mut wrong = key.clone().into_bytes();
        wrong[0] = if wrong[0] == b'a' { b'b' } else { b'a' };
        assert!(w.service.authenticate_alarm_key(w.k_uid, &String::from_utf8(wrong).unwrap()).await.is_err());
        let newer = w.service.regenerate_alarm_key(&w.kratos, w.k_uid).await.unwrap();
        assert!(w.service.authenticate_alarm_key(w.k_uid, &key).await.is_err());
        assert!(w.service.authenticate_alarm_key(30000, &newer).await.is_err());
        // An inactive owner cannot use the key.
        let mut conn = w.service.store.read().await.unwrap();
        sqlx::query("UPDATE customers SET active = 0").execute(&mut *conn).await.unwrap();
        drop(conn);
        assert_eq!(w.service.authenticate_alarm_key(w.k_uid, &newer).await.unwrap_err(), Error::Unauthenticated);
        assert_eq!(w.service.regenerate_alarm_key(&w.zeus, w.k_uid).await.unwrap_err(), Error::NotFound("container"));
    }
}
