//! Containers: the `Container` type with its relations (each behind a per-request
//! DataLoader), the `containers`/`container` queries and the container mutations.

use async_graphql::connection::{Connection, CursorType, Edge};
use async_graphql::{Context, InputObject, MaybeUndefined, Object};
use berth_service::containers::{ContainerChange, NewContainer};

use crate::cursor::IdCursor;
use crate::error::GqlResult;
use crate::loaders::{batch_loader, load};
use crate::{caller, gql_error, service};

batch_loader!(
    /// Server id → the server, if the caller may see it.
    ServerLoader, berth_model::Server, servers_by_ids
);
batch_loader!(
    /// Distro id → distro.
    DistroLoader, berth_model::Distro, distros_by_ids
);
batch_loader!(
    /// Container id → tag names.
    ContainerTagsLoader, Vec<String>, tags_of_containers
);
batch_loader!(
    /// Container id → uids it links to.
    LinkedToLoader, Vec<i64>, links_of_containers
);
batch_loader!(
    /// Container id → uids of the caller's containers linking to it.
    LinkedFromLoader, Vec<i64>, linked_from_containers
);
batch_loader!(
    /// Container id → its loopboxes.
    ContainerLoopboxesLoader, Vec<(berth_model::Loopbox, Vec<String>)>, loopboxes_of_containers
);
batch_loader!(
    /// Container id → legion addresses of its server.
    LegionLoader, Vec<String>, legion_addresses_of_containers
);
batch_loader!(
    /// Container id → the caller's domains it served today.
    ContainerDomainsLoader, Vec<berth_model::Domain>, domains_served_today
);

/// A container: the desired state the platform makes real.
pub struct Container(pub berth_model::Container);

