//! File mode: the objects are the manifests in one directory, re-read when
//! any of them changes.

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::model::{Objects, Warning};

use super::parse_documents;

/// A directory of `.yaml`, `.yml` and `.json` manifests (not recursive,
/// hidden files skipped — like `kubectl apply -f DIR`).
#[derive(Debug, Clone)]
pub struct ManifestDir {
    dir: PathBuf,
}

/// Everything one read of the directory produced.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub objects: Objects,
    pub warnings: Vec<Warning>,
    pub files: usize,
    pub ignored_documents: usize,
}

/// Identity of the directory's content: names, sizes and modification times.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn manifest_files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let manifest = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            );
            if manifest && !name.starts_with('.') && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Cheap change detection: compare before re-reading everything.
    pub fn fingerprint(&self) -> std::io::Result<Fingerprint> {
        let mut fp = Vec::new();
        for path in self.manifest_files()? {
            let meta = fs::metadata(&path)?;
            fp.push((path, meta.len(), meta.modified().ok()));
        }
        Ok(fp)
    }

    /// Reads and parses every manifest. An unreadable or invalid file is a
    /// warning; the others load.
    pub fn load(&self) -> std::io::Result<LoadResult> {
        let mut result = LoadResult::default();
        for path in self.manifest_files()? {
            let origin = path.display().to_string();
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    result
                        .warnings
                        .push(Warning::error(origin, format!("cannot read: {e}")));
                    continue;
                }
            };
            let parsed = parse_documents(&text, &origin, &mut result.objects);
            result.files += 1;
            result.ignored_documents += parsed.ignored;
            result.warnings.extend(parsed.warnings);
        }
        Ok(result)
    }
}
