//! The `[tools]` and `[approval]` sections: defaults, values read, and the
//! errors a person sees for bad values.

use std::time::Duration;
use troupe_config::tools::SearchProviderKind;
use troupe_config::{ConfigError, Policy};

use crate::common;
use common::{invalid_key, load_text};

#[test]
fn defaults_ask_before_executing_or_reaching_the_network() {
    let cfg = load_text("").unwrap();
    assert_eq!(cfg.approval.read, Policy::Allow);
    assert_eq!(cfg.approval.write, Policy::Allow);
    assert_eq!(cfg.approval.execute, Policy::Ask);
    assert_eq!(cfg.approval.network, Policy::Ask);
    assert!(cfg.approval.tools.is_empty());
    assert!(cfg.tools.http.allow_hosts.is_empty());
    assert_eq!(cfg.tools.search.provider, SearchProviderKind::DuckDuckGo);
    assert_eq!(cfg.tools.git.remote, None);
    assert!(cfg.tools.shell.default_timeout <= cfg.tools.shell.max_timeout);
}

#[test]
fn values_are_read_from_the_file() {
    let cfg = load_text(
        r#"
[tools]
output_max_bytes = 4096
[tools.shell]
timeout_s = 5
max_timeout_s = 50
cpu_seconds = 10
memory_mb = 512
open_files = 64
[tools.http]
allow_hosts = ["Docs.rs", "*.python.org"]
max_bytes = 1000
timeout_s = 3
[tools.search]
provider = "none"
base_url = "http://127.0.0.1:9/html/"
[tools.git]
remote = "/srv/repo.git"
[approval]
execute = "allow"
network = "deny"
[approval.tools]
shell = "deny"
http_get = "ask"
"#,
    )
    .unwrap();
    assert_eq!(cfg.tools.output_max_bytes, 4096);
    assert_eq!(cfg.tools.shell.default_timeout, Duration::from_secs(5));
    assert_eq!(cfg.tools.shell.max_timeout, Duration::from_secs(50));
    assert_eq!(cfg.tools.shell.cpu_seconds, 10);
    assert_eq!(cfg.tools.shell.memory_mb, 512);
    assert_eq!(cfg.tools.shell.open_files, 64);
    assert_eq!(cfg.tools.http.allow_hosts, vec!["docs.rs", "*.python.org"]);
    assert_eq!(cfg.tools.http.max_bytes, 1000);
    assert_eq!(cfg.tools.http.timeout, Duration::from_secs(3));
    assert_eq!(cfg.tools.search.provider, SearchProviderKind::None);
    assert_eq!(cfg.tools.git.remote.as_deref(), Some("/srv/repo.git"));
    assert_eq!(cfg.approval.execute, Policy::Allow);
    assert_eq!(cfg.approval.network, Policy::Deny);
    assert_eq!(cfg.approval.tools.get("shell"), Some(&Policy::Deny));
    assert_eq!(cfg.approval.tools.get("http_get"), Some(&Policy::Ask));
}

#[test]
fn an_unknown_policy_for_a_tool_names_the_key() {
    let err = load_text("[approval.tools]\nshell = \"maybe\"\n").unwrap_err();
    let (key, reason) = invalid_key(err);
    assert_eq!(key, "approval.tools.shell");
    assert!(reason.contains("`maybe`"), "{reason}");
}

#[test]
fn an_unknown_policy_for_a_risk_level_names_the_key() {
    let (key, _) = invalid_key(load_text("[approval]\nwrite = \"sometimes\"\n").unwrap_err());
    assert_eq!(key, "approval.write");
}

#[test]
fn a_default_timeout_above_the_maximum_is_refused() {
    let (key, reason) =
        invalid_key(load_text("[tools.shell]\ntimeout_s = 90\nmax_timeout_s = 30\n").unwrap_err());
    assert_eq!(key, "tools.shell.timeout_s");
    assert!(reason.contains("30"), "{reason}");
}

#[test]
fn a_bad_host_pattern_is_refused() {
    let (key, reason) =
        invalid_key(load_text("[tools.http]\nallow_hosts = [\"http://x/\"]\n").unwrap_err());
    assert_eq!(key, "tools.http.allow_hosts");
    assert!(reason.contains("http://x/"), "{reason}");
}

#[test]
fn an_unknown_key_in_the_tools_section_is_named() {
    match load_text("[tools.shell]\ntimeout = 5\n").unwrap_err() {
        ConfigError::UnknownKey { key, .. } => assert_eq!(key, "tools.shell.timeout"),
        other => panic!("expected an unknown key, got {other}"),
    }
}

#[test]
fn an_unknown_search_provider_is_refused() {
    let (key, _) = invalid_key(load_text("[tools.search]\nprovider = \"bing\"\n").unwrap_err());
    assert_eq!(key, "tools.search.provider");
}

#[test]
fn the_sandbox_section_is_read_and_checked() {
    use troupe_config::tools::SandboxMode;
    let d = load_text("").unwrap().tools.sandbox;
    assert_eq!(d.mode, SandboxMode::Required);
    assert!(d.network_for("python_install") && !d.network_for("shell"));
    assert_eq!((d.processes, d.memory_mb), (256, 4096));

    let cfg = load_text(
        "[tools.sandbox]\nmode = \"best_effort\"\nnetwork = { shell = true }\nextra_read = [\"/srv/lib\"]\nprocesses = 64\nmemory_mb = 1024\n",
    )
    .unwrap();
    let s = cfg.tools.sandbox;
    assert_eq!(s.mode, SandboxMode::BestEffort);
    assert!(s.network_for("shell") && s.network_for("python_install"));
    assert_eq!(s.extra_read, [std::path::PathBuf::from("/srv/lib")]);
    assert_eq!((s.processes, s.memory_mb), (64, 1024));

    for (body, want_key, why) in [
        ("mode = \"lax\"", "tools.sandbox.mode", "lax"),
        (
            "network = { curl = true }",
            "tools.sandbox.network.curl",
            "",
        ),
        (
            "extra_write = [\"/\"]",
            "tools.sandbox.extra_write",
            "whole machine",
        ),
        ("processes = 2", "tools.sandbox.processes", "at least 8"),
        ("memory_mb = 10", "tools.sandbox.memory_mb", "at least 64"),
    ] {
        let (key, reason) =
            invalid_key(load_text(&format!("[tools.sandbox]\n{body}\n")).unwrap_err());
        assert_eq!(key, want_key, "for {body}");
        assert!(reason.contains(why), "for {body}: {reason}");
    }
}
