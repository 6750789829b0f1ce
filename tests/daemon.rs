//! `meshloop up` against a real API server: saves become applied objects, storms coalesce,
//! broken saves cost nothing, outages heal, drift is restored, rollouts are followed, and the
//! HTTP API answers (and refuses) as documented.
//!
//! Waits are on real signals: the daemon's status channel, and watches on the API server.
//! The timeouts only bound a hang; no assertion depends on how fast anything is.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::wait::await_condition;
use meshloop::engine::Status;
use serde_json::json;

/// Bounds every wait; generous because CI machines are shared.
const WAIT: Duration = Duration::from_secs(60);

struct Running {
    dir: tempfile::TempDir,
    ns: support::TestNs,
    client: kube::Client,
    daemon: support::InProcess,
}

/// The subsets the VirtualServices route to, so analysis finds nothing to hold back.
const SUBSETS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: goapp\nspec:\n  host: goapp\n  subsets:\n    - {name: v1, labels: {version: v1}}\n    - {name: v2, labels: {version: v2}}\n";

fn vs(name: &str, weight: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}.dev]\n  http:\n    - route:\n        - destination: {{host: goapp, subset: v1}}\n          weight: {weight}\n        - destination: {{host: goapp, subset: v2}}\n          weight: {}\n",
        100 - weight
    )
}

impl Running {
    async fn start(tc: &support::TestCluster, prefix: &str, extra_config: &str) -> Running {
        let client = support::client_for(tc).await;
        let ns = support::TestNs::new_in(tc, &client, prefix).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("routing")).unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("routing/goapp.yaml"), vs("goapp", 90)).unwrap();
        std::fs::write(dir.path().join("routing/subsets.yaml"), SUBSETS).unwrap();
        std::fs::write(
            dir.path().join("meshloop.yaml"),
            format!(
                "instance: {0}\nnamespace: {0}\nsources:\n  - dir: routing\nwatch: [app]\n{1}{extra_config}",
                ns.name,
                // These tests are about syncing; the gateway path is tests/verify.rs's.
                if extra_config.contains("verify:") { "" } else { "verify: {required_for_ready: false}\n" }
            ),
        )
        .unwrap();
        let daemon =
            support::InProcess::start(&dir.path().join("meshloop.yaml"), &tc.kubeconfig).await;
        let r = Running {
            dir,
            ns,
            client,
            daemon,
        };
        r.wait_status("the first sync", |s| s.syncs >= 1).await;
        r
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn status(&self) -> Status {
        self.daemon.handles.status.borrow().clone()
    }

    async fn wait_status(&self, what: &str, cond: impl Fn(&Status) -> bool) -> Status {
        let mut rx = self.daemon.handles.status.clone();
        let r = tokio::time::timeout(WAIT, rx.wait_for(|s| cond(s))).await;
        match r {
            Ok(Ok(s)) => s.clone(),
            _ => panic!("timed out waiting for {what}; status: {:#?}", self.status()),
        }
    }

    fn vs_api(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        ));
        Api::namespaced_with(self.client.clone(), &self.ns.name, &ar)
    }

    /// Waits, through a watch on the API server, until the VirtualService has `weight` first.
    async fn wait_weight(&self, name: &str, weight: u64) {
        let cond = move |o: Option<&DynamicObject>| {
            o.and_then(|o| o.data.pointer("/spec/http/0/route/0/weight")?.as_u64()) == Some(weight)
        };
        tokio::time::timeout(WAIT, await_condition(self.vs_api(), name, cond))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{name} never got weight {weight}; status: {:#?}",
                    self.status()
                )
            })
            .unwrap();
    }

    async fn weight(&self, name: &str) -> Option<u64> {
        let o = self.vs_api().get_opt(name).await.unwrap()?;
        o.data.pointer("/spec/http/0/route/0/weight")?.as_u64()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.addr)
    }

    async fn stop(self) {
        self.daemon.stop().await;
    }
}

