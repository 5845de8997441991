//! Commands (status, pause, resume, cancel, approve, deny, /run, /chat),
//! telling work from chat when no model decides, and the status text.

use troupe_store::TaskId;

use super::{Intent, UxReply};
use crate::runtime::{Control, TaskJournal};

#[derive(Debug, PartialEq)]
pub(super) enum Command {
    Help,
    Status,
    Steer(Control, String),
    Decide(bool, String, Option<String>),
    Work(String),
    Chat(String),
}

pub(super) fn parse_command(text: &str) -> Option<Command> {
    let t = text.trim();
    let t = t.strip_prefix('/').unwrap_or(t);
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    let arg = || rest.split_whitespace().next().unwrap_or("").to_string();
    let reason = || {
        rest.split_once(char::is_whitespace)
            .map(|(_, r)| r.trim().to_string())
            .filter(|r| !r.is_empty())
    };
    // `cancel the plan` is a sentence, `cancel t-1a2b` a command.
    let looks_like_id = !rest.is_empty() && !rest.contains(char::is_whitespace);
    Some(match word.to_ascii_lowercase().as_str() {
        "help" | "?" if rest.is_empty() => Command::Help,
        "status" | "tasks" if rest.is_empty() => Command::Status,
        "pause" if looks_like_id => Command::Steer(Control::Pause, arg()),
        "resume" if looks_like_id => Command::Steer(Control::Run, arg()),
        "cancel" if looks_like_id => Command::Steer(Control::Cancel, arg()),
        "approve" if !rest.is_empty() => Command::Decide(true, arg(), reason()),
        "deny" if !rest.is_empty() => Command::Decide(false, arg(), reason()),
        "run" | "task" | "do" if text.trim_start().starts_with('/') && !rest.is_empty() => {
            Command::Work(rest.to_string())
        }
        "chat" if text.trim_start().starts_with('/') && !rest.is_empty() => {
            Command::Chat(rest.to_string())
        }
        _ => return None,
    })
}

/// Verbs that open a request for work, when no model decides.
const WORK_VERBS: &[&str] = &[
    "write",
    "build",
    "create",
    "make",
    "implement",
    "research",
    "find",
    "fix",
    "analyze",
    "analyse",
    "summarize",
    "summarise",
    "generate",
    "refactor",
    "test",
    "add",
    "compute",
    "calculate",
    "draft",
    "translate",
    "convert",
    "compare",
    "plan",
    "design",
    "set",
    "install",
    "download",
    "collect",
    "investigate",
    "produce",
    "port",
    "update",
    "debug",
    "document",
];

/// Whether `text` asks for work, by its first verb (after "please", "can
/// you" and the like).
pub fn looks_like_work(text: &str) -> bool {
    let lower = text.trim().to_lowercase();
    let mut rest = lower.as_str();
    for prefix in [
        "please",
        "can you",
        "could you",
        "would you",
        "i need you to",
        "i want you to",
        "kindly",
    ] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r.trim_start_matches([',', ' ']);
        }
    }
    let first = rest
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("");
    WORK_VERBS.contains(&first)
}

pub(super) const HELP: &str = "Tell me a job in plain words and I plan and run it with the team \
(e.g. \"write a Python fibonacci function with tests\"). Commands: status, pause ID, \
resume ID, cancel ID, approve ID, deny ID [reason], /run JOB, /chat TEXT.";

pub(super) async fn resolve_task(journal: &TaskJournal, id: &str) -> Result<TaskId, String> {
    let tasks = journal.store().tasks().await.map_err(|e| e.to_string())?;
    let matches: Vec<&str> = tasks
        .iter()
        .map(|t| t.id.as_str())
        .filter(|t| t.starts_with(id))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).into()),
        [] => Err(format!("there is no task `{id}`")),
        _ => Err(format!(
            "`{id}` matches {} tasks; give more of the id",
            matches.len()
        )),
    }
}

pub(super) async fn status_text(journal: &TaskJournal) -> String {
    let tasks = match journal.store().tasks().await {
        Ok(t) => t,
        Err(e) => return e.to_string(),
    };
    if tasks.is_empty() {
        return "No tasks yet.".to_string();
    }
    let mut out = String::new();
    for t in tasks.iter().rev().take(10) {
        let subs = journal.store().subtasks(&t.id).await.unwrap_or_default();
        let done = subs
            .iter()
            .filter(|s| s.state == troupe_store::SubtaskState::Succeeded)
            .count();
        let live = subs
            .iter()
            .filter(|s| s.state != troupe_store::SubtaskState::Cancelled)
            .count();
        out.push_str(&format!(
            "{} {:<9} {done}/{live} subtasks  {}\n",
            t.id,
            t.state.as_str(),
            short(&t.request, 60)
        ));
    }
    out.trim_end().to_string()
}

pub(super) fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}

pub(super) fn command(text: String) -> UxReply {
    UxReply {
        intent: Intent::Command,
        text,
        task_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_parsed() {
        assert_eq!(parse_command("status"), Some(Command::Status));
        assert_eq!(
            parse_command("/pause t-abc"),
            Some(Command::Steer(Control::Pause, "t-abc".into()))
        );
        assert_eq!(
            parse_command("deny 1234 too risky"),
            Some(Command::Decide(
                false,
                "1234".into(),
                Some("too risky".into())
            ))
        );
        assert_eq!(
            parse_command("/run write a poem"),
            Some(Command::Work("write a poem".into()))
        );
        assert_eq!(parse_command("cancel the whole plan please"), None);
        assert_eq!(parse_command("how are you?"), None);
    }

    #[test]
    fn work_is_told_from_chat() {
        assert!(looks_like_work(
            "Write a Python fibonacci function with tests"
        ));
        assert!(looks_like_work("please, research the best HNSW crates"));
        assert!(looks_like_work("Can you fix the failing build?"));
        assert!(!looks_like_work("hello there"));
        assert!(!looks_like_work("what can you do?"));
    }
}
