//! The web dashboard of `troupe serve`, in a real browser: Debian's chromium,
//! headless, driven through chromedriver. The troupe behind it runs the
//! scripted fib backend with `[approval] execute = "ask"`, so the fib job's
//! shell step waits for a person. Screenshots of every page are kept in
//! `target/dashboard-screenshots/`.

use crate::dashboard_support;

use dashboard_support::{start, Browser, Server, API_KEY, JOB, MODEL};
use serde_json::Value;

/// A job whose text is markup: it must show as these very characters.
const MARKUP_JOB: &str = "<script>alert(1)</script> <b>bold?</b> write a Python fibonacci function";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_the_troupe_from_the_browser() {
    let server = start(tempfile::tempdir().expect("temp dir"), 0).await;
    let browser = Browser::start().await;

    log_in(&browser, &server).await;

    // Submit a job whose text is markup: it shows as text, and runs.
    browser.wait_for("#submit-form").await;
    browser.wait_for("#model option[value='fib']").await;
    browser.type_into("#job", MARKUP_JOB).await;
    browser.click("#submit").await;
    let row = browser.wait_for("#tasks tbody tr[data-task-id]").await;
    let id = row
        .attr("data-task-id")
        .await
        .expect("attr")
        .expect("a task id");
    assert_eq!(
        browser
            .text(&format!("tr[data-task-id='{id}'] td.job"))
            .await,
        MARKUP_JOB
    );
    assert_no_injection(&browser).await;
    // The shell step waits for approval: the task is running, shown live.
    browser
        .wait_for(&format!(
            "tr[data-task-id='{id}'] .state[data-state='running']"
        ))
        .await;
    browser.screenshot("tasks").await;

    // On the task page, approve the shell call and watch the task finish,
    // without reloading.
    browser.click(&format!("tr[data-task-id='{id}'] a")).await;
    let card = browser
        .wait_for("#task-approvals:not([hidden]) .approval")
        .await;
    let args = card
        .find(fantoccini::Locator::Css("pre.args"))
        .await
        .expect("arguments shown")
        .text()
        .await
        .expect("text");
    assert!(args.contains("unittest"), "{args}");
    assert_eq!(browser.text("#task-request").await, MARKUP_JOB);
    assert_no_injection(&browser).await;
    browser.screenshot("task-waiting-for-approval").await;
    let marker = browser
        .eval("window.notReloaded = true; return window.notReloaded;")
        .await;
    assert_eq!(marker, Value::Bool(true));
    browser.click("#task-approvals .approve").await;
    browser
        .wait_for("#task-state[data-state='succeeded']")
        .await;
    assert_eq!(
        browser.eval("return window.notReloaded === true;").await,
        Value::Bool(true),
        "the page was reloaded"
    );
    browser.wait_text("#task-answer", "fib").await;
    browser
        .wait_for("#plan li[data-subtask='s2'] .state[data-state='succeeded']")
        .await;
    browser
        .wait_for("#journal li[data-kind='approval_decided']")
        .await;
    assert!(browser.text("#steps").await.contains("shell"));
    // The workspace: a file's text and a checkpoint's diff.
    browser.click("#files button[data-path='src/fib.py']").await;
    browser.wait_text("#file-view", "def fib(n)").await;
    let checkpoint = "//ol[@id='checkpoints']//button[contains(., 's1') and contains(., 'step 1')]";
    browser.click_xpath(checkpoint).await;
    browser.wait_text("#diff", "+def fib(n):").await;
    browser.screenshot("task").await;

    deny_on_the_approvals_page(&browser, &server).await;

    visit_chat_models_and_learner(&browser, &server).await;

    // A server restart: the open page reconnects and shows new work live.
    browser.goto(&server.url("/tasks")).await;
    browser.wait_for("#live[data-state='live']").await;
    browser
        .eval("window.notReloaded = true; return true;")
        .await;
    let port = server.port();
    let dir = server.stop().await;
    browser.wait_for("#live[data-state='reconnecting']").await;
    let server = start(dir, port).await;
    browser.wait_for("#live[data-state='live']").await;
    let third = server.submit(JOB).await;
    browser
        .wait_for(&format!("tr[data-task-id='{third}']"))
        .await;
    assert_eq!(
        browser.eval("return window.notReloaded === true;").await,
        Value::Bool(true),
        "the page was reloaded"
    );
    browser.screenshot("tasks-after-restart").await;

    browser.close().await;
    server.stop().await;
}

/// Without the key only the login page is reachable, and a wrong key is
/// refused; then the right key logs in.
async fn log_in(browser: &Browser, server: &Server) {
    browser.goto(&server.url("/tasks")).await;
    browser.wait_for("#login-form").await;
    assert!(browser.url().await.contains("/login?next=/tasks"));
    browser.screenshot("login").await;
    browser.type_into("#key", "not-the-key").await;
    browser.click("#login-form button").await;
    browser.wait_for("#login-error").await;
    browser.type_into("#key", API_KEY).await;
    browser.click("#login-form button").await;
}

