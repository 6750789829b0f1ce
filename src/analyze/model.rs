//! The routing model: the Istio objects meshloop owns, read into typed views, plus the
//! workloads it can see (Services, Pods, endpoints) from the same sources and, when a cluster
//! answers, from live facts.
//!
//! The model records what is *known*, not only what exists: offline, a namespace whose
//! Services appear in no input is unknown, and analyzers that would otherwise report "no such
//! Service" stay silent there (istioctl's offline mode reports those as errors, which is why
//! its output on plain files is mostly noise). A Deployment's Pod template counts as a Pod with
//! its labels, so subset and selector checks work before anything is deployed.
//!
//! Host names follow Istio: a name without a dot is short and means
//! `<name>.<namespace of the object>.svc.cluster.local`; anything with a dot is taken as is.

pub mod gatewayapi;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value as J;

use super::findings::{Finding, Severity};
use crate::config::Ingress;
use crate::manifest::istio::{
    DestinationRuleSpec, GatewaySpec, NETWORKING, ServiceEntrySpec, VirtualServiceSpec,
};
use crate::manifest::yaml::{Loc, Pos, Seg};
use crate::manifest::{ObjectKey, SourceObject};

/// The cluster domain Istio assumes unless told otherwise.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// Where an object was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub key: ObjectKey,
    pub file: String,
    pub pos: Pos,
    /// The `spec:` key, where findings about a missing spec field point.
    pub spec_pos: Pos,
}

impl Meta {
    pub fn of(obj: &SourceObject) -> Meta {
        Meta {
            key: obj.key.clone(),
            file: obj.origin.file.clone(),
            pos: obj.origin.pos,
            spec_pos: obj.locate(&[Seg::Key("spec".into())]),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.key.namespace
    }

    pub fn name(&self) -> &str {
        &self.key.name
    }

    /// `dev/goapp`.
    pub fn ns_name(&self) -> String {
        format!("{}/{}", self.key.namespace, self.key.name)
    }

    /// Whether the object is a Gateway API one (gateway.networking.k8s.io), or was
    /// translated from one.
    pub fn is_gateway_api(&self) -> bool {
        self.key.group == crate::manifest::gatewayapi::GATEWAY_API
    }
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub meta: Meta,
    pub spec: GatewaySpec,
    /// For a Gateway translated from a Gateway API listener: the Gateway's own name and the
    /// listener's (`meta` names the translation, one per listener).
    pub listener_of: Option<(String, String)>,
}

/// How a VirtualService names a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayTarget {
    /// The reserved name `mesh`: the sidecars.
    Mesh,
    Named {
        namespace: String,
        name: String,
    },
}

#[derive(Debug, Clone)]
pub struct GatewayRef {
    pub raw: Loc<String>,
    pub target: GatewayTarget,
    /// Written `name.namespace` (or longer): Istio's legacy form, read as namespace/name.
    pub legacy_dotted: bool,
}

