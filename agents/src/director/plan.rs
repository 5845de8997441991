//! Planning: the prompt, the JSON schema the plan is generated under, and
//! the checks a plan must pass before any subtask runs (unique ids, known
//! dependencies, no cycles, a specialist for every subtask).

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{json, Value};
use troupe_config::{SpecialistConfig, TaskKind};
use troupe_inference::chat::ChatMessage;
use troupe_store::{PlannedSubtask, SubtaskId, SubtaskRecord, SubtaskState};

/// Most subtasks one plan may have.
pub const MAX_SUBTASKS: usize = 12;

/// The schema plans are generated under.
pub fn plan_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "subtasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SUBTASKS,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string", "minLength": 1, "maxLength": 16 },
                        "description": { "type": "string", "minLength": 1 },
                        "kind": { "enum": TaskKind::names() },
                        "complexity": { "type": "integer", "minimum": 1, "maximum": 10 },
                        "depends_on": { "type": "array", "items": { "type": "string" }, "maxItems": MAX_SUBTASKS },
                        "acceptance": { "type": "string" }
                    },
                    "required": ["id", "description", "kind", "complexity", "depends_on", "acceptance"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["subtasks"],
        "additionalProperties": false
    })
}

/// The marker the planning prompt starts with (scripts match on it).
pub const PLAN_MARKER: &str = "Plan the job below";

/// What introduces the past tasks recalled from memory in a planning prompt.
pub const PAST_MARKER: &str = "Similar past tasks, from memory";

/// The messages that ask for a plan. `history` says what an earlier plan
/// did and why it failed, for a re-plan; `past` holds similar past tasks
/// and lessons recalled from memory, best first.
pub fn plan_prompt(request: &str, history: Option<&str>, past: &[String]) -> Vec<ChatMessage> {
    let system = "You are the Director of troupe, a team of agents. You break a job into a \
        few subtasks, each done by one specialist: `general` (writing, reasoning), `code` \
        (writing and testing programs in a workspace with files, a shell, git and Python), or \
        `research` (finding and summarising information). Give each subtask an id (s1, s2, \
        ...), a self-contained description, its kind, a complexity from 1 (trivial) to 10 \
        (hardest), the ids it depends on, and one acceptance line saying how to tell it is \
        done. Prefer few subtasks; independent ones run in parallel. Answer with JSON only.";
    let mut user = format!("{PLAN_MARKER}.\n\nJob: {request}\n");
    if !past.is_empty() {
        user.push_str(&format!(
            "\n{PAST_MARKER} (reuse what worked, avoid what failed):\n"
        ));
        for memory in past {
            user.push_str("---\n");
            user.push_str(memory.trim());
            user.push('\n');
        }
        user.push_str("---\n");
    }
    if let Some(h) = history {
        user.push_str("\nAn earlier plan did not work out. What happened:\n");
        user.push_str(h);
        user.push_str("\nMake a new plan for what is left; do not repeat what succeeded.\n");
    }
    vec![ChatMessage::system(system), ChatMessage::user(user)]
}

/// The marker the answer prompt starts with.
pub const ANSWER_MARKER: &str = "Write the final answer";

/// The messages that ask for the final answer from the subtasks' results.
pub fn answer_prompt(request: &str, results: &[SubtaskRecord]) -> Vec<ChatMessage> {
    let system = "You are the Director of troupe. The job's subtasks are done. Write the \
        answer the person will read: what was done and the result, briefly.";
    let mut user = format!("{ANSWER_MARKER} for this job.\n\nJob: {request}\n\nResults:\n");
    for s in results {
        let result = s.result.as_deref().unwrap_or("(no result)");
        user.push_str(&format!(
            "- {} ({}): {}\n  → {}\n",
            s.id, s.kind, s.description, result
        ));
    }
    vec![ChatMessage::system(system), ChatMessage::user(user)]
}

#[derive(Deserialize)]
struct RawPlan {
    subtasks: Vec<PlannedSubtask>,
}

/// Parses and checks a plan, then renumbers its ids to continue after
/// `first_free` (ids are never reused across re-plans).
///
/// # Errors
/// A sentence saying what is wrong with it.
pub fn parse_plan(
    text: &str,
    specialists: &[SpecialistConfig],
    first_free: u32,
) -> Result<Vec<PlannedSubtask>, String> {
    let raw: RawPlan = serde_json::from_str(text.trim())
        .map_err(|e| format!("the plan is not valid JSON of the plan's shape: {e}"))?;
    let subtasks = raw.subtasks;
    if subtasks.is_empty() || subtasks.len() > MAX_SUBTASKS {
        return Err(format!(
            "a plan has 1 to {MAX_SUBTASKS} subtasks, not {}",
            subtasks.len()
        ));
    }
    let mut seen = HashSet::new();
    for s in &subtasks {
        if !seen.insert(s.id.as_str()) {
            return Err(format!("the id `{}` is used twice", s.id));
        }
        if !(1..=10).contains(&s.complexity) {
            return Err(format!(
                "{}: complexity {} is outside 1..=10",
                s.id, s.complexity
            ));
        }
        if !specialists.iter().any(|sp| sp.covers(s.kind, s.complexity)) {
            return Err(format!(
                "{}: no specialist takes {} subtasks of complexity {}",
                s.id, s.kind, s.complexity
            ));
        }
    }
    for s in &subtasks {
        for d in &s.depends_on {
            if !seen.contains(d.as_str()) {
                return Err(format!(
                    "{} depends on `{d}`, which is not in the plan",
                    s.id
                ));
            }
            if d == &s.id {
                return Err(format!("{} depends on itself", s.id));
            }
        }
    }
    check_acyclic(&subtasks)?;
    let renamed: HashMap<&str, String> = subtasks
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), format!("s{}", first_free + i as u32)))
        .collect();
    Ok(subtasks
        .iter()
        .map(|s| PlannedSubtask {
            id: renamed[s.id.as_str()].as_str().into(),
            depends_on: s
                .depends_on
                .iter()
                .map(|d| renamed[d.as_str()].as_str().into())
                .collect(),
            tools: Vec::new(),
            ..s.clone()
        })
        .collect())
}

