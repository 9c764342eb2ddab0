//! Platform distros and custom distros (images in a customer's storage container).

use async_graphql::{Context, InputObject, MaybeUndefined, Object, SimpleObject};
use berth_service::custom_distros::{CustomDistroChange, NewCustomDistro};

use crate::error::GqlResult;
use crate::loaders::batch_loader;
use crate::{caller, service};

batch_loader!(
    /// Custom distro id → the caller's custom distro.
    CustomDistroLoader, berth_model::CustomDistro, custom_distros_by_ids
);

/// A platform distribution (root filesystem) any container may use.
#[derive(SimpleObject)]
pub struct Distro {
    pub id: i64,
    pub name: String,
}

impl From<berth_model::Distro> for Distro {
    fn from(d: berth_model::Distro) -> Self {
        Distro { id: d.id, name: d.name }
    }
}

/// An image kept in one of your storage containers.
#[derive(SimpleObject)]
pub struct CustomDistro {
    pub id: i64,
    /// Uid of the storage container holding the image.
    pub container: i64,
    pub name: String,
    /// Directory `distros/<path>` in the storage container's home.
    pub path: String,
    pub note: Option<String>,
    pub uuid: String,
}

impl From<berth_model::CustomDistro> for CustomDistro {
    fn from(d: berth_model::CustomDistro) -> Self {
        CustomDistro {
            id: d.id,
            container: berth_model::uid_of(d.container_id),
            name: d.name,
            path: d.path,
            note: d.note,
            uuid: d.uuid,
        }
    }
}

#[derive(InputObject)]
pub struct CreateCustomDistroInput {
    /// Uid of one of your containers with `customDistrosStorage` set.
    pub container: i64,
    pub name: String,
    /// One name of letters, digits, `.`, `_` and `-` (not `.` or `..`).
    pub path: String,
    pub note: Option<String>,
}

#[derive(InputObject, Default)]
pub struct UpdateCustomDistroInput {
    pub name: Option<String>,
    pub path: Option<String>,
    pub note: MaybeUndefined<String>,
}

#[derive(Default)]
pub struct DistroQuery;

#[Object]
impl DistroQuery {
    /// Platform distributions.
    async fn distros(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Distro>> {
        let caller = caller(ctx)?;
        Ok(service(ctx).distros(&caller).await.gql()?.into_iter().map(Distro::from).collect())
    }

    /// Custom distros stored in any of your containers.
    async fn custom_distros(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<CustomDistro>> {
        let caller = caller(ctx)?;
        Ok(service(ctx).custom_distros(&caller).await.gql()?.into_iter().map(CustomDistro::from).collect())
    }

    /// Custom distros the container `uid` may use: stored in another of your containers on
    /// the same server.
    async fn usable_custom_distros(
        &self,
        ctx: &Context<'_>,
        container: i64,
    ) -> async_graphql::Result<Vec<CustomDistro>> {
        let caller = caller(ctx)?;
        let list = service(ctx).custom_distros_usable_by(&caller, container).await.gql()?;
        Ok(list.into_iter().map(CustomDistro::from).collect())
    }

    async fn custom_distro(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<CustomDistro> {
        let caller = caller(ctx)?;
        Ok(service(ctx).custom_distro(&caller, id).await.gql()?.into())
    }
}

#[derive(Default)]
pub struct CustomDistroMutation;

#[Object]
impl CustomDistroMutation {
    async fn create_custom_distro(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomDistroInput,
    ) -> async_graphql::Result<CustomDistro> {
        let caller = caller(ctx)?;
        let new = NewCustomDistro { container: input.container, name: input.name, path: input.path, note: input.note };
        Ok(service(ctx).create_custom_distro(&caller, new).await.gql()?.into())
    }

    async fn update_custom_distro(
        &self,
        ctx: &Context<'_>,
        id: i64,
        input: UpdateCustomDistroInput,
    ) -> async_graphql::Result<CustomDistro> {
        let caller = caller(ctx)?;
        let note = match input.note {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(v) => Some(Some(v)),
        };
        let change = CustomDistroChange { name: input.name, path: input.path, note };
        Ok(service(ctx).update_custom_distro(&caller, id, change).await.gql()?.into())
    }

    /// Deletes a custom distro; containers using it lose it and restart.
    async fn delete_custom_distro(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<bool> {
        let caller = caller(ctx)?;
        service(ctx).delete_custom_distro(&caller, id).await.gql()?;
        Ok(true)
    }
}
