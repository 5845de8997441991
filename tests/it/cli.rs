//! The `troupe` binary end to end: what a person typing the commands sees.
//! Every test gets its own data dir, model dir and caches through `TROUPE_*`
//! variables, so nothing on the machine leaks in.

use std::path::PathBuf;
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        Env { dir }
    }

    fn models(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    fn troupe(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_troupe"))
            .args(args)
            .env_remove("TROUPE_CONFIG")
            .env("TROUPE_DATA_DIR", self.dir.path().join("data"))
            .env("TROUPE_MODELS__DIRS", format!("[{:?}]", self.models()))
            .env("TROUPE_MODELS__HF_CACHE", self.dir.path().join("hf"))
            .env("TROUPE_MODELS__OLLAMA", self.dir.path().join("ollama"))
            .env("TROUPE_INFERENCE__THREADS", "2")
            .env("TROUPE_LOG", "warn")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .output()
            .unwrap()
    }

    fn synth(&self, name: &str, shape: &str, quant: &str) -> PathBuf {
        let path = self.models().join(format!("{name}.gguf"));
        let out = self.troupe(&[
            "models",
            "synth",
            "--out",
            path.to_str().unwrap(),
            "--shape",
            shape,
            "--quant",
            quant,
        ]);
        assert_ok(&out);
        path
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn assert_fails_with(out: &Output, needle: &str) {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(needle),
        "stderr lacks `{needle}`:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked:\n{stderr}");
}

#[test]
fn synth_then_list_show_and_generate() {
    let env = Env::new();
    let path = env.synth("tiny", "tiny", "q8_0");
    assert!(std::fs::metadata(&path).unwrap().len() < 1_000_000);

    let out = env.troupe(&["models", "list"]);
    assert_ok(&out);
    let listing = text(&out.stdout);
    assert!(listing.contains("tiny"), "{listing}");
    assert!(listing.contains("llama"), "{listing}");
    assert!(listing.contains("Q8_0"), "{listing}");

    let out = env.troupe(&["models", "show", "tiny", "--json"]);
    assert_ok(&out);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["model"]["architecture"], "llama");
    assert_eq!(shown["model"]["has_chat_template"], true);
    assert!(shown["memory_estimate"]["kv_cache"].as_u64().unwrap() > 0);

    let out = env.troupe(&[
        "generate",
        "-m",
        "tiny",
        "-n",
        "12",
        "--seed",
        "7",
        "--temp",
        "0",
        "Hello there",
    ]);
    assert_ok(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("completion"), "usage missing: {stderr}");
    assert!(stderr.contains("tok/s"), "timings missing: {stderr}");
}

