use std::path::Path;
use std::time::Duration;

use sluice_server::config::{BackendName, CodecName, DurabilityName};
use sluice_server::ServerConfig;

#[test]
fn example_config_parses_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/sluice-server.example.toml");
    let config = ServerConfig::from_file(&path).unwrap();
    // Every value shown in the example is the default.
    assert_eq!(
        toml::to_string(&config).unwrap(),
        toml::to_string(&ServerConfig::default()).unwrap()
    );
    assert_eq!(config.storage.codec, CodecName::Lz4);
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(config.storage.backend, BackendName::Auto);
    assert_eq!(config.storage.durability, DurabilityName::PageCache);
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:7338");
    // The server's transport is the shared tuning (the one the benchmark measures).
    assert_eq!(
        config.transport.tuning().unwrap(),
        sluice_client::TransportTuning::SERVER
    );
    let jumbo = ServerConfig::from_toml(
        "[transport]\nsegmentation_offload = false\nmax_udp_payload = 8972\nudp_socket_buffer = \"0B\"",
    )
    .unwrap();
    let tuning = jumbo.transport.tuning().unwrap();
    assert_eq!(
        (
            tuning.max_udp_payload,
            tuning.segmentation_offload,
            tuning.udp_socket_buffer
        ),
        (8972, false, 0)
    );
    let fsync = ServerConfig::from_toml(
        "[storage]\ndurability = \"fsync\"\nbackend = \"io_uring\"\ndisk_quota = \"2GiB\"",
    )
    .unwrap();
    assert_eq!(fsync.storage.durability, DurabilityName::Fsync);
    assert_eq!(fsync.storage.backend, BackendName::IoUring);
    assert_eq!(fsync.storage.disk_quota, Some(bytesize::ByteSize::gib(2)));
}

#[test]
fn invalid_config_names_the_key() {
    let cases = [
        ("[storage]\ncodec = \"snappy\"", "codec"),
        ("[storage]\ndurability = \"sometimes\"", "durability"),
        ("[storage]\nbackend = \"aio\"", "backend"),
        ("[storage]\nuring_entries = 0", "uring_entries"),
        ("[storage]\ncodec = \"zstd\"\nzstd_level = 40", "zstd_level"),
        ("[storage]\nblock_size = \"1B\"", "block_size"),
        ("[limits]\nidle_timeout = \"soon\"", "idle_timeout"),
        (
            "[transport]\nmax_udp_payload = 8972",
            "transport.max_udp_payload: 8972 is over 6500 with segmentation_offload",
        ),
        (
            "[transport]\nmax_udp_payload = 900",
            "transport.max_udp_payload",
        ),
        (
            "[limits]\nstall_timeout = \"0s\"",
            "limits.stall_timeout: must be at least 1s",
        ),
        // The key's former name is still read.
        (
            "[limits]\nfetch_stall_timeout = \"0s\"",
            "limits.stall_timeout: must be at least 1s",
        ),
        (
            "[limits]\nconnection_memory = \"4KiB\"",
            "limits.connection_memory: must be at least 1 MiB",
        ),
        (
            "[limits]\nmax_pending_connections = 0",
            "limits.max_pending_connections",
        ),
        (
            "[transport]\nreceive_window = \"2GiB\"",
            "transport.receive_window",
        ),
        ("listen = \"nowhere\"", "listen"),
        ("unknown_key = 1", "unknown_key"),
        ("[tls]\ncert = \"/x.pem\"", "tls.key"),
        (
            "[storage]\npush_buffer_limit = \"4KiB\"",
            "push_buffer_limit",
        ),
    ];
    for (text, key) in cases {
        let err = ServerConfig::from_toml(text).unwrap_err();
        assert!(
            err.contains(key),
            "{text:?}: error {err:?} does not name {key}"
        );
    }
}

mod layers {
    use std::collections::BTreeSet;
    use std::process::Command;

    use sluice_server::config::layers::{self, Override};
    use sluice_server::ServerConfig;

    fn set(key: &str, origin: &str, value: &str) -> Override {
        Override {
            key: key.into(),
            origin: origin.into(),
            value: value.into(),
        }
    }

