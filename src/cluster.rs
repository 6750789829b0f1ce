//! The Kubernetes side: client construction, kind discovery (cached), and the labels that
//! mark what meshloop owns.
//!
//! Everything that talks to the API server goes through a [`Cluster`]. It knows nothing about
//! files; `sync` decides what to send.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::api::ApiResource;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Client, Config};
use tokio::sync::Mutex;

use crate::config::GroupKind;

/// The field manager of every server-side apply meshloop sends.
pub const FIELD_MANAGER: &str = "meshloop";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_INSTANCE: &str = "meshloop.dev/instance";
/// Where the object was defined (`routing/goapp.yaml:12`), for `kubectl get -o yaml` readers.
pub const ANNOTATION_SOURCE: &str = "meshloop.dev/source";
/// A digest of what meshloop last applied; with the live values it tells whether an apply
/// would change anything, so an unchanged object costs no write.
pub const ANNOTATION_HASH: &str = "meshloop.dev/applied-hash";
/// Every request gets this long; a local API server answers in milliseconds, so this only
/// bounds how long a wedged connection can hold a sync.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A refused or unroutable connection fails fast; the caller retries with backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no usable cluster configuration: {0} (set KUBECONFIG, pass --kubeconfig, or run dev/localcluster start)"
    )]
    Infer(String),
    #[error("cannot build a client: {0}")]
    Client(#[source] kube::Error),
    #[error("cluster unreachable: {0}")]
    Unreachable(String),
    #[error("{kind} is not served by this cluster: {hint}")]
    KindNotInstalled { kind: GroupKind, hint: String },
    #[error("{kind}: version {version} is not served (served: {served})")]
    VersionNotServed {
        kind: GroupKind,
        version: String,
        served: String,
    },
    #[error("request to the API server timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

impl ClusterError {
    /// Connection-level failures, as opposed to the server refusing a request.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ClusterError::Unreachable(_) | ClusterError::Timeout(_) => true,
            ClusterError::Api(e) => is_connection_error(e),
            _ => false,
        }
    }
}

pub fn is_connection_error(e: &kube::Error) -> bool {
    matches!(
        e,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_)
    )
}

/// How to find the cluster: the CLI's `--kubeconfig` and `--context`.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// The kinds of one API group at all served versions, preferred version first.
type GroupResources = Vec<(ApiResource, ApiCapabilities)>;

