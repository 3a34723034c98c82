//! The gRPC adapter: authenticate, validate the proto shape, convert to
//! domain types, call [`crate::Api`], convert back. No business logic here.
//!
//! # Layout
//! - `entities`: `huddle.v1.Entities`
//! - `rooms`: `huddle.v1.Rooms`
//! - `knowledge`: `huddle.v1.Knowledge`
//! - `notifications`: `huddle.v1.Notifications`
//! - `metrics`: request counts and latencies per method

use std::sync::Arc;

use tonic::Status;

use crate::auth::Authenticator;
use crate::{Api, Runtime};

mod entities;
mod knowledge;
mod metrics;
mod notifications;
mod rooms;

pub use entities::EntitiesService;
pub use knowledge::KnowledgeService;
pub use metrics::MetricsLayer;
pub use notifications::NotificationsService;
pub use rooms::RoomsService;

/// What every service needs: the runtime and the authenticator.
#[derive(Clone)]
pub struct Services {
    rt: Runtime,
    auth: Arc<Authenticator>,
}

impl Services {
    pub fn new(rt: Runtime, admin_key: &str) -> Self {
        Services { rt, auth: Arc::new(Authenticator::new(admin_key)) }
    }

    /// The caller's [`Api`], from the `authorization: Bearer <key>` metadata.
    async fn api<T>(&self, req: &tonic::Request<T>) -> Result<Api, Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let scope = self.auth.authenticate(&self.rt, header).await?;
        Ok(self.rt.scoped(scope))
    }

    /// The key checker, shared with the HTTP side (chat WebSockets).
    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.auth.clone()
    }

    pub fn entities(&self) -> EntitiesService {
        EntitiesService(self.clone())
    }

    pub fn rooms(&self) -> RoomsService {
        RoomsService(self.clone())
    }

    pub fn knowledge(&self) -> KnowledgeService {
        KnowledgeService(self.clone())
    }

    pub fn notifications(&self) -> NotificationsService {
        NotificationsService(self.clone())
    }
}

/// An optional proto string: empty means unset.
fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}
