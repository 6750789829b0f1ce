//! `meshloop check` and `meshloop explain`: gathering inputs, running the analysis, printing.
//!
//! Inputs are either the PATHs given (files or directories, read recursively, every kind
//! kept so Services and Deployments inform the analysis; no config needed) or, with no PATH,
//! the sources of `meshloop.yaml` (charts rendered with `helm template`). Live facts are read
//! only when a cluster is given, `offline` is false and the cluster answers; an unreachable
//! cluster degrades to offline analysis with a note, never to a failure.
//!
//! Exit codes follow DESIGN.md: 0 clean or warnings only, 1 error findings (an explain that
//! ends in 404/503/refused), 2 usage or I/O errors. Argument parsing is the CLI's job; this
//! module takes plain structs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::checks;
use super::explain::{self, Explanation, Outcome, Request};
use super::findings::{self, Finding, Severity};
use super::live;
use super::model::{Facts, Model};
use crate::cluster::Cluster;
use crate::config::{self, Config, Ingress};
use crate::manifest::{self, LoadError, LoadOptions, SourceObject};
use crate::sources::SourceSet;

/// Output format of the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default)]
pub struct CheckArgs {
    /// Files or directories; empty means the config's sources.
    pub paths: Vec<PathBuf>,
    /// Never contact a cluster.
    pub offline: bool,
    pub format: Format,
}

#[derive(Debug, Clone)]
pub struct ExplainArgs {
    pub host: String,
    /// A JSON file of requests to explain instead of `host`/`path`/...
    pub requests: Option<PathBuf>,
    pub path: String,
    pub method: String,
    /// `--header k=v`, already split.
    pub headers: Vec<(String, String)>,
    /// Gateway port (default 80).
    pub port: Option<u32>,
    /// Files or directories; empty means the config's sources.
    pub paths: Vec<PathBuf>,
    pub offline: bool,
    pub format: Format,
}

impl Default for ExplainArgs {
    fn default() -> Self {
        ExplainArgs {
            host: String::new(),
            requests: None,
            path: "/".into(),
            method: "GET".into(),
            headers: Vec::new(),
            port: None,
            paths: Vec::new(),
            offline: false,
            format: Format::Text,
        }
    }
}

/// Why a command could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

/// What was read for analysis.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub objects: Vec<SourceObject>,
    pub others: Vec<SourceObject>,
    /// Load errors as findings (ML0001, ML0002, ML0003).
    pub load_findings: Vec<Finding>,
    pub files: usize,
    pub facts: Option<Facts>,
    /// Things to tell the user on stderr (cluster unreachable, ...).
    pub notes: Vec<String>,
    pub ingress: Ingress,
}

/// The result of `check`.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub objects: usize,
    pub workloads: usize,
    pub files: usize,
    pub live: bool,
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    pub fn exit_code(&self) -> u8 {
        u8::from(self.count(Severity::Error) > 0)
    }
}

/// Analysis for the daemon's sync: the owned objects about to be applied, the non-owned
/// objects of the same sources, and live facts when the cluster answered. Error findings
/// name their object ([`Finding::key`]) so the caller can hold back exactly those.
pub fn analyze_for_sync(
    objects: &[SourceObject],
    others: &[SourceObject],
    facts: Option<&Facts>,
    ingress: &Ingress,
) -> Vec<Finding> {
    checks::analyze(&Model::build(objects, others, facts, ingress))
}

/// Turns a loader error into a finding: file-level (ML0001), object-level (ML0002), or a
/// duplicate definition (ML0003).
pub fn load_error_finding(e: &LoadError) -> Finding {
    let duplicate = e.message.starts_with("defined more than once");
    let (code, hint) = if duplicate {
        ("ML0003", "remove one of the definitions")
    } else if e.object.is_none() {
        (
            "ML0001",
            "fix the YAML; nothing from this file is used until it parses",
        )
    } else {
        (
            "ML0002",
            "fix the field; this object is left out until it is valid",
        )
    };
    let rule = findings::lookup(code);
    Finding {
        code,
        equivalent: rule.equivalent.to_vec(),
        severity: Severity::Error,
        object: e.object.clone().unwrap_or_default(),
        file: e.file.clone(),
        line: e.pos.line,
        col: e.pos.col,
        message: e.message.clone(),
        hint: hint.into(),
        needs_live: false,
        key: None,
    }
}

