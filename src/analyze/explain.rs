//! Route simulation: where one HTTP request through the ingress gateway would go, hop by hop,
//! and where a real request would stop (404 NR, 503 UH, a redirect, a direct response).
//!
//! It walks the same model the analyzers use: ingress Gateway → server (port, host) →
//! VirtualService bound to it → the first matching rule → weighted destinations → subset →
//! Service → endpoints (ready endpoints when live facts are given, Pod templates otherwise).
//! It never sends a request; `verify` does that. The answer is serializable (the daemon's
//! `GET /explain`) and has a text rendering for the CLI.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::model::gatewayapi::GATEWAY_NAME_LABEL;
use super::model::{
    self, Gateway, Meta, Model, ServerHost, VirtualService, host_matches, selects, show_labels,
};
use super::routes::{self, RouteRef, ServerRef, VirtualHost};
use crate::manifest::istio::{
    Delegate, Destination, HttpMatch, HttpRoute, RouteDestination, StringMatch,
};
use crate::manifest::yaml::{Loc, Pos};

/// The request to simulate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The Host header (a `:port` suffix is ignored).
    pub host: String,
    /// Path with an optional `?query`.
    #[serde(default = "root_path")]
    pub path: String,
    #[serde(default = "get_method")]
    pub method: String,
    /// Header names are matched case-insensitively.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The gateway port the request arrives on (default 80).
    #[serde(default)]
    pub port: Option<u32>,
}

fn root_path() -> String {
    "/".into()
}

fn get_method() -> String {
    "GET".into()
}

impl Request {
    /// The path with a leading `/`, the method in capitals, header names in lower case.
    pub fn normalized(mut self) -> Request {
        if !self.path.starts_with('/') {
            self.path.insert(0, '/');
        }
        self.method = self.method.to_ascii_uppercase();
        self.headers = self
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        self
    }

    pub fn get(host: &str, path: &str) -> Request {
        Request {
            host: host.into(),
            path: path.into(),
            method: "GET".into(),
            headers: BTreeMap::new(),
            port: None,
        }
    }
}

/// One step of the walk.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hop {
    /// `gateway`, `server`, `virtualservice`, `rule`, `action`.
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
    /// `file:line:col` of the object or field that decided this hop.
    pub at: Option<String>,
}

/// One weighted destination of the matched rule, followed down to its endpoints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DestinationHop {
    /// The host as Istio reads it (short names expanded in the VirtualService's namespace).
    #[serde(rename = "host")]
    pub fqdn: String,
    /// The host as written.
    #[serde(rename = "written_host")]
    pub host: String,
    pub subset: Option<String>,
    /// The port of the cluster Istio routes to: as written, else the Service's only port,
    /// else the gateway server's port.
    pub port: Option<u32>,
    /// Share of the rule's traffic, in percent.
    #[serde(rename = "weight")]
    pub share: f64,
    /// Ready endpoints behind the cluster (offline: the replicas of the Pod templates the
    /// Service and subset select); 0 when the cluster does not exist; null when not known.
    pub healthy_endpoints: Option<u32>,
    pub hops: Vec<Hop>,
    /// What a request sent here gets when it cannot be delivered (`503 UH`, `503 NC`).
    pub fails_with: Option<String>,
    /// `file:line:col` of the destination in the VirtualService.
    pub at: Option<String>,
}

/// How the request ends.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Sent upstream (split between the destinations).
    Routed {
        note: String,
    },
    /// No listener on the port: the connection is refused.
    NoListener {
        reason: String,
    },
    /// 404 with response flag NR.
    NoRoute {
        reason: String,
    },
    /// 503: no destination can take the request (UH no healthy upstream, NC no cluster).
    NoHealthyUpstream {
        reason: String,
    },
    Redirect {
        status: u16,
        location: String,
    },
    DirectResponse {
        status: u16,
    },
}

impl Outcome {
    /// The status a client would see, when the simulation can tell.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Routed { .. } | Outcome::NoListener { .. } => None,
            Outcome::NoRoute { .. } => Some(404),
            Outcome::NoHealthyUpstream { .. } => Some(503),
            Outcome::Redirect { status, .. } | Outcome::DirectResponse { status } => Some(*status),
        }
    }

    /// The decision's outcome word (the same words as `dev/oracle`).
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Routed { .. } => "routed",
            Outcome::NoListener { .. } => "no_listener",
            Outcome::NoRoute { .. } => "404",
            Outcome::NoHealthyUpstream { .. } => "503",
            Outcome::Redirect { .. } => "redirect",
            Outcome::DirectResponse { .. } => "direct",
        }
    }
}

