//! What a task's journal entries do to its node in the tree, and what
//! the event log says about them.

use troupe::store::{SubtaskState, TaskEvent, TaskState};

use super::app::{SubtaskNode, TaskNode};

/// The live subtask `id` of `task`.
pub(super) fn sub_mut<'a>(task: &'a mut TaskNode, id: &str) -> Option<&'a mut SubtaskNode> {
    // A re-plan never reuses ids, but the newest entry is the live one.
    task.subtasks.iter_mut().rev().find(|s| s.id == id)
}

/// Updates a task's node for one of its journal events.
pub(super) fn follow(task: &mut TaskNode, event: &TaskEvent) {
    task.tally.add(event);
    task.tokens = task.tokens.max(task.tally.total());
    match event {
        TaskEvent::Planned { subtasks, .. } => {
            task.state = TaskState::Running;
            task.subtasks.extend(subtasks.iter().map(|s| SubtaskNode {
                id: s.id.clone(),
                kind: s.kind,
                description: s.description.clone(),
                state: SubtaskState::Pending,
                doing: None,
            }));
        }
        TaskEvent::SubtaskStarted {
            subtask, attempt, ..
        } => {
            task.state = TaskState::Running;
            if let Some(s) = sub_mut(task, subtask) {
                s.state = SubtaskState::Running;
                s.doing = Some(format!("attempt {attempt}"));
            }
        }
        TaskEvent::StepStarted {
            subtask,
            step,
            tool,
            ..
        } => {
            if let Some(s) = sub_mut(task, subtask) {
                s.doing = Some(format!("step {step}: {tool}"));
            }
        }
        TaskEvent::ApprovalRequested { subtask, tool, .. } => {
            if let Some(s) = sub_mut(task, subtask) {
                s.doing = Some(format!("waits for approval of {tool}"));
            }
        }
        TaskEvent::SubtaskFinished {
            subtask, success, ..
        } => {
            if let Some(s) = sub_mut(task, subtask) {
                s.state = if *success {
                    SubtaskState::Succeeded
                } else {
                    SubtaskState::Failed
                };
                s.doing = None;
            }
        }
        TaskEvent::Replanning { .. } => {
            for s in &mut task.subtasks {
                if matches!(s.state, SubtaskState::Pending | SubtaskState::Running) {
                    s.state = SubtaskState::Cancelled;
                    s.doing = None;
                }
            }
        }
        TaskEvent::Paused => {
            task.state = TaskState::Paused;
            for s in &mut task.subtasks {
                s.doing = None;
            }
        }
        TaskEvent::Resumed | TaskEvent::Recovered { .. } => task.state = TaskState::Running,
        TaskEvent::Finished { state, .. } => {
            task.state = *state;
            for s in &mut task.subtasks {
                s.doing = None;
                if matches!(s.state, SubtaskState::Pending | SubtaskState::Running) {
                    s.state = SubtaskState::Cancelled;
                }
            }
        }
        _ => {}
    }
}
