//! `tags` and `tags/<id>` (spec §4.14, §4.15).

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::any;
use axum::Router;
use berth_model::Tag;
use berth_service::tags::TagChange;
use serde_json::json;

use crate::auth::Customer;
use crate::body::{self, RawBody};
use crate::errors::{reply, NOT_FOUND_STYLE};
use crate::values::{path_number, text_like};
use crate::wire::{self, Reply};
use crate::{route, AppState};

pub fn router() -> Router<AppState> {
    let r = route(Router::new(), "/tags", any(list_or_create));
    route(r, "/tags/{id}", any(one))
}

fn detail(t: &Tag) -> serde_json::Value {
    json!({ "id": t.id, "name": t.name, "note": t.note })
}

async fn list_or_create(
    State(state): State<AppState>,
    Customer(caller): Customer,
    method: Method,
    RawBody(raw): RawBody,
) -> Reply {
    match method {
        Method::GET => match state.service.tags(&caller).await {
            Ok(list) => wire::ok_json(&list.iter().map(|t| json!({ "id": t.id, "name": t.name })).collect::<Vec<_>>()),
            Err(e) => reply(e, NOT_FOUND_STYLE),
        },
        Method::POST => {
            let o = match body::object(&raw) {
                Ok(o) => o,
                Err(r) => return r,
            };
            let name = o.get("name").and_then(text_like).flatten().unwrap_or_default();
            let note = o.get("note").and_then(text_like).flatten();
            match state.service.create_tag(&caller, &name, note.as_deref()).await {
                Ok(tag) => wire::json(StatusCode::CREATED, &detail(&tag)),
                // Q18: an empty name is refused like a duplicate (409).
                Err(e) => reply(e, crate::errors::Answers { bad_input: wire::conflict, ..NOT_FOUND_STYLE }),
            }
        }
        _ => wire::method_not_allowed(),
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
    // The lookup comes first: a missing tag is 404 whatever the method.
    let tag = match state.service.tag(&caller, id).await {
        Ok(t) => t,
        Err(e) => return reply(e, NOT_FOUND_STYLE),
    };
    match method {
        Method::GET => wire::ok_json(&detail(&tag)),
        Method::POST => {
            let o = match body::object(&raw) {
                Ok(o) => o,
                Err(r) => return r,
            };
            let change = TagChange {
                name: o.get("name").and_then(text_like).flatten(),
                note: o.get("note").and_then(text_like),
            };
            match state.service.update_tag(&caller, id, change).await {
                Ok(t) => wire::ok_json(&detail(&t)),
                Err(e) => reply(e, crate::errors::Answers { bad_input: wire::conflict, ..NOT_FOUND_STYLE }),
            }
        }
        Method::DELETE => match state.service.delete_tag(&caller, id).await {
            Ok(()) => wire::ok_message(),
            Err(e) => reply(e, NOT_FOUND_STYLE),
        },
        _ => wire::method_not_allowed(),
    }
}
