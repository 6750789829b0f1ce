//! Where the ingress gateway answers, found the way a developer finds INGRESS_HOST and
//! INGRESS_PORT by hand, in this order:
//!
//! 1. the gateway Service's `status.loadBalancer.ingress[0]` (ip, else hostname) with the
//!    `port` of the port named `ingress.port` (default `http2`);
//! 2. the same port's `nodePort` on a node address (InternalIP, then ExternalIP); when no node
//!    address accepts a connection, `127.0.0.1:nodePort` is tried too, which is what a kind
//!    cluster made by `dev/up.sh` maps to the host (its `extraPortMappings` use the same port
//!    on both sides);
//! 3. `ingress.address` from the config.
//!
//! With `ingress.gateway` (a Gateway API Gateway), the first address istiod wrote into the
//! Gateway's `status.addresses` comes before all of these, with the port of its first HTTP
//! listener; a cluster-internal hostname there (`*.cluster.local`, what istiod writes when the
//! Service has no load balancer) is passed over.
//!
//! The result says which one was used. Node addresses are tried with a TCP connect, because a
//! kind node's address is reachable from the host only on Linux.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service, ServicePort};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde::Serialize;

use crate::config::Ingress;

/// How long a node address gets to accept a connection.
const CONNECT_TRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
    /// Which rule gave it, in words.
    pub via: String,
}

impl Address {
    /// `host:port`, with IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AddressError {
    #[error(
        "Service {0} not found: the ingress gateway is not installed (dev/up.sh installs it as Helm release istio-ingress), or set ingress.namespace/ingress.service in meshloop.yaml"
    )]
    Missing(String),
    #[error(
        "Service {svc} has no port named {port:?} (ports: {ports}); set ingress.port in meshloop.yaml"
    )]
    NoPort {
        svc: String,
        port: String,
        ports: String,
    },
    #[error("Service {svc} has no address yet: {why}")]
    NoAddress { svc: String, why: String },
    #[error("cannot read Service {svc}: {message}")]
    Api { svc: String, message: String },
    #[error("ingress.address {0:?} in meshloop.yaml is not host:port")]
    BadConfig(String),
    #[error("no cluster to read the ingress Service from, and no ingress.address in meshloop.yaml")]
    NoCluster,
}

/// Parses `ingress.address` (`host:port`, `[v6]:port`).
pub fn parse_config_address(s: &str) -> Result<(String, u16), AddressError> {
    let bad = || AddressError::BadConfig(s.to_string());
    let s2 = s.trim().trim_start_matches("http://").trim_end_matches('/');
    let (host, port) = s2.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn from_config(ing: &Ingress, note: &str) -> Option<Result<Address, AddressError>> {
    let raw = ing.address.as_ref()?;
    Some(parse_config_address(raw).map(|(host, port)| Address {
        host,
        port,
        via: format!("ingress.address in meshloop.yaml{note}"),
    }))
}

/// The Service port that carries plain HTTP: by name, or by number when `ingress.port` is one.
pub fn http_port<'a>(svc: &'a Service, want: &str) -> Option<&'a ServicePort> {
    let ports = svc.spec.as_ref()?.ports.as_ref()?;
    ports
        .iter()
        .find(|p| p.name.as_deref() == Some(want))
        .or_else(|| {
            let n: i32 = want.parse().ok()?;
            ports.iter().find(|p| p.port == n)
        })
}

/// The ingress Service, `None` when it does not exist.
pub async fn ingress_service(
    client: &Client,
    ing: &Ingress,
) -> Result<Option<Service>, AddressError> {
    Api::<Service>::namespaced(client.clone(), &ing.namespace)
        .get_opt(&ing.service)
        .await
        .map_err(|e| AddressError::Api {
            svc: format!("{}/{}", ing.namespace, ing.service),
            message: e.to_string(),
        })
}

/// Resolves the ingress address from the ingress Service (read with [`ingress_service`]);
/// `client` is `None` when no cluster is reachable. In order: the load balancer's address,
/// the NodePort on a node that accepts a connection, `ingress.address` of the config.
pub async fn resolve(
    client: Option<&Client>,
    ing: &Ingress,
    svc: Option<&Service>,
) -> Result<Address, AddressError> {
    let svc_name = format!("{}/{}", ing.namespace, ing.service);
    let Some(client) = client else {
        return from_config(ing, "").unwrap_or(Err(AddressError::NoCluster));
    };
    if let Some(a) = gateway_status(client, ing).await {
        return Ok(a);
    }
    let Some(svc) = svc else {
        return from_config(ing, &format!(" (Service {svc_name} not found)"))
            .unwrap_or(Err(AddressError::Missing(svc_name)));
    };
    let Some(port) = http_port(svc, &ing.port) else {
        return from_config(ing, "").unwrap_or_else(|| Err(no_port(svc, ing, svc_name)));
    };
    if let Some(a) = load_balancer(svc, port, &svc_name) {
        return Ok(a);
    }
    if let Some(node_port) = port.node_port.filter(|p| *p > 0) {
        let candidates = node_addresses(client).await;
        if let Some(a) = node_port_address(&candidates, node_port as u16, &svc_name).await {
            return Ok(a);
        }
        if let Some(a) = from_config(ing, "") {
            return a;
        }
        if let Some((host, what)) = candidates.first() {
            return Ok(Address {
                host: host.clone(),
                port: node_port as u16,
                via: format!(
                    "NodePort {node_port} of Service {svc_name} on {what} (it did not accept a connection)"
                ),
            });
        }
    }
    from_config(ing, "").unwrap_or_else(|| Err(no_address(svc, svc_name)))
}