fn check_acyclic(subtasks: &[PlannedSubtask]) -> Result<(), String> {
    let deps: HashMap<&str, &[SubtaskId]> = subtasks
        .iter()
        .map(|s| (s.id.as_str(), s.depends_on.as_slice()))
        .collect();
    let mut done: HashSet<&str> = HashSet::new();
    // Kahn's algorithm: repeatedly take subtasks whose dependencies are done.
    while done.len() < subtasks.len() {
        let ready: Vec<&str> = subtasks
            .iter()
            .map(|s| s.id.as_str())
            .filter(|id| !done.contains(id) && deps[id].iter().all(|d| done.contains(d.as_str())))
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = subtasks
                .iter()
                .map(|s| s.id.as_str())
                .filter(|id| !done.contains(id))
                .collect();
            return Err(format!(
                "the dependencies of {} form a cycle",
                stuck.join(", ")
            ));
        }
        done.extend(ready);
    }
    Ok(())
}

/// The records of a new plan's subtasks.
pub fn records(task_id: &str, plan: &[PlannedSubtask]) -> Vec<SubtaskRecord> {
    plan.iter()
        .map(|p| SubtaskRecord {
            task_id: task_id.into(),
            id: p.id.clone(),
            description: p.description.clone(),
            kind: p.kind,
            complexity: p.complexity,
            depends_on: p.depends_on.clone(),
            acceptance: p.acceptance.clone(),
            state: SubtaskState::Pending,
            attempts: 0,
            model: None,
            result: None,
            error: None,
            tokens: 0,
            tools: p.tools.clone(),
        })
        .collect()
}

/// The number after `s` in the highest subtask id, plus one.
pub fn next_free_id(existing: &[SubtaskRecord]) -> u32 {
    existing
        .iter()
        .filter_map(|s| s.id.strip_prefix('s').and_then(|n| n.parse::<u32>().ok()))
        .max()
        .map_or(1, |n| n + 1)
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

    #[test]
    fn a_plan_is_renumbered_and_checked() {
        let text = r#"{"subtasks":[
            {"id":"a","description":"write","kind":"code","complexity":3,"depends_on":[],"acceptance":"x"},
            {"id":"b","description":"test","kind":"code","complexity":2,"depends_on":["a"],"acceptance":"y"}]}"#;
        let plan = parse_plan(text, &specialists(), 4).unwrap();
        assert_eq!(plan[0].id, "s4");
        assert_eq!(plan[1].depends_on, ["s4"]);
    }

    #[test]
    fn bad_plans_say_what_is_wrong() {
        let cycle = r#"{"subtasks":[
            {"id":"a","description":"d","kind":"code","complexity":3,"depends_on":["b"],"acceptance":"x"},
            {"id":"b","description":"d","kind":"code","complexity":2,"depends_on":["a"],"acceptance":"y"}]}"#;
        assert!(parse_plan(cycle, &specialists(), 1)
            .unwrap_err()
            .contains("cycle"));
        let unknown = r#"{"subtasks":[{"id":"a","description":"d","kind":"code","complexity":3,"depends_on":["z"],"acceptance":"x"}]}"#;
        assert!(parse_plan(unknown, &specialists(), 1)
            .unwrap_err()
            .contains("`z`"));
        assert!(parse_plan("{\"subtasks\": [", &specialists(), 1)
            .unwrap_err()
            .contains("not valid JSON"));
        // A kind that is none of TaskKind's: the error names it.
        let odd = r#"{"subtasks":[{"id":"a","description":"d","kind":"poetry","complexity":3,"depends_on":[],"acceptance":"x"}]}"#;
        assert!(parse_plan(odd, &specialists(), 1)
            .unwrap_err()
            .contains("poetry"));
        let only_code = vec![SpecialistConfig::default_for(TaskKind::Code)];
        let research = r#"{"subtasks":[{"id":"a","description":"d","kind":"research","complexity":3,"depends_on":[],"acceptance":"x"}]}"#;
        assert!(parse_plan(research, &only_code, 1)
            .unwrap_err()
            .contains("no specialist"));
    }

    #[test]
    fn the_schema_compiles_to_a_grammar() {
        troupe_inference::schema::json_schema_to_gbnf(&plan_schema()).unwrap();
    }
}
