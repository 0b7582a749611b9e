//! File mode: the objects are the manifests in one directory, re-read when
//! any of them changes. Each file's parse is kept and reused while the file
//! is unchanged (same inode, size, modification and change times) and not
//! reported changed by inotify, so a change to one file re-parses that file
//! only.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::OsString,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use crate::model::{Objects, Warning};

use crate::model::manifest::{defined_twice, parse_documents};

/// A directory of `.yaml`, `.yml` and `.json` manifests (not recursive,
/// hidden files skipped — like `kubectl apply -f DIR`).
#[derive(Debug, Clone)]
pub struct ManifestDir {
    dir: PathBuf,
    /// Parsed files by path (shared by clones).
    cache: Arc<Mutex<HashMap<PathBuf, CachedFile>>>,
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug)]
struct CachedFile {
    stamp: Stamp,
    parsed: Arc<ParsedFile>,
}

/// One file's objects and problems.
#[derive(Debug, Default)]
struct ParsedFile {
    objects: Objects,
    warnings: Vec<Warning>,
    ignored: usize,
}

/// Everything one read of the directory produced.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub objects: Objects,
    pub warnings: Vec<Warning>,
    pub files: usize,
    /// Files read and parsed by this load (the others were unchanged).
    pub parsed: usize,
    pub ignored_documents: usize,
}

/// Identity of the directory's content: names, sizes and modification times.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cache: Arc::default(),
        }
    }

    /// Files inotify reported changed: read again even if their stamp is
    /// the same (two writes within one timestamp tick).
    pub fn forget<'a>(&self, names: impl IntoIterator<Item = &'a OsString>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            cache.remove(&self.dir.join(name));
        }
    }

    /// Reads every file again at the next load.
    pub fn forget_all(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
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

    /// Reads and parses every manifest that changed since the last load,
    /// and merges all of them in file-name order (a later definition of an
    /// object wins, with a warning). An unreadable or invalid file is a
    /// warning; the others load.
    pub fn load(&self) -> std::io::Result<LoadResult> {
        let mut result = LoadResult::default();
        let files = self.manifest_files()?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut fresh = HashMap::with_capacity(files.len());
        let mut parsed_files = Vec::with_capacity(files.len());
        for path in files {
            let origin = path.display().to_string();
            let stamp = match fs::metadata(&path) {
                Ok(meta) => Stamp::of(&meta),
                Err(e) => {
                    result
                        .warnings
                        .push(Warning::error(origin, format!("cannot read: {e}")));
                    continue;
                }
            };
            let parsed = match cache.remove(&path) {
                Some(c) if c.stamp == stamp => c.parsed,
                _ => match fs::read_to_string(&path) {
                    Ok(text) => {
                        result.parsed += 1;
                        let mut file = ParsedFile::default();
                        let outcome = parse_documents(&text, &origin, &mut file.objects);
                        file.warnings = outcome.warnings;
                        file.ignored = outcome.ignored;
                        Arc::new(file)
                    }
                    Err(e) => {
                        result
                            .warnings
                            .push(Warning::error(origin, format!("cannot read: {e}")));
                        continue;
                    }
                },
            };
            fresh.insert(
                path.clone(),
                CachedFile {
                    stamp,
                    parsed: parsed.clone(),
                },
            );
            parsed_files.push((origin, parsed));
        }
        // Files that are gone are forgotten.
        *cache = fresh;
        drop(cache);
        for (origin, file) in &parsed_files {
            result.files += 1;
            result.ignored_documents += file.ignored;
            result.warnings.extend(file.warnings.iter().cloned());
            merge(&mut result, origin, &file.objects);
        }
        Ok(result)
    }
}

