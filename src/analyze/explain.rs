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

use serde::Serialize;

use super::model::{
    self, Gateway, Meta, Model, ServerHost, VirtualService, host_matches, selects, show_labels,
};
use crate::manifest::istio::{HttpMatch, HttpRoute, RouteDestination, StringMatch};
use crate::manifest::yaml::{Loc, Pos};

/// The request to simulate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Request {
    /// The Host header (a `:port` suffix is ignored).
    pub host: String,
    /// Path with an optional `?query`.
    pub path: String,
    pub method: String,
    /// Header names are matched case-insensitively.
    pub headers: BTreeMap<String, String>,
    /// The gateway port the request arrives on (default 80).
    pub port: Option<u32>,
}

impl Request {
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
    pub host: String,
    /// `host` as Istio reads it (short names expanded in the VirtualService's namespace).
    #[serde(skip)]
    pub fqdn: String,
    pub subset: Option<String>,
    pub port: Option<u32>,
    /// Share of the rule's traffic, in percent.
    pub share: f64,
    pub hops: Vec<Hop>,
    /// What a request sent here gets when it cannot be delivered (`503 UH`, `503 NC`).
    pub fails_with: Option<String>,
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
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    pub request: Request,
    pub hops: Vec<Hop>,
    pub destinations: Vec<DestinationHop>,
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
    let mut ex = Explanation {
        request: req.clone(),
        hops: Vec::new(),
        destinations: Vec::new(),
        outcome: Outcome::NoRoute {
            reason: String::new(),
        },
        live: m.live,
    };
    ex.outcome = walk(m, req, &mut ex);
    ex
}

