//! The feed of data changes that live dashboards follow (`GET /api/stream`).
//!
//! The store publishes a change after every successful write, so no HTTP handler has to
//! remember to. Subscribers that fall behind are told to reload rather than being sent a
//! backlog.
//!
//! Every change is numbered as it is published, after its write committed, and the reads a
//! dashboard refreshes from say how far the numbering had come when they began
//! ([`ChangeFeed::mark`], sent as `X-Change-Seq: <epoch>/<n>`). A change numbered `n` or less
//! is therefore in that read, and a page that learns of it after its refresh need not fetch
//! again. The epoch tells processes apart (a restart, or another replica behind a load
//! balancer), whose numbers cannot be compared.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// An image was removed from the dashboard.
    Remove,
}

impl Change {
    pub fn of_image(kind: ChangeKind, image: impl Into<String>) -> Self {
        Self { kind, image: Some(image.into()) }
    }

    pub fn of_many(kind: ChangeKind) -> Self {
        Self { kind, image: None }
    }
}

/// A change and its number in this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numbered {
    pub seq: u64,
    pub change: Change,
}

#[derive(Clone, Debug)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Numbered>,
    numbering: Arc<Numbering>,
}

#[derive(Debug)]
struct Numbering {
    epoch: String,
    published: AtomicU64,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        // Start time, process id and a count: distinct for every feed that could serve one page.
        static FEEDS: AtomicU64 = AtomicU64::new(0);
        let epoch = format!(
            "{:x}-{:x}-{}",
            crate::time::Timestamp::now().unix_micros(),
            std::process::id(),
            FEEDS.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            sender: broadcast::channel(BUFFER).0,
            numbering: Arc::new(Numbering { epoch, published: AtomicU64::new(0) }),
        }
    }
}

impl ChangeFeed {
    /// Numbers and sends `change`. Call it only once the change is committed.
    pub fn publish(&self, change: Change) {
        let seq = self.numbering.published.fetch_add(1, Ordering::SeqCst) + 1;
        // No subscriber is not an error: nobody is watching.
        let _ = self.sender.send(Numbered { seq, change });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Numbered> {
        self.sender.subscribe()
    }

    /// Tells processes apart; see the module's documentation.
    pub fn epoch(&self) -> &str {
        &self.numbering.epoch
    }

    /// `<epoch>/<n>`: every change numbered `n` or less is committed. Take it before a read
    /// begins, and the read includes them all.
    pub fn mark(&self) -> String {
        format!("{}/{}", self.numbering.epoch, self.numbering.published.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_numbered_in_publishing_order_and_the_mark_follows() {
        let feed = ChangeFeed::default();
        let mut changes = feed.subscribe();
        assert_eq!(feed.mark(), format!("{}/0", feed.epoch()));
        feed.publish(Change::of_image(ChangeKind::Update, "a"));
        feed.publish(Change::of_many(ChangeKind::Acknowledge));
        assert_eq!(
            changes.try_recv().unwrap(),
            Numbered { seq: 1, change: Change::of_image(ChangeKind::Update, "a") }
        );
        assert_eq!(changes.try_recv().unwrap().seq, 2);
        assert_eq!(feed.mark(), format!("{}/2", feed.epoch()));
        assert_ne!(ChangeFeed::default().epoch(), feed.epoch(), "another feed, another epoch");
    }
}
