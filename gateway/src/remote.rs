//! Service traits over gRPC channels: the split deployment's adapters. Each forwards every call unchanged
//! (metadata included) to the service's own process.

use smb_proto::auth::v1 as auth_pb;
use smb_proto::auth::v1::auth_service_client::AuthServiceClient;
use smb_proto::connectors::v1 as conn_pb;
use smb_proto::connectors::v1::connectors_service_client::ConnectorsServiceClient;
use smb_proto::connectors::v1::webhooks_service_client::WebhooksServiceClient;
use smb_proto::orchestrator::v1 as orch_pb;
use smb_proto::orchestrator::v1::orchestrator_service_client::OrchestratorServiceClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

macro_rules! forward {
    ($name:ident, $client:ident, $trait:path, { $($method:ident($req:ty) -> $resp:ty;)* }) => {
        /// Forwards to the service over a gRPC channel.
        #[derive(Clone)]
        pub struct $name(pub $client<Channel>);

        impl $name {
            /// A lazily connecting client of the service at `url`.
            pub fn connect_lazy(url: &str) -> anyhow::Result<Self> {
                Ok(Self($client::new(Channel::from_shared(url.to_string())?.connect_lazy())))
            }
        }

        #[tonic::async_trait]
        impl $trait for $name {
            $(async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                self.0.clone().$method(request).await
            })*
        }
    };
}

forward!(RemoteAuth, AuthServiceClient, smb_proto::auth::v1::auth_service_server::AuthService, {
    signup(auth_pb::SignupRequest) -> auth_pb::SignupResponse;
    login(auth_pb::LoginRequest) -> auth_pb::TokenPair;
    refresh(auth_pb::RefreshRequest) -> auth_pb::TokenPair;
    logout(auth_pb::LogoutRequest) -> auth_pb::LogoutResponse;
    get_jwks(auth_pb::GetJwksRequest) -> auth_pb::GetJwksResponse;
    check_session(auth_pb::CheckSessionRequest) -> auth_pb::CheckSessionResponse;
    get_tenant(auth_pb::GetTenantRequest) -> auth_pb::Tenant;
});

forward!(RemoteOrchestrator, OrchestratorServiceClient, smb_proto::orchestrator::v1::orchestrator_service_server::OrchestratorService, {
    process(orch_pb::ProcessRequest) -> orch_pb::ProcessResponse;
});

forward!(RemoteConnectors, ConnectorsServiceClient, smb_proto::connectors::v1::connectors_service_server::ConnectorsService, {
    create_connector(conn_pb::CreateConnectorRequest) -> conn_pb::Connector;
    list_connectors(conn_pb::ListConnectorsRequest) -> conn_pb::ListConnectorsResponse;
    get_connector(conn_pb::GetConnectorRequest) -> conn_pb::Connector;
    delete_connector(conn_pb::DeleteConnectorRequest) -> conn_pb::DeleteConnectorResponse;
    update_connector(conn_pb::UpdateConnectorRequest) -> conn_pb::Connector;
    trigger_sync(conn_pb::TriggerSyncRequest) -> conn_pb::TriggerSyncResponse;
    get_sync_run(conn_pb::GetSyncRunRequest) -> conn_pb::SyncRun;
});

forward!(RemoteWebhooks, WebhooksServiceClient, smb_proto::connectors::v1::webhooks_service_server::WebhooksService, {
    receive(conn_pb::ReceiveWebhookRequest) -> conn_pb::ReceiveWebhookResponse;
});
