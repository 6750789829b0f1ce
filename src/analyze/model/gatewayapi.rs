//! The Gateway API side of the model: Gateways, HTTPRoutes, GRPCRoutes and ReferenceGrants
//! (gateway.networking.k8s.io) read as written, then translated into the same Gateway and
//! VirtualService model the Istio objects use, the way istiod translates them
//! (`pilot/pkg/config/kube/gateway`), so `explain`, `verify` and the route checks walk one
//! model.
//!
//! The translation follows Istio, not only the spec:
//! - each listener of a Gateway of class `istio` becomes one Gateway with one server, named
//!   `<gateway> listener <name>`, selecting the Pods istiod deploys for it
//!   (`gateway.networking.k8s.io/gateway-name: <gateway>`);
//! - a route attaches to the listeners its parentRefs name (sectionName, port), that admit
//!   its namespace and kind (allowedRoutes) and share a hostname with it; what each parentRef
//!   decided is kept in [`RouteParent`] for the checks;
//! - each (listener, hostname) gets one VirtualService holding the rules of every route
//!   attached there, one rule per match, ordered as istiod orders them: routes by age, then
//!   namespace/name, then by match (exact path, longest prefix, regex below any prefix,
//!   method, most headers, most query parameters);
//! - PathPrefix compares whole path elements; a rule without backends or whose weights are
//!   all zero answers 500; an invalid backendRef (not found, no ReferenceGrant, unknown kind)
//!   keeps its share and answers 500.

mod rules;

use std::collections::BTreeMap;

pub use rules::{BackendProblem, backend_problem};

use super::{
    Gateway, GatewayRef, GatewayTarget, Meta, Model, VirtualService, fqdn, host_matches, selects,
};
use crate::analyze::findings::{Finding, Severity};
use crate::manifest::SourceObject;
use crate::manifest::gatewayapi::{
    self as api, BackendRef, GatewayClassSpec, GrpcRouteSpec, HttpRouteMatch, HttpRouteRule,
    HttpRouteSpec, Listener, ParentRef, ReferenceGrantSpec,
};
use crate::manifest::istio;
use crate::manifest::yaml::{Loc, Pos, ViewError};

/// The class istiod creates and serves, and its controller name.
pub const ISTIO_CLASS: &str = "istio";
pub const ISTIO_CONTROLLER: &str = "istio.io/gateway-controller";
/// The label istiod puts on the Deployment and Service it creates for a Gateway.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

#[derive(Debug, Clone)]
pub struct K8sGateway {
    pub meta: Meta,
    pub spec: api::GatewaySpec,
}

impl K8sGateway {
    pub fn class(&self) -> &str {
        self.spec
            .gateway_class_name
            .as_ref()
            .map_or("", |c| c.value.as_str())
    }

    /// The Service istiod deploys for this Gateway: `<name>-<class>`, unless
    /// `spec.addresses` names one by hostname (manual deployment).
    pub fn service_name(&self) -> String {
        format!("{}-{}", self.meta.name(), self.class())
    }
}

/// An HTTPRoute, or a GRPCRoute read as the HTTPRoute istiod makes of it.
#[derive(Debug, Clone)]
pub struct Route {
    pub meta: Meta,
    pub spec: HttpRouteSpec,
    pub created: Option<String>,
    /// What each parentRef decided, in `spec.parentRefs` order.
    pub parents: Vec<RouteParent>,
}

/// Where one parentRef of a route ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// Attached to these listeners (internal Gateway names), with these hostnames each.
    Accepted(Vec<(String, Vec<String>)>),
    /// The Gateway is not among the known objects (Istio writes no status at all).
    GatewayNotFound { known: bool },
    /// The Gateway's class is not Istio's: istiod ignores it.
    NotIstio(String),
    /// sectionName or port matches no listener (`NoMatchingParent`).
    NoMatchingParent(String),
    /// No listener admits the route's namespace or kind (`NotAllowedByListeners`).
    NotAllowed(String),
    /// No hostname in common with the listeners (`NoMatchingListenerHostname`).
    NoMatchingHostname(String),
    /// A parentRef of a kind other than Gateway (a Service: the mesh), not analyzed.
    Other,
}

