//! What the model is shown and what it may answer: the chat of one step,
//! pruned to the model's context, the step's JSON Schema, and reading the
//! reply.

use serde_json::{json, Value};
use std::sync::Arc;
use troupe_config::TaskKind;
use troupe_inference::backend::FinishReason;
use troupe_inference::chat::ChatMessage;
use troupe_tools::observation::{truncate_with_note, utf8_prefix};

use troupe_tools::{action_schema_of, render_tools, RiskLevel, Tool, ToolRegistry};

use super::recovery::StepRecord;
use super::SubtaskJob;

/// The pseudo tool journaled for a reply that could not be used.
pub(crate) const INVALID_OUTPUT: &str = "invalid_output";

/// The pseudo tool journaled for a final answer that was not accepted.
pub(crate) const FINAL: &str = "final";

/// Most bytes of an unusable reply kept in the journal and the history.
const INVALID_OUTPUT_MAX_BYTES: usize = 2000;

/// Tokens a message costs beyond its text (role markers of the template).
const MESSAGE_OVERHEAD_TOKENS: usize = 8;

/// Tools that change files whatever their risk level says.
const FILE_CHANGING_TOOLS: [&str; 7] = [
    "write_file",
    "edit_file",
    "delete_path",
    "move_path",
    "copy_path",
    "append_file",
    "make_dir",
];

/// Tools that run the code a step wrote.
const RUN_TOOLS: [&str; 2] = ["shell", "python_run"];

/// Estimated tokens of `text`. Real tokenizers are not at hand (the model
/// may not even be loaded yet), and byte-level BPE vocabularies give 3 to 4
/// bytes a token for English and code, so bytes / 3 errs on the long side.
fn estimate_tokens(text: &str) -> usize {
    text.len() / 3 + MESSAGE_OVERHEAD_TOKENS
}

/// Longest thought of a narrowed (one-action) subtask's step, in
/// characters: a small model otherwise rambles until the step's limit.
const SHORT_THOUGHT_CHARS: u64 = 160;

fn thought_schema(short: bool) -> Value {
    if short {
        json!({ "type": "string", "maxLength": SHORT_THOUGHT_CHARS })
    } else {
        json!({ "type": "string" })
    }
}

/// The JSON Schema of a reply that must be an action on one of `tools`
/// (a one-action subtask's steps until one has acted: small models
/// otherwise answer `final` at once, copying the worked example).
pub(crate) fn action_schema(tools: &[Arc<dyn Tool>], short: bool) -> Value {
    json!({
        "type": "object",
        "properties": {
            "thought": thought_schema(short),
            "action": action_schema_of(tools),
        },
        "required": ["thought", "action"],
        "additionalProperties": false,
    })
}

/// The JSON Schema of a reply that must be the final answer.
pub(crate) fn final_schema(short: bool) -> Value {
    json!({
        "type": "object",
        "properties": {
            "thought": thought_schema(short),
            "final": { "type": "string" },
        },
        "required": ["thought", "final"],
        "additionalProperties": false,
    })
}

/// The JSON Schema a step's reply is constrained to: an action on one of
/// `tools`, or a final answer. `short` caps the thought's length.
pub(crate) fn step_schema(tools: &[Arc<dyn Tool>], short: bool) -> Value {
    json!({ "anyOf": [action_schema(tools, short), final_schema(short)] })
}

fn role_of(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Code => {
            "You are troupe's code specialist. You write and change code in the workspace \
             (under src/ unless the subtask says otherwise) and you test what you write: \
             after changing files, run the tests with `shell` or `python_run` and see them \
             pass before you give your final answer; a final answer given before that is \
             refused."
        }
        TaskKind::Research => {
            "You are troupe's research specialist. You find things out: search, fetch and \
             read sources, keep notes under research/, and say where each fact in your \
             final answer comes from."
        }
        TaskKind::General => {
            "You are troupe's general specialist. You do what the subtask asks (writing, \
             summarising, organising, working with files) and put what it delivers under \
             output/ when it is a file."
        }
    }
}

/// The system message: the specialist's role, the rules, the tools and the
/// reply format, with a worked example in real values (weak models copy
/// placeholders such as `<why this step>` verbatim).
pub(crate) fn system_message(kind: TaskKind, tools: &[Arc<dyn Tool>]) -> String {
    format!(
        "{role}\n\n\
         You work in the task's workspace, a directory holding src/, output/, research/ \
         and README.md, through the tools below, one action per reply; after each action \
         you are shown what it returned (its observation).\n\n\
         Rules:\n\
         - Paths are relative to the workspace.\n\
         - When an observation reports an error, read why and change your approach; do not \
           repeat a failing call unchanged.\n\
         - Keep thoughts to a sentence or two.\n\
         - Give the final answer only when the subtask is done; it is what the person and \
           the subtasks after this one will read, so make it complete.\n\n\
         Tools (name [risk]: description, then arguments):\n{tools}\n\
         Reply with exactly one JSON object and nothing else. For example, to act:\n\
         {{\"thought\": \"See what the workspace holds first.\", \"action\": {{\"tool\": \"list_dir\", \"args\": {{\"path\": \".\"}}}}}}\n\
         and when the subtask is done:\n\
         {{\"thought\": \"The tests pass.\", \"final\": \"src/fib.py defines fib(n); its three tests pass.\"}}",
        role = role_of(kind),
        tools = render_tools(tools),
    )
}

