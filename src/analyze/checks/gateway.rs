//! The checks of a Gateway as written: servers (ports, hosts, TLS), the selector, the
//! gateway Service's ports, and Gateways that claim the same host and port.

use std::collections::{BTreeMap, BTreeSet};

use crate::analyze::findings::{Finding, Severity};
use crate::analyze::model::{
    self, Meta, Model, ServerHost, Service, hosts_intersect, selects, show_labels,
};
use crate::manifest::yaml::Loc;

/// Protocols a Gateway server port may declare (istiod parses them case-insensitively).
const GATEWAY_PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "UDP", "REDIS", "MYSQL",
];

fn valid_dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// What is wrong with a Gateway server host `[ns/]dnsName`, if anything.
fn server_host_problem(raw: &str) -> Option<String> {
    let sh = ServerHost::parse(raw);
    if raw.matches('/').count() > 1 {
        return Some("has more than one '/'".into());
    }
    if sh.namespace != "*" && sh.namespace != "." && !valid_dns_label(&sh.namespace) {
        return Some(format!(
            "namespace part {:?} is not `*`, `.` or a namespace",
            sh.namespace
        ));
    }
    let host = sh.host.as_str();
    if host == "*" {
        return None;
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host.contains(':') {
        return Some("has a port; the port belongs in `port:`".into());
    }
    if name.is_empty() || !name.split('.').all(valid_dns_label) {
        return Some("is not a DNS name (`*`, `*.example.com` or `example.com`)".into());
    }
    None
}

/// The checks of one Gateway as written: its servers, its selector, the ports of its
/// Service, and whether anything binds it.
pub(super) fn gateway(m: &Model, gw: &model::Gateway, out: &mut Vec<Finding>) {
    let meta = &gw.meta;
    if gw.spec.servers.is_empty() {
        out.push(Finding::new(
            "ML0209",
            Severity::Error,
            meta,
            meta.spec_pos,
            "Gateway has no servers",
            "add `servers:` with a port and hosts",
        ));
    }
    let candidates = selected_workloads(m, gw);
    for server in &gw.spec.servers {
        server_port(meta, server, out);
        server_hosts(meta, server, out);
        let protocol = server.port.as_ref().and_then(|p| p.protocol.as_ref());
        let proto = protocol.map(|p| p.value.to_ascii_uppercase());
        if matches!(proto.as_deref(), Some("HTTPS" | "TLS")) {
            tls_server(
                m,
                gw,
                server,
                proto.as_deref().unwrap_or_default(),
                &candidates,
                out,
            );
        }
    }
    gateway_selector(m, gw, &candidates, out);
    gateway_service_ports(m, gw, &candidates, out);
    if !m.virtual_services.iter().any(|vs| vs.binds(meta)) {
        out.push(Finding::new(
            "ML0210",
            Severity::Info,
            meta,
            meta.pos,
            format!(
                "no VirtualService binds Gateway {}: it answers 404 to everything",
                meta.ns_name()
            ),
            format!(
                "add `gateways: [{}]` to the VirtualService of its hosts",
                meta.name()
            ),
        ));
    }
}

/// The workloads the Gateway's selector picks (none without a selector).
fn selected_workloads<'a>(m: &'a Model, gw: &model::Gateway) -> Vec<&'a model::Workload> {
    match &gw.spec.selector {
        Some(sel) if !sel.value.is_empty() => m
            .workloads
            .iter()
            .filter(|w| selects(&sel.value, &w.labels))
            .collect(),
        _ => Vec::new(),
    }
}

