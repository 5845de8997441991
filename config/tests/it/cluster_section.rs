//! The `[cluster]` section: addresses, the node name, where the secret
//! comes from, and the errors a person sees for bad entries.

use troupe_config::ConfigError;

use crate::common;
use common::{invalid_key, load_text, opts, write};

#[test]
fn no_section_means_no_cluster() {
    let cfg = load_text("").unwrap();
    assert!(!cfg.cluster.enabled());
    assert_eq!(cfg.cluster.secret_env, "CLUSTER_SECRET");
}

#[test]
fn listen_join_and_name_are_read() {
    let cfg = load_text(
        r#"
[cluster]
listen = "127.0.0.1:7420"
join = ["10.0.0.2:7420", "[::1]:7421"]
node_name = "gpu-box"
secret_env = "MY_CLUSTER_SECRET"
"#,
    )
    .unwrap();
    let cluster = &cfg.cluster;
    assert!(cluster.enabled());
    assert_eq!(cluster.listen, Some("127.0.0.1:7420".parse().unwrap()));
    assert_eq!(
        cluster.join,
        vec![
            "10.0.0.2:7420".parse().unwrap(),
            "[::1]:7421".parse().unwrap()
        ]
    );
    assert_eq!(cluster.node_name.as_deref(), Some("gpu-box"));
    assert_eq!(cluster.secret_env, "MY_CLUSTER_SECRET");
}

#[test]
fn the_secret_itself_is_refused_in_the_file() {
    let err = load_text("[cluster]\nsecret = \"hunter2\"\n").unwrap_err();
    let text = err.to_string();
    let (key, reason) = invalid_key(err);
    assert_eq!(key, "cluster.secret");
    assert!(reason.contains("secret_env"), "{reason}");
    assert!(
        !text.contains("hunter2"),
        "the error must not echo the secret: {text}"
    );
}

#[test]
fn an_address_without_a_port_names_the_key() {
    let (key, reason) = invalid_key(load_text("[cluster]\nlisten = \"127.0.0.1\"\n").unwrap_err());
    assert_eq!(key, "cluster.listen");
    assert!(reason.contains("IP address and port"), "{reason}");
    let (key, _) = invalid_key(load_text("[cluster]\njoin = [\"ok:1\"]\n").unwrap_err());
    assert_eq!(key, "cluster.join[0]");
}

#[test]
fn a_bad_node_name_or_secret_variable_is_refused() {
    let (key, _) = invalid_key(load_text("[cluster]\nnode_name = \"a b\"\n").unwrap_err());
    assert_eq!(key, "cluster.node_name");
    let (key, reason) =
        invalid_key(load_text("[cluster]\nsecret_env = \"TROUPE_SECRET\"\n").unwrap_err());
    assert_eq!(key, "cluster.secret_env");
    assert!(reason.contains("config key"), "{reason}");
}

#[test]
fn an_unknown_key_is_named() {
    match load_text("[cluster]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap_err() {
        ConfigError::UnknownKey { key, .. } => assert_eq!(key, "cluster.listen_addr"),
        other => panic!("expected an unknown key, got {other}"),
    }
}

#[test]
fn the_environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[cluster]\nlisten = \"127.0.0.1:7420\"\n");
    let cfg = troupe_config::load(&opts(
        Some(path),
        &[("TROUPE_CLUSTER__LISTEN", "127.0.0.1:7500")],
    ))
    .unwrap();
    assert_eq!(cfg.cluster.listen, Some("127.0.0.1:7500".parse().unwrap()));
}

#[test]
fn sending_and_taking_work_default_on_and_can_be_turned_off() {
    let cfg = load_text("").unwrap();
    assert!(cfg.cluster.send_work && cfg.cluster.take_work);
    let cfg = load_text("[cluster]\nsend_work = false\ntake_work = false\n").unwrap();
    assert!(!cfg.cluster.send_work && !cfg.cluster.take_work);
    let err = load_text("[cluster]\ntake_work = \"yes\"\n").unwrap_err();
    assert!(err.to_string().contains("take_work"), "{err}");
}