impl GatewayRef {
    /// Resolves a reference the way istiod does: `ns/name`, `./name` (own namespace), bare
    /// `name` (own namespace), and the legacy `name.ns[.svc...]` that reads as `ns/name`.
    pub fn parse(raw: &Loc<String>, own_ns: &str) -> GatewayRef {
        let s = raw.value.as_str();
        let mut legacy_dotted = false;
        let target = if s == "mesh" {
            GatewayTarget::Mesh
        } else if let Some((ns, name)) = s.split_once('/') {
            let ns = if ns == "." { own_ns } else { ns };
            GatewayTarget::Named {
                namespace: ns.to_string(),
                name: name.to_string(),
            }
        } else if let Some((name, rest)) = s.split_once('.') {
            legacy_dotted = true;
            let ns = rest.split('.').next().unwrap_or_default();
            GatewayTarget::Named {
                namespace: ns.to_string(),
                name: name.to_string(),
            }
        } else {
            GatewayTarget::Named {
                namespace: own_ns.to_string(),
                name: s.to_string(),
            }
        };
        GatewayRef {
            raw: raw.clone(),
            target,
            legacy_dotted,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VirtualService {
    pub meta: Meta,
    pub spec: VirtualServiceSpec,
    /// The gateways as resolved; `gateways:` omitted means `mesh` only.
    pub gateways: Vec<GatewayRef>,
    /// The hosts as Istio reads them (short names expanded), same order as `spec.hosts`.
    pub hosts: Vec<String>,
    /// For a VirtualService translated from HTTPRoutes, where each rule of `spec.http` was
    /// written (rules of several routes merge on one listener and host): the route and the
    /// index of the rule in its `rules`; empty otherwise.
    pub rule_sources: Vec<(Meta, usize)>,
}

impl VirtualService {
    /// The view of a VirtualService written in namespace `ns`: its gateways resolved
    /// (omitted means `mesh` only) and its hosts expanded.
    fn written(meta: Meta, spec: VirtualServiceSpec, ns: &str) -> VirtualService {
        let gateways = match &spec.gateways {
            Some(list) if !list.value.is_empty() => list
                .value
                .iter()
                .map(|g| GatewayRef::parse(g, ns))
                .collect(),
            _ => vec![GatewayRef {
                raw: Loc {
                    pos: Pos::default(),
                    value: "mesh".into(),
                },
                target: GatewayTarget::Mesh,
                legacy_dotted: false,
            }],
        };
        let hosts = spec.hosts.iter().map(|h| fqdn(h, ns)).collect();
        VirtualService {
            meta,
            spec,
            gateways,
            hosts,
            rule_sources: Vec::new(),
        }
    }

    /// The object rule `i` of `spec.http` was written in.
    pub fn rule_meta(&self, i: usize) -> &Meta {
        self.rule_origin(i).0
    }

    /// The object rule `i` of `spec.http` was written in and its index there (a translated
    /// rule's index in its route's `rules`).
    pub fn rule_origin(&self, i: usize) -> (&Meta, usize) {
        self.rule_sources
            .get(i)
            .map_or((&self.meta, i), |(meta, at)| (meta, *at))
    }

    pub fn binds_mesh(&self) -> bool {
        self.gateways
            .iter()
            .any(|g| g.target == GatewayTarget::Mesh)
    }

    /// Whether this VirtualService names the Gateway `ns/name`.
    pub fn binds(&self, gw: &Meta) -> bool {
        self.gateways.iter().any(|g| {
            g.target
                == GatewayTarget::Named {
                    namespace: gw.key.namespace.clone(),
                    name: gw.key.name.clone(),
                }
        })
    }
}

#[derive(Debug, Clone)]
pub struct DestinationRule {
    pub meta: Meta,
    pub spec: DestinationRuleSpec,
    /// `spec.host` as Istio reads it.
    pub host: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServiceEntry {
    pub meta: Meta,
    pub spec: ServiceEntrySpec,
}

/// A Kubernetes Service, from the sources or the cluster.
#[derive(Debug, Clone)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub ports: Vec<ServicePort>,
    /// `None` for a Service without selector (endpoints managed by hand).
    pub selector: Option<BTreeMap<String, String>>,
    /// Where it was written, when it came from the sources.
    pub origin: Option<Meta>,
    pub live: bool,
}

#[derive(Debug, Clone)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u32,
    /// The target port as written: a number or a container port name.
    pub target_port: Option<String>,
    pub app_protocol: Option<String>,
    pub pos: Pos,
}

impl Service {
    pub fn fqdn(&self) -> String {
        format!("{}.{}.{CLUSTER_DOMAIN}", self.name, self.namespace)
    }
}

/// Something that runs Pods with known labels: a Pod, or a Pod template of a Deployment (or
/// StatefulSet, DaemonSet, ReplicaSet, Job) in the sources or on the cluster.
#[derive(Debug, Clone)]
pub struct Workload {
    pub namespace: String,
    /// `Deployment goapp-v1` or `Pod goapp-v1-abc12`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub live: bool,
    /// A live Pod (not a template).
    pub is_pod: bool,
    /// Live Pods only: Ready condition.
    pub ready: Option<bool>,
    /// Live Pods only: an `istio-proxy` container or the injector's status annotation.
    pub has_proxy: Option<bool>,
    pub container_ports: Vec<(Option<String>, u32)>,
    /// How many Pods it stands for: `spec.replicas` of a Deployment, StatefulSet or
    /// ReplicaSet (default 1); 1 for a Pod or another controller.
    pub replicas: u32,
}

impl Workload {
    /// Whether its Pods have the Service port's target: a number always (Kubernetes does not
    /// check it), a name only when a container port carries it; the EndpointSlice controller
    /// leaves a Pod without the named port out of that port's endpoints.
    pub fn serves(&self, port: &ServicePort) -> bool {
        match &port.target_port {
            Some(t) if t.parse::<u32>().is_err() => self
                .container_ports
                .iter()
                .any(|(n, _)| n.as_deref() == Some(t.as_str())),
            _ => true,
        }
    }

    /// Istio gateway deployments: the Helm chart and istioctl both set an `istio` label (and
    /// the chart the `inject.istio.io/templates: gateway` annotation); istiod carries
    /// `istio: pilot`, which is not a gateway.
    pub fn is_gateway(&self) -> bool {
        let label = self.labels.get("istio").is_some_and(|v| v != "pilot");
        let injected = self
            .annotations
            .get("inject.istio.io/templates")
            .is_some_and(|t| t.contains("gateway"));
        label || injected
    }
}

/// Endpoints of one Service, from its EndpointSlices (live only).
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub namespace: String,
    pub service: String,
    /// Ready endpoints: address and the Pod behind it, when named.
    pub ready: Vec<(String, Option<String>)>,
    pub not_ready: usize,
}

#[derive(Debug, Clone)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// What the cluster told us, already reduced to what analysis uses. Built by
/// [`super::live::fetch`], or from objects given as JSON (tests, the daemon's watches).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub services: Vec<Service>,
    pub workloads: Vec<Workload>,
    pub endpoints: Vec<Endpoints>,
    pub namespaces: Vec<NamespaceInfo>,
    /// Secrets by namespace and name (names only; contents are never read).
    pub secrets: BTreeSet<(String, String)>,
}

