//! The maintenance planner (pure): fresh table statistics and a policy in, an ordered list of
//! actions with the reason for each out. No I/O, no clock: unit-tested without a server.
//!
//! Order of need: tables near transaction-ID wraparound first (oldest first), then tables
//! whose dead rows are past their own autovacuum trigger (by how far past × size), then
//! tables whose statistics are stale (modified past their autoanalyze trigger).

use serde::Serialize;

use super::run::{Skip, SkipKind};

/// What maintenance does to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refresh planner statistics.
    Analyze,
    /// Remove dead rows and refresh statistics (PostgreSQL `VACUUM (ANALYZE)`).
    VacuumAnalyze,
    /// Freeze old rows before wraparound (PostgreSQL `VACUUM (FREEZE, ANALYZE)`).
    VacuumFreeze,
    /// SQLite `PRAGMA optimize`.
    Optimize,
    /// SQLite `VACUUM`: rebuild the file without its free pages.
    Vacuum,
    /// SQLite `PRAGMA incremental_vacuum` (auto_vacuum = INCREMENTAL).
    IncrementalVacuum,
    /// SQLite `PRAGMA wal_checkpoint(TRUNCATE)`.
    Checkpoint,
    /// PostgreSQL `VACUUM (FULL, ANALYZE)`: rewrites the table under an ACCESS EXCLUSIVE
    /// lock; only for tables named in `vacuum_full`, only inside the window.
    VacuumFull,
    /// SQLite `PRAGMA integrity_check` (scheduled by `integrity_check_every`).
    IntegrityCheck,
    /// SQLite `PRAGMA quick_check` (the same schedule, `integrity_check_mode = "quick"`).
    QuickCheck,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Analyze => "analyze",
            Action::VacuumAnalyze => "vacuum_analyze",
            Action::VacuumFreeze => "vacuum_freeze",
            Action::Optimize => "optimize",
            Action::Vacuum => "vacuum",
            Action::IncrementalVacuum => "incremental_vacuum",
            Action::Checkpoint => "wal_checkpoint",
            Action::VacuumFull => "vacuum_full",
            Action::IntegrityCheck => "integrity_check",
            Action::QuickCheck => "quick_check",
        }
    }
}

/// The kinds of action a policy may allow (`actions = ["analyze", "vacuum", "freeze"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allowed {
    Analyze,
    Vacuum,
    Freeze,
}

/// One table's statistics as an engine read them (without relation locks).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableFacts {
    /// `schema.table` as shown to people and matched by include/exclude patterns.
    pub name: String,
    /// The name as the engine quotes it in SQL (built by the engine's quoting rules).
    pub sql_name: String,
    pub size_bytes: f64,
    pub live_rows: f64,
    pub dead_rows: f64,
    /// Dead rows at which autovacuum would vacuum this table (its own trigger, per-table
    /// storage parameters first).
    pub vacuum_trigger: f64,
    pub changed_since_analyze: f64,
    /// Changed rows at which autoanalyze would analyze this table.
    pub analyze_trigger: f64,
    /// age(relfrozenxid) in transactions; `None` where the engine has no such thing.
    pub freeze_age: Option<f64>,
}

/// The oldest thing holding back the xmin horizon (a long transaction, a replication
/// slot, a prepared transaction), as the engine found it.
#[derive(Debug, Clone, PartialEq)]
pub struct HorizonHolder {
    /// Who, in words: `pid 4711 (app, idle in transaction for 3h)`, `slot "standby1"`, ...
    pub who: String,
    /// How long it has held the horizon back, seconds (`None`: unknown, e.g. a slot).
    pub held_secs: Option<f64>,
}

