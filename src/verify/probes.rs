//! The requests a verification sends, derived from the routing model and the config's checks.
//!
//! One probe per (VirtualService host bound to an ingress Gateway × http rule): the request is
//! built from the rule's first match block that can be turned into one (exact path, prefix,
//! method, headers, query parameters; a regex is used when it is a plain string), and checked
//! against the rules before it, so a probe really exercises its rule. A rule that splits
//! traffic between several destinations becomes a split probe. Rules that cannot be probed
//! (wildcard hosts, regexes, HTTPS-only servers, delegation, rules shadowed by an earlier one)
//! are listed as skipped with the reason, never silently dropped.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analyze::explain::{self, Outcome, Request};
use crate::analyze::model::{Gateway, Model, ServerHost, VirtualService, host_matches, service_of};
use crate::config::Check;
use crate::manifest::istio::{HttpMatch, HttpRoute, StringMatch};
use crate::manifest::yaml::Loc;

/// The request of a probe.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ProbeRequest {
    pub method: String,
    /// The Host header.
    pub host: String,
    /// Path with an optional `?query`.
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

impl ProbeRequest {
    /// The simulation's view of this request.
    pub fn to_explain(&self, port: u32) -> Request {
        Request {
            host: self.host.clone(),
            path: self.path.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            port: Some(port),
        }
    }

    /// `GET goapp.dev/fortune`: method, Host and path.
    pub fn describe(&self) -> String {
        format!("{} {}{}", self.method, self.host, self.path)
    }
}

/// What a probe's answers must show.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Expectation {
    /// An exact status.
    pub status: Option<u16>,
    /// Reached an upstream: no 404 from the gateway itself and no 5xx. Used when no status is
    /// given: an app's own 404 or 405 still proves the route.
    pub routed: bool,
    pub body_contains: Option<String>,
    pub body_regex: Option<String>,
    /// Response headers that must be present with these values (names case-insensitive).
    pub headers: BTreeMap<String, String>,
}

impl Expectation {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match self.status {
            Some(s) => parts.push(format!("status {s}")),
            None if self.routed => parts.push("routed to the app (not 404 NR, not 5xx)".into()),
            None => {}
        }
        if let Some(b) = &self.body_contains {
            parts.push(format!("body contains {b:?}"));
        }
        if let Some(b) = &self.body_regex {
            parts.push(format!("body matches /{b}/"));
        }
        for (k, v) in &self.headers {
            parts.push(format!("header {k}: {v}"));
        }
        parts.join(", ")
    }
}