#[Object]
impl Container {
    /// 30000 + internal id: the container's Unix uid and ssh login.
    async fn uid(&self) -> i64 {
        self.0.uid()
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Derived from the name: letters, digits and `-` kept, anything else becomes `-`.
    async fn hostname(&self) -> String {
        self.0.hostname()
    }
    /// Address on the private network.
    async fn ip(&self) -> String {
        self.0.ip()
    }
    /// Memory limit in MB.
    async fn memory(&self) -> i64 {
        self.0.memory
    }
    /// Storage (disk quota) in MB.
    async fn storage(&self) -> i64 {
        self.0.storage
    }
    async fn uuid(&self) -> &str {
        &self.0.uuid
    }
    async fn distro(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<crate::custom_distros::Distro>> {
        match self.0.distro_id {
            Some(id) => Ok(load::<DistroLoader>(ctx, id).await?.map(Into::into)),
            None => Ok(None),
        }
    }
    async fn custom_distro(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<crate::custom_distros::CustomDistro>> {
        match self.0.custom_distro_id {
            Some(id) => Ok(load::<crate::custom_distros::CustomDistroLoader>(ctx, id).await?.map(Into::into)),
            None => Ok(None),
        }
    }
    async fn server(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<crate::account::Server>> {
        Ok(load::<ServerLoader>(ctx, self.0.server_id).await?.map(Into::into))
    }
    /// XMPP account used to send alarms (its secret is write-only).
    async fn jid(&self) -> Option<&str> {
        self.0.jid.as_deref()
    }
    /// Comma-separated XMPP recipients.
    async fn jid_destinations(&self) -> Option<&str> {
        self.0.jid_destinations.as_deref()
    }
    async fn pushover_user(&self) -> Option<&str> {
        self.0.pushover_user.as_deref()
    }
    async fn pushover_token(&self) -> Option<&str> {
        self.0.pushover_token.as_deref()
    }
    async fn pushover_sound(&self) -> Option<&str> {
        self.0.pushover_sound.as_deref()
    }
    async fn pushbullet_token(&self) -> Option<&str> {
        self.0.pushbullet_token.as_deref()
    }
    async fn slack_webhook(&self) -> Option<&str> {
        self.0.slack_webhook.as_deref()
    }
    /// Signed alarm webhook (see `rotateWebhookSecret` for its secret).
    async fn webhook_url(&self) -> Option<&str> {
        self.0.webhook_url.as_deref()
    }
    /// Minimum seconds between two alarm notifications (at least 60).
    async fn alarm_freq(&self) -> i64 {
        self.0.alarm_freq
    }
    /// Disk usage in percent at which the quota alarm fires.
    async fn quota_threshold(&self) -> i64 {
        self.0.quota_threshold
    }
    async fn nofollow(&self) -> bool {
        self.0.nofollow
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    /// Uids this container has an outgoing link to.
    async fn linked_to(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<i64>> {
        Ok(load::<LinkedToLoader>(ctx, self.0.id).await?.unwrap_or_default())
    }
    /// Uids of your containers that link to this one (traffic flows when both directions exist).
    async fn linked_from(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<i64>> {
        Ok(load::<LinkedFromLoader>(ctx, self.0.id).await?.unwrap_or_default())
    }
    /// Whether this container stores custom distro images.
    async fn custom_distros_storage(&self) -> bool {
        self.0.custom_distros_storage
    }
    async fn secret_uuid(&self) -> Option<&str> {
        self.0.secret_uuid.as_deref()
    }
    async fn ssh_keys(&self) -> Vec<String> {
        self.0.ssh_keys()
    }
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        Ok(load::<ContainerTagsLoader>(ctx, self.0.id).await?.unwrap_or_default())
    }
    /// Addresses of the Legions the container's server belongs to.
    async fn legion_address(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        Ok(load::<LegionLoader>(ctx, self.0.id).await?.unwrap_or_default())
    }
    /// Moves forward by one on every change that restarts the container.
    async fn generation(&self) -> i64 {
        self.0.generation
    }
    /// When the last restart was requested, Unix seconds.
    async fn last_reboot(&self) -> i64 {
        self.0.last_reboot
    }
    /// Your domains this container served today (UTC): it has a hits row for them.
    async fn domains(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<crate::domains::Domain>> {
        let domains = load::<ContainerDomainsLoader>(ctx, self.0.id).await?.unwrap_or_default();
        Ok(domains.into_iter().map(crate::domains::Domain).collect())
    }
    async fn loopboxes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<crate::loopboxes::Loopbox>> {
        let boxes = load::<ContainerLoopboxesLoader>(ctx, self.0.id).await?.unwrap_or_default();
        Ok(boxes.into_iter().map(|(b, tags)| crate::loopboxes::Loopbox::with_tags(b, tags)).collect())
    }
    /// What the agent of its server last observed: state, pid, applied generation, usage.
    async fn runtime(&self, ctx: &Context<'_>) -> async_graphql::Result<crate::runtime::ContainerRuntime> {
        crate::runtime::runtime_of(ctx, self.0.id).await
    }
    /// Console output with timestamps in `[since, until]` (Unix seconds, inclusive), oldest
    /// first; the log is bounded, old lines go first. Asks the server's agent, so it costs
    /// more than a field read.
    #[graphql(complexity = 20)]
    async fn logs(
        &self,
        ctx: &Context<'_>,
        since: Option<f64>,
        until: Option<f64>,
    ) -> async_graphql::Result<Vec<crate::runtime::LogLine>> {
        crate::runtime::logs_of(ctx, self.0.uid(), since, until).await
    }
}

#[derive(InputObject)]
pub struct CreateContainerInput {
    /// Address (or name) of a server you own.
    pub server: String,
    pub name: String,
    /// MB, more than 0 and at most the server's free memory.
    pub memory: i64,
    /// MB, more than 0 and at most the server's free storage.
    pub storage: i64,
}

/// Every key is optional; an omitted key leaves the value as it is, `null` clears a
/// nullable one.
#[derive(InputObject, Default)]
pub struct UpdateContainerInput {
    pub name: Option<String>,
    pub note: MaybeUndefined<String>,
    pub quota_threshold: Option<i64>,
    pub jid: MaybeUndefined<String>,
    /// Write-only: never returned.
    pub jid_secret: MaybeUndefined<String>,
    pub jid_destinations: MaybeUndefined<String>,
    pub nofollow: Option<bool>,
    pub pushover_user: MaybeUndefined<String>,
    pub pushover_token: MaybeUndefined<String>,
    pub pushover_sound: MaybeUndefined<String>,
    /// Seconds; values below 60 become 60.
    pub alarm_freq: Option<i64>,
    pub pushbullet_token: MaybeUndefined<String>,
    pub slack_webhook: MaybeUndefined<String>,
    /// Signed alarm webhook: http(s), not a private address. Active once a secret exists
    /// (`rotateWebhookSecret`).
    pub webhook_url: MaybeUndefined<String>,
    pub custom_distros_storage: Option<bool>,
    /// Replaces the keys (no restart).
    pub ssh_keys: Option<Vec<String>>,
    /// Id of a distro; `null` is refused (a distro cannot be unset).
    pub distro: MaybeUndefined<i64>,
    /// Id of a custom distro usable by this container; `null` unsets it.
    pub custom_distro: MaybeUndefined<i64>,
    /// MB; only on servers you own.
    pub memory: Option<i64>,
    /// MB; only on servers you own.
    pub storage: Option<i64>,
    /// Tag names; replaces the set, unknown names are ignored.
    pub tags: Option<Vec<String>>,
    /// Uid of a container to link to.
    pub link: Option<i64>,
    /// Uid of a container to remove the link to.
    pub unlink: Option<i64>,
    /// `true` restarts the container.
    pub reboot: Option<bool>,
}

fn opt<T>(v: MaybeUndefined<T>) -> Option<Option<T>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

impl From<UpdateContainerInput> for ContainerChange {
    fn from(i: UpdateContainerInput) -> Self {
        ContainerChange {
            name: i.name,
            note: opt(i.note),
            quota_threshold: i.quota_threshold,
            jid: opt(i.jid),
            jid_secret: opt(i.jid_secret),
            jid_destinations: opt(i.jid_destinations),
            nofollow: i.nofollow,
            pushover_user: opt(i.pushover_user),
            pushover_token: opt(i.pushover_token),
            pushover_sound: opt(i.pushover_sound),
            alarm_freq: i.alarm_freq,
            pushbullet_token: opt(i.pushbullet_token),
            slack_webhook: opt(i.slack_webhook),
            webhook_url: opt(i.webhook_url),
            custom_distros_storage: i.custom_distros_storage,
            ssh_keys: i.ssh_keys,
            distro: opt(i.distro),
            custom_distro: opt(i.custom_distro),
            memory: i.memory,
            storage: i.storage,
            sizes_elsewhere: berth_service::containers::SizesElsewhere::Refused,
            tags: i.tags,
            link: i.link,
            unlink: i.unlink,
            reboot: i.reboot == Some(true),
        }
    }
}

/// Decodes an `after` cursor; a malformed one is bad input.
pub(crate) fn decode_after(after: Option<String>) -> async_graphql::Result<Option<i64>> {
    after
        .map(|a| IdCursor::decode_cursor(&a).map(|c| c.0))
        .transpose()
        .map_err(|_| gql_error(berth_service::Error::bad_input("after", "malformed cursor")))
}

/// Page size for complexity: what the service would accept, so the estimate is bounded.
pub(crate) fn page_weight(first: Option<i64>) -> usize {
    first.unwrap_or(berth_service::containers::DEFAULT_PAGE as i64).clamp(1, berth_service::containers::MAX_PAGE as i64)
        as usize
}

#[derive(Default)]
pub struct ContainerQuery;

#[Object]
impl ContainerQuery {
    /// Your containers in uid order; `tags` keeps those carrying any of the named tags.
    #[graphql(complexity = "crate::containers::page_weight(first) * child_complexity + 1")]
    async fn containers(
        &self,
        ctx: &Context<'_>,
        first: Option<i64>,
        after: Option<String>,
        tags: Option<Vec<String>>,
    ) -> async_graphql::Result<Connection<IdCursor, Container>> {
        let caller = caller(ctx)?;
        let after = decode_after(after)?;
        let page =
            service(ctx).containers_page(&caller, after, first, tags.as_deref().unwrap_or_default()).await.gql()?;
        prefetch_relations(ctx, &page.items).await?;
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection.edges.extend(page.items.into_iter().map(|c| Edge::new(IdCursor(c.id), Container(c))));
        Ok(connection)
    }

    /// One of your containers; another customer's uid is NOT_FOUND like an unknown one.
    async fn container(&self, ctx: &Context<'_>, uid: i64) -> async_graphql::Result<Container> {
        let caller = caller(ctx)?;
        Ok(Container(service(ctx).container(&caller, uid).await.gql()?))
    }
}

/// Runs, before the nodes resolve, the batch of each relation the page's nodes select
/// (see [`crate::prefetch`]); concurrently, so on PostgreSQL they overlap.
async fn prefetch_relations<'c>(ctx: &Context<'c>, items: &[berth_model::Container]) -> async_graphql::Result<()> {
    use crate::prefetch::fill;
    let node = ctx.look_ahead().field("edges").field("node");
    if items.is_empty() || !node.exists() {
        return Ok(());
    }
    let ids = || items.iter().map(|c| c.id);
    type Batch<'b> = futures::future::BoxFuture<'b, async_graphql::Result<()>>;
    let relations: [(&str, &(dyn Fn() -> Batch<'c> + Sync)); 9] = [
        ("server", &|| fill::<ServerLoader>(ctx, items.iter().map(|c| c.server_id))),
        ("distro", &|| fill::<DistroLoader>(ctx, items.iter().filter_map(|c| c.distro_id))),
        ("customDistro", &|| {
            fill::<crate::custom_distros::CustomDistroLoader>(ctx, items.iter().filter_map(|c| c.custom_distro_id))
        }),
        ("tags", &|| fill::<ContainerTagsLoader>(ctx, ids())),
        ("linkedTo", &|| fill::<LinkedToLoader>(ctx, ids())),
        ("linkedFrom", &|| fill::<LinkedFromLoader>(ctx, ids())),
        ("loopboxes", &|| fill::<ContainerLoopboxesLoader>(ctx, ids())),
        ("legionAddress", &|| fill::<LegionLoader>(ctx, ids())),
        ("domains", &|| fill::<ContainerDomainsLoader>(ctx, ids())),
    ];
    let batches = relations.iter().filter(|(field, _)| node.field(field).exists()).map(|(_, batch)| batch());
    futures::future::try_join_all(batches).await?;
    Ok(())
}

#[derive(Default)]
pub struct ContainerMutation;

#[Object]
impl ContainerMutation {
    /// Creates a container on a server you own, if it has room.
    async fn create_container(
        &self,
        ctx: &Context<'_>,
        input: CreateContainerInput,
    ) -> async_graphql::Result<Container> {
        let caller = caller(ctx)?;
        let new = NewContainer { server: input.server, name: input.name, memory: input.memory, storage: input.storage };
        Ok(Container(service(ctx).create_container(&caller, new).await.gql()?))
    }

    /// Changes a container, all or nothing.
    async fn update_container(
        &self,
        ctx: &Context<'_>,
        uid: i64,
        input: UpdateContainerInput,
    ) -> async_graphql::Result<Container> {
        let caller = caller(ctx)?;
        Ok(Container(service(ctx).update_container(&caller, uid, input.into()).await.gql()?))
    }

    /// Restarts a container (its generation moves forward by one).
    async fn reboot_container(&self, ctx: &Context<'_>, uid: i64) -> async_graphql::Result<Container> {
        let caller = caller(ctx)?;
        Ok(Container(service(ctx).reboot_container(&caller, uid).await.gql()?))
    }

    /// Gives the container a fresh random secret uuid.
    async fn regenerate_secret_uuid(&self, ctx: &Context<'_>, uid: i64) -> async_graphql::Result<Container> {
        let caller = caller(ctx)?;
        Ok(Container(service(ctx).regenerate_secret_uuid(&caller, uid).await.gql()?))
    }
}
