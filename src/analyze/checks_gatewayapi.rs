//! The analyzers of the Gateway API objects (Gateway, HTTPRoute, GRPCRoute, ReferenceGrant),
//! over what was written and what the translation in `model::gatewayapi` decided.
//!
//! Most of these are the route status istiod would write (IST0171 reports it once it is on
//! the cluster), found before anything is applied; some are failures Istio writes no status
//! for at all (a parentRef to a Gateway that does not exist, a backend port the Service does
//! not expose, a Gateway of a class istiod does not serve), which only show as 404 or 500.

use std::collections::BTreeMap;

use super::findings::{Finding, Severity};
use super::model::Model;
use super::model::gatewayapi::{Attachment, K8sGateway, Route, backend_problem, is_istio_class};

pub fn analyze(m: &Model, out: &mut Vec<Finding>) {
    for r in &m.gateway_api.routes {
        parents(r, out);
        isolated_away(r, out);
        backends(m, r, out);
        rules(r, out);
    }
    for gw in &m.gateway_api.gateways {
        gateway(m, gw, out);
    }
    gateways_sharing(m, out);
    grants(m, out);
}

/// Where each parentRef of a route ended up: attached, or why not.
fn parents(r: &Route, out: &mut Vec<Finding>) {
    for p in &r.parents {
        let gw = format!("{}/{}", p.namespace, p.name);
        let (code, severity, message, hint) = match &p.attachment {
            Attachment::Accepted(_) | Attachment::Other => continue,
            Attachment::GatewayNotFound { known } => (
                "ML0601",
                if *known { Severity::Error } else { Severity::Warning },
                format!("parentRef names Gateway {gw}, which does not exist{}; Istio writes no status for it and its hosts answer 404", if *known { "" } else { " among the known objects" }),
                "fix the name or namespace, or define the Gateway (gateway.networking.k8s.io)".to_string(),
            ),
            Attachment::NotIstio(class) => (
                "ML0609",
                Severity::Warning,
                format!("Gateway {gw} has class {class:?}, which istiod does not serve: the route is ignored"),
                "use `gatewayClassName: istio`".to_string(),
            ),
            Attachment::NoMatchingParent(what) => (
                "ML0604",
                Severity::Error,
                format!("parentRef to Gateway {gw}: {what} (Accepted=False NoMatchingParent)"),
                "name a listener of that Gateway in sectionName, or a port it listens on".to_string(),
            ),
            Attachment::NotAllowed(what) => (
                "ML0602",
                Severity::Error,
                format!("{what} (Accepted=False NotAllowedByListeners)"),
                format!("set `allowedRoutes.namespaces.from: All` (or a Selector) on the listener, or move the route to namespace {}", p.namespace),
            ),
            Attachment::NoMatchingHostname(what) => (
                "ML0603",
                Severity::Error,
                format!("parentRef to Gateway {gw}: {what} (Accepted=False NoMatchingListenerHostname)"),
                "make a hostname of the route match the listener's hostname (a wildcard covers subdomains only)".to_string(),
            ),
        };
        out.push(Finding::new(code, severity, &r.meta, p.pos, message, hint));
    }
}

/// A route accepted on listeners where every one of its hostnames is taken by a more
/// specific listener of the Gateway (isolation), and attached nowhere else: istiod says it
/// is accepted and sends it no request at all.
fn isolated_away(r: &Route, out: &mut Vec<Finding>) {
    let accepted: Vec<_> = r
        .parents
        .iter()
        .filter_map(|p| match &p.attachment {
            Attachment::Accepted(listeners) => Some((p, listeners)),
            _ => None,
        })
        .collect();
    let serves_nothing = accepted
        .iter()
        .all(|(_, ls)| ls.iter().all(|(_, hosts)| hosts.is_empty()));
    let Some((p, _)) = accepted.first().filter(|_| serves_nothing) else {
        return;
    };
    out.push(Finding::new(
        "ML0615",
        Severity::Warning,
        &r.meta,
        p.pos,
        format!(
            "parentRef to Gateway {}/{}: every hostname of the route is served by a more specific listener of the Gateway on the same port, where the route is not attached; Istio accepts it and sends it no request",
            p.namespace, p.name
        ),
        "attach the route to that listener too (`sectionName`), or give it hostnames no other listener claims".to_string(),
    ));
}

