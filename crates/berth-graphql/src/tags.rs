//! Tags: your labels for containers, domains and loopboxes, referenced by name.

use async_graphql::{Context, InputObject, MaybeUndefined, Object, SimpleObject};
use berth_service::tags::TagChange;

use crate::error::GqlResult;
use crate::{caller, service};

#[derive(SimpleObject)]
pub struct Tag {
    pub id: i64,
    pub name: String,
    pub note: Option<String>,
}

impl From<berth_model::Tag> for Tag {
    fn from(t: berth_model::Tag) -> Self {
        Tag { id: t.id, name: t.name, note: t.note }
    }
}

#[derive(InputObject, Default)]
pub struct UpdateTagInput {
    pub name: Option<String>,
    pub note: MaybeUndefined<String>,
}

#[derive(Default)]
pub struct TagQuery;

#[Object]
impl TagQuery {
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Tag>> {
        let caller = caller(ctx)?;
        Ok(service(ctx).tags(&caller).await.gql()?.into_iter().map(Tag::from).collect())
    }

    async fn tag(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<Tag> {
        let caller = caller(ctx)?;
        Ok(service(ctx).tag(&caller, id).await.gql()?.into())
    }
}

#[derive(Default)]
pub struct TagMutation;

#[Object]
impl TagMutation {
    /// Creates a tag; names are unique per customer.
    async fn create_tag(&self, ctx: &Context<'_>, name: String, note: Option<String>) -> async_graphql::Result<Tag> {
        let caller = caller(ctx)?;
        Ok(service(ctx).create_tag(&caller, &name, note.as_deref()).await.gql()?.into())
    }

    async fn update_tag(&self, ctx: &Context<'_>, id: i64, input: UpdateTagInput) -> async_graphql::Result<Tag> {
        let caller = caller(ctx)?;
        let note = match input.note {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(v) => Some(Some(v)),
        };
        Ok(service(ctx).update_tag(&caller, id, TagChange { name: input.name, note }).await.gql()?.into())
    }

    /// Deletes a tag and detaches it from everything.
    async fn delete_tag(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<bool> {
        let caller = caller(ctx)?;
        service(ctx).delete_tag(&caller, id).await.gql()?;
        Ok(true)
    }
}
