//! `meshloop doctor` against a real API server: each check fails once, says how to fix it,
//! and passes once the environment is fixed; every check runs even when others fail.

mod support;

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn doctor(project: &std::path::Path, kubeconfig: &std::path::Path) -> (i32, Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshloop"))
        .args(["doctor", "-o", "json", "--kubeconfig"])
        .arg(kubeconfig)
        .current_dir(project)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing: {v}"))
}

fn failing(v: &Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn gateway(selector: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: goapp-gateway\nspec:\n  selector:\n    istio: {selector}\n  servers:\n    - port: {{number: 80, name: http, protocol: HTTP}}\n      hosts: [goapp.dev]\n"
    )
}

/// A project whose routing holds one Gateway selecting `istio: ingressgateway`.
fn project(ns: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("routing")).unwrap();
    std::fs::write(
        dir.path().join("routing/gw.yaml"),
        gateway("ingressgateway"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("meshloop.yaml"),
        format!("instance: doc\nnamespace: {ns}\nsources:\n  - dir: routing\n"),
    )
    .unwrap();
    dir
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

/// istiod's Deployment in istio-system, available.
async fn create_istiod(client: &kube::Client) {
    create_namespace(client, "istio-system").await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "istio-system");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "istiod"},
        "spec": {"selector": {"matchLabels": {"app": "istiod"}}, "template": {"metadata": {"labels": {"app": "istiod"}}, "spec": {"containers": [{"name": "discovery", "image": "istio/pilot"}]}}}
    }))
    .unwrap();
    deps.create(&PostParams::default(), &d).await.unwrap();
    deps.patch_status(
        "istiod",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"status": {"availableReplicas": 1, "readyReplicas": 1, "replicas": 1}}),
        ),
    )
    .await
    .unwrap();
}

/// The gateway chart's Service (LoadBalancer, no address yet) in istio-ingress.
async fn create_ingress_service(client: &kube::Client) -> Api<Service> {
    create_namespace(client, "istio-ingress").await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "istio-ingress");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "istio-ingress"},
        "spec": {"type": "LoadBalancer", "selector": {"istio": "ingress"}, "ports": [
            {"name": "status-port", "port": 15021}, {"name": "http2", "port": 80, "targetPort": 80}, {"name": "https", "port": 443}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    svcs
}

/// A gateway Pod labelled as the gateway chart labels it (`istio: ingress`).
async fn create_gateway_pod(client: &kube::Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "istio-ingress");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "istio-ingress-0", "labels": {"istio": "ingress", "app": "istio-ingress"}},
        "spec": {"containers": [{"name": "istio-proxy", "image": "istio/proxyv2"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

/// A copy of `kubeconfig` pointing at a loopback port nothing listens on.
fn dead_kubeconfig(dir: &Path, kubeconfig: &Path) -> PathBuf {
    let dead = dir.join("dead-kubeconfig");
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let port = text
        .split("https://127.0.0.1:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().port();
    drop(listener);
    std::fs::write(
        &dead,
        text.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{closed}")),
    )
    .unwrap();
    dead
}

#[tokio::test]
async fn each_check_fails_with_a_fix_and_passes_when_fixed() {
    let tc = support::cluster();
    let client = support::client().await;
    let ns = support::TestNs::new(&client, "doctor").await;
    let dir = project(&ns.name);
    let run = || doctor(dir.path(), &tc.kubeconfig);

    // A bare Istio-CRD cluster: reachable, CRDs, and nothing else.
    let (code, v) = run();
    assert_eq!(code, 1);
    assert_eq!(
        failing(&v),
        [
            "istiod ready",
            "ingress gateway address",
            "namespace labelled for injection",
            "gateway selectors match gateway Pods"
        ]
    );
    let fix = check(&v, "istiod ready")["fix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fix.contains("dev/up.sh"), "{fix}");

    create_istiod(&client).await;
    let v = gateway_address_from_node_port_then_load_balancer(&client, &run).await;
    selector_mismatch_is_named_with_its_fix(&v);
    std::fs::write(dir.path().join("routing/gw.yaml"), gateway("ingress")).unwrap();

    // Injection label.
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"istio-injection": "enabled"}}})),
        )
        .await
        .unwrap();
    let (code, v) = run();
    assert_eq!(failing(&v), Vec::<String>::new(), "{v}");
    assert_eq!(code, 0);

    without_crds_or_cluster_every_check_reports(dir.path(), &tc.kubeconfig);
}

/// istiod available, the gateway Service with a NodePort and then a load balancer address,
/// and a gateway Pod: the address check takes the NodePort, then the load balancer.
async fn gateway_address_from_node_port_then_load_balancer(
    client: &kube::Client,
    run: &impl Fn() -> (i32, Value),
) -> Value {
    let svcs = create_ingress_service(client).await;
    let (_, v) = run();
    assert!(check(&v, "istiod ready")["ok"].as_bool().unwrap(), "{v}");
    let ing = check(&v, "ingress gateway address");
    // A LoadBalancer without an address yet, but a NodePort: the NodePort is used.
    assert_eq!(ing["ok"], true, "{ing}");
    assert!(
        ing["detail"].as_str().unwrap().contains("NodePort"),
        "{ing}"
    );
    svcs.patch_status(
        "istio-ingress",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}})),
    )
    .await
    .unwrap();
    create_gateway_pod(client).await;
    let (_, v) = run();
    assert!(
        check(&v, "ingress gateway address")["detail"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:80 (LoadBalancer"),
        "{v}"
    );
    v
}

/// The famous mismatch: the Gateway selects istio=ingressgateway, the Pods say istio=ingress.
fn selector_mismatch_is_named_with_its_fix(v: &Value) {
    let sel = check(v, "gateway selectors match gateway Pods");
    assert_eq!(sel["ok"], false);
    let detail = sel["detail"].as_str().unwrap();
    assert!(
        detail.contains("routing/gw.yaml:6:")
            && detail.contains("istio: ingressgateway")
            && detail.contains("istio: ingress"),
        "{detail}"
    );
    assert!(sel["fix"].as_str().unwrap().contains("istio: ingress"));
}

/// On a cluster without the Istio CRDs, the CRD check fails naming one; without a cluster at
/// all, every check still reports, each failing.
fn without_crds_or_cluster_every_check_reports(dir: &Path, kubeconfig: &Path) {
    // A cluster without the Istio CRDs.
    let bare = support::bare_cluster();
    let (code, v) = doctor(dir, &bare.kubeconfig);
    assert_eq!(code, 1);
    let crds = check(&v, "Istio CRDs established");
    assert_eq!(crds["ok"], false);
    assert!(
        crds["detail"]
            .as_str()
            .unwrap()
            .contains("virtualservices.networking.istio.io"),
        "{crds}"
    );

    // No cluster at all: every check still reports.
    let dead = dead_kubeconfig(dir, kubeconfig);
    let (code, v) = doctor(dir, &dead);
    assert_eq!(code, 1);
    assert_eq!(v["checks"].as_array().unwrap().len(), 6);
    assert_eq!(failing(&v).len(), 6, "{v}");
    assert!(
        check(&v, "cluster reachable")["fix"]
            .as_str()
            .unwrap()
            .contains("dev/up.sh")
    );
}
