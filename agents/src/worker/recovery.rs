//! Rebuilding an attempt's transcript from the task journal.
//!
//! A worker taking a job first reads what earlier runs of the same
//! (subtask, attempt) journaled: the steps that were committed go back into
//! the prompt as history and are not redone; a step that was started but
//! not committed is finished or redone by the tool loop.

use std::collections::HashMap;

use serde_json::Value;
use troupe_store::{JournalEntry, TaskEvent};

/// One step of an attempt as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepRecord {
    /// From 1.
    pub(crate) step: u32,
    /// The model's reasoning.
    pub(crate) thought: String,
    /// The tool, or a pseudo tool (`invalid_output`, `final`).
    pub(crate) tool: String,
    /// Its arguments.
    pub(crate) args: Value,
    /// Tokens the model used for the step.
    pub(crate) tokens: u64,
    /// What the model saw: text and whether it reports an error.
    pub(crate) observation: Option<(String, bool)>,
    /// The workspace checkpoint, once committed.
    pub(crate) checkpoint: Option<String>,
    /// The person's decision on the step's tool call, if they gave one.
    pub(crate) approved: Option<bool>,
}

impl StepRecord {
    /// A step about to run.
    pub(crate) fn started(
        step: u32,
        thought: String,
        tool: String,
        args: Value,
        tokens: u64,
    ) -> Self {
        StepRecord {
            step,
            thought,
            tool,
            args,
            tokens,
            observation: None,
            checkpoint: None,
            approved: None,
        }
    }

    /// The observation text (empty before the tool ran).
    pub(crate) fn observation_text(&self) -> &str {
        self.observation
            .as_ref()
            .map_or("", |(text, _)| text.as_str())
    }

    /// Whether the observation reports an error.
    pub(crate) fn is_error(&self) -> bool {
        self.observation.as_ref().is_some_and(|(_, e)| *e)
    }
}

/// An attempt's steps: those committed, in order, and the one after them
/// that was started but not committed, if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AttemptLog {
    pub(crate) committed: Vec<StepRecord>,
    pub(crate) pending: Option<StepRecord>,
}

/// The checkpoint label (and commit message) of a step. Recovery compares
/// it with the workspace's checkpoints to learn whether a step's commit
/// happened before the worker died.
pub(crate) fn step_label(subtask: &str, attempt: u32, step: u32, tool: &str) -> String {
    format!("{subtask} attempt {attempt} step {step}: {tool}")
}

/// Reads `subtask`'s `attempt` out of a task's journal.
pub(crate) fn read(entries: &[JournalEntry], subtask: &str, attempt: u32) -> AttemptLog {
    let mut steps: HashMap<u32, StepRecord> = HashMap::new();
    // An approval request names its subtask but not its step: it belongs to
    // the step of that subtask started last before it (a subtask runs one
    // step at a time).
    let mut current: Option<u32> = None;
    let mut requests: HashMap<String, u32> = HashMap::new();
    for entry in entries {
        match &entry.event {
            TaskEvent::StepStarted {
                subtask: s,
                attempt: a,
                step,
                thought,
                tool,
                args,
                tokens,
            } if s == subtask => {
                if *a != attempt {
                    current = None;
                    continue;
                }
                current = Some(*step);
                // A step started again (redone after a crash) replaces the
                // record of its first start.
                let record = StepRecord::started(
                    *step,
                    thought.clone(),
                    tool.clone(),
                    args.clone(),
                    *tokens,
                );
                steps.insert(*step, record);
            }
            TaskEvent::StepObserved {
                subtask: s,
                attempt: a,
                step,
                observation,
                is_error,
                ..
            } if s == subtask && *a == attempt => {
                if let Some(record) = steps.get_mut(step) {
                    record.observation = Some((observation.clone(), *is_error));
                }
            }
            TaskEvent::StepCommitted {
                subtask: s,
                attempt: a,
                step,
                checkpoint,
            } if s == subtask && *a == attempt => {
                if let Some(record) = steps.get_mut(step) {
                    record.checkpoint = Some(checkpoint.clone());
                }
            }
            TaskEvent::ApprovalRequested {
                subtask: s,
                request_id,
                ..
            } if s == subtask => {
                if let Some(step) = current {
                    requests.insert(request_id.clone(), step);
                }
            }
            TaskEvent::ApprovalDecided {
                request_id,
                approved,
                ..
            } => {
                if let Some(record) = requests.get(request_id).and_then(|s| steps.get_mut(s)) {
                    record.approved = Some(*approved);
                }
            }
            _ => {}
        }
    }
    let mut log = AttemptLog::default();
    // Steps run one after another, so the committed ones are 1..=k and at
    // most step k+1 is unfinished; anything else would be a journal written
    // by something other than a worker, and is ignored.
    let mut next = 1;
    while let Some(record) = steps.remove(&next) {
        if record.checkpoint.is_some() {
            log.committed.push(record);
            next += 1;
        } else {
            log.pending = Some(record);
            break;
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(seq: u64, event: TaskEvent) -> JournalEntry {
        JournalEntry {
            task_id: "t".into(),
            seq,
            time_ms: 0,
            event,
        }
    }

    fn started(subtask: &str, attempt: u32, step: u32, tool: &str) -> TaskEvent {
        TaskEvent::StepStarted {
            subtask: subtask.into(),
            attempt,
            step,
            thought: format!("thinking {step}"),
            tool: tool.into(),
            args: json!({}),
            tokens: 10,
        }
    }

    fn observed(subtask: &str, attempt: u32, step: u32) -> TaskEvent {
        TaskEvent::StepObserved {
            subtask: subtask.into(),
            attempt,
            step,
            observation: format!("saw {step}"),
            is_error: false,
            tool_ms: 1,
        }
    }

    fn committed(subtask: &str, attempt: u32, step: u32) -> TaskEvent {
        TaskEvent::StepCommitted {
            subtask: subtask.into(),
            attempt,
            step,
            checkpoint: format!("c{step}"),
        }
    }

    #[test]
    fn committed_steps_and_the_unfinished_one_are_told_apart() {
        let events = [
            started("s1", 1, 1, "write_file"),
            started("s2", 1, 1, "shell"),
            observed("s1", 1, 1),
            committed("s1", 1, 1),
            started("s1", 1, 2, "shell"),
            observed("s1", 1, 2),
        ];
        let entries: Vec<_> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| entry(i as u64, e))
            .collect();
        let log = read(&entries, "s1", 1);
        assert_eq!(log.committed.len(), 1);
        assert_eq!(log.committed[0].observation_text(), "saw 1");
        let pending = log.pending.expect("step 2 is unfinished");
        assert_eq!((pending.step, pending.tool.as_str()), (2, "shell"));
        assert!(read(&entries, "s1", 2).committed.is_empty());
    }

    #[test]
    fn an_approval_decision_belongs_to_the_step_that_asked() {
        let events = [
            started("s1", 1, 1, "shell"),
            TaskEvent::ApprovalRequested {
                subtask: "s1".into(),
                request_id: "r1".into(),
                tool: "shell".into(),
                args: json!({}),
            },
            TaskEvent::ApprovalDecided {
                request_id: "r1".into(),
                approved: false,
                by: None,
            },
        ];
        let entries: Vec<_> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| entry(i as u64, e))
            .collect();
        let log = read(&entries, "s1", 1);
        assert_eq!(log.pending.and_then(|p| p.approved), Some(false));
    }
}
