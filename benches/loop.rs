//! Benchmarks of the dev loop against a real API server, each with its anchor in the same run.
//!
//!     dev/bench.sh                     # starts a cluster, runs every scenario below
//!     cargo bench --bench loop -- ssa  # with MESHLOOP_BENCH_KUBECONFIG set
//!
//! Scenarios (numbers are printed; nothing here passes or fails on time):
//! - `ssa`:  100 sequential server-side applies of one VirtualService from kube-rs.
//! - `sync`: 1,000 objects in 50 files: first apply into an empty namespace, the no-change
//!   re-apply (writes counted), one changed object; each against `kubectl apply --server-side`.
//! - `save`: save-to-applied latency over 200 saves (file written → new content seen through a
//!   watch on the API server) for a directory source and a chart source, against a shell loop
//!   of `inotifywait -m` + `kubectl apply --server-side` (monitor mode, so a save made while
//!   kubectl runs is queued rather than missed).
//! - `idle`: RSS and CPU time of `meshloop up` over 60 s with nothing changing.
//! - `verify`: a gateway verification of 20 routes, 3 requests each, through the stand-in
//!   gateway (nginx, `dev/standin.sh`; needs root and the cluster's workloads): wall time of
//!   the whole run against its slowest single request.
//! - `istio`: save → applied → the gateway serving the new route, 50 saves, split into
//!   meshloop's part and istiod's push to dev/gateway, against `kubectl apply --server-side`
//!   (needs the `--istio` cluster and dev/gateway that dev/bench.sh starts for it).
//! - `events`: the daemon's CPU with 50 clients reading `GET /events`, idle and during 100
//!   saves (each waited for until every client has its `sync` event), against the same with
//!   one client; and the time from each save to the last client having its event.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;

fn kubeconfig() -> PathBuf {
    PathBuf::from(
        std::env::var("MESHLOOP_BENCH_KUBECONFIG")
            .expect("set MESHLOOP_BENCH_KUBECONFIG (dev/bench.sh does)"),
    )
}

fn bin_dir() -> PathBuf {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("dev/localcluster"))
        .arg("bin")
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

async fn client() -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

async fn namespace(client: &kube::Client, name: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let name = format!("{name}-{}", std::process::id());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

fn vs_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "VirtualService",
    ));
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn vs_yaml(name: &str, weight: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}.example.dev]\n  gateways: [goapp-gateway]\n  http:\n    - match: [{{uri: {{prefix: /}}}}]\n      route:\n        - destination: {{host: goapp, subset: v1}}\n          weight: {weight}\n        - destination: {{host: goapp, subset: v2}}\n          weight: {}\n",
        100 - weight
    )
}

