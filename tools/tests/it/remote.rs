//! Tools that reach beyond the workspace: git (local operations and a
//! remote, here a local bare repository), HTTP and web search (against a
//! local server on 127.0.0.1; nothing here contacts the internet).

use crate::common;

use axum::extract::Query;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use troupe_tools::git::{GitOp, GitTool};
use troupe_tools::http::{HostAllowList, HttpEnv, HttpTool};
use troupe_tools::search::{parse_duckduckgo_html, DuckDuckGoHtml, WebSearch};
use troupe_tools::{Tool, ToolRegistry};

fn git_tools(remote: Option<&str>) -> ToolRegistry {
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    for op in GitOp::LOCAL.into_iter().chain(GitOp::REMOTE) {
        tools.push(Arc::new(GitTool::new(op, remote)));
    }
    common::registry(tools, 64 * 1024)
}

#[tokio::test]
async fn status_diff_commit_and_log_on_the_workspace() {
    let (_d, ws) = common::workspace("git-local");
    let r = git_tools(None);
    let obs = common::call(&r, &ws, "git_status", json!({})).await;
    assert_eq!(obs.text, "nothing changed since the last commit");

    std::fs::write(ws.root().join("output/result.txt"), "forty-two\n").unwrap();
    std::fs::write(ws.root().join("README.md"), "# notes\n").unwrap();
    let obs = common::call(&r, &ws, "git_status", json!({})).await;
    assert_eq!(obs.text, "modified: README.md\nnew: output/result.txt");

    let obs = common::call(&r, &ws, "git_diff", json!({ "path": "output" })).await;
    assert!(obs.text.contains("+forty-two"), "{}", obs.text);
    assert!(!obs.text.contains("README"), "{}", obs.text);

    let obs = common::call(
        &r,
        &ws,
        "git_commit",
        json!({ "message": "checkpoint: fake" }),
    )
    .await;
    assert!(obs.is_error);
    let obs = common::call(
        &r,
        &ws,
        "git_commit",
        json!({ "message": "Record the result" }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    let obs = common::call(&r, &ws, "git_log", json!({ "max_count": 1 })).await;
    assert!(
        obs.text.ends_with("(troupe): Record the result"),
        "{}",
        obs.text
    );
    let obs = common::call(&r, &ws, "git_status", json!({})).await;
    assert_eq!(obs.text, "nothing changed since the last commit");
    // The model's own commits are not checkpoints.
    assert_eq!(ws.checkpoints().unwrap().len(), 1);

    let obs = common::call(&r, &ws, "git_status", json!({ "repo": "src" })).await;
    assert!(obs.is_error);
    assert_eq!(obs.text, "`src` is not a git repository");
    let obs = common::call(&r, &ws, "git_push", json!({})).await;
    assert!(obs.is_error);
    assert!(
        obs.text.contains("no git remote is configured"),
        "{}",
        obs.text
    );
}

#[tokio::test]
async fn clone_pull_and_push_against_a_bare_repository() {
    let remote_dir = tempfile::tempdir().unwrap();
    let bare = remote_dir.path().join("shared.git");
    let mut init = git2::RepositoryInitOptions::new();
    init.bare(true).initial_head("main");
    git2::Repository::init_opts(&bare, &init).unwrap();
    let url = bare.display().to_string();
    let r = git_tools(Some(&url));
    let (_da, a) = common::workspace("git-a");
    let (_db, b) = common::workspace("git-b");

    // A publishes its workspace.
    std::fs::write(a.root().join("src/x.txt"), "x1\n").unwrap();
    common::call(&r, &a, "git_commit", json!({ "message": "x1" })).await;
    let obs = common::call(&r, &a, "git_push", json!({})).await;
    assert!(!obs.is_error, "{}", obs.text);

    // B clones it into a folder of its own workspace.
    let obs = common::call(&r, &b, "git_clone", json!({ "dest": "src/project" })).await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(obs.data["branch"], "main");
    assert_eq!(
        std::fs::read_to_string(b.root().join("src/project/src/x.txt")).unwrap(),
        "x1\n"
    );
    let obs = common::call(&r, &b, "git_clone", json!({ "dest": "src/project" })).await;
    assert!(obs.is_error);
    assert!(obs.text.contains("already exists"), "{}", obs.text);

    // A moves on; B fast-forwards.
    std::fs::write(a.root().join("src/x.txt"), "x2\n").unwrap();
    common::call(&r, &a, "git_commit", json!({ "message": "x2" })).await;
    assert!(!common::call(&r, &a, "git_push", json!({})).await.is_error);
    let obs = common::call(&r, &b, "git_pull", json!({ "repo": "src/project" })).await;
    assert_eq!(obs.data["result"], "fast_forward", "{}", obs.text);
    assert_eq!(
        std::fs::read_to_string(b.root().join("src/project/src/x.txt")).unwrap(),
        "x2\n"
    );

    // Both change different files; B's push is refused until it pulls.
    std::fs::write(a.root().join("src/x.txt"), "x3\n").unwrap();
    common::call(&r, &a, "git_commit", json!({ "message": "x3" })).await;
    assert!(!common::call(&r, &a, "git_push", json!({})).await.is_error);
    std::fs::write(b.root().join("src/project/src/y.txt"), "y1\n").unwrap();
    common::call(
        &r,
        &b,
        "git_commit",
        json!({ "repo": "src/project", "message": "y1" }),
    )
    .await;
    let obs = common::call(&r, &b, "git_push", json!({ "repo": "src/project" })).await;
    assert!(obs.is_error, "{}", obs.text);
    let obs = common::call(&r, &b, "git_pull", json!({ "repo": "src/project" })).await;
    assert_eq!(obs.data["result"], "merge", "{}", obs.text);
    let project = b.root().join("src/project/src");
    assert_eq!(
        std::fs::read_to_string(project.join("x.txt")).unwrap(),
        "x3\n"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("y.txt")).unwrap(),
        "y1\n"
    );
    let obs = common::call(&r, &b, "git_push", json!({ "repo": "src/project" })).await;
    assert!(!obs.is_error, "{}", obs.text);

    // A gets B's work.
    let obs = common::call(&r, &a, "git_pull", json!({})).await;
    assert_eq!(obs.data["result"], "fast_forward", "{}", obs.text);
    assert_eq!(
        std::fs::read_to_string(a.root().join("src/y.txt")).unwrap(),
        "y1\n"
    );

    // A workspace holding a clone can still be checkpointed and restored;
    // the clone keeps its own history and is left as it is.
    std::fs::write(b.root().join("research/notes.md"), "n\n").unwrap();
    let id = b.checkpoint("after the clone").unwrap();
    let repo = b.repo().unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    assert!(tree
        .get_path(std::path::Path::new("research/notes.md"))
        .is_ok());
    assert!(tree.get_path(std::path::Path::new("src/project")).is_err());
    std::fs::write(b.root().join("research/notes.md"), "changed\n").unwrap();
    b.restore(&id).unwrap();
    assert_eq!(
        std::fs::read_to_string(b.root().join("research/notes.md")).unwrap(),
        "n\n"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("y.txt")).unwrap(),
        "y1\n"
    );
}