/// The approvals page: a second job's shell call, denied; the task sees it.
async fn deny_on_the_approvals_page(browser: &Browser, server: &Server) {
    let second = server.submit(JOB).await;
    browser.goto(&server.url("/approvals")).await;
    let card = format!(".approval[data-task-id='{second}']");
    browser.wait_for(&card).await;
    browser.screenshot("approvals").await;
    browser
        .type_into(&format!("{card} input.reason"), "not today")
        .await;
    browser.click(&format!("{card} .deny")).await;
    browser.wait_gone(&card).await;
    let decided = server
        .wait_journal(&second, |e| e["type"] == "approval_decided")
        .await;
    assert_eq!(decided["event"]["approved"], false, "{decided}");
    // Journaled with who answered: the person in the dashboard.
    assert_eq!(decided["event"]["by"], "dashboard", "{decided}");
    let observed = server
        .wait_journal(&second, |e| {
            e["type"] == "step_observed" && e["step"] == 3 && e["is_error"] == true
        })
        .await;
    assert!(
        observed["event"]["observation"]
            .as_str()
            .is_some_and(|o| o.contains("not today")),
        "{observed}"
    );
}

/// Chat with the UX, the models page and the Learner's page.
async fn visit_chat_models_and_learner(browser: &Browser, server: &Server) {
    // Chat with the UX.
    browser.goto(&server.url("/chat")).await;
    browser.type_into("#chat-text", "hello there").await;
    browser.click("#chat-send").await;
    browser.wait_for("#messages li.user").await;
    browser.wait_for("#messages li.assistant").await;
    browser.screenshot("chat").await;

    // Models: the catalog, the gauge, the timeline of loads.
    browser.goto(&server.url("/models")).await;
    browser
        .wait_for(&format!("#catalog tr[data-model='{MODEL}']"))
        .await;
    browser.wait_text("#gauge-text", "budget").await;
    browser.screenshot("models").await;

    // Learner: the outcome table and its chart.
    browser.goto(&server.url("/learner")).await;
    browser.wait_for("#outcomes tbody tr").await;
    browser.wait_for("#chart svg rect.bar").await;
    browser.wait_for("#choices tbody tr").await;
    browser.screenshot("learner").await;
}

/// No alert opened and no element the task text described was created.
async fn assert_no_injection(browser: &Browser) {
    assert!(!browser.alert_open().await, "an alert opened");
    let injected = browser
        .eval("return document.querySelectorAll('main script, main b').length;")
        .await;
    assert_eq!(injected, Value::from(0), "markup from a task was rendered");
}

#[tokio::test]
async fn without_the_key_only_the_login_page_answers() {
    let server = start(tempfile::tempdir().expect("temp dir"), 0).await;
    let http = server.http();

    let page = http
        .get(server.url("/tasks"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status().as_u16(), 303);
    assert_eq!(page.headers()["location"], "/login?next=/tasks");
    for path in [
        "/api/tasks",
        "/api/dashboard/events",
        "/api/learner",
        "/chat",
    ] {
        let response = http.get(server.url(path)).send().await.expect("sent");
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    let login = http.get(server.url("/login")).send().await.expect("sent");
    assert_eq!(login.status().as_u16(), 200);
    let asset = http
        .get(server.url("/assets/app.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(asset.status().as_u16(), 200);

    let wrong = http
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=nope&next=%2Fmodels")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = http
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "key={API_KEY}&next=https%3A%2F%2Felsewhere.example%2F"
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(right.status().as_u16(), 303);
    assert_eq!(right.headers()["location"], "/", "no open redirect");
    let cookie = right.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().expect("name=value").to_string();

    the_session_opens_the_api_and_pages_are_escaped(http, &server, &session).await;

    // The cookie is a session token, not the key (hex or plain), and
    // logging out ends it.
    let hex_key: String = API_KEY.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !session.contains(API_KEY) && !session.contains(&hex_key),
        "{session}"
    );
    let out = http
        .post(server.url("/logout"))
        .header("cookie", &session)
        .send()
        .await
        .expect("sent");
    assert_eq!(out.status().as_u16(), 303);
    let after = http
        .get(server.url("/api/tasks"))
        .header("cookie", &session)
        .send()
        .await
        .expect("sent");
    assert_eq!(after.status().as_u16(), 401, "the session ended");

    // Failed logins are limited: after 5 wrong keys within a minute even
    // the right one waits (429).
    let login = |key: &str| {
        http.post(server.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("key={key}"))
            .send()
    };
    for _ in 0..4 {
        let wrong = login("guess").await.expect("sent");
        assert_eq!(wrong.status().as_u16(), 401);
    }
    let limited = login(API_KEY).await.expect("sent");
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().get("set-cookie").is_none());

    server.stop().await;
}

/// The cookie opens the API and the event stream, which says when to
/// reconnect and ids its events; what the server writes into a page is
/// escaped.
async fn the_session_opens_the_api_and_pages_are_escaped(
    http: &reqwest::Client,
    server: &Server,
    session: &str,
) {
    let tasks = http
        .get(server.url("/api/tasks"))
        .header("cookie", session)
        .send()
        .await
        .expect("sent");
    assert_eq!(tasks.status().as_u16(), 200);
    let mut stream = http
        .get(server.url("/api/dashboard/events"))
        .header("cookie", session)
        .send()
        .await
        .expect("sent");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = stream.chunk().await.expect("readable").expect("more");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("retry: 2000"), "{text}");
    assert!(text.contains("event: hello"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("id: ")), "{text}");
    drop(stream);

    // What the server writes into a page is escaped.
    let page = http
        .get(server.url("/tasks/%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        .header("cookie", session)
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.expect("body");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
}