/// Where the request goes, in the fields `dev/oracle` prints for Istio's own translation
/// (README: "explain -o json"); set only as far as the walk got.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Decision {
    /// routed, 404, 503, redirect, direct, no_listener.
    pub outcome: &'static str,
    pub status: Option<u16>,
    /// The Gateway (`ns/name`) whose server put the chosen route (or the redirect) on the port.
    pub gateway: Option<String>,
    /// For a Gateway API Gateway, the listener that took the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    pub server_port: Option<u32>,
    /// The VirtualService (`ns/name`) and the index of its `http` rule that matched; for
    /// Gateway API routing, the HTTPRoute (or GRPCRoute) and the index in its `rules`.
    pub virtual_service: Option<String>,
    pub rule: Option<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    pub request: Request,
    #[serde(flatten)]
    pub decision: Decision,
    /// The destinations of the matched rule that get traffic.
    pub destinations: Vec<DestinationHop>,
    pub hops: Vec<Hop>,
    /// The outcome with its reason.
    #[serde(rename = "detail")]
    pub outcome: Outcome,
    /// False when endpoints were judged from Pod templates (no cluster facts).
    pub live: bool,
}

fn at(meta: &Meta, pos: Pos) -> Option<String> {
    let p = if pos.line == 0 { meta.pos } else { pos };
    Some(format!("{}:{}", meta.file, p))
}

fn hop(step: &'static str, ok: bool, detail: impl Into<String>, at: Option<String>) -> Hop {
    Hop {
        step,
        ok,
        detail: detail.into(),
        at,
    }
}

/// Simulates `req` through the configured ingress.
pub fn explain(m: &Model, req: &Request) -> Explanation {
    let mut w = Walk {
        m,
        req,
        host: request_host(&req.host),
        port: req.port.unwrap_or(80),
        hops: Vec::new(),
        destinations: Vec::new(),
        decision: Decision::default(),
    };
    let outcome = w.run();
    let mut decision = w.decision;
    decision.outcome = outcome.word();
    decision.status = outcome.status();
    let mut request = req.clone();
    request.port = Some(w.port);
    Explanation {
        request,
        decision,
        destinations: w.destinations,
        hops: w.hops,
        outcome,
        live: m.live,
    }
}

/// The Host header without a `:port` suffix, lowercased (Envoy ignores the port in virtual
/// host selection on the gateway, and host names are case-insensitive).
fn request_host(host: &str) -> String {
    host.rsplit_once(':')
        .filter(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase()
}

/// The state of one walk: the request, the hops so far and the decision being filled in.
struct Walk<'a> {
    m: &'a Model,
    req: &'a Request,
    host: String,
    port: u32,
    hops: Vec<Hop>,
    destinations: Vec<DestinationHop>,
    decision: Decision,
}

impl<'a> Walk<'a> {
    /// Gateway → server on the port → virtual host → first matching route → its action.
    fn run(&mut self) -> Outcome {
        let gateways = ingress_gateways(self.m, &mut self.hops);
        if gateways.is_empty() {
            return Outcome::NoListener {
                reason: "no Gateway applies to the ingress".into(),
            };
        }
        let servers = routes::servers_on_port(&gateways, self.port);
        if servers.is_empty() {
            let reason = format!(
                "no Gateway server listens on port {}: the connection is refused",
                self.port
            );
            self.hops.push(hop("server", false, &reason, None));
            return Outcome::NoListener { reason };
        }
        let vhosts = routes::virtual_hosts(self.m, &servers, self.port);
        let Some(vh) = routes::select(&vhosts, &self.host) else {
            return self.no_virtual_host(&servers);
        };
        self.server_hops(&servers, vh);
        if let Some(srv) = vh.redirect {
            return self.https_redirect(srv);
        }
        let found = vh.routes.iter().find(|r| {
            r.block
                .is_none_or(|b| block_matches(b, self.req, &self.req.host, self.port))
        });
        let Some(r) = found else {
            return self.no_route(vh);
        };
        self.set_gateway(r.server.gateway);
        let (source, index) = r.vs.rule_origin(r.rule_index);
        self.decision.virtual_service = Some(source.ns_name());
        self.decision.rule = Some(index);
        self.matched_hops(vh, r);
        self.act(r.vs, r.vs.rule_meta(r.rule_index), r.rule)
    }

    /// The servers whose hosts cover the request's host, as hops.
    fn server_hops(&mut self, servers: &[ServerRef], vh: &VirtualHost) {
        for s in servers {
            for h in s.server.hosts.iter().filter(|h| {
                let sh = ServerHost::parse(h);
                host_matches(&sh.host, &self.host) || host_matches(&sh.host, &vh.domain)
            }) {
                let proto = s
                    .server
                    .port
                    .as_ref()
                    .and_then(|p| p.protocol.as_ref())
                    .map_or("?".to_string(), |p| p.value.clone());
                let detail = format!(
                    "Gateway {} port {} ({proto}) host {}",
                    s.gateway.meta.ns_name(),
                    self.port,
                    h.value
                );
                self.hops
                    .push(hop("server", true, detail, at(&s.gateway.meta, h.pos)));
            }
        }
    }

