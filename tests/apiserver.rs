//! The foundation: kube-rs talks to the real kube-apiserver, and the real Istio CRD schemas
//! accept our objects and reject invalid ones.

mod support;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

fn istio(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", "v1", kind))
}

fn object(kind: &str, ns: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

#[tokio::test]
async fn server_side_apply_of_istio_routing_objects_round_trips() {
    let client = support::client().await;
    let ns = support::TestNs::new(&client, "ssa").await;
    let objects = [
        (
            "Gateway",
            "goapp-gateway",
            json!({"selector": {"istio": "ingress"}, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["goapp.dev"]}]}),
        ),
        (
            "DestinationRule",
            "goapp",
            json!({"host": "goapp", "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]}),
        ),
        (
            "VirtualService",
            "goapp",
            json!({"hosts": ["goapp.dev"], "gateways": ["goapp-gateway"], "http": [{"match": [{"uri": {"exact": "/fortune"}}], "route": [{"destination": {"host": "goapp", "subset": "v1"}, "weight": 90}, {"destination": {"host": "goapp", "subset": "v2"}, "weight": 10}]}]}),
        ),
    ];
    for (kind, name, spec) in objects {
        let ar = istio(kind);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);
        let sent = object(kind, &ns.name, name, spec.clone());
        api.patch(name, &PatchParams::apply("meshloop"), &Patch::Apply(&sent))
            .await
            .unwrap_or_else(|e| panic!("apply {kind}: {e}"));
        let back = api.get(name).await.unwrap();
        assert_eq!(back.data["spec"], spec, "{kind} spec read back");
        let managers: Vec<_> = back
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m.manager.unwrap_or_default(),
                    m.operation.unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            managers,
            vec![("meshloop".to_string(), "Apply".to_string())],
            "{kind}"
        );
    }
}

/// Applies a Gateway spec and returns the API server's refusal.
async fn rejected(
    api: &Api<DynamicObject>,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> kube::core::Status {
    let bad = object("Gateway", ns, name, spec);
    let err = api
        .patch(name, &PatchParams::apply("meshloop"), &Patch::Apply(&bad))
        .await
        .expect_err("the CRD schema must refuse this Gateway");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err}")
    };
    assert!(
        api.get_opt(name).await.unwrap().is_none(),
        "nothing was stored"
    );
    *status
}

// The Istio CRDs type Gateway port numbers as uint32 (0..=4294967295): 70000 passes the
// schema (only istiod's webhook refuses it, which is why `meshloop check` must), while a
// number beyond uint32 and the CEL rules of the TLS settings are refused by the API server.
#[tokio::test]
async fn crd_schema_rejects_invalid_gateways() {
    let client = support::client().await;
    let ns = support::TestNs::new(&client, "schema").await;
    let ar = istio("Gateway");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);

    let status = rejected(
        &api,
        &ns.name,
        "port-out-of-range",
        json!({"servers": [{"port": {"number": 4294967296u64, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}),
    )
    .await;
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.servers[0].port.number"),
        "names the field: {}",
        status.message
    );
    assert!(
        status.message.contains("4294967295"),
        "says the bound: {}",
        status.message
    );

    let status = rejected(
        &api,
        &ns.name,
        "two-credentials",
        json!({"servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
               "tls": {"mode": "SIMPLE", "credentialName": "a", "credentialNames": ["b"]}}]}),
    )
    .await;
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status
            .message
            .contains("only one of credentialName or credentialNames can be set"),
        "the CEL rule's message: {}",
        status.message
    );
}
