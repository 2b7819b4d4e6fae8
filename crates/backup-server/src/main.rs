//! `backup-server`: serves the data-backup-manager API (default 127.0.0.1:20010) and runs the
//! scheduler. See the crate docs of `backup_server` and `docs/api.md`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use backup_server::{app::App, config, core::Core, server};
use clap::{Parser, Subcommand};

/// The data-backup-manager HTTP API server (PRD API contract) and scheduler host.
///
/// Settings: the config file (`server:` section and the core's sections) < environment
/// (API_PORT, DBM_API_LISTEN, DBM_API_TOKEN, DBM_REPOSITORY, DBM_PASSWORD_FILE,
/// DBM_DATABASE_URL, ...) < these flags. Logs go to stderr (DBM_LOG sets the level filter).
#[derive(Debug, Parser)]
#[command(name = "backup-server", version)]
struct Args {
    /// Config file (default ~/.vrooli/data-backup-manager/config.yaml).
    #[arg(long, env = "DBM_CONFIG")]
    config: Option<PathBuf>,
    /// Address to bind (default 127.0.0.1).
    #[arg(long)]
    listen: Option<IpAddr>,
    /// Port (default API_PORT, else 20010).
    #[arg(long)]
    port: Option<u16>,
    /// Log format: `json` (one object per line) or `text`.
    #[arg(long, env = "DBM_LOG_FORMAT", default_value = "text", value_parser = ["json", "text"])]
    log_format: String,
    /// Write the process id to this file (for service managers' stop steps).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the API and run the scheduler (the default).
    Serve,
    /// Print the OpenAPI document.
    Openapi,
    /// Print docs/api.md (generated from the OpenAPI document).
    ApiMd,
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DBM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = if format == "json" {
        b.json().flatten_event(true).try_init()
    } else {
        b.try_init()
    };
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Cmd::Openapi) => {
            print!("{}", backup_server::OPENAPI);
            return Ok(());
        }
        Some(Cmd::ApiMd) => {
            print!(
                "{}",
                backup_server::apidoc::markdown(backup_server::OPENAPI)
            );
            return Ok(());
        }
        Some(Cmd::Serve) | None => {}
    }
    init_logs(&args.log_format);
    let config_path = args
        .config
        .clone()
        .or_else(backup_core::config::default_config_path);
    let section = match &config_path {
        Some(p) if p.exists() || args.config.is_some() => config::read_section(p)?,
        _ => config::ServerSection::default(),
    };
    let cfg = config::ServerConfig::resolve(
        section,
        &config::Overrides {
            listen: args.listen,
            port: args.port,
        },
    )?;
    let tls = cfg.tls.as_ref().map(server::tls_acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.addr))?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid file {}", p.display()))?;
    }
    let core = Arc::new(Core::start(args.config.as_deref()).await?);
    let app = Arc::new(App::new(cfg.clone(), core));
    tracing::info!(
        addr = %cfg.addr,
        tls = tls.is_some(),
        tokens = cfg.tokens.len(),
        "backup-server listening"
    );
    server::serve(
        app.clone(),
        listener,
        tls,
        shutdown_signal(),
        cfg.shutdown_grace,
    )
    .await?;
    app.core.shutdown(cfg.shutdown_grace).await;
    if let Some(p) = &args.pid_file {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM (service managers, `vrooli scenario stop`) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
