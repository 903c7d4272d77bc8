//! Applications, their shuffles, and which map attempts are committed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sluice_proto::session::secrets_match;
use sluice_proto::{AppId, MapAttempt, MapFilter, Partitioning};
use sluice_spill::{BlockEntry, ShuffleStore};

use crate::error::RequestError;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All registered applications.
#[derive(Debug)]
pub(crate) struct Registry {
    root: PathBuf,
    apps: Mutex<HashMap<AppId, Arc<App>>>,
}

#[derive(Debug)]
pub(crate) struct App {
    secret: Bytes,
    dir: PathBuf,
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

#[derive(Debug, Clone, Copy)]
struct Committed {
    epoch: u32,
}

#[derive(Debug, Default)]
struct Commits {
    next_epoch: u32,
    by_map_id: HashMap<u64, Committed>,
    /// The attempt that committed first for each map index (for non-Spark readers).
    first_by_index: HashMap<u32, u64>,
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

impl Registry {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            apps: Mutex::new(HashMap::new()),
        }
    }

    /// Registers an application, or confirms an existing registration with the same secret.
    pub fn register(&self, id: AppId, secret: Bytes) -> Result<(), RequestError> {
        let mut apps = lock(&self.apps);
        if let Some(app) = apps.get(&id) {
            return app.check(&secret);
        }
        let dir = self.root.join("apps").join(id.as_str());
        apps.insert(
            id,
            Arc::new(App {
                secret,
                dir,
                shuffles: Mutex::new(HashMap::new()),
            }),
        );
        Ok(())
    }

    /// The application, if `secret` is its secret.
    pub fn app(&self, id: &AppId, secret: &[u8]) -> Result<Arc<App>, RequestError> {
        let app = lock(&self.apps)
            .get(id)
            .cloned()
            .ok_or_else(|| RequestError::UnknownApp(id.clone()))?;
        app.check(secret)?;
        Ok(app)
    }

    /// Forgets the application; returns it so the caller can delete its files.
    pub fn remove_app(&self, id: &AppId, secret: &[u8]) -> Result<Arc<App>, RequestError> {
        let app = self.app(id, secret)?;
        lock(&self.apps).remove(id);
        Ok(app)
    }
}

impl App {
    fn check(&self, secret: &[u8]) -> Result<(), RequestError> {
        if secrets_match(&self.secret, secret) {
            Ok(())
        } else {
            Err(RequestError::Unauthorized("wrong application secret"))
        }
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
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
        let store = ShuffleStore::create(self.dir.join(format!("shuffle-{shuffle_id}")))?;
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

    pub fn take_shuffles(&self) -> Vec<Arc<Shuffle>> {
        lock(&self.shuffles).drain().map(|(_, s)| s).collect()
    }
}

impl Shuffle {
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

    /// Marks the push's blocks as committed. The first commit of a map id wins.
    pub fn commit(&self, map: &MapAttempt, epoch: u32) -> Result<(), RequestError> {
        let mut commits = lock(&self.commits);
        if commits.by_map_id.contains_key(&map.map_id) {
            return Err(RequestError::AlreadyCommitted { map_id: map.map_id });
        }
        commits.by_map_id.insert(map.map_id, Committed { epoch });
        commits
            .first_by_index
            .entry(map.map_index)
            .or_insert(map.map_id);
        Ok(())
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
                        Some(c) => {
                            epochs.insert(id, c.epoch);
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
                    if let Some(c) = commits.by_map_id.get(&id).filter(|_| in_range) {
                        epochs.insert(id, c.epoch);
                    }
                }
            }
        }
        Selection { epochs, missing }
    }
}