    /// Envoy has no virtual host for the request's host: 404, with the likeliest reason.
    fn no_virtual_host(&mut self, servers: &[ServerRef]) -> Outcome {
        let (host, port) = (&self.host, self.port);
        let served = servers.iter().any(|s| {
            s.server
                .hosts
                .iter()
                .any(|h| host_matches(&ServerHost::parse(h).host, host))
        });
        if !served {
            let all: Vec<String> = servers
                .iter()
                .flat_map(|s| s.server.hosts.iter().map(|h| h.value.clone()))
                .collect();
            let reason = format!(
                "no server on port {port} serves host {host} (server hosts: {})",
                all.join(", ")
            );
            let s = servers[0];
            self.hops.push(hop(
                "server",
                false,
                &reason,
                at(&s.gateway.meta, s.server.pos),
            ));
            return Outcome::NoRoute { reason };
        }
        let unbound: Vec<String> = self
            .m
            .virtual_services
            .iter()
            .filter(|vs| vs.hosts.iter().any(|h| host_matches(h, host)))
            .map(|vs| vs.meta.ns_name())
            .collect();
        let reason = if unbound.is_empty() {
            format!("no VirtualService serves host {host} on this Gateway")
        } else {
            format!(
                "VirtualService {} has host {host} but is not bound to the Gateway (check `gateways:`, `exportTo` and the server hosts' namespaces)",
                unbound.join(", ")
            )
        };
        self.hops.push(hop("virtualservice", false, &reason, None));
        Outcome::NoRoute { reason }
    }

    /// Names the Gateway whose server took the request: a translated listener by its
    /// Gateway API Gateway and listener.
    fn set_gateway(&mut self, gw: &Gateway) {
        self.decision.gateway = Some(match &gw.listener_of {
            Some((name, _)) => format!("{}/{name}", gw.meta.namespace()),
            None => gw.meta.ns_name(),
        });
        self.decision.listener = gw.listener_of.as_ref().map(|(_, l)| l.clone());
        self.decision.server_port = Some(self.port);
    }

    /// A server with `tls.httpsRedirect` answers every request on its hosts with 301.
    fn https_redirect(&mut self, srv: ServerRef) -> Outcome {
        let location = format!("https://{}{}", self.host, self.req.path);
        self.set_gateway(srv.gateway);
        self.hops.push(hop(
            "action",
            true,
            format!("httpsRedirect to {location}"),
            at(&srv.gateway.meta, srv.server.pos),
        ));
        Outcome::Redirect {
            status: 301,
            location,
        }
    }

    /// No route of the virtual host matches: 404.
    fn no_route(&mut self, vh: &VirtualHost) -> Outcome {
        let mut names: Vec<String> = vh.routes.iter().map(|r| r.vs.meta.ns_name()).collect();
        names.dedup();
        let reason = format!(
            "no rule of VirtualService {} matches {} {}",
            names.join(", "),
            self.req.method,
            self.req.path
        );
        let at = vh
            .routes
            .first()
            .and_then(|r| at(&r.vs.meta, r.vs.meta.spec_pos));
        self.hops.push(hop("rule", false, &reason, at));
        Outcome::NoRoute { reason }
    }

    /// The VirtualService and rule that matched, and the others sharing the virtual host.
    fn matched_hops(&mut self, vh: &VirtualHost, r: &RouteRef) {
        let vs = r.vs;
        let hi = vs
            .hosts
            .iter()
            .position(|h| host_matches(h, &vh.domain) || host_matches(&vh.domain, h));
        let (shown, pos) = hi.map_or((vh.domain.clone(), vs.meta.pos), |i| {
            (vs.spec.hosts[i].value.clone(), vs.spec.hosts[i].pos)
        });
        self.hops.push(hop(
            "virtualservice",
            true,
            format!("{} {} host {shown}", vs.meta.key.kind, vs.meta.ns_name()),
            at(&vs.meta, pos),
        ));
        let mut others: Vec<String> = vh
            .routes
            .iter()
            .map(|o| o.vs.meta.ns_name())
            .filter(|n| *n != vs.meta.ns_name())
            .collect();
        others.sort();
        others.dedup();
        if !others.is_empty() {
            self.hops.push(hop(
                "virtualservice",
                true,
                format!(
                    "also on this host: {} (Istio concatenates their rules in creation order and moves catch-all rules last)",
                    others.join(", ")
                ),
                None,
            ));
        }
        let name = r
            .rule
            .name
            .as_ref()
            .map(|n| format!(" ({n:?})"))
            .unwrap_or_default();
        self.hops.push(hop(
            "rule",
            true,
            format!("http[{}]{name}{}", r.rule_index, describe_match(r.rule)),
            at(vs.rule_meta(r.rule_index), r.rule.pos),
        ));
    }

