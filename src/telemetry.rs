//! Logging setup (tracing to stderr, text for people and Tilt's log pane or JSON for tools,
//! filtered by `RUST_LOG`, default `meshloop=info`), the wall clock as /status shows it, and
//! the Prometheus metrics further down.

use tracing_subscriber::EnvFilter;

/// Wall-clock time as RFC 3339, for people reading /status.
pub fn now_text() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Colour for a terminal only, and never with NO_COLOR (https://no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests that drive the CLI in-process can call it freely.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("meshloop=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour_on_stderr());
    let _ = match format {
        LogFormat::Text => builder.compact().without_time().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The daemon's Prometheus metrics (`GET /metrics`). Cheap to clone; every clone updates the
/// same series.
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<prometheus_client::registry::Registry>,
    pub syncs: Family<ResultLabel, Counter>,
    pub sync_seconds: Histogram,
    pub objects: Family<OutcomeLabel, Counter>,
    pub save_to_applied_seconds: Histogram,
    pub last_sync_timestamp: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub drift: Counter,
    pub rollouts: Counter,
    pub verifications: Family<ResultLabel, Counter>,
    /// Clients reading `GET /events` now.
    pub event_clients: Gauge,
}

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = prometheus_client::registry::Registry::with_prefix("meshloop");
        let syncs = Family::<ResultLabel, Counter>::default();
        registry.register(
            "syncs",
            "Syncs run, by result (ok, failed, unreachable)",
            syncs.clone(),
        );
        // 1 ms .. ~16 s: a local sync takes milliseconds, a cluster timeout seconds.
        let sync_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "sync_duration_seconds",
            "Duration of one sync",
            sync_seconds.clone(),
        );
        let objects = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "objects",
            "Objects handled by syncs, by outcome (created, changed, unchanged, pruned, failed, conflict, drifted)",
            objects.clone(),
        );
        let save_to_applied_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "save_to_applied_seconds",
            "From the first file event of a batch to the end of the sync that applied it",
            save_to_applied_seconds.clone(),
        );
        let last_sync_timestamp = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "last_sync_timestamp_seconds",
            "Unix time of the last finished sync",
            last_sync_timestamp.clone(),
        );
        let drift = Counter::default();
        registry.register(
            "drift",
            "Owned objects found edited or deleted by someone else",
            drift.clone(),
        );
        let rollouts = Counter::default();
        registry.register(
            "rollouts_completed",
            "App rollouts seen complete after an app source change",
            rollouts.clone(),
        );
        let verifications = Family::<ResultLabel, Counter>::default();
        registry.register(
            "verifications",
            "Gateway verifications, by result",
            verifications.clone(),
        );
        let event_clients = Gauge::default();
        registry.register(
            "event_clients",
            "Clients reading the live event stream (GET /events)",
            event_clients.clone(),
        );
        Metrics {
            registry: std::sync::Arc::new(registry),
            syncs,
            sync_seconds,
            objects,
            save_to_applied_seconds,
            last_sync_timestamp,
            drift,
            rollouts,
            verifications,
            event_clients,
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
