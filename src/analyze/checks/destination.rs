//! The checks of a route's destinations: repeats, weights, hosts, subsets, Service ports,
//! and (live) endpoints and sidecars.

use super::common::short_host_with_dot;
use crate::analyze::findings::{Finding, Severity};
use crate::analyze::model::{self, Meta, Model, Service, VirtualService, selects, service_of};
use crate::manifest::yaml::Loc;

/// The destinations of one rule's route: each destination, then the route's weights.
pub(super) fn destinations(
    m: &Model,
    vs: &VirtualService,
    label: &str,
    route: &[Loc<crate::manifest::istio::RouteDestination>],
    out: &mut Vec<Finding>,
) {
    let mut seen: Vec<(String, Option<String>, Option<u32>)> = Vec::new();
    for rd in route {
        destination(m, vs, label, rd, &mut seen, out);
    }
    route_weights(&vs.meta, label, route, out);
}

/// One destination: a repeat of an earlier one, a negative weight, a host that names
/// nothing, an undefined subset, the Service's ports, live endpoints, a missing subset
/// where the host is split by subset elsewhere. `seen` holds the destinations before it.
fn destination(
    m: &Model,
    vs: &VirtualService,
    label: &str,
    rd: &Loc<crate::manifest::istio::RouteDestination>,
    seen: &mut Vec<(String, Option<String>, Option<u32>)>,
    out: &mut Vec<Finding>,
) {
    let meta = &vs.meta;
    let d = &rd.destination;
    let host = model::fqdn(&d.host, meta.namespace());
    repeated_destination(meta, label, d, &host, seen, out);
    if let Some(w) = &rd.weight
        && w.value < 0
    {
        out.push(Finding::new(
            "ML0122",
            Severity::Error,
            meta,
            w.pos,
            format!("weight {} is negative", w.value),
            "weights are 0 or more; they are relative shares of the route's traffic",
        ));
    }
    // Destination host: a Service, a ServiceEntry, or a mistake.
    let svc = m.service_for_host(&host);
    // A misnamed host (ML0116) is the root cause; its missing subset is not reported too.
    let misnamed = svc.is_none()
        && m.service_entry_for(&host).is_none()
        && destination_not_found(m, meta, &d.host, &host, out);
    if let Some(s) = d.subset.as_ref().filter(|_| !misnamed) {
        undefined_subset(m, meta, &d.host, &host, s, out);
    }
    if let Some(svc) = svc {
        service_port(m, vs, d, svc, out);
        if m.live {
            live_destination(m, meta, d, svc, out);
        }
    }
    if d.subset.is_none() {
        unsplit_destination(m, meta, label, &d.host, &host, out);
    }
}

/// A destination (host, subset and port) the route already has; `seen` holds those
/// before it.
fn repeated_destination(
    meta: &Meta,
    label: &str,
    d: &Loc<crate::manifest::istio::Destination>,
    host: &str,
    seen: &mut Vec<(String, Option<String>, Option<u32>)>,
    out: &mut Vec<Finding>,
) {
    let port = d.port.as_ref().and_then(|p| p.number);
    let subset = d.subset.as_ref().map(|s| s.value.clone());
    let key = (host.to_string(), subset.clone(), port);
    if seen.contains(&key) {
        out.push(Finding::new(
            "ML0121",
            Severity::Warning,
            meta,
            d.host.pos,
            format!(
                "{label} routes to {}{} twice",
                d.host.value,
                subset
                    .as_deref()
                    .map(|s| format!(" subset {s}"))
                    .unwrap_or_default()
            ),
            "merge the two destinations into one (add their weights)",
        ));
    }
    seen.push(key);
}

/// A subset that no DestinationRule of the host defines: requests get 503.
fn undefined_subset(
    m: &Model,
    meta: &Meta,
    h: &Loc<String>,
    host: &str,
    s: &Loc<String>,
    out: &mut Vec<Finding>,
) {
    let rules: Vec<&model::DestinationRule> = m.rules_for(host).collect();
    let defined: Vec<&str> = rules
        .iter()
        .flat_map(|r| r.spec.subsets.iter().map(|s| s.name.value.as_str()))
        .collect();
    if defined.contains(&s.value.as_str()) {
        return;
    }
    let hint = if rules.is_empty() {
        format!(
            "add a DestinationRule with host {} and a subset {:?} (with the Pod labels it selects)",
            h.value, s.value
        )
    } else {
        format!(
            "subsets of {}: {}",
            rules
                .iter()
                .map(|r| format!("DestinationRule {}", r.meta.ns_name()))
                .collect::<Vec<_>>()
                .join(", "),
            if defined.is_empty() {
                "none".to_string()
            } else {
                defined.join(", ")
            }
        )
    };
    out.push(Finding::new(
        "ML0117",
        Severity::Error,
        meta,
        s.pos,
        format!(
            "subset {:?} is not defined for host {host}: requests get 503",
            s.value
        ),
        hint,
    ));
}

