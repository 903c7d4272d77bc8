//! Applications, their shuffles, and which map attempts are committed; persisted next
//! to the data (`app.meta`, `shuffle.meta`, each shuffle's commit log) and rebuilt from
//! it on start.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::session::secrets_match;
use sluice_proto::{AppId, MapAttempt, MapFilter, Partitioning, ShuffleDescriptor};
use sluice_spill::{
    remove_dir, BlockEntry, CommitRecord, Durability, ShuffleStore, SpillError, StoreEnv,
    TRASH_PREFIX,
};
use tokio_util::sync::CancellationToken;

use crate::activity::Counter;
use crate::error::RequestError;
use crate::meta;

const APP_MAGIC: [u8; 4] = *b"SLAP";
const SHUFFLE_MAGIC: [u8; 4] = *b"SLSH";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All registered applications.
///
/// Every application and every shuffle gets a *generation*, unique on this server and
/// part of its directory's name (`apps/<app>@<gen>/shuffle-<id>@<gen>`), so an app
/// registered again after a delete, or a shuffle pushed again after one, never shares a
/// file with its predecessor, whatever the predecessor's requests still hold.
#[derive(Debug)]
pub(crate) struct Registry {
    root: PathBuf,
    /// Store settings; `quota` is the server's, each app gets a child of it.
    env: StoreEnv,
    app_quota: Option<u64>,
    max_apps: usize,
    apps: Mutex<HashMap<AppId, Arc<App>>>,
    generations: Arc<Generations>,
}

/// The source of generations: above every one found on disk.
#[derive(Debug, Default)]
struct Generations(AtomicU64);