    /// What the matched rule does: redirect, direct response, delegate, or route.
    /// `meta` is where the rule was written (for a Gateway API route, its own object).
    fn act(&mut self, vs: &'a VirtualService, meta: &Meta, rule: &'a HttpRoute) -> Outcome {
        if let Some(r) = &rule.redirect {
            let status = r.redirect_code.unwrap_or(301);
            let location = r.location(&self.host, &self.req.path, self.port);
            self.hops.push(hop(
                "action",
                true,
                format!("redirect {status} to {location}"),
                at(meta, r.pos),
            ));
            return Outcome::Redirect { status, location };
        }
        if let Some(d) = &rule.direct_response {
            let status = d.status.unwrap_or(200);
            let detail = format!("direct response {status}");
            self.hops.push(hop("action", true, detail, at(meta, d.pos)));
            return Outcome::DirectResponse { status };
        }
        if let Some(d) = &rule.delegate {
            return self.delegate(vs, d);
        }
        let route: &[Loc<RouteDestination>] = rule.route.as_ref().map_or(&[], |r| &r.value);
        self.route_to(meta, route)
    }

    /// One level of delegation: the first matching rule of the delegate VirtualService.
    fn delegate(&mut self, vs: &VirtualService, d: &Loc<Delegate>) -> Outcome {
        let ns = d
            .namespace
            .clone()
            .unwrap_or_else(|| vs.meta.namespace().to_string());
        let name = d.name.clone().unwrap_or_default();
        let m = self.m;
        let Some(next) = m
            .virtual_services
            .iter()
            .find(|v| v.meta.namespace() == ns && v.meta.name() == name)
        else {
            let reason = format!("delegate VirtualService {ns}/{name} not found");
            self.hops
                .push(hop("action", false, &reason, at(&vs.meta, d.pos)));
            return Outcome::NoRoute { reason };
        };
        let detail = format!("delegate to VirtualService {ns}/{name}");
        self.hops
            .push(hop("action", true, detail, at(&vs.meta, d.pos)));
        let found = next.spec.http.iter().enumerate().find(|(_, r)| {
            r.delegate.is_none() && rule_matches(r, self.req, &self.req.host, self.port)
        });
        let Some((i, rule)) = found else {
            let reason = format!(
                "no rule of VirtualService {ns}/{name} matches {} {}",
                self.req.method, self.req.path
            );
            self.hops.push(hop(
                "rule",
                false,
                &reason,
                at(&next.meta, next.meta.spec_pos),
            ));
            return Outcome::NoRoute { reason };
        };
        let detail = format!("http[{i}]{}", describe_match(rule));
        self.hops
            .push(hop("rule", true, detail, at(&next.meta, rule.pos)));
        self.act(next, next.rule_meta(i), rule)
    }
}

/// The Gateways that apply to the configured ingress (see [`ingress_gateways`]).
pub(crate) fn ingress_gateway_list(m: &Model) -> Vec<&Gateway> {
    ingress_gateways(m, &mut Vec::new())
}

/// The Gateways that apply to the configured ingress: those selecting its Pods when they are
/// known, otherwise all of them (said so in a hop).
fn ingress_gateways<'a>(m: &'a Model, hops: &mut Vec<Hop>) -> Vec<&'a Gateway> {
    let ing = &m.ingress;
    let pods = ingress_pods(m);
    if let (true, Some(name)) = (pods.is_empty(), &ing.gateway) {
        return gateway_api_ingress(m, name, hops);
    }
    if pods.is_empty() {
        hops.push(hop(
            "gateway",
            true,
            format!(
                "ingress {}/{}: its Pods are not known{}, so every Gateway is assumed to apply",
                ing.namespace,
                ing.service,
                if m.live { "" } else { " offline" }
            ),
            None,
        ));
        return m.gateways.iter().collect();
    }
    let chosen: Vec<&Gateway> = m
        .gateways
        .iter()
        .filter(|g| pods.iter().any(|p| applies_to(g, p)))
        .collect();
    let labels = show_labels(&pods[0].labels);
    if chosen.is_empty() {
        hops.push(hop(
            "gateway",
            false,
            format!(
                "no Gateway selects the ingress Pods of {}/{} ({labels})",
                ing.namespace, ing.service
            ),
            None,
        ));
    } else {
        for g in &chosen {
            hops.push(hop(
                "gateway",
                true,
                format!(
                    "Gateway {} selects ingress {}/{} ({labels})",
                    g.meta.ns_name(),
                    ing.namespace,
                    ing.service
                ),
                at(
                    &g.meta,
                    g.spec.selector.as_ref().map_or(Pos::default(), |s| s.pos),
                ),
            ));
        }
    }
    chosen
}

/// Whether a Gateway's servers go to a gateway Pod: its selector picks the Pod (istiod
/// applies a Gateway API Gateway's listeners only to Pods of its own namespace).
fn applies_to(g: &Gateway, pod: &model::Workload) -> bool {
    let selected = g
        .spec
        .selector
        .as_ref()
        .is_none_or(|s| selects(&s.value, &pod.labels));
    selected && (g.listener_of.is_none() || pod.namespace == g.meta.namespace())
}

