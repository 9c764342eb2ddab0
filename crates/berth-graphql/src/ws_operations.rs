//! The operations of one WebSocket connection: how one starts (the limits, the checks
//! before it runs, identical subscriptions shared), and the running ones by id, whose
//! results the connection writes as they come.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_graphql::Response;
use berth_service::{Caller, Service};
use futures::stream::{self, BoxStream};
use futures::StreamExt as _;

use crate::websocket::{MAX_QUERIES_PER_SOCKET, MAX_SUBSCRIPTIONS_PER_SOCKET, MAX_SUBSCRIPTION_DOCUMENT};
use crate::ws_messages::{OperationMessages, Payload, WsProtocol};

/// Starts the operations of one authenticated connection as `/graphql` runs one: with the
/// caller's own DataLoaders, `extensions.code` on every error, and the span, latency and
/// error count of a query; subscriptions with their span and the open-subscriptions gauge.
pub(crate) struct OperationRunner {
    pub(crate) schema: crate::BerthSchema,
    pub(crate) service: Service,
    pub(crate) metrics: crate::GraphqlMetrics,
    pub(crate) shared: crate::shared_streams::SharedStreams,
    pub(crate) caller: Caller,
    /// The connection's span: the parent of its operations' spans.
    pub(crate) span: tracing::Span,
    /// Subscriptions of this connection whose streams are alive.
    pub(crate) subscriptions: Arc<AtomicUsize>,
    /// Queries and mutations of this connection not answered yet.
    pub(crate) queries: Arc<AtomicUsize>,
    /// What this connection's subscriptions have not read yet.
    pub(crate) unread: Arc<crate::lag_queue::LagBudget>,
}

impl OperationRunner {
    /// The results of `request`, each serialized once; an operation refused before it runs
    /// answers once with the refusal.
    pub(crate) fn start(&self, request: async_graphql::Request) -> BoxStream<'static, Arc<Payload>> {
        use tracing::Instrument as _;
        if let Some(problem) = crate::operation::nesting_problem(&request.query) {
            return answer_once(bad_user_input(problem));
        }
        let mut request = crate::prepare_request(request, &self.service, Some(self.caller));
        let subscription = crate::shared_streams::is_subscription(&mut request);
        let document = request.query.len() + crate::shared_streams::json_len(&request.variables);
        if subscription && document > MAX_SUBSCRIPTION_DOCUMENT {
            return answer_once(bad_user_input(format!(
                "a subscription's document and variables may be at most {MAX_SUBSCRIPTION_DOCUMENT} bytes; \
                 this one is {document}"
            )));
        }
        if let Some(problem) = crate::operation::subscription_root_problem(&mut request) {
            return answer_once(bad_user_input(problem));
        }
        if !subscription {
            // Queries and mutations (both protocols send them as subscriptions) answer once.
            let Some(place) = OperationPlace::take(&self.queries, MAX_QUERIES_PER_SOCKET) else {
                return answer_once(too_many_queries());
            };
            let (schema, metrics) = (self.schema.clone(), self.metrics.clone());
            let run = async move {
                let _held = place;
                let mut response = crate::telemetry::execute_observed(&schema, &metrics, request).await;
                crate::error::ensure_codes(&mut response);
                Arc::new(Payload::new(&response))
            };
            return stream::once(run.instrument(self.span.clone())).boxed();
        }
        let Some(place) = OperationPlace::take(&self.subscriptions, MAX_SUBSCRIPTIONS_PER_SOCKET) else {
            return answer_once(too_many_subscriptions());
        };
        let open = self.metrics.open_subscription();
        let span = crate::telemetry::subscription_span(&self.metrics, &self.span, &mut request);
        let schema = self.schema.clone();
        let run = move |request: async_graphql::Request| {
            schema
                .execute_stream(request)
                .map(|mut response| {
                    crate::error::ensure_codes(&mut response);
                    response
                })
                .boxed()
        };
        // Identical subscriptions of one customer share one execution.
        self.shared
            .subscribe(self.caller.customer_id, request, &self.unread, run)
            .map(move |payload| {
                let _held = (&open, &place);
                if let Some(code) = payload.error_code() {
                    span.record("ended_by", code);
                }
                payload
            })
            .boxed()
    }
}

/// A connection's running operations, polled together.
///
/// Each wake-up of the connection polls them all, from a turn that moves on so none
/// starves the others: with the usual one or few per connection that is cheaper than a
/// `SelectAll` (its own waker per operation, and an abort handle each to stop one), and a
/// stopped operation is dropped at once, giving back its place and unread bytes.
pub(crate) struct Operations {
    protocol: WsProtocol,
    running: Vec<Running>,
    turn: usize,
}

struct Running {
    id: Box<str>,
    results: BoxStream<'static, Arc<Payload>>,
    messages: OperationMessages,
    answered: bool,
}

