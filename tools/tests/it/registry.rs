//! The registry: validation, approval, prompt rendering, ask_user, and the
//! built-in set.

use crate::common;

use serde_json::json;
use std::sync::Arc;
use troupe_tools::ask_user::{AskUser, MpscUserChannel};
use troupe_tools::files::{ReadFile, WriteFile};
use troupe_tools::shell::{RunSettings, ShellTool};
use troupe_tools::{
    builtin_registry, ApprovalPolicy, Builtins, Observation, Policy, RiskLevel, Tool, ToolContext,
    ToolError, ToolOutcome, ToolRegistry,
};

fn shell() -> Arc<dyn Tool> {
    Arc::new(ShellTool::new(RunSettings::from_config(
        &troupe_config::ToolsConfig::default(),
    )))
}

fn with_policy(policy: ApprovalPolicy) -> ToolRegistry {
    let mut r = ToolRegistry::new(policy, 4096);
    r.register(Arc::new(ReadFile)).unwrap();
    r.register(Arc::new(WriteFile)).unwrap();
    r.register(shell()).unwrap();
    r
}

#[tokio::test]
async fn bad_arguments_are_observations_that_name_the_argument() {
    let (_d, ws) = common::workspace("args");
    let r = with_policy(ApprovalPolicy::uniform(Policy::Allow));
    let obs = common::call(&r, &ws, "read_file", json!({})).await;
    assert!(obs.is_error);
    assert_eq!(
        obs.text,
        "invalid arguments for `read_file`: `path` is required"
    );

    let obs = common::call(
        &r,
        &ws,
        "shell",
        json!({ "command": "true", "timeout_s": "soon" }),
    )
    .await;
    assert!(
        obs.text
            .contains("`timeout_s` must be an integer, not a string"),
        "{}",
        obs.text
    );

    let obs = common::call(
        &r,
        &ws,
        "read_file",
        json!({ "path": "a", "start_line": 0, "colour": 1 }),
    )
    .await;
    assert!(
        obs.text.contains("`start_line` must be at least 1"),
        "{}",
        obs.text
    );
    assert!(
        obs.text
            .contains("`colour` is not an argument of this tool"),
        "{}",
        obs.text
    );
    assert_eq!(obs.data["problems"].as_array().unwrap().len(), 2);

    let obs = common::call(&r, &ws, "fly", json!({})).await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("no tool named `fly`") && obs.text.contains("read_file"),
        "{}",
        obs.text
    );
}

