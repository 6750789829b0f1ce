//! The `check --offline` benchmark: 1,000 objects in 50 files, read and analyzed in process,
//! median of repeated runs. Ignored by default (timing belongs in release builds); run it
//! with `dev/bench/check.sh`, which also times the `meshloop check` binary when it has one.
//!
//! `MESHLOOP_BENCH_DIR` keeps the generated files in a directory of your choice (the script
//! uses it to time the binary on the same files).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meshloop::analyze::command;

const FILES: usize = 50;
const APPS_PER_FILE: usize = 4;
const RUNS: usize = 21;

/// One file: a Gateway, and per app a VirtualService (three rules, a 90/10 split), a
/// DestinationRule with two subsets, a Service and Deployments; 20 objects in all, with a
/// few real mistakes (a v2 subset without Pods in the last app of each file).
fn file_text(i: usize) -> String {
    let ns = format!("team{}", i % 5);
    let mut docs = vec![format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw-{i}, namespace: {ns}}}\nspec:\n  selector: {{istio: ingress}}\n  servers:\n    - port: {{number: 80, name: http, protocol: HTTP}}\n      hosts: [\"*.f{i}.example.com\"]\n"
    )];
    for a in 0..APPS_PER_FILE {
        let app = format!("app-{i}-{a}");
        docs.push(format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  hosts: [{app}.f{i}.example.com]\n  gateways: [gw-{i}]\n  http:\n    - name: api\n      match:\n        - uri: {{regex: \"/api/v[0-9]+/.*\"}}\n          headers: {{x-canary: {{exact: \"1\"}}}}\n      route:\n        - destination: {{host: {app}, subset: v2}}\n    - name: static\n      match:\n        - uri: {{prefix: /static}}\n      route:\n        - destination: {{host: {app}, subset: v1, port: {{number: 8080}}}}\n    - name: default\n      route:\n        - destination: {{host: {app}, subset: v1}}\n          weight: 90\n        - destination: {{host: {app}, subset: v2}}\n          weight: 10\n"
        ));
        docs.push(format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  host: {app}\n  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}\n  subsets:\n    - name: v1\n      labels: {{version: v1}}\n    - name: v2\n      labels: {{version: v2}}\n"
        ));
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 8080, targetPort: http}}]\n"
        ));
        let versions: &[&str] = if a + 1 == APPS_PER_FILE {
            &["v1"]
        } else {
            &["v1", "v2"]
        };
        for v in versions {
            docs.push(format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}-{v}, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {app}, version: {v}}}}}\n  template:\n    metadata: {{labels: {{app: {app}, version: {v}}}}}\n    spec:\n      containers:\n        - name: app\n          image: {app}:dev\n          ports: [{{name: http, containerPort: 8080}}]\n          readinessProbe: {{httpGet: {{path: /healthz, port: http}}}}\n"
            ));
        }
    }
    docs.join("---\n")
}

/// ROUTES_PER_FILE HTTPRoutes per file (1,000 in 50 files), on one Gateway of class istio per
/// file, with three rules each (exact, prefix with a header, a 90/10 split), the Services they
/// name, and a few real mistakes (a backend port the Service lacks in the last route of a file).
const ROUTES_PER_FILE: usize = 20;

fn httproute_file_text(i: usize) -> String {
    let ns = format!("team{}", i % 5);
    let mut docs = vec![format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw-{i}, namespace: {ns}}}\nspec:\n  gatewayClassName: istio\n  listeners:\n    - {{name: http, port: 80, protocol: HTTP, hostname: \"*.f{i}.example.com\"}}\n"
    )];
    for a in 0..ROUTES_PER_FILE {
        let app = format!("app-{i}-{a}");
        let port = if a + 1 == ROUTES_PER_FILE { 9090 } else { 8080 };
        docs.push(format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: gw-{i}, sectionName: http}}]\n  hostnames: [{app}.f{i}.example.com]\n  rules:\n    - matches:\n        - path: {{type: Exact, value: /healthz}}\n      backendRefs: [{{name: {app}-v1, port: 8080}}]\n    - matches:\n        - path: {{type: PathPrefix, value: /api}}\n          headers: [{{name: x-canary, value: \"1\"}}]\n      backendRefs: [{{name: {app}-v2, port: {port}}}]\n    - backendRefs:\n        - {{name: {app}-v1, port: 8080, weight: 90}}\n        - {{name: {app}-v2, port: 8080, weight: 10}}\n"
        ));
    }
    for a in 0..ROUTES_PER_FILE {
        for v in ["v1", "v2"] {
            let app = format!("app-{i}-{a}");
            docs.push(format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {app}-{v}, namespace: {ns}}}\nspec:\n  selector: {{app: {app}, version: {v}}}\n  ports: [{{name: http, port: 8080, targetPort: http}}]\n"
            ));
        }
    }
    docs.join("---\n")
}

/// Writes the benchmark's files into `dir`; returns how many objects they hold.
pub fn generate(dir: &Path) -> usize {
    generate_with(dir, file_text)
}

fn generate_with(dir: &Path, file_text: fn(usize) -> String) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let mut objects = 0;
    for i in 0..FILES {
        let text = file_text(i);
        objects += text.matches("\nkind: ").count() + usize::from(text.starts_with("kind: "));
        std::fs::write(dir.join(format!("routing-{i:02}.yaml")), text).unwrap();
    }
    objects
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run with dev/bench/check.sh (release build)"]
fn bench_check_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = std::env::var_os("MESHLOOP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let objects = generate(&dir);
    assert_eq!(objects, 1000, "the benchmark is defined as 1,000 objects");
    time_check(&dir, objects, "");
}

#[test]
#[ignore = "benchmark: run with dev/bench/check.sh (release build)"]
fn bench_check_offline_httproutes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = std::env::var_os("MESHLOOP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let objects = generate_with(&dir, httproute_file_text);
    assert_eq!(objects, FILES * (1 + 3 * ROUTES_PER_FILE));
    time_check(&dir, objects, " (1,000 HTTPRoutes)");
}

fn time_check(dir: &Path, objects: usize, what: &str) {
    let dir = dir.to_path_buf();
    let mut times = Vec::new();
    let mut reading = Vec::new();
    let mut findings = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let inputs = command::read_inputs(std::slice::from_ref(&dir), None, None).unwrap();
        reading.push(t.elapsed());
        let report = command::report(inputs);
        times.push(t.elapsed());
        findings = report.findings.len();
        assert_eq!(report.files, FILES);
    }
    let (min, max) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
    println!(
        "check --offline, in process: {objects} objects{what} in {FILES} files, {findings} findings; median {:.1} ms (min {:.1}, max {:.1}; reading and parsing {:.1}) over {RUNS} runs",
        median(times).as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        median(reading).as_secs_f64() * 1e3,
    );
}
