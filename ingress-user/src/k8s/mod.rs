//! Sources of Kubernetes objects: manifest files, or the API server through
//! kube-rs reflectors. Both fill the same `model::Objects`.

pub mod cluster;
pub mod dirwatch;
pub mod files;
pub mod leader;
mod legacy;
mod parse;
pub mod status;

pub use files::{LoadResult, ManifestDir};
pub use parse::{ParseOutcome, parse_documents};
