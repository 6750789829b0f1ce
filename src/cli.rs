//! The `meshloop` commands: argument parsing, output for people and tools, exit codes.
//!
//! Exit codes are a contract: 0 ok, 1 something failed (an object, a file, the cluster),
//! 2 usage or configuration error. Text output is for a terminal (aligned columns, colour only
//! on a TTY and never with `NO_COLOR`); `--output json` is for tools and is printed whole on
//! stdout, diagnostics go to stderr.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::{Cluster, Target};
use crate::config::Config;
use crate::manifest::LoadError;
use crate::sources::SourceSet;
use crate::sync::{self, Outcome, SyncOptions, SyncReport};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "meshloop",
    version,
    about = "Owns the Istio routing objects of a local dev loop: applies them on every save, prunes what left the files, verifies the gateway path",
    long_about = None,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// The config file (default: meshloop.yaml in the working directory).
    #[arg(long, global = true, env = "MESHLOOP_CONFIG")]
    pub config: Option<PathBuf>,
    /// The kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the dev-loop daemon: watch the sources, re-apply on every save, serve the HTTP API.
    Up(UpArgs),
    /// Apply the routing objects once (server-side apply) and prune what left the files.
    Apply(ApplyArgs),
    /// Show what `apply` would change, from a server-side dry run.
    Diff(DiffArgs),
    /// Analyze routing: findings with file:line:col, offline or with live cluster facts.
    Check(CheckCli),
    /// Say where a request would go: Gateway, VirtualService, rule, destinations, endpoints.
    Explain(ExplainCli),
    /// Verify the gateway path end to end: every route through the ingress with its Host
    /// header, weighted splits observed, the broken hop named. Asks the running daemon when
    /// one answers on `listen`, else runs here.
    Verify(VerifyCli),
    /// Delete every object of this instance from the cluster (both ownership labels), nothing
    /// else: the teardown `tilt down` does not do.
    Down(DownArgs),
    /// Check the environment: cluster, Istio CRDs, istiod, ingress address, injection label,
    /// and the Gateways' selectors against the gateway Pods.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct VerifyCli {
    /// Run here even when a daemon answers.
    #[arg(long, conflicts_with = "wait")]
    pub standalone: bool,
    /// Wait up to this long for a daemon to answer on `listen` (one starting beside this
    /// command, as under `tilt up`), and let its verification settle as its own runs after a
    /// change do (`verify.settle_ms`). Runs here when none answers in time.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct CheckCli {
    /// Files or directories of YAML (default: the config's sources).
    pub paths: Vec<PathBuf>,
    /// Never contact a cluster (live findings are left out).
    #[arg(long)]
    pub offline: bool,
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ExplainCli {
    /// The Host header of the request.
    #[arg(long, required_unless_present = "requests")]
    pub host: Option<String>,
    /// A JSON file with many requests, `[{host, path, method, headers, port}]` (as `dev/oracle`
    /// takes); prints one explanation per request (with `-o json`, a JSON array).
    #[arg(long, conflicts_with = "host")]
    pub requests: Option<PathBuf>,
    #[arg(long, default_value = "/")]
    pub path: String,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header, `name=value` (repeatable).
    #[arg(long = "header", value_parser = crate::analyze::command::parse_header)]
    pub headers: Vec<(String, String)>,
    /// The gateway port the request arrives on (default 80).
    #[arg(long)]
    pub port: Option<u32>,
    /// Files or directories of YAML (default: the config's sources).
    pub paths: Vec<PathBuf>,
    /// Never contact a cluster (endpoints are not checked).
    #[arg(long)]
    pub offline: bool,
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address of the HTTP API (default: `listen` in the config, else 127.0.0.1:8787).
    #[arg(long)]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Send everything as a server-side dry run; nothing is changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not delete objects that left the files (overrides `prune: true`).
    #[arg(long)]
    pub no_prune: bool,
    /// Take fields owned by another field manager (overrides `force_conflicts`).
    #[arg(long)]
    pub force_conflicts: bool,
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Send the deletes as a server-side dry run; nothing is deleted.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Leave out pruning from the comparison.
    #[arg(long)]
    pub no_prune: bool,
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Why a command stopped early, mapped to an exit code.
#[derive(Debug)]
enum Failure {
    /// Usage or configuration: exit 2.
    Usage(String),
    /// Something failed: exit 1 (the message is already printed when empty).
    Failed(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("{} {m}", paint("error:", RED));
                ExitCode::from(2)
            }
            Failure::Failed(m) => {
                if !m.is_empty() {
                    eprintln!("{} {m}", paint("error:", RED));
                }
                ExitCode::from(1)
            }
        }
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Up(args) => up(&cli.global, args).await,
        Command::Check(args) => return check(&cli.global, args).await,
        Command::Explain(args) => return explain(&cli.global, args).await,
        Command::Doctor(args) => doctor(&cli.global, args).await,
        Command::Verify(args) => verify(&cli.global, args).await,
        Command::Apply(args) => apply(&cli.global, args).await,
        Command::Down(args) => down(&cli.global, args).await,
        Command::Diff(args) => {
            let apply_args = ApplyArgs {
                dry_run: true,
                no_prune: args.no_prune,
                force_conflicts: false,
                output: args.output,
            };
            diff(&cli.global, apply_args).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.exit(),
    }
}

