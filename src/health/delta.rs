//! Deltas of lifetime counters between two rounds (cache hits, deadlocks, temp files).
//! A counter that went backwards (stats reset, server restart) resets the baseline instead
//! of producing a negative or garbage rate. Pure functions; engines keep the previous
//! snapshot themselves (an engine lives across rounds).

use std::collections::BTreeMap;

/// Lifetime counters read in one round, by name.
pub type Counters = BTreeMap<String, f64>;

/// The outcome of comparing two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// No previous snapshot: report "baseline pending" (OK), not UNKNOWN.
    BaselinePending,
    /// A counter decreased: statistics were reset or the server restarted. The new
    /// snapshot becomes the baseline.
    Reset,
    /// Increases per counter since the previous snapshot.
    Increase(BTreeMap<String, f64>),
}

/// Compares the previous snapshot (if any) with the current one.
pub fn compare(previous: Option<&Counters>, current: &Counters) -> Delta {
    let Some(prev) = previous else {
        return Delta::BaselinePending;
    };
    let mut out = BTreeMap::new();
    for (k, now) in current {
        let Some(before) = prev.get(k) else {
            return Delta::BaselinePending;
        };
        if now < before {
            return Delta::Reset;
        }
        out.insert(k.clone(), now - before);
    }
    Delta::Increase(out)
}

/// `part / whole × 100` of the increases, e.g. cache hit % = Δhit / (Δhit + Δread).
/// `None` when nothing happened in between (no reads: the ratio is undefined, not 0%).
pub fn ratio_percent(increase: &BTreeMap<String, f64>, part: &str, whole: &[&str]) -> Option<f64> {
    let p = *increase.get(part)?;
    let w: f64 = whole.iter().filter_map(|k| increase.get(*k)).sum();
    (w > 0.0).then(|| p * 100.0 / w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(pairs: &[(&str, f64)]) -> Counters {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn first_round_is_baseline_pending() {
        assert_eq!(compare(None, &c(&[("hit", 5.0)])), Delta::BaselinePending);
    }

    #[test]
    fn increases_and_ratio() {
        let d = compare(
            Some(&c(&[("hit", 100.0), ("read", 10.0)])),
            &c(&[("hit", 190.0), ("read", 20.0)]),
        );
        let Delta::Increase(inc) = d else {
            panic!("expected an increase, got {d:?}")
        };
        assert_eq!(inc.get("hit"), Some(&90.0));
        assert_eq!(ratio_percent(&inc, "hit", &["hit", "read"]), Some(90.0));
    }

    #[test]
    fn counter_going_backwards_is_a_reset() {
        let d = compare(
            Some(&c(&[("hit", 100.0), ("read", 10.0)])),
            &c(&[("hit", 3.0), ("read", 1.0)]),
        );
        assert_eq!(d, Delta::Reset);
    }

    #[test]
    fn idle_interval_has_no_ratio() {
        let inc = c(&[("hit", 0.0), ("read", 0.0)]);
        assert_eq!(ratio_percent(&inc, "hit", &["hit", "read"]), None);
    }
}
