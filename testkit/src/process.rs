//! The real `troupe` binary as a child process. The binary's path comes
//! from the caller (`env!("CARGO_BIN_EXE_troupe")` exists only in the
//! binary's own package).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::WAIT;

/// `BINARY --config CONFIG`, with no `TROUPE_*` variable of the caller (the
/// config loader reads those as config keys), warnings only in the log and
/// a user config dir of its own next to the troupe.toml.
pub fn troupe(binary: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(binary);
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

/// A running `troupe` and what it has printed on stderr; killed when
/// dropped.
#[derive(Debug)]
pub struct Node {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// The stderr lines read so far.
    pub seen: Vec<String>,
}

impl Node {
    /// Starts `cmd` with no stdin or stdout and reads its stderr on a
    /// thread (so the process never blocks on a full pipe).
    pub fn spawn(mut cmd: Command) -> Node {
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
    pub fn wait_for(&mut self, parts: &[&str]) -> String {
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

    /// Waits for `troupe serve` to say where it listens; that base URL
    /// (`http://127.0.0.1:PORT`).
    pub fn serve_url(&mut self) -> String {
        let line = self.wait_for(&["troupe serve: http://"]);
        let (_, rest) = line
            .split_once("troupe serve: ")
            .expect("the line holds the prefix it was found by");
        rest.split_whitespace()
            .next()
            .expect("an address after the prefix")
            .to_string()
    }

    /// Waits for the process to exit on its own; its status and stderr.
    pub fn exit(mut self) -> (ExitStatus, String) {
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
