//! Naming the broken hop of a failed probe.
//!
//! The route simulation ([`crate::analyze::explain`]) runs on the live model (the routing
//! objects plus the cluster's Services, Pods and EndpointSlices) and says where the request
//! should stop; the destinations are then requested from inside the cluster through the API
//! server's proxy (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`, and each Pod of a
//! subset), which is what a developer does with `kubectl exec ... curl`. When the Service
//! answers there but not through the gateway, the mesh configuration is at fault; when it does
//! not answer either, the app is.

use std::fmt::Write as _;

use http_body_util::BodyExt;
use serde::Serialize;

use super::address::Address;
use super::probes::Probe;
use super::{ProbeResult, snippet};
use crate::analyze::explain::{self, Outcome};
use crate::analyze::model::{Model, selects, service_of};
use crate::cluster::Cluster;

/// Pods of one subset requested from inside the cluster, at most.
const PODS_PER_SUBSET: usize = 3;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Diagnosis {
    /// The broken hop: `gateway`, `server`, `virtualservice`, `rule`, `upstream`, `app`,
    /// `mesh`, `split`, `istiod`.
    pub hop: String,
    pub summary: String,
    /// The simulation of the request on the live model, one line per hop.
    pub details: Vec<String>,
    pub in_cluster: Vec<InClusterCheck>,
}

/// One request from inside the cluster through the API server's proxy.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InClusterCheck {
    /// `Service dev/goapp:http`, `Pod dev/goapp-v2-7c9f:8080`.
    pub target: String,
    pub status: Option<u16>,
    pub ok: bool,
    pub detail: String,
}

impl Diagnosis {
    pub fn render_text(&self, indent: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{indent}broken hop: {}: {}", self.hop, self.summary);
        for c in &self.in_cluster {
            let _ = writeln!(
                s,
                "{indent}  in cluster: {} {} {}",
                if c.ok { "ok " } else { "NO " },
                c.target,
                c.detail
            );
        }
        // The simulation matters when the configuration is at fault; an app at fault is
        // shown by the in-cluster requests.
        if self.hop != "app" {
            for d in &self.details {
                let _ = writeln!(s, "{indent}  {d}");
            }
        }
        s
    }
}

/// Names the broken hop of a failed probe: the gateway unreachable, the route missing, or,
/// for a request that was routed, the first of istiod, split, app, upstream and mesh at fault.
pub async fn diagnose(
    live: &Model,
    cluster: Option<&Cluster>,
    addr: &Address,
    probe: &Probe,
    result: &ProbeResult,
) -> Diagnosis {
    let req = probe.request.to_explain(super::probes::HTTP_PORT);
    let sim = explain::explain(live, &req);
    let mut d = Diagnosis {
        hop: String::new(),
        summary: String::new(),
        details: sim.render_text().lines().map(str::to_string).collect(),
        in_cluster: Vec::new(),
    };
    if let Some(summary) = unreachable(live, addr, result) {
        (d.hop, d.summary) = ("gateway".into(), summary);
        return d;
    }
    let no_route = result.status == Some(404) && result.upstream == Some(false);
    if no_route && probe.expect.status != Some(404) {
        not_routed(&mut d, live, cluster, &sim, &req.host).await;
        return d;
    }
    if let Some(c) = cluster {
        d.in_cluster = in_cluster(live, c, probe, &destinations(&sim, probe)).await;
    }
    let split_only = result.failed_requests == 0 && result.split.as_ref().is_some_and(|s| !s.ok);
    let stale = if split_only {
        istiod_blame(cluster).await
    } else {
        None
    };
    (d.hop, d.summary) = match stale {
        // The gateway serves what istiod pushed last; istiod cannot push the change.
        Some(summary) => ("istiod".into(), summary),
        None => routed_blame(&d.in_cluster, &sim, result, split_only),
    };
    d
}

