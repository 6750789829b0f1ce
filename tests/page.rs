//! The status page in a real browser (Debian's chromium, headless, through puppeteer-core),
//! against a real daemon process, the local cluster with workloads, the sample app's two
//! versions and the nginx stand-in for the ingress gateway (see tests/verify.rs).
//!
//! One daemon goes through the states a developer sees: healthy with a 90/10 split; a save
//! that the open page shows without a reload; a broken file; a failing verification with its
//! broken hop (the Verify button clicked); and objects named `<script>alert(1)</script>`.
//! Assertions are on the DOM; each wait is on a DOM change with a generous deadline, and the
//! latencies are printed, not asserted. Screenshots go to target/page-test/.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use support::browser::Browser;
use support::{run, standin};
use tempfile::TempDir;

/// Bounds each wait on the page; generous because CI machines are shared.
const WAIT_MS: u64 = 60_000;

fn helm_template(ns: &str, templates: &[&str]) -> String {
    support::workloads::helm_template(ns, &[], templates)
}

/// The sample behind a stand-in gateway, and a project directory whose `routing/` holds the
/// chart's routing and workloads as plain files, for the test to edit.
struct Project {
    _ns: support::TestNs,
    dir: TempDir,
    standin: PathBuf,
}

impl Project {
    async fn start(prefix: &str) -> Project {
        let tc = support::workload_cluster();
        let client = support::client_for(tc).await;
        let ns = support::TestNs::new_in(tc, &client, prefix).await;
        let ingress_ns = format!("{}-in", ns.name);
        let dir = tempfile::tempdir().unwrap();
        let standin_dir = dir.path().join("standin");
        std::fs::create_dir(&standin_dir).unwrap();
        let cluster_dir = tc.dir.as_ref().expect("a cluster started by the support");
        let pid = std::process::id().to_string();
        standin(&[
            "up",
            standin_dir.to_str().unwrap(),
            "--cluster",
            cluster_dir.to_str().unwrap(),
            "--namespace",
            &ns.name,
            "--ingress-namespace",
            &ingress_ns,
            "--weights",
            "90,10",
            "--owner-pid",
            &pid,
        ]);
        let routing = dir.path().join("routing");
        std::fs::create_dir(&routing).unwrap();
        let workloads = helm_template(&ns.name, &["deployment", "service"]);
        std::fs::write(routing.join("workloads.yaml"), &workloads).unwrap();
        let istio = helm_template(&ns.name, &["gateway", "virtualservice", "destinationrule"]);
        std::fs::write(routing.join("goapp.yaml"), istio).unwrap();
        run(Command::new(support::bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&tc.kubeconfig)
            .args(["apply", "-n", &ns.name, "-f"])
            .arg(routing.join("workloads.yaml")));
        support::workloads::wait_ready(&client, &ns.name).await;
        std::fs::write(
            dir.path().join("meshloop.yaml"),
            format!(
                "instance: {ns}\nnamespace: {ns}\nsources:\n  - dir: routing\ningress: {{namespace: {ingress_ns}}}\nverify: {{split_samples: 100}}\n",
                ns = ns.name
            ),
        )
        .unwrap();
        Project {
            _ns: ns,
            dir,
            standin: standin_dir,
        }
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new(support::repo_root().join("dev/standin.sh"))
            .args(["down", self.standin.to_str().unwrap()])
            .output();
    }
}

/// `meshloop up` as its own process, as Tilt runs it; its log goes to `log`.
struct DaemonProcess {
    child: Child,
    url: String,
}

