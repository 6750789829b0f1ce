//! The checks of the Services routes point at: port naming.

use std::collections::BTreeSet;

use crate::analyze::findings::{Finding, Severity};
use crate::analyze::model::{self, Model};

/// Service port name prefixes Istio reads as a protocol (`http`, `http-web`, `grpc-api`).
const PORT_NAME_PROTOCOLS: &[&str] = &[
    "http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "mysql", "redis",
];

/// Port naming of the Services that routes point at (from the sources, where there is a
/// place to point at).
pub(super) fn services(m: &Model, out: &mut Vec<Finding>) {
    let mut routed: BTreeSet<String> = BTreeSet::new();
    for vs in &m.virtual_services {
        for r in &vs.spec.http {
            for d in r.route.iter().flat_map(|rt| rt.value.iter()) {
                routed.insert(model::fqdn(&d.destination.host, vs.meta.namespace()));
            }
        }
    }
    for svc in &m.services {
        let Some(meta) = &svc.origin else { continue };
        if !routed.contains(&svc.fqdn()) {
            continue;
        }
        for p in &svc.ports {
            if p.app_protocol.is_some() {
                continue;
            }
            let ok = p.name.as_deref().is_some_and(|n| {
                PORT_NAME_PROTOCOLS
                    .iter()
                    .any(|proto| n == *proto || n.starts_with(&format!("{proto}-")))
            });
            if !ok {
                out.push(Finding::new(
                    "ML0401",
                    Severity::Info,
                    meta,
                    p.pos,
                    match &p.name {
                        Some(n) => format!(
                            "port name {n:?} does not start with a protocol, so Istio sniffs it"
                        ),
                        None => {
                            format!("port {} has no name, so Istio sniffs its protocol", p.port)
                        }
                    },
                    "name it `http` (or `http-<suffix>`, `grpc`, `tcp`...) or set `appProtocol`",
                ));
            }
        }
    }
}
