//! Verification against real Istio: the local cluster started with `--istio` (Istio's charts
//! installed by `dev/up.sh --no-kind`, the real istiod computing the gateway's configuration)
//! and dev/gateway, the Go stand-in for the gateway's Envoy, taking its routes from istiod over
//! xDS while posing as the gateway chart's Pod. Nothing here configures the gateway: what it
//! serves is what istiod made of what meshloop applied.
//!
//! The tests share one such cluster (each with its own app namespace, host and app versions);
//! the one that stops istiod has a cluster of its own.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::await_condition;
use meshloop::verify::Report;
use support::IstioCluster;
use support::{run, workloads};
use tempfile::TempDir;

/// One app namespace: the chart's workloads, the app versions v1 and v2 as processes, and
/// meshloop's project directory (meshloop.yaml, the values or routing files).
struct App {
    ic: &'static IstioCluster,
    ns: support::TestNs,
    host: String,
    dir: TempDir,
}

impl App {
    /// `routing`: the project's routing, either the chart (`None`, with `values` as an extra
    /// values file) or the YAML of a `dir` source. `{host}` in either is the test's own host.
    async fn start(
        ic: &'static IstioCluster,
        prefix: &str,
        values: &str,
        routing: Option<&str>,
    ) -> App {
        let client = support::client_for(&ic.tc).await;
        let ns = support::TestNs::new_in(&ic.tc, &client, prefix).await;
        // As dev/up.sh labels its app namespace (no injector runs here; doctor checks it).
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .patch(
                &ns.name,
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"metadata": {"labels": {"istio-injection": "enabled"}}}),
                ),
            )
            .await
            .unwrap();
        let host = format!("{}.goapp.test", ns.name);
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("apps");
        std::fs::create_dir(&apps).unwrap();
        run(Command::new(support::repo_root().join("dev/standin.sh"))
            .arg("up")
            .arg(&apps)
            .arg("--cluster")
            .arg(ic.dir())
            .args(["--gateway", "none", "--namespace", &ns.name, "--owner-pid"])
            .arg(std::process::id().to_string()));
        let app = App { ic, ns, host, dir };
        app.write("values-test.yaml", values);
        app.deploy_workloads(&client).await;
        let source = match routing {
            None => format!(
                "  - chart: {chart}\n    release: goapp\n    values: [{chart}/values-dev.yaml, values-test.yaml]\n",
                chart = support::repo_root().join("charts/goapp").display()
            ),
            Some(yaml) => {
                std::fs::create_dir(app.dir.path().join("routing")).unwrap();
                app.write("routing/routing.yaml", yaml);
                "  - dir: routing\n".to_string()
            }
        };
        app.write(
            "meshloop.yaml",
            &format!(
                "instance: {ns}\nnamespace: {ns}\nhelm: {helm}\nsources:\n{source}verify: {{split_samples: 100}}\nchecks: []\n",
                ns = app.ns.name,
                helm = support::bin_dir().join("helm").display(),
            ),
        );
        app
    }

    /// Writes a project file, `{host}` replaced by the test's host.
    fn write(&self, name: &str, text: &str) {
        std::fs::write(
            self.dir.path().join(name),
            text.replace("{host}", &self.host),
        )
        .unwrap();
    }

    /// `helm template` of the chart's `templates` with the dev and the test's values.
    fn helm_template(&self, templates: &[&str]) -> String {
        let values = self.dir.path().join("values-test.yaml");
        workloads::helm_template(&self.ns.name, &[&values], templates)
    }

    /// The chart's Deployments and Service, as Tilt would apply them; returns once both
    /// versions' endpoints are Ready.
    async fn deploy_workloads(&self, client: &kube::Client) {
        let values = self.dir.path().join("values-test.yaml");
        workloads::deploy(
            &self.ic.tc,
            client,
            &self.ns.name,
            self.dir.path(),
            &[&values],
        )
        .await;
    }

    /// The chart's Services per version (routing.api gateway: the HTTPRoute's backends), as
    /// Tilt applies them; the Gateway and HTTPRoute of the same template are meshloop's.
    fn deploy_version_services(&self) {
        let rendered = self.helm_template(&["gateway-api"]);
        let services: Vec<&str> = rendered
            .split("\n---\n")
            .filter(|d| d.contains("\nkind: Service\n"))
            .collect();
        assert_eq!(services.len(), 2, "{rendered}");
        let manifest = self.dir.path().join("version-services.yaml");
        workloads::kubectl_apply(
            &self.ic.tc,
            &self.ns.name,
            &manifest,
            &services.join("\n---\n"),
        );
    }

    fn meshloop(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_meshloop"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.ic.tc.kubeconfig)
            .current_dir(self.dir.path())
            .env("MESHLOOP_HELM", support::bin_dir().join("helm"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn apply(&self) {
        let (code, out, err) = self.meshloop(&["apply"]);
        assert_eq!(code, 0, "meshloop apply:\n{out}\n{err}");
    }

    /// `meshloop verify --standalone -o json`: the exit code and the report.
    fn verify(&self) -> (i32, Report) {
        let (code, out, err) = self.meshloop(&["verify", "--standalone", "-o", "json"]);
        let report: Report = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("not a report ({e}):\n{out}\n{err}"));
        (code, report)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = Command::new(support::repo_root().join("dev/standin.sh"))
            .arg("down")
            .arg(self.dir.path().join("apps"))
            .output();
    }
}

/// dev/gateway's applied configuration (GET /config on its admin address).
async fn gateway_config(ic: &IstioCluster) -> String {
    http_get(&ic.gateway_admin(), "127.0.0.1", "/config")
        .await
        .1
}

/// Waits until dev/gateway's applied configuration satisfies `done`: its answer to GET /config
/// is the signal that a push from istiod has been applied.
async fn wait_gateway(ic: &IstioCluster, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let cfg = gateway_config(ic).await;
        if done(&cfg) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dev/gateway did not apply {what} within 120 s; its configuration:\n{cfg}"
        );
        tick.tick().await;
    }
}

