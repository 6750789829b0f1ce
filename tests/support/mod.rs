//! Test support: a real kube-apiserver (with the Istio CRDs) for the whole test binary, and a
//! fresh namespace per test.
//!
//! The first call to [`cluster`] runs `dev/localcluster build` (a no-op once cached) and
//! `dev/localcluster start` in a directory of its own, tied to this process with
//! `--owner-pid`, so the servers stop when the test binary exits, however it exits. Set
//! `MESHLOOP_TEST_KUBECONFIG` to use a cluster you started yourself.
#![allow(dead_code)]

pub mod browser;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub struct TestCluster {
    pub kubeconfig: PathBuf,
    pub dir: Option<PathBuf>,
}

fn start(name: &str, extra: &[&str]) -> TestCluster {
    start_with_env(name, extra, &[])
}

/// Starts a cluster of this test binary, the processes of `dev/localcluster` seeing `env`
/// besides the test's own environment.
pub fn start_with_env(name: &str, extra: &[&str], env: &[(&str, &str)]) -> TestCluster {
    let script = repo_root().join("dev/localcluster");
    let mut build = Command::new(&script);
    build.arg("build");
    if extra.contains(&"--istio") {
        build.arg("--istio");
    }
    let status = build.status().expect("run dev/localcluster build");
    assert!(status.success(), "dev/localcluster build failed");
    let exe = std::env::current_exe().unwrap();
    let bin = exe.file_name().unwrap().to_string_lossy().into_owned();
    let dir = repo_root()
        .join("target/localcluster-tests")
        .join(format!("{bin}-{name}-{}", std::process::id()));
    let out = Command::new(&script)
        .arg("start")
        .arg(&dir)
        .args(extra)
        .arg("--owner-pid")
        .arg(std::process::id().to_string())
        .envs(env.iter().copied())
        .output()
        .expect("run dev/localcluster start");
    assert!(
        out.status.success(),
        "dev/localcluster start failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let kubeconfig = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("kubeconfig path on stdout")
            .trim(),
    );
    TestCluster {
        kubeconfig,
        dir: Some(dir),
    }
}

/// The shared cluster of this test binary, with the Istio CRDs.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| match std::env::var_os("MESHLOOP_TEST_KUBECONFIG") {
        Some(k) => TestCluster {
            kubeconfig: PathBuf::from(k),
            dir: None,
        },
        None => start("istio", &[]),
    })
}

/// A second cluster of this test binary, started without the Istio CRDs.
pub fn bare_cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start("bare", &["--no-crds"]))
}

/// A cluster of this test binary with workloads: kube-controller-manager, kube-scheduler and
/// the fake kubelet, so Deployments get Pods with IPs and Services get EndpointSlices.
pub fn workload_cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start("workloads", &["--workloads"]))
}

/// A cluster with Istio and the gateway stand-in: `dev/localcluster start --istio` (Istio's
/// charts installed by `dev/up.sh --no-kind`, the real istiod) and `dev/standin.sh up
/// --gateway istio` with no app (dev/gateway posing as the gateway chart's Pod, its routes
/// from istiod). App namespaces bring their own app versions (`--gateway none`).
pub struct IstioCluster {
    pub tc: TestCluster,
    /// The gateway's address, the chart Service's load-balancer IP and port 80.
    pub gateway: String,
    /// The stand-in's directory (its state, dev/gateway's admin address).
    pub standin: PathBuf,
}

impl IstioCluster {
    pub fn start(name: &str) -> IstioCluster {
        let tc = start(name, &["--istio"]);
        let dir = tc.dir.clone().unwrap();
        let standin = dir.join("gateway-standin");
        std::fs::create_dir_all(&standin).unwrap();
        let out = Command::new(repo_root().join("dev/standin.sh"))
            .arg("up")
            .arg(&standin)
            .arg("--cluster")
            .arg(&dir)
            .args(["--gateway", "istio", "--versions", ""])
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .output()
            .expect("run dev/standin.sh up");
        assert!(
            out.status.success(),
            "dev/standin.sh up --gateway istio failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let gateway = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("the gateway address")
            .trim()
            .to_string();
        IstioCluster {
            tc,
            gateway,
            standin,
        }
    }

    pub fn dir(&self) -> &Path {
        self.tc.dir.as_deref().unwrap()
    }

    /// dev/gateway's admin address (GET /ready, GET /config).
    pub fn gateway_admin(&self) -> String {
        let state = std::fs::read_to_string(self.standin.join("standin/state")).unwrap();
        state
            .lines()
            .find_map(|l| l.strip_prefix("GW_ADMIN="))
            .expect("GW_ADMIN in the stand-in's state")
            .to_string()
    }

    /// `dev/localcluster istiod-stop` / `istiod-start`.
    pub fn istiod(&self, cmd: &str) {
        let st = Command::new(repo_root().join("dev/localcluster"))
            .arg(cmd)
            .arg(self.dir())
            .status()
            .unwrap();
        assert!(st.success(), "dev/localcluster {cmd} failed");
    }
}

/// The shared Istio cluster of this test binary.
pub fn istio_cluster() -> &'static IstioCluster {
    static CLUSTER: OnceLock<IstioCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| IstioCluster::start("istio"))
}

