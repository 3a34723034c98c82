//! `OutboxActor`: the engine of notification delivery (registered as
//! `{namespace}/outbox`). It claims due notifications from the durable outbox in
//! batches, hands each to its channel's [`NotifierActor`] (its linked children),
//! and records every attempt and what follows it: delivered, retry at a time from
//! the retry schedule (with jitter, and no earlier than a `Retry-After`), failed, or
//! dead after the schedule's last attempt.
//!
//! Delivery is at least once. A claim is a lease: a node that dies mid-delivery
//! leaves rows SENDING until the lease lapses, then any node claims them again; a
//! restarted node takes back its own claims at once. Attempts finishing close
//! together are recorded in one transaction (the outcomes queued in the mailbox
//! while one write runs go into the next), which is what lets a SQLite outbox
//! deliver thousands per second.
//!
//! One webhook endpoint has at most `max_in_flight_per_endpoint` deliveries in
//! flight from this node: claims skip endpoints at their cap, and what a claim
//! brings for an endpoint beyond it waits in a short queue of that endpoint (up
//! to the cap again, so each waits for one round of the endpoint's deliveries, well
//! within the lease) or is handed back to the outbox. A slow endpoint so holds a
//! few delivery slots, never all of them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use huddle_core::{Channel, DeliveryAttempt, Notification, now_ms};
use huddle_storage::{DeliveryOutcome, DynStore, Next};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{debug, error, info, warn};

use crate::notifier::{NotifierActor, NotifierArgs, NotifierMsg, notifier_name};
use crate::notify::schedule::RetrySchedule;
use crate::notify::{AttemptResult, Deliver, Verdict};

/// The registry name of a runtime's outbox.
pub fn outbox_name(namespace: &str) -> String {
    format!("{namespace}/outbox")
}

/// The live outbox of a runtime, looked up by name.
pub fn outbox(namespace: &str) -> Option<ActorRef<OutboxMsg>> {
    ractor::registry::where_is(outbox_name(namespace)).map(ActorRef::from)
}

pub struct OutboxActor;

/// Wakes an outbox after an enqueue with at most one wake-up waiting in its mailbox:
/// the sends that arrive while it claims are all picked up by its next claim, so a
/// burst of sends costs a few claims, not one each (every claim is a write
/// transaction, and on SQLite the senders queue behind it).
#[derive(Clone, Default)]
pub struct OutboxWaker(Arc<AtomicBool>);

impl OutboxWaker {
    /// Asks `outbox` to look for due notifications, unless a wake-up is already
    /// queued (that one's claim runs after this caller's write and sees it).
    pub fn wake(&self, outbox: &ActorRef<OutboxMsg>) {
        if !self.0.swap(true, Ordering::AcqRel) && outbox.cast(OutboxMsg::Wake).is_err() {
            self.0.store(false, Ordering::Release);
        }
    }

    /// Called just before a claim: wake-ups from now on ask for another one.
    fn taken(&self) {
        self.0.store(false, Ordering::Release);
    }
}

#[derive(Clone)]
pub struct OutboxArgs {
    pub namespace: String,
    pub store: DynStore,
    /// This node's name in claims; a restarted node releases its own claims.
    pub node_id: String,
    pub schedule: RetrySchedule,
    /// The channels this node delivers, and how.
    pub deliverers: Vec<(Channel, Arc<dyn Deliver>)>,
    /// Deliveries in flight at most (over all channels).
    pub max_in_flight: usize,
    /// Deliveries in flight at most to one webhook endpoint.
    pub max_in_flight_per_endpoint: usize,
    /// Notifications claimed per query at most.
    pub claim_batch: u32,
    /// How often due notifications are looked for without a wake-up.
    pub poll_interval: Duration,
    /// How long a claim lasts; longer than a delivery's timeout.
    pub lease: Duration,
    /// Shared with the senders of this runtime (see [`OutboxWaker`]).
    pub waker: OutboxWaker,
    /// How long a claim or a record waits at most for the writes requests are
    /// waiting on (sends, room changes) on a store with one writer (SQLite); zero:
    /// not at all. See `NotifyStore::yield_to_foreground_writes`.
    pub yield_to_requests: Duration,
}

/// One finished attempt, as a notifier reports it.
pub struct Attempted {
    pub notification: Box<Notification>,
    pub started_ms: i64,
    pub duration_ms: u64,
    pub result: AttemptResult,
}

