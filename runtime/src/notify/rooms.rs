//! Room lifecycle routing (`notify.rooms`): room events become notifications.
//! The room hub's tap hands every published event to one task, which sends
//! invitations when a participant with an email or phone joins, cancellation
//! notices when a room is cancelled, summaries when it ends, and `room.<event>`
//! webhooks, each with an idempotency key made of the room, the event's sequence
//! number and the channel, so an event routed twice sends once.
//!
//! Events are routed after they are committed. How far each room's log has been
//! routed is stored (`room_routing`), so nothing committed is lost to a crash:
//! at start-up, and whenever the routing task restarts after a panic, every room
//! with unrouted events is routed from its event log (events older than
//! `notify.rooms.replay_window_ms` are passed over). A live event that arrives
//! after a gap (an earlier event failed to route) routes the gap from the log
//! first. One recipient that cannot be notified is logged and passed over; the
//! others still get theirs.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use huddle_actors::hub::EventTap;
use huddle_actors::notify::ics::{IcsEvent, IcsMethod, render};
use huddle_core::{Channel, Participant, Room, RoomEvent, RoomEventData, now_ms};
use huddle_storage::PageRequest;
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, info, warn};

use super::{SendRequest, smtp_settings, twilio_settings};
use crate::config::RoomNotifyConfig;
use crate::{Inner, Runtime};

/// Transcript lines a summary quotes at most.
const SUMMARY_LINES: u32 = 20;
/// Events read from a room's log at a time when catching up.
const REPLAY_PAGE: u32 = 500;
/// Live events routed before the cursors are written.
const BATCH: usize = 256;

type EventsRx = Arc<Mutex<mpsc::UnboundedReceiver<RoomEvent>>>;

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

    /// The hub tap feeding this router: every event, so that the router sees
    /// each room's sequence numbers without gaps.
    pub(crate) fn tap(&self) -> EventTap {
        let tx = self.events_tx.clone();
        Arc::new(move |e: &RoomEvent| {
            let _ = tx.send(e.clone());
        })
    }

    /// Routes events until the runtime is gone. The routing task is supervised: a
    /// panic restarts it (after a capped backoff), and it resumes from the stored
    /// cursors.
    pub(crate) fn start(self, rt: Weak<Inner>) {
        let RoomRouter { events_tx, events_rx, config } = self;
        drop(events_tx);
        let events_rx: EventsRx = Arc::new(Mutex::new(events_rx));
        tokio::spawn(async move {
            let mut restarts: u32 = 0;
            loop {
                let task = tokio::spawn(run(rt.clone(), config.clone(), events_rx.clone()));
                match task.await {
                    Err(e) if e.is_panic() => {
                        restarts += 1;
                        metrics::counter!("huddle_room_router_restarts_total").increment(1);
                        let backoff = Duration::from_millis(100 << restarts.min(6));
                        warn!(
                            restarts,
                            backoff_ms = backoff.as_millis() as u64,
                            "the room router panicked: restarting from the event logs"
                        );
                        tokio::time::sleep(backoff).await;
                    }
                    _ => break,
                }
            }
        });
    }
}

/// Whether `config` turns `event` into any notification.
fn wanted(config: &RoomNotifyConfig, event: &RoomEvent) -> bool {
    config.webhooks
        || (config.invitations && matches!(event.data, RoomEventData::ParticipantJoined(_)))
        || (config.cancellations && matches!(event.data, RoomEventData::Cancelled(_)))
        || (config.summaries && matches!(event.data, RoomEventData::Completed(_)))
}

/// What the router knows of each room: the last seq routed (or passed over).
#[derive(Default)]
struct Cursors {
    routed: HashMap<String, u64>,
    /// Rooms whose cursor moved since the last write.
    dirty: HashMap<String, u64>,
}

impl Cursors {
    fn advance(&mut self, room_id: &str, seq: u64) {
        self.routed.insert(room_id.to_string(), seq);
        self.dirty.insert(room_id.to_string(), seq);
    }

