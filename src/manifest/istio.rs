//! Typed views of the Istio kinds meshloop reasons about, read from located YAML.
//!
//! The views are deliberately lenient: unknown fields are allowed (the CRD schema on the
//! server checks those), but a field we read must have the right type, and the error names
//! its path and position. Positions of the fields analyzers point at are kept with [`Loc`].
//! The same schema covers networking.istio.io v1, v1beta1 and v1alpha3.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::yaml::{self, Loc, Node, Seg, ViewError};

pub const NETWORKING: &str = "networking.istio.io";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct GatewaySpec {
    pub selector: Option<Loc<BTreeMap<String, String>>>,
    pub servers: Vec<Loc<Server>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct Server {
    pub port: Option<Loc<ServerPort>>,
    pub hosts: Vec<Loc<String>>,
    pub name: Option<String>,
    pub tls: Option<Loc<ServerTls>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct ServerPort {
    pub number: Option<Loc<u32>>,
    pub name: Option<String>,
    pub protocol: Option<Loc<String>>,
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct ServerTls {
    pub mode: Option<String>,
    pub credential_name: Option<Loc<String>>,
    pub https_redirect: Option<bool>,
    /// File-mounted certificate, the alternative to `credentialName`.
    pub server_certificate: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct VirtualServiceSpec {
    pub hosts: Vec<Loc<String>>,
    pub gateways: Option<Loc<Vec<Loc<String>>>>,
    pub http: Vec<Loc<HttpRoute>>,
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Option<Loc<Vec<Loc<HttpMatch>>>>,
    #[serde(default)]
    pub route: Option<Loc<Vec<Loc<RouteDestination>>>>,
    #[serde(default)]
    pub redirect: Option<Loc<Redirect>>,
    #[serde(default)]
    pub direct_response: Option<Loc<DirectResponse>>,
    #[serde(default)]
    pub delegate: Option<Loc<Delegate>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct HttpMatch {
    pub name: Option<String>,
    pub uri: Option<Loc<StringMatch>>,
    pub scheme: Option<Loc<StringMatch>>,
    pub method: Option<Loc<StringMatch>>,
    pub authority: Option<Loc<StringMatch>>,
    pub headers: BTreeMap<String, Loc<StringMatch>>,
    pub query_params: BTreeMap<String, Loc<StringMatch>>,
    pub without_headers: BTreeMap<String, Loc<StringMatch>>,
    pub port: Option<u32>,
    pub ignore_uri_case: Option<bool>,
    pub gateways: Vec<String>,
    pub source_labels: BTreeMap<String, String>,
}

/// Exactly one of the three should be set; the analyzers say so when it is not.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    /// A path prefix that matches whole path elements (`/foo` matches `/foo/bar`, not
    /// `/foobar`): a Gateway API PathPrefix, which Istio sends to Envoy as
    /// `path_separated_prefix`. Never set by a VirtualService.
    #[serde(skip)]
    pub path_separated: bool,
}

impl StringMatch {
    /// Whether `path` is under the prefix `prefix` element by element; a trailing `/` on the
    /// prefix is ignored (Gateway API PathPrefix).
    pub fn path_prefix_matches(prefix: &str, path: &str) -> bool {
        let p = prefix.trim_end_matches('/');
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDestination {
    pub destination: Loc<Destination>,
    #[serde(default)]
    pub weight: Option<Loc<i64>>,
    /// Why a translated Gateway API backendRef cannot take traffic (not found, not permitted,
    /// unsupported kind): Istio keeps its weight share and Envoy answers it with 500.
    #[serde(skip)]
    pub invalid: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub host: Loc<String>,
    #[serde(default)]
    pub subset: Option<Loc<String>>,
    #[serde(default)]
    pub port: Option<Loc<PortSelector>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PortSelector {
    pub number: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub redirect_code: Option<u16>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub port: Option<u32>,
    /// `FROM_PROTOCOL_DEFAULT` or `FROM_REQUEST_PORT`.
    #[serde(default)]
    pub derive_port: Option<String>,
    /// A Gateway API `ReplacePrefixMatch`: the matched prefix and its replacement.
    #[serde(skip)]
    pub replace_prefix: Option<(String, String)>,
}

impl Redirect {
    /// The `Location` of the redirect for a request to `host` `path` on `port`.
    pub fn location(&self, host: &str, path: &str, port: u32) -> String {
        let scheme = self.scheme.as_deref().unwrap_or("http");
        let port = match (self.port, self.derive_port.as_deref()) {
            (Some(p), _) => Some(p),
            (None, Some("FROM_REQUEST_PORT")) => Some(port),
            _ => None,
        }
        .filter(|p| !matches!((scheme, p), ("http", 80) | ("https", 443)));
        let path = match (&self.replace_prefix, &self.uri) {
            (Some((prefix, with)), _) => replace_prefix(path, prefix, with),
            (None, Some(uri)) => uri.clone(),
            (None, None) => path.to_string(),
        };
        let authority = self.authority.as_deref().unwrap_or(host);
        match port {
            Some(p) => format!("{scheme}://{authority}:{p}{path}"),
            None => format!("{scheme}://{authority}{path}"),
        }
    }
}

/// Replaces the path-element prefix `prefix` of `path` with `with` (Gateway API
/// ReplacePrefixMatch): `/a/b` with `/a` → `/x` gives `/x/b`, with `/` gives `/b`.
pub fn replace_prefix(path: &str, prefix: &str, with: &str) -> String {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (path, String::new()),
    };
    let rest = path
        .strip_prefix(prefix.trim_end_matches('/'))
        .unwrap_or(path);
    let joined = match (with.ends_with('/'), rest.starts_with('/')) {
        (true, true) => format!("{with}{}", &rest[1..]),
        (false, false) if !rest.is_empty() => format!("{with}/{rest}"),
        _ => format!("{with}{rest}"),
    };
    let joined = if joined.is_empty() {
        "/".into()
    } else {
        joined
    };
    format!("{joined}{query}")
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DirectResponse {
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Delegate {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct DestinationRuleSpec {
    pub host: Option<Loc<String>>,
    pub subsets: Vec<Loc<Subset>>,
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Subset {
    pub name: Loc<String>,
    #[serde(default)]
    pub labels: Option<Loc<BTreeMap<String, String>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct ServiceEntrySpec {
    pub hosts: Vec<Loc<String>>,
    pub ports: Vec<Loc<ServiceEntryPort>>,
    pub location: Option<String>,
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct ServiceEntryPort {
    pub number: Option<u32>,
    pub name: Option<String>,
    pub protocol: Option<String>,
}

/// Reads the `spec` of a document as `T`; a missing spec is an empty one.
pub fn spec<T: serde::de::DeserializeOwned + Default>(doc: &Node) -> Result<T, ViewError> {
    match doc.get("spec") {
        None => Ok(T::default()),
        Some(s) => yaml::from_node(s, &[Seg::Key("spec".into())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{LoadOptions, load_text};

    #[test]
    fn destination_host_of_wrong_type_is_located() {
        let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: goapp
spec:
  hosts: [goapp.dev]
  http:
    - route:
        - destination:
            host: {name: goapp}
";
        let opts = LoadOptions {
            owned: crate::manifest::kinds::default_owned_kinds(),
            default_namespace: "dev".into(),
            keep_others: false,
            limits: Default::default(),
        };
        let l = load_text(text, "routing/goapp.yaml", false, &opts);
        assert_eq!(
            l.errors[0].to_string(),
            "routing/goapp.yaml:10:19: VirtualService goapp: spec.http[0].route[0].destination.host: expected a string, found a mapping"
        );
        assert!(l.objects.is_empty());
    }

    #[test]
    fn reads_a_virtual_service() {
        let doc = &yaml::parse_documents(
            "spec:\n  hosts: [goapp.dev]\n  gateways: [goapp-gateway]\n  http:\n  - match:\n    - uri: {prefix: /}\n    route:\n    - destination: {host: goapp, subset: v1}\n      weight: 90\n",
            &Default::default(),
        )
        .unwrap()[0];
        let vs: VirtualServiceSpec = spec(doc).unwrap();
        assert_eq!(vs.hosts[0].value, "goapp.dev");
        let route = vs.http[0].route.as_ref().unwrap();
        assert_eq!(route[0].destination.host.value, "goapp");
        assert_eq!(route[0].weight.as_ref().unwrap().value, 90);
        assert_eq!(route[0].weight.as_ref().unwrap().pos.line, 9);
    }
}
