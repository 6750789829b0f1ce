//! The desired state read from the configured sources, kept per file across reloads.
//!
//! Each YAML file and each chart is an entry with its last good objects. Reloading an entry
//! that no longer parses (or a chart whose `helm template` fails) keeps the last good objects
//! and records the error, so a half-typed save neither changes nor prunes anything; the next
//! good save replaces them. A file that disappeared contributes nothing (its objects are then
//! pruned, which is what deleting a file means).
//!
//! [`SourceSet::desired`] joins the entries into a [`Desired`]: duplicates are refused with
//! both places named, and any error blocks prune.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, Source};
use crate::manifest::{
    self, LoadError, LoadOptions, Loaded, ObjectKey, Skipped, SourceObject, helm, read::Note,
};
use crate::sync::Desired;

#[derive(Debug, Clone, Default)]
struct Entry {
    /// Objects from the last time this entry loaded (parsed) successfully.
    good: Vec<SourceObject>,
    /// Non-owned objects (workloads) from the same load, for analysis.
    others: Vec<SourceObject>,
    errors: Vec<LoadError>,
    skipped: Vec<Skipped>,
    notes: Vec<Note>,
    /// Objects of `good` the schema refuses: held back.
    refused: Vec<ObjectKey>,
    /// True when `good` is stale: the current content failed to parse or render.
    stale: bool,
}

/// An error that concerns a source as a whole (a missing directory).
#[derive(Debug, Clone, Serialize)]
pub struct SourceProblem {
    pub source: String,
    pub message: String,
    /// The directory source it concerns, cleared when that directory is listed again.
    #[serde(skip)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug)]
pub struct SourceSet {
    config: Config,
    opts: LoadOptions,
    /// Keyed by file path for directory sources and by chart directory for charts.
    entries: BTreeMap<PathBuf, Entry>,
    problems: Vec<SourceProblem>,
    /// What the directory walks skipped (symlink loops, unreadable directories), per source.
    walk_notes: BTreeMap<PathBuf, Vec<Note>>,
}

/// What changed in a reload, for the log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub files: usize,
    pub charts: usize,
}

impl SourceSet {
    pub fn new(config: Config, default_namespace: String) -> SourceSet {
        let opts = LoadOptions {
            owned: config.owned_kinds.clone(),
            default_namespace,
            keep_others: false,
            limits: config.limits,
        };
        SourceSet {
            config,
            opts,
            entries: BTreeMap::new(),
            problems: Vec::new(),
            walk_notes: BTreeMap::new(),
        }
    }

