//! Gateway verification against real components: the local cluster with workloads (Pods with
//! IPs, EndpointSlices), the sample app `dev/goapp` running as v1 and v2 in network
//! namespaces, and nginx standing in for the Istio ingress gateway (`dev/standin.sh`), with
//! the `istio-ingress` Service's load balancer status pointing at it.
//!
//! Each test has its own app namespace, ingress namespace and stand-in, so they run side by
//! side on one cluster.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::Api;
use meshloop::verify::Report;
use support::{standin, workloads};
use tempfile::TempDir;

/// One app namespace with the sample deployed behind a stand-in gateway.
struct Sample {
    /// Deleted when the test ends.
    _ns: support::TestNs,
    ingress_ns: String,
    dir: TempDir,
    standin: PathBuf,
    address: String,
}

impl Sample {
    /// Starts a stand-in with `weights` (v1,v2), deploys the chart's workloads and applies its
    /// routing with `meshloop apply`. `checks` is YAML for the config's `checks:`.
    async fn start(prefix: &str, weights: &str, checks: &str) -> Sample {
        let tc = support::workload_cluster();
        let client = support::client_for(tc).await;
        let ns = support::TestNs::new_in(tc, &client, prefix).await;
        let ingress_ns = format!("{}-in", ns.name);
        let dir = tempfile::tempdir().unwrap();
        let standin_dir = dir.path().join("standin");
        std::fs::create_dir(&standin_dir).unwrap();
        let cluster_dir = tc.dir.as_ref().expect("a cluster started by the support");
        let pid = std::process::id().to_string();
        let out = standin(&[
            "up",
            standin_dir.to_str().unwrap(),
            "--cluster",
            cluster_dir.to_str().unwrap(),
            "--namespace",
            &ns.name,
            "--ingress-namespace",
            &ingress_ns,
            "--weights",
            weights,
            "--owner-pid",
            &pid,
        ]);
        let address = out.lines().last().unwrap().trim().to_string();

        // The workloads, as Tilt would deploy them (the routing is meshloop's).
        workloads::deploy(tc, &client, &ns.name, dir.path(), &[]).await;

        std::fs::write(
            dir.path().join("meshloop.yaml"),
            format!(
                "instance: {ns}\nnamespace: {ns}\nhelm: {helm}\nsources:\n  - chart: {chart}\n    release: goapp\n    values: [{chart}/values-dev.yaml]\ningress: {{namespace: {ingress_ns}}}\nverify: {{split_samples: 100}}\nchecks:\n{checks}",
                ns = ns.name,
                chart = support::repo_root().join("charts/goapp").display(),
                helm = support::bin_dir().join("helm").display(),
            ),
        )
        .unwrap();
        let s = Sample {
            _ns: ns,
            ingress_ns,
            standin: standin_dir,
            dir,
            address,
        };
        let (code, out, err) = s.meshloop(&["apply"]);
        assert_eq!(code, 0, "meshloop apply:\n{out}\n{err}");
        s
    }

    fn meshloop(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_meshloop"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&support::workload_cluster().kubeconfig)
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

    /// `meshloop verify --standalone -o json`: the exit code and the report.
    fn verify(&self) -> (i32, Report) {
        let (code, out, err) = self.meshloop(&["verify", "--standalone", "-o", "json"]);
        let report: Report = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("not a report ({e}):\n{out}\n{err}"));
        (code, report)
    }

    fn path(&self) -> &Path {
        &self.standin
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        let _ = Command::new(support::repo_root().join("dev/standin.sh"))
            .args(["down", self.standin.to_str().unwrap()])
            .output();
    }
}

const CHECKS: &str = "  - {host: goapp.dev, path: /fortune, expect: {status: 200}}\n  - {host: goapp.dev, method: POST, path: /, body: Hello, expect: {status: 200, body_contains: Hello}}\n";

#[tokio::test]
async fn every_route_passes_with_its_split_observed() {
    let s = Sample::start("verify-pass", "90,10", CHECKS).await;
    let (code, r) = s.verify();
    assert!(r.ok, "{r:#?}");
    assert_eq!(code, 0);
    assert_eq!(
        r.address.as_ref().unwrap().authority(),
        s.address,
        "the load balancer address of the ingress Service"
    );
    assert!(r.address.as_ref().unwrap().via.contains("load balancer ip"));
    // One probe per rule (/fortune exact, / prefix) and one per check.
    let names: Vec<&str> = r.probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET goapp.dev/fortune",
            "GET goapp.dev/",
            "GET goapp.dev/fortune",
            "POST goapp.dev/"
        ]
    );
    let fortune = &r.probes[0];
    assert_eq!(fortune.requests, 100);
    let split = fortune
        .split
        .as_ref()
        .expect("a 90/10 rule is a split probe");
    assert!(split.ok);
    assert_eq!(split.shares.len(), 2);
    assert_eq!(split.shares[0].observed + split.shares[1].observed, 100);
    assert!(split.shares[0].observed > split.shares[1].observed);
    // The text report says so too.
    let (code, text, _) = s.meshloop(&["verify", "--standalone"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("gateway verified: 4 of 4 probes passed"),
        "{text}"
    );
    assert!(text.contains("goapp subset v1"), "{text}");
}

