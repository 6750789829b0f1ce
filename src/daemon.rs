//! `meshloop up`: wires the file watcher, the engine and the HTTP server together.
//!
//! Shutdown is an argument: [`run`] returns when `shutdown` completes (SIGINT/SIGTERM in the
//! binary, a token in tests) or when one of its tasks ends, which is an error. Every task is
//! joined before it returns; an in-flight sync is abandoned (its requests dropped), and the
//! HTTP server finishes the requests it is serving.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use crate::cluster::Cluster;
use crate::config::{Config, Source};
use crate::engine::{Engine, Handles};
use crate::telemetry::Metrics;
use crate::watch::{FileWatcher, Timing, WatchError, WatchSet};

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
    let mut watcher = FileWatcher::start(&watched, Timing::new(debounce))?;
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
    let (batch_tx, batch_rx) = mpsc::channel(BATCH_QUEUE);
    let batcher = {
        let token = token.clone();
        tokio::spawn(
            async move {
                loop {
                    let batch = tokio::select! {
                        b = watcher.next_batch() => b,
                        _ = token.cancelled() => return,
                    };
                    let Some(batch) = batch else { return };
                    tracing::debug!(
                        paths = batch.paths.len(),
                        rescan = batch.rescan,
                        "file batch"
                    );
                    if batch_tx.send(batch).await.is_err() {
                        return;
                    }
                }
            }
            .instrument(info_span!("watcher")),
        )
    };
    let mut engine_task = tokio::spawn(
        engine
            .run(batch_rx, token.clone())
            .instrument(info_span!("engine")),
    );
    let mut verifier_task = tokio::spawn(
        verifier
            .run(token.clone())
            .instrument(info_span!("verifier")),
    );
    let server_token = token.clone();
    let mut server_task = tokio::spawn(
        crate::server::serve(listener, handles.clone(), async move {
            server_token.cancelled().await
        })
        .instrument(info_span!("http")),
    );
    if let Some(r) = ready {
        let _ = r.send(Daemon {
            handles: handles.clone(),
            addr,
        });
    }

    let mut batcher = batcher;
    let mut engine_done = false;
    let mut server_done = false;
    let mut batcher_done = false;
    let mut verifier_done = false;
    let result = tokio::select! {
        _ = shutdown => Ok(()),
        _ = &mut engine_task => {
            engine_done = true;
            Err(DaemonError::TaskEnded("engine"))
        }
        r = &mut server_task => {
            server_done = true;
            Err(match r {
                Ok(Err(e)) => DaemonError::Server(e),
                _ => DaemonError::TaskEnded("http server"),
            })
        }
        _ = &mut batcher => {
            batcher_done = true;
            Err(DaemonError::TaskEnded("file watcher"))
        }
        _ = &mut verifier_task => {
            verifier_done = true;
            Err(DaemonError::TaskEnded("verifier"))
        }
    };
    token.cancel();
    // Join everything; each task returns promptly once the token is cancelled.
    if !engine_done {
        let _ = engine_task.await;
    }
    if !server_done {
        let _ = server_task.await;
    }
    if !batcher_done {
        let _ = batcher.await;
    }
    if !verifier_done {
        let _ = verifier_task.await;
    }
    info!("meshloop stopped");
    result
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
