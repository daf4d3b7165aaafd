//! The command line. The daemon (`run`) and the one-shot commands share everything below
//! this module, so `dbwarden check` answers exactly what the daemon would measure.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, ConfigErrors, Job};
use crate::engine::HealthOptions;
use crate::events::Events;
use crate::health::Status;
use crate::jobs::{self, Engines, ServerFacts};
use crate::scheduler;
use crate::store::{RunOutcome, Store};
use crate::text::escape;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  dbwarden run -c config/dbwarden.toml        run the daemon on the demo config
  dbwarden config check /etc/dbwarden/dbwarden.toml
  dbwarden -c x.toml config show              effective config, secrets as ***
  dbwarden jobs                               jobs and their next fire times
  dbwarden run-job health                     run a job now and print its result
  dbwarden check --format json                one health round; exit 0/1/2/3 (Nagios)
  dbwarden slow-queries -t orders --since 1h  the worst statements of the last hour
  dbwarden explain -t orders 'SELECT 1'      a query's plan (read-only queries only)
  dbwarden alert test --channel ops-slack     send a test alert; exit 1 on failure
  dbwarden silence add -t orders --for 2h --reason \"upgrade\"
  dbwarden status                             undelivered alerts, active silences

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
    /// It measures what the daemon would: each target as its most frequent health job
    /// does (SQLite integrity_check, timeout), or as --job says.
    /// Exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios plugin convention).
    Check {
        /// Only this target (default: all).
        #[arg(long, short = 't')]
        target: Option<String>,
        /// Measure as this health job does (default: the most frequent health job
        /// covering each target; built-in defaults for a target no health job covers).
        #[arg(long, short = 'j', value_name = "NAME")]
        job: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The worst statements of a period from the history store (sample jobs), summed over
    /// the samples in it, each with its newest stored plan summary (PostgreSQL 16+). Exit
    /// 0, 1 when the store cannot be read, 2 for a config problem or an unknown target.
    SlowQueries {
        /// The target, as in [[target]] name = "...".
        #[arg(long, short = 't', value_name = "NAME")]
        target: String,
        /// The period: samples newer than this (e.g. 15m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Order by total time, mean time per call, or calls.
        #[arg(long, value_enum, default_value_t = SlowBy::Total)]
        by: SlowBy,
        /// At most this many statements.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a query's plan (PostgreSQL, MySQL/MariaDB). Only one read-only query is
    /// accepted (SELECT, WITH, VALUES, TABLE; no data-modifying statement anywhere, also
    /// not inside WITH); it runs as EXPLAIN in a READ ONLY transaction with a 5 s statement
    /// time limit, rolled back. Exit 0, 1 when the server refused it, 2 when dbwarden
    /// refused it.
    Explain {
        /// The target, as in [[target]] name = "...".
        #[arg(long, short = 't', value_name = "NAME")]
        target: String,
        /// The query.
        query: String,
        /// EXPLAIN ANALYZE (MariaDB: ANALYZE): executes the query. Refused unless the
        /// target sets explain_analyze = true.
        #[arg(long)]
        analyze: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Plan maintenance of one target and, without --dry-run, run it now in the
    /// foreground (ANALYZE / VACUUM (ANALYZE) / VACUUM (FREEZE, ANALYZE) on PostgreSQL,
    /// VACUUM FULL for the job's vacuum_full tables inside its window; SQLite optimize,
    /// VACUUM, checkpoint and a due integrity_check_every check).
    /// Uses the policy of the maintenance job covering the target (or --job), else the
    /// defaults; a job's window is not applied by hand (except to VACUUM FULL and
    /// OPTIMIZE TABLE), its max_duration and load guard are (skip_when_status needs the
    /// daemon's health rounds and is not).
    /// Exit code: 0 every step done (or nothing to do), 1 some step skipped, failed or
    /// interrupted, 2 the run could not start (setup, connection), 3 bad arguments.
    Maintain {
        #[arg(long, short = 't')]
        target: String,
        /// Use this maintenance job's policy.
        #[arg(long, short = 'j', value_name = "NAME")]
        job: Option<String>,
        /// Print the plan (one line per table: name, action, reason) and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// When a target fills its capacity or reaches ID wraparound at its current rate, and
    /// which tables keep bloating between vacuums (from the history; exit 0 also when
    /// there is too little history, saying how much more it needs).
    Forecast {
        #[arg(long, short = 't')]
        target: String,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Show recorded history.
    History {
        #[command(subcommand)]
        what: HistoryWhat,
    },
    /// Alert channels.
    Alert {
        #[command(subcommand)]
        action: AlertAction,
    },
    /// Mute a target's notifications for a while. Silences are stored in the history
    /// store, so they survive a restart and every agent sharing the store obeys them; they
    /// always expire. Status changes are still recorded while silenced.
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
    },
    /// The daemon's state as the history store shows it: undelivered notifications per
    /// channel and active silences. Exit 1 when the store cannot be read.
    Status {
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

#[derive(Debug, Subcommand)]
pub enum HistoryWhat {
    /// A target's metrics: without --metric the list of its series; with it, the series
    /// in buckets (avg, min, max, last) and a sparkline. Recent ranges at fine steps read
    /// raw samples, longer ones the hourly or daily rollups.
    Metrics {
        #[arg(long, short = 't')]
        target: String,
        /// A metric (a check name, or `table.<field>` with --label).
        #[arg(long, short = 'm')]
        metric: Option<String>,
        /// The series' label (`schema.table` for `table.*` metrics).
        #[arg(long)]
        label: Option<String>,
        /// How far back (`30d`, `12h`).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// Bucket width (`1h`, `1d`); default: about 240 buckets.
        #[arg(long, value_parser = humantime::parse_duration)]
        step: Option<std::time::Duration>,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Check status periods: one row per check and period (from, to, status, value range,
    /// last message).
    Checks {
        #[arg(long, short = 't')]
        target: String,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Job runs of a target.
    Jobs {
        #[arg(long, short = 't')]
        target: String,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Believed status changes of a target and its checks.
    Transitions {
        #[arg(long, short = 't')]
        target: String,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Notifications about a target (the outbox): channel, state, attempts, delivery.
    Alerts {
        #[arg(long, short = 't')]
        target: String,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Maintenance steps: target, table, action, reason, start, outcome, before/after.
    Maintenance {
        /// Only this target (default: all).
        #[arg(long, short = 't')]
        target: Option<String>,
        /// How far back (`7d`, `12h`).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
}

/// Output of history commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum AlertAction {
    /// Send a test notification through one channel and print success or the exact error
    /// (DNS, TLS, authentication, HTTP status and body). Exit 0 when it was delivered,
    /// 1 when it was not, 2 for a config problem or an unknown channel.
    Test {
        /// The channel's name, as in [[channel]] name = "...".
        #[arg(long, value_name = "NAME")]
        channel: String,
    },
}

/// How `slow-queries` orders statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlowBy {
    Total,
    Mean,
    Calls,
}

#[derive(Debug, Subcommand)]
pub enum SilenceAction {
    /// Silence a target: `dbwarden silence add --target orders --for 2h --reason "upgrade"`.
    Add {
        /// A configured target's name, or `dbwarden` (the daemon itself).
        #[arg(long, short = 't')]
        target: String,
        /// How long, e.g. 30m, 2h, 1d (at most 30 days: a silence always ends).
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Why (shown by `silence list`).
        #[arg(long)]
        reason: String,
    },
    /// List the active silences.
    List,
    /// End a silence now, by the id `silence list` shows.
    Remove { id: i64 },
}

/// The longest silence `silence add` accepts.
const SILENCE_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

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
    // Tasks still stuck on an unreachable server (a cancel that cannot connect) must not
    // hold the exit: the daemon has already spent its grace on them.
    runtime.shutdown_timeout(Duration::from_millis(200));
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
    let config = config::load(path).map_err(|e: ConfigErrors| {
        eprint!("{e}");
        2
    })?;
    crate::store::use_agent_name(&config);
    Ok(config)
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
        Command::SlowQueries {
            target,
            since,
            by,
            limit,
            format,
        } => {
            slow_queries(
                &path_of(&cli.config, None),
                &target,
                since,
                by,
                limit,
                format,
            )
            .await
        }
        Command::Explain {
            target,
            query,
            analyze,
            format,
        } => {
            explain(
                &path_of(&cli.config, None),
                &target,
                &query,
                analyze,
                format,
            )
            .await
        }
        Command::RunJob { name, target } => {
            run_job(&path_of(&cli.config, None), &name, target.as_deref()).await
        }
        Command::Check {
            target,
            job,
            format,
        } => {
            check(
                &path_of(&cli.config, None),
                target.as_deref(),
                job.as_deref(),
                format,
            )
            .await
        }
        Command::Maintain {
            target,
            job,
            dry_run,
            format,
        } => {
            maintain(
                &path_of(&cli.config, None),
                &target,
                job.as_deref(),
                dry_run,
                format,
            )
            .await
        }
        Command::History {
            what:
                HistoryWhat::Maintenance {
                    target,
                    since,
                    format,
                },
        } => {
            history_maintenance(
                &path_of(&cli.config, None),
                target.as_deref(),
                since,
                format,
            )
            .await
        }
        Command::History { what } => history(&path_of(&cli.config, None), what).await,
        Command::Forecast { target, format } => {
            forecast(&path_of(&cli.config, None), &target, format).await
        }
        Command::Alert {
            action: AlertAction::Test { channel },
        } => alert_test(&path_of(&cli.config, None), &channel).await,
        Command::Silence { action } => silence(&path_of(&cli.config, None), action).await,
        Command::Status { format } => status(&path_of(&cli.config, None), format).await,
        Command::Completions { .. } | Command::Manpage => Ok(0),
    }
}

/// `dbwarden alert test --channel NAME`.
async fn alert_test(path: &std::path::Path, name: &str) -> anyhow::Result<i32> {
    use crate::alerts::channel::{Channels, test_notification};
    use crate::alerts::{Deliver, DeliveryError};
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let channels = match Channels::from_config(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dbwarden: {e}");
            return Ok(2);
        }
    };
    let Some(kind) = channels.get(name).map(|c| c.kind()) else {
        let names: Vec<&str> = channels.names().collect();
        if names.is_empty() {
            eprintln!(
                "dbwarden: no channel named \"{}\": {} has no [[channel]]",
                escape(name),
                path.display()
            );
        } else {
            eprintln!(
                "dbwarden: no channel named \"{}\"; configured: {}",
                escape(name),
                names.join(", ")
            );
        }
        return Ok(2);
    };
    let n = test_notification(&crate::store::agent_name(), Utc::now());
    match channels.send(name, &n).await {
        Ok(()) => {
            println!(
                "sent a test notification to channel \"{name}\" ({kind}), key {}",
                n.key
            );
            Ok(0)
        }
        Err(e) => {
            let (what, after) = match &e {
                DeliveryError::Retry { after, .. } => ("the daemon would retry", *after),
                DeliveryError::Permanent { .. } => {
                    ("retrying will not help until it is fixed", None)
                }
            };
            eprintln!("dbwarden: channel \"{name}\" ({kind}) failed: {e}");
            match after {
                Some(a) => eprintln!(
                    "({what}; the receiver asks to wait {})",
                    humantime::format_duration(a)
                ),
                None => eprintln!("({what})"),
            }
            Ok(1)
        }
    }
}

async fn silence(path: &std::path::Path, action: SilenceAction) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let SilenceAction::Add {
        target, duration, ..
    } = &action
    {
        if config.target(target).is_none() && target != crate::alerts::self_target::NAME {
            eprintln!(
                "dbwarden: no target named \"{}\" in {}; `dbwarden check` lists the targets",
                escape(target),
                config.path.display()
            );
            return Ok(2);
        }
        if duration.is_zero() || *duration > SILENCE_MAX {
            eprintln!("dbwarden: --for must be between 1s and 30d (a silence always ends)");
            return Ok(2);
        }
    }
    // Listing only reads: it opens the store read-only; adding and removing write.
    let store = match action {
        SilenceAction::List => crate::daemon::open_store_read_only(&config).await?,
        _ => crate::daemon::open_store(&config).await?,
    };
    match action {
        SilenceAction::Add {
            target,
            duration,
            reason,
        } => {
            let ends = Utc::now() + chrono::Duration::from_std(duration)?;
            let by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
            let id = store.silence_add(&target, ends, &reason, &by).await?;
            println!(
                "silence {id}: target {} silenced until {} ({})",
                escape(&target),
                ends.format("%Y-%m-%d %H:%M:%S UTC"),
                escape(&reason)
            );
        }
        SilenceAction::List => {
            let list = store.silences_active(Utc::now()).await?;
            if list.is_empty() {
                println!("no active silences");
            }
            for s in list {
                println!(
                    "{:>5}  {:<20} until {}  by {}: {}",
                    s.id,
                    escape(&s.target),
                    s.ends_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    escape(&s.created_by),
                    escape(&s.reason)
                );
            }
        }
        SilenceAction::Remove { id } => {
            if !store.silence_remove(id).await? {
                eprintln!("dbwarden: no active silence {id}; `dbwarden silence list` shows them");
                store.close(Duration::from_secs(2)).await;
                return Ok(1);
            }
            println!("silence {id} removed");
        }
    }
    store.close(Duration::from_secs(2)).await;
    Ok(0)
}

async fn status(path: &std::path::Path, format: Format) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = match crate::daemon::open_store_read_only(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dbwarden: history store: {e:#}");
            return Ok(1);
        }
    };
    let undelivered = store.outbox_undelivered().await?;
    let silences = store.silences_active(Utc::now()).await?;
    store.close(Duration::from_secs(2)).await;
    let total: i64 = undelivered.iter().map(|u| u.count).sum();
    if format == Format::Json {
        let doc = serde_json::json!({
            "history": config.daemon.history.redacted(),
            "undelivered_total": total,
            "undelivered": undelivered,
            "silences": silences,
        });
        println!("{doc}");
        return Ok(0);
    }
    println!(
        "history store: {} (reachable)",
        config.daemon.history.redacted()
    );
    println!("undelivered notifications: {total}");
    for u in &undelivered {
        println!(
            "  {:<20} {} since {}{}",
            escape(&u.channel),
            u.count,
            u.oldest.format("%Y-%m-%d %H:%M:%S UTC"),
            u.last_error
                .as_deref()
                .map(|e| format!("; last error: {}", escape(e)))
                .unwrap_or_default()
        );
    }
    println!("active silences: {}", silences.len());
    for s in &silences {
        println!(
            "  {:>5}  {} until {}: {}",
            s.id,
            escape(&s.target),
            s.ends_at.format("%Y-%m-%d %H:%M:%S UTC"),
            escape(&s.reason)
        );
    }
    Ok(0)
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
    let events = Events::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let history = tokio::spawn(crate::events::history_writer(
        events.subscribe("history"),
        store.clone(),
        stop.clone(),
    ));
    let (shared, ctx) = jobs::runtime(&config, events);
    shared.use_history(store.clone());
    let mut code = 0;
    for t in targets {
        let f = scheduler::run_now(ctx.clone(), job.clone(), t.clone(), config.clone()).await;
        println!(
            "{} on {}: {}{}{}",
            job.name,
            t.name,
            f.outcome.as_str(),
            f.report
                .map(|r| format!(", {}", escape(&r.summary())))
                .unwrap_or_default(),
            f.error
                .map(|e| format!(": {}", escape(&e)))
                .unwrap_or_default()
        );
        if f.outcome != RunOutcome::Ok {
            code = 1;
        }
    }
    shared.engines.close_all(Duration::from_secs(2)).await;
    stop.cancel();
    let _ = history.await;
    let closed = store.close(Duration::from_secs(5)).await;
    if closed.unwritten > 0 {
        eprintln!(
            "dbwarden: {} history record(s) could not be written: {}",
            closed.unwritten,
            closed
                .health
                .last_error
                .as_deref()
                .unwrap_or("the history store did not answer in time")
        );
    }
    Ok(code)
}

/// The health job `dbwarden check` follows for a target: `--job NAME` when given, else
/// the most frequent enabled health job covering the target (what the daemon measures
/// most often). `None`: no health job covers it; built-in defaults apply.
pub fn check_job<'a>(
    config: &'a Config,
    target: &config::Target,
    named: Option<&str>,
) -> Option<&'a Job> {
    let covers = |j: &&Job| {
        j.kind == config::JobKind::Health
            && config.job_targets(j).iter().any(|t| t.name == target.name)
    };
    if let Some(n) = named {
        return config.job(n).filter(covers);
    }
    let now = Utc::now();
    config
        .jobs
        .iter()
        .filter(|j| j.enabled)
        .filter(covers)
        .min_by_key(|j| {
            let next = j.schedule.upcoming(now, 2, false);
            match next.as_slice() {
                [a, b] => (*b - *a).num_milliseconds(),
                _ => i64::MAX,
            }
        })
}

/// A CSV field: quoted when it holds a separator, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

async fn history_maintenance(
    path: &std::path::Path,
    target: Option<&str>,
    since: Duration,
    format: TableFormat,
) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = crate::daemon::open_store_read_only(&config).await?;
    let from = Utc::now() - chrono::Duration::from_std(since).unwrap_or(chrono::Duration::MAX);
    let rows = store.maintenance_actions(target, from).await;
    let _ = store.close(Duration::from_secs(2)).await;
    let rows = rows?;
    let num = |v: Option<f64>| {
        v.map(|x| format!("{}", x.round() as i64))
            .unwrap_or_default()
    };
    match format {
        TableFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        TableFormat::Csv => {
            println!(
                "started_at,finished_at,target,table,action,outcome,detail,reason,dead_rows_before,dead_rows_after,freeze_age_before,freeze_age_after,size_before,size_after"
            );
            for r in &rows {
                let cells = [
                    r.started_at.to_rfc3339(),
                    r.finished_at.to_rfc3339(),
                    r.target.clone(),
                    r.table.clone(),
                    r.action.clone(),
                    r.outcome.clone(),
                    r.detail.clone().unwrap_or_default(),
                    r.reason.clone(),
                    num(r.dead_rows_before),
                    num(r.dead_rows_after),
                    num(r.freeze_age_before),
                    num(r.freeze_age_after),
                    num(r.size_before),
                    num(r.size_after),
                ];
                let line: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
                println!("{}", line.join(","));
            }
        }
        TableFormat::Table => {
            if rows.is_empty() {
                println!(
                    "no maintenance recorded since {}",
                    from.format("%Y-%m-%d %H:%M UTC")
                );
            }
            for r in &rows {
                let outcome = match &r.detail {
                    Some(d) => format!("{}: {}", r.outcome, escape(d)),
                    None => r.outcome.clone(),
                };
                println!(
                    "{}  {}  {}  {}  {}  dead rows {} -> {}  ({})",
                    r.started_at.format("%Y-%m-%d %H:%M:%S"),
                    escape(&r.target),
                    escape(&r.table),
                    r.action,
                    outcome,
                    num(r.dead_rows_before),
                    num(r.dead_rows_after),
                    escape(&r.reason)
                );
            }
        }
    }
    Ok(0)
}

impl From<TableFormat> for crate::history::cli::Output {
    fn from(f: TableFormat) -> Self {
        match f {
            TableFormat::Table => crate::history::cli::Output::Table,
            TableFormat::Json => crate::history::cli::Output::Json,
            TableFormat::Csv => crate::history::cli::Output::Csv,
        }
    }
}

fn ago(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `dbwarden history metrics|checks|jobs|transitions|alerts`.
async fn history(path: &std::path::Path, what: HistoryWhat) -> anyhow::Result<i32> {
    use crate::history::cli as h;
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = crate::daemon::open_store_read_only(&config).await?;
    let now = Utc::now();
    let r = match what {
        HistoryWhat::Maintenance { .. } => Ok(0),
        HistoryWhat::Metrics {
            target,
            metric,
            label,
            since,
            step,
            format,
        } => {
            h::metrics(
                &store,
                &target,
                metric.as_deref(),
                label.as_deref(),
                ago(since),
                step,
                format.into(),
            )
            .await
        }
        HistoryWhat::Checks {
            target,
            since,
            format,
        } => h::checks(&store, &target, now - ago(since), format.into()).await,
        HistoryWhat::Jobs {
            target,
            since,
            format,
        } => h::jobs(&store, &target, now - ago(since), format.into()).await,
        HistoryWhat::Transitions {
            target,
            since,
            format,
        } => h::transitions(&store, &target, now - ago(since), format.into()).await,
        HistoryWhat::Alerts {
            target,
            since,
            format,
        } => h::alerts(&store, &target, now - ago(since), format.into()).await,
    };
    let _ = store.close(Duration::from_secs(2)).await;
    r
}

/// `dbwarden forecast --target T`.
async fn forecast(
    path: &std::path::Path,
    target: &str,
    format: TableFormat,
) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(t) = config.target(target) else {
        eprintln!(
            "dbwarden: no target {} in {}",
            escape(target),
            config.path.display()
        );
        return Ok(2);
    };
    let store = crate::daemon::open_store_read_only(&config).await?;
    let r = crate::history::cli::forecast(&store, t, format.into()).await;
    let _ = store.close(Duration::from_secs(2)).await;
    r
}

/// Writes what `dbwarden maintain` did to the history store; a store problem is a
/// warning (the maintenance itself happened).
async fn record_maintenance(
    config: &Config,
    target: &str,
    records: Vec<crate::maintenance::StepRecord>,
) {
    let store = match crate::daemon::open_store(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dbwarden: warning: maintenance not recorded in the history store: {e}");
            return;
        }
    };
    for r in records {
        let rec = crate::store::Record::Maintenance {
            target: target.to_string(),
            run_id: None,
            record: Box::new(r),
        };
        if let Err(e) = store.write(rec).await {
            eprintln!("dbwarden: warning: maintenance not recorded in the history store: {e}");
            break;
        }
    }
    let closed = store.close(Duration::from_secs(5)).await;
    if closed.unwritten > 0 {
        eprintln!(
            "dbwarden: warning: {} maintenance record(s) could not be written to the history store",
            closed.unwritten
        );
    }
}

/// The maintenance job `dbwarden maintain` follows for a target: `--job NAME`, else the
/// first enabled maintenance job covering it.
fn maintenance_job<'a>(
    config: &'a Config,
    target: &config::Target,
    named: Option<&str>,
) -> Option<&'a Job> {
    let covers = |j: &&Job| {
        j.kind == config::JobKind::Maintenance
            && config.job_targets(j).iter().any(|t| t.name == target.name)
    };
    match named {
        Some(n) => config.job(n).filter(covers),
        None => config.jobs.iter().filter(|j| j.enabled).find(covers),
    }
}

