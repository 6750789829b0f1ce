//! `meshloop.yaml`: what to read, where to apply it, and how the loop behaves.
//!
//! The file is found in the working directory (or given with `--config`); every relative path
//! in it is taken relative to the file's own directory, so `meshloop` works the same from any
//! subdirectory given `--config`. Unknown keys are errors with file:line:col, because a
//! misspelt `prune` silently ignored is worse than a refusal. With no file at all the defaults
//! apply: instance = the directory's name, sources = `routing/` if it exists.
//!
//! This module only reads and validates; it does not touch the cluster or the sources.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::manifest::kinds::{GroupKind, default_owned_kinds, parse_group_kind};
use crate::manifest::read::Limits;
use crate::manifest::yaml::{self, Loc, Pos};

pub const FILE_NAME: &str = "meshloop.yaml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// A window that opens at the first file event and closes 50 ms later catches an editor's
/// write-rename-chmod burst and the files of a `git checkout`, and keeps save-to-applied well
/// under 100 ms.
pub const DEFAULT_DEBOUNCE_MS: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{pos}: {message}")]
    Invalid {
        file: PathBuf,
        pos: Pos,
        message: String,
    },
}

/// The raw file, exactly as the contract in the README spells it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct RawConfig {
    instance: Option<Loc<String>>,
    namespace: Option<Loc<String>>,
    #[serde(default)]
    sources: Vec<Loc<RawSource>>,
    #[serde(default)]
    watch: Vec<String>,
    prune: Option<bool>,
    force_conflicts: Option<bool>,
    debounce_ms: Option<u64>,
    listen: Option<Loc<String>>,
    #[serde(default)]
    owned_kinds: Vec<Loc<String>>,
    helm: Option<String>,
    drift: Option<DriftPolicy>,
    block_on: Option<BlockOn>,
    ingress: Option<Ingress>,
    #[serde(default)]
    checks: Vec<Check>,
    verify: Option<VerifySettings>,
    limits: Option<Limits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    dir: Option<String>,
    chart: Option<String>,
    release: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
}

/// What to do when someone else edits or deletes an object meshloop owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftPolicy {
    /// Put it back on the next sync (and say so).
    #[default]
    Restore,
    /// Only say so.
    Report,
}

/// Whether analysis errors stop the apply of the objects they concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockOn {
    #[default]
    Error,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    #[serde(default = "Ingress::default_namespace")]
    pub namespace: String,
    #[serde(default = "Ingress::default_service")]
    pub service: String,
    /// The name (or number) of the Service port that carries plain HTTP.
    #[serde(default = "Ingress::default_port")]
    pub port: String,
    /// An address to use when the Service has none (`host:port`).
    #[serde(default)]
    pub address: Option<String>,
    /// A Gateway API Gateway (of class `istio`, in `namespace`, or `namespace/name`) as the
    /// ingress: its address is the one istiod writes into its `status.addresses`, its
    /// Service the `<name>-istio` istiod deploys (unless `service` is set), its port 80
    /// (unless `port` is set).
    #[serde(default)]
    pub gateway: Option<String>,
}

impl Ingress {
    fn default_namespace() -> String {
        "istio-ingress".into()
    }
    fn default_service() -> String {
        "istio-ingress".into()
    }
    fn default_port() -> String {
        "http2".into()
    }
}

impl Default for Ingress {
    fn default() -> Self {
        Ingress {
            namespace: Self::default_namespace(),
            service: Self::default_service(),
            port: Self::default_port(),
            address: None,
            gateway: None,
        }
    }
}

impl Ingress {
    /// For `gateway:`, the Service and port istiod deploys for that Gateway where the config
    /// leaves the Istio chart's defaults.
    fn for_gateway(mut self) -> Ingress {
        if let Some((ns, name)) = self.gateway.as_deref().and_then(|g| g.split_once('/')) {
            (self.namespace, self.gateway) = (ns.to_string(), Some(name.to_string()));
        }
        if let Some(g) = &self.gateway {
            if self.service == Self::default_service() {
                self.service = format!("{g}-istio");
            }
            if self.port == Self::default_port() {
                self.port = "80".into();
            }
        }
        self
    }
}

/// An explicit expectation about one request through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub host: String,
    #[serde(default = "Check::default_method")]
    pub method: String,
    #[serde(default = "Check::default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

