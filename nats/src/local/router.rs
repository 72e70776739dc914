//! Core publish/subscribe routing of the local bus, with NATS wildcard and queue group semantics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use tracing::warn;

use crate::bus::Message;
use crate::error::BusError;
use crate::subjects::subject_matches;

/// Messages a subscriber may have queued before newer ones are dropped, as NATS does for a slow
/// consumer instead of slowing the publisher down.
const SUBSCRIPTION_CAPACITY: usize = 8192;

/// The subscriptions of one local bus.
#[derive(Debug, Default)]
pub(crate) struct Router {
    state: Mutex<RouterState>,
}

#[derive(Debug, Default)]
struct RouterState {
    closed: bool,
    entries: Vec<Entry>,
    /// Per queue group: how many messages it has been given, to pick members round-robin.
    turns: HashMap<String, usize>,
}

#[derive(Debug)]
struct Entry {
    pattern: String,
    group: Option<String>,
    sender: mpsc::Sender<Message>,
}

impl Router {
    /// Registers a subscription; dropping the receiver ends it.
    pub(crate) fn subscribe(&self, pattern: &str, group: Option<&str>) -> Result<mpsc::Receiver<Message>, BusError> {
        let mut state = self.lock();
        if state.closed {
            return Err(BusError::Closed);
        }
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_CAPACITY);
        state.entries.push(Entry { pattern: pattern.to_owned(), group: group.map(str::to_owned), sender });
        Ok(receiver)
    }

    /// Delivers `message` to every matching subscriber outside groups and to one member of each
    /// matching group. Returns how many subscriptions received it.
    pub(crate) fn route(&self, message: &Message) -> Result<usize, BusError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(BusError::Closed);
        }
        state.entries.retain(|entry| !entry.sender.is_closed());
        let mut groups: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        let mut delivered = 0;
        for entry in &state.entries {
            if !subject_matches(&entry.pattern, &message.subject) {
                continue;
            }
            match &entry.group {
                Some(group) => groups.entry(group).or_default().push(entry),
                None => delivered += usize::from(offer(entry, message)),
            }
        }
        for (group, members) in groups {
            let turn = state.turns.entry(group.to_owned()).or_default();
            delivered += usize::from(offer(members[*turn % members.len()], message));
            *turn += 1;
        }
        Ok(delivered)
    }

    /// Ends every subscription and refuses new ones.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.entries.clear();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        // No code panics while holding the lock, and the state stays consistent even if one
        // did, so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Queues `message` for one subscriber; a full queue drops it (slow consumer).
fn offer(entry: &Entry, message: &Message) -> bool {
    match entry.sender.try_send(message.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            warn!(
                nats.subject = %message.subject,
                nats.subscription = %entry.pattern,
                "slow consumer on the local bus, message dropped"
            );
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(subject: &str) -> Message {
        Message { subject: subject.into(), payload: Bytes::from_static(b"x"), reply: None }
    }

    fn drain(receiver: &mut mpsc::Receiver<Message>) -> usize {
        std::iter::from_fn(|| receiver.try_recv().ok()).count()
    }

    #[test]
    fn route_counts_only_matching_live_subscribers() {
        let router = Router::default();
        let mut exact = router.subscribe("a.b", None).unwrap();
        let mut star = router.subscribe("a.*", None).unwrap();
        let mut other = router.subscribe("c.>", None).unwrap();
        let dropped = router.subscribe("a.b", None).unwrap();
        drop(dropped);

        assert_eq!(router.route(&message("a.b")).unwrap(), 2);
        assert_eq!(drain(&mut exact), 1);
        assert_eq!(drain(&mut star), 1);
        assert_eq!(drain(&mut other), 0);
        assert_eq!(router.route(&message("x.y")).unwrap(), 0);
    }

    #[test]
    fn queue_groups_take_turns_and_plain_subscribers_see_everything() {
        let router = Router::default();
        let mut first = router.subscribe("q.*", Some("workers")).unwrap();
        let mut second = router.subscribe("q.>", Some("workers")).unwrap();
        let mut other_group = router.subscribe("q.a", Some("audit")).unwrap();
        let mut plain = router.subscribe("q.a", None).unwrap();

        for _ in 0..10 {
            assert_eq!(router.route(&message("q.a")).unwrap(), 3);
        }
        assert_eq!(drain(&mut first), 5);
        assert_eq!(drain(&mut second), 5);
        assert_eq!(drain(&mut other_group), 10);
        assert_eq!(drain(&mut plain), 10);
    }

    #[test]
    fn close_ends_subscriptions_and_refuses_new_work() {
        let router = Router::default();
        let mut receiver = router.subscribe("a", None).unwrap();
        router.close();
        assert!(receiver.try_recv().is_err());
        assert!(receiver.is_closed());
        assert!(matches!(router.route(&message("a")), Err(BusError::Closed)));
        assert!(matches!(router.subscribe("a", None), Err(BusError::Closed)));
    }
}
