//! The feed of data changes that live dashboards follow (`GET /api/stream`).
//!
//! The store publishes a change after every successful write, so no HTTP handler has to
//! remember to. Subscribers that fall behind are told to reload rather than being sent a
//! backlog.

use serde::Serialize;
use tokio::sync::broadcast;

/// Changes buffered per subscriber before it is considered lagging.
const BUFFER: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// The image concerned, when exactly one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A webhook stored an event.
    Update,
    /// One or more updates were acknowledged.
    Acknowledge,
    /// Tags or tag assignments changed.
    Tag,
}

impl Change {
    pub fn of_image(kind: ChangeKind, image: impl Into<String>) -> Self {
        Self { kind, image: Some(image.into()) }
    }

    pub fn of_many(kind: ChangeKind) -> Self {
        Self { kind, image: None }
    }
}

#[derive(Clone, Debug)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self { sender: broadcast::channel(BUFFER).0 }
    }
}

impl ChangeFeed {
    pub fn publish(&self, change: Change) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.sender.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}
