//! One sync: make the cluster hold exactly the desired objects of one instance.
//!
//! For each owned kind: list what the instance owns (one LIST by label selector), then for
//! each desired object decide whether it would change. An object whose live copy carries our
//! last applied digest and still has every value we set is not sent at all, so a sync with
//! nothing changed makes zero writes. Everything else goes out as a server-side apply with
//! field manager [`FIELD_MANAGER`], in dependency order (Gateways, DestinationRules,
//! ServiceEntries, other kinds, then VirtualServices), concurrently within a phase. Then what
//! the instance owns but no source defines is pruned, but only when every source loaded
//! cleanly: a broken file must never look like a deleted one.
//!
//! This module does not read files (it gets a [`Desired`]) and does not loop or watch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
};
use kube::discovery::Scope;
use serde::Serialize;
use serde_json::Value as J;
use sha2::{Digest, Sha256};

use crate::cluster::{
    ANNOTATION_HASH, ANNOTATION_SOURCE, Cluster, ClusterError, FIELD_MANAGER, LABEL_INSTANCE,
    LABEL_MANAGED_BY, owned_selector, timed,
};
use crate::config::GroupKind;
use crate::manifest::{ObjectKey, SourceObject};

/// Applies in flight at once within one phase. The API server handles far more; this keeps a
/// sync of a thousand objects from opening a thousand streams.
const APPLY_CONCURRENCY: usize = 16;

/// The desired state handed to a sync.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub objects: Vec<SourceObject>,
    /// Why prune must not run (load errors, duplicates); empty when every source loaded cleanly.
    pub blockers: Vec<String>,
    /// Objects defined twice: neither copy is applied, and neither is pruned.
    pub held: BTreeSet<ObjectKey>,
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub instance: String,
    pub owned: Vec<GroupKind>,
    pub prune: bool,
    pub force_conflicts: bool,
    pub dry_run: bool,
    /// What the previous sync left applied; an object from this set missing on the cluster
    /// was deleted by someone else (drift), not never created.
    pub previously_applied: BTreeSet<ObjectKey>,
    /// Put drifted objects back (true) or only report them.
    pub restore_drift: bool,
    /// List only the kinds of `previously_applied` and of the desired objects, not every
    /// owned kind. Right after a full sync nothing else can carry our labels unless another
    /// client put it there; the daemon runs a full sync at start, on request and on retries.
    pub only_known_kinds: bool,
    /// List from the API server's watch cache (`resourceVersion=0`) instead of a consistent
    /// read. A consistent list waits until the cache is known to be as new as etcd, which
    /// right after a write costs tens of milliseconds; the daemon's file-triggered syncs come
    /// at least one batching window after its previous write, by which time the cache has it,
    /// and an edit by someone else the cache has not seen yet arrives as a watch event that
    /// triggers the next sync anyway.
    pub cached_list: bool,
}

impl SyncOptions {
    pub fn new(instance: &str, owned: Vec<GroupKind>) -> SyncOptions {
        SyncOptions {
            instance: instance.to_string(),
            owned,
            prune: true,
            force_conflicts: false,
            dry_run: false,
            previously_applied: BTreeSet::new(),
            restore_drift: true,
            only_known_kinds: false,
            cached_list: false,
        }
    }
}

/// How an object left the state meshloop applied, when someone else changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Drift {
    /// A value meshloop set was changed by another client.
    Edited,
    /// The object was deleted by another client.
    Deleted,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Changed {
        fields: Vec<String>,
    },
    Unchanged,
    Pruned,
    Failed {
        message: String,
    },
    Conflicted {
        message: String,
    },
    /// Drift seen and left alone (`drift: report`).
    Drifted,
}

