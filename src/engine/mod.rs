//! The dev loop: one task owns the desired state and runs every sync.
//!
//! Inputs arrive on bounded channels and are handled one at a time: file batches from
//! [`crate::watch`], commands from the HTTP API, and events from watches on the cluster (the
//! owned objects, for drift, and the app's Deployments, for rollouts). Because the engine
//! awaits each sync before reading the next input, syncs never overlap, and whatever arrives
//! during a sync is handled by exactly one sync after it.
//!
//! When the API server does not answer, the engine keeps the latest files, reports
//! "cluster unreachable", and retries with capped exponential backoff; the first sync that
//! gets through applies the files as they are then, so no save is lost.
//!
//! It publishes a read-only [`Status`] snapshot through a `watch` channel; the HTTP server
//! reads it and never touches the engine's state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::analyze::findings::{Finding, Severity};
use crate::cluster::{Cluster, owned_selector};
use crate::config::{Config, DriftPolicy, GroupKind};
use crate::events::{self, Events};
use crate::manifest::{LoadError, ObjectKey};
use crate::sources::SourceSet;
use crate::sync::{self, Desired, Drift, Outcome, SyncOptions, SyncReport};
use crate::telemetry::{Metrics, OutcomeLabel, ResultLabel};
mod verifier;
use crate::watch::Batch;
pub use verifier::{Verifier, VerifyQueue};

/// Commands from the HTTP API. At most this many wait; a full queue answers "busy".
pub const COMMAND_QUEUE: usize = 32;
/// Cluster events waiting for the engine. Watch tasks wait when it is full (the watch
/// stream then buffers in the API server's connection), which is harmless backpressure.
const CLUSTER_EVENT_QUEUE: usize = 256;
/// First retry after an unreachable cluster, doubling up to the cap: quick recovery when the
/// API server restarts, and no busy loop when it is gone for good.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// An app change whose rollout has not completed by then is dropped with a warning (Tilt may
/// have live-updated without a rollout, or the build failed).
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);
/// How many drift events /status keeps.
const DRIFT_HISTORY: usize = 20;

/// What started a sync, for logs and /status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Start,
    Files,
    Request,
    Drift,
    Retry,
}

pub enum Command {
    /// Re-apply now; the reply gets the summary of the sync that ran.
    Sync {
        reply: Option<oneshot::Sender<SyncSummary>>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    pub trigger: Trigger,
    pub finished_at: String,
    pub ok: bool,
    #[serde(flatten)]
    pub report: SyncReport,
    pub load_errors: Vec<LoadError>,
    /// From the first file event to the end of this sync, for file-triggered syncs.
    pub save_to_applied_ms: Option<f64>,
    /// What analysis found in the desired state of this sync.
    pub findings: Vec<Finding>,
    /// Objects not applied because of error findings (`block_on: error`).
    pub held_back: Vec<String>,
    /// What reading the sources skipped (a symlink loop, a FIFO, a device), one line each.
    pub source_notes: Vec<String>,
}

/// The `findings` event: what analysis and loading found in a sync's desired state.
#[derive(Debug, PartialEq, Serialize)]
pub struct FindingsEvent<'a> {
    pub findings: &'a [Finding],
    pub load_errors: &'a [LoadError],
    pub held_back: &'a [String],
}

