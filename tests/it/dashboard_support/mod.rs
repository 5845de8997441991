//! The harness of `tests/it/dashboard.rs`: a troupe over the scripted fib
//! script served on a loopback port (restartable on the same port), and
//! Debian's chromium driven through chromedriver by WebDriver.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::in_process::{self, Running};

/// The key the server is started with.
pub(crate) const API_KEY: &str = "dashboard-key-7f3a";
/// The job the fib script answers (the script matches any job).
pub(crate) const JOB: &str = "write a Python fibonacci function with tests";
pub(crate) use crate::in_process::MODEL;

/// How long a wait for the page lasts before the test fails (not a speed
/// bound: a generous limit so that a broken page fails instead of hanging).
const WAIT: Duration = Duration::from_secs(120);

/// A troupe served over HTTP with [`API_KEY`].
pub(crate) struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::Client,
    running: Running,
}

/// Starts a server over the data dir in `dir` on `port` (0: any free one).
pub(crate) async fn start(dir: tempfile::TempDir, port: u16) -> Server {
    let running = in_process::start(dir, "ask", port, Some(API_KEY)).await;
    Server {
        base: running.base.clone(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        running,
    }
}

impl Server {
    /// The full URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The port, to start the next server on.
    pub(crate) fn port(&self) -> u16 {
        self.running.port
    }

    /// A client that follows no redirects, for checking them.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET with the key: status and JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Submits `job` through the API; its id.
    pub(crate) async fn submit(&self, job: &str) -> String {
        let response = self
            .http
            .post(self.url("/api/tasks"))
            .bearer_auth(API_KEY)
            .json(&json!({ "request": job }))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("an id").to_string()
    }

    /// Waits until task `id`'s journal holds an entry that `found` accepts.
    pub(crate) async fn wait_journal(&self, id: &str, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, task) = self.get(&format!("/api/tasks/{id}")).await;
            if let Some(entry) = task["events"]
                .as_array()
                .and_then(|events| events.iter().find(|e| found(&e["event"])))
            {
                return entry.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the journal never got there: {task}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the server and the troupe; hands back the data dir.
    pub(crate) async fn stop(self) -> tempfile::TempDir {
        self.running.stop().await
    }
}

/// Headless chromium under chromedriver.
pub(crate) struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    troupe_testkit::free_port().port()
}

/// Where the screenshots go: `target/dashboard-screenshots/`.
pub(crate) fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("dashboard-screenshots")
}

impl Browser {
    /// Starts chromedriver and a fresh chromium profile.
    pub(crate) async fn start() -> Browser {
        for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: the dashboard tests drive Debian's chromium; \
                 install it with `bash scripts/install-deps.sh` \
                 (apt-get install chromium chromium-driver)"
            );
        }
        let port = free_port();
        let driver = tokio::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut tries = 0;
        let client = loop {
            let connected = ClientBuilder::rustls()
                .expect("TLS roots")
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match connected {
                Ok(client) => break client,
                Err(error) if tries < 100 => {
                    tries += 1;
                    if tries % 20 == 0 {
                        eprintln!("waiting for chromedriver: {error}");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("chromedriver did not start chromium: {error}"),
            }
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Navigates to `url`.
    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    /// The first element matching `css`, waiting for it to appear.
    pub(crate) async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(error) => panic!(
                "no `{css}` on the page: {error}\n{}",
                self.body_text().await
            ),
        }
    }

    /// The first element matching `xpath`, waiting for it to appear.
    pub(crate) async fn wait_for_xpath(&self, xpath: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(100))
            .for_element(Locator::XPath(xpath))
            .await
        {
            Ok(element) => element,
            Err(error) => panic!(
                "no `{xpath}` on the page: {error}\n{}",
                self.body_text().await
            ),
        }
    }

    /// Waits until no element matches `css`.
    pub(crate) async fn wait_gone(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .is_empty()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{css}` stayed on the page"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element matching `css` shows text containing `text`.
    pub(crate) async fn wait_text(&self, css: &str, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let shown = self.text(css).await;
            if shown.contains(text) {
                return shown;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{css}` never showed {text:?}; it shows {shown:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css` (empty when none).
    pub(crate) async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Clicks the element matching `css`.
    pub(crate) async fn click(&self, css: &str) {
        self.click_found(css, || self.wait_for(css)).await;
    }

    /// Clicks the element matching `xpath`.
    pub(crate) async fn click_xpath(&self, xpath: &str) {
        self.click_found(xpath, || self.wait_for_xpath(xpath)).await;
    }

    /// Clicks what `find` finds. Live pages re-render lists as events
    /// arrive, so an element found a moment ago may have been replaced by
    /// the time it is clicked: then it is found again.
    async fn click_found<F, Fut>(&self, what: &str, find: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Element>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match find().await.click().await {
                Ok(_) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("click `{what}`: {error:?}"),
            }
        }
    }

    /// Types `text` into the field matching `css`.
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("typing");
    }

    /// Runs `script` in the page and returns its value.
    pub(crate) async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .expect("script runs")
    }

    /// The current URL.
    pub(crate) async fn url(&self) -> String {
        self.client.current_url().await.expect("url").to_string()
    }

    /// Whether an alert dialog is open.
    pub(crate) async fn alert_open(&self) -> bool {
        self.client.get_alert_text().await.is_ok()
    }

    /// Saves a screenshot of the whole page as
    /// `target/dashboard-screenshots/NAME.png`.
    pub(crate) async fn screenshot(&self, name: &str) {
        // WebDriver shoots the viewport: make it as tall as the page (the
        // window is taller than its viewport, so measure and grow twice).
        let mut window = 1100;
        for _ in 0..2 {
            let sizes = self
                .eval("window.scrollTo(0, 0); return [window.innerHeight, document.documentElement.scrollHeight];")
                .await;
            let inner = sizes[0].as_u64().unwrap_or(1100);
            let page = sizes[1].as_u64().unwrap_or(1100).min(8000);
            if page <= inner {
                break;
            }
            window += u32::try_from(page - inner).unwrap_or(0);
            let _ = self.client.set_window_size(1280, window).await;
        }
        let png = self.client.screenshot().await.expect("screenshot");
        let _ = self.client.set_window_size(1280, 1100).await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }

    async fn body_text(&self) -> String {
        self.text("body").await
    }

    /// Ends the session.
    pub(crate) async fn close(self) {
        let _ = self.client.close().await;
    }
}
