//! The check catalogue: every check's name, unit, direction and built-in thresholds, kept
//! with the engines that measure them. Config validation rejects names not listed here;
//! the README documents every one (`tests/readme.rs`).

pub use crate::health::{CheckSpec, Direction, Unit};

/// The one check every engine reports.
pub const CONNECTIVITY: CheckSpec = CheckSpec {
    name: "connectivity",
    label: "round-trip latency",
    unit: Unit::Milliseconds,
    direction: Direction::HigherIsWorse,
    warning: Some(250.0),
    critical: Some(1000.0),
    floor: None,
    description: "opens a connection (or takes one from the pool) and times a trivial query; unreachable is CRITICAL",
};

/// Every check of every engine: connectivity, then each engine's own table, then the
/// `dbwarden` self-target's.
pub fn all() -> impl Iterator<Item = &'static CheckSpec> {
    std::iter::once(&CONNECTIVITY)
        .chain(super::sqlite::CHECKS.iter())
        .chain(super::postgres::CHECKS.iter())
        .chain(super::mysql::CHECKS.iter())
        .chain(crate::alerts::self_target::CHECKS.iter())
        .chain(crate::history::checks::CHECKS.iter())
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
pub(crate) fn judge_builtin(m: &crate::health::Measurement) -> crate::health::CheckResult {
    let s = spec_of(m.check);
    crate::health::evaluate(m, s, &crate::health::CheckThresholds::builtin(s))
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
    fn design_md_examples_resolve() {
        for name in [
            "connections",
            "dead_tuples",
            "long_query",
            "sqlite_freelist",
        ] {
            assert!(spec(name).is_some(), "{name}");
        }
    }
}
