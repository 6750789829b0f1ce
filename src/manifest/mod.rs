//! Reading sources into located objects.
//!
//! A directory source is every `*.yaml`/`*.yml` file under it (recursive, multi-document); a
//! chart source is the output of `helm template`. Each object keeps where it came from (file,
//! document index, line:col) so every error and finding can point at it. This module reads and
//! checks shape; it never talks to the cluster, and it decides nothing about what is applied
//! or pruned (that is `sync`'s job, from what we report here).
//!
//! Bad input is reported per file and per object, never by panicking or by dropping the
//! whole source: a file that does not parse yields one [`LoadError`] and no objects (the
//! caller keeps the file's last good objects), an object without apiVersion/kind/name yields
//! an error for that object only.

pub mod gatewayapi;
pub mod helm;
pub mod istio;
pub mod kinds;
pub mod read;
pub mod schema;
pub mod typed;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::manifest::kinds::GroupKind;
use typed::{Spec, TypedSpec};
use yaml::{Node, Pos, Seg, Value, ViewError};

/// Identity of an object on the cluster: kind by group (not version, since v1 and v1beta1 of
/// one kind are the same object), namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(&self.group, &self.kind)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where an object was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The file as the user names it (relative to the config's directory when inside it).
    pub file: String,
    /// 0-based index of the YAML document in the file.
    pub doc: usize,
    pub pos: Pos,
    /// For chart sources, the line is in the rendered template (`helm template` output).
    pub rendered: bool,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if self.rendered {
            f.write_str(" (rendered)")?;
        }
        Ok(())
    }
}

/// One desired object, read from a source.
#[derive(Debug, Clone)]
pub struct SourceObject {
    pub key: ObjectKey,
    pub api_version: String,
    pub origin: Origin,
    /// The document as written, with positions.
    pub node: Node,
    /// The document as JSON, namespace filled in. Labels and annotations are added by `sync`.
    pub body: serde_json::Value,
    /// The spec as its typed view, read when the object's shape was checked (owned kinds).
    pub typed: Option<Arc<TypedSpec>>,
}

impl SourceObject {
    /// The position of a field of this object, or the nearest parent that exists.
    pub fn locate(&self, path: &[Seg]) -> Pos {
        self.node.locate(path)
    }

    /// The spec as `T`: the view read at load when there is one, else read from the YAML.
    pub fn spec<T: Spec>(&self) -> Result<T, ViewError> {
        typed::spec_or_read(self.typed.as_deref(), &self.node)
    }

    /// `VirtualService goapp`, the way messages name an object.
    pub fn label(&self) -> String {
        format!("{} {}", self.key.kind, self.key.name)
    }
}

/// A problem with a file or an object in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadError {
    pub file: String,
    pub pos: Pos,
    /// `VirtualService goapp` when the error concerns one object.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.pos.line > 0 {
            write!(f, ":{}", self.pos)?;
        }
        f.write_str(": ")?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A kind found in a directory source that meshloop does not own (reported once, skipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub kind: GroupKind,
    pub first: String,
    pub count: usize,
}

/// What one file (or one chart rendering) yielded.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub objects: Vec<SourceObject>,
    pub errors: Vec<LoadError>,
    /// False when the file as a whole could not be read or parsed: the caller keeps the
    /// file's previous objects.
    pub parsed: bool,
    pub skipped: Vec<Skipped>,
    /// Objects of kinds not owned, kept for offline analysis (Deployments, Services).
    pub others: Vec<SourceObject>,
    /// Said once, not an error: the file was skipped (a FIFO, a device).
    pub notes: Vec<read::Note>,
    /// Objects in `objects` that their CRD's schema refuses (the errors say why): kept for
    /// analysis, never applied.
    pub refused: Vec<ObjectKey>,
}

/// How to read documents: which kinds are ours and which namespace fills a gap.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub owned: Vec<GroupKind>,
    pub default_namespace: String,
    /// Also keep non-owned objects in [`Loaded::others`] (analysis wants workloads).
    pub keep_others: bool,
    /// What one file may cost to read and parse.
    pub limits: read::Limits,
}