/// The config for commands that also work on plain files: an explicit `--config` must load;
/// a discovered `meshloop.yaml` is used when it loads, and skipped with a warning when the
/// paths are given on the command line.
fn optional_config(global: &Global, have_paths: bool) -> Result<Option<Config>, Failure> {
    match load_config(global) {
        Ok(c) => Ok(Some(c)),
        Err(e) if global.config.is_none() && have_paths => {
            eprintln!(
                "{} {e} (ignored: analyzing the given paths)",
                paint("warning:", YELLOW)
            );
            Ok(None)
        }
        Err(e) => Err(Failure::Usage(e)),
    }
}

async fn optional_cluster(global: &Global, offline: bool) -> Option<Cluster> {
    if offline {
        return None;
    }
    Cluster::connect(&target(global)).await.ok()
}

fn format_of(o: Output) -> crate::analyze::command::Format {
    match o {
        Output::Text => crate::analyze::command::Format::Text,
        Output::Json => crate::analyze::command::Format::Json,
    }
}

async fn doctor(global: &Global, args: DoctorArgs) -> Result<(), Failure> {
    let config = load_config(global).map_err(Failure::Usage)?;
    let cluster = Cluster::connect(&target(global)).await;
    let namespace =
        config.namespace_or(cluster.as_ref().ok().map(|c| c.default_namespace.as_str()));
    let mut set = SourceSet::new(config.clone(), namespace.clone());
    set.load_all();
    let (desired, _) = set.desired();
    let checks = crate::doctor::run(&config, cluster.as_ref(), &namespace, &desired.objects).await;
    match args.output {
        Output::Json => print_json(&serde_json::json!({ "checks": checks })),
        Output::Text => print!("{}", crate::doctor::render(&checks)),
    }
    if checks.iter().all(|c| c.ok) {
        Ok(())
    } else {
        Err(Failure::Failed(String::new()))
    }
}

async fn check(global: &Global, args: CheckCli) -> ExitCode {
    let config = match optional_config(global, !args.paths.is_empty()) {
        Ok(c) => c,
        Err(f) => return f.exit(),
    };
    let cluster = optional_cluster(global, args.offline).await;
    let a = crate::analyze::command::CheckArgs {
        paths: args.paths,
        offline: args.offline,
        format: format_of(args.output),
    };
    crate::analyze::command::check(&a, config.as_ref(), cluster.as_ref()).await
}

async fn explain(global: &Global, args: ExplainCli) -> ExitCode {
    let config = match optional_config(global, !args.paths.is_empty()) {
        Ok(c) => c,
        Err(f) => return f.exit(),
    };
    let cluster = optional_cluster(global, args.offline).await;
    let a = crate::analyze::command::ExplainArgs {
        host: args.host.unwrap_or_default(),
        requests: args.requests,
        path: args.path,
        method: args.method,
        headers: args.headers,
        port: args.port,
        paths: args.paths,
        offline: args.offline,
        format: format_of(args.output),
    };
    crate::analyze::command::explain(&a, config.as_ref(), cluster.as_ref()).await
}