/// The destination's port against the Service's: a port the Service does not have, or
/// none named where the Service has several.
fn service_port(
    m: &Model,
    vs: &VirtualService,
    d: &Loc<crate::manifest::istio::Destination>,
    svc: &Service,
    out: &mut Vec<Finding>,
) {
    let port = d.port.as_ref().and_then(|p| p.number);
    let ports: Vec<String> = svc.ports.iter().map(|p| p.port.to_string()).collect();
    match (port, &d.port) {
        (Some(p), Some(loc)) if !svc.ports.iter().any(|sp| sp.port == p) => {
            out.push(Finding::new(
                "ML0119",
                Severity::Error,
                &vs.meta,
                loc.pos,
                format!(
                    "Service {}/{} has no port {p} (ports: {})",
                    svc.namespace,
                    svc.name,
                    ports.join(", ")
                ),
                "use the Service's `port` (not the container's targetPort)",
            ));
        }
        (None, _) if svc.ports.len() > 1 => {
            out.push(port_required(m, vs, svc, &d.host, &ports));
        }
        _ => {}
    }
}

/// Routing to a host without subset while other routes split that host by subset.
fn unsplit_destination(
    m: &Model,
    meta: &Meta,
    label: &str,
    h: &Loc<String>,
    host: &str,
    out: &mut Vec<Finding>,
) {
    if !m.rules_for(host).any(|r| !r.spec.subsets.is_empty()) {
        return;
    }
    let split_elsewhere = m.virtual_services.iter().any(|other| {
        other.spec.http.iter().any(|r| {
            r.route.iter().flat_map(|rt| rt.value.iter()).any(|o| {
                o.destination.subset.is_some()
                    && model::fqdn(&o.destination.host, other.meta.namespace()) == host
            })
        })
    });
    if split_elsewhere {
        out.push(Finding::new(
            "ML0123",
            Severity::Warning,
            meta,
            h.pos,
            format!(
                "{label} routes to {} without a subset while other routes split it by subset, so this traffic reaches every version",
                h.value
            ),
            "name a subset here too, or drop the subsets if every version is meant",
        ));
    }
}

/// The weights of a route, relative shares: a weight on the only destination (which takes
/// everything anyway), and several destinations whose weights add up to 0.
fn route_weights(
    meta: &Meta,
    label: &str,
    route: &[Loc<crate::manifest::istio::RouteDestination>],
    out: &mut Vec<Finding>,
) {
    if route.len() == 1
        && let Some(w) = &route[0].weight
        && w.value > 0
        && w.value < 100
    {
        out.push(Finding::new(
            "ML0120",
            Severity::Warning,
            meta,
            w.pos,
            format!(
                "weight {} on the only destination: it receives all traffic anyway",
                w.value
            ),
            "remove the weight, or add the destination that should get the rest",
        ));
    }
    // Istio's validation adds the weights (an unset one counts 0) and rejects a route with
    // several destinations whose total is 0: the webhook refuses the whole VirtualService.
    let weights: Vec<Option<i64>> = route
        .iter()
        .map(|r| r.weight.as_ref().map(|w| w.value))
        .collect();
    if route.len() > 1 && weights.iter().all(|w| w.unwrap_or(0) == 0) {
        let pos = route[0].weight.as_ref().map_or(route[0].pos, |w| w.pos);
        let what = if weights.iter().all(Option::is_none) {
            "has several destinations and no weights"
        } else {
            "gives every destination weight 0"
        };
        out.push(Finding::new(
            "ML0122",
            Severity::Error,
            meta,
            pos,
            format!("{label} {what}: the total weight is 0, which Istio rejects on apply"),
            "give the destinations weights (relative shares; at least one positive)",
        ));
    }
}

