//! Sources of Kubernetes objects: manifest files, or the API server through
//! kube-rs reflectors. Both fill the same `model::Objects`.

pub mod cluster;
pub mod dirwatch;
pub mod files;
pub mod leader;
pub mod status;

pub use crate::model::manifest::{ParseOutcome, parse_documents};
pub use files::{LoadResult, ManifestDir};
