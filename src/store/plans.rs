//! Query plans (`query_plans`, migration 0010): the generic plans of samples' top
//! statements with their summaries, written by the sample job as it takes them (a few per
//! hour per target, so directly, not through the buffered writer) and read by
//! `dbwarden slow-queries` (and the dashboard).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::read::bounded;
use super::{Pool, Store, StoreError, from_ms, ms};

/// One stored plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanRow {
    pub target: String,
    pub queryid: String,
    pub ts: DateTime<Utc>,
    /// The plan as `EXPLAIN (FORMAT JSON)` printed it.
    pub plan_json: String,
    /// [`crate::sample::plan::PlanSummary::line`].
    pub summary: String,
    pub top_node: String,
    pub total_cost: Option<f64>,
    pub plan_rows: Option<f64>,
    /// The large tables read by a Seq Scan, comma-separated (`None`: none).
    pub large_seq_scans: Option<String>,
}

const COLUMNS: &str =
    "target, queryid, ts, plan_json, summary, top_node, total_cost, plan_rows, large_seq_scans";

impl Store {
    /// Stores plans taken by `agent`.
    pub async fn plans_insert(&self, agent: &str, rows: &[PlanRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let pool = self.write_pool()?;
        bounded(async {
            on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(format!("INSERT INTO query_plans (agent, {COLUMNS}) "));
                q.push_values(rows, |mut b, r| {
                    b.push_bind(agent)
                        .push_bind(&r.target)
                        .push_bind(&r.queryid)
                        .push_bind(ms(r.ts))
                        .push_bind(&r.plan_json)
                        .push_bind(&r.summary)
                        .push_bind(&r.top_node)
                        .push_bind(r.total_cost)
                        .push_bind(r.plan_rows)
                        .push_bind(&r.large_seq_scans);
                });
                q.build().execute(p).await?;
            });
            Ok(())
        })
        .await
    }

    /// The newest stored plan of each of `queryids` of `target`.
    pub async fn plans_latest(
        &self,
        target: &str,
        queryids: &[String],
    ) -> Result<HashMap<String, PlanRow>, StoreError> {
        let mut out = HashMap::new();
        if queryids.is_empty() {
            return Ok(out);
        }
        let pool = self.reader()?;
        let rows: Vec<PlanRow> = bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(format!(
                    "SELECT {COLUMNS} FROM (SELECT {COLUMNS}, \
                     ROW_NUMBER() OVER (PARTITION BY queryid ORDER BY ts DESC) AS newest \
                     FROM query_plans WHERE target = "
                ));
                q.push_bind(target).push(" AND queryid IN (");
                let mut sep = q.separated(", ");
                for id in queryids {
                    sep.push_bind(id.clone());
                }
                q.push(")) p WHERE newest = 1");
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<PlanRow, sqlx::Error> {
                        Ok(PlanRow {
                            target: r.try_get(0)?,
                            queryid: r.try_get(1)?,
                            ts: from_ms(r.try_get(2)?),
                            plan_json: r.try_get(3)?,
                            summary: r.try_get(4)?,
                            top_node: r.try_get(5)?,
                            total_cost: r.try_get(6)?,
                            plan_rows: r.try_get(7)?,
                            large_seq_scans: r.try_get(8)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await?;
        for r in rows {
            out.insert(r.queryid.clone(), r);
        }
        Ok(out)
    }
}
