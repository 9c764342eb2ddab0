//! The request's DataLoaders: one per relation, defined by [`batch_loader!`], each built the
//! first time one of the request's fields asks for it, and [`load`], which every relation
//! resolver calls.
//!
//! Most operations (`me`, a mutation, an alarm listing) load no relation at all; building
//! all dozen loaders up front cost every request a few dozen allocations for nothing.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::Context;
use berth_service::{Caller, Service};

/// How long a loader collects keys before it runs its batch. The default 1 ms is shorter
/// than resolving a page of 100 nodes takes in a debug build, which split batches; a few
/// milliseconds keep one statement per relation at a small latency cost.
pub const LOADER_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

static LOADER_DELAY_MICROS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(LOADER_DELAY.as_micros() as u64);

/// Changes the batching delay of every DataLoader built from now on (process-wide). The
/// statement-count test sets a long one, so that a loaded machine resolving a page slower
/// than 5 ms cannot split a batch and the test measures the loader design alone.
pub fn set_loader_delay(delay: std::time::Duration) {
    LOADER_DELAY_MICROS.store(delay.as_micros().min(u128::from(u64::MAX)) as u64, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn loader_delay() -> std::time::Duration {
    std::time::Duration::from_micros(LOADER_DELAY_MICROS.load(std::sync::atomic::Ordering::Relaxed))
}

/// Defines a DataLoader for one relation: keys are row ids, the value comes from one
/// service batch method that takes the caller, so the batch holds only the caller's rows.
macro_rules! batch_loader {
    ($(#[$doc:meta])* $name:ident, $value:ty, $method:ident) => {
        $(#[$doc])*
        pub(crate) struct $name {
            service: berth_service::Service,
            caller: berth_service::Caller,
        }

        impl crate::loaders::RequestLoader for $name {
            fn for_caller(service: &berth_service::Service, caller: berth_service::Caller) -> Self {
                $name { service: service.clone(), caller }
            }
        }

        impl async_graphql::dataloader::Loader<i64> for $name {
            type Value = $value;
            type Error = async_graphql::Error;

            async fn load(&self, keys: &[i64]) -> Result<std::collections::HashMap<i64, $value>, Self::Error> {
                self.service.$method(&self.caller, keys).await.map_err(crate::gql_error)
            }
        }
    };
}
pub(crate) use batch_loader;

/// A relation batched per request, by row id, for one caller.
pub(crate) trait RequestLoader: Loader<i64, Error = async_graphql::Error> + Sized {
    fn for_caller(service: &Service, caller: Caller) -> Self;
}

type Built = Arc<dyn Any + Send + Sync>;

/// In the data of every authenticated request.
pub(crate) struct Loaders {
    /// What a loader is built for; `None` only in tests, whose loaders are preset.
    source: Option<(Service, Caller)>,
    /// A handful at most per request: a list beats a map.
    built: Mutex<Vec<(TypeId, Built)>>,
}

impl Loaders {
    pub(crate) fn new(service: &Service, caller: Caller) -> Loaders {
        Loaders { source: Some((service.clone(), caller)), built: Mutex::default() }
    }

    /// The request's loader `L`, built now if no field asked for it before.
    fn get<L: RequestLoader>(&self) -> Option<Arc<DataLoader<L>>> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, loader)) = built.iter().find(|(ty, _)| *ty == TypeId::of::<L>()) {
            return loader.clone().downcast().ok();
        }
        let (service, caller) = self.source.as_ref()?;
        let loader = Arc::new(DataLoader::new(L::for_caller(service, *caller), tokio::spawn).delay(loader_delay()));
        built.push((TypeId::of::<L>(), loader.clone()));
        Some(loader)
    }

    /// Loaders with `loader` already built and nothing to build others from.
    #[cfg(test)]
    pub(crate) fn preset<L: RequestLoader>(loader: DataLoader<L>) -> Loaders {
        let loader: Built = Arc::new(loader);
        Loaders { source: None, built: Mutex::new(vec![(TypeId::of::<L>(), loader)]) }
    }
}

/// The request's loader `L`; `None` for an anonymous request.
pub(crate) fn loader<L: RequestLoader>(ctx: &Context<'_>) -> Option<Arc<DataLoader<L>>> {
    ctx.data_opt::<Loaders>()?.get::<L>()
}

/// Loads one key through the request's loader of type `L`, unless its page prefetched it.
pub(crate) async fn load<L>(ctx: &Context<'_>, key: i64) -> async_graphql::Result<Option<L::Value>>
where
    L: RequestLoader,
{
    if let Some(answer) = ctx.data_opt::<crate::prefetch::Prefetched>().and_then(|p| p.get::<L>(key)) {
        return Ok(answer);
    }
    let loader = loader::<L>(ctx).ok_or_else(|| crate::gql_error(berth_service::Error::Unauthenticated))?;
    loader.load_one(key).await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use async_graphql::dataloader::{DataLoader, Loader};

    use super::{Loaders, RequestLoader};

    macro_rules! test_loader {
        ($name:ident) => {
            struct $name;

            impl RequestLoader for $name {
                fn for_caller(_: &berth_service::Service, _: berth_service::Caller) -> Self {
                    $name
                }
            }

            impl Loader<i64> for $name {
                type Value = i64;
                type Error = async_graphql::Error;

                async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, i64>, Self::Error> {
                    Ok(keys.iter().map(|k| (*k, *k)).collect())
                }
            }
        };
    }
    test_loader!(Built);
    test_loader!(NeverBuilt);

    #[tokio::test]
    async fn a_request_gets_one_loader_per_type_and_builds_none_without_a_caller() {
        let loaders = Loaders::preset(DataLoader::new(Built, tokio::spawn));
        let first = loaders.get::<Built>().expect("preset loader");
        let again = loaders.get::<Built>().expect("preset loader");
        assert!(Arc::ptr_eq(&first, &again), "a second field got a loader of its own: its batch would be split");
        assert_eq!(first.load_one(7).await.unwrap(), Some(7));
        assert!(loaders.get::<NeverBuilt>().is_none(), "built a loader with no caller to build it for");
    }
}