    async fn flush(&mut self, rt: &Runtime) {
        if self.dirty.is_empty() {
            return;
        }
        let cursors: Vec<(String, u64)> = self.dirty.drain().collect();
        if let Err(e) = rt.store().advance_routed_seqs(&cursors).await {
            // The notices went out; only the cursors are behind, and a resume sends
            // nothing twice (idempotency keys).
            warn!(rooms = cursors.len(), error = %e, "cannot store room routing cursors");
        }
    }
}

async fn run(rt: Weak<Inner>, config: RoomNotifyConfig, events_rx: EventsRx) {
    let mut events_rx = events_rx.lock().await;
    let mut cursors = Cursors::default();
    {
        let Some(inner) = rt.upgrade() else { return };
        resume(&Runtime { inner }, &config, &mut cursors).await;
    }
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        if events_rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let Some(inner) = rt.upgrade() else { return };
        let rt = Runtime { inner };
        for event in batch.drain(..) {
            live(&rt, &config, &mut cursors, event).await;
        }
        cursors.flush(&rt).await;
    }
}

/// Routes every unrouted event of every room that has some, from the logs.
async fn resume(rt: &Runtime, config: &RoomNotifyConfig, cursors: &mut Cursors) {
    let window = i64::try_from(config.replay_window_ms).unwrap_or(i64::MAX);
    let since = now_ms().saturating_sub(window);
    let rooms = match rt.store().list_unrouted_rooms(since).await {
        Ok(rooms) => rooms,
        Err(e) => {
            warn!(error = %e, "cannot list rooms with unrouted events: their notices wait for the next start");
            return;
        }
    };
    if !rooms.is_empty() {
        info!(rooms = rooms.len(), "routing room events committed before the last stop");
    }
    for (room_id, from) in rooms {
        cursors.routed.insert(room_id.clone(), from);
        catch_up(rt, config, cursors, &room_id, u64::MAX, since).await;
        cursors.flush(rt).await;
    }
}

/// Routes `room_id`'s logged events after its cursor, up to `until` (inclusive).
/// Stops at the first event that cannot be routed, leaving the cursor before it.
async fn catch_up(
    rt: &Runtime,
    config: &RoomNotifyConfig,
    cursors: &mut Cursors,
    room_id: &str,
    until: u64,
    since_ms: i64,
) -> bool {
    loop {
        let after = cursors.routed.get(room_id).copied().unwrap_or(0);
        if after >= until {
            return true;
        }
        let events = match rt.store().list_events(room_id, after, REPLAY_PAGE).await {
            Ok(events) => events,
            Err(e) => {
                warn!(room = %room_id, after, error = %e, "cannot read a room's events to route them");
                return false;
            }
        };
        if events.is_empty() {
            return true;
        }
        for event in events.iter().take_while(|e| e.seq <= until) {
            if wanted(config, event) {
                if event.at_ms < since_ms {
                    warn!(room = %room_id, seq = event.seq, kind = %event.kind(), "an unrouted room event is older than notify.rooms.replay_window_ms: passed over");
                } else if let Err(e) = route(rt, config, event).await {
                    warn!(room = %room_id, seq = event.seq, kind = %event.kind(), error = %e, "cannot route a room event: it is retried with the room's next event or at the next start");
                    return false;
                }
            }
            cursors.advance(room_id, event.seq);
        }
        if events.last().is_some_and(|e| e.seq >= until) || events.len() < REPLAY_PAGE as usize {
            return true;
        }
    }
}

