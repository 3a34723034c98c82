//! `huddle.v1.Notifications`.

use huddle_proto::conversions as conv;
use huddle_proto::v1::{self, notifications_server::Notifications};
use huddle_storage::{NotificationFilter, PageRequest};
use tonic::{Request, Response, Status};

use super::{Services, non_empty};
use crate::error::ApiError;
use crate::notify::{NewEndpoint, SendRequest};

pub struct NotificationsService(pub(super) Services);

type Reply<T> = Result<Response<T>, Status>;

fn optional_channel(raw: i32) -> Result<Option<huddle_core::Channel>, ApiError> {
    if raw == 0 {
        return Ok(None);
    }
    conv::channel(raw).map(Some).ok_or_else(|| ApiError::invalid("channel", format!("unknown channel {raw}")))
}

#[tonic::async_trait]
impl Notifications for NotificationsService {
    async fn send(&self, req: Request<v1::SendRequest>) -> Reply<v1::SendResponse> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let data = if r.data_json.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&r.data_json).map_err(|e| ApiError::invalid("data_json", format!("not JSON: {e}")))?
        };
        let send = SendRequest {
            entity_id: r.entity_id,
            channel: optional_channel(r.channel)?,
            recipients: r.recipients,
            event_type: r.event_type,
            template: non_empty(r.template),
            subject: non_empty(r.subject),
            text: non_empty(r.text),
            html: non_empty(r.html),
            ics: non_empty(r.ics),
            data,
            scheduled_for_ms: r.scheduled_for.as_ref().map(conv::ms),
            idempotency_key: non_empty(r.idempotency_key),
        };
        let sent = api.send_notification(send).await?;
        Ok(Response::new(v1::SendResponse { ids: sent.ids, duplicate: sent.duplicate, warnings: sent.warnings }))
    }

    async fn get_notification(&self, req: Request<v1::GetNotificationRequest>) -> Reply<v1::Notification> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(api.get_notification(&req.into_inner().id).await?.into()))
    }

    async fn list_notifications(
        &self,
        req: Request<v1::ListNotificationsRequest>,
    ) -> Reply<v1::ListNotificationsResponse> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let status = match r.status {
            0 => None,
            raw => Some(
                conv::notification_status(raw)
                    .ok_or_else(|| ApiError::invalid("status", format!("unknown status {raw}")))?,
            ),
        };
        let filter = NotificationFilter {
            entity_id: non_empty(r.entity_id),
            channel: optional_channel(r.channel)?,
            status,
            recipient: non_empty(r.recipient),
        };
        let page = api.list_notifications(filter, PageRequest { size: r.page_size, token: r.page_token }).await?;
        Ok(Response::new(v1::ListNotificationsResponse {
            notifications: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn cancel_notification(&self, req: Request<v1::CancelNotificationRequest>) -> Reply<v1::Notification> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(api.cancel_notification(&req.into_inner().id).await?.into()))
    }

    async fn create_endpoint(&self, req: Request<v1::CreateEndpointRequest>) -> Reply<v1::WebhookEndpoint> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let mut headers: Vec<(String, String)> = r.headers.into_iter().collect();
        headers.sort();
        let new = NewEndpoint { entity_id: r.entity_id, url: r.url, event_types: r.event_types, headers };
        Ok(Response::new(api.create_endpoint(new).await?.into()))
    }

    async fn list_endpoints(&self, req: Request<v1::ListEndpointsRequest>) -> Reply<v1::ListEndpointsResponse> {
        let api = self.0.api(&req).await?;
        let endpoints = api.list_endpoints(&req.into_inner().entity_id).await?;
        Ok(Response::new(v1::ListEndpointsResponse { endpoints: endpoints.into_iter().map(Into::into).collect() }))
    }

    async fn disable_endpoint(&self, req: Request<v1::DisableEndpointRequest>) -> Reply<v1::WebhookEndpoint> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(api.disable_endpoint(&req.into_inner().id).await?.into()))
    }

    async fn rotate_endpoint_secret(
        &self,
        req: Request<v1::RotateEndpointSecretRequest>,
    ) -> Reply<v1::WebhookEndpoint> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(api.rotate_endpoint_secret(&req.into_inner().id).await?.into()))
    }

    async fn set_preference(&self, req: Request<v1::SetPreferenceRequest>) -> Reply<v1::Preference> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let channel = optional_channel(r.channel)?.ok_or_else(|| ApiError::invalid("channel", "is required"))?;
        Ok(Response::new(api.set_preference(&r.entity_id, &r.recipient, channel, r.opted_out).await?.into()))
    }
}
