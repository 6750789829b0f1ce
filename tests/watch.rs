//! Editors' write patterns against the real inotify watcher: each save is one batch, shipped
//! because every file in it is finished, and never while a file is half written.
//!
//! Each pattern is replayed with std::fs exactly as the editor does it, on a thread of its own
//! while the batcher runs. Where an editor could be slow (between two writes of one file,
//! between renaming the old file away and putting the new one in place) the writer stalls for
//! several quiet periods: a batcher that took such a moment for the end of the save would ship
//! then, and the test would see the half-written or missing file. The stalls create the hostile
//! condition; no assertion depends on how long anything takes (the window is far longer than
//! any pattern, and every batch must have shipped because its files were finished).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshloop::watch::{FileWatcher, Timing, WatchSet};

const OLD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.dev]\n";

fn new_text() -> String {
    // Long enough that half of it is an obviously different file.
    let mut t = OLD.to_string();
    t.push_str("  http:\n");
    for i in 0..50 {
        t.push_str(&format!(
            "    - name: r{i}\n      route:\n        - destination: {{host: goapp}}\n"
        ));
    }
    t
}

/// Quiet time for these tests: long against the gap between two std::fs calls on a loaded
/// machine, so a finished save is reliably one batch; the stalls are several times longer.
const QUIET: Duration = Duration::from_millis(40);
const STALL: Duration = Duration::from_millis(150);
/// Bounds a hang only.
const WINDOW: Duration = Duration::from_secs(30);

struct Bench {
    _dir: tempfile::TempDir,
    root: PathBuf,
    watcher: FileWatcher,
}

impl Bench {
    fn new(files: &[&str]) -> Bench {
        Bench::with_window(files, WINDOW)
    }

    fn with_window(files: &[&str], window: Duration) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("routing");
        fs::create_dir(&root).unwrap();
        for f in files {
            fs::write(root.join(f), OLD).unwrap();
        }
        let set = WatchSet {
            dirs: vec![root.clone()],
            files: vec![],
        };
        let timing = Timing {
            window,
            quiet: QUIET,
        };
        let watcher = FileWatcher::start(&set, timing).unwrap();
        Bench {
            _dir: dir,
            root,
            watcher,
        }
    }

    /// Runs `pattern` on a thread and collects batches until it is done and `want` was seen.
    /// Every batch must have shipped finished, with each YAML file in it whole (old or new).
    async fn run(
        &mut self,
        want: &[&str],
        pattern: impl FnOnce(&Path, &dyn Fn()) + Send + 'static,
    ) -> Vec<BTreeSet<PathBuf>> {
        let steps = Arc::new(AtomicUsize::new(0));
        let root = self.root.clone();
        let counter = steps.clone();
        let writer = std::thread::spawn(move || {
            pattern(&root, &|| std::thread::sleep(STALL));
            counter.store(usize::MAX, Ordering::SeqCst);
        });
        let want: BTreeSet<PathBuf> = want.iter().map(|f| self.root.join(f)).collect();
        let mut seen = BTreeSet::new();
        let mut batches = Vec::new();
        while !want.is_subset(&seen) {
            let b = self.watcher.next_batch().await.expect("watcher runs");
            assert!(b.finished, "a batch shipped on the window: {:?}", b.paths);
            for p in &b.paths {
                // A saved file missing at the ship would be applied as a deletion.
                assert!(
                    !want.contains(p) || p.exists(),
                    "{} was shipped while missing mid-save",
                    p.display()
                );
                if p.extension().is_some_and(|e| e == "yaml") && p.exists() {
                    let text = fs::read_to_string(p).unwrap();
                    assert!(
                        text == OLD || text == new_text(),
                        "{} was shipped half written ({} bytes)",
                        p.display(),
                        text.len()
                    );
                }
            }
            seen.extend(b.paths.iter().cloned());
            batches.push(b.paths);
        }
        writer.join().unwrap();
        assert_eq!(steps.load(Ordering::SeqCst), usize::MAX);
        batches
    }
}

fn write_in_two(f: &mut File, stall: &dyn Fn()) {
    let text = new_text();
    let (a, b) = text.split_at(text.len() / 2);
    f.write_all(a.as_bytes()).unwrap();
    f.flush().unwrap();
    stall();
    f.write_all(b.as_bytes()).unwrap();
}

