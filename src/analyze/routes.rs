//! The route table Istio programs into the ingress gateway for one port: virtual hosts, each
//! with its ordered routes, built the way istiod's gateway translation builds them, so that a
//! walk over it picks what Envoy would pick.
//!
//! The rules it follows (from Istio's `buildGatewayHTTPRouteConfig` and `route.go`):
//! - a VirtualService takes part on a server when it names the server's Gateway, is exported
//!   to the gateway's namespace, and one of its hosts intersects a server host visible from
//!   its namespace (`ns/host`, `./host`); the virtual host's domain is the narrower of the two;
//! - every match block of a rule is its own route; a rule's routes stop at the first catch-all
//!   (prefix `/` or regex `.*` without header, method or query conditions, or no match at all),
//!   and the VirtualService's later rules are dropped; blocks for another port or Gateway are
//!   left out;
//! - VirtualServices that share a domain have their routes concatenated in Istio's order for
//!   the gateway: those private to its namespace, those exported to it by name, then the
//!   public ones (those translated from Gateway API routes of the gateway's namespace first),
//!   each group in the order they were created (here: the order they were read);
//!   then the catch-all routes move to the end;
//! - a request picks the virtual host whose domain is exact, else the longest `*.suffix`, else
//!   `*`; then the first route that matches.
//!
//! It reads the model and never reports; `explain` turns it into hops and findings use it to
//! know what a rule's fate is.

use super::model::{Gateway, GatewayRef, GatewayTarget, Model, ServerHost, VirtualService};
use crate::manifest::istio::{HttpMatch, HttpRoute, Server, StringMatch};
use crate::manifest::yaml::Loc;

/// One Gateway server listening on the port.
#[derive(Debug, Clone, Copy)]
pub struct ServerRef<'a> {
    pub gateway: &'a Gateway,
    pub server: &'a Loc<Server>,
}

impl ServerRef<'_> {
    pub fn https_redirect(&self) -> bool {
        self.server
            .tls
            .as_ref()
            .and_then(|t| t.https_redirect)
            .unwrap_or(false)
    }
}

/// One route: a match block of a rule (or the whole rule when it has no match).
#[derive(Debug, Clone, Copy)]
pub struct RouteRef<'a> {
    pub vs: &'a VirtualService,
    pub rule_index: usize,
    pub rule: &'a Loc<HttpRoute>,
    pub block: Option<&'a Loc<HttpMatch>>,
    /// The server that put this route on the port.
    pub server: ServerRef<'a>,
}

/// A virtual host: one domain and its routes in the order Envoy tries them.
#[derive(Debug, Clone)]
pub struct VirtualHost<'a> {
    pub domain: String,
    pub routes: Vec<RouteRef<'a>>,
    /// The first server that made this domain.
    pub server: ServerRef<'a>,
    /// The first server with `httpsRedirect` among those that made it: then every request
    /// on this virtual host is redirected to https.
    pub redirect: Option<ServerRef<'a>>,
}

/// The servers of `gateways` listening on `port`, in the order the Gateways were read, as
/// istiod merges them: a server with a `tls` block (HTTPS, or plain HTTP with `httpsRedirect`)
/// that repeats a host (as written) of an earlier such server on the port is skipped whole,
/// with all its hosts (istiod's "skipping server ..., duplicate host names").
pub fn servers_on_port<'a>(gateways: &[&'a Gateway], port: u32) -> Vec<ServerRef<'a>> {
    let mut tls_hosts: std::collections::HashSet<&'a str> = Default::default();
    gateways
        .iter()
        .flat_map(|g| {
            let gateway: &'a Gateway = g;
            gateway
                .spec
                .servers
                .iter()
                .map(move |server| ServerRef { gateway, server })
        })
        .filter(|r| {
            r.server
                .port
                .as_ref()
                .and_then(|p| p.number.as_ref())
                .map(|n| n.value)
                == Some(port)
        })
        .filter(|r| {
            if r.server.tls.is_none() {
                return true;
            }
            let hosts = || r.server.hosts.iter().map(|h| h.value.as_str());
            if hosts().any(|h| tls_hosts.contains(h)) {
                return false;
            }
            tls_hosts.extend(hosts());
            true
        })
        .collect()
}

