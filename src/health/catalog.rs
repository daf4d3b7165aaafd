//! The check catalogue: every check's name, unit, direction and built-in thresholds.
//! Engines refer to checks by name; config validation rejects names not listed here.

use serde::{Deserialize, Serialize};

/// The unit of a check's value. Threshold strings in the config are parsed in this unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// 0–100.
    Percent,
    Bytes,
    Seconds,
    Milliseconds,
    /// A plain count (sessions, transactions, rows).
    Count,
    /// No numeric value (a verdict such as an integrity check).
    None,
}

impl Unit {
    /// Human form of a value in this unit, as used in check messages.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Percent => format!("{}%", trim(v, 1)),
            Unit::Bytes => format_bytes(v),
            Unit::Seconds => format_seconds(v),
            Unit::Milliseconds => format!("{} ms", trim(v, 1)),
            Unit::Count | Unit::None => trim(v, 2),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Percent => "percent",
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            Unit::Milliseconds => "milliseconds",
            Unit::Count => "count",
            Unit::None => "none",
        }
    }
}

fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = v;
    let mut i = 0;
    while v.abs() >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{} {}", trim(v, 1), UNITS[i])
}

fn format_seconds(v: f64) -> String {
    if v < 120.0 {
        format!("{}s", trim(v, 1))
    } else if v < 7200.0 {
        format!("{}min", trim(v / 60.0, 1))
    } else if v < 172_800.0 {
        format!("{}h", trim(v / 3600.0, 1))
    } else {
        format!("{}d", trim(v / 86400.0, 1))
    }
}

/// Whether larger or smaller values are worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    HigherIsWorse,
    LowerIsWorse,
}

/// A check's static description and built-in thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub name: &'static str,
    /// Words used in messages after the value ("dead tuples").
    pub label: &'static str,
    pub unit: Unit,
    pub direction: Direction,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// Built-in size floor (rows or bytes, see the check's description); `None` = no floor.
    pub floor: Option<f64>,
    pub description: &'static str,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Checks shared by all engines, and SQLite's. PostgreSQL and MySQL list theirs in their
/// engine module (`CHECKS`); [`all`] chains them.
pub const CATALOG: &[CheckSpec] = &[
    CheckSpec {
        name: "connectivity",
        label: "round-trip latency",
        unit: Unit::Milliseconds,
        direction: Direction::HigherIsWorse,
        warning: Some(250.0),
        critical: Some(1000.0),
        floor: None,
        description: "opens a connection (or takes one from the pool) and times a trivial query; unreachable is CRITICAL",
    },
    CheckSpec {
        name: "sqlite_quick_check",
        label: "quick_check",
        unit: Unit::None,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "PRAGMA quick_check (or integrity_check when the target sets integrity_check = true); any finding is CRITICAL",
    },
    CheckSpec {
        name: "sqlite_freelist",
        label: "of pages free",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(25.0),
        critical: Some(50.0),
        floor: Some(16.0 * MIB),
        description: "freelist_count / page_count; floor is the file size in bytes (files below it are not judged)",
    },
    CheckSpec {
        name: "sqlite_wal_size",
        label: "write-ahead log",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: Some(256.0 * MIB),
        critical: Some(1024.0 * MIB),
        floor: None,
        description: "size of the -wal file; a WAL that keeps growing means checkpoints cannot complete (a long reader)",
    },
    CheckSpec {
        name: "sqlite_file_size",
        label: "database file",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "page_count × page_size; no thresholds by default, recorded for growth trends",
    },
    CheckSpec {
        name: "sqlite_journal_mode",
        label: "journal mode",
        unit: Unit::None,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "reports the journal mode (wal, delete, ...); informational",
    },
];

/// Every check of every engine: the common/SQLite ones above plus each engine's own list.
pub fn all() -> impl Iterator<Item = &'static CheckSpec> {
    CATALOG
        .iter()
        .chain(crate::engine::postgres::CHECKS.iter())
        .chain(crate::engine::mysql::CHECKS.iter())
}

/// Looks a check up by name.
pub fn spec(name: &str) -> Option<&'static CheckSpec> {
    all().find(|s| s.name == name)
}

/// A check's spec by name, for tests; an unknown name panics.
#[cfg(test)]
pub(crate) fn spec_of(name: &str) -> &'static CheckSpec {
    match spec(name) {
        Some(s) => s,
        None => panic!("no check {name}"),
    }
}

/// Judges a measurement against its check's built-in thresholds, for tests.
#[cfg(test)]
pub(crate) fn judge_builtin(m: &super::Measurement) -> super::CheckResult {
    let s = spec_of(m.check);
    super::evaluate(m, s, &super::CheckThresholds::builtin(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = all().map(|s| s.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn formats_units_for_humans() {
        assert_eq!(Unit::Percent.format(41.04), "41%");
        assert_eq!(Unit::Percent.format(12.5), "12.5%");
        assert_eq!(Unit::Bytes.format(1536.0), "1.5 kB");
        assert_eq!(Unit::Bytes.format(256.0 * MIB), "256 MB");
        assert_eq!(Unit::Seconds.format(300.0), "5min");
        assert_eq!(Unit::Seconds.format(45.0), "45s");
        assert_eq!(Unit::Milliseconds.format(0.26), "0.3 ms");
    }
}