async fn serve() -> String {
    async fn search(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
        let query = q.get("q").cloned().unwrap_or_default();
        let page = DDG_PAGE.replace("{QUERY}", &query);
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page)
    }
    async fn echo(headers: HeaderMap, body: String) -> impl IntoResponse {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        format!("got {ct}: {body}")
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app =
        axum::Router::new()
            .route("/hello", get(|| async { "hello world" }))
            .route("/big", get(|| async { "a".repeat(100_000) }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    "late"
                }),
            )
            .route(
                "/missing",
                get(|| async { (StatusCode::NOT_FOUND, "no such page") }),
            )
            .route("/echo", post(echo))
            .route(
                "/redirect",
                get(move || async move {
                    Redirect::temporary(&format!("http://localhost:{port}/hello"))
                }),
            )
            .route("/html/", get(search));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}")
}

fn http_tools(base: &str) -> ToolRegistry {
    let env = HttpEnv::new(
        HostAllowList::new(["127.0.0.1"]),
        1000,
        Duration::from_secs(2),
    )
    .unwrap();
    let ddg =
        DuckDuckGoHtml::new(&format!("{base}/html/"), Duration::from_secs(5), 1 << 20).unwrap();
    common::registry(
        vec![
            Arc::new(HttpTool::get(env.clone())),
            Arc::new(HttpTool::post(env)),
            Arc::new(WebSearch::new(Arc::new(ddg))),
        ],
        64 * 1024,
    )
}

