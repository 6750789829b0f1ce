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

use super::istio::spec;
use super::yaml::{Loc, Node, ViewError};
use crate::manifest::kinds::GroupKind;

pub const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// The Gateway API kinds meshloop owns by default, in the order they are applied.
pub const OWNED_KINDS: &[&str] = &["Gateway", "ReferenceGrant", "HTTPRoute", "GRPCRoute"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default)]
    pub gateway_class_name: Option<Loc<String>>,
    #[serde(default)]
    pub listeners: Vec<Loc<Listener>>,
    #[serde(default)]
    pub addresses: Vec<Loc<GatewayAddress>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    #[serde(default)]
    pub name: Loc<String>,
    #[serde(default)]
    pub hostname: Option<Loc<String>>,
    #[serde(default)]
    pub port: Loc<u32>,
    #[serde(default)]
    pub protocol: Loc<String>,
    #[serde(default)]
    pub allowed_routes: Option<Loc<AllowedRoutes>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    #[serde(default)]
    pub namespaces: Option<Loc<RouteNamespaces>>,
    #[serde(default)]
    pub kinds: Option<Loc<Vec<Loc<RouteGroupKind>>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteNamespaces {
    /// `Same` (the default), `All` or `Selector`.
    #[serde(default)]
    pub from: Option<Loc<String>>,
    #[serde(default)]
    pub selector: Option<Loc<LabelSelector>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelExpression>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct LabelExpression {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RouteGroupKind {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
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
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<Loc<ParentRef>>,
    #[serde(default)]
    pub hostnames: Vec<Loc<String>>,
    /// `None` when omitted: the API server fills in one rule matching every path.
    #[serde(default)]
    pub rules: Option<Vec<Loc<HttpRouteRule>>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Loc<String>,
    #[serde(default)]
    pub section_name: Option<Loc<String>>,
    #[serde(default)]
    pub port: Option<Loc<u32>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    /// `None` when omitted: one match, PathPrefix `/`.
    #[serde(default)]
    pub matches: Option<Vec<Loc<HttpRouteMatch>>>,
    #[serde(default)]
    pub filters: Vec<Loc<HttpRouteFilter>>,
    #[serde(default)]
    pub backend_refs: Vec<Loc<BackendRef>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    #[serde(default)]
    pub path: Option<Loc<PathMatch>>,
    #[serde(default)]
    pub headers: Vec<Loc<ValueMatch>>,
    #[serde(default)]
    pub query_params: Vec<Loc<ValueMatch>>,
    #[serde(default)]
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
pub struct HeaderModifier {
    #[serde(default)]
    pub set: Vec<NameValue>,
    #[serde(default)]
    pub add: Vec<NameValue>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NameValue {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<PathModifier>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub status_code: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
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
pub struct RequestMirror {
    #[serde(default)]
    pub backend_ref: Option<Loc<BackendRef>>,
    #[serde(default)]
    pub percent: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Loc<String>,
    #[serde(default)]
    pub namespace: Option<Loc<String>>,
    #[serde(default)]
    pub port: Option<Loc<u32>>,
    /// Unset means 1.
    #[serde(default)]
    pub weight: Option<Loc<i64>>,
    #[serde(default)]
    pub filters: Vec<Loc<HttpRouteFilter>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<Loc<ParentRef>>,
    #[serde(default)]
    pub hostnames: Vec<Loc<String>>,
    #[serde(default)]
    pub rules: Vec<Loc<GrpcRouteRule>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    #[serde(default)]
    pub matches: Vec<Loc<GrpcRouteMatch>>,
    #[serde(default)]
    pub filters: Vec<Loc<HttpRouteFilter>>,
    #[serde(default)]
    pub backend_refs: Vec<Loc<BackendRef>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrpcRouteMatch {
    #[serde(default)]
    pub method: Option<Loc<GrpcMethodMatch>>,
    #[serde(default)]
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
pub struct ReferenceGrantSpec {
    #[serde(default)]
    pub from: Vec<Loc<GrantFrom>>,
    #[serde(default)]
    pub to: Vec<Loc<GrantTo>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrantFrom {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: Loc<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrantTo {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    #[serde(default)]
    pub controller_name: Option<String>,
}

/// Checks that the fields meshloop reads have the types it expects (see
/// `istio::check_shape`).
pub fn check_shape(gk: &GroupKind, doc: &Node) -> Result<(), ViewError> {
    if gk.group != GATEWAY_API {
        return Ok(());
    }

    match gk.kind.as_str() {
        "Gateway" => spec::<GatewaySpec>(doc).map(drop),
        "HTTPRoute" => spec::<HttpRouteSpec>(doc).map(drop),
        "GRPCRoute" => spec::<GrpcRouteSpec>(doc).map(drop),
        "ReferenceGrant" => spec::<ReferenceGrantSpec>(doc).map(drop),
        _ => Ok(()),
    }
}
