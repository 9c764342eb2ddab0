//! `distros`, `custom_distros/`, `custom_distros/<uid>`, `custom_distro/<id>` (spec §4.7–§4.9).

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::any;
use axum::Router;
use berth_model::CustomDistro;
use berth_service::custom_distros::{CustomDistroChange, NewCustomDistro};
use serde_json::{json, Value};

use crate::auth::Customer;
use crate::body::{self, RawBody};
use crate::errors::{reply, FORBIDDEN_STYLE};
use crate::values::{path_number, text_like};
use crate::wire::{self, Reply};
use crate::{route, AppState};

pub fn router() -> Router<AppState> {
    let r = route(Router::new(), "/distros", any(distros));
    // The reference needs the slash here; `custom_distros` alone works too (spec §9.4).
    let r = route(r, "/custom_distros", any(my_custom_distros));
    let r = route(r, "/custom_distros/{uid}", any(usable_or_create));
    let r = route(r, "/custom_distro", any(|| async { wire::forbidden() }));
    route(r, "/custom_distro/{id}", any(custom_distro))
}

async fn distros(State(state): State<AppState>, Customer(caller): Customer) -> Reply {
    match state.service.distros(&caller).await {
        Ok(list) => wire::ok_json(&list.iter().map(|d| json!({ "id": d.id, "name": d.name })).collect::<Vec<_>>()),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}

async fn my_custom_distros(State(state): State<AppState>, Customer(caller): Customer) -> Reply {
    match state.service.custom_distros(&caller).await {
        Ok(list) => wire::ok_json(
            &list
                .iter()
                .map(|d| json!({ "id": d.id, "name": d.name, "container": berth_model::uid_of(d.container_id) }))
                .collect::<Vec<_>>(),
        ),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}

async fn usable_or_create(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(uid): Path<String>,
    method: Method,
    RawBody(raw): RawBody,
) -> Reply {
    let Some(uid) = path_number(&uid) else {
        return wire::not_found();
    };
    if method != Method::POST {
        return match state.service.custom_distros_usable_by(&caller, uid).await {
            Ok(list) => wire::ok_json(&list.iter().map(|d| json!({ "id": d.id, "name": d.name })).collect::<Vec<_>>()),
            Err(e) => reply(e, FORBIDDEN_STYLE),
        };
    }
    let o = match body::object(&raw) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let text = |k: &str| o.get(k).and_then(text_like).flatten();
    let new = NewCustomDistro {
        container: uid,
        name: text("name").unwrap_or_default(),
        path: text("path").unwrap_or_default(),
        note: text("note"),
    };
    match state.service.create_custom_distro(&caller, new).await {
        Ok(d) => wire::json(StatusCode::CREATED, &json!({ "message": "Created", "id": d.id })),
        // Every creation failure is a 403 in the reference.
        Err(e) => reply(e, crate::errors::Answers { conflict: wire::forbidden, ..FORBIDDEN_STYLE }),
    }
}

fn detail(d: &CustomDistro) -> Value {
    json!({
        "id": d.id,
        "container": berth_model::uid_of(d.container_id),
        "name": d.name,
        "path": d.path,
        "note": d.note,
        "uuid": d.uuid,
    })
}

async fn custom_distro(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(id): Path<String>,
    method: Method,
    RawBody(raw): RawBody,
) -> Reply {
    let Some(id) = path_number(&id) else {
        return wire::not_found();
    };
    let answers = crate::errors::Answers { conflict: wire::forbidden, ..FORBIDDEN_STYLE };
    let result = match method {
        Method::DELETE => {
            return match state.service.delete_custom_distro(&caller, id).await {
                Ok(()) => wire::ok_message(),
                Err(e) => reply(e, answers),
            }
        }
        // Q16 fixed: update with the creation rules.
        Method::POST => {
            let o = match body::object(&raw) {
                Ok(o) => o,
                Err(r) => return r,
            };
            let change = CustomDistroChange {
                name: o.get("name").and_then(text_like).flatten(),
                path: o.get("path").and_then(text_like).flatten(),
                note: o.get("note").and_then(text_like),
            };
            state.service.update_custom_distro(&caller, id, change).await
        }
        _ => state.service.custom_distro(&caller, id).await,
    };
    match result {
        Ok(d) => wire::ok_json(&detail(&d)),
        Err(e) => reply(e, answers),
    }
}
