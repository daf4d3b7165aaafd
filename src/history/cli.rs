//! `dbwarden history metrics|checks|jobs|transitions|alerts` and `dbwarden forecast`:
//! aligned tables with readable units (and a sparkline for a series), or CSV / JSON on
//! stdout for scripts.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::forecast::{Window, growth_since_vacuum};
use crate::config::Target;
use crate::health::{Status, Unit};
use crate::store::{Store, TrendQuery};
use crate::text::escape;

/// How a history command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Csv,
}

/// A unit string of a series as the health catalogue's unit (for formatting).
pub fn unit_of(s: &str) -> Unit {
    match s {
        "percent" => Unit::Percent,
        "bytes" => Unit::Bytes,
        "seconds" => Unit::Seconds,
        "milliseconds" => Unit::Milliseconds,
        _ => Unit::Count,
    }
}

/// A terminal sparkline of values (gaps as spaces).
pub fn sparkline(values: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let known = values.iter().flatten();
    let (lo, hi) = known.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(*v), hi.max(*v))
    });
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(v) if hi > lo => {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
            Some(_) => BARS[3],
        })
        .collect()
}

/// A sparkline of at most `width` characters (buckets averaged).
fn sparkline_width(values: &[Option<f64>], width: usize) -> String {
    if values.len() <= width || width == 0 {
        return sparkline(values);
    }
    let per = values.len().div_ceil(width);
    let merged: Vec<Option<f64>> = values
        .chunks(per)
        .map(|c| {
            let known: Vec<f64> = c.iter().flatten().copied().collect();
            (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
        })
        .collect();
    sparkline(&merged)
}

/// A CSV field: quoted when it holds a separator, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Columns padded to their widest cell (untrusted text escaped).
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |r: &[String]| {
        let last = r.len().saturating_sub(1);
        r.iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out.push('\n');
    for r in &cells {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// Prints rows as a table, CSV (same columns) or JSON (`json`, the typed rows).
pub fn print_rows<T: Serialize>(
    out: Output,
    headers: &[&str],
    rows: Vec<Vec<String>>,
    json: &T,
    empty: &str,
) -> anyhow::Result<()> {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(json)?),
        Output::Csv => {
            println!("{}", headers.join(","));
            for r in rows {
                println!(
                    "{}",
                    r.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",")
                );
            }
        }
        Output::Table if rows.is_empty() => println!("{empty}"),
        Output::Table => print!("{}", render_table(headers, &rows)),
    }
    Ok(())
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt(v: Option<f64>, unit: Unit, out: Output) -> String {
    match (v, out) {
        (None, _) => String::new(),
        (Some(v), Output::Table) => unit.format(v),
        (Some(v), _) => format!("{v}"),
    }
}

/// `history metrics`: the target's series (without a metric) or one series as a trend.
pub async fn metrics(
    store: &Store,
    target: &str,
    metric: Option<&str>,
    label: Option<&str>,
    since: chrono::Duration,
    step: Option<std::time::Duration>,
    out: Output,
) -> anyhow::Result<i32> {
    let Some(metric) = metric else {
        let series = store.series_of(target).await?;
        let rows = series
            .iter()
            .map(|s| {
                vec![
                    s.metric.clone(),
                    s.label.clone().unwrap_or_default(),
                    s.unit.clone(),
                ]
            })
            .collect();
        print_rows(
            out,
            &["metric", "label", "unit"],
            rows,
            &series,
            &format!("no metrics stored for target {}", escape(target)),
        )?;
        return Ok(0);
    };
    let now = Utc::now();
    let t = store
        .trend(&TrendQuery {
            target: target.into(),
            metric: metric.into(),
            label: label.map(str::to_string),
            from: now - since,
            to: now,
            step,
        })
        .await?;
    let unit = unit_of(&t.unit);
    let rows: Vec<Vec<String>> = t
        .points
        .iter()
        .map(|p| {
            vec![
                if out == Output::Table {
                    time(p.t)
                } else {
                    p.t.to_rfc3339()
                },
                opt(p.avg, unit, out),
                opt(p.min, unit, out),
                opt(p.max, unit, out),
                opt(p.last, unit, out),
            ]
        })
        .collect();
    if out == Output::Table {
        let avgs: Vec<Option<f64>> = t.points.iter().map(|p| p.avg).collect();
        println!(
            "{} {}{} ({}), {} buckets of {} from {:?} data",
            escape(target),
            escape(metric),
            label
                .map(|l| format!(" [{}]", escape(l)))
                .unwrap_or_default(),
            if t.unit.is_empty() {
                "no unit"
            } else {
                &t.unit
            },
            t.points.len(),
            humantime::format_duration(std::time::Duration::from_secs(t.step_seconds)),
            t.resolution
        );
        println!("{}", sparkline_width(&avgs, 80));
        if avgs.iter().all(Option::is_none) {
            println!("no data in this range");
            return Ok(0);
        }
    }
    print_rows(out, &["time", "avg", "min", "max", "last"], rows, &t, "")?;
    Ok(0)
}

/// `history checks`: one row per check and status period.
pub async fn checks(
    store: &Store,
    target: &str,
    since: DateTime<Utc>,
    out: Output,
) -> anyhow::Result<i32> {
    let rows = super::read::check_periods(store, target, since).await?;
    let cells = rows
        .iter()
        .map(|r| {
            let u = unit_of(&r.unit);
            let range = match (r.value_min, r.value_max) {
                (Some(a), Some(b)) if a == b || out != Output::Table => {
                    if out == Output::Table {
                        u.format(a)
                    } else {
                        format!("{a}..{b}")
                    }
                }
                (Some(a), Some(b)) => format!("{}–{}", u.format(a), u.format(b)),
                _ => String::new(),
            };
            vec![
                r.check.clone(),
                r.status.clone(),
                time(r.from),
                time(r.to),
                range,
                r.message.clone(),
            ]
        })
        .collect();
    print_rows(
        out,
        &["check", "status", "from", "to", "values", "last message"],
        cells,
        &rows,
        &format!(
            "no check results for {} since {}",
            escape(target),
            time(since)
        ),
    )?;
    Ok(0)
}

/// `history transitions`.
pub async fn transitions(
    store: &Store,
    target: &str,
    since: DateTime<Utc>,
    out: Output,
) -> anyhow::Result<i32> {
    let rows = super::read::transitions(store, target, since).await?;
    let cells = rows
        .iter()
        .map(|r| {
            vec![
                time(r.ts),
                r.check.clone().unwrap_or_else(|| "(target)".into()),
                r.from.clone(),
                r.to.clone(),
                r.message.clone(),
            ]
        })
        .collect();
    print_rows(
        out,
        &["time", "check", "from", "to", "message"],
        cells,
        &rows,
        &format!(
            "no status changes of {} since {}",
            escape(target),
            time(since)
        ),
    )?;
    Ok(0)
}

/// `history jobs`.
pub async fn jobs(
    store: &Store,
    target: &str,
    since: DateTime<Utc>,
    out: Output,
) -> anyhow::Result<i32> {
    let rows = super::read::job_runs(store, target, since).await?;
    let cells = rows
        .iter()
        .map(|r| {
            let took = r
                .finished_at
                .and_then(|f| (f - r.started_at).to_std().ok())
                .map(|d| Unit::Seconds.format(d.as_secs_f64()))
                .unwrap_or_default();
            vec![
                time(r.started_at),
                r.job.clone(),
                r.kind.clone(),
                r.outcome.clone(),
                r.status.clone().unwrap_or_default(),
                took,
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_rows(
        out,
        &[
            "started", "job", "kind", "outcome", "status", "took", "error",
        ],
        cells,
        &rows,
        &format!("no job runs of {} since {}", escape(target), time(since)),
    )?;
    Ok(0)
}

/// `history alerts`.
pub async fn alerts(
    store: &Store,
    target: &str,
    since: DateTime<Utc>,
    out: Output,
) -> anyhow::Result<i32> {
    let rows = super::read::alerts(store, target, since).await?;
    let cells = rows
        .iter()
        .map(|r| {
            vec![
                time(r.created_at),
                r.channel.clone(),
                r.event.clone(),
                r.state.clone(),
                r.attempts.to_string(),
                r.delivered_at.map(time).unwrap_or_default(),
                r.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_rows(
        out,
        &[
            "created",
            "channel",
            "event",
            "state",
            "attempts",
            "delivered",
            "last error",
        ],
        cells,
        &rows,
        &format!(
            "no notifications for {} since {}",
            escape(target),
            time(since)
        ),
    )?;
    Ok(0)
}

/// One line of `dbwarden forecast`.
#[derive(Debug, Serialize)]
pub struct ForecastLine {
    pub check: String,
    pub status: Status,
    pub days: Option<f64>,
    pub message: String,
}

/// A table's dead rows growing since its last vacuum.
#[derive(Debug, Serialize)]
pub struct BloatLine {
    pub table: String,
    pub dead_rows_per_day: f64,
    pub since_days: f64,
}

/// `dbwarden forecast --target T`: the forecast checks as the daemon would judge them,
/// and the tables whose dead rows grow fastest between vacuums. Too little history is
/// not an error: exit 0 with how much more is needed.
pub async fn forecast(store: &Store, target: &Target, out: Output) -> anyhow::Result<i32> {
    let now = Utc::now();
    let w = Window::default();
    let ms = super::checks::forecasts(store, target, now, w).await;
    let report = crate::engine::HealthReport {
        measurements: ms,
        ..Default::default()
    };
    let lines: Vec<ForecastLine> = crate::jobs::judge(target, &report)
        .into_iter()
        .map(|r| ForecastLine {
            days: r.value.map(|v| v / 86_400.0),
            check: r.check,
            status: r.status,
            message: r.message,
        })
        .collect();
    let mut bloat = Vec::new();
    for t in super::checks::table_dead_rows(store, &target.name, now, w, None).await? {
        if let Some((rate, since)) = growth_since_vacuum(&t.points)
            && rate > 0.0
        {
            bloat.push(BloatLine {
                table: t.table,
                dead_rows_per_day: rate,
                since_days: since,
            });
        }
    }
    bloat.sort_by(|a, b| b.dead_rows_per_day.total_cmp(&a.dead_rows_per_day));
    bloat.truncate(10);
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "target": target.name,
                "forecasts": lines,
                "dead_row_growth": bloat,
            }))?
        ),
        Output::Csv | Output::Table => {
            let rows = lines
                .iter()
                .map(|l| {
                    vec![
                        l.check.clone(),
                        l.status.as_str().to_string(),
                        l.days.map(|d| format!("{d:.1}")).unwrap_or_default(),
                        l.message.clone(),
                    ]
                })
                .collect();
            print_rows(
                out,
                &["forecast", "status", "days", "message"],
                rows,
                &lines,
                &format!(
                    "no forecast for {}: its engine reports no size or ID age history",
                    escape(&target.name)
                ),
            )?;
            if out == Output::Table && !bloat.is_empty() {
                println!("\ndead rows growing since the last vacuum:");
                let rows = bloat
                    .iter()
                    .map(|b| {
                        vec![
                            b.table.clone(),
                            format!("{}/day", Unit::Count.format(b.dead_rows_per_day.round())),
                            format!("{:.1} days", b.since_days),
                        ]
                    })
                    .collect::<Vec<_>>();
                print!("{}", render_table(&["table", "growth", "since"], &rows));
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_and_show_gaps() {
        assert_eq!(sparkline(&[Some(0.0), Some(7.0), None, Some(3.5)]), "▁█ ▅");
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)]), "▄▄");
        assert_eq!(
            sparkline_width(&vec![Some(1.0); 200], 80).chars().count(),
            67
        );
    }

    #[test]
    fn tables_align_and_escape() {
        let t = render_table(
            &["a", "bb"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q\u{1b}[2J".into(), "2".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "a         bb");
        assert!(lines[1].starts_with("xyz       1"), "{t}");
        assert!(
            !t.contains('\u{1b}'),
            "terminal escapes are neutralised: {t}"
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
