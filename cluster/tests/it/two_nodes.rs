//! Two cluster nodes in one process over 127.0.0.1, each with a real
//! ModelHost over a scripted backend: node B serves a model node A lacks.
//!
//! Nodes in one process share ractor's process-group registry, so the
//! tests take turns (`SERIAL`) and shut their nodes down, as a person's
//! separate processes would not need to.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use troupe_cluster::{ClusterError, ClusterNode, ClusterOptions};
use troupe_host::{ModelHostConfig, ModelHostHandle};
use troupe_inference::backend::{GenerateRequest, GenerationEvent, LoadOptions};
use troupe_inference::scripted::{Script, ScriptedBackend};
use troupe_models::catalog::CatalogSources;
use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

const SECRET: &str = "correct horse battery staple";

/// Longest wait for something that must happen; a hang guard, not a
/// timing bound.
const WAIT: Duration = Duration::from_secs(60);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A ModelHost whose catalog holds `models` (synthetic files) and whose
/// backend answers every prompt from `script`.
async fn host(dir: &Path, models: &[&str], script: Script) -> ModelHostHandle {
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant: SynthQuant::F32,
        seed: 7,
    };
    for name in models {
        write_synthetic(&dir.join(format!("{name}.gguf")), &spec).expect("synthetic model");
    }
    let config = ModelHostConfig {
        budget_bytes: 1 << 34,
        pinned: Vec::new(),
        default_keep_alive: Duration::from_secs(600),
        load: LoadOptions {
            context_length: 2048,
            parallel_slots: 2,
            batch_size: 128,
            threads: Some(1),
            gpu_layers: 0,
            repack: true,
            max_queued: 8,
        },
        catalog: CatalogSources {
            model_dirs: vec![dir.to_path_buf()],
            hf_cache: None,
            ollama_models: None,
        },
    };
    let (host, _join) = troupe_host::spawn(config, Arc::new(ScriptedBackend::new(script)))
        .await
        .expect("host starts");
    host
}

fn script(reply: &str, token_delay_ms: u64) -> Script {
    Script {
        default: Some(reply.to_string()),
        token_delay_ms,
        ..Script::default()
    }
}

use troupe_testkit::free_port;

fn options(
    name: &str,
    listen: Option<SocketAddr>,
    join: &[SocketAddr],
    secret: &str,
) -> ClusterOptions {
    ClusterOptions {
        listen,
        secret: secret.to_string(),
        join: join.to_vec(),
        node_name: name.to_string(),
        workers: None,
    }
}

/// Waits until `node` sees a peer named `peer` serving `model`.
async fn until_peer_serves(node: &ClusterNode, peer: &str, model: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            let peers = node.peers().await;
            if peers
                .iter()
                .any(|p| p.node == peer && p.models.iter().any(|m| m == model))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} never saw {peer} serving {model}", node.name()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_a_model_only_its_peer_has() {
    let _turn = SERIAL.lock().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let host_b = host(dir_b.path(), &["x"], script("the answer from node b", 0)).await;
    let host_a = host(dir_a.path(), &[], script("node a has no model", 0)).await;
    let addr_b = free_port();
    let b = ClusterNode::start(options("b", Some(addr_b), &[], SECRET), host_b.clone())
        .await
        .expect("b starts");
    let a = ClusterNode::start(options("a", None, &[addr_b], SECRET), host_a)
        .await
        .expect("a joins b");

    until_peer_serves(&a, "b", "x").await;
    let peers = a.peers().await;
    let listed = peers.iter().find(|p| p.node == "b").expect("b listed");
    assert_eq!(listed.models, vec!["x".to_string()]);
    assert_eq!(listed.addr, addr_b.to_string());
    assert!(
        peers.iter().all(|p| p.node != "a"),
        "a lists itself: {peers:?}"
    );

    let stream = a
        .generate("x", GenerateRequest::text("what is the answer?"))
        .await
        .expect("b serves x");
    let result = stream.into_result().await.expect("a result");
    assert_eq!(result.text, "the answer from node b");
    assert!(result.usage.completion_tokens > 0);

    // A's router sizes prompts for B's model by B's own context length.
    let on_b = host_b
        .model_info("x")
        .await
        .expect("b has x")
        .context_length;
    assert_eq!(a.context_length("x").await, Some(on_b));
    assert_eq!(a.context_length("nope").await, None);

    match a.generate("nope", GenerateRequest::text("hi")).await {
        Err(ClusterError::NoPeerServes { model }) => assert_eq!(model, "nope"),
        other => panic!("expected NoPeerServes, got {:?}", other.map(|_| ())),
    }

    // A request the peer refuses fails before any token, naming the peer.
    let mut bad = GenerateRequest::text("hi");
    bad.max_tokens = 0;
    match a.generate("x", bad).await {
        Err(ClusterError::PeerFailed { node, reason }) => {
            assert_eq!(node, "b");
            assert!(reason.contains("max_tokens"), "{reason}");
        }
        other => panic!("expected PeerFailed, got {:?}", other.map(|_| ())),
    }

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_is_refused() {
    let _turn = SERIAL.lock().await;
    let (dir_b, dir_c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let host_b = host(dir_b.path(), &["y"], script("from b", 0)).await;
    let host_c = host(dir_c.path(), &[], script("from c", 0)).await;
    let addr_b = free_port();
    let b = ClusterNode::start(options("b2", Some(addr_b), &[], SECRET), host_b)
        .await
        .expect("b starts");

    match ClusterNode::start(options("c2", None, &[addr_b], "not the secret"), host_c).await {
        Err(ClusterError::Refused { addr, .. }) => assert_eq!(addr, addr_b.to_string()),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(
        b.peers().await.iter().all(|p| p.node != "c2"),
        "the refused node is listed as a peer"
    );

    match ClusterNode::start(
        options("c3", None, &[addr_b], ""),
        host(dir_c.path(), &[], Script::default()).await,
    )
    .await
    {
        Err(ClusterError::Config { reason }) => assert!(reason.contains("secret"), "{reason}"),
        other => panic!("expected a Config error, got {other:?}"),
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_peer_mid_answer_ends_the_stream_in_an_error() {
    let _turn = SERIAL.lock().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // 4 characters a piece, 50 ms apart: several seconds of answer.
    let long = "slow ".repeat(200);
    let host_b = host(dir_b.path(), &["z"], script(&long, 50)).await;
    let host_a = host(dir_a.path(), &[], Script::default()).await;
    let addr_b = free_port();
    let b = ClusterNode::start(options("b3", Some(addr_b), &[], SECRET), host_b)
        .await
        .expect("b starts");
    let a = ClusterNode::start(options("a3", None, &[addr_b], SECRET), host_a)
        .await
        .expect("a joins b");
    until_peer_serves(&a, "b3", "z").await;

    let mut request = GenerateRequest::text("talk slowly");
    request.max_tokens = 1000;
    let mut stream = a.generate("z", request).await.expect("b serves z");
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a first event");
    assert!(
        matches!(first, Some(GenerationEvent::Token(_))),
        "{first:?}"
    );

    b.shutdown().await;

    let last = tokio::time::timeout(WAIT, async {
        let mut last = None;
        while let Some(event) = stream.next().await {
            last = Some(event);
        }
        last
    })
    .await
    .expect("the stream ends once the peer is gone");
    assert!(
        matches!(last, Some(GenerationEvent::Error(_))),
        "the stream must end in an error, not {last:?}"
    );
    a.shutdown().await;
}
