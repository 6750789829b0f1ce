//! Findings: what an analyzer reports, and the catalogue of stable codes.
//!
//! A code never changes meaning once released; a retired check keeps its number unused. The
//! catalogue below is the single list of codes: each analyzer names its code, and
//! [`Finding::new`] fills in the istioctl/Kiali equivalents from here, so the table, the JSON
//! output and the docs cannot drift apart. This module formats nothing for a terminal; see
//! `command` for the text form.
//!
//! | code | severity | what | istioctl / Kiali |
//! |---|---|---|---|
//! | ML0001 | error | file is not valid YAML or not a list of objects | |
//! | ML0002 | error | object malformed (no apiVersion/kind/name, field of the wrong type) | |
//! | ML0003 | error | object defined more than once | |
//! | ML0101 | error | VirtualService names a Gateway that does not exist | IST0101, KIA1102 |
//! | ML0102 | warning/error | gateway reference in the legacy `name.namespace` form, or `./name` (Istio rejects it) | KIA1108 |
//! | ML0103 | warning | VirtualService bound to the mesh only, though a Gateway serves its host | |
//! | ML0104 | error | VirtualService without hosts | |
//! | ML0105 | error | host `*` on a VirtualService bound to the mesh | |
//! | ML0106 | error | two hosts of one VirtualService overlap (the same twice, or a wildcard covering the other): Istio rejects it | |
//! | ML0107 | error/warning | no host of the VirtualService matches a server host of a bound Gateway | IST0132 |
//! | ML0108 | error | two mesh VirtualServices share a host | IST0109 |
//! | ML0109 | warning | two VirtualServices on one Gateway share a host | KIA1106 |
//! | ML0110 | error/warning | string match with none or several of exact/prefix/regex, or an empty one | |
//! | ML0111 | error | regex that is not valid RE2 | |
//! | ML0112 | warning | rule unreachable after an earlier catch-all rule | IST0130 |
//! | ML0113 | warning | match duplicates an earlier match | IST0131 |
//! | ML0114 | error | rule with none or several of route/redirect/directResponse/delegate | |
//! | ML0115 | error/warning | destination host matches no Service or ServiceEntry | IST0101, KIA1101 |
//! | ML0116 | error/warning | short host with a dot (`goapp.dev` is not `goapp` in `dev`) | |
//! | ML0117 | error | destination subset defined in no DestinationRule for the host | IST0101, KIA1107 |
//! | ML0118 | error/warning | destination without port to a Service with several ports (error when a bound server port is not a Service port) | IST0112 |
//! | ML0119 | error | destination port the Service does not have | |
//! | ML0120 | warning | single destination with a weight between 0 and 100 | KIA1104 |
//! | ML0121 | warning | the same host and subset twice in one route | KIA1105 |
//! | ML0122 | error | negative weight, or several destinations whose weights total 0 (Istio rejects it) | |
//! | ML0123 | warning | route without subset to a host that other routes split by subset | IST0140 |
//! | ML0201 | error/info | Gateway selector matches no gateway workload | IST0101, KIA0302 |
//! | ML0202 | error | credentialName names a Secret that does not exist (live) | IST0101, IST0161 |
//! | ML0203 | error | TLS server without credentialName or certificate | |
//! | ML0204 | error | conflicting Gateways: same selector, port and overlapping hosts | IST0145, KIA0301 |
//! | ML0205 | warning | server port is not a port of the gateway's Service | IST0162 |
//! | ML0206 | error | server port number out of range (1-65535) | |
//! | ML0207 | error | server port protocol unknown | |
//! | ML0208 | error | server host malformed, or a server without hosts | |
//! | ML0209 | error | Gateway without servers | |
//! | ML0210 | info | no VirtualService binds this Gateway | |
//! | ML0301 | warning | DestinationRule host matches no Service | IST0174, KIA0202 |
//! | ML0302 | warning | two DestinationRules define the same host and subset | KIA0201 |
//! | ML0303 | warning | subset without labels | KIA0209 |
//! | ML0304 | warning/error | subset labels select no Pod of the host's Service | IST0173, KIA0203 |
//! | ML0305 | error | two subsets with one name in a DestinationRule | |
//! | ML0306 | error | DestinationRule without host | |
//! | ML0401 | info | Service port name not `<protocol>[-suffix]` and no appProtocol | IST0118, KIA0601 |
//! | ML0402 | warning | destination Service has no ready endpoints (live) | |
//! | ML0403 | info | namespace not labelled for sidecar injection (live) | IST0102 |
//! | ML0404 | warning | Pod without sidecar proxy in an injected namespace (live) | IST0103 |
//! | ML0501 | error | ServiceEntry without hosts | |
//! | ML0601 | error/warning | parentRef names a Gateway that does not exist (Istio: no status at all) | KIA1401 |
//! | ML0602 | error | route not allowed by the listeners (namespace or kind, allowedRoutes) | IST0171, KIA1401 |
//! | ML0603 | error | no hostname in common with the listeners | IST0171 |
//! | ML0604 | error | parentRef sectionName or port matches no listener | IST0171 |
//! | ML0605 | error/warning | backendRef Service not found | IST0171, KIA1402 |
//! | ML0606 | error (weight 0: warning) | cross-namespace backendRef without a ReferenceGrant | IST0171, KIA1402 |
//! | ML0607 | error (weight 0: warning) | backendRef port not exposed by the Service (Istio: no status) |  |
//! | ML0608 | error | backendRef of an unsupported kind, a hostname for a name, or without port | IST0171 |
//! | ML0609 | warning | Gateway class not served by istiod, or route on such a Gateway | KIA1504 |
//! | ML0610 | error | two listeners with one port, protocol and hostname | KIA1503 |
//! | ML0611 | warning | two Gateways serve one hostname on one port | KIA1501 |
//! | ML0612 | warning | two Gateways ask for one address | KIA1502 |
//! | ML0613 | warning | ReferenceGrant from a namespace that does not exist (live) | KIA1601 |
//! | ML0614 | warning | rule without backends and redirect, or all weights 0: answers 500 |  |
//! | ML0615 | warning | every hostname of an accepted route taken by a more specific listener |  |

