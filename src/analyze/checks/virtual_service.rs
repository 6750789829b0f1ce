//! The checks of a VirtualService as written: its hosts, the Gateways it names, and the
//! hosts several VirtualServices share.

use std::collections::HashMap;

use super::common::{earlier_claim, short_host_with_dot};
use super::rules::http_rules;
use crate::analyze::findings::{Finding, Severity};
use crate::analyze::model::{
    self, GatewayTarget, Meta, Model, ServerHost, VirtualService, hosts_intersect, service_of,
};
use crate::manifest::yaml::Loc;

/// The checks of one VirtualService as written: its hosts, its gateways, its rules.
pub(super) fn virtual_service(m: &Model, vs: &VirtualService, out: &mut Vec<Finding>) {
    let meta = &vs.meta;
    if vs.spec.hosts.is_empty() {
        out.push(Finding::new(
            "ML0104",
            Severity::Error,
            meta,
            meta.spec_pos,
            "VirtualService has no hosts",
            "add `hosts:` with the names this VirtualService serves (e.g. the Gateway's host)",
        ));
    }
    for (i, (h, fq)) in vs.spec.hosts.iter().zip(&vs.hosts).enumerate() {
        virtual_service_host(m, vs, i, h, fq, out);
    }
    gateway_refs(m, vs, out);
    mesh_only_but_served(m, vs, out);
    http_rules(m, vs, out);
}

/// Host `i` of a VirtualService: overlapping an earlier host, `*` on the mesh, or a
/// Service name with a dot.
fn virtual_service_host(
    m: &Model,
    vs: &VirtualService,
    i: usize,
    h: &Loc<String>,
    fq: &str,
    out: &mut Vec<Finding>,
) {
    let meta = &vs.meta;
    overlapping_host(vs, i, h, out);
    if h.value == "*" && vs.binds_mesh() {
        out.push(Finding::new(
            "ML0105",
            Severity::Error,
            meta,
            h.pos,
            "host \"*\" is not allowed on a VirtualService bound to the mesh",
            "name the hosts, or bind the VirtualService to a Gateway with `gateways:`",
        ));
    }
    // A host some Gateway serves is an external name, not a misspelt Service.
    if vs.binds_mesh() && !served_by_a_gateway(m, fq) {
        short_host_with_dot(m, meta, h, out);
    }
}

/// Istio's validation rejects two hosts of one VirtualService that overlap (the same
/// name, or a wildcard covering the other), compared as written.
fn overlapping_host(vs: &VirtualService, i: usize, h: &Loc<String>, out: &mut Vec<Finding>) {
    let Some(earlier) = vs.spec.hosts[..i]
        .iter()
        .find(|e| hosts_intersect(&e.value, &h.value))
    else {
        return;
    };
    let what = if earlier.value == h.value {
        format!("host {:?} is listed twice", h.value)
    } else {
        format!("hosts {:?} and {:?} overlap", earlier.value, h.value)
    };
    out.push(Finding::new(
        "ML0106",
        Severity::Error,
        &vs.meta,
        h.pos,
        format!("{what}: Istio rejects the VirtualService on apply"),
        "keep one of them (a wildcard already covers the names it matches)",
    ));
}

/// Whether a server host of some Gateway covers the host `fq`.
fn served_by_a_gateway(m: &Model, fq: &str) -> bool {
    m.gateways.iter().any(|g| {
        g.spec.servers.iter().any(|s| {
            s.hosts
                .iter()
                .any(|sh| hosts_intersect(&ServerHost::parse(sh).host, fq))
        })
    })
}

/// The gateways a VirtualService names: how each reference is written, whether the
/// Gateway exists, and whether it serves a host of the VirtualService.
fn gateway_refs(m: &Model, vs: &VirtualService, out: &mut Vec<Finding>) {
    // (gateway, the reference, whether some host of this VirtualService is served by it)
    let mut bound: Vec<(&model::Gateway, &Loc<String>, bool)> = Vec::new();
    for r in &vs.gateways {
        let GatewayTarget::Named { namespace, name } = &r.target else {
            continue;
        };
        dot_namespace_ref(&vs.meta, r, out);
        if r.legacy_dotted {
            legacy_dotted_ref(m, &vs.meta, r, namespace, name, out);
        }
        match m.gateway(namespace, name) {
            Some(gw) => bound.push((gw, &r.raw, serves_a_host_of(gw, vs))),
            None => gateway_not_found(m, &vs.meta, r, namespace, name, out),
        }
    }
    hosts_not_served(vs, &bound, out);
}

