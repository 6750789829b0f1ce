//! Chart sources: `helm template`, split back into the templates it rendered.
//!
//! meshloop runs the `helm` binary rather than re-implementing Go templates: the output is then
//! exactly what `helm install` and Tilt's `helm()` would produce. Each rendered document is
//! attributed to its template through the `# Source:` comment helm writes above it, and line
//! numbers count from the first line of that template's rendering.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{LoadOptions, Loaded, load_text};

#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    #[error(
        "cannot run {helm:?}: {source} (install helm, or set `helm:` in meshloop.yaml or MESHLOOP_HELM)"
    )]
    Spawn {
        helm: String,
        #[source]
        source: std::io::Error,
    },
    #[error("helm template {chart} failed:\n{stderr}")]
    Failed { chart: String, stderr: String },
}

/// What to render.
#[derive(Debug, Clone)]
pub struct ChartRequest<'a> {
    pub helm: &'a str,
    pub chart: &'a Path,
    /// How the chart directory is shown in messages (relative to the config).
    pub shown_as: &'a str,
    pub release: &'a str,
    pub namespace: &'a str,
    pub values: &'a [PathBuf],
    pub set: &'a BTreeMap<String, String>,
}

/// Runs `helm template` and returns its output.
pub fn template(req: &ChartRequest<'_>) -> Result<String, HelmError> {
    let mut cmd = Command::new(req.helm);
    cmd.arg("template")
        .arg(req.release)
        .arg(req.chart)
        .arg("--namespace")
        .arg(req.namespace);
    for v in req.values {
        cmd.arg("--values").arg(v);
    }
    for (k, v) in req.set {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    let out = cmd.output().map_err(|source| HelmError::Spawn {
        helm: req.helm.to_string(),
        source,
    })?;
    if !out.status.success() {
        return Err(HelmError::Failed {
            chart: req.shown_as.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Renders a chart and reads the owned objects out of it.
pub fn load_chart(req: &ChartRequest<'_>, opts: &LoadOptions) -> Result<Loaded, HelmError> {
    let rendered = template(req)?;
    Ok(load_rendered(&rendered, req.shown_as, opts))
}

/// Splits helm output at its `# Source: <chart>/templates/x.yaml` comments and reads each
/// template's documents; non-owned kinds are Tilt's and are not reported as skipped.
pub fn load_rendered(rendered: &str, chart_shown_as: &str, opts: &LoadOptions) -> Loaded {
    let mut out = Loaded {
        parsed: true,
        ..Loaded::default()
    };
    for (template, text) in split_sources(rendered) {
        let file = match template.split_once('/') {
            Some((_, rest)) => format!("{chart_shown_as}/{rest}"),
            None => format!("{chart_shown_as}/{template}"),
        };
        let mut part = load_text(&text, &file, true, opts);
        if !part.parsed {
            out.parsed = false;
        }
        out.objects.append(&mut part.objects);
        out.others.append(&mut part.others);
        out.errors.append(&mut part.errors);
    }
    out
}

fn split_sources(rendered: &str) -> Vec<(String, String)> {
    let mut parts: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in rendered.lines() {
        if let Some(src) = line.strip_prefix("# Source: ") {
            if let Some(done) = current.take() {
                parts.push(done);
            }
            current = Some((src.trim().to_string(), String::new()));
            continue;
        }
        // Text before the first `# Source:` is only the leading `---`.
        if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some(done) = current.take() {
        parts.push(done);
    }
    // One template can render several documents, each under its own `# Source:` line, with
    // `---` separators between; a trailing separator belongs to the next part and is harmless.
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_attributed_to_their_templates() {
        let rendered = "---\n# Source: goapp/templates/service.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: goapp\n---\n# Source: goapp/templates/routing.yaml\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n";
        let opts = LoadOptions {
            owned: crate::manifest::kinds::default_owned_kinds(),
            default_namespace: "dev".into(),
            keep_others: false,
            limits: Default::default(),
        };
        let l = load_rendered(rendered, "charts/goapp", &opts);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert!(l.skipped.is_empty());
        assert_eq!(l.objects.len(), 1);
        assert_eq!(
            l.objects[0].origin.file,
            "charts/goapp/templates/routing.yaml"
        );
        assert_eq!(l.objects[0].origin.pos.line, 1);
        assert!(l.objects[0].origin.rendered);
    }
}
