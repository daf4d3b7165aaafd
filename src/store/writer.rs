//! The writer task and its supervisor.
//!
//! The writer takes batches from the shared buffer and writes them; it owns the only write
//! connection. When the store is unavailable it closes that connection (releasing any
//! lock), puts the batch back and retries with capped exponential backoff; it connects and
//! migrates by itself when the store was not reachable at start. The supervisor restarts
//! the writer if it panics or ends unexpectedly: the buffer lives outside the task, and a
//! batch in flight is given back when the task unwinds, so nothing queued is lost.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::buffer::{BufferLimits, Entry, Queue};
use super::connect::{Target, WriteConn};
use super::episode::{Episode, Line, REPORT_EVERY};
use super::write::{self, Failure};
use super::{BATCH_MAX, BATCH_WINDOW, DropCounts, Pool, Record, StoreHealth};

/// First retry delay after a failure; doubled up to [`BACKOFF_CAP`].
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// Longest wait between attempts: once the store is back, the writer notices within this
/// (plus one connect), and a full buffer (100,000 records, 50 batches) is written well
/// within 30 s.
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The writer wakes at least this often to end quiet drop episodes in the log.
const TICK: Duration = Duration::from_secs(1);
/// Pause before restarting a crashed writer, so a bug that crashes it at once does not
/// spin.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Everything the store handles, the writer and the supervisor share.
pub(super) struct Shared {
    pub url: String,
    /// The agent whose rows this store writes and whose believed statuses it reads
    /// (`agent` columns; several agents share a PostgreSQL store).
    pub agent: String,
    pub target: Target,
    /// Opened with `Store::open_read_only`: no writer; pushes are refused.
    pub read_only: bool,
    pub state: Mutex<State>,
    /// Records pushed into an empty queue, a full batch, a flush, a close.
    pub wake: Notify,
    /// Bumped after every write attempt (flush waiters re-check the state).
    pub progress: watch::Sender<u64>,
    /// Set once the store is connected and migrated.
    pub read: Mutex<Option<Pool>>,
    /// The connection `Store::open` / `start` made, for the first writer to take.
    pub handoff: Mutex<Option<WriteConn>>,
    pub writer: Mutex<Option<AbortHandle>>,
    /// The writer's store-on-change cache (kept across writer restarts).
    pub series: Mutex<super::series::Cache>,
    /// Cancelled when the store is closing (cuts backoff sleeps short).
    pub closing: CancellationToken,
    /// Test-only: the writer panics once when it next has records.
    #[cfg(test)]
    pub panic_once: std::sync::atomic::AtomicBool,
}

/// The buffer and the counters behind [`StoreHealth`].
pub(super) struct State {
    pub queue: Queue,
    pub limits: BufferLimits,
    pub written: u64,
    pub dropped: DropCounts,
    pub restarts: u64,
    pub write_seconds: super::Latency,
    /// Failed attempts (connect or write) so far: a flush fails on the next one.
    pub failures: u64,
    pub reachable: bool,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub flush_waiting: usize,
    /// When a close was asked, the time by which the writer must stop.
    pub close_deadline: Option<Instant>,
    /// Closed: later pushes are dropped (and counted).
    pub closed: bool,
    /// Close this agent's orphaned runs at the first connection (degraded start).
    pub close_orphans: bool,
    pub overflow_log: Episode,
    pub bad_log: Episode,
    pub outage_log: Episode,
    pub shutdown_log: Episode,
}

impl State {
    pub fn new(limits: BufferLimits) -> State {
        State {
            queue: Queue::new(limits),
            limits,
            written: 0,
            dropped: DropCounts::default(),
            restarts: 0,
            write_seconds: super::Latency::default(),
            failures: 0,
            reachable: false,
            failing_since: None,
            last_error: None,
            flush_waiting: 0,
            close_deadline: None,
            closed: false,
            close_orphans: false,
            overflow_log: Episode::default(),
            bad_log: Episode::default(),
            outage_log: Episode::default(),
            shutdown_log: Episode::default(),
        }
    }

