//! Applications, their shuffles, and which map attempts are committed; persisted next
//! to the data (`app.meta`, `shuffle.meta`, each shuffle's commit log) and rebuilt from
//! it on start.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::session::secrets_match;
use sluice_proto::{AppId, MapAttempt, MapFilter, Partitioning, ShuffleDescriptor};
use sluice_spill::{BlockEntry, CommitRecord, Durability, ShuffleStore, SpillError, StoreEnv};

use crate::error::RequestError;
use crate::meta;

const APP_MAGIC: [u8; 4] = *b"SLAP";
const SHUFFLE_MAGIC: [u8; 4] = *b"SLSH";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All registered applications.
#[derive(Debug)]
pub(crate) struct Registry {
    root: PathBuf,
    /// Store settings; `quota` is the server's, each app gets a child of it.
    env: StoreEnv,
    app_quota: Option<u64>,
    max_apps: usize,
    apps: Mutex<HashMap<AppId, Arc<App>>>,
}

#[derive(Debug)]
pub(crate) struct App {
    id: AppId,
    secret: Bytes,
    dir: PathBuf,
    env: StoreEnv,
    last_seen: Mutex<Instant>,
    shuffles: Mutex<HashMap<u32, Arc<Shuffle>>>,
}

/// The fixed description of a shuffle, set by its first push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShuffleShape {
    pub num_partitions: u32,
    pub partitioning: Partitioning,
    pub schema: arrow_schema::SchemaRef,
    pub schema_ipc: Bytes,
}

#[derive(Debug)]
pub(crate) struct Shuffle {
    pub shape: ShuffleShape,
    pub store: ShuffleStore,
    commits: Mutex<Commits>,
}

#[derive(Debug, Default)]
struct Commits {
    next_epoch: u32,
    /// Committed epoch of each map id.
    by_map_id: HashMap<u64, u32>,
    /// The attempt that committed first for each map index (for non-Spark readers).
    first_by_index: HashMap<u32, u64>,
    /// Map ids whose commit is being written.
    committing: HashSet<u64>,
    /// Epochs whose commit has started (and may have finished): never reclaimed.
    sealed: HashSet<u32>,
    /// Epochs given up (their pushes ended without a commit): never committed.
    abandoned: HashSet<u32>,
}

impl Commits {
    fn add(&mut self, map_id: u64, map_index: u32, epoch: u32) {
        self.by_map_id.insert(map_id, epoch);
        self.first_by_index.entry(map_index).or_insert(map_id);
    }
}

/// Which blocks a fetch serves: committed (map id, epoch) pairs.
#[derive(Debug)]
pub(crate) struct Selection {
    epochs: HashMap<u64, u32>,
    /// Requested map ids that are not committed here.
    pub missing: Vec<u64>,
}

