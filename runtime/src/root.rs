//! `RootActor`: the top of a runtime's supervision tree. It owns the room
//! supervisor (registered as `{namespace}/rooms`) and the notification outbox
//! (`{namespace}/outbox`, with its per-channel notifiers), and rebuilds either if
//! it fails.

use std::time::Duration;

use huddle_actors::hub::RoomHub;
use huddle_actors::outbox::{OutboxActor, OutboxArgs, outbox_name};
use huddle_actors::room_supervisor::{RoomSupervisor, RoomSupervisorArgs, RoomSupervisorMsg};
use huddle_storage::DynStore;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::error;

/// The registry name of a runtime's room supervisor.
pub fn room_supervisor_name(namespace: &str) -> String {
    format!("{namespace}/rooms")
}

/// The live room supervisor of a runtime, looked up by name.
pub fn room_supervisor(namespace: &str) -> Option<ActorRef<RoomSupervisorMsg>> {
    ractor::registry::where_is(room_supervisor_name(namespace)).map(ActorRef::from)
}

pub struct RootActor;

#[derive(Clone)]
pub struct RootArgs {
    pub namespace: String,
    pub store: DynStore,
    pub hub: RoomHub,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub idle_timeout: Duration,
    /// The outbox, when this node delivers notifications.
    pub outbox: Option<OutboxArgs>,
}

pub struct RootState {
    args: RootArgs,
    supervisor_restarts: u64,
}

pub enum RootMsg {}

impl RootState {
    async fn spawn_rooms(&self, myself: &ActorRef<RootMsg>) -> Result<(), ActorProcessingErr> {
        let a = &self.args;
        let args = RoomSupervisorArgs {
            namespace: a.namespace.clone(),
            store: a.store.clone(),
            hub: a.hub.clone(),
            backoff_base: a.backoff_base,
            backoff_max: a.backoff_max,
            idle_timeout: a.idle_timeout,
        };
        Actor::spawn_linked(Some(room_supervisor_name(&a.namespace)), RoomSupervisor, args, myself.get_cell()).await?;
        Ok(())
    }

    async fn spawn_outbox(&self, myself: &ActorRef<RootMsg>) -> Result<(), ActorProcessingErr> {
        if let Some(args) = &self.args.outbox {
            Actor::spawn_linked(Some(outbox_name(&self.args.namespace)), OutboxActor, args.clone(), myself.get_cell())
                .await?;
        }
        Ok(())
    }
}

impl Actor for RootActor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(&self, myself: ActorRef<RootMsg>, args: RootArgs) -> Result<RootState, ActorProcessingErr> {
        let state = RootState { args, supervisor_restarts: 0 };
        state.spawn_rooms(&myself).await?;
        state.spawn_outbox(&myself).await?;
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = &event
            && cell.get_name() == Some(room_supervisor_name(&state.args.namespace))
        {
            state.supervisor_restarts += 1;
            metrics::counter!("huddle_supervisor_restarts_total").increment(1);
            error!(error = %err, restarts = state.supervisor_restarts, "room supervisor failed; restarting it");
            tokio::time::sleep(state.args.backoff_base.min(Duration::from_secs(1))).await;
            state.spawn_rooms(&myself).await?;
        } else if let SupervisionEvent::ActorFailed(cell, err) = &event
            && cell.get_name() == Some(outbox_name(&state.args.namespace))
        {
            state.supervisor_restarts += 1;
            metrics::counter!("huddle_supervisor_restarts_total").increment(1);
            error!(error = %err, "notification outbox failed; restarting it");
            tokio::time::sleep(state.args.backoff_base.min(Duration::from_secs(1))).await;
            state.spawn_outbox(&myself).await?;
        }
        Ok(())
    }
}