/// The first usable address of `status.addresses` of the Gateway named by `ingress.gateway`.
async fn gateway_status(client: &Client, ing: &Ingress) -> Option<Address> {
    let name = ing.gateway.as_deref()?;
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway");
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ing.namespace, &ApiResource::from_gvk(&gvk));
    let gw = api.get_opt(name).await.ok()??;
    let listener = gw.data["spec"]["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["protocol"] == "HTTP")?;
    let port = u16::try_from(listener["port"].as_u64()?).ok()?;
    let host = gw.data["status"]["addresses"]
        .as_array()?
        .iter()
        .filter_map(|a| a["value"].as_str())
        .find(|v| !v.is_empty() && !v.ends_with(".cluster.local"))?;
    Some(Address {
        host: host.to_string(),
        port,
        via: format!(
            "status.addresses of Gateway {}/{name}, listener {} port {port}",
            ing.namespace,
            listener["name"].as_str().unwrap_or("?")
        ),
    })
}

/// The Service has no port named or numbered as the config's `ingress.port`.
fn no_port(svc: &Service, ing: &Ingress, svc_name: String) -> AddressError {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{}={}", p.name.as_deref().unwrap_or("-"), p.port))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    AddressError::NoPort {
        svc: svc_name,
        port: ing.port.clone(),
        ports,
    }
}

/// The load balancer's IP or hostname, when the Service has one.
fn load_balancer(svc: &Service, port: &ServicePort, svc_name: &str) -> Option<Address> {
    let lb = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first())?;
    let (host, what) = match (&lb.ip, &lb.hostname) {
        (Some(ip), _) if !ip.is_empty() => (ip.clone(), "ip"),
        (_, Some(h)) if !h.is_empty() => (h.clone(), "hostname"),
        _ => return None,
    };
    let port_name = port.name.clone().unwrap_or_else(|| port.port.to_string());
    Some(Address {
        host,
        port: port.port as u16,
        via: format!(
            "load balancer {what} of Service {svc_name}, port {port_name} ({})",
            port.port
        ),
    })
}

/// Every node's InternalIP and ExternalIP, with a description of each.
async fn node_addresses(client: &Client) -> Vec<(String, String)> {
    let mut candidates = Vec::new();
    let nodes: Api<Node> = Api::all(client.clone());
    let Ok(list) = nodes.list(&ListParams::default()).await else {
        return candidates;
    };
    for n in &list.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let addrs = n.status.as_ref().and_then(|s| s.addresses.as_ref());
        for kind in ["InternalIP", "ExternalIP"] {
            for a in addrs.into_iter().flatten().filter(|a| a.type_ == kind) {
                candidates.push((a.address.clone(), format!("node {name} {kind}")));
            }
        }
    }
    candidates
}

/// The first node address that accepts a connection on the NodePort, else 127.0.0.1 when it
/// does (a host port mapping such as kind's extraPortMappings).
async fn node_port_address(
    candidates: &[(String, String)],
    node_port: u16,
    svc_name: &str,
) -> Option<Address> {
    for (host, what) in candidates {
        if connects(host, node_port).await {
            return Some(Address {
                host: host.clone(),
                port: node_port,
                via: format!("NodePort {node_port} of Service {svc_name} on {what}"),
            });
        }
    }
    let local_tried = candidates.iter().any(|(h, _)| h == "127.0.0.1");
    (!local_tried && connects("127.0.0.1", node_port).await).then(|| Address {
        host: "127.0.0.1".into(),
        port: node_port,
        via: format!(
            "NodePort {node_port} of Service {svc_name} on 127.0.0.1 (a host port mapping such as kind's extraPortMappings)"
        ),
    })
}

/// Neither a load balancer nor a reachable node: why, by the Service's type.
fn no_address(svc: &Service, svc_name: String) -> AddressError {
    let kind = svc
        .spec
        .as_ref()
        .and_then(|s| s.type_.clone())
        .unwrap_or_else(|| "ClusterIP".into());
    let why = match kind.as_str() {
        "LoadBalancer" => "its load balancer is pending (status.loadBalancer is empty) and it has no nodePort on a node; set ingress.address in meshloop.yaml, or use a cluster made by dev/up.sh".to_string(),
        "NodePort" => "it is a NodePort Service but no node has an address".to_string(),
        other => format!(
            "it is of type {other}, which is not reachable from outside the cluster; make it a LoadBalancer or NodePort (dev/istio-values.yaml), or set ingress.address in meshloop.yaml"
        ),
    };
    AddressError::NoAddress { svc: svc_name, why }
}

async fn connects(host: &str, port: u16) -> bool {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    matches!(
        tokio::time::timeout(CONNECT_TRY, tokio::net::TcpStream::connect(target)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_addresses() {
        assert_eq!(
            parse_config_address("127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            parse_config_address("http://localhost:30080/").unwrap(),
            ("localhost".into(), 30080)
        );
        assert_eq!(
            parse_config_address("[::1]:80").unwrap(),
            ("::1".into(), 80)
        );
        assert!(parse_config_address("localhost").is_err());
        assert!(parse_config_address("localhost:http").is_err());
        assert!(parse_config_address(":80").is_err());
    }

    #[test]
    fn authority_brackets_v6() {
        let a = Address {
            host: "::1".into(),
            port: 80,
            via: String::new(),
        };
        assert_eq!(a.authority(), "[::1]:80");
    }
}