#[tokio::test]
async fn a_stopped_version_fails_with_the_upstream_named() {
    let s = Sample::start("verify-v2down", "90,10", CHECKS).await;
    standin(&["stop-version", s.path().to_str().unwrap(), "v2"]);
    let (code, r) = s.verify();
    assert_eq!(code, 1);
    assert!(!r.ok);
    let failed = r
        .probes
        .iter()
        .find(|p| p.split.is_some() && !p.ok)
        .expect("a split probe fails");
    assert!(failed.results.contains_key("503"), "{failed:#?}");
    let d = failed.diagnosis.as_ref().expect("a diagnosis");
    assert!(d.hop == "app" || d.hop == "upstream", "{d:#?}");
    assert!(d.summary.contains("v2"), "{}", d.summary);
    // The in-cluster request through the API server's proxy reached v1 and not v2.
    assert!(
        d.in_cluster
            .iter()
            .any(|c| c.target.contains("subset v2") && !c.ok),
        "{d:#?}"
    );
    assert!(
        d.in_cluster
            .iter()
            .any(|c| c.target.contains("subset v1") && c.ok),
        "{d:#?}"
    );
}

#[tokio::test]
async fn an_unrouted_host_gets_a_no_route_diagnosis() {
    let checks = "  - {host: other.dev, path: /fortune, expect: {status: 200}}\n";
    let s = Sample::start("verify-nr", "90,10", checks).await;
    let (code, r) = s.verify();
    assert_eq!(code, 1);
    let p = r
        .probes
        .iter()
        .find(|p| p.request.host == "other.dev")
        .unwrap();
    assert!(!p.ok);
    assert_eq!(p.status, Some(404));
    assert_eq!(p.upstream, Some(false), "the gateway's own 404");
    let d = p.diagnosis.as_ref().unwrap();
    assert_eq!(d.hop, "server", "{d:#?}");
    assert!(d.summary.contains("404 NR"), "{}", d.summary);
    assert!(d.summary.contains("other.dev"), "{}", d.summary);
    assert!(
        d.summary.contains("goapp.dev"),
        "names the hosts served: {}",
        d.summary
    );
    // The routes of goapp.dev still pass.
    assert!(
        r.probes
            .iter()
            .filter(|p| p.request.host == "goapp.dev")
            .all(|p| p.ok)
    );
}

#[tokio::test]
async fn a_split_far_off_fails_naming_the_observed_shares() {
    let s = Sample::start("verify-off", "50,50", "  []\n").await;
    let (code, r) = s.verify();
    assert_eq!(code, 1);
    let p = &r.probes[0];
    assert!(!p.ok);
    let split = p.split.as_ref().unwrap();
    assert!(!split.ok);
    let v1 = &split.shares[0];
    assert_eq!(v1.expected_pct, 90.0);
    assert!(!v1.ok && v1.observed_pct < v1.low_pct, "{v1:#?}");
    let problem = p.problem.as_deref().unwrap();
    assert!(problem.starts_with("split off"), "{problem}");
    assert!(
        problem.contains(&format!(
            "goapp subset v1 {:.0}% (expected 90%",
            v1.observed_pct
        )),
        "{problem}"
    );
    assert_eq!(p.diagnosis.as_ref().unwrap().hop, "split");
}

