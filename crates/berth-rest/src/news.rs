//! `news` (spec §4.13): public, never 401; credentials that authenticate see private items.

use axum::routing::any;
use axum::Router;
use serde_json::json;

use crate::auth::MaybeCustomer;
use crate::errors::{reply, FORBIDDEN_STYLE};
use crate::wire::{self, Reply};
use crate::{route, AppState};

pub fn router() -> Router<AppState> {
    route(Router::new(), "/news", any(list))
}

async fn list(
    axum::extract::State(state): axum::extract::State<AppState>,
    MaybeCustomer(caller): MaybeCustomer,
) -> Reply {
    match state.service.news(caller.as_ref()).await {
        Ok(items) => wire::ok_json(
            &items.iter().map(|n| json!({ "content": n.content, "date": n.created_at })).collect::<Vec<_>>(),
        ),
        Err(e) => reply(e, FORBIDDEN_STYLE),
    }
}
