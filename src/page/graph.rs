//! The routing graph of each host served on the ingress, as the status page draws it:
//! Gateway server → VirtualService → rule (its match) → weighted destination → subset (or
//! Service) → Pods, each node naming the file:line:col that defines it, with the last gateway
//! verification laid on it (status codes on the rule, the observed share beside each weight,
//! the broken hop marked).
//!
//! It is read from the routing model ([`crate::analyze::model`]) through the walk of
//! `explain`: the Gateways the ingress runs, rule matches, and each destination followed down
//! to its subset, Service and Pods by [`explain::destination`]. It builds data only;
//! [`super::svg`] draws it.

use crate::analyze::explain::{self, DestinationHop};
use crate::analyze::model::{Gateway, Meta, Model, ServerHost, VirtualService, hosts_intersect};
use crate::engine::DeploymentState;
use crate::manifest::istio::{HttpRoute, Server};
use crate::manifest::yaml::{Loc, Pos};
use crate::verify::{ProbeResult, Report};

/// What a node stands for; also its column in the drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gateway,
    VirtualService,
    Rule,
    /// A weighted destination, or what a rule does instead (redirect, direct response).
    Destination,
    /// The subset of the destination, or its Service when it names no subset.
    Subset,
    Pods,
}

impl Kind {
    pub fn column(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::VirtualService => "virtualservice",
            Kind::Rule => "rule",
            Kind::Destination => "destination",
            Kind::Subset => "subset",
            Kind::Pods => "pods",
        }
    }
}

/// How the last verification (or the configuration itself) judges a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// Nothing verified it.
    Plain,
    Ok,
    /// Something to look at (a skipped probe, Pods not ready).
    Warn,
    /// The broken hop.
    Broken,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Plain => "plain",
            Mark::Ok => "ok",
            Mark::Warn => "warn",
            Mark::Broken => "broken",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub title: String,
    /// Detail lines (the drawing wraps and shortens them; the full text is its tooltip).
    pub lines: Vec<String>,
    /// `file:line:col` of what defines the node.
    pub at: Option<String>,
    pub mark: Mark,
    /// Why the node is marked, for its tooltip (the diagnosis of the broken hop).
    pub note: Option<String>,
    /// Destinations: how verification names them (`goapp subset v1`).
    pub key: Option<String>,
    pub children: Vec<usize>,
}

impl Node {
    fn new(kind: Kind, title: String, lines: Vec<String>, at: Option<String>) -> Node {
        Node {
            kind,
            title,
            lines,
            at,
            mark: Mark::Plain,
            note: None,
            key: None,
            children: Vec::new(),
        }
    }

    fn mark(&mut self, mark: Mark, note: Option<String>) {
        if mark > self.mark {
            self.mark = mark;
            self.note = note.or(self.note.take());
        }
    }
}

/// The graph of one host; the Gateway nodes are the roots.
#[derive(Debug, Clone, Default)]
pub struct HostGraph {
    pub host: String,
    pub nodes: Vec<Node>,
    pub gateways: Vec<usize>,
    pub virtual_services: Vec<usize>,
    /// The verification probes that went to this host: how many, and how many failed.
    pub probes: usize,
    pub failed: usize,
}

/// What the graph is laid over besides the model.
pub struct Overlay<'a> {
    pub report: Option<&'a Report>,
    /// The app's Deployments as the daemon watches them (ready/total Pods).
    pub deployments: &'a [DeploymentState],
}

fn at(meta: &Meta, pos: Pos) -> String {
    let p = if pos.line == 0 { meta.pos } else { pos };
    format!("{}:{}", meta.file, p)
}

/// One graph per host that a VirtualService bound to an ingress Gateway serves, in the order
/// of the VirtualServices and their hosts.
pub fn build(m: &Model, overlay: &Overlay) -> Vec<HostGraph> {
    let gateways = explain::ingress_gateway_list(m);
    let mut graphs: Vec<HostGraph> = Vec::new();
    for vs in &m.virtual_services {
        for h in &vs.spec.hosts {
            let servers = serving(&gateways, vs, h);
            if servers.is_empty() {
                continue;
            }
            let host = h.value.to_ascii_lowercase();
            let i = match graphs.iter().position(|g| g.host == host) {
                Some(i) => i,
                None => {
                    graphs.push(HostGraph {
                        host: host.clone(),
                        ..HostGraph::default()
                    });
                    graphs.len() - 1
                }
            };
            graphs[i].add_virtual_service(m, vs, h, &servers, overlay);
        }
    }
    graphs
}

