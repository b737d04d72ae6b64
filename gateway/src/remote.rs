//! Service traits over gRPC channels: the split deployment's adapters. Each forwards every call unchanged
//! (metadata included) to the service's own process.

use smb_proto::auth::v1 as auth_pb;
use smb_proto::auth::v1::auth_service_client::AuthServiceClient;
use smb_proto::connectors::v1 as conn_pb;
use smb_proto::connectors::v1::connectors_service_client::ConnectorsServiceClient;
use smb_proto::connectors::v1::webhooks_service_client::WebhooksServiceClient;
use smb_proto::orchestrator::v1 as orch_pb;
use smb_proto::orchestrator::v1::actions_service_client::ActionsServiceClient;
use smb_proto::orchestrator::v1::orchestrator_service_client::OrchestratorServiceClient;
use tonic::{Request, Response, Status};

/// A channel whose requests carry the caller's trace context (`traceparent`), when traces are exported.
pub type Channel = tower::util::MapRequest<
    tonic::transport::Channel,
    fn(http::Request<tonic::body::Body>) -> http::Request<tonic::body::Body>,
>;

fn with_trace(mut req: http::Request<tonic::body::Body>) -> http::Request<tonic::body::Body> {
    smb_core::telemetry::inject_headers(req.headers_mut());
    req
}

/// A lazily connecting channel to `url` whose calls carry `deadline` (as `grpc-timeout`, and enforced
/// here too), so that no call from the gateway waits on a service for ever.
fn channel(url: &str, deadline: std::time::Duration) -> anyhow::Result<Channel> {
    let inner = tonic::transport::Channel::from_shared(url.to_string())?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(deadline)
        .connect_lazy();
    Ok(tower::util::MapRequest::new(
        inner,
        with_trace as fn(_) -> _,
    ))
}

macro_rules! forward {
    ($name:ident, $client:ident, $trait:path, { $($method:ident($req:ty) -> $resp:ty;)* }) => {
        /// Forwards to the service over a gRPC channel.
        #[derive(Clone)]
        pub struct $name(pub $client<Channel>);

        impl $name {
            /// A lazily connecting client of the service at `url`; every call gets `deadline`.
            pub fn connect_lazy(url: &str, deadline: std::time::Duration) -> anyhow::Result<Self> {
                Ok(Self($client::new(channel(url, deadline)?)))
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
    add_user(auth_pb::AddUserRequest) -> auth_pb::AddUserResponse;
    check_session(auth_pb::CheckSessionRequest) -> auth_pb::CheckSessionResponse;
    get_tenant(auth_pb::GetTenantRequest) -> auth_pb::Tenant;
});

/// Forwards to the orchestrator over a gRPC channel (streamed answers included).
#[derive(Clone)]
pub struct RemoteOrchestrator(pub OrchestratorServiceClient<Channel>);

impl RemoteOrchestrator {
    /// A lazily connecting client of the service at `url`; every call gets `deadline` (a streamed answer,
    /// until its first message).
    pub fn connect_lazy(url: &str, deadline: std::time::Duration) -> anyhow::Result<Self> {
        Ok(Self(OrchestratorServiceClient::new(channel(
            url, deadline,
        )?)))
    }
}

#[tonic::async_trait]
impl smb_proto::orchestrator::v1::orchestrator_service_server::OrchestratorService
    for RemoteOrchestrator
{
    async fn process(
        &self,
        request: Request<orch_pb::ProcessRequest>,
    ) -> Result<Response<orch_pb::ProcessResponse>, Status> {
        self.0.clone().process(request).await
    }

    type ProcessStreamStream = crate::server::ChunkStream;

    async fn process_stream(
        &self,
        request: Request<orch_pb::ProcessRequest>,
    ) -> Result<Response<Self::ProcessStreamStream>, Status> {
        let r = self.0.clone().process_stream(request).await?;
        let (md, stream, ext) = r.into_parts();
        Ok(Response::from_parts(md, Box::pin(stream), ext))
    }
}

forward!(RemoteActions, ActionsServiceClient, smb_proto::orchestrator::v1::actions_service_server::ActionsService, {
    list_actions(orch_pb::ListActionsRequest) -> orch_pb::ListActionsResponse;
    get_action(orch_pb::GetActionRequest) -> orch_pb::Action;
    confirm_action(orch_pb::ConfirmActionRequest) -> orch_pb::Action;
    reject_action(orch_pb::RejectActionRequest) -> orch_pb::Action;
    list_tasks(orch_pb::ListTasksRequest) -> orch_pb::ListTasksResponse;
    update_task(orch_pb::UpdateTaskRequest) -> orch_pb::Task;
    list_audit_events(orch_pb::ListAuditEventsRequest) -> orch_pb::ListAuditEventsResponse;
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
