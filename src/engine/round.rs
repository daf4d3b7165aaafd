//! What every engine does the same way around its own probes, in one place: thresholds
//! read from the run's current target config, leaving out disabled checks, the "measured
//! by target X" stand-in for server-level checks another target measures, marking
//! server-level checks with the server, listing the ones this round really measured, and
//! reporting table statistics only in rounds asked for them. An engine hands over what it
//! measured ([`Round::finish`]) and this module shapes the [`HealthReport`].

use crate::config::Target;
use crate::health::{CheckSpec, CheckThresholds, Measurement, Outcome, Scope, Status};

use super::{HealthOptions, HealthReport, TableStat, catalog};

/// One engine's check table (besides `connectivity`) and which of its checks are facts of
/// the whole server rather than of one database.
pub(crate) struct Checks {
    pub specs: &'static [CheckSpec],
    pub server_level: &'static [&'static str],
}

/// One health round's inputs: the target as configured now and the run's options.
pub(crate) struct Round<'a> {
    pub target: &'a Target,
    pub opts: &'a HealthOptions,
}

impl<'a> Round<'a> {
    pub fn new(target: &'a Target, opts: &'a HealthOptions) -> Self {
        Round { target, opts }
    }

    /// The check's effective thresholds now (built-in for a check the config lacks).
    pub fn thresholds(&self, check: &str) -> CheckThresholds {
        match (self.target.thresholds.get(check), catalog::spec(check)) {
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

    pub fn enabled(&self, check: &str) -> bool {
        self.target.thresholds.get(check).is_none_or(|t| t.enabled)
    }

    /// The other target that measures this server-level check of `server_id` this round.
    pub fn elsewhere(&self, checks: &Checks, server_id: &str, check: &str) -> Option<&'a str> {
        if !checks.server_level.contains(&check) {
            return None;
        }
        self.opts.owner_of(server_id, check)
    }

    /// This round must measure `check` itself: enabled, and not left to another target.
    pub fn measures(&self, checks: &Checks, server_id: &str, check: &str) -> bool {
        self.enabled(check) && self.elsewhere(checks, server_id, check).is_none()
    }

    /// The engine's enabled checks besides connectivity, in report order.
    pub fn enabled_checks(&self, checks: &Checks) -> Vec<&'static str> {
        checks
            .specs
            .iter()
            .map(|s| s.name)
            .filter(|c| self.enabled(c))
            .collect()
    }

    /// The database could not be reached: connectivity CRITICAL, every other enabled check
    /// UNKNOWN because it could not run.
    pub fn unreachable(
        &self,
        checks: &Checks,
        message: &str,
        server_id: Option<String>,
    ) -> HealthReport {
        let connectivity = Measurement::verdict(
            catalog::CONNECTIVITY.name,
            Status::Critical,
            None,
            message.to_string(),
        );
        self.all_unknown(
            checks,
            connectivity,
            "not measured: the database is unreachable",
            server_id,
        )
    }

    /// Connectivity as measured, and every other enabled check UNKNOWN for `reason`.
    pub fn all_unknown(
        &self,
        checks: &Checks,
        connectivity: Measurement,
        reason: &str,
        server_id: Option<String>,
    ) -> HealthReport {
        let mut measurements = vec![connectivity];
        measurements.extend(
            self.enabled_checks(checks)
                .into_iter()
                .map(|c| Measurement::unknown(c, reason, None)),
        );
        HealthReport {
            measurements,
            server_id,
            server_checks: Vec::new(),
            table_stats: Vec::new(),
        }
    }

    /// Shapes a round's report from what the engine measured: connectivity first, then
    /// every enabled check in table order, each once: a server-level check another
    /// target measures becomes the stand-in, the others are marked with the server, and a
    /// check the engine gave no measurement for is UNKNOWN. `not_measured`: server-level
    /// checks that answered but saw nothing of the server (PostgreSQL's disk_space from
    /// another host), so another target should measure them.
    pub fn finish(
        &self,
        checks: &Checks,
        connectivity: Measurement,
        mut measured: Vec<Measurement>,
        server_id: Option<String>,
        not_measured: &[&str],
        table_stats: Vec<TableStat>,
    ) -> HealthReport {
        let mut measurements = vec![connectivity];
        let mut server_checks = Vec::new();
        for spec in checks.specs {
            let check = spec.name;
            if !self.enabled(check) {
                continue;
            }
            let server = server_id
                .as_deref()
                .filter(|_| checks.server_level.contains(&check));
            if let Some(id) = server
                && let Some(owner) = self.elsewhere(checks, id, check)
            {
                measurements.push(measured_elsewhere(check, id, owner));
                continue;
            }
            let m = match measured.iter().position(|m| m.check == check) {
                Some(i) => measured.swap_remove(i),
                None => Measurement::unknown(check, "not measured", None),
            };
            let m = match server {
                Some(id) => {
                    if !matches!(m.outcome, Outcome::Unknown { .. })
                        && !not_measured.contains(&check)
                    {
                        server_checks.push(check);
                    }
                    m.with_scope(Scope::Server(id.to_string()))
                }
                None => m,
            };
            measurements.push(m);
        }
        HealthReport {
            measurements,
            server_id,
            server_checks,
            table_stats: if self.opts.table_stats {
                table_stats
            } else {
                Vec::new()
            },
        }
    }
}