/// Waits until the gateway routes `host` (anything but its own 404): istiod has pushed the
/// routes of what was applied and dev/gateway applied them.
async fn wait_routed(ic: &IstioCluster, host: &str) {
    wait_routed_at(&ic.gateway, &ic.gateway_admin(), host).await
}

/// [`wait_routed`] for the gateway at `gateway` (admin address `admin`).
async fn wait_routed_at(gateway: &str, admin: &str, host: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        // Until istiod's first push the gateway has no listener: a refused connection is
        // "not yet", like its own 404.
        if let Some((status, _)) = try_http_get(gateway, host, "/fortune").await
            && status != 404
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway did not route {host} within 120 s; its configuration:\n{}",
            http_get(admin, "127.0.0.1", "/config").await.1
        );
        tick.tick().await;
    }
}

/// A minimal HTTP GET: status and body.
async fn http_get(addr: &str, host: &str, path: &str) -> (u16, String) {
    try_http_get(addr, host, path)
        .await
        .unwrap_or_else(|| panic!("no HTTP answer from {addr}"))
}

/// The same, `None` when the connection is refused or closed without an answer.
async fn try_http_get(addr: &str, host: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.ok()?;
    // HTTP/1.0: the answer comes whole, not chunked.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    sock.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code: u16 = text.get(9..12)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Some((code, body))
}

fn weights(v1: u32, v2: u32) -> String {
    format!("host: {{host}}\nweights: {{v1: {v1}, v2: {v2}}}\n")
}

fn split_of(r: &Report) -> &meshloop::verify::split::SplitResult {
    r.probes
        .iter()
        .find_map(|p| p.split.as_ref())
        .unwrap_or_else(|| panic!("a split probe: {r:#?}"))
}

