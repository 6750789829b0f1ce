//! An API server's refusal, located in the file the object came from.
//!
//! The API server names fields by path: `.spec.http[0].route[0].timeout: field not declared in
//! schema` (server-side apply), `spec.http[0]: Invalid value: ...` (a CEL rule), a conflict's
//! `.spec.http` (another field manager). Each path found, in the status causes or in the
//! message, is followed in the source object as written to the key's line and column, and the
//! message says it: `routing/goapp.yaml:10:11: rejected by the API server:
//! .spec.http[0].route[0].timeout (routing/goapp.yaml:10:11): field not declared in schema`. A
//! path that goes through something the file does not have (a list item selected by key)
//! points at the deepest part that exists.
//!
//! It neither talks to the cluster nor decides anything; `sync` calls it on a refusal.

use std::sync::OnceLock;

use regex::Regex;

use crate::manifest::SourceObject;
use crate::manifest::yaml::{Pos, Seg};

/// A field path in a message: optional leading dot, a top-level field of an object, then
/// `.name` and `[index]` steps (a `[key="value"]` step ends it).
fn path_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"\.?\b(?:spec|metadata|data)(?:\.[A-Za-z0-9_\-/]+|\[\d+\])*"#)
            .expect("a valid regex")
    })
}

/// The steps of a path such as `.spec.http[0].route`.
pub fn parse_path(text: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in text.trim_start_matches('.').split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name.to_string()));
        }
        while let Some(close) = rest.find(']') {
            match rest[1..close].parse::<usize>() {
                Ok(i) => out.push(Seg::Index(i)),
                Err(_) => return out,
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// Where a path is in the object's file; `None` when not even its first step is there.
fn position(obj: &SourceObject, path: &[Seg]) -> Option<Pos> {
    let pos = obj.locate(path);
    (pos != obj.origin.pos || path.is_empty()).then_some(pos)
}

/// `what: message` with each field path followed by its place in the file, prefixed with the
/// first place (`file:line:col: what: message`); no prefix when it names no field of the
/// object.
pub fn locate(obj: &SourceObject, what: &str, message: &str, cause_fields: &[String]) -> String {
    let file = &obj.origin.file;
    let mut first: Option<Pos> = None;
    let mut out = String::new();
    let mut last = 0;
    for m in path_pattern().find_iter(message) {
        let Some(pos) = position(obj, &parse_path(m.as_str())) else {
            continue;
        };
        first.get_or_insert(pos);
        out.push_str(&message[last..m.end()]);
        out.push_str(&format!(" ({file}:{pos})"));
        last = m.end();
    }
    out.push_str(&message[last..]);
    // Causes the message does not spell out (a long list is cut short by the server).
    for field in cause_fields {
        if message.contains(field.trim_start_matches('.')) {
            continue;
        }
        if let Some(pos) = position(obj, &parse_path(field)) {
            first.get_or_insert(pos);
            out.push_str(&format!("; {field} ({file}:{pos})"));
        }
    }
    match first {
        Some(pos) => format!("{file}:{pos}: {what}: {out}"),
        None => format!("{what}: {out}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{LoadOptions, load_text};

    fn object() -> SourceObject {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: goapp\nspec:\n  hosts: [goapp.dev]\n  http:\n    - route:\n        - destination: {host: goapp}\n          weight: 100\n";
        let opts = LoadOptions::new(crate::config::default_owned_kinds(), "dev");
        load_text(text, "routing/goapp.yaml", false, &opts)
            .objects
            .remove(0)
    }

    #[test]
    fn paths_parse_with_indexes_and_stop_at_keyed_items() {
        assert_eq!(
            parse_path(".spec.http[0].route[1].weight"),
            vec![
                Seg::Key("spec".into()),
                Seg::Key("http".into()),
                Seg::Index(0),
                Seg::Key("route".into()),
                Seg::Index(1),
                Seg::Key("weight".into()),
            ]
        );
        assert_eq!(
            parse_path(".spec.http[name=\"a\"].route"),
            vec![Seg::Key("spec".into()), Seg::Key("http".into())]
        );
    }

    #[test]
    fn schema_cel_and_conflict_messages_are_located() {
        let obj = object();
        assert_eq!(
            locate(
                &obj,
                "rejected",
                ".spec.http[0].route[0].weight: field not declared in schema",
                &[]
            ),
            "routing/goapp.yaml:10:11: rejected: .spec.http[0].route[0].weight (routing/goapp.yaml:10:11): field not declared in schema"
        );
        assert_eq!(
            locate(
                &obj,
                "rejected",
                "VirtualService.networking.istio.io \"goapp\" is invalid: spec.http[0]: Invalid value: \"object\": bad",
                &["spec.http[0]".into()]
            ),
            "routing/goapp.yaml:8:7: rejected: VirtualService.networking.istio.io \"goapp\" is invalid: spec.http[0] (routing/goapp.yaml:8:7): Invalid value: \"object\": bad"
        );
        assert_eq!(
            locate(
                &obj,
                "conflict",
                "Apply failed with 1 conflict: conflict with \"editor\" using networking.istio.io/v1: .spec.hosts",
                &[".spec.hosts".into()]
            ),
            "routing/goapp.yaml:6:3: conflict: Apply failed with 1 conflict: conflict with \"editor\" using networking.istio.io/v1: .spec.hosts (routing/goapp.yaml:6:3)"
        );
        assert_eq!(
            locate(&obj, "rejected", "etcd is down", &[]),
            "rejected: etcd is down"
        );
    }
}
