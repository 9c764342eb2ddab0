//! Metric reads for the customer's containers and domains (spec §4.20, §4.21, Q23 fixed:
//! each kind serves its own series) and the sample writer the agent uses.

use berth_model::{ContainerMetric, Day, DomainMetric};
use berth_store::{containers, domains, metrics};

use crate::{Caller, Error, Result, Service};

/// Today's date in UTC, the one zone Berth uses for "today" (spec §6.7).
pub fn today_utc() -> Day {
    day_of_unix(berth_store::unix_now())
}

/// The UTC calendar day of a Unix time.
pub fn day_of_unix(unix: i64) -> Day {
    let date = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH).date();
    Day { year: i64::from(date.year()), month: i64::from(u8::from(date.month())), day: i64::from(date.day()) }
}

/// The day a metric request names: each missing part is today's (UTC); the result must be
/// a real calendar date.
pub fn requested_day(year: Option<i64>, month: Option<i64>, day: Option<i64>) -> Result<Day> {
    let today = today_utc();
    let (y, m, d) = (year.unwrap_or(today.year), month.unwrap_or(today.month), day.unwrap_or(today.day));
    let month_enum = u8::try_from(m)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(|| Error::bad_input("month", "must be between 1 and 12"))?;
    let year_i32 = i32::try_from(y).map_err(|_| Error::bad_input("year", "out of range"))?;
    let day_u8 = u8::try_from(d).map_err(|_| Error::bad_input("day", "not a day of that month"))?;
    time::Date::from_calendar_date(year_i32, month_enum, day_u8)
        .map_err(|_| Error::bad_input("day", "not a day of that month"))?;
    Ok(Day { year: y, month: m, day: d })
}

pub fn container_kind(kind: &str) -> Result<ContainerMetric> {
    ContainerMetric::parse(kind).ok_or_else(|| Error::bad_input("kind", format!("unknown container metric {kind:?}")))
}

pub fn domain_kind(kind: &str) -> Result<DomainMetric> {
    DomainMetric::parse(kind).ok_or_else(|| Error::bad_input("kind", format!("unknown domain metric {kind:?}")))
}

/// One sample of a series: Unix seconds and the value.
pub type Sample = (i64, i64);

/// Parses a stored day of samples; a missing or empty text is no samples.
pub fn parse_samples(json: Option<&str>) -> Result<Vec<Sample>> {
    match json {
        None => Ok(Vec::new()),
        Some(text) if text.trim().is_empty() => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| Error::internal(format!("stored metric text: {e}"))),
    }
}

/// One container's stored day of a domain series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSeries {
    pub container_id: i64,
    /// The stored text, verbatim (`[[unix, value], ...]`).
    pub json: Option<String>,
}

impl Service {
    /// The stored text of one of the caller's containers' series for `day`; `"[]"` when the
    /// day has no row (the REST shim serves it verbatim).
    pub async fn container_metric(&self, caller: &Caller, uid: i64, kind: &str, day: Day) -> Result<Option<String>> {
        let kind = container_kind(kind)?;
        let id = berth_model::id_of_uid(uid).ok_or(Error::NotFound("container"))?;
        let mut conn = self.store.read().await?;
        containers::owned(&mut conn, caller.customer_id, id).await?.ok_or(Error::NotFound("container"))?;
        Ok(metrics::container_day(&mut conn, id, kind, day).await?.unwrap_or_else(|| Some("[]".to_owned())))
    }

    /// Every container's stored text of one of the caller's domains' series for `day`.
    /// Only the caller's containers are listed (rows come from the caller's own servers'
    /// collectors, so this hides nothing in normal operation).
    pub async fn domain_metric(
        &self,
        caller: &Caller,
        domain_id: i64,
        kind: &str,
        day: Day,
    ) -> Result<Vec<ContainerSeries>> {
        let kind = domain_kind(kind)?;
        let mut conn = self.store.read().await?;
        domains::owned(&mut conn, caller.customer_id, domain_id).await?.ok_or(Error::NotFound("domain"))?;
        let rows = metrics::domain_day(&mut conn, domain_id, kind, day).await?;
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        let mine: std::collections::HashSet<i64> = containers::many(&mut conn, &ids)
            .await?
            .into_iter()
            .filter(|c| c.customer_id == caller.customer_id)
            .map(|c| c.id)
            .collect();
        Ok(rows
            .into_iter()
            .filter(|(id, _)| mine.contains(id))
            .map(|(container_id, json)| ContainerSeries { container_id, json })
            .collect())
    }

    /// Appends a sample to a container series (the agent's collector path; no caller: the
    /// agent is trusted and names containers by id). The day is the sample's UTC day.
    pub async fn record_container_sample(
        &self,
        container_id: i64,
        kind: ContainerMetric,
        unix: i64,
        value: i64,
    ) -> Result<()> {
        let mut tx = self.store.write().await?;
        metrics::append_container_sample(&mut tx, container_id, kind, day_of_unix(unix), unix, value).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends a sample to a domain series as served by one container (agent path).
    pub async fn record_domain_sample(
        &self,
        domain_id: i64,
        container_id: i64,
        kind: DomainMetric,
        unix: i64,
        value: i64,
    ) -> Result<()> {
        let mut tx = self.store.write().await?;
        metrics::append_domain_sample(&mut tx, domain_id, container_id, kind, day_of_unix(unix), unix, value).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_of_unix(1_420_070_400), Day { year: 2015, month: 1, day: 1 });
        assert_eq!(day_of_unix(1_420_070_399), Day { year: 2014, month: 12, day: 31 });
    }

    #[test]
    fn requested_day_defaults_and_checks() {
        let today = today_utc();
        assert_eq!(requested_day(None, None, None).unwrap(), today);
        assert_eq!(requested_day(Some(2024), Some(2), Some(29)).unwrap(), Day { year: 2024, month: 2, day: 29 });
        assert!(requested_day(Some(2023), Some(2), Some(29)).is_err());
        assert!(requested_day(Some(2023), Some(13), Some(1)).is_err());
        assert!(requested_day(Some(2023), Some(1), Some(-1)).is_err());
        assert!(matches!(requested_day(Some(2023), Some(0), None), Err(Error::BadInput { .. })));
    }

    #[test]
    fn kinds_and_samples() {
        assert_eq!(container_kind("io.write").unwrap(), ContainerMetric::IoWrite);
        assert!(matches!(container_kind("hits"), Err(Error::BadInput { .. })));
        assert_eq!(domain_kind("hits").unwrap(), DomainMetric::Hits);
        assert_eq!(parse_samples(Some("[[1, 2], [3, 4]]")).unwrap(), vec![(1, 2), (3, 4)]);
        assert!(parse_samples(None).unwrap().is_empty());
        assert!(matches!(parse_samples(Some("nope")), Err(Error::Internal(_))));
    }
}
