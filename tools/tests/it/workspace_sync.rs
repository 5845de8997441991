//! Moving workspace files between two workspaces: a snapshot seeds a copy,
//! a step's changes come back, and paths that would escape are refused.

use troupe_tools::{FileChange, Workspace, WorkspaceError};

#[test]
fn a_copy_seeded_from_a_snapshot_sends_back_its_changes() {
    let owner_dir = tempfile::tempdir().unwrap();
    let peer_dir = tempfile::tempdir().unwrap();
    let owner = Workspace::create(owner_dir.path(), "t1").unwrap();
    std::fs::write(owner.root().join("src/old.py"), "print('old')\n").unwrap();
    std::fs::write(owner.root().join("src/gone.txt"), "bye\n").unwrap();
    let base = owner.checkpoint("owner work").unwrap();

    // The peer's copy: exactly the owner's files.
    let peer = Workspace::create(peer_dir.path(), "t1").unwrap();
    std::fs::write(peer.root().join("stray.txt"), "not the owner's").unwrap();
    peer.checkpoint("stray").unwrap();
    let files = owner.snapshot(&base).unwrap();
    // The change survives the wire.
    let files: Vec<FileChange> =
        serde_json::from_str(&serde_json::to_string(&files).unwrap()).unwrap();
    peer.apply(&files, true).unwrap();
    let synced = peer.checkpoint("synced").unwrap();
    assert!(!peer.root().join("stray.txt").exists());
    assert_eq!(
        std::fs::read_to_string(peer.root().join("src/old.py")).unwrap(),
        "print('old')\n"
    );

    // A step on the peer: one new file, one changed, one deleted.
    std::fs::write(peer.root().join("src/new.py"), "x = 1\n").unwrap();
    std::fs::write(peer.root().join("src/old.py"), "print('new')\n").unwrap();
    std::fs::remove_file(peer.root().join("src/gone.txt")).unwrap();
    let step = peer.checkpoint("step 1").unwrap();
    let mut changes = peer.changes(&synced, &step).unwrap();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<(&str, bool)> = changes
        .iter()
        .map(|c| (c.path.as_str(), c.content.is_some()))
        .collect();
    assert_eq!(
        paths,
        [
            ("src/gone.txt", false),
            ("src/new.py", true),
            ("src/old.py", true)
        ]
    );

    // Meanwhile the owner wrote another file; applying keeps it.
    std::fs::write(owner.root().join("output/other.md"), "other subtask\n").unwrap();
    owner.apply(&changes, false).unwrap();
    owner.checkpoint("step 1 from the peer").unwrap();
    assert_eq!(
        std::fs::read_to_string(owner.root().join("src/new.py")).unwrap(),
        "x = 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(owner.root().join("src/old.py")).unwrap(),
        "print('new')\n"
    );
    assert!(!owner.root().join("src/gone.txt").exists());
    assert!(owner.root().join("output/other.md").exists());
}

#[test]
fn changes_that_leave_the_workspace_are_refused_before_any_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::create(dir.path(), "t2").unwrap();
    for bad in ["../escape.txt", "/etc/passwd", ".git/config", "src/../../x"] {
        let changes = [
            FileChange {
                path: "src/fine.txt".into(),
                content: Some(b"fine".to_vec()),
                executable: false,
            },
            FileChange {
                path: bad.into(),
                content: Some(b"evil".to_vec()),
                executable: false,
            },
        ];
        let error = ws.apply(&changes, false).unwrap_err();
        assert!(
            matches!(&error, WorkspaceError::RefusedChange { path, .. } if path == bad),
            "{bad}: {error}"
        );
        assert!(error.to_string().contains(bad), "{error}");
        assert!(!ws.root().join("src/fine.txt").exists(), "nothing applied");
    }
    assert!(!dir.path().join("escape.txt").exists());
}

#[test]
fn a_malformed_change_from_the_wire_is_an_error_not_a_panic() {
    let error =
        serde_json::from_str::<FileChange>(r#"{"path": "a.txt", "content": "%%% not base64 %%%"}"#)
            .unwrap_err();
    assert!(error.to_string().contains("Invalid"), "{error}");
}
