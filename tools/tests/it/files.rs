//! The file tools: normal use and failure modes, as the model sees them.

use crate::common;

use serde_json::json;
use std::sync::Arc;
use troupe_tools::files::{DeletePath, EditFile, ReadFile, WriteFile};
use troupe_tools::files_search::{Glob, Grep, ListDir};
use troupe_tools::{Tool, ToolRegistry};

fn file_tools(max_bytes: usize) -> ToolRegistry {
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(ReadFile),
        Arc::new(WriteFile),
        Arc::new(EditFile),
        Arc::new(ListDir),
        Arc::new(Glob),
        Arc::new(Grep),
        Arc::new(DeletePath),
    ];
    common::registry(tools, max_bytes)
}

#[tokio::test]
async fn write_then_read_whole_and_by_line_range() {
    let (_d, ws) = common::workspace("rw");
    let r = file_tools(4096);
    let obs = common::call(
        &r,
        &ws,
        "write_file",
        json!({ "path": "src/pkg/a.txt", "content": "one\ntwo\nthree\nfour\n" }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(obs.data["created"], true);
    assert_eq!(
        std::fs::read_to_string(ws.root().join("src/pkg/a.txt")).unwrap(),
        "one\ntwo\nthree\nfour\n"
    );

    let obs = common::call(&r, &ws, "read_file", json!({ "path": "src/pkg/a.txt" })).await;
    assert_eq!(obs.text, "one\ntwo\nthree\nfour\n");
    assert_eq!(obs.data["total_lines"], 4);

    let obs = common::call(
        &r,
        &ws,
        "read_file",
        json!({ "path": "src/pkg/a.txt", "start_line": 2, "end_line": 3 }),
    )
    .await;
    assert_eq!(obs.text, "[src/pkg/a.txt: lines 2-3 of 4]\ntwo\nthree\n");

    let obs = common::call(
        &r,
        &ws,
        "read_file",
        json!({ "path": "src/pkg/a.txt", "start_line": 9 }),
    )
    .await;
    assert!(obs.is_error);
    assert!(obs.text.contains("has 4 lines"), "{}", obs.text);
}

#[tokio::test]
async fn reading_what_is_not_a_text_file_says_why() {
    let (_d, ws) = common::workspace("read-fail");
    let r = file_tools(4096);
    let obs = common::call(&r, &ws, "read_file", json!({ "path": "nope.txt" })).await;
    assert!(obs.is_error);
    assert_eq!(obs.text, "the file `nope.txt` does not exist");

    let obs = common::call(&r, &ws, "read_file", json!({ "path": "src" })).await;
    assert!(obs.is_error);
    assert!(obs.text.contains("is a directory"), "{}", obs.text);

    std::fs::write(ws.root().join("blob.bin"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let obs = common::call(&r, &ws, "read_file", json!({ "path": "blob.bin" })).await;
    assert!(obs.is_error);
    assert!(obs.text.contains("not UTF-8"), "{}", obs.text);
}

#[tokio::test]
async fn oversized_output_is_cut_with_a_note() {
    let (_d, ws) = common::workspace("big");
    let r = file_tools(1000);
    let line = "é".repeat(50) + "\n"; // 101 bytes, two-byte characters
    std::fs::write(ws.root().join("big.txt"), line.repeat(100)).unwrap();
    let obs = common::call(&r, &ws, "read_file", json!({ "path": "big.txt" })).await;
    assert!(obs.truncated);
    assert!(!obs.is_error);
    // Byte 1000 falls inside a character, so the cut is one byte earlier.
    assert!(
        obs.text
            .ends_with("\n[output truncated: 999 of 10100 bytes shown]"),
        "{}",
        &obs.text[900..]
    );
    assert!(obs.text.len() < 1100);
}

#[tokio::test]
async fn edit_replaces_exactly_one_occurrence_or_explains() {
    let (_d, ws) = common::workspace("edit");
    let r = file_tools(4096);
    let path = ws.root().join("src/lib.py");
    std::fs::write(&path, "x = 1\ny = 2\nx = 1\n").unwrap();

    let obs = common::call(
        &r,
        &ws,
        "edit_file",
        json!({ "path": "src/lib.py", "search": "y = 2", "replace": "y = 3" }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(obs.data["line"], 2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "x = 1\ny = 3\nx = 1\n"
    );

    let obs = common::call(
        &r,
        &ws,
        "edit_file",
        json!({ "path": "src/lib.py", "search": "x = 1", "replace": "x = 5" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("occurs 2 times") && obs.text.contains("lines 1, 3"),
        "{}",
        obs.text
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "x = 1\ny = 3\nx = 1\n"
    );

    let obs = common::call(
        &r,
        &ws,
        "edit_file",
        json!({ "path": "src/lib.py", "search": "z = 0", "replace": "" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(obs.text.contains("not found"), "{}", obs.text);

    let obs = common::call(
        &r,
        &ws,
        "edit_file",
        json!({ "path": "src/lib.py", "search": "x = 1", "replace": "x = 5", "replace_all": true }),
    )
    .await;
    assert!(!obs.is_error);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "x = 5\ny = 3\nx = 5\n"
    );

    let obs = common::call(
        &r,
        &ws,
        "edit_file",
        json!({ "path": "missing.py", "search": "a", "replace": "b" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(obs.text.contains("does not exist"));
}

#[tokio::test]
async fn list_glob_and_grep_find_files_and_lines() {
    let (_d, ws) = common::workspace("find");
    let r = file_tools(8192);
    let root = ws.root();
    std::fs::create_dir_all(root.join("src/deep")).unwrap();
    std::fs::write(root.join("src/a.py"), "import os\nprint('hello')\n").unwrap();
    std::fs::write(root.join("src/deep/b.py"), "HELLO = 1\n").unwrap();
    std::fs::write(root.join("src/c.txt"), "hello text\n").unwrap();

    let obs = common::call(&r, &ws, "list_dir", json!({})).await;
    assert!(
        obs.text.contains("src/") && obs.text.contains("README.md ("),
        "{}",
        obs.text
    );
    assert!(!obs.text.contains(".git/"), "{}", obs.text);

    let obs = common::call(&r, &ws, "glob", json!({ "pattern": "src/**/*.py" })).await;
    assert_eq!(obs.text, "src/a.py\nsrc/deep/b.py");
    let obs = common::call(&r, &ws, "glob", json!({ "pattern": "src/*.py" })).await;
    assert_eq!(obs.text, "src/a.py");
    let obs = common::call(&r, &ws, "glob", json!({ "pattern": "**/*.rs" })).await;
    assert!(obs.text.starts_with("no files match"));

    let obs = common::call(
        &r,
        &ws,
        "grep",
        json!({ "pattern": "hello", "path": "src" }),
    )
    .await;
    assert_eq!(
        obs.text,
        "src/a.py:2: print('hello')\nsrc/c.txt:1: hello text"
    );
    let obs = common::call(
        &r,
        &ws,
        "grep",
        json!({ "pattern": "hello", "ignore_case": true, "glob": "**/*.py" }),
    )
    .await;
    assert_eq!(
        obs.text,
        "src/a.py:2: print('hello')\nsrc/deep/b.py:1: HELLO = 1"
    );

    let obs = common::call(&r, &ws, "grep", json!({ "pattern": "(unclosed" })).await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("not a valid regular expression"),
        "{}",
        obs.text
    );
    let obs = common::call(&r, &ws, "list_dir", json!({ "path": "nowhere" })).await;
    assert!(obs.is_error);
}

#[tokio::test]
async fn delete_removes_files_and_folders_only_when_told() {
    let (_d, ws) = common::workspace("delete");
    let r = file_tools(4096);
    let root = ws.root();
    std::fs::create_dir_all(root.join("output/sub")).unwrap();
    std::fs::write(root.join("output/sub/f.txt"), "x").unwrap();

    let obs = common::call(&r, &ws, "delete_path", json!({ "path": "output/sub" })).await;
    assert!(obs.is_error);
    assert!(obs.text.contains("set recursive"), "{}", obs.text);
    assert!(root.join("output/sub/f.txt").exists());

    let obs = common::call(
        &r,
        &ws,
        "delete_path",
        json!({ "path": "output/sub/f.txt" }),
    )
    .await;
    assert!(!obs.is_error);
    assert!(!root.join("output/sub/f.txt").exists());
    let obs = common::call(
        &r,
        &ws,
        "delete_path",
        json!({ "path": "output", "recursive": true }),
    )
    .await;
    assert!(!obs.is_error);
    assert!(!root.join("output").exists());

    let obs = common::call(&r, &ws, "delete_path", json!({ "path": "output" })).await;
    assert!(obs.is_error);
    assert!(obs.text.contains("does not exist"));
    let obs = common::call(
        &r,
        &ws,
        "delete_path",
        json!({ "path": ".", "recursive": true }),
    )
    .await;
    assert!(obs.is_error);
    assert!(root.join("README.md").exists());
}
