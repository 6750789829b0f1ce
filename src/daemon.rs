//! `meshloop up`: wires the file watcher, the engine and the HTTP server together.
//!
//! Shutdown is an argument: [`run`] returns when `shutdown` completes (SIGINT/SIGTERM in the
//! binary, a token in tests) or when one of its tasks ends, which is an error. Every task is
//! joined before it returns; an in-flight sync is abandoned (its requests dropped), and the
//! HTTP server finishes the requests it is serving.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, info, info_span};

use crate::cluster::Cluster;
use crate::config::{Config, Source};
use crate::engine::{Engine, Handles, Verifier};
use crate::telemetry::Metrics;
use crate::watch::{Batch, FileWatcher, Timing, WatchError, WatchSet};

/// Batches waiting for the engine while it syncs. The batcher waits when it is full; raw
/// events then queue in the watcher, which coarsens to a rescan past its own bound.
const BATCH_QUEUE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("the HTTP server failed: {0}")]
    Server(#[source] std::io::Error),
    #[error("the {0} task stopped unexpectedly")]
    TaskEnded(&'static str),
}

/// What the watcher covers: source directories and charts (recursive), values files, and the
/// app source paths of `watch:`.
pub fn watch_set(config: &Config) -> WatchSet {
    let mut set = WatchSet::default();
    for s in &config.sources {
        match s {
            Source::Dir { path } => set.dirs.push(path.clone()),
            Source::Chart { path, values, .. } => {
                set.dirs.push(path.clone());
                set.files
                    .extend(values.iter().filter(|v| !v.starts_with(path)).cloned());
            }
        }
    }
    for w in &config.watch {
        if w.is_dir() {
            set.dirs.push(w.clone());
        } else {
            set.files.push(w.clone());
        }
    }
    set
}

/// A started daemon: its handles, for tests and the CLI to observe.
pub struct Daemon {
    pub handles: Handles,
    pub addr: std::net::SocketAddr,
}

/// Runs the daemon until `shutdown`. `ready` receives the handles once the file watches are
/// registered and the listener is bound (tests wait for it instead of sleeping).
pub async fn run(
    config: Config,
    cluster: Cluster,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<Daemon>>,
) -> Result<(), DaemonError> {
    let namespace = config.namespace_or(Some(&cluster.default_namespace));
    let addr = listener.local_addr().map_err(DaemonError::Server)?;
    let metrics = Metrics::new();
    let debounce = Duration::from_millis(config.debounce_ms);
    let watched = watch_set(&config);
    let watcher = FileWatcher::start(&watched, Timing::new(debounce))?;
    let (engine, handles, verifier) = Engine::new(config, cluster, namespace, metrics);
    engine.set_watching(true);
    info!(
        listen = %addr,
        dirs = watched.dirs.len(),
        files = watched.files.len(),
        "meshloop up: watching {} paths, API on http://{addr}/status",
        watched.dirs.len() + watched.files.len()
    );

    let token = CancellationToken::new();
    let (mut tasks, names) = start_tasks(watcher, engine, verifier, listener, &handles, &token);
    if let Some(r) = ready {
        let _ = r.send(Daemon {
            handles: handles.clone(),
            addr,
        });
    }
    let result = tokio::select! {
        _ = shutdown => Ok(()),
        Some(ended) = tasks.join_next_with_id() => Err(match ended {
            Ok((_, e)) => e,
            Err(e) => DaemonError::TaskEnded(names.get(&e.id()).copied().unwrap_or("a")),
        }),
    };
    token.cancel();
    // Join everything; each task returns promptly once the token is cancelled.
    while tasks.join_next().await.is_some() {}
    info!("meshloop stopped");
    result
}

/// The daemon's tasks, each ending with the error that its ending is should it end before
/// the daemon is shut down, and their names by task id.
fn start_tasks(
    watcher: FileWatcher,
    engine: Engine,
    verifier: Verifier,
    listener: TcpListener,
    handles: &Handles,
    token: &CancellationToken,
) -> (
    JoinSet<DaemonError>,
    BTreeMap<tokio::task::Id, &'static str>,
) {
    let (batch_tx, batch_rx) = mpsc::channel(BATCH_QUEUE);
    let mut tasks: JoinSet<DaemonError> = JoinSet::new();
    let mut names = BTreeMap::new();
    let mut spawn = |name: &'static str, span: Span, task: BoxFuture<'static, DaemonError>| {
        names.insert(tasks.spawn(task.instrument(span)).id(), name);
    };
    spawn(
        "file watcher",
        info_span!("watcher"),
        batches(watcher, batch_tx, token.clone()).boxed(),
    );
    let t = token.clone();
    spawn(
        "engine",
        info_span!("engine"),
        async move {
            engine.run(batch_rx, t).await;
            DaemonError::TaskEnded("engine")
        }
        .boxed(),
    );
    let t = token.clone();
    spawn(
        "verifier",
        info_span!("verifier"),
        async move {
            verifier.run(t).await;
            DaemonError::TaskEnded("verifier")
        }
        .boxed(),
    );
    let t = token.clone();
    let server = crate::server::serve(
        listener,
        handles.clone(),
        async move { t.cancelled().await },
    );
    spawn(
        "http server",
        info_span!("http"),
        async move {
            match server.await {
                Err(e) => DaemonError::Server(e),
                Ok(()) => DaemonError::TaskEnded("http server"),
            }
        }
        .boxed(),
    );
    (tasks, names)
}

/// Hands the watcher's batches to the engine until the watcher or the engine stops.
async fn batches(
    mut watcher: FileWatcher,
    batch_tx: mpsc::Sender<Batch>,
    token: CancellationToken,
) -> DaemonError {
    loop {
        let batch = tokio::select! {
            b = watcher.next_batch() => b,
            _ = token.cancelled() => None,
        };
        let Some(batch) = batch else { break };
        tracing::debug!(
            paths = batch.paths.len(),
            rescan = batch.rescan,
            "file batch"
        );
        if batch_tx.send(batch).await.is_err() {
            break;
        }
    }
    DaemonError::TaskEnded("file watcher")
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn signals() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