impl Check {
    fn default_method() -> String {
        "GET".into()
    }
    fn default_path() -> String {
        "/".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default)]
    pub body_regex: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    #[serde(default = "VerifySettings::default_samples")]
    pub split_samples: u32,
    #[serde(default = "VerifySettings::default_version_header")]
    pub version_header: String,
    #[serde(default = "VerifySettings::default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "VerifySettings::default_true")]
    pub required_for_ready: bool,
    /// After a change, a failing automatic verification is retried for this long before it
    /// is reported: the gateway gets new routes a moment after they are applied.
    #[serde(default = "VerifySettings::default_settle_ms")]
    pub settle_ms: u64,
}

impl VerifySettings {
    fn default_samples() -> u32 {
        100
    }
    fn default_version_header() -> String {
        "x-version".into()
    }
    fn default_timeout_ms() -> u64 {
        2000
    }
    fn default_true() -> bool {
        true
    }
    fn default_settle_ms() -> u64 {
        5000
    }
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            split_samples: Self::default_samples(),
            version_header: Self::default_version_header(),
            timeout_ms: Self::default_timeout_ms(),
            required_for_ready: true,
            settle_ms: Self::default_settle_ms(),
        }
    }
}

/// Where desired objects come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// Plain YAML, `*.yaml`/`*.yml`, recursive, multi-document.
    Dir { path: PathBuf },
    /// A Helm chart rendered with `helm template`; only owned kinds are taken.
    Chart {
        path: PathBuf,
        release: String,
        namespace: Option<String>,
        values: Vec<PathBuf>,
        set: BTreeMap<String, String>,
    },
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Dir { path } | Source::Chart { path, .. } => path,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Dir { path } => write!(f, "dir {}", path.display()),
            Source::Chart { path, release, .. } => {
                write!(f, "chart {} (release {release})", path.display())
            }
        }
    }
}

/// The validated configuration, paths made absolute.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// The directory relative paths are resolved against.
    pub base: PathBuf,
    pub instance: String,
    /// Namespace for objects that name none; `None` means the kubeconfig context's.
    pub namespace: Option<String>,
    pub sources: Vec<Source>,
    pub watch: Vec<PathBuf>,
    pub prune: bool,
    pub force_conflicts: bool,
    pub debounce_ms: u64,
    pub listen: String,
    pub owned_kinds: Vec<GroupKind>,
    pub helm: String,
    pub drift: DriftPolicy,
    pub block_on: BlockOn,
    pub ingress: Ingress,
    pub checks: Vec<Check>,
    pub verify: VerifySettings,
    pub limits: Limits,
}