impl Outcome {
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Changed { .. } => "changed",
            Outcome::Unchanged => "unchanged",
            Outcome::Pruned => "pruned",
            Outcome::Failed { .. } => "failed",
            Outcome::Conflicted { .. } => "conflict",
            Outcome::Drifted => "drifted",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectResult {
    #[serde(flatten)]
    pub key: ObjectKey,
    /// `file:line` of the definition; none for pruned objects.
    pub source: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Set when the object had drifted from what meshloop applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// resourceVersion after our write (or the live one when nothing was sent), and the uid
    /// of what we deleted: the daemon uses them to tell its own watch events from others'.
    #[serde(skip)]
    pub resource_version: Option<String>,
    #[serde(skip)]
    pub uid: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub pruned: usize,
    pub failed: usize,
    pub conflicted: usize,
    pub drifted: usize,
    /// Requests that changed something (applies that were sent, deletes).
    pub writes: usize,
}

impl Counts {
    /// The non-zero counts in words ("2 changed", "1 pruned"), for the log line and the page.
    pub fn phrases(&self) -> Vec<String> {
        [
            (self.created, "created"),
            (self.changed, "changed"),
            (self.unchanged, "unchanged"),
            (self.pruned, "pruned"),
            (self.failed, "failed"),
            (self.conflicted, "conflicted"),
            (self.drifted, "drifted"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, word)| format!("{n} {word}"))
        .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub objects: Vec<ObjectResult>,
    /// Errors that concern a whole kind or the cluster, said once.
    pub errors: Vec<String>,
    /// Why prune did not run, when it was wanted.
    pub prune_blocked: Vec<String>,
    pub counts: Counts,
    #[serde(with = "millis")]
    pub duration: Duration,
    /// The cluster did not answer; nothing was decided.
    pub unreachable: bool,
}

impl SyncReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.counts.failed == 0 && self.counts.conflicted == 0
    }

    fn push(&mut self, key: ObjectKey, source: Option<String>, outcome: Outcome) {
        self.push_result(ObjectResult {
            key,
            source,
            outcome,
            drift: None,
            resource_version: None,
            uid: None,
        });
    }

