//! This node's side of a subtask attempt on a peer's worker: whether to
//! send it, sending it, and recording what comes back.

use std::sync::Arc;

use tokio::task::JoinHandle;
use troupe_store::{now_ms, CheckpointRecord, TaskEvent};
use troupe_tools::Workspace;

use super::{RemoteJob, RemoteUpdate, WorkerPeers, MAX_JOB_BYTES};
use crate::runtime::{AgentError, Control, PendingApproval, TroupeEvent};
use crate::worker::recovery::step_label;
use crate::worker::{SubtaskJob, SubtaskOutcome, WorkerEnv, WorkerLost};

/// Where a job went.
pub(crate) enum Dispatch {
    /// It stays on this node.
    Local,
    /// A peer ran it; what it came to.
    Ran(Result<SubtaskOutcome, WorkerLost>),
}

/// Runs `job` on a peer when this node lacks its model, or when
/// `local_full` (every local worker of the specialist busy) and a peer has
/// a free one; otherwise [`Dispatch::Local`]. A peer that refuses or cannot
/// be reached leaves the job local too.
pub(crate) async fn dispatch(
    env: &WorkerEnv,
    peers: &Arc<dyn WorkerPeers>,
    job: &SubtaskJob,
    local_full: bool,
) -> Dispatch {
    let kind = env.specialist.kind;
    let local_has = match env.router.host().catalog().await {
        Ok(entries) => entries.iter().any(|e| e.name == job.model),
        Err(_) => false,
    };
    if local_has && !local_full {
        return Dispatch::Local;
    }
    let mut offers: Vec<_> = peers
        .offers()
        .await
        .into_iter()
        .filter(|o| o.free(kind) > 0 && o.models.contains(&job.model))
        .collect();
    if offers.is_empty() {
        return Dispatch::Local;
    }
    offers.sort_by_key(|o| std::cmp::Reverse(o.free(kind)));
    let reason = if local_has {
        format!("every local {kind} worker is busy")
    } else {
        format!("this node does not have the model {}", job.model)
    };
    let remote = match remote_job(env, job).await {
        Ok(Some(remote)) => remote,
        Ok(None) => return Dispatch::Local,
        Err(error) => {
            tracing::warn!(task = %job.task_id, %error, "cannot package a subtask for a peer");
            return Dispatch::Local;
        }
    };
    for offer in offers {
        match peers.start(&offer.node, remote.clone()).await {
            Ok(id) => {
                let relay = Relay {
                    env,
                    peers: Arc::clone(peers),
                    job,
                    node: offer.node,
                    id,
                };
                return Dispatch::Ran(relay.run(reason).await);
            }
            Err(why) => {
                tracing::info!(peer = %offer.node, task = %job.task_id, subtask = %job.subtask.id,
                    %why, "a peer did not take the subtask");
            }
        }
    }
    Dispatch::Local
}

/// The job as a peer gets it; `None` when the workspace and journal are
/// larger than [`MAX_JOB_BYTES`].
async fn remote_job(env: &WorkerEnv, job: &SubtaskJob) -> Result<Option<RemoteJob>, AgentError> {
    let journal: Vec<TaskEvent> = env
        .journal
        .store()
        .journal(&job.task_id, 0)
        .await?
        .into_iter()
        .map(|entry| entry.event)
        .collect();
    let (data_dir, task) = (env.data_dir.clone(), job.task_id.clone());
    let files = tokio::task::spawn_blocking(move || {
        let ws = Workspace::open(&data_dir, &task)?;
        let head = ws.head()?;
        ws.snapshot(&head)
    })
    .await
    .map_err(|_| AgentError::Stopped("async runtime"))??;
    let journal_bytes = serde_json::to_vec(&journal).map_or(usize::MAX, |b| b.len());
    let file_bytes: usize = files.iter().map(|f| f.size().div_ceil(3) * 4).sum();
    if journal_bytes.saturating_add(file_bytes) > MAX_JOB_BYTES {
        tracing::info!(task = %job.task_id, bytes = journal_bytes + file_bytes,
            "the task is too large to send to a peer; its subtask runs here");
        return Ok(None);
    }
    Ok(Some(RemoteJob {
        kind: env.specialist.kind,
        task_id: job.task_id.clone(),
        request: job.request.clone(),
        subtask: job.subtask.clone(),
        attempt: job.attempt,
        model: job.model.clone(),
        dependencies: job.dependencies.clone(),
        max_tokens: job.max_tokens,
        journal,
        files,
    }))
}

/// Stops a relay's helper tasks, and drops its job on the peer unless it
/// ended there, when the relay ends for any reason.
struct Guard {
    tasks: Vec<JoinHandle<()>>,
    peer: Option<(Arc<dyn WorkerPeers>, String, u64)>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some((peers, node, id)) = self.peer.take() {
            peers.cancel(&node, id);
        }
    }
}

/// One job running on a peer.
struct Relay<'a> {
    env: &'a WorkerEnv,
    peers: Arc<dyn WorkerPeers>,
    job: &'a SubtaskJob,
    node: String,
    id: u64,
}

