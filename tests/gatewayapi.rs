//! `explain` over Gateway API routing: HTTPRoutes translated into the route model the way
//! istiod translates them, walked by the same simulation as VirtualServices.

mod support;

use meshloop::analyze::command;
use meshloop::analyze::explain::{Explanation, Outcome, Request};
use meshloop::analyze::{Model, analyze, explain};
use meshloop::config::Ingress;

fn model() -> Model {
    // Relative, as the user names it (cargo runs integration tests in the package root).
    let path = std::path::PathBuf::from("tests/fixtures/gatewayapi/routing.yaml");
    let inputs = command::read_inputs(&[path], None, None).expect("fixture readable");
    Model::build(&inputs.objects, &inputs.others, None, &Ingress::default())
}

fn go(m: &Model, host: &str, path: &str) -> Explanation {
    explain(m, &Request::get(host, path))
}

/// Destinations with a share, as `name share`.
fn split(ex: &Explanation) -> Vec<String> {
    ex.destinations
        .iter()
        .filter(|d| d.share > 0.0)
        .map(|d| format!("{} {:.0}", d.host.split('.').next().unwrap(), d.share))
        .collect()
}

#[test]
fn path_prefix_matches_whole_path_elements() {
    let m = model();
    let ex = go(&m, "shop.dev", "/api/orders");
    assert_eq!(
        split(&ex),
        ["api 75", "api-canary 25"],
        "{}",
        ex.render_text()
    );
    // `/apix` is not under `/api`: the catch-all `/` takes it.
    let ex = go(&m, "shop.dev", "/apix");
    assert_eq!(split(&ex), ["web 100"], "{}", ex.render_text());
    let ex = go(&m, "shop.dev", "/api");
    assert_eq!(
        split(&ex),
        ["api 75", "api-canary 25"],
        "{}",
        ex.render_text()
    );
}

#[test]
fn precedence_across_rules_and_routes() {
    let m = model();
    // Exact beats any prefix.
    let ex = go(&m, "shop.dev", "/api/exact");
    assert_eq!(split(&ex), ["special 100"], "{}", ex.render_text());
    // Istio ranks a regex below any prefix: /api wins over the regex rule.
    let ex = go(&m, "shop.dev", "/api/v2/special");
    assert_eq!(
        split(&ex),
        ["api 75", "api-canary 25"],
        "{}",
        ex.render_text()
    );
    // Same prefix, more header matches first, even from another route.
    let mut req = Request::get("shop.dev", "/api/orders");
    req.headers.insert("x-canary".into(), "yes".into());
    let ex = explain(&m, &req);
    assert_eq!(split(&ex), ["api-canary 100"], "{}", ex.render_text());
    let rule = ex.hops.iter().find(|h| h.step == "rule").unwrap();
    assert!(
        rule.detail.contains("HTTPRoute dev/shop-headers rules[0]"),
        "{}",
        rule.detail
    );
    assert!(
        rule.at.as_deref().unwrap().contains("routing.yaml:"),
        "{rule:?}"
    );
    // The decision names the route whose rule matched, its index in that route's `rules`,
    // and the Gateway and listener, not the translation's names.
    let d = &ex.decision;
    assert_eq!(d.virtual_service.as_deref(), Some("dev/shop-headers"));
    assert_eq!(d.rule, Some(0));
    assert_eq!(d.gateway.as_deref(), Some("dev/public"));
    assert_eq!(d.listener.as_deref(), Some("http"));
    let ex = go(&m, "shop.dev", "/api/orders");
    assert_eq!(ex.decision.virtual_service.as_deref(), Some("dev/shop"));
    assert_eq!(ex.decision.rule, Some(1));
}

#[test]
fn listener_hostnames_and_ports() {
    let m = model();
    // `*.example.com` covers foo.example.com, not example.com.
    let ex = go(&m, "foo.example.com", "/");
    assert_eq!(split(&ex), ["web 100"], "{}", ex.render_text());
    let ex = go(&m, "example.com", "/");
    assert!(
        matches!(ex.outcome, Outcome::NoRoute { .. }),
        "{}",
        ex.render_text()
    );
    // A parentRef by port: the route is on the 8080 listener only.
    let mut req = Request::get("admin.dev", "/");
    req.port = Some(8080);
    let ex = explain(&m, &req);
    assert_eq!(split(&ex), ["web 100"], "{}", ex.render_text());
    assert!(
        ex.hops
            .iter()
            .any(|h| h.detail.contains("Gateway dev/public listener admin"))
    );
    let ex = go(&m, "admin.dev", "/");
    assert_eq!(ex.outcome.status(), Some(404), "{}", ex.render_text());
}

#[test]
fn redirects_and_invalid_backends() {
    let m = model();
    let ex = go(&m, "shop.dev", "/old/page?x=1");
    assert_eq!(
        ex.outcome,
        Outcome::Redirect {
            status: 302,
            location: "http://shop.dev/new/page?x=1".into()
        },
        "{}",
        ex.render_text()
    );
    // A backend Service that does not exist answers 500 (not Envoy's 503 for a VirtualService).
    let ex = go(&m, "shop.dev", "/broken");
    assert_eq!(ex.outcome.status(), Some(500), "{}", ex.render_text());
    // A cross-namespace backend without a ReferenceGrant: its half answers 500.
    let ex = go(&m, "shop.dev", "/half");
    assert!(
        matches!(ex.outcome, Outcome::Routed { .. }),
        "{}",
        ex.render_text()
    );
    let refused = ex
        .destinations
        .iter()
        .find(|d| d.fails_with.is_some())
        .unwrap();
    assert!(
        refused.hops[0].detail.starts_with("RefNotPermitted"),
        "{refused:?}"
    );
    assert_eq!(refused.share, 50.0);
}

#[test]
fn findings_point_at_the_routes() {
    let m = model();
    let codes: Vec<(&str, String)> = analyze(&m).iter().map(|f| (f.code, f.location())).collect();
    assert!(codes.iter().any(|(c, _)| *c == "ML0605"), "{codes:?}");
    assert!(codes.iter().any(|(c, _)| *c == "ML0606"), "{codes:?}");
    assert!(
        codes.iter().all(|(_, at)| at.contains("routing.yaml:")),
        "{codes:?}"
    );
}

#[test]
fn a_refused_backend_with_weight_zero_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(
        &file,
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: dev}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: dev}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: other}
spec:
  parentRefs: [{name: public, namespace: dev}]
  rules:
    - backendRefs:
        - {name: web, namespace: dev, port: 80, weight: 0}
    - matches: [{path: {type: PathPrefix, value: /a}}]
      backendRefs:
        - {name: web, namespace: dev, port: 80}
",
    )
    .unwrap();
    let inputs = command::read_inputs(&[file], None, None).unwrap();
    let m = Model::build(&inputs.objects, &inputs.others, None, &Ingress::default());
    let found: Vec<(&str, String, u32)> = analyze(&m)
        .iter()
        .filter(|f| f.code == "ML0606")
        .map(|f| (f.code, format!("{:?}", f.severity), f.line))
        .collect();
    // Line 20: the weight-0 reference (no traffic); line 23: the one that gets requests.
    assert_eq!(
        found,
        [
            ("ML0606", "Warning".into(), 20),
            ("ML0606", "Error".into(), 23)
        ],
        "{found:?}"
    );
}
