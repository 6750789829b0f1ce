//! The analyzers: one function per object kind, each walking the model and reporting
//! findings from the catalogue in `findings`.
//!
//! Two rules keep the output trustworthy. A check that needs facts the model does not have
//! (a namespace's Services offline, the gateway Pods when no gateway workload is in the
//! sources) stays silent or says Info, never Error. And a check whose answer rests on
//! partial offline knowledge reports a Warning where the same answer from live facts is an
//! Error, because offline the missing Service may simply be defined elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use super::findings::{self, Finding, Severity};
use super::model::{
    self, GatewayTarget, Meta, Model, ServerHost, Service, VirtualService, hosts_intersect,
    selects, service_of, show_labels,
};
use crate::manifest::istio::{HttpMatch, HttpRoute, StringMatch};
use crate::manifest::yaml::{Loc, Pos};

/// Protocols a Gateway server port may declare (istiod parses them case-insensitively).
const GATEWAY_PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "UDP", "REDIS", "MYSQL",
];

/// Service port name prefixes Istio reads as a protocol (`http`, `http-web`, `grpc-api`).
const PORT_NAME_PROTOCOLS: &[&str] = &[
    "http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "mysql", "redis",
];

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

/// The checks of one VirtualService as written: its hosts, its gateways, its rules.
fn virtual_service(m: &Model, vs: &VirtualService, out: &mut Vec<Finding>) {
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

/// The `http` rules in order: rules after a catch-all, each rule's action, its match
/// blocks (string matches, repeats of an earlier match), its destinations.
fn http_rules(m: &Model, vs: &VirtualService, out: &mut Vec<Finding>) {
    let meta = &vs.meta;
    let mut catch_all: Option<usize> = None;
    let mut earlier: Vec<(String, usize)> = Vec::new();
    for (i, rule) in vs.spec.http.iter().enumerate() {
        let label = rule_label(i, rule);
        if let Some(c) = catch_all {
            out.push(Finding::new(
                "ML0112",
                Severity::Warning,
                meta,
                rule.pos,
                format!(
                    "{label} can never match: {} before it matches every request",
                    rule_label(c, &vs.spec.http[c])
                ),
                "move this rule above the catch-all rule (rules are tried in order, first match wins)",
            ));
        }
        rule_action(meta, &label, rule, out);
        let blocks: &[Loc<HttpMatch>] = rule.matches.as_ref().map_or(&[], |m| &m.value);
        if blocks.is_empty() {
            catch_all.get_or_insert(i);
        }
        for b in blocks {
            string_matches(meta, b, out);
            if matches_everything(b) {
                catch_all.get_or_insert(i);
            }
            repeated_match(vs, i, &label, b, &mut earlier, out);
        }
        if let Some(route) = &rule.route {
            destinations(m, vs, &label, &route.value, out);
        }
    }
}

/// A match block of rule `i` that selects what a match of an earlier rule (or of this
/// one) already selects; `earlier` holds the matches seen so far, with their rule.
fn repeated_match(
    vs: &VirtualService,
    i: usize,
    label: &str,
    b: &Loc<HttpMatch>,
    earlier: &mut Vec<(String, usize)>,
    out: &mut Vec<Finding>,
) {
    let key = match_key(b);
    if let Some((_, j)) = earlier.iter().find(|(k, _)| *k == key) {
        out.push(Finding::new(
            "ML0113",
            Severity::Warning,
            &vs.meta,
            b.pos,
            format!(
                "this match of {label} repeats a match of {}",
                rule_label(*j, &vs.spec.http[*j])
            ),
            "remove the duplicate match, or change it so it selects other requests",
        ));
    } else {
        earlier.push((key, i));
    }
}

fn rule_label(i: usize, rule: &HttpRoute) -> String {
    match &rule.name {
        Some(n) => format!("http[{i}] ({n:?})"),
        None => format!("http[{i}]"),
    }
}

fn rule_action(meta: &Meta, label: &str, rule: &Loc<HttpRoute>, out: &mut Vec<Finding>) {
    let has_route = rule.route.as_ref().is_some_and(|r| !r.value.is_empty());
    let actions: Vec<&str> = [
        (has_route, "route"),
        (rule.redirect.is_some(), "redirect"),
        (rule.direct_response.is_some(), "directResponse"),
        (rule.delegate.is_some(), "delegate"),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect();
    if actions.len() != 1 {
        let message = if actions.is_empty() {
            format!("{label} does nothing: it has no route, redirect, directResponse or delegate")
        } else {
            format!("{label} has both {}", actions.join(" and "))
        };
        out.push(Finding::new(
            "ML0114",
            Severity::Error,
            meta,
            rule.pos,
            message,
            "give each rule exactly one of route, redirect, directResponse, delegate",
        ));
    }
}

/// The string matches of one match block, with the field names used in messages.
fn string_fields(b: &HttpMatch) -> Vec<(String, &Loc<StringMatch>, bool)> {
    let mut v: Vec<(String, &Loc<StringMatch>, bool)> = Vec::new();
    for (name, f) in [
        ("uri", &b.uri),
        ("scheme", &b.scheme),
        ("method", &b.method),
        ("authority", &b.authority),
    ] {
        if let Some(f) = f {
            v.push((name.to_string(), f, false));
        }
    }
    // For headers and query parameters an empty match means "present", which is legitimate.
    for (what, map) in [
        ("headers", &b.headers),
        ("queryParams", &b.query_params),
        ("withoutHeaders", &b.without_headers),
    ] {
        for (k, f) in map {
            v.push((format!("{what}.{k}"), f, true));
        }
    }
    v
}

fn string_matches(meta: &Meta, b: &Loc<HttpMatch>, out: &mut Vec<Finding>) {
    for (name, f, empty_ok) in string_fields(b) {
        let set: Vec<&str> = [
            (f.exact.is_some(), "exact"),
            (f.prefix.is_some(), "prefix"),
            (f.regex.is_some(), "regex"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        if set.len() > 1 {
            out.push(Finding::new(
                "ML0110",
                Severity::Error,
                meta,
                f.pos,
                format!(
                    "{name} sets {}; a string match takes exactly one",
                    set.join(" and ")
                ),
                "keep one of exact, prefix or regex",
            ));
        } else if set.is_empty() && !empty_ok {
            out.push(Finding::new(
                "ML0110",
                Severity::Warning,
                meta,
                f.pos,
                format!("{name} has none of exact, prefix or regex, so it matches anything"),
                "add exact, prefix or regex, or remove the condition",
            ));
        }
        if f.prefix.as_deref() == Some("") {
            out.push(Finding::new(
                "ML0110",
                Severity::Error,
                meta,
                f.pos,
                format!("{name}: an empty prefix is refused by istiod"),
                "write `prefix: /` to match every path",
            ));
        }
        if let Some(re) = &f.regex
            && let Some(e) = regex_error(re)
        {
            let last = e.lines().last().unwrap_or(&e).trim();
            out.push(Finding::new(
                "ML0111",
                Severity::Error,
                meta,
                f.pos,
                format!("{name}: {re:?} is not a valid RE2 regex ({last})"),
                "Envoy uses RE2: no look-around or backreferences; escape literal dots and brackets",
            ));
        }
    }
}

/// Why `re` is not a valid RE2 pattern, if it is not. Compiling a regex costs ~0.2 ms, and
/// configurations repeat their patterns across rules and VirtualServices, so each distinct
/// pattern is compiled once per thread.
fn regex_error(re: &str) -> Option<String> {
    thread_local! {
        static SEEN: std::cell::RefCell<HashMap<String, Option<String>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(r) = seen.get(re) {
            return r.clone();
        }
        // Bounded so a long-running daemon does not keep every pattern it ever saw.
        if seen.len() > 4096 {
            seen.clear();
        }
        let r = regex::Regex::new(re).err().map(|e| e.to_string());
        seen.insert(re.to_string(), r.clone());
        r
    })
}

/// A match block that every request satisfies: only a `uri` prefix `/` (or regex `.*`),
/// or nothing at all.
fn matches_everything(b: &HttpMatch) -> bool {
    let uri_all = match &b.uri {
        None => true,
        Some(u) => {
            (u.prefix.as_deref() == Some("/") && u.exact.is_none() && u.regex.is_none())
                || (u.regex.as_deref() == Some(".*") && u.exact.is_none() && u.prefix.is_none())
        }
    };
    uri_all
        && b.scheme.is_none()
        && b.method.is_none()
        && b.authority.is_none()
        && b.headers.is_empty()
        && b.query_params.is_empty()
        && b.without_headers.is_empty()
        && b.port.is_none()
        && b.gateways.is_empty()
        && b.source_labels.is_empty()
}

/// What a match block selects, without positions or its name, for duplicate detection.
fn match_key(b: &HttpMatch) -> String {
    let sm = |f: &Option<Loc<StringMatch>>| f.as_ref().map(|l| l.value.clone());
    let map = |m: &BTreeMap<String, Loc<StringMatch>>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect::<Vec<_>>()
    };
    format!(
        "{:?}",
        (
            sm(&b.uri),
            sm(&b.scheme),
            sm(&b.method),
            sm(&b.authority),
            map(&b.headers),
            map(&b.query_params),
            map(&b.without_headers),
            (b.port, b.ignore_uri_case, &b.gateways, &b.source_labels),
        )
    )
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
    let elsewhere: Vec<String> = m
        .gateways
        .iter()
        .filter(|g| g.meta.name() == name)
        .map(|g| g.meta.ns_name())
        .collect();
    let known_ns =
        namespace == own_ns || m.gateways.iter().any(|g| g.meta.namespace() == namespace);
    let severity = if known_ns || m.live {
        Severity::Error
    } else {
        Severity::Warning
    };
    let hint = if let Some(g) = elsewhere.first() {
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
    };
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

/// A host with a dot is never expanded: `goapp.dev` is not Service goapp in namespace dev.
/// Returns true when it reported something.
fn short_host_with_dot(m: &Model, meta: &Meta, h: &Loc<String>, out: &mut Vec<Finding>) -> bool {
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

/// The destinations of one rule's route: each destination, then the route's weights.
fn destinations(
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

/// Checks across VirtualServices: hosts shared on the mesh or on one Gateway.
fn cross_virtual_services(m: &Model, out: &mut Vec<Finding>) {
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
fn gateway(m: &Model, gw: &model::Gateway, out: &mut Vec<Finding>) {
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

fn conflicting_gateways(m: &Model, out: &mut Vec<Finding>) {
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

/// The checks of every DestinationRule; `seen` remembers which rule first defined each
/// host (and subset).
fn destination_rules(m: &Model, out: &mut Vec<Finding>) {
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

/// Remembers `this` as the first object with `key`; returns the object that had the key
/// first when it is another one.
fn earlier_claim<'a, K: Eq + Hash, T>(
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

/// Port naming of the Services that routes point at (from the sources, where there is a
/// place to point at).
fn services(m: &Model, out: &mut Vec<Finding>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::model::host_matches;

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

    #[test]
    fn typo_distance() {
        assert!(close("goapp", "goap"));
        assert!(close("goapp", "gopp"));
        assert!(!close("goapp", "reviews"));
    }

    #[test]
    fn host_match_helper_is_case_insensitive() {
        assert!(host_matches("GoApp.dev", "goapp.DEV"));
    }
}