/// Reads the PATHs (or the config's sources) and, unless offline, the live facts.
pub async fn gather(
    paths: &[PathBuf],
    offline: bool,
    config: Option<&Config>,
    cluster: Option<&Cluster>,
) -> Result<Inputs, CommandError> {
    let namespace = config
        .and_then(|c| c.namespace.clone())
        .or_else(|| cluster.map(|c| c.default_namespace.clone()));
    let mut inputs = read_inputs(paths, config, namespace)?;
    if !offline && let Some(cluster) = cluster {
        match cluster.ping().await {
            Ok(_) => match live::fetch(cluster, &[]).await {
                Ok(f) => inputs.facts = Some(f),
                Err(e) => inputs.notes.push(format!(
                    "live facts unavailable ({e}); offline analysis only"
                )),
            },
            Err(e) => inputs.notes.push(format!("{e}; offline analysis only")),
        }
    }
    Ok(inputs)
}

/// The offline part of [`gather`]: reads the PATHs, or the config's sources when there are
/// none. `namespace` fills in objects that name none (default: `default`).
pub fn read_inputs(
    paths: &[PathBuf],
    config: Option<&Config>,
    namespace: Option<String>,
) -> Result<Inputs, CommandError> {
    let namespace = namespace.unwrap_or_else(|| "default".into());
    let mut inputs = Inputs {
        ingress: config.map(|c| c.ingress.clone()).unwrap_or_default(),
        ..Inputs::default()
    };
    if paths.is_empty() {
        let Some(config) = config else {
            return Err(CommandError::Usage(
                "nothing to check: pass files or directories, or run where meshloop.yaml is".into(),
            ));
        };
        if config.sources.is_empty() {
            return Err(CommandError::Usage(
                "nothing to check: pass files or directories, or add `sources:` to meshloop.yaml"
                    .into(),
            ));
        }
        let mut set = SourceSet::new(config.clone(), namespace).keep_others();
        set.load_all();
        if let Some(p) = set.problems().first() {
            return Err(CommandError::Usage(format!("{}: {}", p.source, p.message)));
        }
        let (desired, errors) = set.desired();
        inputs.files = config.sources.len();
        inputs.objects = desired.objects;
        inputs.others = set.others();
        inputs.load_findings = errors.iter().map(load_error_finding).collect();
        inputs.notes.extend(set.notes());
    } else {
        let opts = LoadOptions {
            owned: config.map_or_else(config::default_owned_kinds, |c| c.owned_kinds.clone()),
            default_namespace: namespace,
            keep_others: true,
            limits: config.map(|c| c.limits).unwrap_or_default(),
        };
        read_paths(paths, &opts, &mut inputs)?;
    }
    Ok(inputs)
}

fn read_paths(
    paths: &[PathBuf],
    opts: &LoadOptions,
    inputs: &mut Inputs,
) -> Result<(), CommandError> {
    let io = |p: &Path, source| CommandError::Io {
        path: p.display().to_string(),
        source,
    };
    let files = list_files(paths, &mut inputs.notes).map_err(|(p, e)| io(&p, e))?;
    let loaded = load_parallel(&files, opts).map_err(|(f, e)| io(&f, e))?;
    inputs
        .objects
        .reserve(loaded.iter().map(|l| l.objects.len()).sum());
    inputs
        .others
        .reserve(loaded.iter().map(|l| l.others.len()).sum());
    // Each object's key, and where in `inputs.objects` the first object with that key is.
    let mut seen: HashMap<manifest::ObjectKey, usize> = HashMap::new();
    for loaded in loaded {
        inputs.files += 1;
        inputs
            .load_findings
            .extend(loaded.errors.iter().map(load_error_finding));
        inputs.notes.extend(
            loaded
                .notes
                .iter()
                .map(|n| format!("{}: {}", n.path.display(), n.message)),
        );
        for obj in loaded.objects {
            add_object(inputs, &mut seen, obj);
        }
        inputs.others.extend(loaded.others);
    }
    Ok(())
}

/// The files of `paths`: directories listed (their notes kept), files as given.
fn list_files(
    paths: &[PathBuf],
    notes: &mut Vec<String>,
) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| (p.clone(), e))?;
        if !meta.is_dir() {
            files.push(p.clone());
            continue;
        }
        let listing = manifest::list_yaml_files(p).map_err(|e| (p.clone(), e))?;
        files.extend(listing.files);
        notes.extend(
            listing
                .notes
                .iter()
                .map(|n| format!("{}: {}", n.path.display(), n.message)),
        );
    }
    Ok(files)
}

