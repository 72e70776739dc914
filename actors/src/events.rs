//! Domain events: facts in past tense, published on `<prefix>.events.<kind>.<id>` after the state
//! change they describe was persisted. The WebSocket layer delivers them to subscribed clients.

use std::sync::Arc;

use phoenix_nats::{Bus, Envelope};
use serde::Serialize;

/// Publishes domain events on the bus. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    bus: Arc<dyn Bus>,
}

impl Events {
    /// Events go out on `bus`.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        Events { bus }
    }

    /// Publishes `event` (e.g. `agent.offline`) about entity `kind`/`id` with `data` as the body.
    /// Events notify; they are not the record (the database is), so a failure is logged, not returned.
    pub async fn publish(&self, kind: &str, id: &str, event: &str, data: impl Serialize) {
        let subject = match self.bus.subjects().event(kind, id) {
            Ok(subject) => subject,
            Err(e) => {
                tracing::warn!(event, error = %e, "cannot build an event subject");
                return;
            }
        };
        let payload = match Envelope::new(event, data).encode() {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(event, error = %e, "cannot encode an event");
                return;
            }
        };
        if let Err(e) = self.bus.publish(&subject, payload).await {
            tracing::warn!(event, nats.subject = %subject, error = %e, "cannot publish an event");
        }
    }
}
