use serde_json::json;
use troupe::store::{PlannedSubtask, TaskKind};
use troupe::tools::RiskLevel;

use super::*;

const ID: &str = "t-000000000001";

fn entry(seq: u64, event: TaskEvent) -> TroupeEvent {
    TroupeEvent::Journal(JournalEntry {
        task_id: ID.into(),
        seq,
        time_ms: 1_000 * seq,
        event,
    })
}

fn planned(ids: &[&str]) -> TaskEvent {
    TaskEvent::Planned {
        subtasks: ids
            .iter()
            .map(|id| PlannedSubtask {
                id: (*id).into(),
                description: format!("do {id}"),
                kind: TaskKind::Code,
                complexity: 2,
                depends_on: Vec::new(),
                acceptance: "done".to_string(),
                tools: Vec::new(),
            })
            .collect(),
        model: "small".to_string(),
        reason: "the only one".to_string(),
    }
}

fn app_with_task() -> App {
    let mut app = App::new("terminal");
    app.apply(
        &entry(
            0,
            TaskEvent::Submitted {
                request: "write fib".to_string(),
            },
        ),
        0,
    );
    app.apply(&entry(1, planned(&["s1", "s2"])), 0);
    app
}

fn approval(id: &str) -> TroupeEvent {
    TroupeEvent::ApprovalPending {
        task_id: ID.into(),
        request: ApprovalRequest {
            id: id.to_string(),
            tool: "shell".to_string(),
            args: json!({"command": "python3 -m unittest"}),
            risk: RiskLevel::Execute,
        },
    }
}

fn states(app: &App) -> Vec<(String, SubtaskState)> {
    app.tasks[0]
        .subtasks
        .iter()
        .map(|s| (s.id.to_string(), s.state))
        .collect()
}

#[test]
fn journal_events_build_the_task_tree_and_its_states() {
    let mut app = app_with_task();
    assert_eq!(app.tasks.len(), 1);
    assert_eq!(app.tasks[0].request, "write fib");
    assert_eq!(app.tasks[0].state, TaskState::Running);
    assert_eq!(app.selected_task(), Some(0));
    app.apply(
        &entry(
            2,
            TaskEvent::SubtaskStarted {
                subtask: "s1".into(),
                attempt: 1,
                model: "small".to_string(),
                reason: String::new(),
            },
        ),
        0,
    );
    app.apply(
        &entry(
            3,
            TaskEvent::StepStarted {
                subtask: "s1".into(),
                attempt: 1,
                step: 1,
                thought: String::new(),
                tool: "write_file".to_string(),
                args: json!({"path": "fib.py"}),
                tokens: 40,
            },
        ),
        0,
    );
    assert_eq!(
        app.tasks[0].subtasks[0].doing.as_deref(),
        Some("step 1: write_file")
    );
    app.apply(
        &TroupeEvent::Progress {
            task_id: ID.into(),
            subtask: Some("s1".into()),
            text: "generating".to_string(),
            tokens: 40,
        },
        0,
    );
    assert_eq!(app.tasks[0].tokens, 40);
    assert_eq!(
        app.tasks[0].subtasks[0].doing.as_deref(),
        Some("generating")
    );
    app.apply(
        &entry(
            4,
            TaskEvent::SubtaskFinished {
                subtask: "s1".into(),
                attempt: 1,
                success: true,
                summary: "ok".to_string(),
                tokens: 40,
            },
        ),
        0,
    );
    assert_eq!(
        states(&app),
        vec![
            ("s1".to_string(), SubtaskState::Succeeded),
            ("s2".to_string(), SubtaskState::Pending)
        ]
    );
    app.apply(&entry(5, TaskEvent::Paused), 0);
    assert_eq!(app.tasks[0].state, TaskState::Paused);
    app.apply(&entry(6, TaskEvent::Resumed), 0);
    assert_eq!(app.tasks[0].state, TaskState::Running);
    app.apply(
        &entry(
            7,
            TaskEvent::Finished {
                state: TaskState::Cancelled,
                summary: "cancelled by the person".to_string(),
            },
        ),
        0,
    );
    assert_eq!(app.tasks[0].state, TaskState::Cancelled);
    // What never ran is shown as dropped, not as still waiting.
    assert_eq!(states(&app)[1].1, SubtaskState::Cancelled);
    let log: Vec<&str> = app.log.iter().map(|l| l.text.as_str()).collect();
    assert!(log[0].contains("submitted: write fib"), "{log:?}");
    assert!(log.iter().any(|l| l.ends_with("paused")), "{log:?}");
    assert!(
        log.last().unwrap().contains("finished cancelled"),
        "{log:?}"
    );
    assert_eq!(app.log[1].time_ms, 1_000);
}

#[test]
fn a_replan_drops_the_unfinished_subtasks_and_adds_the_new_ones() {
    let mut app = app_with_task();
    app.apply(
        &entry(
            2,
            TaskEvent::Replanning {
                reason: "s1 failed".to_string(),
            },
        ),
        0,
    );
    app.apply(&entry(3, planned(&["s3"])), 0);
    assert_eq!(
        states(&app),
        vec![
            ("s1".to_string(), SubtaskState::Cancelled),
            ("s2".to_string(), SubtaskState::Cancelled),
            ("s3".to_string(), SubtaskState::Pending)
        ]
    );
}

