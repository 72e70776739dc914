//! The HTTP server: application state, the route table, one module per resource, and the error type
//! every handler answers with.

pub mod access;
mod agent;
mod analytics;
mod audit;
mod auth;
mod client_addr;
mod dashboard;
mod deployments;
mod enrollment;
pub mod error;
mod experiments;
mod fleet;
mod middleware;
mod openapi;
mod ops;
mod paging;
mod pipelines;
pub mod request_id;
pub mod routes;
mod tasks;
mod users;
mod ws;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use phoenix_actors::agents::AgentRegistryHandle;
use phoenix_actors::audit::Audit;
use phoenix_actors::deployments::supervisor::{DeploymentSupervisor, Rollouts, SupervisorHandle};
use phoenix_actors::events::Events;
use phoenix_actors::experiments::runtime::Runtime;
use phoenix_actors::experiments::service::Experiments;
use phoenix_actors::gateway::{AgentGateway, GatewaySettings};
use phoenix_actors::hub::EventHub;
use phoenix_actors::ownership::{HeldLeases, Ownership};
use phoenix_actors::tasks::changes::{follow_task_changes, FollowsTaskChanges};
use phoenix_actors::tasks::TaskQueue;
use phoenix_actors::Store;
use phoenix_nats::trust::NatsTrust;
use phoenix_nats::{Bus, LocalBus, NatsBus, NatsBusOptions, Subjects};

use crate::auth::AuthService;
use crate::config::Settings;
use crate::db::{Database, DieselStore};
use crate::metrics::Metrics;
use crate::nats_identity::{self, NatsIdentities};

pub use error::ApiError;

/// How often each replica checks that the NATS servers hold the revocations of the database.
const NATS_REVOCATION_CHECK: Duration = Duration::from_secs(60);

/// What every handler can reach. Cloned per worker by actix (everything inside is shared).
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub auth: Arc<AuthService>,
    pub registry: AgentRegistryHandle,
    pub events: Events,
    pub queue: TaskQueue,
    pub gateway: AgentGateway,
    pub experiments: Experiments,
    pub rollouts: Rollouts,
    pub deployments: SupervisorHandle,
    pub hub: actix::Addr<EventHub>,
    pub metrics: Metrics,
    /// This replica's leases (released when it stops cleanly).
    pub ownership: Ownership,
    /// Per-agent NATS identities, when the server runs with `bus.nats_trust_file`.
    pub nats_identities: Option<Arc<NatsIdentities>>,
    /// The audit log.
    pub audit: Audit,
}

