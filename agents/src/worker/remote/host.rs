//! [`WorkerHost`]: a node's side of running its peers' subtasks.
//!
//! Each job gets a scratch directory with its own store (seeded with the
//! owner's journal, so the attempt's committed steps replay) and its own
//! copy of the workspace (the owner's files), and runs the ordinary tool
//! loop there with this node's router, tools and approval policy. What the
//! loop journals and publishes is turned into [`RemoteUpdate`]s queued for
//! the owner, who pulls them with [`WorkerHost::poll`]. The scratch
//! directory goes when the job ends.
//!
//! A job nobody polls for [`ABANDONED_AFTER`] is dropped: its control
//! goes with it, which reads as "pause", so the worker stops at its next
//! step boundary. Jobs per specialist are limited to its `workers`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use troupe_store::{Store, TaskEvent};
use troupe_tools::{CheckpointId, Workspace};

use super::{KindOffer, RemoteJob, RemoteUpdate, WorkerOffer};
use crate::runtime::{
    Approvals, Control, Decision, EventBus, TaskControl, TaskJournal, TroupeEvent,
};
use crate::worker::{tool_loop, SubtaskJob, SubtaskOutcome, WorkerEnv};

/// How long a poll waits for an update before answering with none.
pub const LONG_POLL: Duration = Duration::from_millis(300);

/// A job whose owner stopped polling this long is dropped.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// Most updates one poll answer carries.
const UPDATES_PER_POLL: usize = 256;

/// Runs peers' subtasks on this node's specialists. Cheap to clone.
#[derive(Clone)]
pub struct WorkerHost {
    inner: Arc<Inner>,
}

struct Inner {
    kinds: Vec<Kind>,
    scratch: PathBuf,
    jobs: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    reaper: Mutex<Option<JoinHandle<()>>>,
}

struct Kind {
    env: WorkerEnv,
    workers: u32,
    permits: Arc<Semaphore>,
}

struct Slot {
    queue: VecDeque<RemoteUpdate>,
    ended: bool,
    wake: Arc<Notify>,
    last_poll: Instant,
    /// Dropping it (the slot removed) tells the worker to stop.
    control: TaskControl,
    approvals: Approvals,
}