impl LoadOptions {
    /// Owned kinds and the namespace that fills a gap; the other settings at their defaults.
    pub fn new(owned: Vec<GroupKind>, default_namespace: &str) -> LoadOptions {
        LoadOptions {
            owned,
            default_namespace: default_namespace.to_string(),
            keep_others: false,
            limits: read::Limits::default(),
        }
    }
}

/// Reads one YAML file of a directory source.
pub fn load_file(path: &Path, shown_as: &str, opts: &LoadOptions) -> Loaded {
    match read::read_text(path, &opts.limits) {
        Ok(text) => load_text(&text, shown_as, false, opts),
        // A FIFO or a device contributes nothing, like a file that is not YAML.
        Err(e) if e.is_skip() => Loaded {
            parsed: true,
            notes: vec![read::Note {
                path: path.to_path_buf(),
                message: e.to_string(),
            }],
            ..Loaded::default()
        },
        Err(e) => Loaded {
            errors: vec![LoadError {
                file: shown_as.to_string(),
                pos: Pos::default(),
                object: None,
                message: e.to_string(),
            }],
            ..Loaded::default()
        },
    }
}

/// Reads the documents of `text`, which came from `file`.
pub fn load_text(text: &str, file: &str, rendered: bool, opts: &LoadOptions) -> Loaded {
    let docs = match yaml::parse_documents(text, &opts.limits) {
        Ok(d) => d,
        Err(e) => {
            let message = match e.budget {
                true => e.message,
                false => format!("invalid YAML: {}", e.message),
            };
            return Loaded {
                errors: vec![LoadError {
                    file: file.to_string(),
                    pos: e.pos,
                    object: None,
                    message,
                }],
                ..Loaded::default()
            };
        }
    };
    let mut out = Loaded {
        parsed: true,
        ..Loaded::default()
    };
    let mut skipped: BTreeMap<GroupKind, Skipped> = BTreeMap::new();
    for (doc_index, node) in docs.into_iter().enumerate() {
        if matches!(node.value, Value::Null) {
            continue;
        }
        // A `kind: List` (what `kubectl get -o yaml` prints) holds objects in `items`.
        let objects = match node.get("items").map(|n| &n.value) {
            Some(Value::Seq(items)) if node.at("kind").and_then(Node::as_str) == Some("List") => {
                items.clone()
            }
            _ => vec![node],
        };
        for obj in objects {
            read_object(obj, file, doc_index, rendered, opts, &mut out, &mut skipped);
        }
    }
    out.skipped = skipped.into_values().collect();
    out
}

/// Why an object of a document cannot be read: where, which object (when known), and what.
type Unreadable = (Pos, Option<String>, String);

/// Reads one object of a document into `out`: an owned kind into `objects` (refused, and held
/// back, when it breaks the CRD's schema), another kind into `others` or counted as skipped,
/// and what cannot be read as an object into `errors`.
fn read_object(
    node: Node,
    file: &str,
    doc: usize,
    rendered: bool,
    opts: &LoadOptions,
    out: &mut Loaded,
    skipped: &mut BTreeMap<GroupKind, Skipped>,
) {
    let fail = |out: &mut Loaded, (pos, object, message): Unreadable| {
        out.errors.push(LoadError {
            file: file.to_string(),
            pos,
            object,
            message,
        })
    };
    let (kind, api_version, label) = match kind_and_version(&node) {
        Ok(k) => k,
        Err(e) => return fail(out, e),
    };
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(g, _)| g)
        .to_string();
    let gk = GroupKind::new(&group, &kind);
    let owned = opts.owned.contains(&gk);
    if !owned && !opts.keep_others {
        let entry = skipped.entry(gk.clone()).or_insert_with(|| Skipped {
            kind: gk,
            first: format!("{file}:{}", node.pos),
            count: 0,
        });
        entry.count += 1;
        return;
    }
    let (name, namespace, typed) = match identity(&node, &label, &gk, owned, opts) {
        Ok(i) => i,
        Err(e) => return fail(out, e),
    };
    let key = ObjectKey {
        group,
        kind,
        namespace,
        name,
    };
    let origin = Origin {
        file: file.to_string(),
        doc,
        pos: node.pos,
        rendered,
    };
    let obj = SourceObject {
        body: body_of(&node, &key.namespace),
        key,
        api_version,
        origin,
        node,
        typed,
    };
    push_object(out, obj, owned, &label);
}

