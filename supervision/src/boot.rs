//! Boot: everything a running troupe is, assembled in dependency order.
//!
//! The store first (a second process on the same data dir stops here with
//! "already in use"), then the ModelHost with the UX model pinned, the
//! tools and the specialists' worker pools (ractor factories, which
//! replace their own dead workers), then the [`RootSupervisor`]: it links
//! the ModelHost and the pools and starts the Learner, Director and UX,
//! and restarts any of them that dies. The Director resumes every
//! unfinished task as it starts, and again after any restart.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorRef, ActorStatus};
use tokio::task::JoinHandle;
use troupe_agents::director::{Director, DirectorArgs, DirectorHandle, DirectorMsg};
use troupe_agents::learner::{Learner, LearnerArgs, LearnerHandle, LearnerMsg};
use troupe_agents::router::Router;
use troupe_agents::runtime::{ActorSlot, AgentError, Approvals, EventBus, TaskJournal};
use troupe_agents::ux::{Ux, UxArgs, UxHandle, UxMsg};
use troupe_agents::worker::remote::PeerWorkers;
use troupe_agents::worker::{FaultHook, WorkerEnv, WorkerPool};
use troupe_config::{BackendChoice, Config};
use troupe_host::{default_budget_bytes, HostError, ModelHostConfig, ModelHostHandle};
use troupe_inference::backend::Backend;
use troupe_inference::llama::LlamaEngine;
use troupe_inference::scripted::{ScriptError, ScriptedBackend};
use troupe_memory::Memory;
use troupe_store::{Store, StoreError};
use troupe_tools::{builtin_registry, BuildError, Builtins, ToolRegistry};

use crate::supervisor::{
    ChildSpec, RootSupervisor, SupervisorArgs, SupervisorHandle, SupervisorMsg,
};
use crate::troupe::Troupe;

/// How to boot.
#[derive(Clone, Default)]
pub struct BootOptions {
    /// An engine to use instead of the configured one (tests, embedding).
    pub backend: Option<Arc<dyn Backend>>,
    /// The ModelHost's budget; none: `[serve] memory_budget`, else a share
    /// of the machine's memory.
    pub budget_bytes: Option<u64>,
    /// Leave unfinished tasks as they are at boot. `false` (the default,
    /// what every front door uses): the Director resumes them.
    pub no_recover: bool,
    /// Called before each worker step (fault injection in tests).
    pub faults: Option<FaultHook>,
}