/// The virtual hosts Istio builds for the servers of one port.
pub fn virtual_hosts<'a>(
    m: &'a Model,
    servers: &[ServerRef<'a>],
    port: u32,
) -> Vec<VirtualHost<'a>> {
    let proxy_ns = m.ingress.namespace.as_str();
    let mut ordered: Vec<&'a VirtualService> = m
        .virtual_services
        .iter()
        .filter(|vs| exported_to(&vs.spec.export_to, vs.meta.namespace(), proxy_ns))
        .collect();
    ordered.sort_by_key(|vs| merge_class(vs, proxy_ns));
    let mut hosts: Vec<VirtualHost<'a>> = Vec::new();
    for srv in servers {
        for vs in ordered.iter().filter(|vs| vs.binds(&srv.gateway.meta)) {
            let domains = intersect(srv, vs);
            if domains.is_empty() {
                continue;
            }
            let routes = translate(vs, *srv, port);
            if routes.is_empty() {
                continue;
            }
            for d in domains {
                match hosts.iter_mut().find(|h| h.domain == d) {
                    Some(h) => {
                        h.routes.extend(routes.iter().copied());
                        h.redirect = h.redirect.or(redirecting(srv));
                    }
                    None => hosts.push(VirtualHost {
                        domain: d,
                        routes: routes.clone(),
                        server: *srv,
                        redirect: redirecting(srv),
                    }),
                }
            }
        }
        redirect_only_hosts(srv, &mut hosts);
    }
    for h in &mut hosts {
        // A stable partition: the catch-all routes go last, the rest keep their order.
        let (rest, catch_all): (Vec<_>, Vec<_>) = h
            .routes
            .iter()
            .copied()
            .partition(|r| !is_catch_all(r.block));
        h.routes = rest.into_iter().chain(catch_all).collect();
    }
    hosts
}

fn redirecting<'a>(srv: &ServerRef<'a>) -> Option<ServerRef<'a>> {
    srv.https_redirect().then_some(*srv)
}

/// A server with `httpsRedirect` redirects its hosts even when no VirtualService serves them.
/// Istio names these virtual hosts after the server host as it stores it: `*/host` becomes
/// `host`, but `ns/host` and `./host` keep their namespace (`./` spelt out), so their domain
/// contains a `/` and matches no request: such a server redirects only the hosts a
/// VirtualService brings.
fn redirect_only_hosts<'a>(srv: &ServerRef<'a>, hosts: &mut Vec<VirtualHost<'a>>) {
    if !srv.https_redirect() {
        return;
    }
    for h in &srv.server.hosts {
        let sh = ServerHost::parse(h);
        let name = match sh.namespace.as_str() {
            "*" => sh.host,
            "." => format!("{}/{}", srv.gateway.meta.namespace(), sh.host),
            ns => format!("{ns}/{}", sh.host),
        }
        .to_ascii_lowercase();
        match hosts.iter_mut().find(|v| v.domain == name) {
            Some(v) => v.redirect = v.redirect.or(Some(*srv)),
            None => hosts.push(VirtualHost {
                domain: name,
                routes: Vec::new(),
                server: *srv,
                redirect: Some(*srv),
            }),
        }
    }
}

/// Where a VirtualService comes in Istio's list for a gateway (its index by visibility): those
/// of the gateway's own namespace kept private to it first, then those exported to that
/// namespace by name, then the public ones, those translated from Gateway API routes of the
/// gateway's namespace first; each group in creation order.
fn merge_class(vs: &VirtualService, proxy_ns: &str) -> u8 {
    let export = &vs.spec.export_to;
    if export.is_empty() || export.iter().any(|e| e == "*") {
        if vs.meta.is_gateway_api() && vs.meta.namespace() == proxy_ns {
            2
        } else {
            3
        }
    } else if vs.meta.namespace() == proxy_ns {
        0
    } else {
        1
    }
}

/// Whether an object with `exportTo` in namespace `own` is visible from namespace `to`
/// (empty: everywhere, as Istio's default mesh config says).
pub fn exported_to(export_to: &[String], own: &str, to: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || (e == "." && own == to) || e == to)
}