#[tokio::test]
async fn the_charts_split_applied_by_meshloop_is_served_by_the_gateway() {
    let ic = support::istio_cluster();
    let app = App::start(ic, "istio-split", &weights(90, 10), None).await;
    app.apply();
    wait_routed(ic, &app.host).await;
    let (code, r) = app.verify();
    assert!(r.ok, "{r:#?}");
    assert_eq!(code, 0);
    let addr = r.address.as_ref().unwrap();
    assert_eq!(
        addr.authority(),
        ic.gateway,
        "the chart Service's load balancer address"
    );
    assert!(addr.via.contains("load balancer ip"), "{}", addr.via);
    let split = split_of(&r);
    assert!(split.ok, "{split:#?}");
    assert_eq!(split.shares[0].expected_pct, 90.0);
    assert!(
        split.shares[0].observed > split.shares[1].observed,
        "{split:#?}"
    );
    assert!(split.shares[1].observed > 0, "v2 gets its 10%: {split:#?}");
}

/// The Gateway API path end to end: the chart's Gateway (class istio) and HTTPRoute applied by
/// meshloop; istiod deploys the gateway's Deployment and Service, translates the HTTPRoute and
/// writes the Gateway's address; dev/gateway poses as that Deployment's Pod; meshloop verifies
/// at the address of the Gateway's status and observes the HTTPRoute's split.
#[tokio::test]
async fn the_gateway_api_route_is_served_by_the_gateway_istiod_deploys() {
    let ic = support::istio_cluster();
    let values = format!("{}routing: {{api: gateway}}\n", weights(80, 20));
    let app = App::start(ic, "istio-gwapi", &values, None).await;
    app.deploy_version_services();
    let config = app.dir.path().join("meshloop.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let ingress = format!(
        "ingress: {{namespace: {}, gateway: goapp-gateway}}\n",
        app.ns.name
    );
    std::fs::write(&config, format!("{text}{ingress}")).unwrap();
    app.apply();

    let gw_dir = app.dir.path().join("gateway");
    std::fs::create_dir(&gw_dir).unwrap();
    let up = run(Command::new(support::repo_root().join("dev/standin.sh"))
        .arg("up")
        .arg(&gw_dir)
        .arg("--cluster")
        .arg(ic.dir())
        .args([
            "--gateway-api",
            "goapp-gateway",
            "--namespace",
            &app.ns.name,
        ])
        .args(["--versions", "", "--owner-pid"])
        .arg(std::process::id().to_string()));
    let _down = StandinDown(gw_dir.clone());
    let gateway = up.lines().last().unwrap().to_string();
    let state = std::fs::read_to_string(gw_dir.join("standin/state")).unwrap();
    let admin = state
        .lines()
        .find_map(|l| l.strip_prefix("GW_ADMIN="))
        .unwrap();
    wait_routed_at(&gateway, admin, &app.host).await;

    let (code, r) = app.verify();
    assert!(r.ok, "{r:#?}");
    assert_eq!(code, 0);
    let addr = r.address.as_ref().unwrap();
    assert_eq!(addr.authority(), gateway, "{addr:?}");
    assert!(
        addr.via.contains("status.addresses of Gateway"),
        "{}",
        addr.via
    );
    let split = split_of(&r);
    assert!(split.ok, "{split:#?}");
    assert_eq!(split.shares[0].expected_pct, 80.0);
    assert!(split.shares.iter().all(|s| s.observed > 0), "{split:#?}");
}

/// Stops a stand-in when dropped.
struct StandinDown(PathBuf);

impl Drop for StandinDown {
    fn drop(&mut self) {
        let _ = Command::new(support::repo_root().join("dev/standin.sh"))
            .arg("down")
            .arg(&self.0)
            .output();
    }
}