/// An object's name, namespace and (for an owned kind) typed view of its spec.
fn identity(
    node: &Node,
    label: &str,
    gk: &GroupKind,
    owned: bool,
    opts: &LoadOptions,
) -> Result<(String, String, Option<Arc<TypedSpec>>), Unreadable> {
    let name = name_of(node, label)?;
    let namespace = namespace_of(node, label, &opts.default_namespace)?;
    let typed = match owned {
        true => {
            typed::read(gk, node).map_err(|e| (e.pos, Some(label.to_string()), e.to_string()))?
        }
        false => None,
    };
    Ok((name, namespace, typed))
}

/// The document as JSON with its namespace written in.
fn body_of(node: &Node, namespace: &str) -> serde_json::Value {
    let mut body = node.to_json();
    if let Some(meta) = body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.insert(
            "namespace".into(),
            serde_json::Value::String(namespace.to_string()),
        );
    }
    body
}

/// The object's kind and apiVersion, and its label for messages (`VirtualService goapp`).
fn kind_and_version(node: &Node) -> Result<(String, String, String), Unreadable> {
    if !matches!(node.value, Value::Map(_)) {
        let m = format!(
            "expected a Kubernetes object (a mapping), found {}",
            node.kind_name()
        );
        return Err((node.pos, None, m));
    }
    let kind = field_str(node, "kind").map_err(|(pos, m)| (pos, None, format!("kind: {m}")))?;
    let name = node.at("metadata.name").and_then(Node::as_str);
    let label = format!("{kind} {}", name.unwrap_or("<unnamed>"));
    let api_version = field_str(node, "apiVersion").map_err(|(pos, m)| {
        let m = format!("apiVersion: {m} such as networking.istio.io/v1");
        (pos, Some(label.clone()), m)
    })?;
    Ok((kind, api_version, label))
}

/// `metadata.name`: present, a non-empty string.
fn name_of(node: &Node, label: &str) -> Result<String, Unreadable> {
    let missing = "metadata.name: missing; every object needs a name";
    let Some(meta) = node.get("metadata") else {
        return Err((node.pos, Some(label.into()), missing.into()));
    };
    if !matches!(meta.value, Value::Map(_)) {
        let m = format!("metadata: expected a mapping, found {}", meta.kind_name());
        return Err((meta.pos, Some(label.into()), m));
    }
    let Some(n) = meta.get("name") else {
        let metadata_pos = node.key_pos("metadata").unwrap_or(node.pos);
        return Err((metadata_pos, Some(label.into()), missing.into()));
    };
    match n.as_str() {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => {
            let m = format!(
                "metadata.name: expected a non-empty string, found {}",
                n.kind_name()
            );
            Err((n.pos, Some(label.into()), m))
        }
    }
}

/// `metadata.namespace`, or the default namespace when it is not written.
fn namespace_of(node: &Node, label: &str, default: &str) -> Result<String, Unreadable> {
    let Some(n) = node.at("metadata.namespace") else {
        return Ok(default.to_string());
    };
    match n.as_str() {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => {
            let m = format!(
                "metadata.namespace: expected a string, found {}",
                n.kind_name()
            );
            Err((n.pos, Some(label.into()), m))
        }
    }
}

/// Adds a readable object: validated against its CRD's schema when owned (a violation is an
/// error and holds the object back), with its namespace written into its body.
fn push_object(out: &mut Loaded, obj: SourceObject, owned: bool, label: &str) {
    // The CRD's own schema, so what the API server would refuse is refused here, located.
    let gk = GroupKind::new(&obj.key.group, &obj.key.kind);
    let version = obj.api_version.rsplit_once('/').map_or("", |(_, v)| v);
    let violations = if owned {
        schema::validate(&gk, version, &obj.node)
    } else {
        Vec::new()
    };
    // A refused object is still read (analysis may say more about the same field), but the
    // caller holds it back: it is neither applied nor pruned.
    for v in &violations {
        out.errors.push(LoadError {
            file: obj.origin.file.clone(),
            pos: v.pos,
            object: Some(label.to_string()),
            message: v.to_string(),
        });
    }
    if !violations.is_empty() {
        out.refused.push(obj.key.clone());
    }
    if owned {
        out.objects.push(obj);
    } else {
        out.others.push(obj);
    }
}

