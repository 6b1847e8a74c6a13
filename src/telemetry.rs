//! Logging: tracing to stderr, as text for people or JSON for log pipelines. Template bodies and credentials
//! are never logged at info level.
//!
//! Two rules keep the log trustworthy:
//! - `log.level` given as a bare level (`debug`) applies to stacksetd's own targets only; the AWS SDK and the
//!   HTTP stack stay at `warn` (at debug they print signed requests and response bodies). A full filter
//!   (`stacksetd=debug,aws_smithy_runtime=trace`, or RUST_LOG) is taken as written.
//! - In the text format every event is one line: control characters and invisible reordering characters in
//!   field values (error text from AWS, names from templates) are escaped, so a value cannot forge a line.
//!   JSON escapes them by itself.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::settings::LogFormat;

/// The level everything that is not stacksetd's logs at, unless a full filter says otherwise.
pub const OTHER_TARGETS_LEVEL: &str = "warn";

/// The filter directives for a configured level: a bare level is scoped to stacksetd's targets.
pub fn directives(level: &str) -> String {
    let bare = !level.contains(['=', ',', '[', ':']);
    if bare {
        format!("{OTHER_TARGETS_LEVEL},stacksetd={level}")
    } else {
        level.to_string()
    }
}

/// Install the global subscriber. `RUST_LOG`, when set, wins over the configured level (as a full filter).
pub fn init(format: LogFormat, level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match format {
        LogFormat::Json => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => {
            let color = use_color();
            builder
                .with_ansi(color)
                .with_writer(OneLine::new(std::io::stderr, color))
                .try_init()
        }
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}

fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// A writer factory for the text log: each event (one `write` of a formatted line) is written with its hidden
/// characters escaped and only its final newline kept.
#[derive(Clone)]
pub struct OneLine<M> {
    inner: M,
    /// On a colour terminal the formatter's own ESC sequences are kept (tracing-subscriber already escapes
    /// ESC inside field values there).
    keep_escape: bool,
}

impl<M> OneLine<M> {
    pub fn new(inner: M, keep_escape: bool) -> Self {
        OneLine { inner, keep_escape }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = OneLineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter {
            inner: self.inner.make_writer(),
            keep_escape: self.keep_escape,
        }
    }
}

pub struct OneLineWriter<W> {
    inner: W,
    keep_escape: bool,
}

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, true),
            None => (text.as_ref(), false),
        };
        let keep: &[char] = if self.keep_escape { &['\u{1b}'] } else { &[] };
        let mut line = crate::redact::safe_keeping(body, keep).into_owned();
        if newline {
            line.push('\n');
        }
        // One write per event, around the progress line of `reconcile --once` or `demo` on the same terminal.
        around_progress_line(|| self.inner.write_all(line.as_bytes()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The progress line a terminal shows now, if any (`cli::output::ProgressPrinter` draws it). The text log (`telemetry`) writes its lines to the same
/// terminal: it clears this line first and draws it again after, so a log line never lands on the progress line
/// and the progress line is never lost. One lock orders the two writers.
static PROGRESS_LINE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Write a whole log line with `write`, around the progress line a terminal shows (see [`PROGRESS_LINE`]).
pub fn around_progress_line(write: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    let shown = PROGRESS_LINE.lock().unwrap_or_else(|e| e.into_inner());
    around(shown.as_deref(), &mut std::io::stdout().lock(), write)
}

/// Clear `shown` from the terminal `out`, `write` the log line, draw `shown` again.
fn around(
    shown: Option<&str>,
    out: &mut impl Write,
    write: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let Some(line) = shown else {
        return write();
    };
    let _ = write!(out, "\r\x1b[2K");
    let _ = out.flush();
    let result = write();
    let _ = write!(out, "{line}");
    let _ = out.flush();
    result
}

/// The progress line's state, locked: `ProgressPrinter` writes the terminal while holding it, so a log line is
/// never written in the middle of a redraw.
pub fn progress_line() -> std::sync::MutexGuard<'static, Option<String>> {
    PROGRESS_LINE.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(level: &str, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(directives(level)))
            .with_ansi(false)
            .with_writer(OneLine::new(move || sink.clone(), false))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_bare_debug_level_never_turns_on_the_sdks_debug_logs() {
        let text = logged("debug", || {
            tracing::debug!(target: "stacksetd::controller", "our debug line");
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "signed request: Authorization=AWS4");
            tracing::trace!(target: "hyper_util::client", "connection details");
            tracing::warn!(target: "aws_config::imds", "a warning still shows");
        });
        assert!(text.contains("our debug line"), "{text}");
        assert!(
            !text.contains("signed request") && !text.contains("connection details"),
            "{text}"
        );
        assert!(text.contains("a warning still shows"), "{text}");
        let text = logged("stacksetd=debug,aws_smithy_runtime=trace", || {
            tracing::trace!(target: "aws_smithy_runtime::client", "asked for by name");
        });
        assert!(
            text.contains("asked for by name"),
            "a full filter is taken as written: {text}"
        );
        assert_eq!(directives("info"), "warn,stacksetd=info");
    }

    #[test]
    fn a_value_cannot_forge_a_log_line_or_hide_text() {
        let text = logged("info", || {
            let error = "denied\n2026-12-01T00:00:00Z  INFO stacksetd: converged\r\u{202e}txet";
            // Display (`%`), as errors are logged: Debug would quote and escape by itself.
            tracing::info!(target: "stacksetd::x", error = %error, "pass failed");
        });
        assert_eq!(text.lines().count(), 1, "one event, one line: {text:?}");
        assert!(
            text.contains("\\u{000a}") && text.contains("\\u{202e}") && !text.contains('\r'),
            "{text:?}"
        );
    }

    /// A log line written while a progress line shows: the progress line is cleared first (the log starts at
    /// column 0, not after it) and drawn again after, on a terminal where both streams meet.
    #[test]
    fn a_log_line_clears_the_progress_line_and_redraws_it() {
        let terminal = std::cell::RefCell::new(Vec::<u8>::new());
        struct Shared<'a>(&'a std::cell::RefCell<Vec<u8>>);
        impl Write for Shared<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let progress = "aimably: waiting for CREATE op-1: 3/40 instance(s) done";
        around(Some(progress), &mut Shared(&terminal), || {
            Shared(&terminal).write_all(b"WARN something happened\n")
        })
        .unwrap();
        let text = String::from_utf8(terminal.into_inner()).unwrap();
        assert_eq!(
            text,
            format!("\r\x1b[2KWARN something happened\n{progress}")
        );

        let terminal = std::cell::RefCell::new(Vec::<u8>::new());
        around(None, &mut Shared(&terminal), || {
            Shared(&terminal).write_all(b"INFO plain\n")
        })
        .unwrap();
        assert_eq!(
            terminal.into_inner(),
            b"INFO plain\n",
            "no progress line: the log line alone"
        );
    }
}