/// The daemon: a save that changes the weights is applied, pushed by istiod, served by the
/// gateway, and the daemon's next verification passes with the new split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_to_50_50_is_followed_by_the_gateway_and_the_next_verification() {
    let ic = support::istio_cluster();
    let app = App::start(ic, "istio-save", &weights(90, 10), None).await;
    let d =
        support::InProcess::start(&app.dir.path().join("meshloop.yaml"), &ic.tc.kubeconfig).await;
    let mut status = d.handles.status.clone();
    let first = status
        .wait_for(|s| s.verification.is_some())
        .await
        .unwrap()
        .clone();
    let report = first.verification.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(split_of(&report).shares[0].expected_pct, 90.0);

    app.write("values-test.yaml", &weights(50, 50));
    let next = status
        .wait_for(|s| {
            s.verification
                .as_ref()
                .is_some_and(|v| split_of(v).shares[0].expected_pct == 50.0)
        })
        .await
        .unwrap()
        .clone();
    let report = next.verification.unwrap();
    assert!(
        report.ok,
        "the gateway serves 50/50 after istiod's push: {report:#?}"
    );
    let split = split_of(&report);
    assert!(
        split.shares.iter().all(|s| s.ok && s.observed > 20),
        "{split:#?}"
    );
    d.stop().await;
}

const HEADER_ROUTING: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: goapp-gateway}
spec:
  selector: {istio: ingress}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["{host}"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: goapp}
spec:
  host: goapp
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: goapp}
spec:
  hosts: ["{host}"]
  gateways: [goapp-gateway]
  http:
    - name: canary
      match:
        - headers: {x-canary: {exact: "yes"}}
      route:
        - destination: {host: goapp, subset: v2}
    - name: default
      route:
        - destination: {host: goapp, subset: v1}
"#;

#[tokio::test]
async fn a_header_rule_is_probed_with_its_header_and_reaches_its_destination() {
    let ic = support::istio_cluster();
    let app = App::start(ic, "istio-header", &weights(90, 10), Some(HEADER_ROUTING)).await;
    app.apply();
    wait_routed(ic, &app.host).await;
    let (code, r) = app.verify();
    assert!(r.ok, "{r:#?}");
    assert_eq!(code, 0);
    let canary = r
        .probes
        .iter()
        .find(|p| {
            p.request
                .headers
                .get("x-canary")
                .is_some_and(|v| v == "yes")
        })
        .unwrap_or_else(|| panic!("a probe with the rule's header: {r:#?}"));
    assert!(canary.ok, "{canary:#?}");
    assert_eq!(canary.upstream, Some(true), "{canary:#?}");
    // The app names the version that answered (x-version): the header rule's, v2.
    assert_eq!(canary.version.as_deref(), Some("v2"), "{canary:#?}");
    let default = r
        .probes
        .iter()
        .find(|p| p.request.headers.is_empty())
        .unwrap_or_else(|| panic!("a probe without the header: {r:#?}"));
    assert_eq!(default.version.as_deref(), Some("v1"), "{default:#?}");
}

#[tokio::test]
async fn a_gateway_selecting_no_gateway_pod_answers_404_while_the_service_answers_inside() {
    let ic = support::istio_cluster();
    let values = format!(
        "{}gateway:\n  selector: {{istio: nowhere}}\n",
        weights(90, 10)
    );
    let app = App::start(ic, "istio-nosel", &values, None).await;
    // Routes bound to a Gateway the ingress does not run are not derived as probes; the user
    // who expects the host served says so with a check.
    let config = std::fs::read_to_string(app.dir.path().join("meshloop.yaml")).unwrap();
    app.write(
        "meshloop.yaml",
        &config.replace(
            "checks: []",
            "checks:\n  - {host: \"{host}\", path: /fortune, expect: {status: 200}}",
        ),
    );
    app.apply();
    // The signal that istiod has pushed since the apply: a host applied afterwards, bound to
    // the gateway, is served. Nothing of the app's host may be there.
    let marker = App::start(ic, "istio-marker", &weights(90, 10), None).await;
    marker.apply();
    wait_routed(ic, &marker.host).await;

    let (code, r) = app.verify();
    assert_eq!(code, 1, "{r:#?}");
    let p = r.probes.iter().find(|p| !p.ok).expect("a failing probe");
    assert_eq!(p.status, Some(404), "{p:#?}");
    assert_eq!(p.upstream, Some(false), "the gateway's own 404: {p:#?}");
    let d = p.diagnosis.as_ref().expect("a diagnosis");
    assert_eq!(d.hop, "gateway", "{d:#?}");
    assert!(
        d.summary.contains("no Gateway applies to the ingress"),
        "{}",
        d.summary
    );
    assert!(
        d.details
            .iter()
            .any(|l| l.contains("no Gateway selects the ingress Pods")),
        "{d:#?}"
    );

    // From inside the cluster (the API server's service proxy), the Service answers.
    let client = support::client_for(&ic.tc).await;
    let req = http::Request::get(format!(
        "/api/v1/namespaces/{}/services/goapp:http/proxy/fortune",
        app.ns.name
    ))
    .body(Vec::new())
    .unwrap();
    let text = client
        .request_text(req)
        .await
        .expect("the Service answers inside the cluster");
    assert!(!text.is_empty());
}