use std::fmt;

use serde::Serialize;

use super::model::Meta;
use crate::manifest::ObjectKey;
use crate::manifest::yaml::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    pub code: &'static str,
    pub equivalent: &'static [&'static str],
    /// Whether this check can only run with live cluster facts.
    pub live_only: bool,
    pub summary: &'static str,
}

const fn rule(
    code: &'static str,
    equivalent: &'static [&'static str],
    live_only: bool,
    summary: &'static str,
) -> Rule {
    Rule {
        code,
        equivalent,
        live_only,
        summary,
    }
}

/// Every code meshloop reports, in order; see the module documentation for the table.
pub const RULES: &[Rule] = &[
    rule(
        "ML0001",
        &[],
        false,
        "file is not valid YAML or not a list of objects",
    ),
    rule("ML0002", &[], false, "object malformed"),
    rule("ML0003", &[], false, "object defined more than once"),
    rule(
        "ML0101",
        &["IST0101", "KIA1102"],
        false,
        "gateway not found",
    ),
    rule(
        "ML0102",
        &["KIA1108"],
        false,
        "gateway reference in the legacy name.namespace form",
    ),
    rule(
        "ML0103",
        &[],
        false,
        "bound to the mesh only, though a Gateway serves its host",
    ),
    rule("ML0104", &[], false, "VirtualService without hosts"),
    rule("ML0105", &[], false, "host * on a mesh VirtualService"),
    rule("ML0106", &[], false, "duplicate host in one VirtualService"),
    rule(
        "ML0107",
        &["IST0132"],
        false,
        "host matches no server host of a bound Gateway",
    ),
    rule(
        "ML0108",
        &["IST0109"],
        false,
        "two mesh VirtualServices share a host",
    ),
    rule(
        "ML0109",
        &["KIA1106"],
        false,
        "two VirtualServices on one Gateway share a host",
    ),
    rule(
        "ML0110",
        &[],
        false,
        "string match needs exactly one of exact/prefix/regex",
    ),
    rule("ML0111", &[], false, "regex is not valid RE2"),
    rule(
        "ML0112",
        &["IST0130"],
        false,
        "rule unreachable after a catch-all",
    ),
    rule(
        "ML0113",
        &["IST0131"],
        false,
        "match duplicates an earlier match",
    ),
    rule(
        "ML0114",
        &[],
        false,
        "rule needs exactly one of route/redirect/directResponse/delegate",
    ),
    rule(
        "ML0115",
        &["IST0101", "KIA1101"],
        false,
        "destination host not found",
    ),
    rule("ML0116", &[], false, "short host name with a dot"),
    rule(
        "ML0117",
        &["IST0101", "KIA1107"],
        false,
        "subset not defined",
    ),
    rule("ML0118", &["IST0112"], false, "destination port required"),
    rule("ML0119", &[], false, "destination port not on the Service"),
    rule(
        "ML0120",
        &["KIA1104"],
        false,
        "single destination with a partial weight",
    ),
    rule(
        "ML0121",
        &["KIA1105"],
        false,
        "same host and subset twice in one route",
    ),
    rule(
        "ML0122",
        &[],
        false,
        "negative weight or a total weight of 0",
    ),
    rule(
        "ML0123",
        &["IST0140"],
        false,
        "route without subset beside subset routes",
    ),
    rule(
        "ML0201",
        &["IST0101", "KIA0302"],
        false,
        "selector matches no gateway workload",
    ),
    rule(
        "ML0202",
        &["IST0101", "IST0161"],
        true,
        "credentialName Secret not found",
    ),
    rule("ML0203", &[], false, "TLS server without credentials"),
    rule(
        "ML0204",
        &["IST0145", "KIA0301"],
        false,
        "conflicting Gateways",
    ),
    rule(
        "ML0205",
        &["IST0162"],
        false,
        "server port not on the gateway Service",
    ),
    rule("ML0206", &[], false, "server port out of range"),
    rule("ML0207", &[], false, "unknown server protocol"),
    rule("ML0208", &[], false, "server host malformed or missing"),
    rule("ML0209", &[], false, "Gateway without servers"),
    rule("ML0210", &[], false, "no VirtualService binds this Gateway"),
    rule(
        "ML0301",
        &["IST0174", "KIA0202"],
        false,
        "DestinationRule host matches no Service",
    ),
    rule(
        "ML0302",
        &["KIA0201"],
        false,
        "two DestinationRules for one host and subset",
    ),
    rule("ML0303", &["KIA0209"], false, "subset without labels"),
    rule(
        "ML0304",
        &["IST0173", "KIA0203"],
        false,
        "subset selects no Pod",
    ),
    rule("ML0305", &[], false, "duplicate subset name"),
    rule("ML0306", &[], false, "DestinationRule without host"),
    rule(
        "ML0401",
        &["IST0118", "KIA0601"],
        false,
        "Service port name without protocol",
    ),
    rule("ML0402", &[], true, "no ready endpoints"),
    rule(
        "ML0403",
        &["IST0102"],
        true,
        "namespace not labelled for injection",
    ),
    rule("ML0404", &["IST0103"], true, "Pod without sidecar proxy"),
    rule("ML0501", &[], false, "ServiceEntry without hosts"),
    rule("ML0601", &["KIA1401"], false, "parentRef Gateway not found"),
    rule(
        "ML0602",
        &["IST0171", "KIA1401"],
        false,
        "route not allowed by the listeners",
    ),
    rule(
        "ML0603",
        &["IST0171"],
        false,
        "no hostname matches the listener",
    ),
    rule(
        "ML0604",
        &["IST0171"],
        false,
        "sectionName or port matches no listener",
    ),
    rule(
        "ML0605",
        &["IST0171", "KIA1402"],
        false,
        "backendRef Service not found",
    ),
    rule(
        "ML0606",
        &["IST0171", "KIA1402"],
        false,
        "backendRef not permitted (no ReferenceGrant)",
    ),
    rule("ML0607", &[], false, "backendRef port not on the Service"),
    rule("ML0608", &["IST0171"], false, "invalid backendRef"),
    rule(
        "ML0609",
        &["KIA1504"],
        false,
        "Gateway class not served by Istio",
    ),
    rule("ML0610", &["KIA1503"], false, "duplicate listener"),
    rule(
        "ML0611",
        &["KIA1501"],
        false,
        "Gateways share a host and port",
    ),
    rule("ML0612", &["KIA1502"], false, "Gateways share an address"),
    rule(
        "ML0613",
        &["KIA1601"],
        true,
        "ReferenceGrant from a missing namespace",
    ),
    rule("ML0614", &[], false, "rule answers 500"),
    rule(
        "ML0615",
        &[],
        false,
        "route's hostnames all taken by more specific listeners",
    ),
];

