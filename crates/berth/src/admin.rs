//! `berth admin …`: operator commands working directly on the database (design §7).
//!
//! Each command prints the object it created as one JSON line on stdout; secrets other
//! than a freshly minted token (password hashes, jid secrets, alarm keys) are never printed.

use anyhow::Context as _;
use berth_service::admin::{self, Admin};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub db: crate::cli::DbArgs,
    #[command(subcommand)]
    pub object: Object,
}

#[derive(Subcommand)]
pub enum Object {
    /// Customers (the accounts that own containers).
    Customer {
        #[command(subcommand)]
        action: CustomerAction,
    },
    /// Servers containers run on.
    Server {
        #[command(subcommand)]
        action: ServerAction,
    },
    /// Platform distros (root filesystem directories).
    Distro {
        #[command(subcommand)]
        action: DistroAction,
    },
    /// Containers of a customer on a server.
    Container {
        #[command(subcommand)]
        action: ContainerAction,
    },
    /// Domains of a customer (no DNS ownership check).
    Domain {
        #[command(subcommand)]
        action: DomainAction,
    },
    /// News items shown to customers (and, when public, to everyone).
    News {
        #[command(subcommand)]
        action: NewsAction,
    },
    /// API tokens of a customer.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
pub enum CustomerAction {
    /// Create a customer.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        company: Option<String>,
        #[arg(long)]
        vat: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ServerAction {
    /// Create a server.
    Add {
        #[arg(long)]
        name: String,
        /// The server's IP address.
        #[arg(long)]
        address: String,
        /// Memory capacity in MB.
        #[arg(long)]
        memory: i64,
        /// Storage capacity in MB.
        #[arg(long)]
        storage: i64,
        /// Username of the customer owning this (dedicated) server.
        #[arg(long)]
        owner: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum DistroAction {
    /// Register a distro.
    Add {
        #[arg(long)]
        name: String,
        /// Absolute path of the root filesystem directory on the servers (need not exist yet).
        #[arg(long)]
        path: String,
    },
}

#[derive(Subcommand)]
pub enum ContainerAction {
    /// Create a container (same capacity check as customers get).
    Add {
        /// Username of the owner.
        #[arg(long)]
        customer: String,
        /// Server name.
        #[arg(long)]
        server: String,
        #[arg(long)]
        name: String,
        /// Memory in MB.
        #[arg(long)]
        memory: i64,
        /// Storage in MB.
        #[arg(long)]
        storage: i64,
    },
    /// Delete a container; the agent of its server removes whatever of it runs.
    Remove {
        #[arg(long)]
        uid: i64,
    },
}

#[derive(Subcommand)]
pub enum DomainAction {
    /// Give a domain to a customer.
    Add {
        /// Username of the owner.
        #[arg(long)]
        customer: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum NewsAction {
    /// Publish a news item.
    Add {
        #[arg(long)]
        content: String,
        /// Show it to anonymous readers too.
        #[arg(long)]
        public: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// Mint a bearer token for a customer (printed once).
    Add {
        /// Username of the owner.
        #[arg(long)]
        customer: String,
        #[arg(long, default_value = "admin")]
        name: String,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let store = args.db.open_store().await?;
    let result = execute(&Admin::new(store.clone()), args.object).await;
    store.close().await;
    crate::cli::write_stdout(&format!("{}\n", result?))
        .context("the change is committed, but printing what was created failed")
}

async fn execute(admin: &Admin, object: Object) -> anyhow::Result<Value> {
    Ok(match object {
        Object::Customer { action: CustomerAction::Add { username, password, company, vat, email } } => {
            let c = admin.add_customer(admin::NewCustomer { username, password, email, company, vat }).await?;
            json!({
                "id": c.id, "username": c.username, "email": c.email, "company": c.company, "vat": c.vat,
                "uuid": c.uuid, "active": c.active, "created_at": c.created_at,
            })
        }
        Object::Server { action: ServerAction::Add { name, address, memory, storage, owner } } => {
            let s = admin.add_server(admin::NewServer { name, address, memory, storage, owner }).await?;
            json!({
                "id": s.id, "name": s.name, "address": s.address, "memory": s.memory, "storage": s.storage,
                "uuid": s.uuid, "owner_id": s.owner_id,
            })
        }
        Object::Distro { action: DistroAction::Add { name, path } } => {
            let d = admin.add_distro(&name, &path).await?;
            json!({ "id": d.id, "name": d.name, "path": d.path, "uuid": d.uuid })
        }
        Object::Container { action: ContainerAction::Add { customer, server, name, memory, storage } } => {
            let c = admin.add_container(admin::NewContainer { customer, server, name, memory, storage }).await?;
            json!({
                "id": c.id, "uid": c.uid(), "uuid": c.uuid, "ip": c.ip(), "hostname": c.hostname(), "name": c.name,
                "customer_id": c.customer_id, "server_id": c.server_id, "memory": c.memory, "storage": c.storage,
                "generation": c.generation,
            })
        }
        Object::Container { action: ContainerAction::Remove { uid } } => {
            let c = admin.remove_container(uid).await?;
            json!({ "id": c.id, "uid": c.uid(), "uuid": c.uuid, "name": c.name, "removed": true })
        }
        Object::Domain { action: DomainAction::Add { customer, name } } => {
            let d = admin.add_domain(&customer, &name).await?;
            json!({ "id": d.id, "name": d.name, "uuid": d.uuid, "customer_id": d.customer_id })
        }
        Object::News { action: NewsAction::Add { content, public } } => {
            let n = admin.add_news(&content, public).await?;
            json!({ "id": n.id, "content": n.content, "public": n.public, "created_at": n.created_at })
        }
        Object::Token { action: TokenAction::Add { customer, name } } => {
            let t = admin.add_token(&customer, &name).await?;
            json!({ "id": t.info.id, "name": t.info.name, "customer_id": t.info.customer_id, "token": t.token })
        }
    })
}
