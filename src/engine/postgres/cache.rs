//! The probes on slower cadences (index lists, database size, bloat estimate, duplicate
//! indexes) and their last results, reused with their age in between.

use std::time::{Duration, Instant};

use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::decode::{ProbeError, json_list, probe_error};
use super::probe::{BloatRow, DuplicateGroup, IndexLists};
use super::round::RoundState;
use super::{CATALOG_INTERVAL, EXPENSIVE_INTERVAL, PostgresEngine, checks, sql};
use crate::engine::round::Round;
use crate::health::Measurement;

/// The last result of a probe on a slow cadence, and when it ran. A failure is kept too,
/// so a probe that times out is not retried every round.
pub(super) struct Cached<T> {
    pub at: Instant,
    pub result: Result<T, ProbeError>,
}

impl<T> Cached<T> {
    pub fn due(this: &Option<Cached<T>>, every: Duration) -> bool {
        this.as_ref().is_none_or(|c| {
            c.at.elapsed() >= every || c.result.as_ref().is_err_and(|e| e.transient)
        })
    }

    /// The check's measurement from the cached result, given its age in seconds.
    pub fn measure(
        this: &Option<Cached<T>>,
        check: &'static str,
        f: impl FnOnce(&T, f64) -> Measurement,
    ) -> Measurement {
        match this {
            Some(Cached { at, result: Ok(v) }) => f(v, at.elapsed().as_secs_f64()),
            Some(Cached { result: Err(e), .. }) => e.measurement(check),
            None => Measurement::unknown(check, "not measured yet", None),
        }
    }
}

impl PostgresEngine {
    pub(super) async fn refresh_slow(
        &self,
        round: &Round<'_>,
        st: &mut RoundState,
        conn: &mut PgConnection,
        user: &str,
        version_num: i32,
    ) {
        if (round.enabled(checks::INVALID_INDEXES) || round.enabled(checks::UNUSED_INDEXES))
            && Cached::due(&st.indexes, CATALOG_INTERVAL)
        {
            let result = match sqlx::query(sql::INDEXES).fetch_one(&mut *conn).await {
                Ok(row) => json_list(&row, "invalid_json")
                    .and_then(|invalid| {
                        Ok(IndexLists {
                            invalid,
                            unused: json_list(&row, "unused_json")?,
                        })
                    })
                    .map_err(|e| ProbeError {
                        reason: format!("could not read the index probe: {e}"),
                        fix: None,
                        transient: false,
                        lost: false,
                    }),
                Err(e) => Err(probe_error(&e, "the index probe", user)),
            };
            st.indexes = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
        if round.enabled(checks::DATABASE_SIZE) && Cached::due(&st.database_size, CATALOG_INTERVAL)
        {
            let result = sqlx::query_scalar::<_, f64>(sql::DATABASE_SIZE)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| probe_error(&e, "pg_database_size", user));
            st.database_size = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
        if round.enabled(checks::BLOAT) && Cached::due(&st.bloat, EXPENSIVE_INTERVAL) {
            let floor = round.thresholds(checks::BLOAT).floor.unwrap_or(0.0);
            let result = match sqlx::query(sql::BLOAT)
                .bind(floor)
                .fetch_all(&mut *conn)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        Ok(BloatRow {
                            name: r.try_get("name")?,
                            real_size: r.try_get::<Option<f64>, _>("real_size")?.unwrap_or(0.0),
                            bloat_size: r.try_get::<Option<f64>, _>("bloat_size")?.unwrap_or(0.0),
                            na: r.try_get("na")?,
                            table: None,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(|e| probe_error(&e, "the bloat estimate", user)),
                Err(e) => Err(probe_error(&e, "the bloat estimate", user)),
            };
            st.bloat = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
        if round.enabled(checks::INDEX_BLOAT) && Cached::due(&st.index_bloat, EXPENSIVE_INTERVAL) {
            let floor = round.thresholds(checks::INDEX_BLOAT).floor.unwrap_or(0.0);
            let what = "the index bloat estimate";
            let result = match sqlx::query(sql::INDEX_BLOAT)
                .bind(floor)
                .fetch_all(&mut *conn)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        Ok(BloatRow {
                            name: r.try_get("name")?,
                            real_size: r.try_get::<Option<f64>, _>("real_size")?.unwrap_or(0.0),
                            bloat_size: r.try_get::<Option<f64>, _>("bloat_size")?.unwrap_or(0.0),
                            na: r.try_get("na")?,
                            table: r.try_get("tbl")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(|e| probe_error(&e, what, user)),
                Err(e) => Err(probe_error(&e, what, user)),
            };
            st.index_bloat = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
        if round.enabled(checks::DUPLICATE_INDEXES)
            && Cached::due(&st.duplicates, EXPENSIVE_INTERVAL)
        {
            let result = match sqlx::query(sql::duplicate_indexes(version_num))
                .fetch_all(&mut *conn)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        Ok(DuplicateGroup {
                            table: r.try_get("tbl")?,
                            names: r.try_get("names")?,
                            sizes: r.try_get("sizes")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(|e| probe_error(&e, "the duplicate-index analysis", user)),
                Err(e) => Err(probe_error(&e, "the duplicate-index analysis", user)),
            };
            st.duplicates = Some(Cached {
                at: Instant::now(),
                result,
            });
        }
    }
}
