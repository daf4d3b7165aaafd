//! The rollup job kind: history housekeeping for one target — hourly and daily rollups
//! (incremental, resumable), retention purges in batches, then (once per job, by the run of
//! its first target) the SQLite history store's self-maintenance — and the target's
//! forecasts (`forecast_full`, `forecast_wraparound`, `dead_row_growth`), cached for the health rounds (see [`crate::history::checks`]).

use std::sync::Arc;

use chrono::Utc;

use super::{JobError, Kind, Report, RunCtx, Shared};
use crate::config::RollupParams;
use crate::health::Status;
use crate::history::rollup::Grain;
use crate::history::store::{PurgeStats, RollupStats, purge_target, roll_up};
use crate::store::StoreError;

/// A rollup job, built from its `[[job]]` keys.
pub struct RollupJob {
    params: RollupParams,
    shared: Arc<Shared>,
}

/// What a rollup run did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RollupRun {
    pub hourly: RollupStats,
    pub daily: RollupStats,
    pub purged: PurgeStats,
    /// The store's self-maintenance (this run's target is the job's first): what it did.
    pub maintained: Option<String>,
    pub forecasts: usize,
}

impl Report for RollupRun {
    fn status(&self) -> Option<Status> {
        None
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "rolled up {} hour(s) and {} day(s) ({} rows), purged {} row(s), {} forecast(s)",
            self.hourly.buckets,
            self.daily.buckets,
            self.hourly.rows + self.daily.rows,
            self.purged.total(),
            self.forecasts
        );
        if let Some(m) = &self.maintained {
            s.push_str(&format!("; history store: {m}"));
        }
        s
    }
}

fn store_err(e: StoreError) -> JobError {
    JobError::Setup(format!("history store: {e}"))
}

impl Kind for RollupJob {
    type Params = RollupParams;
    type Report = RollupRun;

    fn build(params: &RollupParams, shared: &Arc<Shared>) -> Self {
        RollupJob {
            params: params.clone(),
            shared: shared.clone(),
        }
    }

    async fn run(self, ctx: RunCtx) -> Result<RollupRun, JobError> {
        let Some(store) = self.shared.history() else {
            return Err(JobError::Setup(
                "no history store in this process (rollup jobs run in the daemon and `dbwarden run-job`)".into(),
            ));
        };
        let agent = store.agent().to_string();
        let target = ctx.target.name.as_str();
        let tz = ctx.job.timezone;
        let now = Utc::now();
        let settle = chrono::Duration::from_std(self.params.settle).unwrap_or_default();
        let until = (now - settle).timestamp_millis();
        let cancel = &ctx.cancel;
        let mut run = RollupRun {
            hourly: roll_up(&store, &agent, target, Grain::Hour, until, cancel)
                .await
                .map_err(store_err)?,
            daily: roll_up(&store, &agent, target, Grain::Day(tz), until, cancel)
                .await
                .map_err(store_err)?,
            ..RollupRun::default()
        };
        if cancel.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        let retention = &ctx.config.raw.retention;
        run.purged = purge_target(
            &store,
            &agent,
            target,
            tz,
            &retention.horizons(now.timestamp_millis()),
            retention.purge_batch,
            cancel,
        )
        .await
        .map_err(store_err)?;
        if cancel.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        let first = ctx
            .config
            .job_targets(&ctx.job)
            .first()
            .map(|t| t.name.clone());
        if first.as_deref() == Some(target)
            && let Some(path) = store.sqlite_file()
        {
            run.maintained = Some(
                match crate::history::maintain::maintain_store(path, cancel).await {
                    Ok(records) if records.is_empty() => "nothing to do".into(),
                    Ok(records) => records
                        .iter()
                        .map(|r| format!("{} {}", r.step.action.as_str(), r.outcome.as_str()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    Err(e) => format!("not maintained: {e}"),
                },
            );
        }
        let window = crate::history::checks::window(&self.params);
        let forecasts = crate::history::checks::forecasts(&store, &ctx.target, now, window).await;
        run.forecasts = forecasts.len();
        self.shared.forecasts.set(target, forecasts);
        Ok(run)
    }
}