/// The Gateway and DestinationRule the generated VirtualServices refer to, so analysis (which
/// runs on every daemon sync) finds nothing to hold back.
const SUPPORT: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: goapp-gateway\nspec:\n  selector: {istio: ingress}\n  servers:\n    - port: {number: 80, name: http, protocol: HTTP}\n      hosts: [\"*.example.dev\"]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: goapp\nspec:\n  host: goapp\n  subsets:\n    - {name: v1, labels: {version: v1}}\n    - {name: v2, labels: {version: v2}}\n";

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn new(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        Stats { samples }
    }
    fn pct(&self, p: f64) -> Duration {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i]
    }
    fn line(&self, what: &str) -> String {
        format!(
            "{what:<58} n={:<4} p50={:>8.1} ms  p99={:>8.1} ms  max={:>8.1} ms",
            self.samples.len(),
            ms(self.pct(0.5)),
            ms(self.pct(0.99)),
            ms(*self.samples.last().unwrap())
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench_ssa() {
    let client = client().await;
    let ns = namespace(&client, "bench-ssa").await;
    let api = vs_api(&client, &ns);
    let mut samples = Vec::new();
    for i in 0..100u32 {
        let obj: DynamicObject =
            serde_saphyr::from_str::<serde_json::Value>(&vs_yaml("goapp", 1 + i % 99))
                .map(|v| serde_json::from_value(v).unwrap())
                .unwrap();
        let t = Instant::now();
        api.patch(
            "goapp",
            &PatchParams::apply("meshloop"),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
        samples.push(t.elapsed());
    }
    println!(
        "{}",
        Stats::new(samples).line("server-side apply of one VirtualService (kube-rs)")
    );
}

fn write_tree(dir: &Path, files: usize, per_file: usize, weight_of: impl Fn(usize) -> u32) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..files {
        let mut text = String::new();
        for o in 0..per_file {
            let n = f * per_file + o;
            text.push_str(&vs_yaml(&format!("vs-{n:04}"), weight_of(n)));
            text.push_str("---\n");
        }
        std::fs::write(dir.join(format!("routes-{f:02}.yaml")), text).unwrap();
    }
}

fn time_cmd(cmd: &mut Command) -> (Duration, String) {
    let t = Instant::now();
    let out = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{:?} failed:\n{}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn meshloop_apply(project: &Path) -> (Duration, String) {
    time_cmd(
        Command::new(env!("CARGO_BIN_EXE_meshloop"))
            .args(["apply", "-o", "json", "--kubeconfig"])
            .arg(kubeconfig())
            .current_dir(project),
    )
}

fn kubectl_apply(dir: &Path, ns: &str) -> Duration {
    time_cmd(
        Command::new(bin_dir().join("kubectl"))
            .args([
                "apply",
                "--server-side",
                "--field-manager=kubectl-bench",
                "-n",
                ns,
                "-f",
            ])
            .arg(dir)
            .env("KUBECONFIG", kubeconfig()),
    )
    .0
}

async fn bench_sync() {
    let client = client().await;
    let ns_m = namespace(&client, "bench-sync-meshloop").await;
    let ns_k = namespace(&client, "bench-sync-kubectl").await;
    let project = tempfile::tempdir().unwrap();
    let routing = project.path().join("routing");
    write_tree(&routing, 50, 20, |n| 1 + (n % 99) as u32);
    std::fs::write(
        project.path().join("meshloop.yaml"),
        format!("instance: bench\nnamespace: {ns_m}\nsources:\n  - dir: routing\n"),
    )
    .unwrap();

    let (first, out) = meshloop_apply(project.path());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    println!(
        "{:<58} {:>8.1} ms  ({} created)",
        "meshloop apply, 1,000 objects into an empty namespace",
        ms(first),
        v["report"]["counts"]["created"]
    );
    let kfirst = kubectl_apply(&routing, &ns_k);
    println!(
        "{:<58} {:>8.1} ms",
        "kubectl apply --server-side, same 1,000 objects",
        ms(kfirst)
    );
    println!(
        "{:<58} {:>8.2}x",
        "  ratio kubectl / meshloop (first apply)",
        ms(kfirst) / ms(first)
    );

    let mut m = Vec::new();
    let mut writes = 0;
    for _ in 0..10 {
        let (t, out) = meshloop_apply(project.path());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        writes += v["report"]["counts"]["writes"].as_u64().unwrap();
        m.push(t);
    }
    println!(
        "{}",
        Stats::new(m.clone()).line("meshloop apply, no change (whole CLI process)")
    );
    println!(
        "{:<58} {writes}",
        "  writes made by those 10 no-change runs"
    );
    let mut k = Vec::new();
    for _ in 0..5 {
        k.push(kubectl_apply(&routing, &ns_k));
    }
    println!(
        "{}",
        Stats::new(k.clone()).line("kubectl apply --server-side, no change")
    );
    println!(
        "{:<58} {:>8.2}x",
        "  ratio kubectl / meshloop (no change, medians)",
        ms(Stats::new(k).pct(0.5)) / ms(Stats::new(m).pct(0.5))
    );

    // One changed object among the 1,000.
    let mut m = Vec::new();
    let mut k = Vec::new();
    for round in 0..5u32 {
        let file = routing.join("routes-07.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        // Rewrite the first object of the file with a new weight.
        let first_end = text.find("---\n").unwrap();
        let new_text = format!("{}{}", vs_yaml("vs-0140", 10 + round), &text[first_end..]);
        std::fs::write(&file, new_text).unwrap();
        let (t, out) = meshloop_apply(project.path());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["report"]["counts"]["changed"], 1, "{out}");
        m.push(t);
        k.push(kubectl_apply(&routing, &ns_k));
    }
    let (sm, sk) = (Stats::new(m), Stats::new(k));
    println!("{}", sm.line("meshloop apply, one changed object of 1,000"));
    println!(
        "{}",
        sk.line("kubectl apply --server-side, one changed object of 1,000")
    );
    println!(
        "{:<58} {:>8.2}x",
        "  ratio kubectl / meshloop (one change, medians)",
        ms(sk.pct(0.5)) / ms(sm.pct(0.5))
    );
}

/// Waits until a watch on the API server shows `name` with first weight `weight`.
async fn wait_weight(
    events: &mut (
             impl futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Unpin
         ),
    name: &str,
    weight: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("change not seen within 30 s");
        if let Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) = ev
            && o.metadata.name.as_deref() == Some(name)
            && o.data
                .pointer("/spec/http/0/route/0/weight")
                .and_then(|w| w.as_u64())
                == Some(weight)
        {
            return;
        }
    }
}

async fn save_loop(
    label: &str,
    file: &Path,
    ns: &str,
    name: &str,
    render: impl Fn(u32) -> String,
    saves: u32,
) {
    let client = client().await;
    let api = vs_api(&client, ns);
    let mut events = Box::pin(watcher(api, watcher::Config::default()));
    // Drain the initial listing.
    loop {
        if let Some(Ok(watcher::Event::InitDone)) = events.next().await {
            break;
        }
    }
    let mut samples = Vec::new();
    for i in 0..saves {
        // Every save differs from the one before, so every save is a change to apply.
        let weight = 1 + (i % 98);
        let text = render(weight);
        let t = Instant::now();
        std::fs::write(file, text).unwrap();
        wait_weight(&mut events, name, weight as u64).await;
        samples.push(t.elapsed());
    }
    println!("{}", Stats::new(samples).line(label));
}

/// The editors whose save sequences `editor_loop` replays (see tests/watch.rs).
const EDITORS: [&str; 5] = ["vim", "jetbrains", "vscode", "sed -i", "git checkout"];

/// Stalls the writer at the riskiest moment of a save, longer than the batcher's quiet time.
const STALL: Duration = Duration::from_millis(10);

/// One save of `text` to `dir/goapp.yaml` as `editor` does it, the first half and the rest
/// written apart (split where the first half alone is a valid, different object).
fn editor_save(editor: &str, dir: &Path, text: &str) {
    use std::io::Write;
    let target = dir.join("goapp.yaml");
    let split = text
        .find("        - destination: {host: goapp, subset: v2}")
        .unwrap();
    let (a, b) = text.split_at(split);
    let write = |path: &Path| {
        let mut f = std::fs::File::create(path).unwrap();
        f.write_all(a.as_bytes()).unwrap();
        std::thread::sleep(STALL);
        f.write_all(b.as_bytes()).unwrap();
    };
    match editor {
        "vim" => {
            std::fs::rename(&target, dir.join("goapp.yaml~")).unwrap();
            write(&target);
            std::fs::remove_file(dir.join("goapp.yaml~")).unwrap();
        }
        "jetbrains" => {
            let tmp = dir.join("goapp.yaml___jb_tmp___");
            write(&tmp);
            std::fs::rename(&target, dir.join("goapp.yaml___jb_old___")).unwrap();
            std::thread::sleep(STALL);
            std::fs::rename(&tmp, &target).unwrap();
            std::fs::remove_file(dir.join("goapp.yaml___jb_old___")).unwrap();
        }
        "vscode" => write(&target),
        "sed -i" => {
            let tmp = dir.join("sedQ1w2e3");
            write(&tmp);
            std::fs::rename(&tmp, &target).unwrap();
        }
        _ => {
            std::fs::remove_file(&target).unwrap();
            std::thread::sleep(STALL);
            write(&target);
        }
    }
}

/// Saves `saves` times as `editor`, timing each from the end of the save to the new weight
/// seen through a watch; returns how many versions the API server held that were no whole
/// save (two routes whose weights sum to 100).
async fn editor_loop(editor: &'static str, dir: &Path, ns: &str, saves: u32) -> usize {
    let api = vs_api(&client().await, ns);
    let mut events = Box::pin(watcher(api, watcher::Config::default()));
    let mut half = 0;
    let mut samples = Vec::new();
    for i in 0..saves {
        let weight = 1 + (i % 98);
        let text = vs_yaml("goapp", weight);
        let d = dir.to_path_buf();
        tokio::task::spawn_blocking(move || editor_save(editor, &d, &text))
            .await
            .unwrap();
        let t = Instant::now();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(30), events.next())
                .await
                .expect("change not seen within 30 s");
            let Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) = ev else {
                continue;
            };
            if o.metadata.name.as_deref() != Some("goapp") {
                continue;
            }
            let routes = o
                .data
                .pointer("/spec/http/0/route")
                .and_then(|r| r.as_array());
            let whole = routes.is_some_and(|r| {
                r.len() == 2 && r.iter().filter_map(|d| d["weight"].as_u64()).sum::<u64>() == 100
            });
            half += usize::from(!whole);
            if routes.and_then(|r| r[0]["weight"].as_u64()) == Some(weight as u64) && whole {
                break;
            }
        }
        samples.push(t.elapsed());
    }
    println!(
        "{}",
        Stats::new(samples).line(&format!("  {editor}: save done → applied"))
    );
    half
}

