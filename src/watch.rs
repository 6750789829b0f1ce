//! File watching: directories, not files, batched until every touched file is finished.
//!
//! notify's recommended watcher (inotify on Linux) reports raw events for the watched
//! directories, recursively. The callback only filters names, classifies the event and hands
//! it to a bounded channel with `try_send`; it never blocks. When the channel is full the
//! event is dropped and a flag asks for a full rescan instead, so nothing is lost, only
//! coarsened.
//!
//! Batching: the first event opens a window of `debounce` (50 ms by default), and the batch
//! ships at the latest when it closes; the window does not restart on later events, so a
//! steady storm of writes still yields a batch every window, never a postponed one. It ships
//! sooner when the kernel says every file touched in it is finished: its last event was a
//! close after writing (inotify's `IN_CLOSE_WRITE`) or a rename into place, and no event has
//! come for [`QUIET`]. A file that was only created, written, renamed away or deleted is not
//! finished, since an editor's save is several steps (vim renames the file to a backup, then
//! writes a new one; JetBrains renames the old one away and a temp file into place; `sed -i`
//! writes a temp file and renames it over; `git checkout` deletes and recreates), and an early
//! batch would read half a file or miss one that is about to come back. A deletion therefore
//! ships with the window. (notify-debouncer-full debounces per file until the newest event of
//! a kind is old enough, which a storm on one file can postpone indefinitely; hence this
//! module.)
//!
//! A watched directory that is deleted and created again is watched again: its parent is
//! watched too (not recursively), and a batch that names the directory itself re-registers
//! it before it ships, so the reload that follows lists what the new directory holds.
//!
//! Editor temp, swap and backup files and VCS directories are ignored (see
//! [`crate::manifest::is_ignored_name`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::manifest::is_ignored_name;

/// Raw events waiting for the batcher. A save produces a handful; a `git checkout` of a large
/// tree a few thousand. Past this, events are dropped and a full rescan is requested.
const RAW_QUEUE: usize = 4096;

/// How long a batch whose files are all finished waits for one more event before it ships.
/// The steps of an editor's save follow each other within microseconds; 5 ms covers a busy
/// machine's scheduling delay between two of them and costs little of the save-to-applied time.
pub const QUIET: Duration = Duration::from_millis(5);

/// What an event says about the file it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Being written, renamed away, created or deleted: more may come.
    Unfinished,
    /// Closed after writing, or renamed into place.
    Finished,
    /// Says nothing about the content (a chmod): finished unless already unfinished.
    Neutral,
}

/// One classified event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub path: PathBuf,
    pub mark: Mark,
}

/// The marks an event gives its paths; `None` for events that change nothing (reads, opens).
fn classify_event(kind: &EventKind) -> Option<Mark> {
    Some(match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Mark::Finished,
        EventKind::Access(_) => return None,
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Mark::Finished,
        EventKind::Modify(ModifyKind::Metadata(_)) => Mark::Neutral,
        _ => Mark::Unfinished,
    })
}

/// Per path, whether it is finished, for one batch.
#[derive(Debug, Default)]
pub struct Progress {
    paths: BTreeMap<PathBuf, bool>,
}

impl Progress {
    pub fn mark(&mut self, raw: Raw) {
        let finished = match raw.mark {
            Mark::Finished => true,
            Mark::Unfinished => false,
            Mark::Neutral => *self.paths.get(&raw.path).unwrap_or(&true),
        };
        self.paths.insert(raw.path, finished);
    }

    pub fn all_finished(&self) -> bool {
        self.paths.values().all(|f| *f)
    }

    pub fn into_paths(self) -> BTreeSet<PathBuf> {
        self.paths.into_keys().collect()
    }
}

/// When a batch ships.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The window: the latest a batch ships after its first event (`debounce_ms`).
    pub window: Duration,
    /// How long every file must have been finished, with no event, to ship early.
    pub quiet: Duration,
}

impl Timing {
    pub fn new(window: Duration) -> Timing {
        Timing {
            window,
            quiet: QUIET,
        }
    }
}