/// A cluster of its own for a test that stops and restarts its API server.
pub fn private_cluster(name: &str) -> TestCluster {
    start(name, &[])
}

/// Stops only the API server of a private cluster (etcd keeps the data).
pub fn pause(tc: &TestCluster) {
    let dir = tc
        .dir
        .as_ref()
        .expect("a cluster started by the test support");
    let st = Command::new(repo_root().join("dev/localcluster"))
        .arg("pause")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "dev/localcluster pause failed");
}

/// Starts the API server again on the same port and certificate.
pub fn resume(tc: &TestCluster) {
    let dir = tc
        .dir
        .as_ref()
        .expect("a cluster started by the test support");
    let st = Command::new(repo_root().join("dev/localcluster"))
        .arg("resume")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "dev/localcluster resume failed");
}

/// The directory of the cached control-plane binaries (kubectl, helm).
pub fn bin_dir() -> PathBuf {
    let out = Command::new(repo_root().join("dev/localcluster"))
        .arg("bin")
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub async fn client_for(tc: &TestCluster) -> Client {
    let kc = Kubeconfig::read_from(&tc.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

pub async fn client() -> Client {
    client_for(cluster()).await
}

/// A namespace of its own for one test; deleted when dropped.
pub struct TestNs {
    pub name: String,
    kubeconfig: PathBuf,
}

impl TestNs {
    /// Creates a namespace in the shared cluster.
    pub async fn new(client: &Client, prefix: &str) -> TestNs {
        Self::new_in(cluster(), client, prefix).await
    }

    pub async fn new_in(tc: &TestCluster, client: &Client, prefix: &str) -> TestNs {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}-{}-{}",
            prefix,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        TestNs {
            name,
            kubeconfig: tc.kubeconfig.clone(),
        }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let name = self.name.clone();
        let tc = TestCluster {
            kubeconfig: self.kubeconfig.clone(),
            dir: None,
        };
        // Drop cannot await, and the test's runtime is blocked here, so a short-lived runtime
        // on its own thread does the delete with a client of its own (a kube Client's worker
        // lives on the runtime that made it).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = client_for(&tc).await;
                let _ = Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await;
            });
        })
        .join();
    }
}

/// Runs a command that must succeed; returns its stdout (stdout and stderr shown if it fails).
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dev/standin.sh ARGS...`, which must succeed.
pub fn standin(args: &[&str]) -> String {
    run(Command::new(repo_root().join("dev/standin.sh")).args(args))
}

/// A `meshloop up` running in this process, stopped by [`InProcess::stop`].
pub struct InProcess {
    pub daemon: meshloop::daemon::Daemon,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), meshloop::daemon::DaemonError>>,
}

impl InProcess {
    /// Starts the daemon with the config at `config` against the cluster of `kubeconfig`;
    /// returns once its watches are registered and its listener is bound.
    pub async fn start(config: &Path, kubeconfig: &Path) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        InProcess::start_on(config, kubeconfig, listener).await
    }

    /// [`InProcess::start`] with the listener given.
    pub async fn start_on(
        config: &Path,
        kubeconfig: &Path,
        listener: tokio::net::TcpListener,
    ) -> InProcess {
        use meshloop::cluster::{Cluster, Target};
        let config = meshloop::config::Config::load(config).unwrap();
        let cluster = Cluster::connect(&Target {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            context: None,
        })
        .await
        .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(meshloop::daemon::run(
            config,
            cluster,
            listener,
            async move { token.cancelled().await },
            Some(tx),
        ));
        let daemon = rx.await.expect("daemon started");
        InProcess { daemon, stop, task }
    }

    /// Stops the daemon; it must stop cleanly, and within a minute.
    pub async fn stop(self) {
        self.stop.cancel();
        let r = tokio::time::timeout(std::time::Duration::from_secs(60), self.task)
            .await
            .expect("daemon stops");
        r.unwrap().unwrap();
    }
}

impl std::ops::Deref for InProcess {
    type Target = meshloop::daemon::Daemon;
    fn deref(&self) -> &Self::Target {
        &self.daemon
    }
}
