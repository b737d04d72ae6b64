//! The scheduler: starts pending runs at once (a trigger pokes it) and queues a run for every connector
//! whose plan interval has passed. Leases in the store keep two replicas from syncing one connector.

use std::sync::Arc;
use std::time::Duration;

use smb_core::ids::{SyncId, TenantId};
use smb_core::store::now_ms;
use tokio::sync::Notify;

use crate::store;
use crate::sync::SyncEngine;

pub struct Scheduler {
    engine: SyncEngine,
    wake: Arc<Notify>,
    tick: Duration,
}

impl Scheduler {
    pub fn new(engine: SyncEngine, wake: Arc<Notify>, tick: Duration) -> Self {
        Self { engine, wake, tick }
    }

    /// Runs until `shutdown` is cancelled, then waits for the sync runs it started (the caller bounds the
    /// wait; a run cut short resumes from its checkpoint when its lease lapses).
    pub async fn run(self, shutdown: tokio_util::sync::CancellationToken) {
        let runs = tokio_util::task::TaskTracker::new();
        self.serve(&shutdown, &runs).await;
        runs.close();
        runs.wait().await;
    }

    async fn serve(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
        runs: &tokio_util::task::TaskTracker,
    ) {
        loop {
            if let Err(e) = self.once(runs).await {
                tracing::warn!(error = %e, "scheduler tick failed");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.tick) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn once(&self, runs: &tokio_util::task::TaskTracker) -> Result<(), smb_core::Error> {
        for due in store::due(&self.engine.db, now_ms()).await? {
            let Ok(tenant) = due.tenant_id.parse::<TenantId>() else {
                continue;
            };
            let sync_id = match due.pending_sync_id {
                Some(id) => id,
                None => {
                    let id = SyncId::generate().to_string();
                    store::queue_run(
                        &self.engine.db,
                        &tenant,
                        &due.connector_id,
                        &id,
                        "schedule",
                        now_ms(),
                    )
                    .await?
                }
            };
            if store::acquire_lease(
                &self.engine.db,
                &due.connector_id,
                &self.engine.owner,
                now_ms(),
                now_ms() + 5_000,
            )
            .await?
            .is_none()
            {
                continue;
            }
            let engine = self.engine.clone();
            runs.spawn(async move {
                if let Err(e) = engine.run(tenant, due.connector_id.clone(), sync_id).await {
                    tracing::error!(connector_id = %due.connector_id, error = %e, "sync run aborted");
                }
            });
        }
        Ok(())
    }
}
