//! Gateway verification end to end: the requests a developer would send with
//! `curl -H "Host: goapp.dev" $INGRESS_HOST:$INGRESS_PORT/fortune`, for every route, with the
//! broken hop named when one fails.
//!
//! A run resolves the ingress address ([`address`]), derives the probes from the routing model
//! and the config's checks ([`probes`]), sends them with bounded concurrency ([`http`]), judges
//! the answers and the observed traffic splits ([`split`]), and diagnoses each failure
//! ([`diagnose`]) with the route simulation on live cluster facts and an in-cluster request
//! through the API server's service proxy. It reads the cluster; it never writes to it.

pub mod address;
pub mod diagnose;
pub mod http;
pub mod probes;
pub mod split;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::analyze::model::{Facts, Model};
use crate::cluster::Cluster;
use crate::config::{Check, Ingress, VerifySettings};
use crate::manifest::SourceObject;
use address::Address;
use diagnose::Diagnosis;
use http::{Answer, Failure, Prober};
use probes::{Expectation, Probe, ProbeRequest, Skipped};
use split::SplitResult;

/// Requests in flight at once.
pub const CONCURRENCY: usize = 8;

/// What a run needs: the routing objects (and the workloads beside them), the config's
/// ingress, checks and settings, and the cluster when one is reachable.
pub struct Input<'a> {
    pub objects: &'a [SourceObject],
    pub others: &'a [SourceObject],
    pub ingress: &'a Ingress,
    pub checks: &'a [Check],
    pub settings: &'a VerifySettings,
    /// For locations of checks (`meshloop.yaml: checks[1]`).
    pub config_file: Option<String>,
    pub cluster: Option<&'a Cluster>,
    /// Why it runs: `request`, `routing changed`, `rollout complete`, `cli`.
    pub trigger: &'a str,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    pub ok: bool,
    pub trigger: String,
    pub started_at: String,
    pub duration_ms: f64,
    pub address: Option<Address>,
    /// Why no probe could be sent (no address), when that is the case.
    pub error: Option<String>,
    /// Said when there was nothing to send (which passes).
    pub note: Option<String>,
    pub passed: usize,
    pub failed: usize,
    pub probes: Vec<ProbeResult>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProbeResult {
    pub name: String,
    pub source: String,
    pub at: Option<String>,
    pub request: ProbeRequest,
    pub expect: String,
    pub ok: bool,
    /// Requests sent (1, or `split_samples` for a split).
    pub requests: u32,
    /// Requests whose answer did not meet the expectation (or got none).
    pub failed_requests: u32,
    /// Answers by status (`200`, `503`) or transport failure (`refused`, `timeout`, `error`).
    pub results: BTreeMap<String, u32>,
    /// The first answer's status (the first failing one when the probe failed).
    pub status: Option<u16>,
    /// The version header of that answer.
    pub version: Option<String>,
    /// Whether that answer came from an upstream (Envoy's `x-envoy-upstream-service-time`).
    pub upstream: Option<bool>,
    pub slowest_ms: f64,
    /// What was wrong with the first failing answer.
    pub problem: Option<String>,
    pub split: Option<SplitResult>,
    pub diagnosis: Option<Diagnosis>,
}

/// The outcome of one request of a probe.
type Sent = Result<Answer, Failure>;

/// Runs a verification.
pub async fn run(input: Input<'_>) -> Report {
    let t0 = Instant::now();
    let mut report = Report {
        ok: false,
        trigger: input.trigger.to_string(),
        started_at: crate::telemetry::now_text(),
        duration_ms: 0.0,
        address: None,
        error: None,
        note: None,
        passed: 0,
        failed: 0,
        probes: Vec::new(),
        skipped: Vec::new(),
    };
    match address_and_facts(&input).await {
        Err(e) => report.error = Some(format!("no ingress address: {e}")),
        Ok((addr, facts)) => probe_all(&input, &mut report, addr, facts.as_ref()).await,
    }
    report.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
    report
}

/// The ingress address and the ingress facts; the ingress Service is read once, for both.
async fn address_and_facts(
    input: &Input<'_>,
) -> Result<(Address, Option<Facts>), address::AddressError> {
    let client = input.cluster.map(|c| &c.client);
    let svc = match client {
        Some(c) => address::ingress_service(c, input.ingress).await?,
        None => None,
    };
    let (addr, facts) = tokio::join!(
        address::resolve(client, input.ingress, svc.as_ref()),
        ingress_facts(input.cluster, svc.as_ref())
    );
    Ok((addr?, facts))
}