/// What a plan may do and when a table qualifies.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub allowed: Vec<Allowed>,
    /// A table needs at least this many dead rows (past its trigger) to be vacuumed.
    pub min_dead_rows: f64,
    /// ...and this many changed rows (past its trigger) to be analyzed.
    pub min_changed_rows: f64,
    /// Freeze when age(relfrozenxid) reaches this share of autovacuum_freeze_max_age.
    pub freeze_ratio: f64,
    /// autovacuum_freeze_max_age of the server.
    pub freeze_max_age: f64,
    /// Glob patterns (`*`, `?`) on `schema.table`; empty include = every table.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub max_tables: Option<usize>,
    /// A horizon holder older than this makes dead-row vacuums pointless.
    pub horizon_patience_secs: f64,
    /// Tables (`schema.table`, exactly) whose dead-row vacuum is a `VACUUM FULL`.
    pub vacuum_full: Vec<String>,
    /// `None`: inside the job's window; else why VACUUM FULL may not run now (the table
    /// gets a plain VACUUM (ANALYZE) instead).
    pub full_blocked: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed: vec![Allowed::Analyze, Allowed::Vacuum, Allowed::Freeze],
            min_dead_rows: 1000.0,
            min_changed_rows: 1000.0,
            freeze_ratio: 0.8,
            freeze_max_age: 200_000_000.0,
            include: Vec::new(),
            exclude: Vec::new(),
            max_tables: None,
            horizon_patience_secs: 300.0,
            vacuum_full: Vec::new(),
            full_blocked: Some("no window".into()),
        }
    }
}

/// Why a table was chosen (the order classes of the plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    Wraparound,
    DeadRows,
    StaleStats,
}

/// One planned step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub table: String,
    #[serde(skip)]
    pub sql_name: String,
    pub action: Action,
    pub need: Need,
    /// The measured value and the threshold that selected it, in words.
    pub reason: String,
    /// Set when the step must not run (VACUUM cannot remove the dead rows: the horizon
    /// holder is named); the run records it `skipped` with this reason.
    pub skip: Option<Skip>,
    /// Numbers before the action, for the record.
    pub dead_rows: f64,
    pub freeze_age: Option<f64>,
    pub size_bytes: f64,
    #[serde(skip)]
    pub(crate) urgency: f64,
}

/// The plan: steps in the order they run, and what was left out for the table limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Qualifying tables left for a later run by `max_tables`.
    pub deferred: usize,
}

/// Builds the plan. Pure: the same facts and policy give the same plan.
pub fn plan(tables: &[TableFacts], policy: &Policy, horizon: Option<&HorizonHolder>) -> Plan {
    let allows = |a: Allowed| policy.allowed.contains(&a);
    let held_back = horizon.filter(|h| {
        h.held_secs
            .is_none_or(|s| s >= policy.horizon_patience_secs)
    });
    let mut steps: Vec<Step> = tables
        .iter()
        .filter(|t| selected(&t.name, &policy.include, &policy.exclude))
        .filter_map(|t| choose(t, policy, &allows, held_back))
        .collect();
    // Stable sort: most urgent need class first, then the most urgent within it.
    steps.sort_by(|a, b| {
        a.need
            .cmp(&b.need)
            .then(b.urgency.total_cmp(&a.urgency))
            .then_with(|| a.table.cmp(&b.table))
    });
    let mut deferred = 0;
    if let Some(max) = policy.max_tables
        && steps.len() > max
    {
        deferred = steps.len() - max;
        steps.truncate(max);
    }
    Plan { steps, deferred }
}

