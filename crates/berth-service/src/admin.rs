//! The operator's path: creating customers, servers, distros, containers, domains, news and
//! tokens directly (the `berth admin …` commands).
//!
//! There is no [`crate::Caller`] here: whoever can reach the database is the operator. The
//! rules that protect the platform still hold (the capacity of a server, unique names,
//! argon2id passwords, hashed tokens); the ones that protect one customer from another do
//! not apply, and the domain ownership check is skipped on purpose (design §7). Every
//! operation validates first and then writes in one transaction, so a refusal changes
//! nothing.

use std::net::IpAddr;

use berth_model::{validate, Container, ContainerEventKind, Customer, Distro, Domain, News, Server};
use berth_store::{accounts, containers, distros, domains, events, news, servers, AnyConnection, Store, StoreError};

use crate::account::{password_hash_for, CreatedToken};
use crate::auth::{format_token, mint_token_secret};
use crate::{Error, Result};

/// A customer to create.
#[derive(Debug, Clone, Default)]
pub struct NewCustomer {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
    pub company: Option<String>,
    pub vat: Option<String>,
}

/// A server to create; `owner` is a customer's username (a dedicated server).
#[derive(Debug, Clone, Default)]
pub struct NewServer {
    pub name: String,
    pub address: String,
    pub memory: i64,
    pub storage: i64,
    pub owner: Option<String>,
}

/// A container to create for `customer` (username) on `server` (server name).
#[derive(Debug, Clone, Default)]
pub struct NewContainer {
    pub customer: String,
    pub server: String,
    pub name: String,
    pub memory: i64,
    pub storage: i64,
}

/// Operator operations on a store; cheap to clone.
#[derive(Clone)]
pub struct Admin {
    store: Store,
}

impl Admin {
    pub fn new(store: Store) -> Admin {
        Admin { store }
    }

    /// Creates an active customer with an argon2id password hash and a fresh uuid.
    pub async fn add_customer(&self, new: NewCustomer) -> Result<Customer> {
        validate::name("username", &new.username)?;
        if new.username.contains(':') {
            // HTTP basic auth splits `user:password` on the first ':'.
            return Err(Error::bad_input("username", "must not contain ':'"));
        }
        no_control_chars("username", &new.username)?;
        let email = new.email.unwrap_or_default();
        validate::text("email", &email, validate::MAX_TEXT)?;
        validate::optional_text("company", new.company.as_deref())?;
        validate::optional_text("vat", new.vat.as_deref())?;
        let hash = password_hash_for(&new.password).await?;
        let exists = || Error::conflict(format!("customer {} already exists", new.username));
        let mut tx = self.store.write().await?;
        if accounts::customer_by_username(&mut tx, &new.username).await?.is_some() {
            return Err(exists());
        }
        let customer = accounts::insert_customer(
            &mut tx,
            &accounts::NewCustomer {
                username: &new.username,
                password_hash: &hash,
                email: &email,
                company: new.company.as_deref(),
                vat: new.vat.as_deref(),
            },
        )
        .await
        .map_err(unique_as(exists))?;
        tx.commit().await?;
        Ok(customer)
    }

    /// Creates a server; `address` must be an IP address, capacities positive.
    pub async fn add_server(&self, new: NewServer) -> Result<Server> {
        validate::name("name", &new.name)?;
        let address: IpAddr = new
            .address
            .trim()
            .parse()
            .map_err(|_| Error::bad_input("address", format!("{:?} is not an IP address", new.address)))?;
        validate::megabytes("memory", new.memory)?;
        validate::megabytes("storage", new.storage)?;
        let exists = || Error::conflict(format!("server {} already exists", new.name));
        let mut tx = self.store.write().await?;
        let owner_id = match &new.owner {
            Some(owner) => Some(customer_named(&mut tx, "owner", owner).await?.id),
            None => None,
        };
        if servers::by_name(&mut tx, &new.name).await?.is_some() {
            return Err(exists());
        }
        let server = servers::insert(
            &mut tx,
            &servers::NewServer {
                name: &new.name,
                address: &address.to_string(),
                memory: new.memory,
                storage: new.storage,
                owner_id,
            },
        )
        .await
        .map_err(unique_as(exists))?;
        tx.commit().await?;
        Ok(server)
    }

