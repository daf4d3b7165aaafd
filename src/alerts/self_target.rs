//! The built-in `dbwarden` target: the daemon watching itself. Its checks are judged here
//! (pure) from the history store's health, the alert channels' health and the scheduler's
//! heartbeats; the daemon feeds them through the same hysteresis, history and alerting as
//! any other target's round.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::deliver::ChannelHealth;
use crate::health::{CheckResult, CheckSpec, CheckThresholds, Direction, Scope, Status, Unit};
use crate::maintenance::Skip;
use crate::store::{JobRun, RunEnd, RunOutcome, StoreHealth};

/// The self-target's name (and engine).
pub const NAME: &str = "dbwarden";

/// The self-target's checks, in the catalogue like any engine's (`[thresholds]` tunes or
/// disables them; README "Checks" lists them).
pub const CHECKS: [CheckSpec; 4] = [
    CheckSpec {
        name: "history_store",
        label: "records dropped",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(1.0),
        critical: None,
        floor: None,
        description: "records the history store dropped since the last round; CRITICAL while it is unreachable",
    },
    CheckSpec {
        name: "schedules_missed",
        label: "runs missed in a row",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(1.0),
        critical: Some(3.0),
        floor: None,
        description: "the longest streak of runs of one job on one target that did not happen (tick skipped by overlap, fire times missed or coalesced) since the last round; CRITICAL when a job loop is stuck",
    },
    CheckSpec {
        name: "alert_delivery",
        label: "failing",
        unit: Unit::Seconds,
        direction: Direction::HigherIsWorse,
        warning: None,
        // None: `[alerts] channel_failing_after` (default 30 min) is the critical threshold.
        critical: None,
        floor: None,
        description: "how long the longest-failing alert channel has failed to deliver",
    },
    CheckSpec {
        name: "maintenance_failing",
        label: "runs in a row",
        unit: Unit::Count,
        direction: Direction::HigherIsWorse,
        warning: Some(2.0),
        critical: Some(3.0),
        floor: None,
        description: "the longest streak of consecutive maintenance runs of one job on one target that failed, timed out, were interrupted or were skipped whole (lock held by another dbwarden, server busy, overlap, or every planned step skipped for a problem: table locks, a busy database, the load guard); a run that did its work resets it, a skip of kind standby, window or not_applicable neither counts nor resets",
    },
];

/// The self-target's check names.
pub fn check_names() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|s| s.name)
}

/// Runs of one job on one target that did not happen, since the previous round (from
/// the scheduler, [`crate::scheduler::Context::take_missed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub job: String,
    pub target: String,
    /// Runs missed (since the previous round, or in [`MISSED_WINDOW`]).
    pub missed: u64,
    /// The longest streak of consecutive missed runs seen since the previous round
    /// (a streak still going counts whole, from its start).
    pub streak: u64,
}

/// How long a missed run keeps `schedules_missed` raised: long enough for hysteresis
/// (several 30 s rounds) to believe it, so one missed tick is heard of once.
pub const MISSED_WINDOW: Duration = Duration::from_secs(600);

/// The misses of the last [`MISSED_WINDOW`], fed each round with the scheduler's delta.
#[derive(Debug, Default, Clone)]
pub struct MissedWindow {
    seen: std::collections::VecDeque<(DateTime<Utc>, Missed)>,
}

impl MissedWindow {
    /// Adds a round's misses (taken at `now`) and returns those of the window, summed per
    /// (job, target), with the longest streak.
    pub fn round(&mut self, now: DateTime<Utc>, delta: Vec<Missed>) -> Vec<Missed> {
        self.seen.extend(delta.into_iter().map(|m| (now, m)));
        let window = chrono::Duration::from_std(MISSED_WINDOW).unwrap_or_default();
        while self.seen.front().is_some_and(|(t, _)| now - *t >= window) {
            self.seen.pop_front();
        }
        let mut by: BTreeMap<(&str, &str), Missed> = BTreeMap::new();
        for (_, m) in &self.seen {
            let e = by
                .entry((m.job.as_str(), m.target.as_str()))
                .or_insert_with(|| Missed {
                    missed: 0,
                    streak: 0,
                    ..m.clone()
                });
            e.missed += m.missed;
            e.streak = e.streak.max(m.streak);
        }
        by.into_values().collect()
    }
}

