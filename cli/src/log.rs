//! The log subscriber: every process of `faasflow` writes its log to standard error, one event
//! per line, with time, level and component (the module that logged), then the event's fields
//! (worker, workflow, version, invocation, function where one exists). `FAASFLOW_LOG` filters
//! as `RUST_LOG` does (`info` when unset, e.g. `FAASFLOW_LOG=faasflow_daemon=debug,warn`);
//! `--log-format json` writes JSON lines instead of text.

use std::cell::RefCell;

use clap::ValueEnum;
use tracing::span::EnteredSpan;
use tracing_subscriber::EnvFilter;

/// The environment variable with the log filter.
pub(crate) const FILTER_VAR: &str = "FAASFLOW_LOG";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One line of text per event: time, level, component, message, fields.
    #[default]
    Plain,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `spans`).
    Json,
}

impl LogFormat {
    /// The value of `--log-format` that selects it.
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        }
    }
}

/// Installs the subscriber for this process. A filter that does not parse is reported once
/// and the default (`info`) is used, so a typo never silences the log.
pub(crate) fn init(format: LogFormat) {
    let (filter, bad) = match std::env::var(FILTER_VAR) {
        Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some((text, e))),
        },
        _ => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(true).try_init(),
    };
    if installed.is_ok()
        && let Some((text, e)) = bad
    {
        tracing::warn!(filter = %text, cause = %e, "{FILTER_VAR} is not a filter; logging at `info`");
    }
}

thread_local! {
    /// The span a thread of a service's runtime stays in (see [`enter_for_thread`]).
    static THREAD_SPAN: RefCell<Option<EnteredSpan>> = const { RefCell::new(None) };
}

/// Enters `span` on this thread until [`leave_for_thread`] (or the thread's end): every event
/// of the thread then carries it.
pub(crate) fn enter_for_thread(span: tracing::Span) {
    THREAD_SPAN.with(|s| *s.borrow_mut() = Some(span.entered()));
}

/// Leaves the span [`enter_for_thread`] entered.
pub(crate) fn leave_for_thread() {
    THREAD_SPAN.with(|s| s.borrow_mut().take());
}