    fn push_result(&mut self, result: ObjectResult) {
        let outcome = &result.outcome;
        let c = &mut self.counts;
        match &outcome {
            Outcome::Created => c.created += 1,
            Outcome::Changed { .. } => c.changed += 1,
            Outcome::Unchanged => c.unchanged += 1,
            Outcome::Pruned => c.pruned += 1,
            Outcome::Failed { .. } => c.failed += 1,
            Outcome::Conflicted { .. } => c.conflicted += 1,
            Outcome::Drifted => c.drifted += 1,
        }
        if !self.dry_run
            && matches!(
                outcome,
                Outcome::Created | Outcome::Changed { .. } | Outcome::Pruned
            )
        {
            c.writes += 1;
        }
        self.objects.push(result);
    }
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

/// Apply order: what others refer to goes first, so a VirtualService never lands before the
/// Gateway it binds to, nor an HTTPRoute before its Gateway or the ReferenceGrant that lets it
/// reach a backend in another namespace.
fn phase(gk: &GroupKind) -> u8 {
    match (gk.group.as_str(), gk.kind.as_str()) {
        ("networking.istio.io", "Gateway") => 0,
        ("gateway.networking.k8s.io", "Gateway" | "ReferenceGrant") => 0,
        ("gateway.networking.k8s.io", "HTTPRoute" | "GRPCRoute") => 4,
        ("networking.istio.io", "DestinationRule") => 1,
        ("networking.istio.io", "ServiceEntry") => 2,
        ("networking.istio.io", "VirtualService") => 4,
        _ => 3,
    }
}

/// The object as it is sent: the source document plus our labels and annotations.
pub fn applied_body(obj: &SourceObject, instance: &str) -> J {
    let mut body = obj.body.clone();
    if !body.get("metadata").is_some_and(J::is_object) {
        body["metadata"] = J::Object(Default::default());
    }
    let meta = &mut body["metadata"];
    for (field, k, v) in [
        ("labels", LABEL_MANAGED_BY, FIELD_MANAGER.to_string()),
        ("labels", LABEL_INSTANCE, instance.to_string()),
        (
            "annotations",
            ANNOTATION_SOURCE,
            format!("{}:{}", obj.origin.file, obj.origin.pos.line),
        ),
    ] {
        if !meta.get(field).is_some_and(J::is_object) {
            meta[field] = J::Object(Default::default());
        }
        meta[field][k] = J::String(v);
    }
    let digest = hex(&Sha256::digest(
        serde_json::to_vec(&body).unwrap_or_default(),
    ));
    body["metadata"]["annotations"][ANNOTATION_HASH] = J::String(digest[..16].to_string());
    body
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when every value in `want` is present and equal in `live`. Lists must match in
/// length; numbers compare by value (`80` equals `80.0`).
pub fn is_subset(want: &J, live: &J) -> bool {
    match (want, live) {
        (J::Object(w), J::Object(l)) => w.iter().all(|(k, wv)| match l.get(k) {
            Some(lv) => is_subset(wv, lv),
            None => wv.is_null(),
        }),
        (J::Array(w), J::Array(l)) => {
            w.len() == l.len() && w.iter().zip(l).all(|(a, b)| is_subset(a, b))
        }
        (J::Number(a), J::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == live,
    }
}

fn digest_of(v: &J) -> Option<&J> {
    v.get("metadata")?.get("annotations")?.get(ANNOTATION_HASH)
}

/// Would applying `want` leave `live` as it is?
pub fn unchanged(want: &J, live: &J) -> bool {
    digest_of(want).is_some() && digest_of(want) == digest_of(live) && is_subset(want, live)
}

/// The fields that differ between two versions of an object, as dotted paths, ignoring what
/// the server maintains.
pub fn changed_fields(before: &J, after: &J) -> Vec<String> {
    fn walk(path: &str, a: &J, b: &J, out: &mut Vec<String>) {
        if is_server_field(path) {
            return;
        }
        match (a, b) {
            (J::Object(x), J::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&J::Null),
                        y.get(k).unwrap_or(&J::Null),
                        out,
                    );
                }
            }
            (J::Array(x), J::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}[{i}]"), p, q, out);
                }
            }
            (J::Number(x), J::Number(y)) if x.as_f64() == y.as_f64() => {}
            _ if a == b => {}
            _ => out.push(path.to_string()),
        }
    }
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    out
}

fn is_server_field(path: &str) -> bool {
    matches!(
        path,
        "metadata.managedFields"
            | "metadata.resourceVersion"
            | "metadata.generation"
            | "metadata.uid"
            | "metadata.creationTimestamp"
            | "status"
    ) || path == format!("metadata.annotations.{ANNOTATION_HASH}")
}

/// An object on its way out: source, body to send, live copy, and where to send it.
struct Pending<'a> {
    obj: &'a SourceObject,
    body: J,
    live: Option<DynamicObject>,
    ar: ApiResource,
    scope: Scope,
    drift: Option<Drift>,
}

/// The live objects of one kind that this instance owns.
struct KindState {
    gk: GroupKind,
    api: Option<(kube::api::ApiResource, Scope)>,
    live: BTreeMap<ObjectKey, DynamicObject>,
}

/// Runs one sync. Never panics on cluster errors: they are in the report.
pub async fn sync(cluster: &Cluster, desired: &Desired, opts: &SyncOptions) -> SyncReport {
    let started = Instant::now();
    let mut report = SyncReport {
        dry_run: opts.dry_run,
        ..SyncReport::default()
    };
    if let Some(by_kind) = list_owned(cluster, desired, opts, &mut report).await {
        report_missing_kinds(&by_kind, desired, &mut report);
        let phases = plan(cluster, desired, opts, &by_kind, &mut report).await;
        apply_phases(cluster, phases, opts, &mut report).await;
        if opts.prune {
            prune(cluster, desired, opts, &by_kind, &mut report).await;
        }
    }
    report.objects.sort_by(|a, b| a.key.cmp(&b.key));
    report.duration = started.elapsed();
    report
}

