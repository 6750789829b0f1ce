//! `meshloop doctor`: is this environment ready for the dev loop?
//!
//! Every check runs, even when an earlier one failed (a developer fixing one problem wants to
//! see the next), and each failure comes with one line saying how to fix it, usually the
//! `dev/up.sh` step that does it. This module only reads the cluster and the sources.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::cluster::{Cluster, ClusterError, timed};
use crate::config::{Config, Ingress};
use crate::manifest::SourceObject;
use crate::manifest::istio::{self, GatewaySpec};

/// The CRDs the routing objects need, by name.
const ISTIO_CRDS: &[&str] = &[
    "gateways.networking.istio.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "serviceentries.networking.istio.io",
];

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to fix it, when it failed.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check. `cluster` is `Err` when no client could be built at all.
pub async fn run(
    config: &Config,
    cluster: Result<&Cluster, &ClusterError>,
    namespace: &str,
    gateways: &[SourceObject],
) -> Vec<Check> {
    let cluster = match cluster {
        Ok(c) => c,
        Err(e) => {
            let why = e.to_string();
            let mut out = vec![Check::fail(
                "cluster reachable",
                why.clone(),
                "create the cluster with dev/up.sh (or dev/localcluster start), or pass --kubeconfig/--context",
            )];
            for name in [
                "Istio CRDs established",
                "istiod ready",
                "ingress gateway address",
                "namespace labelled for injection",
                "gateway selectors match gateway Pods",
            ] {
                out.push(Check::fail(
                    name,
                    "not checked: no cluster",
                    "fix the cluster connection first",
                ));
            }
            return out;
        }
    };
    vec![
        reachable(cluster).await,
        crds(cluster).await,
        istiod(cluster).await,
        ingress(cluster, &config.ingress).await,
        injection(cluster, namespace).await,
        selectors(cluster, &config.ingress, gateways).await,
    ]
}

fn unreachable_fix() -> &'static str {
    "start the cluster (dev/up.sh, or dev/localcluster start) and check the kubeconfig context"
}

async fn reachable(c: &Cluster) -> Check {
    const NAME: &str = "cluster reachable";
    let ctx = c
        .context
        .clone()
        .map(|c| format!(", context {c}"))
        .unwrap_or_default();
    match c.ping().await {
        Ok(v) => Check::pass(NAME, format!("{}{ctx}, Kubernetes {v}", c.server)),
        Err(e) => Check::fail(NAME, format!("{}{ctx}: {e}", c.server), unreachable_fix()),
    }
}

async fn crds(c: &Cluster) -> Check {
    const NAME: &str = "Istio CRDs established";
    let api: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    let mut missing = Vec::new();
    for name in ISTIO_CRDS {
        match timed(api.get_opt(name)).await {
            Ok(Ok(Some(crd))) => {
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if !established {
                    missing.push(format!("{name} (not Established)"));
                }
            }
            Ok(Ok(None)) => missing.push(name.to_string()),
            Ok(Err(e)) => {
                return Check::fail(NAME, format!("cannot read CRDs: {e}"), unreachable_fix());
            }
            Err(e) => return Check::fail(NAME, e.to_string(), unreachable_fix()),
        }
    }
    if missing.is_empty() {
        Check::pass(
            NAME,
            format!("{} CRDs of networking.istio.io", ISTIO_CRDS.len()),
        )
    } else {
        Check::fail(
            NAME,
            format!("missing: {}", missing.join(", ")),
            "install Istio's base chart: dev/up.sh (helm upgrade --install istio-base istio/base -n istio-system)",
        )
    }
}

