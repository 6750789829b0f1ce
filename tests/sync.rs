//! The sync engine against a real API server with the Istio CRDs: files on disk become
//! exactly that set of objects, and bad input never costs an applied object.

mod support;

use std::path::Path;
use std::process::Output;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use meshloop::cluster::{Cluster, Target};
use meshloop::config::Config;
use meshloop::manifest::LoadError;
use meshloop::sources::SourceSet;
use meshloop::sync::{self, Outcome, SyncOptions, SyncReport};
use serde_json::json;

struct Project {
    dir: tempfile::TempDir,
    ns: support::TestNs,
    client: kube::Client,
    kubeconfig: std::path::PathBuf,
}

fn gateway(name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\nspec:\n  selector:\n    istio: ingress\n  servers:\n    - port: {{number: 80, name: http, protocol: HTTP}}\n      hosts: [{host}]\n"
    )
}

fn virtual_service(name: &str, host: &str, weight: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [{host}]\n  gateways: [goapp-gateway]\n  http:\n    - route:\n        - destination: {{host: goapp, subset: v1}}\n          weight: {weight}\n        - destination: {{host: goapp, subset: v2}}\n          weight: {}\n",
        100 - weight
    )
}

impl Project {
    async fn new(prefix: &str) -> Project {
        Self::new_in(support::cluster(), prefix).await
    }

    async fn new_in(tc: &support::TestCluster, prefix: &str) -> Project {
        let client = support::client_for(tc).await;
        let ns = support::TestNs::new_in(tc, &client, prefix).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("routing")).unwrap();
        std::fs::write(
            dir.path().join("meshloop.yaml"),
            format!(
                "instance: {0}\nnamespace: {0}\nsources:\n  - dir: routing\n",
                ns.name
            ),
        )
        .unwrap();
        Project {
            dir,
            ns,
            client,
            kubeconfig: tc.kubeconfig.clone(),
        }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn config(&self) -> Config {
        Config::load(&self.path("meshloop.yaml")).unwrap()
    }

    async fn sync_with(&self, prune: bool) -> (SyncReport, Vec<LoadError>) {
        let config = self.config();
        let cluster = Cluster::connect(&Target {
            kubeconfig: Some(self.kubeconfig.clone()),
            context: None,
        })
        .await
        .unwrap();
        let mut set = SourceSet::new(config.clone(), config.namespace.clone().unwrap());
        set.load_all();
        let (desired, errors) = set.desired();
        let opts = SyncOptions {
            instance: config.instance.clone(),
            owned: config.owned_kinds.clone(),
            prune,
            force_conflicts: config.force_conflicts,
            dry_run: false,
            previously_applied: Default::default(),
            restore_drift: true,
            only_known_kinds: false,
            cached_list: false,
        };
        (sync::sync(&cluster, &desired, &opts).await, errors)
    }

    async fn sync(&self) -> (SyncReport, Vec<LoadError>) {
        self.sync_with(true).await
    }

    fn api(&self, kind: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", "v1", kind));
        Api::namespaced_with(self.client.clone(), &self.ns.name, &ar)
    }

    async fn get(&self, kind: &str, name: &str) -> Option<DynamicObject> {
        self.api(kind).get_opt(name).await.unwrap()
    }

    fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshloop"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("MESHLOOP_HELM", support::bin_dir().join("helm"))
            .output()
            .unwrap()
    }
}