/// Derives the probes, sends them, judges each, and diagnoses those that failed.
async fn probe_all(input: &Input<'_>, report: &mut Report, addr: Address, facts: Option<&Facts>) {
    // The probes come from the configuration as written, with the ingress Service and Pods
    // from the cluster so that only the Gateways the ingress runs are followed.
    let mut model = Model::build(input.objects, input.others, facts, input.ingress);
    model.live = false;
    let (probes, skipped) = probes::derive(&model, input.checks, input.config_file.as_deref());
    report.skipped = skipped;
    report.address = Some(addr.clone());
    if probes.is_empty() {
        report.ok = true;
        report.note = Some(
            "nothing to verify: no VirtualService is bound to a Gateway of the ingress on port 80, and meshloop.yaml has no checks".into(),
        );
        return;
    }
    let by_probe = send_all(input.settings, &probes, &addr).await;
    let mut results: Vec<ProbeResult> = probes
        .iter()
        .zip(by_probe)
        .map(|(p, answers)| judge_probe(p, &answers, &input.settings.version_header))
        .collect();
    diagnose_failures(input, &addr, &probes, &mut results).await;
    report.passed = results.iter().filter(|r| r.ok).count();
    report.failed = results.len() - report.passed;
    report.ok = report.failed == 0;
    report.probes = results;
}

/// Sends each probe's request (a split's as many times as the samples), a few at a time;
/// the answers come back grouped by probe.
async fn send_all(settings: &VerifySettings, probes: &[Probe], addr: &Address) -> Vec<Vec<Sent>> {
    let keep: Vec<String> = std::iter::once(settings.version_header.clone())
        .chain(probes.iter().flat_map(|p| p.expect.headers.keys().cloned()))
        .collect();
    let prober = Prober::new(Duration::from_millis(settings.timeout_ms.max(1)), keep);
    let samples = settings.split_samples.max(1);
    let jobs: Vec<(usize, ProbeRequest)> = probes
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            let n = if p.split.is_empty() { 1 } else { samples };
            std::iter::repeat_n((i, p.request.clone()), n as usize)
        })
        .collect();
    // Owned values in each request future keep it `Send` for the daemon's task.
    let sent: Vec<(usize, Sent)> = futures::stream::iter(jobs)
        .map(|(i, req)| {
            let prober = prober.clone();
            let addr = addr.clone();
            async move { (i, prober.send(&addr, &req).await) }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut by_probe: Vec<Vec<Sent>> = vec![Vec::new(); probes.len()];
    for (i, s) in sent {
        by_probe[i].push(s);
    }
    by_probe
}

/// Diagnosis needs the live facts; they are read once, only when something failed.
async fn diagnose_failures(
    input: &Input<'_>,
    addr: &Address,
    probes: &[Probe],
    results: &mut [ProbeResult],
) {
    let failing: Vec<usize> = (0..results.len()).filter(|&i| !results[i].ok).collect();
    if failing.is_empty() {
        return;
    }
    let facts = match input.cluster {
        Some(c) => crate::analyze::live::fetch(c, &[]).await.ok(),
        None => None,
    };
    let live = Model::build(input.objects, input.others, facts.as_ref(), input.ingress);
    for i in failing {
        let d = diagnose::diagnose(&live, input.cluster, addr, &probes[i], &results[i]).await;
        results[i].diagnosis = Some(d);
    }
}

/// The ingress Service and the Pods it selects, as facts, so the probes follow only the
/// Gateways the ingress runs. `None` without a cluster or when they cannot be read.
async fn ingress_facts(cluster: Option<&Cluster>, svc: Option<&Service>) -> Option<Facts> {
    let (c, svc) = (cluster?, svc?);
    let namespace = svc.metadata.namespace.clone()?;
    let selector = svc.spec.as_ref()?.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        return None;
    }
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods = Api::<Pod>::namespaced(c.client.clone(), &namespace)
        .list(&ListParams::default().labels(&labels.join(",")))
        .await
        .ok()?;
    let values: Vec<serde_json::Value> = std::iter::once(serde_json::to_value(svc).ok()?)
        .chain(
            pods.items
                .iter()
                .filter_map(|p| serde_json::to_value(p).ok()),
        )
        .collect();
    Some(Facts::from_json(&values))
}