/// A built server: bound to its port, not yet running.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects to the database (applying migrations unless disabled) and the bus, binds the listen
    /// address and prepares the server. Fails with a readable reason when a dependency is missing.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let db = open_database(&settings).await?;
        let trust = settings.bus.nats_trust_file.as_deref().map(nats_identity::load_trust).transpose()?;
        let bus = connect_bus(&settings, trust.as_ref()).await?;
        let store: Arc<dyn Store> = Arc::new(DieselStore::new(db.clone()));
        let nats_identities = start_nats_identities(&settings, trust, store.clone()).await?;
        let audit = Audit::new(store.clone());
        let keep = chrono::Duration::days(i64::try_from(settings.audit.retention_days).unwrap_or(36_600));
        actix_web::rt::spawn(audit.clone().run_retention(keep, Duration::from_secs(3600)));
        let auth =
            Arc::new(AuthService::new(store.clone(), &settings.auth).await.context("Failed to set up authentication")?);
        actix_web::rt::spawn(auth.clone().run_token_cleanup(Duration::from_secs(3600)));
        let listener = TcpListener::bind(settings.listen_addr()?)
            .with_context(|| format!("Failed to listen on {}", settings.server.listen))?;
        let addr = listener.local_addr().context("Failed to read the bound address")?;
        let fleet = start_fleet(&settings, store.clone(), bus.clone(), auth.clone()).await?;
        let ownership = Ownership::new(store.clone(), &replica_id(&settings, addr), lease_ttl(&settings));
        tracing::info!(replica = ownership.replica(), "owning experiments and rollouts through leases");
        let experiments = start_experiments(&settings, store.clone(), &fleet, ownership.clone());
        let rollouts = Rollouts::new(
            store.clone(),
            fleet.queue.clone(),
            fleet.events.clone(),
            settings.deployments.apply_attempts,
        );
        let interval = Duration::from_millis(settings.deployments.reconcile_interval_ms);
        let leases = HeldLeases::new(ownership.clone());
        let deployments = DeploymentSupervisor::start(rollouts.clone(), leases, interval, bus.clone());
        let task_followers: Vec<Arc<dyn FollowsTaskChanges>> =
            vec![Arc::new(experiments.clone()), Arc::new(deployments.clone()), fleet.queue.follower()];
        actix_web::rt::spawn(follow_task_changes(bus.clone(), task_followers));
        let hub = EventHub::start(bus.clone()).await.context("Failed to subscribe to events for live updates")?;
        let state = web::Data::new(AppState {
            store,
            db,
            bus,
            auth,
            registry: fleet.registry,
            events: fleet.events,
            queue: fleet.queue,
            gateway: fleet.gateway,
            experiments,
            rollouts,
            deployments,
            hub,
            metrics: Metrics::new().context("Failed to register metrics")?,
            ownership,
            nats_identities,
            audit,
            settings: settings.clone(),
        });
        let server = serve(listener, state.clone(), &settings)?;
        Ok(Application { server, addr, state })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to stop the server from elsewhere (tests, signal handlers).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT or [`ServerHandle::stop`]: stops accepting, lets in-flight requests
    /// finish (up to `server.shutdown_timeout_secs`), then closes the bus so buffered messages are sent.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("HTTP server failed")?;
        self.state.ownership.release_all().await;
        self.state.bus.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    let db = Database::connect_lazy(&settings.database)?;
    if settings.database.migrate {
        let applied = db
            .migrate()
            .await
            .with_context(|| format!("Failed to prepare the database at {}", settings.database.url))?;
        tracing::info!(db.backend = db.backend().as_str(), migrations.applied = applied, "database ready");
    } else {
        tracing::info!(db.backend = db.backend().as_str(), "migrations skipped (--no-migrate)");
    }
    Ok(db)
}

async fn connect_bus(settings: &Settings, trust: Option<&NatsTrust>) -> anyhow::Result<Arc<dyn Bus>> {
    let subjects = Subjects::new(&settings.bus.subject_prefix)?;
    let Some(url) = &settings.bus.nats_url else {
        tracing::info!("using the in-process bus (no NATS URL configured)");
        return Ok(Arc::new(LocalBus::new(subjects)));
    };
    let name = format!("phoenix-server-{}", env!("CARGO_PKG_VERSION"));
    let options = NatsBusOptions {
        subjects,
        jwt: trust.map(|trust| nats_identity::server_user(trust, &name)).transpose()?,
        name,
        connect_timeout: Duration::from_secs(settings.bus.connect_timeout_secs),
        stream_replicas: settings.bus.stream_replicas,
        ..NatsBusOptions::default()
    };
    let bus =
        NatsBus::connect(url.expose(), options).await.with_context(|| format!("Failed to connect to NATS at {url}"))?;
    let bus = bus.with_durable_ack_wait(Duration::from_secs(settings.bus.ack_wait_secs));
    tracing::info!(nats.url = %url, "connected to NATS");
    Ok(Arc::new(bus))
}

/// With a NATS trust: makes the NATS servers hold the database's revocations before serving (a
/// nats-server not in operator mode fails here, with the reason), then keeps them in step.
async fn start_nats_identities(
    settings: &Settings,
    trust: Option<NatsTrust>,
    store: Arc<dyn Store>,
) -> anyhow::Result<Option<Arc<NatsIdentities>>> {
    let (Some(trust), Some(url)) = (trust, &settings.bus.nats_url) else { return Ok(None) };
    let subjects = Subjects::new(&settings.bus.subject_prefix)?;
    let identities = NatsIdentities::new(trust, store, url.expose().to_string(), subjects);
    identities.sync().await?;
    tracing::info!("per-agent NATS identities on (bus.nats_trust_file)");
    actix_web::rt::spawn(identities.clone().run_sync(NATS_REVOCATION_CHECK));
    Ok(Some(identities))
}

struct Fleet {
    registry: AgentRegistryHandle,
    events: Events,
    queue: TaskQueue,
    gateway: AgentGateway,
}

