//! The checks of DestinationRules: host, one rule per host, subsets and their labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::common::{earlier_claim, short_host_with_dot};
use crate::analyze::findings::{Finding, Severity};
use crate::analyze::model::{self, Meta, Model, Service, service_of, show_labels};
use crate::manifest::yaml::{Loc, Pos};

/// The checks of every DestinationRule; `seen` remembers which rule first defined each
/// host (and subset).
pub(super) fn destination_rules(m: &Model, out: &mut Vec<Finding>) {
    let mut seen: HashMap<(String, Option<String>), &model::DestinationRule> = HashMap::new();
    for dr in &m.destination_rules {
        destination_rule(m, dr, &mut seen, out);
    }
}

/// One DestinationRule: its host, a host (or subset) another rule also defines, and its
/// subsets.
fn destination_rule<'a>(
    m: &Model,
    dr: &'a model::DestinationRule,
    seen: &mut HashMap<(String, Option<String>), &'a model::DestinationRule>,
    out: &mut Vec<Finding>,
) {
    let meta = &dr.meta;
    let (Some(h), Some(host)) = (&dr.spec.host, &dr.host) else {
        out.push(Finding::new(
            "ML0306",
            Severity::Error,
            meta,
            meta.spec_pos,
            "DestinationRule has no host",
            "add `host:` naming the Service (a short name means this namespace)",
        ));
        return;
    };
    let svc = m.service_for_host(host);
    if svc.is_none() && m.service_entry_for(host).is_none() {
        rule_host_not_found(m, meta, h, host, out);
    }
    repeated_rule_host(dr, h, host, seen, out);
    subsets(m, dr, host, svc, out);
}

/// The subsets of a rule: names used twice, subsets without labels, and labels that
/// select none of the Service's Pods.
fn subsets(
    m: &Model,
    dr: &model::DestinationRule,
    host: &str,
    svc: Option<&Service>,
    out: &mut Vec<Finding>,
) {
    let meta = &dr.meta;
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for s in &dr.spec.subsets {
        if !names.insert(&s.name.value) {
            out.push(Finding::new(
                "ML0305",
                Severity::Error,
                meta,
                s.name.pos,
                format!("subset name {:?} is used twice", s.name.value),
                "give each subset its own name",
            ));
        }
        let labels = s.labels.as_ref().filter(|l| !l.value.is_empty());
        let Some(labels) = labels else {
            out.push(Finding::new(
                "ML0303",
                Severity::Warning,
                meta,
                s.name.pos,
                format!(
                    "subset {:?} has no labels, so it selects every endpoint of the host",
                    s.name.value
                ),
                "add `labels:` (e.g. `version: v1`) matching the Pods of this subset",
            ));
            continue;
        };
        if let Some(svc) = svc {
            subset_selects_no_pod(m, meta, host, svc, &s.name, labels, out);
        }
    }
}

/// A rule's host that names no Service where the namespace's Services are known (a
/// misnamed host is reported as such instead): the rule applies to nothing.
fn rule_host_not_found(
    m: &Model,
    meta: &Meta,
    h: &Loc<String>,
    host: &str,
    out: &mut Vec<Finding>,
) {
    if !short_host_with_dot(m, meta, h, out)
        && let Some((ns, name)) = service_of(host)
        && m.services_known(ns)
    {
        let where_ = if m.live {
            ""
        } else {
            " among the checked objects"
        };
        out.push(Finding::new(
            "ML0301",
            Severity::Warning,
            meta,
            h.pos,
            format!(
                "host {:?}: no Service {ns}/{name}{where_}; this rule applies to nothing",
                h.value
            ),
            "name the Service the traffic goes to",
        ));
    }
}