impl Operations {
    pub(crate) fn new(protocol: WsProtocol) -> Operations {
        Operations { protocol, running: Vec::new(), turn: 0 }
    }

    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.position(id).is_some()
    }

    /// Whether no operation is running (then [`Operations::next`] has nothing to wait for).
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.running.iter().position(|r| &*r.id == id)
    }

    /// Runs `results` under `id`, dropping whatever ran under it.
    pub(crate) fn start(&mut self, id: &str, results: BoxStream<'static, Arc<Payload>>) {
        self.stop(id);
        let messages = OperationMessages::new(self.protocol, id);
        self.running.push(Running { id: id.into(), results, messages, answered: false });
    }

    /// Stops operation `id` at the client's request; its `complete`, if it was running.
    pub(crate) fn stop(&mut self, id: &str) -> Option<String> {
        let stopped = self.running.swap_remove(self.position(id)?);
        Some(stopped.messages.complete())
    }

    /// The next message to write for a running operation; `None` once none runs.
    pub(crate) async fn next(&mut self) -> Option<String> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<String>> {
        use std::task::Poll;
        let count = self.running.len();
        if count == 0 {
            return Poll::Ready(None);
        }
        for k in 0..count {
            let i = (self.turn + k) % count;
            match self.running[i].results.poll_next_unpin(cx) {
                Poll::Ready(Some(payload)) => {
                    self.turn = i + 1;
                    return Poll::Ready(Some(self.message(i, &payload)));
                }
                Poll::Ready(None) => return Poll::Ready(Some(self.running.swap_remove(i).messages.complete())),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    fn message(&mut self, i: usize, payload: &Payload) -> String {
        let running = &mut self.running[i];
        let first = !std::mem::replace(&mut running.answered, true);
        match payload.request_errors() {
            // Refused before it ran: graphql-transport-ws ends it with `error`, and no
            // `complete` follows.
            Some(errors) if first && self.protocol == WsProtocol::TransportWs => {
                self.running.swap_remove(i).messages.error(errors)
            }
            _ => running.messages.result(payload),
        }
    }
}

/// One of a connection's [`MAX_SUBSCRIPTIONS_PER_SOCKET`] (or [`MAX_QUERIES_PER_SOCKET`])
/// places, held by an operation's stream and given back when the stream ends or is dropped
/// (its answer, client `complete`/`stop`, the connection's end).
struct OperationPlace(Arc<AtomicUsize>);

impl OperationPlace {
    fn take(count: &Arc<AtomicUsize>, limit: usize) -> Option<OperationPlace> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| OperationPlace(count.clone()))
    }
}

impl Drop for OperationPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The one answer to a subscription over the connection's limit.
fn too_many_subscriptions() -> Response {
    let message = format!(
        "at most {MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions may run at once on one connection: \
         complete one, or open another connection"
    );
    refused_operation(message, "TOO_MANY_SUBSCRIPTIONS")
}

/// The one answer to a query or mutation over the connection's limit.
fn too_many_queries() -> Response {
    let message = format!(
        "at most {MAX_QUERIES_PER_SOCKET} queries and mutations may run at once on one connection: \
         wait for their answers"
    );
    refused_operation(message, "TOO_MANY_OPERATIONS")
}

fn bad_user_input(message: String) -> Response {
    refused_operation(message, crate::ErrorCode::BadUserInput.as_str())
}

/// An operation's only answer, as its stream.
fn answer_once(response: Response) -> BoxStream<'static, Arc<Payload>> {
    stream::once(std::future::ready(Arc::new(Payload::new(&response)))).boxed()
}

/// The one answer to an operation refused before it runs, with its `extensions.code`.
fn refused_operation(message: String, code: &str) -> Response {
    let mut error = async_graphql::ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    Response::from_errors(vec![error])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(data: serde_json::Value) -> Arc<Payload> {
        Arc::new(Payload::new(&Response::new(async_graphql::Value::from_json(data).unwrap())))
    }

    fn parsed(message: Option<String>) -> serde_json::Value {
        serde_json::from_str(&message.expect("a message")).unwrap()
    }

    #[tokio::test]
    async fn results_then_complete_and_a_refusal_ends_with_error_alone() {
        let mut ops = Operations::new(WsProtocol::TransportWs);
        ops.start("a", stream::iter([payload(serde_json::json!({ "n": 1 }))]).boxed());
        assert_eq!(
            parsed(ops.next().await),
            serde_json::json!({ "type": "next", "id": "a", "payload": { "data": { "n": 1 } } })
        );
        assert_eq!(parsed(ops.next().await), serde_json::json!({ "type": "complete", "id": "a" }));
        assert!(!ops.is_running("a"), "its id is free again");

        ops.start("b", answer_once(too_many_queries()));
        let error = parsed(ops.next().await);
        assert_eq!((error["type"].as_str(), error["id"].as_str()), (Some("error"), Some("b")));
        assert_eq!(error["payload"][0]["extensions"]["code"], "TOO_MANY_OPERATIONS");
        assert!(!ops.is_running("b"));
        assert!(ops.next().await.is_none(), "no complete follows an error");

        // The legacy protocol has no `error` for it: a result carrying the errors, then `complete`.
        let mut legacy = Operations::new(WsProtocol::Legacy);
        legacy.start("c", answer_once(too_many_queries()));
        assert_eq!(parsed(legacy.next().await)["type"], "data");
        assert_eq!(parsed(legacy.next().await)["type"], "complete");
    }

    #[tokio::test]
    async fn a_stopped_or_replaced_operation_says_nothing_more() {
        let mut ops = Operations::new(WsProtocol::Legacy);
        ops.start("a", stream::pending().boxed());
        assert_eq!(parsed(ops.stop("a")), serde_json::json!({ "type": "complete", "id": "a" }));
        assert!(ops.stop("a").is_none(), "stopped once");
        // Replaced under the same id: only the new run is heard.
        ops.start("b", stream::iter([payload(serde_json::json!({ "old": true }))]).chain(stream::pending()).boxed());
        ops.start("b", stream::iter([payload(serde_json::json!({ "new": true }))]).boxed());
        assert_eq!(parsed(ops.next().await)["payload"]["data"], serde_json::json!({ "new": true }));
        assert_eq!(parsed(ops.next().await)["type"], "complete");
        assert!(ops.next().await.is_none(), "the stopped ones are gone");
    }
}
