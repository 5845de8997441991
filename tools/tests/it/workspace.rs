//! Workspaces: layout, checkpoints, restore, and confinement of every path.

use crate::common;

use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use troupe_tools::files::{DeletePath, ReadFile, WriteFile};
use troupe_tools::{ConfinementError, Workspace, WorkspaceError};

/// Every file under `root` (except .git) with its content.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walkdir(root) {
        out.insert(
            e.strip_prefix(root).unwrap().display().to_string(),
            std::fs::read(&e).unwrap(),
        );
    }
    out
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() == ".git" {
            continue;
        }
        if p.is_dir() {
            files.extend(walkdir(&p));
        } else {
            files.push(p);
        }
    }
    files
}

#[test]
fn a_new_workspace_has_the_layout_a_readme_and_a_first_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    let ws = Workspace::create(data.path(), "task-1").unwrap();
    let root = data
        .path()
        .join("workspaces")
        .join("task-1")
        .canonicalize()
        .unwrap();
    assert_eq!(ws.root(), root);
    for dir in ["src", "output", "research"] {
        assert!(root.join(dir).is_dir(), "{dir} missing");
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("task-1"));
    // The history lies outside the workspace, where no tool reaches.
    assert!(!root.join(".git").exists());
    let git_dir = data.path().join("git").join("task-1.git");
    assert!(git_dir.join("HEAD").is_file());
    assert_eq!(ws.git_dir(), git_dir);
    let cps = ws.checkpoints().unwrap();
    assert_eq!(cps.len(), 1);
    assert!(cps[0].step.contains("created"), "{:?}", cps[0]);

    let again = Workspace::open(data.path(), "task-1").unwrap();
    assert_eq!(again.root(), root);
    assert!(matches!(
        Workspace::create(data.path(), "task-1"),
        Err(WorkspaceError::AlreadyExists { .. })
    ));
    assert!(matches!(
        Workspace::open(data.path(), "task-2"),
        Err(WorkspaceError::NotFound { .. })
    ));
}