/// The same host in two DestinationRules: per subset, or both without subsets.
fn repeated_rule_host<'a>(
    dr: &'a model::DestinationRule,
    h: &Loc<String>,
    host: &str,
    seen: &mut HashMap<(String, Option<String>), &'a model::DestinationRule>,
    out: &mut Vec<Finding>,
) {
    let keys: Vec<(Option<String>, Pos)> = if dr.spec.subsets.is_empty() {
        vec![(None, h.pos)]
    } else {
        dr.spec
            .subsets
            .iter()
            .map(|s| (Some(s.name.value.clone()), s.name.pos))
            .collect()
    };
    for (subset, pos) in keys {
        let Some(first) = earlier_claim(seen, (host.to_string(), subset.clone()), dr, |r| &r.meta)
        else {
            continue;
        };
        out.push(Finding::new(
            "ML0302",
            Severity::Warning,
            &dr.meta,
            pos,
            match &subset {
                Some(s) => format!(
                    "subset {s:?} of host {host} is also defined by DestinationRule {}",
                    first.meta.ns_name()
                ),
                None => format!(
                    "host {host} also has DestinationRule {}; Istio uses only one of them",
                    first.meta.ns_name()
                ),
            },
            "keep one DestinationRule per host",
        ));
    }
}

/// A subset whose labels select none of the Service's Pods (when its Pods are known):
/// routes to it get 503. An error when live and some route uses the subset.
fn subset_selects_no_pod(
    m: &Model,
    meta: &Meta,
    host: &str,
    svc: &Service,
    subset: &Loc<String>,
    labels: &Loc<BTreeMap<String, String>>,
    out: &mut Vec<Finding>,
) {
    if !m.pods_known(&svc.namespace) || m.pods_of(svc, None).next().is_none() {
        return;
    }
    if m.pods_of(svc, Some(&labels.value)).next().is_some() {
        return;
    }
    let versions = pod_versions(m, svc, &labels.value);
    let severity = if m.live && subset_routed(m, host, &subset.value) {
        Severity::Error
    } else {
        Severity::Warning
    };
    let source = if m.live { "Pod" } else { "Pod template" };
    let hint = if versions.is_empty() {
        format!(
            "no {source} of Service {}/{} carries these labels",
            svc.namespace, svc.name
        )
    } else {
        format!(
            "{source}s of Service {}/{} carry {}",
            svc.namespace,
            svc.name,
            versions.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    let f = Finding::new(
        "ML0304",
        severity,
        meta,
        labels.pos,
        format!(
            "subset {:?} labels {} select no {source} of Service {}/{}: routes to it get 503",
            subset.value,
            show_labels(&labels.value),
            svc.namespace,
            svc.name
        ),
        hint,
    );
    out.push(if m.live { f.live() } else { f });
}

/// What the Service's Pods carry under the subset's label keys; when none has those keys
/// (the key itself is wrong, `verison`), what tells the Pods apart: the labels beyond the
/// Service's selector.
fn pod_versions(m: &Model, svc: &Service, labels: &BTreeMap<String, String>) -> BTreeSet<String> {
    let versions: BTreeSet<String> = m
        .pods_of(svc, None)
        .flat_map(|w| {
            labels
                .keys()
                .filter_map(|k| w.labels.get(k).map(|v| format!("{k}={v}")))
        })
        .collect();
    if !versions.is_empty() {
        return versions;
    }
    let selector = svc.selector.clone().unwrap_or_default();
    m.pods_of(svc, None)
        .flat_map(|w| w.labels.iter())
        .filter(|(k, _)| !selector.contains_key(*k) && !k.contains('/'))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// Whether some route of a VirtualService goes to this subset of `host`.
fn subset_routed(m: &Model, host: &str, subset: &str) -> bool {
    m.virtual_services.iter().any(|vs| {
        vs.spec.http.iter().any(|r| {
            r.route.iter().flat_map(|rt| rt.value.iter()).any(|d| {
                model::fqdn(&d.destination.host, vs.meta.namespace()) == host
                    && d.destination.subset.as_ref().map(|x| x.value.as_str()) == Some(subset)
            })
        })
    })
}