async fn maintain(
    path: &std::path::Path,
    target: &str,
    job: Option<&str>,
    dry_run: bool,
    format: Format,
) -> anyhow::Result<i32> {
    use crate::jobs::maintenance::{Progress, Request};
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(t) = config.target(target) else {
        eprintln!("dbwarden: no target named \"{}\"", escape(target));
        return Ok(3);
    };
    let j = maintenance_job(&config, t, job);
    if let (Some(n), None) = (job, j) {
        eprintln!(
            "dbwarden: no maintenance job named \"{}\" covers target \"{}\"",
            escape(n),
            escape(target)
        );
        return Ok(3);
    }
    let defaults = config::MaintenanceParams::default();
    let params = j.and_then(|j| j.params.maintenance()).unwrap_or(&defaults);
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
        }
    });
    let text = format == Format::Text;
    let mut done = Vec::new();
    // The last SQLite integrity check is remembered in the history store.
    let history = match params.integrity_check_every {
        Some(_) => match crate::daemon::open_store(&config).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!(
                    "dbwarden: warning: the history store cannot be read ({e}): the integrity check counts as due"
                );
                None
            }
        },
        None => None,
    };
    let req = Request {
        target: t,
        params,
        tz: j.map_or(config.timezone, crate::jobs::maintenance::window_tz),
        use_window: false,
        dry_run,
        watch_vacuum: text.then_some(Duration::from_secs(2)),
        // By hand there are no health rounds to believe a status from.
        status: &|| None,
        history: history.as_ref(),
    };
    let result = crate::jobs::maintenance::maintain(
        req,
        &cancel,
        |p| match p {
            Progress::Step { i, n, step } if text => eprintln!(
                "[{i}/{n}] {} {}: {}",
                step.action.as_str(),
                escape(&step.table),
                escape(&step.reason)
            ),
            Progress::Vacuum {
                phase,
                scanned,
                total,
            } if text => eprintln!(
                "      {}: {} of {} heap blocks scanned",
                escape(&phase),
                scanned as u64,
                total as u64
            ),
            _ => {}
        },
        |r| done = r,
    )
    .await;
    if let Some(h) = history {
        h.close(Duration::from_secs(2)).await;
    }
    if !done.is_empty() {
        record_maintenance(&config, target, done).await;
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "dbwarden: maintenance of {} did not run: {}",
                escape(target),
                escape(&e.to_string())
            );
            return Ok(2);
        }
    };
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(s) = &report.skipped {
        println!("{}: skipped: {}", escape(target), escape(&s.why));
    } else if dry_run {
        if report.plan.is_empty() {
            println!("{}: nothing to do", escape(target));
        }
        for s in &report.plan {
            let skip = s
                .skip
                .as_ref()
                .map(|w| format!(" (will be skipped: {})", escape(&w.why)))
                .unwrap_or_default();
            println!(
                "{}\t{}\t{}{skip}",
                escape(&s.table),
                s.action.as_str(),
                escape(&s.reason)
            );
        }
    } else {
        if report.records.is_empty() {
            println!("{}: nothing to do", escape(target));
        }
        for r in &report.records {
            println!(
                "{}\t{}\t{}",
                escape(&r.step.table),
                r.step.action.as_str(),
                escape(&r.outcome.to_string())
            );
        }
    }
    if report.deferred > 0 && text {
        println!(
            "{} more table(s) qualify; left for a later run (max_tables)",
            report.deferred
        );
    }
    let clean = report.skipped.is_none()
        && report
            .records
            .iter()
            .all(|r| r.outcome == crate::maintenance::Outcome::Done);
    Ok(if clean { 0 } else { 1 })
}

