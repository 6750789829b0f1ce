//! The live events behind `GET /events`: each sync, each change of the findings, each gateway
//! verification and each drift, as the engine and the verifier publish them.
//!
//! A tokio broadcast channel with a bounded buffer carries them. Publishing never waits, so
//! no reader can slow the engine down; a reader that falls more than [`BUFFER`] events behind
//! is told so by the channel, and the HTTP server then drops that client (a browser's
//! `EventSource` reconnects and reads the page again). Each event's JSON is made once, when
//! it is published, and only while someone listens. This module knows nothing of what the
//! events mean; the engine and the verifier decide what to publish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

/// Events a client may be behind before it is dropped. A sync publishes at most a few events
/// (its drift, findings, the sync itself) and a verification one, so a client that reads at
/// all keeps up; one that stops reading for dozens of syncs is not worth buffering for.
pub const BUFFER: usize = 64;

/// The event types, as named in the stream (`event: sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A sync finished: its summary, as `last_sync` in `/status`.
    Sync,
    /// The findings, load errors or held-back objects differ from the previous sync's.
    Findings,
    /// A gateway verification finished: its report, as `verification` in `/status`.
    Verification,
    /// An owned object was found edited or deleted by someone else.
    Drift,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sync => "sync",
            Kind::Findings => "findings",
            Kind::Verification => "verification",
            Kind::Drift => "drift",
        }
    }
}

/// One event, ready to send.
#[derive(Debug)]
pub struct Message {
    /// Counts every event published since the daemon started, from 1.
    pub id: u64,
    pub kind: Kind,
    /// The event's JSON.
    pub data: String,
}

/// The publishing side; clones share one channel.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Message>>,
    published: Arc<AtomicU64>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(BUFFER);
        Events {
            tx,
            published: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Publishes an event; never waits.
    pub fn publish(&self, kind: Kind, data: &impl Serialize) {
        let id = self.published.fetch_add(1, Ordering::Relaxed) + 1;
        if self.tx.receiver_count() == 0 {
            return;
        }
        let data = serde_json::to_string(data).unwrap_or_else(|e| {
            serde_json::json!({ "error": format!("the event could not be encoded: {e}") })
                .to_string()
        });
        // An error only says that every receiver went away meanwhile.
        let _ = self.tx.send(Arc::new(Message { id, kind, data }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    /// Clients listening now.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    #[test]
    fn a_reader_that_falls_behind_learns_it_and_the_publisher_never_waits() {
        let events = Events::new();
        events.publish(Kind::Sync, &"nobody listens");
        let mut slow = events.subscribe();
        let mut fast = events.subscribe();
        for i in 0..BUFFER + 10 {
            events.publish(Kind::Drift, &i);
            assert_eq!(fast.try_recv().unwrap().data, i.to_string());
        }
        assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(10))));
        let next = fast.try_recv();
        assert!(matches!(next, Err(TryRecvError::Empty)), "{next:?}");
        // Ids count every event, heard or not.
        events.publish(Kind::Sync, &1);
        assert_eq!(fast.try_recv().unwrap().id, BUFFER as u64 + 12);
    }
}
