//! The Gateway API kinds (Gateway, HTTPRoute, GRPCRoute, ReferenceGrant) through the sync
//! engine against a real API server with the standard-channel CRDs of
//! sigs.k8s.io/gateway-api: they are owned by default, applied Gateways and grants first, and
//! the CRDs' CEL rules refuse a bad route with the API server's message, located in the file,
//! while everything else still applies.

mod support;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use meshloop::cluster::{Cluster, Target};
use meshloop::config::Config;
use meshloop::sources::SourceSet;
use meshloop::sync::{self, Outcome, SyncOptions, SyncReport};

const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: public
spec:
  gatewayClassName: istio
  listeners:
    - name: http
      port: 80
      protocol: HTTP
";

const GRANT: &str = "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: from-routes
spec:
  from:
    - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: elsewhere}
  to:
    - {group: \"\", kind: Service}
";

const GRPC: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: grpc
spec:
  parentRefs: [{name: public}]
  rules:
    - matches:
        - method: {service: echo.Echo, method: Say}
      backendRefs: [{name: echo, port: 9000}]
";

fn route(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
spec:
  parentRefs:
    - name: public
  hostnames: [goapp.dev]
  rules:
{rules}"
    )
}

const GOOD_RULES: &str = "    - matches:
        - path: {type: PathPrefix, value: /}
      backendRefs:
        - name: goapp
          port: 8080
";

struct Project {
    dir: tempfile::TempDir,
    ns: support::TestNs,
    client: kube::Client,
    kubeconfig: std::path::PathBuf,
}

impl Project {
    async fn new(prefix: &str) -> Project {
        let tc = support::cluster();
        let client = support::client_for(tc).await;
        let ns = support::TestNs::new_in(tc, &client, prefix).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("routing")).unwrap();
        let config = format!(
            "instance: {0}\nnamespace: {0}\nsources:\n  - dir: routing\n",
            ns.name
        );
        std::fs::write(dir.path().join("meshloop.yaml"), config).unwrap();
        Project {
            dir,
            ns,
            client,
            kubeconfig: tc.kubeconfig.clone(),
        }
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.dir.path().join(rel), text).unwrap();
    }

    async fn sync(&self) -> SyncReport {
        let config = Config::load(&self.dir.path().join("meshloop.yaml")).unwrap();
        let cluster = Cluster::connect(&Target {
            kubeconfig: Some(self.kubeconfig.clone()),
            context: None,
        })
        .await
        .unwrap();
        let mut set = SourceSet::new(config.clone(), config.namespace.clone().unwrap());
        set.load_all();
        let (desired, errors) = set.desired();
        assert!(errors.is_empty(), "{errors:?}");
        let opts = SyncOptions {
            instance: config.instance.clone(),
            owned: config.owned_kinds.clone(),
            prune: true,
            force_conflicts: false,
            dry_run: false,
            previously_applied: Default::default(),
            restore_drift: true,
            only_known_kinds: false,
            cached_list: false,
        };
        sync::sync(&cluster, &desired, &opts).await
    }

    async fn get(&self, version: &str, kind: &str, name: &str) -> Option<DynamicObject> {
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", version, kind);
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.ns.name,
            &ApiResource::from_gvk(&gvk),
        );
        api.get_opt(name).await.unwrap()
    }
}

fn outcome<'a>(r: &'a SyncReport, kind: &str, name: &str) -> &'a Outcome {
    &r.objects
        .iter()
        .find(|o| o.key.kind == kind && o.key.name == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in the report: {r:?}"))
        .outcome
}