#[derive(Debug, Clone)]
pub struct RouteParent {
    pub pos: Pos,
    pub namespace: String,
    pub name: String,
    pub attachment: Attachment,
}

#[derive(Debug, Clone)]
pub struct ReferenceGrant {
    pub meta: Meta,
    pub spec: ReferenceGrantSpec,
}

/// The Gateway API objects of the model, as written.
#[derive(Debug, Clone, Default)]
pub struct GatewayApi {
    pub gateways: Vec<K8sGateway>,
    pub routes: Vec<Route>,
    pub grants: Vec<ReferenceGrant>,
    /// GatewayClass name → controllerName, from the sources.
    pub classes: BTreeMap<String, String>,
    /// Namespace labels from the sources (live facts, when given, win).
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// Reads one Gateway API object into the model (translation comes later, in [`translate`]).
pub fn read(m: &mut Model, obj: &SourceObject) {
    let meta = Meta::of(obj);
    let failed = |e: ViewError| {
        Finding::new(
            "ML0002",
            Severity::Error,
            &meta,
            e.pos,
            e.to_string(),
            "fix the field's type; see the Gateway API reference for this kind",
        )
    };
    let created = obj.body["metadata"]["creationTimestamp"]
        .as_str()
        .map(str::to_string);
    let g = &mut m.gateway_api;
    let result = match obj.key.kind.as_str() {
        "Gateway" => obj.spec::<api::GatewaySpec>().map(|spec| {
            g.gateways.push(K8sGateway {
                meta: meta.clone(),
                spec,
            })
        }),
        "HTTPRoute" => obj.spec::<HttpRouteSpec>().map(|spec| {
            g.routes.push(Route {
                meta: meta.clone(),
                spec,
                created,
                parents: Vec::new(),
            })
        }),
        "GRPCRoute" => obj.spec::<GrpcRouteSpec>().map(|spec| {
            g.routes.push(Route {
                meta: meta.clone(),
                spec: grpc_as_http(spec),
                created,
                parents: Vec::new(),
            })
        }),
        "ReferenceGrant" => obj.spec::<ReferenceGrantSpec>().map(|spec| {
            g.grants.push(ReferenceGrant {
                meta: meta.clone(),
                spec,
            })
        }),
        "Namespace" => {
            let labels = super::map_at(&obj.body, &["metadata", "labels"]);
            g.namespace_labels.insert(obj.key.name.clone(), labels);
            Ok(())
        }
        "GatewayClass" => obj.spec::<GatewayClassSpec>().map(|spec| {
            let controller = spec.controller_name.unwrap_or_default();
            g.classes.insert(obj.key.name.clone(), controller);
        }),
        _ => Ok(()),
    };
    if let Err(e) = result {
        m.problems.push(failed(e));
    }
}

/// A GRPCRoute as istiod reads it: a method match is the path `/service/method`.
fn grpc_as_http(g: GrpcRouteSpec) -> HttpRouteSpec {
    let rules = g
        .rules
        .into_iter()
        .map(|r| {
            let matches = r
                .value
                .matches
                .into_iter()
                .map(|mm| {
                    let path = mm.value.method.as_ref().map(|mt| {
                        let (svc, method) = (mt.service.as_deref(), mt.method.as_deref());
                        let regex = mt.kind.as_deref() == Some("RegularExpression");
                        let (kind, value) = match (svc, method, regex) {
                            (s, m, true) => (
                                "RegularExpression",
                                format!("/{}/{}", s.unwrap_or("[^/]+"), m.unwrap_or("[^/]+")),
                            ),
                            (Some(s), Some(m), false) => ("Exact", format!("/{s}/{m}")),
                            (Some(s), None, false) => ("PathPrefix", format!("/{s}")),
                            (None, Some(m), false) => ("RegularExpression", format!("/[^/]+/{m}")),
                            (None, None, false) => ("PathPrefix", "/".into()),
                        };
                        Loc {
                            pos: mt.pos,
                            value: api::PathMatch {
                                kind: Some(kind.into()),
                                value: Some(value),
                            },
                        }
                    });
                    Loc {
                        pos: mm.pos,
                        value: HttpRouteMatch {
                            path,
                            headers: mm.value.headers,
                            query_params: Vec::new(),
                            method: None,
                        },
                    }
                })
                .collect::<Vec<_>>();
            Loc {
                pos: r.pos,
                value: HttpRouteRule {
                    name: None,
                    matches: (!matches.is_empty()).then_some(matches),
                    filters: r.value.filters,
                    backend_refs: r.value.backend_refs,
                },
            }
        })
        .collect();
    HttpRouteSpec {
        parent_refs: g.parent_refs,
        hostnames: g.hostnames,
        rules: Some(rules),
    }
}

/// Whether istiod serves Gateways of this class.
pub fn is_istio_class(m: &Model, class: &str) -> bool {
    match m.gateway_api.classes.get(class) {
        Some(controller) => controller == ISTIO_CONTROLLER,
        None => class == ISTIO_CLASS,
    }
}

/// The name of the Gateway a listener translates into (one server each).
pub fn listener_gateway_name(gw: &str, listener: &str) -> String {
    format!("{gw} listener {listener}")
}

/// Translates the Gateway API objects into Gateways and VirtualServices of the model.
pub fn translate(m: &mut Model) {
    if m.gateway_api.gateways.is_empty() && m.gateway_api.routes.is_empty() {
        return;
    }
    let listeners = listener_gateways(m);
    m.gateways.extend(listeners);
    let mut routes = std::mem::take(&mut m.gateway_api.routes);
    routes.sort_by(|a, b| {
        (
            a.created.is_none(),
            &a.created,
            a.meta.namespace(),
            a.meta.name(),
        )
            .cmp(&(
                b.created.is_none(),
                &b.created,
                b.meta.namespace(),
                b.meta.name(),
            ))
    });
    for r in &mut routes {
        r.parents = r
            .spec
            .parent_refs
            .iter()
            .map(|p| attach(m, &r.meta, &r.spec, p))
            .collect();
    }
    let services = virtual_services(m, &routes);
    m.virtual_services.extend(services);
    m.gateway_api.routes = routes;
}

fn listener_gateways(m: &Model) -> Vec<Gateway> {
    let mut out = Vec::new();
    for gw in &m.gateway_api.gateways {
        if !is_istio_class(m, gw.class()) {
            continue;
        }
        for l in &gw.spec.listeners {
            let mut meta = gw.meta.clone();
            meta.key.name = listener_gateway_name(gw.meta.name(), &l.name);
            meta.pos = l.pos;
            let host = l.hostname.as_ref().map_or("*", |h| h.value.as_str());
            let selector =
                BTreeMap::from([(GATEWAY_NAME_LABEL.to_string(), gw.meta.name().into())]);
            let server = istio::Server {
                port: Some(Loc {
                    pos: l.port.pos,
                    value: istio::ServerPort {
                        number: Some(l.port.clone()),
                        name: Some(l.name.value.clone()),
                        protocol: Some(l.protocol.clone()),
                        target_port: None,
                    },
                }),
                hosts: vec![Loc {
                    pos: l.hostname.as_ref().map_or(l.pos, |h| h.pos),
                    value: format!("*/{host}"),
                }],
                name: Some(l.name.value.clone()),
                tls: None,
            };
            out.push(Gateway {
                meta,
                listener_of: Some((gw.meta.name().to_string(), l.name.value.clone())),
                spec: istio::GatewaySpec {
                    selector: Some(Loc {
                        pos: gw.meta.pos,
                        value: selector,
                    }),
                    servers: vec![Loc {
                        pos: l.pos,
                        value: server,
                    }],
                },
            });
        }
    }
    out
}

/// What one parentRef of a route decides (see [`Attachment`]).
fn attach(m: &Model, route: &Meta, spec: &HttpRouteSpec, p: &Loc<ParentRef>) -> RouteParent {
    let ns = p
        .namespace
        .clone()
        .unwrap_or_else(|| route.namespace().into());
    let mut out = RouteParent {
        pos: p.pos,
        namespace: ns.clone(),
        name: p.name.value.clone(),
        attachment: Attachment::Other,
    };
    let kind = p.kind.as_deref().unwrap_or("Gateway");
    let group = p.group.as_deref().unwrap_or(api::GATEWAY_API);
    if kind != "Gateway" || group != api::GATEWAY_API {
        return out;
    }
    let Some(gw) = m
        .gateway_api
        .gateways
        .iter()
        .find(|g| g.meta.namespace() == ns && g.meta.name() == p.name.value)
    else {
        out.attachment = Attachment::GatewayNotFound {
            known: m.live
                || m.gateway_api
                    .gateways
                    .iter()
                    .any(|g| g.meta.namespace() == ns),
        };
        return out;
    };
    if !is_istio_class(m, gw.class()) {
        out.attachment = Attachment::NotIstio(gw.class().into());
        return out;
    }
    out.attachment = listeners_for(m, route, spec, gw, p);
    out
}

fn listeners_for(
    m: &Model,
    route: &Meta,
    spec: &HttpRouteSpec,
    gw: &K8sGateway,
    p: &ParentRef,
) -> Attachment {
    let named = named_listeners(gw, p);
    if named.is_empty() {
        return Attachment::NoMatchingParent(no_listener(p));
    }
    let allowed: Vec<&&Loc<Listener>> = named.iter().filter(|l| admits(m, gw, l, route)).collect();
    if allowed.is_empty() {
        return Attachment::NotAllowed(format!(
            "{} {} in namespace {:?} is not allowed by the listeners of Gateway {} (allowedRoutes)",
            route.key.kind,
            route.name(),
            route.namespace(),
            gw.meta.ns_name()
        ));
    }
    let mut accepted = Vec::new();
    for l in allowed {
        let listener_host = l.hostname.as_ref().map(|h| h.value.as_str());
        if intersect(listener_host, &spec.hostnames).is_empty() {
            continue;
        }
        // istiod makes one VirtualService per hostname as written (`*` for none), each
        // bound to the listener; those outside the listener's hostname make no virtual host,
        // those a more specific listener covers stay off this one (isolation; the route is
        // accepted all the same, istiod says nothing).
        let hosts = written_hosts(spec)
            .into_iter()
            .filter(|h| isolated(gw, l, h))
            .collect();
        accepted.push((listener_gateway_name(gw.meta.name(), &l.name), hosts));
    }
    if accepted.is_empty() {
        let names: Vec<String> = named
            .iter()
            .map(|l| l.hostname.as_ref().map_or("*".into(), |h| h.value.clone()))
            .collect();
        return Attachment::NoMatchingHostname(format!(
            "no hostname of the route matches the listener hostname {}",
            names.join(", ")
        ));
    }
    Attachment::Accepted(accepted)
}

/// The listeners a parentRef names: all of them, or those its `sectionName` and `port` pick.
fn named_listeners<'a>(gw: &'a K8sGateway, p: &ParentRef) -> Vec<&'a Loc<Listener>> {
    let section = |l: &Listener| {
        p.section_name
            .as_ref()
            .is_none_or(|s| s.value == l.name.value)
    };
    let port = |l: &Listener| p.port.as_ref().is_none_or(|n| n.value == l.port.value);
    gw.spec
        .listeners
        .iter()
        .filter(|l| section(l) && port(l))
        .collect()
}

