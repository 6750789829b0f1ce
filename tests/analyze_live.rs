//! Live facts against a real kube-apiserver: Services and EndpointSlices created directly
//! (the local control plane runs no kubelet, so there are no Pods), read back by
//! `analyze::live::fetch`, and turned into live-only findings by `check`.

mod support;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use meshloop::analyze::command::{self, CheckArgs, Format};
use meshloop::analyze::live;
use meshloop::cluster::{Cluster, Target};

/// The Service `goapp` in `ns` with one EndpointSlice whose only endpoint is not ready.
async fn create_service_without_ready_endpoints(client: &kube::Client, ns: &str) {
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "goapp"},
        "spec": {"selector": {"app": "goapp"}, "ports": [{"name": "http", "port": 8080}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "goapp-1", "labels": {"kubernetes.io/service-name": "goapp"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": false}}]
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();
}

#[tokio::test]
async fn live_facts_turn_into_live_findings() {
    let tc = support::cluster();
    let client = support::client().await;
    let ns = support::TestNs::new(&client, "analyze").await;
    create_service_without_ready_endpoints(&client, &ns.name).await;

    let cluster = Cluster::connect(&Target {
        kubeconfig: Some(tc.kubeconfig.clone()),
        context: None,
    })
    .await
    .unwrap();
    let facts = live::fetch(&cluster, std::slice::from_ref(&ns.name))
        .await
        .unwrap();
    assert_eq!(facts.services.len(), 1);
    assert_eq!(facts.services[0].ports[0].port, 8080);
    assert_eq!(facts.endpoints[0].not_ready, 1);
    assert!(facts.endpoints[0].ready.is_empty());
    assert!(facts.namespaces.iter().any(|n| n.name == ns.name));

    // A mesh VirtualService to that Service, checked with the cluster: no ready endpoints,
    // and the test namespace carries no injection label.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vs.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\n  namespace: {0}\nspec:\n  hosts: [goapp]\n  http:\n    - route:\n        - destination: {{host: goapp}}\n",
            ns.name
        ),
    )
    .unwrap();
    let mut args = CheckArgs {
        paths: vec![dir.path().to_path_buf()],
        offline: false,
        format: Format::Json,
    };
    let report = command::run_check(&args, None, Some(&cluster))
        .await
        .unwrap();
    assert!(report.live, "{:?}", report.notes);
    let codes: Vec<&str> = report.findings.iter().map(|f| f.code).collect();
    assert_eq!(
        codes,
        ["ML0402", "ML0403"],
        "{}",
        command::render_text(&report)
    );
    assert!(report.findings.iter().all(|f| f.needs_live && f.line == 10));
    assert_eq!(report.exit_code(), 0, "warnings and notes only");

    // --offline never reads the cluster: the same file is clean.
    args.offline = true;
    let report = command::run_check(&args, None, Some(&cluster))
        .await
        .unwrap();
    assert!(!report.live);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}