/// backendRefs (and mirror backends) that cannot take traffic.
fn backends(m: &Model, r: &Route, out: &mut Vec<Finding>) {
    let rules = r.spec.rules.iter().flatten();
    let refs = rules.flat_map(|rule| {
        let mirrors = rule
            .filters
            .iter()
            .filter_map(|f| f.request_mirror.as_ref()?.backend_ref.as_ref());
        rule.backend_refs.iter().chain(mirrors)
    });
    for b in refs {
        let Some(p) = backend_problem(m, &r.meta, b) else {
            continue;
        };
        let (code, severity, hint) = match p.reason {
            "BackendNotFound" => (
                "ML0605",
                if m.live {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                "fix the Service name, or define the Service",
            ),
            "RefNotPermitted" => (
                "ML0606",
                Severity::Error,
                "add a ReferenceGrant in the Service's namespace that allows this route's kind from this namespace",
            ),
            "PortNotFound" => (
                "ML0607",
                Severity::Error,
                "use a port the Service exposes (its `port`, not the targetPort)",
            ),
            _ => (
                "ML0608",
                Severity::Error,
                "reference a Service by name (kind Service, same or granted namespace) with a port",
            ),
        };
        let idle = b.weight.as_ref().is_some_and(|w| w.value == 0);
        let (severity, effect) = if p.drops_route {
            (severity, "istiod drops the whole route (404)")
        } else if idle {
            // Weight 0: no request goes there, the route's status still says so.
            (Severity::Warning, "it takes no traffic (weight 0)")
        } else {
            (severity, "its share of requests gets 500")
        };
        let message = format!("{} ({}): {effect}", p.message, p.reason);
        out.push(Finding::new(code, severity, &r.meta, b.pos, message, hint));
    }
}

/// Rules that can only answer 500: no backendRefs and no redirect, or every weight 0.
fn rules(r: &Route, out: &mut Vec<Finding>) {
    for rule in r.spec.rules.iter().flatten() {
        let redirect = rule.filters.iter().any(|f| f.request_redirect.is_some());
        let zero = !rule.backend_refs.is_empty()
            && rule
                .backend_refs
                .iter()
                .all(|b| b.weight.as_ref().is_some_and(|w| w.value == 0));
        if redirect || !(rule.backend_refs.is_empty() || zero) {
            continue;
        }
        let what = if zero {
            "every backendRef of this rule has weight 0"
        } else {
            "this rule has no backendRefs and no redirect"
        };
        out.push(Finding::new(
            "ML0614",
            Severity::Warning,
            &r.meta,
            rule.pos,
            format!("{what}: Istio accepts the route and answers its requests 500"),
            "add a backendRef with a weight above 0, or a RequestRedirect filter",
        ));
    }
}

fn gateway(m: &Model, gw: &K8sGateway, out: &mut Vec<Finding>) {
    let class_pos = gw
        .spec
        .gateway_class_name
        .as_ref()
        .map_or(gw.meta.spec_pos, |c| c.pos);
    if !is_istio_class(m, gw.class()) {
        out.push(Finding::new(
            "ML0609",
            Severity::Warning,
            &gw.meta,
            class_pos,
            format!("gatewayClassName {:?} is not served by istiod: the Gateway gets no status and no deployment", gw.class()),
            "use `gatewayClassName: istio` (istiod's class, controller istio.io/gateway-controller)",
        ));
    }
    let mut seen: BTreeMap<(u32, String, String), &str> = BTreeMap::new();
    for l in &gw.spec.listeners {
        let host = l.hostname.as_ref().map_or("*", |h| h.value.as_str());
        let key = (l.port.value, l.protocol.value.clone(), host.to_string());
        if let Some(first) = seen.insert(key, &l.name.value) {
            out.push(Finding::new(
                "ML0610",
                Severity::Error,
                &gw.meta,
                l.pos,
                format!(
                    "listener {:?} has the port, protocol and hostname of listener {first:?} ({} {} {host})",
                    l.name.value, l.port.value, l.protocol.value
                ),
                "give each listener its own hostname or port (the API server's CEL rule refuses it too)",
            ));
        }
    }
}

/// Two Gateways of Istio's class serving one hostname on one port (Kiali KIA1501), or
/// asking for one address (KIA1502).
fn gateways_sharing(m: &Model, out: &mut Vec<Finding>) {
    let gws: Vec<&K8sGateway> = m
        .gateway_api
        .gateways
        .iter()
        .filter(|g| is_istio_class(m, g.class()))
        .collect();
    for (i, b) in gws.iter().enumerate() {
        'listener: for l in &b.spec.listeners {
            let host = l.hostname.as_ref().map_or("*", |h| h.value.as_str());
            for a in &gws[..i] {
                let clash = a.spec.listeners.iter().any(|x| {
                    let xh = x.hostname.as_ref().map_or("*", |h| h.value.as_str());
                    x.port.value == l.port.value && xh == host
                });
                if clash {
                    out.push(Finding::new(
                        "ML0611",
                        Severity::Warning,
                        &b.meta,
                        l.pos,
                        format!("Gateway {} also serves host {host} on port {}", a.meta.ns_name(), l.port.value),
                        "serve each host on a port from one Gateway, or give the Gateways their own addresses",
                    ));
                    continue 'listener;
                }
            }
        }
        for addr in &b.spec.addresses {
            let same = gws[..i].iter().find(|a| {
                a.spec
                    .addresses
                    .iter()
                    .any(|x| x.value.value == addr.value.value && x.value.kind == addr.value.kind)
            });
            if let Some(a) = same {
                out.push(Finding::new(
                    "ML0612",
                    Severity::Warning,
                    &b.meta,
                    addr.pos,
                    format!(
                        "Gateway {} asks for the same address {}",
                        a.meta.ns_name(),
                        addr.value.value
                    ),
                    "give each Gateway its own address",
                ));
            }
        }
    }
}

/// ReferenceGrants whose `from` namespace does not exist (live only: offline the namespaces
/// are unknown).
fn grants(m: &Model, out: &mut Vec<Finding>) {
    if !m.live || m.namespaces.is_empty() {
        return;
    }
    for g in &m.gateway_api.grants {
        for f in &g.spec.from {
            let ns = &f.namespace.value;
            if m.namespaces.iter().any(|n| &n.name == ns) {
                continue;
            }
            out.push(
                Finding::new(
                    "ML0613",
                    Severity::Warning,
                    &g.meta,
                    f.namespace.pos,
                    format!("ReferenceGrant allows references from namespace {ns:?}, which does not exist"),
                    "fix the namespace name",
                )
                .live(),
            );
        }
    }
}