#[tokio::test]
async fn save_is_applied_and_atomic_save_is_one_change() {
    let r = Running::start(support::cluster(), "up-save", "").await;
    r.wait_weight("goapp", 90).await;
    assert!(r.status().watching);

    std::fs::write(r.path("routing/goapp.yaml"), vs("goapp", 80)).unwrap();
    r.wait_weight("goapp", 80).await;
    // The cluster shows the write a moment before the sync that made it is published.
    let syncs = r
        .wait_status("the sync of the save", |s| {
            !s.syncing
                && s.last_sync
                    .as_ref()
                    .is_some_and(|l| l.trigger == meshloop::engine::Trigger::Files)
        })
        .await
        .syncs;

    // Atomic save, as editors do it: a temp file renamed over the target.
    std::fs::write(r.path("routing/.goapp.yaml.tmp"), vs("goapp", 70)).unwrap();
    std::fs::rename(
        r.path("routing/.goapp.yaml.tmp"),
        r.path("routing/goapp.yaml"),
    )
    .unwrap();
    r.wait_weight("goapp", 70).await;
    let s = r
        .wait_status("the sync of the atomic save", |s| {
            s.syncs > syncs && !s.syncing
        })
        .await;
    let last = s.last_sync.unwrap();
    assert!(last.ok, "{last:?}");
    assert_eq!(last.report.counts.changed, 1);
    assert!(last.save_to_applied_ms.is_some());
    assert_eq!(s.syncs, syncs + 1, "one save, one sync");
    r.stop().await;
}