impl Selection {
    pub fn contains(&self, e: &BlockEntry) -> bool {
        self.epochs.get(&e.map_id) == Some(&e.epoch)
    }
}

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
    pub fn new(root: PathBuf, env: StoreEnv, app_quota: Option<u64>, max_apps: usize) -> Self {
        Self {
            root,
            env,
            app_quota,
            max_apps,
            apps: Mutex::new(HashMap::new()),
        }
    }

    fn apps_dir(&self) -> PathBuf {
        self.root.join("apps")
    }

    fn fsync(&self) -> bool {
        self.env.durability == Durability::Fsync
    }

    fn new_app(&self, id: AppId, secret: Bytes) -> App {
        let env = StoreEnv {
            quota: self.env.quota.child("application", self.app_quota),
            ..self.env.clone()
        };
        App {
            dir: self.apps_dir().join(id.as_str()),
            id,
            secret,
            env,
            last_seen: Mutex::new(Instant::now()),
            shuffles: Mutex::new(HashMap::new()),
        }
    }

    /// Registers an application, or confirms an existing registration with the same
    /// secret (which also counts as a heartbeat).
    pub fn register(&self, id: AppId, secret: Bytes) -> Result<(), RequestError> {
        let mut apps = lock(&self.apps);
        if let Some(app) = apps.get(&id) {
            app.check(&secret)?;
            app.touch();
            return Ok(());
        }
        if apps.len() >= self.max_apps {
            return Err(RequestError::Limit(format!(
                "too many applications (limits.max_apps = {})",
                self.max_apps
            )));
        }
        let app = self.new_app(id.clone(), secret);
        std::fs::create_dir_all(&app.dir).map_err(|e| SpillError::Io {
            op: "create directory",
            path: app.dir.clone(),
            source: e,
        })?;
        meta::write(
            &app.dir.join("app.meta"),
            APP_MAGIC,
            &app.secret,
            self.fsync(),
        )?;
        apps.insert(id, Arc::new(app));
        Ok(())
    }

    /// The application, if `secret` is its secret. Counts as a sign of life.
    pub fn app(&self, id: &AppId, secret: &[u8]) -> Result<Arc<App>, RequestError> {
        let app = lock(&self.apps)
            .get(id)
            .cloned()
            .ok_or_else(|| RequestError::UnknownApp(id.clone()))?;
        app.check(secret)?;
        app.touch();
        Ok(app)
    }

    /// Forgets the application; returns it so the caller can delete its files.
    pub fn remove_app(&self, id: &AppId, secret: &[u8]) -> Result<Arc<App>, RequestError> {
        let app = self.app(id, secret)?;
        lock(&self.apps).remove(id);
        Ok(app)
    }

    /// Forgets the application whatever its secret (the admin endpoint's delete).
    pub fn remove_app_unchecked(&self, id: &AppId) -> Option<Arc<App>> {
        lock(&self.apps).remove(id)
    }

    /// The registered applications, sorted by id.
    pub fn apps(&self) -> Vec<Arc<App>> {
        let mut apps: Vec<_> = lock(&self.apps).values().cloned().collect();
        apps.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        apps
    }

    /// The server-wide disk quota (its usage counts every app's files).
    pub fn disk_quota(&self) -> &Arc<sluice_spill::DiskQuota> {
        &self.env.quota
    }

    /// Forgets the applications not seen for `expiry`; returns them for deletion.
    pub fn take_expired(&self, expiry: Duration) -> Vec<Arc<App>> {
        let mut apps = lock(&self.apps);
        let expired: Vec<AppId> = apps
            .iter()
            .filter(|(_, a)| lock(&a.last_seen).elapsed() >= expiry)
            .map(|(id, _)| id.clone())
            .collect();
        expired.iter().filter_map(|id| apps.remove(id)).collect()
    }

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
        for entry in entries.flatten() {
            let path = entry.path();
            let app = match self.recover_app(&path, &mut report) {
                Ok(app) => app,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "application not recovered");
                    report.skipped += 1;
                    continue;
                }
            };
            report.apps += 1;
            lock(&self.apps).insert(app.id.clone(), Arc::new(app));
        }
        Ok(report)
    }

    fn recover_app(&self, dir: &Path, report: &mut RecoveryReport) -> Result<App, String> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let id = AppId::new(name).map_err(|e| e.to_string())?;
        let secret = meta::read(&dir.join("app.meta"), APP_MAGIC).map_err(|e| e.to_string())?;
        let app = self.new_app(id, Bytes::from(secret));
        for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
            let path = entry.path();
            let Some(shuffle_id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("shuffle-"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            match recover_shuffle(&path, &app.env) {
                Ok((shuffle, incomplete)) => {
                    report.shuffles += 1;
                    report.committed_maps += lock(&shuffle.commits).by_map_id.len();
                    report.incomplete_maps += incomplete;
                    lock(&app.shuffles).insert(shuffle_id, Arc::new(shuffle));
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

fn recover_shuffle(dir: &Path, env: &StoreEnv) -> Result<(Shuffle, usize), String> {
    let body = meta::read(&dir.join("shuffle.meta"), SHUFFLE_MAGIC).map_err(|e| e.to_string())?;
    let d = ShuffleDescriptor::decode(Bytes::from(body)).map_err(|e| e.to_string())?;
    let schema = sluice_format::decode_schema(&d.schema).map_err(|e| e.to_string())?;
    let shape = ShuffleShape {
        num_partitions: d.num_partitions,
        partitioning: d.partitioning,
        schema,
        schema_ipc: d.schema,
    };
    let rec = ShuffleStore::recover(dir.to_path_buf(), env.clone()).map_err(|e| e.to_string())?;
    let mut commits = Commits {
        next_epoch: rec.max_epoch.map_or(0, |e| e.wrapping_add(1)),
        ..Commits::default()
    };
    for c in &rec.commits {
        commits.add(c.map_id, c.map_index, c.epoch);
    }
    let shuffle = Shuffle {
        shape,
        store: rec.store,
        commits: Mutex::new(commits),
    };
    Ok((shuffle, rec.incomplete.len()))
}

impl App {
    fn check(&self, secret: &[u8]) -> Result<(), RequestError> {
        if secrets_match(&self.secret, secret) {
            Ok(())
        } else {
            Err(RequestError::Unauthorized("wrong application secret"))
        }
    }

    fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    pub fn id(&self) -> &AppId {
        &self.id
    }

    /// Time since the app's last request.
    pub fn idle_for(&self) -> Duration {
        lock(&self.last_seen).elapsed()
    }

    /// Bytes of the app's files, as its disk quota counts them.
    pub fn disk_bytes(&self) -> u64 {
        self.env.quota.used()
    }

    pub fn shuffle_count(&self) -> usize {
        lock(&self.shuffles).len()
    }

    /// The app's shuffles, sorted by id.
    pub fn shuffles(&self) -> Vec<(u32, Arc<Shuffle>)> {
        let mut all: Vec<_> = lock(&self.shuffles)
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    pub fn shuffle(&self, shuffle_id: u32) -> Option<Arc<Shuffle>> {
        lock(&self.shuffles).get(&shuffle_id).cloned()
    }

    /// The shuffle a push writes to: created by the first push, which fixes its shape;
    /// later pushes must agree with it.
    pub fn shuffle_for_push(
        &self,
        shuffle_id: u32,
        shape: ShuffleShape,
    ) -> Result<Arc<Shuffle>, RequestError> {
        let mut shuffles = lock(&self.shuffles);
        if let Some(existing) = shuffles.get(&shuffle_id) {
            let have = &existing.shape;
            if have.num_partitions != shape.num_partitions
                || have.partitioning != shape.partitioning
                || have.schema.fields() != shape.schema.fields()
            {
                return Err(RequestError::ShuffleMismatch(format!(
                    "shuffle {shuffle_id} has {} partitions, {:?}, schema {:?}; push declares {} partitions, {:?}, schema {:?}",
                    have.num_partitions, have.partitioning, have.schema.fields(),
                    shape.num_partitions, shape.partitioning, shape.schema.fields()
                )));
            }
            return Ok(existing.clone());
        }
        let dir = self.dir.join(format!("shuffle-{shuffle_id}"));
        let store = ShuffleStore::create(dir.clone(), self.env.clone())?;
        let descriptor = ShuffleDescriptor {
            num_partitions: shape.num_partitions,
            partitioning: shape.partitioning.clone(),
            schema: shape.schema_ipc.clone(),
        };
        let fsync = self.env.durability == Durability::Fsync;
        meta::write(
            &dir.join("shuffle.meta"),
            SHUFFLE_MAGIC,
            &descriptor.encode(),
            fsync,
        )?;
        let shuffle = Arc::new(Shuffle {
            shape,
            store,
            commits: Mutex::new(Commits::default()),
        });
        shuffles.insert(shuffle_id, shuffle.clone());
        Ok(shuffle)
    }

    pub fn remove_shuffle(&self, shuffle_id: u32) -> Option<Arc<Shuffle>> {
        lock(&self.shuffles).remove(&shuffle_id)
    }

    /// Deletes every shuffle's files and the application's directory.
    pub fn delete_files(&self) -> Result<(), RequestError> {
        let shuffles: Vec<_> = lock(&self.shuffles).drain().map(|(_, s)| s).collect();
        for shuffle in shuffles {
            shuffle.store.delete()?;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RequestError::Internal(
                format!("removing {}: {e}", self.dir.display()),
            )),
            _ => Ok(()),
        }
    }
}

impl Shuffle {
    /// Map ids committed to this shuffle.
    pub fn committed_maps(&self) -> usize {
        lock(&self.commits).by_map_id.len()
    }

    /// Starts a push of `map`: returns the epoch its blocks are tagged with.
    pub fn begin_push(&self, map: &MapAttempt) -> Result<u32, RequestError> {
        let mut commits = lock(&self.commits);
        if commits.by_map_id.contains_key(&map.map_id) {
            return Err(RequestError::AlreadyCommitted { map_id: map.map_id });
        }
        let epoch = commits.next_epoch;
        commits.next_epoch = commits.next_epoch.wrapping_add(1);
        Ok(epoch)
    }

    /// Records the push's commit (durably, per the durability mode) and makes its blocks
    /// visible. The first commit of a map id wins. Blocking: call off the async runtime.
    /// The commits lock is not held during the disk writes, so fetches and new pushes
    /// of the shuffle never wait for an fsync.
    pub fn commit(&self, record: &CommitRecord, touched: &[u32]) -> Result<(), RequestError> {
        let map_id = record.map_id;
        {
            let mut commits = lock(&self.commits);
            if commits.by_map_id.contains_key(&map_id) {
                return Err(RequestError::AlreadyCommitted { map_id });
            }
            if commits.abandoned.contains(&record.epoch) {
                return Err(RequestError::Stream("the push was abandoned".into()));
            }
            if !commits.committing.insert(map_id) {
                return Err(RequestError::Busy(format!(
                    "another push of map {map_id} is committing"
                )));
            }
            commits.sealed.insert(record.epoch);
        }
        let written = self.store.commit(record, touched);
        let mut commits = lock(&self.commits);
        commits.committing.remove(&map_id);
        if written.is_err() {
            commits.sealed.remove(&record.epoch);
        }
        written?;
        commits.add(map_id, record.map_index, record.epoch);
        Ok(())
    }

    /// Gives up the push with `epoch`, which ended without a commit: returns whether it
    /// may be reclaimed. False if its commit has started (it may be durable already);
    /// once this returns true the epoch can never commit.
    pub fn abandon(&self, epoch: u32) -> bool {
        let mut commits = lock(&self.commits);
        !commits.sealed.contains(&epoch) && commits.abandoned.insert(epoch)
    }

    /// The committed map attempts a fetch with `filter` reads.
    pub fn select(&self, filter: &MapFilter) -> Selection {
        let commits = lock(&self.commits);
        let mut epochs = HashMap::new();
        let mut missing = Vec::new();
        match filter {
            MapFilter::MapIds(ids) => {
                let wanted: HashSet<u64> = ids.iter().copied().collect();
                for id in wanted {
                    match commits.by_map_id.get(&id) {
                        Some(&epoch) => {
                            epochs.insert(id, epoch);
                        }
                        None => missing.push(id),
                    }
                }
                missing.sort_unstable();
            }
            MapFilter::All | MapFilter::MapIndexRange { .. } => {
                let (start, end) = match filter {
                    MapFilter::MapIndexRange { start, end } => (*start, *end),
                    _ => (0, 0),
                };
                for (&index, &id) in &commits.first_by_index {
                    let in_range = (start..end).contains(&index) || filter == &MapFilter::All;
                    if let Some(&epoch) = commits.by_map_id.get(&id).filter(|_| in_range) {
                        epochs.insert(id, epoch);
                    }
                }
            }
        }
        Selection { epochs, missing }
    }
}
