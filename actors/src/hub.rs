//! The per-room fan-out of events to watchers.
//!
//! The hub outlives room actors: a restarted actor publishes into the same
//! channel, so watchers see a `restarted` event instead of a broken stream.
//! Channels are bounded; a watcher that falls behind receives
//! `RecvError::Lagged` and catches up from the stored event log.

use std::sync::Arc;

use dashmap::DashMap;
use huddle_core::RoomEvent;
use tokio::sync::broadcast;

/// Sees every event published, of every room (for routing events elsewhere).
pub type EventTap = Arc<dyn Fn(&RoomEvent) + Send + Sync>;

/// Shared map of room id -> broadcast channel of that room's events.
#[derive(Clone)]
pub struct RoomHub {
    channels: Arc<DashMap<String, broadcast::Sender<RoomEvent>>>,
    capacity: usize,
    tap: Option<EventTap>,
}

impl std::fmt::Debug for RoomHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomHub").field("rooms", &self.channels.len()).field("capacity", &self.capacity).finish()
    }
}

impl RoomHub {
    /// `capacity` is how many events a watcher may fall behind before it
    /// must catch up from storage.
    pub fn new(capacity: usize) -> Self {
        RoomHub { channels: Arc::new(DashMap::new()), capacity: capacity.max(1), tap: None }
    }

    /// Like [`RoomHub::new`], and `tap` sees every event published (it must not block).
    pub fn with_tap(capacity: usize, tap: EventTap) -> Self {
        RoomHub { tap: Some(tap), ..RoomHub::new(capacity) }
    }

    /// A receiver of every event published for `room_id` from now on.
    pub fn subscribe(&self, room_id: &str) -> broadcast::Receiver<RoomEvent> {
        if let Some(tx) = self.channels.get(room_id) {
            return tx.subscribe();
        }
        self.channels.entry(room_id.to_string()).or_insert_with(|| broadcast::channel(self.capacity).0).subscribe()
    }

    /// Sends an event to the room's current watchers (none is fine).
    pub fn publish(&self, event: RoomEvent) {
        if let Some(tap) = &self.tap {
            tap(&event);
        }
        if let Some(tx) = self.channels.get(&event.room_id) {
            let _ = tx.send(event);
        }
    }

    /// Drops the room's channel: watchers receive what was already sent and
    /// then see the stream close. Called when a room ends.
    pub fn close(&self, room_id: &str) {
        self.channels.remove(room_id);
    }

    /// Drops the room's channel if nobody is listening (after a watcher leaves).
    pub fn release_if_unwatched(&self, room_id: &str) {
        self.channels.remove_if(room_id, |_, tx| tx.receiver_count() == 0);
    }

    /// Number of rooms with a channel.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(room: &str, seq: u64) -> RoomEvent {
        let data = huddle_core::RoomEventData::Restarted(Default::default());
        RoomEvent { room_id: room.into(), seq, data, at_ms: 0 }
    }

    #[tokio::test]
    async fn delivers_to_subscribers_of_that_room_only() {
        let hub = RoomHub::new(8);
        let mut a = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.publish(ev("a", 1));
        assert_eq!(a.recv().await.unwrap().seq, 1);
        assert!(b.try_recv().is_err());
    }

    #[tokio::test]
    async fn close_ends_streams_after_pending_events() {
        let hub = RoomHub::new(8);
        let mut a = hub.subscribe("a");
        hub.publish(ev("a", 1));
        hub.close("a");
        assert_eq!(a.recv().await.unwrap().seq, 1);
        assert!(matches!(a.recv().await, Err(broadcast::error::RecvError::Closed)));
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn slow_watcher_lags_instead_of_growing_memory() {
        let hub = RoomHub::new(2);
        let mut a = hub.subscribe("a");
        for seq in 1..=5 {
            hub.publish(ev("a", seq));
        }
        assert!(matches!(a.recv().await, Err(broadcast::error::RecvError::Lagged(3))));
        drop(a);
        hub.release_if_unwatched("a");
        assert!(hub.is_empty());
    }
}