#[tokio::test]
async fn http_reaches_allowed_hosts_only_within_its_limits() {
    let base = serve().await;
    let (_d, ws) = common::workspace("http");
    let r = http_tools(&base);

    let obs = common::call(
        &r,
        &ws,
        "http_get",
        json!({ "url": format!("{base}/hello") }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert!(obs.text.starts_with("HTTP 200 OK from"), "{}", obs.text);
    assert!(obs.text.ends_with("\nhello world"), "{}", obs.text);
    assert_eq!(obs.data["status"], 200);

    let obs = common::call(
        &r,
        &ws,
        "http_post",
        json!({ "url": format!("{base}/echo"), "body": "{\"a\": 1}" }),
    )
    .await;
    assert!(
        obs.text.ends_with("got application/json: {\"a\": 1}"),
        "{}",
        obs.text
    );
    let obs = common::call(
        &r,
        &ws,
        "http_post",
        json!({ "url": format!("{base}/echo"), "body": "plain words" }),
    )
    .await;
    assert!(
        obs.text
            .ends_with("got text/plain; charset=utf-8: plain words"),
        "{}",
        obs.text
    );

    let obs = common::call(&r, &ws, "http_get", json!({ "url": "http://example.com/" })).await;
    assert!(obs.is_error);
    assert_eq!(
        obs.text,
        "the host `example.com` is not on the allow-list (allowed: 127.0.0.1)"
    );

    let obs = common::call(
        &r,
        &ws,
        "http_get",
        json!({ "url": format!("{base}/redirect") }),
    )
    .await;
    assert!(obs.is_error);
    assert!(
        obs.text
            .contains("a redirect led to `localhost`, which is not on the allow-list"),
        "{}",
        obs.text
    );

    let obs = common::call(&r, &ws, "http_get", json!({ "url": format!("{base}/big") })).await;
    assert!(obs.truncated);
    assert!(
        obs.text
            .ends_with("[output truncated: 1000 of 100000 bytes shown]"),
        "{}",
        obs.text
    );

    let obs = common::call(
        &r,
        &ws,
        "http_get",
        json!({ "url": format!("{base}/slow") }),
    )
    .await;
    assert!(obs.is_error);
    assert_eq!(obs.data["timed_out"], true, "{}", obs.text);
    assert!(obs.text.contains("timed out after 2 s"), "{}", obs.text);

    let obs = common::call(
        &r,
        &ws,
        "http_get",
        json!({ "url": format!("{base}/missing") }),
    )
    .await;
    assert!(obs.is_error);
    assert!(
        obs.text.starts_with("HTTP 404 Not Found") && obs.text.ends_with("no such page"),
        "{}",
        obs.text
    );

    let obs = common::call(&r, &ws, "http_get", json!({ "url": "file:///etc/passwd" })).await;
    assert!(obs.is_error);
    assert!(obs.text.contains("only http and https"), "{}", obs.text);
}

const DDG_PAGE: &str = r#"<!DOCTYPE html><html><body><div id="links" class="results">
<div class="result results_links results_links_deep result--ad">
  <h2 class="result__title"><a rel="nofollow" class="result__a" href="https://duckduckgo.com/y.js?ad_domain=shop.example&amp;u3=x">Buy things</a></h2>
  <a class="result__snippet" href="https://duckduckgo.com/y.js?x">An advert.</a>
</div>
<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title">
      <a rel="nofollow" class="result__a" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fwww.rust-lang.org%2Flearn&amp;rut=abc">Learn <b>Rust</b> &amp; {QUERY}</a>
    </h2>
    <div class="result__extras"><div class="result__extras__url"><a class="result__url" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fwww.rust-lang.org%2Flearn">www.rust-lang.org/learn</a></div></div>
    <a class="result__snippet" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fwww.rust-lang.org%2Flearn">Get started with <b>Rust</b>: the book, Rust by Example &#x27;and more&#x27;.</a>
    <div class="clear"></div>
  </div>
</div>
<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a class="result__a" rel="nofollow" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fdoc.rust-lang.org%2Fbook%2F&amp;rut=def">The Rust Programming Language</a></h2>
    <a class="result__snippet" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fdoc.rust-lang.org%2Fbook%2F">by Steve Klabnik and Carol Nichols.</a>
  </div>
</div>
</div></body></html>"#;

#[test]
fn a_duckduckgo_results_page_is_parsed_without_ads() {
    let results = parse_duckduckgo_html(&DDG_PAGE.replace("{QUERY}", "q"));
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].title, "Learn Rust & q");
    assert_eq!(results[0].url, "https://www.rust-lang.org/learn");
    assert_eq!(
        results[0].snippet,
        "Get started with Rust: the book, Rust by Example 'and more'."
    );
    assert_eq!(results[1].url, "https://doc.rust-lang.org/book/");
    assert_eq!(results[1].snippet, "by Steve Klabnik and Carol Nichols.");
}

