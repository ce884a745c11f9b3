//! The `log-agent` command line: `run`, `validate`, `replay`.

use std::path::PathBuf;
use std::process::ExitCode;

use std::num::NonZeroU64;

use anyhow::Context as _;
use chrono::{DateTime, FixedOffset};
use clap::{Parser, Subcommand, ValueEnum};
use log_agent::config::watch::ConfigFile;
use log_agent::config::{Config, DEFAULT_CONFIG_PATH};
use log_agent::replay::{ProgressMode, ReplayOptions};

/// `--version`: the version and the commit of the build.
const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LOG_AGENT_COMMIT"),
    ")"
);

/// Tails log files and ships every line to Kafka, HTTP, files or stdout.
#[derive(Parser)]
#[command(name = "log-agent", version = VERSION_LINE, about)]
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
    /// Tail files and ship them until SIGTERM or SIGINT, then drain and exit (a second signal
    /// exits at once); SIGHUP reloads the configuration.
    Run {
        /// Configuration file [default: $LOG_AGENT_CONFIG, then /etc/log-agent/agent.yaml].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Reload the configuration when the file's content changes (checked every second),
        /// as when a mounted ConfigMap is updated.
        #[arg(long)]
        watch_config: bool,
    },
    /// Check a configuration and print it resolved; exit 2 if it is wrong.
    Validate {
        /// Configuration file [default: $LOG_AGENT_CONFIG, then /etc/log-agent/agent.yaml].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the unit tests of the configuration's `tests:` against its transforms; exit 0
    /// when all pass, 1 when one fails, 2 if the configuration is wrong.
    Test {
        /// Configuration file [default: $LOG_AGENT_CONFIG, then /etc/log-agent/agent.yaml].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Stream the events passing points of a running agent's topology as NDJSON (the agent's
    /// config needs `tap:`): a source (`app`), a transform output (`mask`, `split.errors`) or a
    /// sink's input (`sink:kafka`); the filter is a glob over those names.
    Tap {
        /// The agent's tap address (`tap.address`).
        #[arg(long, default_value = "127.0.0.1:8687")]
        api: String,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// Which points, as a glob [default: every point].
        filter: Option<String>,
    },
    /// Read files (plain, gzip, zstd, bzip2 or xz) to their end once, ship them, wait for every ack and print a
    /// summary; exit 0 when everything was delivered, 1 otherwise, 2 for bad usage.
    Replay(ReplayArgs),
    /// Print a shell completion script (e.g. `log-agent completions bash > /etc/bash_completion.d/log-agent`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff): log-agent(1), or log-agent-COMMAND(1) with a command
    /// (e.g. `log-agent man run > log-agent-run.1 && man ./log-agent-run.1`).
    Man {
        /// A command (run, validate, replay...) for its own page.
        command: Option<String>,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Configuration whose sources give each file its format and sinks [default:
    /// $LOG_AGENT_CONFIG; without it, --to is needed].
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where to ship instead of the configuration's sinks: stdout, blackhole, file:PATH,
    /// kafka://HOST:PORT[,HOST:PORT]/TOPIC, http://… or https://… (NDJSON POST).
    #[arg(long)]
    to: Option<String>,
    /// Format of the lines, replacing the sources' (raw, json, logfmt, nginx_combined,
    /// nginx_error, apache_common, apache_combined, cri, docker).
    #[arg(long)]
    format: Option<String>,
    /// Only events at or after this time (RFC 3339, or a date YYYY-MM-DD in UTC).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<FixedOffset>>,
    /// Only events before this time (RFC 3339, or a date YYYY-MM-DD in UTC).
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<FixedOffset>>,
    /// At most this many lines a second.
    #[arg(long, value_name = "LINES_PER_S")]
    rate_limit: Option<NonZeroU64>,
    /// Where dead letters go [default: the configuration's data_dir, else the current directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Files, directories and globs to read; rotation families are read oldest first.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
}

/// An RFC 3339 time, or a date (midnight UTC).
fn parse_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time);
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc().fixed_offset())
        .ok_or_else(|| format!("`{text}`: expected RFC 3339 (2026-11-25T10:00:00Z) or YYYY-MM-DD"))
}

