//! The short prompt of a one-action subtask (the Director narrowed its
//! tools): a few lines of rules, only the tools it needs, and a worked
//! example as real chat turns, so that a small model (SmolLM2-135M has an
//! 8k context and copies what it sees) can follow the step format.
//!
//! The example is a job like the subtask's but different in every value,
//! answered the way the tools really answer: the model sees exactly what a
//! step and an observation look like, and that a job of one action ends
//! with `final` right after it.

use std::sync::Arc;
use troupe_config::TaskKind;

use serde_json::json;
use troupe_inference::chat::ChatMessage;
use troupe_tools::{render_tools, Tool};

/// The system message of a one-action subtask.
pub(crate) fn system_message(tools: &[Arc<dyn Tool>]) -> String {
    format!(
        "You do one small job in a workspace folder, with the tools below. \
         Paths are relative to the workspace.\n\n\
         Tools:\n{}\n\
         Each reply is one JSON object: either an action \
         {{\"thought\": ..., \"action\": {{\"tool\": ..., \"args\": {{...}}}}}} \
         or, once the job is done, {{\"thought\": ..., \"final\": ...}} saying what was done. \
         After an action you see what it returned. If it reports an error, try another way.",
        render_tools(tools)
    )
}

/// One worked example: a job, its steps as (reply, observation), and the
/// final answer.
struct Example {
    /// First words of the jobs it fits.
    verbs: &'static [&'static str],
    /// The tool its first step uses (it fits only when that is offered).
    tool: &'static str,
    job: &'static str,
    steps: &'static [(&'static str, &'static str, &'static str, &'static str)],
    done: (&'static str, &'static str),
}

/// `(thought, tool, args as JSON, observation)` per step.
const EXAMPLES: [Example; 9] = [
    Example {
        verbs: &["write", "create", "save", "put", "make"],
        tool: "write_file",
        job: "Write a file greeting.txt containing the text good morning",
        steps: &[(
            "Write the file with the text.",
            "write_file",
            r#"{"path": "greeting.txt", "content": "good morning"}"#,
            "created `greeting.txt` (12 bytes)",
        )],
        done: (
            "The file is written.",
            "Wrote greeting.txt containing: good morning",
        ),
    },
    Example {
        verbs: &["append", "add"],
        tool: "append_file",
        job: "Append the line 'milk' to shopping.txt",
        steps: &[(
            "Append the line.",
            "append_file",
            r#"{"path": "shopping.txt", "text": "milk"}"#,
            "appended 5 bytes to `shopping.txt`",
        )],
        done: (
            "The line is appended.",
            "Appended the line milk to shopping.txt.",
        ),
    },
    Example {
        verbs: &["rename", "move", "mv"],
        tool: "move_path",
        job: "Rename draft.md to final.md",
        steps: &[(
            "Rename it.",
            "move_path",
            r#"{"from": "draft.md", "to": "final.md"}"#,
            "moved `draft.md` to `final.md`",
        )],
        done: ("The file is renamed.", "Renamed draft.md to final.md."),
    },
    Example {
        verbs: &["copy", "duplicate", "cp"],
        tool: "copy_path",
        job: "Copy notes.md to notes-backup.md",
        steps: &[(
            "Copy it.",
            "copy_path",
            r#"{"from": "notes.md", "to": "notes-backup.md"}"#,
            "copied `notes.md` to `notes-backup.md` (120 bytes)",
        )],
        done: ("The copy is made.", "Copied notes.md to notes-backup.md."),
    },
    Example {
        verbs: &["delete", "remove", "rm"],
        tool: "delete_path",
        job: "Delete the file old.log",
        steps: &[(
            "Delete the file.",
            "delete_path",
            r#"{"path": "old.log"}"#,
            "deleted `old.log`",
        )],
        done: ("The file is gone.", "Deleted old.log."),
    },
    Example {
        verbs: &["run", "execute"],
        tool: "shell",
        job: "Run `date +%Y` and report its output",
        steps: &[(
            "Run the command.",
            "shell",
            r#"{"command": "date +%Y"}"#,
            "the command exited with code 0\n--- stdout ---\n2026\n",
        )],
        done: ("It printed the year.", "The command printed: 2026"),
    },
    Example {
        verbs: &["list", "count"],
        tool: "shell",
        job: "Count the lines of notes.md",
        steps: &[(
            "Count them with wc.",
            "shell",
            r#"{"command": "wc -l notes.md"}"#,
            "the command exited with code 0\n--- stdout ---\n3 notes.md\n",
        )],
        done: ("wc counted 3 lines.", "notes.md has 3 lines."),
    },
    Example {
        verbs: &["read", "show", "print", "cat"],
        tool: "read_file",
        job: "Show the contents of todo.txt",
        steps: &[(
            "Read the file.",
            "read_file",
            r#"{"path": "todo.txt"}"#,
            "buy bread\n",
        )],
        done: ("I have read it.", "todo.txt says: buy bread"),
    },
    Example {
        verbs: &["mkdir"],
        tool: "make_dir",
        job: "Make a directory called logs",
        steps: &[(
            "Make the folder.",
            "make_dir",
            r#"{"path": "logs"}"#,
            "made the folder `logs`",
        )],
        done: ("The directory exists.", "Made the directory logs."),
    },
];