#[tokio::test]
async fn web_search_asks_the_provider_and_lists_results() {
    let base = serve().await;
    let (_d, ws) = common::workspace("search");
    let r = http_tools(&base);
    let obs = common::call(
        &r,
        &ws,
        "web_search",
        json!({ "query": "async traits", "max_results": 1 }),
    )
    .await;
    assert!(!obs.is_error, "{}", obs.text);
    assert_eq!(
        obs.text,
        "1. Learn Rust & async traits\n   https://www.rust-lang.org/learn\n   Get started with Rust: the book, Rust by Example 'and more'."
    );
    assert_eq!(obs.data["results"].as_array().unwrap().len(), 1);

    // A provider that cannot be reached is an observation, not a crash.
    let dead =
        DuckDuckGoHtml::new("http://127.0.0.1:9/html/", Duration::from_secs(2), 1000).unwrap();
    let r = common::registry(vec![Arc::new(WebSearch::new(Arc::new(dead)))], 4096);
    let obs = common::call(&r, &ws, "web_search", json!({ "query": "x" })).await;
    assert!(obs.is_error);
    assert!(
        obs.text.starts_with("DuckDuckGo search failed"),
        "{}",
        obs.text
    );
}

/// A nested repository written to aim git at the host (attack 1 of the
/// hostile-model review): its git dir or working tree outside the
/// workspace, or a folder without its own repository (no discovery of a
/// parent's).
#[tokio::test]
async fn git_tools_refuse_repositories_that_point_outside_the_workspace() {
    let (data, ws) = common::workspace("git-escape");
    let r = git_tools(None);
    // core.worktree = / in a nested repository's config.
    let x = ws.root().join("x");
    let repo = git2::Repository::init(&x).unwrap();
    repo.config()
        .unwrap()
        .set_str("core.worktree", "/")
        .unwrap();
    let obs = common::call(
        &r,
        &ws,
        "git_diff",
        json!({ "repo": "x", "path": "etc/passwd" }),
    )
    .await;
    assert!(obs.is_error, "{}", obs.text);
    assert!(
        obs.text.contains("working tree is set elsewhere"),
        "{}",
        obs.text
    );
    assert!(!obs.text.contains("root:"), "{}", obs.text);
    // A `.git` file naming a repository outside.
    let elsewhere = data.path().join("elsewhere");
    git2::Repository::init(&elsewhere).unwrap();
    std::fs::create_dir_all(ws.root().join("sub")).unwrap();
    std::fs::write(
        ws.root().join("sub/.git"),
        format!("gitdir: {}\n", elsewhere.join(".git").display()),
    )
    .unwrap();
    let obs = common::call(
        &r,
        &ws,
        "git_commit",
        json!({ "repo": "sub", "message": "in" }),
    )
    .await;
    assert!(obs.is_error, "{}", obs.text);
    assert!(
        obs.text.contains("git directory lies outside"),
        "{}",
        obs.text
    );
    // A plain folder: no discovery of the workspace's own repository.
    std::fs::create_dir_all(ws.root().join("plain")).unwrap();
    let obs = common::call(&r, &ws, "git_status", json!({ "repo": "plain" })).await;
    assert!(obs.is_error, "{}", obs.text);
    assert!(obs.text.contains("is not a git repository"), "{}", obs.text);
}
