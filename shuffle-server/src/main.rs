//! `sluice-server`: the shuffle server sidecar, and the admin commands that talk to a
//! running one (`status`, `delete-app`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use sluice_server::admin_client::{self, AdminReply};
use sluice_server::config::layers::{self, Key};
use sluice_server::config::LogFormat;
use sluice_server::status::Status;
use sluice_server::{Server, ServerConfig};

// mimalloc keeps freed block buffers for reuse instead of returning them to the kernel
// (glibc's mmap threshold churn shows up as page faults on the split path), with the
// settings of `sluice_server::allocator`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str = "Sluice shuffle server: accepts Arrow batches over QUIC, splits them \
     by partition, stores them in per-partition files and serves them to reducers.";

fn command(keys: &[Key]) -> Command {
    Command::new("sluice-server")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .long_about(format!(
            "{ABOUT}\n\n\
             Configuration comes from a TOML file, then command-line flags, then SLUICE_* \
             environment variables (highest precedence). Without a subcommand the server \
             runs until SIGTERM or Ctrl-C, then drains (refuses new pushes, lets open ones \
             commit for up to drain_timeout) and exits 0."
        ))
        .arg(
            Arg::new("config")
                .long("config")
                .short('c')
                .env("SLUICE_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .global(true)
                .help("TOML configuration file (see config/sluice-server.example.toml)"),
        )
        .arg(
            Arg::new("print-config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("Print the merged configuration as TOML and exit"),
        )
        .args(layers::cli_args(keys).into_iter().map(|a| a.global(true)))
        .subcommand(
            Command::new("status")
                .about("Show a running server's status (from its admin endpoint)")
                .arg(
                    Arg::new("json")
                        .long("json")
                        .action(ArgAction::SetTrue)
                        .help("Print the status document as JSON"),
                ),
        )
        .subcommand(
            Command::new("delete-app")
                .about("Delete an application and its data on a running server")
                .arg(Arg::new("app").required(true).help("Application id")),
        )
}

fn main() -> ExitCode {
    let allocator = sluice_server::allocator::tune();
    let keys = layers::documented_keys();
    let matches = command(&keys).get_matches();
    let config = match load_config(&keys, &matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-server: {e}");
            return ExitCode::from(2);
        }
    };
    if matches.get_flag("print-config") {
        return match toml::to_string(&config) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    init_logs(&config);
    if let Err(e) = allocator {
        tracing::warn!(error = %e, "transparent huge pages stay on: the kernel refused PR_SET_THP_DISABLE");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-server: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match matches.subcommand() {
            Some(("status", sub)) => status(&config, sub.get_flag("json")).await,
            Some(("delete-app", sub)) => {
                let app = sub.get_one::<String>("app").expect("required");
                delete_app(&config, app).await
            }
            _ => serve(config).await,
        }
    })
}

fn load_config(keys: &[Key], matches: &ArgMatches) -> Result<ServerConfig, String> {
    let mut overrides = layers::cli_overrides(keys, matches);
    let mut vars = Vec::new();
    // Only our variables are read, so an unrelated non-UTF-8 one does no harm.
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with("SLUICE_")) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| format!("environment variable {name} is not valid UTF-8"))?;
        vars.push((name.to_string(), value));
    }
    overrides.extend(layers::env_overrides(keys, vars).map_err(|e| e.to_string())?);
    let file = matches.get_one::<PathBuf>("config");
    layers::load(file.map(PathBuf::as_path), &overrides).map_err(|e| e.to_string())
}

fn init_logs(config: &ServerConfig) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log.level);
    // Colour only on a terminal: a file or journald would keep the escape codes.
    let colour = config.log.format == LogFormat::Text && std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

async fn serve(config: ServerConfig) -> ExitCode {
    let drain_timeout = config.drain_timeout;
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", server.local_addr());
    println!("cluster token: {}", server.token_path().display());
    if let Some(cert) = server.certificate_path() {
        println!("certificate: {}", cert.display());
    }
    if let Some(admin) = server.admin_addr() {
        println!("admin endpoint: http://{admin}");
        println!("admin token: {}", server.admin_token_path().display());
    }
    wait_for_signal().await;
    tracing::info!(timeout = ?drain_timeout, "draining: refusing new pushes");
    let report = server.drain(drain_timeout).await;
    if report.abandoned_pushes > 0 {
        tracing::warn!(
            pushes = report.abandoned_pushes,
            "drain timeout: abandoning open pushes (their maps were never acknowledged)"
        );
    }
    server.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn status(config: &ServerConfig, json: bool) -> ExitCode {
    let reply = admin_client::request(config.admin.listen, hyper::Method::GET, "/status", None);
    let body = match expect_ok(reply.await) {
        Ok(body) => body,
        Err(code) => return code,
    };
    if json {
        print!("{body}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<Status>(&body) {
        Ok(status) => {
            print!("{}", status.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice-server: unreadable status document: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn delete_app(config: &ServerConfig, app: &str) -> ExitCode {
    let path = config.admin_token_path();
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            eprintln!(
                "sluice-server: reading the admin token {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let path = format!("/apps/{app}");
    let reply = admin_client::request(
        config.admin.listen,
        hyper::Method::DELETE,
        &path,
        Some(&token),
    );
    match expect_ok(reply.await) {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The body of a 200 reply; anything else is printed and turned into the exit code.
fn expect_ok(
    reply: Result<AdminReply, admin_client::AdminClientError>,
) -> Result<String, ExitCode> {
    match reply {
        Ok(r) if r.status == 200 => Ok(r.body),
        Ok(r) => {
            eprint!("sluice-server: HTTP {}: {}", r.status, r.body);
            Err(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("sluice-server: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}
