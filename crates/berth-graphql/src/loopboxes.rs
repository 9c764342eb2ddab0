//! Loopboxes: image files in a container home, loop-mounted at one of its directories.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, InputObject, Object};
use berth_service::loopboxes::NewLoopbox;

use crate::containers::decode_after;
use crate::cursor::IdCursor;
use crate::error::GqlResult;
use crate::loaders::{batch_loader, load};
use crate::{caller, service};

batch_loader!(
    /// Loopbox id → tag names.
    LoopboxTagsLoader, Vec<String>, tags_of_loopboxes
);

/// A loopbox; `tags` is set when the loader that found it also loaded its tag names.
pub struct Loopbox(pub berth_model::Loopbox, pub Option<Vec<String>>);

impl Loopbox {
    pub(crate) fn new(b: berth_model::Loopbox) -> Loopbox {
        Loopbox(b, None)
    }
    pub(crate) fn with_tags(b: berth_model::Loopbox, tags: Vec<String>) -> Loopbox {
        Loopbox(b, Some(tags))
    }
}

#[Object]
impl Loopbox {
    async fn id(&self) -> i64 {
        self.0.id
    }
    /// Uid of the container whose home holds the image.
    async fn container(&self) -> i64 {
        berth_model::uid_of(self.0.container_id)
    }
    /// Image path relative to the container home.
    async fn filename(&self) -> &str {
        &self.0.filename
    }
    /// Mount directory relative to the container home.
    async fn mountpoint(&self) -> &str {
        &self.0.mountpoint
    }
    /// Mounted read-only.
    async fn ro(&self) -> bool {
        self.0.ro
    }
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        if let Some(tags) = &self.1 {
            return Ok(tags.clone());
        }
        Ok(load::<LoopboxTagsLoader>(ctx, self.0.id).await?.unwrap_or_default())
    }
}

#[derive(InputObject)]
pub struct CreateLoopboxInput {
    /// Uid of one of your containers.
    pub container: i64,
    /// Relative path of the image in the container home (at most 64 characters).
    pub filename: String,
    /// Relative directory in the container home.
    pub mountpoint: String,
    /// Mount read-only; omitted or null means read-write.
    pub ro: Option<bool>,
}

#[derive(InputObject)]
pub struct UpdateLoopboxInput {
    /// Tag names; replaces the set, unknown names are ignored. Other fields are immutable.
    pub tags: Vec<String>,
}

#[derive(Default)]
pub struct LoopboxQuery;

#[Object]
impl LoopboxQuery {
    /// Your loopboxes in id order, optionally of one container and/or carrying any of `tags`.
    #[graphql(complexity = "crate::containers::page_weight(first) * child_complexity + 1")]
    async fn loopboxes(
        &self,
        ctx: &Context<'_>,
        first: Option<i64>,
        after: Option<String>,
        container: Option<i64>,
        tags: Option<Vec<String>>,
    ) -> async_graphql::Result<Connection<IdCursor, Loopbox>> {
        let caller = caller(ctx)?;
        let after = decode_after(after)?;
        let page = service(ctx)
            .loopboxes_page(&caller, container, tags.as_deref().unwrap_or_default(), after, first)
            .await
            .gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection.edges.extend(page.items.into_iter().map(|b| Edge::new(IdCursor(b.id), Loopbox::new(b))));
        Ok(connection)
    }

    async fn loopbox(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<Loopbox> {
        let caller = caller(ctx)?;
        Ok(Loopbox::new(service(ctx).loopbox(&caller, id).await.gql()?))
    }
}

#[derive(Default)]
pub struct LoopboxMutation;

#[Object]
impl LoopboxMutation {
    async fn create_loopbox(&self, ctx: &Context<'_>, input: CreateLoopboxInput) -> async_graphql::Result<Loopbox> {
        let caller = caller(ctx)?;
        let new = NewLoopbox {
            container: input.container,
            filename: input.filename,
            mountpoint: input.mountpoint,
            ro: input.ro.unwrap_or(false),
        };
        Ok(Loopbox::new(service(ctx).create_loopbox(&caller, new).await.gql()?))
    }

    async fn update_loopbox(
        &self,
        ctx: &Context<'_>,
        id: i64,
        input: UpdateLoopboxInput,
    ) -> async_graphql::Result<Loopbox> {
        let caller = caller(ctx)?;
        Ok(Loopbox::new(service(ctx).set_loopbox_tags(&caller, id, &input.tags).await.gql()?))
    }

    async fn delete_loopbox(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<bool> {
        let caller = caller(ctx)?;
        service(ctx).delete_loopbox(&caller, id).await.gql()?;
        Ok(true)
    }
}