    /// Dotted paths of every leaf of a serialized config.
    fn leaves(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let path = format!("{prefix}{k}");
            match v {
                toml::Value::Table(t) => leaves(t, &format!("{path}."), out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    #[test]
    fn the_example_documents_every_key_with_help() {
        // Every optional key set, so that it serializes too.
        let mut full = ServerConfig {
            cluster_token_file: Some("t".into()),
            ..ServerConfig::default()
        };
        full.tls.cert = Some("c".into());
        full.tls.key = Some("k".into());
        full.storage.disk_quota = Some(bytesize::ByteSize::gib(1));
        full.storage.app_disk_quota = Some(bytesize::ByteSize::gib(1));
        full.admin.token_file = Some("a".into());
        full.replication.trust_file = Some("p".into());
        let mut fields = BTreeSet::new();
        leaves(&toml::Table::try_from(&full).unwrap(), "", &mut fields);
        let keys = layers::documented_keys();
        let documented: BTreeSet<String> = keys.iter().map(|k| k.path.clone()).collect();
        assert_eq!(documented, fields);
        for k in &keys {
            assert!(k.help.len() > 10, "{} has no help: {:?}", k.path, k.help);
        }
        let block = keys
            .iter()
            .find(|k| k.path == "storage.block_size")
            .unwrap();
        assert_eq!(block.flag(), "storage-block-size");
        assert_eq!(block.env_var(), "SLUICE_STORAGE_BLOCK_SIZE");
    }

    #[test]
    fn flags_override_the_file_and_the_environment_overrides_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "worker_threads = 3\n[storage]\nblock_size = \"2MiB\"\ncodec = \"zstd\"\n\
             [limits]\nmax_apps = 5\n",
        )
        .unwrap();
        let flags = [
            set("storage.block_size", "flag", "4MiB"),
            set("limits.max_apps", "flag", "6"),
        ];
        let env = layers::env_overrides(
            &layers::documented_keys(),
            [
                ("SLUICE_LIMITS_MAX_APPS".to_string(), "7".to_string()),
                (
                    "SLUICE_TLS_SERVER_NAMES".into(),
                    "a.example, 10.0.0.1".into(),
                ),
                ("SLUICE_ADMIN_ENABLED".into(), "false".into()),
                ("SLUICE_SPARK_VERSION".into(), "not ours".into()),
            ],
        )
        .unwrap();
        let all: Vec<_> = flags.into_iter().chain(env).collect();
        let c = layers::load(Some(&file), &all).unwrap();
        assert_eq!(c.worker_threads, 3, "file only");
        assert_eq!(c.storage.codec, sluice_server::config::CodecName::Zstd);
        assert_eq!(
            c.storage.block_size,
            bytesize::ByteSize::mib(4),
            "flag > file"
        );
        assert_eq!(c.limits.max_apps, 7, "env > flag > file");
        assert_eq!(c.tls.server_names, ["a.example", "10.0.0.1"]);
        assert!(!c.admin.enabled);
        assert_eq!(c.limits.max_partitions, 1 << 20, "default");
    }

    #[test]
    fn bad_values_name_their_origin_and_key() {
        let keys = layers::documented_keys();
        let err = |o: Override| layers::load(None, &[o]).unwrap_err().to_string();
        assert_eq!(
            err(set("limits.max_apps", "flag --limits-max-apps", "many")),
            "invalid flag --limits-max-apps: limits.max_apps: expected an integer, got \"many\""
        );
        let e = err(set(
            "storage.codec",
            "environment variable SLUICE_STORAGE_CODEC",
            "snappy",
        ));
        assert!(
            e.starts_with("invalid environment variable SLUICE_STORAGE_CODEC:")
                && e.contains("codec"),
            "{e}"
        );
        assert_eq!(
            err(set("limits.max_apps", "flag --limits-max-apps", "0")),
            "invalid configuration: limits.max_apps: must be at least 1"
        );
        let e = err(set("log.level", "flag --log-level", "info,=["));
        assert!(e.starts_with("invalid configuration: log.level:"), "{e}");
        let typo = layers::env_overrides(&keys, [("SLUICE_STORAGE_BLOK_SIZE".into(), "1".into())])
            .unwrap_err()
            .to_string();
        assert_eq!(
            typo,
            "invalid environment variable SLUICE_STORAGE_BLOK_SIZE: no configuration key has this name (see --help)"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[storage]\nblock_size = \"huge\"\n").unwrap();
        let e = layers::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("invalid config file {}:", file.display()))
                && e.contains("block_size"),
            "{e}"
        );
    }

    /// The real binary: every key is in `--help`, and `--print-config` shows the
    /// layers merged in order (its output reads back as the same configuration).
    #[test]
    fn the_binary_merges_file_flags_and_environment() {
        let bin = env!("CARGO_BIN_EXE_sluice-server");
        let help = Command::new(bin).arg("--help").output().unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        for k in layers::documented_keys() {
            assert!(
                help.contains(&format!("--{} <VALUE>", k.flag())),
                "{} missing",
                k.path
            );
            assert!(help.contains(&k.env_var()), "{} missing", k.env_var());
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[storage]\nblock_size = \"2MiB\"\nmemory_budget = \"3GiB\"\n",
        )
        .unwrap();
        let out = Command::new(bin)
            .args([
                "--config",
                file.to_str().unwrap(),
                "--storage-block-size",
                "4MiB",
            ])
            .args(["--storage-push-buffer-limit", "5MiB", "--print-config"])
            .env("SLUICE_STORAGE_PUSH_BUFFER_LIMIT", "6MiB")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let printed = ServerConfig::from_toml(&text).unwrap();
        assert_eq!(printed.storage.block_size, bytesize::ByteSize::mib(4));
        assert_eq!(printed.storage.memory_budget, bytesize::ByteSize::gib(3));
        assert_eq!(
            printed.storage.push_buffer_limit,
            bytesize::ByteSize::mib(6)
        );
        let bad = Command::new(bin)
            .args(["--print-config", "--limits-idle-timeout", "soon"])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
        let stderr = String::from_utf8(bad.stderr).unwrap();
        assert!(
            stderr.contains("invalid flag --limits-idle-timeout"),
            "{stderr}"
        );
    }
}

/// The configuration inside the Kubernetes manifest is valid, and both deployments let
/// a drain finish before they kill the server.
#[test]
fn the_deployment_examples_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let manifest = std::fs::read_to_string(root.join("kubernetes/sluice-server.yaml")).unwrap();
    let embedded: String = manifest
        .lines()
        .skip_while(|l| !l.contains("sluice-server.toml: |"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let config = ServerConfig::from_toml(&embedded).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:7337");
    assert!(config.tls.cert.is_some() && config.cluster_token_file.is_some());
    let seconds = |text: &str, key: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        line.rsplit([' ', '=']).next().unwrap().parse().unwrap()
    };
    let drain = config.drain_timeout.as_secs();
    assert!(seconds(&manifest, "terminationGracePeriodSeconds:") > drain);
    let unit = std::fs::read_to_string(root.join("systemd/sluice-server.service")).unwrap();
    assert!(seconds(&unit, "TimeoutStopSec=") > ServerConfig::default().drain_timeout.as_secs());
}