/// A Gateway API ingress whose Pods are not known: the listeners of that Gateway apply (the
/// Pods istiod deploys for it carry its name).
fn gateway_api_ingress<'a>(m: &'a Model, name: &str, hops: &mut Vec<Hop>) -> Vec<&'a Gateway> {
    let ns = &m.ingress.namespace;
    let chosen: Vec<&Gateway> = m
        .gateways
        .iter()
        .filter(|g| g.meta.namespace() == ns)
        .filter(|g| g.listener_of.as_ref().is_some_and(|(gw, _)| gw == name))
        .collect();
    let detail = if chosen.is_empty() {
        format!("no Gateway {ns}/{name} of an Istio class in the sources")
    } else {
        format!(
            "Gateway {ns}/{name}: its listeners apply (the Pods istiod deploys for it are not known{})",
            if m.live { "" } else { " offline" }
        )
    };
    let place = chosen.first().and_then(|g| at(&g.meta, Pos::default()));
    hops.push(hop("gateway", !chosen.is_empty(), detail, place));
    chosen
}

/// The Pods behind the ingress Service, or the gateway workloads of its namespace; for a
/// Gateway API ingress, the Pods istiod deploys for the Gateway (labelled with its name).
fn ingress_pods(m: &Model) -> Vec<&model::Workload> {
    let ing = &m.ingress;
    if let Some(svc) = m.service(&ing.namespace, &ing.service) {
        return m.pods_of(svc, None).collect();
    }
    m.workloads
        .iter()
        .filter(|w| w.namespace == ing.namespace)
        .filter(|w| match &ing.gateway {
            Some(gw) => w.labels.get(GATEWAY_NAME_LABEL) == Some(gw),
            None => w.is_gateway(),
        })
        .collect()
}