impl Config {
    /// Finds `meshloop.yaml` in `dir` and reads it, or builds the defaults for `dir`.
    pub fn discover(dir: &Path) -> Result<Config, ConfigError> {
        let file = dir.join(FILE_NAME);
        if file.is_file() {
            Config::load(&file)
        } else {
            Config::from_raw(RawConfig::default(), dir, None)
        }
    }

    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let invalid = |pos: Pos, message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            pos,
            message,
        };
        let docs = yaml::parse_documents(&text, &Limits::default())
            .map_err(|e| invalid(e.pos, e.message))?;
        let raw = match docs.as_slice() {
            [] => RawConfig::default(),
            [doc] => yaml::from_node::<RawConfig>(doc, &[]).map_err(|e| {
                invalid(e.pos, e.to_string().replace("unknown field", "unknown key"))
            })?,
            [_, second, ..] => {
                return Err(invalid(
                    second.pos,
                    "expected one YAML document, found several".into(),
                ));
            }
        };
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = absolute(&base);
        Config::from_raw(raw, &base, Some(absolute(file)))
    }

    fn from_raw(raw: RawConfig, base: &Path, file: Option<PathBuf>) -> Result<Config, ConfigError> {
        let base = absolute(base);
        let cfg_file = file.clone().unwrap_or_else(|| base.join(FILE_NAME));
        let invalid = |(pos, message): (Pos, String)| ConfigError::Invalid {
            file: cfg_file.clone(),
            pos,
            message,
        };
        let instance = match raw.instance {
            Some(i) => {
                check_label_value(&i.value)
                    .map_err(|m| invalid((i.pos, format!("instance: {m}"))))?;
                i.value
            }
            None => default_instance(&base),
        };
        let namespace = match raw.namespace {
            Some(ns) => {
                check_dns_label(&ns.value)
                    .map_err(|m| invalid((ns.pos, format!("namespace: {m}"))))?;
                Some(ns.value)
            }
            None => None,
        };
        let mut sources = raw
            .sources
            .into_iter()
            .map(|s| source_of(s, &base, &instance))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        if sources.is_empty() && base.join("routing").is_dir() {
            sources.push(Source::Dir {
                path: base.join("routing"),
            });
        }
        let owned_kinds = owned_kinds_of(&raw.owned_kinds).map_err(invalid)?;
        let listen = listen_of(raw.listen).map_err(invalid)?;
        Ok(Config {
            file,
            instance,
            namespace,
            sources,
            watch: raw.watch.iter().map(|w| base.join(w)).collect(),
            prune: raw.prune.unwrap_or(true),
            force_conflicts: raw.force_conflicts.unwrap_or(false),
            debounce_ms: raw.debounce_ms.unwrap_or(DEFAULT_DEBOUNCE_MS),
            listen,
            owned_kinds,
            helm: raw
                .helm
                .or_else(|| std::env::var("MESHLOOP_HELM").ok())
                .unwrap_or_else(|| "helm".into()),
            drift: raw.drift.unwrap_or_default(),
            block_on: raw.block_on.unwrap_or_default(),
            ingress: raw.ingress.unwrap_or_default().for_gateway(),
            checks: raw.checks,
            verify: raw.verify.unwrap_or_default(),
            limits: raw.limits.unwrap_or_default(),
            base,
        })
    }

    /// The namespace for objects that name none: `namespace:` from the config, else the
    /// kubeconfig context's (`cluster_default`), else `default`.
    pub fn namespace_or(&self, cluster_default: Option<&str>) -> String {
        self.namespace
            .clone()
            .or_else(|| cluster_default.map(str::to_string))
            .unwrap_or_else(|| "default".into())
    }

    /// Shows a path relative to the config's directory, as people wrote it.
    pub fn display_path<'a>(&self, path: &'a Path) -> std::borrow::Cow<'a, str> {
        match path.strip_prefix(&self.base) {
            Ok(rel) => rel.to_string_lossy(),
            Err(_) => path.to_string_lossy(),
        }
    }
}

/// One entry of `sources:`: a directory, or a chart with its release, values and sets.
fn source_of(src: Loc<RawSource>, base: &Path, instance: &str) -> Result<Source, (Pos, String)> {
    let pos = src.pos;
    let s = src.value;
    match (s.dir, s.chart) {
        (Some(dir), None) => {
            if s.release.is_some() || !s.values.is_empty() || !s.set.is_empty() {
                let m = "a dir source takes no release, values or set (those are for chart)";
                return Err((pos, m.into()));
            }
            Ok(Source::Dir {
                path: base.join(dir),
            })
        }
        (None, Some(chart)) => {
            let path = base.join(&chart);
            let release = s.release.unwrap_or_else(|| {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| instance.to_string())
            });
            Ok(Source::Chart {
                path,
                release,
                namespace: s.namespace,
                values: s.values.iter().map(|v| base.join(v)).collect(),
                set: s.set,
            })
        }
        (Some(_), Some(_)) => Err((pos, "a source is either dir or chart, not both".into())),
        (None, None) => Err((pos, "a source needs dir: or chart:".into())),
    }
}

/// The default owned kinds plus those of `owned_kinds:`.
fn owned_kinds_of(extra: &[Loc<String>]) -> Result<Vec<GroupKind>, (Pos, String)> {
    let mut owned_kinds = default_owned_kinds();
    for k in extra {
        let gk = parse_group_kind(&k.value).ok_or_else(|| {
            let m = format!(
                "owned_kinds: expected Kind.group (e.g. Telemetry.telemetry.istio.io), found {:?}",
                k.value
            );
            (k.pos, m)
        })?;
        if !owned_kinds.contains(&gk) {
            owned_kinds.push(gk);
        }
    }
    Ok(owned_kinds)
}

