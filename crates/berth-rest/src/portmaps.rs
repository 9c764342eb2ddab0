//! `portmappings/<ip>` (spec §4.6, Q13 fixed: a public port is unique per server).

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::any;
use axum::Router;
use berth_service::portmaps::NewPortmapping;
use serde_json::json;

use crate::auth::Customer;
use crate::body::{self, RawBody};
use crate::errors::{reply, Answers};
use crate::values::int_like;
use crate::wire::{self, Reply};
use crate::AppState;

/// Every failure of this route is a 403 in the reference.
const ALL_FORBIDDEN: Answers =
    Answers { not_found: wire::forbidden, bad_input: wire::forbidden, conflict: wire::forbidden };

pub fn router() -> Router<AppState> {
    // `<ip>` is the rest of the path: a trailing slash makes it a different (unknown) server.
    Router::new().route("/portmappings/{*ip}", any(portmappings))
}

async fn portmappings(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(ip): Path<String>,
    method: Method,
    RawBody(raw): RawBody,
) -> Reply {
    let service = &state.service;
    match method {
        Method::POST | Method::DELETE => {
            let value = match body::parse(&raw) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if body::is_falsy(&value) {
                return wire::forbidden();
            }
            // Q28 fixed: a body that is not an object is a bad request.
            if !value.is_object() {
                return wire::bad_request();
            }
            if method == Method::DELETE {
                let Some(id) = value.get("id").and_then(int_like) else {
                    return wire::forbidden();
                };
                return match service.delete_portmapping(&caller, &ip, id).await {
                    Ok(_) => wire::ok_message(),
                    Err(e) => reply(e, ALL_FORBIDDEN),
                };
            }
            let field = |k: &str| value.get(k);
            let (Some(container), Some(proto), Some(public_port), Some(private_port)) = (
                field("container").and_then(int_like),
                field("proto").and_then(|v| v.as_str()),
                field("public_port").and_then(int_like),
                field("private_port").and_then(int_like),
            ) else {
                return wire::forbidden();
            };
            let new = NewPortmapping { container, proto: proto.to_owned(), public_port, private_port };
            match service.create_portmapping(&caller, &ip, new).await {
                Ok(p) => wire::json(StatusCode::CREATED, &json!({ "message": "Created", "id": p.id })),
                Err(e) => reply(e, ALL_FORBIDDEN),
            }
        }
        _ => match service.portmappings(&caller, &ip).await {
            Ok(list) => wire::ok_json(
                &list
                    .iter()
                    .map(|p| {
                        json!({
                            "id": p.id,
                            "proto": p.proto.as_str(),
                            "public_port": p.public_port,
                            "container": berth_model::uid_of(p.container_id),
                            "container_ip": berth_model::container_ip(p.container_id).to_string(),
                            "private_port": p.private_port,
                        })
                    })
                    .collect::<Vec<_>>(),
            ),
            Err(e) => reply(e, ALL_FORBIDDEN),
        },
    }
}