/// Envoy's string matching; `ignore_case` (ignoreUriCase) folds exact and prefix matches only:
/// Envoy's `case_sensitive` does not apply to a regex, which always matches the whole value.
fn string_match(sm: &StringMatch, value: Option<&str>, ignore_case: bool) -> bool {
    let Some(v) = value else { return false };
    let fold = |s: &str| {
        if ignore_case {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    if let Some(e) = &sm.exact {
        return fold(v) == fold(e);
    }
    if let Some(p) = &sm.prefix {
        if sm.path_separated {
            return StringMatch::path_prefix_matches(&fold(p), &fold(v));
        }
        return fold(v).starts_with(&fold(p));
    }
    if let Some(r) = &sm.regex {
        return regex::Regex::new(&format!("^(?:{r})$")).is_ok_and(|re| re.is_match(v));
    }
    true
}

fn block_matches(b: &HttpMatch, req: &Request, host: &str, port: u32) -> bool {
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    let headers: BTreeMap<String, &str> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    let query: BTreeMap<&str, &str> = query
        .split('&')
        .filter(|q| !q.is_empty())
        .map(|q| q.split_once('=').unwrap_or((q, "")))
        .collect();
    let ic = b.ignore_uri_case.unwrap_or(false);
    let opt = |f: &Option<Loc<StringMatch>>, v: &str, ic: bool| {
        f.as_ref().is_none_or(|sm| string_match(sm, Some(v), ic))
    };
    opt(&b.uri, path, ic)
        && opt(&b.method, &req.method, false)
        && opt(&b.authority, host, false)
        && opt(&b.scheme, "http", false)
        && b.port.is_none_or(|p| p == port)
        && b.headers.iter().all(|(k, sm)| {
            let v = headers.get(&k.to_ascii_lowercase()).copied();
            v.is_some() && string_match(sm, v, false)
        })
        && b.without_headers.iter().all(|(k, sm)| {
            let v = headers.get(&k.to_ascii_lowercase()).copied();
            v.is_none() || !string_match(sm, v, false)
        })
        && b.query_params.iter().all(|(k, sm)| {
            let v = query.get(k.as_str()).copied();
            v.is_some() && string_match(sm, v, false)
        })
}

pub(crate) fn rule_matches(rule: &HttpRoute, req: &Request, host: &str, port: u32) -> bool {
    match &rule.matches {
        None => true,
        Some(blocks) if blocks.value.is_empty() => true,
        Some(blocks) => blocks
            .value
            .iter()
            .any(|b| block_matches(b, req, host, port)),
    }
}

pub(crate) fn describe_match(rule: &HttpRoute) -> String {
    let Some(blocks) = rule.matches.as_ref().filter(|b| !b.value.is_empty()) else {
        return ", no match conditions (matches everything)".into();
    };
    let sm = |s: &StringMatch| {
        if let Some(e) = &s.exact {
            format!("exact {e}")
        } else if let Some(p) = &s.prefix {
            format!("prefix {p}")
        } else if let Some(r) = &s.regex {
            format!("regex {r}")
        } else {
            "any".into()
        }
    };
    let parts: Vec<String> = blocks
        .value
        .iter()
        .map(|b| {
            let mut c = Vec::new();
            if let Some(u) = &b.uri {
                c.push(format!("uri {}", sm(u)));
            }
            if let Some(u) = &b.method {
                c.push(format!("method {}", sm(u)));
            }
            for (k, v) in &b.headers {
                c.push(format!("header {k} {}", sm(v)));
            }
            if c.is_empty() {
                "any".into()
            } else {
                c.join(" and ")
            }
        })
        .collect();
    format!(", match {}", parts.join(" or "))
}

/// Relative weights as Istio reads them: a single destination takes all traffic whatever its
/// weight, all-unweighted destinations share evenly, else the weights as written (negative as 0).
fn relative_weights(route: &[Loc<RouteDestination>]) -> Vec<f64> {
    match route {
        [_] => vec![1.0],
        _ if route.iter().all(|r| r.weight.is_none()) => vec![1.0; route.len()],
        _ => route
            .iter()
            .map(|r| r.weight.as_ref().map_or(0.0, |w| w.value.max(0) as f64))
            .collect(),
    }
}

/// Each destination's share of a rule's traffic, in percent (the status page draws these).
pub(crate) fn shares(route: &[Loc<RouteDestination>]) -> Vec<f64> {
    let weights = relative_weights(route);
    let total: f64 = weights.iter().sum();
    weights
        .iter()
        .map(|w| if total > 0.0 { w / total * 100.0 } else { 0.0 })
        .collect()
}

/// One destination followed down to its endpoints, as a request on server port `port` would
/// be (the status page draws these hops): the same walk `explain` makes.
pub(crate) fn destination(
    m: &Model,
    vs: &VirtualService,
    rd: &Loc<RouteDestination>,
    share: f64,
    port: u32,
) -> DestinationHop {
    let req = Request {
        host: String::new(),
        path: root_path(),
        method: get_method(),
        headers: BTreeMap::new(),
        port: Some(port),
    };
    let walk = Walk {
        m,
        req: &req,
        host: String::new(),
        port,
        hops: Vec::new(),
        destinations: Vec::new(),
        decision: Decision::default(),
    };
    walk.destination(&vs.meta, rd, share)
}

impl Walk<'_> {
    /// The weighted destinations of the matched rule. Weights are relative; a single
    /// destination takes all traffic whatever its weight; with several, weight-0 ones get
    /// no traffic and Istio leaves them out of the route.
    fn route_to(&mut self, vs: &Meta, route: &[Loc<RouteDestination>]) -> Outcome {
        if route.is_empty() {
            let reason = "the matched rule has no route".to_string();
            self.hops.push(hop("action", false, &reason, None));
            return Outcome::NoRoute { reason };
        }
        let weights = relative_weights(route);
        let total: f64 = weights.iter().sum();
        if total == 0.0 {
            return Outcome::NoHealthyUpstream {
                reason: "every destination has weight 0".into(),
            };
        }
        let mut failing = 0.0;
        for (rd, w) in route.iter().zip(&weights).filter(|(_, w)| **w > 0.0) {
            let d = self.destination(vs, rd, w / total * 100.0);
            if d.fails_with.is_some() {
                failing += d.share;
            }
            self.destinations.push(d);
        }
        if self.all_invalid() {
            // Gateway API: Istio keeps invalid backendRefs as clusters that do not exist, and
            // Envoy answers them 500 under gateway semantics.
            return Outcome::DirectResponse { status: 500 };
        }
        self.routed(failing)
    }

    /// Every destination that takes traffic is an invalid Gateway API backendRef.
    fn all_invalid(&self) -> bool {
        let taking = || self.destinations.iter().filter(|d| d.share > 0.0);
        taking().next().is_some()
            && taking().all(|d| {
                d.fails_with
                    .as_deref()
                    .is_some_and(|f| f.starts_with("500"))
            })
    }

    fn routed(&self, failing: f64) -> Outcome {
        let live = if self.m.live {
            ""
        } else {
            " (offline: from the configuration, not live endpoints)"
        };
        if failing >= 99.999 {
            return Outcome::NoHealthyUpstream {
                reason: format!("no destination can take the request{live}"),
            };
        }
        if failing > 0.0 {
            return Outcome::Routed {
                note: format!("{failing:.0}% of requests would get 503{live}"),
            };
        }
        let shares: Vec<String> = self
            .destinations
            .iter()
            .map(|d| {
                let subset = d
                    .subset
                    .as_ref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default();
                format!("{:.0}% {}{subset}", d.share, d.host)
            })
            .collect();
        Outcome::Routed {
            note: format!("{}{live}", shares.join(", ")),
        }
    }

    /// One destination followed to its Service (or ServiceEntry), subset, port and endpoints.
    fn destination(&self, vs: &Meta, rd: &Loc<RouteDestination>, share: f64) -> DestinationHop {
        let m = self.m;
        let d = &rd.destination;
        let host = model::fqdn(&d.host, vs.namespace());
        let mut out = DestinationHop {
            fqdn: host.clone(),
            host: d.host.value.clone(),
            subset: d.subset.as_ref().map(|s| s.value.clone()),
            port: d.port.as_ref().and_then(|p| p.number),
            share,
            healthy_endpoints: None,
            hops: Vec::new(),
            fails_with: None,
            at: at(vs, rd.pos),
        };
        if let Some(why) = &rd.invalid {
            out.hops.push(hop("backend", false, why, at(vs, rd.pos)));
            out.fails_with = Some("500 (invalid backendRef)".into());
            // istiod keeps it as a cluster that does not exist: nothing to send to.
            out.healthy_endpoints = Some(0);
            return out;
        }
        let Some(svc) = m.service_for_host(&host) else {
            self.no_service(vs, d, &mut out);
            return out;
        };
        // Istio's cluster port: as written, else the Service's only port, else the server's.
        if out.port.is_none() {
            out.port = Some(match svc.ports.as_slice() {
                [only] => only.port,
                _ => self.port,
            });
        }
        let Some(labels) = subset_labels(m, vs, d, &host, &mut out) else {
            return out;
        };
        let Some(port) = service_port(svc, &mut out) else {
            return out;
        };
        endpoints(m, svc, port, labels.as_ref(), &mut out);
        out
    }

    /// The destination names no Service: a ServiceEntry, an unknown namespace, or 503 NC.
    fn no_service(&self, vs: &Meta, d: &Destination, out: &mut DestinationHop) {
        let m = self.m;
        let host = out.fqdn.clone();
        if let Some(se) = m.service_entry_for(&host) {
            if out.port.is_none() {
                out.port = match se.spec.ports.as_slice() {
                    [only] => only.number,
                    _ => Some(self.port),
                };
            }
            out.hops.push(hop(
                "service",
                true,
                format!("ServiceEntry {} declares {host}", se.meta.ns_name()),
                at(&se.meta, Pos::default()),
            ));
            return;
        }
        // A cluster-local name in a namespace whose Services are known; or `name.ns`, which
        // Istio takes as a full (external) name no ServiceEntry declares: neither has a cluster.
        let known = match model::service_of(&host) {
            Some((ns, _)) => m.services_known(ns),
            None => host
                .split_once('.')
                .is_some_and(|(_, ns)| !ns.contains('.') && m.services_known(ns)),
        };
        let detail = if known {
            format!("no Service or ServiceEntry {host}")
        } else {
            format!("Service {host} not among the known objects (not checked)")
        };
        out.hops
            .push(hop("service", !known, detail, at(vs, d.host.pos)));
        if known {
            out.port = out.port.or(Some(self.port));
            out.healthy_endpoints = Some(0);
            out.fails_with = Some("503 NC (no such cluster)".into());
        }
    }
}

/// The labels of the destination's subset (`Some(None)`: no subset), or `None` when the
/// subset is defined in no DestinationRule the gateway sees (503 NC).
fn subset_labels(
    m: &Model,
    vs: &Meta,
    d: &Destination,
    host: &str,
    out: &mut DestinationHop,
) -> Option<Option<BTreeMap<String, String>>> {
    let Some(s) = &d.subset else {
        return Some(None);
    };
    let found = m
        .rules_for(host)
        .filter(|r| {
            routes::exported_to(&r.spec.export_to, r.meta.namespace(), &m.ingress.namespace)
        })
        .find_map(|r| {
            r.spec
                .subsets
                .iter()
                .find(|x| x.name.value == s.value)
                .map(|x| (r, x))
        });
    let Some((r, x)) = found else {
        out.hops.push(hop(
            "subset",
            false,
            format!(
                "subset {} is defined in no DestinationRule for {host} that the gateway sees",
                s.value
            ),
            at(vs, s.pos),
        ));
        out.healthy_endpoints = Some(0);
        out.fails_with = Some("503 NC (no cluster for the subset)".into());
        return None;
    };
    let labels = x.labels.as_ref().map(|l| l.value.clone());
    out.hops.push(hop(
        "subset",
        true,
        format!(
            "subset {} of DestinationRule {} selects {}",
            s.value,
            r.meta.ns_name(),
            labels.as_ref().map_or("every Pod".into(), show_labels)
        ),
        at(&r.meta, x.name.pos),
    ));
    Some(labels)
}

/// The Service port the cluster is for, or `None` (503 NC) when the Service lacks it.
fn service_port<'s>(
    svc: &'s model::Service,
    out: &mut DestinationHop,
) -> Option<&'s model::ServicePort> {
    let svc_at = svc
        .origin
        .as_ref()
        .and_then(|o| at(o, Pos::default()))
        .or_else(|| svc.live.then(|| "(cluster)".to_string()));
    let Some(p) = svc.ports.iter().find(|sp| Some(sp.port) == out.port) else {
        let ports: Vec<String> = svc.ports.iter().map(|p| p.port.to_string()).collect();
        out.hops.push(hop(
            "service",
            false,
            format!(
                "Service {}/{} has no port {} (ports: {})",
                svc.namespace,
                svc.name,
                out.port.unwrap_or_default(),
                ports.join(", ")
            ),
            svc_at,
        ));
        out.healthy_endpoints = Some(0);
        out.fails_with = Some("503 NC (no cluster for the port)".into());
        return None;
    };
    let name = p
        .name
        .as_ref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let target = p.target_port.clone().unwrap_or_else(|| p.port.to_string());
    let detail = format!(
        "Service {}/{} port {}{name} -> {target}",
        svc.namespace, svc.name, p.port
    );
    out.hops.push(hop("service", true, detail, svc_at));
    Some(p)
}

