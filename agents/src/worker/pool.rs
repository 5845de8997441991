//! [`WorkerPool`]: a ractor factory of one specialist's workers.
//!
//! Jobs wait in the factory's queue until a worker is free (queuer
//! routing). A worker that panics drops the job's reply port, so its caller
//! gets [`WorkerLost::Died`], and the factory builds a replacement from the
//! same [`WorkerEnv`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ractor::factory::queues::DefaultQueue;
use ractor::factory::routing::QueuerRouting;
use ractor::factory::{worker_builder, Factory, FactoryArguments, FactoryRef, Job, Worker};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, RpcReplyPort};
use troupe_host::Incarnations;

use super::remote::{dispatch, Dispatch};
use super::tool_loop;
use super::{SubtaskJob, SubtaskOutcome, WorkerEnv, WorkerLost};
use crate::runtime::AgentError;

/// A job as the factory routes it: keyed by `task/subtask/attempt`.
type Key = String;

// Local only; ractor's `cluster` feature (on for the workspace, see the
// root Cargo.toml) has no blanket impl.
impl ractor::Message for WorkerMsg {}

/// What a worker is sent.
pub(crate) enum WorkerMsg {
    /// Runs a job and answers with its outcome.
    Run(Box<SubtaskJob>, RpcReplyPort<SubtaskOutcome>),
}

/// One worker of a specialist.
struct SpecialistWorker {
    env: WorkerEnv,
}

impl Worker for SpecialistWorker {
    type Key = Key;
    type Message = WorkerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _wid: ractor::factory::WorkerId,
        _factory: &FactoryRef<Key, WorkerMsg>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _wid: ractor::factory::WorkerId,
        _factory: &FactoryRef<Key, WorkerMsg>,
        Job { msg, key, .. }: Job<Key, WorkerMsg>,
        _state: &mut (),
    ) -> Result<Key, ActorProcessingErr> {
        match msg {
            WorkerMsg::Run(job, reply) => {
                // The loop runs here, in the worker actor, so that a panic
                // in it (the fault hook's) kills this worker and drops
                // `reply`; tool panics are caught inside the loop.
                let outcome = tool_loop::run(&self.env, *job).await;
                // The caller may have gone away; nobody is left to tell.
                let _ = reply.send(outcome);
            }
        }
        Ok(key)
    }
}

type PoolFactory = Factory<
    Key,
    WorkerMsg,
    (),
    SpecialistWorker,
    QueuerRouting<Key, WorkerMsg>,
    DefaultQueue<Key, WorkerMsg>,
>;

/// One specialist's workers. Cheap to clone.
#[derive(Clone)]
pub struct WorkerPool {
    /// The running factory; a restart puts the new one here. Retired by
    /// [`WorkerPool::stop`].
    factory: Incarnations<FactoryRef<Key, WorkerMsg>>,
    /// The name the factory is registered under.
    name: Option<String>,
    kind: Arc<str>,
    env: Arc<WorkerEnv>,
    /// Jobs handed to the factory and not yet answered.
    busy: Arc<AtomicUsize>,
    workers: usize,
    /// One per local worker: a job holds one while the factory has it, so
    /// the factory never queues and a job that holds a seat is running.
    seats: Arc<tokio::sync::Semaphore>,
}

/// A local worker kept for one job (see [`WorkerPool::wait_for_worker`]).
#[derive(Debug)]
pub struct WorkerSeat(Option<tokio::sync::OwnedSemaphorePermit>);

/// Counts a job as busy while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(count))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("kind", &self.kind)
            .field("factory", &self.factory().get_id())
            .finish()
    }
}

impl WorkerPool {
    /// Starts a factory of `env.specialist.workers` workers (at least one),
    /// each built with a clone of `env`. `name` registers the factory actor
    /// under that name.
    ///
    /// # Errors
    /// [`AgentError::Stopped`] when the factory cannot start (for example
    /// when `name` is taken).
    pub async fn spawn(env: WorkerEnv, name: Option<String>) -> Result<WorkerPool, AgentError> {
        let workers = usize::try_from(env.specialist.workers.max(1)).unwrap_or(1);
        let env = Arc::new(env);
        let factory = start_factory(&env, name.clone(), workers, None).await?;
        Ok(WorkerPool {
            factory: Incarnations::new(factory),
            name,
            kind: Arc::from(env.specialist.kind.as_str()),
            env,
            busy: Arc::default(),
            workers,
            seats: Arc::new(tokio::sync::Semaphore::new(workers)),
        })
    }

    /// Starts the factory again, linked to `supervisor`, after it died (its
    /// jobs were answered [`WorkerLost::Died`]); every clone of this pool
    /// then sends to the new one.
    ///
    /// # Errors
    /// As [`WorkerPool::spawn`].
    pub async fn restart_linked(&self, supervisor: ActorCell) -> Result<ActorCell, AgentError> {
        let factory =
            start_factory(&self.env, self.name.clone(), self.workers, Some(supervisor)).await?;
        let cell = factory.get_cell();
        self.factory.replace(factory);
        Ok(cell)
    }