/// A server's port: its number present and in range, its protocol one Istio knows.
fn server_port(meta: &Meta, server: &Loc<crate::manifest::istio::Server>, out: &mut Vec<Finding>) {
    let port = server.port.as_ref();
    match port.and_then(|p| p.number.as_ref()) {
        None => out.push(Finding::new(
            "ML0206",
            Severity::Error,
            meta,
            port.map_or(server.pos, |p| p.pos),
            "server has no port number",
            "add `port: {number: 80, name: http, protocol: HTTP}`",
        )),
        Some(n) if n.value == 0 || n.value > 65535 => out.push(Finding::new(
            "ML0206",
            Severity::Error,
            meta,
            n.pos,
            format!("port number {} is out of range 1-65535", n.value),
            "use the port the gateway listens on (80 for HTTP with the Helm gateway chart)",
        )),
        Some(_) => {}
    }
    if let Some(p) = port.and_then(|p| p.protocol.as_ref())
        && !GATEWAY_PROTOCOLS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&p.value))
    {
        out.push(Finding::new(
            "ML0207",
            Severity::Error,
            meta,
            p.pos,
            format!("protocol {:?} is not one Istio knows", p.value),
            "use one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS",
        ));
    }
}

/// A server's hosts: present, and each of the form `[namespace/]dns-name`.
fn server_hosts(meta: &Meta, server: &Loc<crate::manifest::istio::Server>, out: &mut Vec<Finding>) {
    if server.hosts.is_empty() {
        out.push(Finding::new(
            "ML0208",
            Severity::Error,
            meta,
            server.pos,
            "server has no hosts",
            "add `hosts:` (e.g. `[\"goapp.dev\"]`, or `[\"*\"]` for any)",
        ));
    }
    for h in &server.hosts {
        if let Some(problem) = server_host_problem(h) {
            out.push(Finding::new(
                "ML0208",
                Severity::Error,
                meta,
                h.pos,
                format!("server host {:?} {problem}", h.value),
                "write hosts as `[namespace/]dns-name`, namespace `*` (any), `.` (this one) or a name",
            ));
        }
    }
}

/// An HTTPS or TLS server: `tls:` present, and for the modes that terminate TLS a
/// certificate, whose Secret must exist live in the gateway's namespace.
fn tls_server(
    m: &Model,
    gw: &model::Gateway,
    server: &Loc<crate::manifest::istio::Server>,
    proto: &str,
    candidates: &[&model::Workload],
    out: &mut Vec<Finding>,
) {
    let meta = &gw.meta;
    let Some(tls) = &server.tls else {
        out.push(Finding::new(
            "ML0203",
            Severity::Error,
            meta,
            server.pos,
            format!("{proto} server without `tls:` settings"),
            "add `tls: {mode: SIMPLE, credentialName: <secret>}` (or mode PASSTHROUGH for TLS)",
        ));
        return;
    };
    let mode = tls.mode.as_deref().unwrap_or("SIMPLE").to_ascii_uppercase();
    if !matches!(mode.as_str(), "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL") {
        return;
    }
    match &tls.credential_name {
        None if tls.server_certificate.is_none() => out.push(Finding::new(
            "ML0203",
            Severity::Error,
            meta,
            tls.pos,
            format!(
                "TLS mode {mode} needs a certificate: no credentialName and no serverCertificate"
            ),
            "set `credentialName:` to a kubernetes.io/tls Secret in the gateway's namespace",
        )),
        Some(cred) if m.live && !candidates.is_empty() => {
            missing_secret(m, meta, cred, candidates, out);
        }
        _ => {}
    }
}

/// A `credentialName` with no such Secret in the namespace of the live gateway Pods:
/// HTTPS handshakes fail.
fn missing_secret(
    m: &Model,
    meta: &Meta,
    cred: &Loc<String>,
    candidates: &[&model::Workload],
    out: &mut Vec<Finding>,
) {
    let namespaces: BTreeSet<&str> = candidates
        .iter()
        .filter(|w| w.live)
        .map(|w| w.namespace.as_str())
        .collect();
    let found = namespaces
        .iter()
        .any(|ns| m.secrets.contains(&(ns.to_string(), cred.value.clone())));
    if namespaces.is_empty() || found {
        return;
    }
    let ns_list: Vec<&str> = namespaces.into_iter().collect();
    out.push(
        Finding::new(
            "ML0202",
            Severity::Error,
            meta,
            cred.pos,
            format!(
                "credentialName {:?}: no such Secret in {} (the gateway's namespace): HTTPS handshakes fail",
                cred.value,
                ns_list.join(", ")
            ),
            format!(
                "kubectl create secret tls {} -n {} --cert=... --key=...",
                cred.value, ns_list[0]
            ),
        )
        .live(),
    );
}

