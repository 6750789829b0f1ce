//! The typed spec of an owned object, read once.
//!
//! Loading checks that the fields meshloop reads have the types it expects by reading the
//! object's spec into its typed view (a broken object is refused with a located message
//! before anything is sent); the view it reads is kept with the object, so analysis takes it
//! from there instead of reading the same YAML again.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::gatewayapi::{
    self, GATEWAY_API, GatewayClassSpec, GrpcRouteSpec, HttpRouteSpec, ReferenceGrantSpec,
};
use super::istio::{
    self, DestinationRuleSpec, NETWORKING, ServiceEntrySpec, VirtualServiceSpec, spec,
};
use super::kinds::GroupKind;
use super::yaml::{Node, ViewError};

/// The spec of one object of a kind whose shape is checked.
#[derive(Debug, Clone)]
pub enum TypedSpec {
    IstioGateway(istio::GatewaySpec),
    VirtualService(VirtualServiceSpec),
    DestinationRule(DestinationRuleSpec),
    ServiceEntry(ServiceEntrySpec),
    Gateway(gatewayapi::GatewaySpec),
    HttpRoute(HttpRouteSpec),
    GrpcRoute(GrpcRouteSpec),
    ReferenceGrant(ReferenceGrantSpec),
}

/// Reads the spec of `doc` into its typed view when `gk` is a kind whose shape is checked
/// (`None` for other kinds); the error names the field's path and position.
pub fn read(gk: &GroupKind, doc: &Node) -> Result<Option<Arc<TypedSpec>>, ViewError> {
    use TypedSpec as T;
    let typed = match (gk.group.as_str(), gk.kind.as_str()) {
        (NETWORKING, "Gateway") => T::IstioGateway(spec(doc)?),
        (NETWORKING, "VirtualService") => T::VirtualService(spec(doc)?),
        (NETWORKING, "DestinationRule") => T::DestinationRule(spec(doc)?),
        (NETWORKING, "ServiceEntry") => T::ServiceEntry(spec(doc)?),
        (GATEWAY_API, "Gateway") => T::Gateway(spec(doc)?),
        (GATEWAY_API, "HTTPRoute") => T::HttpRoute(spec(doc)?),
        (GATEWAY_API, "GRPCRoute") => T::GrpcRoute(spec(doc)?),
        (GATEWAY_API, "ReferenceGrant") => T::ReferenceGrant(spec(doc)?),
        _ => return Ok(None),
    };
    Ok(Some(Arc::new(typed)))
}

/// A spec type that [`TypedSpec`] may hold.
pub trait Spec: DeserializeOwned + Default + Clone {
    /// The view inside `typed`, when it holds this type.
    fn of(typed: &TypedSpec) -> Option<&Self>;
}

macro_rules! spec_of {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl Spec for $ty {
            fn of(typed: &TypedSpec) -> Option<&Self> {
                match typed {
                    TypedSpec::$variant(s) => Some(s),
                    _ => None,
                }
            }
        })*
    };
}

spec_of! {
    istio::GatewaySpec => IstioGateway,
    VirtualServiceSpec => VirtualService,
    DestinationRuleSpec => DestinationRule,
    ServiceEntrySpec => ServiceEntry,
    gatewayapi::GatewaySpec => Gateway,
    HttpRouteSpec => HttpRoute,
    GrpcRouteSpec => GrpcRoute,
    ReferenceGrantSpec => ReferenceGrant,
}

/// Never checked at load (the API server owns it): always read from the YAML.
impl Spec for GatewayClassSpec {
    fn of(_: &TypedSpec) -> Option<&Self> {
        None
    }
}

/// The spec of `doc` as `T`: the view read at load when there is one, else read now.
pub fn spec_or_read<T: Spec>(typed: Option<&TypedSpec>, doc: &Node) -> Result<T, ViewError> {
    match typed.and_then(T::of) {
        Some(s) => Ok(s.clone()),
        None => spec(doc),
    }
}
