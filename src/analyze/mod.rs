//! Analysis of Istio routing: findings with file:line locations, and route simulation.
//!
//! - [`model`]: the routing model (owned Istio objects in typed views, workloads from the
//!   sources and from live facts, and what is known about each namespace).
//! - [`findings`]: the finding type and the catalogue of stable codes (ML0001...).
//! - [`checks`]: the analyzers; [`checks_gatewayapi`] those of the Gateway API objects.
//! - [`routes`]: the route table Istio builds for a gateway port (virtual hosts, ordered routes).
//! - [`explain`]: where one request through the ingress would go, hop by hop.
//! - [`live`]: reading Services, Pods, EndpointSlices, Deployments from the cluster.
//! - [`command`]: `meshloop check` and `meshloop explain` (inputs, output, exit codes), and
//!   [`analyze_for_sync`] for the daemon.
//!
//! Nothing here applies or changes anything on the cluster.

pub mod checks;
pub mod checks_gatewayapi;
pub mod command;
pub mod explain;
pub mod findings;
pub mod live;
pub mod model;
pub mod routes;

pub use checks::analyze;
pub use command::analyze_for_sync;
pub use explain::{Explanation, Request, explain};
pub use findings::{Finding, RULES, Severity};
pub use model::{Facts, Model};