#[tokio::test]
async fn no_address_yet_is_said_clearly() {
    let s = Sample::start("verify-noaddr", "90,10", "  []\n").await;
    // Point the config at an ingress Service that does not exist ...
    let cfg = s.dir.path().join("meshloop.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let missing = text.replace(
        &format!("ingress: {{namespace: {}}}", s.ingress_ns),
        &format!(
            "ingress: {{namespace: {}, service: nothing-here}}",
            s.ingress_ns
        ),
    );
    std::fs::write(&cfg, &missing).unwrap();
    let (code, r) = s.verify();
    assert_eq!(code, 1);
    let e = r.error.unwrap();
    assert!(
        e.contains(&format!("Service {}/nothing-here not found", s.ingress_ns)),
        "{e}"
    );
    assert!(r.probes.is_empty());

    // ... then at a LoadBalancer whose address is still pending (and without node ports).
    let client = support::client_for(support::workload_cluster()).await;
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "nothing-here", "namespace": s.ingress_ns},
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                 "selector": {"istio": "ingress"},
                 "ports": [{"name": "http2", "port": 80, "targetPort": 80}]}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client, &s.ingress_ns)
        .create(&Default::default(), &svc)
        .await
        .unwrap();
    let (code, r) = s.verify();
    assert_eq!(code, 1);
    let e = r.error.unwrap();
    assert!(e.contains("has no address yet"), "{e}");
    assert!(e.contains("load balancer is pending"), "{e}");
    let (_, text, _) = s.meshloop(&["verify", "--standalone"]);
    assert!(text.contains("ingress: no address"), "{text}");
}

/// The daemon: verification after the first sync, `/readyz` tied to it, `POST /verify`.
/// Multi-threaded: the test blocks on `meshloop verify`, which the daemon must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_verifies_and_readyz_follows() {
    let s = Sample::start("verify-daemon", "90,10", CHECKS).await;
    let d = support::InProcess::start(
        &s.dir.path().join("meshloop.yaml"),
        &support::workload_cluster().kubeconfig,
    )
    .await;
    let mut status = d.handles.status.clone();
    let st = status
        .wait_for(|s| s.verification.is_some() || s.last_sync.as_ref().is_some_and(|l| !l.ok))
        .await
        .unwrap()
        .clone();
    let first = st.verification.clone().unwrap_or_else(|| {
        panic!(
            "the first sync failed: {}",
            serde_json::to_string_pretty(&st.last_sync).unwrap()
        )
    });
    assert!(first.ok, "{first:#?}");
    let (code, body) = http(&d.addr, "GET", "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = http(&d.addr, "GET", "/metrics").await;
    assert!(
        metrics.contains("meshloop_verifications_total{result=\"pass\"}"),
        "{metrics}"
    );

    standin(&["stop-version", s.path().to_str().unwrap(), "v2"]);
    let (code, body) = http(&d.addr, "POST", "/verify").await;
    assert_eq!(code, 422, "{body}");
    let report: Report = serde_json::from_str(&body).unwrap();
    assert!(!report.ok);
    assert_eq!(report.trigger, "request");
    let (code, body) = http(&d.addr, "GET", "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("gateway verification failed"), "{body}");
    let (_, body) = http(&d.addr, "GET", "/status").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["verification"]["ok"], false);

    // `meshloop verify` asks the running daemon when one answers on `listen`.
    standin(&["start-version", s.path().to_str().unwrap(), "v2"]);
    let cfg = s.dir.path().join("meshloop.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}listen: {}\n", d.addr)).unwrap();
    let (code, out, err) = s.meshloop(&["verify"]);
    assert!(err.contains("verified by the daemon"), "{err}");
    assert_eq!(code, 0, "{out}");
    let (code, _) = http(&d.addr, "GET", "/readyz").await;
    assert_eq!(code, 200);

    d.stop().await;
}

/// Under `tilt up`, the gateway check starts beside the daemon: `meshloop verify --wait` waits
/// until the daemon answers on `listen`, then takes its (settled) verification.
#[tokio::test]
async fn verify_wait_takes_the_verification_of_a_daemon_starting_beside_it() {
    use std::io::{BufRead, BufReader};
    let s = Sample::start("verify-wait", "90,10", CHECKS).await;
    // A free port for the daemon, released so that nothing answers there until it starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = s.dir.path().join("meshloop.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}listen: 127.0.0.1:{port}\n")).unwrap();
    let mut cli = Command::new(env!("CARGO_BIN_EXE_meshloop"))
        .args(["verify", "--wait", "120", "--kubeconfig"])
        .arg(&support::workload_cluster().kubeconfig)
        .current_dir(s.dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(cli.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for a daemon"), "{line}");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let kubeconfig = &support::workload_cluster().kubeconfig;
    let d = support::InProcess::start_on(&cfg, kubeconfig, listener).await;
    let out = tokio::task::spawn_blocking(move || cli.wait_with_output().unwrap())
        .await
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(rest.contains("verified by the daemon"), "{rest}\n{stdout}");
    assert!(out.status.success(), "{rest}\n{stdout}");
    d.stop().await;
}

/// A minimal HTTP/1.1 exchange with the daemon.
async fn http(addr: &std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code: u16 = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}