async fn check(
    path: &std::path::Path,
    only: Option<&str>,
    job: Option<&str>,
    format: Format,
) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(j) = job {
        match config.job(j) {
            Some(x) if x.kind == config::JobKind::Health => {}
            Some(x) => {
                eprintln!(
                    "dbwarden: job \"{j}\" is a {} job, not a health job",
                    x.kind.as_str()
                );
                return Ok(3);
            }
            None => {
                eprintln!("dbwarden: no job named \"{j}\"");
                return Ok(3);
            }
        }
    }
    let targets: Vec<&config::Target> = config
        .targets
        .iter()
        .filter(|t| only.is_none_or(|o| t.name == o))
        .filter(|t| job.is_none_or(|j| check_job(&config, t, Some(j)).is_some()))
        .collect();
    if let Some(o) = only
        && targets.is_empty()
    {
        match job {
            Some(j) => eprintln!("dbwarden: job \"{j}\" does not cover a target named \"{o}\""),
            None => eprintln!("dbwarden: no target named \"{o}\""),
        }
        return Ok(3);
    }
    let engines = Engines::one_shot();
    let facts = ServerFacts::default();
    let limit = Arc::new(tokio::sync::Semaphore::new(
        config.daemon.max_concurrent_targets,
    ));
    let rounds = futures_util::future::join_all(targets.iter().map(|t| {
        let limit = limit.clone();
        let engines = &engines;
        let facts = &facts;
        let job = check_job(&config, t, job);
        async move {
            let _p = limit.acquire().await;
            let params = match job.map(|j| &j.params) {
                Some(config::JobParams::Health(p)) => p.clone(),
                _ => config::HealthParams::default(),
            };
            let timeout = job
                .map(|j| j.timeout)
                .unwrap_or_else(|| config::JobKind::Health.default_timeout());
            let opts = HealthOptions {
                integrity_check: params.integrity_check,
                ..HealthOptions::default()
            };
            let engine = engines.get(t);
            let scope = crate::engine::RunScope::default();
            let round = jobs::health::round(
                engine.as_ref().map_err(|e| e.to_string()),
                t,
                facts,
                opts,
                &scope,
            );
            let h = match tokio::time::timeout(timeout, round).await {
                Ok(h) => h,
                Err(_) => {
                    if let Ok(e) = &engine {
                        e.cancel(&scope).await;
                    }
                    timed_out(t, timeout)
                }
            };
            (job.map(|j| j.name.clone()), h)
        }
    }))
    .await;
    engines.close_all(Duration::from_secs(2)).await;
    let worst = Status::worst(rounds.iter().map(|(_, r)| r.status));
    match format {
        Format::Json => {
            let targets: Vec<serde_json::Value> = rounds
                .iter()
                .map(|(job, r)| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("job".into(), serde_json::json!(job));
                    }
                    v
                })
                .collect();
            let doc = serde_json::json!({
                "status": worst,
                "checked_at": Utc::now(),
                "targets": targets,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Text => print_check_text(&rounds, worst),
    }
    Ok(worst.exit_code())
}