impl<'a> FindingsEvent<'a> {
    fn of(s: &'a SyncSummary) -> FindingsEvent<'a> {
        FindingsEvent {
            findings: &s.findings,
            load_errors: &s.load_errors,
            held_back: &s.held_back,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterStatus {
    pub server: String,
    /// The kubeconfig context, when one is named.
    pub context: Option<String>,
    pub reachable: Option<bool>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftEvent {
    pub at: String,
    pub object: String,
    pub drift: Drift,
    pub restored: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RolloutStatus {
    /// An app source changed and the rollout it causes has not completed yet.
    pub pending: bool,
    pub pending_since: Option<String>,
    /// The Deployments considered the app's.
    pub deployments: Vec<DeploymentState>,
    pub completed: u64,
    pub last_completed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentState {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub replicas: i32,
    pub updated: i32,
    pub available: i32,
    pub ready: i32,
    pub complete: bool,
}

/// The read-only snapshot behind `GET /status` and `/readyz`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub instance: String,
    pub namespace: String,
    pub sources: Vec<String>,
    pub watching: bool,
    pub cluster: ClusterStatus,
    pub syncing: bool,
    pub syncs: u64,
    pub last_sync: Option<SyncSummary>,
    pub drift: VecDeque<DriftEvent>,
    pub rollout: RolloutStatus,
    /// Verification runs requested by completed rollouts and changing syncs.
    pub verifications_requested: u64,
    /// A gateway verification is running.
    pub verifying: bool,
    /// Verification runs finished.
    pub verifications: u64,
    /// The last gateway verification.
    pub verification: Option<crate::verify::Report>,
    /// `/readyz` requires the last verification to pass (`verify.required_for_ready`).
    pub verification_required: bool,
    /// What the last sync read, for `GET /explain` (not part of the JSON).
    #[serde(skip)]
    pub inputs: std::sync::Arc<ModelInputs>,
}

/// The objects of the last sync, enough to rebuild the routing model for `explain`.
#[derive(Debug, Default)]
pub struct ModelInputs {
    pub objects: Vec<crate::manifest::SourceObject>,
    pub others: Vec<crate::manifest::SourceObject>,
    pub ingress: crate::config::Ingress,
}

impl Status {
    /// Why the daemon is not ready, or `None` when it is.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.cluster.reachable == Some(false) {
            return Some(format!(
                "cluster unreachable: {}",
                self.cluster.error.as_deref().unwrap_or("no answer")
            ));
        }
        let Some(last) = &self.last_sync else {
            return Some("no sync has finished yet".into());
        };
        if let Some(e) = last.load_errors.first() {
            return Some(format!("last sync had errors: {e}"));
        }
        if let Some(f) = last.findings.iter().find(|f| f.severity == Severity::Error) {
            return Some(format!(
                "analysis found errors: {}:{}:{}: error[{}]: {}",
                f.file, f.line, f.col, f.code, f.message
            ));
        }
        if !last.ok {
            let why = last
                .report
                .errors
                .first()
                .cloned()
                .or_else(|| {
                    last.report.objects.iter().find_map(|o| match &o.outcome {
                        Outcome::Failed { message } | Outcome::Conflicted { message } => {
                            Some(format!("{}: {message}", o.key))
                        }
                        _ => None,
                    })
                })
                .unwrap_or_else(|| "failed".into());
            return Some(format!("last sync failed: {why}"));
        }
        if self.verification_required {
            return match &self.verification {
                None => Some("the gateway has not been verified yet".into()),
                Some(r) if !r.ok => Some(r.summary()),
                Some(_) => None,
            };
        }
        None
    }
}

/// The handles the rest of the daemon gets.
#[derive(Clone)]
pub struct Handles {
    pub status: watch::Receiver<Status>,
    pub commands: mpsc::Sender<Command>,
    pub metrics: Metrics,
    /// Asks the verifier for a gateway verification.
    pub verify: Arc<VerifyQueue>,
    /// What `GET /events` streams.
    pub events: Events,
}

enum ClusterEvent {
    /// An owned object changed or went away on the cluster.
    Owned {
        key: ObjectKey,
        resource_version: Option<String>,
        uid: Option<String>,
        deleted: bool,
    },
    Deployment(DeploymentState),
    DeploymentGone {
        namespace: String,
        name: String,
    },
}

pub struct Engine {
    sources: SourceSet,
    cluster: Cluster,
    config: Config,
    namespace: String,
    metrics: Metrics,
    status: watch::Sender<Status>,
    events: Events,
    commands: mpsc::Receiver<Command>,
    /// What the last sync left applied.
    applied: BTreeSet<ObjectKey>,
    /// resourceVersions our own writes produced and uids of what we pruned: their watch
    /// events are ours, not drift.
    own_versions: BTreeSet<String>,
    own_deletes: BTreeSet<String>,
    deployments: BTreeMap<(String, String), DeploymentState>,
    rollout: Option<PendingRollout>,
    /// A sync that listed every owned kind has succeeded.
    full_sync_done: bool,
    verify: Arc<VerifyQueue>,
    /// A sync has succeeded and asked for the first verification.
    verified_once: bool,
    /// Source notes already logged, so each is said once.
    notes_said: BTreeSet<String>,
}

struct PendingRollout {
    since: Instant,
    since_text: String,
    baseline: BTreeMap<(String, String), i64>,
}

impl Engine {
    pub fn new(
        config: Config,
        cluster: Cluster,
        namespace: String,
        metrics: Metrics,
    ) -> (Engine, Handles, Verifier) {
        let (status_tx, status_rx) = watch::channel(Status {
            instance: config.instance.clone(),
            namespace: namespace.clone(),
            sources: config
                .sources
                .iter()
                .map(|s| format!("{}", s).replace(&format!("{}/", config.base.display()), ""))
                .collect(),
            cluster: ClusterStatus {
                server: cluster.server.clone(),
                context: cluster.context.clone(),
                ..ClusterStatus::default()
            },
            verification_required: config.verify.required_for_ready,
            ..Status::default()
        });
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let mut sources = SourceSet::new(config.clone(), namespace.clone()).keep_others();
        sources.load_all();
        let verify = Arc::new(VerifyQueue::default());
        let events = Events::new();
        let verifier = Verifier {
            queue: verify.clone(),
            status: status_tx.clone(),
            events: events.clone(),
            cluster: cluster.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
        };
        let engine = Engine {
            verify: verify.clone(),
            verified_once: false,
            sources,
            cluster,
            config,
            namespace,
            metrics: metrics.clone(),
            status: status_tx,
            events: events.clone(),
            commands: cmd_rx,
            applied: BTreeSet::new(),
            own_versions: BTreeSet::new(),
            own_deletes: BTreeSet::new(),
            deployments: BTreeMap::new(),
            rollout: None,
            full_sync_done: false,
            notes_said: BTreeSet::new(),
        };
        let handles = Handles {
            status: status_rx,
            commands: cmd_tx,
            metrics,
            verify,
            events,
        };
        (engine, handles, verifier)
    }

    /// Marks the file watches as registered (shown in /status as `watching`).
    pub fn set_watching(&self, on: bool) {
        self.status.send_modify(|s| s.watching = on);
    }

    /// Runs until `shutdown` is cancelled. File batches come from `batches`, a bounded channel
    /// fed by the watcher task.
    pub async fn run(mut self, mut batches: mpsc::Receiver<Batch>, shutdown: CancellationToken) {
        let (events_tx, mut events) = mpsc::channel::<ClusterEvent>(CLUSTER_EVENT_QUEUE);
        let mut watches: JoinSet<()> = JoinSet::new();
        let mut watches_started = false;
        let mut retry = Backoff::default();
        let mut retry_at: Option<Instant> = None;
        let mut next: Option<(Trigger, Option<Instant>)> = Some((Trigger::Start, None));
        let mut replies: Vec<oneshot::Sender<SyncSummary>> = Vec::new();

        loop {
            if let Some((trigger, first_event)) = next.take() {
                let summary = tokio::select! {
                    s = self.sync(trigger, first_event) => s,
                    // Abandon an in-flight sync on shutdown: dropping it drops its requests.
                    _ = shutdown.cancelled() => break,
                };
                retry_at = retry.after(summary.report.unreachable);
                if !summary.report.unreachable && !watches_started {
                    self.start_watches(&mut watches, events_tx.clone()).await;
                    watches_started = true;
                }
                for r in replies.drain(..) {
                    let _ = r.send(summary.clone());
                }
                continue;
            }
            let rollout_deadline = self.rollout.as_ref().map(|r| r.since + ROLLOUT_TIMEOUT);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = batches.recv() => match batch {
                    Some(b) => {
                        if let Some(first) = self.take_batches(b, &mut batches) {
                            next = Some((Trigger::Files, Some(first)));
                        }
                    }
                    None => {
                        warn!("file watcher stopped");
                        break;
                    }
                },
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Sync { reply }) => {
                        replies.extend(reply);
                        next = Some((Trigger::Request, None));
                    }
                    None => break,
                },
                ev = events.recv() => {
                    if let Some(ev) = ev
                        && self.on_cluster_event(ev)
                    {
                        next = Some((Trigger::Drift, None));
                    }
                },
                _ = sleep_until_opt(retry_at) => {
                    retry_at = None;
                    next = Some((Trigger::Retry, None));
                },
                _ = sleep_until_opt(rollout_deadline) => {
                    warn!("no rollout completed within {} s of the app change; no longer waiting", ROLLOUT_TIMEOUT.as_secs());
                    self.rollout = None;
                    self.publish_rollout();
                },
            }
        }
        watches.shutdown().await;
        debug!("engine stopped");
    }

    /// Takes a batch and every other batch already waiting: they join one sync. Returns the
    /// earliest first event of those that may have changed the desired state.
    fn take_batches(&mut self, b: Batch, batches: &mut mpsc::Receiver<Batch>) -> Option<Instant> {
        let mut first = self.take_batch(b);
        while let Ok(more) = batches.try_recv() {
            first = match (first, self.take_batch(more)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        first
    }

    /// Reloads what a batch touched. Returns the time of its first event when the desired
    /// state may have changed (so a sync is due).
    fn take_batch(&mut self, b: Batch) -> Option<Instant> {
        let app_changed = b
            .paths
            .iter()
            .any(|p| self.config.watch.iter().any(|w| p.starts_with(w)));
        if app_changed {
            self.start_rollout_wait();
        }
        let source_paths: Vec<PathBuf> = b
            .paths
            .into_iter()
            .filter(|p| self.config.sources.iter().any(|s| p.starts_with(s.path()) || matches!(s, crate::config::Source::Chart { values, .. } if values.contains(p))))
            .collect();
        if b.rescan {
            self.sources.load_all();
            return Some(b.first_event);
        }
        if source_paths.is_empty() {
            return None;
        }
        self.sources.reload(&source_paths);
        Some(b.first_event)
    }

    async fn sync(&mut self, trigger: Trigger, first_event: Option<Instant>) -> SyncSummary {
        let span = info_span!("sync", trigger = ?trigger);
        async {
            self.status.send_modify(|s| s.syncing = true);
            let (mut desired, load_errors) = self.sources.desired();
            for e in &load_errors {
                warn!("{e}");
            }
            let source_notes = self.new_source_notes();
            let others = self.sources.others();
            let findings = crate::analyze::analyze_for_sync(
                &desired.objects,
                &others,
                None,
                &self.config.ingress,
            );
            let held_back = self.hold_back(&findings, &mut desired);
            let inputs = Arc::new(ModelInputs {
                objects: desired.objects.clone(),
                others,
                ingress: self.config.ingress.clone(),
            });
            let report = self.apply(trigger, &desired).await;
            let save_to_applied = first_event.map(|t| t.elapsed());
            self.record(&report, &desired);
            let ok = report.ok()
                && load_errors.is_empty()
                && !findings.iter().any(|f| f.severity == Severity::Error);
            let summary = SyncSummary {
                findings,
                held_back,
                trigger,
                finished_at: crate::telemetry::now_text(),
                ok,
                save_to_applied_ms: save_to_applied.map(|d| d.as_secs_f64() * 1000.0),
                report,
                load_errors,
                source_notes,
            };
            self.log_summary(&summary);
            self.observe(&summary, save_to_applied);
            self.publish(&summary, inputs);
            summary
        }
        .instrument(span)
        .await
    }

    /// The sources' notes (skipped files, symlink loops), each logged once while it lasts.
    fn new_source_notes(&mut self) -> Vec<String> {
        let notes = self.sources.notes();
        for n in notes.iter().filter(|n| !self.notes_said.contains(*n)) {
            info!("{n}");
        }
        self.notes_said = notes.iter().cloned().collect();
        notes
    }

    /// Logs the findings; an error finding holds back the object it concerns (neither applied
    /// nor pruned until it is fixed) when `block_on` says so. Returns the objects held back.
    fn hold_back(&self, findings: &[Finding], desired: &mut Desired) -> Vec<String> {
        let mut held_back = Vec::new();
        for f in findings {
            let line = format!(
                "{}:{}:{}: {}[{}]: {}",
                f.file, f.line, f.col, f.severity, f.code, f.message
            );
            match f.severity {
                Severity::Error | Severity::Warning => warn!(code = f.code, "{line}"),
                Severity::Info => debug!(code = f.code, "{line}"),
            }
            if f.severity == Severity::Error
                && self.config.block_on == crate::config::BlockOn::Error
                && let Some(k) = &f.key
                && desired.held.insert(k.clone())
            {
                held_back.push(k.to_string());
            }
        }
        held_back
    }

    /// Server-side applies what is desired; a save or a drift lists only the kinds known
    /// once a full sync has succeeded.
    async fn apply(&mut self, trigger: Trigger, desired: &Desired) -> SyncReport {
        let mut opts = SyncOptions::new(&self.config.instance, self.config.owned_kinds.clone());
        opts.prune = self.config.prune;
        opts.force_conflicts = self.config.force_conflicts;
        opts.previously_applied = self.applied.clone();
        opts.restore_drift = self.config.drift == DriftPolicy::Restore;
        opts.only_known_kinds =
            matches!(trigger, Trigger::Files | Trigger::Drift) && self.full_sync_done;
        opts.cached_list = opts.only_known_kinds;
        let report = sync::sync(&self.cluster, desired, &opts).await;
        if !opts.only_known_kinds && !report.unreachable && report.errors.is_empty() {
            self.full_sync_done = true;
        }
        report
    }

    /// Puts the sync into the status, publishes it (and the findings when they changed) to
    /// the page's clients, and asks for a verification when the routing changed.
    fn publish(&mut self, summary: &SyncSummary, inputs: Arc<ModelInputs>) {
        let findings_changed = self
            .status
            .borrow()
            .last_sync
            .as_ref()
            .is_none_or(|last| FindingsEvent::of(last) != FindingsEvent::of(summary));
        self.status.send_modify(|s| {
            s.syncing = false;
            s.syncs += 1;
            s.cluster.reachable = Some(!summary.report.unreachable);
            s.cluster.error = summary
                .report
                .unreachable
                .then(|| summary.report.errors.first().cloned().unwrap_or_default());
            s.last_sync = Some(summary.clone());
            s.inputs = inputs;
        });
        if findings_changed {
            self.events
                .publish(events::Kind::Findings, &FindingsEvent::of(summary));
        }
        self.events.publish(events::Kind::Sync, summary);
        if summary.ok && summary.report.counts.writes > 0 {
            self.verified_once = true;
            self.request_verification("routing changed");
        } else if summary.ok && !self.verified_once {
            self.verified_once = true;
            self.request_verification("start");
        }
    }

    /// Remembers what this sync left applied and which watch events it caused.
    fn record(&mut self, report: &SyncReport, desired: &sync::Desired) {
        if report.unreachable {
            return;
        }
        let mut applied: BTreeSet<ObjectKey> = BTreeSet::new();
        for o in &report.objects {
            match o.outcome {
                Outcome::Created | Outcome::Changed { .. } | Outcome::Unchanged => {
                    applied.insert(o.key.clone());
                }
                // Kept as it was: still ours, still expected to be there.
                Outcome::Failed { .. } | Outcome::Conflicted { .. } | Outcome::Drifted => {
                    if self.applied.contains(&o.key) {
                        applied.insert(o.key.clone());
                    }
                }
                Outcome::Pruned => {}
            }
            if let Some(rv) = &o.resource_version {
                self.own_versions.insert(rv.clone());
            }
            if let Some(uid) = &o.uid {
                self.own_deletes.insert(uid.clone());
            }
        }
        // Held duplicates stay expected too.
        for k in &desired.held {
            if self.applied.contains(k) {
                applied.insert(k.clone());
            }
        }
        self.applied = applied;
        // Bounded memory. Which entries go does not matter much: forgetting one of our own
        // versions costs at most one extra sync with no writes.
        while self.own_versions.len() > 4096 {
            self.own_versions.pop_first();
        }
        while self.own_deletes.len() > 1024 {
            self.own_deletes.pop_first();
        }
    }

    fn log_summary(&self, s: &SyncSummary) {
        let r = &s.report;
        let c = r.counts;
        r.objects.iter().for_each(log_object);
        for e in &r.errors {
            warn!("{e}");
        }
        if r.unreachable {
            return;
        }
        if let Some(b) = r.prune_blocked.first() {
            warn!("prune skipped while sources have errors ({b})");
        }
        let mut parts = c.phrases();
        let errors = s
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let warnings = s
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count();
        if errors + warnings > 0 {
            parts.push(format!(
                "findings: {errors} error(s), {warnings} warning(s)"
            ));
        }
        if !s.held_back.is_empty() {
            parts.push(format!("held back: {}", s.held_back.join(", ")));
        }
        let latency = s
            .save_to_applied_ms
            .map(|ms| format!(", {ms:.0} ms from save"))
            .unwrap_or_default();
        let line = format!(
            "synced {} objects: {} ({} ms{latency})",
            r.objects.len(),
            if parts.is_empty() {
                "nothing to do".to_string()
            } else {
                parts.join(", ")
            },
            r.duration.as_millis(),
        );
        if s.ok {
            info!("{line}");
        } else {
            warn!("{line}");
        }
    }

    fn observe(&self, s: &SyncSummary, save_to_applied: Option<Duration>) {
        let m = &self.metrics;
        let result = if s.report.unreachable {
            "unreachable"
        } else if s.ok {
            "ok"
        } else {
            "failed"
        };
        m.syncs.get_or_create(&ResultLabel { result }).inc();
        m.sync_seconds.observe(s.report.duration.as_secs_f64());
        let c = s.report.counts;
        for (n, outcome) in [
            (c.created, "created"),
            (c.changed, "changed"),
            (c.unchanged, "unchanged"),
            (c.pruned, "pruned"),
            (c.failed, "failed"),
            (c.conflicted, "conflict"),
            (c.drifted, "drifted"),
        ] {
            m.objects
                .get_or_create(&OutcomeLabel { outcome })
                .inc_by(n as u64);
        }
        let drifted = s
            .report
            .objects
            .iter()
            .filter(|o| o.drift.is_some())
            .count();
        m.drift.inc_by(drifted as u64);
        if let (Some(d), false) = (save_to_applied, s.report.unreachable) {
            m.save_to_applied_seconds.observe(d.as_secs_f64());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        m.last_sync_timestamp.set(now);
        if drifted > 0 {
            self.status.send_modify(|st| {
                for o in s.report.objects.iter().filter(|o| o.drift.is_some()) {
                    let event = DriftEvent {
                        at: s.finished_at.clone(),
                        object: o.key.to_string(),
                        drift: o.drift.unwrap_or(Drift::Edited),
                        restored: o.outcome != Outcome::Drifted,
                    };
                    self.events.publish(events::Kind::Drift, &event);
                    st.drift.push_back(event);
                    while st.drift.len() > DRIFT_HISTORY {
                        st.drift.pop_front();
                    }
                }
            });
        }
    }

    /// Starts the watches on the owned kinds (for drift) and on Deployments (for rollouts).
    async fn start_watches(&self, set: &mut JoinSet<()>, tx: mpsc::Sender<ClusterEvent>) {
        for gk in &self.config.owned_kinds {
            let Ok((ar, _)) = self.cluster.resolve(gk, None).await else {
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(self.cluster.client.clone(), &ar);
            let cfg = watcher::Config::default().labels(&owned_selector(&self.config.instance));
            let span = info_span!("watch_owned", kind = %gk);
            set.spawn(watch_owned(api, cfg, gk.clone(), tx.clone()).instrument(span));
        }
        let api: Api<Deployment> = Api::namespaced(self.cluster.client.clone(), &self.namespace);
        set.spawn(watch_deployments(api, tx).instrument(info_span!("watch_deployments")));
    }

    /// Handles one cluster event; true when a sync is due (drift).
    fn on_cluster_event(&mut self, ev: ClusterEvent) -> bool {
        match ev {
            ClusterEvent::Owned {
                key,
                resource_version,
                uid,
                deleted,
            } => {
                if deleted {
                    if uid.as_ref().is_some_and(|u| self.own_deletes.contains(u)) {
                        return false;
                    }
                } else if resource_version
                    .as_ref()
                    .is_some_and(|rv| self.own_versions.contains(rv))
                {
                    return false;
                }
                // Someone else touched an object of ours (or one we no longer want, which the
                // next sync prunes anyway). The sync decides whether it is really drift.
                debug!(object = %key, deleted, "owned object changed on the cluster");
                true
            }
            ClusterEvent::Deployment(d) => {
                let key = (d.namespace.clone(), d.name.clone());
                let became_ready =
                    d.complete && self.deployments.get(&key).is_some_and(|old| !old.complete);
                self.deployments.insert(key.clone(), d);
                if self.rollout.is_some() {
                    self.check_rollout();
                } else {
                    self.publish_rollout();
                    // A Deployment of the app became available without a source change
                    // meshloop saw (the first deploy by Tilt, a scale-up): verify again.
                    if became_ready
                        && self.verified_once
                        && self
                            .app_deployments()
                            .iter()
                            .any(|a| (&a.namespace, &a.name) == (&key.0, &key.1))
                    {
                        info!(deployment = %key.1, "deployment {}/{} is available", key.0, key.1);
                        self.request_verification("deployment available");
                    }
                }
                false
            }
            ClusterEvent::DeploymentGone { namespace, name } => {
                self.deployments.remove(&(namespace, name));
                self.check_rollout();
                false
            }
        }
    }

    /// The app's Deployments: those defined in the sources (rendered chart or YAML), or every
    /// Deployment in the namespace when the sources define none.
    fn app_deployments(&self) -> Vec<&DeploymentState> {
        let named: BTreeSet<(&str, &str)> = self
            .sources
            .others_iter()
            .filter(|o| o.key.kind == "Deployment")
            .map(|o| (o.key.namespace.as_str(), o.key.name.as_str()))
            .collect();
        self.deployments
            .iter()
            .filter(|((ns, name), _)| {
                named.is_empty() || named.contains(&(ns.as_str(), name.as_str()))
            })
            .map(|(_, d)| d)
            .collect()
    }

    fn start_rollout_wait(&mut self) {
        let baseline = self
            .app_deployments()
            .into_iter()
            .map(|d| ((d.namespace.clone(), d.name.clone()), d.generation))
            .collect();
        if self.rollout.is_none() {
            info!("app source changed; waiting for the rollout");
        }
        self.rollout = Some(PendingRollout {
            since: Instant::now(),
            since_text: crate::telemetry::now_text(),
            baseline,
        });
        self.publish_rollout();
    }

    /// A rollout is complete when a Deployment of the app has a newer generation than at the
    /// change, and every Deployment of the app has caught up: observedGeneration, all
    /// replicas updated and available.
    fn check_rollout(&mut self) {
        if let Some(p) = &self.rollout {
            let deps = self.app_deployments();
            let moved = deps.iter().any(|d| {
                p.baseline
                    .get(&(d.namespace.clone(), d.name.clone()))
                    .is_none_or(|g| d.generation > *g)
            });
            if moved && !deps.is_empty() && deps.iter().all(|d| d.complete) {
                let names: Vec<String> = deps.iter().map(|d| d.name.clone()).collect();
                info!(deployments = %names.join(","), "rollout complete: {}", names.join(", "));
                self.rollout = None;
                self.metrics.rollouts.inc();
                self.status.send_modify(|s| {
                    s.rollout.completed += 1;
                    s.rollout.last_completed_at = Some(crate::telemetry::now_text());
                });
                self.request_verification("rollout complete");
            }
        }
        self.publish_rollout();
    }

    fn publish_rollout(&self) {
        let deps: Vec<DeploymentState> = self.app_deployments().into_iter().cloned().collect();
        let pending = self.rollout.as_ref().map(|p| p.since_text.clone());
        self.status.send_modify(|s| {
            s.rollout.pending = pending.is_some();
            s.rollout.pending_since = pending;
            s.rollout.deployments = deps;
        });
    }

    /// Asks the verifier for a gateway verification (coalesced with any already waiting).
    fn request_verification(&self, why: &str) {
        debug!(reason = why, "verification requested");
        self.status.send_modify(|s| s.verifications_requested += 1);
        self.verify.request(why, None, false);
    }
}

/// The retry delay while the cluster is unreachable: doubling from [`BACKOFF_START`] up to
/// [`BACKOFF_CAP`], back to the start once a sync reaches it.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(BACKOFF_START)
    }
}

impl Backoff {
    /// When to retry after a sync: `None` when it reached the cluster.
    fn after(&mut self, unreachable: bool) -> Option<Instant> {
        if !unreachable {
            self.0 = BACKOFF_START;
            return None;
        }
        let at = Instant::now() + self.0;
        info!(
            retry_in_ms = self.0.as_millis() as u64,
            "cluster unreachable; will retry"
        );
        self.0 = (self.0 * 2).min(BACKOFF_CAP);
        Some(at)
    }
}

/// Sends a [`ClusterEvent::Owned`] for each change to an owned object of kind `gk` after the
/// initial listing (which is the state the first sync already saw).
async fn watch_owned(
    api: Api<DynamicObject>,
    cfg: watcher::Config,
    gk: GroupKind,
    tx: mpsc::Sender<ClusterEvent>,
) {
    let mut stream = std::pin::pin!(watcher(api, cfg));
    let mut initialised = false;
    while let Some(ev) = stream.next().await {
        let (obj, deleted) = match ev {
            Ok(watcher::Event::InitDone) => {
                initialised = true;
                continue;
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
            Ok(watcher::Event::Apply(o)) => (o, false),
            Ok(watcher::Event::Delete(o)) => (o, true),
            Err(e) => {
                debug!(error = %e, "watch interrupted; it resumes by itself");
                continue;
            }
        };
        if !initialised {
            continue;
        }
        let key = ObjectKey {
            group: gk.group.clone(),
            kind: gk.kind.clone(),
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
        };
        let ev = ClusterEvent::Owned {
            key,
            resource_version: obj.metadata.resource_version.clone(),
            uid: obj.metadata.uid.clone(),
            deleted,
        };
        if tx.send(ev).await.is_err() {
            break;
        }
    }
}

/// Sends the state of each Deployment of the namespace as it changes, for the rollouts.
async fn watch_deployments(api: Api<Deployment>, tx: mpsc::Sender<ClusterEvent>) {
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => {
                ClusterEvent::Deployment(deployment_state(&d))
            }
            Ok(watcher::Event::Delete(d)) => ClusterEvent::DeploymentGone {
                namespace: d.metadata.namespace.clone().unwrap_or_default(),
                name: d.metadata.name.clone().unwrap_or_default(),
            },
            Ok(_) => continue,
            Err(e) => {
                debug!(error = %e, "deployment watch interrupted; it resumes by itself");
                continue;
            }
        };
        if tx.send(ev).await.is_err() {
            break;
        }
    }
}

/// One line per object that did something or failed, as the sync left it.
fn log_object(o: &sync::ObjectResult) {
    let (kind, name) = (&o.key.kind, &o.key.name);
    match (&o.outcome, o.drift) {
        (Outcome::Failed { message }, _) => {
            warn!(%kind, %name, "{} failed: {message}", o.key)
        }
        (Outcome::Conflicted { message }, _) => {
            warn!(%kind, %name, "{} conflict: {message}", o.key)
        }
        (Outcome::Drifted, Some(d)) => {
            warn!(%kind, %name, "drift: {} was {} by someone else (drift: report, left as is)", o.key, drift_word(d))
        }
        (_, Some(d)) => {
            warn!(%kind, %name, "drift: {} was {} by someone else; restored", o.key, drift_word(d))
        }
        (Outcome::Pruned, _) => info!(%kind, %name, "pruned {}", o.key),
        (Outcome::Created, _) => info!(%kind, %name, "created {}", o.key),
        (Outcome::Changed { fields }, _) => {
            info!(%kind, %name, "changed {}: {}", o.key, fields.join(", "))
        }
        _ => {}
    }
}

fn drift_word(d: Drift) -> &'static str {
    match d {
        Drift::Edited => "edited",
        Drift::Deleted => "deleted",
    }
}

fn deployment_state(d: &Deployment) -> DeploymentState {
    let spec_replicas = d.spec.replicas.unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = st.observed_generation.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    DeploymentState {
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        generation,
        observed_generation: observed,
        replicas: spec_replicas,
        updated,
        available,
        ready: st.ready_replicas.unwrap_or(0),
        // As `kubectl rollout status` decides: the controller saw the latest spec, every
        // replica runs it, no old replica is left, and all are available.
        complete: observed >= generation
            && updated >= spec_replicas
            && total <= updated
            && available >= updated,
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        total: i32,
        available: i32,
    ) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "goapp-v1", "namespace": "dev", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total, "availableReplicas": available}
        }))
        .unwrap()
    }

    #[test]
    fn rollout_completion_follows_kubectl_rollout_status() {
        assert!(deployment_state(&dep(2, 2, 1, 1, 1, 1)).complete);
        assert!(
            !deployment_state(&dep(2, 1, 1, 1, 1, 1)).complete,
            "controller behind"
        );
        assert!(
            !deployment_state(&dep(2, 2, 2, 1, 2, 2)).complete,
            "not all updated"
        );
        assert!(
            !deployment_state(&dep(2, 2, 1, 1, 2, 1)).complete,
            "old replica left"
        );
        assert!(
            !deployment_state(&dep(2, 2, 1, 1, 1, 0)).complete,
            "not available"
        );
    }
}
