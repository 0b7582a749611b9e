//! xingress: a Kubernetes Ingress controller for edge nodes, accelerated by XDP.
//!
//! Data flows one way: a source (manifest files, later the Kubernetes API)
//! fills an object store; `model::translate` turns it into one immutable
//! routing snapshot; the proxy, the admin server and the XDP data plane all
//! read that snapshot.

pub mod admin;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod dataplane;
pub mod docs;
#[doc(hidden)]
pub mod fuzzing;
pub mod k8s;
pub mod l4;
#[cfg(test)]
mod layering;
pub mod limit;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod pem;
pub mod proxy;
pub mod shutdown;
pub mod snapshot;
pub mod tls;