/// One window's worth of changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Changed paths (files or directories), deduplicated.
    pub paths: BTreeSet<PathBuf>,
    /// Events were dropped (queue full, or the kernel's queue overflowed): reload everything.
    pub rescan: bool,
    /// When the first event of the batch arrived (the start of save-to-applied).
    pub first_event: Instant,
    /// Shipped because every file was finished (true), or because the window closed.
    pub finished: bool,
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
    watcher: notify::RecommendedWatcher,
    raw: mpsc::Receiver<Raw>,
    overflow: Arc<AtomicBool>,
    timing: Timing,
    /// The watched directories, re-registered when one is deleted and created again.
    roots: Vec<PathBuf>,
}

impl FileWatcher {
    /// Registers every watch before returning, so a caller that then writes a file is sure to
    /// see it (this is the readiness signal tests wait for).
    pub fn start(set: &WatchSet, timing: Timing) -> Result<FileWatcher, WatchError> {
        let (tx, rx) = mpsc::channel(RAW_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let files: BTreeSet<PathBuf> = set.files.iter().cloned().collect();
        let handler = handler(tx, overflow.clone(), set.dirs.clone(), files);
        let mut watcher =
            notify::recommended_watcher(handler).map_err(|e| classify(Path::new("."), e))?;
        for dir in &set.dirs {
            watcher
                .watch(dir, RecursiveMode::Recursive)
                .map_err(|e| classify(dir, e))?;
        }
        // Parents of the watched directories (to see one deleted and created again) and of
        // single files, each only if no recursive watch covers it already.
        let parents: BTreeSet<PathBuf> = set
            .dirs
            .iter()
            .chain(&set.files)
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .filter(|p| !set.dirs.iter().any(|d| p.starts_with(d)))
            .collect();
        for parent in &parents {
            match watcher.watch(parent, RecursiveMode::NonRecursive) {
                Ok(()) => {}
                // A directory's missing parent only costs the re-watch; a file's is an error.
                Err(_) if !set.files.iter().any(|f| f.parent() == Some(parent)) => {}
                Err(e) => return Err(classify(parent, e)),
            }
        }
        Ok(FileWatcher {
            watcher,
            raw: rx,
            overflow,
            timing,
            roots: set.dirs.clone(),
        })
    }

    /// Waits for the next batch: blocks until a first event, then collects until every file
    /// in it is finished and quiet, or the window closes. Returns `None` when the watcher has
    /// stopped.
    pub async fn next_batch(&mut self) -> Option<Batch> {
        let first = self.raw.recv().await?;
        let first_event = Instant::now();
        let mut progress = Progress::default();
        progress.mark(first);
        let deadline = first_event + self.timing.window;
        let mut last_event = first_event;
        let mut finished = false;
        loop {
            let early = (progress.all_finished() && !self.overflow.load(Ordering::Relaxed))
                .then(|| (last_event + self.timing.quiet).min(deadline));
            tokio::select! {
                p = self.raw.recv() => match p {
                    Some(raw) => {
                        progress.mark(raw);
                        last_event = Instant::now();
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = sleep_until_opt(early) => {
                    finished = true;
                    break;
                }
            }
        }
        if !finished {
            // What arrived exactly at the close is taken too; it costs nothing.
            while let Ok(raw) = self.raw.try_recv() {
                progress.mark(raw);
            }
        }
        let paths = progress.into_paths();
        self.rewatch_roots(&paths);
        Some(Batch {
            paths,
            rescan: self.overflow.swap(false, Ordering::Relaxed),
            first_event,
            finished,
        })
    }

    /// A watched directory named in a batch (deleted, created again, replaced) is registered
    /// again when it is a directory now; its old watch died with the old directory.
    fn rewatch_roots(&mut self, paths: &BTreeSet<PathBuf>) {
        for root in &self.roots {
            if paths.iter().any(|p| root.starts_with(p)) && root.is_dir() {
                let _ = self.watcher.unwatch(root);
                if let Err(e) = self.watcher.watch(root, RecursiveMode::Recursive) {
                    tracing::warn!("{}", classify(root, e));
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The notify callback: filter, classify, hand over without blocking.
fn handler(
    tx: mpsc::Sender<Raw>,
    overflow: Arc<AtomicBool>,
    dirs: Vec<PathBuf>,
    files: BTreeSet<PathBuf>,
) -> impl notify::EventHandler {
    move |res: notify::Result<notify::Event>| {
        let event = match res {
            Ok(ev) => ev,
            Err(_) => {
                // An error in the stream (e.g. the kernel queue overflowed): rescan.
                overflow.store(true, Ordering::Relaxed);
                return;
            }
        };
        if event.need_rescan() {
            overflow.store(true, Ordering::Relaxed);
        }
        let Some(mark) = classify_event(&event.kind) else {
            return;
        };
        let send = |path: &Path, mark: Mark| {
            if relevant(path, &dirs, &files)
                && tx
                    .try_send(Raw {
                        path: path.to_path_buf(),
                        mark,
                    })
                    .is_err()
            {
                // Full (or the batcher is gone): coarsen to a rescan rather than block the
                // notify thread.
                overflow.store(true, Ordering::Relaxed);
            }
        };
        match (&event.kind, event.paths.as_slice()) {
            // A rename whose both ends we saw: the old name is finished when its content went
            // to a name we read (a temp file renamed into place); renamed to an ignored name
            // (vim's backup) it stays unfinished, since the editor is about to write it anew.
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), [from, to]) => {
                if relevant(to, &dirs, &files) {
                    send(from, Mark::Finished);
                }
            }
            (_, paths) => paths.iter().for_each(|p| send(p, mark)),
        }
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

    #[test]
    fn progress_follows_the_kernel_marks() {
        let mut p = Progress::default();
        let raw = |path: &str, mark| Raw {
            path: PathBuf::from(path),
            mark,
        };
        p.mark(raw("/r/a.yaml", Mark::Unfinished));
        assert!(!p.all_finished());
        p.mark(raw("/r/a.yaml", Mark::Finished));
        assert!(p.all_finished());
        // A chmod after the close changes nothing; a write after it does.
        p.mark(raw("/r/a.yaml", Mark::Neutral));
        assert!(p.all_finished());
        p.mark(raw("/r/b.yaml", Mark::Unfinished));
        p.mark(raw("/r/b.yaml", Mark::Neutral));
        assert!(!p.all_finished());
    }

    #[test]
    fn only_a_close_after_writing_and_a_rename_into_place_finish_a_file() {
        use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind};
        let finished = |k| classify_event(&k) == Some(Mark::Finished);
        assert!(finished(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(finished(EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        for k in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Create(CreateKind::Folder),
        ] {
            assert_eq!(classify_event(&k), Some(Mark::Unfinished), "{k:?}");
        }
        assert_eq!(
            classify_event(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))),
            Some(Mark::Neutral)
        );
        // Our own reads never make a batch.
        assert_eq!(
            classify_event(&EventKind::Access(AccessKind::Close(AccessMode::Read))),
            None
        );
        assert_eq!(
            classify_event(&EventKind::Access(AccessKind::Open(AccessMode::Any))),
            None
        );
    }

    #[tokio::test]
    async fn a_burst_is_one_batch_and_a_storm_is_not_postponed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let set = WatchSet {
            dirs: vec![root.clone()],
            files: vec![],
        };
        let mut w = FileWatcher::start(&set, Timing::new(Duration::from_millis(50))).unwrap();
        // An atomic save: write a temp file, rename over the target.
        std::fs::write(root.join(".goapp.yaml.tmp"), "a: 1\n").unwrap();
        std::fs::rename(root.join(".goapp.yaml.tmp"), root.join("goapp.yaml")).unwrap();
        let b = w.next_batch().await.unwrap();
        assert_eq!(b.paths, BTreeSet::from([root.join("goapp.yaml")]));
    }
}