#[tokio::test]
async fn a_denied_tool_is_an_observation_and_does_not_run() {
    let (_d, ws) = common::workspace("deny");
    let policy = ApprovalPolicy::uniform(Policy::Allow).with_risk(RiskLevel::Write, Policy::Deny);
    let r = with_policy(policy);
    let obs = common::call(
        &r,
        &ws,
        "write_file",
        json!({ "path": "x.txt", "content": "x" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("write tools are not allowed"),
        "{}",
        obs.text
    );
    assert_eq!(obs.data["denied"], true);
    assert!(!ws.root().join("x.txt").exists());

    // A per-tool override wins over the risk level.
    let policy = ApprovalPolicy::uniform(Policy::Allow).with_tool("shell", Policy::Deny);
    let r = with_policy(policy);
    let obs = common::call(&r, &ws, "shell", json!({ "command": "touch ran" })).await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("[approval.tools] shell = \"deny\""),
        "{}",
        obs.text
    );
    assert!(!ws.root().join("ran").exists());
    let obs = common::call(&r, &ws, "read_file", json!({ "path": "README.md" })).await;
    assert!(!obs.is_error);
}

#[tokio::test]
async fn ask_waits_for_approval_and_runs_only_once_approved() {
    let (_d, ws) = common::workspace("ask");
    let ctx = ToolContext::new(ws.clone());
    let r = with_policy(ApprovalPolicy::default());
    // Defaults: reads and writes run, execution asks.
    let ToolOutcome::NeedsApproval(req) = r
        .call(&ctx, "shell", json!({ "command": "echo hi > said.txt" }))
        .await
        .unwrap()
    else {
        panic!("shell should need approval by default");
    };
    assert_eq!(req.tool, "shell");
    assert_eq!(req.risk, RiskLevel::Execute);
    assert!(req.question().contains("echo hi"));
    assert!(!ws.root().join("said.txt").exists());

    let obs = r.call_approved(&ctx, &req).await.unwrap();
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(
        std::fs::read_to_string(ws.root().join("said.txt")).unwrap(),
        "hi\n"
    );

    // An approval is good for one call only.
    assert!(matches!(
        r.call_approved(&ctx, &req).await,
        Err(ToolError::UnknownApproval { .. })
    ));

    // A request whose arguments were changed after it was issued is refused.
    let ToolOutcome::NeedsApproval(mut req) = r
        .call(&ctx, "shell", json!({ "command": "true" }))
        .await
        .unwrap()
    else {
        panic!("expected an approval request");
    };
    req.args = json!({ "command": "rm -rf ." });
    assert!(matches!(
        r.call_approved(&ctx, &req).await,
        Err(ToolError::UnknownApproval { .. })
    ));

    // A "no" from the person is an observation for the model.
    let ToolOutcome::NeedsApproval(req) = r
        .call(&ctx, "shell", json!({ "command": "true" }))
        .await
        .unwrap()
    else {
        panic!("expected an approval request");
    };
    let obs: Observation = r.rejected(&req, Some("not now"));
    assert!(obs.is_error);
    assert!(
        obs.text
            .contains("did not approve calling `shell`: not now"),
        "{}",
        obs.text
    );
    assert!(matches!(
        r.call_approved(&ctx, &req).await,
        Err(ToolError::UnknownApproval { .. })
    ));
}

#[test]
fn the_prompt_lists_each_tool_with_its_arguments() {
    let r = with_policy(ApprovalPolicy::default());
    let text = r.render_for_prompt();
    assert!(
        text.contains("- read_file [read]: Reads a UTF-8 text file"),
        "{text}"
    );
    assert!(
        text.contains("    - path (string, required): File path relative to the workspace."),
        "{text}"
    );
    assert!(
        text.contains("    - timeout_s (integer, optional)"),
        "{text}"
    );
    assert!(text.contains("- shell [execute]"), "{text}");
    let schema = r.action_schema();
    let branches = schema["anyOf"].as_array().unwrap();
    assert_eq!(branches.len(), 3);
    assert_eq!(branches[0]["properties"]["tool"]["enum"][0], "read_file");
    assert_eq!(branches[0]["properties"]["args"]["required"][0], "path");
}

#[test]
fn duplicate_names_are_refused() {
    let mut r = ToolRegistry::new(ApprovalPolicy::default(), 100);
    r.register(Arc::new(ReadFile)).unwrap();
    assert!(r.register(Arc::new(ReadFile)).is_err());
}

#[tokio::test]
async fn ask_user_reaches_the_person_and_brings_back_the_answer() {
    let (_d, ws) = common::workspace("ask-user");
    let (channel, mut questions) = MpscUserChannel::pair(4);
    let r = common::registry(vec![Arc::new(AskUser::new(Arc::new(channel)))], 4096);
    let person = tokio::spawn(async move {
        let q = questions.recv().await.unwrap();
        assert_eq!(q.question.task_id, "ask-user");
        assert_eq!(q.question.choices, vec!["csv", "json"]);
        let text = q.question.text.clone();
        assert!(q.answer("json, please"));
        text
    });
    let obs = common::call(
        &r,
        &ws,
        "ask_user",
        json!({ "question": "Which format?", "choices": ["csv", "json"] }),
    )
    .await;
    assert_eq!(person.await.unwrap(), "Which format?");
    assert!(!obs.is_error);
    assert_eq!(obs.text, "the person answered: json, please");
    assert_eq!(obs.data["answer"], "json, please");
}

#[tokio::test]
async fn ask_user_without_anyone_listening_says_so() {
    let (_d, ws) = common::workspace("ask-none");
    let (channel, questions) = MpscUserChannel::pair(1);
    drop(questions);
    let r = common::registry(vec![Arc::new(AskUser::new(Arc::new(channel)))], 4096);
    let obs = common::call(&r, &ws, "ask_user", json!({ "question": "Anyone?" })).await;
    assert!(obs.is_error);
    assert!(obs.text.contains("no one is available"), "{}", obs.text);
}

#[test]
fn the_builtin_set_follows_the_configuration() {
    let mut tools = troupe_config::ToolsConfig::default();
    let approval = troupe_config::ApprovalConfig::default();
    let r = builtin_registry(Builtins {
        tools: &tools,
        approval: &approval,
        user: None,
        memory: None,
    })
    .unwrap();
    let names = r.names();
    for n in [
        "read_file",
        "write_file",
        "edit_file",
        "list_dir",
        "glob",
        "grep",
        "delete_path",
        "move_path",
        "copy_path",
        "append_file",
        "make_dir",
        "shell",
        "git_status",
        "git_diff",
        "git_log",
        "git_commit",
        "python_venv",
        "python_install",
        "python_run",
        "http_get",
        "http_post",
        "web_search",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!names.contains(&"git_push"), "no remote configured");
    assert!(!names.contains(&"ask_user"), "no user channel");

    tools.git.remote = Some("/srv/x.git".to_string());
    tools.search.provider = troupe_config::tools::SearchProviderKind::None;
    let (channel, _rx) = MpscUserChannel::pair(1);
    let r = builtin_registry(Builtins {
        tools: &tools,
        approval: &approval,
        user: Some(Arc::new(channel)),
        memory: None,
    })
    .unwrap();
    let names = r.names();
    for n in ["git_clone", "git_pull", "git_push", "ask_user"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!names.contains(&"web_search"));
    // Every built-in schema is a closed object schema, as constrained decoding expects.
    for t in r.tools() {
        assert_eq!(t.schema()["type"], "object", "{}", t.name());
        assert_eq!(t.schema()["additionalProperties"], false, "{}", t.name());
    }
}