impl Relay<'_> {
    async fn run(self, reason: String) -> Result<SubtaskOutcome, WorkerLost> {
        let job = self.job;
        tracing::info!(task = %job.task_id, subtask = %job.subtask.id, attempt = job.attempt,
            peer = %self.node, %reason, "subtask runs on a peer");
        // Whatever ends this future (the job's end, or the Director's run
        // aborted), the helper tasks stop with it, approvals still waiting
        // are withdrawn (their receivers drop), and a job that did not end
        // is dropped on the peer.
        let mut guard = Guard {
            tasks: vec![self.forward_control()],
            peer: Some((Arc::clone(&self.peers), self.node.clone(), self.id)),
        };
        let ended = self.pump(reason, &mut guard.tasks).await;
        match ended {
            Ok(Ok(outcome)) => {
                guard.peer = None;
                Ok(outcome)
            }
            Ok(Err(lost)) => Err(lost),
            Err(error) => {
                // This node could not record what the peer did (its store
                // or workspace failed): the attempt fails here, as a local
                // one would, and the peer stops.
                tracing::warn!(task = %job.task_id, subtask = %job.subtask.id, %error,
                    "cannot record a peer's subtask");
                Ok(SubtaskOutcome::Failed {
                    reason: error.to_string(),
                    tokens: 0,
                    steps: 0,
                    hit_budget: false,
                })
            }
        }
    }

    /// Sends pause and cancel on to the peer.
    fn forward_control(&self) -> JoinHandle<()> {
        let mut watch = self.job.control.clone();
        let (peers, node, id) = (Arc::clone(&self.peers), self.node.clone(), self.id);
        tokio::spawn(async move {
            let first = watch.stopped().await;
            peers.control(&node, id, first);
            if first != Control::Cancel {
                watch.cancelled().await;
                peers.control(&node, id, Control::Cancel);
            }
        })
    }

    /// Polls until the job ends or the peer is lost.
    async fn pump(
        &self,
        reason: String,
        asked: &mut Vec<JoinHandle<()>>,
    ) -> Result<Result<SubtaskOutcome, WorkerLost>, AgentError> {
        let job = self.job;
        self.env
            .journal
            .record(
                &job.task_id,
                TaskEvent::Delegated {
                    subtask: job.subtask.id.clone(),
                    attempt: job.attempt,
                    node: self.node.clone(),
                    reason,
                },
            )
            .await?;
        let lost = |reason: String| WorkerLost::PeerLost {
            kind: self.env.specialist.kind.to_string(),
            node: self.node.clone(),
            reason,
        };
        loop {
            let updates = match self.peers.poll(&self.node, self.id).await {
                Ok(updates) => updates,
                Err(reason) => return Ok(Err(lost(reason))),
            };
            for update in updates {
                match update {
                    RemoteUpdate::Journal {
                        event,
                        files,
                        label,
                    } => {
                        self.journal(event, files, label).await?;
                    }
                    RemoteUpdate::Progress { text, tokens } => {
                        self.env.journal.bus().publish(TroupeEvent::Progress {
                            task_id: job.task_id.clone(),
                            subtask: Some(job.subtask.id.clone()),
                            text,
                            tokens,
                        });
                    }
                    RemoteUpdate::Approval(request) => asked.push(self.park(request)),
                    RemoteUpdate::Finished(outcome) => return Ok(Ok(outcome)),
                    RemoteUpdate::Died(reason) => return Ok(Err(lost(reason))),
                }
            }
        }
    }

    /// Records one of the peer's journal entries here. A committed step's
    /// files are applied to this node's workspace and checkpointed first,
    /// and the entry names that checkpoint.
    async fn journal(
        &self,
        event: TaskEvent,
        files: Vec<troupe_tools::FileChange>,
        label: Option<String>,
    ) -> Result<(), AgentError> {
        let job = self.job;
        let TaskEvent::StepCommitted {
            subtask,
            attempt,
            step,
            ..
        } = event
        else {
            self.env.journal.record(&job.task_id, event).await?;
            return Ok(());
        };
        let label = label.unwrap_or_else(|| step_label(&subtask, attempt, step, "step"));
        let (data_dir, task, at) = (
            self.env.data_dir.clone(),
            job.task_id.clone(),
            label.clone(),
        );
        let commit = tokio::task::spawn_blocking(move || {
            let ws = Workspace::open(&data_dir, &task)?;
            // The peer's step lands as a whole step, as a local one does.
            let _whole_steps = ws.step_lock()?;
            ws.apply(&files, false)?;
            ws.checkpoint(&at)
        })
        .await
        .map_err(|_| AgentError::Stopped("async runtime"))??;
        self.env
            .journal
            .record(
                &job.task_id,
                TaskEvent::StepCommitted {
                    subtask: subtask.clone(),
                    attempt,
                    step,
                    checkpoint: commit.0.clone(),
                },
            )
            .await?;
        self.env
            .journal
            .store()
            .put_checkpoint(CheckpointRecord {
                task_id: job.task_id.clone(),
                subtask,
                step: label,
                commit: commit.0,
                time_ms: now_ms(),
            })
            .await?;
        Ok(())
    }

    /// Parks the peer's approval request here, where the person sees it,
    /// and sends the answer back when it comes.
    fn park(&self, request: troupe_tools::ApprovalRequest) -> JoinHandle<()> {
        let job = self.job;
        let answer = self.env.approvals.ask(PendingApproval {
            task_id: job.task_id.clone(),
            subtask: job.subtask.id.clone(),
            request: request.clone(),
        });
        self.env
            .journal
            .bus()
            .publish(TroupeEvent::ApprovalPending {
                task_id: job.task_id.clone(),
                request: request.clone(),
            });
        let (peers, node, id) = (Arc::clone(&self.peers), self.node.clone(), self.id);
        tokio::spawn(async move {
            if let Ok(decision) = answer.await {
                peers.decide(&node, id, &request.id, decision);
            }
        })
    }
}