async fn bench_save() {
    let client = client().await;
    let saves: u32 = std::env::var("MESHLOOP_BENCH_SAVES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);

    // meshloop, directory source: with the default batching window (50 ms), then with a 5 ms
    // window to show what the rest of the path costs.
    for (debounce, label) in [
        (50, "meshloop up, directory source: save → applied"),
        (5, "  same, debounce_ms: 5"),
    ] {
        let ns = namespace(&client, &format!("bench-save-dir{debounce}")).await;
        let project = dir_project(
            "goapp",
            &format!("instance: bench-save\nnamespace: {ns}\ndebounce_ms: {debounce}\n"),
        );
        let daemon = start_daemon(project.path());
        save_loop(
            label,
            &project.path().join("routing/goapp.yaml"),
            &ns,
            "goapp",
            |w| vs_yaml("goapp", w),
            saves,
        )
        .await;
        daemon.stop();
    }

    // Editors' write patterns through the daemon at the default settings, each with a stall
    // in its riskiest moment (mid-write, or between moving the old file away and the new one
    // into place): every version the API server ever holds must be a whole save.
    let ns = namespace(&client, "bench-save-editors").await;
    let project = dir_project(
        "goapp",
        &format!("instance: bench-editors\nnamespace: {ns}\n"),
    );
    let daemon = start_daemon(project.path());
    let mut half = 0;
    for pattern in EDITORS {
        half += editor_loop(pattern, &project.path().join("routing"), &ns, saves.min(50)).await;
    }
    println!(
        "{:<58} {half}",
        "  half-written versions applied, all editor patterns"
    );
    daemon.stop();

    // meshloop, chart source: a copy of the sample chart, saves to its VirtualService values.
    let ns = namespace(&client, "bench-save-chart").await;
    let project = tempfile::tempdir().unwrap();
    let chart = project.path().join("goapp");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/goapp"),
        &chart,
    );
    std::fs::write(
        project.path().join("meshloop.yaml"),
        format!("instance: bench-chart\nnamespace: {ns}\nhelm: {}\nsources:\n  - chart: goapp\n    release: goapp\n    values: [weights.yaml]\n", bin_dir().join("helm").display()),
    )
    .unwrap();
    std::fs::write(
        project.path().join("weights.yaml"),
        "weights: {v1: 50, v2: 50}\n",
    )
    .unwrap();
    let daemon = start_daemon(project.path());
    save_loop(
        "meshloop up, chart source (helm template): save → applied",
        &project.path().join("weights.yaml"),
        &ns,
        "goapp",
        |w| format!("weights: {{v1: {w}, v2: {}}}\n", 100 - w),
        saves,
    )
    .await;
    daemon.stop();

    // The anchor: inotifywait + kubectl apply --server-side in a shell loop.
    let ns = namespace(&client, "bench-save-kubectl").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("goapp.yaml"), vs_yaml("goapp", 50)).unwrap();
    let script = format!(
        "inotifywait -m -q -e close_write,moved_to {dir} | while read -r _; do {kubectl} apply --server-side --field-manager=kubectl-bench -n {ns} -f {dir} >/dev/null; done",
        dir = dir.path().display(),
        kubectl = bin_dir().join("kubectl").display()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("KUBECONFIG", kubeconfig())
        .process_group(0)
        .spawn()
        .unwrap();
    // The loop applies only after a change; apply once so the watch sees the object.
    kubectl_apply(dir.path(), &ns);
    save_loop(
        "inotifywait + kubectl apply --server-side: save → applied",
        &dir.path().join("goapp.yaml"),
        &ns,
        "goapp",
        |w| vs_yaml("goapp", w),
        saves,
    )
    .await;
    let _ = Command::new("kill")
        .arg("--")
        .arg(format!("-{}", child.id()))
        .status();
    let _ = child.wait();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

use std::os::unix::process::CommandExt;

/// A project with a directory source: `routing/` with VirtualService `vs` and its Gateway and
/// DestinationRule, and `meshloop.yaml` from `config` (the `sources:` line is added).
fn dir_project(vs: &str, config: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("routing")).unwrap();
    std::fs::write(
        project.path().join(format!("routing/{vs}.yaml")),
        vs_yaml(vs, 50),
    )
    .unwrap();
    std::fs::write(project.path().join("routing/support.yaml"), SUPPORT).unwrap();
    std::fs::write(
        project.path().join("meshloop.yaml"),
        format!("{config}sources:\n  - dir: routing\n"),
    )
    .unwrap();
    project
}

