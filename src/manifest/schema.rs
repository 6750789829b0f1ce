//! Offline schema validation from the CRDs' own `openAPIV3Schema`, before the API server sees
//! an object.
//!
//! The schemas are those of the pinned Istio CRDs, compacted by [`compact`] into
//! `istio-schemas.json` (regenerated with `dev/gen-schemas.sh`; a test checks the committed
//! file against the CRDs the local cluster installs) and embedded in the binary. Checked, as
//! the API server checks them: unknown fields (server-side apply refuses them as "field not
//! declared in schema"), types (with `x-kubernetes-int-or-string`), enums, required fields,
//! numeric bounds, lengths and item counts, patterns, and the `oneOf`/`anyOf`/`not` of
//! required fields Istio uses for "only one of". Under `x-kubernetes-preserve-unknown-fields`
//! anything goes. A `null` is accepted anywhere, since the API server prunes it. Not checked:
//! the CEL rules (`x-kubernetes-validations`); the API server's refusals of those are located
//! in the file by `sync`.
//!
//! Each violation carries the field path and the position of the field in the file.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value as J};

use super::yaml::{Node, Pos, Seg, Value, path_string};
use crate::manifest::kinds::GroupKind;

/// The compacted schemas, generated from the pinned CRDs (see the module documentation).
const EMBEDDED: &str = include_str!("istio-schemas.json");

/// Schema keys that constrain values; everything else (descriptions, CEL rules, defaults,
/// the status subtree) is dropped when compacting.
const KEPT: &[&str] = &[
    "type",
    "properties",
    "items",
    "required",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "pattern",
    "additionalProperties",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
];

/// Violations reported per object at most; past this the object is clearly not of this kind.
const MAX_VIOLATIONS: usize = 20;

/// One field the schema refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pos: Pos,
    pub path: Vec<Seg>,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", path_string(&self.path), self.message)
    }
}

/// Compacts a CRD file (all documents) into `{source, kinds: {"group/Kind": {version:
/// index}}, schemas: [...]}`, versions that share a schema sharing one entry.
pub fn compact(crds: &[J], source: &str) -> J {
    let mut kinds = Map::new();
    let mut schemas: Vec<J> = Vec::new();
    for crd in crds {
        let (Some(group), Some(kind)) = (
            crd.pointer("/spec/group").and_then(J::as_str),
            crd.pointer("/spec/names/kind").and_then(J::as_str),
        ) else {
            continue;
        };
        let mut versions = Map::new();
        for v in crd
            .pointer("/spec/versions")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(name), Some(schema)) = (
                v.get("name").and_then(J::as_str),
                v.pointer("/schema/openAPIV3Schema"),
            ) else {
                continue;
            };
            let mut schema = strip(schema);
            if let Some(props) = schema.get_mut("properties").and_then(J::as_object_mut) {
                props.remove("status");
            }
            let index = match schemas.iter().position(|s| *s == schema) {
                Some(i) => i,
                None => {
                    schemas.push(schema);
                    schemas.len() - 1
                }
            };
            versions.insert(name.to_string(), J::from(index));
        }
        kinds.insert(format!("{group}/{kind}"), J::Object(versions));
    }
    serde_json::json!({"source": source, "kinds": kinds, "schemas": schemas})
}

/// [`compact`] from the CRD file's text, rendered as the committed file is (pretty, sorted
/// keys, so a regeneration diffs line by line).
pub fn compact_text(crds: &str, source: &str) -> Result<String, String> {
    // The CRD file is large (a megabyte, several hundred thousand nodes) and trusted.
    let limits = super::read::Limits {
        max_nodes: 10_000_000,
        max_documents: 10_000,
        max_depth: 1000,
        ..Default::default()
    };
    let docs = super::yaml::parse_documents(crds, &limits)
        .map_err(|e| format!("{}: {}", e.pos, e.message))?;
    let docs: Vec<J> = docs.iter().map(Node::to_json).collect();
    serde_json::to_string_pretty(&compact(&docs, source)).map_err(|e| e.to_string())
}

fn strip(schema: &J) -> J {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if !KEPT.contains(&k.as_str()) {
            continue;
        }
        let v = match (k.as_str(), v) {
            ("properties", J::Object(props)) => {
                J::Object(props.iter().map(|(n, s)| (n.clone(), strip(s))).collect())
            }
            ("oneOf" | "anyOf" | "allOf", J::Array(items)) => {
                J::Array(items.iter().map(strip).collect())
            }
            ("items" | "not" | "additionalProperties", s) => strip(s),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    J::Object(out)
}

struct Catalog {
    kinds: BTreeMap<String, BTreeMap<String, usize>>,
    schemas: Vec<J>,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        // The file is generated and checked by a test; a broken one is a build defect.
        let doc: J = serde_json::from_str(EMBEDDED).expect("istio-schemas.json is valid JSON");
        let kinds = doc["kinds"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, versions)| {
                let versions = versions
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(v, i)| Some((v.clone(), i.as_u64()? as usize)))
                    .collect();
                (k.clone(), versions)
            })
            .collect();
        let schemas = doc["schemas"].as_array().cloned().unwrap_or_default();
        Catalog { kinds, schemas }
    })
}

