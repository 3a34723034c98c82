//! `NotifierActor`: delivers one channel's notifications (registered as
//! `{namespace}/notifier/{channel}`). Each delivery runs as its own task, so a slow
//! receiver holds up nothing else; the outbox bounds how many are in flight. The
//! result goes back to the outbox as [`OutboxMsg::Attempted`]. A deliverer that
//! panics counts as a failed attempt that will be retried, never as a lost message.

use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use huddle_core::{Channel, Notification, now_ms};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::notify::{AttemptResult, Deliver};
use crate::outbox::{Attempted, OutboxMsg};

/// The registry name of a runtime's notifier for `channel`.
pub fn notifier_name(namespace: &str, channel: Channel) -> String {
    format!("{namespace}/notifier/{channel}")
}

pub struct NotifierActor;

pub struct NotifierArgs {
    pub channel: Channel,
    pub deliverer: Arc<dyn Deliver>,
}

pub struct NotifierState {
    channel: Channel,
    deliverer: Arc<dyn Deliver>,
}

pub enum NotifierMsg {
    Deliver { notification: Box<Notification>, reply_to: ActorRef<OutboxMsg> },
}

impl Actor for NotifierActor {
    type Msg = NotifierMsg;
    type State = NotifierState;
    type Arguments = NotifierArgs;

    async fn pre_start(
        &self,
        _: ActorRef<NotifierMsg>,
        args: NotifierArgs,
    ) -> Result<NotifierState, ActorProcessingErr> {
        Ok(NotifierState { channel: args.channel, deliverer: args.deliverer })
    }

    async fn handle(
        &self,
        _: ActorRef<NotifierMsg>,
        msg: NotifierMsg,
        state: &mut NotifierState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NotifierMsg::Deliver { notification, reply_to } => {
                let deliverer = state.deliverer.clone();
                let channel = state.channel;
                tokio::spawn(async move {
                    let started_ms = now_ms();
                    let started = Instant::now();
                    let result = std::panic::AssertUnwindSafe(deliverer.deliver(&notification))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            AttemptResult::retry(None, None, format!("the {channel} deliverer panicked"))
                        });
                    let attempted = Attempted {
                        notification,
                        started_ms,
                        duration_ms: started.elapsed().as_millis() as u64,
                        result,
                    };
                    let _ = reply_to.cast(OutboxMsg::Attempted(Box::new(attempted)));
                });
            }
        }
        Ok(())
    }
}