/// The round of a target that did not finish within its job's timeout: UNKNOWN (as a
/// Nagios plugin that times out), with the reason.
fn timed_out(t: &config::Target, timeout: Duration) -> jobs::TargetHealth {
    let checks = vec![crate::health::CheckResult {
        check: "connectivity".into(),
        status: Status::Unknown,
        value: None,
        unit: crate::health::Unit::Milliseconds,
        warning: None,
        critical: None,
        message: format!(
            "the round did not finish within the job's timeout of {}; its statements were cancelled",
            humantime::format_duration(timeout)
        ),
        subject: None,
        scope: crate::health::Scope::Database,
    }];
    jobs::TargetHealth {
        target: t.name.clone(),
        engine: t.engine.as_str(),
        status: crate::health::target_status(&checks),
        checks,
        report: Default::default(),
        measured_at: Utc::now(),
    }
}

/// Text output: every name and message from a database is escaped, so none can forge a
/// line or drive the terminal (JSON output stays exact).
fn print_check_text(rounds: &[(Option<String>, jobs::TargetHealth)], worst: Status) {
    print!("{}", render_check_text(rounds, worst));
}

fn render_check_text(rounds: &[(Option<String>, jobs::TargetHealth)], worst: Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "DBWARDEN {worst}");
    for (job, r) in rounds {
        let _ = writeln!(out);
        let _ = write!(out, "{} ({}): {}", escape(&r.target), r.engine, r.status);
        let _ = match job {
            Some(j) => writeln!(out, " (as job {})", escape(j)),
            None => writeln!(out),
        };
        let mut checks: Vec<_> = r.checks.iter().collect();
        checks.sort_by_key(|c| std::cmp::Reverse(c.status.severity()));
        for c in checks {
            let _ = writeln!(
                out,
                "  {:<9} {:<22} {}",
                c.status.as_str(),
                escape(&c.check),
                escape(&c.message)
            );
        }
    }
    out
}

