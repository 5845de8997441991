//! Loading troupe.toml: defaults, file, environment, and the errors a person
//! sees for typos and bad values.

use std::path::PathBuf;
use troupe_config::{load, ConfigError};

use crate::common;
use common::{invalid_key, load_text, opts, write};

#[test]
fn empty_configuration_gives_defaults() {
    let cfg = load(&opts(None, &[])).unwrap();
    assert_eq!(cfg.inference.context_length, 4096);
    assert_eq!(cfg.inference.parallel_slots, 4);
    assert_eq!(cfg.inference.threads, None);
    assert_eq!(cfg.models.hf_endpoint, "https://huggingface.co");
    assert_eq!(cfg.models.dirs, vec![cfg.data_dir.join("models")]);
}

#[test]
fn file_values_are_read_and_relative_paths_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "data_dir = \"state\"\n[models]\ndirs = [\"m\", \"/abs\"]\n[inference]\nthreads = 3\ncontext_length = 1024\n",
    );
    let cfg = load(&opts(Some(path.clone()), &[])).unwrap();
    assert_eq!(cfg.data_dir, dir.path().join("state"));
    assert_eq!(
        cfg.models.dirs,
        vec![dir.path().join("m"), PathBuf::from("/abs")]
    );
    assert_eq!(cfg.inference.threads, Some(3));
    assert_eq!(cfg.inference.context_length, 1024);
    assert_eq!(cfg.source.file.as_deref(), Some(path.as_path()));
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[inference]\nthreads = 3\n");
    let cfg = load(&opts(
        Some(path),
        &[
            ("TROUPE_INFERENCE__THREADS", "7"),
            ("TROUPE_DATA_DIR", "/tmp/troupe-data"),
            ("TROUPE_LOG", "debug"),
            ("TROUPE_MODELS__DIRS", "[\"/a\", \"/b\"]"),
            ("UNRELATED", "x"),
        ],
    ))
    .unwrap();
    assert_eq!(cfg.inference.threads, Some(7));
    assert_eq!(cfg.data_dir, PathBuf::from("/tmp/troupe-data"));
    assert_eq!(cfg.log, "debug");
    assert_eq!(
        cfg.models.dirs,
        vec![PathBuf::from("/a"), PathBuf::from("/b")]
    );
}

#[test]
fn a_numeric_looking_env_value_for_a_string_key_stays_a_string() {
    let cfg = load(&opts(None, &[("TROUPE_DATA_DIR", "2024")])).unwrap();
    assert!(cfg.data_dir.ends_with("2024"));
}

#[test]
fn troupe_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[inference]\nbatch_size = 64\n");
    let cfg = load(&opts(None, &[("TROUPE_CONFIG", path.to_str().unwrap())])).unwrap();
    assert_eq!(cfg.inference.batch_size, 64);
}

#[test]
fn unknown_key_is_named_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[inference]\nthreadz = 3\n");
    let err = load(&opts(Some(path.clone()), &[])).unwrap_err();
    assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "inference.threadz"));
    let msg = err.to_string();
    assert!(msg.contains("inference.threadz"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("threads"),
        "should list the allowed keys: {msg}"
    );
}

#[test]
fn unknown_top_level_key_and_section() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[inferense]\nthreads = 3\n");
    let err = load(&opts(Some(path), &[])).unwrap_err();
    assert!(err.to_string().contains("`inferense`"), "{err}");
}

#[test]
fn unknown_env_key_names_the_variable() {
    let err = load(&opts(None, &[("TROUPE_INFERENCE__THREADZ", "2")])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("inference.threadz"), "{msg}");
    assert!(msg.contains("TROUPE_INFERENCE__THREADZ"), "{msg}");
}

#[test]
fn wrong_type_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[inference]\nthreads = \"many\"\n");
    let err = load(&opts(Some(path.clone()), &[])).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ConfigError::InvalidValue { ref key, .. } if key == "inference.threads"),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn out_of_range_values_are_refused() {
    for (text, key) in [
        (
            "[inference]\nparallel_slots = 0\n",
            "inference.parallel_slots",
        ),
        (
            "[inference]\ncontext_length = 8\n",
            "inference.context_length",
        ),
        ("[inference]\nbatch_size = 0\n", "inference.batch_size"),
        (
            "[models]\nhf_endpoint = \"ftp://x\"\n",
            "models.hf_endpoint",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, text);
        let err = load(&opts(Some(path), &[])).unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidValue { key: ref k, .. } if k == key),
            "{text}: {err}"
        );
    }
}

#[test]
fn bad_env_value_names_the_variable() {
    let err = load(&opts(None, &[("TROUPE_INFERENCE__PARALLEL_SLOTS", "0")])).unwrap_err();
    assert!(
        err.to_string()
            .contains("environment variable TROUPE_INFERENCE__PARALLEL_SLOTS"),
        "{err}"
    );
}