    /// Counts `n` records dropped because the buffer was full; returns the log line to
    /// write (after unlocking), if one is due.
    fn count_overflow(&mut self, now: Instant, n: u64) -> Option<OverflowLine> {
        if n == 0 {
            return None;
        }
        self.dropped.overflow += n;
        self.overflow_log.event(now, n).map(|line| OverflowLine {
            line,
            limits: self.limits,
            reachable: self.reachable,
        })
    }

    pub fn health(&self) -> StoreHealth {
        StoreHealth {
            reachable: self.reachable,
            failing_since: self.failing_since,
            last_error: self.last_error.clone(),
            backlog_records: self.queue.records(),
            backlog_bytes: self.queue.bytes(),
            limits: self.limits,
            written_total: self.written,
            dropped: self.dropped,
            writer_restarts: self.restarts,
            write_seconds: self.write_seconds.clone(),
        }
    }
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters (every update is a
        // few plain assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump_progress(&self) {
        self.progress.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Queues a record; never waits. Called by producers.
    pub fn push(&self, r: Record) {
        let now = Instant::now();
        let mut s = self.lock();
        if self.read_only {
            // A caller bug, never silent: logged each time and counted.
            s.dropped.bad_record += 1;
            drop(s);
            tracing::error!(
                history = %self.url,
                "history store is open read-only (a CLI reader): a record was not written; this is a bug in dbwarden, please report the command you ran"
            );
            return;
        }
        if s.closed {
            s.dropped.shutdown += 1;
            let line = s.shutdown_log.event(now, 1);
            let total = s.dropped.shutdown;
            drop(s);
            if let Some(line) = line {
                log_shutdown_drop(line, total);
            }
            return;
        }
        let dropped = s.queue.push(r);
        let queued = s.queue.queued();
        let line = s.count_overflow(now, dropped);
        drop(s);
        if queued == 1 || queued == BATCH_MAX {
            self.wake.notify_one();
        }
        if let Some(line) = line {
            log_overflow(line);
        }
    }

    /// Ends drop episodes that have been quiet for a minute, with their closing line.
    fn tick(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        let overflow = s.overflow_log.end_if_quiet(now, REPORT_EVERY);
        let bad = s.bad_log.end_if_quiet(now, REPORT_EVERY);
        drop(s);
        if let Some(e) = overflow {
            tracing::info!(
                dropped = e.total,
                "history buffer has room again; {} records were dropped over {}",
                e.total,
                fmt_duration(e.lasted)
            );
        }
        if let Some(e) = bad {
            tracing::info!(
                dropped = e.total,
                "history store accepts records again; {} rejected records were dropped over {}",
                e.total,
                fmt_duration(e.lasted)
            );
        }
    }

    /// The store answered: record it, and end an outage episode.
    fn succeeded(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        s.reachable = true;
        s.failing_since = None;
        s.last_error = None;
        let ended = s.outage_log.end(now);
        let backlog = s.queue.records();
        drop(s);
        if let Some(e) = ended {
            tracing::info!(
                backlog,
                "history store reachable again after {}; writing {backlog} buffered records",
                fmt_duration(e.lasted)
            );
        }
    }

    /// The store could not be reached or could not write.
    fn failed(&self, reason: &str) {
        let now = Instant::now();
        let mut s = self.lock();
        s.failures += 1;
        s.reachable = false;
        if s.failing_since.is_none() {
            s.failing_since = Some(Utc::now());
        }
        s.last_error = Some(reason.to_string());
        let line = s.outage_log.event(now, 1);
        let (backlog, limits, dropped) = (s.queue.records(), s.limits, s.dropped.overflow);
        let since = s.failing_since;
        drop(s);
        match line {
            Some(Line::Began) => tracing::warn!(
                history = %self.url,
                error = %reason,
                "history store unavailable; results are kept in memory (up to {} records or {} MiB) and written when it is back; monitoring goes on",
                limits.records,
                limits.bytes / (1024 * 1024)
            ),
            Some(Line::Ongoing { .. }) => tracing::warn!(
                history = %self.url,
                error = %reason,
                backlog,
                dropped,
                "history store still unavailable (since {}); {backlog} records waiting, {dropped} dropped so far",
                since.map(|t| t.to_rfc3339()).unwrap_or_default()
            ),
            None => tracing::debug!(error = %reason, "history store attempt failed"),
        }
        self.bump_progress();
    }

    /// Records and logs the records of a batch the store rejected.
    fn rejected(&self, batch: &[Entry], bad: &[(usize, String)]) {
        if bad.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut s = self.lock();
        s.dropped.bad_record += bad.len() as u64;
        let line = s.bad_log.event(now, bad.len() as u64);
        drop(s);
        for (i, reason) in bad {
            let what = batch
                .get(*i)
                .map(|e| describe(&e.record))
                .unwrap_or_default();
            match line {
                Some(Line::Began) => tracing::warn!(
                    record = %what,
                    error = %reason,
                    "history store rejected a record; dropped it and wrote the rest of its batch"
                ),
                _ => {
                    tracing::debug!(record = %what, error = %reason, "history store rejected a record; dropped it")
                }
            }
        }
        if let Some(Line::Ongoing { since_line, total }) = line {
            let reason = bad.last().map(|(_, r)| r.as_str()).unwrap_or_default();
            tracing::warn!(
                dropped = since_line,
                total,
                error = %reason,
                "history store rejected {since_line} more records in the last minute ({total} in this episode)"
            );
        }
    }

    /// Asks the writer to stop by `deadline` (the earliest deadline asked wins).
    pub fn begin_close(&self, deadline: Instant) {
        let mut s = self.lock();
        s.close_deadline = Some(s.close_deadline.map_or(deadline, |d| d.min(deadline)));
        drop(s);
        self.closing.cancel();
        self.wake.notify_one();
    }

    /// Marks the store closed; what is still buffered is lost, counted and logged.
    /// Idempotent. Returns how many records were lost by this call.
    pub fn finish_close(&self) -> u64 {
        let mut s = self.lock();
        s.closed = true;
        let lost = s.queue.discard_all();
        s.dropped.shutdown += lost;
        drop(s);
        if lost > 0 {
            tracing::error!(
                lost,
                history = %self.url,
                "history store closed with {lost} records unwritten; they are lost"
            );
        }
        self.bump_progress();
        lost
    }

    /// Waits for records to write; false when woken without any (the loop re-checks).
    async fn wait_for_work(&self) -> bool {
        {
            let s = self.lock();
            if s.queue.queued() > 0 {
                return true;
            }
        }
        let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
        false
    }

    /// Lets a batch fill for up to [`BATCH_WINDOW`], unless it is full, a flush waits, or
    /// the store is closing.
    async fn batch_window(&self) {
        let deadline = Instant::now() + BATCH_WINDOW;
        loop {
            {
                let s = self.lock();
                if s.queue.queued() >= BATCH_MAX
                    || s.flush_waiting > 0
                    || s.close_deadline.is_some()
                {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, self.wake.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Sleeps the backoff delay, cut short by a close (then only until its deadline).
    async fn backoff_sleep(&self, delay: Duration) {
        let until = Instant::now() + delay;
        if !self.closing.is_cancelled() {
            let _ = tokio::time::timeout_at(until, self.closing.cancelled()).await;
        }
        let deadline = self.lock().close_deadline;
        tokio::time::sleep_until(deadline.map_or(until, |d| until.min(d))).await;
    }

    /// Connects (and migrates, and closes orphaned runs the first time if asked).
    async fn connect(&self) -> Result<WriteConn, String> {
        let (mut conn, read) = self.target.prepare().await.map_err(|e| e.to_string())?;
        let orphans = self.lock().close_orphans;
        if orphans {
            match write::close_orphaned_runs(&mut conn, &self.agent, super::ms(Utc::now())).await {
                Ok(n) => {
                    self.lock().close_orphans = false;
                    if n > 0 {
                        tracing::info!(
                            runs = n,
                            "marked {n} runs a previous dbwarden left running as interrupted"
                        );
                    }
                }
                Err(e) => match write::classify(&e) {
                    Failure::Unavailable(r) => {
                        conn.close().await;
                        return Err(r);
                    }
                    Failure::Bad(r) => {
                        self.lock().close_orphans = false;
                        tracing::warn!(error = %r, "cannot close runs a previous dbwarden left running");
                    }
                },
            }
        }
        let mut slot = self.read.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(read);
        }
        Ok(conn)
    }
}

/// A batch being written. If the writer unwinds (a panic) or is aborted (close past its
/// deadline) midway, what is not finished goes back to the buffer.
struct InFlight {
    shared: Arc<Shared>,
    entries: Vec<Entry>,
    done: usize,
    given_back: bool,
}

impl InFlight {
    fn give_back(&mut self) {
        if self.given_back {
            return;
        }
        self.given_back = true;
        let rest = self.entries.split_off(self.done.min(self.entries.len()));
        let now = Instant::now();
        let mut s = self.shared.lock();
        let dropped = s.queue.give_back(rest);
        let line = s.count_overflow(now, dropped);
        drop(s);
        if let Some(line) = line {
            log_overflow(line);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// The writer loop. Returns only when the store is closing and the buffer is written or
/// the close deadline has passed.
async fn writer(shared: Arc<Shared>) {
    let mut conn = shared
        .handoff
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let mut delay = BACKOFF_FIRST;
    loop {
        shared.tick();
        let close_deadline = shared.lock().close_deadline;
        if let Some(deadline) = close_deadline
            && (shared.lock().queue.queued() == 0 || Instant::now() >= deadline)
        {
            break;
        }
        let Some(c) = conn.as_mut() else {
            match shared.connect().await {
                Ok(c) => {
                    conn = Some(c);
                    shared.succeeded();
                    shared.bump_progress();
                    delay = BACKOFF_FIRST;
                }
                Err(reason) => {
                    shared.failed(&reason);
                    shared.backoff_sleep(delay).await;
                    delay = (delay * 2).min(BACKOFF_CAP);
                }
            }
            continue;
        };
        if !shared.wait_for_work().await {
            continue;
        }
        shared.batch_window().await;
        let entries = shared.lock().queue.take(BATCH_MAX);
        let mut batch = InFlight {
            shared: shared.clone(),
            entries,
            done: 0,
            given_back: false,
        };
        #[cfg(test)]
        if shared
            .panic_once
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("test hook: the writer panics with a batch in flight");
        }
        let started = Instant::now();
        let out = write::write_batch(
            c,
            &batch.entries,
            &mut batch.done,
            &shared.series,
            &shared.agent,
        )
        .await;
        {
            let mut s = shared.lock();
            s.written += out.written;
            s.write_seconds.observe(started.elapsed());
        }
        shared.rejected(&batch.entries, &out.bad);
        batch.give_back();
        drop(batch);
        match out.stopped {
            None => {
                if out.written > 0 {
                    shared.succeeded();
                }
                delay = BACKOFF_FIRST;
                shared.bump_progress();
            }
            Some((_, reason)) => {
                // Close the connection: a failed transaction must not keep a lock (SQLite
                // on a full disk), and a socket in an unknown state is not reused.
                if let Some(c) = conn.take() {
                    c.close().await;
                }
                shared.failed(&reason);
                shared.backoff_sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_CAP);
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

/// Runs the writer, restarting it when it panics or ends while the store is not closing.
/// Ends (after counting what could not be written) when the store is closed.
pub(super) async fn supervise(shared: Arc<Shared>) {
    loop {
        let task = tokio::spawn(writer(shared.clone()));
        *shared.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        let why = match task.await {
            Ok(()) if shared.lock().close_deadline.is_some() => break,
            Ok(()) => "it ended unexpectedly".to_string(),
            Err(e) if e.is_cancelled() => break,
            Err(e) => match e.try_into_panic() {
                Ok(p) => match (p.downcast_ref::<&str>(), p.downcast_ref::<String>()) {
                    (Some(s), _) => format!("it panicked: {s}"),
                    (_, Some(s)) => format!("it panicked: {s}"),
                    _ => "it panicked".to_string(),
                },
                Err(_) => "it failed".to_string(),
            },
        };
        let restarts = {
            let mut s = shared.lock();
            s.restarts += 1;
            s.restarts
        };
        tracing::error!(
            restarts,
            "history writer stopped ({why}); restarting it, nothing buffered is lost"
        );
        shared.bump_progress();
        let deadline = shared.lock().close_deadline;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        shared.backoff_sleep(RESTART_DELAY).await;
    }
    shared.finish_close();
    let read = shared.read.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(p) = read {
        let _ = tokio::time::timeout(Duration::from_secs(1), p.close()).await;
    }
}

/// An overflow log line and what it says about the buffer.
struct OverflowLine {
    line: Line,
    limits: BufferLimits,
    reachable: bool,
}

fn log_overflow(o: OverflowLine) {
    let OverflowLine {
        line,
        limits,
        reachable,
    } = o;
    let why = if reachable {
        "the store is slower than the results arrive"
    } else {
        "the store is unavailable"
    };
    match line {
        Line::Began => tracing::warn!(
            "history buffer full ({} records or {} MiB; {why}): dropping the oldest results and counting them",
            limits.records,
            limits.bytes / (1024 * 1024)
        ),
        Line::Ongoing { since_line, total } => tracing::warn!(
            dropped = since_line,
            total,
            "history buffer still full ({why}): {since_line} more records dropped in the last minute ({total} in this episode)"
        ),
    }
}

fn log_shutdown_drop(line: Line, total: u64) {
    match line {
        Line::Began => {
            tracing::warn!("a record arrived after the history store was closed; dropped")
        }
        Line::Ongoing { since_line, .. } => tracing::warn!(
            dropped = since_line,
            total,
            "{since_line} more records arrived after the history store was closed; dropped"
        ),
    }
}

/// A record named for a log line: its kind and target, with untrusted text escaped.
fn describe(r: &Record) -> String {
    match r {
        Record::Run(x) => format!("job run {:?} of job {:?}", x.id, x.job),
        Record::RunEnd(x) => format!("end of job run {:?}", x.id),
        Record::Checks {
            target, results, ..
        } => {
            format!("{} check results of target {target:?}", results.len())
        }
        Record::Metric { target, metric, .. } => format!("metric {metric:?} of target {target:?}"),
        Record::Tables { target, stats, .. } => {
            format!("statistics of {} tables of target {target:?}", stats.len())
        }
        Record::Maintenance { target, record, .. } => {
            format!(
                "maintenance of table {:?} of target {target:?}",
                record.step.table
            )
        }
        Record::Transition { target, check, .. } => {
            format!("status change of target {target:?} check {check:?}")
        }
        Record::QueryStat { target, delta, .. } => {
            format!("query statistics {:?} of target {target:?}", delta.key.id)
        }
        Record::QueryText {
            target, queryid, ..
        } => format!("query text {queryid:?} of target {target:?}"),
        Record::LongQuery { target, runner, .. } => {
            format!("long-running query pid {} of target {target:?}", runner.pid)
        }
        Record::SampleSnapshot { target, .. } => {
            format!("statement snapshot of target {target:?}")
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}