async fn istiod(c: &Cluster) -> Check {
    const NAME: &str = "istiod ready";
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "istio-system");
    match timed(api.get_opt("istiod")).await {
        Ok(Ok(Some(d))) => {
            let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
            if available > 0 {
                Check::pass(
                    NAME,
                    format!("Deployment istio-system/istiod: {available} available"),
                )
            } else {
                Check::fail(
                    NAME,
                    "Deployment istio-system/istiod has no available replica",
                    "see `kubectl -n istio-system describe deployment istiod`; re-run dev/up.sh",
                )
            }
        }
        Ok(Ok(None)) => Check::fail(
            NAME,
            "Deployment istio-system/istiod not found",
            "install istiod: dev/up.sh (helm upgrade --install istiod istio/istiod -n istio-system)",
        ),
        Ok(Err(e)) => Check::fail(NAME, e.to_string(), unreachable_fix()),
        Err(e) => Check::fail(NAME, e.to_string(), unreachable_fix()),
    }
}

async fn ingress(c: &Cluster, ing: &Ingress) -> Check {
    const NAME: &str = "ingress gateway address";
    let api: Api<Service> = Api::namespaced(c.client.clone(), &ing.namespace);
    let install = "install the gateway chart as release istio-ingress: dev/up.sh";
    let svc = match timed(api.get_opt(&ing.service)).await {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => {
            return Check::fail(
                NAME,
                format!("Service {}/{} not found", ing.namespace, ing.service),
                install,
            );
        }
        Ok(Err(e)) => return Check::fail(NAME, e.to_string(), unreachable_fix()),
        Err(e) => return Check::fail(NAME, e.to_string(), unreachable_fix()),
    };
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let Some(port) = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(ing.port.as_str()) || p.port.to_string() == ing.port)
    else {
        return Check::fail(
            NAME,
            format!(
                "Service {}/{} has no port named {}",
                ing.namespace, ing.service, ing.port
            ),
            "set ingress.port in meshloop.yaml to the gateway Service's HTTP port name",
        );
    };
    let lb = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
    if let Some(host) = lb {
        return Check::pass(
            NAME,
            format!("{host}:{} (LoadBalancer, port {})", port.port, ing.port),
        );
    }
    if let Some(np) = port.node_port {
        return Check::pass(
            NAME,
            format!(
                "127.0.0.1:{np} (NodePort of port {}; mapped to the host by kind)",
                ing.port
            ),
        );
    }
    if let Some(addr) = &ing.address {
        return Check::pass(NAME, format!("{addr} (ingress.address in meshloop.yaml)"));
    }
    Check::fail(
        NAME,
        format!(
            "Service {}/{} has no load balancer address and no NodePort",
            ing.namespace, ing.service
        ),
        "use the NodePort values of dev/istio-values.yaml (dev/up.sh), or set ingress.address in meshloop.yaml",
    )
}

async fn injection(c: &Cluster, namespace: &str) -> Check {
    const NAME: &str = "namespace labelled for injection";
    let api: Api<Namespace> = Api::all(c.client.clone());
    let fix =
        format!("kubectl label namespace {namespace} istio-injection=enabled (dev/up.sh does it)");
    match timed(api.get_opt(namespace)).await {
        Ok(Ok(Some(ns))) => {
            let labels = ns.metadata.labels.unwrap_or_default();
            if labels.get("istio-injection").map(String::as_str) == Some("enabled") {
                Check::pass(
                    NAME,
                    format!("namespace {namespace}: istio-injection=enabled"),
                )
            } else if let Some(rev) = labels.get("istio.io/rev") {
                Check::pass(NAME, format!("namespace {namespace}: istio.io/rev={rev}"))
            } else {
                Check::fail(
                    NAME,
                    format!(
                        "namespace {namespace} has no istio-injection=enabled label: its Pods get no sidecar"
                    ),
                    fix,
                )
            }
        }
        Ok(Ok(None)) => Check::fail(
            NAME,
            format!("namespace {namespace} not found"),
            format!("kubectl create namespace {namespace}; {fix}"),
        ),
        Ok(Err(e)) => Check::fail(NAME, e.to_string(), unreachable_fix()),
        Err(e) => Check::fail(NAME, e.to_string(), unreachable_fix()),
    }
}