/// The kinds a sync looks at: every owned kind (for prune) plus any kind present in the
/// desired set; or, when the caller knows what the previous sync saw, only the kinds that are
/// or were applied (a daemon's file-triggered syncs: fewer requests on the save-to-applied
/// path).
fn kinds_to_list(desired: &Desired, opts: &SyncOptions) -> BTreeSet<GroupKind> {
    let mut kinds: BTreeSet<GroupKind> = if opts.only_known_kinds {
        opts.previously_applied
            .iter()
            .map(ObjectKey::group_kind)
            .collect()
    } else {
        opts.owned.iter().cloned().collect()
    };
    kinds.extend(desired.objects.iter().map(|o| o.key.group_kind()));
    kinds
}

fn wanted_kinds(desired: &Desired) -> BTreeSet<GroupKind> {
    desired.objects.iter().map(|o| o.key.group_kind()).collect()
}

/// Lists what the instance owns, one request per kind, all at once. `None` when the cluster
/// did not answer (said in the report): nothing can be decided.
async fn list_owned(
    cluster: &Cluster,
    desired: &Desired,
    opts: &SyncOptions,
    report: &mut SyncReport,
) -> Option<BTreeMap<GroupKind, KindState>> {
    let kinds = kinds_to_list(desired, opts);
    let wanted = wanted_kinds(desired);
    let states = futures::future::join_all(
        kinds
            .iter()
            .map(|gk| list_kind(cluster, gk, &opts.instance, opts.cached_list)),
    )
    .await;
    let mut by_kind = BTreeMap::new();
    for (gk, st) in kinds.iter().zip(states) {
        match st {
            Ok(st) => {
                by_kind.insert(gk.clone(), st);
            }
            Err(e) if e.is_unreachable() => {
                report.unreachable = true;
                report.errors.push(format!("cluster unreachable: {e}"));
                return None;
            }
            Err(e) if wanted.contains(gk) => report.errors.push(e.to_string()),
            Err(_) => {}
        }
    }
    Some(by_kind)
}

/// A kind that is not installed is said once, whatever number of objects use it.
fn report_missing_kinds(
    by_kind: &BTreeMap<GroupKind, KindState>,
    desired: &Desired,
    report: &mut SyncReport,
) {
    let wanted = wanted_kinds(desired);
    for st in by_kind.values() {
        if st.api.is_some() || !wanted.contains(&st.gk) {
            continue;
        }
        let hint = if st.gk.group.ends_with("istio.io") {
            "Istio CRDs are not installed in this cluster: run dev/up.sh".into()
        } else if st.gk.group == crate::manifest::gatewayapi::GATEWAY_API {
            crate::cluster::GATEWAY_API_HINT.into()
        } else {
            format!("install the CRD of {} first", st.gk)
        };
        let error = ClusterError::KindNotInstalled {
            kind: st.gk.clone(),
            hint,
        };
        report.errors.push(error.to_string());
    }
}

/// Decides per object: unchanged (not sent), drifted and left alone, or to apply in its
/// phase. Returns the phases in order.
async fn plan<'a>(
    cluster: &Cluster,
    desired: &'a Desired,
    opts: &SyncOptions,
    by_kind: &BTreeMap<GroupKind, KindState>,
    report: &mut SyncReport,
) -> BTreeMap<u8, Vec<Pending<'a>>> {
    let mut phases: BTreeMap<u8, Vec<Pending<'a>>> = BTreeMap::new();
    for obj in &desired.objects {
        if desired.held.contains(&obj.key) {
            continue;
        }
        let gk = obj.key.group_kind();
        let Some(st) = by_kind.get(&gk) else { continue };
        let Some(api) = &st.api else { continue };
        let (ar, scope) = match served_version(cluster, obj, api).await {
            Ok(found) => found,
            Err(e) => {
                let message = e.to_string();
                report.push(
                    obj.key.clone(),
                    Some(source_of(obj)),
                    Outcome::Failed { message },
                );
                continue;
            }
        };
        let body = applied_body(obj, &opts.instance);
        let live = st.live.get(&obj.key).cloned();
        let Some(drift) = decide(obj, &body, live.as_ref(), opts, report) else {
            continue;
        };
        phases.entry(phase(&gk)).or_default().push(Pending {
            obj,
            body,
            live,
            ar,
            scope,
            drift,
        });
    }
    phases
}