/// Adds an owned object, or reports it as defined twice (`seen`: where in `inputs.objects`
/// the first object with each key is).
fn add_object(
    inputs: &mut Inputs,
    seen: &mut HashMap<manifest::ObjectKey, usize>,
    obj: manifest::SourceObject,
) {
    if let Some(&first) = seen.get(&obj.key) {
        let twice = LoadError {
            file: obj.origin.file.clone(),
            pos: obj.origin.pos,
            object: Some(obj.key.to_string()),
            message: format!(
                "defined more than once (first at {})",
                inputs.objects[first].origin
            ),
        };
        inputs.load_findings.push(load_error_finding(&twice));
        return;
    }
    seen.insert(obj.key.clone(), inputs.objects.len());
    inputs.objects.push(obj);
}

/// Reads and parses files on all cores (parsing YAML with positions is most of the cost of
/// an offline check); results come back in the order of `files`.
fn load_parallel(
    files: &[PathBuf],
    opts: &LoadOptions,
) -> Result<Vec<manifest::Loaded>, (PathBuf, std::io::Error)> {
    // Through the bounded reader: a FIFO or a device named on the command line is skipped
    // with a note instead of blocking or reading forever.
    let load = |f: &PathBuf| {
        Ok::<_, (PathBuf, std::io::Error)>(manifest::load_file(f, &f.display().to_string(), opts))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads < 2 || files.len() < 4 {
        return files.iter().map(load).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(load).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for h in handles {
            // A panic in the loader is a bug; re-raise it rather than hide it.
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
        }
        Ok(out)
    })
}

/// Gathers, analyzes, and returns the report; prints nothing.
pub async fn run_check(
    args: &CheckArgs,
    config: Option<&Config>,
    cluster: Option<&Cluster>,
) -> Result<CheckReport, CommandError> {
    let inputs = gather(&args.paths, args.offline, config, cluster).await?;
    Ok(report(inputs))
}

/// Analyzes inputs already read.
pub fn report(inputs: Inputs) -> CheckReport {
    let model = Model::build(
        &inputs.objects,
        &inputs.others,
        inputs.facts.as_ref(),
        &inputs.ingress,
    );
    let analyzed = checks::analyze(&model);
    // An object its CRD's schema refuses is still analyzed; where an analyzer says more about
    // the same line of the same object, its finding replaces the schema's.
    let mut all: Vec<Finding> = inputs
        .load_findings
        .into_iter()
        .filter(|l| {
            l.code != "ML0002"
                || !analyzed
                    .iter()
                    .any(|a| a.file == l.file && a.line == l.line && same_object(a, l))
        })
        .collect();
    all.extend(analyzed);
    findings::sort(&mut all);
    let report = CheckReport {
        findings: all,
        objects: inputs.objects.len(),
        workloads: inputs.others.len(),
        files: inputs.files,
        live: inputs.facts.is_some(),
        notes: inputs.notes,
    };
    release((model, inputs.objects, inputs.others, inputs.facts));
    report
}

/// Frees what a check read on a thread of its own: freeing the YAML trees of 1,000 objects and
/// the model built from them is a good part of a check's time, and the report does not need
/// to wait for it (a `meshloop check` process exits first).
fn release<T: Send + 'static>(what: T) {
    // When no thread can be started, the closure, and `what` with it, is dropped right here.
    let _ = std::thread::Builder::new()
        .name("release".into())
        .spawn(move || drop(what));
}

/// `VirtualService dev/goapp` (an analyzer's) and `VirtualService goapp` (a loader's) name
/// the same object.
fn same_object(analyzer: &Finding, loader: &Finding) -> bool {
    match loader.object.split_once(' ') {
        Some((kind, name)) => {
            analyzer.object.starts_with(&format!("{kind} "))
                && analyzer.object.ends_with(&format!("/{name}"))
        }
        None => false,
    }
}