/// Adds one file's objects; an object already read from an earlier file is
/// replaced, with a warning.
fn merge(into: &mut LoadResult, origin: &str, objects: &Objects) {
    fn kind<K: Ord + Clone + std::fmt::Display, T>(
        into: &mut BTreeMap<K, Arc<T>>,
        from: &BTreeMap<K, Arc<T>>,
        kind: &str,
        origin: &str,
        warnings: &mut Vec<Warning>,
    ) {
        for (id, obj) in from {
            if into.insert(id.clone(), obj.clone()).is_some() {
                warnings.push(defined_twice(format!("{kind} {id} in {origin}"), kind, id));
            }
        }
    }
    let (o, w) = (&mut into.objects, &mut into.warnings);
    kind(&mut o.ingresses, &objects.ingresses, "Ingress", origin, w);
    kind(&mut o.services, &objects.services, "Service", origin, w);
    kind(
        &mut o.endpoint_slices,
        &objects.endpoint_slices,
        "EndpointSlice",
        origin,
        w,
    );
    kind(&mut o.endpoints, &objects.endpoints, "Endpoints", origin, w);
    kind(&mut o.secrets, &objects.secrets, "Secret", origin, w);
    kind(
        &mut o.config_maps,
        &objects.config_maps,
        "ConfigMap",
        origin,
        w,
    );
    kind(
        &mut o.ingress_classes,
        &objects.ingress_classes,
        "IngressClass",
        origin,
        w,
    );
    kind(
        &mut o.namespaces,
        &objects.namespaces,
        "Namespace",
        origin,
        w,
    );
    kind(
        &mut o.gateway_classes,
        &objects.gateway_classes,
        "GatewayClass",
        origin,
        w,
    );
    kind(&mut o.gateways, &objects.gateways, "Gateway", origin, w);
    kind(
        &mut o.grpc_routes,
        &objects.grpc_routes,
        "GRPCRoute",
        origin,
        w,
    );
    kind(
        &mut o.tls_routes,
        &objects.tls_routes,
        "TLSRoute",
        origin,
        w,
    );
    kind(
        &mut o.http_routes,
        &objects.http_routes,
        "HTTPRoute",
        origin,
        w,
    );
    kind(
        &mut o.reference_grants,
        &objects.reference_grants,
        "ReferenceGrant",
        origin,
        w,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NamespacedName;

    fn service(name: &str, port: u16) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: {port}}}]}}\n---\n"
        )
    }

    fn port(r: &LoadResult, name: &str) -> Option<i32> {
        let svc = r
            .objects
            .services
            .get(&NamespacedName::new("default", name))?;
        Some(svc.spec.as_ref()?.ports.as_ref()?[0].port)
    }

    #[test]
    fn only_changed_files_are_parsed_again() {
        let dir = std::env::temp_dir().join(format!("xingress-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.yaml"), service("a", 80)).unwrap();
        fs::write(dir.join("b.yaml"), service("b", 80)).unwrap();
        let d = ManifestDir::new(&dir);
        let r = d.load().unwrap();
        assert_eq!((r.files, r.parsed), (2, 2));
        // Nothing changed: nothing parsed, the same objects.
        let r = d.load().unwrap();
        assert_eq!((r.files, r.parsed), (2, 0));
        assert_eq!(port(&r, "a"), Some(80));
        // One file replaced (new inode): that one is read.
        fs::write(dir.join(".b.tmp"), service("b", 81)).unwrap();
        fs::rename(dir.join(".b.tmp"), dir.join("b.yaml")).unwrap();
        let r = d.load().unwrap();
        assert_eq!((r.files, r.parsed), (2, 1));
        assert_eq!((port(&r, "a"), port(&r, "b")), (Some(80), Some(81)));
        // Reported by inotify: read again even if it looks the same.
        d.forget([&OsString::from("a.yaml")]);
        assert_eq!(d.load().unwrap().parsed, 1);
        d.forget_all();
        assert_eq!(d.load().unwrap().parsed, 2);
        // A removed file's objects are gone.
        fs::remove_file(dir.join("a.yaml")).unwrap();
        let r = d.load().unwrap();
        assert_eq!((r.files, port(&r, "a"), port(&r, "b")), (1, None, Some(81)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_object_in_two_files_is_taken_from_the_last_with_a_warning() {
        let dir = std::env::temp_dir().join(format!("xingress-files-dup-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("1.yaml"), service("x", 80)).unwrap();
        fs::write(dir.join("2.yaml"), service("x", 90) + &service("y", 80)).unwrap();
        let d = ManifestDir::new(&dir);
        for _ in 0..2 {
            // The same with everything parsed and everything cached.
            let r = d.load().unwrap();
            assert_eq!(port(&r, "x"), Some(90));
            assert_eq!(port(&r, "y"), Some(80));
            let dup: Vec<_> = r
                .warnings
                .iter()
                .filter(|w| w.message.contains("defined more than once"))
                .collect();
            assert_eq!(dup.len(), 1, "{:?}", r.warnings);
            assert!(dup[0].object.contains("2.yaml"), "{dup:?}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
