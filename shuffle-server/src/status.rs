//! The `/status` document: what the server holds, read by `sluice-server status`.

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub uptime_seconds: u64,
    /// Storage backend: "io_uring" or "syscall".
    pub backend: String,
    /// The QUIC address clients connect to.
    pub listen: String,
    pub draining: bool,
    pub connections: usize,
    pub streams: usize,
    pub pushes: usize,
    pub memory: Usage,
    pub disk: Usage,
    pub apps: Vec<AppStatus>,
}

/// Bytes in use against a limit (`None`: unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub used_bytes: u64,
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub id: String,
    pub idle_seconds: u64,
    pub disk_bytes: u64,
    pub shuffles: Vec<ShuffleStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleStatus {
    pub id: u32,
    pub partitions: u32,
    pub committed_maps: usize,
    /// Bytes of the shuffle's partition files (blocks and their record framing).
    pub stored_bytes: u64,
}

impl Status {
    pub(crate) fn of(ctx: &Ctx) -> Self {
        let quota = ctx.registry.disk_quota();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: ctx.started.elapsed().as_secs(),
            backend: ctx.backend.name().to_string(),
            listen: ctx.listen.to_string(),
            draining: ctx.activity.draining(),
            connections: ctx.activity.connections.get(),
            streams: ctx.activity.streams.get(),
            pushes: ctx.activity.pushes.get(),
            memory: Usage {
                used_bytes: ctx.memory.used(),
                limit_bytes: Some(ctx.memory.limit()),
            },
            disk: Usage {
                used_bytes: quota.used(),
                limit_bytes: quota.limit(),
            },
            apps: ctx.registry.apps().iter().map(|a| app_status(a)).collect(),
        }
    }

    /// A human-readable summary, as `sluice-server status` prints it.
    pub fn render(&self) -> String {
        let limit = |u: &Usage| u.limit_bytes.map_or("unlimited".into(), human);
        let mut out = format!(
            "sluice-server {} on {} (backend {}, up {}s{})\n\
             connections {}, streams {}, pushes {}\n\
             memory {} of {}, disk {} of {}\n",
            self.version,
            self.listen,
            self.backend,
            self.uptime_seconds,
            if self.draining { ", DRAINING" } else { "" },
            self.connections,
            self.streams,
            self.pushes,
            human(self.memory.used_bytes),
            limit(&self.memory),
            human(self.disk.used_bytes),
            limit(&self.disk),
        );
        out.push_str(&format!("{} application(s)\n", self.apps.len()));
        for app in &self.apps {
            out.push_str(&format!(
                "  {}: {} shuffle(s), {} on disk, idle {}s\n",
                app.id,
                app.shuffles.len(),
                human(app.disk_bytes),
                app.idle_seconds
            ));
            for s in &app.shuffles {
                out.push_str(&format!(
                    "    shuffle {}: {} partitions, {} maps committed, {}\n",
                    s.id,
                    s.partitions,
                    s.committed_maps,
                    human(s.stored_bytes)
                ));
            }
        }
        out
    }
}

fn app_status(app: &crate::registry::App) -> AppStatus {
    AppStatus {
        id: app.id().as_str().to_string(),
        idle_seconds: app.idle_for().as_secs(),
        disk_bytes: app.disk_bytes(),
        shuffles: app
            .shuffles()
            .into_iter()
            .map(|(id, s)| ShuffleStatus {
                id,
                partitions: s.shape.num_partitions,
                committed_maps: s.committed_maps(),
                stored_bytes: s.store.stored_bytes(),
            })
            .collect(),
    }
}

fn human(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}
