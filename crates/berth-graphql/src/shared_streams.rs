//! Identical subscriptions share one execution.
//!
//! Ten thousand dashboards of one customer watching `subscription { alarms { id } }` used to
//! resolve, trace and build every alarm ten thousand times. Subscriptions with the same
//! customer, document, operation and variables now run once: a producer task executes the
//! subscription, serializes each response once ([`Payload`]) and broadcasts it; every
//! subscriber gets its own bounded receiver and only frames and writes the bytes. Tenancy is kept by the key (one customer's
//! subscriptions never share with another's), and so is the slow-subscriber rule: a
//! receiver that falls behind (by count, or by its connection's bytes: `crate::lag_queue`)
//! gets `SUBSCRIBER_LAGGED` and ends, the others go on.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};

use async_graphql::parser::types::OperationType;
use async_graphql::{Response, ServerError};
use futures::stream::{BoxStream, StreamExt as _};
use futures::FutureExt as _;
use prometheus_client::metrics::counter::Counter;

use crate::lag_queue::{LagBudget, LagQueue, Reader, Received};
use crate::ws_messages::Payload;

/// Messages a slow subscriber may fall behind before it is told and closed (as the event
/// bus's own per-subscriber queue).
const QUEUE: usize = 1024;

/// Largest subscription message. An alarm's is a few hundred bytes, or ~64 KiB with its
/// longest message; a 16 KiB document aliasing `message` a thousand times made one alarm an
/// 85 MB message for each subscriber to hold. A larger one ends the subscription
/// with `BAD_USER_INPUT` instead.
pub(crate) const MAX_MESSAGE: usize = 1024 * 1024;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    customer_id: i64,
    query: String,
    operation: Option<String>,
    variables: String,
}

#[derive(Clone)]
enum Item {
    Payload(Arc<Payload>),
    End,
}

/// One running execution and its subscribers (each holds an `Arc`; the last one gone stops
/// the producer).
struct Shared {
    key: Key,
    queue: Arc<LagQueue<Item>>,
    /// The response that ended the stream with an error, for a subscriber that joined just
    /// before the end and would otherwise see the end without the reason (set before the
    /// end is pushed).
    final_error: OnceLock<Arc<Payload>>,
    producer: OnceLock<tokio::task::AbortHandle>,
    registry: Weak<Mutex<HashMap<Key, Weak<Shared>>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(producer) = self.producer.get() {
            producer.abort();
        }
        if let Some(registry) = self.registry.upgrade() {
            let mut map = registry.lock().unwrap_or_else(PoisonError::into_inner);
            if map.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                map.remove(&self.key);
            }
        }
    }
}

/// The registry of running shared executions, one per gateway.
#[derive(Clone)]
pub(crate) struct SharedStreams {
    running: Arc<Mutex<HashMap<Key, Weak<Shared>>>>,
    /// Counts the subscribers cut off for falling behind.
    cut_off: Counter,
}

/// Whether `request` selects a subscription operation (queries and mutations sent over the
/// socket run on their own: they answer once).
pub(crate) fn is_subscription(request: &mut async_graphql::Request) -> bool {
    crate::operation::selected_type(request) == Some(OperationType::Subscription)
}

impl SharedStreams {
    pub(crate) fn new(cut_off: Counter) -> SharedStreams {
        SharedStreams { running: Arc::default(), cut_off }
    }

    /// The caller's stream of payloads for `request`: joins a running identical execution,
    /// or starts one with `execute` (called at most once; it must only build the stream).
    /// What the caller has not read yet is held against `budget` (its connection's).
    pub(crate) fn subscribe(
        &self,
        customer_id: i64,
        request: async_graphql::Request,
        budget: &Arc<LagBudget>,
        execute: impl FnOnce(async_graphql::Request) -> BoxStream<'static, Response>,
    ) -> BoxStream<'static, Arc<Payload>> {
        let key = Key {
            customer_id,
            query: request.query.clone(),
            operation: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
        };
        let (shared, rx, start) = {
            let mut map = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            match map.get(&key).and_then(Weak::upgrade) {
                Some(shared) => {
                    let rx = shared.queue.reader(budget.clone());
                    (shared, rx, false)
                }
                None => {
                    let queue = LagQueue::new(QUEUE);
                    let rx = queue.reader(budget.clone());
                    let shared = Arc::new(Shared {
                        key: key.clone(),
                        queue,
                        final_error: OnceLock::new(),
                        producer: OnceLock::new(),
                        registry: Arc::downgrade(&self.running),
                    });
                    map.insert(key, Arc::downgrade(&shared));
                    (shared, rx, true)
                }
            }
        };
        // Outside the registry's lock: `Shared::drop` takes it.
        if start {
            let producer = tokio::spawn(produce(execute(request), Arc::downgrade(&shared), self.clone()));
            let _ = shared.producer.set(producer.abort_handle());
        }
        receive(shared, rx, self.cut_off.clone())
    }

    /// Forgets `shared` so that later subscribers start a new execution.
    fn retire(&self, shared: &Arc<Shared>) {
        let mut map = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&shared.key).is_some_and(|w| w.as_ptr() == Arc::as_ptr(shared)) {
            map.remove(&shared.key);
        }
    }
}