/// Each object is sent in the version its file names; discovery knows it is served.
async fn served_version(
    cluster: &Cluster,
    obj: &SourceObject,
    (ar, scope): &(ApiResource, Scope),
) -> Result<(ApiResource, Scope), ClusterError> {
    let version = version_of(&obj.api_version);
    if ar.version == version {
        return Ok((ar.clone(), scope.clone()));
    }
    cluster.resolve(&obj.key.group_kind(), Some(version)).await
}

/// `None` when the object is settled without a write (unchanged, or drift only reported);
/// else the drift to restore, if any.
fn decide(
    obj: &SourceObject,
    body: &J,
    live: Option<&DynamicObject>,
    opts: &SyncOptions,
    report: &mut SyncReport,
) -> Option<Option<Drift>> {
    let drift = match live {
        Some(l) => {
            let live_json = serde_json::to_value(l).unwrap_or(J::Null);
            if unchanged(body, &live_json) {
                report.push_result(ObjectResult {
                    key: obj.key.clone(),
                    source: Some(source_of(obj)),
                    outcome: Outcome::Unchanged,
                    drift: None,
                    resource_version: l.metadata.resource_version.clone(),
                    uid: None,
                });
                return None;
            }
            // Our digest is there but a value is not: someone else edited it.
            (digest_of(body) == digest_of(&live_json)).then_some(Drift::Edited)
        }
        None if opts.previously_applied.contains(&obj.key) => Some(Drift::Deleted),
        None => None,
    };
    if drift.is_some() && !opts.restore_drift {
        report.push_result(ObjectResult {
            key: obj.key.clone(),
            source: Some(source_of(obj)),
            outcome: Outcome::Drifted,
            drift,
            resource_version: None,
            uid: None,
        });
        return None;
    }
    Some(drift)
}

/// Applies phase by phase, so what others refer to lands first; within a phase, up to
/// [`APPLY_CONCURRENCY`] requests at once.
async fn apply_phases(
    cluster: &Cluster,
    phases: BTreeMap<u8, Vec<Pending<'_>>>,
    opts: &SyncOptions,
    report: &mut SyncReport,
) {
    for (_, batch) in phases {
        let requests: Vec<_> = batch
            .into_iter()
            .map(|p| apply_pending(cluster, p, opts))
            .collect();
        let results: Vec<_> = futures::stream::iter(requests)
            .buffer_unordered(APPLY_CONCURRENCY)
            .collect()
            .await;
        for (obj, drift, outcome) in results {
            let (outcome, resource_version) = match outcome {
                Ok(done) => done,
                Err(e) => {
                    report.unreachable |= e.is_unreachable();
                    let message = e.to_string();
                    (Outcome::Failed { message }, None)
                }
            };
            report.push_result(ObjectResult {
                key: obj.key.clone(),
                source: Some(source_of(obj)),
                outcome,
                drift,
                resource_version,
                uid: None,
            });
        }
    }
}