/// A route's hostnames as written, lowercased; `*` when it names none.
fn written_hosts(spec: &HttpRouteSpec) -> Vec<String> {
    if spec.hostnames.is_empty() {
        return vec!["*".into()];
    }
    let mut out: Vec<String> = Vec::new();
    for h in &spec.hostnames {
        let h = h.value.to_ascii_lowercase();
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

/// Listener isolation as istiod applies it: a hostname a route serves on a listener with no
/// hostname or a wildcard one stays off that listener when another listener of the Gateway,
/// on the same port and protocol, has a hostname at least as long that covers it (that more
/// specific listener alone serves it, whichever routes attach there).
fn isolated(gw: &K8sGateway, l: &Listener, host: &str) -> bool {
    let ours = l.hostname.as_ref().map_or("", |h| h.value.as_str());
    if !ours.is_empty() && !ours.starts_with('*') {
        return true;
    }
    gw.spec
        .listeners
        .iter()
        .filter(|o| o.port.value == l.port.value && o.protocol.value == l.protocol.value)
        .filter_map(|o| o.hostname.as_ref().map(|h| h.value.as_str()))
        .filter(|other| !other.eq_ignore_ascii_case(ours))
        .all(|other| ours.len() > other.len() || !host_matches(other, host))
}

/// Why a parentRef's sectionName and port select no listener, as istiod says it.
fn no_listener(p: &ParentRef) -> String {
    match (&p.section_name, &p.port) {
        (Some(s), Some(port)) => format!("no listener {:?} on port {}", s.value, port.value),
        (Some(s), None) => format!("sectionName {:?} not found", s.value),
        (None, Some(port)) => format!("port {} not found", port.value),
        (None, None) => "the Gateway has no listeners".into(),
    }
}

/// Whether a listener admits a route from `route`'s namespace and of its kind.
fn admits(m: &Model, gw: &K8sGateway, l: &Listener, route: &Meta) -> bool {
    let ar = l.allowed_routes.as_ref();
    let kinds_ok = match ar.and_then(|a| a.kinds.as_ref()) {
        Some(kinds) => kinds.iter().any(|k| k.kind == route.key.kind),
        None => matches!(l.protocol.value.as_str(), "HTTP" | "HTTPS"),
    };
    let ns = ar.and_then(|a| a.namespaces.as_ref());
    let from = ns
        .and_then(|n| n.from.as_ref())
        .map_or("Same", |f| f.value.as_str());
    let ns_ok = match from {
        "All" => true,
        "Selector" => ns
            .and_then(|n| n.selector.as_ref())
            .is_some_and(|s| namespace_selected(m, &s.value, route.namespace())),
        _ => route.namespace() == gw.meta.namespace(),
    };
    kinds_ok && ns_ok
}

/// Whether a label selector over Namespaces picks `ns`. Without live facts a namespace's
/// labels are unknown except `kubernetes.io/metadata.name`, which every namespace carries.
fn namespace_selected(m: &Model, sel: &api::LabelSelector, ns: &str) -> bool {
    let mut labels = m
        .namespaces
        .iter()
        .find(|n| n.name == ns)
        .map(|n| n.labels.clone())
        .or_else(|| m.gateway_api.namespace_labels.get(ns).cloned())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), ns.into());
    let exprs = sel.match_expressions.iter().all(|e| {
        let v = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => v.is_some_and(|v| e.values.contains(v)),
            "NotIn" => v.is_none_or(|v| !e.values.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        }
    });
    selects(&sel.match_labels, &labels) && exprs
}