#[tokio::test]
async fn a_subset_with_no_ready_pod_answers_503_and_the_diagnosis_says_upstream() {
    let ic = support::istio_cluster();
    let app = App::start(ic, "istio-nopod", &weights(50, 50), None).await;
    app.apply();
    wait_routed(ic, &app.host).await;
    let client = support::client_for(&ic.tc).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app.ns.name);
    deployments
        .patch(
            "goapp-v2",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    workloads::ready_endpoints(&client, &app.ns.name, |n| n == 1).await;
    // EDS: the gateway has dropped v2's endpoint once v1's address is the only one left.
    // GET /config lists each cluster's endpoints as "address": "IP:PORT".
    let v2 = format!("\"{}:", standin_app_ip(&app, "v2"));
    wait_gateway(ic, "v2 without endpoints", |c| !c.contains(&v2)).await;

    let (code, r) = app.verify();
    assert_eq!(code, 1, "{r:#?}");
    let p = r.probes.iter().find(|p| !p.ok).expect("a failing probe");
    assert!(p.results.contains_key("503"), "{p:#?}");
    let d = p.diagnosis.as_ref().expect("a diagnosis");
    assert_eq!(d.hop, "upstream", "{d:#?}");
    assert!(d.summary.contains("v2"), "{}", d.summary);
}

/// The address dev/standin.sh gave version `v` of an app (from its pod IP map).
fn standin_app_ip(app: &App, v: &str) -> String {
    let map = std::fs::read_to_string(app.ic.dir().join("podips")).unwrap();
    map.lines()
        .find(|l| l.starts_with(&format!("{}/app=goapp,version={v} ", app.ns.name)))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no pod IP of {v} in:\n{map}"))
        .to_string()
}

/// istiod down: the gateway keeps the routes it has, as Envoy does; a change that needs a
/// push is not served, and the diagnosis names istiod. With istiod back, the change arrives.
#[tokio::test]
async fn with_istiod_stopped_the_gateway_keeps_its_routes_and_a_change_names_istiod() {
    let ic: &'static IstioCluster = Box::leak(Box::new(IstioCluster::start("istiod-down")));
    let app = App::start(ic, "istio-down", &weights(90, 10), None).await;
    app.apply();
    wait_routed(ic, &app.host).await;

    ic.istiod("istiod-stop");
    let client = support::client_for(&ic.tc).await;
    let deps: Api<Deployment> = Api::namespaced(client, "istio-system");
    await_condition(deps, "istiod", |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.available_replicas.unwrap_or(0) == 0)
    })
    .await
    .unwrap();
    let (code, r) = app.verify();
    assert!(r.ok, "the last routes still serve: {r:#?}");
    assert_eq!(code, 0);

    app.write("values-test.yaml", &weights(50, 50));
    app.apply();
    let (code, r) = app.verify();
    assert_eq!(code, 1, "{r:#?}");
    let p = r
        .probes
        .iter()
        .find(|p| !p.ok)
        .expect("the split probe fails");
    let d = p.diagnosis.as_ref().expect("a diagnosis");
    assert_eq!(d.hop, "istiod", "{d:#?}");
    assert!(d.summary.contains("istiod is not ready"), "{}", d.summary);

    ic.istiod("istiod-start");
    // The signal that istiod's push on reconnect has been applied: the new weights in the
    // gateway's route configuration (this cluster serves only this app).
    wait_gateway(ic, "the 50/50 route after reconnecting", |c| {
        c.contains(&app.host) && c.contains("\"weight\": 50")
    })
    .await;
    let (code, r) = app.verify();
    assert!(r.ok, "istiod's push on reconnect brings 50/50: {r:#?}");
    assert_eq!(code, 0);
}