/// Why one answer does not meet the expectation, or `None` when it does.
pub fn problem_with(a: &Answer, e: &Expectation) -> Option<String> {
    if let Some(s) = e.status {
        if a.status != s {
            return Some(format!("expected status {s}, got {}", a.status));
        }
    } else if e.routed {
        if a.status == 404 && !a.from_upstream() {
            return Some("404 from the gateway itself (no route)".into());
        }
        if a.status >= 500 {
            return Some(format!(
                "{} from {}",
                a.status,
                if a.from_upstream() {
                    "the app"
                } else {
                    "the gateway (no upstream answered)"
                }
            ));
        }
    }
    if let Some(b) = &e.body_contains
        && !a.body.contains(b.as_str())
    {
        return Some(format!(
            "the body does not contain {b:?}: {}",
            snippet(&a.body)
        ));
    }
    if let Some(r) = &e.body_regex {
        match regex::Regex::new(r) {
            Ok(re) if !re.is_match(&a.body) => {
                return Some(format!(
                    "the body does not match /{r}/: {}",
                    snippet(&a.body)
                ));
            }
            Err(err) => return Some(format!("expect.body_regex is not a valid regex: {err}")),
            _ => {}
        }
    }
    for (k, v) in &e.headers {
        match a.headers.get(k) {
            Some(got) if got == v => {}
            Some(got) => return Some(format!("header {k} is {got:?}, expected {v:?}")),
            None => return Some(format!("header {k} is missing (expected {v:?})")),
        }
    }
    None
}

pub fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "(empty)".into()
    } else if one_line.chars().count() > 120 {
        format!("{:?}…", one_line.chars().take(120).collect::<String>())
    } else {
        format!("{one_line:?}")
    }
}

/// What the answers of one probe came to, before the split is judged.
#[derive(Default)]
struct Tally<'a> {
    results: BTreeMap<String, u32>,
    problem: Option<String>,
    first: Option<&'a Answer>,
    first_bad: Option<&'a Answer>,
    slowest: Duration,
    routed_versions: Vec<Option<String>>,
}

