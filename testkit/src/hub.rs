//! A local HTTP server that answers the requests hf-hub 1.0.0 makes for a
//! model download, so pull tests (troupe-models' `pull`, the server's
//! `/api/pull`) need no network.
//!
//! hf-hub asks for, and this server serves:
//! - `GET /api/models/{owner}/{name}/revision/{rev}`: repo info JSON with
//!   `id`, `sha` and `siblings[].rfilename` (only when no file is named);
//! - `HEAD /{owner}/{name}/resolve/{rev}/{file}`: no body, but `ETag`
//!   (the blob name), `X-Repo-Commit` (the snapshot folder) and
//!   `Content-Length` (the announced size; hf-hub fails without the first two);
//! - `GET /{owner}/{name}/resolve/{rev}/{file}`: the whole body, no `Range`.
//!
//! 404s carry `X-Error-Code` like the Hub's. A file can be set to drop the
//! connection after part of its body, after sending headers announcing all
//! of it. HTTP/1.1 keep-alive is honoured because reqwest reuses connections.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One file a repository serves.
#[derive(Debug, Clone)]
pub struct HubFile {
    /// Path in the repository.
    pub name: String,
    /// Its content.
    pub body: Vec<u8>,
    /// Send only this many bytes of the body, then close the connection.
    pub cut_after: Option<usize>,
}

impl HubFile {
    /// A file served whole.
    pub fn new(name: &str, body: Vec<u8>) -> Self {
        Self {
            name: name.to_owned(),
            body,
            cut_after: None,
        }
    }

    /// A file whose GET drops the connection after `bytes` of the body.
    pub fn cut(name: &str, body: Vec<u8>, bytes: usize) -> Self {
        Self {
            name: name.to_owned(),
            body,
            cut_after: Some(bytes),
        }
    }
}

/// One repository, at one commit reachable as `main` or by its hash.
#[derive(Debug, Clone)]
pub struct HubRepo {
    /// `owner/name`.
    pub id: String,
    /// 40-hex commit hash.
    pub commit: String,
    /// Its files.
    pub files: Vec<HubFile>,
}

impl HubRepo {
    /// A repository with a fixed commit hash derived from its id.
    pub fn new(id: &str, files: Vec<HubFile>) -> Self {
        let h = fnv64(id.as_bytes());
        Self {
            id: id.to_owned(),
            commit: format!(
                "{h:016x}{:016x}{:08x}",
                h.rotate_left(17),
                h as u32 ^ 0x5a5a_5a5a
            ),
            files,
        }
    }
}

/// The running server; dropping it stops accepting connections.
#[derive(Debug)]
pub struct HubServer {
    /// Base URL to give hf-hub as its endpoint.
    pub endpoint: String,
    requests: Arc<Mutex<Vec<String>>>,
    accept: JoinHandle<()>,
}

impl HubServer {
    /// Binds 127.0.0.1:0 and serves `repos` until dropped.
    pub async fn start(repos: Vec<HubRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let repos: Arc<BTreeMap<String, HubRepo>> =
            Arc::new(repos.into_iter().map(|r| (r.id.clone(), r)).collect());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(
                    stream,
                    Arc::clone(&repos),
                    Arc::clone(&log),
                ));
            }
        });
        Self {
            endpoint,
            requests,
            accept,
        }
    }

    /// Every request so far, as `METHOD /path`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("request log").clone()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve_connection(
    stream: TcpStream,
    repos: Arc<BTreeMap<String, HubRepo>>,
    log: Arc<Mutex<Vec<String>>>,
) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match stream.read_line(&mut request_line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // Headers are read and ignored: hf-hub sends nothing this server needs.
        loop {
            let mut header = String::new();
            match stream.read_line(&mut header).await {
                Ok(0) | Err(_) => return,
                Ok(_) if header == "\r\n" || header == "\n" => break,
                Ok(_) => {}
            }
        }
        let mut parts = request_line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let path = target.split('?').next().unwrap_or_default();
        log.lock()
            .expect("request log")
            .push(format!("{method} {path}"));
        let response = route(method, &percent_decode(path), &repos);
        let head_only = method == "HEAD";
        let mut out = format!("HTTP/1.1 {}\r\n", response.status);
        for (k, v) in &response.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", response.body.len()));
        let sock = stream.get_mut();
        if sock.write_all(out.as_bytes()).await.is_err() {
            return;
        }
        if head_only {
            continue;
        }
        let sent = response
            .cut_after
            .unwrap_or(response.body.len())
            .min(response.body.len());
        if sock.write_all(&response.body[..sent]).await.is_err() {
            return;
        }
        if response.cut_after.is_some() {
            let _ = sock.flush().await;
            let _ = sock.shutdown().await;
            return;
        }
    }
}