fn outcome_of<'a>(report: &'a SyncReport, name: &str) -> &'a Outcome {
    &report
        .objects
        .iter()
        .find(|o| o.key.name == name)
        .unwrap_or_else(|| panic!("{name} not in report: {report:?}"))
        .outcome
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test]
async fn create_update_and_unchanged_costs_no_write() {
    let p = Project::new("sync-cu").await;
    p.write("routing/gw.yaml", &gateway("goapp-gateway", "goapp.dev"));
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    let (r, errors) = p.sync().await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.counts.created, 2);

    let vs = p.get("VirtualService", "goapp").await.expect("created");
    let labels = vs.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "meshloop");
    assert_eq!(labels["meshloop.dev/instance"], p.ns.name);
    assert_eq!(
        vs.metadata.annotations.clone().unwrap()["meshloop.dev/source"],
        "routing/vs.yaml:1"
    );
    assert_eq!(vs.data["spec"]["http"][0]["route"][0]["weight"], 90);
    let rv = vs.metadata.resource_version.clone();

    // Nothing changed: nothing is sent, so the resourceVersion stays.
    let (r, _) = p.sync().await;
    assert_eq!(r.counts.unchanged, 2, "{r:?}");
    assert_eq!(r.counts.writes, 0);
    let vs = p.get("VirtualService", "goapp").await.unwrap();
    assert_eq!(vs.metadata.resource_version, rv);

    // A change to one object changes only that object.
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 70),
    );
    let (r, _) = p.sync().await;
    assert_eq!(
        outcome_of(&r, "goapp"),
        &Outcome::Changed {
            fields: vec![
                "spec.http[0].route[0].weight".into(),
                "spec.http[0].route[1].weight".into()
            ]
        }
    );
    assert_eq!(outcome_of(&r, "goapp-gateway"), &Outcome::Unchanged);
    assert_eq!(r.counts.writes, 1);
    let vs = p.get("VirtualService", "goapp").await.unwrap();
    assert_eq!(vs.data["spec"]["http"][0]["route"][0]["weight"], 70);
}

#[tokio::test]
async fn removed_field_is_removed_from_the_cluster() {
    let p = Project::new("sync-rm").await;
    p.write(
        "routing/vs.yaml",
        &format!(
            "{}  exportTo: [\".\"]\n",
            virtual_service("goapp", "goapp.dev", 90)
        ),
    );
    p.sync().await;
    assert!(
        p.get("VirtualService", "goapp").await.unwrap().data["spec"]
            .get("exportTo")
            .is_some()
    );
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    let (r, _) = p.sync().await;
    assert!(
        matches!(outcome_of(&r, "goapp"), Outcome::Changed { .. }),
        "{r:?}"
    );
    assert!(
        p.get("VirtualService", "goapp").await.unwrap().data["spec"]
            .get("exportTo")
            .is_none()
    );
}

#[tokio::test]
async fn prune_on_file_delete_but_not_on_a_parse_error() {
    let p = Project::new("sync-prune").await;
    p.write("routing/gw.yaml", &gateway("goapp-gateway", "goapp.dev"));
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    p.write(
        "routing/other.yaml",
        &virtual_service("other", "other.dev", 50),
    );
    p.sync().await;

    // A broken file: its object stays as it was, and nothing is pruned.
    p.write("routing/vs.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.dev\n");
    std::fs::remove_file(p.path("routing/other.yaml")).unwrap();
    let (r, errors) = p.sync().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .to_string()
            .starts_with("routing/vs.yaml:6:10: invalid YAML: unclosed bracket"),
        "{}",
        errors[0]
    );
    assert_eq!(r.counts.pruned, 0);
    assert!(!r.prune_blocked.is_empty());
    assert!(p.get("VirtualService", "goapp").await.is_some());
    assert!(
        p.get("VirtualService", "other").await.is_some(),
        "not pruned while a file is broken"
    );

    // Fixed: now the deleted file's object goes, and only it.
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    let (r, errors) = p.sync().await;
    assert!(errors.is_empty());
    assert_eq!(outcome_of(&r, "other"), &Outcome::Pruned);
    assert_eq!(r.counts.pruned, 1);
    assert!(p.get("VirtualService", "other").await.is_none());
    assert!(p.get("VirtualService", "goapp").await.is_some());
    assert!(p.get("Gateway", "goapp-gateway").await.is_some());
}

#[tokio::test]
async fn prune_never_touches_objects_without_both_labels() {
    let p = Project::new("sync-labels").await;
    // Someone else's object in the same namespace, and one that carries only our instance
    // label.
    for (name, labels) in [
        ("theirs", json!({})),
        ("half", json!({"meshloop.dev/instance": p.ns.name})),
    ] {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": p.ns.name, "labels": labels},
            "spec": {"hosts": [format!("{name}.dev")]}
        }))
        .unwrap();
        p.api("VirtualService")
            .patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(&obj))
            .await
            .unwrap();
    }
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    let (r, _) = p.sync().await;
    assert_eq!(r.counts.pruned, 0);
    assert!(p.get("VirtualService", "theirs").await.is_some());
    assert!(p.get("VirtualService", "half").await.is_some());
}

