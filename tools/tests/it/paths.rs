//! `move_path`, `copy_path`, `append_file` and `make_dir`: what they change,
//! what they refuse, and that they stay inside the workspace.

use crate::common;

use serde_json::json;
use std::sync::Arc;
use troupe_tools::paths::{AppendFile, CopyPath, MakeDir, MovePath};
use troupe_tools::ToolRegistry;

fn tools() -> ToolRegistry {
    common::registry(
        vec![
            Arc::new(MovePath),
            Arc::new(CopyPath),
            Arc::new(AppendFile),
            Arc::new(MakeDir),
        ],
        8192,
    )
}

#[tokio::test]
async fn move_copy_append_and_make_dir_do_what_they_say() {
    let (_d, ws) = common::workspace("paths");
    let r = tools();
    let root = ws.root().to_path_buf();

    let obs = common::call(
        &r,
        &ws,
        "move_path",
        json!({"from": "README.md", "to": "docs/NOTES.md"}),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(obs.text, "moved `README.md` to `docs/NOTES.md`");
    assert!(!root.join("README.md").exists() && root.join("docs/NOTES.md").is_file());

    let obs = common::call(
        &r,
        &ws,
        "copy_path",
        json!({"from": "docs/NOTES.md", "to": "backup.md"}),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(
        std::fs::read(root.join("backup.md")).unwrap(),
        std::fs::read(root.join("docs/NOTES.md")).unwrap()
    );

    std::fs::write(root.join("todo.txt"), "first").unwrap();
    let obs = common::call(
        &r,
        &ws,
        "append_file",
        json!({"path": "todo.txt", "text": "done"}),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    let obs = common::call(
        &r,
        &ws,
        "append_file",
        json!({"path": "new.txt", "text": "one\n"}),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(
        std::fs::read_to_string(root.join("todo.txt")).unwrap(),
        "first\ndone\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("new.txt")).unwrap(),
        "one\n"
    );

    let obs = common::call(&r, &ws, "make_dir", json!({"path": "build/out"})).await;
    assert_eq!(obs.text, "made the folder `build/out`");
    assert!(root.join("build/out").is_dir());
    // Kept by git, so a checkpoint and a restore keep the folder.
    assert!(root.join("build/out/.gitkeep").is_file());
    let obs = common::call(&r, &ws, "make_dir", json!({"path": "build/out"})).await;
    assert!(
        !obs.is_error && obs.text.contains("already exists"),
        "{}",
        obs.text
    );
}

#[tokio::test]
async fn they_refuse_what_would_lose_data_or_leave_the_workspace() {
    let (_d, ws) = common::workspace("paths-refused");
    let r = tools();
    let root = ws.root().to_path_buf();
    std::fs::write(root.join("a.txt"), "a").unwrap();
    std::fs::write(root.join("b.txt"), "b").unwrap();
    let refused = [
        (
            "move_path",
            json!({"from": "a.txt", "to": "b.txt"}),
            "already exists",
        ),
        (
            "move_path",
            json!({"from": "missing.txt", "to": "c.txt"}),
            "does not exist",
        ),
        (
            "move_path",
            json!({"from": "src", "to": "src/inner"}),
            "into itself",
        ),
        (
            "move_path",
            json!({"from": ".git", "to": "git-copy"}),
            ".git",
        ),
        (
            "move_path",
            json!({"from": "a.txt", "to": ".git/a.txt"}),
            ".git",
        ),
        (
            "move_path",
            json!({"from": "a.txt", "to": "../outside.txt"}),
            "outside",
        ),
        (
            "copy_path",
            json!({"from": "src", "to": "src2"}),
            "not a file",
        ),
        (
            "copy_path",
            json!({"from": "/etc/passwd", "to": "p.txt"}),
            "outside",
        ),
        (
            "append_file",
            json!({"path": "src", "text": "x"}),
            "directory",
        ),
        ("make_dir", json!({"path": "a.txt"}), "not a folder"),
        ("make_dir", json!({"path": "../escape"}), "outside"),
    ];
    for (tool, args, needle) in refused {
        let obs = common::call(&r, &ws, tool, args.clone()).await;
        assert!(obs.is_error, "{tool} {args} was not refused: {}", obs.text);
        assert!(
            obs.text.to_lowercase().contains(needle),
            "{tool} {args}: {}",
            obs.text
        );
    }
    assert_eq!(std::fs::read_to_string(root.join("b.txt")).unwrap(), "b");
    assert!(!root.parent().unwrap().join("outside.txt").exists());
    assert!(!root.parent().unwrap().join("escape").exists());
}