impl Facts {
    /// Reads Kubernetes objects (Service, Pod, Deployment and other workloads, EndpointSlice,
    /// Namespace, Secret) given as JSON; other kinds are ignored.
    pub fn from_json<'a>(objects: impl IntoIterator<Item = &'a J>) -> Facts {
        let mut facts = Facts::default();
        for obj in objects {
            let kind = obj["kind"].as_str().unwrap_or_default();
            let ns = str_at(obj, &["metadata", "namespace"]).unwrap_or("default");
            let name = str_at(obj, &["metadata", "name"]).unwrap_or_default();
            match kind {
                "Service" => facts.services.extend(service_from_json(obj, None, true)),
                "EndpointSlice" => facts.endpoints.extend(endpoints_from_json(obj)),
                "Namespace" => facts.namespaces.push(NamespaceInfo {
                    name: name.to_string(),
                    labels: map_at(obj, &["metadata", "labels"]),
                }),
                "Secret" => {
                    facts.secrets.insert((ns.to_string(), name.to_string()));
                }
                _ => facts.workloads.extend(workload_from_json(obj, true)),
            }
        }
        facts
    }
}

fn str_at<'a>(v: &'a J, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn map_at(v: &J, path: &[&str]) -> BTreeMap<String, String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(J::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        J::String(s) => s.clone(),
                        J::Null => return None,
                        other => other.to_string(),
                    };
                    Some((k.clone(), v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Service from its JSON; `origin` is where it was written when it came from the sources.
pub fn service_from_json(v: &J, origin: Option<&SourceObject>, live: bool) -> Option<Service> {
    let name = str_at(v, &["metadata", "name"])?;
    let namespace = str_at(v, &["metadata", "namespace"]).unwrap_or("default");
    let ports = v["spec"]["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let port = u32::try_from(p["port"].as_u64()?).ok()?;
                    let pos = origin
                        .map(|o| {
                            let field = if p.get("name").is_some() {
                                "name"
                            } else {
                                "port"
                            };
                            o.locate(&[
                                Seg::Key("spec".into()),
                                Seg::Key("ports".into()),
                                Seg::Index(i),
                                Seg::Key(field.into()),
                            ])
                        })
                        .unwrap_or_default();
                    Some(ServicePort {
                        name: p["name"].as_str().map(str::to_string),
                        port,
                        target_port: match &p["targetPort"] {
                            J::Null => None,
                            J::String(s) => Some(s.clone()),
                            other => Some(other.to_string()),
                        },
                        app_protocol: p["appProtocol"].as_str().map(str::to_string),
                        pos,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let selector = v["spec"]
        .get("selector")
        .filter(|s| s.is_object())
        .map(|_| map_at(v, &["spec", "selector"]));
    Some(Service {
        namespace: namespace.to_string(),
        name: name.to_string(),
        ports,
        selector,
        origin: origin.map(Meta::of),
        live,
    })
}

/// The Pods a workload object stands for: a Pod itself, or the template of a controller.
pub fn workload_from_json(v: &J, live: bool) -> Option<Workload> {
    let kind = v["kind"].as_str()?;
    let name = str_at(v, &["metadata", "name"])?;
    let namespace = str_at(v, &["metadata", "namespace"]).unwrap_or("default");
    let (meta, spec, is_pod) = pod_template(v, kind)?;
    // A live ReplicaSet duplicates its Deployment's template and the Pods; skip it.
    if live && kind == "ReplicaSet" {
        return None;
    }
    let labels = map_at(meta, &["labels"]);
    let annotations = map_at(meta, &["annotations"]);
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let (ready, has_proxy) = if is_pod && live {
        pod_status(v, spec, &containers, &annotations)
    } else {
        (None, None)
    };
    Some(Workload {
        namespace: namespace.to_string(),
        name: format!("{kind} {name}"),
        labels,
        annotations,
        live,
        is_pod: is_pod && live,
        ready,
        has_proxy,
        container_ports: container_ports(&containers),
        replicas: replicas(v, kind),
    })
}

/// The Pod metadata and spec a workload object of `kind` carries, and whether it is a Pod
/// itself; `None` for a kind that runs no Pods.
fn pod_template<'a>(v: &'a J, kind: &str) -> Option<(&'a J, &'a J, bool)> {
    match kind {
        "Pod" => Some((&v["metadata"], &v["spec"], true)),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some((
            &v["spec"]["template"]["metadata"],
            &v["spec"]["template"]["spec"],
            false,
        )),
        "CronJob" => Some((
            &v["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
            &v["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            false,
        )),
        _ => None,
    }
}

/// How many Pods a workload asks for (1 for the kinds without `replicas`).
fn replicas(v: &J, kind: &str) -> u32 {
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" => v["spec"]["replicas"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
        _ => 1,
    }
}

/// The declared container ports, with their names.
fn container_ports(containers: &[J]) -> Vec<(Option<String>, u32)> {
    containers
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| {
            Some((
                p["name"].as_str().map(str::to_string),
                u32::try_from(p["containerPort"].as_u64()?).ok()?,
            ))
        })
        .collect()
}

/// Of a live Pod: whether it is Ready, and whether it runs the sidecar proxy.
fn pod_status(
    v: &J,
    spec: &J,
    containers: &[J],
    annotations: &BTreeMap<String, String>,
) -> (Option<bool>, Option<bool>) {
    let ready = v["status"]["conditions"].as_array().map(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    let proxy = containers.iter().any(|c| c["name"] == "istio-proxy")
        || spec["initContainers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == "istio-proxy"))
        || annotations.contains_key("sidecar.istio.io/status");
    (Some(ready.unwrap_or(false)), Some(proxy))
}

fn endpoints_from_json(v: &J) -> Option<Endpoints> {
    let service = str_at(v, &["metadata", "labels", "kubernetes.io/service-name"])?;
    let namespace = str_at(v, &["metadata", "namespace"]).unwrap_or("default");
    let mut out = Endpoints {
        namespace: namespace.to_string(),
        service: service.to_string(),
        ..Endpoints::default()
    };
    for ep in v["endpoints"].as_array().into_iter().flatten() {
        // An absent `ready` condition means ready (EndpointSlice API contract).
        let ready = ep["conditions"]["ready"].as_bool().unwrap_or(true);
        let pod = (ep["targetRef"]["kind"] == "Pod")
            .then(|| ep["targetRef"]["name"].as_str().map(str::to_string))
            .flatten();
        for addr in ep["addresses"].as_array().into_iter().flatten() {
            if ready {
                out.ready
                    .push((addr.as_str().unwrap_or_default().to_string(), pod.clone()));
            } else {
                out.not_ready += 1;
            }
        }
    }
    Some(out)
}

/// Istio's reading of a host name written in an object of namespace `ns`.
pub fn fqdn(host: &str, ns: &str) -> String {
    if host == "*" || host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{ns}.{CLUSTER_DOMAIN}")
    }
}

/// `name.ns.svc.cluster.local` → (ns, name).
pub fn service_of(host: &str) -> Option<(&str, &str)> {
    let rest = host.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?;
    let (name, ns) = rest.split_once('.')?;
    (!ns.contains('.')).then_some((ns, name))
}

/// Whether `pattern` (which may be `*` or `*.suffix`) covers `host` (which may itself be a
/// wildcard: `*.a.com` covers `*.b.a.com`).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    if p == "*" || p == h {
        return true;
    }
    match p.strip_prefix('*') {
        Some(suffix) => h.ends_with(suffix) && h.len() > suffix.len(),
        None => false,
    }
}

/// Whether two host patterns have a name in common (how Istio binds a VirtualService host to
/// a Gateway server host).
pub fn hosts_intersect(a: &str, b: &str) -> bool {
    host_matches(a, b) || host_matches(b, a)
}

/// Whether every label of `selector` is on `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `a=b, c=d`.
pub fn show_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One Gateway server host `[ns/]dnsName`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHost {
    /// `*` (any namespace), `.` (the Gateway's own), or a namespace.
    pub namespace: String,
    pub host: String,
}

impl ServerHost {
    pub fn parse(s: &str) -> ServerHost {
        match s.split_once('/') {
            Some((ns, host)) => ServerHost {
                namespace: ns.to_string(),
                host: host.to_string(),
            },
            None => ServerHost {
                namespace: "*".into(),
                host: s.to_string(),
            },
        }
    }

    /// Whether a VirtualService in `vs_ns` may bind to this host of a Gateway in `gw_ns`.
    pub fn admits_namespace(&self, vs_ns: &str, gw_ns: &str) -> bool {
        match self.namespace.as_str() {
            "*" => true,
            "." => vs_ns == gw_ns,
            ns => ns == vs_ns,
        }
    }
}

/// The whole picture analyzers and `explain` work on.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub gateways: Vec<Gateway>,
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub service_entries: Vec<ServiceEntry>,
    pub services: Vec<Service>,
    pub workloads: Vec<Workload>,
    pub endpoints: Vec<Endpoints>,
    pub namespaces: Vec<NamespaceInfo>,
    pub secrets: BTreeSet<(String, String)>,
    /// True when live facts were given: every namespace's Services and Pods are known.
    pub live: bool,
    pub ingress: Ingress,
    /// Objects whose typed view could not be read (reported as ML0002).
    pub problems: Vec<Finding>,
    /// The Gateway API objects as written, and what translating them decided; their
    /// listeners and routes are also in `gateways` and `virtual_services`, translated.
    pub gateway_api: gatewayapi::GatewayApi,
    /// Namespaces with at least one Service (or workload) in the sources.
    service_ns: BTreeSet<String>,
    workload_ns: BTreeSet<String>,
    /// Where each Service is in `services`, by namespace and name: a route's every backend
    /// is looked up, and a thousand routes over two thousand Services must not scan.
    service_at: HashMap<(String, String), usize>,
}

impl Model {
    /// Builds the model from owned objects, the non-owned objects of the same sources
    /// (workloads), and live facts when a cluster answered.
    pub fn build(
        objects: &[SourceObject],
        others: &[SourceObject],
        facts: Option<&Facts>,
        ingress: &Ingress,
    ) -> Model {
        let mut m = Model {
            ingress: ingress.clone(),
            live: facts.is_some(),
            ..Model::default()
        };
        for obj in objects {
            if obj.key.group == crate::manifest::gatewayapi::GATEWAY_API {
                gatewayapi::read(&mut m, obj);
            } else if obj.key.group == NETWORKING {
                m.read_istio(obj);
            }
        }
        for obj in others {
            m.read_other(obj);
        }
        if let Some(f) = facts {
            m.add_facts(f);
        }
        gatewayapi::translate(&mut m);
        m
    }

    /// Reads one Istio networking object into its typed view; an object whose spec cannot
    /// be read becomes a problem (ML0002) instead.
    fn read_istio(&mut self, obj: &SourceObject) {
        let meta = Meta::of(obj);
        let ns = obj.key.namespace.as_str();
        let read = match obj.key.kind.as_str() {
            "Gateway" => obj.spec::<GatewaySpec>().map(|spec| {
                self.gateways.push(Gateway {
                    meta: meta.clone(),
                    spec,
                    listener_of: None,
                })
            }),
            "VirtualService" => obj.spec::<VirtualServiceSpec>().map(|spec| {
                self.virtual_services
                    .push(VirtualService::written(meta.clone(), spec, ns))
            }),
            "DestinationRule" => obj.spec::<DestinationRuleSpec>().map(|spec| {
                let host = spec.host.as_ref().map(|h| fqdn(h, ns));
                self.destination_rules.push(DestinationRule {
                    meta: meta.clone(),
                    spec,
                    host,
                })
            }),
            "ServiceEntry" => obj.spec::<ServiceEntrySpec>().map(|spec| {
                self.service_entries.push(ServiceEntry {
                    meta: meta.clone(),
                    spec,
                })
            }),
            _ => Ok(()),
        };
        if let Err(e) = read {
            self.problems.push(Finding::new(
                "ML0002",
                Severity::Error,
                &meta,
                e.pos,
                e.to_string(),
                "fix the field's type; see the Istio reference for this kind",
            ));
        }
    }

    /// Reads one non-owned object of the sources: a Service, a workload, or what the
    /// Gateway API translation needs (GatewayClasses, Namespaces).
    fn read_other(&mut self, obj: &SourceObject) {
        match obj.key.kind.as_str() {
            "GatewayClass" | "Namespace" => gatewayapi::read(self, obj),
            "Service" if obj.key.group.is_empty() => {
                if let Some(s) = service_from_json(&obj.body, Some(obj), false) {
                    self.service_ns.insert(s.namespace.clone());
                    self.push_service(s);
                }
            }
            _ => {
                if let Some(w) = workload_from_json(&obj.body, false) {
                    self.workload_ns.insert(w.namespace.clone());
                    self.workloads.push(w);
                }
            }
        }
    }

    /// Adds the live facts. Sources come first: the desired definition of a Service wins
    /// over the deployed one.
    fn add_facts(&mut self, f: &Facts) {
        for s in &f.services {
            if self.service(&s.namespace, &s.name).is_none() {
                self.push_service(s.clone());
            }
        }
        self.workloads.extend(f.workloads.iter().cloned());
        self.endpoints = f.endpoints.clone();
        self.namespaces = f.namespaces.clone();
        self.secrets = f.secrets.clone();
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<&Service> {
        let at = self.service_at.get(&(ns.to_string(), name.to_string()))?;
        self.services.get(*at)
    }

    /// Adds a Service; the first of a namespace and name is the one [`Model::service`] finds.
    fn push_service(&mut self, s: Service) {
        let key = (s.namespace.clone(), s.name.clone());
        self.service_at.entry(key).or_insert(self.services.len());
        self.services.push(s);
    }

    /// The Service a fully qualified host names, if it is a cluster-local name.
    pub fn service_for_host(&self, host: &str) -> Option<&Service> {
        let (ns, name) = service_of(host)?;
        self.service(ns, name)
    }

    /// Whether the Services of `ns` are known (live, or some in the sources).
    pub fn services_known(&self, ns: &str) -> bool {
        self.live || self.service_ns.contains(ns)
    }

    /// Whether the Pods of `ns` are known (live, or some workload in the sources).
    pub fn pods_known(&self, ns: &str) -> bool {
        self.live || self.workload_ns.contains(ns)
    }

    /// Whether a ServiceEntry declares `host`.
    pub fn service_entry_for(&self, host: &str) -> Option<&ServiceEntry> {
        self.service_entries
            .iter()
            .find(|se| se.spec.hosts.iter().any(|h| host_matches(h, host)))
    }

    /// Workloads that a Service's selector picks, further narrowed by `extra` labels.
    pub fn pods_of<'a>(
        &'a self,
        svc: &'a Service,
        extra: Option<&'a BTreeMap<String, String>>,
    ) -> impl Iterator<Item = &'a Workload> + 'a {
        self.workloads.iter().filter(move |w| {
            w.namespace == svc.namespace
                && svc.selector.as_ref().is_some_and(|s| selects(s, &w.labels))
                && extra.is_none_or(|e| selects(e, &w.labels))
        })
    }

    pub fn endpoints_of(&self, svc: &Service) -> Option<&Endpoints> {
        self.endpoints
            .iter()
            .find(|e| e.namespace == svc.namespace && e.service == svc.name)
    }

    pub fn gateway(&self, ns: &str, name: &str) -> Option<&Gateway> {
        self.gateways
            .iter()
            .find(|g| g.meta.namespace() == ns && g.meta.name() == name)
    }

    /// DestinationRules whose host is `host`.
    pub fn rules_for<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a DestinationRule> {
        self.destination_rules
            .iter()
            .filter(move |d| d.host.as_deref() == Some(host))
    }

    /// The label the Helm `gateway` chart puts on the Pods of the configured ingress:
    /// `istio: <release without "istio-">` (release `istio-ingress` gives `istio: ingress`).
    pub fn expected_ingress_label(&self) -> (String, String) {
        let release = &self.ingress.service;
        let value = release.strip_prefix("istio-").unwrap_or(release);
        ("istio".into(), value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> Loc<String> {
        Loc {
            pos: Pos::default(),
            value: s.into(),
        }
    }

    #[test]
    fn gateway_reference_forms() {
        let named = |ns: &str, n: &str| GatewayTarget::Named {
            namespace: ns.into(),
            name: n.into(),
        };
        assert_eq!(
            GatewayRef::parse(&loc("gw"), "dev").target,
            named("dev", "gw")
        );
        assert_eq!(
            GatewayRef::parse(&loc("./gw"), "dev").target,
            named("dev", "gw")
        );
        assert_eq!(
            GatewayRef::parse(&loc("istio-ingress/gw"), "dev").target,
            named("istio-ingress", "gw")
        );
        let legacy = GatewayRef::parse(&loc("gw.other.svc.cluster.local"), "dev");
        assert_eq!(legacy.target, named("other", "gw"));
        assert!(legacy.legacy_dotted);
        assert_eq!(
            GatewayRef::parse(&loc("mesh"), "dev").target,
            GatewayTarget::Mesh
        );
    }

    #[test]
    fn short_hosts_expand_only_without_dots() {
        assert_eq!(fqdn("reviews", "dev"), "reviews.dev.svc.cluster.local");
        assert_eq!(fqdn("reviews.other", "dev"), "reviews.other");
        assert_eq!(fqdn("*", "dev"), "*");
        assert_eq!(
            service_of("reviews.dev.svc.cluster.local"),
            Some(("dev", "reviews"))
        );
        assert_eq!(service_of("reviews.other"), None);
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("*", "anything"));
        assert!(hosts_intersect("a.example.com", "*.example.com"));
        assert!(hosts_intersect("*.example.com", "*.b.example.com"));
        assert!(!hosts_intersect("goapp.dev", "other.dev"));
    }
}
