//! `RoomSupervisor`: spawns room actors on demand and restarts failed ones.
//!
//! Rooms are found by registry name ([`room_actor_name`]). A room that is not
//! live is spawned when a caller asks for it with [`RoomSupervisorMsg::Ensure`];
//! rooms that are over (COMPLETED, CANCELLED) get no actor. A room actor that
//! fails (panics or returns an error) is rebuilt from storage after a capped
//! exponential backoff (the first restart is immediate), and appends a
//! `restarted` event that watchers receive. Restarts are counted in the
//! `huddle_room_restarts_total` metric.
//!
//! Idle rooms are passivated: a sweep every `idle_timeout` asks each room
//! actor that had no request since the previous sweep to finish its queue and
//! stop (so a room goes after between one and two `idle_timeout`s of quiet). Its room
//! stays SCHEDULED or ACTIVE in storage and its watchers stay subscribed (the
//! hub outlives actors); the next request spawns it again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use huddle_storage::DynStore;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{error, info, warn};

use crate::hub::RoomHub;
use crate::room::{self, RoomActor, RoomArgs, RoomError, RoomMsg};

/// A failure this long after the previous one starts the backoff afresh.
const BACKOFF_RESET: Duration = Duration::from_secs(60);

/// The registry name of a room's actor. `namespace` keeps several runtimes
/// embedded in one process apart.
pub fn room_actor_name(namespace: &str, room_id: &str) -> String {
    format!("{namespace}/room/{room_id}")
}

/// The live actor of a room, if there is one.
pub fn find_room(namespace: &str, room_id: &str) -> Option<ActorRef<RoomMsg>> {
    ractor::registry::where_is(room_actor_name(namespace, room_id)).map(ActorRef::from)
}

/// The supervisor of every room actor of one runtime.
pub struct RoomSupervisor;

pub struct RoomSupervisorArgs {
    pub namespace: String,
    pub store: DynStore,
    pub hub: RoomHub,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Room actors idle this long are passivated (stopped; their rooms stay
    /// in storage and respawn on the next request). Zero disables it.
    pub idle_timeout: Duration,
}

pub struct RoomSupervisorState {
    args: RoomSupervisorArgs,
    /// room id -> (failures in the current streak, time of the last one).
    failures: HashMap<String, (u32, Instant)>,
    /// Rooms waiting out a restart backoff.
    restarting: HashSet<String>,
    draining: bool,
    restarts_total: u64,
}

/// Counters for tests, benchmarks and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorStats {
    pub live_rooms: usize,
    pub restarts_total: u64,
}

pub enum RoomSupervisorMsg {
    /// The live actor of a room, spawning it if needed. `Ok(None)` means the
    /// room is over and has no actor.
    Ensure {
        room_id: String,
        reply: RpcReplyPort<Result<Option<ActorRef<RoomMsg>>, RoomError>>,
    },
    /// Internal: rebuild a failed room once its backoff has passed.
    Respawn {
        room_id: String,
        reason: String,
    },
    /// Stop spawning, let every room finish its queued messages, stop them.
    Drain {
        timeout: Duration,
        reply: RpcReplyPort<usize>,
    },
    Stats {
        reply: RpcReplyPort<SupervisorStats>,
    },
    /// Internal, periodic: asks every live room to passivate if idle.
    Sweep,
}

impl RoomSupervisorState {
    fn room_id_of(&self, cell: &ractor::ActorCell) -> Option<String> {
        let prefix = room_actor_name(&self.args.namespace, "");
        cell.get_name().and_then(|n| n.strip_prefix(&prefix).map(str::to_string))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (attempt - 2).min(16);
        (self.args.backoff_base * factor).min(self.args.backoff_max)
    }

