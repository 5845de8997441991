//! The harness of the tests that run the real `troupe` binary as a child
//! process (`tests/it/cluster.rs`, `tests/it/failover.rs`,
//! `tests/it/remote_troupe.rs`): a node directory on the scripted backend with
//! synthetic models, a command with the caller's `TROUPE_*` variables
//! removed, a running `troupe serve` whose stderr is read on a thread, and a
//! free port.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use troupe::models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

/// Longest wait for a line or an exit that must come; a hang guard, not a
/// timing bound.
pub(crate) const WAIT: Duration = Duration::from_secs(120);

/// The text of `examples/fib-script.json`.
pub(crate) fn fib_script_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fib-script.json"))
        .expect("examples/fib-script.json")
}

/// Writes a node into `dir`: a tiny synthetic model per name of `models`
/// (the scripted backend never reads them; the catalog needs valid GGUF
/// files), `script` as the scripted backend's script, and a troupe.toml
/// with `extra` appended to its top. Returns the troupe.toml's path.
pub(crate) fn write_node(dir: &Path, models: &[&str], script: &str, extra: &str) -> PathBuf {
    let model_dir = dir.join("models");
    std::fs::create_dir_all(&model_dir).expect("models dir");
    let spec = SynthSpec {
        shape: SynthShape::Tiny,
        quant: SynthQuant::F32,
        seed: 1,
    };
    for name in models {
        write_synthetic(&model_dir.join(format!("{name}.gguf")), &spec).expect("synthetic model");
    }
    let script_path = dir.join("script.json");
    std::fs::write(&script_path, script).expect("script");
    let config = dir.join("troupe.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n{extra}\n\
             [models]\ndirs = [{model_dir:?}]\n\
             [inference]\nbackend = \"scripted\"\nscript = {script_path:?}\n",
            data = dir.join("data"),
        ),
    )
    .expect("troupe.toml");
    config
}

/// `troupe --config CONFIG`, with no `TROUPE_*` variable of the caller (the
/// config loader reads those as config keys), warnings only in the log and
/// a user config dir of its own next to the troupe.toml.
pub(crate) fn troupe(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_troupe"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TROUPE_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--config")
        .arg(config)
        .env("TROUPE_LOG", "warn")
        .env("XDG_CONFIG_HOME", config.with_file_name("xdg"));
    cmd
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a free port")
}

/// A running `troupe` and what it has printed on stderr; killed when
/// dropped.
pub(crate) struct Node {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// The stderr lines read so far.
    pub seen: Vec<String>,
}

impl Node {
    /// Starts `cmd` with no stdin or stdout and reads its stderr on a
    /// thread (so the process never blocks on a full pipe).
    pub(crate) fn spawn(mut cmd: Command) -> Node {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("troupe starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Node {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing every one of `parts`.
    pub(crate) fn wait_for(&mut self, parts: &[&str]) -> String {
        if let Some(line) = self
            .seen
            .iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no stderr line with {parts:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits for the process to exit on its own; its status and stderr.
    pub(crate) fn exit(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("troupe did not exit:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
