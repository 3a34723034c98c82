//! Room lifecycle routing (`notify.rooms`): room events become notifications.
//! The room hub's tap hands every published event to one task, which sends
//! invitations when a participant with an email or phone joins, cancellation
//! notices when a room is cancelled, summaries when it ends, and `room.<event>`
//! webhooks, each with an idempotency key made of the room, the event's sequence
//! number and the channel, so an event routed twice sends once.
//!
//! Events are routed after they are committed; one published just before the
//! node dies is not routed (a gap the outbox itself does not have: writing the
//! notifications in the room change's transaction would close it).

use std::sync::{Arc, Weak};

use huddle_actors::hub::EventTap;
use huddle_actors::notify::ics::{IcsEvent, IcsMethod, render};
use huddle_core::{Channel, Participant, Room, RoomEvent, now_ms};
use huddle_storage::PageRequest;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{SendRequest, smtp_settings, twilio_settings};
use crate::config::RoomNotifyConfig;
use crate::{Inner, Runtime};

/// Transcript lines a summary quotes at most.
const SUMMARY_LINES: u32 = 20;

pub(crate) struct RoomRouter {
    events_tx: mpsc::UnboundedSender<RoomEvent>,
    events_rx: mpsc::UnboundedReceiver<RoomEvent>,
    config: RoomNotifyConfig,
}

impl RoomRouter {
    /// A router for `config`, or none when no switch is on.
    pub(crate) fn new(config: &RoomNotifyConfig) -> Option<RoomRouter> {
        if !(config.invitations || config.cancellations || config.summaries || config.webhooks) {
            return None;
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Some(RoomRouter { events_tx, events_rx, config: config.clone() })
    }

    /// The hub tap feeding this router.
    pub(crate) fn tap(&self) -> EventTap {
        let tx = self.events_tx.clone();
        let c = self.config.clone();
        Arc::new(move |e: &RoomEvent| {
            let wanted = c.webhooks
                || (c.invitations && e.kind == "participant_joined")
                || (c.cancellations && e.kind == "cancelled")
                || (c.summaries && e.kind == "completed");
            if wanted {
                let _ = tx.send(e.clone());
            }
        })
    }

    /// Routes events until the runtime is gone.
    pub(crate) fn start(self, rt: Weak<Inner>) {
        let RoomRouter { events_tx, mut events_rx, config } = self;
        drop(events_tx);
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                let Some(inner) = rt.upgrade() else { break };
                let rt = Runtime { inner };
                if let Err(e) = route(&rt, &config, &event).await {
                    warn!(room = %event.room_id, seq = event.seq, kind = %event.kind, error = %e, "cannot route a room event");
                }
            }
        });
    }
}

fn room_json(room: &Room) -> serde_json::Value {
    let fmt = |ms: Option<i64>| ms.map(|ms| huddle_core::time::rfc3339(ms, true));
    let duration = match (room.started_at_ms, room.ended_at_ms) {
        (Some(s), Some(e)) => (e - s).max(0) / 60_000,
        _ => 0,
    };
    serde_json::json!({
        "id": room.id,
        "title": room.title,
        "status": room.status.as_str(),
        "scheduled_for": fmt(room.scheduled_for_ms),
        "started_at": fmt(room.started_at_ms),
        "ended_at": fmt(room.ended_at_ms),
        "duration_minutes": duration,
        "cancel_reason": room.cancel_reason,
    })
}

fn ics(room: &Room, p: &Participant, method: IcsMethod) -> String {
    let start = room.scheduled_for_ms.or(room.started_at_ms).unwrap_or(room.created_at_ms);
    render(
        &IcsEvent {
            uid: format!("{}@huddle", room.id),
            sequence: if method == IcsMethod::Cancel { 1 } else { 0 },
            method,
            summary: room.title.clone(),
            description: None,
            location: None,
            start_ms: start,
            end_ms: start + 3_600_000,
            organizer_email: "meetings@huddle.invalid".into(),
            attendees: p.email.iter().map(|e| (p.display_name.clone(), e.clone())).collect(),
            url: None,
        },
        now_ms(),
    )
}