/// A Gateway selector that picks no workload: an error when the gateway workloads are
/// known (live, or in the sources), else a note when it differs from the configured
/// ingress's label.
fn gateway_selector(
    m: &Model,
    gw: &model::Gateway,
    candidates: &[&model::Workload],
    out: &mut Vec<Finding>,
) {
    let Some(sel) = gw.spec.selector.as_ref().filter(|s| !s.value.is_empty()) else {
        return;
    };
    if !candidates.is_empty() {
        return;
    }
    let gateways: Vec<&model::Workload> = m.workloads.iter().filter(|w| w.is_gateway()).collect();
    if m.live || !gateways.is_empty() {
        out.push(selector_matches_no_gateway(m, &gw.meta, sel, &gateways));
        return;
    }
    // Offline with no gateway workload in the inputs: the Pods live in another namespace and
    // chart, so nothing can be proven. Only say something when the selector differs from what
    // the configured ingress (installed with the Helm chart) would carry.
    let (k, v) = m.expected_ingress_label();
    if sel.value.len() != 1 || sel.value.get(&k) != Some(&v) {
        let expected = format!("{k}: {v}");
        out.push(Finding::new(
            "ML0201",
            Severity::Info,
            &gw.meta,
            sel.pos,
            format!(
                "selector {} cannot be checked offline (no gateway workload in the checked objects), and it is not `{expected}`",
                show_labels(&sel.value)
            ),
            format!(
                "if the ingress is the Helm release {}, use `selector: {{{expected}}}`: {}",
                m.ingress.service,
                chart_note(m)
            ),
        ));
    }
}

/// How the Helm gateway chart labels its Pods, for hints about selectors.
fn chart_note(m: &Model) -> String {
    let (k, v) = m.expected_ingress_label();
    format!(
        "the Helm gateway chart labels the Pods of release {} `{k}: {v}` (docs and istioctl use `istio: ingressgateway`)",
        m.ingress.service
    )
}

/// The finding for a selector that matches none of the known gateway workloads, with
/// their `istio` labels as a hint.
fn selector_matches_no_gateway(
    m: &Model,
    meta: &Meta,
    sel: &Loc<BTreeMap<String, String>>,
    gateways: &[&model::Workload],
) -> Finding {
    let seen: BTreeSet<String> = gateways
        .iter()
        .filter_map(|w| w.labels.get("istio").map(|i| format!("istio: {i}")))
        .collect();
    let hint = if seen.is_empty() {
        format!(
            "no gateway workload is known; install the ingress gateway. Note: {}",
            chart_note(m)
        )
    } else {
        format!(
            "gateway workloads here are labelled {}; {}",
            seen.into_iter().collect::<Vec<_>>().join(" or "),
            chart_note(m)
        )
    };
    let where_ = if m.live {
        "in the cluster"
    } else {
        "in the checked objects"
    };
    let f = Finding::new(
        "ML0201",
        Severity::Error,
        meta,
        sel.pos,
        format!(
            "selector {} matches no gateway workload {where_}: no proxy serves this Gateway",
            show_labels(&sel.value)
        ),
        hint,
    );
    if m.live { f.live() } else { f }
}

