//! The kinds of objects: an API group and a kind name, and the kinds meshloop owns unless
//! its configuration says otherwise.

use std::fmt;

/// A Kubernetes kind identified by API group and kind name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    pub fn new(group: &str, kind: &str) -> Self {
        GroupKind {
            group: group.into(),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// The kinds meshloop owns unless the config adds more: Istio's routing and security kinds.
/// Everything else (Deployments, Services) belongs to Tilt.
pub fn default_owned_kinds() -> Vec<GroupKind> {
    const NET: &str = "networking.istio.io";
    const SEC: &str = "security.istio.io";
    let mut kinds = vec![
        GroupKind::new(NET, "Gateway"),
        GroupKind::new(NET, "VirtualService"),
        GroupKind::new(NET, "DestinationRule"),
        GroupKind::new(NET, "ServiceEntry"),
        GroupKind::new(NET, "Sidecar"),
        GroupKind::new(SEC, "AuthorizationPolicy"),
        GroupKind::new(SEC, "PeerAuthentication"),
        GroupKind::new(SEC, "RequestAuthentication"),
    ];
    kinds.extend(
        super::gatewayapi::OWNED_KINDS
            .iter()
            .map(|k| GroupKind::new(super::gatewayapi::GATEWAY_API, k)),
    );
    kinds
}

/// `Telemetry.telemetry.istio.io` → group `telemetry.istio.io`, kind `Telemetry`; a bare
/// `ConfigMap` is the core group.
pub fn parse_group_kind(s: &str) -> Option<GroupKind> {
    let (kind, group) = s.split_once('.').unwrap_or((s, ""));
    let ok = !kind.is_empty() && kind.chars().next()?.is_ascii_uppercase();
    ok.then(|| GroupKind::new(group, kind))
}
