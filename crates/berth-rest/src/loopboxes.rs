//! `loopboxes` and `loopboxes/<id>` (spec §4.16, §4.17).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::any;
use axum::Router;
use berth_model::Loopbox;
use berth_service::loopboxes::NewLoopbox;
use berth_service::{Caller, Error, Service};
use serde_json::{json, Value};

use crate::auth::Customer;
use crate::body::{self, RawBody};
use crate::errors::{reply, Answers, FORBIDDEN_STYLE};
use crate::values::{int_like, path_number, string_list, tag_names};
use crate::wire::{self, Reply};
use crate::{route, AppState};

pub fn router() -> Router<AppState> {
    let r = route(Router::new(), "/loopboxes", any(collection));
    route(r, "/loopboxes/{id}", any(one))
}

/// Creation failures other than ownership are 409 (Q19: path rules enforced, 409).
const CREATE_STYLE: Answers =
    Answers { not_found: wire::forbidden, bad_input: wire::conflict, conflict: wire::conflict };

async fn describe(service: &Service, caller: &Caller, list: &[Loopbox]) -> berth_service::Result<Vec<Value>> {
    let ids: Vec<i64> = list.iter().map(|b| b.id).collect();
    let tags = service.tags_of_loopboxes(caller, &ids).await?;
    Ok(list
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "container": berth_model::uid_of(b.container_id),
                "filename": b.filename,
                "mountpoint": b.mountpoint,
                "ro": b.ro,
                "tags": tags.get(&b.id).cloned().unwrap_or_default(),
            })
        })
        .collect())
}

async fn all_loopboxes(
    service: &Service,
    caller: &Caller,
    container: Option<i64>,
    tags: &[String],
) -> berth_service::Result<Vec<Loopbox>> {
    let fetch = |after| async move {
        service.loopboxes_page(caller, container, tags, after, crate::pages::WALK).await.map(|p| (p.items, p.has_next))
    };
    crate::pages::all(fetch, |b: &Loopbox| b.id).await
}

async fn collection(
    State(state): State<AppState>,
    Customer(caller): Customer,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    RawBody(raw): RawBody,
) -> Reply {
    let service = &state.service;
    if method == Method::POST {
        return create(service, &caller, &raw).await;
    }
    let (container, tags) = if method == Method::GET {
        let container = match query.get("container") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(uid) => Some(uid),
                Err(_) => return wire::forbidden(),
            },
        };
        (container, tag_names(query.get("tags").map(String::as_str)))
    } else {
        (None, Vec::new())
    };
    let listed = async {
        let list = all_loopboxes(service, &caller, container, &tags).await?;
        describe(service, &caller, &list).await
    };
    match listed.await {
        Ok(items) => wire::ok_json(&items),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}

async fn create(service: &Service, caller: &Caller, raw: &[u8]) -> Reply {
    let o = match body::object(raw) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (Some(container), Some(filename), Some(mountpoint)) =
        (o.get("container"), o.get("filename"), o.get("mountpoint"))
    else {
        return wire::forbidden();
    };
    let Some(container) = int_like(container) else {
        return wire::forbidden();
    };
    let (Some(filename), Some(mountpoint)) = (filename.as_str(), mountpoint.as_str()) else {
        return wire::conflict();
    };
    // Q25: JSON booleans and 0/1; anything else is a 409. Not Django's spellings: the
    // reference stores `ro` by Python truthiness, where the string "false" is read-only.
    let ro = match o.get("ro") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) if v.as_i64() == Some(1) => true,
        Some(v) if v.as_i64() == Some(0) => false,
        Some(_) => return wire::conflict(),
    };
    let new = NewLoopbox { container, filename: filename.to_owned(), mountpoint: mountpoint.to_owned(), ro };
    match service.create_loopbox(caller, new).await {
        Ok(b) => wire::json(StatusCode::CREATED, &json!({ "message": "Created", "id": b.id })),
        Err(e) => reply(e, CREATE_STYLE),
    }
}

async fn one(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(id): Path<String>,
    method: Method,
    RawBody(raw): RawBody,
) -> Reply {
    let Some(id) = path_number(&id) else {
        return wire::not_found();
    };
    let service = &state.service;
    let result = match method {
        Method::DELETE => {
            return match service.delete_loopbox(&caller, id).await {
                Ok(()) => wire::ok_message(),
                Err(e) => reply(e, FORBIDDEN_STYLE),
            }
        }
        Method::POST => {
            let value = match body::parse(&raw) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if body::is_falsy(&value) {
                return wire::forbidden();
            }
            if !value.is_object() {
                return wire::bad_request();
            }
            // Only `tags` is honoured: loopbox fields are immutable (delete and recreate).
            match value.get("tags") {
                None => service.loopbox(&caller, id).await,
                Some(tags) => match string_list(tags) {
                    Some(names) => service.set_loopbox_tags(&caller, id, &names).await,
                    None => return wire::bad_request(),
                },
            }
        }
        _ => service.loopbox(&caller, id).await,
    };
    let described = match result {
        Ok(b) => describe(service, &caller, &[b]).await.map(|mut v| v.pop().unwrap_or(Value::Null)),
        Err(e) => Err(e),
    };
    match described {
        Ok(v) => wire::ok_json(&v),
        Err(Error::BadInput { .. }) => wire::conflict(),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}