/// The endpoints behind the cluster: ready endpoints when live, else the replicas of the
/// Pod templates that carry the Service's and subset's labels and the target port.
fn endpoints(
    m: &Model,
    svc: &model::Service,
    port: &model::ServicePort,
    subset: Option<&BTreeMap<String, String>>,
    out: &mut DestinationHop,
) {
    let (count, detail) = if m.live {
        let ready: Vec<String> = m
            .endpoints_of(svc)
            .map(|e| e.ready.iter().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, pod)| match (subset, pod) {
                (Some(l), Some(pod)) => m.workloads.iter().any(|w| {
                    w.is_pod
                        && w.namespace == svc.namespace
                        && w.name == format!("Pod {pod}")
                        && selects(l, &w.labels)
                }),
                _ => true,
            })
            .map(|(ip, pod)| pod.clone().unwrap_or_else(|| ip.clone()))
            .collect();
        let detail = if ready.is_empty() {
            "no ready endpoints".to_string()
        } else {
            format!("{} ready: {}", ready.len(), ready.join(", "))
        };
        (ready.len() as u32, detail)
    } else if m.pods_known(&svc.namespace) && svc.selector.is_some() {
        let pods: Vec<&model::Workload> =
            m.pods_of(svc, subset).filter(|w| w.serves(port)).collect();
        let names: Vec<&str> = pods.iter().map(|w| w.name.as_str()).collect();
        let detail = if pods.is_empty() {
            "no Pod template carries the Service's and subset's labels and the target port"
                .to_string()
        } else {
            format!("Pods of {} (readiness unknown offline)", names.join(", "))
        };
        (pods.iter().map(|w| w.replicas).sum(), detail)
    } else {
        out.hops
            .push(hop("endpoints", true, "not known offline", None));
        return;
    };
    out.healthy_endpoints = Some(count);
    out.hops.push(hop("endpoints", count > 0, detail, None));
    if count == 0 {
        out.fails_with = Some("503 UH (no healthy upstream)".into());
    }
}