    /// Also keep non-owned objects (for analysis of workloads in the same files).
    pub fn keep_others(mut self) -> SourceSet {
        self.opts.keep_others = true;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads every source from scratch.
    pub fn load_all(&mut self) {
        self.problems.clear();
        let mut seen = BTreeSet::new();
        for source in self.config.sources.clone() {
            match &source {
                Source::Dir { path } => match self.list(path) {
                    Some(files) => {
                        for f in files {
                            self.load_file(&f);
                            seen.insert(f);
                        }
                    }
                    // Its entries stay as they were: a vanished directory blocks prune rather
                    // than deleting what it defined.
                    None => seen.extend(self.files_under(path)),
                },
                Source::Chart { path, .. } => {
                    self.load_chart(&source);
                    seen.insert(path.clone());
                }
            }
        }
        self.entries.retain(|k, _| seen.contains(k));
    }

    /// Lists a directory source, recording its walk notes, or its problem when the directory
    /// itself cannot be read.
    fn list(&mut self, dir: &Path) -> Option<Vec<PathBuf>> {
        self.problems.retain(|p| p.dir.as_deref() != Some(dir));
        match manifest::list_yaml_files(dir) {
            Ok(listing) => {
                self.walk_notes.insert(dir.to_path_buf(), listing.notes);
                Some(listing.files)
            }
            Err(e) => {
                self.problems.push(SourceProblem {
                    source: self.config.display_path(dir).into_owned(),
                    message: format!("cannot read directory: {e}"),
                    dir: Some(dir.to_path_buf()),
                });
                None
            }
        }
    }

    /// Reloads what the changed paths touch: YAML files of directory sources one by one, a
    /// chart as a whole when any file under it or any of its values files changed. Returns
    /// how many entries were reloaded.
    pub fn reload(&mut self, changed: &[PathBuf]) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let mut charts: Vec<Source> = Vec::new();
        let mut files: BTreeSet<PathBuf> = BTreeSet::new();
        for path in changed {
            for source in self.config.sources.clone() {
                match &source {
                    // The source directory itself (or a parent) was deleted, recreated or
                    // replaced: list it again.
                    Source::Dir { path: dir } if dir.starts_with(path) => {
                        if let Some(found) = self.list(dir) {
                            files.extend(self.files_under(dir));
                            files.extend(found);
                        }
                    }
                    Source::Dir { path: dir } if path.starts_with(dir) => {
                        files.extend(self.changed_files(dir, path));
                    }
                    Source::Chart {
                        path: chart,
                        values,
                        ..
                    } if (path.starts_with(chart) || values.iter().any(|v| v == path))
                        && !charts.contains(&source) =>
                    {
                        charts.push(source.clone());
                    }
                    _ => {}
                }
            }
        }
        for f in files {
            if std::fs::symlink_metadata(&f).is_ok() {
                self.load_file(&f);
            } else if !self.root_missing(&f) {
                self.entries.remove(&f);
            }
            summary.files += 1;
        }
        for c in charts {
            self.load_chart(&c);
            summary.charts += 1;
        }
        summary
    }

    /// The files a changed path inside directory source `dir` stands for: the YAML file
    /// itself, or for a directory (appeared, vanished, renamed, replaced by a file) what was
    /// read under it before and what is under it now.
    fn changed_files(&mut self, dir: &Path, path: &Path) -> Vec<PathBuf> {
        let mut out = self.files_under(path);
        if manifest::is_yaml_file(path) {
            out.push(path.to_path_buf());
        } else if path.is_dir() {
            // Re-walk the whole source: a new symlink can close a loop anywhere in it.
            if let Some(found) = self.list(dir) {
                out.extend(found.into_iter().filter(|f| f.starts_with(path)));
            }
        }
        out
    }

    /// A file whose whole directory source is gone keeps its entry: the directory's problem
    /// blocks prune, and a deleted directory must not look like deleted files.
    fn root_missing(&self, file: &Path) -> bool {
        self.config
            .sources
            .iter()
            .any(|s| matches!(s, Source::Dir { path } if file.starts_with(path) && !path.is_dir()))
    }

    fn files_under(&self, dir: &Path) -> Vec<PathBuf> {
        self.entries
            .keys()
            .filter(|k| k.starts_with(dir))
            .cloned()
            .collect()
    }

    fn load_file(&mut self, path: &Path) {
        let shown = self.config.display_path(path).into_owned();
        let loaded = manifest::load_file(path, &shown, &self.opts);
        self.store(path.to_path_buf(), loaded);
    }

    fn load_chart(&mut self, source: &Source) {
        let Source::Chart {
            path,
            release,
            namespace,
            values,
            set,
        } = source
        else {
            return;
        };
        let shown = self.config.display_path(path).into_owned();
        let ns = namespace
            .clone()
            .unwrap_or_else(|| self.opts.default_namespace.clone());
        let req = helm::ChartRequest {
            helm: &self.config.helm,
            chart: path,
            shown_as: &shown,
            release,
            namespace: &ns,
            values,
            set,
        };
        let mut opts = self.opts.clone();
        // Objects a chart renders without a namespace land in the release namespace.
        opts.default_namespace = ns.clone();
        let loaded = match helm::load_chart(&req, &opts) {
            Ok(l) => l,
            Err(e) => Loaded {
                errors: vec![LoadError {
                    file: shown,
                    pos: Default::default(),
                    object: None,
                    message: e.to_string(),
                }],
                ..Loaded::default()
            },
        };
        self.store(path.clone(), loaded);
    }

