//! The `[mcp]` section: servers read from the file, defaults, and the errors
//! a person sees for bad entries.

use std::time::Duration;
use troupe_config::mcp::{McpRisk, McpTransport};

use crate::common;
use common::{invalid_key, load_text};

#[test]
fn no_section_means_no_servers() {
    let cfg = load_text("").unwrap();
    assert!(cfg.mcp.servers.is_empty());
}

#[test]
fn stdio_and_http_servers_are_read_with_defaults() {
    let cfg = load_text(
        r#"
[[mcp.servers]]
name = "everything"
command = "npx"
args = ["-y", "@modelcontextprotocol/server-everything"]
env = { LOG_LEVEL = "warn" }

[[mcp.servers]]
name = "remote"
url = "http://127.0.0.1:3001/mcp"
bearer_token = "secret"
risk = "network"
enabled = false
backoff_ms = 100
backoff_max_ms = 1000
call_timeout_s = 5
"#,
    )
    .unwrap();
    let [everything, remote] = &cfg.mcp.servers[..] else {
        panic!("two servers expected: {:?}", cfg.mcp.servers);
    };
    assert_eq!(everything.name, "everything");
    assert_eq!(everything.risk, McpRisk::Execute);
    assert!(everything.enabled);
    match &everything.transport {
        McpTransport::Stdio {
            command, args, env, ..
        } => {
            assert_eq!(command, "npx");
            assert_eq!(args.len(), 2);
            assert_eq!(env.get("LOG_LEVEL").map(String::as_str), Some("warn"));
        }
        other => panic!("stdio expected, got {other:?}"),
    }
    assert_eq!(remote.risk, McpRisk::Network);
    assert!(!remote.enabled);
    assert_eq!(remote.backoff, Duration::from_millis(100));
    assert_eq!(remote.call_timeout, Duration::from_secs(5));
    assert!(matches!(
        &remote.transport,
        McpTransport::Http { url, bearer_token: Some(t) } if url == "http://127.0.0.1:3001/mcp" && t == "secret"
    ));
    let enabled: Vec<&str> = cfg.mcp.enabled().map(|s| s.name.as_str()).collect();
    assert_eq!(enabled, ["everything"]);
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let err = load_text("[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nrisky = \"read\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("risky"), "{err}");
}

#[test]
fn bad_entries_name_the_key_and_say_why() {
    let cases = [
        ("name = \"a\"", "mcp.servers[0].command", "needs `command`"),
        (
            "name = \"a\"\ncommand = \"x\"\nurl = \"http://h/mcp\"",
            "mcp.servers[0].url",
            "not both",
        ),
        (
            "name = \"a b\"\ncommand = \"x\"",
            "mcp.servers[0].name",
            "letters",
        ),
        ("command = \"x\"", "mcp.servers[0].name", "required"),
        (
            "name = \"a\"\ncommand = \"x\"\nrisk = \"scary\"",
            "mcp.servers[0].risk",
            "read, write, execute, network",
        ),
        (
            "name = \"a\"\nurl = \"ftp://h\"",
            "mcp.servers[0].url",
            "http",
        ),
        (
            "name = \"a\"\nurl = \"http://h/mcp\"\nargs = [\"x\"]",
            "mcp.servers[0].args",
            "stdio",
        ),
        (
            "name = \"a\"\nurl = \"http://h/mcp\"\nnetwork = false",
            "mcp.servers[0].network",
            "stdio",
        ),
        (
            "name = \"a\"\nurl = \"http://h/mcp\"\nread = [\"/x\"]",
            "mcp.servers[0].read",
            "stdio",
        ),
        (
            "name = \"a\"\ncommand = \"x\"\nbackoff_ms = 5000\nbackoff_max_ms = 10",
            "mcp.servers[0].backoff_ms",
            "more than",
        ),
    ];
    for (body, key, why) in cases {
        let (k, reason) =
            invalid_key(load_text(&format!("[[mcp.servers]]\n{body}\n")).unwrap_err());
        assert_eq!(k, key, "for {body}");
        assert!(reason.contains(why), "for {body}: {reason}");
    }
    let (k, reason) = invalid_key(
        load_text("[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\n[[mcp.servers]]\nname = \"a\"\ncommand = \"y\"\n")
            .unwrap_err(),
    );
    assert_eq!(k, "mcp.servers[1].name");
    assert!(reason.contains("two servers"), "{reason}");
}

#[test]
fn a_stdio_servers_sandbox_grant_is_read() {
    let cfg = load_text(
        r#"
[[mcp.servers]]
name = "closed"
command = "node"

[[mcp.servers]]
name = "fetcher"
command = "node"
risk = "network"
read = ["/srv/mcp", "lib"]
write = ["notes"]

[[mcp.servers]]
name = "explicit"
command = "node"
risk = "network"
network = false
"#,
    )
    .unwrap();
    let grant = |i: usize| match &cfg.mcp.servers[i].transport {
        McpTransport::Stdio { sandbox, .. } => sandbox.clone(),
        other => panic!("stdio expected, got {other:?}"),
    };
    let closed = grant(0);
    assert!(!closed.network && closed.read.is_empty() && closed.write.is_empty());
    let fetcher = grant(1);
    assert!(
        fetcher.network,
        "risk = \"network\" opens the network by default"
    );
    assert_eq!(fetcher.read[0], std::path::Path::new("/srv/mcp"));
    assert!(
        fetcher.read[1].is_absolute() && fetcher.read[1].ends_with("lib"),
        "relative to the file: {:?}",
        fetcher.read
    );
    assert!(fetcher.write[0].is_absolute() && fetcher.write[0].ends_with("notes"));
    assert!(!grant(2).network, "network = false wins over the risk");
}
