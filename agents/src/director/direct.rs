//! One-action jobs: a job that asks for one plain thing to be done to the
//! workspace ("write a file hello.txt containing hello", "rename a.txt to
//! b.txt", "run `ls` and report its output") becomes one subtask with only
//! the tools that action needs, without a planning call.
//!
//! Why rules and not the planner: a plan costs a model call of a few
//! hundred tokens and a small model plans badly (SmolLM2-135M split "write
//! hello.txt" into three research subtasks), while such a job needs no
//! plan at all. The rules are deliberately narrow: one line, a known action
//! verb first, a concrete target (a file name, a quoted or back-quoted
//! text, a directory), and no word that chains steps. Anything else goes
//! to the planner as before. `[agents] direct = false` turns this off.

use troupe_config::{SpecialistConfig, TaskKind};
use troupe_store::PlannedSubtask;

/// Longest job, in words, taken as one action.
const MAX_WORDS: usize = 32;

/// Words that chain several steps: such a job is planned.
const CHAINING: [&str; 10] = [
    "then",
    "after",
    "afterwards",
    "finally",
    "next",
    "also",
    "first",
    "second",
    "steps",
    "before",
];

/// What an action verb needs.
struct Action {
    verbs: &'static [&'static str],
    /// The tools its worker is offered.
    tools: &'static [&'static str],
}

/// The actions, by their first word. The tools are what the action needs
/// plus a way to look (list or read) before acting.
const ACTIONS: [Action; 8] = [
    Action {
        verbs: &["write", "create", "save", "put", "make"],
        tools: &["write_file", "read_file", "list_dir"],
    },
    Action {
        verbs: &["append", "add"],
        tools: &["append_file", "read_file"],
    },
    Action {
        verbs: &["rename", "move", "mv"],
        tools: &["move_path", "list_dir"],
    },
    Action {
        verbs: &["copy", "duplicate", "cp"],
        tools: &["copy_path", "list_dir"],
    },
    Action {
        verbs: &["delete", "remove", "rm"],
        tools: &["delete_path", "list_dir"],
    },
    Action {
        verbs: &["run", "execute"],
        tools: &["shell"],
    },
    Action {
        verbs: &["list", "count"],
        tools: &["shell", "list_dir"],
    },
    Action {
        verbs: &["read", "show", "print", "cat"],
        tools: &["read_file", "list_dir"],
    },
];

/// Words that make a job about code, for the code specialist.
const CODE_WORDS: [&str; 8] = [
    "python", "script", "program", "function", "class", "module", "test", "tests",
];

/// The one subtask of `request` when it is a one-action job (see the module
/// documentation), numbered `s{first_free}`; `None` when it needs a plan.
pub(crate) fn triage(
    request: &str,
    specialists: &[SpecialistConfig],
    first_free: u32,
) -> Option<PlannedSubtask> {
    let request = request.trim();
    if request.is_empty() || request.contains('\n') || request.contains(';') {
        return None;
    }
    let words: Vec<String> = request
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    if words.len() > MAX_WORDS || words.iter().any(|w| CHAINING.contains(&w.as_str())) {
        return None;
    }
    let verb = words
        .iter()
        .find(|w| !matches!(w.as_str(), "please" | "now" | ""))?;
    let action = ACTIONS.iter().find(|a| a.verbs.contains(&verb.as_str()))?;
    let directory = words
        .iter()
        .any(|w| matches!(w.as_str(), "directory" | "folder" | "dir"));
    if !names_a_target(request) && !directory {
        return None;
    }
    let mut tools: Vec<String> = action.tools.iter().map(|t| (*t).to_string()).collect();
    // "make a directory" is `make_dir`, not a file.
    if directory && action.verbs.contains(&"make") {
        tools.insert(0, "make_dir".to_string());
    }
    let code = words.iter().any(|w| CODE_WORDS.contains(&w.as_str())) || request.contains(".py");
    if code {
        for tool in ["shell", "python_run"] {
            if !tools.iter().any(|t| t == tool) {
                tools.push(tool.to_string());
            }
        }
    }
    let covers = |kind: TaskKind| specialists.iter().any(|s| s.covers(kind, 1));
    let kind = match code {
        true if covers(TaskKind::Code) => TaskKind::Code,
        _ if covers(TaskKind::General) => TaskKind::General,
        _ => return None,
    };
    Some(PlannedSubtask {
        id: format!("s{first_free}").into(),
        description: request.to_string(),
        kind,
        complexity: 1,
        depends_on: Vec::new(),
        acceptance: "what the job asks for is done in the workspace".to_string(),
        tools,
    })
}

/// Whether `request` names something concrete to act on: a file name with
/// an extension, a path, or a quoted or back-quoted text.
fn names_a_target(request: &str) -> bool {
    let quoted = ['`', '"', '\'', '“', '«']
        .iter()
        .any(|q| request.matches(*q).count() >= 2 || (*q != '\'' && request.contains(*q)));
    quoted
        || request.split_whitespace().any(|word| {
            let word = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '/' && c != '.');
            let word = word.trim_end_matches('.');
            word.contains('/')
                || word.rsplit_once('.').is_some_and(|(stem, ext)| {
                    !stem.is_empty()
                        && (1..=5).contains(&ext.len())
                        && ext.chars().all(|c| c.is_ascii_alphanumeric())
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specialists() -> Vec<SpecialistConfig> {
        TaskKind::ALL
            .into_iter()
            .map(SpecialistConfig::default_for)
            .collect()
    }

    fn triaged(request: &str) -> Option<PlannedSubtask> {
        triage(request, &specialists(), 1)
    }

    #[test]
    fn one_action_jobs_become_one_subtask_with_their_tools() {
        let cases: [(&str, &str, &str); 8] = [
            (
                "Write a file hello.txt containing the word hello",
                "general",
                "write_file",
            ),
            (
                "Append the line 'done' to todo.txt",
                "general",
                "append_file",
            ),
            ("Rename README.md to NOTES.md", "general", "move_path"),
            ("Make a directory called build", "general", "make_dir"),
            ("Run `echo 42` and report its output", "general", "shell"),
            ("Delete the file README.md", "general", "delete_path"),
            ("Copy README.md to backup.md", "general", "copy_path"),
            (
                "Write a Python script hello.py that prints hello",
                "code",
                "python_run",
            ),
        ];
        for (request, kind, tool) in cases {
            let sub = triaged(request).unwrap_or_else(|| panic!("{request} is one action"));
            assert_eq!(sub.id, "s1");
            assert_eq!(sub.kind.as_str(), kind, "{request}");
            assert!(
                sub.tools.iter().any(|t| t == tool),
                "{request}: {:?}",
                sub.tools
            );
            assert_eq!(sub.description, request);
            assert_eq!(sub.complexity, 1);
        }
    }

    #[test]
    fn jobs_that_need_a_plan_are_left_to_the_planner() {
        for request in [
            "write a Python fibonacci function with tests",
            "greet",
            "plan something impossible",
            "write notes, part 3",
            "Write hello.txt, then rename it to bye.txt",
            "Research the history of Rust and write a summary in notes.md",
            "Create a.txt containing x; delete b.txt",
            "Write a file a.txt\nand another b.txt",
            "Find out who wrote notes.md",
        ] {
            assert_eq!(triaged(request), None, "{request}");
        }
    }

    #[test]
    fn a_job_no_configured_specialist_takes_is_planned() {
        let research_only = vec![SpecialistConfig::default_for(TaskKind::Research)];
        assert_eq!(
            triage("Write hello.txt containing hi", &research_only, 1),
            None
        );
    }
}