/// `meshloop up` as users run it: the release binary in its own process, in `project`; and
/// the address of its API.
struct DaemonProcess(std::process::Child, String);

impl DaemonProcess {
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Starts the daemon and returns once its first sync is logged; its log is drained on a
/// thread from then on (a full pipe would stall it).
fn start_daemon(project: &Path) -> DaemonProcess {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshloop"))
        .args(["up", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(kubeconfig())
        .current_dir(project)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "meshloop=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        if let Some((_, rest)) = l.split_once("API on http://") {
            let url = rest.split_whitespace().next().unwrap_or_default();
            addr = url.trim_end_matches("/status").to_string();
        }
        if l.contains("synced") {
            break;
        }
    }
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if std::env::var_os("MESHLOOP_BENCH_SHOW_LOG").is_some() {
                eprintln!("{l}");
            }
        }
    });
    DaemonProcess(child, addr)
}

fn proc_stat(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss_kb)
}

fn bench_idle() {
    let project = dir_project("idle", "instance: bench-idle\nnamespace: default\n");
    let daemon = start_daemon(project.path());
    let secs: u64 = std::env::var("MESHLOOP_BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let (t0, rss0) = proc_stat(daemon.0.id());
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, rss1) = proc_stat(daemon.0.id());
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "{:<58} RSS {:.1} MB -> {:.1} MB; CPU {:.2} s over {secs} s ({:.3}%)",
        "meshloop up, idle",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (t1 - t0) as f64 / hz,
        (t1 - t0) as f64 / hz / secs as f64 * 100.0
    );
    daemon.stop();
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    let want = |n: &str| all || which.iter().any(|w| w == n);
    // The daemon's logs, filtered by RUST_LOG (default: warnings only, to keep the numbers
    // readable).
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: single-threaded at this point; no other thread reads the environment.
        unsafe { std::env::set_var("RUST_LOG", "meshloop=warn") };
    }
    meshloop::telemetry::init(meshloop::telemetry::LogFormat::Text);
    let rt = tokio::runtime::Runtime::new().unwrap();
    if want("ssa") {
        rt.block_on(bench_ssa());
    }
    if want("sync") {
        rt.block_on(bench_sync());
    }
    if want("save") {
        rt.block_on(bench_save());
    }
    if want("idle") {
        bench_idle();
    }
    if want("verify") {
        rt.block_on(bench_verify());
    }
    if want("istio") {
        rt.block_on(bench_istio());
    }
    if want("events") {
        rt.block_on(bench_events());
    }
}

