//! Liveness with a paused clock: an agent without heartbeats goes offline after the timeout, and
//! comes back online with its next heartbeat; each change is stored, then announced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use phoenix_nats::wire::{Heartbeat, ReportedHealth};
use phoenix_nats::{Bus, Envelope, LocalBus, Subjects};

use super::{Agent, AgentFilter, AgentRegistryHandle, AgentState, Transport};
use crate::events::Events;
use crate::labels::Labels;
use crate::paging::{Page, PageRequest};
use crate::store::{FleetStore, StoreError};

/// Agents in memory, for actor tests that must not wait on a database.
#[derive(Default)]
struct MemoryFleet {
    agents: Mutex<HashMap<String, Agent>>,
}

impl MemoryFleet {
    fn with_agent(id: &str) -> Arc<MemoryFleet> {
        let fleet = MemoryFleet::default();
        let now = Utc::now();
        let agent = Agent {
            id: id.into(),
            hostname: "host".into(),
            labels: Labels::new(),
            state: AgentState::Offline,
            agent_version: None,
            last_heartbeat_at: None,
            resources: None,
            pipelines: Vec::new(),
            enrolled_at: now,
            updated_at: now,
            credential_revoked: false,
        };
        fleet.agents.lock().expect("lock").insert(id.into(), agent);
        Arc::new(fleet)
    }

    fn state(&self, id: &str) -> AgentState {
        self.agents.lock().expect("lock")[id].state
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Agent)) -> Result<Agent, StoreError> {
        let mut agents = self.agents.lock().expect("lock");
        let agent = agents.get_mut(id).ok_or(StoreError::NotFound)?;
        change(agent);
        Ok(agent.clone())
    }
}

#[async_trait]
impl FleetStore for MemoryFleet {
    async fn get_agent(&self, id: &str) -> Result<Agent, StoreError> {
        self.agents.lock().expect("lock").get(id).cloned().ok_or(StoreError::NotFound)
    }

    async fn list_agents(&self, _: &AgentFilter, _: PageRequest) -> Result<Page<Agent>, StoreError> {
        let items = self.agents.lock().expect("lock").values().cloned().collect();
        Ok(Page { items, next_cursor: None })
    }

    async fn get_agents(&self, ids: &[String]) -> Result<Vec<Agent>, StoreError> {
        let agents = self.agents.lock().expect("lock");
        Ok(ids.iter().filter_map(|id| agents.get(id).cloned()).collect())
    }

    async fn active_agents(&self) -> Result<Vec<Agent>, StoreError> {
        Ok(self.agents.lock().expect("lock").values().cloned().collect())
    }

    async fn record_heartbeat(
        &self,
        id: &str,
        hb: &Heartbeat,
        state: AgentState,
        now: DateTime<Utc>,
    ) -> Result<Agent, StoreError> {
        self.update(id, |agent| {
            agent.state = state;
            agent.last_heartbeat_at = Some(now);
            agent.agent_version = Some(hb.agent_version.clone());
        })
    }

    async fn set_agent_state(&self, id: &str, state: AgentState, _: DateTime<Utc>) -> Result<Agent, StoreError> {
        self.update(id, |agent| agent.state = state)
    }

    async fn set_agent_labels(&self, id: &str, labels: Labels) -> Result<Agent, StoreError> {
        self.update(id, |agent| agent.labels = labels)
    }

    async fn delete_agent(&self, id: &str) -> Result<(), StoreError> {
        self.agents.lock().expect("lock").remove(id).map(|_| ()).ok_or(StoreError::NotFound)
    }
}

fn heartbeat(health: ReportedHealth) -> Heartbeat {
    Heartbeat {
        agent_version: "1.0".into(),
        health,
        resources: Default::default(),
        pipelines: Vec::new(),
        seq: 1,
        stopping: false,
    }
}

async fn next_event(events: &mut phoenix_nats::Subscription) -> String {
    let message = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("an event").expect("open");
    Envelope::<serde_json::Value>::decode(&message.payload).expect("event envelope").kind
}

#[actix::test]
async fn an_agent_without_heartbeats_goes_offline_after_the_timeout_and_back_online_on_the_next() {
    tokio::time::pause();
    let bus = Arc::new(LocalBus::new(Subjects::default()));
    let mut events = bus.subscribe(&bus.subjects().all_events()).await.expect("subscribe");
    let fleet = MemoryFleet::with_agent("a1");
    let registry = AgentRegistryHandle::start(fleet.clone(), Events::new(bus.clone()), Duration::from_secs(30));

    let recorded =
        registry.heartbeat("a1", heartbeat(ReportedHealth::Healthy), Transport::Nats).await.expect("heartbeat");
    assert!(recorded.came_online);
    assert_eq!(fleet.state("a1"), AgentState::Online);
    assert_eq!(next_event(&mut events).await, "agent.online");
    assert_eq!(registry.transport("a1").await, Some(Transport::Nats));

    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(fleet.state("a1"), AgentState::Online, "still within the timeout");
    registry.heartbeat("a1", heartbeat(ReportedHealth::Healthy), Transport::Nats).await.expect("heartbeat");
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(fleet.state("a1"), AgentState::Online, "each heartbeat restarts the timeout");

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fleet.state("a1"), AgentState::Offline);
    assert_eq!(next_event(&mut events).await, "agent.offline");
    assert_eq!(registry.transport("a1").await, None, "an offline agent is not reachable");

    let back = registry.heartbeat("a1", heartbeat(ReportedHealth::Degraded), Transport::Http).await.expect("heartbeat");
    assert!(back.came_online);
    assert_eq!(fleet.state("a1"), AgentState::Degraded, "the agent's own health counts");
    assert_eq!(next_event(&mut events).await, "agent.degraded");
}

#[actix::test]
async fn a_rehydrated_agent_goes_offline_when_its_stored_heartbeat_is_too_old() {
    tokio::time::pause();
    let bus = Arc::new(LocalBus::new(Subjects::default()));
    let fleet = MemoryFleet::with_agent("a1");
    fleet
        .update("a1", |agent| {
            agent.state = AgentState::Online;
            agent.last_heartbeat_at = Some(Utc::now() - chrono::Duration::seconds(20));
        })
        .expect("update");
    let registry = AgentRegistryHandle::start(fleet.clone(), Events::new(bus), Duration::from_secs(30));
    registry.rehydrate(fleet.active_agents().await.expect("agents")).await.expect("rehydrate");

    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(fleet.state("a1"), AgentState::Online);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fleet.state("a1"), AgentState::Offline, "30 s after the stored heartbeat, not after the restart");
}

#[actix::test]
async fn a_long_poll_waiter_is_woken_by_work_and_times_out_without_it() {
    tokio::time::pause();
    let bus = Arc::new(LocalBus::new(Subjects::default()));
    let registry = AgentRegistryHandle::start(MemoryFleet::with_agent("a1"), Events::new(bus), Duration::from_secs(30));
    let waiting = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.wait_for_work("a1", Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    registry.work_arrived("a1");
    assert!(waiting.await.expect("join"), "woken by work");
    assert!(!registry.wait_for_work("a1", Duration::from_secs(5)).await, "times out without work");
}