/// Deletes what carries both labels and no source defines, only when nothing is in doubt.
async fn prune(
    cluster: &Cluster,
    desired: &Desired,
    opts: &SyncOptions,
    by_kind: &BTreeMap<GroupKind, KindState>,
    report: &mut SyncReport,
) {
    let mut blockers = desired.blockers.clone();
    if !report.errors.is_empty() {
        blockers.push(format!("{} error(s) in this sync", report.errors.len()));
    }
    if report.unreachable {
        blockers.push("the cluster did not answer every request".into());
    }
    let defined: BTreeSet<&ObjectKey> = desired.objects.iter().map(|o| &o.key).collect();
    let stale: Vec<(&ObjectKey, &DynamicObject, &ApiResource, &Scope)> = by_kind
        .values()
        .filter_map(|st| st.api.as_ref().map(|(ar, scope)| (st, ar, scope)))
        .flat_map(|(st, ar, scope)| {
            st.live
                .iter()
                .filter(|(k, o)| !defined.contains(k) && carries_both_labels(o, &opts.instance))
                .map(move |(k, o)| (k, o, ar, scope))
        })
        .collect();
    if !blockers.is_empty() {
        if !stale.is_empty() {
            report.prune_blocked = blockers;
        }
        return;
    }
    for (key, live, ar, scope) in stale {
        let outcome = match delete_one(cluster, key, live, ar, scope, opts.dry_run).await {
            Ok(()) => Outcome::Pruned,
            Err(e) => Outcome::Failed {
                message: format!("prune: {e}"),
            },
        };
        let uid = matches!(outcome, Outcome::Pruned)
            .then(|| live.metadata.uid.clone())
            .flatten();
        report.push_result(ObjectResult {
            key: key.clone(),
            source: None,
            outcome,
            drift: None,
            resource_version: None,
            uid,
        });
    }
}

/// Deletes every object of one instance, of every owned kind: those carrying both ownership
/// labels, nothing else. It is a sync with nothing desired, so it lists, deletes (each exactly
/// the object listed) and reports like prune does.
pub async fn down(
    cluster: &Cluster,
    instance: &str,
    owned: Vec<GroupKind>,
    dry_run: bool,
) -> SyncReport {
    let mut opts = SyncOptions::new(instance, owned);
    opts.dry_run = dry_run;
    sync(cluster, &Desired::default(), &opts).await
}

fn version_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or(api_version, |(_, v)| v)
}

fn source_of(obj: &SourceObject) -> String {
    format!("{}:{}", obj.origin.file, obj.origin.pos.line)
}

fn carries_both_labels(o: &DynamicObject, instance: &str) -> bool {
    let labels = o.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .map(String::as_str)
        == Some(FIELD_MANAGER)
        && labels
            .and_then(|l| l.get(LABEL_INSTANCE))
            .map(String::as_str)
            == Some(instance)
}

fn api_for(
    cluster: &Cluster,
    ar: &kube::api::ApiResource,
    scope: &Scope,
    namespace: &str,
) -> Api<DynamicObject> {
    match scope {
        Scope::Namespaced => Api::namespaced_with(cluster.client.clone(), namespace, ar),
        Scope::Cluster => Api::all_with(cluster.client.clone(), ar),
    }
}

async fn list_kind(
    cluster: &Cluster,
    gk: &GroupKind,
    instance: &str,
    cached: bool,
) -> Result<KindState, ClusterError> {
    let (ar, scope) = match cluster.resolve(gk, None).await {
        Ok(found) => found,
        Err(ClusterError::KindNotInstalled { .. }) => {
            return Ok(KindState {
                gk: gk.clone(),
                api: None,
                live: BTreeMap::new(),
            });
        }
        Err(e) => return Err(e),
    };
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ar);
    let mut params = ListParams::default().labels(&owned_selector(instance));
    if cached {
        params = params.match_any();
    }
    let list = timed(api.list(&params)).await??;
    let live = list
        .items
        .into_iter()
        .map(|o| {
            let key = ObjectKey {
                group: gk.group.clone(),
                kind: gk.kind.clone(),
                namespace: o.metadata.namespace.clone().unwrap_or_default(),
                name: o.metadata.name.clone().unwrap_or_default(),
            };
            (key, o)
        })
        .collect();
    Ok(KindState {
        gk: gk.clone(),
        api: Some((ar, scope)),
        live,
    })
}

/// [`apply_one`], keeping what the report needs.
async fn apply_pending<'a>(
    cluster: &Cluster,
    p: Pending<'a>,
    opts: &SyncOptions,
) -> (
    &'a SourceObject,
    Option<Drift>,
    Result<(Outcome, Option<String>), ClusterError>,
) {
    let (obj, drift) = (p.obj, p.drift);
    (obj, drift, apply_one(cluster, p, opts).await)
}