/// Counters of this outbox since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub in_flight: usize,
    /// Claimed webhooks waiting for a slot of their endpoint.
    pub queued: usize,
    pub claimed: u64,
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    pub dead: u64,
    /// Outcomes waiting to be recorded (the database was unavailable).
    pub unrecorded: usize,
}

pub enum OutboxMsg {
    /// Look for due notifications now (sent after an enqueue).
    Wake,
    /// Periodic: record outcomes, look for due notifications.
    Tick,
    Attempted(Box<Attempted>),
    /// Record the outcomes gathered so far.
    Flush,
    Stats(RpcReplyPort<OutboxStats>),
}

/// One webhook endpoint's deliveries on this node.
#[derive(Default)]
struct EndpointLoad {
    in_flight: usize,
    /// Claimed, waiting for one of the endpoint's slots; at most the cap.
    queued: VecDeque<Box<Notification>>,
}

pub struct OutboxState {
    args: OutboxArgs,
    /// Webhook endpoints with deliveries in flight, by endpoint id.
    endpoints: HashMap<String, EndpointLoad>,
    notifiers: HashMap<Channel, ActorRef<NotifierMsg>>,
    channels: Vec<Channel>,
    outcomes: Vec<DeliveryOutcome>,
    gone: Vec<(String, String)>,
    flush_queued: bool,
    stats: OutboxStats,
}

/// Outcomes kept for a later write at most while the database is unavailable; past
/// this, the oldest are dropped (their notifications are delivered again when
/// their claims lapse: at least once still holds).
const MAX_UNRECORDED: usize = 100_000;

/// Outcomes recorded per transaction at most.
const RECORD_BATCH: usize = 64;

impl OutboxState {
    async fn spawn_notifier(
        &mut self,
        myself: &ActorRef<OutboxMsg>,
        channel: Channel,
        deliverer: Arc<dyn Deliver>,
    ) -> Result<(), ActorProcessingErr> {
        let name = notifier_name(&self.args.namespace, channel);
        let (actor, _) =
            Actor::spawn_linked(Some(name), NotifierActor, NotifierArgs { channel, deliverer }, myself.get_cell())
                .await?;
        self.notifiers.insert(channel, actor);
        Ok(())
    }

    /// What a finished attempt means for its notification.
    fn outcome(&mut self, a: Attempted) -> DeliveryOutcome {
        let n = a.notification;
        let attempt_no = n.attempt_count + 1;
        let attempt = DeliveryAttempt {
            attempt: attempt_no,
            at_ms: a.started_ms,
            duration_ms: a.duration_ms,
            response_code: a.result.response_code,
            error: a.result.error.clone(),
        };
        let next = match a.result.verdict {
            Verdict::Delivered { provider_id } => {
                self.stats.delivered += 1;
                metrics::counter!("huddle_notifications_delivered_total", "channel" => n.channel.as_str()).increment(1);
                Next::Delivered { provider_id }
            }
            Verdict::Fail => {
                self.stats.failed += 1;
                metrics::counter!("huddle_notifications_failed_total", "channel" => n.channel.as_str()).increment(1);
                warn!(notification = %n.id, channel = %n.channel, error = ?a.result.error, "notification refused for good");
                Next::Failed
            }
            Verdict::Gone => {
                self.stats.failed += 1;
                metrics::counter!("huddle_notifications_failed_total", "channel" => n.channel.as_str()).increment(1);
                if n.channel == Channel::Webhook {
                    self.gone.push((n.recipient.clone(), format!("410 Gone on notification {}", n.id)));
                }
                Next::Failed
            }
            Verdict::Retry { after } => {
                let jitter: f64 = rand::random();
                match self.args.schedule.delay_after(attempt_no as usize, jitter) {
                    Some(delay) => {
                        self.stats.retried += 1;
                        let delay = after.map_or(delay, |ra| ra.max(delay));
                        debug!(notification = %n.id, attempt = attempt_no, ?delay, error = ?a.result.error, "delivery failed; will retry");
                        Next::Retry { due_at_ms: now_ms() + delay.as_millis() as i64 }
                    }
                    None => {
                        self.stats.dead += 1;
                        metrics::counter!("huddle_notifications_dead_total", "channel" => n.channel.as_str())
                            .increment(1);
                        warn!(notification = %n.id, channel = %n.channel, attempts = attempt_no, error = ?a.result.error, "notification dead-lettered after its last attempt");
                        Next::Dead
                    }
                }
            }
        };
        DeliveryOutcome { id: n.id, attempt, next }
    }