    fn note_failure(&mut self, room_id: &str) -> u32 {
        let now = Instant::now();
        let entry = self.failures.entry(room_id.to_string()).or_insert((0, now));
        if now.duration_since(entry.1) > BACKOFF_RESET {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        entry.0
    }

    fn schedule_respawn(&mut self, myself: &ActorRef<RoomSupervisorMsg>, room_id: String, reason: String) {
        let attempt = self.note_failure(&room_id);
        let delay = self.backoff(attempt);
        self.restarting.insert(room_id.clone());
        warn!(room_id = %room_id, attempt, delay_ms = delay.as_millis() as u64, %reason, "room actor failed; restarting");
        let msg = RoomSupervisorMsg::Respawn { room_id, reason };
        if delay.is_zero() {
            let _ = myself.cast(msg);
        } else {
            let me = myself.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = me.cast(msg);
            });
        }
    }

    async fn spawn_room(
        &self,
        myself: &ActorRef<RoomSupervisorMsg>,
        room_id: &str,
        preloaded: Option<room::RoomView>,
        restart_reason: Option<String>,
    ) -> Result<ActorRef<RoomMsg>, RoomError> {
        let args = RoomArgs {
            room_id: room_id.to_string(),
            store: self.args.store.clone(),
            hub: self.args.hub.clone(),
            preloaded,
            restart_reason,
        };
        let name = room_actor_name(&self.args.namespace, room_id);
        let (actor, _) = Actor::spawn_linked(Some(name), RoomActor, args, myself.get_cell())
            .await
            .map_err(|e| RoomError::Unavailable(format!("room actor failed to start: {e}")))?;
        metrics::gauge!("huddle_rooms_live").increment(1.0);
        Ok(actor)
    }

    async fn ensure(
        &mut self,
        myself: &ActorRef<RoomSupervisorMsg>,
        room_id: &str,
    ) -> Result<Option<ActorRef<RoomMsg>>, RoomError> {
        if self.draining {
            return Err(RoomError::ShuttingDown);
        }
        if let Some(actor) = find_room(&self.args.namespace, room_id) {
            return Ok(Some(actor));
        }
        if self.restarting.contains(room_id) {
            return Err(RoomError::Restarting { room_id: room_id.to_string() });
        }
        let view = room::load(&self.args.store, room_id).await?;
        if view.room.status.is_terminal() {
            return Ok(None);
        }
        self.spawn_room(myself, room_id, Some(view), None).await.map(Some)
    }
}

impl Actor for RoomSupervisor {
    type Msg = RoomSupervisorMsg;
    type State = RoomSupervisorState;
    type Arguments = RoomSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RoomSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        if !args.idle_timeout.is_zero() {
            // One ticker for all rooms; it ends when the supervisor is gone.
            let period = args.idle_timeout.max(Duration::from_millis(10));
            let me = myself.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if me.cast(RoomSupervisorMsg::Sweep).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(RoomSupervisorState {
            args,
            failures: HashMap::new(),
            restarting: HashSet::new(),
            draining: false,
            restarts_total: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RoomSupervisorMsg::Ensure { room_id, reply } => {
                let r = state.ensure(&myself, &room_id).await;
                let _ = reply.send(r);
            }
            RoomSupervisorMsg::Respawn { room_id, reason } => {
                state.restarting.remove(&room_id);
                if state.draining || find_room(&state.args.namespace, &room_id).is_some() {
                    return Ok(());
                }
                match state.spawn_room(&myself, &room_id, None, Some(reason.clone())).await {
                    Ok(_) => {
                        state.restarts_total += 1;
                        metrics::counter!("huddle_room_restarts_total").increment(1);
                        info!(room_id = %room_id, "room actor restarted");
                    }
                    Err(e) => {
                        error!(room_id = %room_id, error = %e, "room restart failed; backing off");
                        state.schedule_respawn(&myself, room_id, reason);
                    }
                }
            }
            RoomSupervisorMsg::Drain { timeout, reply } => {
                state.draining = true;
                let n = myself.get_children().len();
                myself.drain_children_and_wait(Some(timeout)).await;
                let _ = reply.send(n);
            }
            RoomSupervisorMsg::Sweep => {
                if !state.draining {
                    for child in myself.get_children() {
                        let _ = ActorRef::<RoomMsg>::from(child).cast(RoomMsg::PassivateIfIdle);
                    }
                }
            }
            RoomSupervisorMsg::Stats { reply } => {
                let _ = reply.send(SupervisorStats {
                    live_rooms: myself.get_children().len(),
                    restarts_total: state.restarts_total,
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                metrics::gauge!("huddle_rooms_live").decrement(1.0);
                if let Some(room_id) = state.room_id_of(&cell)
                    && !state.draining
                {
                    state.schedule_respawn(&myself, room_id, err.to_string());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                metrics::gauge!("huddle_rooms_live").decrement(1.0);
                if let Some(room_id) = state.room_id_of(&cell) {
                    state.failures.remove(&room_id);
                    tracing::debug!(room_id = %room_id, reason = ?reason, "room actor stopped");
                }
            }
            _ => {}
        }
        Ok(())
    }
}
