//! The caller's account, API tokens, distros and news.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use berth_service::account::AccountChange;

use crate::error::GqlResult;
use crate::{caller, service};

/// The authenticated customer.
pub struct Me(berth_model::Customer);

#[Object]
impl Me {
    async fn username(&self) -> &str {
        &self.0.username
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn company(&self) -> Option<&str> {
        self.0.company.as_deref()
    }
    async fn vat(&self) -> Option<&str> {
        self.0.vat.as_deref()
    }
    /// The value to publish as DNS TXT `uwsgi:<uuid>` to prove ownership of a domain.
    async fn uuid(&self) -> &str {
        &self.0.uuid
    }
    /// Dedicated servers this customer owns and may create containers on.
    async fn servers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Server>> {
        let caller = caller(ctx)?;
        Ok(service(ctx).my_servers(&caller).await.gql()?.into_iter().map(Server::from).collect())
    }
    /// API tokens of this customer (their secrets are never shown again).
    async fn tokens(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiToken>> {
        let caller = caller(ctx)?;
        Ok(service(ctx).tokens(&caller).await.gql()?.into_iter().map(ApiToken::from).collect())
    }
}

#[derive(SimpleObject)]
pub struct Server {
    pub id: ID,
    pub name: String,
    pub address: String,
    /// Capacity in MB.
    pub memory: i64,
    /// Capacity in MB.
    pub storage: i64,
}

impl From<berth_model::Server> for Server {
    fn from(s: berth_model::Server) -> Self {
        Server { id: ID(s.id.to_string()), name: s.name, address: s.address, memory: s.memory, storage: s.storage }
    }
}

#[derive(SimpleObject)]
pub struct ApiToken {
    pub id: ID,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl From<berth_model::ApiToken> for ApiToken {
    fn from(t: berth_model::ApiToken) -> Self {
        ApiToken { id: ID(t.id.to_string()), name: t.name, created_at: t.created_at, last_used_at: t.last_used_at }
    }
}

#[derive(SimpleObject)]
pub struct CreatedToken {
    /// The bearer token; shown only in this answer.
    pub token: String,
    pub info: ApiToken,
}

#[derive(SimpleObject)]
pub struct NewsItem {
    pub content: String,
    /// Creation time, Unix seconds.
    pub date: i64,
    pub public: bool,
}

#[derive(InputObject, Default)]
pub struct UpdateMeInput {
    pub email: Option<String>,
    pub company: Option<String>,
    pub vat: Option<String>,
    pub password: Option<String>,
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The authenticated customer.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let caller = caller(ctx)?;
        Ok(Me(service(ctx).me(&caller).await.gql()?))
    }

    /// Latest news: all items for a customer, public ones without credentials.
    async fn news(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<NewsItem>> {
        let caller = ctx.data_opt::<berth_service::Caller>();
        let items = service(ctx).news(caller).await.gql()?;
        Ok(items.into_iter().map(|n| NewsItem { content: n.content, date: n.created_at, public: n.public }).collect())
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Changes profile fields and/or the password; omitted fields stay as they are.
    async fn update_me(&self, ctx: &Context<'_>, input: UpdateMeInput) -> async_graphql::Result<Me> {
        let caller = caller(ctx)?;
        let change = AccountChange {
            email: input.email,
            company: input.company.map(Some),
            vat: input.vat.map(Some),
            password: input.password,
        };
        Ok(Me(service(ctx).update_me(&caller, change).await.gql()?))
    }

    /// Creates a bearer API token. The token is in this answer and nowhere else, ever.
    async fn create_token(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<CreatedToken> {
        let caller = caller(ctx)?;
        let created = service(ctx).create_token(&caller, &name).await.gql()?;
        Ok(CreatedToken { token: created.token, info: created.info.into() })
    }

    /// Revokes one of the caller's tokens.
    async fn revoke_token(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let caller = caller(ctx)?;
        let id: i64 = id.parse().map_err(|_| crate::gql_error(berth_service::Error::NotFound("token")))?;
        service(ctx).revoke_token(&caller, id).await.gql()?;
        Ok(true)
    }
}