impl Explanation {
    /// The text form: one line per hop, then the outcome.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let r = &self.request;
        let _ = writeln!(s, "{} http://{}{}", r.method, r.host, r.path);
        let line = |s: &mut String, indent: &str, h: &Hop| {
            let mark = if h.ok { "ok " } else { "NO " };
            let _ = write!(s, "{indent}{mark} {:<14} {}", h.step, h.detail);
            if let Some(a) = &h.at {
                let _ = write!(s, "  [{a}]");
            }
            s.push('\n');
        };
        for h in &self.hops {
            line(&mut s, "  ", h);
        }
        for d in &self.destinations {
            let _ = writeln!(
                s,
                "  -> {:.0}% {}{}{}{}",
                d.share,
                d.host,
                d.subset
                    .as_ref()
                    .map(|x| format!(" subset {x}"))
                    .unwrap_or_default(),
                d.port.map(|p| format!(" port {p}")).unwrap_or_default(),
                d.fails_with
                    .as_ref()
                    .map(|f| format!("  => {f}"))
                    .unwrap_or_default()
            );
            for h in &d.hops {
                line(&mut s, "       ", h);
            }
        }
        let result = match &self.outcome {
            Outcome::Routed { note } => format!("routed: {note}"),
            Outcome::NoListener { reason } => format!("connection refused: {reason}"),
            Outcome::NoRoute { reason } => format!("404 NR (no route): {reason}"),
            Outcome::NoHealthyUpstream { reason } => {
                format!("503 UH (no healthy upstream): {reason}")
            }
            Outcome::Redirect { status, location } => format!("redirect {status} to {location}"),
            Outcome::DirectResponse { status } => format!("direct response {status}"),
        };
        let _ = writeln!(s, "=> {result}");
        s
    }
}