/// Routes one live event, and first any gap before it.
async fn live(rt: &Runtime, config: &RoomNotifyConfig, cursors: &mut Cursors, event: RoomEvent) {
    match cursors.routed.get(&event.room_id).copied() {
        Some(done) if done >= event.seq => return,
        Some(done) if done + 1 < event.seq => {
            // An earlier event of this room did not route: take the log from there.
            catch_up(rt, config, cursors, &event.room_id, event.seq, i64::MIN).await;
            return;
        }
        _ => {}
    }
    if wanted(config, &event) {
        if let Err(e) = route(rt, config, &event).await {
            warn!(room = %event.room_id, seq = event.seq, kind = %event.kind(), error = %e, "cannot route a room event: it is retried with the room's next event or at the next start");
            // Hold the cursor before this event: the next one catches up from here.
            cursors.routed.entry(event.room_id.clone()).or_insert(event.seq.saturating_sub(1));
            return;
        }
        cursors.advance(&event.room_id, event.seq);
    } else {
        // Nothing to send: remember it in memory; the stored cursor moves with the
        // room's next routed event.
        cursors.routed.insert(event.room_id.clone(), event.seq);
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
        let kind = format!("room.{}", event.kind());
        let any = store.list_endpoints(&room.entity_id).await?.iter().any(|e| !e.disabled && e.accepts(&kind));
        if any {
            let sent = api.send_notification(SendRequest {
                entity_id: room.entity_id.clone(),
                channel: Some(Channel::Webhook),
                event_type: kind,
                data: serde_json::json!({"room_id": room.id, "seq": event.seq, "at_ms": event.at_ms, "event": event.data.data_value()}),
                idempotency_key: key("webhook", "all"),
                ..Default::default()
            })
            .await;
            per_recipient(sent, event, "endpoints", "webhook")?;
        }
    }
    let template = match &event.data {
        RoomEventData::ParticipantJoined(_) if config.invitations => "room_invitation",
        RoomEventData::Cancelled(_) if config.cancellations => "room_cancelled",
        RoomEventData::Completed(_) if config.summaries => "room_summary",
        _ => return Ok(()),
    };
    let everyone = store.list_participants(&room.id).await?;
    let (method, who): (Option<IcsMethod>, Vec<&Participant>) = match template {
        "room_invitation" => {
            let RoomEventData::ParticipantJoined(joined) = &event.data else { return Ok(()) };
            let id = joined.participant_id.as_str();
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
            let sent = api
                .send_notification(SendRequest {
                    entity_id: room.entity_id.clone(),
                    channel: Some(Channel::Email),
                    recipients: vec![email.clone()],
                    template: Some(template.into()),
                    ics: method.map(|m| ics(&room, p, m)),
                    data: data.clone(),
                    idempotency_key: key("email", &p.id),
                    ..Default::default()
                })
                .await;
            per_recipient(sent, event, &p.id, "email")?;
        }
        if let (Some(phone), true, false) = (&p.phone, sms_on, template == "room_summary") {
            let sent = api
                .send_notification(SendRequest {
                    entity_id: room.entity_id.clone(),
                    channel: Some(Channel::Sms),
                    recipients: vec![phone.clone()],
                    template: Some(template.into()),
                    data,
                    idempotency_key: key("sms", &p.id),
                    ..Default::default()
                })
                .await;
            per_recipient(sent, event, &p.id, "sms")?;
        }
        if p.email.is_none() && p.phone.is_none() {
            debug!(participant = %p.id, "no email or phone: nothing to send");
        }
    }
    Ok(())
}

/// One recipient's send: a refusal of this recipient (a bad address, an opt-out
/// rule, a template error) is logged and passed over so the others still get
/// theirs; a failure of the node (storage down, overload) fails the event, which
/// is then routed again from the log.
fn per_recipient(
    sent: Result<super::Sent, crate::ApiError>,
    event: &RoomEvent,
    participant_id: &str,
    channel: &str,
) -> Result<(), crate::ApiError> {
    use crate::ApiError as E;
    match sent {
        Ok(_) => Ok(()),
        Err(
            e @ (E::Unavailable(_) | E::Internal(_) | E::DeadlineExceeded(_) | E::Aborted(_) | E::ResourceExhausted(_)),
        ) => Err(e),
        Err(e) => {
            warn!(room = %event.room_id, seq = event.seq, participant = %participant_id, channel, error = %e, "cannot notify a participant: passed over");
            Ok(())
        }
    }
}

fn display_name(participant_id: &str, people: &[Participant]) -> String {
    people
        .iter()
        .find(|p| p.id == participant_id)
        .map_or_else(|| participant_id.to_string(), |p| p.display_name.clone())
}