/// Where the embedded schemas came from (`istio.io/api v1.32.0 ...`).
pub fn embedded_source() -> String {
    let doc: J = serde_json::from_str(EMBEDDED).unwrap_or_default();
    doc["source"].as_str().unwrap_or_default().to_string()
}

/// The embedded file as a value, for the test that compares it with the CRDs.
pub fn embedded() -> J {
    serde_json::from_str(EMBEDDED).unwrap_or_default()
}

/// Validates a whole object against the schema of its kind and version. Kinds and versions
/// without an embedded schema are not checked here (the API server still is).
pub fn validate(gk: &GroupKind, version: &str, object: &Node) -> Vec<Violation> {
    let cat = catalog();
    let Some(index) = cat
        .kinds
        .get(&format!("{}/{}", gk.group, gk.kind))
        .and_then(|v| v.get(version))
    else {
        return Vec::new();
    };
    let root = &cat.schemas[*index];
    let mut v = Validator {
        out: Vec::new(),
        chain: Vec::new(),
    };
    let Value::Map(entries) = &object.value else {
        return Vec::new();
    };
    for (key, node) in entries {
        // The API server owns these; metadata is checked by `manifest` itself.
        if matches!(key.name.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let path = vec![Seg::Key(key.name.clone())];
        match root.pointer(&format!("/properties/{}", escape(&key.name))) {
            Some(s) => v.check(s, node, &path, key.pos),
            None => v.push(key.pos, &path, unknown_field(root, &[], &key.name)),
        }
    }
    v.out.truncate(MAX_VIOLATIONS);
    v.out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

struct Validator<'s> {
    out: Vec<Violation>,
    /// The object schemas from the root to the current node, with their paths, to say where
    /// a misplaced field belongs.
    chain: Vec<(&'s J, Vec<Seg>)>,
}

impl<'s> Validator<'s> {
    fn push(&mut self, pos: Pos, path: &[Seg], message: String) {
        self.out.push(Violation {
            pos,
            path: path.to_vec(),
            message,
        });
    }

    /// `key_pos` is where the field's key is written (the position for "this field is wrong").
    fn check(&mut self, schema: &'s J, node: &Node, path: &[Seg], key_pos: Pos) {
        if matches!(node.value, Value::Null) {
            return;
        }
        if let Err(m) = check_type(schema, node) {
            self.push(node.pos, path, m);
            return;
        }
        for m in check_value(schema, node) {
            self.push(node.pos, path, m);
        }
        let at = if key_pos.line > 0 { key_pos } else { node.pos };
        if let Some(m) = check_combinators(schema, node) {
            self.push(at, path, m);
        }
        match &node.value {
            Value::Map(entries) => self.map(schema, node, entries, path, at),
            Value::Seq(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, n) in items.iter().enumerate() {
                        let mut p = path.to_vec();
                        p.push(Seg::Index(i));
                        self.check(item, n, &p, n.pos);
                    }
                }
            }
            _ => {}
        }
    }

    fn map(
        &mut self,
        schema: &'s J,
        node: &Node,
        entries: &[(super::yaml::Key, Node)],
        path: &[Seg],
        at: Pos,
    ) {
        if preserves_unknown(schema) && schema.get("properties").is_none() {
            return;
        }
        let props = schema.get("properties").and_then(J::as_object);
        let additional = schema.get("additionalProperties");
        self.chain.push((schema, path.to_vec()));
        for (key, child) in entries {
            let mut p = path.to_vec();
            p.push(Seg::Key(key.name.clone()));
            match (props.and_then(|m| m.get(&key.name)), additional) {
                (Some(s), _) => self.check(s, child, &p, key.pos),
                (None, Some(J::Object(_))) => {
                    self.check(&schema["additionalProperties"], child, &p, key.pos)
                }
                (None, Some(J::Bool(true))) => {}
                (None, _) if preserves_unknown(schema) => {}
                (None, _) => {
                    let message = unknown_field(schema, &self.chain_hint(&key.name), &key.name);
                    self.push(key.pos, &p, message);
                }
            }
        }
        self.chain.pop();
        for r in schema
            .get("required")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && node.get(r).is_none()
            {
                self.push(at, path, format!("missing required field `{r}`"));
            }
        }
    }

    /// Ancestors (nearest first) whose schema declares `key`: where a misplaced field belongs.
    fn chain_hint(&self, key: &str) -> Vec<Vec<Seg>> {
        self.chain
            .iter()
            .rev()
            .skip(1)
            .filter(|(s, _)| s.pointer(&format!("/properties/{}", escape(key))).is_some())
            .map(|(_, p)| p.clone())
            .take(1)
            .collect()
    }
}

