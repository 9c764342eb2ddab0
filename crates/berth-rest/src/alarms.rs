//! `alarms`, `alarms/<id>`, `alarms/raise/<uid>` (alias `alarms/trigger/<uid>`),
//! `alarm_key/<uid>` (spec §4.18–§4.19b).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use axum::Router;
use berth_model::Alarm;
use berth_service::alarms::{AlarmFilter, RaiseAlarm};
use berth_service::{Caller, Error};
use serde_json::json;

use crate::auth::{self, Customer};
use crate::body::RawBody;
use crate::errors::{reply, Answers, FORBIDDEN_STYLE};
use crate::values::path_number;
use crate::wire::{self, Reply};
use crate::{route, AppState};

pub fn router() -> Router<AppState> {
    let r = route(Router::new(), "/alarms", any(list));
    let r = route(r, "/alarms/{id}", any(one));
    let r = route(r, "/alarm_key/{uid}", any(alarm_key));
    let r = route(r, "/alarms/raise/{uid}", any(raise));
    route(r, "/alarms/trigger/{uid}", any(raise))
}

fn alarm_json(a: &Alarm) -> serde_json::Value {
    json!({
        "id": a.id,
        "container": berth_model::uid_of(a.container_id),
        "level": a.level,
        "color": a.color,
        "class": a.class,
        "vassal": a.vassal,
        "line": a.line,
        "filename": a.filename,
        "func": a.func,
        "unix": a.unix,
        "msg": a.msg,
    })
}

/// An integer query parameter: absent is `None`, malformed is 400 (Q33 fixed).
fn int_param(query: &HashMap<String, String>, key: &str) -> Result<Option<i64>, Reply> {
    query.get(key).map(|v| v.trim().parse::<i64>().map_err(|_| wire::bad_request())).transpose()
}

async fn list(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let container = match query.get("container") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(uid) => Some(uid),
            Err(_) => return wire::forbidden(),
        },
    };
    let (level, line) = match (int_param(&query, "level"), int_param(&query, "line")) {
        (Ok(level), Ok(line)) => (level, line),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let filter = AlarmFilter {
        container,
        level,
        line,
        class: query.get("class").cloned(),
        vassal: query.get("vassal").cloned(),
        color: query.get("color").cloned(),
        filename: query.get("filename").cloned(),
        func: query.get("func").cloned(),
    };
    match state.service.alarms(&caller, &filter, query.get("range").map(String::as_str)).await {
        Ok(page) => {
            let alarms: Vec<_> = page.alarms.iter().map(alarm_json).collect();
            if query.contains_key("with_total") {
                wire::ok_json(&json!({ "total": page.total, "alarms": alarms }))
            } else {
                wire::ok_json(&alarms)
            }
        }
        Err(Error::BadInput { field, .. }) if field == "range" => wire::range_bad(),
        Err(e) => reply(e, Answers { bad_input: wire::bad_request, ..FORBIDDEN_STYLE }),
    }
}

async fn one(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(id): Path<String>,
    method: Method,
) -> Reply {
    let Some(id) = path_number(&id) else {
        return wire::not_found();
    };
    if method == Method::DELETE {
        return match state.service.delete_alarm(&caller, id).await {
            Ok(_) => wire::ok_message(),
            Err(e) => reply(e, FORBIDDEN_STYLE),
        };
    }
    match state.service.alarm(&caller, id).await {
        Ok(a) => wire::ok_json(&alarm_json(&a)),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}

async fn alarm_key(State(state): State<AppState>, Customer(caller): Customer, Path(uid): Path<String>) -> Reply {
    let Some(uid) = path_number(&uid) else {
        return wire::not_found();
    };
    match state.service.regenerate_alarm_key(&caller, uid).await {
        Ok(key) => wire::ok_json(&json!({ "message": "Ok", "alarm_key": key })),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}

/// Credentials, or — only when the request carries none — the container's alarm key.
async fn raise_caller(
    state: &AppState,
    parts_headers: &HeaderMap,
    peer: std::net::IpAddr,
    uid: i64,
    key: Option<&String>,
) -> Result<Caller, Reply> {
    if auth::carries_credentials(parts_headers) {
        let presented = auth::presented(parts_headers).ok_or_else(wire::unauthorized)?;
        return state.service.authenticate(&presented, peer).await.map_err(auth::auth_failure);
    }
    match key {
        Some(key) => state.service.authenticate_alarm_key(uid, key).await.map_err(auth::auth_failure),
        None => Err(wire::unauthorized()),
    }
}

async fn raise(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    method: Method,
    headers: HeaderMap,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    RawBody(raw): RawBody,
) -> Reply {
    let Some(uid) = path_number(&uid) else {
        return wire::not_found();
    };
    let caller = match raise_caller(&state, &headers, peer.ip(), uid, query.get("key")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(e) = state.service.container(&caller, uid).await {
        return reply(e, FORBIDDEN_STYLE);
    }
    if method != Method::POST {
        return wire::method_not_allowed();
    }
    let (level, line, unix) = match (int_param(&query, "level"), int_param(&query, "unix")) {
        (Ok(level), Ok(unix)) => {
            // A malformed line fails at save time in the reference: 409.
            let line = match query.get("line").map(|v| v.trim().parse::<i64>()) {
                None => None,
                Some(Ok(l)) => Some(l),
                Some(Err(_)) => return wire::conflict(),
            };
            (level, line, unix)
        }
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let raise = RaiseAlarm {
        container: uid,
        // Q32, replicated: the raw body is the message, never JSON-decoded.
        msg: String::from_utf8_lossy(&raw).into_owned(),
        level,
        color: query.get("color").cloned(),
        class: query.get("class").cloned(),
        vassal: query.get("vassal").cloned(),
        line,
        filename: query.get("filename").cloned(),
        func: query.get("func").cloned(),
        unix,
    };
    match state.service.raise_alarm(&caller, raise).await {
        Ok(a) => wire::json(StatusCode::CREATED, &json!({ "message": "Created", "id": a.id })),
        Err(e) => reply(e, Answers { bad_input: wire::conflict, ..FORBIDDEN_STYLE }),
    }
}