    async fn flush(&mut self) {
        self.flush_queued = false;
        // Short transactions: the single SQLite writer is shared with requests, and
        // shorter still while they are writing.
        while !self.outcomes.is_empty() {
            let free = self.args.store.yield_to_foreground_writes(self.args.yield_to_requests).await;
            let n = self.outcomes.len().min(if free { RECORD_BATCH } else { RECORD_BATCH / 4 });
            if let Err(e) = self.args.store.record_deliveries(&self.outcomes[..n]).await {
                warn!(error = %e, outcomes = self.outcomes.len(), "cannot record delivery outcomes; will retry");
                if self.outcomes.len() > MAX_UNRECORDED {
                    let drop = self.outcomes.len() - MAX_UNRECORDED;
                    self.outcomes.drain(..drop);
                }
                break;
            }
            self.outcomes.drain(..n);
        }
        for (endpoint, reason) in std::mem::take(&mut self.gone) {
            match self.args.store.disable_endpoint(&endpoint, &reason).await {
                Ok(_) => warn!(%endpoint, "webhook endpoint answered 410 Gone: disabled"),
                Err(e) => warn!(%endpoint, error = %e, "cannot disable a gone webhook endpoint"),
            }
        }
        self.stats.unrecorded = self.outcomes.len();
    }

    async fn claim(&mut self, myself: &ActorRef<OutboxMsg>) {
        self.args.waker.taken();
        let room = self.args.max_in_flight.saturating_sub(self.stats.in_flight);
        let limit = (room as u32).min(self.args.claim_batch);
        // While deliveries are in flight, claim only when a quarter batch fits: each
        // finished delivery would otherwise cost a claim (a write transaction) of its own.
        let low_water = (self.args.claim_batch.min(self.args.max_in_flight as u32) / 4).max(1);
        if limit == 0 || (self.stats.in_flight > 0 && limit < low_water) || self.channels.is_empty() {
            return;
        }
        // requests still writing after the wait: a small claim, a short write
        let limit = match self.args.store.yield_to_foreground_writes(self.args.yield_to_requests).await {
            true => limit,
            false => limit.min(low_water),
        };
        let lease = self.args.lease.as_millis() as i64;
        let skip = self.saturated();
        let claimed = match self
            .args
            .store
            .claim_notifications(&self.args.node_id, &self.channels, &skip, now_ms(), lease, limit)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot claim due notifications");
                return;
            }
        };
        let full = claimed.len() as u32 == limit;
        self.stats.claimed += claimed.len() as u64;
        let mut hand_back = Vec::new();
        for n in claimed {
            let cap = self.args.max_in_flight_per_endpoint;
            if n.channel == Channel::Webhook {
                let load = self.endpoints.entry(n.recipient.clone()).or_default();
                if load.in_flight >= cap {
                    if load.queued.len() < cap {
                        load.queued.push_back(Box::new(n));
                        self.stats.queued += 1;
                    } else {
                        hand_back.push(n.id);
                    }
                    continue;
                }
            }
            self.dispatch(myself, Box::new(n));
        }
        if !hand_back.is_empty() {
            debug!(notifications = hand_back.len(), "handing back webhooks for endpoints at their in-flight cap");
            if let Err(e) = self.args.store.release_notifications(&self.args.node_id, &hand_back).await {
                warn!(error = %e, "cannot hand claims back; they lapse by themselves");
            }
        }
        if full {
            let _ = myself.cast(OutboxMsg::Wake);
        }
    }

    /// Webhook endpoints at their in-flight cap: claims skip them.
    fn saturated(&self) -> Vec<String> {
        let cap = self.args.max_in_flight_per_endpoint;
        self.endpoints.iter().filter(|(_, l)| l.in_flight >= cap).map(|(id, _)| id.clone()).collect()
    }

    /// Hands a notification to its channel's notifier.
    fn dispatch(&mut self, myself: &ActorRef<OutboxMsg>, n: Box<Notification>) {
        let Some(notifier) = self.notifiers.get(&n.channel) else { return };
        let endpoint = (n.channel == Channel::Webhook).then(|| n.recipient.clone());
        let msg = NotifierMsg::Deliver { notification: n, reply_to: myself.clone() };
        if let Err(e) = notifier.cast(msg) {
            // The notifier is restarting; the claim lapses and another attempt follows.
            warn!(error = %e, "notifier unavailable");
            return;
        }
        self.stats.in_flight += 1;
        if let Some(endpoint) = endpoint {
            self.endpoints.entry(endpoint).or_default().in_flight += 1;
        }
    }

    /// A delivery finished: its endpoint's next queued webhook takes the slot.
    fn finished(&mut self, myself: &ActorRef<OutboxMsg>, n: &Notification) {
        self.stats.in_flight = self.stats.in_flight.saturating_sub(1);
        if n.channel != Channel::Webhook {
            return;
        }
        let Some(load) = self.endpoints.get_mut(&n.recipient) else { return };
        load.in_flight = load.in_flight.saturating_sub(1);
        match load.queued.pop_front() {
            Some(next) => {
                self.stats.queued -= 1;
                self.dispatch(myself, next);
            }
            None if load.in_flight == 0 => {
                self.endpoints.remove(&n.recipient);
            }
            None => {}
        }
    }
}