/// The hostnames a route serves on a listener: the intersection of the listener's hostname
/// (none: any) with the route's (none: any), wildcards included; `*` stands for any.
pub fn intersect(listener: Option<&str>, route: &[Loc<String>]) -> Vec<String> {
    match (listener, route.is_empty()) {
        (None, true) => vec!["*".into()],
        (None, false) => route.iter().map(|h| h.value.to_ascii_lowercase()).collect(),
        (Some(l), true) => vec![l.to_ascii_lowercase()],
        (Some(l), false) => {
            let l = l.to_ascii_lowercase();
            let mut out: Vec<String> = Vec::new();
            for r in route {
                let r = r.value.to_ascii_lowercase();
                let h = if host_matches(&l, &r) {
                    r
                } else if host_matches(&r, &l) {
                    l.clone()
                } else {
                    continue;
                };
                if !out.contains(&h) {
                    out.push(h);
                }
            }
            out
        }
    }
}

/// One rule entry of a translated VirtualService: one match of one rule of one route.
struct Entry {
    source: Meta,
    /// The index of the rule in its route's `rules`.
    index: usize,
    rule: Loc<istio::HttpRoute>,
}

/// (Gateway namespace, listener gateway name, hostname as written): one translated
/// VirtualService each.
type HostKey = (String, String, String);