/// Consecutive maintenance runs of one job on one target that did not do their work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceStreak {
    pub job: String,
    pub target: String,
    /// Runs in a row that failed, timed out, were interrupted or were skipped whole.
    pub runs: u64,
    /// Why the last of them did not do its work.
    pub last_reason: String,
}

/// Runs still going that a streak waits for are forgotten past this many (their end was
/// lost to a lagging event consumer), so a lost event cannot grow the map for good.
const MAX_RUNNING: usize = 4096;

/// Follows maintenance runs through the event stream ([`crate::events::Event::RunStarted`]
/// and [`crate::events::Event::RunFinished`]) and counts, per (job, target), the runs in a
/// row that did not do their work. A run the scheduler finished as `ok` but whose report
/// says it was skipped whole (`another dbwarden holds the lock`, server busy) is passed to
/// [`MaintenanceStreaks::finished`] with its skip reason.
#[derive(Debug, Default, Clone)]
pub struct MaintenanceStreaks {
    running: HashMap<String, (String, String)>,
    streaks: BTreeMap<(String, String), (u64, String)>,
}

impl MaintenanceStreaks {
    /// A run started, or a tick recorded whole (skipped by the scheduler).
    pub fn started(&mut self, run: &JobRun) {
        if run.kind != "maintenance" {
            return;
        }
        let Some(target) = &run.target else {
            return;
        };
        if run.outcome == RunOutcome::Running {
            if self.running.len() >= MAX_RUNNING {
                self.running.clear();
            }
            self.running
                .insert(run.id.clone(), (run.job.clone(), target.clone()));
        } else {
            self.ended(
                (run.job.clone(), target.clone()),
                run.outcome,
                None,
                run.error.as_deref(),
            );
        }
    }

    /// A run ended; `skipped` is its report's whole-run skip reason, if any. Ends of runs
    /// not started as maintenance are ignored.
    pub fn finished(&mut self, end: &RunEnd, skipped: Option<&Skip>) {
        if let Some(key) = self.running.remove(&end.id) {
            self.ended(key, end.outcome, skipped, end.error.as_deref());
        }
    }

    /// Feeds one event of the stream; `take_skip` gives a followed run's whole-run skip
    /// reason ([`crate::jobs::Shared::take_maintenance_skip`]) when its end arrives.
    pub fn observe(
        &mut self,
        e: &crate::events::Event,
        take_skip: impl FnOnce(&str) -> Option<Skip>,
    ) {
        match e {
            crate::events::Event::RunStarted(r) => self.started(r),
            crate::events::Event::RunFinished(end) if self.follows(&end.id) => {
                let skipped = take_skip(&end.id);
                self.finished(end, skipped.as_ref());
            }
            _ => {}
        }
    }

    /// Whether `id` is a maintenance run this follows (its end is awaited).
    pub fn follows(&self, id: &str) -> bool {
        self.running.contains_key(id)
    }

    fn ended(
        &mut self,
        key: (String, String),
        outcome: RunOutcome,
        skipped: Option<&Skip>,
        error: Option<&str>,
    ) {
        let error = error.unwrap_or("no reason recorded");
        let reason = match (outcome, skipped) {
            (RunOutcome::Running, _) => return,
            (RunOutcome::Ok, None) => {
                self.streaks.remove(&key);
                return;
            }
            // A skip that is the plan (a hot standby, outside the window) neither counts
            // nor resets: its kind says so, not its wording.
            (RunOutcome::Ok | RunOutcome::Skipped, Some(skip)) => {
                if skip.kind.expected() {
                    return;
                }
                format!("skipped: {}", skip.why)
            }
            // The scheduler skipped the tick whole (overlap): it did not run.
            (RunOutcome::Skipped, None) => format!("skipped: {error}"),
            (o @ (RunOutcome::Failed | RunOutcome::TimedOut | RunOutcome::Interrupted), _) => {
                format!("{}: {error}", o.as_str())
            }
        };
        let e = self.streaks.entry(key).or_insert((0, String::new()));
        e.0 += 1;
        e.1 = reason;
    }

