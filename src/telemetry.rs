//! Logging setup: tracing to stderr, text for people (and Tilt's log pane) or JSON for tools,
//! filtered by `RUST_LOG` (default `meshloop=info`). It owns no other state.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests that drive the CLI in-process can call it freely.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("meshloop=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.compact().without_time().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
