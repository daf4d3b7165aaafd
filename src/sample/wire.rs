//! A snapshot as one JSON text (`query_snapshots.snapshot`): compact rows instead of
//! objects, since a snapshot holds thousands of entries and is rewritten every sample.
//! A stored snapshot that cannot be read (corrupt, or from an incompatible version) is
//! treated by the job as absent: the next sample is a baseline, never a wrong delta.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Counters, Epoch, Snapshot, StatementKey};

/// Bumped when the layout changes; another version's snapshot is ignored (a baseline).
const VERSION: u32 = 1;

type Row = (
    String,
    String,
    i64,
    f64,
    f64,
    i64,
    i64,
    i64,
    i64,
    i64,
    f64,
    Option<i64>,
    i64,
    i64,
);

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    taken_at: i64,
    server_start: Option<i64>,
    stats_reset: Option<i64>,
    dealloc: Option<i64>,
    rows: Vec<Row>,
}

/// Times in microseconds: PostgreSQL's own precision, so a server start or reset time
/// read back compares equal to the same time read from the server (milliseconds would
/// look like a restart every sample).
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
}

/// The stored form of `s`.
pub fn encode(s: &Snapshot) -> String {
    let w = Wire {
        v: VERSION,
        taken_at: ms(s.taken_at),
        server_start: s.epoch.server_start.map(ms),
        stats_reset: s.epoch.stats_reset.map(ms),
        dealloc: s.epoch.dealloc,
        rows: s
            .entries
            .iter()
            .map(|(k, c)| {
                (
                    k.id.clone(),
                    k.scope.clone(),
                    c.calls,
                    c.total_ms,
                    c.max_ms,
                    c.rows,
                    c.shared_hit,
                    c.shared_read,
                    c.temp_read,
                    c.temp_written,
                    c.plan_ms,
                    c.since.map(ms),
                    c.rows_examined,
                    c.no_index_used,
                )
            })
            .collect(),
    };
    serde_json::to_string(&w).unwrap_or_default()
}

/// Reads a stored snapshot; why not, when it cannot be used.
pub fn decode(text: &str) -> Result<Snapshot, String> {
    let w: Wire = serde_json::from_str(text).map_err(|e| format!("unreadable snapshot: {e}"))?;
    if w.v != VERSION {
        return Err(format!(
            "snapshot layout {} (this version reads {VERSION})",
            w.v
        ));
    }
    let time = |v: i64| from_ms(v).ok_or_else(|| format!("bad time {v}"));
    let opt = |v: Option<i64>| v.map(time).transpose();
    let mut entries = std::collections::HashMap::with_capacity(w.rows.len());
    for r in w.rows {
        entries.insert(
            StatementKey {
                id: r.0,
                scope: r.1,
            },
            Counters {
                calls: r.2,
                total_ms: r.3,
                max_ms: r.4,
                rows: r.5,
                shared_hit: r.6,
                shared_read: r.7,
                temp_read: r.8,
                temp_written: r.9,
                plan_ms: r.10,
                since: opt(r.11)?,
                rows_examined: r.12,
                no_index_used: r.13,
            },
        );
    }
    Ok(Snapshot {
        taken_at: time(w.taken_at)?,
        epoch: Epoch {
            server_start: opt(w.server_start)?,
            stats_reset: opt(w.stats_reset)?,
            dealloc: w.dealloc,
        },
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_survives_the_round_trip() {
        let t = |s| DateTime::from_timestamp_micros(s).unwrap_or_default();
        let mut s = Snapshot {
            taken_at: t(1_700_000_000_123_456),
            epoch: Epoch {
                // Microseconds, as pg_postmaster_start_time() gives them.
                server_start: Some(t(1_600_000_000_000_001)),
                stats_reset: None,
                dealloc: Some(3),
            },
            entries: Default::default(),
        };
        s.entries.insert(
            StatementKey {
                id: "-42".into(),
                scope: "10/5/t".into(),
            },
            Counters {
                calls: 7,
                total_ms: 12.5,
                max_ms: 4.25,
                rows: 70,
                shared_hit: 1,
                shared_read: 2,
                temp_read: 3,
                temp_written: 4,
                plan_ms: 0.5,
                since: Some(t(1_650_000_000_000_999)),
                rows_examined: 5,
                no_index_used: 6,
            },
        );
        assert_eq!(decode(&encode(&s)), Ok(s));
    }

    #[test]
    fn an_unusable_snapshot_is_refused_not_misread() {
        assert!(decode("not json").is_err());
        let other = r#"{"v":99,"taken_at":0,"server_start":null,"stats_reset":null,"dealloc":null,"rows":[]}"#;
        assert!(decode(other).is_err_and(|e| e.contains("layout 99")));
    }
}
