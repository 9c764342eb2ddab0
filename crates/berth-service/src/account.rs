//! The customer's own account: profile, password, API tokens, owned servers; and news.

use berth_model::{validate, ApiToken, Credential, Customer, News, Server};
use berth_store::{accounts, news, servers};

use crate::auth::{format_token, hash_password, mint_token_secret};
use crate::{Caller, Error, Result, Service};

/// Profile fields to change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Default, Clone)]
pub struct AccountChange {
    pub email: Option<String>,
    pub company: Option<Option<String>>,
    pub vat: Option<Option<String>>,
    pub password: Option<String>,
}

/// A token as created: `token` is shown this once and never again.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token: String,
    pub info: ApiToken,
}

/// How many news items a list returns, as in the reference.
pub const NEWS_PAGE: i64 = 10;
/// Longest password accepted; longer ones are only a way to burn CPU.
pub const MAX_PASSWORD: usize = 1024;

impl Service {
    pub async fn me(&self, caller: &Caller) -> Result<Customer> {
        let mut conn = self.store.reads().await?;
        accounts::customer(&mut conn, caller.customer_id).await?.ok_or(Error::Unauthenticated)
    }

    /// Servers the customer owns (dedicated servers it may create containers on).
    pub async fn my_servers(&self, caller: &Caller) -> Result<Vec<Server>> {
        let mut conn = self.store.read().await?;
        Ok(servers::owned_by(&mut conn, caller.customer_id).await?)
    }

    /// Uids of all the customer's containers, in creation order.
    pub async fn my_container_uids(&self, caller: &Caller) -> Result<Vec<i64>> {
        let mut conn = self.store.read().await?;
        let ids = berth_store::containers::ids_of_customer(&mut conn, caller.customer_id).await?;
        Ok(ids.into_iter().map(berth_model::uid_of).collect())
    }

    /// Updates the profile and/or password in one transaction.
    pub async fn update_me(&self, caller: &Caller, change: AccountChange) -> Result<Customer> {
        if let Some(email) = &change.email {
            validate::text("email", email, validate::MAX_TEXT)?;
        }
        validate::optional_text("company", change.company.as_ref().and_then(|c| c.as_deref()))?;
        validate::optional_text("vat", change.vat.as_ref().and_then(|v| v.as_deref()))?;
        let new_hash = match &change.password {
            Some(password) => Some(password_hash_for(password).await?),
            None => None,
        };
        let mut tx = self.store.write().await?;
        let current = accounts::customer(&mut tx, caller.customer_id).await?.ok_or(Error::Unauthenticated)?;
        let email = change.email.unwrap_or(current.email.clone());
        let company = change.company.unwrap_or(current.company.clone());
        let vat = change.vat.unwrap_or(current.vat.clone());
        accounts::update_profile(&mut tx, caller.customer_id, &email, company.as_deref(), vat.as_deref()).await?;
        if let Some(hash) = &new_hash {
            accounts::set_password_hash(&mut tx, caller.customer_id, hash).await?;
        }
        let updated = accounts::customer(&mut tx, caller.customer_id).await?.ok_or(Error::Unauthenticated)?;
        tx.commit().await?;
        if new_hash.is_some() {
            self.forget_logins(&current.username);
            self.revoked(caller.customer_id, Credential::Password { username: current.username.clone() }).await;
        }
        Ok(updated)
    }

    pub async fn create_token(&self, caller: &Caller, name: &str) -> Result<CreatedToken> {
        validate::name("name", name)?;
        let minted = mint_token_secret();
        let mut tx = self.store.write().await?;
        let info = accounts::insert_token(&mut tx, caller.customer_id, name, &minted.secret_hash).await?;
        tx.commit().await?;
        Ok(CreatedToken { token: format_token(info.id, &minted.secret), info })
    }

    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<ApiToken>> {
        let mut conn = self.store.read().await?;
        Ok(accounts::tokens_of(&mut conn, caller.customer_id).await?)
    }

    pub async fn revoke_token(&self, caller: &Caller, token_id: i64) -> Result<()> {
        let mut tx = self.store.write().await?;
        if !accounts::delete_token(&mut tx, caller.customer_id, token_id).await? {
            return Err(Error::NotFound("token"));
        }
        tx.commit().await?;
        self.revoked(caller.customer_id, Credential::Token { id: token_id }).await;
        Ok(())
    }

    /// The latest news: every item for a customer, public ones for anonymous readers.
    pub async fn news(&self, caller: Option<&Caller>) -> Result<Vec<News>> {
        let mut conn = self.store.read().await?;
        Ok(news::latest(&mut conn, caller.is_some(), NEWS_PAGE).await?)
    }
}

/// Validates and hashes a new password off the async workers.
pub(crate) async fn password_hash_for(password: &str) -> Result<String> {
    if password.is_empty() {
        return Err(Error::bad_input("password", "must not be empty"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(Error::bad_input("password", format!("longer than {MAX_PASSWORD} bytes")));
    }
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(Error::internal)?
}