#[tokio::test]
async fn doctor_passes_on_the_charts_and_the_real_istiod() {
    let ic = support::istio_cluster();
    let app = App::start(ic, "istio-doctor", &weights(90, 10), None).await;
    app.apply();
    let (code, out, err) = app.meshloop(&["doctor", "-o", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}\n{err}"));
    let checks = v["checks"].as_array().unwrap();
    let failing: Vec<&serde_json::Value> = checks.iter().filter(|c| c["ok"] == false).collect();
    let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap();
    assert!(by_name("istiod ready")["ok"] == true, "{v:#}");
    assert!(by_name("ingress gateway address")["ok"] == true, "{v:#}");
    assert!(
        by_name("ingress gateway address")["detail"]
            .as_str()
            .unwrap()
            .contains(ic.gateway.trim_end_matches(":80")),
        "{v:#}"
    );
    assert!(failing.is_empty(), "{v:#}");
    assert_eq!(code, 0);
}

/// `kind/namespace/name=resourceVersion` of every object of a Helm release, read live.
fn release_versions(ic: &IstioCluster, release: &str, ns: &str) -> Vec<String> {
    let bin = support::bin_dir();
    let manifest = run(Command::new(bin.join("helm"))
        .args(["get", "manifest", release, "-n", ns, "--kubeconfig"])
        .arg(&ic.tc.kubeconfig));
    let file = ic.dir().join(format!("manifest-{release}.yaml"));
    std::fs::write(&file, manifest).unwrap();
    let out = run(Command::new(bin.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&ic.tc.kubeconfig)
        .args(["get", "-f"])
        .arg(&file)
        .args([
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}={.metadata.resourceVersion}{\"\\n\"}{end}",
        ]));
    out.lines().map(str::to_string).collect()
}

fn revision(ic: &IstioCluster, release: &str, ns: &str) -> u32 {
    let out = run(Command::new(support::bin_dir().join("helm"))
        .args(["status", release, "-n", ns, "-o", "json", "--kubeconfig"])
        .arg(&ic.tc.kubeconfig));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["info"]["status"], "deployed", "{release}: {v}");
    v["version"].as_u64().unwrap() as u32
}

/// `dev/up.sh --no-kind` again (through `dev/localcluster istio-install`), with `values` as the
/// gateway's values file.
fn up_again(ic: &IstioCluster, values: &Path) -> String {
    let out = Command::new(support::repo_root().join("dev/localcluster"))
        .arg("istio-install")
        .arg(ic.dir())
        .env("ISTIO_VALUES", values)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "istio-install failed:\n{err}");
    err
}

