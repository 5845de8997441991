//! `troupe serve` as cluster nodes: separate processes of the real binary
//! on 127.0.0.1, on the scripted backend with synthetic model files. Node B
//! serves model `x`; node A has no model and joins B; a node with the wrong
//! secret is refused; a join without a secret is an error naming the flag;
//! A's task runs on B's worker and model, B is killed mid-task, and the
//! task finishes here through the chain's next link; a subtask on B's
//! worker asks A's person for approval and its files and steps land in A's
//! workspace and journal.

use crate::serve_support;

use std::time::{Duration, Instant};

use serve_support::{fib_script_text, free_port, troupe, write_node, Node, WAIT};

const SECRET: &str = "shared-cluster-secret-1";

/// One node's files: models, script, troupe.toml, data.
struct NodeDir {
    dir: tempfile::TempDir,
}

impl NodeDir {
    fn new(models: &[&str], reply: &str) -> NodeDir {
        let script = serde_json::json!({ "default": reply, "token_delay_ms": 5 });
        NodeDir::with_script(models, &script, "")
    }

    /// A node replaying `script`, with `extra` appended to its troupe.toml.
    fn with_script(models: &[&str], script: &serde_json::Value, extra: &str) -> NodeDir {
        let dir = tempfile::tempdir().unwrap();
        write_node(dir.path(), models, &script.to_string(), extra);
        NodeDir { dir }
    }

    fn serve(&self, args: &[&str]) -> Node {
        let mut cmd = troupe(&self.dir.path().join("troupe.toml"));
        cmd.env_remove("CLUSTER_SECRET")
            .arg("serve")
            .args(if args.contains(&"--addr") {
                &[][..]
            } else {
                &["--addr", "127.0.0.1:0"][..]
            })
            .args(args)
            .env("TROUPE_LOG", "warn,troupe_cluster=info");
        Node::spawn(cmd)
    }
}

#[test]
fn a_node_joins_a_peer_and_sees_its_models() {
    let b_dir = NodeDir::new(&["x"], "from node b");
    let a_dir = NodeDir::new(&[], "from node a");
    let addr_b = free_port().to_string();
    let mut b = b_dir.serve(&[
        "--cluster-listen",
        &addr_b,
        "--cluster-secret",
        SECRET,
        "--node-name",
        "node-b",
    ]);
    b.wait_for(&["cluster node node-b on", &addr_b]);

    let mut a = a_dir.serve(&[
        "--join",
        &addr_b,
        "--cluster-secret",
        SECRET,
        "--node-name",
        "node-a",
    ]);
    a.wait_for(&["cluster node node-a"]);
    a.wait_for(&["cluster peer node-b", &addr_b, "serves x"]);
    b.wait_for(&["peer connected", "node-a"]);
    // The secret never reaches a log line.
    assert!(!a.seen.iter().chain(&b.seen).any(|l| l.contains(SECRET)));

    drop(a);
    b.wait_for(&["peer disconnected", "node-a"]);
}

#[test]
fn a_node_with_the_wrong_secret_is_refused() {
    let b_dir = NodeDir::new(&["x"], "from node b");
    let c_dir = NodeDir::new(&[], "from node c");
    let addr_b = free_port().to_string();
    let mut b = b_dir.serve(&[
        "--cluster-listen",
        &addr_b,
        "--cluster-secret",
        SECRET,
        "--node-name",
        "node-b2",
    ]);
    b.wait_for(&["cluster node node-b2 on"]);

    let c = c_dir.serve(&[
        "--join",
        &addr_b,
        "--cluster-secret",
        "a-different-secret",
        "--node-name",
        "node-c",
    ]);
    let (status, stderr) = c.exit();
    assert!(
        !status.success(),
        "a refused node must not keep running:\n{stderr}"
    );
    assert!(
        stderr.contains("refused") && stderr.contains(&addr_b),
        "the error names the refusal and the address:\n{stderr}"
    );
    b.wait_for(&["refused a node"]);
    assert!(!b.seen.iter().any(|l| l.contains("peer connected")));
}

#[test]
fn joining_without_a_secret_names_the_flag() {
    let a_dir = NodeDir::new(&[], "from node a");
    let addr = free_port().to_string();
    let a = a_dir.serve(&["--join", &addr]);
    let (status, stderr) = a.exit();
    assert!(!status.success());
    assert!(stderr.contains("--cluster-secret"), "{stderr}");
}

