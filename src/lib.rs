//! meshloop: the dev-loop companion that owns Istio routing objects on a local cluster.
//!
//! # Layout
//! - [`analyze`]: findings about the routing (offline and with live facts), `explain`.
//! - [`config`]: `meshloop.yaml`, flags and defaults.
//! - [`manifest`]: source files into located objects (file, line, column of every field),
//!   read safely (symlink loops, FIFOs, size and parser limits), checked against the CRDs'
//!   schemas offline, typed views of the Istio kinds, `helm template` for chart sources.
//! - [`sources`]: the desired state kept per file across reloads (last good state on errors).
//! - [`cluster`]: the kube client, cached discovery, ownership labels.
//! - [`refusal`]: an API server's refusal located in the source file, field by field.
//! - [`sync`]: one sync: server-side apply of what changed, prune of what left the files.
//! - [`watch`]: file events from notify, batched until every file is finished (at the latest
//!   when the window closes).
//! - [`engine`]: the loop that owns the desired state: batch, reload, sync, drift, rollouts.
//! - [`events`]: the live events (`GET /events`) the engine and the verifier publish.
//! - [`page`]: the status page (`GET /`): HTML with the routing graph as SVG.
//! - [`server`]: the HTTP API over the engine's status snapshot and command channel.
//! - [`daemon`]: `meshloop up`, wiring watcher, engine and server with shutdown.
//! - [`doctor`]: `meshloop doctor`, the environment checks.
//! - [`cli`]: the `meshloop` commands, their output and exit codes.
//! - [`telemetry`]: tracing setup.

pub mod analyze;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod engine;
pub mod events;
pub mod manifest;
pub mod page;
pub mod refusal;
pub mod server;
pub mod sources;
pub mod sync;
pub mod telemetry;
pub mod verify;
pub mod watch;