/// The route that first claimed a host (its meta names the VirtualService, its creation
/// time orders it), where that hostname was written, and the rules gathered there.
type HostRules = (Meta, Option<String>, Pos, Vec<Entry>);

/// One VirtualService per (listener, hostname as written), its rules from every route
/// attached there with that hostname, in istiod's order: by the creation of the oldest
/// route, then by listener and hostname (the order of istiod's names for them).
fn virtual_services(m: &Model, routes: &[Route]) -> Vec<VirtualService> {
    let mut by_key: BTreeMap<HostKey, HostRules> = BTreeMap::new();
    for r in routes {
        let entries = translate_rules(m, r);
        for p in &r.parents {
            let Attachment::Accepted(listeners) = &p.attachment else {
                continue;
            };
            for (listener, hosts) in listeners {
                for h in hosts {
                    let key = (p.namespace.clone(), listener.clone(), h.clone());
                    let pos = r
                        .spec
                        .hostnames
                        .iter()
                        .find(|x| x.value.eq_ignore_ascii_case(h))
                        .map_or(r.meta.spec_pos, |x| x.pos);
                    let slot = by_key
                        .entry(key)
                        .or_insert_with(|| (r.meta.clone(), r.created.clone(), pos, Vec::new()));
                    slot.3.extend(entries.iter().map(|e| Entry {
                        source: e.source.clone(),
                        index: e.index,
                        rule: e.rule.clone(),
                    }));
                }
            }
        }
    }
    let mut all: Vec<(HostKey, HostRules)> = by_key.into_iter().collect();
    // Stable over the key order: ties on the creation time stay in name order.
    all.sort_by(|(_, a), (_, b)| (a.1.is_none(), &a.1).cmp(&(b.1.is_none(), &b.1)));
    all.into_iter()
        .map(|(key, (meta, _, pos, entries))| merged(key, meta, pos, entries))
        .collect()
}