/// The fib script, with every worker reply slowed down by `delay_ms` (so a
/// node can be killed mid-task).
fn fib_script(delay_ms: u64) -> serde_json::Value {
    let mut script: serde_json::Value = serde_json::from_str(&fib_script_text()).unwrap();
    for rule in script["rules"].as_array_mut().unwrap() {
        let contains = rule["contains"].to_string();
        if !contains.contains("Plan the job") && !contains.contains("Write the final answer") {
            rule["delay_ms"] = delay_ms.into();
        }
    }
    script
}

/// One HTTP/1.1 request on a fresh connection; the status and JSON body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let text = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // A chunked body: the JSON sits between the chunk sizes.
    let json = text
        .find('{')
        .and_then(|start| text.rfind('}').map(|end| &text[start..=end]))
        .unwrap_or("null");
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

fn events_of(view: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    view["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["event"]["type"] == kind)
                .map(|e| e["event"].clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts node `name` from `dir`, serving HTTP on `http` and joining
/// `peer` at `join`; once it sees the peer serve `x` and its listener is
/// bound, submits the fib task. The node and the task's id.
fn join_and_submit_fib(
    dir: &NodeDir,
    http_addr: &str,
    join: &str,
    name: &str,
    peer: &str,
) -> (Node, String) {
    let mut node = dir.serve(&[
        "--addr",
        http_addr,
        "--join",
        join,
        "--cluster-secret",
        SECRET,
        "--node-name",
        name,
    ]);
    node.wait_for(&[&format!("cluster peer {peer}"), "serves x"]);
    // The HTTP listener is bound once this line is printed.
    node.wait_for(&["troupe serve: http://", http_addr]);
    let job = serde_json::json!({ "request": "write a Python fibonacci function with tests" });
    let (status, created) = http(http_addr, "POST", "/api/tasks", Some(&job));
    assert_eq!(status, 201, "{created}");
    (node, created["id"].as_str().unwrap().to_owned())
}

#[test]
fn a_task_runs_on_a_peers_model_and_finishes_when_the_peer_dies_mid_task() {
    // B serves x over the cluster, slowly; C serves x over HTTP, the last
    // link of A's chains; A has no model at all.
    let b_dir = NodeDir::with_script(&["x"], &fib_script(400), "");
    let c_dir = NodeDir::with_script(&["x"], &fib_script(0), "");
    let addr_b = free_port().to_string();
    let http_c = free_port().to_string();
    let http_a = free_port().to_string();
    let mut b = b_dir.serve(&[
        "--cluster-listen",
        &addr_b,
        "--cluster-secret",
        SECRET,
        "--node-name",
        "node-b",
    ]);
    b.wait_for(&["cluster node node-b on"]);
    let mut c = c_dir.serve(&["--addr", &http_c]);
    c.wait_for(&["troupe serve: http://", &http_c]);
    let a_dir = NodeDir::with_script(
        &[],
        &serde_json::json!({ "default": "A has no model" }),
        &format!(
            "[agents]\nmodel = \"x\"\nprogress_interval_s = 1\n\
             [approval]\nexecute = \"allow\"\n\
             [[providers]]\nname = \"c\"\nbase_url = \"http://{http_c}/v1\"\nmodel = \"x\"\n\
             max_retries = 0\n"
        ),
    );
    let (a, id) = join_and_submit_fib(&a_dir, &http_a, &addr_b, "node-a", "node-b");
    let path = format!("/api/tasks/{id}");

    // Wait until a step served by B is committed, then kill B mid-task.
    let deadline = Instant::now() + WAIT;
    let view = loop {
        let (_, view) = http(&http_a, "GET", &path, None);
        if !events_of(&view, "step_committed").is_empty() {
            break view;
        }
        assert!(Instant::now() < deadline, "no step committed: {view:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let first = events_of(&view, "failed_over");
    assert!(
        first.iter().any(|e| e["served_by"] == "cluster:node-b"),
        "the task used B's model: {first:#?}"
    );
    assert_ne!(view["state"], "succeeded", "B died mid-task, not after it");
    // A has no model, so its subtask went to B's worker.
    let sent = events_of(&view, "delegated");
    assert!(
        sent.iter().any(|e| e["node"] == "node-b"),
        "s1 ran on B's worker: {sent:#?}"
    );
    drop(b); // SIGKILL

    let view = loop {
        let (_, view) = http(&http_a, "GET", &path, None);
        let state = view["state"].as_str().unwrap_or_default().to_owned();
        if ["succeeded", "failed", "cancelled"].contains(&state.as_str()) {
            break view;
        }
        assert!(Instant::now() < deadline, "the task did not end: {view:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(view["state"], "succeeded", "{view:#}");
    let failovers = events_of(&view, "failed_over");
    let to_c: Vec<_> = failovers.iter().filter(|e| e["served_by"] == "c").collect();
    assert!(
        !to_c.is_empty(),
        "after B died, C answered through the chain: {failovers:#?}"
    );
    let failed: Vec<&str> = to_c[0]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|pair| pair[0].as_str())
        .collect();
    assert_eq!(&failed[..2], ["local", "cluster"], "{failovers:#?}");
    // A lost B's worker, handed the attempt out again here, and the new
    // worker went on from the steps B had committed.
    let recovered = events_of(&view, "recovered");
    assert!(
        recovered.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("node-b") && d.contains("handing it out again"))),
        "{recovered:#?}"
    );
    // The work is in A's workspace, whoever generated it.
    let ws = a_dir.dir.path().join("data/workspaces").join(&id);
    assert!(ws.join("src/fib.py").is_file());
    assert!(ws.join("output/USAGE.md").is_file());
    drop(c);
    drop(a);
}

/// Polls `path` on `addr` until `done` says the view is ready (hang guard).
fn wait_view(
    addr: &str,
    path: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, view) = http(addr, "GET", path, None);
        if done(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "{what}: {view:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_subtask_runs_on_a_peers_worker_and_its_approval_is_answered_on_the_owner() {
    // B has the model, workers and a policy that asks before running a
    // command; A has no model and would allow commands itself.
    let b_dir = NodeDir::with_script(&["x"], &fib_script(0), "[approval]\nexecute = \"ask\"\n");
    let addr_b = free_port().to_string();
    let http_a = free_port().to_string();
    let mut b = b_dir.serve(&[
        "--cluster-listen",
        &addr_b,
        "--cluster-secret",
        SECRET,
        "--node-name",
        "node-b3",
    ]);
    b.wait_for(&["cluster node node-b3 on"]);
    let a_dir = NodeDir::with_script(
        &[],
        &serde_json::json!({ "default": "A has no model" }),
        "[agents]\nmodel = \"x\"\n[approval]\nexecute = \"allow\"\n",
    );
    let (a, id) = join_and_submit_fib(&a_dir, &http_a, &addr_b, "node-a3", "node-b3");
    let path = format!("/api/tasks/{id}");

    // B's worker wants to run the tests; the question waits on A, where
    // the person is.
    let pending = wait_view(&http_a, "/api/approvals", "no approval reached A", |v| {
        v["data"].as_array().is_some_and(|d| !d.is_empty())
    });
    let call = &pending["data"][0];
    assert_eq!(call["task_id"], id.as_str(), "{pending:#}");
    assert_eq!(call["request"]["tool"], "shell", "{pending:#}");
    let request = call["request"]["id"].as_str().unwrap().to_owned();
    let (status, decided) = http(
        &http_a,
        "POST",
        &format!("/api/approvals/{request}"),
        Some(&serde_json::json!({ "approved": true })),
    );
    assert_eq!(status, 200, "{decided}");

    let view = wait_view(&http_a, &path, "the task did not end", |v| {
        ["succeeded", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or_default())
    });
    assert_eq!(view["state"], "succeeded", "{view:#}");
    let delegated = events_of(&view, "delegated");
    assert!(
        delegated
            .iter()
            .any(|e| e["subtask"] == "s1" && e["node"] == "node-b3"),
        "s1 ran on B's worker: {delegated:#?}"
    );
    assert!(
        delegated[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("does not have the model x"),
        "{delegated:#?}"
    );
    // B's steps are in A's journal, each a checkpoint of A's workspace.
    let committed = events_of(&view, "step_committed");
    assert!(committed.len() >= 4, "{committed:#?}");
    let ws = troupe::tools::Workspace::open(&a_dir.dir.path().join("data"), &id).unwrap();
    let checkpoints: Vec<String> = ws
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.id.0)
        .collect();
    for step in &committed {
        let commit = step["checkpoint"].as_str().unwrap();
        assert!(
            checkpoints.iter().any(|c| c == commit),
            "{commit} is not a checkpoint of A's workspace"
        );
    }
    assert!(ws.root().join("src/fib.py").is_file());
    assert!(ws.root().join("src/test_fib.py").is_file());
    assert!(ws.root().join("output/USAGE.md").is_file());
    let decided = events_of(&view, "approval_decided");
    assert!(
        decided
            .iter()
            .any(|e| e["request_id"] == request.as_str() && e["approved"] == true),
        "{decided:#?}"
    );
    // B keeps no copy of A's task once it is done.
    let scratch = b_dir.dir.path().join("data/cluster-jobs");
    let deadline = Instant::now() + WAIT;
    while std::fs::read_dir(&scratch).is_ok_and(|mut d| d.next().is_some()) {
        assert!(Instant::now() < deadline, "B kept {scratch:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(a);
    drop(b);
}