/// Nothing accepted the connection or answered at the gateway's address: the gateway's hop,
/// with what the ingress Pods look like.
fn unreachable(live: &Model, addr: &Address, result: &ProbeResult) -> Option<String> {
    let refused = result.results.contains_key("refused");
    let timeout = result.results.contains_key("timeout");
    let failed = result.results.contains_key("error") && result.status.is_none();
    if !(refused || timeout || failed) {
        return None;
    }
    let what = if refused {
        "nothing accepts connections"
    } else if timeout {
        "no answer"
    } else {
        "the request failed"
    };
    Some(format!(
        "{what} at {} ({}); {}",
        addr.authority(),
        addr.via,
        ingress_pods(live)
    ))
}

/// A 404 the gateway answered itself: the step the simulation stopped at when the
/// configuration has no route, istiod or the gateway when it has one.
async fn not_routed(
    d: &mut Diagnosis,
    live: &Model,
    cluster: Option<&Cluster>,
    sim: &explain::Explanation,
    host: &str,
) {
    match &sim.outcome {
        Outcome::NoRoute { reason } | Outcome::NoListener { reason } => {
            let step = sim
                .hops
                .iter()
                .find(|h| !h.ok)
                .map_or("virtualservice", |h| h.step);
            d.hop = step.into();
            d.summary = format!("404 NR (no route): {reason}");
            if step == "rule" {
                d.details.extend(rules_of(live, host));
            }
        }
        _ => match istiod_blame(cluster).await {
            Some(summary) => (d.hop, d.summary) = ("istiod".into(), summary),
            None => {
                d.hop = "gateway".into();
                d.summary = "the configuration routes this request, yet the gateway answered 404 without reaching an upstream: it has not received the configuration (istiod has not pushed it yet, or rejected it), or the Pods answering at the address are not the ones the Gateway selects".into();
            }
        },
    }
}

/// The destinations to request from inside the cluster: the simulation's, or the split's
/// when the simulation found none.
fn destinations(sim: &explain::Explanation, probe: &Probe) -> Vec<(String, Option<String>)> {
    let from_sim: Vec<_> = sim
        .destinations
        .iter()
        .map(|x| (x.fqdn.clone(), x.subset.clone()))
        .collect();
    if !from_sim.is_empty() {
        return from_sim;
    }
    probe
        .split
        .iter()
        .map(|e| (e.fqdn.clone(), e.subset.clone()))
        .collect()
}

/// For a request the gateway routed: the hop at fault and why, from the in-cluster requests,
/// the simulation's failing destination and the gateway's answer.
fn routed_blame(
    in_cluster: &[InClusterCheck],
    sim: &explain::Explanation,
    result: &ProbeResult,
    split_only: bool,
) -> (String, String) {
    let failing = sim.destinations.iter().find(|x| x.fails_with.is_some());
    let failing_text = |f: &explain::DestinationHop| {
        format!(
            "{} {}",
            dest_name(&f.host, f.subset.as_deref()),
            f.fails_with.as_deref().unwrap_or_default()
        )
    };
    let split_hint = "the observed shares differ from the VirtualService's weights: the gateway serves another configuration (not pushed yet, or another VirtualService for this host)";
    if split_only {
        // Every request reached the app; only the shares are off.
        let or = failing.map(|f| {
            format!(
                ", or {} cannot take its share ({})",
                dest_name(&f.host, f.subset.as_deref()),
                f.fails_with.as_deref().unwrap_or_default()
            )
        });
        return (
            "split".into(),
            format!("{split_hint}{}", or.unwrap_or_default()),
        );
    }
    if let Some(bad) = in_cluster.iter().find(|c| !c.ok) {
        let also = failing.map(|f| format!("; {}", failing_text(f)));
        let summary = format!(
            "{} does not answer from inside the cluster either ({}): the app is at fault{}",
            bad.target,
            bad.detail,
            also.unwrap_or_default()
        );
        return ("app".into(), summary);
    }
    if let Some(f) = failing {
        let why = f.hops.iter().find(|h| !h.ok).map(|h| h.detail.clone());
        let summary = format!(
            "{}: {} ({})",
            dest_name(&f.host, f.subset.as_deref()),
            f.fails_with.as_deref().unwrap_or_default(),
            why.unwrap_or_default()
        );
        return ("upstream".into(), summary);
    }
    answered_blame(in_cluster, result, split_hint)
}

