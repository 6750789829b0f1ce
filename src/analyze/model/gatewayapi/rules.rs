//! One HTTPRoute rule as the Istio rule istiod makes of it (`convertHTTPRoute`): matches,
//! the action (redirect, weighted backends, or a 500 when nothing can answer), and which
//! backendRefs are invalid and why.

use std::collections::BTreeMap;

use super::{Route, is_service};
use crate::analyze::model::{CLUSTER_DOMAIN, Meta, Model};
use crate::manifest::gatewayapi::{self as api, BackendRef, HttpRouteMatch, HttpRouteRule};
use crate::manifest::istio::{
    self, Destination, DirectResponse, HttpMatch, PortSelector, Redirect, RouteDestination,
    StringMatch,
};
use crate::manifest::yaml::Loc;

/// Why a backendRef cannot take traffic, with Istio's status reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendProblem {
    /// `BackendNotFound`, `RefNotPermitted`, `InvalidKind`, `InvalidDestination`, or
    /// `PortNotFound` (which Istio does not report).
    pub reason: &'static str,
    pub message: String,
    /// Istio drops the whole route for it (a hard error), rather than answering its share 500.
    pub drops_route: bool,
}

fn problem(reason: &'static str, message: String, drops_route: bool) -> Option<BackendProblem> {
    Some(BackendProblem {
        reason,
        message,
        drops_route,
    })
}

/// What is wrong with a backendRef of a route in `route`'s namespace, if anything.
pub fn backend_problem(m: &Model, route: &Meta, b: &BackendRef) -> Option<BackendProblem> {
    let ns = b
        .namespace
        .as_ref()
        .map_or(route.namespace(), |n| n.value.as_str());
    let name = b.name.value.as_str();
    let hostname_kind =
        b.group.as_deref() == Some("networking.istio.io") && b.kind.as_deref() == Some("Hostname");
    if !is_service(b) && !hostname_kind {
        let (g, k) = (
            b.group.as_deref().unwrap_or(""),
            b.kind.as_deref().unwrap_or(""),
        );
        return problem(
            "InvalidKind",
            format!("referencing unsupported backendRef: group {g:?} kind {k:?}"),
            false,
        );
    }
    if hostname_kind {
        return None;
    }
    if name.contains('.') {
        return problem(
            "InvalidDestination",
            format!(
                "service name {name:?} invalid; the name of the Service must be used, not the hostname"
            ),
            true,
        );
    }
    let Some(port) = b.port.as_ref() else {
        return problem(
            "InvalidDestination",
            "port is required in backendRef".into(),
            true,
        );
    };
    if ns != route.namespace() && !granted(m, route, ns, name) {
        return problem(
            "RefNotPermitted",
            format!(
                "backendRef {ns}/{name} not accessible to a {} in namespace {:?} (missing a ReferenceGrant?)",
                route.key.kind,
                route.namespace()
            ),
            false,
        );
    }
    service_problem(m, ns, name, port.value)
}