fn merged(
    (gw_ns, listener, host): (String, String, String),
    meta: Meta,
    pos: Pos,
    mut entries: Vec<Entry>,
) -> VirtualService {
    entries.sort_by_key(|e| std::cmp::Reverse(precedence(&e.rule)));
    let spec = istio::VirtualServiceSpec {
        hosts: vec![Loc {
            pos,
            value: host.clone(),
        }],
        gateways: None,
        http: entries.iter().map(|e| e.rule.clone()).collect(),
        export_to: Vec::new(),
    };
    VirtualService {
        hosts: vec![fqdn(&host, meta.namespace())],
        gateways: vec![GatewayRef {
            raw: Loc {
                pos: Pos::default(),
                value: listener.clone(),
            },
            target: GatewayTarget::Named {
                namespace: gw_ns,
                name: listener,
            },
            legacy_dotted: false,
        }],
        rule_sources: entries.into_iter().map(|e| (e.source, e.index)).collect(),
        meta,
        spec,
    }
}

/// istiod's order of the rules on one host (`sortHTTPRoutes`, on the one match each has):
/// exact path, then prefix, then regex; longer paths first; then a method match, more
/// header matches, more query parameter matches. The sort is stable, so ties keep the
/// route order (oldest, then namespace/name) and the order within a route.
fn precedence(rule: &istio::HttpRoute) -> (u8, usize, bool, usize, usize) {
    let Some(m) = rule.matches.as_ref().and_then(|ms| ms.value.first()) else {
        return (0, 0, false, 0, 0);
    };
    let (rank, len) = match m.uri.as_deref() {
        Some(u) if u.exact.is_some() => (3, u.exact.as_ref().map_or(0, String::len)),
        Some(u) if u.prefix.is_some() => (2, u.prefix.as_ref().map_or(0, String::len)),
        Some(u) if u.regex.is_some() => (1, u.regex.as_ref().map_or(0, String::len)),
        _ => (0, 0),
    };
    (
        rank,
        len,
        m.method.is_some(),
        m.headers.len(),
        m.query_params.len(),
    )
}