/// The domains a VirtualService gets on a server: for each pair of a server host (visible
/// from the VirtualService's namespace) and a VirtualService host, the narrower one.
fn intersect(srv: &ServerRef, vs: &VirtualService) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for sh in &srv.server.hosts {
        let sh = ServerHost::parse(sh);
        if !sh.admits_namespace(vs.meta.namespace(), srv.gateway.meta.namespace()) {
            continue;
        }
        for vh in &vs.hosts {
            let d = if subset_of(&sh.host, vh) {
                &sh.host
            } else if subset_of(vh, &sh.host) {
                vh
            } else {
                continue;
            };
            let d = d.to_ascii_lowercase();
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// Istio's `Name.SubsetOf`: every name `a` covers is covered by `b`.
fn subset_of(a: &str, b: &str) -> bool {
    if b == "*" || a == b {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb),
        (None, Some(sb)) => a.ends_with(sb),
        _ => false,
    }
}

/// The routes one VirtualService contributes on a server, in rule order, cut at the first
/// catch-all.
fn translate<'a>(vs: &'a VirtualService, srv: ServerRef<'a>, port: u32) -> Vec<RouteRef<'a>> {
    let mut out = Vec::new();
    for (i, rule) in vs.spec.http.iter().enumerate() {
        let blocks: Vec<Option<&Loc<HttpMatch>>> = match &rule.matches {
            Some(b) if !b.value.is_empty() => b.value.iter().map(Some).collect(),
            _ => vec![None],
        };
        for block in blocks {
            if block.is_some_and(|b| !applies_to(b, vs, &srv, port)) {
                continue;
            }
            out.push(RouteRef {
                vs,
                rule_index: i,
                rule,
                block,
                server: srv,
            });
            if is_catch_all(block) {
                return out;
            }
        }
    }
    out
}

/// A match block's `port` and `gateways` limit it to some servers.
fn applies_to(b: &HttpMatch, vs: &VirtualService, srv: &ServerRef, port: u32) -> bool {
    let gw = &srv.gateway.meta;
    b.port.is_none_or(|p| p == port)
        && (b.gateways.is_empty()
            || b.gateways.iter().any(|g| {
                let raw = Loc {
                    pos: Default::default(),
                    value: g.clone(),
                };
                GatewayRef::parse(&raw, vs.meta.namespace()).target
                    == GatewayTarget::Named {
                        namespace: gw.namespace().to_string(),
                        name: gw.name().to_string(),
                    }
            }))
}

/// Istio's catch-all: path prefix `/` or regex `.*` (or no match at all), with no header,
/// method, authority, scheme or query condition.
pub fn is_catch_all(block: Option<&Loc<HttpMatch>>) -> bool {
    let Some(b) = block else { return true };
    let uri_all = b.uri.as_ref().is_none_or(|u| match_all_paths(u));
    uri_all
        && b.headers.is_empty()
        && b.without_headers.is_empty()
        && b.query_params.is_empty()
        && b.method.is_none()
        && b.authority.is_none()
        && b.scheme.is_none()
}

fn match_all_paths(u: &StringMatch) -> bool {
    u.prefix.as_deref() == Some("/")
        || (u.exact.is_none() && u.prefix.is_none() && u.regex.as_deref() == Some(".*"))
}

/// Envoy's virtual host selection: the exact domain, else the longest `*.suffix` that
/// covers the host, else `*`.
pub fn select<'v, 'a>(hosts: &'v [VirtualHost<'a>], host: &str) -> Option<&'v VirtualHost<'a>> {
    let rank = |d: &str| -> Option<(u8, usize)> {
        if d == host {
            Some((0, d.len()))
        } else if d == "*" {
            Some((3, 0))
        } else if let Some(suffix) = d.strip_prefix('*') {
            (host.ends_with(suffix) && host.len() > suffix.len()).then_some((1, d.len()))
        } else if let Some(prefix) = d.strip_suffix('*') {
            (host.starts_with(prefix) && host.len() > prefix.len()).then_some((2, d.len()))
        } else {
            None
        }
    };
    hosts
        .iter()
        .filter_map(|h| rank(&h.domain).map(|r| (r, h)))
        .min_by(|(a, _), (b, _)| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, h)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_follows_istio() {
        assert!(subset_of("a.example.com", "*.example.com"));
        assert!(subset_of("*.a.example.com", "*.example.com"));
        assert!(!subset_of("*.example.com", "a.example.com"));
        assert!(subset_of("anything", "*"));
        assert!(!subset_of("example.com", "*.example.com"));
    }

    #[test]
    fn exported_defaults_to_everywhere() {
        assert!(exported_to(&[], "dev", "istio-ingress"));
        assert!(!exported_to(&[".".into()], "dev", "istio-ingress"));
        assert!(exported_to(&[".".into()], "istio-ingress", "istio-ingress"));
        assert!(exported_to(
            &["istio-ingress".into()],
            "dev",
            "istio-ingress"
        ));
        assert!(!exported_to(&["~".into()], "dev", "istio-ingress"));
    }
}