/// The first user message: the task, the subtask, how to tell it is done,
/// and what the subtasks it depends on produced.
pub(crate) fn task_message(job: &SubtaskJob) -> String {
    let sub = &job.subtask;
    let mut text = format!(
        "The task: {}\n\nYour subtask ({}): {}\nDone when: {}",
        job.request.trim(),
        sub.id,
        sub.description.trim(),
        sub.acceptance.trim()
    );
    if !job.dependencies.is_empty() {
        text.push_str("\n\nResults of the subtasks it builds on:");
        for (what, result) in &job.dependencies {
            text.push_str(&format!("\n- {what}\n  Result: {}", result.trim()));
        }
    }
    text
}

/// What the model wrote for a step, as the history shows it.
fn assistant_text(step: &StepRecord) -> String {
    match step.tool.as_str() {
        INVALID_OUTPUT => step
            .args
            .get("output")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        FINAL => json!({
            "thought": step.thought,
            "final": step.args.get("final").cloned().unwrap_or(Value::Null),
        })
        .to_string(),
        _ => json!({
            "thought": step.thought,
            "action": { "tool": step.tool, "args": step.args },
        })
        .to_string(),
    }
}

/// The user message showing a step's observation.
fn observation_message(step: u32, tool: &str, text: &str, is_error: bool) -> String {
    let marker = if is_error { " [error]" } else { "" };
    format!("Observation of step {step} ({tool}){marker}:\n{text}")
}

/// The chat of one step: system, the worked example's turns (if any),
/// task, then the history as assistant / observation turns, with the oldest
/// turns dropped to fit `budget_tokens`. The system message, the example,
/// the task and the last turn are always kept; dropped turns are named in
/// one note after the task.
pub(crate) fn assemble(
    system: &str,
    examples: &[ChatMessage],
    task: &str,
    history: &[StepRecord],
    budget_tokens: usize,
) -> Vec<ChatMessage> {
    let turns: Vec<(String, String)> = history
        .iter()
        .map(|s| {
            let obs = observation_message(s.step, &s.tool, s.observation_text(), s.is_error());
            (assistant_text(s), obs)
        })
        .collect();
    let cost = |t: &(String, String)| estimate_tokens(&t.0) + estimate_tokens(&t.1);
    let fixed = estimate_tokens(system)
        + estimate_tokens(task)
        + examples
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum::<usize>();
    let mut kept: usize = turns.iter().map(cost).sum();
    let mut first = 0;
    let mut note = String::new();
    while first + 1 < turns.len() && fixed + note.len() / 3 + kept > budget_tokens {
        kept -= cost(&turns[first]);
        first += 1;
        let tools: Vec<&str> = history[..first].iter().map(|s| s.tool.as_str()).collect();
        note = format!("\n\n({first} earlier steps omitted: {})", tools.join(", "));
    }
    let mut messages = Vec::with_capacity(2 + examples.len() + 2 * (turns.len() - first));
    messages.push(ChatMessage::system(system));
    messages.extend(examples.iter().cloned());
    messages.push(ChatMessage::user(format!("{task}{note}")));
    let last = turns.len().saturating_sub(1);
    for (i, (assistant, user)) in turns.into_iter().enumerate().skip(first) {
        messages.push(ChatMessage::assistant(assistant));
        let over = (fixed + note.len() / 3 + kept).saturating_sub(budget_tokens);
        if i == last && over > 0 {
            // Even alone the last turn is too long: cut its observation.
            let keep_bytes = user.len().saturating_sub(over * 3).max(200);
            let cut = truncate_with_note(&user, keep_bytes, user.len()).unwrap_or(user);
            messages.push(ChatMessage::user(cut));
        } else {
            messages.push(ChatMessage::user(user));
        }
    }
    messages
}

/// A step's reply, read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// Run a tool.
    Action {
        thought: String,
        tool: String,
        args: Value,
    },
    /// The answer.
    Final { thought: String, text: String },
    /// Unusable; `problem` says why, for the model.
    Invalid { output: String, problem: String },
}