#[tokio::test]
async fn a_storm_of_saves_never_falls_behind_and_the_last_content_wins() {
    let r = Running::start(support::cluster(), "up-storm", "").await;
    let before = r.status().syncs;
    for i in 0..100u32 {
        std::fs::write(r.path("routing/goapp.yaml"), vs("goapp", i % 90 + 1)).unwrap();
        // Spread the 100 saves over about one second, as a save-on-keystroke editor would.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last_weight = 99 % 90 + 1;
    r.wait_weight("goapp", last_weight as u64).await;
    let s = r
        .wait_status("the storm to settle", |s| {
            !s.syncing && s.last_sync.as_ref().is_some_and(|l| l.ok)
        })
        .await;
    // Each save is a finished file (written, then closed), so it may ship on its own; saves
    // that land while a sync runs join the next one. What must hold: never more than one sync
    // per save (a save's write and close are one change), and the last content wins.
    let syncs = s.syncs - before;
    assert!((1..=100).contains(&syncs), "100 saves took {syncs} syncs");
    assert_eq!(r.weight("goapp").await, Some(last_weight as u64));
    assert!(s.last_sync.unwrap().report.counts.changed <= 1);
    r.stop().await;
}

#[tokio::test]
async fn broken_save_keeps_the_object_and_the_fix_applies() {
    let r = Running::start(support::cluster(), "up-broken", "").await;
    r.wait_weight("goapp", 90).await;
    let syncs = r.status().syncs;
    std::fs::write(r.path("routing/goapp.yaml"), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec: {hosts: [\n").unwrap();
    let s = r
        .wait_status("the broken save's sync", |s| s.syncs > syncs && !s.syncing)
        .await;
    let last = s.last_sync.clone().unwrap();
    assert!(!last.ok);
    assert!(
        last.load_errors[0]
            .to_string()
            .starts_with("routing/goapp.yaml:5:"),
        "{:?}",
        last.load_errors
    );
    assert!(
        s.not_ready_reason()
            .unwrap()
            .contains("routing/goapp.yaml:5:")
    );
    assert_eq!(
        r.weight("goapp").await,
        Some(90),
        "the applied object is kept"
    );

    // readyz says why.
    let resp = reqwest_get(&r.url("/readyz")).await;
    assert_eq!(resp.0, 503);
    assert!(resp.1.contains("routing/goapp.yaml:5:"), "{}", resp.1);

    std::fs::write(r.path("routing/goapp.yaml"), vs("goapp", 60)).unwrap();
    r.wait_weight("goapp", 60).await;
    r.wait_status("ready again", |s| s.not_ready_reason().is_none())
        .await;
    r.stop().await;
}

#[tokio::test]
async fn api_server_outage_during_saves_converges_to_the_final_files() {
    let tc = support::private_cluster("outage");
    let r = Running::start(&tc, "up-outage", "").await;
    r.wait_weight("goapp", 90).await;
    support::pause(&tc);
    for w in [10, 20, 30] {
        std::fs::write(r.path("routing/goapp.yaml"), vs("goapp", w)).unwrap();
        std::fs::write(r.path("routing/second.yaml"), vs("second", w)).unwrap();
        let syncs = r.status().syncs;
        r.wait_status("a sync attempt during the outage", |s| {
            s.syncs > syncs && !s.syncing
        })
        .await;
    }
    let s = r.status();
    assert_eq!(s.cluster.reachable, Some(false), "{s:#?}");
    assert!(
        s.not_ready_reason()
            .unwrap()
            .starts_with("cluster unreachable")
    );
    support::resume(&tc);
    r.wait_weight("goapp", 30).await;
    r.wait_weight("second", 30).await;
    r.wait_status("reachable again", |s| s.cluster.reachable == Some(true))
        .await;
    r.stop().await;
}

#[tokio::test]
async fn drift_is_restored() {
    let r = Running::start(support::cluster(), "up-drift", "").await;
    r.wait_weight("goapp", 90).await;
    // Someone edits a field meshloop owns, as `kubectl edit` would.
    let patch = json!({"spec": {"http": [{"route": [{"destination": {"host": "goapp", "subset": "v1"}, "weight": 5}]}]}});
    r.vs_api()
        .patch("goapp", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    r.wait_weight("goapp", 90).await;
    let s = r
        .wait_status("the drift record", |s| !s.drift.is_empty())
        .await;
    assert_eq!(s.drift[0].drift, meshloop::sync::Drift::Edited);
    assert!(s.drift[0].restored);

    // And deletes it.
    r.vs_api()
        .delete("goapp", &Default::default())
        .await
        .unwrap();
    r.wait_weight("goapp", 90).await;
    let s = r
        .wait_status("the delete drift record", |s| s.drift.len() >= 2)
        .await;
    assert_eq!(s.drift[1].drift, meshloop::sync::Drift::Deleted);
    r.stop().await;
}

#[tokio::test]
async fn rollout_completion_fires_the_verification_hook() {
    let r = Running::start(support::cluster(), "up-rollout", "").await;
    let deployments: Api<Deployment> = Api::namespaced(r.client.clone(), &r.ns.name);
    let dep: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "goapp-v1"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "goapp"}},
                 "template": {"metadata": {"labels": {"app": "goapp"}}, "spec": {"containers": [{"name": "goapp", "image": "goapp:1"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &dep)
        .await
        .unwrap();
    r.wait_status("the Deployment to be seen", |s| {
        s.rollout.deployments.iter().any(|d| d.name == "goapp-v1")
    })
    .await;
    let requested = r.status().verifications_requested;

    // An app source change: a rollout is now pending.
    std::fs::write(r.path("app/main.go"), "package main\n").unwrap();
    r.wait_status("rollout pending", |s| s.rollout.pending)
        .await;

    // Tilt deploys a new image; the test plays the Deployment controller and the kubelet.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "goapp", "image": "goapp:2"}]}}}});
    let updated = deployments
        .patch(
            "goapp-v1",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    let generation = updated.metadata.generation.unwrap();
    r.wait_status("the new generation", |s| {
        s.rollout
            .deployments
            .iter()
            .any(|d| d.generation == generation)
    })
    .await;
    assert!(
        r.status().rollout.pending,
        "not complete before the controller caught up"
    );
    let status = json!({"status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
    deployments
        .patch_status("goapp-v1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let s = r
        .wait_status("rollout complete", |s| s.rollout.completed == 1)
        .await;
    assert!(!s.rollout.pending);
    assert!(s.verifications_requested > requested, "the hook fired");
    r.stop().await;
}

/// A tiny HTTP/1.1 client over a TcpStream: enough for these requests, and it lets the
/// tests set any Host and Origin header they want.
async fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

async fn reqwest_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    raw_request(addr, "GET", path, &[]).await
}

#[tokio::test]
async fn http_api_endpoints_and_refusals() {
    let r = Running::start(support::cluster(), "up-http", "").await;
    r.wait_status("ready", |s| s.not_ready_reason().is_none())
        .await;
    let addr = r.daemon.addr.to_string();

    let (code, body) = raw_request(&addr, "GET", "/healthz", &[]).await;
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = raw_request(&addr, "GET", "/readyz", &[]).await;
    assert_eq!((code, body.trim()), (200, "ready"));

    let (code, body) = raw_request(&addr, "GET", "/status", &[]).await;
    assert_eq!(code, 200);
    let v: serde_json::Value =
        serde_json::from_str(body.trim_end_matches(|c: char| c.is_whitespace()))
            .unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["instance"], r.ns.name);
    assert_eq!(v["ready"], true);
    assert_eq!(v["watching"], true);
    assert_eq!(v["last_sync"]["objects"][0]["name"], "goapp");

    let syncs = r.status().syncs;
    let (code, body) = raw_request(&addr, "POST", "/sync", &[]).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["trigger"], "request");
    assert_eq!(
        v["counts"]["unchanged"], 2,
        "the VirtualService and its DestinationRule"
    );
    assert!(r.status().syncs > syncs);

    let (code, body) = raw_request(&addr, "GET", "/metrics", &[]).await;
    assert_eq!(code, 200);
    for series in [
        "meshloop_syncs_total{result=\"ok\"}",
        "meshloop_sync_duration_seconds_count",
        "meshloop_objects_total{outcome=\"unchanged\"}",
        "meshloop_save_to_applied_seconds_count",
        "meshloop_last_sync_timestamp_seconds",
    ] {
        assert!(body.contains(series), "{series} missing:\n{body}");
    }

    refuses_other_sites(&addr).await;
    let (code, _) = raw_request(&addr, "GET", "/nope", &[]).await;
    assert_eq!(code, 404);
    r.stop().await;
}

/// A loopback name in Host is fine, anything else is DNS rebinding; a POST from another
/// site (Origin, Sec-Fetch-Site) is refused, Tilt's own UI origin on loopback is not.
async fn refuses_other_sites(addr: &str) {
    let addr = addr.to_string();
    let (code, _) = raw_request(&addr, "GET", "/status", &[("Host", "localhost:8787")]).await;
    assert_eq!(code, 200);
    let (code, body) = raw_request(
        &addr,
        "GET",
        "/status",
        &[("Host", "attacker.example:8787")],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let (code, _) = raw_request(
        &addr,
        "POST",
        "/sync",
        &[("Origin", "https://attacker.example")],
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = raw_request(&addr, "POST", "/sync", &[("Sec-Fetch-Site", "cross-site")]).await;
    assert_eq!(code, 403);
    let (code, _) = raw_request(
        &addr,
        "POST",
        "/sync",
        &[("Origin", "http://localhost:10350")],
    )
    .await;
    assert_eq!(code, 200, "Tilt's own UI origin is loopback");
}

#[tokio::test]
async fn error_findings_hold_back_their_object_and_explain_answers() {
    let r = Running::start(support::cluster(), "up-findings", "").await;
    r.wait_weight("goapp", 90).await;
    let syncs = r.status().syncs;
    // A VirtualService bound to a Gateway that exists nowhere: ML0101, an error.
    let broken = vs("goapp", 40).replace(
        "  hosts: [goapp.dev]\n",
        "  hosts: [goapp.dev]\n  gateways: [no-such-gateway]\n",
    );
    std::fs::write(r.path("routing/goapp.yaml"), broken).unwrap();
    let s = r
        .wait_status("the sync of the broken route", |s| {
            s.syncs > syncs && !s.syncing
        })
        .await;
    let last = s.last_sync.clone().unwrap();
    let f = last
        .findings
        .iter()
        .find(|f| f.code == "ML0101")
        .unwrap_or_else(|| panic!("{:?}", last.findings));
    assert_eq!((f.file.as_str(), f.line), ("routing/goapp.yaml", 7));
    assert_eq!(last.held_back.len(), 1, "{last:?}");
    assert!(s.not_ready_reason().unwrap().contains("ML0101"));
    assert_eq!(
        r.weight("goapp").await,
        Some(90),
        "held back: the cluster keeps the last good route"
    );

    std::fs::write(r.path("routing/goapp.yaml"), vs("goapp", 40)).unwrap();
    r.wait_weight("goapp", 40).await;
    r.wait_status("ready again", |s| s.not_ready_reason().is_none())
        .await;

    let addr = r.daemon.addr.to_string();
    let (code, body) = raw_request(&addr, "GET", "/explain?host=goapp.dev&path=/", &[]).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["request"]["host"], "goapp.dev");
    assert!(!v["hops"].as_array().unwrap().is_empty(), "{v}");
    r.stop().await;
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    use std::io::{BufRead, BufReader};
    let tc = support::cluster();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("routing")).unwrap();
    std::fs::write(dir.path().join("routing/goapp.yaml"), vs("sigterm", 50)).unwrap();
    std::fs::write(dir.path().join("routing/subsets.yaml"), SUBSETS).unwrap();
    std::fs::write(
        dir.path().join("meshloop.yaml"),
        "instance: sigterm\nnamespace: default\nsources:\n  - dir: routing\nverify: {required_for_ready: false}\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meshloop"))
        .args(["up", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&tc.kubeconfig)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    // Wait for the first sync's log line: the daemon is fully up.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("synced 2 objects");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("synced 2 objects")),
        "{seen:?}"
    );
    let pid = child.id() as i32;
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("meshloop stopped")),
        "{rest:?}"
    );
}

/// Waits, through a watch on the API server, until the VirtualService is gone.
async fn wait_gone(r: &Running, name: &str) {
    let gone = |o: Option<&DynamicObject>| o.is_none();
    tokio::time::timeout(WAIT, await_condition(r.vs_api(), name, gone))
        .await
        .unwrap_or_else(|_| panic!("{name} was never pruned; status: {:#?}", r.status()))
        .unwrap();
}

#[tokio::test]
async fn hostile_entries_appearing_under_a_watched_directory_never_stop_the_loop() {
    let r = Running::start(support::cluster(), "up-hostile", "").await;
    r.wait_weight("goapp", 90).await;
    // A symlink to a parent (a loop), a FIFO and a symlink to /dev/zero, named as sources.
    std::os::unix::fs::symlink("..", r.path("routing/up")).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(r.path("routing/x.yaml"))
        .status()
        .unwrap();
    assert!(st.success());
    std::os::unix::fs::symlink("/dev/zero", r.path("routing/z.yaml")).unwrap();
    std::fs::write(r.path("routing/goapp.yaml"), vs("goapp", 80)).unwrap();
    r.wait_weight("goapp", 80).await;
    let s = r
        .wait_status("the notes of the hostile entries", |s| {
            s.last_sync.as_ref().is_some_and(|l| {
                l.source_notes.len() == 3
                    && l.source_notes
                        .iter()
                        .any(|n| n == "routing/x.yaml: not a regular file (a FIFO); skipped")
            })
        })
        .await;
    let notes = s.last_sync.unwrap().source_notes;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("routing/up: a symlink to ") && n.ends_with("a loop; skipped")),
        "{notes:?}"
    );

    // A directory replaced by a file: what it held is pruned, the rest stays.
    std::fs::create_dir(r.path("routing/sub")).unwrap();
    std::fs::write(r.path("routing/sub/extra.yaml"), vs("extra", 50)).unwrap();
    r.wait_weight("extra", 50).await;
    std::fs::remove_dir_all(r.path("routing/sub")).unwrap();
    std::fs::write(r.path("routing/sub"), "not a directory any more\n").unwrap();
    wait_gone(&r, "extra").await;
    assert_eq!(r.weight("goapp").await, Some(80));
    r.stop().await;
}

#[tokio::test]
async fn the_routing_directory_deleted_keeps_its_objects_and_recreated_applies() {
    let r = Running::start(support::cluster(), "up-rmdir", "").await;
    r.wait_weight("goapp", 90).await;
    let syncs = r.status().syncs;
    std::fs::remove_dir_all(r.path("routing")).unwrap();
    let s = r
        .wait_status("the sync after the deletion", |s| {
            s.syncs > syncs
                && s.last_sync.as_ref().is_some_and(|l| {
                    l.load_errors
                        .iter()
                        .any(|e| e.to_string().starts_with("routing: cannot read directory"))
                })
        })
        .await;
    assert!(!s.last_sync.unwrap().ok);
    assert_eq!(r.weight("goapp").await, Some(90), "nothing is pruned");

    std::fs::create_dir(r.path("routing")).unwrap();
    std::fs::write(r.path("routing/subsets.yaml"), SUBSETS).unwrap();
    std::fs::write(r.path("routing/goapp.yaml"), vs("goapp", 70)).unwrap();
    r.wait_weight("goapp", 70).await;
    // Watched again: a later save in the new directory applies too.
    std::fs::write(r.path("routing/goapp.yaml"), vs("goapp", 60)).unwrap();
    r.wait_weight("goapp", 60).await;
    r.stop().await;
}