#[tokio::test]
async fn gateway_api_kinds_are_owned_and_applied() {
    let p = Project::new("gwapi-own").await;
    p.write("routing/route.yaml", &route("goapp", GOOD_RULES));
    p.write("routing/gateway.yaml", GATEWAY);
    p.write("routing/grant.yaml", GRANT);
    p.write("routing/grpc.yaml", GRPC);
    let r = p.sync().await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.counts.created, 4, "{r:?}");
    for (v, kind, name) in [
        ("v1", "Gateway", "public"),
        ("v1", "HTTPRoute", "goapp"),
        ("v1", "GRPCRoute", "grpc"),
        ("v1beta1", "ReferenceGrant", "from-routes"),
    ] {
        let o = p.get(v, kind, name).await;
        let labels = o.and_then(|o| o.metadata.labels).unwrap_or_default();
        assert_eq!(
            labels.get("meshloop.dev/instance"),
            Some(&p.ns.name),
            "{kind} {name}"
        );
    }
    // The API server filled in the defaults the translation assumes.
    let route = p.get("v1", "HTTPRoute", "goapp").await.unwrap();
    let parent = &route.data["spec"]["parentRefs"][0];
    assert_eq!(parent["kind"], "Gateway");
    assert_eq!(parent["group"], "gateway.networking.k8s.io");
    assert_eq!(
        route.data["spec"]["rules"][0]["backendRefs"][0]["weight"],
        1
    );

    // Removing the route's file prunes only the route.
    std::fs::remove_file(p.dir.path().join("routing/route.yaml")).unwrap();
    let r = p.sync().await;
    assert_eq!(outcome(&r, "HTTPRoute", "goapp"), &Outcome::Pruned);
    assert!(p.get("v1", "HTTPRoute", "goapp").await.is_none());
    assert!(p.get("v1", "Gateway", "public").await.is_some());
}

#[tokio::test]
async fn cel_rejections_come_back_for_the_route_only() {
    let p = Project::new("gwapi-cel").await;
    p.write("routing/gateway.yaml", GATEWAY);
    p.write("routing/good.yaml", &route("good", GOOD_RULES));
    let redirect_and_backend = "    - filters:
        - type: RequestRedirect
          requestRedirect: {statusCode: 301}
      backendRefs:
        - name: goapp
          port: 8080
";
    p.write("routing/bad.yaml", &route("bad", redirect_and_backend));
    let no_port = "    - backendRefs:\n        - name: goapp\n";
    p.write("routing/noport.yaml", &route("noport", no_port));
    let r = p.sync().await;
    assert!(!r.ok());
    let Outcome::Failed { message } = outcome(&r, "HTTPRoute", "bad") else {
        panic!("{r:?}")
    };
    assert!(
        message.contains("RequestRedirect filter must not be used together with backendRefs"),
        "{message}"
    );
    let Outcome::Failed { message } = outcome(&r, "HTTPRoute", "noport") else {
        panic!("{r:?}")
    };
    assert!(
        message.contains("Must have port for Service reference"),
        "{message}"
    );
    assert_eq!(outcome(&r, "HTTPRoute", "good"), &Outcome::Created);
    assert_eq!(outcome(&r, "Gateway", "public"), &Outcome::Created);
    assert!(p.get("v1", "HTTPRoute", "bad").await.is_none());
}

/// With `ingress.gateway`, the ingress address is the one istiod writes into the Gateway's
/// `status.addresses` (a cluster-internal hostname passed over), with its HTTP listener's port;
/// before any address is written there, the Service istiod deploys is looked for.
#[tokio::test]
async fn the_ingress_address_comes_from_the_gateway_status() {
    use kube::api::{Patch, PatchParams};
    use meshloop::verify::address::{self, AddressError};
    let p = Project::new("gwapi-addr").await;
    p.write(
        "routing/gateway.yaml",
        &GATEWAY.replace("port: 80", "port: 8080"),
    );
    p.write(
        "meshloop.yaml",
        &format!(
            "instance: {0}\nnamespace: {0}\nsources:\n  - dir: routing\ningress: {{namespace: {0}, gateway: public}}\n",
            p.ns.name
        ),
    );
    assert!(p.sync().await.ok());
    let config = Config::load(&p.dir.path().join("meshloop.yaml")).unwrap();
    assert_eq!(config.ingress.service, "public-istio");

    let none = address::resolve(Some(&p.client), &config.ingress, None).await;
    let missing = format!("{}/public-istio", p.ns.name);
    assert_eq!(none, Err(AddressError::Missing(missing)));

    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway");
    let api: Api<DynamicObject> =
        Api::namespaced_with(p.client.clone(), &p.ns.name, &ApiResource::from_gvk(&gvk));
    let status = serde_json::json!({"status": {"addresses": [
        {"type": "Hostname", "value": format!("public-istio.{}.svc.cluster.local", p.ns.name)},
        {"type": "IPAddress", "value": "127.0.0.9"},
    ]}});
    api.patch_status("public", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let a = address::resolve(Some(&p.client), &config.ingress, None)
        .await
        .unwrap();
    assert_eq!((a.host.as_str(), a.port), ("127.0.0.9", 8080), "{a:?}");
    assert!(a.via.contains("status.addresses of Gateway"), "{}", a.via);
}
