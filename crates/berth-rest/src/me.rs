//! `me` (spec §4.1): the account; POST updates it.

use axum::extract::State;
use axum::http::Method;
use axum::routing::any;
use axum::Router;
use berth_service::account::AccountChange;
use berth_service::Caller;
use serde_json::{json, Value};

use crate::auth::Customer;
use crate::body::{self, RawBody};
use crate::errors::{reply, FORBIDDEN_STYLE};
use crate::wire::{self, Reply};
use crate::{route, AppState};

pub fn router() -> Router<AppState> {
    route(Router::new(), "/me", any(me))
}

async fn me(State(state): State<AppState>, Customer(caller): Customer, method: Method, RawBody(raw): RawBody) -> Reply {
    if method == Method::POST {
        let object = match body::object_or_empty(&raw) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let change = match account_change(&object) {
            Some(c) => c,
            None => return wire::bad_request(),
        };
        if let Err(e) = state.service.update_me(&caller, change).await {
            return reply(e, FORBIDDEN_STYLE);
        }
    }
    match describe(&state, &caller).await {
        Ok(v) => wire::ok_json(&v),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}

/// The keys the reference honours; others are ignored.
fn account_change(object: &serde_json::Map<String, Value>) -> Option<AccountChange> {
    let text = |key: &str| -> Option<Option<Option<String>>> {
        match object.get(key) {
            None => Some(None),
            Some(v) => crate::values::text_like(v).map(Some),
        }
    };
    Some(AccountChange {
        email: text("email")?.map(Option::unwrap_or_default),
        company: text("company")?,
        vat: text("vat")?,
        password: match text("password")? {
            None => None,
            Some(Some(p)) => Some(p),
            Some(None) => return None,
        },
    })
}

async fn describe(state: &AppState, caller: &Caller) -> berth_service::Result<Value> {
    let me = state.service.me(caller).await?;
    let containers = state.service.my_container_uids(caller).await?;
    let servers: Vec<String> = state.service.my_servers(caller).await?.into_iter().map(|s| s.address).collect();
    Ok(json!({
        "email": me.email,
        "vat": me.vat,
        "company": me.company,
        "uuid": me.uuid,
        "containers": containers,
        "servers": servers,
    }))
}
