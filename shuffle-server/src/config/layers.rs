//! Configuration layers, lowest precedence first: the TOML file, CLI flags, environment
//! variables. Every key has a flag (`storage.block_size` → `--storage-block-size`) and a
//! variable (`SLUICE_STORAGE_BLOCK_SIZE`). The keys and their help texts are read from
//! the example config, so the documentation, `--help` and the accepted overrides cannot
//! drift apart (a test checks the example covers every field).

use std::path::Path;

use clap::{Arg, ArgMatches};

use super::{ConfigError, ServerConfig};

/// The documented example configuration.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../config/sluice-server.example.toml");

/// Sections whose variables must name a key (a typo there is an error, not ignored).
const SECTIONS: [&str; 7] = [
    "tls",
    "storage",
    "limits",
    "transport",
    "replication",
    "admin",
    "log",
];

/// A configuration key, as documented in the example config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Dotted path, e.g. `storage.block_size`.
    pub path: String,
    pub help: String,
}

impl Key {
    pub fn flag(&self) -> String {
        self.path.replace(['.', '_'], "-")
    }

    pub fn env_var(&self) -> String {
        format!(
            "SLUICE_{}",
            self.path.replace('.', "_").to_ascii_uppercase()
        )
    }
}

/// A value given outside the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub key: String,
    /// The flag or variable it came from, for error messages.
    pub origin: String,
    pub value: String,
}

/// Every key of the example config (commented-out ones included), with the comment
/// above it as help. Keys listed together share the comment above the first.
pub fn documented_keys() -> Vec<Key> {
    let mut keys: Vec<Key> = Vec::new();
    let mut section = String::new();
    let mut help: Vec<&str> = Vec::new();
    let mut after_key = false;
    for line in EXAMPLE_CONFIG.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{name}.");
            help.clear();
        } else if let Some(name) = key_name(line) {
            let text = match (help.is_empty(), after_key, keys.last()) {
                (true, true, Some(prev)) => prev.help.clone(),
                _ => help.join(" "),
            };
            keys.push(Key {
                path: format!("{section}{name}"),
                help: text,
            });
            help.clear();
            after_key = true;
            continue;
        } else if let Some(comment) = line.strip_prefix('#') {
            help.push(comment.trim());
        } else {
            help.clear();
        }
        after_key = false;
    }
    keys
}

/// `name` if the line sets a key (`name = ...` or the commented `# name = ...`).
fn key_name(line: &str) -> Option<&str> {
    let line = line.strip_prefix("# ").unwrap_or(line);
    let (name, _) = line.split_once(" = ")?;
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    valid.then_some(name)
}

/// One clap argument per key; each reads its long help from the example config.
pub fn cli_args(keys: &[Key]) -> Vec<Arg> {
    keys.iter()
        .map(|k| {
            let short = k.help.split(". ").next().unwrap_or_default().to_string();
            Arg::new(k.path.clone())
                .long(k.flag())
                .value_name("VALUE")
                .help(short)
                .long_help(format!(
                    "{} [key: {}] [env: {}]",
                    k.help,
                    k.path,
                    k.env_var()
                ))
                .help_heading("Configuration (overrides the file; the environment overrides these)")
        })
        .collect()
}

/// The keys set on the command line.
pub fn cli_overrides(keys: &[Key], matches: &ArgMatches) -> Vec<Override> {
    keys.iter()
        .filter_map(|k| {
            let value = matches.get_one::<String>(&k.path)?;
            Some(Override {
                key: k.path.clone(),
                origin: format!("flag --{}", k.flag()),
                value: value.clone(),
            })
        })
        .collect()
}

/// The keys set by `SLUICE_*` variables. A variable under a section prefix
/// (`SLUICE_STORAGE_...`) that names no key is an error: it is most likely a typo.
pub fn env_overrides(
    keys: &[Key],
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut found = Vec::new();
    for (name, value) in vars {
        if let Some(k) = keys.iter().find(|k| k.env_var() == name) {
            found.push(Override {
                key: k.path.clone(),
                origin: format!("environment variable {name}"),
                value,
            });
        } else if SECTIONS
            .iter()
            .any(|s| name.starts_with(&format!("SLUICE_{}_", s.to_ascii_uppercase())))
        {
            return Err(ConfigError::Invalid {
                origin: format!("environment variable {name}"),
                message: "no configuration key has this name (see --help)".into(),
            });
        }
    }
    Ok(found)
}

/// Reads the file (if any), applies the overrides in order (later wins) and validates
/// the result. Each error names where the bad value came from and its key.
pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<ServerConfig, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let origin = format!("config file {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| invalid(&origin, e))?;
            deserialize(table.clone()).map_err(|e| invalid(&origin, e))?;
            table
        }
        None => toml::Table::new(),
    };
    let kinds = toml::Table::try_from(ServerConfig::default())
        .map_err(|e| invalid("the built-in defaults", e))?;
    for o in overrides {
        let value = typed(&kinds, &o.key, &o.value).map_err(|e| invalid(&o.origin, e))?;
        // Checked alone first, so a type error is reported against its origin.
        let mut alone = toml::Table::new();
        insert(&mut alone, &o.key, value.clone());
        deserialize(alone).map_err(|e| invalid(&o.origin, e))?;
        insert(&mut table, &o.key, value);
    }
    let config = deserialize(table).map_err(|e| invalid("configuration", e))?;
    config.validate().map_err(|e| invalid("configuration", e))?;
    Ok(config)
}

fn invalid(origin: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        message: e.to_string().trim().to_string(),
    }
}

fn deserialize(table: toml::Table) -> Result<ServerConfig, toml::de::Error> {
    use serde::Deserialize;
    ServerConfig::deserialize(toml::Value::Table(table))
}

/// The text of an override as the TOML type its key has in the defaults: integers and
/// booleans parsed, lists split on commas; everything else (sizes, durations, paths,
/// names, and keys unset by default) stays a string.
fn typed(kinds: &toml::Table, key: &str, text: &str) -> Result<toml::Value, String> {
    let mut node = Some(kinds);
    let mut kind = None;
    for part in key.split('.') {
        kind = node.and_then(|t| t.get(part));
        node = kind.and_then(toml::Value::as_table);
    }
    let text = text.trim();
    Ok(match kind {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            text.parse()
                .map_err(|_| format!("{key}: expected an integer, got {text:?}"))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            text.parse()
                .map_err(|_| format!("{key}: expected true or false, got {text:?}"))?,
        ),
        Some(toml::Value::Array(_)) => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(text.to_string()),
    })
}

fn insert(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(sub) = entry {
                insert(sub, rest, value);
            }
        }
    }
}