    /// Registers a platform distro. `path` must be absolute; it need **not** exist yet, so an
    /// operator can prepare the catalogue before the root filesystem is built or copied to
    /// the servers (the agent reports a missing directory when a container needs it).
    pub async fn add_distro(&self, name: &str, path: &str) -> Result<Distro> {
        validate::name("name", name)?;
        validate::text("path", path, 4096)?;
        if !path.starts_with('/') {
            return Err(Error::bad_input("path", "must be an absolute path"));
        }
        if path.split('/').any(|part| part == "..") {
            return Err(Error::bad_input("path", "must not contain '..'"));
        }
        no_control_chars("path", path)?;
        let mut tx = self.store.write().await?;
        for existing in distros::all(&mut tx).await? {
            if existing.name == name {
                return Err(Error::conflict(format!("distro {name} already exists")));
            }
            if existing.path == path {
                return Err(Error::conflict(format!("distro {} already uses path {path}", existing.name)));
            }
        }
        let distro = distros::insert(&mut tx, name, path, None)
            .await
            .map_err(unique_as(|| Error::conflict(format!("distro {name} already exists"))))?;
        tx.commit().await?;
        Ok(distro)
    }

    /// Creates a container for a customer on a server (by name), with the same capacity rule
    /// customers get: what the server's containers already hold plus the new one must fit.
    pub async fn add_container(&self, new: NewContainer) -> Result<Container> {
        validate::name("name", &new.name)?;
        validate::megabytes("memory", new.memory)?;
        validate::megabytes("storage", new.storage)?;
        let mut tx = self.store.write().await?;
        let customer = customer_named(&mut tx, "customer", &new.customer).await?;
        let server = servers::by_name(&mut tx, &new.server)
            .await?
            .ok_or_else(|| Error::bad_input("server", format!("no server named {:?}", new.server)))?;
        containers::lock_server(&mut tx, server.id).await?;
        let (used_memory, used_storage) = servers::used_capacity(&mut tx, server.id, None).await?;
        let free_memory = server.memory - used_memory;
        if new.memory > free_memory {
            return Err(Error::conflict(format!(
                "server {} has {} MB of memory free, {} requested",
                server.name,
                free_memory.max(0),
                new.memory
            )));
        }
        let free_storage = server.storage - used_storage;
        if new.storage > free_storage {
            return Err(Error::conflict(format!(
                "server {} has {} MB of storage free, {} requested",
                server.name,
                free_storage.max(0),
                new.storage
            )));
        }
        let container = containers::insert(
            &mut tx,
            &containers::NewContainer {
                customer_id: customer.id,
                server_id: server.id,
                name: &new.name,
                memory: new.memory,
                storage: new.storage,
            },
        )
        .await?;
        let created = crate::containers::container_event(&container, ContainerEventKind::Created);
        events::announce(&mut tx, self.store.engine(), created).await?;
        tx.commit().await?;
        Ok(container)
    }

    /// Deletes a container by uid (customers cannot: the reference has no such route). Its
    /// server's agent sees it gone and removes what ran, leaving nothing on the host. Like a
    /// created one, the change is announced to the gateways ([`events::announce`]): the
    /// owner's `containerEvents` get `DELETED`, and the agent acts at once.
    pub async fn remove_container(&self, uid: i64) -> Result<Container> {
        let id = berth_model::id_of_uid(uid).ok_or(Error::NotFound("container"))?;
        let mut tx = self.store.write().await?;
        let container = containers::get(&mut tx, id).await?.ok_or(Error::NotFound("container"))?;
        containers::delete(&mut tx, id).await?;
        let deleted = crate::containers::container_event(&container, ContainerEventKind::Deleted);
        events::announce(&mut tx, self.store.engine(), deleted).await?;
        tx.commit().await?;
        Ok(container)
    }

    /// Gives a domain to a customer without the DNS ownership check. Names are globally
    /// unique.
    pub async fn add_domain(&self, customer: &str, name: &str) -> Result<Domain> {
        validate::name("name", name)?;
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::bad_input("name", "must not contain spaces or control characters"));
        }
        let exists = || Error::conflict(format!("domain {name} already exists"));
        let mut tx = self.store.write().await?;
        let owner = customer_named(&mut tx, "customer", customer).await?;
        if domains::name_taken(&mut tx, name).await? {
            return Err(exists());
        }
        let domain = domains::insert(&mut tx, owner.id, name).await.map_err(unique_as(exists))?;
        tx.commit().await?;
        Ok(domain)
    }

    /// Publishes a news item; private items are shown to customers only.
    pub async fn add_news(&self, content: &str, public: bool) -> Result<News> {
        if content.trim().is_empty() {
            return Err(Error::bad_input("content", "must not be empty"));
        }
        validate::text("content", content, validate::MAX_NOTE)?;
        let mut tx = self.store.write().await?;
        let item = news::insert(&mut tx, content, public).await?;
        tx.commit().await?;
        Ok(item)
    }

    /// Mints an API token for a customer; the token is in the answer and nowhere else.
    pub async fn add_token(&self, customer: &str, name: &str) -> Result<CreatedToken> {
        validate::name("name", name)?;
        let minted = mint_token_secret();
        let mut tx = self.store.write().await?;
        let owner = customer_named(&mut tx, "customer", customer).await?;
        let info = accounts::insert_token(&mut tx, owner.id, name, &minted.secret_hash).await?;
        tx.commit().await?;
        Ok(CreatedToken { token: format_token(info.id, &minted.secret), info })
    }
}