fn walk(m: &Model, req: &Request, ex: &mut Explanation) -> Outcome {
    let host = req
        .host
        .rsplit_once(':')
        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        .map_or(req.host.as_str(), |(h, _)| h)
        .to_ascii_lowercase();
    let port = req.port.unwrap_or(80);

    // 1. Which Gateways the ingress Pods run.
    let gateways = ingress_gateways(m, ex);
    if gateways.is_empty() {
        return Outcome::NoListener {
            reason: "no Gateway applies to the ingress".into(),
        };
    }

    // 2. A server on the port, then one whose hosts cover the Host header.
    let on_port: Vec<(&Gateway, &Loc<crate::manifest::istio::Server>)> = gateways
        .iter()
        .flat_map(|g| g.spec.servers.iter().map(move |s| (*g, s)))
        .filter(|(_, s)| {
            s.port
                .as_ref()
                .and_then(|p| p.number.as_ref())
                .map(|n| n.value)
                == Some(port)
        })
        .collect();
    if on_port.is_empty() {
        let reason = format!("no Gateway server listens on port {port}: the connection is refused");
        ex.hops.push(hop("server", false, &reason, None));
        return Outcome::NoListener { reason };
    }
    let serving: Vec<(&Gateway, &Loc<crate::manifest::istio::Server>, &Loc<String>)> = on_port
        .iter()
        .flat_map(|(g, s)| {
            s.hosts
                .iter()
                .filter(|h| host_matches(&ServerHost::parse(h).host, &host))
                .map(move |h| (*g, *s, h))
        })
        .collect();
    let Some(&(_, first_server, first_host)) = serving.first() else {
        let all: Vec<String> = on_port
            .iter()
            .flat_map(|(_, s)| s.hosts.iter().map(|h| h.value.clone()))
            .collect();
        let reason = format!(
            "no server on port {port} serves host {host} (server hosts: {})",
            all.join(", ")
        );
        ex.hops.push(hop(
            "server",
            false,
            &reason,
            at(&on_port[0].0.meta, on_port[0].1.pos),
        ));
        return Outcome::NoRoute { reason };
    };
    for (g, s, h) in &serving {
        let proto = s
            .port
            .as_ref()
            .and_then(|p| p.protocol.as_ref())
            .map_or("?".to_string(), |p| p.value.clone());
        ex.hops.push(hop(
            "server",
            true,
            format!(
                "Gateway {} port {port} ({proto}) host {}",
                g.meta.ns_name(),
                h.value
            ),
            at(&g.meta, h.pos),
        ));
    }
    if first_server
        .tls
        .as_ref()
        .and_then(|t| t.https_redirect)
        .unwrap_or(false)
    {
        let location = format!("https://{host}{}", req.path);
        ex.hops.push(hop(
            "action",
            true,
            format!("httpsRedirect to {location}"),
            at(&serving[0].0.meta, first_host.pos),
        ));
        return Outcome::Redirect {
            status: 301,
            location,
        };
    }

    // 3. VirtualServices bound to one of those Gateways, for this host; the most specific
    // host wins, as in Envoy's virtual host selection.
    let mut bound: Vec<(&VirtualService, usize, &str)> = Vec::new();
    for vs in &m.virtual_services {
        for (i, h) in vs.hosts.iter().enumerate() {
            let admitted = serving.iter().any(|(g, _, sh)| {
                vs.binds(&g.meta)
                    && ServerHost::parse(sh)
                        .admits_namespace(vs.meta.namespace(), g.meta.namespace())
            });
            if admitted && host_matches(h, &host) {
                bound.push((vs, i, h.as_str()));
                break;
            }
        }
    }
    bound.sort_by_key(|(_, _, h)| std::cmp::Reverse(specificity(h)));
    let Some(&(vs, hi, _)) = bound.first() else {
        let mesh_only: Vec<String> = m
            .virtual_services
            .iter()
            .filter(|vs| vs.hosts.iter().any(|h| host_matches(h, &host)))
            .map(|vs| vs.meta.ns_name())
            .collect();
        let reason = if mesh_only.is_empty() {
            format!("no VirtualService serves host {host} on this Gateway")
        } else {
            format!(
                "VirtualService {} has host {host} but is not bound to the Gateway (check `gateways:`)",
                mesh_only.join(", ")
            )
        };
        ex.hops.push(hop("virtualservice", false, &reason, None));
        return Outcome::NoRoute { reason };
    };
    ex.hops.push(hop(
        "virtualservice",
        true,
        format!(
            "{} {} host {}",
            vs.meta.key.kind,
            vs.meta.ns_name(),
            vs.spec.hosts[hi].value
        ),
        at(&vs.meta, vs.spec.hosts[hi].pos),
    ));
    if bound.len() > 1 {
        ex.hops.push(hop(
            "virtualservice",
            true,
            format!(
                "also bound for this host: {} (its rules come after, in an order Istio picks)",
                bound[1..]
                    .iter()
                    .map(|(v, _, _)| v.meta.ns_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        ));
    }

    // 4. The first matching rule, following one level of delegation.
    let mut current = vs;
    for _ in 0..2 {
        let Some((i, rule)) = current
            .spec
            .http
            .iter()
            .enumerate()
            .find(|(_, r)| rule_matches(r, req, &host, port))
        else {
            let reason = format!(
                "no rule of {} {} matches {} {}",
                current.meta.key.kind,
                current.meta.ns_name(),
                req.method,
                req.path
            );
            ex.hops.push(hop(
                "rule",
                false,
                &reason,
                at(&current.meta, current.meta.spec_pos),
            ));
            return Outcome::NoRoute { reason };
        };
        let name = rule
            .name
            .as_ref()
            .map(|n| format!(" ({n:?})"))
            .unwrap_or_default();
        ex.hops.push(hop(
            "rule",
            true,
            format!("http[{i}]{name}{}", describe_match(rule)),
            at(current.rule_meta(i), rule.pos),
        ));
        if let Some(r) = &rule.redirect {
            let status = r.redirect_code.unwrap_or(301);
            let location = r.location(&host, &req.path, port);
            ex.hops.push(hop(
                "action",
                true,
                format!("redirect {status} to {location}"),
                at(&current.meta, r.pos),
            ));
            return Outcome::Redirect { status, location };
        }
        if let Some(d) = &rule.direct_response {
            let status = d.status.unwrap_or(200);
            ex.hops.push(hop(
                "action",
                true,
                format!("direct response {status}"),
                at(&current.meta, d.pos),
            ));
            return Outcome::DirectResponse { status };
        }
        if let Some(d) = &rule.delegate {
            let ns = d
                .namespace
                .clone()
                .unwrap_or_else(|| current.meta.namespace().to_string());
            let name = d.name.clone().unwrap_or_default();
            match m
                .virtual_services
                .iter()
                .find(|v| v.meta.namespace() == ns && v.meta.name() == name)
            {
                Some(next) => {
                    ex.hops.push(hop(
                        "action",
                        true,
                        format!("delegate to VirtualService {ns}/{name}"),
                        at(&current.meta, d.pos),
                    ));
                    current = next;
                    continue;
                }
                None => {
                    let reason = format!("delegate VirtualService {ns}/{name} not found");
                    ex.hops
                        .push(hop("action", false, &reason, at(&current.meta, d.pos)));
                    return Outcome::NoRoute { reason };
                }
            }
        }
        let route: &[Loc<RouteDestination>] = rule.route.as_ref().map_or(&[], |r| &r.value);
        return route_to(m, current.rule_meta(i), route, ex);
    }
    Outcome::NoRoute {
        reason: "delegation deeper than one level is not followed".into(),
    }
}

/// The Gateways that apply to the configured ingress (see [`ingress_gateways`]).
pub(crate) fn ingress_gateway_list(m: &Model) -> Vec<&Gateway> {
    let mut scratch = Explanation {
        request: Request::get("", "/"),
        hops: Vec::new(),
        destinations: Vec::new(),
        outcome: Outcome::Routed {
            note: String::new(),
        },
        live: m.live,
    };
    ingress_gateways(m, &mut scratch)
}

/// The Gateways that apply to the configured ingress: those selecting its Pods when they are
/// known, otherwise all of them (said so in a hop).
fn ingress_gateways<'a>(m: &'a Model, ex: &mut Explanation) -> Vec<&'a Gateway> {
    let ing = &m.ingress;
    let pods: Vec<&model::Workload> = match m.service(&ing.namespace, &ing.service) {
        Some(svc) => m.pods_of(svc, None).collect(),
        None => m
            .workloads
            .iter()
            .filter(|w| w.namespace == ing.namespace && w.is_gateway())
            .collect(),
    };
    if pods.is_empty() {
        ex.hops.push(hop(
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
        .filter(|g| {
            g.spec
                .selector
                .as_ref()
                .is_none_or(|s| pods.iter().any(|p| selects(&s.value, &p.labels)))
        })
        .collect();
    let labels = show_labels(&pods[0].labels);
    if chosen.is_empty() {
        ex.hops.push(hop(
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
            ex.hops.push(hop(
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

/// Exact names before wildcards, longer suffixes before shorter ones.
fn specificity(h: &str) -> (bool, usize) {
    (!h.starts_with('*'), h.len())
}

fn string_match(sm: &StringMatch, value: Option<&str>, ignore_case: bool) -> bool {
    let Some(v) = value else { return false };
    let (v, exact, prefix) = if ignore_case {
        (
            v.to_ascii_lowercase(),
            sm.exact.as_ref().map(|e| e.to_ascii_lowercase()),
            sm.prefix.as_ref().map(|p| p.to_ascii_lowercase()),
        )
    } else {
        (v.to_string(), sm.exact.clone(), sm.prefix.clone())
    };
    if let Some(e) = exact {
        return v == e;
    }
    if let Some(p) = prefix {
        return if sm.path_separated {
            StringMatch::path_prefix_matches(&p, &v)
        } else {
            v.starts_with(&p)
        };
    }
    if let Some(r) = &sm.regex {
        // Envoy's safe_regex matches the whole value.
        return regex::Regex::new(&format!("^(?:{r})$")).is_ok_and(|re| re.is_match(&v));
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

fn route_to(
    m: &Model,
    vs: &Meta,
    route: &[Loc<RouteDestination>],
    ex: &mut Explanation,
) -> Outcome {
    if route.is_empty() {
        let reason = "the matched rule has no route".to_string();
        ex.hops.push(hop("action", false, &reason, None));
        return Outcome::NoRoute { reason };
    }
    // Relative weights; an unweighted single destination takes all, and all-unweighted
    // destinations share evenly.
    let weights: Vec<f64> = if route.iter().all(|r| r.weight.is_none()) {
        vec![1.0; route.len()]
    } else {
        route
            .iter()
            .map(|r| r.weight.as_ref().map_or(0.0, |w| w.value.max(0) as f64))
            .collect()
    };
    let total: f64 = weights.iter().sum();
    let mut failing = 0.0;
    for (rd, w) in route.iter().zip(&weights) {
        let share = if total > 0.0 { w / total * 100.0 } else { 0.0 };
        let d = destination(m, vs, rd, share);
        if d.fails_with.is_some() {
            failing += share;
        }
        ex.destinations.push(d);
    }
    let live = if m.live {
        ""
    } else {
        " (offline: from the configuration, not live endpoints)"
    };
    let all_invalid = ex.destinations.iter().filter(|d| d.share > 0.0).all(|d| {
        d.fails_with
            .as_deref()
            .is_some_and(|f| f.starts_with("500"))
    });
    if total > 0.0 && all_invalid {
        // Gateway API: Istio keeps invalid backendRefs as clusters that do not exist, and
        // Envoy answers them 500 under gateway semantics.
        Outcome::DirectResponse { status: 500 }
    } else if total == 0.0 {
        Outcome::NoHealthyUpstream {
            reason: "every destination has weight 0".into(),
        }
    } else if failing >= 99.999 {
        Outcome::NoHealthyUpstream {
            reason: format!("no destination can take the request{live}"),
        }
    } else if failing > 0.0 {
        Outcome::Routed {
            note: format!("{failing:.0}% of requests would get 503{live}"),
        }
    } else {
        let shares: Vec<String> = ex
            .destinations
            .iter()
            .filter(|d| d.share > 0.0)
            .map(|d| {
                format!(
                    "{:.0}% {}{}",
                    d.share,
                    d.host,
                    d.subset
                        .as_ref()
                        .map(|s| format!(" {s}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        Outcome::Routed {
            note: format!("{}{live}", shares.join(", ")),
        }
    }
}

fn destination(m: &Model, vs: &Meta, rd: &Loc<RouteDestination>, share: f64) -> DestinationHop {
    let d = &rd.destination;
    let host = model::fqdn(&d.host, vs.namespace());
    let subset = d.subset.as_ref().map(|s| s.value.clone());
    let port = d.port.as_ref().and_then(|p| p.number);
    let mut out = DestinationHop {
        host: d.host.value.clone(),
        fqdn: host.clone(),
        subset: subset.clone(),
        port,
        share,
        hops: Vec::new(),
        fails_with: None,
    };
    if let Some(why) = &rd.invalid {
        out.hops.push(hop("backend", false, why, at(vs, rd.pos)));
        out.fails_with = Some("500 (invalid backendRef)".into());
        return out;
    }
    let svc = m.service_for_host(&host);
    let Some(svc) = svc else {
        if let Some(se) = m.service_entry_for(&host) {
            out.hops.push(hop(
                "service",
                true,
                format!("ServiceEntry {} declares {host}", se.meta.ns_name()),
                at(&se.meta, Pos::default()),
            ));
        } else {
            let known = model::service_of(&host).is_some_and(|(ns, _)| m.services_known(ns));
            out.hops.push(hop(
                "service",
                !known,
                if known {
                    format!("no Service {host}")
                } else {
                    format!("Service {host} not among the known objects (not checked)")
                },
                at(vs, d.host.pos),
            ));
            if known {
                out.fails_with = Some("503 NC (no such cluster)".into());
            }
        }
        return out;
    };
    let mut subset_labels: Option<BTreeMap<String, String>> = None;
    if let Some(s) = &d.subset {
        let found = m.rules_for(&host).find_map(|r| {
            r.spec
                .subsets
                .iter()
                .find(|x| x.name.value == s.value)
                .map(|x| (r, x))
        });
        match found {
            Some((r, x)) => {
                subset_labels = x.labels.as_ref().map(|l| l.value.clone());
                out.hops.push(hop(
                    "subset",
                    true,
                    format!(
                        "subset {} of DestinationRule {} selects {}",
                        s.value,
                        r.meta.ns_name(),
                        subset_labels
                            .as_ref()
                            .map_or("every Pod".into(), show_labels)
                    ),
                    at(&r.meta, x.name.pos),
                ));
            }
            None => {
                out.hops.push(hop(
                    "subset",
                    false,
                    format!(
                        "subset {} is defined in no DestinationRule for {host}",
                        s.value
                    ),
                    at(vs, s.pos),
                ));
                out.fails_with = Some("503 NC (no cluster for the subset)".into());
                return out;
            }
        }
    }
    let svc_port = match port {
        Some(p) => svc.ports.iter().find(|sp| sp.port == p),
        None if svc.ports.len() == 1 => svc.ports.first(),
        None => None,
    };
    let svc_at = svc
        .origin
        .as_ref()
        .and_then(|o| at(o, Pos::default()))
        .or_else(|| svc.live.then(|| "(cluster)".to_string()));
    match svc_port {
        Some(p) => out.hops.push(hop(
            "service",
            true,
            format!(
                "Service {}/{} port {}{} -> {}",
                svc.namespace,
                svc.name,
                p.port,
                p.name
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                p.target_port.clone().unwrap_or_else(|| p.port.to_string())
            ),
            svc_at,
        )),
        None => {
            out.hops.push(hop(
                "service",
                false,
                format!(
                    "Service {}/{} has no port {} (ports: {})",
                    svc.namespace,
                    svc.name,
                    port.map_or("chosen".into(), |p| p.to_string()),
                    svc.ports
                        .iter()
                        .map(|p| p.port.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                svc_at,
            ));
            out.fails_with = Some("503 NC (no cluster for the port)".into());
            return out;
        }
    }
    if m.live {
        let ready: Vec<&(String, Option<String>)> = m
            .endpoints_of(svc)
            .map(|e| e.ready.iter().collect())
            .unwrap_or_default();
        let ready: Vec<String> = ready
            .into_iter()
            .filter(|(_, pod)| match (&subset_labels, pod) {
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
        let ok = !ready.is_empty() || svc.selector.is_none();
        out.hops.push(hop(
            "endpoints",
            ok,
            if ready.is_empty() {
                "no ready endpoints".to_string()
            } else {
                format!("{} ready: {}", ready.len(), ready.join(", "))
            },
            None,
        ));
        if !ok {
            out.fails_with = Some("503 UH (no healthy upstream)".into());
        }
    } else if m.pods_known(&svc.namespace) && svc.selector.is_some() {
        let pods: Vec<&str> = m
            .pods_of(svc, subset_labels.as_ref())
            .map(|w| w.name.as_str())
            .collect();
        out.hops.push(hop(
            "endpoints",
            !pods.is_empty(),
            if pods.is_empty() {
                "no Pod template carries the Service's and subset's labels".to_string()
            } else {
                format!("Pods of {} (readiness unknown offline)", pods.join(", "))
            },
            None,
        ));
        if pods.is_empty() {
            out.fails_with = Some("503 UH (no healthy upstream)".into());
        }
    } else {
        out.hops
            .push(hop("endpoints", true, "not known offline", None));
    }
    out
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
