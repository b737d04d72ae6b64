//! The public gRPC (and grpc-web) face of the services on the gateway port. Protected calls are
//! authenticated from the `authorization` metadata and rate-limited exactly like the JSON routes; whatever
//! caller metadata the client sent is replaced by the validated one. Internal-only RPCs are refused.

use std::sync::Arc;

use smb_core::Error;
use smb_proto::auth::v1 as auth_pb;
use smb_proto::auth::v1::auth_service_server::AuthService;
use smb_proto::connectors::v1 as conn_pb;
use smb_proto::connectors::v1::connectors_service_server::ConnectorsService;
use smb_proto::orchestrator::v1 as orch_pb;
use smb_proto::orchestrator::v1::actions_service_server::ActionsService;
use smb_proto::orchestrator::v1::orchestrator_service_server::OrchestratorService;
use tonic::{Request, Response, Status};

use crate::authn::Authenticated;
use crate::server::AppState;

#[derive(Clone)]
pub struct Edge(pub Arc<AppState>);

impl Edge {
    async fn authenticate<T>(
        &self,
        req: &Request<T>,
        endpoint: &str,
    ) -> Result<Authenticated, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let a = self.0.authn.authenticate(header).await?;
        self.0
            .limiter
            .check(a.caller.tenant.as_str(), a.caller.user.as_str(), endpoint)
            .await?;
        Ok(a)
    }

    /// The client's address: the connection's peer (or, behind a trusted proxy, the forwarded client).
    fn client_addr<T>(&self, req: &Request<T>) -> String {
        self.0
            .proxies
            .grpc_client(req)
            .map_or_else(|| "unknown".to_string(), |a| a.to_string())
    }

    async fn public<T>(&self, req: &Request<T>, endpoint: &str) -> Result<(), Status> {
        let addr = self.client_addr(req);
        Ok(self.0.limiter.check_public(&addr, endpoint).await?)
    }

    /// The inner message under the validated caller's metadata only.
    fn rewrap<T>(a: &Authenticated, req: Request<T>) -> Request<T> {
        a.request(req.into_inner())
    }
}

#[tonic::async_trait]
impl AuthService for Edge {
    async fn signup(
        &self,
        req: Request<auth_pb::SignupRequest>,
    ) -> Result<Response<auth_pb::SignupResponse>, Status> {
        self.public(&req, "auth.signup").await?;
        self.0
            .services
            .auth
            .signup(Request::new(req.into_inner()))
            .await
    }

    async fn login(
        &self,
        req: Request<auth_pb::LoginRequest>,
    ) -> Result<Response<auth_pb::TokenPair>, Status> {
        self.public(&req, "auth.login").await?;
        // Whatever the client put in client_addr is replaced by the address we saw.
        let addr = self.client_addr(&req);
        let mut inner = req.into_inner();
        inner.client_addr = addr;
        self.0.services.auth.login(Request::new(inner)).await
    }

    async fn refresh(
        &self,
        req: Request<auth_pb::RefreshRequest>,
    ) -> Result<Response<auth_pb::TokenPair>, Status> {
        self.public(&req, "auth.refresh").await?;
        self.0
            .services
            .auth
            .refresh(Request::new(req.into_inner()))
            .await
    }

    async fn logout(
        &self,
        req: Request<auth_pb::LogoutRequest>,
    ) -> Result<Response<auth_pb::LogoutResponse>, Status> {
        let a = self.authenticate(&req, "auth.logout").await?;
        // The session is the token's own, whatever the body says.
        let msg = auth_pb::LogoutRequest {
            session_id: a.session_id.clone(),
            tenant_id: a.caller.tenant.to_string(),
        };
        self.0.services.auth.logout(a.request(msg)).await
    }

    async fn add_user(
        &self,
        req: Request<auth_pb::AddUserRequest>,
    ) -> Result<Response<auth_pb::AddUserResponse>, Status> {
        let a = self.authenticate(&req, "users.create").await?;
        self.0.services.auth.add_user(Self::rewrap(&a, req)).await
    }