fn choose(
    t: &TableFacts,
    p: &Policy,
    allows: &dyn Fn(Allowed) -> bool,
    held_back: Option<&HorizonHolder>,
) -> Option<Step> {
    let step = |action, need, reason: String, urgency| Step {
        table: t.name.clone(),
        sql_name: t.sql_name.clone(),
        action,
        need,
        reason,
        skip: None,
        dead_rows: t.dead_rows,
        freeze_age: t.freeze_age,
        size_bytes: t.size_bytes,
        urgency,
    };
    let freeze_at = p.freeze_ratio * p.freeze_max_age;
    if allows(Allowed::Freeze)
        && let Some(age) = t.freeze_age
        && age >= freeze_at
    {
        return Some(step(
            Action::VacuumFreeze,
            Need::Wraparound,
            format!(
                "freeze age {} ≥ {} ({}% of autovacuum_freeze_max_age {})",
                n(age),
                n(freeze_at),
                n(p.freeze_ratio * 100.0),
                n(p.freeze_max_age)
            ),
            age,
        ));
    }
    let trigger = t.vacuum_trigger.max(0.0);
    if allows(Allowed::Vacuum) && t.dead_rows > trigger && t.dead_rows >= p.min_dead_rows {
        let past = t.dead_rows / trigger.max(1.0);
        let mut reason = format!(
            "{} dead rows > autovacuum trigger {} ({:.1}×, floor {})",
            n(t.dead_rows),
            n(trigger),
            past,
            n(p.min_dead_rows)
        );
        let mut action = Action::VacuumAnalyze;
        if p.vacuum_full.iter().any(|f| f == &t.name) {
            match &p.full_blocked {
                None => {
                    action = Action::VacuumFull;
                    reason.push_str("; VACUUM FULL enabled for this table (vacuum_full)");
                }
                Some(why) => {
                    reason.push_str(&format!("; VACUUM FULL not now: {why}"));
                }
            }
        }
        let mut s = step(action, Need::DeadRows, reason, past * t.size_bytes.max(1.0));
        if let Some(h) = held_back {
            s.skip = Some(Skip::new(
                SkipKind::Horizon,
                format!(
                    "VACUUM cannot remove the dead rows while {} holds back the xmin horizon; end it first",
                    h.who
                ),
            ));
        }
        return Some(s);
    }
    let a_trigger = t.analyze_trigger.max(0.0);
    if allows(Allowed::Analyze)
        && t.changed_since_analyze > a_trigger
        && t.changed_since_analyze >= p.min_changed_rows
    {
        let past = t.changed_since_analyze / a_trigger.max(1.0);
        return Some(step(
            Action::Analyze,
            Need::StaleStats,
            format!(
                "{} rows changed since analyze > autoanalyze trigger {} ({:.1}×, floor {})",
                n(t.changed_since_analyze),
                n(a_trigger),
                past,
                n(p.min_changed_rows)
            ),
            past,
        ));
    }
    None
}

/// A SQLite database's numbers (one file: its steps are database-wide).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqliteFacts {
    /// The file, for messages and records.
    pub name: String,
    pub page_count: f64,
    pub page_size: f64,
    pub freelist_count: f64,
    /// `PRAGMA auto_vacuum`: 0 none, 1 full, 2 incremental.
    pub auto_vacuum: i64,
    pub wal: bool,
    /// Size of the -wal file in bytes.
    pub wal_bytes: f64,
}

/// What a SQLite plan holds the database against: the `sqlite_freelist` check's warning
/// ratio and size floor, the `sqlite_wal_size` check's warning size (the target's own
/// thresholds, so maintenance acts where the health check warns).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlitePolicy {
    pub allowed: Vec<Allowed>,
    /// Percent of pages free.
    pub freelist_percent: f64,
    /// Files smaller than this are not vacuumed.
    pub min_file_bytes: f64,
    pub wal_bytes: f64,
    /// A scheduled integrity check that is due, with why (`None`: not due / not set).
    pub integrity: Option<Integrity>,
}

/// A due SQLite integrity check.
#[derive(Debug, Clone, PartialEq)]
pub struct Integrity {
    /// `PRAGMA quick_check` rather than the thorough `PRAGMA integrity_check`.
    pub quick: bool,
    /// Why it is due (the last run and the interval), for the record.
    pub reason: String,
}