impl DaemonProcess {
    fn start(dir: &Path, log: &Path) -> DaemonProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshloop"))
            .args(["up", "--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&support::workload_cluster().kubeconfig)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let url = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("meshloop up ended:\n{}", seen.join("\n")))
                .unwrap();
            if let Some((_, rest)) = line.split_once("API on ") {
                // `API on http://127.0.0.1:PORT/status listen=... dirs=...`
                let url = rest.split_whitespace().next().unwrap_or_default();
                break url.trim_end_matches("/status").to_string();
            }
            seen.push(line);
        };
        // Keep draining the log so the daemon never blocks on a full pipe.
        let mut out = std::fs::File::create(log).unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for l in lines.map_while(Result::ok) {
                let _ = writeln!(out, "{l}");
            }
        });
        DaemonProcess { child, url }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = support::repo_root().join("target/page-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Texts of the graph nodes of one kind.
fn node_texts(b: &mut Browser, kind: &str) -> Vec<String> {
    let v = b.eval(&format!(
        "return [...document.querySelectorAll('figure.host g.node[data-kind={kind}]')].map(n => n.dataset.mark + ' | ' + n.textContent + ' | ' + (n.dataset.at || ''))"
    ));
    serde_json::from_value(v).unwrap()
}

fn text_of(b: &mut Browser, selector: &str) -> String {
    let js = format!(
        "const e = document.querySelector({}); return e ? e.textContent : null",
        Value::String(selector.into())
    );
    b.eval(&js).as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_a_browser() {
    let p = Project::start("page").await;
    let daemon = DaemonProcess::start(p.dir.path(), &artifacts().join("daemon.log"));
    let mut b = Browser::start();
    let shots = artifacts();

    healthy(&mut b, &daemon.url, &shots.join("healthy.png"));
    live_update(&mut b, &p);
    broken_file(&mut b, &p, &shots.join("broken-file.png"));
    failing_verification(&mut b, &p, &shots.join("failing-verification.png"));
    hostile_names(&mut b, &p);
    page_size(&daemon.url);
}

fn healthy(b: &mut Browser, url: &str, shot: &Path) {
    let t0 = Instant::now();
    let opened = b.open(&format!("{url}/"));
    let loaded = t0.elapsed();
    // The first verification may still be running when the page opens: it arrives live.
    let waited = b.wait(
        "document.querySelector('#last-verification .ok') && document.querySelectorAll('g.node.rule.ok').length == 2",
        WAIT_MS,
    );
    let fcp = b.eval(
        "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null",
    );
    eprintln!(
        "page: load {} ms (browser: first contentful paint {fcp} ms, {opened}); verified {waited:.0} ms later",
        loaded.as_millis()
    );
    assert_eq!(
        b.eval("return document.querySelector('#ready').dataset.ready"),
        "true"
    );
    assert_eq!(text_of(b, "figure.host .hostname"), "goapp.dev");
    let gateways = node_texts(b, "gateway");
    assert_eq!(gateways.len(), 1, "{gateways:?}");
    assert!(
        gateways[0].contains("port 80 HTTP, host goapp.dev")
            && gateways[0].contains("routing/goapp.yaml:"),
        "{gateways:?}"
    );
    let rules = node_texts(b, "rule");
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules[0].contains("\"fortune\"") && rules[0].contains("exact /fortune"));
    assert!(
        rules
            .iter()
            .all(|r| r.starts_with("ok |") && r.contains("verified: ")),
        "{rules:?}"
    );
    // GET / is the app's own 405 (it wants a POST there), which still proves the route.
    assert!(rules[0].contains("verified: 200 ×100"), "{rules:?}");
    assert!(rules[1].contains("verified: 405 ×100"), "{rules:?}");
    let dests = node_texts(b, "destination");
    assert_eq!(dests.len(), 4, "{dests:?}");
    assert!(
        dests[0].contains("goapp subset v1") && dests[0].contains("weight 90%, seen"),
        "{dests:?}"
    );
    assert!(
        dests[1].contains("goapp subset v2") && dests[1].contains("weight 10%, seen"),
        "{dests:?}"
    );
    assert!(dests.iter().all(|d| d.starts_with("ok |")), "{dests:?}");
    let subsets = node_texts(b, "subset");
    assert!(
        subsets[0].contains("subset v1") && subsets[0].contains("version=v1"),
        "{subsets:?}"
    );
    let pods = node_texts(b, "pods");
    assert!(pods[0].contains("goapp-v1 1/1 ready"), "{pods:?}");
    assert!(pods[1].contains("goapp-v2 1/1 ready"), "{pods:?}");
    // Every node of the routing names where it is written.
    let located = b.eval(
        "return [...document.querySelectorAll('g.node:not(.pods)')].every(n => /\\.yaml:\\d+:\\d+$/.test(n.dataset.at || ''))",
    );
    assert_eq!(located, true);
    b.screenshot(shot);
}

fn live_update(b: &mut Browser, p: &Project) {
    // In the page's own clock: when the save was made, and when its weight first showed.
    let shows = "[...document.querySelectorAll('g.node.destination')].some(n => n.textContent.includes('weight 80%'))";
    let before = b.eval(&format!(
        "window.kept = 'this page'; window.seenAt = null; \
         new MutationObserver(() => {{ if (window.seenAt === null && {shows}) window.seenAt = performance.now(); }}) \
           .observe(document.body, {{subtree: true, childList: true}}); \
         window.savedAt = performance.now(); return Number(document.body.dataset.events)"
    ));
    let file = p.file("routing/goapp.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let t0 = Instant::now();
    std::fs::write(
        &file,
        text.replace("weight: 90", "weight: 80")
            .replace("weight: 10", "weight: 20"),
    )
    .unwrap();
    b.wait("window.seenAt !== null", WAIT_MS);
    let in_page = b.eval("return Math.round(window.seenAt - window.savedAt)");
    eprintln!(
        "page: a save shown on the open page {in_page} ms after the write (page clock; {} ms until the test's driver saw it)",
        t0.elapsed().as_millis()
    );
    // The same document, updated by the event stream: no reload, and events were counted.
    assert_eq!(b.eval("return window.kept"), "this page");
    assert_eq!(
        b.eval("return performance.getEntriesByType('navigation').length"),
        1
    );
    let after = b.eval("return Number(document.body.dataset.events)");
    assert!(after.as_f64() > before.as_f64(), "{before} -> {after}");
    assert_eq!(text_of(b, "#connection"), "live");
    assert!(
        text_of(b, "#last-sync").contains("ms from save to applied"),
        "{}",
        text_of(b, "#last-sync")
    );
}

fn broken_file(b: &mut Browser, p: &Project, shot: &Path) {
    let file = p.file("routing/goapp.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replacen("weight: 80", "weight: [80", 1)).unwrap();
    b.wait(
        "document.querySelector('#findings ul.load-errors li')",
        WAIT_MS,
    );
    let err = text_of(b, "#findings ul.load-errors li");
    // Named with its line and column.
    let (_, rest) = err
        .split_once("routing/goapp.yaml:")
        .unwrap_or_else(|| panic!("{err}"));
    let mut pos = rest.splitn(3, ':');
    let (line, col) = (pos.next().unwrap(), pos.next().unwrap());
    assert!(
        line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok(),
        "{err}"
    );
    assert_eq!(
        b.eval("return document.querySelector('#ready').dataset.ready"),
        "false"
    );
    assert!(text_of(b, "#ready").contains("errors"));
    // What was applied stays, and so does its picture.
    let dests = node_texts(b, "destination");
    assert!(dests[0].contains("weight 80%"), "{dests:?}");
    b.screenshot(shot);
    std::fs::write(&file, good).unwrap();
    b.wait(
        "!document.querySelector('#findings ul.load-errors') && document.querySelector('#last-sync > span.ok')",
        WAIT_MS,
    );
}

fn failing_verification(b: &mut Browser, p: &Project, shot: &Path) {
    standin(&["stop-version", p.standin.to_str().unwrap(), "v2"]);
    b.click("form[action='/verify'] button");
    b.wait(
        "document.querySelector('#last-verification .broken') && document.querySelector('#verification .hop') && document.querySelector('#said').textContent.includes('failed (422)')",
        WAIT_MS,
    );
    let hop = b.eval("return document.querySelector('#verification .hop').dataset.hop");
    assert!(hop == "app" || hop == "upstream", "{hop}");
    let rules = node_texts(b, "rule");
    assert!(
        rules
            .iter()
            .any(|r| r.starts_with("broken |") && r.contains("FAILED")),
        "{rules:?}"
    );
    // The broken hop is drawn on v2's Pods, and only there.
    let pods = node_texts(b, "pods");
    let broken: Vec<&String> = pods.iter().filter(|n| n.starts_with("broken |")).collect();
    assert!(!broken.is_empty(), "{pods:?}");
    assert!(broken.iter().all(|n| n.contains("goapp-v2")), "{pods:?}");
    assert!(text_of(b, "#said").contains("Verify: failed (422)"));
    assert_eq!(
        b.eval("return document.querySelector('#ready').dataset.ready"),
        "false"
    );
    b.screenshot(shot);
}

fn hostile_names(b: &mut Browser, p: &Project) {
    let evil = "<script>alert(1)</script>";
    std::fs::write(
        p.file("routing/evil.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: evil}}\nspec:\n  selector: {{istio: ingress}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: '{evil}'}}\nspec:\n  hosts: ['{evil}']\n  gateways: [evil]\n  http: [{{route: [{{destination: {{host: '<img src=x onerror=alert(2)>'}}}}]}}]\n"
        ),
    )
    .unwrap();
    b.wait(
        &format!(
            "[...document.querySelectorAll('figure.host')].some(f => f.dataset.host === {})",
            Value::String(evil.into())
        ),
        WAIT_MS,
    );
    assert_eq!(
        b.eval(&format!(
            "return document.body.innerText.includes({})",
            Value::String(evil.into())
        )),
        true
    );
    assert_eq!(b.eval("return document.scripts.length"), 1, "only page.js");
    assert_eq!(b.eval("return document.querySelectorAll('img').length"), 0);
    let seen = b.dialogs();
    assert_eq!(seen["dialogs"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["pageErrors"], serde_json::json!([]), "{seen}");
}

/// The page and its assets, as a browser fetches them.
fn page_size(url: &str) {
    let mut total = 0;
    for path in ["/", "/assets/page.css", "/assets/page.js"] {
        let out = run(Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{size_download}"])
            .arg(format!("{url}{path}")));
        total += out.trim().parse::<usize>().unwrap();
    }
    eprintln!("page: {total} bytes with its assets (routing graph, findings, verification)");
    assert!(total < 100 * 1024, "{total} bytes");
}
