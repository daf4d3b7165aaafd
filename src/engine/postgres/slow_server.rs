//! The second-pass probes on the 5-minute cadence: sequences (pg_sequences reads every
//! sequence's state) and one sample of the checkpoint counters and WAL state (the
//! checkpoint ratio is judged over an hour of these samples, the WAL rate between two).

use std::time::Instant;

use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::cache::Cached;
use super::decode::probe_error;
use super::probe::Instance;
use super::probe_server::{self, SequenceRow, WalSample};
use super::round::RoundState;
use super::{CATALOG_INTERVAL, PostgresEngine, checks, sql};
use crate::engine::round::Round;

impl PostgresEngine {
    /// `wal`: this target measures `wal_volume` or `checkpoints` (server-level checks
    /// another target of the server may own).
    pub(super) async fn refresh_server(
        &self,
        round: &Round<'_>,
        st: &mut RoundState,
        conn: &mut PgConnection,
        inst: &Instance,
        wal: bool,
    ) {
        let user = inst.user.as_str();
        if round.enabled(checks::SEQUENCE_EXHAUSTION)
            && Cached::due(&st.sequences, CATALOG_INTERVAL)
        {
            let result = match sqlx::query(sql::SEQUENCES).fetch_all(&mut *conn).await {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        Ok(SequenceRow {
                            name: r.try_get("name")?,
                            data_type: r.try_get("data_type")?,
                            min_value: r.try_get("min_value")?,
                            max_value: r.try_get("max_value")?,
                            increment: r.try_get("increment")?,
                            cycle: r.try_get("cycle")?,
                            last_value: r.try_get("last_value")?,
                            readable: r.try_get("readable")?,
                            owner: r.try_get("owner")?,
                            column_type: r.try_get("column_type")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(|e| probe_error(&e, "the sequence probe", user)),
                Err(e) => Err(probe_error(&e, "the sequence probe", user)),
            };
            st.sequences = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
        // A failure is kept for the interval too, so a failing probe is not retried every
        // round (a cancelled one is).
        let last = match &st.wal_error {
            Some((at, e)) => (!e.transient).then_some(*at),
            None => st.wal.last().map(|s| s.at),
        };
        let due = last.is_none_or(|at| at.elapsed() >= CATALOG_INTERVAL);
        if !wal || !due {
            return;
        }
        let text = probe_server::checkpoints_sql(inst.version_num);
        let row = match sqlx::query(text).fetch_one(&mut *conn).await {
            Ok(row) => row,
            Err(e) => {
                st.wal_error = Some((
                    Instant::now(),
                    probe_error(&e, "the checkpoint probe", user),
                ));
                return;
            }
        };
        let wal_bytes = if inst.monitor {
            sqlx::query_scalar::<_, f64>(sql::WAL_DIR)
                .fetch_one(&mut *conn)
                .await
                .ok()
        } else {
            None
        };
        let now = Instant::now();
        let sample = (|| -> Result<WalSample, sqlx::Error> {
            Ok(WalSample {
                at: now,
                timed: row.try_get("timed")?,
                requested: row.try_get("requested")?,
                lsn: row.try_get("lsn")?,
                wal_bytes,
                max_wal_size: row.try_get("max_wal_size")?,
                wal_keep_size: row.try_get("wal_keep_size")?,
            })
        })();
        match sample {
            Ok(s) => {
                st.wal_error = None;
                st.wal.push(s);
                probe_server::keep_window(&mut st.wal, now);
            }
            Err(e) => st.wal_error = Some((now, probe_error(&e, "the checkpoint probe", user))),
        }
    }
}