async fn route(rt: &Runtime, config: &RoomNotifyConfig, event: &RoomEvent) -> Result<(), crate::ApiError> {
    let api = rt.admin();
    let store = rt.store();
    let room = store.get_room(&event.room_id).await?;
    let key = |channel: &str, who: &str| Some(format!("room:{}:{}:{channel}:{who}", room.id, event.seq));
    if config.webhooks {
        let kind = format!("room.{}", event.kind);
        let any = store.list_endpoints(&room.entity_id).await?.iter().any(|e| !e.disabled && e.accepts(&kind));
        if any {
            api.send_notification(SendRequest {
                entity_id: room.entity_id.clone(),
                channel: Some(Channel::Webhook),
                event_type: kind,
                data: serde_json::json!({"room_id": room.id, "seq": event.seq, "at_ms": event.at_ms, "event": event.data}),
                idempotency_key: key("webhook", "all"),
                ..Default::default()
            })
            .await?;
        }
    }
    let template = match event.kind.as_str() {
        "participant_joined" if config.invitations => "room_invitation",
        "cancelled" if config.cancellations => "room_cancelled",
        "completed" if config.summaries => "room_summary",
        _ => return Ok(()),
    };
    let everyone = store.list_participants(&room.id).await?;
    let (method, who): (Option<IcsMethod>, Vec<&Participant>) = match template {
        "room_invitation" => {
            let id = event.data["participant_id"].as_str().unwrap_or_default();
            (Some(IcsMethod::Request), everyone.iter().filter(|p| p.id == id).collect())
        }
        "room_cancelled" => (Some(IcsMethod::Cancel), everyone.iter().collect()),
        _ => (None, everyone.iter().collect()),
    };
    let entity = store.get_entity(&room.entity_id).await?;
    let mut names: Vec<&str> = Vec::new();
    for p in &everyone {
        if !names.contains(&p.display_name.as_str()) {
            names.push(&p.display_name);
        }
    }
    let (transcript, segments) = if template == "room_summary" {
        let page = store.list_transcript(&room.id, PageRequest { size: 500, token: String::new() }).await?;
        let lines: Vec<serde_json::Value> = page
            .items
            .iter()
            .take(SUMMARY_LINES as usize)
            .map(|s| {
                let speaker = display_name(&s.participant_id, &everyone);
                serde_json::json!({"speaker": speaker, "text": s.text})
            })
            .collect();
        (lines, page.items.len())
    } else {
        (Vec::new(), 0)
    };
    let email_on = smtp_settings(rt.notify_config()).ok().flatten().is_some();
    let sms_on = twilio_settings(rt.notify_config()).is_some();
    for p in who {
        let data = serde_json::json!({
            "entity": {"name": entity.name},
            "room": room_json(&room),
            "participant": {"display_name": p.display_name, "email": p.email, "phone": p.phone},
            "participants": names,
            "transcript": transcript,
            "segments": segments,
        });
        if let (Some(email), true) = (&p.email, email_on) {
            api.send_notification(SendRequest {
                entity_id: room.entity_id.clone(),
                channel: Some(Channel::Email),
                recipients: vec![email.clone()],
                template: Some(template.into()),
                ics: method.map(|m| ics(&room, p, m)),
                data: data.clone(),
                idempotency_key: key("email", &p.id),
                ..Default::default()
            })
            .await?;
        }
        if let (Some(phone), true, false) = (&p.phone, sms_on, template == "room_summary") {
            api.send_notification(SendRequest {
                entity_id: room.entity_id.clone(),
                channel: Some(Channel::Sms),
                recipients: vec![phone.clone()],
                template: Some(template.into()),
                data,
                idempotency_key: key("sms", &p.id),
                ..Default::default()
            })
            .await?;
        }
        if p.email.is_none() && p.phone.is_none() {
            debug!(participant = %p.id, "no email or phone: nothing to send");
        }
    }
    Ok(())
}

fn display_name(participant_id: &str, people: &[Participant]) -> String {
    people
        .iter()
        .find(|p| p.id == participant_id)
        .map_or_else(|| participant_id.to_string(), |p| p.display_name.clone())
}