/// Compiler-style text: `file:line:col: severity[code]: message`, then the object, the hint
/// and the equivalent codes, then a summary line.
pub fn render_text(r: &CheckReport) -> String {
    let mut s = String::new();
    for f in &r.findings {
        let _ = writeln!(
            s,
            "{}: {}[{}]: {}",
            f.location(),
            f.severity,
            f.code,
            f.message
        );
        if !f.object.is_empty() {
            let _ = writeln!(s, "  = in: {}", f.object);
        }
        if !f.hint.is_empty() {
            let _ = writeln!(s, "  = hint: {}", f.hint);
        }
        if !f.equivalent.is_empty() {
            let _ = writeln!(s, "  = same as: {}", f.equivalent.join(", "));
        }
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(
        s,
        "{}, {}, {} in {} from {} ({})",
        plural(r.count(Severity::Error), "error"),
        plural(r.count(Severity::Warning), "warning"),
        plural(r.count(Severity::Info), "note"),
        plural(r.objects, "routing object"),
        plural(r.files, "source"),
        if r.live {
            "with live cluster facts"
        } else {
            "offline"
        }
    );
    s
}

/// `meshloop check`: prints findings (text or a JSON array) and returns the exit code.
pub async fn check(
    args: &CheckArgs,
    config: Option<&Config>,
    cluster: Option<&Cluster>,
) -> ExitCode {
    match run_check(args, config, cluster).await {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Ok(r) => {
            for n in &r.notes {
                eprintln!("note: {n}");
            }
            let mut out = std::io::stdout().lock();
            let _ = match args.format {
                Format::Json => serde_json::to_writer_pretty(&mut out, &r.findings)
                    .map_err(std::io::Error::other)
                    .and_then(|_| writeln!(out)),
                Format::Text => out.write_all(render_text(&r).as_bytes()),
            };
            ExitCode::from(r.exit_code())
        }
    }
}

/// Simulates the request of `args` (or each request of `args.requests`) over the gathered
/// inputs.
pub async fn run_explain(
    args: &ExplainArgs,
    config: Option<&Config>,
    cluster: Option<&Cluster>,
) -> Result<(Vec<Explanation>, Vec<String>), CommandError> {
    let requests = match &args.requests {
        Some(path) => read_requests(path)?,
        None if args.host.is_empty() => {
            return Err(CommandError::Usage("--host is required".into()));
        }
        None => vec![Request {
            host: args.host.clone(),
            path: args.path.clone(),
            method: args.method.clone(),
            headers: args.headers.iter().cloned().collect(),
            port: args.port,
        }],
    };
    let inputs = gather(&args.paths, args.offline, config, cluster).await?;
    let model = Model::build(
        &inputs.objects,
        &inputs.others,
        inputs.facts.as_ref(),
        &inputs.ingress,
    );
    let out = requests
        .into_iter()
        .map(|r| explain::explain(&model, &r.normalized()))
        .collect();
    Ok((out, inputs.notes))
}

/// Reads `[{host, path, method, headers, port}]`; a malformed file names its line and column.
fn read_requests(path: &Path) -> Result<Vec<Request>, CommandError> {
    let text = std::fs::read_to_string(path).map_err(|source| CommandError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CommandError::Usage(format!(
            "{}:{}:{}: expected a JSON array of requests {{host, path, method, headers, port}}: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

/// Parses `k=v` (or `k:v`) as given to `--header`.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| format!("expected NAME=VALUE, found {s:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("expected NAME=VALUE, found {s:?}"));
    }
    Ok((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// `meshloop explain`: prints the walk and returns 0 when the request would be served
/// (routed, redirected or answered directly), 1 when it would stop (404, 503, refused).
pub async fn explain(
    args: &ExplainArgs,
    config: Option<&Config>,
    cluster: Option<&Cluster>,
) -> ExitCode {
    match run_explain(args, config, cluster).await {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Ok((all, notes)) => {
            for n in &notes {
                eprintln!("note: {n}");
            }
            let mut out = std::io::stdout().lock();
            let _ = match (args.format, &args.requests) {
                (Format::Json, None) => serde_json::to_writer_pretty(&mut out, &all[0])
                    .map_err(std::io::Error::other)
                    .and_then(|_| writeln!(out)),
                (Format::Json, Some(_)) => serde_json::to_writer_pretty(&mut out, &all)
                    .map_err(std::io::Error::other)
                    .and_then(|_| writeln!(out)),
                (Format::Text, _) => all
                    .iter()
                    .try_for_each(|ex| out.write_all(ex.render_text().as_bytes())),
            };
            let served = all.iter().all(|ex| {
                matches!(
                    ex.outcome,
                    Outcome::Routed { .. }
                        | Outcome::Redirect { .. }
                        | Outcome::DirectResponse { .. }
                )
            });
            ExitCode::from(if served { 0 } else { 1 })
        }
    }
}