/// The Gateway servers (with the server host that admits it) through which `vs` serves `h`,
/// bound as `explain` binds them.
fn serving<'a>(
    gateways: &[&'a Gateway],
    vs: &VirtualService,
    h: &str,
) -> Vec<(&'a Gateway, &'a Loc<Server>, &'a Loc<String>)> {
    let mut out = Vec::new();
    for g in gateways.iter().filter(|g| vs.binds(&g.meta)) {
        for s in &g.spec.servers {
            for sh in &s.hosts {
                let parsed = ServerHost::parse(sh);
                if parsed.admits_namespace(vs.meta.namespace(), g.meta.namespace())
                    && hosts_intersect(&parsed.host, h)
                {
                    out.push((*g, s, sh));
                }
            }
        }
    }
    out
}

impl HostGraph {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn add_virtual_service(
        &mut self,
        m: &Model,
        vs: &VirtualService,
        h: &Loc<String>,
        servers: &[(&Gateway, &Loc<Server>, &Loc<String>)],
        overlay: &Overlay,
    ) {
        let vs_node = self.push(Node::new(
            Kind::VirtualService,
            format!("VirtualService {}", vs.meta.ns_name()),
            vec![format!("host {}", h.value)],
            Some(at(&vs.meta, h.pos)),
        ));
        self.virtual_services.push(vs_node);
        for (g, s, sh) in servers {
            let gw_at = at(&g.meta, sh.pos);
            let gi = match self
                .gateways
                .iter()
                .find(|&&i| self.nodes[i].at.as_deref() == Some(gw_at.as_str()))
            {
                Some(&i) => i,
                None => {
                    let i = self.push(gateway_node(g, s, sh, gw_at));
                    self.gateways.push(i);
                    i
                }
            };
            self.nodes[gi].children.push(vs_node);
        }
        for (ri, rule) in vs.spec.http.iter().enumerate() {
            let rule_at = at(&vs.meta, rule.pos);
            let probe = overlay.report.and_then(|r| {
                r.probes.iter().find(|p| {
                    p.at.as_deref() == Some(rule_at.as_str())
                        && p.request.host.eq_ignore_ascii_case(&self.host)
                })
            });
            let skipped = overlay.report.and_then(|r| {
                r.skipped
                    .iter()
                    .find(|s| s.at.as_deref() == Some(rule_at.as_str()))
            });
            let rule_node = self.add_rule(m, vs, ri, rule, rule_at, overlay);
            self.nodes[vs_node].children.push(rule_node);
            if let Some(p) = probe {
                self.lay_probe(vs_node, rule_node, p);
            } else if let Some(s) = skipped {
                self.nodes[rule_node].lines.push("not probed".into());
                self.nodes[rule_node].mark(Mark::Warn, Some(s.reason.clone()));
            }
        }
    }

    /// A rule and what it leads to: its destinations, or its redirect / direct response.
    fn add_rule(
        &mut self,
        m: &Model,
        vs: &VirtualService,
        ri: usize,
        rule: &Loc<HttpRoute>,
        rule_at: String,
        overlay: &Overlay,
    ) -> usize {
        let name = rule
            .name
            .as_ref()
            .map(|n| format!(" {n:?}"))
            .unwrap_or_default();
        let matches = explain::describe_match(rule);
        let matches = matches.trim_start_matches(", ").to_string();
        let node = self.push(Node::new(
            Kind::Rule,
            format!("http[{ri}]{name}"),
            vec![matches],
            Some(rule_at),
        ));
        let action = if let Some(r) = &rule.redirect {
            let to = r.uri.clone().unwrap_or_default();
            let authority = r.authority.clone().unwrap_or_default();
            Some(Node::new(
                Kind::Destination,
                format!("redirect {}", r.redirect_code.unwrap_or(301)),
                vec![format!("to {authority}{to}")],
                Some(at(&vs.meta, r.pos)),
            ))
        } else if let Some(d) = &rule.direct_response {
            Some(Node::new(
                Kind::Destination,
                format!("direct response {}", d.status.unwrap_or(200)),
                Vec::new(),
                Some(at(&vs.meta, d.pos)),
            ))
        } else {
            rule.delegate.as_ref().map(|d| {
                Node::new(
                    Kind::Destination,
                    "delegate".into(),
                    vec![format!(
                        "VirtualService {}/{}",
                        d.namespace.as_deref().unwrap_or(vs.meta.namespace()),
                        d.name.as_deref().unwrap_or("?")
                    )],
                    Some(at(&vs.meta, d.pos)),
                )
            })
        };
        if let Some(a) = action {
            let child = self.push(a);
            self.nodes[node].children.push(child);
            return node;
        }
        let route = rule.route.as_ref().map_or(&[][..], |r| &r.value[..]);
        for (rd, share) in route.iter().zip(explain::shares(route)) {
            // The page draws the rule's destinations for the HTTP port the sample serves; the
            // port only matters for a destination without one on a multi-port Service.
            let d = explain::destination(m, vs, rd, share, 80);
            let child = self.add_destination(m, vs, rd.pos, &d, overlay);
            self.nodes[node].children.push(child);
        }
        node
    }

