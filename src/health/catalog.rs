//! The vocabulary of the check catalogue: what a check's spec says (unit, direction,
//! built-in thresholds). The list of checks itself lives with the engines that measure
//! them ([`crate::engine::catalog`]), so this pure status model imports no engine.

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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

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