    /// Forgets the streaks of jobs no longer configured (after a reload).
    pub fn retain_jobs(&mut self, keep: impl Fn(&str) -> bool) {
        self.streaks.retain(|(job, _), _| keep(job));
        self.running.retain(|_, (job, _)| keep(job));
    }

    /// The streaks going on (at least one run in a row).
    pub fn current(&self) -> Vec<MaintenanceStreak> {
        self.streaks
            .iter()
            .map(|((job, target), (runs, why))| MaintenanceStreak {
                job: job.clone(),
                target: target.clone(),
                runs: *runs,
                last_reason: why.clone(),
            })
            .collect()
    }
}

/// What the self-target's round looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub store: &'a StoreHealth,
    /// Records the store had dropped at the previous round.
    pub dropped_before: u64,
    pub channels: &'a HashMap<String, ChannelHealth>,
    pub channel_failing_after: Duration,
    pub stuck_loops: &'a [String],
    pub missed: &'a [Missed],
    /// Maintenance runs in a row that did not do their work ([`MaintenanceStreaks`]).
    pub maintenance: &'a [MaintenanceStreak],
    /// The effective thresholds of [`CHECKS`] (`[thresholds]`); a check absent here uses
    /// its built-in ones.
    pub thresholds: &'a BTreeMap<&'static str, CheckThresholds>,
    pub now: DateTime<Utc>,
}

impl Inputs<'_> {
    fn thresholds(&self, name: &str) -> CheckThresholds {
        match (
            self.thresholds.get(name),
            CHECKS.iter().find(|s| s.name == name),
        ) {
            (Some(t), _) => t.clone(),
            (None, Some(s)) => CheckThresholds::builtin(s),
            (None, None) => CheckThresholds {
                enabled: true,
                warning: None,
                critical: None,
                floor: None,
            },
        }
    }
}

fn result(
    check: &str,
    status: Status,
    value: f64,
    unit: Unit,
    t: &CheckThresholds,
    message: String,
) -> CheckResult {
    CheckResult {
        check: check.into(),
        status,
        value: Some(value),
        unit,
        warning: t.warning,
        critical: t.critical,
        message,
        subject: None,
        scope: Scope::Database,
    }
}

/// A value against thresholds where higher is worse (at or above a threshold crosses it).
fn level(value: f64, t: &CheckThresholds) -> Status {
    if t.critical.is_some_and(|c| value >= c) {
        Status::Critical
    } else if t.warning.is_some_and(|w| value >= w) {
        Status::Warning
    } else {
        Status::Ok
    }
}

/// Judges the daemon's own health; checks disabled in `[thresholds]` are left out.
pub fn checks(i: &Inputs<'_>) -> Vec<CheckResult> {
    let mut out = Vec::with_capacity(CHECKS.len());
    let th = i.thresholds("history_store");
    if th.enabled {
        out.push(history_store(i, &th));
    }
    let th = i.thresholds("schedules_missed");
    if th.enabled {
        out.push(schedules_missed(i, &th));
    }
    let th = i.thresholds("alert_delivery");
    if th.enabled {
        out.push(alert_delivery(i, &th));
    }
    let th = i.thresholds("maintenance_failing");
    if th.enabled {
        out.push(maintenance_failing(i, &th));
    }
    out
}