/// Reads `GET /events` and reports how many `sync` events it has seen.
async fn event_client(addr: String, seen: tokio::sync::watch::Sender<u64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    sock.write_all(req.as_bytes()).await.unwrap();
    let (mut text, mut buf, mut syncs) = (String::new(), vec![0u8; 64 * 1024], 0u64);
    loop {
        let n = sock.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(end) = text.find("\n\n") {
            if text[..end].contains("event: sync\n") {
                syncs += 1;
                seen.send_replace(syncs);
            }
            text.drain(..end + 2);
        }
    }
}

async fn bench_events() {
    let clients: usize = std::env::var("MESHLOOP_BENCH_EVENT_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let idle = Duration::from_secs(20);
    let hz = 100.0; // USER_HZ on Linux
    for extra in [0, clients] {
        let config = format!(
            "instance: bench-events-{extra}\nnamespace: default\nverify: {{settle_ms: 0}}\n"
        );
        let project = dir_project("events", &config);
        let daemon = start_daemon(project.path());
        let mut seen = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..=extra {
            let (tx, rx) = tokio::sync::watch::channel(0u64);
            tasks.push(tokio::spawn(event_client(daemon.1.clone(), tx)));
            seen.push(rx);
        }
        let label = format!("{} /events client(s)", extra + 1);
        let (t0, _) = proc_stat(daemon.0.id());
        tokio::time::sleep(idle).await;
        let (t1, _) = proc_stat(daemon.0.id());
        println!(
            "{:<58} idle: CPU {:.2} s over {} s ({:.3}%)",
            label,
            (t1 - t0) as f64 / hz,
            idle.as_secs(),
            (t1 - t0) as f64 / hz / idle.as_secs_f64() * 100.0
        );
        let file = project.path().join("routing/events.yaml");
        let (mut samples, start) = (Vec::new(), Instant::now());
        for i in 0..100u64 {
            let t = Instant::now();
            std::fs::write(&file, vs_yaml("events", 1 + (i % 98) as u32)).unwrap();
            for rx in &mut seen {
                tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|&n| n > i))
                    .await
                    .expect("every client gets the sync event")
                    .unwrap();
            }
            samples.push(t.elapsed());
        }
        let wall = start.elapsed();
        let (t2, rss) = proc_stat(daemon.0.id());
        println!(
            "{:<58} 100 saves: CPU {:.2} s over {:.1} s ({:.1}%), RSS {:.1} MB",
            label,
            (t2 - t1) as f64 / hz,
            wall.as_secs_f64(),
            (t2 - t1) as f64 / hz / wall.as_secs_f64() * 100.0,
            rss as f64 / 1024.0
        );
        println!(
            "{}",
            Stats::new(samples).line(&format!(
                "  save -> sync event at the last of {}",
                extra + 1
            ))
        );
        for t in tasks {
            t.abort();
        }
        daemon.stop();
    }
}