/// The Pods the ingress Service selects (all of its namespace's when it selects none).
async fn ingress_pods(c: &Cluster, ing: &Ingress) -> Result<Vec<Pod>, String> {
    let svc_api: Api<Service> = Api::namespaced(c.client.clone(), &ing.namespace);
    let selector: Option<BTreeMap<String, String>> =
        match timed(svc_api.get_opt(&ing.service)).await {
            Ok(Ok(s)) => s.and_then(|s| s.spec).and_then(|s| s.selector),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
    let mut lp = ListParams::default();
    if let Some(sel) = &selector {
        let sel: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lp = lp.labels(&sel.join(","));
    }
    match timed(Api::<Pod>::namespaced(c.client.clone(), &ing.namespace).list(&lp)).await {
        Ok(Ok(l)) => Ok(l.items),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// How many Istio Gateways select one of the Pods, and a line for each that selects none.
fn selecting(
    gateways: &[SourceObject],
    pod_labels: &[BTreeMap<String, String>],
) -> (usize, Vec<String>) {
    let mut bad = Vec::new();
    let mut good = 0;
    for g in gateways
        .iter()
        .filter(|o| o.key.kind == "Gateway" && o.key.group == istio::NETWORKING)
    {
        let Ok(spec) = istio::spec::<GatewaySpec>(&g.node) else {
            continue;
        };
        let sel = spec.selector.map(|s| s.value).unwrap_or_default();
        if pod_labels
            .iter()
            .any(|l| sel.iter().all(|(k, v)| l.get(k) == Some(v)))
        {
            good += 1;
        } else {
            let pos = spec_selector_pos(g);
            let want: Vec<String> = sel.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            bad.push(format!(
                "Gateway {} ({}:{}) selects {{{}}}",
                g.key.name,
                g.origin.file,
                pos,
                want.join(", ")
            ));
        }
    }
    (good, bad)
}

/// The gateway Pods are those of the ingress Service's selector (or, without a Service, every
/// Pod in the ingress namespace); each Gateway of the sources must select at least one.
async fn selectors(c: &Cluster, ing: &Ingress, gateways: &[SourceObject]) -> Check {
    const NAME: &str = "gateway selectors match gateway Pods";
    let pods = match ingress_pods(c, ing).await {
        Ok(p) => p,
        Err(e) => return Check::fail(NAME, e, unreachable_fix()),
    };
    if pods.is_empty() {
        return Check::fail(
            NAME,
            format!("no gateway Pods in namespace {}", ing.namespace),
            "install the gateway chart as release istio-ingress: dev/up.sh",
        );
    }
    let pod_labels: Vec<BTreeMap<String, String>> = pods
        .iter()
        .map(|p| p.metadata.labels.clone().unwrap_or_default())
        .collect();
    let (good, bad) = selecting(gateways, &pod_labels);
    if bad.is_empty() {
        return Check::pass(
            NAME,
            format!("{good} Gateway(s) select the {} gateway Pod(s)", pods.len()),
        );
    }
    let labels: Vec<String> = pod_labels[0]
        .iter()
        .filter(|(k, _)| k.as_str() == "istio" || k.starts_with("app"))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    Check::fail(
        NAME,
        format!(
            "{}; the gateway Pods have {{{}}}",
            bad.join("; "),
            labels.join(", ")
        ),
        "set the Gateway's selector to the Pods' label (the Helm gateway chart labels release istio-ingress `istio: ingress`, not `istio: ingressgateway`)",
    )
}

fn spec_selector_pos(g: &SourceObject) -> crate::manifest::yaml::Pos {
    use crate::manifest::yaml::Seg;
    g.locate(&[Seg::Key("spec".into()), Seg::Key("selector".into())])
}

/// Renders the checks for a terminal.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("     fix: {fix}\n"));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        out.push_str("all checks passed\n");
    } else {
        out.push_str(&format!("{failed} of {} checks failed\n", checks.len()));
    }
    out
}
