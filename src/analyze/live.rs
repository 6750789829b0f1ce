//! Live cluster facts for analysis: Services, Pods, EndpointSlices, Deployments, Namespaces
//! and Secret names, read once with the typed Kubernetes APIs.
//!
//! The lists are reduced to [`Facts`] through their JSON form, the same path the tests and
//! the fixtures take, so the analyzers see one shape whatever the origin. Secrets are listed
//! as metadata only: meshloop needs to know a TLS Secret exists, never its contents. Listing
//! Namespaces or Secrets may be forbidden by RBAC; that only switches off the checks that use
//! them. This module reads; it never writes to the cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use super::model::Facts;
use crate::cluster::{Cluster, ClusterError, timed};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Which namespaces to read: all of them, or a list.
fn apis<K>(cluster: &Cluster, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(cluster.client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(cluster.client.clone(), ns))
            .collect()
    }
}

async fn list<K>(
    cluster: &Cluster,
    namespaces: &[String],
    what: &'static str,
) -> Result<Vec<serde_json::Value>, LiveError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut out = Vec::new();
    for api in apis::<K>(cluster, namespaces) {
        let items = timed(api.list(&ListParams::default()))
            .await?
            .map_err(|source| LiveError::List { what, source })?;
        out.extend(
            items
                .items
                .iter()
                .filter_map(|i| serde_json::to_value(i).ok()),
        );
    }
    Ok(out)
}

/// Reads the facts analysis uses from `namespaces` (all namespaces when empty). Gateway Pods
/// usually live in a namespace of their own, so callers that check Gateway selectors should
/// read all namespaces.
pub async fn fetch(cluster: &Cluster, namespaces: &[String]) -> Result<Facts, LiveError> {
    let (services, pods, slices, deployments) = tokio::try_join!(
        list::<Service>(cluster, namespaces, "Services"),
        list::<Pod>(cluster, namespaces, "Pods"),
        list::<EndpointSlice>(cluster, namespaces, "EndpointSlices"),
        list::<Deployment>(cluster, namespaces, "Deployments"),
    )?;
    let mut facts = Facts::from_json(
        services
            .iter()
            .chain(&pods)
            .chain(&slices)
            .chain(&deployments),
    );
    // Optional facts: a forbidden list switches off the checks that need it.
    let ns_api: Api<Namespace> = Api::all(cluster.client.clone());
    if let Ok(Ok(list)) = timed(ns_api.list(&ListParams::default())).await {
        let values: Vec<serde_json::Value> = list
            .items
            .iter()
            .filter_map(|n| serde_json::to_value(n).ok())
            .collect();
        facts.namespaces = Facts::from_json(&values).namespaces;
    }
    for api in apis::<Secret>(cluster, namespaces) {
        if let Ok(Ok(list)) = timed(api.list_metadata(&ListParams::default())).await {
            for s in list.items {
                if let (Some(ns), Some(name)) = (s.metadata.namespace, s.metadata.name) {
                    facts.secrets.insert((ns, name));
                }
            }
        }
    }
    Ok(facts)
}