/// The SQLite plan: `PRAGMA optimize` (with analyze allowed), then `VACUUM` (or
/// `incremental_vacuum`) past the freelist ratio and floor, then a TRUNCATE checkpoint of a
/// WAL past its size (last: a VACUUM in WAL mode goes through the WAL).
pub fn plan_sqlite(f: &SqliteFacts, p: &SqlitePolicy) -> Plan {
    let allows = |a: Allowed| p.allowed.contains(&a);
    let step = |action, need, reason: String, size: f64| Step {
        table: f.name.clone(),
        sql_name: String::new(),
        action,
        need,
        reason,
        skip: None,
        dead_rows: f.freelist_count,
        freeze_age: None,
        size_bytes: size,
        urgency: 0.0,
    };
    let size = f.page_count * f.page_size;
    let mut steps = Vec::new();
    // First: a corrupt file should not be rewritten (the session skips the rest).
    if let Some(i) = &p.integrity {
        let action = if i.quick {
            Action::QuickCheck
        } else {
            Action::IntegrityCheck
        };
        steps.push(step(action, Need::StaleStats, i.reason.clone(), size));
    }
    if allows(Allowed::Analyze) {
        steps.push(step(
            Action::Optimize,
            Need::StaleStats,
            "PRAGMA optimize: SQLite analyzes the tables whose statistics its planner would use and lacks".into(),
            size,
        ));
    }
    let free = if f.page_count > 0.0 {
        f.freelist_count * 100.0 / f.page_count
    } else {
        0.0
    };
    if allows(Allowed::Vacuum) && free >= p.freelist_percent && size >= p.min_file_bytes {
        let action = if f.auto_vacuum == 2 {
            Action::IncrementalVacuum
        } else {
            Action::Vacuum
        };
        steps.push(step(
            action,
            Need::DeadRows,
            format!(
                "{} of {} pages free ({:.0}% ≥ {}%, file {} bytes ≥ floor {})",
                n(f.freelist_count),
                n(f.page_count),
                free,
                n(p.freelist_percent),
                n(size),
                n(p.min_file_bytes)
            ),
            size,
        ));
    }
    if allows(Allowed::Vacuum) && f.wal && f.wal_bytes >= p.wal_bytes {
        steps.push(step(
            Action::Checkpoint,
            Need::DeadRows,
            format!("-wal file {} bytes ≥ {}", n(f.wal_bytes), n(p.wal_bytes)),
            f.wal_bytes,
        ));
    }
    Plan { steps, deferred: 0 }
}

/// One MySQL/MariaDB table as `information_schema.TABLES` and InnoDB's persistent
/// statistics show it (read without table locks).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MysqlTableFacts {
    /// `db.table` for people and the include/exclude patterns.
    pub name: String,
    /// The name quoted with backticks.
    pub sql_name: String,
    /// data + index bytes.
    pub size_bytes: f64,
    pub data_free: f64,
    /// The row estimate of the statistics.
    pub rows: f64,
    /// An InnoDB table without a `mysql.innodb_table_stats` row: never analyzed.
    pub never_analyzed: bool,
    /// Rows changed since InnoDB last computed statistics (MariaDB
    /// `INNODB_SYS_TABLESTATS.MODIFIED_COUNTER`; 0 where not visible).
    pub changed_rows: f64,
}

/// The MySQL/MariaDB thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct MysqlPolicy {
    pub allowed: Vec<Allowed>,
    /// Analyze when changed rows reach this share (percent) of the rows...
    pub analyze_percent: f64,
    /// ...and at least this many.
    pub min_changed_rows: f64,
    /// OPTIMIZE when data_free reaches this share (percent) of data + index + data_free
    /// (the `mysql_fragmentation` warning)...
    pub fragmentation_percent: f64,
    /// ...and the table's allocated size this floor (its floor).
    pub fragmentation_floor: f64,
    /// `None`: inside the job's window; else why OPTIMIZE may not run now.
    pub optimize_blocked: Option<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub max_tables: Option<usize>,
}

