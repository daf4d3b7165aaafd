//! Rate-limited reporting of a recurring trouble (records dropped, the store failing): one
//! line when it begins, at most one a minute while it goes on (with the count since the
//! previous line), one when it ends. Pure: the caller passes the time and logs the line.

use std::time::Duration;

use tokio::time::Instant;

/// At most one "still going on" line per this period.
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(super) struct Episode {
    active: Option<Active>,
}

#[derive(Debug, Clone, Copy)]
struct Active {
    began: Instant,
    last_event: Instant,
    last_line: Instant,
    total: u64,
    since_line: u64,
}

/// A line to log for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Line {
    /// The first event of an episode.
    Began,
    /// Events go on; `since_line` happened since the previous line.
    Ongoing { since_line: u64, total: u64 },
}

/// An episode that has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ended {
    pub total: u64,
    pub lasted: Duration,
}

impl Episode {
    /// Counts `n` events at `now`; returns the line to log, if one is due.
    pub fn event(&mut self, now: Instant, n: u64) -> Option<Line> {
        match &mut self.active {
            None => {
                self.active = Some(Active {
                    began: now,
                    last_event: now,
                    last_line: now,
                    total: n,
                    since_line: 0,
                });
                Some(Line::Began)
            }
            Some(a) => {
                a.last_event = now;
                a.total += n;
                a.since_line += n;
                if now.duration_since(a.last_line) >= REPORT_EVERY {
                    let line = Line::Ongoing {
                        since_line: a.since_line,
                        total: a.total,
                    };
                    a.last_line = now;
                    a.since_line = 0;
                    Some(line)
                } else {
                    None
                }
            }
        }
    }

    /// Ends the episode if nothing happened for `quiet`.
    pub fn end_if_quiet(&mut self, now: Instant, quiet: Duration) -> Option<Ended> {
        match self.active {
            Some(a) if now.duration_since(a.last_event) >= quiet => self.end(now),
            _ => None,
        }
    }

    /// Ends the episode now (e.g. the store answered again).
    pub fn end(&mut self, now: Instant) -> Option<Ended> {
        self.active.take().map(|a| Ended {
            total: a.total,
            lasted: now.duration_since(a.began),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_at_the_start_then_one_a_minute_then_the_end() {
        let t0 = Instant::now();
        let mut e = Episode::default();
        assert_eq!(e.event(t0, 1), Some(Line::Began));
        let mut lines = Vec::new();
        // 1,000 drops over 150 s: one at the start, two "ongoing" lines, nothing else.
        for i in 1..1000u64 {
            let now = t0 + Duration::from_millis(i * 150);
            if let Some(l) = e.event(now, 1) {
                lines.push((i, l));
            }
        }
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0].1,
            Line::Ongoing {
                since_line: 400,
                total: 401
            }
        );
        let last = t0 + Duration::from_millis(999 * 150);
        assert_eq!(
            e.end_if_quiet(last + Duration::from_secs(59), REPORT_EVERY),
            None
        );
        let ended = e.end_if_quiet(last + REPORT_EVERY, REPORT_EVERY);
        assert_eq!(
            ended.map(|x| x.total),
            Some(1000),
            "every event is in the total"
        );
        assert_eq!(e.end(last + REPORT_EVERY), None, "the episode has ended");
        // A new episode begins with its own first line.
        assert_eq!(
            e.event(last + Duration::from_secs(120), 3),
            Some(Line::Began)
        );
    }

    #[test]
    fn ending_an_episode_that_never_began_says_nothing() {
        let mut e = Episode::default();
        assert_eq!(e.end(Instant::now()), None);
    }
}