/// A backend Service that does not exist (where the namespace's Services are known), or
/// lacks the port.
fn service_problem(m: &Model, ns: &str, name: &str, port: u32) -> Option<BackendProblem> {
    match m.service(ns, name) {
        None if m.services_known(ns) => problem(
            "BackendNotFound",
            format!("backend({name}.{ns}.{CLUSTER_DOMAIN}) not found"),
            false,
        ),
        Some(svc) if !svc.ports.iter().any(|p| p.port == port) => problem(
            "PortNotFound",
            format!(
                "Service {ns}/{name} has no port {} (ports: {}); Istio reports nothing and the gateway answers 500",
                port,
                svc.ports
                    .iter()
                    .map(|p| p.port.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            false,
        ),
        _ => None,
    }
}

/// Whether a ReferenceGrant in `ns` lets routes of `route`'s kind and namespace reach the
/// Service `name`.
pub fn granted(m: &Model, route: &Meta, ns: &str, name: &str) -> bool {
    m.gateway_api.grants.iter().any(|g| {
        g.meta.namespace() == ns
            && g.spec.from.iter().any(|f| {
                f.group == api::GATEWAY_API
                    && f.kind == route.key.kind
                    && f.namespace.value == route.namespace()
            })
            && g.spec.to.iter().any(|t| {
                t.group.is_empty()
                    && t.kind == "Service"
                    && t.name.as_deref().is_none_or(|n| n == name)
            })
    })
}

/// The Istio rule for one rule of a route, without its match (one per match is made from it).
pub fn action(m: &Model, r: &Route, rule: &Loc<HttpRouteRule>) -> istio::HttpRoute {
    let mut out = istio::HttpRoute::default();
    let redirect = rule
        .filters
        .iter()
        .find_map(|f| f.request_redirect.as_ref());
    if let Some(rd) = redirect {
        out.redirect = Some(Loc {
            pos: rd.pos,
            value: redirect_of(&rd.value),
        });
        return out;
    }
    let route: Vec<Loc<RouteDestination>> = rule
        .backend_refs
        .iter()
        .filter(|b| b.weight.as_ref().is_none_or(|w| w.value > 0))
        .map(|b| destination(m, &r.meta, b))
        .collect();
    if route.is_empty() {
        // No backendRefs, or all weights 0, and no redirect: istiod answers 500.
        out.direct_response = Some(Loc {
            pos: rule.pos,
            value: DirectResponse { status: Some(500) },
        });
        return out;
    }
    out.route = Some(Loc {
        pos: rule.pos,
        value: route,
    });
    out
}

fn redirect_of(rd: &api::RequestRedirect) -> Redirect {
    let path = rd.path.as_ref();
    Redirect {
        uri: path.and_then(|p| p.replace_full_path.clone()),
        authority: rd.hostname.clone(),
        redirect_code: Some(rd.status_code.unwrap_or(302)),
        scheme: rd.scheme.clone(),
        port: rd.port,
        // Spec: without a scheme or port, the listener's port is kept.
        derive_port: (rd.scheme.is_none() && rd.port.is_none())
            .then(|| "FROM_REQUEST_PORT".to_string()),
        // The matched prefix is filled in per match by the caller.
        replace_prefix: path
            .and_then(|p| p.replace_prefix_match.clone())
            .map(|with| (String::new(), with)),
    }
}

fn destination(m: &Model, route: &Meta, b: &Loc<BackendRef>) -> Loc<RouteDestination> {
    let ns = b
        .namespace
        .as_ref()
        .map_or(route.namespace(), |n| n.value.as_str());
    let host = if is_service(b) {
        format!("{}.{ns}.{CLUSTER_DOMAIN}", b.name.value)
    } else {
        b.name.value.clone()
    };
    let weight = b.weight.as_ref().map_or(1, |w| w.value);
    Loc {
        pos: b.pos,
        value: RouteDestination {
            destination: Loc {
                pos: b.pos,
                value: Destination {
                    host: Loc {
                        pos: b.name.pos,
                        value: host,
                    },
                    subset: None,
                    port: b.port.as_ref().map(|p| Loc {
                        pos: p.pos,
                        value: PortSelector {
                            number: Some(p.value),
                        },
                    }),
                },
            },
            weight: Some(Loc {
                pos: b.weight.as_ref().map_or(b.pos, |w| w.pos),
                value: weight,
            }),
            invalid: backend_problem(m, route, b).map(|p| format!("{}: {}", p.reason, p.message)),
        },
    }
}

/// One Gateway API match as an Istio match. A match without a path matches every path
/// (the API server's default is PathPrefix `/`); header names are case-insensitive and only
/// the first entry of a name counts.
pub fn istio_match(mm: &Loc<HttpRouteMatch>) -> Loc<HttpMatch> {
    let path = mm.path.as_ref();
    let value = path
        .and_then(|p| p.value.value.clone())
        .unwrap_or_else(|| "/".into());
    let uri = match path.and_then(|p| p.value.kind.as_deref()) {
        Some("Exact") => exact(value),
        Some("RegularExpression") => regex(value),
        // "A trailing `/` is ignored" (istiod trims it, so `/api/` ranks as `/api`).
        _ => StringMatch {
            prefix: Some(trim_prefix(value)),
            path_separated: true,
            ..StringMatch::default()
        },
    };
    let value_match = |v: &api::ValueMatch| match v.kind.as_deref() {
        Some("RegularExpression") => regex(v.value.clone()),
        _ => exact(v.value.clone()),
    };
    let mut headers = BTreeMap::new();
    for h in &mm.headers {
        let sm = Loc {
            pos: h.pos,
            value: value_match(h),
        };
        headers.entry(h.name.to_ascii_lowercase()).or_insert(sm);
    }
    let mut query_params = BTreeMap::new();
    for q in &mm.query_params {
        let sm = Loc {
            pos: q.pos,
            value: value_match(q),
        };
        query_params.entry(q.name.clone()).or_insert(sm);
    }
    Loc {
        pos: mm.pos,
        value: HttpMatch {
            uri: Some(Loc {
                pos: path.map_or(mm.pos, |p| p.pos),
                value: uri,
            }),
            method: mm.method.as_ref().map(|me| Loc {
                pos: me.pos,
                value: exact(me.value.clone()),
            }),
            headers,
            query_params,
            ..HttpMatch::default()
        },
    }
}

/// A PathPrefix value without its trailing `/` (`/` itself stays).
pub fn trim_prefix(v: String) -> String {
    match v.strip_suffix('/') {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => v,
    }
}

fn exact(v: String) -> StringMatch {
    StringMatch {
        exact: Some(v),
        ..StringMatch::default()
    }
}

fn regex(v: String) -> StringMatch {
    StringMatch {
        regex: Some(v),
        ..StringMatch::default()
    }
}
