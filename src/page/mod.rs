//! The status page (`GET /`): one HTML document rendered on the server from the engine's
//! [`Status`], readable without JavaScript, with a little plain JavaScript that follows
//! `GET /events` and swaps in the re-rendered page when something happens.
//!
//! Everything it shows comes from the status snapshot: the routing graph is built from the
//! same routing model `explain` walks ([`graph`]) and drawn as SVG ([`svg`]). Its stylesheet
//! and script are compiled into the binary and served from `/assets/` (no CDN, works
//! offline), which lets the page forbid inline script entirely ([`CONTENT_SECURITY_POLICY`]).
//! Every string from files, objects or the cluster goes through maud, which escapes it.

pub mod graph;
pub mod svg;

use maud::{DOCTYPE, Markup, html};

use crate::analyze::model::Model;
use crate::engine::{Status, SyncSummary};
use crate::sync::Outcome;
use crate::verify::Report;

pub const CSS: &str = include_str!("page.css");
pub const JS: &str = include_str!("page.js");

/// Scripts and styles only from the daemon's own assets: even a string that escaped escaping
/// could not run. `connect-src 'self'` covers the event stream and the buttons' requests.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The whole page.
pub fn render(st: &Status) -> String {
    let model = Model::build(
        &st.inputs.objects,
        &st.inputs.others,
        None,
        &st.inputs.ingress,
    );
    let overlay = graph::Overlay {
        report: st.verification.as_ref(),
        deployments: &st.rollout.deployments,
    };
    let graphs = graph::build(&model, &overlay);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "meshloop · " (st.instance) }
                link rel="stylesheet" href="/assets/page.css";
                script src="/assets/page.js" defer {}
            }
            body {
                header {
                    h1 { "meshloop " span.instance { (st.instance) } }
                    p.cluster {
                        "cluster " code { (st.cluster.server) }
                        @if let Some(c) = &st.cluster.context { ", context " code { (c) } }
                        ", namespace " code { (st.namespace) }
                    }
                    form method="post" action="/sync" { button type="submit" { "Re-apply" } }
                    form method="post" action="/verify" { button type="submit" { "Verify" } }
                    span #connection title="the live event stream (GET /events)" { "static" }
                    output #said {}
                }
                main #live { (live(st, &graphs)) }
                footer {
                    "JSON for tools: " a href="/status" { "/status" } ", " a href="/metrics" { "/metrics" }
                    ", live events: " a href="/events" { "/events" } "."
                }
            }
        }
    };
    page.into_string()
}

/// What the script replaces on each event.
fn live(st: &Status, graphs: &[graph::HostGraph]) -> Markup {
    html! {
        (state(st))
        section #routes {
            h2 { "Routing through the ingress" }
            @if graphs.is_empty() {
                p.empty { "No VirtualService is bound to a Gateway that the ingress "
                    code { (st.inputs.ingress.namespace) "/" (st.inputs.ingress.service) } " runs." }
            }
            @for g in graphs {
                figure.host data-host=(g.host) {
                    figcaption {
                        span.hostname { (g.host) }
                        @if g.probes > 0 {
                            @if g.failed > 0 {
                                span.verdict.broken { (g.failed) " of " (g.probes) " probes failed" }
                            } @else {
                                span.verdict.ok { (g.probes) " probes passed" }
                            }
                        }
                    }
                    div.scroll { (svg::draw(g)) }
                }
            }
        }
        @if let Some(r) = &st.verification { (verification(r)) }
        (findings(st.last_sync.as_ref()))
        (drift(st))
    }
}

fn state(st: &Status) -> Markup {
    let reason = st.not_ready_reason();
    html! {
        section #state {
            p #ready data-ready=(reason.is_none().to_string()) class=(if reason.is_none() { "ready" } else { "not-ready" }) {
                @match &reason {
                    None => { strong { "ready" } }
                    Some(r) => { strong { "not ready" } ": " span.reason { (r) } }
                }
            }
            dl {
                dt { "last sync" }
                dd #last-sync { (last_sync(st)) }
                dt { "verification" }
                dd #last-verification {
                    @match &st.verification {
                        None => { "not verified yet" }
                        Some(r) => {
                            span class=(if r.ok { "ok" } else { "broken" }) { (r.summary()) }
                            " (" (r.trigger) ", " (r.started_at) ")"
                        }
                    }
                    @if st.verifying { " · verifying…" }
                }
                dt { "rollout" }
                dd #rollout {
                    @if st.rollout.pending { "waiting for the app's rollout · " }
                    (st.rollout.completed) " completed"
                    @for d in &st.rollout.deployments {
                        " · " (d.name) " " (d.ready) "/" (d.replicas) " ready"
                    }
                }
            }
        }
    }
}

