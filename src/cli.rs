//! The command line. The daemon (`run`) and the one-shot commands share everything below
//! this module, so `dbwarden check` answers exactly what the daemon would measure.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, ConfigErrors};
use crate::health::Status;
use crate::jobs::{self, Engines, ServerFacts};
use crate::scheduler::{self, Context, Recorder, SystemClock};
use crate::store::{RunOutcome, Store};

const EXAMPLES: &str = "\
Examples:
  dbwarden run -c config/dbwarden.toml        run the daemon on the demo config
  dbwarden config check /etc/dbwarden/dbwarden.toml
  dbwarden -c x.toml config show              effective config, secrets as ***
  dbwarden jobs                               jobs and their next fire times
  dbwarden run-job health                     run a job now and print its result
  dbwarden check --format json                one health round; exit 0/1/2/3 (Nagios)

The config file is -c FILE, else $DBWARDEN_CONFIG, else /etc/dbwarden/dbwarden.toml.
Any key can be overridden by DBWARDEN_<SECTION>__<KEY>, e.g. DBWARDEN_DAEMON__LISTEN=0.0.0.0:9645.";

/// dbwarden: health checks, maintenance and history for PostgreSQL, MySQL/MariaDB and SQLite.
#[derive(Debug, Parser)]
#[command(name = "dbwarden", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Config file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        env = "DBWARDEN_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive
    /// (default: $RUST_LOG, else info).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: schedules, health rounds, history (SIGHUP reloads, SIGTERM stops).
    Run,
    /// Validate or print the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Create or upgrade the history store schema, then exit.
    Migrate,
    /// List the configured jobs with their next fire times.
    Jobs,
    /// Run one job now, in the foreground, record it, and print its result.
    RunJob {
        /// The job's name, as in [[job]] name = "...".
        name: String,
        /// Only this target (default: every target of the job).
        #[arg(long, short = 't')]
        target: Option<String>,
    },
    /// Run one health round now and print the raw result (no history, no hysteresis).
    /// Exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios plugin convention).
    Check {
        /// Only this target (default: all).
        #[arg(long, short = 't')]
        target: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a shell completion script.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(hide = true)]
    Manpage,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Report every error at once (file, key, reason); exit 0 when valid, 2 when not.
    Check {
        /// The config file (same as -c).
        file: Option<PathBuf>,
    },
    /// Print the effective config (after environment overrides), secrets as ***.
    Show {
        /// The config file (same as -c).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "dbwarden",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Manpage => {
            let man = clap_mangen::Man::new(Cli::command());
            let mut out = Vec::new();
            if man.render(&mut out).is_err() || std::io::stdout().write_all(&out).is_err() {
                return ExitCode::from(1);
            }
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    crate::logging::init(cli.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dbwarden: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    match code {
        Ok(c) => ExitCode::from(c as u8),
        Err(e) => {
            eprintln!("dbwarden: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn path_of(cli_path: &Option<PathBuf>, positional: Option<PathBuf>) -> PathBuf {
    positional.unwrap_or_else(|| config::config_path(cli_path.clone()))
}

fn load_or_report(path: &std::path::Path) -> Result<Config, i32> {
    config::load(path).map_err(|e: ConfigErrors| {
        eprint!("{e}");
        2
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run => crate::daemon::run(&path_of(&cli.config, None)).await,
        Command::Config { action } => match action {
            ConfigAction::Check { file } => Ok(config_check(&path_of(&cli.config, file))),
            ConfigAction::Show { file } => config_show(&path_of(&cli.config, file)),
        },
        Command::Migrate => {
            let config = match load_or_report(&path_of(&cli.config, None)) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let password = match &config.daemon.history_password_file {
                Some(f) => Some(config::secret::read_secret_file(f).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let versions = Store::migrate_only(&config.daemon.history, password).await?;
            println!(
                "history store {} is at schema version {}",
                config.daemon.history.redacted(),
                versions.last().copied().unwrap_or(0)
            );
            Ok(0)
        }
        Command::Jobs => {
            let config = match load_or_report(&path_of(&cli.config, None)) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            print_jobs(&config);
            Ok(0)
        }
        Command::RunJob { name, target } => {
            run_job(&path_of(&cli.config, None), &name, target.as_deref()).await
        }
        Command::Check { target, format } => {
            check(&path_of(&cli.config, None), target.as_deref(), format).await
        }
        Command::Completions { .. } | Command::Manpage => Ok(0),
    }
}

fn config_check(path: &std::path::Path) -> i32 {
    match config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                println!("warning: {w}");
            }
            println!(
                "{}: OK ({} target(s), {} job(s))",
                path.display(),
                c.targets.len(),
                c.jobs.len()
            );
            0
        }
        Err(e) => {
            eprint!("{e}");
            2
        }
    }
}

fn config_show(path: &std::path::Path) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let text = toml::to_string_pretty(&config.raw)?;
    println!(
        "# effective configuration of {} (environment overrides applied; secrets shown as ***)",
        path.display()
    );
    print!("{text}");
    Ok(0)
}

fn print_jobs(config: &Config) {
    if config.jobs.is_empty() {
        println!("no jobs configured");
        return;
    }
    let now = Utc::now();
    println!(
        "{:<20} {:<8} {:<24} {:<20} NEXT RUNS (UTC)",
        "JOB", "KIND", "SCHEDULE", "TARGETS"
    );
    for j in &config.jobs {
        let targets: Vec<&str> = config
            .job_targets(j)
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        let next: Vec<String> = if j.enabled {
            j.schedule
                .upcoming(now, 3, true)
                .iter()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .collect()
        } else {
            vec!["disabled".into()]
        };
        println!(
            "{:<20} {:<8} {:<24} {:<20} {}",
            j.name,
            j.kind.as_str(),
            j.schedule.to_string(),
            if targets.is_empty() {
                "(none)".to_string()
            } else {
                targets.join(",")
            },
            next.join(", ")
        );
    }
}

async fn run_job(path: &std::path::Path, name: &str, only: Option<&str>) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let Some(job) = config.job(name).cloned() else {
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        eprintln!(
            "dbwarden: no job named \"{name}\"; configured jobs: {}",
            names.join(", ")
        );
        return Ok(2);
    };
    let targets: Vec<config::Target> = config
        .job_targets(&job)
        .into_iter()
        .filter(|t| only.is_none_or(|o| t.name == o))
        .cloned()
        .collect();
    if targets.is_empty() {
        eprintln!("dbwarden: job \"{name}\" has no matching target");
        return Ok(2);
    }
    let store = crate::daemon::open_store(&config).await?;
    let engines = Arc::new(Engines::default());
    let executor = Arc::new(crate::daemon::HealthExecutor {
        engines: engines.clone(),
        store: store.clone(),
        facts: Arc::new(ServerFacts::default()),
        tracker: Arc::new(jobs::StatusTracker::new(crate::daemon::policy_of(&config))),
    });
    let ctx = Arc::new(Context::new(
        executor,
        Recorder::Store(store.clone()),
        Arc::new(SystemClock),
        config.daemon.max_concurrent_targets,
    ));
    let mut code = 0;
    for t in targets {
        let (outcome, status, error) =
            scheduler::run_now(ctx.clone(), job.clone(), t.clone()).await;
        println!(
            "{} on {}: {}{}{}",
            job.name,
            t.name,
            outcome.as_str(),
            status
                .map(|s| format!(", target status {s}"))
                .unwrap_or_default(),
            error.map(|e| format!(": {e}")).unwrap_or_default()
        );
        if outcome != RunOutcome::Ok {
            code = 1;
        }
    }
    engines.close_all(std::time::Duration::from_secs(2)).await;
    store.close(std::time::Duration::from_secs(5)).await;
    Ok(code)
}

async fn check(path: &std::path::Path, only: Option<&str>, format: Format) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let targets: Vec<&config::Target> = config
        .targets
        .iter()
        .filter(|t| only.is_none_or(|o| t.name == o))
        .collect();
    if let Some(o) = only
        && targets.is_empty()
    {
        eprintln!("dbwarden: no target named \"{o}\"");
        return Ok(3);
    }
    let engines = Engines::default();
    let facts = ServerFacts::default();
    let limit = Arc::new(tokio::sync::Semaphore::new(
        config.daemon.max_concurrent_targets,
    ));
    let rounds = futures_util::future::join_all(targets.iter().map(|t| {
        let limit = limit.clone();
        let engines = &engines;
        let facts = &facts;
        async move {
            let _p = limit.acquire().await;
            jobs::health_round(engines, t, facts, &Default::default()).await
        }
    }))
    .await;
    engines.close_all(std::time::Duration::from_secs(2)).await;
    let worst = Status::worst(rounds.iter().map(|r| r.status));
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "status": worst,
                "checked_at": Utc::now(),
                "targets": rounds,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Text => print_check_text(&rounds, worst),
    }
    Ok(worst.exit_code())
}

fn print_check_text(rounds: &[jobs::TargetHealth], worst: Status) {
    println!("DBWARDEN {worst}");
    for r in rounds {
        println!();
        println!("{} ({}): {}", r.target, r.engine, r.status);
        let mut checks: Vec<_> = r.checks.iter().collect();
        checks.sort_by_key(|c| std::cmp::Reverse(c.status.severity()));
        for c in checks {
            println!("  {:<9} {:<22} {}", c.status.as_str(), c.check, c.message);
        }
    }
}
