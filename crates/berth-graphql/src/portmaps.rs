//! Port mappings of the caller's dedicated servers.

use async_graphql::{Context, InputObject, Object};
use berth_service::portmaps::NewPortmapping;

use crate::error::GqlResult;
use crate::{caller, service};

/// `server address:publicPort/proto` forwarded to `containerIp:privatePort`.
pub struct Portmapping(pub berth_model::Portmap);

#[Object]
impl Portmapping {
    async fn id(&self) -> i64 {
        self.0.id
    }
    /// `tcp` or `udp`.
    async fn proto(&self) -> &str {
        self.0.proto.as_str()
    }
    async fn public_port(&self) -> i64 {
        self.0.public_port
    }
    async fn private_port(&self) -> i64 {
        self.0.private_port
    }
    /// The container's uid.
    async fn container(&self) -> i64 {
        berth_model::uid_of(self.0.container_id)
    }
    async fn container_ip(&self) -> String {
        berth_model::container_ip(self.0.container_id).to_string()
    }
}

#[derive(InputObject)]
pub struct CreatePortmappingInput {
    /// Uid of one of the caller's containers on that server.
    pub container: i64,
    /// `tcp` or `udp`.
    pub proto: String,
    /// 1024–65535, not 1999, 3022 or 3026.
    pub public_port: i64,
    /// 1024–65535.
    pub private_port: i64,
}

#[derive(Default)]
pub struct PortmapQuery;

#[Object]
impl PortmapQuery {
    /// Every mapping on the caller's server with this address (FORBIDDEN for any other).
    async fn portmappings(&self, ctx: &Context<'_>, server: String) -> async_graphql::Result<Vec<Portmapping>> {
        let caller = caller(ctx)?;
        Ok(service(ctx).portmappings(&caller, &server).await.gql()?.into_iter().map(Portmapping).collect())
    }
}

#[derive(Default)]
pub struct PortmapMutation;

#[Object]
impl PortmapMutation {
    /// Maps a public port of the caller's server (by address) to a container's private port.
    /// A public port already mapped on that server for the protocol is a CONFLICT.
    async fn create_portmapping(
        &self,
        ctx: &Context<'_>,
        server: String,
        input: CreatePortmappingInput,
    ) -> async_graphql::Result<Portmapping> {
        let caller = caller(ctx)?;
        let new = NewPortmapping {
            container: input.container,
            proto: input.proto,
            public_port: input.public_port,
            private_port: input.private_port,
        };
        Ok(Portmapping(service(ctx).create_portmapping(&caller, &server, new).await.gql()?))
    }

    /// Removes a mapping of the caller's server (by address); returns its id.
    async fn delete_portmapping(&self, ctx: &Context<'_>, server: String, id: i64) -> async_graphql::Result<i64> {
        let caller = caller(ctx)?;
        Ok(service(ctx).delete_portmapping(&caller, &server, id).await.gql()?.id)
    }
}