/// A required string field at the top of a document.
fn field_str(node: &Node, key: &str) -> Result<String, (Pos, String)> {
    match node.get(key) {
        None => Err((node.pos, "missing".into())),
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err((
                v.pos,
                format!("expected a non-empty string, found {}", v.kind_name()),
            )),
        },
    }
}

/// Editor temp, swap and backup files, and VCS directories: never sources, never events.
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
        || (name.starts_with('.') && (name.ends_with(".swp") || name.ends_with(".swx") || name.ends_with(".swo")))
        || name.ends_with('~')
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || name.ends_with(".tmp")
        || name == ".DS_Store"
        || name == "4913" // vim probes a directory's writability with this file name
        || matches!(name, ".git" | ".hg" | ".svn" | ".jj")
}

/// True for files a directory source reads.
pub fn is_yaml_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    !is_ignored_name(&name)
        && !name.starts_with('.')
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        )
}

pub use read::list_yaml_files;

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LoadOptions {
        LoadOptions::new(crate::manifest::kinds::default_owned_kinds(), "dev")
    }

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.dev]\n";

    #[test]
    fn namespace_is_defaulted() {
        let l = load_text(VS, "a.yaml", false, &opts());
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.objects[0].key.namespace, "dev");
        assert_eq!(l.objects[0].body["metadata"]["namespace"], "dev");
        assert_eq!(l.objects[0].origin.pos.line, 1);
    }

    #[test]
    fn missing_name_is_an_error_for_that_object_only() {
        let text = format!(
            "{VS}---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  labels: {{}}\n"
        );
        let l = load_text(&text, "a.yaml", false, &opts());
        assert_eq!(l.objects.len(), 1);
        assert_eq!(l.errors.len(), 1);
        assert_eq!(
            l.errors[0].to_string(),
            "a.yaml:10:1: Gateway <unnamed>: metadata.name: missing; every object needs a name"
        );
    }

    #[test]
    fn missing_api_version_and_kind() {
        let l = load_text(
            "kind: Gateway\nmetadata: {name: g}\n",
            "a.yaml",
            false,
            &opts(),
        );
        assert_eq!(
            l.errors[0].to_string(),
            "a.yaml:1:1: Gateway g: apiVersion: missing such as networking.istio.io/v1"
        );
        let l = load_text(
            "apiVersion: v1\nmetadata: {name: g}\n",
            "a.yaml",
            false,
            &opts(),
        );
        assert_eq!(l.errors[0].to_string(), "a.yaml:1:1: kind: missing");
    }

    #[test]
    fn unparseable_file_yields_nothing() {
        let l = load_text("apiVersion: [\n", "a.yaml", false, &opts());
        assert!(!l.parsed);
        assert!(l.objects.is_empty());
        assert!(l.errors[0].message.starts_with("invalid YAML"));
    }

    #[test]
    fn other_kinds_are_skipped_and_counted() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n";
        let l = load_text(text, "a.yaml", false, &opts());
        assert!(l.objects.is_empty() && l.errors.is_empty());
        assert_eq!(l.skipped.len(), 1);
        assert_eq!(l.skipped[0].count, 2);
    }

    #[test]
    fn editor_files_are_ignored() {
        for n in [
            ".goapp.yaml.swp",
            "goapp.yaml~",
            "#goapp.yaml#",
            ".#goapp.yaml",
            "goapp.yaml___jb_tmp___",
            "x.tmp",
            ".DS_Store",
            "4913",
        ] {
            assert!(is_ignored_name(n) || !is_yaml_file(Path::new(n)), "{n}");
        }
        assert!(is_yaml_file(Path::new("routing/goapp.yaml")));
        assert!(is_yaml_file(Path::new("routing/goapp.yml")));
        assert!(!is_yaml_file(Path::new("routing/.hidden.yaml")));
    }
}