/// A reference `./name`: server hosts take `./host`; Istio's validation of a
/// VirtualService does not.
fn dot_namespace_ref(meta: &Meta, r: &model::GatewayRef, out: &mut Vec<Finding>) {
    let Some(name) = r.raw.value.strip_prefix("./") else {
        return;
    };
    let own_ns = meta.namespace();
    out.push(Finding::new(
        "ML0102",
        Severity::Error,
        meta,
        r.raw.pos,
        format!(
            "gateway {:?}: Istio rejects the namespace `.` in a VirtualService's gateways, so the VirtualService is not applied",
            r.raw.value
        ),
        format!("write `{name}` or `{own_ns}/{name}`"),
    ));
}

/// A reference in the legacy `name.namespace` form: an error when a Gateway of this
/// namespace has the whole dotted name, else a warning to write `namespace/name`.
fn legacy_dotted_ref(
    m: &Model,
    meta: &Meta,
    r: &model::GatewayRef,
    namespace: &str,
    name: &str,
    out: &mut Vec<Finding>,
) {
    let own_ns = meta.namespace();
    let literal = m.gateway(own_ns, &r.raw.value);
    let (severity, message) = match literal {
        Some(_) => (
            Severity::Error,
            format!(
                "gateway {:?} is read by Istio as Gateway {name} in namespace {namespace}, not as Gateway {:?} in {own_ns}",
                r.raw.value, r.raw.value
            ),
        ),
        None => (
            Severity::Warning,
            format!(
                "gateway {:?} is the legacy `name.namespace` form, read as {namespace}/{name}",
                r.raw.value
            ),
        ),
    };
    let hint = match literal {
        Some(_) => format!(
            "write `{own_ns}/{}` to name the Gateway in this namespace",
            r.raw.value
        ),
        None => format!("write `{namespace}/{name}`"),
    };
    out.push(Finding::new(
        "ML0102", severity, meta, r.raw.pos, message, hint,
    ));
}

/// Whether a server host of `gw` admits the VirtualService's namespace and covers one of
/// its hosts.
fn serves_a_host_of(gw: &model::Gateway, vs: &VirtualService) -> bool {
    let own_ns = vs.meta.namespace();
    vs.spec.hosts.iter().zip(&vs.hosts).any(|(_, h)| {
        gw.spec.servers.iter().any(|s| {
            s.hosts.iter().any(|sh| {
                let sh = ServerHost::parse(sh);
                sh.admits_namespace(own_ns, gw.meta.namespace()) && hosts_intersect(&sh.host, h)
            })
        })
    })
}

/// A reference to a Gateway that is not there: an error when its namespace is known (or
/// live), else a warning, with the Gateways of that name or namespace as a hint.
fn gateway_not_found(
    m: &Model,
    meta: &Meta,
    r: &model::GatewayRef,
    namespace: &str,
    name: &str,
    out: &mut Vec<Finding>,
) {
    let own_ns = meta.namespace();
    let known_ns =
        namespace == own_ns || m.gateways.iter().any(|g| g.meta.namespace() == namespace);
    let severity = if known_ns || m.live {
        Severity::Error
    } else {
        Severity::Warning
    };
    let hint = gateway_not_found_hint(m, namespace, name);
    let where_ = if severity == Severity::Error {
        String::new()
    } else {
        " among the checked objects".into()
    };
    out.push(Finding::new(
        "ML0101",
        severity,
        meta,
        r.raw.pos,
        format!(
            "gateway {:?}: no Gateway {namespace}/{name}{where_}",
            r.raw.value
        ),
        hint,
    ));
}

/// The hint for a missing Gateway: a Gateway of that name in another namespace, else
/// the Gateways of the namespace named.
fn gateway_not_found_hint(m: &Model, namespace: &str, name: &str) -> String {
    let elsewhere: Vec<String> = m
        .gateways
        .iter()
        .filter(|g| g.meta.name() == name)
        .map(|g| g.meta.ns_name())
        .collect();
    if let Some(g) = elsewhere.first() {
        format!("Gateway {g} exists: write `{g}` (a bare name means this namespace)")
    } else {
        let here: Vec<String> = m
            .gateways
            .iter()
            .filter(|g| g.meta.namespace() == namespace)
            .map(|g| g.meta.name().to_string())
            .collect();
        if here.is_empty() {
            format!("define Gateway {namespace}/{name}, or fix the reference")
        } else {
            format!("Gateways in {namespace}: {}", here.join(", "))
        }
    }
}