    /// A weighted destination, its subset (or Service) and its Pods.
    fn add_destination(
        &mut self,
        m: &Model,
        vs: &VirtualService,
        pos: Pos,
        d: &DestinationHop,
        overlay: &Overlay,
    ) -> usize {
        let port = d.port.map(|p| format!(":{p}")).unwrap_or_default();
        let mut dest = Node::new(
            Kind::Destination,
            format!("{}{port}", destination_label(d)),
            vec![format!("weight {:.0}%", d.share)],
            Some(at(&vs.meta, pos)),
        );
        dest.key = Some(destination_label(d));
        if let Some(f) = &d.fails_with {
            dest.mark(Mark::Broken, Some(format!("would answer {f}")));
        }
        let dest = self.push(dest);
        let hop = d
            .hops
            .iter()
            .find(|h| h.step == "subset")
            .or_else(|| d.hops.iter().find(|h| h.step == "service"));
        let Some(hop) = hop else { return dest };
        let title = match (&d.subset, hop.step) {
            (Some(s), "subset") => format!("subset {s}"),
            _ => "Service".to_string(),
        };
        // "subset v1 of DestinationRule dev/goapp selects version=v1": the title says the start.
        let detail = match &d.subset {
            Some(s) => hop.detail.trim_start_matches(&format!("subset {s} of ")),
            None => &hop.detail,
        };
        let mut sub = Node::new(
            Kind::Subset,
            title,
            vec![detail.to_string()],
            hop.at.clone(),
        );
        if !hop.ok {
            sub.mark(Mark::Broken, Some(hop.detail.clone()));
        }
        let sub = self.push(sub);
        self.nodes[dest].children.push(sub);
        if let Some(pods) = pods_node(m, d, overlay) {
            let pods = self.push(pods);
            self.nodes[sub].children.push(pods);
        }
        dest
    }
}

fn gateway_node(g: &Gateway, s: &Loc<Server>, sh: &Loc<String>, gw_at: String) -> Node {
    let port = s.port.as_ref();
    let number = port
        .and_then(|p| p.number.as_ref())
        .map_or("?".into(), |n| n.value.to_string());
    let proto = port
        .and_then(|p| p.protocol.as_ref())
        .map_or("?".into(), |p| p.value.clone());
    Node::new(
        Kind::Gateway,
        format!("Gateway {}", g.meta.ns_name()),
        vec![format!("port {number} {proto}, host {}", sh.value)],
        Some(gw_at),
    )
}

/// `goapp subset v1`, as verification names a destination of a split.
fn destination_label(d: &DestinationHop) -> String {
    match &d.subset {
        Some(s) => format!("{} subset {s}", d.host),
        None => d.host.clone(),
    }
}