struct Response {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    cut_after: Option<usize>,
}

impl Response {
    fn not_found(code: &str, message: String, commit: Option<&str>) -> Self {
        let mut headers = vec![
            ("x-error-code", code.to_owned()),
            ("x-error-message", message.clone()),
            ("content-type", "application/json".to_owned()),
        ];
        if let Some(c) = commit {
            headers.push(("x-repo-commit", c.to_owned()));
        }
        Self {
            status: "404 Not Found",
            headers,
            body: serde_json::json!({ "error": message })
                .to_string()
                .into_bytes(),
            cut_after: None,
        }
    }
}

fn route(method: &str, path: &str, repos: &BTreeMap<String, HubRepo>) -> Response {
    if let Some(rest) = path.strip_prefix("/api/models/") {
        // {owner}/{name}[/revision/{rev}]
        let (id, revision) = match rest.split_once("/revision/") {
            Some((id, rev)) => (id, rev),
            None => (rest, "main"),
        };
        return match repos.get(id) {
            Some(repo) if revision == "main" || revision == repo.commit => {
                let siblings: Vec<_> = repo
                    .files
                    .iter()
                    .map(|f| serde_json::json!({ "rfilename": f.name }))
                    .collect();
                let body =
                    serde_json::json!({ "id": repo.id, "sha": repo.commit, "siblings": siblings });
                Response {
                    status: "200 OK",
                    headers: vec![("content-type", "application/json".to_owned())],
                    body: body.to_string().into_bytes(),
                    cut_after: None,
                }
            }
            Some(_) => Response::not_found(
                "RevisionNotFound",
                format!("Invalid rev id: {revision}"),
                None,
            ),
            None => Response::not_found("RepoNotFound", "Repository not found".to_owned(), None),
        };
    }
    // /{owner}/{name}/resolve/{rev}/{file...}
    let Some((id, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return Response::not_found(
            "RepoNotFound",
            format!("no route for {method} {path}"),
            None,
        );
    };
    let Some(repo) = repos.get(id) else {
        return Response::not_found("RepoNotFound", "Repository not found".to_owned(), None);
    };
    let (revision, file) = rest.split_once('/').unwrap_or((rest, ""));
    if revision != "main" && revision != repo.commit {
        return Response::not_found(
            "RevisionNotFound",
            format!("Invalid rev id: {revision}"),
            None,
        );
    }
    let Some(f) = repo.files.iter().find(|f| f.name == file) else {
        return Response::not_found(
            "EntryNotFound",
            format!("{file} does not exist"),
            Some(&repo.commit),
        );
    };
    Response {
        status: "200 OK",
        headers: vec![
            (
                "etag",
                format!("\"{:016x}{:08x}\"", fnv64(&f.body), f.body.len()),
            ),
            ("x-repo-commit", repo.commit.clone()),
            ("accept-ranges", "bytes".to_owned()),
            ("content-type", "application/octet-stream".to_owned()),
        ],
        body: f.body.clone(),
        cut_after: f.cut_after,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// FNV-1a: a stable stand-in for the Hub's sha256 ETags.
fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