impl Actor for OutboxActor {
    type Msg = OutboxMsg;
    type State = OutboxState;
    type Arguments = OutboxArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<OutboxMsg>,
        args: OutboxArgs,
    ) -> Result<OutboxState, ActorProcessingErr> {
        match args.store.release_claims(&args.node_id).await {
            Ok(0) => {}
            Ok(n) => info!(notifications = n, node = %args.node_id, "took back notifications this node had claimed"),
            Err(e) => warn!(error = %e, "cannot release this node's claims; they lapse by themselves"),
        }
        let channels = args.deliverers.iter().map(|(c, _)| *c).collect();
        let mut state = OutboxState {
            endpoints: HashMap::new(),
            notifiers: HashMap::new(),
            channels,
            outcomes: Vec::new(),
            gone: Vec::new(),
            flush_queued: false,
            stats: OutboxStats::default(),
            args,
        };
        for (channel, deliverer) in state.args.deliverers.clone() {
            state.spawn_notifier(&myself, channel, deliverer).await?;
        }
        myself.send_interval(state.args.poll_interval, || OutboxMsg::Tick);
        let _ = myself.cast(OutboxMsg::Wake);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<OutboxMsg>,
        msg: OutboxMsg,
        state: &mut OutboxState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            OutboxMsg::Wake => state.claim(&myself).await,
            OutboxMsg::Tick => {
                state.flush().await;
                state.claim(&myself).await;
            }
            OutboxMsg::Attempted(a) => {
                state.finished(&myself, &a.notification);
                let outcome = state.outcome(*a);
                state.outcomes.push(outcome);
                if !state.flush_queued {
                    state.flush_queued = true;
                    let _ = myself.cast(OutboxMsg::Flush);
                }
            }
            OutboxMsg::Flush => {
                state.flush().await;
                state.claim(&myself).await;
            }
            OutboxMsg::Stats(reply) => {
                let _ = reply.send(state.stats.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<OutboxMsg>,
        event: SupervisionEvent,
        state: &mut OutboxState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            let failed = state.notifiers.iter().find(|(_, a)| a.get_id() == cell.get_id()).map(|(c, _)| *c);
            if let Some(channel) = failed {
                error!(%channel, error = %err, "notifier failed; restarting it");
                metrics::counter!("huddle_notifier_restarts_total", "channel" => channel.as_str()).increment(1);
                if let Some(deliverer) =
                    state.args.deliverers.iter().find(|(c, _)| *c == channel).map(|(_, d)| d.clone())
                {
                    state.spawn_notifier(&myself, channel, deliverer).await?;
                }
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<OutboxMsg>, state: &mut OutboxState) -> Result<(), ActorProcessingErr> {
        // What was delivered but not yet recorded is recorded now if possible.
        state.flush().await;
        let queued: Vec<String> =
            state.endpoints.values().flat_map(|l| l.queued.iter().map(|n| n.id.clone())).collect();
        if let Err(e) = state.args.store.release_notifications(&state.args.node_id, &queued).await {
            warn!(error = %e, "cannot hand queued webhooks back; their claims lapse by themselves");
        }
        Ok(())
    }
}