/// A connected client plus what we learnt about the cluster.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// The kubeconfig context's namespace (or `default`).
    pub default_namespace: String,
    pub server: String,
    pub context: Option<String>,
    kinds: Arc<Mutex<HashMap<String, GroupResources>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Builds a client; this does not contact the server (see [`Cluster::ping`]).
    pub async fn connect(target: &Target) -> Result<Cluster, ClusterError> {
        let opts = KubeConfigOptions {
            context: target.context.clone(),
            ..KubeConfigOptions::default()
        };
        let mut config = match &target.kubeconfig {
            Some(path) => {
                let kc =
                    Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?;
                Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|source| ClusterError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?
            }
            None if target.context.is_some() => Config::from_kubeconfig(&opts)
                .await
                .map_err(|e| ClusterError::Infer(e.to_string()))?,
            None => Config::infer()
                .await
                .map_err(|e| ClusterError::Infer(e.to_string()))?,
        };
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        let server = config.cluster_url.to_string();
        let default_namespace = config.default_namespace.clone();
        let client = build_client(config)?;
        Ok(Cluster {
            client,
            default_namespace,
            server,
            context: target.context.clone(),
            kinds: Arc::default(),
        })
    }

    /// Asks the server for its version: the cheapest proof that it answers.
    pub async fn ping(&self) -> Result<String, ClusterError> {
        let v = timed(self.client.apiserver_version())
            .await?
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        Ok(v.git_version)
    }

    /// Resolves a kind at a version (or the group's preferred version) through discovery. The
    /// answer is cached per group; an unknown kind refreshes the group once, so a CRD installed
    /// while meshloop runs is found without a restart.
    pub async fn resolve(
        &self,
        gk: &GroupKind,
        version: Option<&str>,
    ) -> Result<(ApiResource, Scope), ClusterError> {
        for refresh in [false, true] {
            let resources = self.group_resources(&gk.group, refresh).await?;
            let matching: Vec<_> = resources
                .iter()
                .filter(|(ar, _)| ar.kind == gk.kind)
                .collect();
            if matching.is_empty() {
                continue;
            }
            let pick = match version {
                Some(v) => matching.iter().find(|(ar, _)| ar.version == v),
                None => matching.first(),
            };
            match pick {
                Some((ar, caps)) => return Ok((ar.clone(), caps.scope.clone())),
                None if refresh => {
                    return Err(ClusterError::VersionNotServed {
                        kind: gk.clone(),
                        version: version.unwrap_or_default().to_string(),
                        served: matching
                            .iter()
                            .map(|(ar, _)| ar.version.clone())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                None => {}
            }
        }
        Err(ClusterError::KindNotInstalled {
            kind: gk.clone(),
            hint: not_installed_hint(&gk.group),
        })
    }

    async fn group_resources(
        &self,
        group: &str,
        refresh: bool,
    ) -> Result<Vec<(ApiResource, ApiCapabilities)>, ClusterError> {
        // The lock is held across the discovery request on purpose: concurrent resolves of one
        // group should share one round trip, and discovery is not on any hot path after start.
        let mut kinds = self.kinds.lock().await;
        if let (false, Some(r)) = (refresh, kinds.get(group)) {
            return Ok(r.clone());
        }
        let found = match timed(kube::discovery::group(&self.client, group)).await? {
            Ok(g) => {
                // Preferred version first, so `resolve(.., None)` picks it.
                let mut all = Vec::new();
                let preferred = g.preferred_version_or_latest().to_string();
                all.extend(g.versioned_resources(&preferred));
                for v in g.versions() {
                    if v != preferred {
                        all.extend(g.versioned_resources(v));
                    }
                }
                all
            }
            Err(kube::Error::Discovery(_)) => Vec::new(),
            Err(e) if is_connection_error(&e) => {
                return Err(ClusterError::Unreachable(e.to_string()));
            }
            Err(e) => return Err(ClusterError::Api(e)),
        };
        kinds.insert(group.to_string(), found.clone());
        Ok(found)
    }
}

/// The client stack of `Client::try_from(config)`, with one difference: TCP_NODELAY. kube's
/// default connector leaves Nagle's algorithm on, and a small PATCH written as headers then
/// body then waits for the server's delayed ACK (40 ms on Linux) before the body leaves, which
/// was most of meshloop's save-to-applied time.
fn build_client(config: Config) -> Result<Client, ClusterError> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = config
        .rustls_https_connector_with_connector(http)
        .map_err(ClusterError::Client)?;
    let hyper: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(ClusterError::Client)?)
        .layer(config.extra_headers_layer().map_err(ClusterError::Client)?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

/// The Gateway API CRDs are not part of Istio's charts; dev/up.sh installs the same release.
pub const GATEWAY_API_HINT: &str = "the Gateway API CRDs are not installed in this cluster: run dev/up.sh, or kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.6.3/standard-install.yaml";

/// What to tell the user when a kind is missing.
fn not_installed_hint(group: &str) -> String {
    if group.ends_with("istio.io") {
        "Istio CRDs are not installed in this cluster: run dev/up.sh (or dev/localcluster start for the local control plane)".into()
    } else if group == crate::manifest::gatewayapi::GATEWAY_API {
        GATEWAY_API_HINT.into()
    } else {
        format!("no API group {group:?} on this cluster: install its CRDs first")
    }
}

/// Bounds one request by [`REQUEST_TIMEOUT`].
pub async fn timed<T>(fut: impl std::future::Future<Output = T>) -> Result<T, ClusterError> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| ClusterError::Timeout(REQUEST_TIMEOUT))
}

/// The label selector of everything one instance owns.
pub fn owned_selector(instance: &str) -> String {
    format!("{LABEL_MANAGED_BY}={FIELD_MANAGER},{LABEL_INSTANCE}={instance}")
}