#[test]
fn task_keys_act_on_the_selected_task_only_when_the_tree_has_focus() {
    let mut app = app_with_task();
    // Typed into the input line, `p` is just a letter.
    assert_eq!(app.key(Key::Char('p')), None);
    assert_eq!(app.input, "p");
    app.key(Key::Tab);
    assert_eq!(app.focus, Focus::Tasks);
    assert_eq!(app.key(Key::Char('p')), Some(Action::Pause(ID.to_string())));
    assert_eq!(
        app.key(Key::Char('r')),
        Some(Action::Resume(ID.to_string()))
    );
    assert_eq!(
        app.key(Key::Char('c')),
        Some(Action::Cancel(ID.to_string()))
    );
    assert_eq!(app.key(Key::Quit), Some(Action::Quit));
}

#[test]
fn enter_sends_the_trimmed_input_and_clears_it() {
    let mut app = App::new("terminal");
    for c in " write fib ".chars() {
        app.key(Key::Char(c));
    }
    app.key(Key::Backspace);
    assert_eq!(
        app.key(Key::Enter),
        Some(Action::Say("write fib".to_string()))
    );
    assert!(app.input.is_empty());
    assert_eq!(app.conversation.last().unwrap().who, Speaker::You);
    // An empty line sends nothing.
    assert_eq!(app.key(Key::Enter), None);
}

#[test]
fn approvals_are_selected_decided_and_dropped_once_answered() {
    let mut app = app_with_task();
    app.apply(&approval("a-1"), 5);
    app.apply(&approval("a-2"), 6);
    // The same call announced twice is one call.
    app.apply(&approval("a-1"), 7);
    assert_eq!(app.approvals.len(), 2);
    assert_eq!(app.approvals[0].tool, "shell");
    assert!(app.approvals[0].args.contains("python3 -m unittest"));
    assert_eq!(app.selected_approval(), Some(0));
    app.key(Key::BackTab);
    assert_eq!(app.focus, Focus::Approvals);
    app.key(Key::Down);
    assert_eq!(
        app.key(Key::Char('d')),
        Some(Action::Decide {
            id: "a-2".to_string(),
            approved: false
        })
    );
    app.decided("a-2");
    assert_eq!(app.selected_approval(), Some(0));
    // From the task tree, `a` answers the selected call too.
    app.key(Key::BackTab);
    assert_eq!(
        app.key(Key::Char('a')),
        Some(Action::Decide {
            id: "a-1".to_string(),
            approved: true
        })
    );
    app.apply(
        &entry(
            2,
            TaskEvent::ApprovalDecided {
                request_id: "a-1".to_string(),
                approved: true,
                by: Some(troupe_store::Approver::Terminal),
            },
        ),
        0,
    );
    assert!(app.approvals.is_empty());
    assert_eq!(app.selected_approval(), None);
    assert_eq!(app.key(Key::Char('a')), None);
    assert_eq!(app.conversation.last().unwrap().who, Speaker::Note);
}

#[test]
fn ux_messages_of_other_conversations_are_not_shown() {
    let mut app = App::new("terminal");
    app.apply(
        &TroupeEvent::Ux {
            conversation: "http".to_string(),
            text: "not for us".to_string(),
        },
        0,
    );
    app.apply(
        &TroupeEvent::Ux {
            conversation: "terminal".to_string(),
            text: "Task t-1 succeeded".to_string(),
        },
        0,
    );
    assert_eq!(app.conversation.len(), 1);
    assert_eq!(app.conversation[0].text, "Task t-1 succeeded");
}

#[test]
fn the_conversation_scrolls_back_and_follows_again_on_new_lines() {
    let mut app = App::new("terminal");
    app.key(Key::PageUp);
    app.key(Key::Up);
    assert_eq!(app.scroll_back, 11);
    app.key(Key::PageDown);
    assert_eq!(app.scroll_back, 1);
    app.say(Speaker::Troupe, "hello");
    assert_eq!(app.scroll_back, 0);
}

#[test]
fn wrap_cuts_at_spaces_and_splits_long_words() {
    use super::super::ui::wrap;
    assert_eq!(wrap("you> say a job", 8), vec!["you> say", "a job"]);
    assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    assert_eq!(wrap("a\nb", 10), vec!["a", "b"]);
    assert_eq!(super::super::ui::clock(3_723_000), "01:02:03");
}

#[test]
fn the_view_draws_the_tree_approvals_and_host_and_survives_a_tiny_terminal() {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    let mut app = app_with_task();
    app.apply(&approval("a-1"), 0);
    app.set_host(HostView {
        budget: 4 << 30,
        used: 1 << 30,
        models: vec![ModelRow {
            name: "small".to_string(),
            bytes: 1 << 30,
            busy: 1,
            slots: 4,
            queued: 0,
            pinned: false,
        }],
        loading: Vec::new(),
        queued_loads: 0,
    });
    app.say(Speaker::You, &"a long line ".repeat(40));
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    terminal.draw(|f| super::super::ui::draw(f, &app)).unwrap();
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .chunks(160)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect();
    assert!(screen.contains(&format!("▶ {ID} running")), "{screen}");
    assert!(screen.contains("· s1 pending [code]"), "{screen}");
    assert!(screen.contains("Approvals: 1 waiting"), "{screen}");
    assert!(screen.contains("shell (execute) for"), "{screen}");
    assert!(
        screen.contains("memory 1.00 GiB of 4.00 GiB budget"),
        "{screen}"
    );
    assert!(screen.contains("25.0% of budget"), "{screen}");
    assert!(screen.contains("slots 1/4 busy"), "{screen}");
    for (w, h) in [(20, 6), (1, 1), (200, 3)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| super::super::ui::draw(f, &app)).unwrap();
    }
}