async fn verify(global: &Global, args: VerifyCli) -> Result<(), Failure> {
    let config = load_config(global).map_err(Failure::Usage)?;
    let from_daemon = if args.standalone {
        None
    } else if let Some(secs) = args.wait {
        wait_for_daemon(&config.listen, std::time::Duration::from_secs(secs)).await;
        ask_daemon(&config.listen, true).await
    } else {
        ask_daemon(&config.listen, false).await
    };
    let report = match from_daemon {
        Some(Ok(r)) => {
            eprintln!("(verified by the daemon at http://{})", config.listen);
            r
        }
        Some(Err(e)) => return Err(Failure::Failed(e)),
        None => {
            let cluster = Cluster::connect(&target(global)).await;
            if let Err(e) = &cluster {
                eprintln!("{} {e}", paint("warning:", YELLOW));
            }
            let cluster = cluster.ok();
            let namespace =
                config.namespace_or(cluster.as_ref().map(|c| c.default_namespace.as_str()));
            let mut set = SourceSet::new(config.clone(), namespace).keep_others();
            set.load_all();
            let (desired, errors) = set.desired();
            print_errors(&errors);
            let others = set.others();
            crate::verify::run(crate::verify::Input {
                objects: &desired.objects,
                others: &others,
                ingress: &config.ingress,
                checks: &config.checks,
                settings: &config.verify,
                config_file: config
                    .file
                    .as_ref()
                    .map(|f| config.display_path(f).into_owned()),
                cluster: cluster.as_ref(),
                trigger: "cli",
            })
            .await
        }
    };
    match args.output {
        Output::Json => print_json(&serde_json::to_value(&report).unwrap_or_default()),
        Output::Text => print!("{}", report.render_text()),
    }
    if report.ok {
        Ok(())
    } else {
        Err(Failure::Failed(String::new()))
    }
}

/// Waits until something accepts connections on `listen`, at most `limit`.
async fn wait_for_daemon(listen: &str, limit: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut wait = std::time::Duration::from_millis(50);
    if tokio::net::TcpStream::connect(listen).await.is_ok() {
        return;
    }
    eprintln!(
        "(waiting for a daemon at {listen}, up to {} s)",
        limit.as_secs()
    );
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        if tokio::time::Instant::now() + wait > deadline {
            eprintln!(
                "(no daemon answered at {listen} within {} s)",
                limit.as_secs()
            );
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_millis(500));
    }
}

/// `POST /verify` on a running daemon (`settle`: retried within `verify.settle_ms`). `None`
/// when nothing answers there (run standalone).
async fn ask_daemon(listen: &str, settle: bool) -> Option<Result<crate::verify::Report, String>> {
    use http_body_util::{BodyExt, Full};
    let mut conn = hyper_util::client::legacy::connect::HttpConnector::new();
    conn.set_connect_timeout(Some(std::time::Duration::from_millis(500)));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<bytes::Bytes>>(conn);
    let query = if settle { "?settle=true" } else { "" };
    let req = http::Request::post(format!("http://{listen}/verify{query}"))
        .body(Full::default())
        .ok()?;
    let resp = match tokio::time::timeout(std::time::Duration::from_secs(180), client.request(req))
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.is_connect() => return None,
        Ok(Err(e)) => return Some(Err(format!("the daemon at {listen} failed: {e}"))),
        Err(_) => {
            return Some(Err(format!(
                "the daemon at {listen} did not answer in 180 s"
            )));
        }
    };
    let status = resp.status();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    if status == http::StatusCode::NOT_FOUND {
        // Something else listens there.
        return None;
    }
    Some(serde_json::from_slice(&body).map_err(|e| {
        format!(
            "the daemon at {listen} answered {status} with something else than a report ({e}): {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        )
    }))
}

/// Reads the config named by `--config`, or `meshloop.yaml` in the working directory.
pub fn load_config(global: &Global) -> Result<Config, String> {
    match &global.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string()),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| format!("cannot read the working directory: {e}"))?;
            Config::discover(&cwd).map_err(|e| e.to_string())
        }
    }
}