/// A Python example for code subtasks: write, run, then answer.
const PYTHON_EXAMPLE: Example = Example {
    verbs: &[],
    tool: "write_file",
    job: "Write a Python script add.py that prints 2 plus 3",
    steps: &[
        (
            "Write the script.",
            "write_file",
            r#"{"path": "add.py", "content": "print(2 + 3)\n"}"#,
            "created `add.py` (13 bytes)",
        ),
        (
            "Run it to check.",
            "shell",
            r#"{"command": "python3 add.py"}"#,
            "the command exited with code 0\n--- stdout ---\n5\n",
        ),
    ],
    done: ("It prints 5.", "Wrote add.py; running it prints 5."),
};

/// The worked example for `description`, as chat turns: the example job,
/// then per step the reply and its observation, then the final answer.
/// Empty when no example fits the offered tools.
pub(crate) fn example_turns(
    description: &str,
    kind: TaskKind,
    tools: &[Arc<dyn Tool>],
) -> Vec<ChatMessage> {
    let offered = |name: &str| tools.iter().any(|t| t.name() == name);
    let lower = description.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let directory = words
        .iter()
        .any(|w| matches!(*w, "directory" | "folder" | "dir"));
    let verb = words
        .iter()
        .copied()
        .find(|w| !matches!(*w, "please" | "now"));
    let example = if kind == TaskKind::Code && offered("write_file") && offered("shell") {
        Some(&PYTHON_EXAMPLE)
    } else if directory && offered("make_dir") {
        EXAMPLES.iter().find(|e| e.verbs.contains(&"mkdir"))
    } else {
        verb.and_then(|verb| {
            EXAMPLES
                .iter()
                .find(|e| e.verbs.contains(&verb) && offered(e.tool))
        })
    };
    let Some(example) = example else {
        return Vec::new();
    };
    let mut turns = vec![ChatMessage::user(format!("The job: {}", example.job))];
    for (i, (thought, tool, args, observation)) in example.steps.iter().enumerate() {
        let args: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
        let reply = json!({ "thought": thought, "action": { "tool": tool, "args": args } });
        turns.push(ChatMessage::assistant(reply.to_string()));
        turns.push(ChatMessage::user(format!(
            "Observation of step {} ({tool}):\n{observation}",
            i + 1
        )));
    }
    let (thought, answer) = example.done;
    turns.push(ChatMessage::assistant(
        json!({ "thought": thought, "final": answer }).to_string(),
    ));
    turns
}

/// The first user message of a one-action subtask. The reminder to use the
/// job's own names keeps a small model from copying the example's (measured
/// on SmolLM2-135M: "Copy README.md to backup.md" went from 0 of 3 to 3 of 3).
pub(crate) fn task_message(description: &str) -> String {
    format!(
        "The job: {}\nUse the exact names and text the job gives.",
        description.trim()
    )
}

/// Tools whose output is what a job asked to see ("run `ls` and report its
/// output"): a one-action subtask's answer carries what the last of them
/// returned, so the person reads the real output, whatever the model wrote.
pub(crate) const REPORTING_TOOLS: [&str; 3] = ["shell", "read_file", "list_dir"];

/// Most bytes of that output carried in the answer.
pub(crate) const REPORT_MAX_BYTES: usize = 2000;
