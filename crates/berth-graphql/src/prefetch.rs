//! Relations of a page, loaded with the page.
//!
//! A node's relation goes through its DataLoader, which waits `LOADER_DELAY` to collect a
//! batch, runs it in a spawned task and answers every node through a channel of its own. For
//! a page the keys are known before any node resolves: the page's resolver looks ahead at
//! what the nodes select and runs each selected relation's batch at once, through that same
//! loader (`DataLoader::loader`), so what a caller may see is still decided in one place.
//! The nodes then find their values here. Anything not prefetched (another page of the same
//! request, a node reached another way) goes through its DataLoader as before.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;

use async_graphql::dataloader::Loader;
use async_graphql::Context;
use futures::future::BoxFuture;

/// Per request: for each loader type, the answer for every key prefetched (`None` when the
/// loader had no value for it, so such a key does not fall through to the loader).
#[derive(Default)]
pub(crate) struct Prefetched(Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>);

type Answers<L> = HashMap<i64, Option<<L as Loader<i64>>::Value>>;

impl Prefetched {
    /// The answer of loader `L` for `key`, if it was prefetched.
    pub(crate) fn get<L: Loader<i64>>(&self, key: i64) -> Option<Option<L::Value>> {
        let all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let answers = all.get(&TypeId::of::<L>())?.downcast_ref::<Answers<L>>()?;
        answers.get(&key).cloned()
    }

    fn keep<L: Loader<i64>>(&self, keys: &[i64], mut found: HashMap<i64, L::Value>) {
        let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let answers = all
            .entry(TypeId::of::<L>())
            .or_insert_with(|| Box::new(Answers::<L>::new()))
            .downcast_mut::<Answers<L>>()
            .expect("answers are stored under their loader's type");
        for key in keys {
            answers.insert(*key, found.remove(key));
        }
    }
}

/// Runs loader `L`'s batch for `keys` now and keeps the answers for the nodes. Without
/// the loader or the prefetch table in the request (anonymous), does nothing.
pub(crate) fn fill<'a, L>(
    ctx: &Context<'a>,
    keys: impl IntoIterator<Item = i64>,
) -> BoxFuture<'a, async_graphql::Result<()>>
where
    L: crate::loaders::RequestLoader,
{
    let mut keys: Vec<i64> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    let (Some(prefetched), Some(loader)) = (ctx.data_opt::<Prefetched>(), crate::loaders::loader::<L>(ctx)) else {
        return Box::pin(std::future::ready(Ok(())));
    };
    Box::pin(async move {
        if !keys.is_empty() {
            let found = loader.loader().load(&keys).await?;
            prefetched.keep::<L>(&keys, found);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_graphql::dataloader::{DataLoader, Loader};
    use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema};

    use super::{fill, Prefetched};

    /// Squares of even keys; odd keys have no value.
    struct Squares;

    impl crate::loaders::RequestLoader for Squares {
        fn for_caller(_: &berth_service::Service, _: berth_service::Caller) -> Self {
            Squares
        }
    }

    impl Loader<i64> for Squares {
        type Value = i64;
        type Error = async_graphql::Error;

        async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, i64>, Self::Error> {
            Ok(keys.iter().filter(|k| *k % 2 == 0).map(|k| (*k, k * k)).collect())
        }
    }

    struct Node(i64);

    #[Object]
    impl Node {
        async fn square(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<i64>> {
            crate::loaders::load::<Squares>(ctx, self.0).await
        }
    }

    struct Query;

    #[Object]
    impl Query {
        /// A page of keys 1..=4 that prefetches what its nodes select.
        async fn page(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Node>> {
            if ctx.look_ahead().field("square").exists() {
                fill::<Squares>(ctx, 1..=4).await?;
            }
            Ok((1..=4).map(Node).collect())
        }

        async fn one(&self, id: i64) -> Node {
            Node(id)
        }
    }

    /// Runs `query` with a fresh prefetch table and a loader whose batches are counted.
    async fn run(query: &str) -> (serde_json::Value, usize) {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let loader = DataLoader::new(Squares, move |batch| {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(batch)
        });
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let request = async_graphql::Request::new(query)
            .data(Prefetched::default())
            .data(crate::loaders::Loaders::preset(loader));
        let response = schema.execute(request).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        (response.data.into_json().unwrap(), batches.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_prefetched_page_needs_no_loader_batch() {
        let (data, batches) = run("{ page { square } }").await;
        assert_eq!(
            data,
            serde_json::json!({ "page": [{ "square": null }, { "square": 4 }, { "square": null }, { "square": 16 }] })
        );
        assert_eq!(batches, 0, "a prefetched key (even one without a value) went through the loader");
    }

    #[tokio::test]
    async fn keys_not_prefetched_still_use_the_loader() {
        let (data, batches) = run("{ page { square } one(id: 6) { square } }").await;
        assert_eq!(data["one"]["square"], 36);
        assert_eq!(data["page"][3]["square"], 16);
        assert_eq!(batches, 1);
    }
}