/// Reads a step's output. The grammar makes it valid JSON of the right
/// shape unless generation was cut short, so anything else is reported
/// back to the model rather than trusted.
pub(crate) fn parse_reply(text: &str, finish: FinishReason) -> Reply {
    let invalid = |problem: String| {
        let problem = if finish == FinishReason::Length {
            format!(
                "{problem}; it was cut off at the step's token limit, so keep the thought short"
            )
        } else {
            problem
        };
        Reply::Invalid {
            output: utf8_prefix(text, INVALID_OUTPUT_MAX_BYTES).to_string(),
            problem,
        }
    };
    let value: Value = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(e) => return invalid(format!("your reply is not valid JSON ({e})")),
    };
    let Some(object) = value.as_object() else {
        return invalid("your reply is not a JSON object".to_string());
    };
    let thought = object
        .get("thought")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(text) = object.get("final") {
        return match text.as_str() {
            Some(text) => Reply::Final {
                thought,
                text: text.to_string(),
            },
            None => invalid("`final` must be a string".to_string()),
        };
    }
    let Some(action) = object.get("action").and_then(Value::as_object) else {
        return invalid("your reply has neither an `action` object nor a `final` answer".into());
    };
    let Some(tool) = action.get("tool").and_then(Value::as_str) else {
        return invalid("the action has no `tool` name".to_string());
    };
    Reply::Action {
        thought,
        tool: tool.to_string(),
        args: action.get("args").cloned().unwrap_or(Value::Null),
    }
}

/// Times in a row the same action may fail the same way before the attempt
/// stops: a model that repeats a failing call unchanged will not recover
/// by itself, and each repeat costs a whole step of tokens.
pub(crate) const SAME_FAILURE_LIMIT: usize = 3;

/// Why the attempt stops when its last [`SAME_FAILURE_LIMIT`] steps are the
/// same action (tool and arguments, or the same unusable reply) with the
/// same observation, either failing or changing files (writing the same
/// file with the same content again changes nothing). Other repeated
/// successes (listing, running a command) are left to the budgets.
pub(crate) fn repeated_failure(history: &[StepRecord]) -> Option<String> {
    let last = history.get(history.len().checked_sub(SAME_FAILURE_LIMIT)?..)?;
    let first = last.first()?;
    let failing = first.is_error();
    let rewriting = !failing && FILE_CHANGING_TOOLS.contains(&first.tool.as_str());
    let same = last.iter().all(|s| {
        s.is_error() == failing
            && s.tool == first.tool
            && s.args == first.args
            && s.observation_text() == first.observation_text()
    });
    if !same || !(failing || rewriting) {
        return None;
    }
    let what = if first.tool == INVALID_OUTPUT {
        "the same unusable reply was given".to_string()
    } else if rewriting {
        format!("`{}` made the same change", first.tool)
    } else {
        format!("`{}` with the same arguments failed", first.tool)
    };
    Some(format!(
        "{what} {SAME_FAILURE_LIMIT} times in a row (steps {}-{}): {}",
        first.step,
        first.step + SAME_FAILURE_LIMIT as u32 - 1,
        utf8_prefix(
            first.observation_text().lines().next().unwrap_or_default(),
            200
        )
    ))
}

/// The observation shown for an unusable reply.
pub(crate) fn invalid_observation(problem: &str) -> String {
    format!(
        "Your reply could not be used: {problem}. Reply with exactly one JSON object: \
         {{\"thought\": \"...\", \"action\": {{\"tool\": \"...\", \"args\": {{...}}}}}} \
         or {{\"thought\": \"...\", \"final\": \"...\"}}."
    )
}

/// For the code specialist: the last step that changed files, if no
/// `shell` or `python_run` call has succeeded since.
pub(crate) fn untested_change<'a>(
    history: &'a [StepRecord],
    tools: &ToolRegistry,
) -> Option<&'a StepRecord> {
    let mut untested = None;
    for step in history.iter().filter(|s| !s.is_error()) {
        let writes = FILE_CHANGING_TOOLS.contains(&step.tool.as_str())
            || tools
                .get(&step.tool)
                .is_some_and(|t| t.risk() == RiskLevel::Write);
        if writes {
            untested = Some(step);
        } else if RUN_TOOLS.contains(&step.tool.as_str()) {
            untested = None;
        }
    }
    untested
}

/// Whether `step` ran a tool that succeeded (not a refused answer or an
/// unusable reply).
pub(crate) fn acted(step: &StepRecord) -> bool {
    !step.is_error() && step.tool != FINAL && step.tool != INVALID_OUTPUT
}

/// The observation of a one-action subtask's action that repeats the one
/// `done` just did successfully (it is not run again).
pub(crate) fn already_done(done: &StepRecord) -> String {
    format!(
        "Not run: step {} did exactly this and it worked. The job is done: answer with          `final`, saying what was done and what it returned.",
        done.step
    )
}