pub fn target(global: &Global) -> Target {
    Target {
        kubeconfig: global.kubeconfig.clone(),
        context: global.context.clone(),
    }
}

/// Loads the config, connects, reads the sources and syncs once.
async fn sync_once(
    global: &Global,
    args: &ApplyArgs,
) -> Result<(SyncReport, Vec<LoadError>, Config), Failure> {
    let config = load_config(global).map_err(Failure::Usage)?;
    if config.sources.is_empty() {
        return Err(Failure::Usage(format!(
            "no sources: add `sources:` to {} (or create a routing/ directory)",
            config
                .file
                .as_ref()
                .map_or_else(|| "meshloop.yaml".into(), |f| f.display().to_string())
        )));
    }
    let cluster = Cluster::connect(&target(global))
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let namespace = config.namespace_or(Some(&cluster.default_namespace));
    let mut set = SourceSet::new(config.clone(), namespace);
    set.load_all();
    for s in set.skipped() {
        eprintln!(
            "{} {} is not a kind meshloop owns: skipped {} object(s), first at {} (add it to owned_kinds to manage it)",
            paint("warning:", YELLOW),
            s.kind,
            s.count,
            s.first
        );
    }
    for n in set.notes() {
        eprintln!("{} {n}", paint("note:", DIM));
    }
    let (desired, errors) = set.desired();
    let opts = SyncOptions {
        instance: config.instance.clone(),
        owned: config.owned_kinds.clone(),
        prune: config.prune && !args.no_prune,
        force_conflicts: config.force_conflicts || args.force_conflicts,
        dry_run: args.dry_run,
        previously_applied: Default::default(),
        restore_drift: true,
        only_known_kinds: false,
        cached_list: false,
    };
    let report = sync::sync(&cluster, &desired, &opts).await;
    Ok((report, errors, config))
}

async fn up(global: &Global, args: UpArgs) -> Result<(), Failure> {
    let config = load_config(global).map_err(Failure::Usage)?;
    if config.sources.is_empty() {
        return Err(Failure::Usage(
            "no sources: add `sources:` to meshloop.yaml (or create a routing/ directory)".into(),
        ));
    }
    let listen = args.listen.unwrap_or_else(|| config.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
        Failure::Usage(format!(
            "cannot listen on {listen}: {e} (is another `meshloop up` running? set `listen:` in meshloop.yaml or pass --listen)"
        ))
    })?;
    let cluster = Cluster::connect(&target(global))
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    crate::daemon::run(config, cluster, listener, crate::daemon::signals(), None)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))
}

async fn apply(global: &Global, args: ApplyArgs) -> Result<(), Failure> {
    let (report, errors, _) = sync_once(global, &args).await?;
    match args.output {
        Output::Json => print_json(&serde_json::json!({"report": report, "errors": errors})),
        Output::Text => {
            print_errors(&errors);
            print_report(&report, false);
        }
    }
    if report.ok() && errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(String::new()))
    }
}

async fn down(global: &Global, args: DownArgs) -> Result<(), Failure> {
    let config = load_config(global).map_err(Failure::Usage)?;
    let cluster = Cluster::connect(&target(global))
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let report = sync::down(
        &cluster,
        &config.instance,
        config.owned_kinds.clone(),
        args.dry_run,
    )
    .await;
    match args.output {
        Output::Json => print_json(&serde_json::json!({
            "instance": config.instance,
            "report": report,
        })),
        Output::Text => print_down(&report, &config.instance),
    }
    if report.ok() {
        Ok(())
    } else {
        Err(Failure::Failed(String::new()))
    }
}

async fn diff(global: &Global, args: ApplyArgs) -> Result<(), Failure> {
    let (report, errors, _) = sync_once(global, &args).await?;
    match args.output {
        Output::Json => print_json(
            &serde_json::json!({"diff": report.objects, "errors": errors, "prune_blocked": report.prune_blocked}),
        ),
        Output::Text => {
            print_errors(&errors);
            print_report(&report, true);
        }
    }
    if report.ok() && errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(String::new()))
    }
}

fn print_json(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = writeln!(out);
}

fn print_errors(errors: &[LoadError]) {
    for e in errors {
        eprintln!("{} {e}", paint("error:", RED));
    }
}

