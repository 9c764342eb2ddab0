//! `containers`, `me/containers`, `containers/<uid>`, `containers/<uid>/domains`,
//! `regenerate_secret_uuid/<uid>` (spec §4.2–§4.5).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::any;
use axum::Router;
use berth_model::Container;
use berth_service::containers::{ContainerChange, NewContainer, SizesElsewhere};
use berth_service::{Caller, Error, Service};
use serde_json::{json, Map, Value};

use crate::auth::Customer;
use crate::body::{self, RawBody};
use crate::errors::{reply, Answers, FORBIDDEN_STYLE};
use crate::values::{bool_like, int_like, path_number, string_list, tag_names, text_like};
use crate::wire::{self, Reply};
use crate::{route, AppState};

pub fn router() -> Router<AppState> {
    let r = Router::new();
    let r = route(r, "/containers", any(list_or_create));
    let r = route(r, "/me/containers", any(list_or_create));
    let r = route(r, "/containers/{uid}", any(detail_or_update));
    let r = route(r, "/containers/{uid}/domains", any(domains_today));
    route(r, "/regenerate_secret_uuid/{uid}", any(regenerate_secret_uuid))
}

/// Updates answer invalid values and clashes with 409 and the reason (Q10 fixed).
const UPDATE_STYLE: Answers =
    Answers { not_found: wire::forbidden, bad_input: wire::conflict, conflict: wire::conflict };