/// The rules of a route as Istio rules, one per match, in the route's order.
fn translate_rules(m: &Model, r: &Route) -> Vec<Entry> {
    let default_rule = [Loc {
        pos: r.meta.spec_pos,
        value: HttpRouteRule::default(),
    }];
    let rules: &[Loc<HttpRouteRule>] = r.spec.rules.as_deref().unwrap_or(&default_rule);
    let mut out = Vec::new();
    // A hard error in one backendRef (a hostname for a Service name, no port) drops the
    // whole route in istiod: its hosts then answer 404.
    let dropped = rules
        .iter()
        .flat_map(|x| &x.backend_refs)
        .any(|b| backend_problem(m, &r.meta, b).is_some_and(|p| p.drops_route));
    if dropped {
        return out;
    }
    for (i, rule) in rules.iter().enumerate() {
        let action = rules::action(m, r, rule);
        let default_match = [Loc {
            pos: rule.pos,
            value: HttpRouteMatch::default(),
        }];
        let matches: &[Loc<HttpRouteMatch>] = rule.matches.as_deref().unwrap_or(&default_match);
        let matches: &[Loc<HttpRouteMatch>] = if matches.is_empty() {
            &default_match
        } else {
            matches
        };
        for (j, mm) in matches.iter().enumerate() {
            let name = rule.name.as_ref().map(|n| format!(" {n:?}"));
            let label = format!(
                "{} {} rules[{i}]{} matches[{j}]",
                r.meta.key.kind,
                r.meta.ns_name(),
                name.unwrap_or_default()
            );
            out.push(Entry {
                source: r.meta.clone(),
                index: i,
                rule: Loc {
                    pos: rule.pos,
                    value: one_match(&action, label, mm),
                },
            });
        }
    }
    out
}

/// The Istio rule for one match of a rule whose action is `action`.
fn one_match(
    action: &istio::HttpRoute,
    label: String,
    mm: &Loc<HttpRouteMatch>,
) -> istio::HttpRoute {
    let mut ir = action.clone();
    ir.name = Some(label);
    ir.matches = Some(Loc {
        pos: mm.pos,
        value: vec![rules::istio_match(mm)],
    });
    if let Some(rd) = ir.redirect.as_mut() {
        // ReplacePrefixMatch replaces the prefix this match matched.
        rd.value.replace_prefix = rd
            .value
            .replace_prefix
            .take()
            .map(|(_, with)| (path_prefix_of(mm), with));
    }
    ir
}

/// The PathPrefix value of a match (`/` when it has none).
fn path_prefix_of(mm: &HttpRouteMatch) -> String {
    let v = mm.path.as_ref().and_then(|p| p.value.value.clone());
    rules::trim_prefix(v.unwrap_or_else(|| "/".into()))
}

/// Whether a backendRef names a Service (the default kind).
pub fn is_service(b: &BackendRef) -> bool {
    b.group.as_deref().unwrap_or("").is_empty()
        && b.kind.as_deref().unwrap_or("Service") == "Service"
}