/// A destination without `port` to a Service with several ports. On a gateway Istio sends
/// it to the Service port equal to the server's port: an error (503) when some bound server
/// port is not a port of the Service, a warning when every one happens to be.
fn port_required(
    m: &Model,
    vs: &VirtualService,
    svc: &model::Service,
    host: &Loc<String>,
    ports: &[String],
) -> Finding {
    let server_ports: Vec<u32> = vs
        .gateways
        .iter()
        .filter_map(|g| match &g.target {
            model::GatewayTarget::Named { namespace, name } => m.gateway(namespace, name),
            model::GatewayTarget::Mesh => None,
        })
        .flat_map(|g| g.spec.servers.iter())
        .filter_map(|s| {
            s.port
                .as_ref()
                .and_then(|p| p.number.as_ref())
                .map(|n| n.value)
        })
        .collect();
    let missing: Vec<String> = server_ports
        .iter()
        .filter(|p| !svc.ports.iter().any(|sp| sp.port == **p))
        .map(u32::to_string)
        .collect();
    let works = !vs.binds_mesh() && !server_ports.is_empty() && missing.is_empty();
    let (severity, consequence) = if works {
        (
            Severity::Warning,
            "requests go to the Service port equal to the gateway server port".to_string(),
        )
    } else if missing.is_empty() {
        (Severity::Error, "the destination must name one".to_string())
    } else {
        (
            Severity::Error,
            format!(
                "requests on gateway port {} go to that Service port, which does not exist: 503",
                missing.join(", ")
            ),
        )
    };
    Finding::new(
        "ML0118",
        severity,
        &vs.meta,
        host.pos,
        format!(
            "Service {}/{} has several ports ({}) and the destination names none; {consequence}",
            svc.namespace,
            svc.name,
            ports.join(", ")
        ),
        "add `port: {number: N}` to the destination",
    )
}

/// Reports a destination host that names nothing; true when it is a misnamed Service.
fn destination_not_found(
    m: &Model,
    meta: &Meta,
    h: &Loc<String>,
    host: &str,
    out: &mut Vec<Finding>,
) -> bool {
    if short_host_with_dot(m, meta, h, out) {
        return true;
    }
    match service_of(host) {
        Some((ns, name)) => missing_service(m, meta, h, ns, name, out),
        None if !host.starts_with('*') && host.contains('.') => {
            out.push(Finding::new(
                "ML0115",
                Severity::Warning,
                meta,
                h.pos,
                format!("no ServiceEntry declares the external host {host:?}"),
                "add a ServiceEntry for it, or route to a Service",
            ));
        }
        None => {}
    }
    false
}

/// A destination host naming Service `ns/name` that is not there, when the Services of
/// `ns` are known; the hint suggests a close name.
fn missing_service(
    m: &Model,
    meta: &Meta,
    h: &Loc<String>,
    ns: &str,
    name: &str,
    out: &mut Vec<Finding>,
) {
    if !m.services_known(ns) {
        return;
    }
    let others: Vec<&str> = m
        .services
        .iter()
        .filter(|s| s.namespace == ns)
        .map(|s| s.name.as_str())
        .collect();
    let (severity, where_) = if m.live {
        (Severity::Error, "")
    } else {
        (Severity::Warning, " among the checked objects")
    };
    let hint = match others.iter().find(|o| close(o, name)) {
        Some(o) => format!(
            "did you mean {o}? (Services in {ns}: {})",
            others.join(", ")
        ),
        None if others.is_empty() => {
            format!("define Service {name} in {ns}, or fix the host")
        }
        None => format!("Services in {ns}: {}", others.join(", ")),
    };
    let f = Finding::new(
        "ML0115",
        severity,
        meta,
        h.pos,
        format!(
            "no Service {ns}/{name}{where_} for destination host {:?}",
            h.value
        ),
        hint,
    );
    out.push(if m.live { f.live() } else { f });
}

/// Names one edit apart, or one a prefix of the other: typo suggestions.
fn close(a: &str, b: &str) -> bool {
    if a.starts_with(b) || b.starts_with(a) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()] <= 1
}

