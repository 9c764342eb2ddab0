//! `domains`, `domains/<id>`, `domains/<id>/containers` (spec §4.10–§4.12).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::any;
use axum::Router;
use berth_model::Domain;
use berth_service::domains::DomainChange;
use berth_service::{Caller, Error, Service};
use serde_json::{json, Value};

use crate::auth::Customer;
use crate::body::{self, RawBody};
use crate::errors::{reply, NOT_FOUND_STYLE};
use crate::values::{path_number, string_list, tag_names, text_like};
use crate::wire::{self, Reply};
use crate::{route, AppState};

pub fn router() -> Router<AppState> {
    let r = route(Router::new(), "/domains", any(collection));
    let r = route(r, "/domains/{id}", any(one));
    route(r, "/domains/{id}/containers", any(containers_today))
}

async fn all_domains(service: &Service, caller: &Caller, tags: &[String]) -> berth_service::Result<Vec<Domain>> {
    let fetch = |after| async move {
        service.domains(caller, tags, crate::pages::WALK, after).await.map(|p| (p.domains, p.has_next))
    };
    crate::pages::all(fetch, |d: &Domain| d.id).await
}

fn name_in(raw: &[u8]) -> Result<String, Reply> {
    let value = body::parse(raw)?;
    value.get("name").and_then(Value::as_str).map(str::to_owned).ok_or_else(wire::bad_request)
}

async fn collection(
    State(state): State<AppState>,
    Customer(caller): Customer,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    RawBody(raw): RawBody,
) -> Reply {
    let service = &state.service;
    match method {
        Method::GET => {
            let tags = tag_names(query.get("tags").map(String::as_str));
            let listed = async {
                let list = all_domains(service, &caller, &tags).await?;
                let ids: Vec<i64> = list.iter().map(|d| d.id).collect();
                let tags = service.domain_tags(&caller, &ids).await?;
                Ok::<_, Error>(
                    list.iter()
                        .map(|d| json!({ "id": d.id, "name": d.name, "uuid": d.uuid, "tags": tags.get(&d.id).cloned().unwrap_or_default() }))
                        .collect::<Vec<_>>(),
                )
            };
            match listed.await {
                Ok(items) => wire::ok_json(&items),
                Err(e) => reply(e, NOT_FOUND_STYLE),
            }
        }
        Method::POST => {
            let name = match name_in(&raw) {
                Ok(n) => n,
                Err(r) => return r,
            };
            match service.add_domain(&caller, &name).await {
                Ok(d) => wire::json(
                    StatusCode::CREATED,
                    &json!({ "message": "Created", "id": d.id, "name": d.name, "uuid": d.uuid, "tags": [], "note": d.note }),
                ),
                Err(e) => reply(e, crate::errors::Answers { bad_input: wire::forbidden, ..NOT_FOUND_STYLE }),
            }
        }
        Method::DELETE => {
            let name = match name_in(&raw) {
                Ok(n) => n,
                Err(r) => return r,
            };
            match service.delete_domain_by_name(&caller, &name).await {
                Ok(_) => wire::ok_message(),
                Err(e) => reply(e, NOT_FOUND_STYLE),
            }
        }
        _ => wire::method_not_allowed(),
    }
}

async fn detail(service: &Service, caller: &Caller, d: &Domain) -> berth_service::Result<Value> {
    let tags = service.domain_tags(caller, &[d.id]).await?.remove(&d.id).unwrap_or_default();
    Ok(json!({ "id": d.id, "name": d.name, "uuid": d.uuid, "tags": tags, "note": d.note }))
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
    // The lookup comes first: a missing domain is 404 whatever the method.
    let domain = match service.domain(&caller, id).await {
        Ok(d) => d,
        Err(e) => return reply(e, NOT_FOUND_STYLE),
    };
    let result = match method {
        Method::GET => Ok(domain),
        Method::POST => {
            let o = match body::object_or_empty(&raw) {
                Ok(o) => o,
                Err(r) => return r,
            };
            let note = match o.get("note").map(text_like) {
                None => None,
                Some(Some(n)) => Some(n),
                Some(None) => return wire::bad_request(),
            };
            let tags = match o.get("tags").map(string_list) {
                None => None,
                Some(Some(t)) => Some(t),
                Some(None) => return wire::bad_request(),
            };
            service.update_domain(&caller, id, DomainChange { note, tags }).await
        }
        Method::DELETE => {
            return match service.delete_domain(&caller, id).await {
                Ok(_) => wire::ok_message(),
                Err(e) => reply(e, NOT_FOUND_STYLE),
            }
        }
        _ => return wire::method_not_allowed(),
    };
    let described = match result {
        Ok(d) => detail(service, &caller, &d).await,
        Err(e) => Err(e),
    };
    match described {
        Ok(v) => wire::ok_json(&v),
        Err(e) => reply(e, crate::errors::Answers { bad_input: wire::conflict, ..NOT_FOUND_STYLE }),
    }
}

async fn containers_today(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(id): Path<String>,
    method: Method,
) -> Reply {
    if method != Method::GET {
        return wire::method_not_allowed();
    }
    let Some(id) = path_number(&id) else {
        return wire::not_found();
    };
    match state.service.domain_containers(&caller, id).await {
        // Q17, replicated: `id` is the database id beside the uid.
        Ok(list) => wire::ok_json(
            &list
                .iter()
                .map(|c| json!({ "id": c.id, "uuid": c.uuid, "name": c.name, "uid": c.uid() }))
                .collect::<Vec<_>>(),
        ),
        Err(e) => reply(e, NOT_FOUND_STYLE),
    }
}