/// Every destination answers and none fails by the configuration: the gateway's own answer
/// says whether the mesh, the split or the app is at fault.
fn answered_blame(
    in_cluster: &[InClusterCheck],
    result: &ProbeResult,
    split_hint: &str,
) -> (String, String) {
    let five = result.status.is_some_and(|s| s >= 500);
    if five && result.upstream != Some(true) {
        let inside = if in_cluster.is_empty() {
            "the destinations could not be requested"
        } else {
            "the destinations answer"
        };
        let summary = format!(
            "the gateway answered {} without reaching the app, while {inside} from inside the cluster: the mesh configuration is at fault (DestinationRule traffic policy or TLS mode, the gateway's view of the endpoints)",
            result.status.unwrap_or_default(),
        );
        return ("mesh".into(), summary);
    }
    if result
        .problem
        .as_deref()
        .is_some_and(|p| p.starts_with("split"))
    {
        return (
            "split".into(),
            format!("{split_hint}, or a destination's Pods are not ready"),
        );
    }
    let status = result
        .status
        .map_or_else(|| "unexpectedly".to_string(), |s| s.to_string());
    let inside = if in_cluster.is_empty() {
        ""
    } else {
        " and answers from inside the cluster: the route works, the answer does not meet the expectation"
    };
    (
        "app".into(),
        format!("the app answered {status} through the gateway{inside}"),
    )
}

/// A failure that a push from istiod would fix is istiod's when istiod is not ready: the gateway
/// keeps serving the configuration it received last, as Envoy does, so nothing applied since
/// reaches it. The summary for hop `istiod` in that case.
async fn istiod_blame(cluster: Option<&Cluster>) -> Option<String> {
    let why = istiod_not_ready(cluster?).await?;
    Some(format!(
        "{why}: the gateway keeps the configuration istiod pushed last, so what was applied since has not reached it (kubectl -n istio-system logs deployment/istiod)"
    ))
}

/// Why istiod cannot push, from its Deployment as `meshloop doctor` reads it; None when it is
/// available, not there (a gateway configured otherwise) or cannot be read.
async fn istiod_not_ready(c: &Cluster) -> Option<String> {
    use k8s_openapi::api::apps::v1::Deployment;
    let api: kube::Api<Deployment> = kube::Api::namespaced(c.client.clone(), "istio-system");
    let get = tokio::time::timeout(std::time::Duration::from_secs(5), api.get_opt("istiod"));
    match get.await {
        Ok(Ok(Some(dep))) => {
            let available = dep.status.and_then(|s| s.available_replicas).unwrap_or(0);
            (available == 0)
                .then(|| "istiod is not ready (Deployment istio-system/istiod: 0 available)".into())
        }
        _ => None,
    }
}

fn dest_name(host: &str, subset: Option<&str>) -> String {
    match subset {
        Some(s) => format!("{host} subset {s}"),
        None => host.to_string(),
    }
}

fn ingress_pods(live: &Model) -> String {
    let ing = &live.ingress;
    let Some(svc) = live.service(&ing.namespace, &ing.service) else {
        return format!("Service {}/{} is not known", ing.namespace, ing.service);
    };
    let pods: Vec<String> = live
        .pods_of(svc, None)
        .filter(|w| w.is_pod)
        .map(|w| {
            format!(
                "{} {}",
                w.name.trim_start_matches("Pod "),
                match w.ready {
                    Some(true) => "ready",
                    Some(false) => "not ready",
                    None => "state unknown",
                }
            )
        })
        .collect();
    if pods.is_empty() {
        format!(
            "the ingress Service {}/{} selects no Pod: the gateway is not running",
            ing.namespace, ing.service
        )
    } else {
        format!("ingress Pods: {}", pods.join(", "))
    }
}