/// Live-only checks of one destination: ready endpoints, injection, sidecars.
fn live_destination(
    m: &Model,
    meta: &Meta,
    d: &Loc<crate::manifest::istio::Destination>,
    svc: &Service,
    out: &mut Vec<Finding>,
) {
    no_ready_endpoints(m, meta, d, svc, out);
    if let Some(ns) = m.namespaces.iter().find(|n| n.name == svc.namespace) {
        let injected = ns.labels.get("istio-injection").map(String::as_str) == Some("enabled")
            || ns.labels.contains_key("istio.io/rev");
        if injected {
            pods_without_sidecar(m, meta, d, svc, out);
        } else {
            out.push(
                Finding::new(
                    "ML0403",
                    Severity::Info,
                    meta,
                    d.host.pos,
                    format!(
                        "namespace {} is not labelled for sidecar injection; DestinationRule policies other than subsets do not apply to its Pods' inbound side",
                        svc.namespace
                    ),
                    format!(
                        "kubectl label namespace {} istio-injection=enabled, then restart the Pods",
                        svc.namespace
                    ),
                )
                .live(),
            );
        }
    }
}

/// A destination (the Service, or its subset) without a ready endpoint: 503 UH.
fn no_ready_endpoints(
    m: &Model,
    meta: &Meta,
    d: &Loc<crate::manifest::istio::Destination>,
    svc: &Service,
    out: &mut Vec<Finding>,
) {
    if ready_in_subset(m, meta, d, svc) > 0 || svc.selector.is_none() {
        return;
    }
    let what = match &d.subset {
        Some(s) => format!(
            "subset {:?} of Service {}/{}",
            s.value, svc.namespace, svc.name
        ),
        None => format!("Service {}/{}", svc.namespace, svc.name),
    };
    let not_ready = m.endpoints_of(svc).map_or(0, |e| e.not_ready);
    out.push(
        Finding::new(
            "ML0402",
            Severity::Warning,
            meta,
            d.host.pos,
            format!("{what} has no ready endpoints ({not_ready} not ready): requests get 503 UH"),
            "check the Pods: `kubectl get pods -n <ns> -l <selector>` (readiness probe, image, rollout)",
        )
        .live(),
    );
}

/// How many ready endpoints of the Service the destination reaches: all of them, or those
/// whose Pod carries the labels of the destination's subset.
fn ready_in_subset(
    m: &Model,
    meta: &Meta,
    d: &Loc<crate::manifest::istio::Destination>,
    svc: &Service,
) -> usize {
    let host = model::fqdn(&d.host, meta.namespace());
    let subset_labels = d.subset.as_ref().and_then(|s| {
        m.rules_for(&host)
            .flat_map(|r| r.spec.subsets.iter())
            .find(|x| x.name.value == s.value)
            .and_then(|x| x.labels.as_ref().map(|l| l.value.clone()))
    });
    let ready: Vec<&(String, Option<String>)> = m
        .endpoints_of(svc)
        .map(|e| e.ready.iter().collect())
        .unwrap_or_default();
    match &subset_labels {
        None => ready.len(),
        Some(labels) => ready
            .iter()
            .filter(|(_, pod)| {
                let Some(pod) = pod else { return true };
                m.workloads.iter().any(|w| {
                    w.is_pod
                        && w.namespace == svc.namespace
                        && w.name == format!("Pod {pod}")
                        && selects(labels, &w.labels)
                })
            })
            .count(),
    }
}

/// Pods of the Service running without a sidecar proxy in an injected namespace.
fn pods_without_sidecar(
    m: &Model,
    meta: &Meta,
    d: &Loc<crate::manifest::istio::Destination>,
    svc: &Service,
    out: &mut Vec<Finding>,
) {
    let bare: Vec<&str> = m
        .pods_of(svc, None)
        .filter(|w| w.is_pod && w.has_proxy == Some(false))
        .map(|w| w.name.as_str())
        .collect();
    if let Some(first) = bare.first() {
        out.push(
            Finding::new(
                "ML0404",
                Severity::Warning,
                meta,
                d.host.pos,
                format!(
                    "{first} of Service {}/{} runs without a sidecar proxy in an injected namespace ({} such Pod(s))",
                    svc.namespace,
                    svc.name,
                    bare.len()
                ),
                "restart the Deployment so the injector adds the proxy (`kubectl rollout restart`)",
            )
            .live(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_distance() {
        assert!(close("goapp", "goap"));
        assert!(close("goapp", "gopp"));
        assert!(!close("goapp", "reviews"));
    }
}
