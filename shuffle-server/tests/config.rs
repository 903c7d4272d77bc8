use std::path::Path;
use std::time::Duration;

use sluice_server::config::{BackendName, CodecName, DurabilityName};
use sluice_server::ServerConfig;

#[test]
fn example_config_parses_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/sluice-server.example.toml");
    let config = ServerConfig::from_file(&path).unwrap();
    let defaults = ServerConfig::default();
    assert_eq!(config.listen, defaults.listen);
    assert_eq!(config.data_dir, defaults.data_dir);
    assert_eq!(config.storage.block_size, defaults.storage.block_size);
    assert_eq!(
        config.storage.push_buffer_limit,
        defaults.storage.push_buffer_limit
    );
    assert_eq!(config.storage.codec, CodecName::Lz4);
    assert_eq!(config.limits.max_frame_size, defaults.limits.max_frame_size);
    assert_eq!(config.limits.max_partitions, defaults.limits.max_partitions);
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(config.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(config.tls.server_names, defaults.tls.server_names);
    assert_eq!(config.storage.backend, BackendName::Auto);
    assert_eq!(config.storage.uring_entries, defaults.storage.uring_entries);
    assert_eq!(config.storage.durability, DurabilityName::PageCache);
    assert_eq!(config.storage.disk_quota, None);
    assert_eq!(config.storage.app_expiry, Duration::from_secs(3600));
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