/// Each bound Gateway that serves no host of the VirtualService answers 404: an error
/// when no bound Gateway serves one, else a warning.
fn hosts_not_served(
    vs: &VirtualService,
    bound: &[(&model::Gateway, &Loc<String>, bool)],
    out: &mut Vec<Finding>,
) {
    let any_served = bound.iter().any(|(_, _, s)| *s);
    for (gw, raw, served) in bound {
        if *served {
            continue;
        }
        let hosts: Vec<&str> = gw
            .spec
            .servers
            .iter()
            .flat_map(|s| s.hosts.iter().map(|h| h.value.as_str()))
            .collect();
        out.push(Finding::new(
            "ML0107",
            if any_served {
                Severity::Warning
            } else {
                Severity::Error
            },
            &vs.meta,
            raw.pos,
            format!(
                "no host of this VirtualService ({}) matches a host of Gateway {} ({}), so the gateway answers 404",
                vs.spec.hosts.iter().map(|h| h.value.as_str()).collect::<Vec<_>>().join(", "),
                gw.meta.ns_name(),
                hosts.join(", ")
            ),
            "make a VirtualService host equal to (or covered by) a server host of the Gateway",
        ));
    }
}

/// `gateways:` omitted means mesh only; when a Gateway serves the same external host, the
/// author almost certainly meant to bind to it (a top cause of 404 NR).
fn mesh_only_but_served(m: &Model, vs: &VirtualService, out: &mut Vec<Finding>) {
    if vs
        .spec
        .gateways
        .as_ref()
        .is_some_and(|g| !g.value.is_empty())
    {
        return;
    }
    for (h, fq) in vs.spec.hosts.iter().zip(&vs.hosts) {
        if fq == "*" || service_of(fq).is_some() {
            continue;
        }
        let serving: Vec<String> = m
            .gateways
            .iter()
            .filter(|g| {
                g.spec.servers.iter().any(|s| {
                    s.hosts.iter().any(|sh| {
                        let sh = ServerHost::parse(sh);
                        sh.host != "*" && hosts_intersect(&sh.host, fq)
                    })
                })
            })
            .map(|g| g.meta.ns_name())
            .collect();
        if let Some(first) = serving.first() {
            let (ns, name) = first.split_once('/').unwrap_or_default();
            let r = if ns == vs.meta.namespace() {
                name.to_string()
            } else {
                first.clone()
            };
            out.push(Finding::new(
                "ML0103",
                Severity::Warning,
                &vs.meta,
                h.pos,
                format!(
                    "host {:?} is served by Gateway {first}, but this VirtualService has no `gateways:` and so binds to the mesh only: requests through the gateway get 404",
                    h.value
                ),
                format!("add `gateways: [{r}]` (and `mesh` too if sidecars should use it)"),
            ));
            return;
        }
    }
}

/// Checks across VirtualServices: hosts shared on the mesh or on one Gateway.
pub(super) fn cross_virtual_services(m: &Model, out: &mut Vec<Finding>) {
    let mut mesh: HashMap<&str, &VirtualService> = HashMap::new();
    let mut per_gateway: HashMap<(String, String, &str), &VirtualService> = HashMap::new();
    for vs in m
        .virtual_services
        .iter()
        .filter(|v| !v.meta.is_gateway_api())
    {
        for (h, fq) in vs.spec.hosts.iter().zip(&vs.hosts) {
            if fq == "*" {
                continue;
            }
            for r in &vs.gateways {
                match &r.target {
                    GatewayTarget::Mesh => {
                        if let Some(first) = earlier_claim(&mut mesh, fq.as_str(), vs, |v| &v.meta)
                        {
                            out.push(Finding::new(
                                "ML0108",
                                Severity::Error,
                                &vs.meta,
                                h.pos,
                                format!(
                                    "host {:?} is also defined for the mesh by VirtualService {}; sidecars use only one of them",
                                    h.value,
                                    first.meta.ns_name()
                                ),
                                "merge the two VirtualServices' rules into one",
                            ));
                        }
                    }
                    GatewayTarget::Named { namespace, name } => {
                        let k = (namespace.clone(), name.clone(), fq.as_str());
                        if let Some(first) = earlier_claim(&mut per_gateway, k, vs, |v| &v.meta) {
                            out.push(Finding::new(
                                "ML0109",
                                Severity::Warning,
                                &vs.meta,
                                h.pos,
                                format!(
                                    "host {:?} on Gateway {namespace}/{name} is also served by VirtualService {}; the gateway merges their rules in an order you do not control",
                                    h.value,
                                    first.meta.ns_name()
                                ),
                                "keep one VirtualService per host and gateway, or use delegate",
                            ));
                        }
                    }
                }
            }
        }
    }
}