impl<'a> Tally<'a> {
    fn of(p: &Probe, answers: &'a [Sent], version_header: &str) -> Tally<'a> {
        let mut t = Tally::default();
        for s in answers {
            match s {
                Ok(a) => t.answer(a, p, version_header),
                Err(f) => {
                    let key = match f {
                        Failure::Refused(_) => "refused",
                        Failure::Timeout(_) => "timeout",
                        Failure::Other(_) => "error",
                    };
                    *t.results.entry(key.into()).or_default() += 1;
                    t.problem.get_or_insert_with(|| f.to_string());
                }
            }
        }
        t
    }

    fn answer(&mut self, a: &'a Answer, p: &Probe, version_header: &str) {
        *self.results.entry(a.status.to_string()).or_default() += 1;
        self.slowest = self.slowest.max(a.elapsed);
        self.first.get_or_insert(a);
        match problem_with(a, &p.expect) {
            Some(why) => {
                if self.problem.is_none() {
                    self.problem = Some(why);
                    self.first_bad = Some(a);
                }
            }
            None => self
                .routed_versions
                .push(a.headers.get(version_header).cloned()),
        }
    }
}

fn judge_probe(p: &Probe, answers: &[Sent], version_header: &str) -> ProbeResult {
    let Tally {
        results,
        mut problem,
        first,
        first_bad,
        slowest,
        routed_versions,
    } = Tally::of(p, answers, version_header);
    let split =
        (!p.split.is_empty()).then(|| split::judge(version_header, &p.split, &routed_versions));
    let bad_count = answers.len() - routed_versions.len();
    if bad_count > 1
        && let Some(pr) = &mut problem
    {
        *pr = format!("{pr} ({bad_count} of {} requests failed)", answers.len());
    }
    if problem.is_none()
        && let Some(s) = &split
        && !s.ok
    {
        problem = Some(match &s.note {
            Some(n) => format!("split: {n}"),
            None => format!("split off: {}", s.describe()),
        });
    }
    let shown = first_bad.or(first);
    ProbeResult {
        name: p.name.clone(),
        source: p.source.clone(),
        at: p.at.clone(),
        request: p.request.clone(),
        expect: p.expect.describe(),
        ok: problem.is_none(),
        requests: answers.len() as u32,
        failed_requests: bad_count as u32,
        results,
        status: shown.map(|a| a.status),
        version: shown.and_then(|a| a.headers.get(version_header).cloned()),
        upstream: shown.map(Answer::from_upstream),
        slowest_ms: slowest.as_secs_f64() * 1000.0,
        problem,
        split,
        diagnosis: None,
    }
}

impl Report {
    /// A one-line summary for logs and /readyz.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("gateway verification failed: {e}");
        }
        let total = self.passed + self.failed;
        if let Some(n) = &self.note {
            return n.clone();
        }
        if self.ok {
            format!(
                "gateway verified: {total} of {total} probes passed ({:.0} ms)",
                self.duration_ms
            )
        } else {
            let first = self.probes.iter().find(|p| !p.ok);
            format!(
                "gateway verification failed: {} of {total} probes failed{}",
                self.failed,
                first
                    .map(|p| format!(
                        "; {}: {}{}",
                        p.name,
                        p.problem.as_deref().unwrap_or("failed"),
                        p.diagnosis
                            .as_ref()
                            .map(|d| format!(" [broken hop: {}: {}]", d.hop, d.summary))
                            .unwrap_or_default()
                    ))
                    .unwrap_or_default()
            )
        }
    }

    /// The readable report of `meshloop verify`.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        match &self.address {
            Some(a) => {
                let _ = writeln!(s, "ingress: {}  ({})", a.authority(), a.via);
            }
            None => {
                let _ = writeln!(s, "ingress: no address");
            }
        }
        if let Some(e) = &self.error {
            let _ = writeln!(s, "error: {e}");
        }
        for p in &self.probes {
            let mark = if p.ok { "ok  " } else { "FAIL" };
            let results: Vec<String> = p
                .results
                .iter()
                .map(|(k, v)| {
                    if p.requests == 1 {
                        k.clone()
                    } else {
                        format!("{k} ×{v}")
                    }
                })
                .collect();
            let _ = writeln!(
                s,
                "{mark} {:<32} {}  ({}; slowest {:.1} ms)",
                p.name,
                results.join(", "),
                p.source,
                p.slowest_ms
            );
            if let Some(sp) = &p.split {
                let _ = writeln!(
                    s,
                    "     split over {} answers: {}",
                    sp.answers,
                    sp.describe()
                );
                if let Some(n) = &sp.note {
                    let _ = writeln!(s, "     note: {n}");
                }
            }
            if let Some(pr) = &p.problem {
                let _ = writeln!(s, "     problem: {pr}  (expected {})", p.expect);
            }
            if let Some(d) = &p.diagnosis {
                s.push_str(&d.render_text("     "));
            }
        }
        for k in &self.skipped {
            let _ = writeln!(
                s,
                "skip {}{}: {}",
                k.source,
                k.at.as_ref().map(|a| format!(" [{a}]")).unwrap_or_default(),
                k.reason
            );
        }
        let _ = writeln!(s, "=> {}", self.summary());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, upstream: bool, body: &str) -> Answer {
        let mut headers = BTreeMap::new();
        if upstream {
            headers.insert("x-envoy-upstream-service-time".into(), "1".into());
            headers.insert("x-version".into(), "v1".into());
        }
        Answer {
            status,
            headers,
            body: body.into(),
            elapsed: Duration::from_millis(1),
        }
    }

    #[test]
    fn routed_means_the_app_answered() {
        let routed = Expectation {
            routed: true,
            ..Default::default()
        };
        assert_eq!(problem_with(&answer(200, true, ""), &routed), None);
        assert_eq!(
            problem_with(&answer(404, true, ""), &routed),
            None,
            "the app's own 404 still proves the route"
        );
        assert!(
            problem_with(&answer(404, false, ""), &routed)
                .unwrap()
                .contains("no route")
        );
        assert!(
            problem_with(&answer(503, false, "upstream connect error"), &routed)
                .unwrap()
                .contains("no upstream answered")
        );
        assert!(
            problem_with(&answer(500, true, ""), &routed)
                .unwrap()
                .contains("from the app")
        );
    }

    #[test]
    fn explicit_expectations() {
        let e = Expectation {
            status: Some(200),
            body_regex: Some("^Hel+o$".into()),
            headers: [("x-version".to_string(), "v2".to_string())].into(),
            ..Default::default()
        };
        assert!(
            problem_with(&answer(201, true, "Hello"), &e)
                .unwrap()
                .contains("expected status 200, got 201")
        );
        assert!(
            problem_with(&answer(200, true, "Bye"), &e)
                .unwrap()
                .contains("does not match")
        );
        assert!(
            problem_with(&answer(200, true, "Hello"), &e)
                .unwrap()
                .contains("header x-version is \"v1\", expected \"v2\"")
        );
        let contains = Expectation {
            body_contains: Some("Hello".into()),
            ..Default::default()
        };
        assert_eq!(
            problem_with(&answer(200, true, "say Hello"), &contains),
            None
        );
    }
}