/// `listen:`, a socket address, or the default.
fn listen_of(listen: Option<Loc<String>>) -> Result<String, (Pos, String)> {
    let Some(l) = listen else {
        return Ok(DEFAULT_LISTEN.into());
    };
    match l.value.parse::<std::net::SocketAddr>() {
        Ok(_) => Ok(l.value),
        Err(_) => Err((
            l.pos,
            format!(
                "listen: expected host:port such as {DEFAULT_LISTEN}, found {:?}",
                l.value
            ),
        )),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The instance label defaults to the directory's name, made into a valid label value.
fn default_instance(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let cleaned = cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if cleaned.is_empty() {
        "default".into()
    } else {
        cleaned
    }
}

/// A Kubernetes label value: up to 63 characters, alphanumerics with `-_.` inside.
pub fn check_label_value(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a label value (1-63 letters, digits, '-', '_' or '.', starting and ending alphanumeric), found {v:?}"
        ))
    }
}

/// An RFC 1123 label, as namespace names are.
pub fn check_dns_label(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a DNS label (lowercase letters, digits and '-'), found {v:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let f = dir.join(FILE_NAME);
        std::fs::write(&f, text).unwrap();
        f
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "instance: a\nprnue: true\n");
        let err = Config::load(&f).unwrap_err().to_string();
        assert!(
            err.contains("meshloop.yaml:2:1: unknown key `prnue`"),
            "{err}"
        );
    }

    #[test]
    fn nested_unknown_key_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "sources:\n  - dir: routing\n    recursive: true\n",
        );
        let err = Config::load(&f).unwrap_err().to_string();
        assert!(
            err.contains(":3:5: sources[0]: unknown key `recursive`"),
            "{err}"
        );
    }

    #[test]
    fn a_gateway_api_ingress_names_its_service_and_port() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "ingress: {namespace: dev, gateway: public}\n",
            "ingress: {gateway: dev/public}\n",
        ] {
            let cfg = Config::load(&write(dir.path(), text)).unwrap();
            let i = &cfg.ingress;
            assert_eq!(
                (i.namespace.as_str(), i.gateway.as_deref()),
                ("dev", Some("public")),
                "{text}"
            );
            assert_eq!(
                (i.service.as_str(), i.port.as_str()),
                ("public-istio", "80")
            );
        }
    }

    #[test]
    fn defaults_serve_a_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("routing")).unwrap();
        let cfg = Config::discover(dir.path()).unwrap();
        assert_eq!(
            cfg.sources,
            vec![Source::Dir {
                path: absolute(&dir.path().join("routing"))
            }]
        );
        assert!(cfg.prune);
        assert_eq!(cfg.debounce_ms, DEFAULT_DEBOUNCE_MS);
        assert_eq!(cfg.instance, default_instance(dir.path()));
    }

    #[test]
    fn chart_source_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "instance: goapp\nnamespace: dev\nsources:\n  - chart: charts/goapp\n    release: goapp\n    values: [charts/goapp/values-dev.yaml]\n",
        );
        let cfg = Config::load(&f).unwrap();
        let base = absolute(dir.path());
        assert_eq!(
            cfg.sources,
            vec![Source::Chart {
                path: base.join("charts/goapp"),
                release: "goapp".into(),
                namespace: None,
                values: vec![base.join("charts/goapp/values-dev.yaml")],
                set: BTreeMap::new(),
            }]
        );
        assert_eq!(cfg.namespace.as_deref(), Some("dev"));
    }

    #[test]
    fn wrong_type_says_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "prune: [yes]\n");
        let err = Config::load(&f).unwrap_err().to_string();
        assert!(
            err.contains(":1:8: prune: expected a boolean, found a list"),
            "{err}"
        );
    }

    #[test]
    fn bad_instance_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "instance: Not Valid!\n");
        let err = Config::load(&f).unwrap_err().to_string();
        assert!(
            err.contains(":1:11: instance: expected a label value"),
            "{err}"
        );
    }

    #[test]
    fn default_instance_is_a_valid_label() {
        assert_eq!(default_instance(Path::new("/x/My Project")), "my-project");
        assert!(check_label_value(&default_instance(Path::new("/x/--a--"))).is_ok());
    }

    #[test]
    fn group_kind_parsing() {
        assert_eq!(
            parse_group_kind("Telemetry.telemetry.istio.io"),
            Some(GroupKind::new("telemetry.istio.io", "Telemetry"))
        );
        assert_eq!(
            parse_group_kind("ConfigMap"),
            Some(GroupKind::new("", "ConfigMap"))
        );
        assert_eq!(parse_group_kind("lower.case"), None);
    }
}