/// 20 routes (one VirtualService rule each, split 50/50 between v1 and v2), 3 requests per
/// route, against the sample app behind the nginx stand-in.
async fn bench_verify() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kubeconfig = kubeconfig();
    let cluster_dir = kubeconfig.parent().unwrap().to_path_buf();
    let client = client().await;
    let ns = namespace(&client, "bench-verify").await;
    let ingress_ns = format!("{ns}-in");
    let state = tempfile::tempdir().unwrap();
    let sh = |args: &[&str]| {
        let out = Command::new(root.join("dev/standin.sh"))
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "dev/standin.sh {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pid = std::process::id().to_string();
    sh(&[
        "up",
        state.path().to_str().unwrap(),
        "--cluster",
        cluster_dir.to_str().unwrap(),
        "--namespace",
        &ns,
        "--ingress-namespace",
        &ingress_ns,
        "--weights",
        "50,50",
        // nginx, serving 20 routes of its own: this times the verification, not istiod.
        "--gateway",
        "nginx",
        "--owner-pid",
        &pid,
    ]);
    let bin = bin_dir();
    let rendered = Command::new(bin.join("helm"))
        .args(["template", "goapp"])
        .arg(root.join("charts/goapp"))
        .args(["--namespace", &ns, "-f"])
        .arg(root.join("charts/goapp/values-dev.yaml"))
        .args([
            "--show-only",
            "templates/deployment.yaml",
            "--show-only",
            "templates/service.yaml",
        ])
        .output()
        .unwrap();
    let manifest = state.path().join("workloads.yaml");
    std::fs::write(&manifest, &rendered.stdout).unwrap();
    let kubectl = |args: &[&str]| {
        let st = Command::new(bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "kubectl {args:?}");
    };
    kubectl(&["apply", "-n", &ns, "-f", manifest.to_str().unwrap()]);
    kubectl(&[
        "-n",
        &ns,
        "rollout",
        "status",
        "deployment/goapp-v1",
        "deployment/goapp-v2",
        "--timeout=120s",
    ]);

    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: {ns}}}\nspec:\n  selector: {{istio: ingress}}\n  servers:\n    - port: {{number: 80, name: http, protocol: HTTP}}\n      hosts: [goapp.dev]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: goapp, namespace: {ns}}}\nspec:\n  host: goapp\n  subsets:\n    - {{name: v1, labels: {{version: v1}}}}\n    - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: goapp, namespace: {ns}}}\nspec:\n  hosts: [goapp.dev]\n  gateways: [gw]\n  http:\n"
    );
    for i in 0..20 {
        yaml.push_str(&format!(
            "    - match: [{{uri: {{exact: /route{i}}}}}]\n      route:\n        - {{destination: {{host: goapp, subset: v1}}, weight: 50}}\n        - {{destination: {{host: goapp, subset: v2}}, weight: 50}}\n"
        ));
    }
    let opts = meshloop::manifest::LoadOptions {
        owned: meshloop::config::default_owned_kinds(),
        default_namespace: ns.clone(),
        keep_others: false,
        limits: Default::default(),
    };
    let loaded = meshloop::manifest::load_text(&yaml, "bench/routes.yaml", false, &opts);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let ingress = meshloop::config::Ingress {
        namespace: ingress_ns.clone(),
        ..Default::default()
    };
    let settings = meshloop::config::VerifySettings {
        split_samples: 3,
        ..Default::default()
    };
    let cluster = meshloop::cluster::Cluster::connect(&meshloop::cluster::Target {
        kubeconfig: Some(kubeconfig.clone()),
        context: None,
    })
    .await
    .unwrap();
    let mut walls = Vec::new();
    let mut slowest = Vec::new();
    let mut overheads = Vec::new();
    for round in 0..31 {
        let t = Instant::now();
        let report = meshloop::verify::run(meshloop::verify::Input {
            objects: &loaded.objects,
            others: &[],
            ingress: &ingress,
            checks: &[],
            settings: &settings,
            config_file: None,
            cluster: Some(&cluster),
            trigger: "bench",
        })
        .await;
        let wall = t.elapsed();
        assert_eq!(report.probes.len(), 20, "{}", report.render_text());
        assert!(report.probes.iter().all(|p| p.requests == 3));
        let slow = report
            .probes
            .iter()
            .map(|p| Duration::from_secs_f64(p.slowest_ms / 1000.0))
            .max()
            .unwrap();
        if round == 0 {
            // The first round opens the connections; report it apart.
            println!(
                "verify: first run {:.1} ms (slowest request {:.1} ms), {}",
                ms(wall),
                ms(slow),
                report.summary()
            );
            continue;
        }
        walls.push(wall);
        slowest.push(slow);
        overheads.push(wall.saturating_sub(slow));
    }
    println!(
        "{}",
        Stats::new(walls).line("verify: 20 routes x 3 requests, wall time")
    );
    println!(
        "{}",
        Stats::new(slowest).line("verify: slowest single request of the run")
    );
    println!(
        "{}",
        Stats::new(overheads).line("verify: overhead (wall - slowest request)")
    );
    sh(&["down", state.path().to_str().unwrap()]);
}