/// The observation refusing the final answer of a one-action subtask that
/// has not acted yet.
pub(crate) fn act_first() -> String {
    "Not accepted: nothing has been done yet. Do the job with an action first; answer with      `final` after its observation shows it worked."
        .to_string()
}

/// The observation refusing a code final answer given before the tests ran.
pub(crate) fn run_tests_first(changed: &StepRecord) -> String {
    format!(
        "Not accepted: run your tests first. Step {} ({}) changed files and no `shell` or \
         `python_run` call has succeeded since. Run the tests, make sure they pass, then give \
         your final answer.",
        changed.step, changed.tool
    )
}

/// A step's observation text as the model sees it: at most `max_bytes`.
pub(crate) fn cut_observation(text: String, max_bytes: usize) -> String {
    truncate_with_note(&text, max_bytes, text.len()).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: u32, tool: &str, observation: &str) -> StepRecord {
        let mut s = StepRecord::started(n, "t".into(), tool.into(), json!({}), 1);
        s.observation = Some((observation.into(), false));
        s
    }

    fn failed(n: u32, tool: &str, args: Value, observation: &str) -> StepRecord {
        let mut s = StepRecord::started(n, "t".into(), tool.into(), args, 1);
        s.observation = Some((observation.into(), true));
        s
    }

    #[test]
    fn the_same_failure_three_times_in_a_row_stops_the_attempt() {
        let args = json!({ "path": "your_path_here" });
        let mut history = vec![
            step(1, "list_dir", "src/"),
            failed(2, "delete_path", args.clone(), "no such file"),
            failed(3, "delete_path", args.clone(), "no such file"),
        ];
        assert_eq!(repeated_failure(&history), None, "twice is not yet a loop");
        history.push(failed(4, "delete_path", args.clone(), "no such file"));
        let reason = repeated_failure(&history).expect("three times stops it");
        assert!(
            reason.contains("delete_path") && reason.contains("3 times"),
            "{reason}"
        );
        assert!(
            reason.contains("steps 2-4") && reason.contains("no such file"),
            "{reason}"
        );

        // Other arguments, another error, or a success in between: no loop.
        let other = json!({ "path": "a.txt" });
        for varied in [
            failed(4, "delete_path", other, "no such file"),
            failed(4, "delete_path", args.clone(), "permission denied"),
            step(4, "delete_path", "deleted"),
        ] {
            history[3] = varied;
            assert_eq!(repeated_failure(&history), None);
        }

        // Repeated successes are left to the budgets, but for the same
        // change to the files made again and again.
        let same_ok = vec![step(1, "list_dir", "src/"); 5];
        assert_eq!(repeated_failure(&same_ok), None);
        let mut rewrite = step(1, "write_file", "replaced `hello.py` (14 bytes)");
        rewrite.args = json!({ "path": "hello.py", "content": "Hello" });
        let rewrites = vec![rewrite; 3];
        let reason = repeated_failure(&rewrites).expect("the same write three times stops");
        assert!(reason.contains("same change"), "{reason}");

        // The same unusable reply, three times.
        let bad = json!({ "output": "done" });
        let invalid: Vec<StepRecord> = (1..=3)
            .map(|n| failed(n, INVALID_OUTPUT, bad.clone(), "not JSON"))
            .collect();
        let reason = repeated_failure(&invalid).expect("stops");
        assert!(reason.contains("unusable reply"), "{reason}");
    }

    #[test]
    fn old_turns_are_dropped_first_and_named_in_a_note() {
        let history: Vec<StepRecord> = (1..=6)
            .map(|n| {
                step(
                    n,
                    if n % 2 == 0 { "shell" } else { "read_file" },
                    &"x".repeat(3000),
                )
            })
            .collect();
        let messages = assemble("system", &[], "task", &history, 2500);
        assert!(messages[1]
            .content
            .contains("earlier steps omitted: read_file, shell"));
        let last = messages.last().expect("a last message");
        assert!(last.content.starts_with("Observation of step 6 (shell)"));
        assert!(messages.len() < 2 + 12);
    }

    #[test]
    fn nothing_is_dropped_when_it_fits() {
        let history = vec![step(1, "shell", "ok")];
        let messages = assemble("system", &[], "task", &history, 10_000);
        assert_eq!(messages.len(), 4);
        assert!(!messages[1].content.contains("omitted"));
    }

    #[test]
    fn a_reply_cut_short_is_reported_as_such() {
        let reply = parse_reply("{\"thought\": \"abc", FinishReason::Length);
        let Reply::Invalid { problem, .. } = reply else {
            panic!("expected an invalid reply, got {reply:?}");
        };
        assert!(problem.contains("cut off"));
    }
}
