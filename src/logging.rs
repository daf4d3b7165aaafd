//! Logging: tracing everywhere. Under systemd, when stderr *is* the journal (JOURNAL_STREAM
//! names stderr's device:inode), records go to the journal natively with structured fields
//! (TARGET, JOB, RUN_ID, CHECK, STATUS) and correct priorities; otherwise readable lines on
//! stderr, without colours unless stderr is a terminal.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where log records went, for the first log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journal,
    Stderr,
    /// JOURNAL_STREAM said journal, but its socket could not be opened.
    StderrJournalUnavailable,
}

/// Whether JOURNAL_STREAM (`device:inode`) names the file stderr is connected to.
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

/// The filter: `--log-level`, else `RUST_LOG`, else `DBWARDEN_LOG`, else `info`. sqlx's
/// per-statement logs are noise for a monitoring agent and stay at `warn` unless asked.
fn filter(level: Option<&str>) -> EnvFilter {
    let spec = level
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .or_else(|| std::env::var("DBWARDEN_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let spec = if spec.contains("sqlx") {
        spec
    } else {
        format!("{spec},sqlx=warn")
    };
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"))
}

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init(level: Option<&str>) -> Sink {
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("dbwarden".into())
                    .with_priority_mappings(tracing_journald::PriorityMappings {
                        info: tracing_journald::Priority::Informational,
                        debug: tracing_journald::Priority::Debug,
                        ..tracing_journald::PriorityMappings::new()
                    });
                let _ = tracing_subscriber::registry()
                    .with(filter(level))
                    .with(layer)
                    .try_init();
                return Sink::Journal;
            }
            Err(_) => {
                init_stderr(level);
                tracing::warn!(
                    "JOURNAL_STREAM is set but the journald socket is unavailable; logging to stderr"
                );
                return Sink::StderrJournalUnavailable;
            }
        }
    }
    init_stderr(level);
    Sink::Stderr
}

fn init_stderr(level: Option<&str>) {
    let _ = tracing_subscriber::registry()
        .with(filter(level))
        .with(text_layer(std::io::stderr, std::io::stderr().is_terminal()))
        .try_init();
}

/// Readable lines. Every field value, the message included, has its control characters
/// escaped ([`crate::text::escape`]): a name or message from a database cannot forge a
/// log line or send escape sequences to the terminal.
fn text_layer<S, W>(writer: W, ansi: bool) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    use tracing_subscriber::field::MakeExt;
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = crate::text::escape(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .fmt_fields(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn database_text_cannot_forge_a_log_line() {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber =
            tracing_subscriber::registry().with(text_layer(move || sink.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            let table = "x\nINFO dbwarden: all checks OK\x1b[2J";
            tracing::warn!(check = %table, "dead_tuples: {table}");
        });
        let out =
            String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|p| p.into_inner())).to_string();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\x1b'), "{out}");
        assert!(out.contains("x\\nINFO dbwarden"), "{out}");
        assert!(out.contains("check=x\\nINFO"), "{out}");
    }
}
