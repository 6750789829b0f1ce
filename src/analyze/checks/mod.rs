//! The analyzers: one module per object kind, each walking the model and reporting
//! findings from the catalogue in `findings`.
//!
//! - `virtual_service`: hosts and Gateway references; `rules` its `http` rules, and
//!   `destination` their destinations.
//! - `gateway`: servers, selector, the gateway Service's ports, conflicting Gateways.
//! - `destination_rule`: hosts and subsets. `service`: port naming.
//! - `common`: steps several kinds share.
//!
//! Two rules keep the output trustworthy. A check that needs facts the model does not have
//! (a namespace's Services offline, the gateway Pods when no gateway workload is in the
//! sources) stays silent or says Info, never Error. And a check whose answer rests on
//! partial offline knowledge reports a Warning where the same answer from live facts is an
//! Error, because offline the missing Service may simply be defined elsewhere.

mod common;
mod destination;
mod destination_rule;
mod gateway;
mod rules;
mod service;
mod virtual_service;

use super::findings::{self, Finding, Severity};
use super::model::{Meta, Model};
use destination_rule::destination_rules;
use gateway::{conflicting_gateways, gateway};
use service::services;
use virtual_service::{cross_virtual_services, virtual_service};

/// Runs every analyzer over the model. Findings come back sorted and without duplicates.
pub fn analyze(model: &Model) -> Vec<Finding> {
    let mut out = model.problems.clone();
    // Objects translated from the Gateway API have their own checks, on what was written.
    let written = |meta: &Meta| !meta.is_gateway_api();
    for vs in model.virtual_services.iter().filter(|v| written(&v.meta)) {
        virtual_service(model, vs, &mut out);
    }
    cross_virtual_services(model, &mut out);
    for gw in model.gateways.iter().filter(|g| written(&g.meta)) {
        gateway(model, gw, &mut out);
    }
    super::checks_gatewayapi::analyze(model, &mut out);
    conflicting_gateways(model, &mut out);
    destination_rules(model, &mut out);
    services(model, &mut out);
    for se in &model.service_entries {
        if se.spec.hosts.is_empty() {
            out.push(Finding::new(
                "ML0501",
                Severity::Error,
                &se.meta,
                se.meta.spec_pos,
                "ServiceEntry has no hosts",
                "add `hosts:` with the names this entry declares",
            ));
        }
    }
    findings::sort(&mut out);
    out.dedup_by(|a, b| {
        a.code == b.code
            && a.file == b.file
            && a.line == b.line
            && a.col == b.col
            && a.message == b.message
    });
    out
}

#[cfg(test)]
mod tests {
    use crate::analyze::model::host_matches;

    #[test]
    fn host_match_helper_is_case_insensitive() {
        assert!(host_matches("GoApp.dev", "goapp.DEV"));
    }
}