/// One line per object in aligned columns, then a summary; diff mode also lists the fields.
fn print_report(report: &SyncReport, diff: bool) {
    for e in &report.errors {
        eprintln!("{} {e}", paint("error:", RED));
    }
    let mut out = std::io::stdout().lock();
    print_objects(&mut out, report, diff);
    if let Some(b) = report.prune_blocked.first() {
        eprintln!("{} prune skipped: {b}", paint("warning:", YELLOW));
    }
    let c = report.counts;
    let verb = if diff {
        "diff of"
    } else if report.dry_run {
        "dry run of"
    } else {
        "synced"
    };
    let also = |n: usize, what: &str| {
        if n > 0 {
            format!(", {n} {what}")
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        out,
        "{verb} {} objects: {} created, {} changed, {} unchanged, {} pruned{}{} ({} ms)",
        report.objects.len(),
        c.created,
        c.changed,
        c.unchanged,
        c.pruned,
        also(c.failed, "failed"),
        also(c.conflicted, "conflicted"),
        report.duration.as_millis()
    );
}

/// One aligned, coloured line per object (what happened, kind, namespace/name, source), with
/// the changed fields under it in a diff and the message under a failure.
fn print_objects(out: &mut impl Write, report: &SyncReport, diff: bool) {
    let rows: Vec<[String; 4]> = report
        .objects
        .iter()
        .map(|o| {
            let word = match (&o.outcome, diff) {
                (Outcome::Created, true) => "create".to_string(),
                (Outcome::Changed { .. }, true) => "change".to_string(),
                (Outcome::Pruned, true) => "prune".to_string(),
                (out, _) => out.word().to_string(),
            };
            [
                word,
                o.key.kind.clone(),
                format!("{}/{}", o.key.namespace, o.key.name),
                o.source.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for (row, obj) in rows.iter().zip(&report.objects) {
        let colour = match obj.outcome {
            Outcome::Created => GREEN,
            Outcome::Changed { .. } => YELLOW,
            Outcome::Pruned => MAGENTA,
            Outcome::Failed { .. } | Outcome::Conflicted { .. } | Outcome::Drifted => RED,
            Outcome::Unchanged => DIM,
        };
        let first = format!("{:<w0$}", row[0]);
        let (kind, name, source) = (&row[1], &row[2], &row[3]);
        let _ = writeln!(
            out,
            "{}  {kind:<w1$}  {name:<w2$}  {source}",
            paint(&first, colour)
        );
        match &obj.outcome {
            Outcome::Changed { fields } if diff => {
                for f in fields {
                    let _ = writeln!(out, "    ~ {f}");
                }
            }
            Outcome::Failed { message } | Outcome::Conflicted { message } => {
                let _ = writeln!(out, "    {message}");
            }
            _ => {}
        }
    }
}

/// One line per deleted object, then a summary; failures on stderr.
fn print_down(report: &SyncReport, instance: &str) {
    for e in &report.errors {
        eprintln!("{} {e}", paint("error:", RED));
    }
    let word = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut out = std::io::stdout().lock();
    for o in &report.objects {
        match &o.outcome {
            Outcome::Pruned => {
                let _ = writeln!(
                    out,
                    "{}  {}  {}/{}",
                    paint(word, MAGENTA),
                    o.key.kind,
                    o.key.namespace,
                    o.key.name
                );
            }
            Outcome::Failed { message } => eprintln!(
                "{} {} {}/{}: {message}",
                paint("error:", RED),
                o.key.kind,
                o.key.namespace,
                o.key.name
            ),
            _ => {}
        }
    }
    let _ = writeln!(
        out,
        "{word} {} objects of instance {instance}{} ({} ms)",
        report.counts.pruned,
        if report.counts.failed > 0 {
            format!(", {} failed", report.counts.failed)
        } else {
            String::new()
        },
        report.duration.as_millis()
    );
}

const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const MAGENTA: &str = "35";
const DIM: &str = "2";

/// ANSI colour only for a terminal, and never when NO_COLOR is set (https://no-color.org).
fn paint(text: &str, code: &str) -> String {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ENABLED.get_or_init(|| {
        std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
    });
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}
