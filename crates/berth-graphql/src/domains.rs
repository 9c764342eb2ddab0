//! Domains: the `Domain` type, its relations (tags; containers that served it today) and
//! domain queries and mutations.

use async_graphql::connection::{Connection, CursorType, Edge};
use async_graphql::{Context, InputObject, MaybeUndefined, Object};
use berth_service::domains::DomainChange;
use berth_service::Error;

use crate::cursor::IdCursor;
use crate::error::GqlResult;
use crate::loaders::{batch_loader, load};
use crate::{caller, service};

/// A domain of the caller; tags and containers load in batches per request.
pub struct Domain(pub berth_model::Domain);

impl From<berth_model::Domain> for Domain {
    fn from(d: berth_model::Domain) -> Self {
        Domain(d)
    }
}

#[Object]
impl Domain {
    async fn id(&self) -> i64 {
        self.0.id
    }
    /// The exact name (case-sensitive; `www.example.org` and `example.org` differ).
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn uuid(&self) -> &str {
        &self.0.uuid
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    /// Names of the caller's tags on this domain.
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        Ok(load::<DomainTagsLoader>(ctx, self.0.id).await?.unwrap_or_default())
    }
    /// The caller's containers that served this domain today (UTC).
    async fn containers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<crate::containers::Container>> {
        let containers = load::<DomainContainersLoader>(ctx, self.0.id).await?.unwrap_or_default();
        Ok(containers.into_iter().map(crate::containers::Container).collect())
    }
}

batch_loader!(
    /// Domain id → names of the caller's tags on it.
    DomainTagsLoader, Vec<String>, domain_tags
);
batch_loader!(
    /// Domain id → the caller's containers that served it today.
    DomainContainersLoader, Vec<berth_model::Container>, containers_serving_today
);

/// Changes to a domain; omitted fields stay as they are, `note: null` clears the note.
#[derive(InputObject, Default)]
pub struct UpdateDomainInput {
    pub note: MaybeUndefined<String>,
    /// Replaces the tag set (names of the caller's tags; unknown names are ignored).
    pub tags: Option<Vec<String>>,
}

pub(crate) fn decode_after(after: Option<String>) -> async_graphql::Result<Option<i64>> {
    after
        .map(|a| IdCursor::decode_cursor(&a).map(|c| c.0))
        .transpose()
        .map_err(|_| crate::gql_error(Error::bad_input("after", "malformed cursor")))
}

#[derive(Default)]
pub struct DomainQuery;

#[Object]
impl DomainQuery {
    /// The caller's domains in id order; with `tags`, those carrying any of them (each once).
    async fn domains(
        &self,
        ctx: &Context<'_>,
        first: Option<i64>,
        after: Option<String>,
        tags: Option<Vec<String>>,
    ) -> async_graphql::Result<Connection<IdCursor, Domain>> {
        let caller = caller(ctx)?;
        let after = decode_after(after)?;
        let page = service(ctx).domains(&caller, &tags.unwrap_or_default(), first, after).await.gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next);
        connection.edges.extend(page.domains.into_iter().map(|d| Edge::new(IdCursor(d.id), Domain(d))));
        Ok(connection)
    }

    async fn domain(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<Domain> {
        let caller = caller(ctx)?;
        Ok(Domain(service(ctx).domain(&caller, id).await.gql()?))
    }
}

#[derive(Default)]
pub struct DomainMutation;

#[Object]
impl DomainMutation {
    /// Adds a domain after checking DNS: a TXT record `uwsgi:<me.uuid>` must be on the name
    /// or a parent name. Taken names are CONFLICT; a failed check is FORBIDDEN.
    async fn add_domain(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Domain> {
        let caller = caller(ctx)?;
        Ok(Domain(service(ctx).add_domain(&caller, &name).await.gql()?))
    }

    async fn update_domain(
        &self,
        ctx: &Context<'_>,
        id: i64,
        input: UpdateDomainInput,
    ) -> async_graphql::Result<Domain> {
        let caller = caller(ctx)?;
        let note = match input.note {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(v) => Some(Some(v)),
        };
        let change = DomainChange { note, tags: input.tags };
        Ok(Domain(service(ctx).update_domain(&caller, id, change).await.gql()?))
    }

    /// Deletes one of the caller's domains (with its tags and metrics); returns its id.
    async fn delete_domain(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<i64> {
        let caller = caller(ctx)?;
        Ok(service(ctx).delete_domain(&caller, id).await.gql()?.id)
    }

    /// Deletes the caller's domain with exactly this name; returns its id.
    async fn delete_domain_by_name(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<i64> {
        let caller = caller(ctx)?;
        Ok(service(ctx).delete_domain_by_name(&caller, &name).await.gql()?.id)
    }
}