fn preserves_unknown(schema: &J) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&J::Bool(true))
}

fn unknown_field(schema: &J, belongs: &[Vec<Seg>], key: &str) -> String {
    let mut m = format!("unknown field `{key}`");
    if let Some(p) = belongs.first() {
        let at = if p.is_empty() {
            "the top level".to_string()
        } else {
            path_string(p)
        };
        m.push_str(&format!(" here; `{key}` is a field of {at}"));
    } else if let Some(props) = schema.get("properties").and_then(J::as_object) {
        let names: Vec<&str> = props.keys().map(String::as_str).collect();
        if names.len() <= 12 {
            m.push_str(&format!("; expected one of: {}", names.join(", ")));
        }
    }
    m
}

fn kind_word(t: &str) -> &str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        other => other,
    }
}

fn found(node: &Node) -> String {
    match &node.value {
        Value::Str(s) if s.len() <= 40 => format!("the string {s:?}"),
        Value::Int(i) => format!("the integer {i}"),
        _ => node.kind_name().to_string(),
    }
}

fn check_type(schema: &J, node: &Node) -> Result<(), String> {
    if schema.get("x-kubernetes-int-or-string") == Some(&J::Bool(true)) {
        return match node.value {
            Value::Int(_) | Value::Str(_) => Ok(()),
            Value::Float(f) if f.fract() == 0.0 => Ok(()),
            _ => Err(format!(
                "expected an integer or a string, found {}",
                found(node)
            )),
        };
    }
    let Some(t) = schema.get("type").and_then(J::as_str) else {
        return Ok(());
    };
    let ok = match (t, &node.value) {
        ("object", Value::Map(_)) | ("array", Value::Seq(_)) | ("string", Value::Str(_)) => true,
        ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Int(_)) | ("number", Value::Int(_) | Value::Float(_)) => true,
        ("integer", Value::Float(f)) => f.fract() == 0.0,
        _ => false,
    };
    match ok {
        true => Ok(()),
        false => Err(format!("expected {}, found {}", kind_word(t), found(node))),
    }
}

/// Enums, bounds, lengths, counts and patterns of one value.
fn check_value(schema: &J, node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    let json = node.to_json();
    if let Some(allowed) = schema.get("enum").and_then(J::as_array)
        && !allowed.contains(&json)
    {
        let names: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        out.push(format!("{} is not one of {}", json, names.join(", ")));
    }
    if let Some(n) = json.as_f64() {
        out.extend(check_bounds(schema, n));
    }
    let count = match &node.value {
        Value::Str(s) => Some(("minLength", "maxLength", s.chars().count(), "characters")),
        Value::Seq(items) => Some(("minItems", "maxItems", items.len(), "items")),
        Value::Map(entries) => Some(("minProperties", "maxProperties", entries.len(), "fields")),
        _ => None,
    };
    if let Some((min_key, max_key, len, what)) = count {
        if let Some(min) = schema.get(min_key).and_then(J::as_u64)
            && (len as u64) < min
        {
            out.push(format!("{len} {what}, fewer than the minimum of {min}"));
        }
        if let Some(max) = schema.get(max_key).and_then(J::as_u64)
            && (len as u64) > max
        {
            out.push(format!("{len} {what}, more than the maximum of {max}"));
        }
    }
    if let (Some(p), Value::Str(s)) = (schema.get("pattern").and_then(J::as_str), &node.value)
        && let Ok(re) = regex::Regex::new(p)
        && !re.is_match(s)
    {
        out.push(format!("{s:?} does not match the pattern {p}"));
    }
    out
}