/// Each server port against the Services of the gateway workloads: a port that is
/// neither a port nor a targetPort of them.
fn gateway_service_ports(
    m: &Model,
    gw: &model::Gateway,
    candidates: &[&model::Workload],
    out: &mut Vec<Finding>,
) {
    let services = gateway_services(m, candidates);
    if services.is_empty() {
        return;
    }
    for server in &gw.spec.servers {
        let Some(n) = server.port.as_ref().and_then(|p| p.number.as_ref()) else {
            continue;
        };
        let exposed = services.iter().any(|s| {
            s.ports.iter().any(|p| {
                p.port == n.value || p.target_port.as_deref() == Some(n.value.to_string().as_str())
            })
        });
        if !exposed {
            let ports: Vec<String> = services
                .iter()
                .flat_map(|s| {
                    s.ports.iter().map(move |p| {
                        format!(
                            "{}/{} {}->{}",
                            s.namespace,
                            s.name,
                            p.port,
                            p.target_port.clone().unwrap_or_else(|| p.port.to_string())
                        )
                    })
                })
                .collect();
            out.push(Finding::new(
                "ML0205",
                Severity::Warning,
                &gw.meta,
                n.pos,
                format!(
                    "port {} is neither a port nor a targetPort of the gateway's Service ({})",
                    n.value,
                    ports.join(", ")
                ),
                "use the Service's targetPort (the port the gateway Pod listens on), e.g. 80 for the Helm chart's http2 port",
            ));
        }
    }
}

/// The Services whose selector picks one of the gateway workloads (in its namespace).
fn gateway_services<'a>(m: &'a Model, candidates: &[&model::Workload]) -> Vec<&'a Service> {
    if candidates.is_empty() {
        return Vec::new();
    }
    m.services
        .iter()
        .filter(|s| {
            s.selector.as_ref().is_some_and(|sel| {
                !sel.is_empty()
                    && candidates
                        .iter()
                        .any(|w| w.namespace == s.namespace && selects(sel, &w.labels))
            })
        })
        .collect()
}

pub(super) fn conflicting_gateways(m: &Model, out: &mut Vec<Finding>) {
    for (i, b) in m.gateways.iter().enumerate() {
        let Some(sb) = b.spec.selector.as_ref().filter(|s| !s.value.is_empty()) else {
            continue;
        };
        if b.meta.is_gateway_api() {
            continue;
        }
        'earlier: for a in &m.gateways[..i] {
            if a.spec.selector.as_ref().map(|s| &s.value) != Some(&sb.value) {
                continue;
            }
            for bs in &b.spec.servers {
                let Some(bp) = bs.port.as_ref().and_then(|p| p.number.as_ref()) else {
                    continue;
                };
                for as_ in &a.spec.servers {
                    if as_
                        .port
                        .as_ref()
                        .and_then(|p| p.number.as_ref())
                        .map(|n| n.value)
                        != Some(bp.value)
                    {
                        continue;
                    }
                    for bh in &bs.hosts {
                        let hb = ServerHost::parse(bh);
                        if let Some(ah) = as_
                            .hosts
                            .iter()
                            .find(|ah| hosts_intersect(&ServerHost::parse(ah).host, &hb.host))
                        {
                            out.push(Finding::new(
                                "ML0204",
                                Severity::Error,
                                &b.meta,
                                bh.pos,
                                format!(
                                    "host {:?} on port {} conflicts with host {:?} of Gateway {} (same selector {})",
                                    bh.value,
                                    bp.value,
                                    ah.value,
                                    a.meta.ns_name(),
                                    show_labels(&sb.value)
                                ),
                                "serve each host and port from one Gateway, or give the hosts distinct names",
                            ));
                            continue 'earlier;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_hosts() {
        assert_eq!(server_host_problem("goapp.dev"), None);
        assert_eq!(server_host_problem("*"), None);
        assert_eq!(server_host_problem("./*.example.com"), None);
        assert_eq!(server_host_problem("dev/goapp.dev"), None);
        assert!(server_host_problem("goapp.dev:80").is_some());
        assert!(server_host_problem("a/b/c").is_some());
        assert!(server_host_problem("exa mple.com").is_some());
    }
}