fn last_sync(st: &Status) -> Markup {
    let Some(s) = &st.last_sync else {
        return html! { "none yet" @if st.syncing { " · syncing…" } };
    };
    let counts = s.report.counts.phrases();
    let problems = sync_problems(s);
    html! {
        span class=(if s.ok { "ok" } else { "broken" }) { (if s.ok { "ok" } else { "failed" }) }
        " · " span.trigger { (format!("{:?}", s.trigger).to_lowercase()) }
        " · " span.counts { (if counts.is_empty() { "nothing to apply".to_string() } else { counts.join(", ") }) }
        " · " (s.report.duration.as_millis()) " ms"
        @if let Some(ms) = s.save_to_applied_ms { " · " span.save { (format!("{ms:.0}")) " ms from save to applied" } }
        " · " (s.finished_at) " (sync " (st.syncs) ")"
        @if st.syncing { " · syncing…" }
        @if !problems.is_empty() {
            ul.problems { @for p in &problems { li { (p) } } }
        }
    }
}

/// Objects the cluster refused and errors about the whole sync.
fn sync_problems(s: &SyncSummary) -> Vec<String> {
    let mut out: Vec<String> = s.report.errors.clone();
    for o in &s.report.objects {
        if let Outcome::Failed { message } | Outcome::Conflicted { message } = &o.outcome {
            out.push(format!("{}: {message}", o.key));
        }
    }
    out.extend(
        s.report
            .prune_blocked
            .iter()
            .map(|b| format!("prune skipped: {b}")),
    );
    out
}

fn verification(r: &Report) -> Markup {
    html! {
        section #verification {
            h2 { "Last verification" }
            p {
                @if let Some(a) = &r.address { "ingress " code { (a.authority()) } " (" (a.via) ") · " }
                (format!("{:.0}", r.duration_ms)) " ms"
                @if let Some(e) = &r.error { " · " span.broken { (e) } }
            }
            table.probes {
                thead { tr { th { "probe" } th { "answers" } th { "result" } th { "from" } } }
                tbody {
                    @for p in &r.probes {
                        tr class=(if p.ok { "ok" } else { "broken" }) data-ok=(p.ok.to_string()) {
                            td { code { (p.name) } }
                            td { (p.results.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ")) }
                            td {
                                (if p.ok { "pass" } else { "FAIL" })
                                @if let Some(s) = &p.split { br; "split: " (s.describe()) }
                                @if let (false, Some(pr)) = (p.ok, &p.problem) { br; (pr) }
                                @if let Some(d) = &p.diagnosis {
                                    br; strong.hop data-hop=(d.hop) { "broken hop: " (d.hop) } ": " (d.summary)
                                }
                            }
                            td { (p.source) @if let Some(a) = &p.at { br; code { (a) } } }
                        }
                    }
                }
            }
            @if !r.skipped.is_empty() {
                details {
                    summary { (r.skipped.len()) " not probed" }
                    ul { @for s in &r.skipped { li { (s.source) ": " (s.reason) } } }
                }
            }
        }
    }
}

fn findings(last: Option<&SyncSummary>) -> Markup {
    let Some(s) = last else { return html! {} };
    let mut sorted: Vec<_> = s.findings.iter().collect();
    // Errors first (the order of `Severity`), each group in the order analysis found them.
    sorted.sort_by_key(|f| f.severity);
    html! {
        section #findings {
            h2 { "Findings" }
            @if s.load_errors.is_empty() && sorted.is_empty() && s.held_back.is_empty() {
                p.empty { "No findings, no load errors." }
            }
            @if !s.load_errors.is_empty() {
                h3 { "Files that did not load" }
                ul.load-errors {
                    @for e in &s.load_errors { li.error { code { (e.to_string()) } } }
                }
                p.note { "What these files defined before stays applied; prune waits until they load." }
            }
            @if !s.held_back.is_empty() {
                h3 { "Held back (not applied, not pruned)" }
                ul.held-back { @for h in &s.held_back { li { code { (h) } } } }
            }
            @if !sorted.is_empty() {
                ol.findings {
                    @for f in sorted {
                        li class=(f.severity.to_string()) data-code=(f.code) {
                            span.severity { (f.severity.to_string()) "[" (f.code) "]" } " "
                            code.at { (f.file) ":" (f.line) ":" (f.col) } " "
                            @if !f.object.is_empty() { span.object { (f.object) } ": " }
                            (f.message)
                            @if !f.hint.is_empty() { br; span.hint { "hint: " (f.hint) } }
                        }
                    }
                }
            }
        }
    }
}