async fn apply_one(
    cluster: &Cluster,
    pending: Pending<'_>,
    opts: &SyncOptions,
) -> Result<(Outcome, Option<String>), ClusterError> {
    let Pending {
        obj,
        body,
        live,
        ar,
        scope,
        drift,
    } = pending;
    let live = live.as_ref();
    let (ar, scope) = (&ar, &scope);
    let api = api_for(cluster, ar, scope, &obj.key.namespace);
    let mut params = PatchParams::apply(FIELD_MANAGER);
    // Restoring drift means taking back the fields another client took.
    params.force = opts.force_conflicts || drift.is_some();
    params.dry_run = opts.dry_run;
    let result = timed(api.patch(&obj.key.name, &params, &Patch::Apply(&body))).await?;
    match result {
        Ok(after) => {
            let rv = after.metadata.resource_version.clone();
            let outcome = match live {
                None => Outcome::Created,
                Some(before) => {
                    let after = serde_json::to_value(&after).unwrap_or(J::Null);
                    let before = serde_json::to_value(before).unwrap_or(J::Null);
                    let mut fields = changed_fields(&before, &after);
                    if fields.is_empty() {
                        // Only our digest moved (e.g. a field removed and put back).
                        fields.push(format!("metadata.annotations.{ANNOTATION_HASH}"));
                    }
                    Outcome::Changed { fields }
                }
            };
            Ok((outcome, rv))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok((
            Outcome::Conflicted {
                message: format!(
                    "{} (another field manager owns these fields; set force_conflicts: true to take them)",
                    located(obj, "conflict", &status)
                ),
            },
            None,
        )),
        Err(kube::Error::Api(status)) => Ok((
            Outcome::Failed {
                message: located(obj, "rejected by the API server", &status),
            },
            None,
        )),
        Err(e) => Err(ClusterError::Api(e)),
    }
}

/// The refusal's message with every field path in it located in the object's file.
fn located(obj: &SourceObject, what: &str, status: &kube::core::Status) -> String {
    let causes: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .map(|c| c.field.clone())
        .filter(|f| !f.is_empty())
        .collect();
    crate::refusal::locate(obj, what, &status.message, &causes)
}

async fn delete_one(
    cluster: &Cluster,
    key: &ObjectKey,
    live: &DynamicObject,
    ar: &kube::api::ApiResource,
    scope: &Scope,
    dry_run: bool,
) -> Result<(), ClusterError> {
    let api = api_for(cluster, ar, scope, &key.namespace);
    let params = DeleteParams {
        dry_run,
        // Delete exactly the object we listed, not a namesake created since.
        preconditions: Some(Preconditions {
            uid: live.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match timed(api.delete(&key.name, &params)).await? {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ClusterError::Api(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_additions_but_not_edits() {
        let want = json!({"spec": {"hosts": ["a"], "http": [{"route": [{"weight": 90}]}]}});
        let live = json!({"spec": {"hosts": ["a"], "http": [{"route": [{"weight": 90.0}]}]}, "status": {}});
        assert!(is_subset(&want, &live));
        let edited = json!({"spec": {"hosts": ["a", "b"], "http": [{"route": [{"weight": 90}]}]}});
        assert!(!is_subset(&want, &edited));
    }

    #[test]
    fn changed_fields_lists_paths() {
        let a = json!({"metadata": {"resourceVersion": "1"}, "spec": {"hosts": ["a"], "x": 1}});
        let b = json!({"metadata": {"resourceVersion": "2"}, "spec": {"hosts": ["b"], "x": 1, "y": true}});
        assert_eq!(changed_fields(&a, &b), vec!["spec.hosts[0]", "spec.y"]);
    }

    #[test]
    fn phases_put_gateways_first_and_virtual_services_last() {
        let g = GroupKind::new("networking.istio.io", "Gateway");
        let vs = GroupKind::new("networking.istio.io", "VirtualService");
        let ap = GroupKind::new("security.istio.io", "AuthorizationPolicy");
        assert!(phase(&g) < phase(&ap) && phase(&ap) < phase(&vs));
    }
}