/// The Pods behind a destination: the workloads of the sources whose labels the Service and
/// the subset select, with ready/total from the Deployments the daemon watches; the live
/// endpoints when the model has them.
fn pods_node(m: &Model, d: &DestinationHop, overlay: &Overlay) -> Option<Node> {
    let svc = m.service_for_host(&d.fqdn)?;
    let labels = d.subset.as_ref().and_then(|s| {
        m.rules_for(&d.fqdn).find_map(|r| {
            r.spec
                .subsets
                .iter()
                .find(|x| x.name.value == *s)
                .and_then(|x| x.labels.as_ref().map(|l| l.value.clone()))
        })
    });
    let mut lines = Vec::new();
    let (mut ready, mut total, mut known) = (0, 0, false);
    for w in m.pods_of(svc, labels.as_ref()) {
        let name = w.name.split_once(' ').map_or(w.name.as_str(), |(_, n)| n);
        match overlay
            .deployments
            .iter()
            .find(|dep| dep.namespace == w.namespace && dep.name == name)
        {
            Some(dep) => {
                ready += dep.ready;
                total += dep.replicas;
                known = true;
                lines.push(format!("{name} {}/{} ready", dep.ready, dep.replicas));
            }
            None => lines.push(format!("{name} (not deployed)")),
        }
    }
    if lines.is_empty() {
        let endpoints = d.hops.iter().find(|h| h.step == "endpoints")?;
        lines.push(endpoints.detail.clone());
    }
    let title = if known {
        format!("Pods {ready}/{total} ready")
    } else {
        "Pods".to_string()
    };
    let mut node = Node::new(Kind::Pods, title, lines, None);
    if known {
        let mark = if ready == 0 { Mark::Broken } else { Mark::Ok };
        node.mark(mark, None);
    }
    Some(node)
}

impl HostGraph {
    /// Lays one verification probe of a rule on the graph: its answers on the rule, the
    /// observed share beside each weight, and the broken hop of its diagnosis marked.
    fn lay_probe(&mut self, vs_node: usize, rule_node: usize, p: &ProbeResult) {
        self.probes += 1;
        if !p.ok {
            self.failed += 1;
        }
        let answers: Vec<String> = p.results.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        let verdict = if p.ok { "verified" } else { "FAILED" };
        let rule = &mut self.nodes[rule_node];
        rule.lines
            .push(format!("{verdict}: {}", answers.join(", ")));
        rule.mark(
            if p.ok { Mark::Ok } else { Mark::Broken },
            p.problem.clone(),
        );
        let dests = self.nodes[rule_node].children.clone();
        if let Some(split) = &p.split {
            for &di in &dests {
                let node = &mut self.nodes[di];
                let Some(share) = split
                    .shares
                    .iter()
                    .find(|s| node.key.as_deref() == Some(s.destination.as_str()))
                else {
                    continue;
                };
                node.lines[0] = format!(
                    "weight {:.0}%, seen {:.0}% of {}",
                    share.expected_pct, share.observed_pct, split.answers
                );
                let note = format!(
                    "expected {:.0}%, accepted {:.0}–{:.0}%",
                    share.expected_pct, share.low_pct, share.high_pct
                );
                node.mark(if share.ok { Mark::Ok } else { Mark::Broken }, Some(note));
            }
        }
        let Some(d) = p.diagnosis.as_ref().filter(|_| !p.ok) else {
            return;
        };
        let note = Some(format!("broken hop {}: {}", d.hop, d.summary));
        match d.hop.as_str() {
            "gateway" | "server" => {
                for g in self.gateways.clone() {
                    self.nodes[g].mark(Mark::Broken, note.clone());
                }
            }
            "virtualservice" => self.nodes[vs_node].mark(Mark::Broken, note.clone()),
            "upstream" | "app" => self.mark_upstream(&dests, d, note.clone()),
            _ => {}
        }
        self.nodes[rule_node].note = note;
    }

    /// Marks the Pods (or the subset, when none are known) of each destination that the
    /// in-cluster requests of the diagnosis could not reach, or that has no ready Pod.
    fn mark_upstream(
        &mut self,
        dests: &[usize],
        d: &crate::verify::diagnose::Diagnosis,
        note: Option<String>,
    ) {
        for &di in dests {
            let key = self.nodes[di].key.clone().unwrap_or_default();
            let named = |target: &str| match key.split_once(" subset ") {
                Some((_, s)) => target.contains(&format!("(subset {s})")),
                None => target.starts_with("Service "),
            };
            let unreachable = d.in_cluster.iter().any(|c| !c.ok && named(&c.target));
            let Some(&sub) = self.nodes[di].children.first() else {
                continue;
            };
            let end = self.nodes[sub].children.first().copied().unwrap_or(sub);
            if unreachable || self.nodes[end].mark == Mark::Broken {
                self.nodes[end].mark(Mark::Broken, note.clone());
            }
        }
    }
}
