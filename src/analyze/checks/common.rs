//! Steps the checks of several kinds share: a Service name written with a dot, and which
//! object defined a host first.

use std::collections::HashMap;
use std::hash::Hash;

use crate::analyze::findings::{Finding, Severity};
use crate::analyze::model::{self, Meta, Model, service_of};
use crate::manifest::yaml::Loc;

/// A host with a dot is never expanded: `goapp.dev` is not Service goapp in namespace dev.
/// Returns true when it reported something.
pub(super) fn short_host_with_dot(
    m: &Model,
    meta: &Meta,
    h: &Loc<String>,
    out: &mut Vec<Finding>,
) -> bool {
    let host = h.value.as_str();
    if !host.contains('.') || host.starts_with('*') || service_of(host).is_some() {
        return false;
    }
    if m.service_entry_for(host).is_some() {
        return false;
    }
    let mut parts = host.split('.');
    let (Some(name), Some(ns)) = (parts.next(), parts.next()) else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    // `name.ns`, `name.ns.svc`, `name.ns.svc.cluster`: the forms people write for a Service.
    let service_like = rest.is_empty() || rest == ["svc"] || rest == ["svc", "cluster"];
    if !service_like {
        return false;
    }
    let full = format!("{name}.{ns}.{}", model::CLUSTER_DOMAIN);
    let hint = if ns == meta.namespace() {
        format!("write `{name}` (same namespace) or `{full}`")
    } else {
        format!("write `{full}`")
    };
    if m.service(ns, name).is_some() {
        out.push(Finding::new(
            "ML0116",
            Severity::Error,
            meta,
            h.pos,
            format!(
                "{host:?} is taken as a full host name, not as Service {name} in namespace {ns} (only names without a dot are expanded)"
            ),
            hint,
        ));
        return true;
    }
    let known_ns = m.services.iter().any(|s| s.namespace == ns)
        || m.namespaces.iter().any(|n| n.name == ns)
        || ns == meta.namespace();
    if known_ns {
        out.push(Finding::new(
            "ML0116",
            Severity::Warning,
            meta,
            h.pos,
            format!(
                "{host:?} looks like Service {name} in namespace {ns}, but Istio takes it as a full host name (only names without a dot are expanded)"
            ),
            hint,
        ));
        return true;
    }
    false
}

/// Remembers `this` as the first object with `key`; returns the object that had the key
/// first when it is another one.
pub(super) fn earlier_claim<'a, K: Eq + Hash, T>(
    seen: &mut HashMap<K, &'a T>,
    key: K,
    this: &'a T,
    meta: fn(&T) -> &Meta,
) -> Option<&'a T> {
    match seen.get(&key) {
        Some(first) => (meta(first).key != meta(this).key).then_some(*first),
        None => {
            seen.insert(key, this);
            None
        }
    }
}