    async fn get_jwks(
        &self,
        req: Request<auth_pb::GetJwksRequest>,
    ) -> Result<Response<auth_pb::GetJwksResponse>, Status> {
        self.0
            .services
            .auth
            .get_jwks(Request::new(req.into_inner()))
            .await
    }

    async fn check_session(
        &self,
        _: Request<auth_pb::CheckSessionRequest>,
    ) -> Result<Response<auth_pb::CheckSessionResponse>, Status> {
        Err(Error::new(
            smb_core::ErrorCode::PermissionDenied,
            "CheckSession is internal to the platform",
        )
        .into())
    }

    async fn get_tenant(
        &self,
        _: Request<auth_pb::GetTenantRequest>,
    ) -> Result<Response<auth_pb::Tenant>, Status> {
        Err(Error::new(
            smb_core::ErrorCode::PermissionDenied,
            "GetTenant is internal to the platform",
        )
        .into())
    }
}

#[tonic::async_trait]
impl OrchestratorService for Edge {
    async fn process(
        &self,
        req: Request<orch_pb::ProcessRequest>,
    ) -> Result<Response<orch_pb::ProcessResponse>, Status> {
        let a = self.authenticate(&req, "ai.query").await?;
        self.0
            .services
            .orchestrator
            .process(Self::rewrap(&a, req))
            .await
    }

    type ProcessStreamStream = crate::server::ChunkStream;

    async fn process_stream(
        &self,
        req: Request<orch_pb::ProcessRequest>,
    ) -> Result<Response<Self::ProcessStreamStream>, Status> {
        let a = self.authenticate(&req, "ai.query").await?;
        self.0
            .services
            .orchestrator
            .process_stream(Self::rewrap(&a, req))
            .await
    }
}

macro_rules! edge_connectors {
    ($($method:ident($req:ty) -> $resp:ty, $endpoint:literal;)*) => {
        #[tonic::async_trait]
        impl ConnectorsService for Edge {
            $(async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                let a = self.authenticate(&req, $endpoint).await?;
                self.0.services.connectors.$method(Self::rewrap(&a, req)).await
            })*
        }
    };
}

edge_connectors! {
    create_connector(conn_pb::CreateConnectorRequest) -> conn_pb::Connector, "connectors.create";
    list_connectors(conn_pb::ListConnectorsRequest) -> conn_pb::ListConnectorsResponse, "connectors.list";
    get_connector(conn_pb::GetConnectorRequest) -> conn_pb::Connector, "connectors.get";
    delete_connector(conn_pb::DeleteConnectorRequest) -> conn_pb::DeleteConnectorResponse, "connectors.delete";
    update_connector(conn_pb::UpdateConnectorRequest) -> conn_pb::Connector, "connectors.update";
    trigger_sync(conn_pb::TriggerSyncRequest) -> conn_pb::TriggerSyncResponse, "connectors.sync";
    get_sync_run(conn_pb::GetSyncRunRequest) -> conn_pb::SyncRun, "connectors.sync_status";
}

macro_rules! edge_actions {
    ($($method:ident($req:ty) -> $resp:ty, $endpoint:literal;)*) => {
        #[tonic::async_trait]
        impl ActionsService for Edge {
            $(async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                let a = self.authenticate(&req, $endpoint).await?;
                self.0.services.actions.$method(Self::rewrap(&a, req)).await
            })*
        }
    };
}

edge_actions! {
    list_actions(orch_pb::ListActionsRequest) -> orch_pb::ListActionsResponse, "actions.list";
    get_action(orch_pb::GetActionRequest) -> orch_pb::Action, "actions.get";
    confirm_action(orch_pb::ConfirmActionRequest) -> orch_pb::Action, "actions.confirm";
    reject_action(orch_pb::RejectActionRequest) -> orch_pb::Action, "actions.reject";
    list_tasks(orch_pb::ListTasksRequest) -> orch_pb::ListTasksResponse, "tasks.list";
    update_task(orch_pb::UpdateTaskRequest) -> orch_pb::Task, "tasks.update";
    list_audit_events(orch_pb::ListAuditEventsRequest) -> orch_pb::ListAuditEventsResponse, "audit.list";
}
