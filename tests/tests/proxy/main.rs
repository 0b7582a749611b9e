//! The L7 path end to end: `xingress run --manifests` on loopback, in-process
//! echo backends on ephemeral ports standing in for pods. One test binary,
//! one file per concern; the shared helpers are in `common`.

mod common;

mod access;
mod agent;
mod cors;
mod forwarding;
mod limits;
mod load_balancing;
mod redirects;
mod routing;
