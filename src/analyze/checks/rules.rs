//! The checks of a VirtualService's `http` rules: order, action, match blocks.

use std::collections::{BTreeMap, HashMap};

use super::destination::destinations;
use crate::analyze::findings::{Finding, Severity};
use crate::analyze::model::{Meta, Model, VirtualService};
use crate::manifest::istio::{HttpMatch, HttpRoute, StringMatch};
use crate::manifest::yaml::Loc;

/// The `http` rules in order: rules after a catch-all, each rule's action, its match
/// blocks (string matches, repeats of an earlier match), its destinations.
pub(super) fn http_rules(m: &Model, vs: &VirtualService, out: &mut Vec<Finding>) {
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