/// Why troupe could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// The store could not be opened (another process has it, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ModelHost could not start (a pinned model failed, ...).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The scripted backend's script could not be read.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The tools could not be set up.
    #[error(transparent)]
    Tools(#[from] BuildError),
    /// An actor could not start.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Long-term memory could not be opened.
    #[error(transparent)]
    Memory(#[from] troupe_agents::memory::MemoryOpenError),
    /// The supervisor could not start.
    #[error("the supervisor could not start: {0}")]
    Supervisor(String),
}

/// The engine the configuration names.
///
/// # Errors
/// [`BootError::Script`] for a scripted backend whose script is unreadable.
pub fn backend_for(config: &Config) -> Result<Arc<dyn Backend>, BootError> {
    Ok(match &config.inference.backend {
        BackendChoice::Scripted(path) => Arc::new(ScriptedBackend::from_file(path)?),
        _ => Arc::new(LlamaEngine::new()),
    })
}

/// Starts troupe on `config.data_dir`.
///
/// # Errors
/// [`BootError`]: the store is in use or unreadable, a pinned model fails
/// to load, the tools or an actor cannot start.
pub(crate) async fn boot(config: &Config, opts: BootOptions) -> Result<Troupe, BootError> {
    let data_dir = config.data_dir.clone();
    let store = {
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .map_err(|e| BootError::Supervisor(e.to_string()))??
    };
    let backend = match opts.backend.clone() {
        Some(b) => b,
        None => backend_for(config)?,
    };
    let budget = opts
        .budget_bytes
        .or(config.serve.memory_budget)
        .unwrap_or_else(default_budget_bytes);
    let mut pinned = config.serve.pin.clone();
    if let Some(ux) = &config.agents.ux_model {
        if !pinned.contains(ux) {
            pinned.push(ux.clone());
        }
    }
    let memory =
        troupe_agents::memory::open(&config.memory, &config.models.hf_cache, &data_dir).await?;
    let mut host_config = ModelHostConfig::from_config(config, budget, pinned);
    host_config.default_keep_alive = config.serve.keep_alive;
    let (host, host_done) = troupe_host::spawn(host_config, backend).await?;
    let shared = memory.as_ref().map(|m| Arc::clone(&m.memory));
    let (router, left_out) = Router::new(host.clone(), Some(store.clone()), &config.providers);
    for warning in left_out {
        tracing::warn!("{warning}");
    }
    let assembled = assemble(
        config,
        opts,
        store,
        host.clone(),
        router.clone(),
        data_dir,
        shared,
    )
    .await;
    match assembled {
        Ok((parts, pools, supervisor, supervisor_done)) => Ok(Troupe {
            host,
            router,
            store: parts.journal.store().clone(),
            journal: parts.journal,
            approvals: parts.approvals,
            tools: parts.tools,
            director: parts.director,
            ux: parts.ux,
            learner: parts.learner,
            memory,
            peer_workers: parts.peer_workers,
            supervisor,
            supervisor_done,
            pools,
        }),
        Err(error) => {
            host.shutdown().await;
            let _ = host_done.await;
            Err(error)
        }
    }
}

struct Parts {
    peer_workers: PeerWorkers,
    journal: TaskJournal,
    approvals: Approvals,
    tools: Arc<ToolRegistry>,
    director: DirectorHandle,
    ux: UxHandle,
    learner: LearnerHandle,
}

async fn assemble(
    config: &Config,
    opts: BootOptions,
    store: Store,
    host: ModelHostHandle,
    router: Router,
    data_dir: PathBuf,
    memory: Option<Arc<Memory>>,
) -> Result<(Parts, Vec<WorkerPool>, SupervisorHandle, JoinHandle<()>), BootError> {
    let bus = EventBus::new();
    let journal = TaskJournal::new(store.clone(), bus);
    let approvals = Approvals::default();
    let mut registry = builtin_registry(Builtins {
        tools: &config.tools,
        approval: &config.approval,
        user: None,
        memory: memory.clone(),
    })?;
    // The MCP servers' tools join the registry; the servers stop with it.
    let launch = troupe_mcp::Launch::from_config(&config.tools);
    troupe_mcp::attach(&config.mcp, &launch, &mut registry).await;
    let tools = Arc::new(registry);
    let peer_workers = PeerWorkers::default();
    let pools = spawn_pools(&config.agents.specialists, |specialist| WorkerEnv {
        specialist,
        router: router.clone(),
        journal: journal.clone(),
        tools: Arc::clone(&tools),
        approvals: approvals.clone(),
        data_dir: data_dir.clone(),
        faults: opts.faults.clone(),
        peers: peer_workers.clone(),
    })
    .await?;

    // The supervisor's children, in start order: the ModelHost and the
    // pools, already running (the agents' arguments hold their handles),
    // which it links; then the agents. Each restart builds the child's
    // arguments again; a later child gets the handles of those started
    // before it from their slots, which every (re)start refills.
    let slots = Slots::default();
    let shared = Shared {
        store,
        host,
        router,
        journal: journal.clone(),
        approvals: approvals.clone(),
        pools: pools.clone(),
        memory,
        data_dir,
    };
    let mut children = vec![host_child(&shared.host)];
    children.extend(shared.pools.iter().map(pool_child));
    children.extend([
        learner_child(&slots, config, &shared),
        director_child(&slots, config, &shared, !opts.no_recover),
        ux_child(&slots, config, &shared),
    ]);
    let (supervisor, supervisor_done): (ActorRef<SupervisorMsg>, JoinHandle<()>) = Actor::spawn(
        None,
        RootSupervisor,
        SupervisorArgs {
            children,
            policy: config.supervision,
        },
    )
    .await
    .map_err(|e| BootError::Supervisor(e.to_string()))?;
    let get = |what: &'static str| BootError::Supervisor(format!("the {what} did not start"));
    let parts = Parts {
        peer_workers,
        journal,
        approvals,
        tools,
        director: DirectorHandle::new(
            slots
                .director
                .get()
                .cloned()
                .ok_or_else(|| get("director"))?,
        ),
        ux: UxHandle::new(slots.ux.get().cloned().ok_or_else(|| get("UX"))?),
        learner: LearnerHandle::new(slots.learner.get().cloned().ok_or_else(|| get("learner"))?),
    };
    Ok((
        parts,
        pools,
        SupervisorHandle::new(supervisor),
        supervisor_done,
    ))
}

/// The slots of the root supervisor's children: each (re)start puts the
/// child's new reference in; a later child reads the earlier ones'.
#[derive(Default)]
struct Slots {
    learner: Slot<LearnerMsg>,
    director: Slot<DirectorMsg>,
    ux: Slot<UxMsg>,
}

/// What the supervised children are built from (cloned at every start).
struct Shared {
    store: Store,
    host: ModelHostHandle,
    router: Router,
    journal: TaskJournal,
    approvals: Approvals,
    pools: Vec<WorkerPool>,
    memory: Option<Arc<Memory>>,
    data_dir: PathBuf,
}

/// The Learner: the store's outcomes and the ModelHost's view.
fn learner_child(slots: &Slots, config: &Config, shared: &Shared) -> ChildSpec {
    let (store, host) = (shared.store.clone(), shared.host.clone());
    let (agents, learner) = (config.agents.clone(), config.learner.clone());
    linked_child(
        "learner",
        &slots.learner,
        || Learner,
        move || {
            Ok(LearnerArgs {
                store: store.clone(),
                agents: agents.clone(),
                host: host.clone(),
                learner: learner.clone(),
            })
        },
    )
}

/// The Director: plans, hands subtasks to the pools, asks the Learner;
/// resumes unfinished tasks as it starts when `recover`.
fn director_child(slots: &Slots, config: &Config, shared: &Shared, recover: bool) -> ChildSpec {
    let agents = config.agents.clone();
    let (router, journal) = (shared.router.clone(), shared.journal.clone());
    let (pools, memory) = (shared.pools.clone(), shared.memory.clone());
    let data_dir = shared.data_dir.clone();
    let learner = Arc::clone(&slots.learner);
    linked_child(
        "director",
        &slots.director,
        || Director,
        move || {
            Ok(DirectorArgs {
                agents: agents.clone(),
                data_dir: data_dir.clone(),
                router: router.clone(),
                journal: journal.clone(),
                learner: LearnerHandle::new(learner.get().cloned().ok_or(ORDER)?),
                pools: pools.clone(),
                recover,
                memory: memory.clone(),
            })
        },
    )
}

/// The UX: answers the person, hands work to the Director.
fn ux_child(slots: &Slots, config: &Config, shared: &Shared) -> ChildSpec {
    let agents = config.agents.clone();
    let (router, journal) = (shared.router.clone(), shared.journal.clone());
    let (approvals, memory) = (shared.approvals.clone(), shared.memory.clone());
    let (learner, director) = (Arc::clone(&slots.learner), Arc::clone(&slots.director));
    linked_child(
        "ux",
        &slots.ux,
        || Ux,
        move || {
            Ok(UxArgs {
                model: agents.ux_model.clone(),
                max_tokens: agents.ux_max_tokens,
                progress_interval: agents.progress_interval,
                router: router.clone(),
                director: DirectorHandle::new(director.get().cloned().ok_or(ORDER)?),
                journal: journal.clone(),
                approvals: approvals.clone(),
                learner: LearnerHandle::new(learner.get().cloned().ok_or(ORDER)?),
                memory: memory.clone(),
            })
        },
    )
}

/// Children start in order (Learner, Director, UX); a later one needs the
/// slots of the earlier ones.
const ORDER: &str = "children must start in order: learner, director, ux";

/// A worker pool per configured specialist, its workers' environment made
/// by `env`.
async fn spawn_pools(
    specialists: &[troupe_config::SpecialistConfig],
    env: impl Fn(troupe_config::SpecialistConfig) -> WorkerEnv,
) -> Result<Vec<WorkerPool>, BootError> {
    let mut pools = Vec::new();
    for (i, specialist) in specialists.iter().enumerate() {
        let env = env(specialist.clone());
        let name = format!("{}-workers-{i}-{:08x}", specialist.kind, rand_suffix());
        pools.push(WorkerPool::spawn(env, Some(name)).await?);
    }
    Ok(pools)
}

/// The ModelHost as a child: restarted with its pinned models; its
/// handles follow it.
fn host_child(host: &ModelHostHandle) -> ChildSpec {
    let host = host.clone();
    adopted_child("model-host".into(), host.actor_cell(), move |supervisor| {
        let host = host.clone();
        async move {
            host.restart_linked(supervisor)
                .await
                .map_err(|e| e.to_string())
        }
    })
}

/// A worker pool as a child: its factory restarted with a full set of
/// workers; the pool's clones follow it.
fn pool_child(pool: &WorkerPool) -> ChildSpec {
    let name = format!("workers-{}", pool.kind());
    let pool = pool.clone();
    adopted_child(name.into(), pool.actor_cell(), move |supervisor| {
        let pool = pool.clone();
        async move {
            pool.restart_linked(supervisor)
                .await
                .map_err(|e| e.to_string())
        }
    })
}

/// A child started before the supervisor: its first start links the
/// running actor; a restart starts a new one linked through `restart`.
fn adopted_child<F, Fut>(name: Cow<'static, str>, running: ActorCell, restart: F) -> ChildSpec
where
    F: Fn(ActorCell) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<ActorCell, String>> + Send + 'static,
{
    let running = std::sync::Mutex::new(Some(running));
    let restart = Arc::new(restart);
    ChildSpec {
        name,
        outlives: true,
        start: Arc::new(move |supervisor| {
            let adopted = running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let restart = Arc::clone(&restart);
            Box::pin(async move {
                if let Some(cell) = adopted {
                    cell.link(supervisor.clone());
                    // One that died before it was linked is started anew.
                    if cell.get_status() < ActorStatus::Stopping {
                        return Ok(cell);
                    }
                }
                restart(supervisor).await
            })
        }),
    }
}

/// Where the latest incarnation of a supervised child is found.
type Slot<M> = Arc<std::sync::OnceLock<ActorSlot<M>>>;

/// A child of the root supervisor: on every (re)start, `args` builds its
/// arguments, the actor is spawned linked to the supervisor, and its
/// reference goes into `slot`.
fn linked_child<A>(
    name: &'static str,
    slot: &Slot<A::Msg>,
    actor: fn() -> A,
    args: impl Fn() -> Result<A::Arguments, String> + Send + Sync + 'static,
) -> ChildSpec
where
    A: Actor,
{
    let slot = Arc::clone(slot);
    ChildSpec {
        name: name.into(),
        outlives: false,
        start: Arc::new(move |supervisor| {
            let (slot, actor, args) = (Arc::clone(&slot), actor(), args());
            Box::pin(async move {
                let (child, _) = Actor::spawn_linked(None, actor, args?, supervisor)
                    .await
                    .map_err(|e| e.to_string())?;
                put(&slot, child.clone());
                Ok(child.get_cell())
            })
        }),
    }
}

/// Puts a (re)started actor in its slot, creating the slot the first time.
fn put<M: ractor::Message>(slot: &std::sync::OnceLock<ActorSlot<M>>, actor: ActorRef<M>) {
    match slot.get() {
        Some(s) => s.set(actor),
        None => {
            let _ = slot.set(ActorSlot::new(actor));
        }
    }
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