#[test]
fn task_ids_that_are_not_plain_names_are_refused() {
    let data = tempfile::tempdir().unwrap();
    for bad in ["", "..", "a/b", "../x", "a b"] {
        match Workspace::create(data.path(), bad) {
            Err(WorkspaceError::InvalidTaskId { id, .. }) => assert_eq!(id, bad),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

#[test]
fn restoring_a_checkpoint_brings_back_exactly_its_files() {
    let (_data, ws) = common::workspace("restore");
    let root = ws.root().to_path_buf();
    std::fs::write(root.join("src/main.py"), "print('v1')\n").unwrap();
    std::fs::write(root.join("output/report.md"), "# draft\n").unwrap();
    let first = ws.checkpoint("step 1: wrote main.py").unwrap();
    let at_first = snapshot(&root);

    std::fs::write(root.join("src/main.py"), "print('v2')\n").unwrap();
    std::fs::remove_file(root.join("output/report.md")).unwrap();
    std::fs::create_dir_all(root.join("research/new")).unwrap();
    std::fs::write(root.join("research/new/notes.txt"), "later").unwrap();
    let second = ws.checkpoint("step 2: rewrote").unwrap();
    std::fs::write(root.join("stray.txt"), "not committed").unwrap();

    let cps = ws.checkpoints().unwrap();
    let steps: Vec<&str> = cps.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(steps.len(), 3);
    assert_eq!(&steps[1..], ["step 1: wrote main.py", "step 2: rewrote"]);
    assert_eq!(cps[1].id, first);
    assert_eq!(cps[2].id, second);

    ws.restore(&first).unwrap();
    assert_eq!(snapshot(&root), at_first);
    assert!(!root.join("stray.txt").exists());
    assert!(!root.join("research/new/notes.txt").exists());
    // The later checkpoint is no longer on the branch.
    assert_eq!(ws.checkpoints().unwrap().len(), 2);

    let unknown = troupe_tools::CheckpointId("0".repeat(40));
    assert!(matches!(
        ws.restore(&unknown),
        Err(WorkspaceError::UnknownCheckpoint { .. })
    ));
}

#[test]
fn ignored_environments_survive_a_restore_and_are_not_checkpointed() {
    let (_data, ws) = common::workspace("venv-kept");
    let root = ws.root();
    std::fs::create_dir_all(root.join(".venv/bin")).unwrap();
    std::fs::write(root.join(".venv/bin/python"), "x").unwrap();
    let id = ws.checkpoint("with venv").unwrap();
    let repo = ws.repo().unwrap();
    let tree = repo
        .find_commit(git2::Oid::from_str(&id.0).unwrap())
        .unwrap()
        .tree()
        .unwrap();
    assert!(tree.get_path(Path::new(".venv/bin/python")).is_err());
    ws.restore(&id).unwrap();
    assert!(root.join(".venv/bin/python").exists());
}

/// Whether a refusal has the expected reason.
type IsReason = fn(&ConfinementError) -> bool;

#[test]
fn each_escape_is_refused_and_recorded() {
    let (data, ws) = common::workspace("escape");
    let root = ws.root().to_path_buf();
    let outside = data.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    symlink(&outside, root.join("src/out_dir")).unwrap();
    symlink(outside.join("secret.txt"), root.join("link_file")).unwrap();
    symlink("../../../outside/secret.txt", root.join("src/rel_link")).unwrap();
    symlink(outside.join("not-yet.txt"), root.join("dangling")).unwrap();
    symlink("loop_b", root.join("loop_a")).unwrap();
    symlink("loop_a", root.join("loop_b")).unwrap();

    let cases: Vec<(&str, IsReason)> = vec![
        ("..", |e| matches!(e, ConfinementError::ParentEscape { .. })),
        ("../outside/secret.txt", |e| {
            matches!(e, ConfinementError::ParentEscape { .. })
        }),
        ("src/../../outside", |e| {
            matches!(e, ConfinementError::ParentEscape { .. })
        }),
        ("/etc/passwd", |e| {
            matches!(e, ConfinementError::AbsoluteOutside { .. })
        }),
        ("src/out_dir/secret.txt", |e| {
            matches!(e, ConfinementError::SymlinkOutside { .. })
        }),
        ("src/out_dir/new.txt", |e| {
            matches!(e, ConfinementError::SymlinkOutside { .. })
        }),
        ("link_file", |e| {
            matches!(e, ConfinementError::SymlinkOutside { .. })
        }),
        ("src/rel_link", |e| {
            matches!(e, ConfinementError::SymlinkOutside { .. })
        }),
        ("dangling", |e| {
            matches!(e, ConfinementError::SymlinkOutside { .. })
        }),
        ("loop_a", |e| {
            matches!(e, ConfinementError::TooManyLinks { .. })
        }),
        (".git/config", |e| {
            matches!(e, ConfinementError::GitDir { .. })
        }),
        // A nested repository a tool could aim at the host.
        ("x/.git/config", |e| {
            matches!(e, ConfinementError::GitDir { .. })
        }),
        ("sub/.git", |e| matches!(e, ConfinementError::GitDir { .. })),
        ("sub/.GIT/HEAD", |e| {
            matches!(e, ConfinementError::GitDir { .. })
        }),
        ("", |e| matches!(e, ConfinementError::Empty)),
        ("output/a\nb.txt", |e| {
            matches!(e, ConfinementError::UnsafeName { .. })
        }),
        ("output/\u{1b}[2Jx", |e| {
            matches!(e, ConfinementError::UnsafeName { .. })
        }),
        ("output/invoice\u{202E}txt.exe", |e| {
            matches!(e, ConfinementError::UnsafeName { .. })
        }),
    ];
    for (path, expected) in &cases {
        match ws.resolve(path) {
            Err(e) => assert!(expected(&e), "{path:?} refused with the wrong reason: {e}"),
            Ok(p) => panic!("{path:?} was allowed as {}", p.display()),
        }
    }
    let refusals = ws.refusals();
    assert_eq!(refusals.len(), cases.len());
    assert_eq!(refusals[0].requested, "..");

    // Paths that stay inside are fine, including absolute ones and links
    // that point inside.
    symlink(root.join("src"), root.join("src_link")).unwrap();
    assert_eq!(
        ws.resolve("src/./a/../b.txt").unwrap(),
        root.join("src/b.txt")
    );
    assert_eq!(
        ws.resolve(root.join("output/x").to_str().unwrap()).unwrap(),
        root.join("output/x")
    );
    assert_eq!(
        ws.resolve("src_link/new.txt").unwrap(),
        root.join("src/new.txt")
    );
    assert_eq!(ws.resolve(".gitignore").unwrap(), root.join(".gitignore"));
    assert_eq!(ws.refusals().len(), cases.len());
}

#[tokio::test]
async fn tools_refuse_escapes_with_an_observation_and_touch_nothing_outside() {
    let (data, ws) = common::workspace("tool-escape");
    let outside = data.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    symlink(&outside, ws.root().join("out")).unwrap();
    let r = common::registry(
        vec![
            Arc::new(ReadFile),
            Arc::new(WriteFile),
            Arc::new(DeletePath),
        ],
        4096,
    );

    let obs = common::call(
        &r,
        &ws,
        "read_file",
        json!({ "path": "../outside/secret.txt" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(obs.text.contains("outside the workspace"), "{}", obs.text);
    assert!(!obs.text.contains("secret\n") && obs.text != "secret");

    let obs = common::call(
        &r,
        &ws,
        "write_file",
        json!({ "path": "out/planted.txt", "content": "x" }),
    )
    .await;
    assert!(obs.is_error);
    assert!(obs.text.contains("symlink `out`"), "{}", obs.text);
    assert!(!outside.join("planted.txt").exists());

    let obs = common::call(&r, &ws, "delete_path", json!({ "path": "out/secret.txt" })).await;
    assert!(obs.is_error);
    assert!(outside.join("secret.txt").exists());

    // Deleting the link itself removes the link, not what it points to.
    let obs = common::call(&r, &ws, "delete_path", json!({ "path": "out" })).await;
    assert!(!obs.is_error, "{}", obs.text);
    assert!(outside.join("secret.txt").exists());
    assert!(!ws.root().join("out").exists());

    let obs = common::call(
        &r,
        &ws,
        "delete_path",
        json!({ "path": ".git", "recursive": true }),
    )
    .await;
    assert!(obs.is_error);
    assert!(ws.git_dir().join("HEAD").is_file());
    assert_eq!(ws.refusals().len(), 3);
}

/// Attack 6 of the hostile-model review: a recovery's restore raced another
/// subtask's checkpoint on the shared workspace ("the index is locked") and
/// the subtask started over. Checkpoints and restores from separate
/// `Workspace` values (as separate subtasks hold them) now take turns.
#[test]
fn checkpoints_and_restores_of_one_workspace_never_collide() {
    let data = tempfile::tempdir().unwrap();
    let ws = Workspace::create(data.path(), "shared").unwrap();
    let base = ws.checkpoint("base").unwrap();
    let threads: Vec<_> = (0..3)
        .map(|worker| {
            let dir = data.path().to_path_buf();
            let base = base.clone();
            std::thread::spawn(move || {
                let ws = Workspace::open(&dir, "shared").unwrap();
                for round in 0..25 {
                    std::fs::write(
                        ws.root().join(format!("output/w{worker}.txt")),
                        format!("{round}\n"),
                    )
                    .unwrap();
                    ws.checkpoint(&format!("w{worker} r{round}"))
                        .unwrap_or_else(|e| panic!("checkpoint w{worker} r{round}: {e}"));
                    if round % 5 == 4 {
                        ws.restore(&base)
                            .unwrap_or_else(|e| panic!("restore w{worker} r{round}: {e}"));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no checkpoint or restore failed");
    }
    // Restores moved the branch back to `base` along the way; the history
    // is whole and still reaches it.
    let steps: Vec<String> = ws
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.step)
        .collect();
    assert!(steps.iter().any(|s| s == "base"), "{steps:?}");
}

/// A workspace made before the git dir moved out (`.git` inside) still
/// opens, checkpoints and restores.
#[test]
fn a_workspace_with_its_git_dir_inside_still_works() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("workspaces").join("old");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/a.txt"), "a\n").unwrap();
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    git2::Repository::init_opts(&dir, &opts).unwrap();
    let ws = Workspace::open(data.path(), "old").unwrap();
    assert_eq!(ws.git_dir(), dir.canonicalize().unwrap().join(".git"));
    let id = ws.checkpoint("first").unwrap();
    std::fs::write(dir.join("src/a.txt"), "changed\n").unwrap();
    ws.restore(&id).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("src/a.txt")).unwrap(),
        "a\n"
    );
}

#[test]
fn errors_for_the_model_show_no_host_paths() {
    let data = tempfile::tempdir().unwrap();
    let ws = Workspace::create(data.path(), "t-hostpaths").unwrap();
    let root = ws.root().display().to_string();
    let home = ws.tool_home().unwrap().display().to_string();
    let text = format!(
        "read {root}/src/a.py: No such file or directory; cwd {root}; home {home}/.cache; git {}/git/t-hostpaths.git",
        data.path().canonicalize().unwrap().display()
    );
    let shown = ws.without_host_paths(&text);
    assert_eq!(
        shown,
        "read src/a.py: No such file or directory; cwd .; home $DATA_DIR/homes/t-hostpaths/.cache; git $DATA_DIR/git/t-hostpaths.git"
    );
    let data_path = data.path().display().to_string();
    assert!(!shown.contains(&data_path), "{shown}");
    // Only whole paths: a sibling whose name starts the same is left alone.
    let sibling = format!("{}base/x", data.path().canonicalize().unwrap().display());
    assert_eq!(ws.without_host_paths(&sibling), sibling);
}