/// Every quantized synthetic model generates from a prompt long enough to
/// take ggml's AMX tile path on Intel CPUs that have it (they all crashed
/// there, exit 132/139, until build-support/ggml/troupe-ggml-fixes.h), with
/// ggml's repacking on (the default) and off (`[inference] repack = false`,
/// llama.cpp's `--no-repack`).
#[test]
fn quantized_models_generate_on_this_cpu_with_and_without_repacking() {
    let env = Env::new();
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(6);
    for quant in ["q8_0", "q4_0", "f16"] {
        env.synth(quant, "small", quant);
        for repack in ["true", "false"] {
            let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
                .args(["generate", "-m", quant, "-n", "4", "--temp", "0", &prompt])
                .env_remove("TROUPE_CONFIG")
                .env("TROUPE_DATA_DIR", env.dir.path().join("data"))
                .env("TROUPE_MODELS__DIRS", format!("[{:?}]", env.models()))
                .env("TROUPE_MODELS__HF_CACHE", env.dir.path().join("hf"))
                .env("TROUPE_MODELS__OLLAMA", env.dir.path().join("ollama"))
                .env("TROUPE_INFERENCE__THREADS", "2")
                .env("TROUPE_INFERENCE__REPACK", repack)
                .env("TROUPE_LOG", "warn")
                .env("XDG_CONFIG_HOME", env.dir.path().join("xdg"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{quant}, repack = {repack}: exit {:?} (signal {:?})\nstderr: {}",
                out.status.code(),
                std::os::unix::process::ExitStatusExt::signal(&out.status),
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn generate_with_a_json_schema_prints_valid_json() {
    let env = Env::new();
    let path = env.synth("tiny", "tiny", "f16");
    let schema_path = env.dir.path().join("schema.json");
    std::fs::write(
        &schema_path,
        r#"{"type":"object","properties":{"answer":{"type":"string","enum":["yes","no"]},"count":{"type":"integer"}},"required":["answer","count"]}"#,
    )
    .unwrap();
    for seed in ["1", "2", "3"] {
        let out = env.troupe(&[
            "generate",
            "-m",
            path.to_str().unwrap(),
            "--json-schema",
            schema_path.to_str().unwrap(),
            "-n",
            "64",
            "--seed",
            seed,
            "--chat",
            "Answer in JSON",
        ]);
        assert_ok(&out);
        let value: serde_json::Value = serde_json::from_str(text(&out.stdout).trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)));
        assert!(["yes", "no"].contains(&value["answer"].as_str().unwrap()));
        assert!(value["count"].is_i64() || value["count"].is_u64());
    }
}

#[test]
fn logs_sent_to_a_file_carry_no_colour_codes() {
    let env = Env::new();
    env.synth("tiny", "tiny", "f32");
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["generate", "-m", "tiny", "-n", "2", "hi"])
        .env_remove("TROUPE_CONFIG")
        .env("TROUPE_DATA_DIR", env.dir.path().join("data"))
        .env("TROUPE_MODELS__DIRS", format!("[{:?}]", env.models()))
        .env("TROUPE_MODELS__HF_CACHE", env.dir.path().join("hf"))
        .env("TROUPE_MODELS__OLLAMA", env.dir.path().join("ollama"))
        .env("TROUPE_LOG", "info")
        .env("XDG_CONFIG_HOME", env.dir.path().join("xdg"))
        .output()
        .unwrap();
    assert_ok(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("model loaded"), "no log lines: {stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "escape codes in a redirected log: {stderr:?}"
    );
}

#[test]
fn bad_model_files_are_refused_without_aborting() {
    let env = Env::new();
    let good = env.synth("good", "tiny", "f32");
    let bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not-gguf", b"this is not a model at all".to_vec()),
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("header-only", bytes[..24].to_vec()),
    ];
    for (name, content) in cases {
        let path = env.dir.path().join(format!("{name}.gguf"));
        std::fs::write(&path, content).unwrap();
        for args in [
            vec!["models", "show", path.to_str().unwrap()],
            vec!["generate", "-m", path.to_str().unwrap(), "hi"],
        ] {
            let out = env.troupe(&args);
            assert_fails_with(&out, &path.display().to_string());
        }
    }
    let missing = env.dir.path().join("missing.gguf");
    let out = env.troupe(&["generate", "-m", missing.to_str().unwrap(), "hi"]);
    assert_fails_with(&out, "missing");
}

#[test]
fn config_errors_name_the_key_and_file() {
    let env = Env::new();
    let cfg = env.dir.path().join("troupe.toml");
    std::fs::write(&cfg, "[inference]\ncontext_lenght = 100\n").unwrap();
    let out = env.troupe(&["--config", cfg.to_str().unwrap(), "models", "list"]);
    assert_fails_with(&out, "inference.context_lenght");
    assert_fails_with(&out, &cfg.display().to_string());
}

#[test]
fn unknown_model_name_is_a_clear_error() {
    let env = Env::new();
    let out = env.troupe(&["generate", "-m", "no-such-model", "hi"]);
    assert_fails_with(&out, "no-such-model");
}

#[test]
fn oversized_request_is_refused() {
    let env = Env::new();
    let path = env.synth("tiny", "tiny", "q4_0");
    let out = env.troupe(&[
        "generate",
        "-m",
        path.to_str().unwrap(),
        "--ctx",
        "256",
        "-n",
        "100000",
        "hi",
    ]);
    assert_fails_with(&out, "100000");
}
