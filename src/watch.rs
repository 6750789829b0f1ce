//! File watching: directories, not files, batched in a fixed window.
//!
//! notify's recommended watcher (inotify on Linux) reports raw events for the watched
//! directories, recursively. The callback only filters names and hands the path to a bounded
//! channel with `try_send`; it never blocks. When the channel is full the event is dropped and
//! a flag asks for a full rescan instead, so nothing is lost, only coarsened.
//!
//! Batching: the first event opens a window of `debounce` (50 ms by default); every event until
//! the window closes joins the batch; at the close one [`Batch`] is shipped. The window does
//! not restart on later events, so a steady storm of writes still yields a batch every window,
//! never a postponed one. (notify-debouncer-full debounces per file until the newest event of a
//! kind is old enough, which a storm on one file can postpone indefinitely; hence this module.)
//! An atomic save (write a temp file, rename it over the target) lands in one window: one batch.
//!
//! Editor temp, swap and backup files and VCS directories are ignored (see
//! [`crate::manifest::is_ignored_name`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::manifest::is_ignored_name;

/// Raw events waiting for the batcher. A save produces a handful; a `git checkout` of a large
/// tree a few thousand. Past this, events are dropped and a full rescan is requested.
const RAW_QUEUE: usize = 4096;

/// One window's worth of changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Changed paths (files or directories), deduplicated.
    pub paths: BTreeSet<PathBuf>,
    /// Events were dropped (queue full, or the kernel's queue overflowed): reload everything.
    pub rescan: bool,
    /// When the first event of the batch arrived (the start of save-to-applied).
    pub first_event: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "cannot watch {path}: the inotify watch limit is reached; raise it with `sudo sysctl fs.inotify.max_user_watches=524288` (and persist it in /etc/sysctl.d/)"
    )]
    WatchLimit { path: PathBuf },
    #[error(
        "cannot watch {path}: too many inotify instances or open files; raise them with `sudo sysctl fs.inotify.max_user_instances=512` and `ulimit -n`"
    )]
    InstanceLimit { path: PathBuf },
    #[error("cannot watch {path}: it does not exist")]
    Missing { path: PathBuf },
    #[error("cannot watch {path}: {source}")]
    Other {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

fn classify(path: &Path, e: notify::Error) -> WatchError {
    let path = path.to_path_buf();
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => WatchError::WatchLimit { path },
        notify::ErrorKind::PathNotFound => WatchError::Missing { path },
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28) => {
            WatchError::WatchLimit { path }
        }
        notify::ErrorKind::Io(io) if matches!(io.raw_os_error(), Some(24) | Some(23)) => {
            WatchError::InstanceLimit { path }
        }
        _ => WatchError::Other { path, source: e },
    }
}

/// What to watch: directories (recursive), and single files watched through their parent
/// directory (events are filtered to the file).
#[derive(Debug, Clone, Default)]
pub struct WatchSet {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
}

/// A running watcher. Dropping it stops the watches.
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
    raw: mpsc::Receiver<PathBuf>,
    overflow: Arc<AtomicBool>,
    debounce: Duration,
}

