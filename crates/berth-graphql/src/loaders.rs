//! The request's DataLoaders, each built the first time one of its fields asks for it.
//!
//! Most operations (`me`, a mutation, an alarm listing) load no relation at all; building
//! all dozen loaders up front cost every request a few dozen allocations for nothing.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::Context;
use berth_service::{Caller, Service};

/// A relation batched per request, by row id, for one caller.
pub(crate) trait RequestLoader: Loader<i64, Error = async_graphql::Error> + Sized {
    fn for_caller(service: &Service, caller: Caller) -> Self;

    /// How long the loader collects keys before running its batch.
    fn delay() -> Duration {
        crate::containers::loader_delay()
    }
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
        let loader = Arc::new(DataLoader::new(L::for_caller(service, *caller), tokio::spawn).delay(L::delay()));
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