fn maintenance_failing(i: &Inputs<'_>, th: &CheckThresholds) -> CheckResult {
    let mut failing: Vec<&MaintenanceStreak> =
        i.maintenance.iter().filter(|m| m.runs > 0).collect();
    failing.sort_by(|a, b| {
        b.runs
            .cmp(&a.runs)
            .then(a.job.cmp(&b.job))
            .then(a.target.cmp(&b.target))
    });
    let worst = failing.first().map_or(0, |m| m.runs);
    let status = level(worst as f64, th);
    let message = if failing.is_empty() {
        "every maintenance job's last run did its work".into()
    } else {
        let listed: Vec<String> = failing
            .iter()
            .map(|m| {
                format!(
                    "{}@{}: {} run(s) in a row did not complete, last {}",
                    m.job,
                    m.target,
                    m.runs,
                    crate::text::escape(&m.last_reason)
                )
            })
            .collect();
        format!("maintenance not done: {}", listed.join("; "))
    };
    result(
        "maintenance_failing",
        status,
        worst as f64,
        Unit::Count,
        th,
        message,
    )
}

fn history_store(i: &Inputs<'_>, th: &CheckThresholds) -> CheckResult {
    let dropped = i.store.dropped.total();
    let new_drops = dropped.saturating_sub(i.dropped_before);
    if !i.store.reachable {
        let since = i
            .store
            .failing_since
            .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default();
        return result(
            "history_store",
            Status::Critical,
            new_drops as f64,
            Unit::Count,
            th,
            format!(
                "history store unreachable{since}: {}; {} record(s) buffered, {} dropped",
                i.store.last_error.as_deref().unwrap_or("no answer"),
                i.store.backlog_records,
                dropped
            ),
        );
    }
    let status = level(new_drops as f64, th);
    let message = if new_drops > 0 {
        format!("history store dropped {new_drops} record(s) since the last round")
    } else {
        "history store writes".into()
    };
    result(
        "history_store",
        status,
        new_drops as f64,
        Unit::Count,
        th,
        message,
    )
}

fn schedules_missed(i: &Inputs<'_>, th: &CheckThresholds) -> CheckResult {
    let mut missed: Vec<&Missed> = i.missed.iter().filter(|m| m.missed > 0).collect();
    missed.sort_by(|a, b| {
        b.streak
            .cmp(&a.streak)
            .then(b.missed.cmp(&a.missed))
            .then(a.job.cmp(&b.job))
            .then(a.target.cmp(&b.target))
    });
    let streak = missed.first().map_or(0, |m| m.streak);
    let listed: Vec<String> = missed
        .iter()
        .map(|m| {
            format!(
                "{}@{}: {} missed ({} in a row)",
                m.job, m.target, m.missed, m.streak
            )
        })
        .collect();
    if !i.stuck_loops.is_empty() {
        let mut message = format!(
            "job loops stuck, their runs are missed: {}",
            i.stuck_loops.join(", ")
        );
        if !listed.is_empty() {
            message.push_str(&format!(
                "; runs missed in the last 10 min: {}",
                listed.join(", ")
            ));
        }
        return result(
            "schedules_missed",
            Status::Critical,
            streak as f64,
            Unit::Count,
            th,
            message,
        );
    }
    let status = level(streak as f64, th);
    let message = if listed.is_empty() {
        "every job runs on schedule".into()
    } else {
        format!(
            "runs missed in the last 10 min (overlap, late wake-up): {}",
            listed.join(", ")
        )
    };
    result(
        "schedules_missed",
        status,
        streak as f64,
        Unit::Count,
        th,
        message,
    )
}