/// `dbwarden slow-queries`: the worst statements of a period, from the history store.
async fn slow_queries(
    path: &std::path::Path,
    target: &str,
    since: Duration,
    by: SlowBy,
    limit: u32,
    format: Format,
) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if config.target(target).is_none() {
        eprintln!("dbwarden: no target named \"{}\"", escape(target));
        return Ok(2);
    }
    let from = Utc::now() - chrono::Duration::from_std(since).unwrap_or(chrono::Duration::MAX);
    let order = match by {
        SlowBy::Total => crate::store::SlowOrder::Total,
        SlowBy::Mean => crate::store::SlowOrder::Mean,
        SlowBy::Calls => crate::store::SlowOrder::Calls,
    };
    let store = crate::daemon::open_store_read_only(&config).await?;
    let rows = store
        .slow_queries(target, from, order, i64::from(limit))
        .await;
    let ids: Vec<String> = rows.iter().flatten().map(|r| r.queryid.clone()).collect();
    let plans = store.plans_latest(target, &ids).await;
    let _ = store.close(Duration::from_secs(2)).await;
    let (rows, plans) = match (rows, plans) {
        (Ok(r), Ok(p)) => (r, p),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("dbwarden: cannot read the history store: {e}");
            return Ok(1);
        }
    };
    let plan_of = |id: &str| plans.get(id).map(|p| p.summary.clone());
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(&rows)?;
            for o in v.as_array_mut().into_iter().flatten() {
                let plan = o["queryid"].as_str().and_then(plan_of);
                if let Some(o) = o.as_object_mut() {
                    o.insert("plan".into(), serde_json::json!(plan));
                }
            }
            println!("{}", serde_json::to_string_pretty(&v)?)
        }
        Format::Text if rows.is_empty() => println!(
            "no statements sampled for target {} in the last {} (is a sample job covering it?)",
            escape(target),
            humantime::format_duration(since)
        ),
        Format::Text => {
            println!(
                "{:>10} {:>12} {:>10} {:>10}  query",
                "calls", "total ms", "mean ms", "rows"
            );
            for r in &rows {
                let q = r
                    .query
                    .as_deref()
                    .map(|q| crate::engine::redact::shorten(q, 100))
                    .unwrap_or_else(|| format!("(queryid {}, text not stored)", r.queryid));
                println!(
                    "{:>10} {:>12.1} {:>10.2} {:>10}  {}",
                    r.calls,
                    r.total_ms,
                    r.mean_ms,
                    r.rows,
                    escape(&q)
                );
                if let Some(plan) = plan_of(&r.queryid) {
                    println!("{:>46}plan: {}", "", escape(&plan));
                }
            }
        }
    }
    Ok(0)
}