/// The catalogue entry of `code`. Panics on an unknown code: that is a bug in an analyzer,
/// caught by the tests that run every analyzer.
pub fn lookup(code: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.code == code)
        .unwrap_or_else(|| panic!("finding code {code} is not in the catalogue"))
}

/// One problem found in the routing configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    /// The istioctl (IST) and Kiali (KIA) codes this one corresponds to.
    pub equivalent: Vec<&'static str>,
    pub severity: Severity,
    /// `VirtualService dev/goapp`; empty for a finding about a whole file.
    pub object: String,
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
    pub hint: String,
    /// True when the finding rests on live cluster facts (Pods, endpoints, Secrets).
    pub needs_live: bool,
    /// The object concerned, for the daemon to hold back exactly that object.
    #[serde(skip)]
    pub key: Option<ObjectKey>,
}

impl Finding {
    /// A finding about an object; `pos` is the offending field (0:0 means the object itself).
    pub fn new(
        code: &'static str,
        severity: Severity,
        meta: &Meta,
        pos: Pos,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Finding {
        let rule = lookup(code);
        let pos = if pos.line == 0 { meta.pos } else { pos };
        Finding {
            code,
            equivalent: rule.equivalent.to_vec(),
            severity,
            object: meta.key.to_string(),
            file: meta.file.clone(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            hint: hint.into(),
            needs_live: rule.live_only,
            key: Some(meta.key.clone()),
        }
    }

    /// Marks a finding as resting on live facts.
    pub fn live(mut self) -> Finding {
        self.needs_live = true;
        self
    }

    /// `routing/goapp.yaml:14:9`, or just the file when the position is unknown.
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, self.line, self.col)
        }
    }

    /// Whether this finding concerns `key` (the daemon holds back such objects on errors).
    pub fn concerns(&self, key: &ObjectKey) -> bool {
        self.key.as_ref() == Some(key)
    }
}

/// Findings in reading order: by file, position, then code.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (&a.file, a.line, a.col, a.code, &a.message)
            .cmp(&(&b.file, b.line, b.col, b.code, &b.message))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_codes_are_unique_and_ordered() {
        for w in RULES.windows(2) {
            assert!(w[0].code < w[1].code, "{} before {}", w[0].code, w[1].code);
        }
    }

    #[test]
    fn doc_table_lists_every_code() {
        let src = include_str!("findings.rs");
        for r in RULES {
            assert!(
                src.contains(&format!("//! | {} |", r.code)),
                "{} missing from the table",
                r.code
            );
        }
    }
}
