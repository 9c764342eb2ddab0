//! `metrics/container.<kind>/<uid>` and `metrics/domain.<kind>/<id>` (spec §4.20, §4.21):
//! one stored day of samples, served verbatim.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::routing::any;
use axum::Router;
use berth_model::Day;
use berth_service::metrics::{requested_day, today_utc};
use berth_service::Error;

use crate::auth::Customer;
use crate::errors::{reply, Answers};
use crate::values::path_number;
use crate::wire::{self, Reply};
use crate::{route, AppState};

/// Unknown or foreign objects get the reference's plain-text 403 (Q22).
const METRICS_STYLE: Answers =
    Answers { not_found: wire::forbidden_text, bad_input: wire::bad_request, conflict: wire::conflict };

pub fn router() -> Router<AppState> {
    route(Router::new(), "/metrics/{series}/{id}", any(series))
}

/// Q24 fixed: today's series is still growing (cache 5 minutes); past days are final.
fn expires(day: Day) -> HeaderValue {
    let ttl = if day == today_utc() { 300 } else { 86400 };
    let at = SystemTime::now() + Duration::from_secs(ttl);
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

async fn series(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path((series, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let Some(id) = path_number(&id) else {
        return wire::not_found();
    };
    let int = |key: &str| query.get(key).map(|v| v.trim().parse::<i64>());
    let mut parts = [None, None, None];
    for (slot, key) in parts.iter_mut().zip(["year", "month", "day"]) {
        match int(key) {
            None => {}
            Some(Ok(v)) => *slot = Some(v),
            Some(Err(_)) => return wire::bad_request(),
        }
    }
    let day = match requested_day(parts[0], parts[1], parts[2]) {
        Ok(d) => d,
        Err(_) => return wire::bad_request(),
    };
    let body = if let Some(kind) = series.strip_prefix("container.") {
        state.service.container_metric(&caller, id, kind, day).await.map(|json| json.unwrap_or_else(|| "[]".to_owned()))
    } else if let Some(kind) = series.strip_prefix("domain.") {
        state.service.domain_metric(&caller, id, kind, day).await.map(|rows| {
            // The reference's own formatting of this document, kept byte for byte.
            let items: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{{ \"container\": {}, \"metrics\": {} }}",
                        berth_model::uid_of(r.container_id),
                        r.json.as_deref().unwrap_or("[]")
                    )
                })
                .collect();
            format!("[{}]", items.join(","))
        })
    } else {
        return wire::not_found();
    };
    match body {
        Ok(text) => {
            let mut r = wire::raw_json(StatusCode::OK, text);
            r.headers_mut().insert(header::EXPIRES, expires(day));
            r
        }
        // An unknown series kind does not match a route in the reference.
        Err(Error::BadInput { field, .. }) if field == "kind" => wire::not_found(),
        Err(e) => reply(e, METRICS_STYLE),
    }
}