/// `dbwarden explain`: a query's plan, through the read-only guard.
async fn explain(
    path: &std::path::Path,
    target: &str,
    query: &str,
    analyze: bool,
    format: Format,
) -> anyhow::Result<i32> {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(t) = config.target(target) else {
        eprintln!("dbwarden: no target named \"{}\"", escape(target));
        return Ok(2);
    };
    if analyze && !t.raw.explain_analyze {
        eprintln!(
            "dbwarden: --analyze refused: EXPLAIN ANALYZE executes the query (side effects of called functions included); set explain_analyze = true on target \"{}\" to allow it",
            escape(target)
        );
        return Ok(2);
    }
    // The guard first: a refused text never reaches the server, whatever its state.
    let guard = match t.engine {
        crate::engine::EngineKind::Postgres => {
            crate::engine::postgres::explain::check(query).map(|_| ())
        }
        crate::engine::EngineKind::Mysql => crate::engine::mysql::explain::check(query).map(|_| ()),
        crate::engine::EngineKind::Sqlite => Err(
            "explain works on PostgreSQL and MySQL/MariaDB targets; for SQLite use `EXPLAIN QUERY PLAN` in the sqlite3 shell".into(),
        ),
    };
    if let Err(why) = guard {
        eprintln!("dbwarden: {why}");
        return Ok(2);
    }
    let engine = match crate::engine::Engine::open_one_shot(t) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dbwarden: {e}");
            return Ok(2);
        }
    };
    let plan_format = match format {
        Format::Text => crate::engine::explain::PlanFormat::Text,
        Format::Json => crate::engine::explain::PlanFormat::Json,
    };
    let scope = crate::engine::RunScope::default();
    let result = match &engine {
        crate::engine::Engine::Postgres(pg) => {
            let plan = pg.explain(query, analyze, plan_format, &scope).await;
            // The summary comes from a plain EXPLAIN (FORMAT JSON): never a second execution.
            match (plan, plan_format) {
                (Ok(plan), crate::engine::explain::PlanFormat::Text) => {
                    let summary = match pg.plan_summary(query, &scope).await {
                        Ok((_, s)) => s.line(),
                        Err(e) => format!("not available ({e})"),
                    };
                    Ok(format!("{plan}\nsummary: {summary}"))
                }
                (other, _) => other,
            }
        }
        crate::engine::Engine::Mysql(my) => my.explain(query, analyze, plan_format, &scope).await,
        crate::engine::Engine::Sqlite(_) => Err("explain does not work on SQLite targets".into()),
    };
    engine.close(Duration::from_secs(2)).await;
    match result {
        Ok(plan) => {
            println!("{plan}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("dbwarden: {}", escape(&e));
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{CheckResult, Scope, Unit};

    #[test]
    fn a_name_from_the_database_cannot_forge_an_output_line() {
        let forged = CheckResult {
            check: "dead_tuples".into(),
            status: Status::Critical,
            value: Some(50.0),
            unit: Unit::Percent,
            warning: None,
            critical: None,
            message: "50% dead in public.\"x\nOK        connectivity  fine\x1b[2J\"".into(),
            subject: None,
            scope: Scope::Database,
        };
        let h = jobs::TargetHealth {
            target: "orders".into(),
            engine: "postgres",
            status: Status::Critical,
            checks: vec![forged],
            report: Default::default(),
            measured_at: Utc::now(),
        };
        let text = render_check_text(&[(Some("health".into()), h)], Status::Critical);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(!lines.iter().any(|l| l.starts_with("OK")), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        assert!(lines[3].contains("\\nOK"), "{text}");
    }
}
