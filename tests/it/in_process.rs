//! A troupe on the scripted fib script, served over HTTP in the test's own
//! runtime through `troupe::server::Server` (what `troupe serve` runs),
//! for `tasks_support` and `dashboard_support`.

use std::path::PathBuf;

use tokio::sync::oneshot;
use troupe::server::{ServeError, ServeOptions, Server};
use troupe_testkit::{fib_script, models, ConfigFile};

/// The catalog name of the synthetic model the fib script stands in for.
pub(crate) const MODEL: &str = "fib";

/// Writes the troupe.toml of a fib-script troupe into `dir`: its data
/// there, the shared synthetic model, a 1 GiB budget, `execute` as the
/// approval policy of tools that run programs.
pub(crate) fn write_config(dir: &std::path::Path, execute: &str) -> PathBuf {
    ConfigFile::scripted(dir, &models::shared(MODEL), &fib_script())
        .own_caches()
        .with(&format!(
            "[serve]\nmemory_budget = \"1GiB\"\n\n[agents]\nmodel = \"{MODEL}\"\n\n\
             [approval]\nexecute = \"{execute}\"\n"
        ))
        .write()
}

/// A running server over a test's directory.
pub(crate) struct Running {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its port, to start the next server on.
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), ServeError>>,
    dir: tempfile::TempDir,
}

/// Serves the fib-script troupe of `dir` on 127.0.0.1:`port` (0: any free
/// one), with `key` as its bearer key.
pub(crate) async fn start(
    dir: tempfile::TempDir,
    execute: &str,
    port: u16,
    key: Option<&str>,
) -> Running {
    let mut config = troupe_testkit::load(&write_config(dir.path(), execute));
    config.serve.addr = ([127, 0, 0, 1], port).into();
    config.serve.api_key = key.map(str::to_string);
    let server = Server::bind(config, ServeOptions::default())
        .await
        .expect("troupe starts and listens");
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        base: format!("http://{addr}"),
        port: addr.port(),
        stop: Some(stop),
        done,
        dir,
    }
}

impl Running {
    /// Stops the server and the troupe; hands back the data dir.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.done)
            .await
            .expect("server task")
            .expect("server ran");
        self.dir
    }
}
