//! Typed views of the Kubernetes Gateway API kinds meshloop reasons about
//! (gateway.networking.k8s.io v1: Gateway, HTTPRoute, GRPCRoute, ReferenceGrant,
//! GatewayClass), read from located YAML.
//!
//! Like the Istio views these are lenient: the CRDs' schemas and CEL rules on the API server
//! check everything else, and a field we read must only have the right type. Defaults the API
//! server fills in (a parentRef's kind, a backendRef's weight, a rule's match) are applied by
//! the readers in `analyze`, not here, so a position always points at what was written.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::yaml::Loc;

pub const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// The Gateway API kinds meshloop owns by default, in the order they are applied.
pub const OWNED_KINDS: &[&str] = &["Gateway", "ReferenceGrant", "HTTPRoute", "GRPCRoute"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct GatewaySpec {
    pub gateway_class_name: Option<Loc<String>>,
    pub listeners: Vec<Loc<Listener>>,
    pub addresses: Vec<Loc<GatewayAddress>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct Listener {
    pub name: Loc<String>,
    pub hostname: Option<Loc<String>>,
    pub port: Loc<u32>,
    pub protocol: Loc<String>,
    pub allowed_routes: Option<Loc<AllowedRoutes>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct AllowedRoutes {
    pub namespaces: Option<Loc<RouteNamespaces>>,
    pub kinds: Option<Loc<Vec<Loc<RouteGroupKind>>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteNamespaces {
    /// `Same` (the default), `All` or `Selector`.
    pub from: Option<Loc<String>>,
    pub selector: Option<Loc<LabelSelector>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelExpression>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LabelExpression {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RouteGroupKind {
    pub group: Option<String>,
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GatewayAddress {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct HttpRouteSpec {
    pub parent_refs: Vec<Loc<ParentRef>>,
    pub hostnames: Vec<Loc<String>>,
    /// `None` when omitted: the API server fills in one rule matching every path.
    pub rules: Option<Vec<Loc<HttpRouteRule>>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Loc<String>,
    pub section_name: Option<Loc<String>>,
    pub port: Option<Loc<u32>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct HttpRouteRule {
    pub name: Option<String>,
    /// `None` when omitted: one match, PathPrefix `/`.
    pub matches: Option<Vec<Loc<HttpRouteMatch>>>,
    pub filters: Vec<Loc<HttpRouteFilter>>,
    pub backend_refs: Vec<Loc<BackendRef>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct HttpRouteMatch {
    pub path: Option<Loc<PathMatch>>,
    pub headers: Vec<Loc<ValueMatch>>,
    pub query_params: Vec<Loc<ValueMatch>>,
    pub method: Option<Loc<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct PathMatch {
    /// `Exact`, `PathPrefix` (the default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// A header or query parameter match.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ValueMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    #[serde(default, rename = "type")]
    pub kind: Loc<String>,
    #[serde(default)]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default)]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default)]
    pub request_redirect: Option<Loc<RequestRedirect>>,
    #[serde(default)]
    pub url_rewrite: Option<Loc<UrlRewrite>>,
    #[serde(default)]
    pub request_mirror: Option<Loc<RequestMirror>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HeaderModifier {
    pub set: Vec<NameValue>,
    pub add: Vec<NameValue>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct RequestRedirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
    pub port: Option<u32>,
    pub status_code: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct UrlRewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub replace_full_path: Option<String>,
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct RequestMirror {
    pub backend_ref: Option<Loc<BackendRef>>,
    pub percent: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct BackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: Loc<String>,
    pub namespace: Option<Loc<String>>,
    pub port: Option<Loc<u32>>,
    /// Unset means 1.
    pub weight: Option<Loc<i64>>,
    pub filters: Vec<Loc<HttpRouteFilter>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct GrpcRouteSpec {
    pub parent_refs: Vec<Loc<ParentRef>>,
    pub hostnames: Vec<Loc<String>>,
    pub rules: Vec<Loc<GrpcRouteRule>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct GrpcRouteRule {
    pub matches: Vec<Loc<GrpcRouteMatch>>,
    pub filters: Vec<Loc<HttpRouteFilter>>,
    pub backend_refs: Vec<Loc<BackendRef>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrpcRouteMatch {
    pub method: Option<Loc<GrpcMethodMatch>>,
    pub headers: Vec<Loc<ValueMatch>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrpcMethodMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReferenceGrantSpec {
    pub from: Vec<Loc<GrantFrom>>,
    pub to: Vec<Loc<GrantTo>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: Loc<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrantTo {
    pub group: String,
    pub kind: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct GatewayClassSpec {
    pub controller_name: Option<String>,
}