/// A VirtualService whose one rule answers `/save-{i}` directly (no upstream needed), bound to
/// the Gateway of [`SUPPORT`]: save `i` is served once the gateway answers that path 200.
fn vs_direct(i: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.example.dev]\n  gateways: [goapp-gateway]\n  http:\n    - match: [{{uri: {{prefix: /save-{i}}}}}]\n      directResponse: {{status: 200, body: {{string: \"{i}\"}}}}\n"
    )
}

/// Whether the gateway answers `path` for goapp.example.dev with a 200.
fn gateway_serves(gateway: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(gateway) else {
        return false;
    };
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: goapp.example.dev\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 12];
    s.write_all(req.as_bytes()).is_ok() && s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200"
}

/// Waits for the gateway to serve `path`, polling every millisecond; None after 30 s.
async fn wait_served(gateway: &str, path: &str) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if gateway_serves(gateway, path) {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Waits until the API server's watch shows VirtualService goapp routing `/save-{i}`.
async fn wait_applied(
    events: &mut (
             impl futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Unpin
         ),
    i: u32,
) -> Instant {
    let want = format!("/save-{i}");
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("change not seen within 30 s");
        if let Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) = ev
            && o.data
                .pointer("/spec/http/0/match/0/uri/prefix")
                .and_then(|p| p.as_str())
                == Some(want.as_str())
        {
            return Instant::now();
        }
    }
}