fn drift(st: &Status) -> Markup {
    html! {
        section #drift {
            h2 { "Drift" }
            @if st.drift.is_empty() {
                p.empty { "No owned object was edited or deleted by someone else." }
            } @else {
                table {
                    thead { tr { th { "when" } th { "object" } th { "what" } th { "" } } }
                    tbody {
                        @for d in st.drift.iter().rev() {
                            tr {
                                td { (d.at) }
                                td { code { (d.object) } }
                                td { (format!("{:?}", d.drift).to_lowercase()) }
                                td { (if d.restored { "restored" } else { "reported (drift: report)" }) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DeploymentState, ModelInputs};
    use crate::manifest::{LoadOptions, load_text};
    use graph::{Kind, Mark};

    const EVIL: &str = "<script>alert(1)</script>";

    fn routing(vs_name: &str, host: &str) -> String {
        format!(
            r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{istio: ingress}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: '{vs_name}'}}
spec:
  hosts: ['{host}']
  gateways: [gw]
  http:
    - name: split
      match: [{{uri: {{prefix: /}}}}]
      route:
        - {{destination: {{host: goapp, subset: v1}}, weight: 70}}
        - {{destination: {{host: goapp, subset: v2}}, weight: 30}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: goapp}}
spec:
  host: goapp
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: goapp}}
spec: {{selector: {{app: goapp}}, ports: [{{name: http, port: 8080}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: goapp-v1}}
spec: {{template: {{metadata: {{labels: {{app: goapp, version: v1}}}}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: goapp-v2}}
spec: {{template: {{metadata: {{labels: {{app: goapp, version: v2}}}}}}}}
"#
        )
    }

    fn status(text: &str) -> Status {
        let opts = LoadOptions {
            keep_others: true,
            ..LoadOptions::new(crate::config::default_owned_kinds(), "dev")
        };
        let l = load_text(text, "routing/p.yaml", false, &opts);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let dep = |name: &str, ready| DeploymentState {
            namespace: "dev".into(),
            name: name.into(),
            generation: 1,
            observed_generation: 1,
            replicas: 1,
            updated: 1,
            available: ready,
            ready,
            complete: true,
        };
        let mut st = Status {
            instance: "dev".into(),
            namespace: "dev".into(),
            ..Status::default()
        };
        st.inputs = std::sync::Arc::new(ModelInputs {
            objects: l.objects,
            others: l.others,
            ingress: crate::config::Ingress::default(),
        });
        st.rollout.deployments = vec![dep("goapp-v1", 1), dep("goapp-v2", 0)];
        st
    }

    fn graphs(st: &Status) -> Vec<graph::HostGraph> {
        let m = Model::build(
            &st.inputs.objects,
            &st.inputs.others,
            None,
            &st.inputs.ingress,
        );
        let overlay = graph::Overlay {
            report: st.verification.as_ref(),
            deployments: &st.rollout.deployments,
        };
        graph::build(&m, &overlay)
    }

    #[test]
    fn hostile_names_are_text() {
        let html = render(&status(&routing(EVIL, EVIL)));
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the page's own script"
        );
    }

    #[test]
    fn the_graph_follows_the_route_model_with_locations() {
        let st = status(&routing("goapp", "goapp.dev"));
        let g = graphs(&st);
        assert_eq!(g.len(), 1);
        let g = &g[0];
        assert_eq!(g.host, "goapp.dev");
        let of =
            |k: Kind| -> Vec<&graph::Node> { g.nodes.iter().filter(|n| n.kind == k).collect() };
        assert_eq!(
            of(Kind::Gateway)[0].at.as_deref(),
            Some("routing/p.yaml:6:70")
        );
        assert_eq!(of(Kind::Rule)[0].title, "http[0] \"split\"");
        assert_eq!(of(Kind::Rule)[0].lines[0], "match uri prefix /");
        let dests = of(Kind::Destination);
        assert_eq!(dests.len(), 2);
        assert_eq!(dests[0].lines[0], "weight 70%");
        assert_eq!(dests[1].key.as_deref(), Some("goapp subset v2"));
        let pods = of(Kind::Pods);
        assert_eq!(pods[0].title, "Pods 1/1 ready");
        assert_eq!(pods[1].title, "Pods 0/1 ready");
        assert_eq!(pods[1].mark, Mark::Broken, "no ready Pod");
        assert!(dests.iter().all(|d| {
            d.at.as_deref()
                .is_some_and(|a| a.starts_with("routing/p.yaml:"))
        }));
    }

    #[test]
    fn a_failed_verification_marks_its_broken_hop() {
        let mut st = status(&routing("goapp", "goapp.dev"));
        let rule_at = graphs(&st)[0]
            .nodes
            .iter()
            .find(|n| n.kind == Kind::Rule)
            .and_then(|n| n.at.clone())
            .unwrap();
        let share = |d: &str, exp: f64, obs: f64, ok: bool| {
            serde_json::json!({"destination": d, "values": [], "expected_pct": exp, "observed": obs as u32,
                "observed_pct": obs, "low_pct": exp - 10.0, "high_pct": exp + 10.0, "ok": ok})
        };
        let report = serde_json::json!({
            "ok": false, "trigger": "request", "started_at": "now", "duration_ms": 12.0,
            "address": null, "error": null, "note": null, "passed": 0, "failed": 1, "skipped": [],
            "probes": [{
                "name": "GET goapp.dev/", "source": "VirtualService dev/goapp http[0]", "at": rule_at,
                "request": {"method": "GET", "host": "goapp.dev", "path": "/", "headers": {}, "body": null},
                "expect": "routed", "ok": false, "requests": 100, "failed_requests": 30,
                "results": {"200": 70, "503": 30}, "status": 503, "version": null, "upstream": false,
                "slowest_ms": 3.0, "problem": "503 from the gateway",
                "split": {"answers": 70, "header": "x-version", "unidentified": {}, "ok": false, "note": null,
                    "shares": [share("goapp subset v1", 70.0, 100.0, false), share("goapp subset v2", 30.0, 0.0, false)]},
                "diagnosis": {"hop": "app", "summary": "v2 does not answer", "details": [],
                    "in_cluster": [{"target": "Pod dev/goapp-v2-x:8080 (subset v2)", "status": 503, "ok": false, "detail": "refused"},
                                   {"target": "Pod dev/goapp-v1-x:8080 (subset v1)", "status": 200, "ok": true, "detail": "ok"}]}
            }]
        });
        st.rollout.deployments[1].ready = 1;
        st.verification = Some(serde_json::from_value(report).unwrap());
        let g = &graphs(&st)[0];
        let of =
            |k: Kind| -> Vec<&graph::Node> { g.nodes.iter().filter(|n| n.kind == k).collect() };
        let rule = of(Kind::Rule)[0];
        assert_eq!(rule.mark, Mark::Broken);
        assert_eq!(rule.lines[1], "FAILED: 200 ×70, 503 ×30");
        assert!(rule.note.as_deref().unwrap().contains("broken hop app"));
        let dests = of(Kind::Destination);
        assert_eq!(dests[0].lines[0], "weight 70%, seen 100% of 70");
        let pods = of(Kind::Pods);
        assert_eq!((pods[0].mark, pods[1].mark), (Mark::Ok, Mark::Broken));
        assert_eq!((g.probes, g.failed), (1, 1));
        let html = render(&st);
        assert!(html.contains("data-hop=\"app\""));
    }
}