fn check_bounds(schema: &J, n: f64) -> Option<String> {
    let excl = |k: &str| schema.get(k) == Some(&J::Bool(true));
    if let Some(min) = schema.get("minimum").and_then(J::as_f64)
        && (n < min || (excl("exclusiveMinimum") && n == min))
    {
        return Some(format!("{n} is below the minimum of {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(J::as_f64)
        && (n > max || (excl("exclusiveMaximum") && n == max))
    {
        return Some(format!("{n} is above the maximum of {max}"));
    }
    None
}

/// `oneOf`, `anyOf`, `allOf` and `not` of a structural schema: value validations only (in
/// Istio's CRDs, which fields may be set together). `None` when they hold.
fn check_combinators(schema: &J, node: &Node) -> Option<String> {
    if schema.get("x-kubernetes-int-or-string") == Some(&J::Bool(true)) {
        return None;
    }
    if let Some(branches) = schema.get("oneOf").and_then(J::as_array) {
        let matched = branches.iter().filter(|b| holds(b, node)).count();
        if matched != 1 {
            return Some(exclusive_message(branches, node));
        }
    }
    if let Some(branches) = schema.get("anyOf").and_then(J::as_array)
        && !branches.iter().any(|b| holds(b, node))
    {
        return Some(exclusive_message(branches, node));
    }
    for b in schema
        .get("allOf")
        .and_then(J::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(m) = check_combinators(b, node) {
            return Some(m);
        }
        if !holds(b, node) {
            return Some(exclusive_message(std::slice::from_ref(b), node));
        }
    }
    if let Some(n) = schema.get("not")
        && holds(n, node)
    {
        return Some(exclusive_message(std::slice::from_ref(n), node));
    }
    None
}

/// Whether a value-validation-only schema holds for `node` (silently).
fn holds(schema: &J, node: &Node) -> bool {
    let required_ok = schema
        .get("required")
        .and_then(J::as_array)
        .into_iter()
        .flatten()
        .filter_map(J::as_str)
        .all(|r| node.get(r).is_some());
    required_ok
        && check_type(schema, node).is_ok()
        && check_value(schema, node).is_empty()
        && check_combinators(schema, node).is_none()
}

/// "only one of a, b, c may be set (found a and b)": the fields the branches require.
fn exclusive_message(branches: &[J], node: &Node) -> String {
    let mut names: Vec<&str> = Vec::new();
    collect_required(branches, &mut names);
    names.dedup();
    let present: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| node.get(n).is_some())
        .collect();
    match present.len() {
        0 if !names.is_empty() => format!("needs one of {}", names.join(", ")),
        n if n > 1 => format!(
            "only one of {} may be set; found {}",
            names.join(", "),
            present.join(" and ")
        ),
        _ => "does not match any of the forms the schema allows".to_string(),
    }
}

fn collect_required<'a>(branches: &'a [J], out: &mut Vec<&'a str>) {
    for b in branches {
        for r in b
            .get("required")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && !out.contains(&r)
            {
                out.push(r);
            }
        }
        for k in ["oneOf", "anyOf", "allOf"] {
            if let Some(items) = b.get(k).and_then(J::as_array) {
                collect_required(items, out);
            }
        }
        if let Some(n) = b.get("not") {
            collect_required(std::slice::from_ref(n), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse_documents;

    fn violations(text: &str) -> Vec<String> {
        let doc = &parse_documents(text, &Default::default()).unwrap()[0];
        let gk = GroupKind::new("networking.istio.io", "VirtualService");
        validate(&gk, "v1", doc)
            .iter()
            .map(|v| format!("{}: {v}", v.pos))
            .collect()
    }

    const HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.dev]\n";

    #[test]
    fn a_field_in_the_wrong_place_names_where_it_belongs() {
        let text = format!(
            "{HEAD}  http:\n    - route:\n        - destination: {{host: goapp}}\n          timeout: 5s\n"
        );
        assert_eq!(
            violations(&text),
            vec![
                "10:11: spec.http[0].route[0].timeout: unknown field `timeout` here; `timeout` is a field of spec.http[0]"
            ]
        );
    }

    #[test]
    fn types_bounds_and_exclusive_fields() {
        let text = format!(
            "{HEAD}  http:\n    - match:\n        - uri: {{exact: /a, prefix: /b}}\n      route:\n        - destination: {{host: goapp, port: {{number: -1}}}}\n          weight: ten\n"
        );
        let v = violations(&text);
        assert!(
            v.iter().any(|m| m.contains("spec.http[0].match[0].uri: only one of exact, prefix, regex may be set; found exact and prefix")),
            "{v:#?}"
        );
        assert!(
            v.iter().any(|m| m.contains(
                "spec.http[0].route[0].destination.port.number: -1 is below the minimum of 0"
            )),
            "{v:#?}"
        );
        assert!(
            v.iter().any(|m| m.contains(
                "spec.http[0].route[0].weight: expected an integer, found the string \"ten\""
            )),
            "{v:#?}"
        );
    }

    #[test]
    fn a_valid_object_passes_and_unknown_kinds_are_not_checked() {
        let text = format!(
            "{HEAD}  gateways: [goapp-gateway]\n  http:\n    - name: fortune\n      timeout: 5s\n      route:\n        - destination: {{host: goapp, subset: v1, port: {{number: 8080}}}}\n          weight: 100\n"
        );
        assert_eq!(violations(&text), Vec::<String>::new());
        let doc = &parse_documents(&text, &Default::default()).unwrap()[0];
        assert!(validate(&GroupKind::new("example.com", "Thing"), "v1", doc).is_empty());
    }
}
