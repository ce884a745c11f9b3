//! The `log-agent` command line: `run`, `validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use log_agent::config::{Config, DEFAULT_CONFIG_PATH};

/// Tails log files and ships every line to Kafka, HTTP, files or stdout.
#[derive(Parser)]
#[command(name = "log-agent", version, about)]
struct Cli {
    /// Format of the agent's own logs (on stderr); their level comes from LOG_AGENT_LOG.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Tail files and ship them until SIGTERM or SIGINT, then drain and exit.
    Run {
        /// Configuration file [default: $LOG_AGENT_CONFIG, then /etc/log-agent/agent.yaml].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration and print it resolved; exit 2 if it is wrong.
    Validate {
        /// Configuration file [default: $LOG_AGENT_CONFIG, then /etc/log-agent/agent.yaml].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Exit code for bad usage or a bad configuration.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Validate { config } => match load(config) {
            Ok(config) => {
                print!("{}", config.to_yaml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("log-agent: {e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Run { config } => {
            let config = match load(config) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("log-agent: {e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            match run(config) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("log-agent: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<Config, log_agent::config::ConfigError> {
    let path = path
        .or_else(|| std::env::var_os("LOG_AGENT_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    Config::load(&path)
}

fn run(config: Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("log-agent")
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        log_agent::run(config, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if summary.drained {
        tracing::info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    } else {
        tracing::warn!(
            "stopped before everything was delivered; it is read again at the next start"
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Completes at the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
