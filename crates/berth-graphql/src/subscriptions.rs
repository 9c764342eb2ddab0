//! Live subscriptions over `/graphql/ws`: the caller's alarms and container events.
//! A subscriber that falls behind gets one error saying so (`SUBSCRIBER_LAGGED`) and its
//! stream ends; so does one whose event stream was interrupted (`SUBSCRIPTION_INTERRUPTED`).

use async_graphql::{Context, Enum, SimpleObject, Subscription};
use berth_service::events::{Subscription as Feed, SubscriptionEnd};
use futures::stream::{self, Stream};

use crate::alarms::Alarm;
use crate::error::GqlResult;
use crate::{caller, service};

/// What happened to the container.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum ContainerEventKind {
    /// Created (by you or by the operator).
    Created,
    /// Changed without a restart.
    Updated,
    /// Changed in a way that restarts it (the generation moved forward).
    Restart,
    /// Its server's agent observed a new state.
    State,
    /// Removed by the operator.
    Deleted,
}

impl From<berth_model::ContainerEventKind> for ContainerEventKind {
    fn from(k: berth_model::ContainerEventKind) -> Self {
        use berth_model::ContainerEventKind as K;
        match k {
            K::Created => ContainerEventKind::Created,
            K::Updated => ContainerEventKind::Updated,
            K::Restart => ContainerEventKind::Restart,
            K::State => ContainerEventKind::State,
            K::Deleted => ContainerEventKind::Deleted,
        }
    }
}

#[derive(SimpleObject)]
pub struct ContainerEvent {
    /// Container uid.
    pub container: i64,
    pub kind: ContainerEventKind,
    /// Desired generation after the change.
    pub generation: i64,
    /// Observed state, when the agent reported one.
    pub state: Option<String>,
}

#[derive(Default)]
pub struct SubscriptionRoot;

fn ended(end: SubscriptionEnd) -> async_graphql::Error {
    let code = match end {
        SubscriptionEnd::Lagged(_) => "SUBSCRIBER_LAGGED",
        SubscriptionEnd::Closed => "SUBSCRIPTION_INTERRUPTED",
    };
    async_graphql::Error::new(end.to_string()).extend_with(|_, ext| ext.set("code", code))
}

use async_graphql::ErrorExtensions as _;

/// Turns a feed into a stream that yields items until the feed ends, then one error saying
/// why (events may have been missed either way).
fn stream_of<T, F, Fut>(feed: Feed, next: F) -> impl Stream<Item = async_graphql::Result<T>>
where
    F: Fn(Feed) -> Fut + Copy,
    Fut: std::future::Future<Output = (Feed, Result<T, SubscriptionEnd>)>,
{
    stream::unfold(Some(feed), move |state| async move {
        let feed = state?;
        match next(feed).await {
            (feed, Ok(item)) => Some((Ok(item), Some(feed))),
            (_, Err(end)) => Some((Err(ended(end)), None)),
        }
    })
}

#[Subscription]
impl SubscriptionRoot {
    /// Alarms of the caller's containers as they are raised, optionally of one container
    /// (uid) and/or one level.
    async fn alarms(
        &self,
        ctx: &Context<'_>,
        container: Option<i64>,
        level: Option<i64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Alarm>>> {
        let caller = caller(ctx)?;
        let feed = service(ctx).subscribe(&caller, container, level).await.gql()?;
        Ok(stream_of(feed, |mut feed| async move {
            let item = feed.next_alarm().await.map(Alarm);
            (feed, item)
        }))
    }

    /// Changes of the caller's containers (desired and observed), optionally of one.
    async fn container_events(
        &self,
        ctx: &Context<'_>,
        container: Option<i64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ContainerEvent>>> {
        let caller = caller(ctx)?;
        let feed = service(ctx).subscribe(&caller, container, None).await.gql()?;
        Ok(stream_of(feed, |mut feed| async move {
            let item = feed.next_container_event().await.map(|e| ContainerEvent {
                container: berth_model::uid_of(e.container_id),
                kind: e.kind.into(),
                generation: e.generation,
                state: e.state,
            });
            (feed, item)
        }))
    }
}