async fn list_or_create(
    State(state): State<AppState>,
    Customer(caller): Customer,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    RawBody(raw): RawBody,
) -> Reply {
    if method == Method::POST {
        return create(&state.service, &caller, &raw).await;
    }
    // Only GET filters; other methods list everything (reference behaviour).
    let tags = if method == Method::GET { tag_names(query.get("tags").map(String::as_str)) } else { Vec::new() };
    match all_containers(&state.service, &caller, &tags).await {
        Ok(list) => match describe(&state.service, &caller, list, false).await {
            Ok(items) => wire::ok_json(&items),
            Err(e) => reply(e, FORBIDDEN_STYLE),
        },
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}

async fn all_containers(service: &Service, caller: &Caller, tags: &[String]) -> berth_service::Result<Vec<Container>> {
    let fetch = |after| async move {
        service.containers_page(caller, after, crate::pages::WALK, tags).await.map(|p| (p.items, p.has_next))
    };
    crate::pages::all(fetch, |c: &Container| c.id).await
}

async fn create(service: &Service, caller: &Caller, raw: &[u8]) -> Reply {
    let object = match body::object(raw) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (Some(server), Some(name), Some(memory), Some(storage)) =
        (object.get("server"), object.get("name"), object.get("memory"), object.get("storage"))
    else {
        return wire::forbidden();
    };
    let Some(server) = server.as_str() else {
        return wire::forbidden();
    };
    let Some(Some(name)) = text_like(name) else {
        return wire::conflict();
    };
    // Q3, replicated: capacity problems are a 200 with an error body (uwsgiit-py treats any
    // 2xx as success and GUIs read `error`).
    let (Some(memory), Some(storage)) = (int_like(memory), int_like(storage)) else {
        return wire::bad_request();
    };
    let new = NewContainer { server: server.to_owned(), name, memory, storage };
    match service.create_container(caller, new).await {
        Ok(c) => wire::json(StatusCode::CREATED, &json!({ "message": "Created", "uid": c.uid() })),
        Err(Error::NotFound(_)) | Err(Error::Forbidden(_)) => wire::forbidden(),
        Err(Error::Conflict(reason)) if reason.starts_with("not enough") => {
            wire::conflict_because(StatusCode::OK, &reason)
        }
        // The reference answers a size of zero or less like one that does not fit (Q3).
        Err(Error::BadInput { field, .. }) if field == "memory" || field == "storage" => {
            wire::conflict_because(StatusCode::OK, &format!("not enough {field}"))
        }
        Err(e) => reply(e, UPDATE_STYLE),
    }
}

async fn detail_or_update(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(uid): Path<String>,
    method: Method,
    RawBody(raw): RawBody,
) -> Reply {
    let Some(uid) = path_number(&uid) else {
        return wire::not_found();
    };
    let container = if method == Method::POST {
        let value = match body::parse(&raw) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if body::is_falsy(&value) {
            return wire::forbidden();
        }
        let Some(object) = value.as_object() else {
            return wire::bad_request();
        };
        let change = match container_change(object) {
            Ok(c) => c,
            Err(r) => return r,
        };
        state.service.update_container(&caller, uid, change).await
    } else {
        state.service.container(&caller, uid).await
    };
    let container = match container {
        Ok(c) => c,
        Err(Error::Conflict(reason)) => return wire::conflict_because(StatusCode::CONFLICT, &reason),
        Err(Error::BadInput { field, reason }) => {
            return wire::conflict_because(StatusCode::CONFLICT, &format!("invalid {field}: {reason}"))
        }
        Err(e) => return reply(e, UPDATE_STYLE),
    };
    match describe(&state.service, &caller, vec![container], true).await {
        Ok(mut items) => wire::ok_json(&items.pop().unwrap_or(Value::Null)),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}

/// The keys of an update, read the way the reference coerces them. A value of the wrong
/// shape is a 409 with the field's name, except `ssh_keys`/`tags` not being lists (400).
fn container_change(o: &Map<String, Value>) -> Result<ContainerChange, Reply> {
    let invalid = |field: &str| wire::conflict_because(StatusCode::CONFLICT, &format!("invalid {field}"));
    let text = |field: &str| -> Result<Option<Option<String>>, Reply> {
        o.get(field).map(|v| text_like(v).ok_or_else(|| invalid(field))).transpose()
    };
    let int = |field: &str| -> Result<Option<i64>, Reply> {
        o.get(field).map(|v| int_like(v).ok_or_else(|| invalid(field))).transpose()
    };
    let flag = |field: &str| -> Result<Option<bool>, Reply> {
        o.get(field).map(|v| bool_like(v).ok_or_else(|| invalid(field))).transpose()
    };
    let list = |field: &str| -> Result<Option<Vec<String>>, Reply> {
        o.get(field).map(|v| string_list(v).ok_or_else(wire::bad_request)).transpose()
    };
    let name = match text("name")? {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return Err(invalid("name")),
    };
    let nullable_int = |field: &str| -> Result<Option<Option<i64>>, Reply> {
        match o.get(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(v) => int_like(v).map(|i| Some(Some(i))).ok_or_else(|| invalid(field)),
        }
    };
    Ok(ContainerChange {
        name,
        note: text("note")?,
        quota_threshold: int("quota_threshold")?,
        jid: text("jid")?,
        jid_secret: text("jid_secret")?,
        jid_destinations: text("jid_destinations")?,
        nofollow: flag("nofollow")?,
        pushover_user: text("pushover_user")?,
        pushover_token: text("pushover_token")?,
        pushover_sound: text("pushover_sound")?,
        alarm_freq: int("alarm_freq")?,
        pushbullet_token: text("pushbullet_token")?,
        slack_webhook: text("slack_webhook")?,
        webhook_url: text("webhook_url")?,
        custom_distros_storage: flag("custom_distros_storage")?,
        ssh_keys: list("ssh_keys")?,
        distro: nullable_int("distro")?,
        custom_distro: nullable_int("custom_distro")?,
        memory: int("memory")?,
        storage: int("storage")?,
        // §4.3 step 5: on a server the customer does not own, memory and storage are ignored.
        sizes_elsewhere: SizesElsewhere::Ignored,
        tags: list("tags")?,
        link: int("link")?,
        unlink: int("unlink")?,
        // Q29, replicated: the presence of the key reboots, whatever its value.
        reboot: o.contains_key("reboot"),
    })
}

/// Container objects as the reference shows them: the summary of the list, or the detail.
async fn describe(
    service: &Service,
    caller: &Caller,
    list: Vec<Container>,
    detail: bool,
) -> berth_service::Result<Vec<Value>> {
    let ids: Vec<i64> = list.iter().map(|c| c.id).collect();
    let server_ids: Vec<i64> = list.iter().map(|c| c.server_id).collect();
    let servers = service.servers_by_ids(caller, &server_ids).await?;
    let tags = service.tags_of_containers(caller, &ids).await?;
    let distro_ids: Vec<i64> = list.iter().filter_map(|c| c.distro_id).collect();
    let distros = service.distros_by_ids(caller, &distro_ids).await?;
    let custom_ids: Vec<i64> = list.iter().filter_map(|c| c.custom_distro_id).collect();
    let customs = service.custom_distros_by_ids(caller, &custom_ids).await?;
    let (links, legions) = if detail {
        (service.links_of_containers(caller, &ids).await?, service.legion_addresses_of_containers(caller, &ids).await?)
    } else {
        Default::default()
    };
    Ok(list
        .into_iter()
        .map(|c| {
            let server = servers.get(&c.server_id);
            let distro_name = c.distro_id.and_then(|d| distros.get(&d)).map(|d| d.name.clone());
            let custom_name = c.custom_distro_id.and_then(|d| customs.get(&d)).map(|d| d.name.clone());
            let mut v = json!({
                "uid": c.uid(),
                "name": c.name,
                "hostname": c.hostname(),
                "ip": c.ip(),
                "memory": c.memory,
                "storage": c.storage,
                "uuid": c.uuid,
                "distro": c.distro_id,
                "distro_name": distro_name,
                "server": server.map(|s| s.name.clone()),
                "server_address": server.map(|s| s.address.clone()),
                "tags": tags.get(&c.id).cloned().unwrap_or_default(),
                "custom_distro": c.custom_distro_id,
            });
            let o = v.as_object_mut().expect("json! object");
            if detail {
                let extra = json!({
                    "jid": c.jid,
                    "jid_destinations": c.jid_destinations,
                    "pushover_user": c.pushover_user,
                    "pushover_token": c.pushover_token,
                    "pushover_sound": c.pushover_sound,
                    "pushbullet_token": c.pushbullet_token,
                    "slack_webhook": c.slack_webhook,
                    "webhook_url": c.webhook_url,
                    "alarm_freq": c.alarm_freq,
                    "quota_threshold": c.quota_threshold,
                    "nofollow": c.nofollow,
                    "note": c.note,
                    "linked_to": links.get(&c.id).cloned().unwrap_or_default(),
                    "custom_distros_storage": c.custom_distros_storage,
                    "secret_uuid": c.secret_uuid,
                    "ssh_keys": c.ssh_keys(),
                    "legion_address": legions.get(&c.id).cloned().unwrap_or_default(),
                    "generation": c.generation,
                });
                o.extend(extra.as_object().expect("json! object").clone());
                // Q6, replicated: the detail names the custom distro only when one is set.
                if let Some(name) = custom_name {
                    o.insert("custom_distro_name".into(), Value::String(name));
                }
            } else {
                o.insert("custom_distro_name".into(), custom_name.map_or(Value::Null, Value::String));
            }
            v
        })
        .collect())
}

async fn domains_today(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(uid): Path<String>,
    method: Method,
) -> Reply {
    if method != Method::GET {
        return wire::method_not_allowed();
    }
    let Some(uid) = path_number(&uid) else {
        return wire::not_found();
    };
    match state.service.container_domains(&caller, uid).await {
        Ok(domains) => wire::ok_json(
            &domains.iter().map(|d| json!({ "id": d.id, "uuid": d.uuid, "name": d.name })).collect::<Vec<_>>(),
        ),
        Err(e) => reply(e, Answers { not_found: wire::not_found, ..FORBIDDEN_STYLE }),
    }
}

async fn regenerate_secret_uuid(
    State(state): State<AppState>,
    Customer(caller): Customer,
    Path(uid): Path<String>,
) -> Reply {
    let Some(uid) = path_number(&uid) else {
        return wire::not_found();
    };
    match state.service.regenerate_secret_uuid(&caller, uid).await {
        Ok(_) => wire::ok_message(),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}