impl std::fmt::Debug for WorkerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHost")
            .field("scratch", &self.inner.scratch)
            .field("jobs", &lock(&self.inner.jobs).len())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(reaper) = lock(&self.reaper).take() {
            reaper.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoned only if a holder panicked mid-update; the map stays usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl WorkerHost {
    /// A host for the specialists `envs` (one per kind, as the local pools
    /// have them), working under `scratch` (emptied now: jobs of an earlier
    /// run of this process are gone with it). Call inside a tokio runtime.
    pub fn new(envs: impl IntoIterator<Item = WorkerEnv>, scratch: PathBuf) -> WorkerHost {
        if scratch.exists() {
            if let Err(error) = std::fs::remove_dir_all(&scratch) {
                tracing::warn!(path = %scratch.display(), %error, "cannot empty the scratch directory of peers' jobs");
            }
        }
        let kinds = envs
            .into_iter()
            .map(|env| {
                let workers = env.specialist.workers.max(1);
                Kind {
                    env,
                    workers,
                    permits: Arc::new(Semaphore::new(usize::try_from(workers).unwrap_or(1))),
                }
            })
            .collect();
        let host = WorkerHost {
            inner: Arc::new(Inner {
                kinds,
                scratch,
                jobs: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                reaper: Mutex::new(None),
            }),
        };
        let weak = Arc::downgrade(&host.inner);
        *lock(&host.inner.reaper) = Some(tokio::spawn(reap(weak)));
        host
    }

    /// What this node offers: `node`, its ModelHost's models and its
    /// specialists' free workers.
    pub async fn offer(&self, node: &str) -> WorkerOffer {
        let models = match self.inner.kinds.first() {
            Some(kind) => match kind.env.router.host().catalog().await {
                Ok(entries) => entries.into_iter().map(|e| e.name).collect(),
                Err(error) => {
                    tracing::warn!(%error, "cannot list this node's models for peers");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        WorkerOffer {
            node: node.to_owned(),
            models,
            kinds: self
                .inner
                .kinds
                .iter()
                .map(|k| KindOffer {
                    kind: k.env.specialist.kind,
                    workers: k.workers,
                    free: u32::try_from(k.permits.available_permits()).unwrap_or(u32::MAX),
                })
                .collect(),
        }
    }

    /// Starts `job` (sent by node `origin`) on a free worker of its kind.
    ///
    /// # Errors
    /// Why it was refused, in words: no such specialist here, or none of
    /// its workers free.
    pub fn start(&self, job: RemoteJob, origin: &str) -> Result<u64, String> {
        let Some(kind) = self
            .inner
            .kinds
            .iter()
            .find(|k| k.env.specialist.kind == job.kind)
        else {
            return Err(format!("this node has no {} specialist", job.kind));
        };
        let Ok(permit) = Arc::clone(&kind.permits).try_acquire_owned() else {
            return Err(format!("every {} worker of this node is busy", job.kind));
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let control = TaskControl::new();
        let watch = control.watch();
        let approvals = Approvals::default();
        lock(&self.inner.jobs).insert(
            id,
            Slot {
                queue: VecDeque::new(),
                ended: false,
                wake: Arc::new(Notify::new()),
                last_poll: Instant::now(),
                control,
                approvals: approvals.clone(),
            },
        );
        tracing::info!(id, task = %job.task_id, subtask = %job.subtask.id, attempt = job.attempt,
            kind = %job.kind, origin, "running a peer's subtask");
        let dir = self
            .inner
            .scratch
            .join(format!("{}-{id}", std::process::id()));
        let env = WorkerEnv {
            approvals,
            data_dir: dir.clone(),
            faults: None,
            ..kind.env.clone()
        };
        let push = Pusher {
            inner: Arc::downgrade(&self.inner),
            id,
        };
        tokio::spawn(run_job(env, job, watch, dir, push, permit));
        Ok(id)
    }

    /// The job's updates since the last poll, waiting up to [`LONG_POLL`]
    /// for one; `None` when no job has this id (ended and collected, or
    /// dropped).
    pub async fn poll(&self, id: u64) -> Option<Vec<RemoteUpdate>> {
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        loop {
            let wake = {
                let mut jobs = lock(&self.inner.jobs);
                let slot = jobs.get_mut(&id)?;
                slot.last_poll = Instant::now();
                if !slot.queue.is_empty() || tokio::time::Instant::now() >= deadline {
                    let take = slot.queue.len().min(UPDATES_PER_POLL);
                    let updates: Vec<RemoteUpdate> = slot.queue.drain(..take).collect();
                    if slot.ended && slot.queue.is_empty() {
                        jobs.remove(&id);
                    }
                    return Some(updates);
                }
                Arc::clone(&slot.wake)
            };
            // notify_one keeps a permit when nobody waits yet, so an update
            // pushed between the check above and this wait is not missed.
            let _ = tokio::time::timeout_at(deadline, wake.notified()).await;
        }
    }

    /// The person's answer to the job's approval `approval`.
    pub fn decide(&self, id: u64, approval: &str, decision: Decision) {
        let approvals = lock(&self.inner.jobs).get(&id).map(|s| s.approvals.clone());
        if let Some(approvals) = approvals {
            if let Err(error) = approvals.decide(approval, decision) {
                tracing::warn!(id, %error, "a peer decided an approval this job no longer waits on");
            }
        }
    }

    /// Pauses or cancels the job at its worker's next step boundary.
    pub fn control(&self, id: u64, control: Control) {
        if let Some(slot) = lock(&self.inner.jobs).get(&id) {
            slot.control.set(control);
        }
    }

    /// Drops the job: its worker stops at the next step boundary and its
    /// updates are thrown away.
    pub fn cancel(&self, id: u64) {
        lock(&self.inner.jobs).remove(&id);
    }

    /// Jobs running or not yet collected.
    pub fn jobs(&self) -> usize {
        lock(&self.inner.jobs).len()
    }

    /// Drops every job (the node is leaving the cluster).
    pub fn shutdown(&self) {
        lock(&self.inner.jobs).clear();
    }
}

/// Queues a job's updates; a no-op once the job is dropped.
struct Pusher {
    inner: std::sync::Weak<Inner>,
    id: u64,
}

impl Pusher {
    fn push(&self, update: RemoteUpdate) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut jobs = lock(&inner.jobs);
        if let Some(slot) = jobs.get_mut(&self.id) {
            slot.ended |= update.is_last();
            slot.queue.push_back(update);
            slot.wake.notify_one();
        }
    }
}

async fn run_job(
    env: WorkerEnv,
    job: RemoteJob,
    control: crate::runtime::ControlWatch,
    dir: PathBuf,
    push: Pusher,
    permit: OwnedSemaphorePermit,
) {
    let failed = |reason: String| {
        RemoteUpdate::Finished(SubtaskOutcome::Failed {
            reason,
            tokens: 0,
            steps: 0,
            hit_budget: false,
        })
    };
    let (store, ws, base) = match prepare(&dir, &job).await {
        Ok(parts) => parts,
        Err(reason) => {
            tracing::warn!(task = %job.task_id, %reason, "cannot set up a peer's subtask");
            drop(permit);
            push.push(failed(format!(
                "the peer could not set the subtask up: {reason}"
            )));
            remove_dir(&dir).await;
            return;
        }
    };
    let bus = EventBus::new();
    let mut events = bus.subscribe();
    let env = WorkerEnv {
        journal: TaskJournal::new(store.clone(), bus),
        ..env
    };
    let subtask_job = SubtaskJob {
        task_id: job.task_id.clone(),
        request: job.request,
        subtask: job.subtask,
        attempt: job.attempt,
        model: job.model,
        dependencies: job.dependencies,
        control,
        max_tokens: job.max_tokens,
    };
    let mut worker = tokio::spawn(async move { tool_loop::run(&env, subtask_job).await });
    let mut forward = Forward {
        ws,
        last: base,
        held: None,
    };
    let ended = loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Ok(event) => {
                    for update in forward.event(event).await {
                        push.push(update);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "a peer's subtask outran its forwarder");
                }
                Err(broadcast::error::RecvError::Closed) => break (&mut worker).await,
            },
            joined = &mut worker => break joined,
        }
    };
    // What the loop published before it returned is still queued.
    while let Ok(event) = events.try_recv() {
        for update in forward.event(event).await {
            push.push(update);
        }
    }
    // The worker is free before its owner hears the job ended, so the
    // owner's next job finds it free.
    drop(permit);
    push.push(match ended {
        Ok(outcome) => RemoteUpdate::Finished(outcome),
        Err(error) => RemoteUpdate::Died(format!("the worker stopped: {error}")),
    });
    if let Err(error) = store.close().await {
        tracing::debug!(%error, "the scratch store was already closed");
    }
    remove_dir(&dir).await;
}

/// The job's scratch store (seeded with the owner's journal) and workspace
/// (holding exactly the owner's files), and the workspace's first
/// checkpoint.
async fn prepare(
    dir: &Path,
    job: &RemoteJob,
) -> Result<(Store, Arc<Workspace>, CheckpointId), String> {
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    for event in &job.journal {
        store
            .append(&job.task_id, event.clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    let (dir, task, files) = (dir.to_path_buf(), job.task_id.clone(), job.files.clone());
    let made = tokio::task::spawn_blocking(move || {
        let ws = Workspace::create(&dir, &task)?;
        ws.apply(&files, true)?;
        let base = ws.checkpoint("the owner's files")?;
        Ok::<_, troupe_tools::WorkspaceError>((ws, base))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok((store, Arc::new(made.0), made.1))
}

async fn remove_dir(dir: &Path) {
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            tracing::debug!(path = %dir.display(), %error, "cannot remove a job's scratch directory");
        }
    })
    .await;
}

/// Turns the scratch journal's events into updates for the owner.
struct Forward {
    ws: Arc<Workspace>,
    /// The checkpoint the owner's files last matched.
    last: CheckpointId,
    /// An `approval_requested` waiting for its request, which the owner
    /// must park before it records the entry.
    held: Option<TaskEvent>,
}

impl Forward {
    async fn event(&mut self, event: TroupeEvent) -> Vec<RemoteUpdate> {
        match event {
            TroupeEvent::Journal(entry) => match entry.event {
                TaskEvent::ApprovalRequested { .. } => {
                    self.held = Some(entry.event);
                    Vec::new()
                }
                TaskEvent::StepCommitted {
                    subtask,
                    attempt,
                    step,
                    checkpoint,
                } => {
                    let to = CheckpointId(checkpoint.clone());
                    let (ws, from, at) = (Arc::clone(&self.ws), self.last.clone(), to.clone());
                    let found = tokio::task::spawn_blocking(move || {
                        let files = ws.changes(&from, &at)?;
                        let label = ws.checkpoint_step(&at)?;
                        Ok::<_, troupe_tools::WorkspaceError>((files, label))
                    })
                    .await;
                    let event = TaskEvent::StepCommitted {
                        subtask,
                        attempt,
                        step,
                        checkpoint,
                    };
                    match found {
                        Ok(Ok((files, label))) => {
                            self.last = to;
                            vec![RemoteUpdate::Journal {
                                event,
                                files,
                                label,
                            }]
                        }
                        other => {
                            let reason = match other {
                                Ok(Err(e)) => e.to_string(),
                                Err(e) => e.to_string(),
                                Ok(Ok(_)) => String::new(),
                            };
                            tracing::warn!(%reason, "cannot read a step's changes for its owner");
                            vec![RemoteUpdate::Died(format!(
                                "the peer could not read step {step}'s file changes: {reason}"
                            ))]
                        }
                    }
                }
                event => vec![RemoteUpdate::Journal {
                    event,
                    files: Vec::new(),
                    label: None,
                }],
            },
            TroupeEvent::ApprovalPending { request, .. } => {
                let mut out = vec![RemoteUpdate::Approval(request)];
                if let Some(event) = self.held.take() {
                    out.push(RemoteUpdate::Journal {
                        event,
                        files: Vec::new(),
                        label: None,
                    });
                }
                out
            }
            TroupeEvent::Progress { text, tokens, .. } => {
                vec![RemoteUpdate::Progress { text, tokens }]
            }
            _ => Vec::new(),
        }
    }
}

/// Drops jobs whose owner stopped polling.
async fn reap(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(ABANDONED_AFTER / 4);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        lock(&inner.jobs).retain(|id, slot| {
            let abandoned = slot.last_poll.elapsed() > ABANDONED_AFTER;
            if abandoned {
                tracing::info!(id, "dropping a peer's subtask nobody polls");
            }
            !abandoned
        });
    }
}
