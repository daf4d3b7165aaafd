//! The writer's batch write latency, kept as a fixed-bucket histogram (`/metrics` exports it
//! as `dbwarden_history_write_seconds`). A plain value updated under the state lock the
//! writer takes after every batch anyway: no second lock, no exposition type in the store.

use std::time::Duration;

/// Upper bounds of the buckets, in seconds: a SQLite batch takes about a millisecond, a
/// PostgreSQL batch over a network some more, and a write times out after 30 s.
pub const WRITE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Observations of one histogram with the bounds of [`WRITE_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Observations at or below each bound (cumulative, as Prometheus wants them); the
    /// `+Inf` bucket is [`Latency::count`].
    pub cumulative: [u64; WRITE_BUCKETS.len()],
    /// Sum of all observations, in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Latency {
    /// Counts one observation.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, n) in WRITE_BUCKETS.iter().zip(self.cumulative.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_counts_in_its_bucket_and_every_larger_one() {
        let mut l = Latency::default();
        l.observe(Duration::from_millis(3));
        l.observe(Duration::from_millis(1));
        l.observe(Duration::from_secs(60));
        assert_eq!(l.count, 3);
        assert!((l.sum - 60.004).abs() < 1e-9, "{}", l.sum);
        // 1 ms is at the first bound (le is inclusive); 3 ms first fits 5 ms; 60 s only +Inf.
        assert_eq!(&l.cumulative[..4], &[1, 1, 2, 2]);
        assert_eq!(l.cumulative[WRITE_BUCKETS.len() - 1], 2);
    }

    #[test]
    fn bounds_increase() {
        assert!(WRITE_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
