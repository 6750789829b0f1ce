//! The sample chart's workloads in a test namespace, as Tilt would apply them (the routing
//! objects are meshloop's), and waits on what the controllers make of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};

use super::{TestCluster, bin_dir, repo_root, run};

/// `helm template` of the sample chart's `templates` (names without `.yaml`) in `ns`, with
/// `values-dev.yaml` and then the `values` files.
pub fn helm_template(ns: &str, values: &[&Path], templates: &[&str]) -> String {
    let chart = repo_root().join("charts/goapp");
    let mut cmd = Command::new(bin_dir().join("helm"));
    cmd.args(["template", "goapp"])
        .arg(&chart)
        .args(["--namespace", ns, "-f"])
        .arg(chart.join("values-dev.yaml"));
    for v in values {
        cmd.arg("-f").arg(v);
    }
    for t in templates {
        cmd.args(["--show-only", &format!("templates/{t}.yaml")]);
    }
    run(&mut cmd)
}

/// `kubectl apply -n ns -f` of `manifest` (written to `file` first) on the cluster of `tc`.
pub fn kubectl_apply(tc: &TestCluster, ns: &str, file: &Path, manifest: &str) {
    std::fs::write(file, manifest).unwrap();
    run(Command::new(bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&tc.kubeconfig)
        .args(["apply", "-n", ns, "-f"])
        .arg(file));
}

/// The chart's Deployments and Service in `ns`; returns once both versions' Deployments are
/// complete and the Service has two Ready endpoints.
pub async fn deploy(
    tc: &TestCluster,
    client: &kube::Client,
    ns: &str,
    dir: &Path,
    values: &[&Path],
) {
    let rendered = helm_template(ns, values, &["deployment", "service"]);
    kubectl_apply(tc, ns, &dir.join("workloads.yaml"), &rendered);
    wait_ready(client, ns).await;
}

/// Both versions' Deployments complete, and Service goapp with two Ready endpoints (the
/// EndpointSlice controller follows the Deployments a moment later; diagnoses read it).
pub async fn wait_ready(client: &kube::Client, ns: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for name in ["goapp-v1", "goapp-v2"] {
        await_condition(
            deployments.clone(),
            name,
            conditions::is_deployment_completed(),
        )
        .await
        .unwrap();
    }
    ready_endpoints(client, ns, |n| n >= 2).await;
}

/// Waits until the EndpointSlices of Service goapp in `ns` have a count of Ready endpoints
/// that `done` accepts.
pub async fn ready_endpoints(client: &kube::Client, ns: &str, done: impl Fn(usize) -> bool) {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let cfg = watcher::Config::default().labels("kubernetes.io/service-name=goapp");
    let mut stream = std::pin::pin!(watcher::watcher(slices, cfg).default_backoff());
    let mut ready: BTreeMap<String, usize> = Default::default();
    let mut seen = false;
    while !(seen && done(ready.values().sum::<usize>())) {
        match stream.next().await.unwrap().unwrap() {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                let n = s
                    .endpoints
                    .iter()
                    .flatten()
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .count();
                ready.insert(s.metadata.name.clone().unwrap_or_default(), n);
            }
            watcher::Event::Delete(s) => {
                ready.remove(&s.metadata.name.clone().unwrap_or_default());
            }
            watcher::Event::InitDone => seen = true,
            watcher::Event::Init => {}
        }
    }
}