/// One destination of a split and the response-header values that identify it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ExpectedShare {
    /// `goapp subset v1`.
    pub destination: String,
    /// Expected share, 0..=1.
    pub share: f64,
    /// Values of the version header that mean this destination answered.
    pub values: Vec<String>,
    /// The destination's host as Istio reads it, and its subset (for diagnosis).
    #[serde(skip)]
    pub fqdn: String,
    #[serde(skip)]
    pub subset: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Probe {
    /// `GET goapp.dev/fortune`.
    pub name: String,
    /// What asked for it: `VirtualService dev/goapp http[0] "fortune"`, `check 2`.
    pub source: String,
    /// `file:line:col` of the rule or check.
    pub at: Option<String>,
    pub request: ProbeRequest,
    pub expect: Expectation,
    /// Two or more destinations with a share: the probe sends `split_samples` requests.
    pub split: Vec<ExpectedShare>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Skipped {
    pub source: String,
    pub at: Option<String>,
    pub reason: String,
}

/// The gateway server port plain-HTTP probes arrive on.
pub const HTTP_PORT: u32 = 80;

fn is_plain_http(proto: Option<&str>) -> bool {
    matches!(
        proto.map(|p| p.to_ascii_uppercase()).as_deref(),
        None | Some("HTTP") | Some("HTTP2") | Some("GRPC") | Some("GRPC-WEB")
    )
}

/// Derives the probes of `m` (routing model) plus one per config check.
pub fn derive(
    m: &Model,
    checks: &[Check],
    config_file: Option<&str>,
) -> (Vec<Probe>, Vec<Skipped>) {
    let mut probes = Vec::new();
    let mut skipped = Vec::new();
    for (vi, host) in served_hosts(m, &mut skipped) {
        let vs = &m.virtual_services[vi];
        for (ri, rule) in vs.spec.http.iter().enumerate() {
            match rule_probe(m, vs, ri, rule, &host) {
                Ok(p) => probes.push(p),
                Err(s) => skipped.push(s),
            }
        }
    }
    for (i, c) in checks.iter().enumerate() {
        probes.push(check_probe(i, c, config_file));
    }
    (probes, skipped)
}

/// The (VirtualService index, host) pairs served over plain HTTP on the ingress, in order;
/// a wildcard host is skipped, since it has no single Host header to send.
fn served_hosts(m: &Model, skipped: &mut Vec<Skipped>) -> Vec<(usize, String)> {
    let gateways = explain::ingress_gateway_list(m);
    let mut pairs: Vec<(usize, String)> = Vec::new();
    for (vi, vs) in m.virtual_services.iter().enumerate() {
        for h in &vs.spec.hosts {
            if !gateways.iter().any(|g| serves_http(g, vs, h)) {
                continue;
            }
            if h.contains('*') {
                skipped.push(Skipped {
                    source: format!("VirtualService {} host {}", vs.meta.ns_name(), h.value),
                    at: Some(format!("{}:{}", vs.meta.file, h.pos)),
                    reason: "a wildcard host has no single Host header to send; add a check in meshloop.yaml with a concrete host".into(),
                });
                continue;
            }
            let host = h.value.to_ascii_lowercase();
            if !pairs.contains(&(vi, host.clone())) {
                pairs.push((vi, host));
            }
        }
    }
    pairs
}

/// Whether gateway `g` takes the VirtualService `vs` for host `h` on its plain-HTTP port.
fn serves_http(g: &Gateway, vs: &VirtualService, h: &Loc<String>) -> bool {
    vs.binds(&g.meta)
        && g.spec.servers.iter().any(|s| {
            let port_ok = s.port.as_ref().is_some_and(|p| {
                p.number.as_ref().map(|n| n.value) == Some(HTTP_PORT)
                    && is_plain_http(p.protocol.as_ref().map(|p| p.value.as_str()))
            });
            port_ok
                && s.hosts.iter().any(|sh| {
                    let sh = ServerHost::parse(sh);
                    sh.admits_namespace(vs.meta.namespace(), g.meta.namespace())
                        && (host_matches(&sh.host, h) || host_matches(h, &sh.host))
                })
        })
}

/// The probe of rule `ri` for `host`: a request it matches and what the gateway should do
/// with it; skipped (with the reason) when no request reaches the rule.
fn rule_probe(
    m: &Model,
    vs: &VirtualService,
    ri: usize,
    rule: &Loc<HttpRoute>,
    host: &str,
) -> Result<Probe, Skipped> {
    let source = rule_source(vs, ri, rule);
    let at = Some(format!("{}:{}", vs.meta.file, rule.pos));
    let skip = |reason: String| Skipped {
        source: format!("{source} host {host}"),
        at: at.clone(),
        reason,
    };
    if rule.delegate.is_some() {
        return Err(skip(
            "delegating rules are probed through the delegate's own rules when it is bound; add a check for a path it serves".into(),
        ));
    }
    let req = request_for(host, rule).map_err(&skip)?;
    let ereq = req.to_explain(HTTP_PORT);
    if let Some(earlier) = vs.spec.http[..ri]
        .iter()
        .position(|r| explain::rule_matches(r, &ereq, host, HTTP_PORT))
    {
        return Err(skip(format!(
            "the request {} is taken by the earlier rule http[{earlier}]",
            req.describe()
        )));
    }
    let sim = explain::explain(m, &ereq);
    let mut expect = Expectation {
        routed: true,
        ..Expectation::default()
    };
    if let Outcome::Redirect { status, .. } | Outcome::DirectResponse { status } = sim.outcome {
        expect.routed = false;
        expect.status = Some(status);
    }
    let split = if rule.route.is_some() {
        expected_shares(m, &sim.destinations)
    } else {
        Vec::new()
    };
    Ok(Probe {
        name: req.describe(),
        source,
        at,
        request: req,
        expect,
        split,
    })
}

/// The probe of `checks[i]` of the config, as written.
fn check_probe(i: usize, c: &Check, config_file: Option<&str>) -> Probe {
    let req = ProbeRequest {
        method: c.method.to_ascii_uppercase(),
        host: c.host.clone(),
        path: c.path.clone(),
        headers: lower_keys(&c.headers),
        body: c.body.clone(),
    };
    let expect = Expectation {
        status: c.expect.status,
        routed: c.expect.status.is_none(),
        body_contains: c.expect.body_contains.clone(),
        body_regex: c.expect.body_regex.clone(),
        headers: lower_keys(&c.expect.headers),
    };
    Probe {
        name: req.describe(),
        source: format!("checks[{i}] in {}", config_file.unwrap_or("the config")),
        at: None,
        request: req,
        expect,
        split: Vec::new(),
    }
}

/// Header names compare case-insensitively; probes keep them lower-case.
fn lower_keys(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

fn rule_source(vs: &VirtualService, ri: usize, rule: &HttpRoute) -> String {
    let name = rule
        .name
        .as_ref()
        .map(|n| format!(" {n:?}"))
        .unwrap_or_default();
    format!("VirtualService {} http[{ri}]{name}", vs.meta.ns_name())
}

/// The destinations of a split with their identifying header values; empty when one
/// destination takes all the traffic.
fn expected_shares(m: &Model, dests: &[explain::DestinationHop]) -> Vec<ExpectedShare> {
    let mut out: Vec<ExpectedShare> = Vec::new();
    for d in dests.iter().filter(|d| d.share > 0.0) {
        let label = match &d.subset {
            Some(s) => format!("{} subset {s}", d.host),
            None => d.host.clone(),
        };
        let mut values = Vec::new();
        match &d.subset {
            Some(s) => {
                values.push(s.clone());
                for dr in m.rules_for(&d.fqdn) {
                    for sub in dr.spec.subsets.iter().filter(|x| x.name.value == *s) {
                        if let Some(labels) = &sub.labels {
                            for key in ["version", "app.kubernetes.io/version"] {
                                if let Some(v) = labels.value.get(key) {
                                    values.push(v.clone());
                                }
                            }
                        }
                    }
                }
            }
            None => {
                // Host-based splits (goapp-v1 / goapp-v2): the Service name, and its suffix
                // after the last dash, which is how such Services usually name the version.
                let name = service_of(&d.fqdn).map_or(d.host.as_str(), |(_, n)| n);
                values.push(name.to_string());
                if let Some((_, suffix)) = name.rsplit_once('-') {
                    values.push(suffix.to_string());
                }
            }
        }
        values.dedup();
        match out.iter_mut().find(|e| e.destination == label) {
            Some(e) => e.share += d.share / 100.0,
            None => out.push(ExpectedShare {
                destination: label,
                share: d.share / 100.0,
                values,
                fqdn: d.fqdn.clone(),
                subset: d.subset.clone(),
            }),
        }
    }
    if out.len() < 2 {
        out.clear();
    }
    out
}

/// A request that the rule's match admits, from its first usable match block.
pub fn request_for(host: &str, rule: &HttpRoute) -> Result<ProbeRequest, String> {
    let blocks: &[crate::manifest::yaml::Loc<HttpMatch>] =
        rule.matches.as_ref().map_or(&[], |m| &m.value);
    let base = ProbeRequest {
        method: "GET".into(),
        host: host.to_string(),
        path: "/".into(),
        headers: BTreeMap::new(),
        body: None,
    };
    if blocks.is_empty() {
        return Ok(base);
    }
    let mut why = String::new();
    for b in blocks {
        match from_block(base.clone(), b) {
            Ok(r) => return Ok(r),
            Err(e) => {
                if why.is_empty() {
                    why = e;
                }
            }
        }
    }
    Err(format!(
        "{why}; add a check in meshloop.yaml with a request this rule matches"
    ))
}

fn from_block(mut req: ProbeRequest, b: &HttpMatch) -> Result<ProbeRequest, String> {
    if let Some(p) = b.port
        && p != HTTP_PORT
    {
        return Err(format!("the match is for port {p}"));
    }
    if let Some(s) = &b.scheme
        && !value_for(s, "scheme")?.eq_ignore_ascii_case("http")
    {
        return Err("the match is for another scheme than http".into());
    }
    if let Some(a) = &b.authority {
        req.host = value_for(a, "authority")?;
    }
    if let Some(u) = &b.uri {
        let mut p = value_for(u, "uri")?;
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        req.path = p;
    }
    if let Some(mt) = &b.method {
        let m = value_for(mt, "method")?;
        if m.is_empty() {
            return Err("empty method match".into());
        }
        req.method = m.to_ascii_uppercase();
    }
    for (k, v) in &b.headers {
        let k = k.to_ascii_lowercase();
        if k.starts_with(':') {
            return Err(format!("the match is on the pseudo-header {k}"));
        }
        req.headers.insert(k, value_for(v, "header")?);
    }
    let mut query = Vec::new();
    for (k, v) in &b.query_params {
        query.push(format!("{k}={}", value_for(v, "query parameter")?));
    }
    if !query.is_empty() {
        req.path = format!("{}?{}", req.path, query.join("&"));
    }
    if b.without_headers
        .keys()
        .any(|k| req.headers.contains_key(&k.to_ascii_lowercase()))
    {
        return Err("the match both requires and excludes a header".into());
    }
    Ok(req)
}

/// A value a string match admits: the exact value, the prefix itself, or a regex that is a
/// plain string (possibly anchored or followed by `.*`).
fn value_for(sm: &StringMatch, what: &str) -> Result<String, String> {
    if let Some(e) = &sm.exact {
        return Ok(e.clone());
    }
    if let Some(p) = &sm.prefix {
        return Ok(p.clone());
    }
    if let Some(r) = &sm.regex {
        let mut cand = r.trim_start_matches('^').trim_end_matches('$').to_string();
        for tail in [".*", ".+"] {
            if let Some(c) = cand.strip_suffix(tail) {
                cand = c.to_string();
                if tail == ".+" {
                    cand.push('x');
                }
            }
        }
        let cand = cand.replace("\\.", ".").replace("\\/", "/");
        if let Ok(re) = regex::Regex::new(&format!("^(?:{r})$"))
            && re.is_match(&cand)
        {
            return Ok(cand);
        }
        return Err(format!("the {what} match is the regex {r:?}"));
    }
    Err(format!("the {what} match has no exact, prefix or regex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(exact: Option<&str>, prefix: Option<&str>, regex: Option<&str>) -> StringMatch {
        StringMatch {
            exact: exact.map(Into::into),
            prefix: prefix.map(Into::into),
            regex: regex.map(Into::into),
            ..StringMatch::default()
        }
    }

    fn model(yaml: &str) -> Model {
        let opts = crate::manifest::LoadOptions {
            owned: crate::config::default_owned_kinds(),
            default_namespace: "dev".into(),
            keep_others: false,
            limits: Default::default(),
        };
        let loaded = crate::manifest::load_text(yaml, "routing/app.yaml", false, &opts);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        Model::build(
            &loaded.objects,
            &[],
            None,
            &crate::config::Ingress::default(),
        )
    }

    const ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingress}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["*.example.dev"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app.example.dev, "*.example.dev"]
  gateways: [gw]
  http:
    - name: api
      match:
        - uri: {prefix: /api}
          method: {exact: POST}
          headers: {X-Canary: {exact: "1"}}
      route: [{destination: {host: app, subset: v2}}]
    - name: items
      match: [{uri: {regex: "/items/[0-9]+"}}]
      route: [{destination: {host: app, subset: v1}}]
    - name: old
      match: [{uri: {exact: /old}}]
      redirect: {uri: /new}
    - name: split
      match: [{uri: {prefix: /}}]
      route:
        - {destination: {host: app, subset: v1}, weight: 9}
        - {destination: {host: app, subset: v2}, weight: 1}
    - name: shadowed
      match: [{uri: {prefix: /x}}]
      route: [{destination: {host: app, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mesh-only}
spec:
  hosts: [app]
  http:
    - route: [{destination: {host: app}}]
"#;

    #[test]
    fn one_probe_per_bound_host_and_rule() {
        let m = model(ROUTES);
        let (probes, skipped) = derive(&m, &[], None);
        let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "POST app.example.dev/api",
                "GET app.example.dev/old",
                "GET app.example.dev/"
            ]
        );
        assert_eq!(probes[0].request.headers.get("x-canary").unwrap(), "1");
        assert!(probes[0].expect.routed && probes[0].split.is_empty());
        assert_eq!(
            probes[1].expect.status,
            Some(301),
            "a redirect answers its status"
        );
        assert!(!probes[1].expect.routed);
        // Relative weights 9:1 are a 90/10 split, told apart by subset name and version label.
        let split = &probes[2].split;
        assert_eq!(split.len(), 2);
        assert!((split[0].share - 0.9).abs() < 1e-9 && (split[1].share - 0.1).abs() < 1e-9);
        assert!(split[0].values.contains(&"v1".to_string()));
        assert!(
            probes[2].source.contains("http[3] \"split\""),
            "{}",
            probes[2].source
        );
        assert!(
            probes[2]
                .at
                .as_deref()
                .unwrap()
                .starts_with("routing/app.yaml:")
        );

        let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(skipped.len(), 3, "{skipped:#?}");
        assert!(reasons[0].contains("wildcard host"), "{reasons:?}");
        assert!(reasons[1].contains("regex"), "{reasons:?}");
        assert!(reasons[2].contains("earlier rule http[3]"), "{reasons:?}");
    }

    #[test]
    fn checks_become_probes_with_their_expectations() {
        let m = model(ROUTES);
        let check: Check = serde_json::from_value(serde_json::json!({
            "host": "app.example.dev", "method": "post", "path": "/",
            "headers": {"X-Debug": "1"}, "body": "Hello",
            "expect": {"body_contains": "Hello"}
        }))
        .unwrap();
        let (probes, _) = derive(&m, &[check], Some("meshloop.yaml"));
        let p = probes.last().unwrap();
        assert_eq!(p.name, "POST app.example.dev/");
        assert_eq!(p.source, "checks[0] in meshloop.yaml");
        assert_eq!(p.request.headers.get("x-debug").unwrap(), "1");
        assert_eq!(p.request.body.as_deref(), Some("Hello"));
        assert!(
            p.expect.routed,
            "no status given: routed to the app is expected"
        );
        assert_eq!(p.expect.body_contains.as_deref(), Some("Hello"));
    }

    #[test]
    fn values_from_string_matches() {
        assert_eq!(value_for(&sm(Some("/a"), None, None), "uri").unwrap(), "/a");
        assert_eq!(
            value_for(&sm(None, Some("/api/"), None), "uri").unwrap(),
            "/api/"
        );
        assert_eq!(
            value_for(&sm(None, None, Some("/v1/.*")), "uri").unwrap(),
            "/v1/"
        );
        assert_eq!(
            value_for(&sm(None, None, Some("^/exact$")), "uri").unwrap(),
            "/exact"
        );
        assert_eq!(
            value_for(&sm(None, None, Some("/items/.+")), "uri").unwrap(),
            "/items/x"
        );
        assert!(value_for(&sm(None, None, Some("/items/[0-9]+")), "uri").is_err());
        assert!(value_for(&sm(None, None, None), "uri").is_err());
    }
}