/// The stand-in for a server-level check that another target measures this round.
pub fn measured_elsewhere(check: &'static str, server_id: &str, owner: &str) -> Measurement {
    Measurement::verdict(
        check,
        Status::Ok,
        None,
        format!("server-level check, measured by target {owner}"),
    )
    .with_scope(Scope::Server(server_id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ServerOwners;
    use crate::health::{Direction, Observation, Unit};

    const fn spec(name: &'static str) -> CheckSpec {
        CheckSpec {
            name,
            label: "",
            unit: Unit::Count,
            direction: Direction::HigherIsWorse,
            warning: None,
            critical: None,
            floor: None,
            description: "",
        }
    }

    static CHECKS: Checks = Checks {
        specs: &[spec("db_a"), spec("srv_b"), spec("srv_c"), spec("srv_d")],
        server_level: &["srv_b", "srv_c", "srv_d"],
    };

    fn target(disabled: &[&'static str]) -> Target {
        let (_dir, mut t) = crate::engine::tests::sqlite_target();
        for c in disabled {
            t.thresholds.insert(
                c,
                CheckThresholds {
                    enabled: false,
                    warning: None,
                    critical: None,
                    floor: None,
                },
            );
        }
        t
    }

    #[test]
    fn finish_orders_marks_stands_in_and_lists_what_was_measured() {
        let t = target(&["srv_d"]);
        let opts = HealthOptions {
            server_checks_by: Some(ServerOwners {
                server_id: "S".into(),
                by: [("srv_c".to_string(), "other".to_string())].into(),
            }),
            table_stats: false,
            ..HealthOptions::default()
        };
        let round = Round::new(&t, &opts);
        let report = round.finish(
            &CHECKS,
            Measurement::value("connectivity", Observation::new(1.0)),
            vec![
                Measurement::value("srv_b", Observation::new(2.0)),
                Measurement::value("srv_d", Observation::new(3.0)),
                Measurement::value("db_a", Observation::new(4.0)),
            ],
            Some("S".into()),
            &[],
            vec![TableStat::default()],
        );
        let names: Vec<&str> = report.measurements.iter().map(|m| m.check).collect();
        // Disabled srv_d is left out although the engine measured it.
        assert_eq!(names, ["connectivity", "db_a", "srv_b", "srv_c"]);
        assert_eq!(report.measurements[1].scope, Scope::Database);
        assert_eq!(report.measurements[2].scope, Scope::Server("S".into()));
        assert!(matches!(
            &report.measurements[3].outcome,
            Outcome::Verdict { message, .. } if message.contains("measured by target other")
        ));
        assert_eq!(report.server_checks, ["srv_b"]);
        // Not asked for this round.
        assert!(report.table_stats.is_empty());
    }

    #[test]
    fn unmeasured_and_missing_checks_are_not_claimed() {
        let t = target(&[]);
        let opts = HealthOptions {
            table_stats: true,
            ..HealthOptions::default()
        };
        let round = Round::new(&t, &opts);
        let report = round.finish(
            &CHECKS,
            Measurement::value("connectivity", Observation::new(1.0)),
            vec![
                Measurement::value("srv_b", Observation::new(2.0)),
                Measurement::unknown("srv_c", "no privilege", None),
            ],
            Some("S".into()),
            &["srv_b"],
            vec![TableStat::default()],
        );
        assert!(
            report.server_checks.is_empty(),
            "{:?}",
            report.server_checks
        );
        assert!(matches!(
            &report
                .measurements
                .iter()
                .find(|m| m.check == "srv_d")
                .map(|m| &m.outcome),
            Some(Outcome::Unknown { .. })
        ));
        assert_eq!(report.table_stats.len(), 1);
        assert_eq!(
            round
                .unreachable(&CHECKS, "refused", None)
                .measurements
                .len(),
            5
        );
    }
}
