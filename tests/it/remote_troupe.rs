//! A second `troupe serve` (the real binary, a synthetic model, an API key)
//! used as a remote OpenAI-compatible provider: the streamed text and the
//! usage come back, and a wrong key is a clear 401.

use crate::serve_support;

use std::path::Path;
use std::process::Command;

use serve_support::{troupe, Node};
use troupe::config::ProviderConfig;
use troupe::inference::backend::{FinishReason, GenerateRequest, GenerationEvent};
use troupe::inference::chat::ChatMessage;
use troupe::inference::remote::{RemoteError, RemoteProvider};
use troupe::models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

const API_KEY: &str = "remote-troupe-key-51c2";
const MODEL: &str = "tiny";

struct Serve {
    node: Node,
    base: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        let spec = SynthSpec {
            shape: SynthShape::Tiny,
            quant: SynthQuant::Q8_0,
            seed: 3,
        };
        write_synthetic(&models.join(format!("{MODEL}.gguf")), &spec).unwrap();
        let config = dir.path().join("troupe.toml");
        std::fs::write(&config, config_text(dir.path())).unwrap();
        let mut cmd = troupe(&config);
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--api-key", API_KEY]);
        let mut node = Node::spawn(cmd);
        let base = node.serve_url();
        Serve {
            node,
            base,
            _dir: dir,
        }
    }
}

fn config_text(dir: &Path) -> String {
    format!(
        "data_dir = {data:?}\n\n[models]\ndirs = [{models:?}]\nhf_cache = {hf:?}\nollama = {ollama:?}\n\n\
         [inference]\nthreads = 2\ncontext_length = 512\n\n[serve]\nmemory_budget = \"1GiB\"\n\n\
         [agents]\nmodel = \"{MODEL}\"\n",
        data = dir.join("data").display().to_string(),
        models = dir.join("models").display().to_string(),
        hf = dir.join("hf").display().to_string(),
        ollama = dir.join("ollama").display().to_string(),
    )
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.node.child.id().to_string()])
            .status();
        let _ = self.node.child.wait();
    }
}

#[test]
fn a_second_troupe_serves_as_a_remote_provider() {
    let serve = Serve::start();
    let mut config = ProviderConfig::new("peer", &format!("{}/v1", serve.base), MODEL);
    config.max_retries = 0;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The key given directly: setting a variable would race the other
        // tests' threads reading the environment in this test binary.
        let provider =
            RemoteProvider::with_api_key(&config, Some(API_KEY.to_string())).expect("a valid key");
        let mut request = GenerateRequest::chat(vec![ChatMessage::user("Count to five.")]);
        request.max_tokens = 12;
        request.sampling.seed = Some(1);
        let mut stream = provider.generate(request.clone()).await.unwrap();
        let mut pieces = String::new();
        let result = loop {
            match stream.next().await {
                Some(GenerationEvent::Token(piece)) => pieces.push_str(&piece),
                Some(GenerationEvent::Done(result)) => break result,
                other => panic!("expected pieces then Done, got {other:?}"),
            }
        };
        assert_eq!(pieces, result.text, "the pieces make up the text");
        assert!(!result.text.is_empty(), "{result:?}");
        assert!(
            matches!(result.finish, FinishReason::Stop | FinishReason::Length),
            "{result:?}"
        );
        assert!(result.usage.prompt_tokens > 0, "{:?}", result.usage);
        assert!(result.usage.completion_tokens > 0, "{:?}", result.usage);
        let stats = provider.stats();
        assert_eq!(stats.requests, 1);
        assert_eq!(stats.prompt_tokens, u64::from(result.usage.prompt_tokens));

        let wrong = RemoteProvider::with_api_key(&config, Some("not-the-key".into())).unwrap();
        let err = wrong.generate(request).await.unwrap_err();
        match &err {
            RemoteError::Unauthorized {
                provider, status, ..
            } => {
                assert_eq!(provider, "peer");
                assert_eq!(*status, 401);
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("refused the API key"), "{text}");
        assert!(!text.contains("not-the-key"), "{text}");
    });
}
