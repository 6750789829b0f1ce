//! Hostile input against a real API server with the Istio CRDs: what a repository can hold
//! under a routing directory (a symlink to a parent, a FIFO named `x.yaml`, a symlink to
//! `/dev/zero` named `z.yaml`, a generated file of 1,025 documents, a file over the size
//! limit) is reported in one clear line and costs nothing else: the other files apply. Fields
//! the CRD schema refuses are refused before the API server sees them, located; what the API
//! server alone refuses (a CEL rule, a conflict) is located in the file too.
//!
//! Every command runs under a bound (a hang fails the test instead of hanging CI); no
//! assertion depends on how fast anything is.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};

/// Bounds every command: a hang is a failure, not a stuck test run.
const BOUND: Duration = Duration::from_secs(60);

struct Project {
    dir: tempfile::TempDir,
    ns: support::TestNs,
    client: kube::Client,
}

fn vs(name: &str, extra_route_field: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}.dev]\n  http:\n    - route:\n        - destination: {{host: goapp}}\n{extra_route_field}"
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Project {
    async fn new(prefix: &str, extra_config: &str) -> Project {
        let tc = support::cluster();
        let client = support::client_for(tc).await;
        let ns = support::TestNs::new_in(tc, &client, prefix).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("routing")).unwrap();
        std::fs::write(
            dir.path().join("meshloop.yaml"),
            format!(
                "instance: {0}\nnamespace: {0}\nsources:\n  - dir: routing\n{extra_config}",
                ns.name
            ),
        )
        .unwrap();
        Project { dir, ns, client }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    async fn cli(&self, args: &[&str]) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshloop"));
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(&support::cluster().kubeconfig)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        let out = tokio::time::timeout(BOUND, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("meshloop {args:?} hung"))
            .unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn vs_api(&self) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
        Api::namespaced_with(
            self.client.clone(),
            &self.ns.name,
            &ApiResource::from_gvk(&gvk),
        )
    }

    async fn exists(&self, name: &str) -> bool {
        self.vs_api().get_opt(name).await.unwrap().is_some()
    }
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[tokio::test]
async fn hostile_entries_are_said_once_and_the_other_files_apply() {
    let p = Project::new("hostile", "").await;
    p.write("routing/goapp.yaml", &vs("goapp", ""));
    std::os::unix::fs::symlink("..", p.path("routing/up")).unwrap();
    mkfifo(&p.path("routing/x.yaml"));
    std::os::unix::fs::symlink("/dev/zero", p.path("routing/z.yaml")).unwrap();
    let mut many = String::new();
    for i in 0..1025 {
        many.push_str(&format!("{}---\n", vs(&format!("gen-{i}"), "")));
    }
    p.write("routing/generated.yaml", &many);

    let run = p.cli(&["apply"]).await;
    // The generated file is an error (exit 1); the rest is applied.
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    for line in [
        "routing/generated.yaml: more than 1024 documents (limit `max_documents`): split the file",
        "routing/x.yaml: not a regular file (a FIFO); skipped",
        "routing/z.yaml: not a regular file (a character device, through a symlink); skipped",
        "routing/up: a symlink to ",
    ] {
        assert_eq!(
            run.stderr.matches(line).count(),
            1,
            "{line}\n{}",
            run.stderr
        );
    }
    assert!(p.exists("goapp").await);
    assert!(!p.exists("gen-0").await);

    let run = p.cli(&["check", "--offline"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("routing/generated.yaml: error[ML0001]: more than 1024 documents (limit `max_documents`): split the file"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("routing/x.yaml: not a regular file (a FIFO); skipped"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn limits_are_configurable_and_name_their_key() {
    let p = Project::new(
        "limits",
        "limits: {max_file_bytes: 16384, max_documents: 2000}\n",
    )
    .await;
    p.write("routing/goapp.yaml", &vs("goapp", ""));
    p.write(
        "routing/big.yaml",
        &format!("{}#{}\n", vs("big", ""), "x".repeat(20000)),
    );
    let mut many = String::new();
    for i in 0..1025 {
        many.push_str(&format!("---\n# {i}\n"));
    }
    many.push_str(&vs("many", ""));
    p.write("routing/many.yaml", &many);
    let run = p.cli(&["apply"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("routing/big.yaml: ") && run.stderr.contains("is over the limit of 16384 (`max_file_bytes`): split the file, or raise limits.max_file_bytes in meshloop.yaml"),
        "{}",
        run.stderr
    );
    assert!(p.exists("goapp").await);
    assert!(p.exists("many").await, "max_documents raised to 2000");
    assert!(!p.exists("big").await);
}

#[tokio::test]
async fn a_field_in_the_wrong_place_is_refused_before_the_api_server_with_its_position() {
    let p = Project::new("schema", "").await;
    p.write("routing/good.yaml", &vs("good", ""));
    p.write(
        "routing/goapp.yaml",
        &vs("goapp", "          timeout: 5s\n"),
    );
    let run = p.cli(&["check", "--offline"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let want = "routing/goapp.yaml:10:11: error[ML0002]: spec.http[0].route[0].timeout: unknown field `timeout` here; `timeout` is a field of spec.http[0]";
    assert!(run.stdout.contains(want), "{}", run.stdout);
    let run = p.cli(&["apply"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("routing/goapp.yaml:10:11: VirtualService goapp: spec.http[0].route[0].timeout: unknown field"),
        "{}",
        run.stderr
    );
    // Refused here, not by the API server: nothing was sent for it; the other file applied.
    assert!(!p.exists("goapp").await);
    assert!(p.exists("good").await);
}

/// The offline schema must refuse what the API server refuses, and accept what it accepts.
#[tokio::test]
async fn offline_schema_verdicts_agree_with_the_api_server() {
    let p = Project::new("agree", "").await;
    let cases: &[(&str, &str, bool)] = &[
        ("ok", "          weight: 100\n", true),
        ("unknown", "          timeout: 5s\n", false),
        ("type", "          weight: ten\n", false),
        (
            "bound",
            "          weight: 50\n        - destination: {host: goapp, port: {number: -1}}\n",
            false,
        ),
        (
            "intstr",
            "          headers: {request: {set: {x: \"1\"}}}\n",
            true,
        ),
    ];
    for (name, extra, valid) in cases {
        let text = vs(name, extra);
        let doc =
            &meshloop::manifest::yaml::parse_documents(&text, &Default::default()).unwrap()[0];
        let gk = meshloop::config::GroupKind::new("networking.istio.io", "VirtualService");
        let offline = meshloop::manifest::schema::validate(&gk, "v1", doc);
        assert_eq!(offline.is_empty(), *valid, "{name}: {offline:?}");
        let body = doc.to_json();
        let server = p
            .vs_api()
            .patch(
                name,
                &PatchParams::apply("agree-test"),
                &Patch::Apply(&body),
            )
            .await;
        assert_eq!(
            server.is_ok(),
            *valid,
            "{name}: the API server said {server:?}"
        );
    }
}

#[tokio::test]
async fn api_server_refusals_name_the_file_line_and_column() {
    let p = Project::new("refusal", "").await;
    // A CEL rule of the CRD (timeouts must be at least 1ms), which offline validation leaves
    // to the API server.
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.dev]\n  http:\n    - timeout: 0s\n      route:\n        - destination: {host: goapp}\n";
    p.write("routing/goapp.yaml", text);
    let run = p.cli(&["apply"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("routing/goapp.yaml:8:7: rejected by the API server: ")
            && run
                .stdout
                .contains("spec.http[0].timeout (routing/goapp.yaml:8:7): Invalid value"),
        "{}",
        run.stdout
    );
}

/// The embedded schemas are regenerated from the CRDs the local cluster installs; a change of
/// the pinned Istio version without `dev/gen-schemas.sh` fails here.
#[test]
fn the_embedded_schemas_are_those_of_the_installed_crds() {
    let out = std::process::Command::new(support::repo_root().join("dev/localcluster"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crds = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let text = std::fs::read_to_string(&crds).unwrap();
    let embedded = meshloop::manifest::schema::embedded();
    let source = embedded["source"].as_str().unwrap_or_default().to_string();
    assert!(
        crds.to_string_lossy().ends_with(&source) && !source.is_empty(),
        "the embedded schemas come from {source:?}, the cluster installs {}: run dev/gen-schemas.sh",
        crds.display()
    );
    let fresh = meshloop::manifest::schema::compact_text(&text, &source).unwrap();
    let fresh: serde_json::Value = serde_json::from_str(&fresh).unwrap();
    assert!(
        fresh == embedded,
        "src/manifest/istio-schemas.json is stale: run dev/gen-schemas.sh"
    );
}

#[tokio::test]
async fn a_conflict_names_the_file_line_and_column_of_the_field() {
    let p = Project::new("conflict", "").await;
    p.write("routing/goapp.yaml", &vs("goapp", ""));
    let run = p.cli(&["apply"]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    // Someone else takes spec.gateways first.
    let patch = serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "spec": {"gateways": ["other/gw"]},
    });
    p.vs_api()
        .patch(
            "goapp",
            &PatchParams::apply("editor"),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
    let text = vs("goapp", "").replace("  http:\n", "  gateways: [mesh]\n  http:\n");
    p.write("routing/goapp.yaml", &text);
    let run = p.cli(&["apply"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("routing/goapp.yaml:7:3: conflict: ")
            && run
                .stdout
                .contains(".spec.gateways (routing/goapp.yaml:7:3)"),
        "{}",
        run.stdout
    );
}
