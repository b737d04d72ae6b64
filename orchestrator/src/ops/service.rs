//! `smb.orchestrator.v1.ActionsService` over [`Ops`]: the caller comes from the call's metadata.

use std::sync::Arc;

use smb_core::tenant::Caller;
use smb_proto::orchestrator::v1 as pb;
use smb_proto::orchestrator::v1::actions_service_server::ActionsService;
use tonic::{Request, Response, Status};

use super::Ops;

#[derive(Clone)]
pub struct ActionsServiceImpl(pub Arc<Ops>);

#[tonic::async_trait]
impl ActionsService for ActionsServiceImpl {
    async fn list_actions(
        &self,
        req: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        let actions = self.0.list(&caller, r.status.trim(), r.limit).await?;
        Ok(Response::new(pb::ListActionsResponse { actions }))
    }

    async fn get_action(
        &self,
        req: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        let caller = Caller::from_request(&req)?;
        Ok(Response::new(
            self.0.get(&caller, &req.into_inner().id).await?,
        ))
    }

    async fn confirm_action(
        &self,
        req: Request<pb::ConfirmActionRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        let caller = Caller::from_request(&req)?;
        Ok(Response::new(
            self.0.confirm(&caller, &req.into_inner().id).await?,
        ))
    }

    async fn reject_action(
        &self,
        req: Request<pb::RejectActionRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        let caller = Caller::from_request(&req)?;
        Ok(Response::new(
            self.0.reject(&caller, &req.into_inner().id).await?,
        ))
    }

    async fn list_tasks(
        &self,
        req: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let tasks = self
            .0
            .list_tasks(&caller, req.into_inner().status.trim())
            .await?;
        Ok(Response::new(pb::ListTasksResponse { tasks }))
    }

    async fn update_task(
        &self,
        req: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.into_inner();
        Ok(Response::new(
            self.0.update_task(&caller, &r.id, r.status.trim()).await?,
        ))
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let events = self.0.audit_events(&caller, req.into_inner().limit).await?;
        Ok(Response::new(pb::ListAuditEventsResponse { events }))
    }
}