/// The customer with this username; `field` names the option that referred to it.
async fn customer_named(conn: &mut AnyConnection, field: &str, username: &str) -> Result<Customer> {
    accounts::customer_by_username(conn, username)
        .await?
        .ok_or_else(|| Error::bad_input(field, format!("no customer named {username:?}")))
}

fn no_control_chars(field: &str, value: &str) -> Result<()> {
    if value.chars().any(char::is_control) {
        return Err(Error::bad_input(field, "contains a control character"));
    }
    Ok(())
}

/// A unique violation (a concurrent insert won the race) as the given conflict.
fn unique_as(conflict: impl Fn() -> Error) -> impl Fn(StoreError) -> Error {
    move |e| match e {
        StoreError::Unique => conflict(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn admin() -> (Admin, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("berth.db").display());
        (Admin::new(Store::open(&url).await.unwrap()), dir)
    }

    fn customer(name: &str) -> NewCustomer {
        NewCustomer { username: name.into(), password: "deimos".into(), ..Default::default() }
    }

    #[tokio::test]
    async fn customers_are_unique_and_validated() {
        let (admin, _dir) = admin().await;
        let made = admin.add_customer(customer("kratos")).await.unwrap();
        assert_eq!(made.username, "kratos");
        let again = admin.add_customer(customer("kratos")).await.unwrap_err();
        assert_eq!(again, Error::conflict("customer kratos already exists"));
        for bad in ["", "a:b", &"x".repeat(256)] {
            assert!(matches!(admin.add_customer(customer(bad)).await, Err(Error::BadInput { .. })), "{bad}");
        }
        let no_password = NewCustomer { password: String::new(), ..customer("zeus") };
        assert!(matches!(admin.add_customer(no_password).await, Err(Error::BadInput { .. })));
    }

    #[tokio::test]
    async fn containers_must_fit_their_server() {
        let (admin, _dir) = admin().await;
        admin.add_customer(customer("kratos")).await.unwrap();
        let server =
            NewServer { name: "s1".into(), address: "10.1.1.1".into(), memory: 1000, storage: 2000, owner: None };
        admin.add_server(server.clone()).await.unwrap();
        assert!(matches!(admin.add_server(server).await, Err(Error::Conflict(_))));
        let new = |memory, storage| NewContainer {
            customer: "kratos".into(),
            server: "s1".into(),
            name: "c".into(),
            memory,
            storage,
        };
        let first = admin.add_container(new(800, 1000)).await.unwrap();
        assert_eq!(first.uid(), 30000 + first.id);
        assert_eq!(
            admin.add_container(new(500, 10)).await.unwrap_err(),
            Error::conflict("server s1 has 200 MB of memory free, 500 requested")
        );
        assert_eq!(
            admin.add_container(new(200, 1001)).await.unwrap_err(),
            Error::conflict("server s1 has 1000 MB of storage free, 1001 requested")
        );
        admin.add_container(new(200, 1000)).await.unwrap();
        assert!(matches!(admin.add_container(new(0, 1)).await, Err(Error::BadInput { .. })));
    }

    #[tokio::test]
    async fn distros_domains_tokens() {
        let (admin, _dir) = admin().await;
        admin.add_customer(customer("kratos")).await.unwrap();
        assert!(matches!(admin.add_distro("deb", "relative").await, Err(Error::BadInput { .. })));
        admin.add_distro("deb", "/srv/distros/deb").await.unwrap();
        assert!(matches!(admin.add_distro("deb", "/srv/other").await, Err(Error::Conflict(_))));
        assert!(matches!(admin.add_distro("deb2", "/srv/distros/deb").await, Err(Error::Conflict(_))));
        admin.add_domain("kratos", "example.com").await.unwrap();
        assert!(matches!(admin.add_domain("kratos", "example.com").await, Err(Error::Conflict(_))));
        assert!(matches!(admin.add_domain("nobody", "other.com").await, Err(Error::BadInput { .. })));
        let token = admin.add_token("kratos", "ci").await.unwrap();
        assert!(token.token.starts_with(&format!("berth_{}_", token.info.id)));
    }
}