/// Starts the agent side: sessions rebuilt from the database, the task queue and its maintenance loop,
/// the gateway's bus subscriptions and the metrics retention loop.
async fn start_fleet(
    settings: &Settings,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    auth: Arc<AuthService>,
) -> anyhow::Result<Fleet> {
    let events = Events::new(bus.clone());
    let registry = AgentRegistryHandle::start(store.clone(), events.clone(), settings.agents.offline_after());
    actix_web::rt::spawn(rebuild_sessions(store.clone(), registry.clone()));
    let queue = TaskQueue::new(store.clone(), bus.clone(), registry.clone(), events.clone(), settings.tasks.policy());
    let gateway_settings = GatewaySettings {
        heartbeat_interval: Duration::from_secs(settings.agents.heartbeat_interval_secs),
        quotas: settings.agents.quotas(),
    };
    let gateway = AgentGateway::new(store, bus, registry.clone(), queue.clone(), auth, gateway_settings);
    gateway.start().await.context("Failed to subscribe to agent subjects")?;
    actix_web::rt::spawn(queue.clone().run_maintenance(Duration::from_millis(settings.tasks.maintenance_interval_ms)));
    let retention = Duration::from_secs(settings.metrics.retention_hours * 3600);
    actix_web::rt::spawn(gateway.clone().run_retention(retention, Duration::from_secs(600)));
    Ok(Fleet { registry, events, queue, gateway })
}

/// This replica's id in the leases: as configured, else `<host name>:<port>`.
fn replica_id(settings: &Settings, addr: SocketAddr) -> String {
    settings
        .cluster
        .replica_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", phoenix_pipeline::procfs::hostname(), addr.port()))
}

fn lease_ttl(settings: &Settings) -> Duration {
    Duration::from_secs(settings.cluster.lease_ttl_secs)
}

/// Starts the experiments service: the actors of the experiments this replica holds the lease of,
/// rebuilt from the database (their timers from the stored timestamps) and adopted from a replica that
/// stopped renewing its leases. (Task changes wake them: `build` makes the service a task follower.)
fn start_experiments(settings: &Settings, store: Arc<dyn Store>, fleet: &Fleet, ownership: Ownership) -> Experiments {
    let runtime = Runtime::new(
        store,
        fleet.queue.clone(),
        fleet.events.clone(),
        settings.experiments.runtime(settings.agents.heartbeat_interval_secs),
    );
    let experiments = Experiments::new(runtime, ownership);
    actix_web::rt::spawn(experiments.clone().adopt_orphans());
    let sweep_every = Duration::from_secs(settings.experiments.removal_sweep_interval_secs);
    actix_web::rt::spawn(experiments.clone().sweep(sweep_every));
    actix_web::rt::spawn(rebuild_experiments(experiments.clone()));
    experiments
}

/// Rebuilds an actor per active experiment, retrying while the database cannot be reached.
async fn rebuild_experiments(experiments: Experiments) {
    let mut delay = Duration::from_secs(1);
    loop {
        match experiments.rehydrate().await {
            Ok(count) => {
                tracing::info!(experiments.active = count, "experiment actors rebuilt");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "cannot rebuild experiment actors yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Rebuilds a session per stored agent, retrying while the database cannot be reached (the server
/// is up meanwhile and says so on `/readyz`).
async fn rebuild_sessions(store: Arc<dyn Store>, registry: AgentRegistryHandle) {
    let mut delay = Duration::from_secs(1);
    loop {
        let rebuilt = match store.active_agents().await {
            Ok(agents) => registry.rehydrate(agents).await,
            Err(e) => Err(e),
        };
        match rebuilt {
            Ok(sessions) => {
                tracing::info!(agents.sessions = sessions, "agent sessions rebuilt");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "cannot rebuild agent sessions yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn serve(listener: TcpListener, state: web::Data<AppState>, settings: &Settings) -> anyhow::Result<Server> {
    let body_limit = settings.server.body_limit_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(|cfg| error::configure_extractors(cfg, body_limit))
            .configure(routes::configure)
            .default_service(web::to(error::route_not_found))
            .wrap(actix_web::middleware::from_fn(middleware::observe))
    })
    .shutdown_timeout(settings.server.shutdown_timeout_secs);
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let server = server.listen(listener).context("Failed to start the HTTP server")?;
    Ok(server.run())
}