impl Generations {
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }

    fn seen(&self, generation: u64) {
        self.0.fetch_max(generation + 1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(crate) struct App {
    id: AppId,
    secret: Bytes,
    dir: PathBuf,
    env: StoreEnv,
    last_seen: Mutex<Instant>,
    shuffles: Mutex<Shuffles>,
    generations: Arc<Generations>,
    /// Cancelled when the app is deleted: ends every request in flight on it.
    closing: CancellationToken,
    /// Pushes and fetches in progress: an app with any is not idle.
    pub requests: Counter,
}

#[derive(Debug, Default)]
struct Shuffles {
    by_id: HashMap<u32, Arc<Shuffle>>,
    /// Set when the app is deleted: no shuffle is created or found afterwards.
    closed: bool,
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
    /// Cancelled when the shuffle or its app is deleted.
    closing: CancellationToken,
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
            generations: Arc::default(),
        }
    }

    fn apps_dir(&self) -> PathBuf {
        self.root.join("apps")
    }

    fn fsync(&self) -> bool {
        self.env.durability == Durability::Fsync
    }

    fn new_app(&self, id: AppId, secret: Bytes, dir: PathBuf) -> App {
        let env = StoreEnv {
            quota: self.env.quota.child("application", self.app_quota),
            ..self.env.clone()
        };
        App {
            dir,
            id,
            secret,
            env,
            last_seen: Mutex::new(Instant::now()),
            shuffles: Mutex::default(),
            generations: self.generations.clone(),
            closing: CancellationToken::new(),
            requests: Counter::default(),
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
        let dir = self
            .apps_dir()
            .join(dir_name(id.as_str(), self.generations.next()));
        let app = self.new_app(id.clone(), secret, dir);
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

    /// Forgets the application and [closes](App::close) it; returns it so the caller
    /// can delete its files.
    pub fn remove_app(&self, id: &AppId, secret: &[u8]) -> Result<Arc<App>, RequestError> {
        let app = self.app(id, secret)?;
        let mut apps = lock(&self.apps);
        // Only this registration: not one made again since `app` was looked up.
        if apps.get(id).is_some_and(|a| Arc::ptr_eq(a, &app)) {
            apps.remove(id);
        }
        drop(apps);
        app.close();
        Ok(app)
    }

    /// Forgets and closes the application whatever its secret (the admin endpoint's
    /// delete).
    pub fn remove_app_unchecked(&self, id: &AppId) -> Option<Arc<App>> {
        let app = lock(&self.apps).remove(id)?;
        app.close();
        Some(app)
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

    /// Forgets and closes the applications not seen for `expiry` (and with no push or
    /// fetch in progress); returns them for deletion.
    pub fn take_expired(&self, expiry: Duration) -> Vec<Arc<App>> {
        let mut apps = lock(&self.apps);
        let expired: Vec<AppId> = apps
            .iter()
            .filter(|(_, a)| a.requests.get() == 0 && lock(&a.last_seen).elapsed() >= expiry)
            .map(|(id, _)| id.clone())
            .collect();
        let expired: Vec<_> = expired.iter().filter_map(|id| apps.remove(id)).collect();
        drop(apps);
        expired.iter().for_each(|a| a.close());
        expired
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
            let id = id.to_string();
            match newest.get(&id) {
                Some((g, _)) if *g > generation => {
                    tracing::warn!(path = %path.display(), "older generation of an application; not recovered");
                    report.skipped += 1;
                }
                other => {
                    if let Some((_, older)) = other {
                        tracing::warn!(path = %older.display(), "older generation of an application; not recovered");
                        report.skipped += 1;
                    }
                    newest.insert(id, (generation, path));
                }
            }
        }
        for (_, path) in newest.into_values() {
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
                    report.committed_maps += lock(&shuffle.commits).by_map_id.len();
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

/// `<name>@<generation>`: the directory of one generation of an app or a shuffle.
fn dir_name(name: &str, generation: u64) -> String {
    format!("{name}@{generation}")
}

/// The name and generation of a directory (generation 0 for one made before
/// generations were kept). App ids never contain `@`.
fn parse_dir_name(dir: &str) -> (&str, u64) {
    match dir.rsplit_once('@') {
        Some((name, g)) => match g.parse() {
            Ok(g) => (name, g),
            Err(_) => (dir, 0),
        },
        None => (dir, 0),
    }
}

/// Removes what a delete interrupted by a crash left behind.
fn remove_trash(path: &Path) {
    tracing::info!(path = %path.display(), "removing the rest of an interrupted delete");
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!(path = %path.display(), error = %e, "removing an interrupted delete");
    }
}

fn recover_shuffle(
    dir: &Path,
    env: &StoreEnv,
    closing: CancellationToken,
) -> Result<(Shuffle, usize), String> {
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
        closing,
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
        lock(&self.shuffles).by_id.len()
    }

    /// The app's shuffles, sorted by id.
    pub fn shuffles(&self) -> Vec<(u32, Arc<Shuffle>)> {
        let mut all: Vec<_> = lock(&self.shuffles)
            .by_id
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// The shuffle, if it exists; an error once the app was deleted.
    pub fn shuffle(&self, shuffle_id: u32) -> Result<Option<Arc<Shuffle>>, RequestError> {
        let shuffles = lock(&self.shuffles);
        if shuffles.closed {
            return Err(self.deleted());
        }
        Ok(shuffles.by_id.get(&shuffle_id).cloned())
    }

    fn deleted(&self) -> RequestError {
        RequestError::Deleted(format!("application {} was deleted", self.id))
    }

    /// The shuffle a push writes to: created by the first push, which fixes its shape;
    /// later pushes must agree with it.
    pub fn shuffle_for_push(
        &self,
        shuffle_id: u32,
        shape: ShuffleShape,
    ) -> Result<Arc<Shuffle>, RequestError> {
        let mut shuffles = lock(&self.shuffles);
        if shuffles.closed {
            return Err(self.deleted());
        }
        if let Some(existing) = shuffles.by_id.get(&shuffle_id) {
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
        let name = dir_name(&format!("shuffle-{shuffle_id}"), self.generations.next());
        let dir = self.dir.join(name);
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
            closing: self.closing.child_token(),
        });
        shuffles.by_id.insert(shuffle_id, shuffle.clone());
        Ok(shuffle)
    }

    /// Forgets the shuffle and [closes](Shuffle::close) it; the caller deletes its
    /// files ([`Shuffle::delete_files`]).
    pub fn remove_shuffle(&self, shuffle_id: u32) -> Result<Option<Arc<Shuffle>>, RequestError> {
        let mut shuffles = lock(&self.shuffles);
        if shuffles.closed {
            return Err(self.deleted());
        }
        let shuffle = shuffles.by_id.remove(&shuffle_id);
        drop(shuffles);
        if let Some(s) = &shuffle {
            s.close();
        }
        Ok(shuffle)
    }

    /// Ends everything in flight on the app: no shuffle is found or created through it
    /// afterwards, every push and fetch on it is told (their [`closed`](Self::closed)
    /// completes) and every store refuses further writes, commits and reads. Its files
    /// stay until [`delete_files`](Self::delete_files).
    pub fn close(&self) {
        let shuffles: Vec<_> = {
            let mut shuffles = lock(&self.shuffles);
            shuffles.closed = true;
            shuffles.by_id.drain().map(|(_, s)| s).collect()
        };
        self.closing.cancel();
        for shuffle in shuffles {
            shuffle.close();
        }
    }

    /// Deletes the application's directory (after [`close`](Self::close)). Blocking.
    pub fn delete_files(&self) -> Result<(), RequestError> {
        Ok(remove_dir(&self.dir)?)
    }
}

impl Shuffle {
    /// Ends everything in flight on the shuffle: pushes and fetches are told (their
    /// [`closed`](Self::closed) completes) and the store refuses further writes,
    /// commits and reads.
    pub fn close(&self) {
        self.closing.cancel();
        self.store.close();
    }

    /// Completes when the shuffle or its app is deleted.
    pub async fn closed(&self) {
        self.closing.cancelled().await
    }

    /// Deletes the shuffle's directory (after [`close`](Self::close)). Blocking.
    pub fn delete_files(&self) -> Result<(), RequestError> {
        Ok(self.store.delete()?)
    }

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
            if self.closing.is_cancelled() {
                return Err(RequestError::Deleted("the shuffle was deleted".into()));
            }
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