#[tokio::test]
async fn no_prune_flag_and_setting() {
    let p = Project::new("sync-noprune").await;
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    p.sync().await;
    std::fs::remove_file(p.path("routing/vs.yaml")).unwrap();
    let out = p.cli(&["apply", "--no-prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.get("VirtualService", "goapp").await.is_some());
    let (r, _) = p.sync_with(false).await;
    assert_eq!(r.counts.pruned, 0);
    assert!(p.get("VirtualService", "goapp").await.is_some());
    let out = p.cli(&["apply"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("pruned"),
        "{}",
        text(&out.stdout)
    );
    assert!(p.get("VirtualService", "goapp").await.is_none());
}

#[tokio::test]
async fn object_without_name_is_an_error_for_that_object_only() {
    let p = Project::new("sync-noname").await;
    p.write(
        "routing/all.yaml",
        &format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  labels: {{a: b}}\nspec:\n  hosts: [x.dev]\n",
            gateway("goapp-gateway", "goapp.dev")
        ),
    );
    let out = p.cli(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("routing/all.yaml:14:1: VirtualService <unnamed>: metadata.name: missing"),
        "{stderr}"
    );
    assert!(
        p.get("Gateway", "goapp-gateway").await.is_some(),
        "the good object is applied"
    );
}

#[tokio::test]
async fn duplicates_name_both_places_and_apply_neither() {
    let p = Project::new("sync-dup").await;
    p.write("routing/a.yaml", &virtual_service("goapp", "goapp.dev", 90));
    p.write(
        "routing/b.yaml",
        &format!("# a copy\n{}", virtual_service("goapp", "goapp.dev", 50)),
    );
    let (r, errors) = p.sync().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].to_string();
    assert!(
        msg.contains("routing/a.yaml:1:1") && msg.contains("routing/b.yaml:2:1"),
        "{msg}"
    );
    assert!(msg.contains("defined more than once"), "{msg}");
    assert!(r.objects.is_empty(), "{r:?}");
    assert!(p.get("VirtualService", "goapp").await.is_none());

    // Already applied, then duplicated: the live object is kept as it was.
    std::fs::remove_file(p.path("routing/b.yaml")).unwrap();
    p.sync().await;
    p.write("routing/b.yaml", &virtual_service("goapp", "goapp.dev", 50));
    let (r, errors) = p.sync().await;
    assert_eq!(errors.len(), 1);
    assert_eq!(r.counts.pruned + r.counts.changed, 0);
    let vs = p.get("VirtualService", "goapp").await.unwrap();
    assert_eq!(vs.data["spec"]["http"][0]["route"][0]["weight"], 90);
}

#[tokio::test]
async fn conflict_with_another_field_manager_is_reported_not_forced() {
    let p = Project::new("sync-conflict").await;
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    p.sync().await;
    // Another manager takes spec.hosts by force.
    let theirs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "goapp", "namespace": p.ns.name},
        "spec": {"hosts": ["theirs.dev"]}
    }))
    .unwrap();
    p.api("VirtualService")
        .patch(
            "goapp",
            &PatchParams::apply("kubectl-edit").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    p.write("routing/vs.yaml", &virtual_service("goapp", "mine.dev", 90));
    let (r, _) = p.sync().await;
    match outcome_of(&r, "goapp") {
        Outcome::Conflicted { message } => {
            assert!(
                message.contains("kubectl-edit"),
                "names the manager: {message}"
            );
            assert!(
                message.contains(".spec.hosts"),
                "names the field: {message}"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(!r.ok());
    let vs = p.get("VirtualService", "goapp").await.unwrap();
    assert_eq!(vs.data["spec"]["hosts"][0], "theirs.dev", "not forced");

    let out = p.cli(&["apply", "--force-conflicts"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let vs = p.get("VirtualService", "goapp").await.unwrap();
    assert_eq!(vs.data["spec"]["hosts"][0], "mine.dev");
}

#[tokio::test]
async fn missing_crds_give_one_error_per_kind() {
    let p = Project::new_in(support::bare_cluster(), "sync-nocrd").await;
    p.write("routing/vs.yaml", &virtual_service("a", "a.dev", 90));
    p.write("routing/vs2.yaml", &virtual_service("b", "b.dev", 90));
    p.write("routing/gw.yaml", &gateway("goapp-gateway", "goapp.dev"));
    let out = p.cli(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Istio CRDs are not installed"))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one per kind (Gateway, VirtualService): {stderr}"
    );
    assert!(stderr.contains("run dev/up.sh"), "{stderr}");
}

#[tokio::test]
async fn kind_that_does_not_exist_is_one_clear_error() {
    let p = Project::new("sync-nokind").await;
    p.write("meshloop.yaml", &format!("instance: {0}\nnamespace: {0}\nowned_kinds: [Frobnicator.example.com]\nsources:\n  - dir: routing\n", p.ns.name));
    p.write("routing/f.yaml", "apiVersion: example.com/v1\nkind: Frobnicator\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Frobnicator\nmetadata: {name: b}\n");
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    let out = p.cli(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr
            .matches("Frobnicator.example.com is not served")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        p.get("VirtualService", "goapp").await.is_some(),
        "other kinds still apply"
    );
}

#[tokio::test]
async fn namespace_defaulting_and_explicit_namespaces() {
    let p = Project::new("sync-ns").await;
    let other = support::TestNs::new(&p.client, "sync-ns-other").await;
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    p.write(
        "routing/elsewhere.yaml",
        &virtual_service("elsewhere", "e.dev", 90).replace(
            "  name: elsewhere\n",
            &format!("  name: elsewhere\n  namespace: {}\n", other.name),
        ),
    );
    let (r, errors) = p.sync().await;
    assert!(errors.is_empty() && r.ok(), "{errors:?} {r:?}");
    assert!(
        p.get("VirtualService", "goapp").await.is_some(),
        "defaulted to the config namespace"
    );
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "VirtualService",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(p.client.clone(), &other.name, &ar);
    assert!(api.get_opt("elsewhere").await.unwrap().is_some());
}

#[tokio::test]
async fn helm_chart_source_takes_only_owned_kinds() {
    let p = Project::new("sync-chart").await;
    let chart = support::repo_root().join("charts/goapp");
    p.write(
        "meshloop.yaml",
        &format!(
            "instance: {0}\nnamespace: {0}\nsources:\n  - chart: {1}\n    release: goapp\n    values: [{1}/values-dev.yaml]\n",
            p.ns.name,
            chart.display()
        ),
    );
    let out = p.cli(&["apply", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut kinds: Vec<String> = v["report"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["outcome"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "DestinationRule created",
            "Gateway created",
            "VirtualService created"
        ]
    );
    assert!(p.get("Gateway", "goapp-gateway").await.is_some());
    let vs = p.get("VirtualService", "goapp").await.unwrap();
    let source = &vs.metadata.annotations.unwrap()["meshloop.dev/source"];
    assert!(source.contains("charts/goapp/templates/"), "{source}");

    // A failing render shows helm's message and keeps the chart's objects.
    p.write(
        "meshloop.yaml",
        &format!(
            "instance: {0}\nnamespace: {0}\nsources:\n  - chart: {1}\n    release: goapp\n    values: [{2}]\n",
            p.ns.name,
            chart.display(),
            p.path("missing-values.yaml").display()
        ),
    );
    let out = p.cli(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("helm template") && stderr.contains("missing-values.yaml"),
        "{stderr}"
    );
    assert!(p.get("VirtualService", "goapp").await.is_some(), "kept");
}

#[tokio::test]
async fn diff_lists_changes_without_applying() {
    let p = Project::new("sync-diff").await;
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    p.write("routing/old.yaml", &virtual_service("old", "old.dev", 90));
    p.sync().await;
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 60),
    );
    p.write("routing/gw.yaml", &gateway("goapp-gateway", "goapp.dev"));
    std::fs::remove_file(p.path("routing/old.yaml")).unwrap();
    let out = p.cli(&["diff"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = |word: &str, name: &str| {
        stdout
            .lines()
            .any(|l| l.starts_with(word) && l.contains(name))
    };
    assert!(line("create", "/goapp-gateway"), "{stdout}");
    assert!(line("change", "/goapp "), "{stdout}");
    assert!(
        stdout.contains("~ spec.http[0].route[0].weight"),
        "{stdout}"
    );
    assert!(line("prune", "/old"), "{stdout}");
    // Nothing happened.
    assert!(p.get("Gateway", "goapp-gateway").await.is_none());
    assert!(p.get("VirtualService", "old").await.is_some());
    let vs = p.get("VirtualService", "goapp").await.unwrap();
    assert_eq!(vs.data["spec"]["http"][0]["route"][0]["weight"], 90);
}

#[tokio::test]
async fn config_errors_exit_2_with_location() {
    let p = Project::new("sync-cfg").await;
    p.write("meshloop.yaml", "instance: x\nsoruces: []\n");
    let out = p.cli(&["apply"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("meshloop.yaml:2:1: unknown key `soruces`"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn wrong_field_type_is_refused_with_path_and_position() {
    let p = Project::new("sync-type").await;
    p.write(
        "routing/goapp.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.dev]\n  http:\n    - route:\n        - destination:\n            host: [goapp]\n",
    );
    let out = p.cli(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("routing/goapp.yaml:10:19: VirtualService goapp: spec.http[0].route[0].destination.host: expected a string, found a list"),
        "{stderr}"
    );
    assert!(p.get("VirtualService", "goapp").await.is_none());
}

#[test]
fn the_sample_config_parses() {
    let cfg = Config::load(&support::repo_root().join("meshloop.yaml")).unwrap();
    assert!(!cfg.sources.is_empty());
    let _ = Path::new(&cfg.base);
}

/// Applies an object as another client would, with the given labels.
async fn apply_foreign(p: &Project, kind: &str, name: &str, labels: serde_json::Value) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": kind,
        "metadata": {"name": name, "namespace": p.ns.name, "labels": labels},
        "spec": {"hosts": [format!("{name}.dev")]}
    }))
    .unwrap();
    p.api(kind)
        .patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(&obj))
        .await
        .unwrap();
}

#[tokio::test]
async fn down_deletes_every_object_of_the_instance_and_nothing_else() {
    let p = Project::new("sync-down").await;
    p.write("routing/gw.yaml", &gateway("goapp-gateway", "goapp.dev"));
    p.write(
        "routing/vs.yaml",
        &virtual_service("goapp", "goapp.dev", 90),
    );
    let (r, _) = p.sync().await;
    assert!(r.ok(), "{r:?}");
    let ours =
        json!({"app.kubernetes.io/managed-by": "meshloop", "meshloop.dev/instance": p.ns.name});
    let other =
        json!({"app.kubernetes.io/managed-by": "meshloop", "meshloop.dev/instance": "other"});
    let half = json!({"meshloop.dev/instance": p.ns.name});
    apply_foreign(&p, "VirtualService", "other-instance", other).await;
    apply_foreign(&p, "VirtualService", "half", half).await;
    apply_foreign(&p, "VirtualService", "unlabelled", json!({})).await;
    // An object of the instance that no file defines any more is still the instance's.
    apply_foreign(&p, "ServiceEntry", "left-over", ours).await;
    // down reads no routing file: a broken one changes nothing.
    p.write("routing/vs.yaml", "kind: [\n");

    let out = p.cli(&["down", "--dry-run", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = v["report"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["outcome"] == "pruned")
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["goapp", "goapp-gateway", "left-over"], "{v:#}");
    assert!(p.get("VirtualService", "goapp").await.is_some());

    let out = p.cli(&["down"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("deleted 3 objects of instance {}", p.ns.name)),
        "{stdout}"
    );
    assert!(p.get("VirtualService", "goapp").await.is_none());
    assert!(p.get("Gateway", "goapp-gateway").await.is_none());
    assert!(p.get("ServiceEntry", "left-over").await.is_none());
    for name in ["other-instance", "half", "unlabelled"] {
        assert!(p.get("VirtualService", name).await.is_some(), "{name}");
    }
    // Nothing left: a second down deletes nothing and succeeds.
    let out = p.cli(&["down"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("deleted 0 objects"));
}

#[tokio::test]
async fn down_exit_codes_are_those_of_apply() {
    let p = Project::new("sync-down-codes").await;
    p.write("meshloop.yaml", "instance: x\nsoruces: []\n");
    let out = p.cli(&["down"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("meshloop.yaml:2:1"));

    p.write("meshloop.yaml", "instance: x\n");
    p.write(
        "nowhere.kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshloop"))
        .args(["down", "--kubeconfig"])
        .arg(p.path("nowhere.kubeconfig"))
        .current_dir(p.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cluster unreachable"),
        "{}",
        text(&out.stderr)
    );
}
