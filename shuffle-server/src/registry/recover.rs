//! Rebuilding applications and shuffles from the data directory on start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sluice_proto::{AppId, ShuffleDescriptor};
use sluice_spill::{ShuffleStore, SpillError, StoreEnv, TRASH_PREFIX};
use tokio_util::sync::CancellationToken;

use super::{lock, parse_dir_name, App, Registry, Shuffle, ShuffleShape, APP_MAGIC, SHUFFLE_MAGIC};
use crate::commits::{CommitState, Epoch, MapId};
use crate::meta;

/// What recovery found on disk.
#[derive(Debug, Default)]
pub(crate) struct RecoveryReport {
    pub apps: usize,
    pub shuffles: usize,
    pub committed_maps: usize,
    /// Committed maps not served because blocks were missing.
    pub incomplete_maps: usize,
    /// Directories that could not be used (logged and left in place).
    pub skipped: usize,
}

impl Registry {
    /// Rebuilds applications and shuffles from the data directory. A directory that
    /// cannot be read is logged and left alone; it never stops the server.
    pub fn recover(&self) -> Result<RecoveryReport, SpillError> {
        let mut report = RecoveryReport::default();
        let dir = self.apps_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => {
                return Err(SpillError::Io {
                    op: "list",
                    path: dir,
                    source: e,
                })
            }
        };
        // The newest generation of each app id; older ones (never left by this server:
        // a delete renames first) are logged and left alone.
        let mut newest: HashMap<String, (u64, PathBuf)> = HashMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with(TRASH_PREFIX) {
                remove_trash(&path);
                continue;
            }
            let (id, generation) = parse_dir_name(name);
            self.generations.seen(generation);
            let older = match newest.get(id) {
                Some((g, _)) if *g > generation => Some(path),
                _ => newest
                    .insert(id.to_string(), (generation, path))
                    .map(|(_, p)| p),
            };
            if let Some(older) = older {
                tracing::warn!(path = %older.display(), "older generation of an application; not recovered");
                report.skipped += 1;
            }
        }
        for (_, path) in newest.into_values() {
            match self.recover_app(&path, &mut report) {
                Ok(app) => {
                    report.apps += 1;
                    lock(&self.apps).insert(app.id.clone(), Arc::new(app));
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "application not recovered");
                    report.skipped += 1;
                }
            }
        }
        Ok(report)
    }

    fn recover_app(&self, dir: &Path, report: &mut RecoveryReport) -> Result<App, String> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let id = AppId::new(parse_dir_name(name).0).map_err(|e| e.to_string())?;
        let secret = meta::read(&dir.join("app.meta"), APP_MAGIC).map_err(|e| e.to_string())?;
        let app = self.new_app(id, Bytes::from(secret), dir.to_path_buf());
        for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with(TRASH_PREFIX) {
                remove_trash(&path);
                continue;
            }
            let Some((shuffle_id, generation)) = name
                .strip_prefix("shuffle-")
                .map(parse_dir_name)
                .and_then(|(id, g)| Some((id.parse::<u32>().ok()?, g)))
            else {
                continue;
            };
            self.generations.seen(generation);
            match recover_shuffle(&path, &app.env, app.closing.child_token()) {
                Ok((shuffle, incomplete)) => {
                    report.shuffles += 1;
                    report.committed_maps += shuffle.committed_maps();
                    report.incomplete_maps += incomplete;
                    lock(&app.shuffles)
                        .by_id
                        .insert(shuffle_id, Arc::new(shuffle));
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "shuffle not recovered");
                    report.skipped += 1;
                }
            }
        }
        Ok(app)
    }
}

/// Removes what a delete interrupted by a crash left behind.
fn remove_trash(path: &Path) {
    tracing::info!(path = %path.display(), "removing the rest of an interrupted delete");
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!(path = %path.display(), error = %e, "removing an interrupted delete");
    }
}

/// A shuffle and the number of its logged commits that were dropped as incomplete.
fn recover_shuffle(
    dir: &Path,
    env: &StoreEnv,
    closing: CancellationToken,
) -> Result<(Shuffle, usize), String> {
    let body = meta::read(&dir.join("shuffle.meta"), SHUFFLE_MAGIC).map_err(|e| e.to_string())?;
    let body_len = body.len();
    let d = ShuffleDescriptor::decode(Bytes::from(body)).map_err(|e| e.to_string())?;
    let schema = sluice_format::decode_schema(&d.schema).map_err(|e| e.to_string())?;
    let bytes = 2 * body_len;
    let shape = ShuffleShape {
        num_partitions: d.num_partitions,
        partitioning: d.partitioning,
        schema,
        schema_ipc: d.schema,
        bytes,
    };
    let rec = ShuffleStore::recover(dir.to_path_buf(), env.clone()).map_err(|e| e.to_string())?;
    let logged = rec
        .commits
        .iter()
        .map(|c| (MapId(c.map_id), c.map_index, Epoch(c.epoch)));
    let commits = CommitState::recovered(logged, rec.max_epoch);
    let shuffle = Shuffle::new(shape, rec.store, commits, closing);
    Ok((shuffle, rec.incomplete.len()))
}
