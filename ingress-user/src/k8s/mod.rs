//! Sources of Kubernetes objects. File mode lives here; the API-server watches
//! join it in a later stage. Both fill the same `model::Objects`.

pub mod files;
mod legacy;
mod parse;

pub use files::{LoadResult, ManifestDir};
pub use parse::{ParseOutcome, parse_documents};