/// Exit code for bad usage or a bad configuration.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    ignore_file_size_signal();
    keep_freed_memory_for_reuse();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Validate { config } => match load(config) {
            Ok(config) => {
                // Not errors (a volume may be mounted later), but said: nothing would be read
                // there, or delivered, until it is.
                for warning in log_agent::config::host::warnings(&config) {
                    eprintln!("log-agent: warning: {warning}");
                }
                print!("{}", config.to_yaml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                report(&e);
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Test { config } => match load(config) {
            Ok(config) => run_config_tests(&config),
            Err(e) => {
                report(&e);
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Tap { api, limit, filter } => match tap(&api, limit, filter.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&format!("{e:#}"));
                ExitCode::FAILURE
            }
        },
        Command::Replay(args) => match replay_options(args) {
            Ok(options) => match replay(options) {
                Ok(code) => code,
                Err(e) => {
                    report(&format!("{e:#}"));
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                report(&e);
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "log-agent",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { command } => match man_page(command.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&e);
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Run {
            config,
            watch_config,
        } => {
            let path = config_path(config);
            let mut file = ConfigFile::new(&path);
            let config = match file.load() {
                Ok(config) => config,
                Err(e) => {
                    report(&e);
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            match run(config, file, watch_config) {
                Ok(code) => code,
                Err(e) => {
                    report(&format!("{e:#}"));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Writes the manual page of the agent, or of one of its commands, to standard output.
fn man_page(command: Option<&str>) -> Result<(), String> {
    use clap::CommandFactory;
    let mut page = Cli::command();
    if let Some(name) = command {
        let known: Vec<String> = page
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        let sub = page
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| format!("man: no command `{name}` (one of {})", known.join(", ")))?;
        // A page of its own, named and titled as man expects: log-agent-run(1).
        page = sub.name(format!("log-agent-{name}")).version(VERSION_LINE);
    }
    match clap_mangen::Man::new(page).render(&mut std::io::stdout()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("man: {e}")),
        _ => Ok(()),
    }
}

/// Runs the config's unit tests, printing one line per test (and each failure under it).
fn run_config_tests(config: &Config) -> ExitCode {
    if config.tests.is_empty() {
        eprintln!("log-agent: the configuration has no `tests:`");
        return ExitCode::FAILURE;
    }
    let outcomes = log_agent::transform::unit_test::run_tests(
        &config.transforms,
        &config.graph(),
        &config.tests,
    );
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    for outcome in &outcomes {
        if outcome.failures.is_empty() {
            println!("test {} ... passed", outcome.name);
        } else {
            println!("test {} ... failed", outcome.name);
            for failure in &outcome.failures {
                for (i, line) in failure.lines().enumerate() {
                    println!("  {} {line}", if i == 0 { "-" } else { " " });
                }
            }
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the events a running agent's taps stream, until `limit` events or the agent stops.
fn tap(address: &str, limit: Option<u64>, filter: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let filter: String = filter
        .unwrap_or("*")
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' | b':' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    let url = format!("http://{address}/tap?point={filter}");
    runtime()?.block_on(async {
        let mut response = reqwest::get(&url).await.with_context(|| {
            format!("cannot reach the agent's taps at {address} (is `tap:` in its config?)")
        })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("{url}: {status}: {}", body.trim());
        }
        let mut stdout = std::io::stdout().lock();
        let mut events = 0;
        let mut pending = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                stdout.write_all(&line)?;
                if !line.starts_with(b"{\"tap_dropped\"") {
                    events += 1;
                }
                if limit.is_some_and(|limit| events >= limit) {
                    stdout.flush()?;
                    return Ok(());
                }
            }
            stdout.flush()?;
        }
        Ok(())
    })
}

/// Prints an error on standard error, one `log-agent: ` line for each of its lines (a config
/// with several errors gives one line each).
fn report(error: &dyn std::fmt::Display) {
    for line in error.to_string().lines() {
        eprintln!("log-agent: {line}");
    }
}

/// `--config`, else `$LOG_AGENT_CONFIG`, else the default path.
fn config_path(path: Option<PathBuf>) -> PathBuf {
    path.or_else(|| std::env::var_os("LOG_AGENT_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

fn load(path: Option<PathBuf>) -> Result<Config, log_agent::config::ConfigError> {
    Config::load(&config_path(path))
}

/// The replay's options from its arguments; the error is a bad-usage line.
fn replay_options(args: ReplayArgs) -> Result<ReplayOptions, String> {
    let config_path = args
        .config
        .or_else(|| std::env::var_os("LOG_AGENT_CONFIG").map(PathBuf::from));
    let config = match config_path {
        Some(path) => Some(Config::load(&path).map_err(|e| e.to_string())?),
        None => None,
    };
    let to = args
        .to
        .as_deref()
        .map(|target| log_agent::sink::parse_target(target).map_err(|e| format!("--to {e}")))
        .transpose()?;
    let format = args
        .format
        .as_deref()
        .map(|name| {
            serde_norway::from_str(name).map_err(|_| {
                format!(
                    "--format `{name}`: unknown format, expected one of raw, json, logfmt, \
                     nginx_combined, nginx_error, apache_common, apache_combined, cri, docker \
                     (regex needs a source's `pattern`: use --config)"
                )
            })
        })
        .transpose()?;
    use std::io::IsTerminal;
    Ok(ReplayOptions {
        paths: args.paths,
        config,
        to,
        format,
        since: args.since,
        until: args.until,
        rate_limit: args.rate_limit,
        data_dir: args.data_dir,
        progress: if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        },
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("log-agent")
        .build()
        .context("starting the async runtime")
}

fn replay(options: ReplayOptions) -> anyhow::Result<ExitCode> {
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let stop = stop_signals("stopped before every line sent was delivered")?;
        Ok::<_, anyhow::Error>(log_agent::replay::replay(options, stop).await)
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(summary) => {
            // Where events go to standard output, it carries events only.
            if summary.events_on_stdout {
                eprint!("{summary}");
            } else {
                print!("{summary}");
            }
            Ok(if summary.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            report(&e);
            Ok(ExitCode::from(EXIT_BAD_CONFIG))
        }
    }
}

fn run(config: Config, file: ConfigFile, watch: bool) -> anyhow::Result<ExitCode> {
    let runtime = runtime()?;
    let summary = runtime.block_on(async {
        let shutdown = stop_signals(
            "stopped before everything was delivered; it is read again at the next start",
        )?;
        let reloads = reload_triggers(file, watch)?;
        let hooks = log_agent::RunHooks {
            reloads: Some(reloads),
            ..Default::default()
        };
        log_agent::run_with(config, shutdown, hooks)
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

/// Installs the SIGTERM and SIGINT handlers. The returned future completes at the first of
/// them (the drain starts); the second ends the process at once with code 1, printing
/// `interrupted`, whatever the drain is waiting for (a sink that is down, a long
/// `shutdown_timeout_ms`).
fn stop_signals(
    interrupted: &'static str,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{first} received; a second SIGTERM or SIGINT exits at once");
        let _ = first_tx.send(());
        let second = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!("log-agent: {second} received again: {interrupted}");
        exit_now(1);
    });
    Ok(async move {
        let _ = first_rx.await;
    })
}

/// How often `--watch-config` reads the config file.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Installs the SIGHUP handler and, with `watch`, the config file's watcher: each SIGHUP, and
/// each change of the file's content, loads the file and hands the outcome to the agent, which
/// applies the new config or logs and counts why not.
fn reload_triggers(
    mut file: ConfigFile,
    watch: bool,
) -> anyhow::Result<tokio::sync::mpsc::Receiver<log_agent::agent::ReloadRequest>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    if watch {
        tracing::info!(path = %file.path().display(), "watching the config file for changes");
    }
    tokio::spawn(async move {
        loop {
            let why = tokio::select! {
                _ = hup.recv() => "SIGHUP received",
                () = file.changed(WATCH_EVERY), if watch => "the config file changed",
            };
            tracing::info!(path = %file.path().display(), "{why}: reloading the config");
            if tx.send(file.load()).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Ends the process at once with `code`: no destructor, no `atexit` handler (librdkafka's and
/// OpenSSL's threads are still running; cleaning up under them can hang or crash).
fn exit_now(code: i32) -> ! {
    use std::io::Write as _;
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; nothing of this process is used afterwards.
    unsafe { libc::_exit(code) }
}

/// Makes a write past the file size limit (`RLIMIT_FSIZE`) fail with `EFBIG`, which the agent
/// reports and retries, instead of raising SIGXFSZ, whose default action kills the process:
/// a checkpoint or a dead-letter file hitting the limit must not stop the shipping.
fn ignore_file_size_signal() {
    // SAFETY: called first thing in main, before any thread exists; SIG_IGN installs no
    // handler code, so no signal-safety rule applies.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// glibc's malloc, left to itself, gives the top of a thread's heap back to the kernel as soon
/// as a little of it is free (and serves the 256 KiB read buffers from fresh `mmap`s at first).
/// A source's reader thread allocates every read buffer and event that a sink's thread frees a
/// moment later, so the same pages went back and forth: about 65,000 page faults and a tenth of
/// the CPU on a 512 MiB file of JSON lines, and the copies out of the page cache into cold
/// pages. Freed memory up to [`TRIM_THRESHOLD`] stays for the next reads, and only allocations
/// over [`MMAP_THRESHOLD`] (huge lines) get their own mapping; peak RSS is unchanged. A
/// `MALLOC_TRIM_THRESHOLD_` or `MALLOC_MMAP_THRESHOLD_` in the environment still wins.
fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (env, param, value) in [
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
        ),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: called in main before any other thread exists; mallopt only sets a
            // parameter of the allocator (it returns 0, ignored here, for a value it refuses).
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

/// Free bytes a heap may keep at its top before giving them back (glibc's default: 128 KiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 16 << 20;

/// Allocations at least this large are mapped on their own and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

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
