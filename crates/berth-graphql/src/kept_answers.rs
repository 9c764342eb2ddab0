//! Answers of queries, kept per customer and served again while nothing the customer can
//! read has changed.
//!
//! Every committed change of a row a customer can read moves that customer's data version
//! (or the shared one) in the database, in the writing transaction, whichever process
//! commits it: triggers do it (`berth-store` migration 0007), so no write path can forget.
//! A kept answer carries the [`ReadStamp`] taken *before* it was computed (those versions and
//! the UTC day, since some fields show today's figures). A request rechecks that stamp and
//! is given the kept answer only if the customer's reads are where it says. The recheck is
//! free while nothing at all has been committed since (SQLite's shared wal-index header,
//! `berth-store`'s `wal_index.rs`) and one point read otherwise. A change that commits
//! while an answer is being computed has moved the version past the one the answer carries,
//! so that answer is never served. Because the check looks at the database (its shared
//! header, or its rows) rather than waiting for a notice, a write is seen by the next
//! request on every gateway and after `berth admin`, exactly as without this table.
//!
//! Kept: queries (never mutations or subscriptions) of an authenticated customer, answered
//! without errors, that select no field in [`VOLATILE_FIELDS`]. The customer is part of the
//! key, so one tenant's answer is never even looked up for another's request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use berth_service::read_stamp::{ReadStamp, Recheck};
use berth_service::Caller;

use crate::http::GraphqlParts;

/// Fields whose value does not move the data versions, so an answer selecting one is never
/// kept: `logs` comes from the agent running the container; the metric series, a
/// container's memory and disk use, and a token's `lastUsedAt` are written all the time (a
/// sample per container every minute, every bearer request), so migration 0007 leaves them
/// out rather than move the customer's version that often.
pub(crate) const VOLATILE_FIELDS: &[&str] =
    &["logs", "containerMetrics", "domainMetrics", "memoryUsed", "diskUsed", "lastUsedAt"];

/// MiB of answers (with their keys) kept at most unless the operator says otherwise
/// (`--kept-answers-mib`); the least used go first past it.
pub const DEFAULT_KEPT_ANSWERS_MIB: u64 = 64;
/// Larger answers, and answers to longer query texts, are computed every time.
const MAX_ANSWER: usize = 1024 * 1024;
const MAX_QUERY: usize = 8 * 1024;
/// An answer nobody asked for this long is dropped.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Hash, PartialEq, Eq)]
struct Key {
    customer_id: i64,
    query: String,
    operation_name: Option<String>,
    /// The variables as JSON: names sorted, input objects in the order sent, so the same
    /// object spelled in another order is another key (computed once more, never wrong).
    variables: String,
}

struct Kept {
    stamp: ReadStamp,
    /// The operation's metrics label, to count a served answer as the operation it is.
    label: String,
    body: Bytes,
}

/// `None` when the operator keeps no answers.
pub(crate) struct KeptAnswers(Option<moka::sync::Cache<Arc<Key>, Arc<Kept>>>);

impl KeptAnswers {
    /// A table of at most `budget` bytes.
    pub(crate) fn new(budget: u64) -> Self {
        if budget == 0 {
            return KeptAnswers(None);
        }
        KeptAnswers(Some(
            moka::sync::Cache::builder()
                .max_capacity(budget)
                .weigher(|key: &Arc<Key>, kept: &Arc<Kept>| {
                    let bytes = key.query.len() + key.variables.len() + kept.body.len() + 128;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .time_to_idle(IDLE)
                .build(),
        ))
    }

    /// The caller's answer to `request` as JSON: the kept one when nothing the caller can
    /// read changed since it was computed, else computed now (and kept when it may be).
    /// When the stamp cannot be read, the request runs as if nothing were kept.
    pub(crate) async fn answer(&self, parts: &GraphqlParts, caller: Caller, request: async_graphql::Request) -> Bytes {
        let started = Instant::now();
        let Some(table) = self.0.as_ref().filter(|_| request.query.len() <= MAX_QUERY) else {
            return computed(parts, caller, request).await.0;
        };
        // Variables that do not serialize (none should) are never a key: two requests
        // differing only in them must not share an answer.
        let Ok(variables) = serde_json::to_string(&request.variables) else {
            return computed(parts, caller, request).await.0;
        };
        let key = Arc::new(Key {
            customer_id: caller.customer_id,
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            variables,
        });
        let mut stamp_now = None;
        if let Some(kept) = table.get(&key) {
            match parts.service.recheck_stamp(&caller, &kept.stamp).await {
                Ok(Recheck::Unchanged) => {
                    parts.metrics.kept_answer_served(&kept.label, started);
                    return kept.body.clone();
                }
                Ok(Recheck::Same(now)) => {
                    // Kept under the stamp just read, so the next request finds it unchanged
                    // without a read until something is committed again.
                    let refreshed = Kept { stamp: now, label: kept.label.clone(), body: kept.body.clone() };
                    table.insert(key, Arc::new(refreshed));
                    parts.metrics.kept_answer_served(&kept.label, started);
                    return kept.body.clone();
                }
                Ok(Recheck::Moved(now)) => stamp_now = Some(now),
                Err(_) => return computed(parts, caller, request).await.0,
            }
        }
        let mut request = crate::parsed_queries::attach(request);
        if !may_be_kept(&mut request) {
            return computed_parsed(parts, caller, request).await.0;
        }
        // Taken before the answer is computed: a change committed meanwhile then moves the
        // version away from the one the answer is kept under.
        let stamp = match stamp_now {
            Some(stamp) => stamp,
            None => match parts.service.read_stamp(&caller).await {
                Ok(stamp) => stamp,
                Err(_) => return computed_parsed(parts, caller, request).await.0,
            },
        };
        let (body, label, ok) = computed_parsed(parts, caller, request).await;
        if ok && body.len() <= MAX_ANSWER {
            table.insert(key, Arc::new(Kept { stamp, label, body: body.clone() }));
        }
        body
    }
}

/// A query selecting nothing volatile; the document is parsed already.
fn may_be_kept(request: &mut async_graphql::Request) -> bool {
    crate::operation::selected_type(request) == Some(OperationType::Query)
        && request.parsed_query().is_ok_and(|doc| !crate::operation::selects_any_of(doc, VOLATILE_FIELDS))
}

async fn computed(parts: &GraphqlParts, caller: Caller, request: async_graphql::Request) -> (Bytes, String, bool) {
    computed_parsed(parts, caller, crate::parsed_queries::attach(request)).await
}

/// The answer run now: its JSON, its operation's label, and whether it may be kept (no
/// errors, no HTTP headers of its own).
async fn computed_parsed(
    parts: &GraphqlParts,
    caller: Caller,
    mut request: async_graphql::Request,
) -> (Bytes, String, bool) {
    let label = parts.metrics.operation_label(&mut request);
    let request = crate::with_request_data(request, &parts.service, Some(caller));
    let mut response = crate::telemetry::execute_labelled(&parts.schema, &parts.metrics, label.clone(), request).await;
    crate::error::ensure_codes(&mut response);
    let ok = response.is_ok() && response.http_headers.is_empty();
    let body = serde_json::to_vec(&response).map(Bytes::from).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a GraphQL response did not serialize");
        let body = crate::http::error_body("internal error", crate::error::ErrorCode::Internal);
        Bytes::from(body.to_string())
    });
    (body, label, ok)
}