#[tokio::test]
async fn vim_backup_and_write_is_one_batch() {
    let mut b = Bench::new(&["goapp.yaml"]);
    let batches = b
        .run(&["goapp.yaml"], |root, stall| {
            // vim probes the directory, renames the file to its backup, writes a new file,
            // sets its mode, then deletes the backup.
            fs::write(root.join("4913"), "").unwrap();
            fs::remove_file(root.join("4913")).unwrap();
            fs::rename(root.join("goapp.yaml"), root.join("goapp.yaml~")).unwrap();
            stall();
            let mut f = File::create(root.join("goapp.yaml")).unwrap();
            write_in_two(&mut f, stall);
            f.sync_all().unwrap();
            drop(f);
            let perm = fs::metadata(root.join("goapp.yaml~"))
                .unwrap()
                .permissions();
            fs::set_permissions(root.join("goapp.yaml"), perm).unwrap();
            fs::remove_file(root.join("goapp.yaml~")).unwrap();
        })
        .await;
    assert_eq!(batches, vec![BTreeSet::from([b.root.join("goapp.yaml")])]);
}

#[tokio::test]
async fn jetbrains_safe_write_is_one_batch() {
    let mut b = Bench::new(&["goapp.yaml"]);
    let batches = b
        .run(&["goapp.yaml"], |root, stall| {
            let tmp = root.join("goapp.yaml___jb_tmp___");
            let old = root.join("goapp.yaml___jb_old___");
            let mut f = File::create(&tmp).unwrap();
            write_in_two(&mut f, stall);
            drop(f);
            fs::rename(root.join("goapp.yaml"), &old).unwrap();
            stall();
            fs::rename(&tmp, root.join("goapp.yaml")).unwrap();
            fs::remove_file(&old).unwrap();
        })
        .await;
    assert_eq!(batches, vec![BTreeSet::from([b.root.join("goapp.yaml")])]);
}

#[tokio::test]
async fn vs_code_write_in_place_is_one_batch() {
    let mut b = Bench::new(&["goapp.yaml"]);
    let batches = b
        .run(&["goapp.yaml"], |root, stall| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(root.join("goapp.yaml"))
                .unwrap();
            stall();
            write_in_two(&mut f, stall);
        })
        .await;
    assert_eq!(batches, vec![BTreeSet::from([b.root.join("goapp.yaml")])]);
}

#[tokio::test]
async fn sed_in_place_is_one_batch() {
    let mut b = Bench::new(&["goapp.yaml"]);
    let batches = b
        .run(&["goapp.yaml"], |root, stall| {
            // GNU sed -i: a temp file `sedXXXXXX` in the same directory, renamed over.
            let tmp = root.join("sedK3x9Qa");
            let mut f = File::create(&tmp).unwrap();
            write_in_two(&mut f, stall);
            drop(f);
            fs::rename(&tmp, root.join("goapp.yaml")).unwrap();
        })
        .await;
    let root = &b.root;
    assert_eq!(
        batches,
        vec![BTreeSet::from([
            root.join("goapp.yaml"),
            root.join("sedK3x9Qa")
        ])]
    );
}

#[tokio::test]
async fn git_checkout_of_many_files_is_one_batch() {
    let names: Vec<String> = (0..20).map(|i| format!("r{i:02}.yaml")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut b = Bench::new(&refs);
    let names2 = names.clone();
    let batches = b
        .run(&refs, move |root, stall| {
            // git unlinks each file it changes and creates it anew, writing it in one go; a
            // new directory comes with its files.
            for (i, n) in names2.iter().enumerate() {
                fs::remove_file(root.join(n)).unwrap();
                if i == 3 {
                    stall();
                }
                let mut f = File::create(root.join(n)).unwrap();
                if i == 7 {
                    write_in_two(&mut f, stall);
                } else {
                    f.write_all(new_text().as_bytes()).unwrap();
                }
            }
        })
        .await;
    let all: BTreeSet<PathBuf> = names.iter().map(|n| b.root.join(n)).collect();
    assert_eq!(batches, vec![all]);
}

#[tokio::test]
async fn a_routing_directory_deleted_and_recreated_is_watched_again() {
    // A deletion ships with the window, never early (its files may be about to come back), so
    // this test has a short one.
    let mut b = Bench::with_window(&["goapp.yaml"], Duration::from_millis(300));
    let root = b.root.clone();
    fs::remove_dir_all(&root).unwrap();
    fs::create_dir(&root).unwrap();
    let mut seen = BTreeSet::new();
    while !seen.contains(&root) {
        let batch = b.watcher.next_batch().await.unwrap();
        assert!(
            !batch.finished,
            "a deletion shipped early: {:?}",
            batch.paths
        );
        seen.extend(batch.paths);
    }
    // Watched again: a file saved in the new directory is seen.
    let batches = b
        .run(&["new.yaml"], |root, _| {
            fs::write(root.join("new.yaml"), new_text()).unwrap();
        })
        .await;
    assert!(batches.iter().any(|b| b.contains(&root.join("new.yaml"))));
}