/// `istio`: save → applied (meshloop's part, seen through a watch on the API server) → served
/// by the gateway (istiod's push to dev/gateway, seen by requesting the new route), over 50
/// saves of a directory source with `meshloop up`; the anchor applies the same files with
/// `kubectl apply --server-side` (timed from the save, its process start included). Needs a
/// cluster started with `--istio` and dev/gateway (MESHLOOP_BENCH_GATEWAY, from dev/bench.sh).
async fn bench_istio() {
    let Ok(gateway) = std::env::var("MESHLOOP_BENCH_GATEWAY") else {
        println!("istio: skipped (MESHLOOP_BENCH_GATEWAY unset: run dev/bench.sh istio)");
        return;
    };
    let saves: u32 = std::env::var("MESHLOOP_BENCH_ISTIO_SAVES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let client = client().await;
    let ns = namespace(&client, "bench-istio").await;
    let project = dir_project(
        "goapp",
        &format!("instance: bench-istio\nnamespace: {ns}\n"),
    );
    let file = project.path().join("routing/goapp.yaml");
    std::fs::write(&file, vs_direct(0)).unwrap();
    let daemon = start_daemon(project.path());
    let runs = istio_saves(&client, &ns, &gateway, 1000..1000 + saves, |i| {
        std::fs::write(&file, vs_direct(i)).unwrap();
    })
    .await;
    daemon.stop();
    print_istio("meshloop up", &runs);

    let kubectl = bin_dir().join("kubectl");
    let runs = istio_saves(&client, &ns, &gateway, 2000..2000 + saves, |i| {
        std::fs::write(&file, vs_direct(i)).unwrap();
        let st = Command::new(&kubectl)
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=kubectl-bench",
            ])
            .args(["-n", &ns, "-f"])
            .arg(project.path().join("routing"))
            .env("KUBECONFIG", kubeconfig())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    })
    .await;
    print_istio("kubectl apply --server-side", &runs);
}

/// (save → applied, applied → served) per save; `save` writes (and for the anchor applies).
async fn istio_saves(
    client: &kube::Client,
    ns: &str,
    gateway: &str,
    numbers: std::ops::Range<u32>,
    save: impl Fn(u32),
) -> Vec<(Duration, Duration)> {
    let mut events = Box::pin(watcher(vs_api(client, ns), watcher::Config::default()));
    while !matches!(events.next().await, Some(Ok(watcher::Event::InitDone))) {}
    let mut runs = Vec::new();
    // Four digits each, never one served before: each save is a new route to push.
    for i in numbers {
        let t0 = Instant::now();
        save(i);
        let applied = wait_applied(&mut events, i).await;
        let served = wait_served(gateway, &format!("/save-{i}"))
            .await
            .expect("the gateway did not serve the new route within 30 s");
        runs.push((applied - t0, served - applied));
    }
    runs
}

fn print_istio(who: &str, runs: &[(Duration, Duration)]) {
    let total = Stats::new(runs.iter().map(|(a, s)| *a + *s).collect());
    let applied = Stats::new(runs.iter().map(|(a, _)| *a).collect());
    let pushed = Stats::new(runs.iter().map(|(_, s)| *s).collect());
    println!(
        "{}",
        total.line(&format!("{who}: save → gateway serves the new route"))
    );
    println!("{}", applied.line("  save → applied (API server watch)"));
    println!(
        "{}",
        pushed.line("  applied → served (istiod push, dev/gateway applies)")
    );
}
