//! Logging: tracing to stderr, as text for people or JSON for log pipelines. Template bodies and credentials
//! are never logged at info level.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Install the global subscriber. `RUST_LOG`, when set, wins over the configured level.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.with_ansi(use_color()).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}

fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
