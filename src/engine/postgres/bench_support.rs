//! The statements of a cheap health round, for `benches/pg_round.rs`, which times them
//! server-side to compare with the round's wall time. Not part of the supported API: the
//! SQL stays in [`super::sql`], this only names what a round runs.

use super::sql;

/// `(name, sql)` of every statement a warm health round runs when this target measures the
/// server-level checks itself (the slow-cadence probes excluded; `SERVER_ID` is cached for
/// ten minutes, so it is not per round). `archiving`: `archive_mode` is not `off` and the
/// role has pg_monitor, so the round also counts WAL segments waiting for archiving. None
/// of them takes parameters. `BACKEND_IDENTITY` runs on the second connection, side by
/// side with `ACTIVITY`, so the run can cancel it.
pub fn round_statements(archiving: bool) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        ("INSTANCE", sql::INSTANCE),
        ("BACKEND_IDENTITY", sql::BACKEND_IDENTITY),
        ("ACTIVITY", sql::ACTIVITY),
        ("TABLES", sql::TABLES),
    ];
    if archiving {
        out.push(("ARCHIVE_READY", sql::ARCHIVE_READY));
    }
    out
}

/// `(name, server_version_num, sql)` of the statements whose text depends on the server
/// version, one per branch, so a test can run each branch's text (against views standing
/// in for a newer release's columns).
pub fn versioned_statements() -> Vec<(&'static str, i32, &'static str)> {
    [130_000, 160_000, 170_000]
        .into_iter()
        .flat_map(|v| {
            [
                ("ACTIVITY", v, sql::activity_for(v, true)),
                ("CHECKPOINTS", v, super::probe_server::checkpoints_sql(v)),
            ]
        })
        .collect()
}