/// The rules of the VirtualServices for `host`, for a "no rule matches" diagnosis.
fn rules_of(live: &Model, host: &str) -> Vec<String> {
    let mut out = Vec::new();
    for vs in live.virtual_services.iter().filter(|v| {
        v.spec
            .hosts
            .iter()
            .any(|h| h.value.eq_ignore_ascii_case(host))
    }) {
        for (i, r) in vs.spec.http.iter().enumerate() {
            out.push(format!(
                "rule VirtualService {} http[{i}]{}  [{}:{}]",
                vs.meta.ns_name(),
                explain::describe_match(r),
                vs.meta.file,
                r.pos
            ));
        }
    }
    out
}

async fn in_cluster(
    live: &Model,
    cluster: &Cluster,
    probe: &Probe,
    dests: &[(String, Option<String>)],
) -> Vec<InClusterCheck> {
    let mut targets: Vec<(String, String)> = Vec::new();
    for (fqdn, subset) in dests {
        let Some((ns, name)) = service_of(fqdn) else {
            continue;
        };
        let Some(svc) = live.service(ns, name) else {
            continue;
        };
        let Some(port) = svc.ports.first() else {
            continue;
        };
        let port_ref = port.name.clone().unwrap_or_else(|| port.port.to_string());
        let t = (
            format!("Service {ns}/{name}:{port_ref}"),
            format!("/api/v1/namespaces/{ns}/services/{name}:{port_ref}/proxy"),
        );
        if !targets.contains(&t) {
            targets.push(t);
        }
        let Some(subset) = subset else { continue };
        let labels = live
            .rules_for(fqdn)
            .flat_map(|dr| dr.spec.subsets.iter())
            .find(|s| s.name.value == *subset)
            .and_then(|s| s.labels.as_ref().map(|l| l.value.clone()))
            .unwrap_or_default();
        for pod in live
            .pods_of(svc, Some(&labels))
            .filter(|w| w.is_pod && selects(&labels, &w.labels))
            .take(PODS_PER_SUBSET)
        {
            let pod_name = pod.name.trim_start_matches("Pod ");
            let target_port = match port.target_port.as_deref() {
                Some(t) if t.parse::<u32>().is_ok() => t.to_string(),
                Some(named) => pod
                    .container_ports
                    .iter()
                    .find(|(n, _)| n.as_deref() == Some(named))
                    .map_or(port.port.to_string(), |(_, p)| p.to_string()),
                None => port.port.to_string(),
            };
            targets.push((
                format!("Pod {ns}/{pod_name}:{target_port} (subset {subset})"),
                format!("/api/v1/namespaces/{ns}/pods/{pod_name}:{target_port}/proxy"),
            ));
        }
    }
    let checks = targets.into_iter().map(|(target, base)| async move {
        let (status, detail) = proxy_request(cluster, &base, probe).await;
        InClusterCheck {
            ok: status.is_some_and(|s| s < 500),
            target,
            status,
            detail,
        }
    });
    futures::future::join_all(checks).await
}

async fn proxy_request(cluster: &Cluster, base: &str, probe: &Probe) -> (Option<u16>, String) {
    let path = &probe.request.path;
    let mut b = http::Request::builder()
        .method(probe.request.method.as_str())
        .uri(format!("{base}{path}"));
    for (k, v) in &probe.request.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let body = probe.request.body.clone().unwrap_or_default().into_bytes();
    let Ok(req) = b.body(kube::client::Body::from(body)) else {
        return (None, "cannot build the request".into());
    };
    let sent =
        tokio::time::timeout(std::time::Duration::from_secs(5), cluster.client.send(req)).await;
    match sent {
        Err(_) => (None, "no answer within 5 s".into()),
        Ok(Err(e)) => (
            None,
            format!("the API server did not proxy the request: {e}"),
        ),
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
                .unwrap_or_default();
            // The API server's own errors are a Status object with a message.
            let text = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    (v["kind"] == "Status")
                        .then(|| v["message"].as_str().map(str::to_string))
                        .flatten()
                })
                .unwrap_or_else(|| snippet(&body));
            (
                Some(status),
                format!("{} {path}: {status} {text}", probe.request.method),
            )
        }
    }
}