/// The MySQL/MariaDB plan: `OPTIMIZE TABLE` for fragmented tables (recorded skipped
/// outside the window), else `ANALYZE TABLE` for tables whose statistics are stale (never
/// analyzed, or changed rows past `analyze_percent` and `min_changed_rows`). Most free
/// space first, then most changed.
pub fn plan_mysql(tables: &[MysqlTableFacts], p: &MysqlPolicy) -> Plan {
    let allows = |a: Allowed| p.allowed.contains(&a);
    let mut steps = Vec::new();
    for t in tables {
        if !p.include.is_empty() && !p.include.iter().any(|g| glob(g, &t.name)) {
            continue;
        }
        if p.exclude.iter().any(|g| glob(g, &t.name)) {
            continue;
        }
        let step = |action, need, reason: String, urgency: f64, skip: Option<Skip>| Step {
            table: t.name.clone(),
            sql_name: t.sql_name.clone(),
            action,
            need,
            reason,
            skip,
            dead_rows: t.data_free,
            freeze_age: None,
            size_bytes: t.size_bytes,
            urgency,
        };
        let allocated = t.size_bytes + t.data_free;
        let free = if allocated > 0.0 {
            t.data_free * 100.0 / allocated
        } else {
            0.0
        };
        if allows(Allowed::Vacuum)
            && free >= p.fragmentation_percent
            && allocated >= p.fragmentation_floor
        {
            steps.push(step(
                Action::Optimize,
                Need::DeadRows,
                format!(
                    "data_free {} bytes is {:.0}% of {} allocated (≥ {}%, floor {})",
                    n(t.data_free),
                    free,
                    n(allocated),
                    n(p.fragmentation_percent),
                    n(p.fragmentation_floor)
                ),
                1e18 + t.data_free,
                p.optimize_blocked
                    .clone()
                    .map(|w| Skip::new(SkipKind::Window, w)),
            ));
            continue;
        }
        if !allows(Allowed::Analyze) {
            continue;
        }
        let trigger = (t.rows * p.analyze_percent / 100.0).max(p.min_changed_rows);
        if t.never_analyzed {
            steps.push(step(
                Action::Analyze,
                Need::StaleStats,
                "no persistent statistics (mysql.innodb_table_stats has no row)".into(),
                1e9 + t.rows,
                None,
            ));
        } else if t.changed_rows >= trigger && t.changed_rows > 0.0 {
            steps.push(step(
                Action::Analyze,
                Need::StaleStats,
                format!(
                    "{} rows changed since the statistics were computed (≥ {} = max({}% of {} rows, {}))",
                    n(t.changed_rows),
                    n(trigger),
                    n(p.analyze_percent),
                    n(t.rows),
                    n(p.min_changed_rows)
                ),
                t.changed_rows,
                None,
            ));
        }
    }
    steps.sort_by(|a, b| b.urgency.total_cmp(&a.urgency));
    let deferred = match p.max_tables {
        Some(m) if steps.len() > m => {
            let d = steps.len() - m;
            steps.truncate(m);
            d
        }
        _ => 0,
    };
    Plan { steps, deferred }
}

fn n(v: f64) -> String {
    format!("{}", v.round() as i64)
}

/// Whether `name` passes the include/exclude patterns.
pub fn selected(name: &str, include: &[String], exclude: &[String]) -> bool {
    (include.is_empty() || include.iter().any(|p| glob(p, name)))
        && !exclude.iter().any(|p| glob(p, name))
}