    fn store(&mut self, key: PathBuf, loaded: Loaded) {
        let entry = self.entries.entry(key).or_default();
        entry.errors = loaded.errors;
        entry.notes = loaded.notes;
        if loaded.parsed {
            entry.good = loaded.objects;
            entry.others = loaded.others;
            entry.skipped = loaded.skipped;
            entry.refused = loaded.refused;
            entry.stale = false;
        } else {
            entry.stale = true;
        }
    }

    /// All current errors, in file order.
    pub fn errors(&self) -> Vec<LoadError> {
        self.entries
            .values()
            .flat_map(|e| e.errors.iter().cloned())
            .collect()
    }

    pub fn problems(&self) -> &[SourceProblem] {
        &self.problems
    }

    /// What was skipped while reading (symlink loops, FIFOs, devices), one line each.
    pub fn notes(&self) -> Vec<String> {
        let walk = self.walk_notes.values().flatten();
        let files = self.entries.values().flat_map(|e| e.notes.iter());
        // One line per path (a FIFO seen by the walk and by a reload is one FIFO), and only
        // for what is still there.
        let by_path: BTreeMap<&Path, &str> = walk
            .chain(files)
            .filter(|n| std::fs::symlink_metadata(&n.path).is_ok())
            .map(|n| (n.path.as_path(), n.message.as_str()))
            .collect();
        by_path
            .into_iter()
            .map(|(p, m)| format!("{}: {m}", self.config.display_path(p)))
            .collect()
    }

    /// Kinds found in directory sources that are not owned, merged across files.
    pub fn skipped(&self) -> Vec<Skipped> {
        let mut merged: BTreeMap<String, Skipped> = BTreeMap::new();
        for s in self.entries.values().flat_map(|e| e.skipped.iter()) {
            merged
                .entry(s.kind.to_string())
                .and_modify(|m| m.count += s.count)
                .or_insert_with(|| s.clone());
        }
        merged.into_values().collect()
    }

    /// Non-owned objects seen in the sources (Deployments, Services) for offline analysis.
    pub fn others(&self) -> Vec<SourceObject> {
        self.others_iter().cloned().collect()
    }

    /// The same without copying, for lookups on hot paths.
    pub fn others_iter(&self) -> impl Iterator<Item = &SourceObject> {
        self.entries.values().flat_map(|e| e.others.iter())
    }

    /// Joins the entries into the desired state.
    pub fn desired(&self) -> (Desired, Vec<LoadError>) {
        let mut errors = self.errors();
        let mut by_key: BTreeMap<ObjectKey, Vec<&SourceObject>> = BTreeMap::new();
        for obj in self.entries.values().flat_map(|e| e.good.iter()) {
            by_key.entry(obj.key.clone()).or_default().push(obj);
        }
        let mut desired = Desired::default();
        desired.held.extend(
            self.entries
                .values()
                .flat_map(|e| e.refused.iter().cloned()),
        );
        for (key, defs) in by_key {
            if defs.len() > 1 {
                let places: Vec<String> = defs.iter().map(|o| o.origin.to_string()).collect();
                let first = defs[0];
                errors.push(LoadError {
                    file: defs[1].origin.file.clone(),
                    pos: defs[1].origin.pos,
                    object: Some(first.label()),
                    message: format!(
                        "defined more than once ({}); neither copy is applied until one is removed",
                        places.join(" and ")
                    ),
                });
                desired.held.insert(key);
            }
            desired.objects.push(defs[0].clone());
        }
        // A source that cannot be read at all (its directory deleted) is an error like a
        // file's: said, and prune waits; what it defined stays as last read.
        errors.extend(self.problems.iter().map(|p| LoadError {
            file: p.source.clone(),
            pos: Default::default(),
            object: None,
            message: p.message.clone(),
        }));
        for e in &errors {
            desired.blockers.push(e.to_string());
        }
        (desired, errors)
    }
}