/// The seed's upgrade path: running dev/up.sh again changes nothing; a changed value in the
/// values file is upgraded in place.
#[tokio::test]
async fn up_again_is_a_no_op_and_a_changed_value_upgrades_in_place() {
    let ic = support::istio_cluster();
    let releases = [
        ("istio-base", "istio-system"),
        ("istiod", "istio-system"),
        ("istio-ingress", "istio-ingress"),
    ];
    let snapshot = || -> Vec<(Vec<String>, u32)> {
        releases
            .iter()
            .map(|(r, ns)| (release_versions(ic, r, ns), revision(ic, r, ns)))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("istio-values.yaml");
    let original =
        std::fs::read_to_string(support::repo_root().join("dev/istio-values.yaml")).unwrap();
    std::fs::write(&values, &original).unwrap();

    let before = snapshot();
    let log = up_again(ic, &values);
    assert!(log.contains("upgrading in place"), "{log}");
    let after = snapshot();
    for (((b, rb), (a, ra)), (name, _)) in before.iter().zip(&after).zip(&releases) {
        // Helm records a new revision; not one object of the release was written.
        assert_eq!(*ra, rb + 1, "{name}: one more revision");
        assert_eq!(a, b, "{name}: the objects' resourceVersions");
        assert!(!a.is_empty(), "{name} has objects");
    }

    // A value changed in the values file: the gateway Service gets it, in place.
    let changed = original.replacen(
        "service:\n",
        "service:\n  annotations:\n    meshloop.dev/upgrade-test: changed\n",
        1,
    );
    assert_ne!(changed, original);
    std::fs::write(&values, &changed).unwrap();
    up_again(ic, &values);
    let upgraded = snapshot();
    let (gw_before, gw_after) = (&after[2].0, &upgraded[2].0);
    let svc = "Service/istio-ingress/istio-ingress=";
    assert_ne!(
        line_starting(gw_before, svc),
        line_starting(gw_after, svc),
        "the Service was updated"
    );
    assert_eq!(
        line_starting(gw_before, "Deployment/"),
        line_starting(gw_after, "Deployment/"),
        "the gateway Deployment is untouched"
    );
    let client = support::client_for(&ic.tc).await;
    let svc: k8s_openapi::api::core::v1::Service = Api::namespaced(client, "istio-ingress")
        .get("istio-ingress")
        .await
        .unwrap();
    let ann = svc.metadata.annotations.unwrap_or_default();
    assert_eq!(
        ann.get("meshloop.dev/upgrade-test").map(String::as_str),
        Some("changed")
    );
    // Back to the file's own values, for the other tests of this cluster.
    up_again(ic, &support::repo_root().join("dev/istio-values.yaml"));
}

/// The first of `lines` (`Kind/ns/name=resourceVersion`) that starts with `prefix`.
fn line_starting<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines.iter().find(|l| l.starts_with(prefix)).unwrap()
}

/// No proxy inside the cluster: the API server is started with proxy variables pointing at a
/// listener of this test, and its service-proxy call to a Pod (a non-loopback address, which
/// a proxy would otherwise carry) reaches the Pod without ever connecting there.
#[tokio::test]
async fn cluster_calls_never_go_through_the_environments_proxy() {
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let proxy = format!("http://{}", trap.local_addr().unwrap());
    let env = [
        ("HTTP_PROXY", proxy.as_str()),
        ("HTTPS_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("https_proxy", proxy.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let tc = support::start_with_env("proxy", &["--workloads"], &env);
    let client = support::client_for(&tc).await;
    let ns = support::TestNs::new_in(&tc, &client, "noproxy").await;
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(support::repo_root().join("dev/standin.sh"))
        .arg("up")
        .arg(dir.path())
        .arg("--cluster")
        .arg(tc.dir.as_ref().unwrap())
        .args([
            "--gateway",
            "none",
            "--namespace",
            &ns.name,
            "--versions",
            "v1",
            "--weights",
            "100",
        ])
        .envs(env));
    // One version, v1, as the stand-in runs.
    let values = dir.path().join("v1-only.yaml");
    std::fs::write(&values, "weights: {v1: 100, v2: null}\n").unwrap();
    let rendered = workloads::helm_template(&ns.name, &[&values], &["deployment", "service"]);
    workloads::kubectl_apply(&tc, &ns.name, &dir.path().join("workloads.yaml"), &rendered);
    workloads::ready_endpoints(&client, &ns.name, |n| n >= 1).await;

    let req = http::Request::get(format!(
        "/api/v1/namespaces/{}/services/goapp:http/proxy/healthz",
        ns.name
    ))
    .body(Vec::new())
    .unwrap();
    let answer = client.request_text(req).await;
    let proxied = trap.accept().map(|(_, peer)| peer);
    let _ = Command::new(support::repo_root().join("dev/standin.sh"))
        .arg("down")
        .arg(dir.path())
        .output();
    assert!(
        matches!(proxied, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the API server connected to the environment's proxy: {proxied:?}"
    );
    answer.expect("the Pod answers through the API server's service proxy");
}