fn alert_delivery(i: &Inputs<'_>, th: &CheckThresholds) -> CheckResult {
    let th = CheckThresholds {
        critical: th.critical.or(Some(i.channel_failing_after.as_secs_f64())),
        ..th.clone()
    };
    let mut failing: Vec<(&String, &ChannelHealth, Duration, Status)> = i
        .channels
        .iter()
        .filter_map(|(name, c)| {
            let since = c.failing_since?;
            let d = (i.now - since).to_std().ok()?;
            let s = level(d.as_secs_f64(), &th);
            (s != Status::Ok).then_some((name, c, d, s))
        })
        .collect();
    failing.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    match failing.first() {
        None => result(
            "alert_delivery",
            Status::Ok,
            0.0,
            Unit::Seconds,
            &th,
            "every alert channel delivers".into(),
        ),
        Some(worst) => {
            let parts: Vec<String> = failing
                .iter()
                .map(|(name, c, d, _)| {
                    format!(
                        "{name} delivery failing for {} min ({} undelivered): {}",
                        d.as_secs() / 60,
                        c.pending,
                        c.last_error.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            let mut r = result(
                "alert_delivery",
                worst.3,
                worst.2.as_secs_f64(),
                Unit::Seconds,
                &th,
                parts.join("; "),
            );
            // The failing channels, by name: the alert is routed to every other channel.
            let names: Vec<&str> = failing.iter().map(|f| f.0.as_str()).collect();
            r.subject = Some(names.join(", "));
            r
        }
    }
}

/// The channels an `alert_delivery` result names as failing (its subject).
pub fn failing_channels(r: &CheckResult) -> Vec<String> {
    if r.check != "alert_delivery" {
        return Vec::new();
    }
    r.subject
        .as_deref()
        .map(|s| s.split(", ").map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::SkipKind;
    use crate::store::{BufferLimits, DropCounts};

    fn store(reachable: bool, dropped: u64) -> StoreHealth {
        StoreHealth {
            reachable,
            failing_since: None,
            last_error: (!reachable).then(|| "connection refused".into()),
            backlog_records: 7,
            backlog_bytes: 0,
            limits: BufferLimits::default(),
            written_total: 0,
            dropped: DropCounts {
                overflow: dropped,
                ..DropCounts::default()
            },
            writer_restarts: 0,
            write_seconds: Default::default(),
        }
    }

    fn statuses(r: &[CheckResult]) -> Vec<(&str, Status)> {
        r.iter().map(|c| (c.check.as_str(), c.status)).collect()
    }

    #[test]
    fn the_daemon_judges_its_store_schedules_and_channels() {
        let now = Utc::now();
        let mut channels = HashMap::new();
        channels.insert(
            "email".to_string(),
            ChannelHealth {
                pending: 3,
                failing_since: Some(now - chrono::Duration::minutes(29)),
                last_error: Some("SMTP 535 authentication failed".into()),
                delivered: 0,
            },
        );
        channels.insert("slack".to_string(), ChannelHealth::default());
        let thirty = Duration::from_secs(1800);
        let base = Inputs {
            store: &store(true, 5),
            dropped_before: 5,
            channels: &channels,
            channel_failing_after: thirty,
            stuck_loops: &[],
            missed: &[],
            maintenance: &[],
            thresholds: &BTreeMap::new(),
            now,
        };
        assert_eq!(
            statuses(&checks(&base)),
            vec![
                ("history_store", Status::Ok),
                ("schedules_missed", Status::Ok),
                ("alert_delivery", Status::Ok),
                ("maintenance_failing", Status::Ok),
            ],
            "29 minutes of failures is not yet 30"
        );

        let later = now + chrono::Duration::minutes(2);
        let stuck = vec!["health".to_string()];
        let bad = Inputs {
            store: &store(true, 9),
            stuck_loops: &stuck,
            now: later,
            ..base.clone()
        };
        let r = checks(&bad);
        assert_eq!(
            statuses(&r),
            vec![
                ("history_store", Status::Warning),
                ("schedules_missed", Status::Critical),
                ("alert_delivery", Status::Critical),
                ("maintenance_failing", Status::Ok),
            ]
        );
        assert!(r[0].message.contains("dropped 4"), "{}", r[0].message);
        assert!(
            r[2].message.contains("email delivery failing for 31 min")
                && r[2].message.contains("SMTP 535"),
            "{}",
            r[2].message
        );

        let down = Inputs {
            store: &store(false, 5),
            ..base
        };
        let r = checks(&down);
        assert_eq!(r[0].status, Status::Critical);
        assert!(r[0].message.contains("unreachable"), "{}", r[0].message);
    }
    fn missed(streak: u64) -> Missed {
        Missed {
            job: "health".into(),
            target: "orders".into(),
            missed: 1,
            streak,
        }
    }

    #[test]
    fn missed_runs_warn_and_several_in_a_row_are_critical() {
        let channels = HashMap::new();
        let none = BTreeMap::new();
        let s = store(true, 0);
        let judge = |m: &[Missed], th: &BTreeMap<&'static str, CheckThresholds>| {
            let r = checks(&Inputs {
                store: &s,
                dropped_before: 0,
                channels: &channels,
                channel_failing_after: Duration::from_secs(1800),
                stuck_loops: &[],
                missed: m,
                maintenance: &[],
                thresholds: th,
                now: Utc::now(),
            });
            let c = r
                .into_iter()
                .find(|c| c.check == "schedules_missed")
                .unwrap_or_else(|| panic!("no schedules_missed"));
            (c.status, c.message)
        };
        assert_eq!(judge(&[], &none).0, Status::Ok);
        let (st, msg) = judge(&[missed(1)], &none);
        assert_eq!(st, Status::Warning);
        assert!(
            msg.contains("health@orders: 1 missed (1 in a row)"),
            "{msg}"
        );
        assert_eq!(judge(&[missed(2)], &none).0, Status::Warning);
        assert_eq!(judge(&[missed(3)], &none).0, Status::Critical);
        // `[thresholds.schedules_missed] warning = 2` lets one overlap pass.
        let mut tuned = BTreeMap::new();
        tuned.insert(
            "schedules_missed",
            CheckThresholds {
                warning: Some(2.0),
                ..CheckThresholds::builtin(&CHECKS[1])
            },
        );
        assert_eq!(judge(&[missed(1)], &tuned).0, Status::Ok);
        assert_eq!(judge(&[missed(2)], &tuned).0, Status::Warning);
    }

    #[test]
    fn thresholds_disable_and_tune_the_self_checks() {
        let now = Utc::now();
        let mut channels = HashMap::new();
        channels.insert(
            "email".to_string(),
            ChannelHealth {
                pending: 1,
                failing_since: Some(now - chrono::Duration::minutes(12)),
                last_error: Some("connection refused".into()),
                delivered: 0,
            },
        );
        let s = store(true, 3);
        let run = |th: &BTreeMap<&'static str, CheckThresholds>| {
            checks(&Inputs {
                store: &s,
                dropped_before: 0,
                channels: &channels,
                channel_failing_after: Duration::from_secs(1800),
                stuck_loops: &[],
                missed: &[],
                maintenance: &[],
                thresholds: th,
                now,
            })
        };
        assert_eq!(
            statuses(&run(&BTreeMap::new())),
            vec![
                ("history_store", Status::Warning),
                ("schedules_missed", Status::Ok),
                ("alert_delivery", Status::Ok),
                ("maintenance_failing", Status::Ok),
            ]
        );
        let mut th = BTreeMap::new();
        th.insert(
            "history_store",
            CheckThresholds {
                enabled: false,
                ..CheckThresholds::builtin(&CHECKS[0])
            },
        );
        th.insert(
            "alert_delivery",
            CheckThresholds {
                warning: Some(300.0),
                critical: Some(600.0),
                ..CheckThresholds::builtin(&CHECKS[2])
            },
        );
        let r = run(&th);
        assert_eq!(
            statuses(&r),
            vec![
                ("schedules_missed", Status::Ok),
                ("alert_delivery", Status::Critical),
                ("maintenance_failing", Status::Ok),
            ],
            "disabled is left out; critical = 10 min beats channel_failing_after"
        );
        assert_eq!(r[1].subject.as_deref(), Some("email"));
        assert_eq!(failing_channels(&r[1]), vec!["email".to_string()]);
    }

    #[test]
    fn the_self_checks_are_in_the_catalogue() {
        for name in check_names() {
            let spec = crate::engine::catalog::spec(name);
            assert!(spec.is_some_and(|s| !s.description.is_empty()), "{name}");
        }
    }
    #[test]
    fn the_thresholds_table_reaches_the_self_checks() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[target]]\nname = \"t\"\nurl = \"sqlite://t.db\"\n\
             [thresholds.history_store]\nenabled = false\n\
             [thresholds.schedules_missed]\ncritical = 5\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.self_thresholds["history_store"].enabled);
        assert_eq!(c.self_thresholds["schedules_missed"].critical, Some(5.0));
        assert_eq!(c.self_thresholds["schedules_missed"].warning, Some(1.0));
        assert!(c.self_thresholds["alert_delivery"].enabled);
    }
    #[test]
    fn a_miss_stays_in_the_window_for_ten_minutes() {
        let t0 = Utc::now();
        let mut w = MissedWindow::default();
        assert!(w.round(t0, vec![]).is_empty());
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let m = w.round(at(30), vec![missed(1)]);
        assert_eq!((m[0].missed, m[0].streak), (1, 1));
        // Later rounds without a miss still show it, so hysteresis can believe it.
        let m = w.round(at(60), vec![]);
        assert_eq!((m[0].missed, m[0].streak), (1, 1));
        let m = w.round(at(90), vec![missed(2)]);
        assert_eq!((m[0].missed, m[0].streak), (2, 2), "summed, longest streak");
        assert_eq!(w.round(at(629), vec![]).len(), 1);
        assert_eq!(
            w.round(at(690), vec![]).len(),
            0,
            "gone 10 min after the last"
        );
    }

    fn run(id: &str, kind: &str, outcome: RunOutcome, error: Option<&str>) -> JobRun {
        let now = Utc::now();
        JobRun {
            id: id.into(),
            job: "nightly".into(),
            kind: kind.into(),
            target: Some("orders".into()),
            scheduled_at: Some(now),
            started_at: now,
            finished_at: (outcome != RunOutcome::Running).then_some(now),
            outcome,
            status: None,
            error: error.map(str::to_string),
            coalesced: 0,
        }
    }

    fn end(id: &str, outcome: RunOutcome, error: Option<&str>) -> RunEnd {
        RunEnd {
            id: id.into(),
            finished_at: Utc::now(),
            outcome,
            status: None,
            error: error.map(str::to_string),
        }
    }

    /// One maintenance run through start and end.
    fn once(
        s: &mut MaintenanceStreaks,
        id: &str,
        o: RunOutcome,
        err: Option<&str>,
        skip: Option<Skip>,
    ) {
        s.started(&run(id, "maintenance", RunOutcome::Running, None));
        assert!(s.follows(id));
        s.finished(&end(id, o, err), skip.as_ref());
        assert!(!s.follows(id));
    }

    fn runs(s: &MaintenanceStreaks) -> u64 {
        s.current().first().map_or(0, |m| m.runs)
    }

    #[test]
    fn failed_and_skipped_maintenance_runs_count_in_a_row_and_success_resets() {
        let mut s = MaintenanceStreaks::default();
        once(
            &mut s,
            "1",
            RunOutcome::Failed,
            Some("connection refused"),
            None,
        );
        assert_eq!(runs(&s), 1);
        once(
            &mut s,
            "2",
            RunOutcome::TimedOut,
            Some("did not finish within 1h"),
            None,
        );
        once(
            &mut s,
            "3",
            RunOutcome::Interrupted,
            Some("shutting down"),
            None,
        );
        assert_eq!(runs(&s), 3);
        // Ended `ok`, but its report says the lock was taken: counts.
        once(
            &mut s,
            "4",
            RunOutcome::Ok,
            None,
            Some(Skip::new(
                SkipKind::Locked,
                "another dbwarden holds the lock",
            )),
        );
        // A tick the scheduler recorded whole as skipped counts too.
        s.started(&run(
            "5",
            "maintenance",
            RunOutcome::Skipped,
            Some("a run of this job on this target was still going"),
        ));
        assert_eq!(runs(&s), 5);
        // Expected skips neither count nor reset: by their kind, whatever the words.
        for (id, kind) in [
            ("6", SkipKind::Standby),
            ("7", SkipKind::Window),
            ("7b", SkipKind::NotApplicable),
        ] {
            once(
                &mut s,
                id,
                RunOutcome::Ok,
                None,
                Some(Skip::new(
                    kind,
                    "reworded: hot standby, outside the maintenance window",
                )),
            );
        }
        assert_eq!(runs(&s), 5);
        // The same words with a kind that is a problem count.
        once(
            &mut s,
            "7c",
            RunOutcome::Ok,
            None,
            Some(Skip::new(
                SkipKind::Guard,
                "outside the maintenance window, says a misleading message",
            )),
        );
        assert_eq!(runs(&s), 6);
        s.started(&run(
            "7d",
            "maintenance",
            RunOutcome::Skipped,
            Some("a run of this job on this target was still going"),
        ));
        let c = s.current();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].job.as_str(), c[0].target.as_str(), c[0].runs),
            ("nightly", "orders", 7)
        );
        assert_eq!(
            c[0].last_reason,
            "skipped: a run of this job on this target was still going"
        );
        // Other kinds and unknown ends are not maintenance.
        s.started(&run("8", "health", RunOutcome::Running, None));
        assert!(!s.follows("8"));
        s.finished(&end("8", RunOutcome::Ok, None), None);
        s.finished(&end("unknown", RunOutcome::Ok, None), None);
        assert_eq!(runs(&s), 7);
        // A run that did its work resets the streak.
        once(&mut s, "9", RunOutcome::Ok, None, None);
        assert!(s.current().is_empty());
        once(&mut s, "10", RunOutcome::Failed, None, None);
        assert_eq!(s.current()[0].last_reason, "failed: no reason recorded");
        s.retain_jobs(|j| j != "nightly");
        assert!(
            s.current().is_empty(),
            "a job removed by a reload is forgotten"
        );
    }

    #[test]
    fn maintenance_failing_warns_at_two_in_a_row_and_names_job_target_and_reason() {
        let channels = HashMap::new();
        let none = BTreeMap::new();
        let st = store(true, 0);
        let judge = |m: &[MaintenanceStreak], th: &BTreeMap<&'static str, CheckThresholds>| {
            checks(&Inputs {
                store: &st,
                dropped_before: 0,
                channels: &channels,
                channel_failing_after: Duration::from_secs(1800),
                stuck_loops: &[],
                missed: &[],
                maintenance: m,
                thresholds: th,
                now: Utc::now(),
            })
            .into_iter()
            .find(|c| c.check == "maintenance_failing")
        };
        let streak = |runs: u64| MaintenanceStreak {
            job: "nightly".into(),
            target: "orders".into(),
            runs,
            last_reason: "skipped: another dbwarden holds the lock".into(),
        };
        let ok = judge(&[], &none).unwrap_or_else(|| panic!("no maintenance_failing"));
        assert_eq!((ok.status, ok.value), (Status::Ok, Some(0.0)));
        let one = judge(&[streak(1)], &none).unwrap_or_else(|| panic!("missing"));
        assert_eq!(
            one.status,
            Status::Ok,
            "one failed run is not yet a pattern"
        );
        let two = judge(&[streak(2)], &none).unwrap_or_else(|| panic!("missing"));
        assert_eq!(two.status, Status::Warning);
        assert!(
            two.message
                .contains("nightly@orders: 2 run(s) in a row did not complete, last skipped: another dbwarden holds the lock"),
            "{}",
            two.message
        );
        let other = MaintenanceStreak {
            job: "weekly".into(),
            target: "billing".into(),
            runs: 3,
            last_reason: "failed: permission denied".into(),
        };
        let three = judge(&[streak(2), other], &none).unwrap_or_else(|| panic!("missing"));
        assert_eq!((three.status, three.value), (Status::Critical, Some(3.0)));
        assert!(
            three
                .message
                .starts_with("maintenance not done: weekly@billing: 3"),
            "{}",
            three.message
        );
        let mut off = BTreeMap::new();
        off.insert(
            "maintenance_failing",
            CheckThresholds {
                enabled: false,
                ..CheckThresholds::builtin(&CHECKS[3])
            },
        );
        assert!(judge(&[streak(5)], &off).is_none(), "disabled is left out");
    }
}
