//! Plan summaries (pure): what the dashboard, `dbwarden slow-queries` and `dbwarden
//! explain` show of a PostgreSQL plan in `FORMAT JSON`: the top node, its estimated cost
//! and rows, and every sequential scan of a large table (the usual missing-index hint).

use std::collections::HashMap;

use serde_json::Value;

/// A table with at least this many rows (`pg_class.reltuples`) is large: a sequential scan
/// of it is named in the summary.
pub const LARGE_TABLE_ROWS: f64 = 10_000.0;

/// A plan, summarised.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanSummary {
    /// The top node: `Hash Join`, `Seq Scan on orders`, ...
    pub top_node: String,
    /// The planner's estimated total cost and rows of the top node.
    pub total_cost: Option<f64>,
    pub rows: Option<f64>,
    /// Relations read by a `Seq Scan` anywhere in the plan, in plan order, each once.
    pub seq_scans: Vec<String>,
    /// Of those, the large ones with their estimated rows (see [`with_table_rows`]).
    pub large_seq_scans: Vec<(String, f64)>,
}

impl PlanSummary {
    /// One line: `Seq Scan on t (cost 3584.00, rows 1); Seq Scan on large table t (~200000 rows)`.
    pub fn line(&self) -> String {
        let mut out = self.top_node.clone();
        let mut est = Vec::new();
        if let Some(c) = self.total_cost {
            est.push(format!("cost {c:.2}"));
        }
        if let Some(r) = self.rows {
            est.push(format!("rows {r:.0}"));
        }
        if !est.is_empty() {
            out.push_str(&format!(" ({})", est.join(", ")));
        }
        if !self.large_seq_scans.is_empty() {
            let tables: Vec<String> = self
                .large_seq_scans
                .iter()
                .map(|(t, n)| format!("{t} (~{n:.0} rows)"))
                .collect();
            out.push_str(&format!("; Seq Scan on large table {}", tables.join(", ")));
        }
        out
    }
}

/// Summarises a plan as `EXPLAIN (FORMAT JSON)` prints it (`[{"Plan": {...}}]`, or the
/// object itself).
pub fn summarize(plan: &Value) -> Result<PlanSummary, String> {
    let root = plan
        .get(0)
        .unwrap_or(plan)
        .get("Plan")
        .ok_or("not a PostgreSQL JSON plan (no \"Plan\")")?;
    let mut seq_scans = Vec::new();
    walk(root, &mut seq_scans);
    Ok(PlanSummary {
        top_node: node_name(root),
        total_cost: root.get("Total Cost").and_then(Value::as_f64),
        rows: root.get("Plan Rows").and_then(Value::as_f64),
        seq_scans,
        large_seq_scans: Vec::new(),
    })
}

/// Marks the sequential scans of tables with at least [`LARGE_TABLE_ROWS`] rows, from
/// `table_rows` (relation → estimated rows; relations it lacks are not judged).
pub fn with_table_rows(mut s: PlanSummary, table_rows: &HashMap<String, f64>) -> PlanSummary {
    s.large_seq_scans = s
        .seq_scans
        .iter()
        .filter_map(|t| {
            let n = *table_rows.get(t)?;
            (n >= LARGE_TABLE_ROWS).then(|| (t.clone(), n))
        })
        .collect();
    s
}

fn node_name(n: &Value) -> String {
    let kind = n
        .get("Node Type")
        .and_then(Value::as_str)
        .unwrap_or("(unknown node)");
    match relation(n) {
        Some(r) => format!("{kind} on {r}"),
        None => kind.to_string(),
    }
}

/// `schema.relation` when the plan names the schema (VERBOSE), else the relation.
fn relation(n: &Value) -> Option<String> {
    let rel = n.get("Relation Name").and_then(Value::as_str)?;
    Some(match n.get("Schema").and_then(Value::as_str) {
        Some(s) => format!("{s}.{rel}"),
        None => rel.to_string(),
    })
}

fn walk(n: &Value, seq: &mut Vec<String>) {
    if n.get("Node Type").and_then(Value::as_str) == Some("Seq Scan")
        && let Some(r) = relation(n)
        && !seq.contains(&r)
    {
        seq.push(r);
    }
    for child in n
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(child, seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `EXPLAIN (GENERIC_PLAN, FORMAT JSON) SELECT * FROM orders o JOIN customers c ON
    /// c.id = o.customer WHERE o.status = $1` as PostgreSQL 16 prints it (trimmed).
    const JOIN: &str = r#"[{"Plan": {"Node Type": "Hash Join", "Parallel Aware": false,
        "Join Type": "Inner", "Startup Cost": 30.5, "Total Cost": 4235.25, "Plan Rows": 1020,
        "Plan Width": 72, "Plans": [
          {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "orders",
           "Alias": "o", "Startup Cost": 0.0, "Total Cost": 4190.0, "Plan Rows": 1020,
           "Filter": "(status = $1)"},
          {"Node Type": "Hash", "Parent Relationship": "Inner", "Total Cost": 18.0,
           "Plan Rows": 1000, "Plans": [
             {"Node Type": "Seq Scan", "Relation Name": "customers", "Alias": "c",
              "Total Cost": 18.0, "Plan Rows": 1000}]}]}}]"#;

    #[test]
    fn the_top_node_and_every_seq_scan_are_found() {
        let v: Value = serde_json::from_str(JOIN).unwrap_or_default();
        let s = summarize(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.top_node, "Hash Join");
        assert_eq!(s.total_cost, Some(4235.25));
        assert_eq!(s.rows, Some(1020.0));
        assert_eq!(s.seq_scans, vec!["orders", "customers"]);
        // Only the large one is named.
        let rows = HashMap::from([
            ("orders".to_string(), 200_000.0),
            ("customers".into(), 1000.0),
        ]);
        let s = with_table_rows(s, &rows);
        assert_eq!(s.large_seq_scans, vec![("orders".to_string(), 200_000.0)]);
        assert_eq!(
            s.line(),
            "Hash Join (cost 4235.25, rows 1020); Seq Scan on large table orders (~200000 rows)"
        );
    }

    #[test]
    fn an_index_scan_has_no_seq_scan_and_a_schema_is_kept() {
        let v: Value = serde_json::from_str(
            r#"{"Plan": {"Node Type": "Index Scan", "Relation Name": "t", "Schema": "app",
                "Total Cost": 8.44, "Plan Rows": 1}}"#,
        )
        .unwrap_or_default();
        let s = summarize(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.top_node, "Index Scan on app.t");
        assert!(s.seq_scans.is_empty());
        assert_eq!(s.line(), "Index Scan on app.t (cost 8.44, rows 1)");
        assert!(summarize(&serde_json::json!({"query_block": {}})).is_err());
    }
}