/// Runs the execution and broadcasts each response; ends when the execution ends or when
/// every subscriber is gone (then it is aborted by the last `Shared` drop). An execution
/// that panics (a bug) ends its subscribers with an `INTERNAL` error, not in silence, and
/// is retired like one that ended, so later subscribers start anew.
async fn produce(mut responses: BoxStream<'static, Response>, shared: Weak<Shared>, registry: SharedStreams) {
    let mut last = None;
    loop {
        let next = std::panic::AssertUnwindSafe(responses.next()).catch_unwind().await;
        let Some(s) = shared.upgrade() else { return };
        let (response, ended) = match next {
            Ok(Some(response)) => (response, false),
            Ok(None) => break,
            // Logged by `gql_error`, as every internal error.
            Err(_) => (error_response(berth_service::Error::Internal("subscription execution panicked".into())), true),
        };
        let (payload, ended) = match Payload::new(&response) {
            payload if payload.len() > MAX_MESSAGE => (Payload::new(&too_large(payload.len())), true),
            payload => (payload, ended),
        };
        let payload = Arc::new(payload);
        let bytes = payload.len();
        last = Some(payload.clone());
        s.queue.push(Item::Payload(payload), bytes);
        if ended {
            break;
        }
    }
    if let Some(s) = shared.upgrade() {
        registry.retire(&s);
        if let Some(error) = last.filter(|p| p.is_error()) {
            let _ = s.final_error.set(error);
        }
        s.queue.push(Item::End, 0);
    }
}

fn too_large(len: usize) -> Response {
    let message = format!("a result of this subscription is {len} bytes, more than {MAX_MESSAGE}: select fewer fields");
    error_response(berth_service::Error::bad_input("subscription", message))
}

/// A response carrying only `e`, with its `extensions.code`.
fn error_response(e: berth_service::Error) -> Response {
    let mut response = Response::from_errors(vec![crate::gql_error(e).into_server_error(Default::default())]);
    crate::error::ensure_codes(&mut response);
    response
}

/// The length of `value` as JSON (what a connection writes of a response), without
/// building the text.
pub(crate) fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// One subscriber's view: its own receiver, cut off with `SUBSCRIBER_LAGGED` when it falls
/// behind.
fn receive(shared: Arc<Shared>, rx: Reader<Item>, cut_off: Counter) -> BoxStream<'static, Arc<Payload>> {
    Subscriber { shared, rx, last: None, done: false, cut_off }.boxed()
}

struct Subscriber {
    shared: Arc<Shared>,
    rx: Reader<Item>,
    /// The last payload read, to tell whether the final error was seen.
    last: Option<Arc<Payload>>,
    done: bool,
    cut_off: Counter,
}

impl futures::Stream for Subscriber {
    type Item = Arc<Payload>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Arc<Payload>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        Poll::Ready(match std::task::ready!(this.rx.poll_recv(cx)) {
            Received::Item(Item::Payload(p)) => {
                this.last = Some(p.clone());
                Some(p)
            }
            Received::Item(Item::End) => {
                this.done = true;
                let seen = |e: &&Arc<Payload>| this.last.as_ref().is_some_and(|l| Arc::ptr_eq(l, e));
                this.shared.final_error.get().filter(|e| !seen(e)).cloned()
            }
            Received::Missed(n) => {
                this.done = true;
                this.cut_off.inc();
                Some(Arc::new(Payload::new(&lagged(n))))
            }
        })
    }
}

fn lagged(missed: u64) -> Response {
    let end = berth_service::events::SubscriptionEnd::Lagged(missed);
    let mut error = ServerError::new(end.to_string(), None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "SUBSCRIBER_LAGGED");
    error.extensions = Some(extensions);
    Response::from_errors(vec![error])
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;

    #[tokio::test]
    async fn a_panicking_execution_ends_its_subscribers_with_an_error() {
        let streams = SharedStreams::new(Counter::default());
        let budget = LagBudget::new(1 << 20);
        let request = || async_graphql::Request::new("subscription { alarms { id } }");
        let panics = |_| stream::poll_fn(|_| -> std::task::Poll<Option<Response>> { panic!("a resolver bug") }).boxed();
        let mut subscriber = streams.subscribe(1, request(), &budget, panics);
        let error = subscriber.next().await.expect("an error, not silence");
        assert_eq!(error.error_code(), Some("INTERNAL"), "{error:?}");
        assert!(subscriber.next().await.is_none(), "then the end");
        // The dead execution is not joined: a later identical subscription starts anew.
        let answers = |_| stream::once(async { Response::new(async_graphql::Value::Null) }).boxed();
        let mut later = streams.subscribe(1, request(), &budget, answers);
        assert!(later.next().await.is_some_and(|r| !r.is_error()));
    }

    #[tokio::test]
    async fn a_result_too_large_ends_the_subscription() {
        let streams = SharedStreams::new(Counter::default());
        let budget = LagBudget::new(1 << 20);
        let huge = async_graphql::Value::String("m".repeat(MAX_MESSAGE + 1));
        let results = |_| stream::iter([Response::new(async_graphql::Value::Null), Response::new(huge)]).boxed();
        let mut subscriber = streams.subscribe(1, async_graphql::Request::new("subscription { a }"), &budget, results);
        assert!(subscriber.next().await.is_some_and(|r| !r.is_error()), "a small one passes");
        let refused = subscriber.next().await.expect("an error instead");
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "{refused:?}");
        assert!(subscriber.next().await.is_none());
    }
}