#[test]
fn syntax_error_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[inference\n");
    let err = load(&opts(Some(path), &[])).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    let missing = dir.path().join("nope.toml");
    let err = load(&opts(Some(missing.clone()), &[])).unwrap_err();
    assert!(err.to_string().contains("nope.toml"), "{err}");
    assert!(err.to_string().contains("--config"), "{err}");
    let err = load(&opts(None, &[("TROUPE_CONFIG", missing.to_str().unwrap())])).unwrap_err();
    assert!(err.to_string().contains("TROUPE_CONFIG"), "{err}");
}

#[test]
fn serve_section_reads_sizes_and_names_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "[serve]\naddr = \"127.0.0.1:9000\"\nmemory_budget = \"2GiB\"\npin = [\"ux\"]\nkeep_alive_s = 10\nmax_body = \"1MiB\"\n",
    );
    let cfg = load(&opts(Some(path), &[("TROUPE_SERVE__API_KEY", "sekrit")])).unwrap();
    assert_eq!(cfg.serve.addr.port(), 9000);
    assert_eq!(cfg.serve.memory_budget, Some(2 << 30));
    assert_eq!(cfg.serve.pin, vec!["ux".to_string()]);
    assert_eq!(cfg.serve.keep_alive.as_secs(), 10);
    assert_eq!(cfg.serve.max_body_bytes, 1 << 20);
    assert_eq!(cfg.serve.api_key.as_deref(), Some("sekrit"));

    let defaults = load(&opts(None, &[])).unwrap();
    assert!(defaults.serve.addr.ip().is_loopback());
    assert_eq!(defaults.serve.api_key, None);

    for (text, key) in [
        ("[serve]\naddr = \"localhost\"\n", "serve.addr"),
        ("[serve]\nmemory_budget = \"lots\"\n", "serve.memory_budget"),
        ("[serve]\nmax_body = \"10\"\n", "serve.max_body"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, text);
        let err = load(&opts(Some(path), &[])).unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidValue { key: ref k, .. } if k == key),
            "{text}: {err}"
        );
    }
}

#[test]
fn serve_sampling_sets_request_defaults_and_names_bad_values() {
    let cfg = load_text(
        "[serve.sampling]\ntemperature = 0.0\ntop_k = 20\ntop_p = 0.9\nmin_p = 0.1\n\
         repeat_penalty = 1.1\nrepeat_last_n = 32\nseed = 42\n",
    )
    .unwrap();
    let s = &cfg.serve.sampling;
    assert_eq!(s.temperature, Some(0.0));
    assert_eq!(s.top_k, Some(20));
    assert_eq!(s.top_p, Some(0.9));
    assert_eq!(s.min_p, Some(0.1));
    assert_eq!(s.repeat_penalty, Some(1.1));
    assert_eq!(s.repeat_last_n, Some(32));
    assert_eq!(s.seed, Some(42));
    let parameters: Vec<String> = s
        .parameters()
        .into_iter()
        .map(|(name, value)| format!("{name} {value}"))
        .collect();
    assert_eq!(
        parameters,
        [
            "temperature 0",
            "top_k 20",
            "top_p 0.9",
            "min_p 0.1",
            "repeat_penalty 1.1",
            "repeat_last_n 32",
            "seed 42"
        ]
    );
    let unset = load_text("").unwrap();
    assert_eq!(
        unset.serve.sampling,
        troupe_config::SamplingDefaults::default()
    );
    assert!(unset.serve.sampling.parameters().is_empty());
    let whole = load_text("[serve.sampling]\nrepeat_last_n = -1\n").unwrap();
    assert_eq!(
        whole.serve.sampling.repeat_last_n,
        Some(-1),
        "-1: the context"
    );

    for (text, key) in [
        ("temperature = -0.5", "serve.sampling.temperature"),
        ("temperature = nan", "serve.sampling.temperature"),
        ("top_k = -1", "serve.sampling.top_k"),
        ("top_p = 1.5", "serve.sampling.top_p"),
        ("min_p = -0.1", "serve.sampling.min_p"),
        ("repeat_penalty = 0.0", "serve.sampling.repeat_penalty"),
        ("repeat_last_n = -2", "serve.sampling.repeat_last_n"),
        ("seed = 4294967295", "serve.sampling.seed"),
    ] {
        let err = load_text(&format!("[serve.sampling]\n{text}\n")).unwrap_err();
        let (k, reason) = invalid_key(err);
        assert_eq!(k, key, "{text}: {reason}");
    }
    let err = load_text("[serve.sampling]\ntempreature = 0.1\n").unwrap_err();
    assert!(
        matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "serve.sampling.tempreature"),
        "{err}"
    );
    let err = load_text("[serve.sampling]\nseed = -1\n").unwrap_err();
    assert!(err.to_string().contains("seed"), "{err}");
}
