//! Query regressions (pure): a statement whose mean time in this sample exceeds its own
//! baseline (the median of its mean time over the recent samples) by a factor, with
//! enough calls to mean something, is a regression.

use std::collections::HashMap;

use super::StatementDelta;

/// Fewer baseline samples than this: no judgement yet.
pub const MIN_BASELINE_SAMPLES: usize = 3;

/// One statement that got slower than its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub queryid: String,
    pub scope: String,
    pub calls: i64,
    pub mean_ms: f64,
    pub baseline_ms: f64,
    pub baseline_samples: usize,
}

impl Regression {
    pub fn factor(&self) -> f64 {
        self.mean_ms / self.baseline_ms
    }
}

/// The median of `v` (`None` when empty).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The statements of this sample that regressed against `history` (per queryid, its
/// earlier per-sample mean times), worst factor first.
pub fn find(
    statements: &[StatementDelta],
    history: &HashMap<String, Vec<f64>>,
    factor: f64,
    min_calls: i64,
    min_mean_ms: f64,
) -> Vec<Regression> {
    let mut out: Vec<Regression> = statements
        .iter()
        .filter(|d| d.calls >= min_calls && d.mean_ms >= min_mean_ms)
        .filter_map(|d| {
            let past = history.get(&d.key.id)?;
            if past.len() < MIN_BASELINE_SAMPLES {
                return None;
            }
            let baseline = median(past)?;
            (baseline > 0.0 && d.mean_ms > baseline * factor).then(|| Regression {
                queryid: d.key.id.clone(),
                scope: d.key.scope.clone(),
                calls: d.calls,
                mean_ms: d.mean_ms,
                baseline_ms: baseline,
                baseline_samples: past.len(),
            })
        })
        .collect();
    out.sort_by(|a, b| b.factor().total_cmp(&a.factor()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::StatementKey;

    fn d(id: &str, calls: i64, mean_ms: f64) -> StatementDelta {
        StatementDelta {
            key: StatementKey {
                id: id.into(),
                scope: "s".into(),
            },
            calls,
            total_ms: mean_ms * calls as f64,
            mean_ms,
            max_ms: 0.0,
            rows: 0,
            shared_hit: 0,
            shared_read: 0,
            temp_read: 0,
            temp_written: 0,
            plan_ms: 0.0,
            rows_examined: 0,
            no_index_used: 0,
            new: false,
        }
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn slower_than_factor_times_its_median_with_enough_calls_is_a_regression() {
        let history: HashMap<String, Vec<f64>> = [
            ("a".to_string(), vec![1.0, 1.2, 0.8, 50.0]), // one outlier: median 1.1
            ("b".to_string(), vec![10.0, 10.0, 10.0]),
            ("c".to_string(), vec![1.0, 1.0]), // too little history
            ("e".to_string(), vec![1.0, 1.0, 1.0]),
        ]
        .into_iter()
        .collect();
        let now = [
            d("a", 20, 4.0),   // 3.6× the median: regression
            d("b", 20, 29.0),  // 2.9×: not
            d("c", 20, 100.0), // no baseline yet
            d("e", 5, 100.0),  // too few calls
            d("new", 20, 100.0),
        ];
        let r = find(&now, &history, 3.0, 10, 1.0);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].queryid, "a");
        assert!((r[0].baseline_ms - 1.1).abs() < 1e-9);
        assert_eq!(r[0].baseline_samples, 4);
    }

    #[test]
    fn a_statement_of_microseconds_that_triples_is_noise_below_the_floor() {
        let history: HashMap<String, Vec<f64>> = [("fast".to_string(), vec![0.02, 0.02, 0.02])]
            .into_iter()
            .collect();
        let now = [d("fast", 100, 0.09)]; // 4.5× but 0.09 ms
        assert!(find(&now, &history, 3.0, 10, 1.0).is_empty());
        // The same statement turned into a 15 ms scan is a regression.
        let r = find(&[d("fast", 100, 15.0)], &history, 3.0, 10, 1.0);
        assert_eq!(r.len(), 1, "{r:?}");
    }
}