/// `*` (any run of characters) and `?` (one character) glob, on characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> TableFacts {
        TableFacts {
            name: name.into(),
            sql_name: name.into(),
            size_bytes: 8192.0 * 100.0,
            live_rows: 100_000.0,
            dead_rows: 0.0,
            vacuum_trigger: 20_050.0,
            changed_since_analyze: 0.0,
            analyze_trigger: 10_050.0,
            freeze_age: Some(1000.0),
        }
    }

    #[test]
    fn order_is_wraparound_then_dead_rows_by_need_times_size_then_stale_stats() {
        let mut old = table("public.old");
        old.freeze_age = Some(190_000_000.0);
        let mut older = table("public.older");
        older.freeze_age = Some(199_000_000.0);
        let mut small = table("public.small_bloat");
        small.dead_rows = 80_000.0; // 4× its trigger, 800 kB
        let mut big = table("public.big_bloat");
        big.dead_rows = 41_000.0; // 2× its trigger, but 100 × the size
        big.size_bytes *= 100.0;
        let mut stale = table("public.stale");
        stale.changed_since_analyze = 20_000.0;
        let fine = table("public.fine");
        let facts = [fine, stale, small, big, old, older];
        let p = plan(&facts, &Policy::default(), None);
        let got: Vec<(&str, Action)> = p
            .steps
            .iter()
            .map(|s| (s.table.as_str(), s.action))
            .collect();
        assert_eq!(
            got,
            [
                ("public.older", Action::VacuumFreeze),
                ("public.old", Action::VacuumFreeze),
                ("public.big_bloat", Action::VacuumAnalyze),
                ("public.small_bloat", Action::VacuumAnalyze),
                ("public.stale", Action::Analyze),
            ]
        );
        assert_eq!(
            p.steps[2].reason,
            "41000 dead rows > autovacuum trigger 20050 (2.0×, floor 1000)"
        );
        assert_eq!(
            p.steps[0].reason,
            "freeze age 199000000 ≥ 160000000 (80% of autovacuum_freeze_max_age 200000000)"
        );
        assert!(
            p.steps[4]
                .reason
                .starts_with("20000 rows changed since analyze > autoanalyze trigger 10050")
        );
    }

    #[test]
    fn below_trigger_or_floor_is_left_alone() {
        let mut under = table("public.under");
        under.dead_rows = 20_000.0; // below its trigger 20050
        let mut tiny = table("public.tiny");
        tiny.vacuum_trigger = 50.0;
        tiny.dead_rows = 900.0; // past its trigger, under the floor
        tiny.analyze_trigger = 50.0;
        tiny.changed_since_analyze = 900.0;
        assert!(
            plan(&[under, tiny.clone()], &Policy::default(), None)
                .steps
                .is_empty()
        );
        let p = Policy {
            min_dead_rows: 500.0,
            ..Policy::default()
        };
        assert_eq!(plan(&[tiny], &p, None).steps.len(), 1);
    }

    #[test]
    fn allowed_actions_patterns_and_max_tables() {
        let mut a = table("public.a");
        a.dead_rows = 50_000.0;
        a.changed_since_analyze = 50_000.0;
        let mut b = table("audit.log 2024");
        b.dead_rows = 60_000.0;
        let analyze_only = Policy {
            allowed: vec![Allowed::Analyze],
            ..Policy::default()
        };
        let p = plan(&[a.clone(), b.clone()], &analyze_only, None);
        assert_eq!(p.steps.len(), 1);
        assert_eq!(
            (p.steps[0].table.as_str(), p.steps[0].action),
            ("public.a", Action::Analyze)
        );
        let excl = Policy {
            exclude: vec!["audit.*".into()],
            ..Policy::default()
        };
        assert_eq!(plan(&[a.clone(), b.clone()], &excl, None).steps.len(), 1);
        let incl = Policy {
            include: vec!["audit.*".into()],
            ..Policy::default()
        };
        assert_eq!(
            plan(&[a.clone(), b.clone()], &incl, None).steps[0].table,
            "audit.log 2024"
        );
        let one = Policy {
            max_tables: Some(1),
            ..Policy::default()
        };
        let p = plan(&[a, b], &one, None);
        assert_eq!((p.steps.len(), p.deferred), (1, 1));
        assert_eq!(p.steps[0].table, "audit.log 2024", "the most urgent stays");
    }

    #[test]
    fn a_horizon_holder_turns_dead_row_vacuums_into_named_skips() {
        let mut a = table("public.a");
        a.dead_rows = 50_000.0;
        let mut f = table("public.f");
        f.freeze_age = Some(180_000_000.0);
        let holder = HorizonHolder {
            who: "pid 42 (app, idle in transaction for 2h)".into(),
            held_secs: Some(7200.0),
        };
        let p = plan(&[a.clone(), f], &Policy::default(), Some(&holder));
        assert_eq!(p.steps[0].skip, None, "freezing still helps");
        assert_eq!(
            p.steps[1].skip.as_ref().map(|s| s.why.as_str()),
            Some(
                "VACUUM cannot remove the dead rows while pid 42 (app, idle in transaction for 2h) holds back the xmin horizon; end it first"
            )
        );
        // A short transaction is not worth skipping for.
        let brief = HorizonHolder {
            who: "pid 43".into(),
            held_secs: Some(2.0),
        };
        assert_eq!(
            plan(&[a], &Policy::default(), Some(&brief)).steps[0].skip,
            None
        );
    }

    #[test]
    fn sqlite_plan_follows_the_freelist_and_wal_thresholds() {
        let f = SqliteFacts {
            name: "a.db".into(),
            page_count: 10_000.0,
            page_size: 4096.0,
            freelist_count: 3000.0,
            auto_vacuum: 0,
            wal: true,
            wal_bytes: 300.0 * 1024.0 * 1024.0,
        };
        let p = SqlitePolicy {
            allowed: vec![Allowed::Analyze, Allowed::Vacuum],
            freelist_percent: 25.0,
            min_file_bytes: 16.0 * 1024.0 * 1024.0,
            wal_bytes: 256.0 * 1024.0 * 1024.0,
            integrity: None,
        };
        let acts = |p: &Plan| p.steps.iter().map(|s| s.action).collect::<Vec<_>>();
        // 40 MB file, 30% free, 300 MB WAL.
        assert_eq!(
            acts(&plan_sqlite(&f, &p)),
            [Action::Optimize, Action::Vacuum, Action::Checkpoint]
        );
        assert_eq!(
            plan_sqlite(&f, &p).steps[1].reason,
            "3000 of 10000 pages free (30% ≥ 25%, file 40960000 bytes ≥ floor 16777216)"
        );
        let incremental = SqliteFacts {
            auto_vacuum: 2,
            ..f.clone()
        };
        assert_eq!(
            plan_sqlite(&incremental, &p).steps[1].action,
            Action::IncrementalVacuum
        );
        // Below the floor, the ratio, the WAL size: only optimize.
        let small = SqliteFacts {
            page_count: 1000.0,
            freelist_count: 500.0,
            wal_bytes: 0.0,
            ..f.clone()
        };
        assert_eq!(acts(&plan_sqlite(&small, &p)), [Action::Optimize]);
        let analyze_only = SqlitePolicy {
            allowed: vec![Allowed::Analyze],
            ..p
        };
        assert_eq!(acts(&plan_sqlite(&f, &analyze_only)), [Action::Optimize]);
    }

    #[test]
    fn mysql_optimizes_fragmented_tables_in_the_window_and_analyzes_stale_ones() {
        let t = |name: &str, size: f64, free: f64, rows: f64, never: bool, changed: f64| {
            MysqlTableFacts {
                name: format!("db.{name}"),
                sql_name: format!("`db`.`{name}`"),
                size_bytes: size,
                data_free: free,
                rows,
                never_analyzed: never,
                changed_rows: changed,
            }
        };
        let mb = 1024.0 * 1024.0;
        let tables = [
            t("quiet", 500.0 * mb, 10.0 * mb, 1e6, false, 5000.0),
            t("small_frag", 10.0 * mb, 50.0 * mb, 1e3, false, 0.0),
            t("frag", 300.0 * mb, 200.0 * mb, 1e6, false, 0.0),
            t("fragger", 100.0 * mb, 400.0 * mb, 1e6, false, 0.0),
            t("changed", 1.0 * mb, 0.0, 10_000.0, false, 2000.0),
            t("few_changed", 1.0 * mb, 0.0, 1000.0, false, 500.0),
            t("never", 1.0 * mb, 0.0, 10.0, true, 0.0),
        ];
        let mut p = MysqlPolicy {
            allowed: vec![Allowed::Analyze, Allowed::Vacuum],
            analyze_percent: 10.0,
            min_changed_rows: 1000.0,
            fragmentation_percent: 20.0,
            fragmentation_floor: 100.0 * mb,
            optimize_blocked: None,
            include: vec![],
            exclude: vec![],
            max_tables: None,
        };
        let show = |pl: &Plan| -> Vec<String> {
            pl.steps
                .iter()
                .map(|s| format!("{} {} {}", s.table, s.action.as_str(), s.skip.is_some()))
                .collect()
        };
        // small_frag is under the floor, quiet under 20%, few_changed under min_changed_rows.
        assert_eq!(
            show(&plan_mysql(&tables, &p)),
            [
                "db.fragger optimize false",
                "db.frag optimize false",
                "db.never analyze false",
                "db.changed analyze false",
            ]
        );
        let r = &plan_mysql(&tables, &p).steps[1].reason;
        assert_eq!(
            r,
            "data_free 209715200 bytes is 40% of 524288000 allocated (≥ 20%, floor 104857600)"
        );
        p.optimize_blocked = Some("outside".into());
        p.exclude = vec!["db.never".into()];
        p.max_tables = Some(2);
        let pl = plan_mysql(&tables, &p);
        assert_eq!(
            show(&pl),
            ["db.fragger optimize true", "db.frag optimize true"]
        );
        assert_eq!(pl.deferred, 1);
        p.allowed = vec![Allowed::Analyze];
        p.max_tables = None;
        assert_eq!(
            show(&plan_mysql(&tables, &p)),
            ["db.changed analyze false"],
            "no OPTIMIZE without vacuum allowed; fragmented tables are not analyzed for it"
        );
    }

    #[test]
    fn globs() {
        assert!(glob("public.*", "public.orders"));
        assert!(glob("*", ""));
        assert!(glob("p?blic.a*b", "public.a-x-b"));
        assert!(!glob("public.a*b", "public.a-x-c"));
        assert!(glob("*.\"Mixed Case\"", "s.\"Mixed Case\""));
        assert!(glob("ü*", "über"));
        assert!(!selected("a.b", &[], &["a.*".into()]));
        assert!(selected("a.b", &["x.*".into(), "a.b".into()], &[]));
    }

    #[test]
    fn vacuum_full_only_for_named_tables_and_only_inside_the_window() {
        let mut big = table("public.big");
        big.dead_rows = 50_000.0;
        let mut other = table("public.bigger");
        other.dead_rows = 50_000.0;
        let inside = Policy {
            vacuum_full: vec!["public.big".into()],
            full_blocked: None,
            ..Policy::default()
        };
        let p = plan(&[big.clone(), other.clone()], &inside, None);
        let acts: Vec<(&str, Action)> = p
            .steps
            .iter()
            .map(|s| (s.table.as_str(), s.action))
            .collect();
        assert!(
            acts.contains(&("public.big", Action::VacuumFull)),
            "{acts:?}"
        );
        assert!(
            acts.contains(&("public.bigger", Action::VacuumAnalyze)),
            "a pattern-free exact name"
        );
        let full = p
            .steps
            .iter()
            .find(|s| s.action == Action::VacuumFull)
            .map(|s| s.reason.clone());
        assert!(
            full.is_some_and(|r| r.ends_with("; VACUUM FULL enabled for this table (vacuum_full)"))
        );
        let outside = Policy {
            full_blocked: Some("outside the window 02:00-05:00 (now 12:00)".into()),
            ..inside.clone()
        };
        let p = plan(&[big.clone()], &outside, None);
        assert_eq!(p.steps[0].action, Action::VacuumAnalyze);
        assert!(
            p.steps[0]
                .reason
                .ends_with("; VACUUM FULL not now: outside the window 02:00-05:00 (now 12:00)")
        );
        // Below its trigger: nothing, VACUUM FULL or not.
        assert!(plan(&[table("public.big")], &inside, None).steps.is_empty());
        // Vacuum not allowed: no VACUUM FULL either.
        let analyze_only = Policy {
            allowed: vec![Allowed::Analyze],
            ..inside
        };
        assert!(
            plan(&[big], &analyze_only, None)
                .steps
                .iter()
                .all(|s| s.action != Action::VacuumFull)
        );
    }

    #[test]
    fn a_due_integrity_check_comes_first() {
        let f = SqliteFacts {
            name: "a.db".into(),
            page_count: 10.0,
            page_size: 4096.0,
            ..SqliteFacts::default()
        };
        let mut p = SqlitePolicy {
            allowed: vec![Allowed::Analyze],
            freelist_percent: 25.0,
            min_file_bytes: 0.0,
            wal_bytes: 1e9,
            integrity: Some(Integrity {
                quick: false,
                reason: "never run; integrity_check_every 7d".into(),
            }),
        };
        let acts = |p: &Plan| p.steps.iter().map(|s| s.action).collect::<Vec<_>>();
        assert_eq!(
            acts(&plan_sqlite(&f, &p)),
            [Action::IntegrityCheck, Action::Optimize]
        );
        assert_eq!(
            plan_sqlite(&f, &p).steps[0].reason,
            "never run; integrity_check_every 7d"
        );
        p.integrity = Some(Integrity {
            quick: true,
            reason: "r".into(),
        });
        assert_eq!(acts(&plan_sqlite(&f, &p))[0], Action::QuickCheck);
        p.integrity = None;
        assert_eq!(acts(&plan_sqlite(&f, &p)), [Action::Optimize]);
    }
}
