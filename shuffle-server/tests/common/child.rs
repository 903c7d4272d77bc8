//! A Sluice server in a child process: the test binary re-runs itself with only its
//! ignored `child_server` test selected, so a test can SIGKILL the server, restart it
//! on the same data directory and measure its memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sluice_client::ClientConfig;
use sluice_testkit::server::{client_config, start, start_peer};

const CHILD_ENV: &str = "SLUICE_CRASH_CHILD_DIR";
/// Memory budget of the child server, in bytes (default: the server's default).
const BUDGET_ENV: &str = "SLUICE_CHILD_MEMORY_BUDGET";
/// Set: the child writes blocks with O_DIRECT.
const DIRECT_ENV: &str = "SLUICE_CHILD_DIRECT_IO";
/// TOML whose `[storage]`, `[limits]` and `[transport]` sections replace the child's.
const CONFIG_ENV: &str = "SLUICE_CHILD_CONFIG";
/// The directory of another child server: this one presents its certificate and
/// accepts its cluster token (they are peers, and keep each other's second copies).
const PEER_OF_ENV: &str = "SLUICE_CHILD_PEER_OF";
/// Runs a server on `$SLUICE_CRASH_CHILD_DIR` until killed: the body of each test
/// binary's ignored `child_server` test, which `spawn_child` runs in a new process.
pub fn run_child_server() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let peer_of = std::env::var_os(PEER_OF_ENV).map(PathBuf::from);
    let tweak = |config: &mut sluice_server::ServerConfig| {
        // A killed peer is given up quickly.
        config.replication.peer_timeout = Duration::from_secs(2);
        config.storage.block_size = bytesize::ByteSize::kib(16);
        if let Some(budget) = std::env::var(BUDGET_ENV).ok().and_then(|b| b.parse().ok()) {
            config.storage.memory_budget = bytesize::ByteSize::b(budget);
            config.storage.block_size = bytesize::ByteSize::kib(256);
        }
        config.storage.direct_io = std::env::var_os(DIRECT_ENV).is_some();
        if let Ok(text) = std::env::var(CONFIG_ENV) {
            let given = sluice_server::ServerConfig::from_toml(&text).unwrap();
            config.storage = given.storage;
            config.limits = given.limits;
            config.transport = given.transport;
        }
    };
    runtime.block_on(async move {
        let server = match peer_of {
            Some(first) => start_peer(&dir, &first, tweak).await,
            None => start(&dir, tweak).await,
        };
        let ready = format!("{}\n{}", server.local_addr(), server.certificate_pem());
        std::fs::write(dir.join("ready.tmp"), ready).unwrap();
        std::fs::rename(dir.join("ready.tmp"), dir.join("ready")).unwrap();
        std::future::pending::<()>().await;
    });
}

pub struct ChildServer {
    pub process: Child,
    pub addr: std::net::SocketAddr,
    pub config: ClientConfig,
}

impl Drop for ChildServer {
    /// A failed test leaves no server behind.
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A child server on `dir`, writing with O_DIRECT when `direct_io`.
pub fn spawn_child(dir: &Path, direct_io: bool) -> ChildServer {
    spawn_child_with(dir, None, direct_io)
}

pub fn spawn_child_with(dir: &Path, memory_budget: Option<u64>, direct_io: bool) -> ChildServer {
    spawn(dir, memory_budget, direct_io, None)
}

/// A child server on `dir` whose storage, limits and transport are `toml`'s sections.
pub fn spawn_child_configured(dir: &Path, toml: &str) -> ChildServer {
    spawn(dir, None, false, Some((CONFIG_ENV, toml.as_ref())))
}

/// A child server on `dir`, peer of the one on `first_dir` (see [`PEER_OF_ENV`]); the
/// first must have started once (its certificate and token exist).
pub fn spawn_child_peer(dir: &Path, first_dir: &Path, direct_io: bool) -> ChildServer {
    spawn(
        dir,
        None,
        direct_io,
        Some((PEER_OF_ENV, first_dir.as_os_str())),
    )
}

/// Spawns the child, with one more variable in its environment if `env` is given.
fn spawn(
    dir: &Path,
    memory_budget: Option<u64>,
    direct_io: bool,
    env: Option<(&str, &std::ffi::OsStr)>,
) -> ChildServer {
    let _ = std::fs::remove_file(dir.join("ready"));
    let mut command = Command::new(std::env::current_exe().unwrap());
    if let Some((name, value)) = env {
        command.env(name, value);
    }
    if let Some(b) = memory_budget {
        command.env(BUDGET_ENV, b.to_string());
    }
    if direct_io {
        command.env(DIRECT_ENV, "1");
    }
    let mut process = command
        .args([
            "child_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The token is the first server's when this one is its peer.
    let token_dir = match env {
        Some((PEER_OF_ENV, first)) => Path::new(first),
        _ => dir,
    };
    let (ready, token) = match await_ready(dir, token_dir) {
        Ok(found) => found,
        Err(e) => {
            // A child that never became ready is not left behind.
            let _ = process.kill();
            let _ = process.wait();
            panic!("child server on {}: {e}", dir.display());
        }
    };
    let (addr, pem) = ready.split_once('\n').unwrap();
    let mut config = client_config(pem, &token);
    config.idle_timeout = Duration::from_secs(5);
    ChildServer {
        process,
        addr: addr.parse().unwrap(),
        config,
    }
}

/// The child's `ready` file (address and certificate) and the cluster token in
/// `token_dir`, once the child has written them (60 s at most).
fn await_ready(dir: &Path, token_dir: &Path) -> Result<(String, Vec<u8>), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("ready")) {
            break text;
        }
        if Instant::now() >= deadline {
            return Err("not ready after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let token_path = token_dir.join("data/cluster-token");
    let token =
        std::fs::read(&token_path).map_err(|e| format!("reading {}: {e}", token_path.display()))?;
    Ok((ready, token))
}

/// Peak resident memory of a process, from `/proc/<pid>/status` (VmHWM).
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Current resident memory of a process, from `/proc/<pid>/status` (VmRSS).
pub fn current_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}