    /// The factory to hand a job to: the one running now, or, when it has
    /// died and a supervisor restarts it, the next one (see
    /// [`Incarnations::live`]).
    async fn live_factory(&self) -> FactoryRef<Key, WorkerMsg> {
        self.factory
            .live(|factory| factory.get_status() >= ractor::ActorStatus::Stopping)
            .await
    }

    /// The factory running now.
    fn factory(&self) -> FactoryRef<Key, WorkerMsg> {
        self.factory.current()
    }

    /// Runs `job` and waits for its outcome: on the next free worker of
    /// this pool, or on a cluster peer's worker when this node lacks the
    /// job's model or every worker here is busy and a peer has one free
    /// (see [`super::remote`]).
    ///
    /// # Errors
    /// [`WorkerLost::Died`] when the worker died before answering (the
    /// factory replaces it; the journal holds the steps it committed),
    /// [`WorkerLost::PeerLost`] when the peer running it was lost,
    /// [`WorkerLost::Stopped`] when the pool has stopped.
    pub async fn run(&self, job: SubtaskJob) -> Result<SubtaskOutcome, WorkerLost> {
        self.run_in(job, WorkerSeat(None)).await
    }

    /// Waits until a local worker is free and keeps it for the next
    /// [`Self::run_in`], so that the caller can say the job started when it
    /// really does. On a cluster node it returns at once with no seat: a
    /// full pool there spills the job to a peer instead of waiting.
    pub async fn wait_for_worker(&self) -> WorkerSeat {
        if self.env.peers.get().is_some() {
            return WorkerSeat(None);
        }
        WorkerSeat(Arc::clone(&self.seats).acquire_owned().await.ok())
    }

    /// [`Self::run`] on the worker `seat` keeps (or the next free one).
    ///
    /// # Errors
    /// As [`Self::run`].
    pub async fn run_in(
        &self,
        job: SubtaskJob,
        seat: WorkerSeat,
    ) -> Result<SubtaskOutcome, WorkerLost> {
        if seat.0.is_none() {
            if let Some(peers) = self.env.peers.get() {
                let full = self.busy.load(Ordering::SeqCst) >= self.workers;
                if let Dispatch::Ran(result) = dispatch(&self.env, &peers, &job, full).await {
                    return result;
                }
            }
        }
        let _seat = match seat.0 {
            Some(permit) => Some(permit),
            None => Arc::clone(&self.seats).acquire_owned().await.ok(),
        };
        let _busy = Busy::new(&self.busy);
        let key = format!("{}/{}/{}", job.task_id, job.subtask.id, job.attempt);
        let job = Box::new(job);
        let answer = self
            .live_factory()
            .await
            .call_job(key, |reply| WorkerMsg::Run(job, reply), None)
            .await;
        match answer {
            Ok(CallResult::Success(outcome)) => Ok(outcome),
            Ok(CallResult::SenderError) => Err(WorkerLost::Died {
                kind: self.kind.to_string(),
            }),
            Ok(CallResult::Timeout) | Err(_) => Err(WorkerLost::Stopped {
                kind: self.kind.to_string(),
            }),
        }
    }

    /// What the pool's workers share (a node serving its peers' subtasks
    /// builds its [`super::remote::WorkerHost`] from it).
    pub fn env(&self) -> &WorkerEnv {
        &self.env
    }

    /// Jobs this pool's workers are running or have queued now (jobs sent
    /// to peers not counted).
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// The specialist's kind (`general`, `code`, `research`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Stops the factory and its workers; jobs still queued get
    /// [`WorkerLost::Stopped`].
    pub fn stop(&self) {
        self.factory.retire();
        self.factory().stop(None);
    }

    /// The factory running now, for linking it under a supervisor.
    pub fn actor_cell(&self) -> ActorCell {
        self.factory().get_cell()
    }
}

/// Starts a factory of `workers` specialist workers built from `env`,
/// linked to `supervisor` when there is one.
async fn start_factory(
    env: &Arc<WorkerEnv>,
    name: Option<String>,
    workers: usize,
    supervisor: Option<ActorCell>,
) -> Result<FactoryRef<Key, WorkerMsg>, AgentError> {
    let build = Arc::clone(env);
    let args = FactoryArguments::builder()
        .worker_builder(Box::new(worker_builder(move |_wid| {
            (
                SpecialistWorker {
                    env: (*build).clone(),
                },
                (),
            )
        })))
        .queue(DefaultQueue::default())
        .router(QueuerRouting::default())
        .num_initial_workers(workers)
        .build();
    let started = match supervisor {
        Some(supervisor) => {
            Actor::spawn_linked(name, PoolFactory::default(), args, supervisor).await
        }
        None => Actor::spawn(name, PoolFactory::default(), args).await,
    };
    let (factory, _join) = started.map_err(|error| {
        tracing::error!(kind = %env.specialist.kind, %error, "the worker pool could not start");
        AgentError::Stopped("worker pool")
    })?;
    Ok(factory)
}