impl FileWatcher {
    /// Registers every watch before returning, so a caller that then writes a file is sure to
    /// see it (this is the readiness signal tests wait for).
    pub fn start(set: &WatchSet, debounce: Duration) -> Result<FileWatcher, WatchError> {
        let (tx, rx) = mpsc::channel(RAW_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = overflow.clone();
        let files: Arc<BTreeSet<PathBuf>> = Arc::new(set.files.iter().cloned().collect());
        let file_parents: Arc<BTreeSet<PathBuf>> = Arc::new(
            set.files
                .iter()
                .filter_map(|f| f.parent().map(Path::to_path_buf))
                .collect(),
        );
        let dirs: Arc<Vec<PathBuf>> = Arc::new(set.dirs.clone());
        let handler = move |res: notify::Result<notify::Event>| {
            let event = match res {
                Ok(ev) => ev,
                Err(_) => {
                    // An error in the stream (e.g. the kernel queue overflowed): rescan.
                    flag.store(true, Ordering::Relaxed);
                    return;
                }
            };
            if event.need_rescan() {
                flag.store(true, Ordering::Relaxed);
            }
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            for path in event.paths {
                if !relevant(&path, &dirs, &files) {
                    continue;
                }
                if tx.try_send(path).is_err() {
                    // Full (or the batcher is gone): coarsen to a rescan rather than block the
                    // notify thread.
                    flag.store(true, Ordering::Relaxed);
                }
            }
        };
        let mut watcher =
            notify::recommended_watcher(handler).map_err(|e| classify(Path::new("."), e))?;
        for dir in &set.dirs {
            watcher
                .watch(dir, RecursiveMode::Recursive)
                .map_err(|e| classify(dir, e))?;
        }
        for parent in file_parents.iter() {
            if !set.dirs.iter().any(|d| parent.starts_with(d)) {
                watcher
                    .watch(parent, RecursiveMode::NonRecursive)
                    .map_err(|e| classify(parent, e))?;
            }
        }
        Ok(FileWatcher {
            _watcher: watcher,
            raw: rx,
            overflow,
            debounce,
        })
    }

    /// Waits for the next batch: blocks until a first event, then collects for one window.
    /// Returns `None` when the watcher has stopped.
    pub async fn next_batch(&mut self) -> Option<Batch> {
        let first = self.raw.recv().await?;
        let first_event = Instant::now();
        let mut paths = BTreeSet::from([first]);
        let deadline = first_event + self.debounce;
        loop {
            tokio::select! {
                p = self.raw.recv() => match p {
                    Some(p) => { paths.insert(p); }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        // What arrived exactly at the close is taken too; it costs nothing.
        while let Ok(p) = self.raw.try_recv() {
            paths.insert(p);
        }
        Some(Batch {
            paths,
            rescan: self.overflow.swap(false, Ordering::Relaxed),
            first_event,
        })
    }
}

fn relevant(path: &Path, dirs: &[PathBuf], files: &BTreeSet<PathBuf>) -> bool {
    // Any ignored component (a file in .git/, an editor's swap file) disqualifies the path.
    if path
        .components()
        .any(|c| is_ignored_name(&c.as_os_str().to_string_lossy()))
    {
        return false;
    }
    if files.contains(path) {
        return true;
    }
    // In a parent watched only for one file, only that file counts (above).
    dirs.iter().any(|d| path.starts_with(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_and_vcs_paths_are_not_relevant() {
        let dirs = vec![PathBuf::from("/p/routing")];
        let none = BTreeSet::new();
        for p in [
            "/p/routing/.goapp.yaml.swp",
            "/p/routing/goapp.yaml~",
            "/p/routing/#goapp.yaml#",
            "/p/routing/.git/index",
            "/p/routing/4913",
        ] {
            assert!(!relevant(Path::new(p), &dirs, &none), "{p}");
        }
        assert!(relevant(
            Path::new("/p/routing/sub/goapp.yaml"),
            &dirs,
            &none
        ));
        assert!(!relevant(Path::new("/p/other/goapp.yaml"), &dirs, &none));
    }

    #[tokio::test]
    async fn a_burst_is_one_batch_and_a_storm_is_not_postponed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let set = WatchSet {
            dirs: vec![root.clone()],
            files: vec![],
        };
        let mut w = FileWatcher::start(&set, Duration::from_millis(50)).unwrap();
        // An atomic save: write a temp file, rename over the target.
        std::fs::write(root.join(".goapp.yaml.tmp"), "a: 1\n").unwrap();
        std::fs::rename(root.join(".goapp.yaml.tmp"), root.join("goapp.yaml")).unwrap();
        let b = w.next_batch().await.unwrap();
        assert_eq!(b.paths, BTreeSet::from([root.join("goapp.yaml")]));
    }
}
