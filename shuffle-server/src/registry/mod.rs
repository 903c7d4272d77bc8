//! Applications, their shuffles, and which map attempts are committed; persisted next
//! to the data (`app.meta`, `shuffle.meta`, each shuffle's commit log) and rebuilt from
//! it on start ([`recover`]).
//!
//! Authentication (an app's secret) is [`App`]'s, the shape and commit state of a
//! shuffle are [`Shuffle`]'s (the state itself is the pure [`crate::commits`]), and the
//! [`Registry`] owns the set of apps and their lifecycle: register, delete, expire.

mod app;
mod recover;
mod shuffle;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::message::MIN_SECRET_LEN;
use sluice_proto::{AppId, ProtoError};
use sluice_spill::{Durability, SpillError, StoreEnv};
use tokio_util::sync::CancellationToken;

pub(crate) use app::App;
pub(crate) use shuffle::{Shuffle, ShuffleShape};

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
            last_seen: Mutex::new(std::time::Instant::now()),
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
        if secret.len() < MIN_SECRET_LEN {
            return Err(RequestError::Proto(ProtoError::Invalid {
                field: "application secret",
                reason: format!(
                    "{} bytes; a new application's secret needs at least {MIN_SECRET_LEN}",
                    secret.len()
                ),
            }));
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
