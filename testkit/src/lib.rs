//! troupe-testkit: the harnesses troupe's integration tests share, so each
//! test file holds only its test. A dev-dependency only.
//!
//! # Layout
//! - [`models`]: directories of tiny synthetic GGUF models (the scripted
//!   backend never reads them; the catalog needs valid files).
//! - [`ConfigFile`]: a `troupe.toml` on the scripted backend, written into
//!   a test's directory, and [`load`] to read it as troupe would.
//! - [`process`]: the real `troupe` binary as a child process (`troupe
//!   serve` and the rest), its stderr read line by line.
//! - [`write_node`]: all of it at once, as most tests want it.
//! - [`hub`]: a local stand-in for the Hugging Face hub's file API.
//! - [`free_port`], [`fib_script`], [`WAIT`].

pub mod hub;
pub mod models;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest wait for something that must come (a line, an exit, an event);
/// a hang guard, not a timing bound.
pub const WAIT: Duration = Duration::from_secs(120);

/// A loopback address nothing listens on now.
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a free port")
}

/// `examples/fib-script.json`: the scripted fib job (two subtasks, tests
/// run until they pass).
pub fn fib_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fib-script.json")
}

/// A `troupe.toml` on the scripted backend: `data_dir` under the test's
/// directory, one models dir, the script, and whatever sections the test
/// adds.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    dir: PathBuf,
    models: PathBuf,
    script: PathBuf,
    own_caches: bool,
    sections: String,
}

impl ConfigFile {
    /// A config in `dir` (data in `dir/data`) over the models in `models`,
    /// replaying `script`.
    pub fn scripted(dir: &Path, models: &Path, script: &Path) -> ConfigFile {
        ConfigFile {
            dir: dir.to_path_buf(),
            models: models.to_path_buf(),
            script: script.to_path_buf(),
            own_caches: false,
            sections: String::new(),
        }
    }

    /// The Hugging Face cache and Ollama store under `dir` too, so that the
    /// machine's own models never show up in the catalog.
    pub fn own_caches(mut self) -> ConfigFile {
        self.own_caches = true;
        self
    }

    /// Adds TOML sections (`[agents]\nmodel = "x"\n`), after the generated
    /// ones.
    pub fn with(mut self, sections: &str) -> ConfigFile {
        self.sections.push_str(sections);
        self.sections.push('\n');
        self
    }

    /// Writes `dir/troupe.toml`; its path.
    pub fn write(&self) -> PathBuf {
        let mut models = format!("[models]\ndirs = [{:?}]\n", self.models);
        if self.own_caches {
            models.push_str(&format!(
                "hf_cache = {:?}\nollama = {:?}\n",
                self.dir.join("hf"),
                self.dir.join("ollama")
            ));
        }
        let text = format!(
            "data_dir = {data:?}\n\n{models}\n\
             [inference]\nbackend = \"scripted\"\nscript = {script:?}\n\n{sections}",
            data = self.dir.join("data"),
            script = self.script,
            sections = self.sections,
        );
        let path = self.dir.join("troupe.toml");
        std::fs::write(&path, text).expect("troupe.toml written");
        path
    }
}

/// Writes a node into `dir`: a tiny synthetic model (F32, seed 1) per name
/// of `names` in `dir/models`, `script` as the scripted backend's script,
/// and a troupe.toml over them with `sections` added. Returns the
/// troupe.toml's path.
pub fn write_node(dir: &Path, names: &[&str], script: &str, sections: &str) -> PathBuf {
    let model_dir = dir.join("models");
    models::write(&model_dir, names, troupe_models::synth::SynthQuant::F32, 1);
    let script_path = dir.join("script.json");
    std::fs::write(&script_path, script).expect("script");
    ConfigFile::scripted(dir, &model_dir, &script_path)
        .with(sections)
        .write()
}

/// The config at `path` as troupe loads it, with no `TROUPE_*` variable
/// and no user config.
pub fn load(path: &Path) -> troupe_config::Config {
    troupe_config::load(&troupe_config::LoadOptions {
        explicit: Some(path.to_path_buf()),
        env: Vec::new(),
        platform_default: false,
    })
    .expect("the test config loads")
}
