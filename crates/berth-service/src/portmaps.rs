//! Port mappings on the customer's dedicated servers (spec §4.6, Q13 fixed: a public port is
//! unique per server and protocol).

use berth_model::{validate, Portmap, Proto, Server};
use berth_store::{containers, portmaps, servers};

use crate::{Caller, Error, Result, Service};

/// A mapping to create; `container` is a uid.
#[derive(Debug, Clone)]
pub struct NewPortmapping {
    pub container: i64,
    pub proto: String,
    pub public_port: i64,
    pub private_port: i64,
}

impl Service {
    /// The caller's servers at `address` (addresses are not unique); none is forbidden, as
    /// the reference answers for every foreign or unknown address.
    async fn owned_servers_at(
        &self,
        conn: &mut berth_store::AnyConnection,
        caller: &Caller,
        address: &str,
    ) -> Result<Vec<Server>> {
        let at_address = match validate::may_be_stored(address) {
            true => servers::by_address(conn, address).await?,
            false => Vec::new(),
        };
        let owned: Vec<Server> = at_address.into_iter().filter(|s| s.owner_id == Some(caller.customer_id)).collect();
        if owned.is_empty() {
            return Err(Error::forbidden("port mappings are managed only on servers you own"));
        }
        Ok(owned)
    }

    /// Every mapping on the caller's server at `address`, of all its containers.
    pub async fn portmappings(&self, caller: &Caller, address: &str) -> Result<Vec<Portmap>> {
        let mut conn = self.store.read().await?;
        let owned = self.owned_servers_at(&mut conn, caller, address).await?;
        let ids: Vec<i64> = owned.iter().map(|s| s.id).collect();
        Ok(portmaps::of_servers(&mut conn, &ids).await?)
    }

    /// Maps a public port of the caller's server at `address` to a private port of one of
    /// the caller's containers on that server.
    pub async fn create_portmapping(&self, caller: &Caller, address: &str, new: NewPortmapping) -> Result<Portmap> {
        let proto = Proto::parse(&new.proto).ok_or_else(|| Error::bad_input("proto", "must be \"tcp\" or \"udp\""))?;
        validate::public_port(new.public_port)?;
        validate::private_port(new.private_port)?;
        let container_id = berth_model::id_of_uid(new.container).ok_or(Error::NotFound("container"))?;
        let mut tx = self.store.write().await?;
        let owned = self.owned_servers_at(&mut tx, caller, address).await?;
        let container =
            containers::owned(&mut tx, caller.customer_id, container_id).await?.ok_or(Error::NotFound("container"))?;
        if !owned.iter().any(|s| s.id == container.server_id) {
            return Err(Error::bad_input("container", "is not on this server"));
        }
        let map = portmaps::NewPortmap {
            server_id: container.server_id,
            container_id: container.id,
            proto,
            public_port: new.public_port,
            private_port: new.private_port,
        };
        let created = portmaps::insert(&mut tx, &map).await.map_err(|e| match e {
            berth_store::StoreError::Unique => {
                Error::conflict("the public port or the container's private port is already mapped for this protocol")
            }
            other => other.into(),
        })?;
        portmaps::touch_server(&mut tx, created.server_id).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Removes a mapping of the caller's server at `address`.
    pub async fn delete_portmapping(&self, caller: &Caller, address: &str, id: i64) -> Result<Portmap> {
        let mut tx = self.store.write().await?;
        let owned = self.owned_servers_at(&mut tx, caller, address).await?;
        let ids: Vec<i64> = owned.iter().map(|s| s.id).collect();
        let map = portmaps::on_servers(&mut tx, &ids, id).await?.ok_or(Error::NotFound("port mapping"))?;
        portmaps::delete(&mut tx, map.id).await?;
        portmaps::touch_server(&mut tx, map.server_id).await?;
        tx.commit().await?;
        Ok(map)
    }
}
