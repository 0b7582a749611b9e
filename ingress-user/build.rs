//! Embeds the XDP object built by `cargo xtask build-ebpf`, when there is one.
//!
//! Without it the agent still builds; it then reports, when XDP is requested,
//! that the program was not built (see `dataplane::object`). An object older
//! than the XDP program's sources (`ingress-ebpf/`, `ingress-common/src`) is
//! never embedded: the build fails and says to rebuild it, so an agent can
//! not carry a program that disagrees with its own map layouts.
use std::{
    env, fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().ok()?.modified().ok().map(|t| (t, path))
        };
        if let Some((t, p)) = found
            && best.as_ref().is_none_or(|(b, _)| t > *b)
        {
            best = Some((t, p));
        }
    }
    best
}

fn main() {
    println!("cargo:rerun-if-env-changed=XINGRESS_EBPF_OBJECT");
    println!("cargo:rustc-check-cfg=cfg(xingress_xdp_embedded)");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = env::var_os("XINGRESS_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/bpfel-unknown-none/release/ingress-ebpf"));
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("ingress-ebpf.o");
    let sources = [
        manifest.join("../ingress-ebpf/src"),
        manifest.join("../ingress-ebpf/Cargo.toml"),
        manifest.join("../ingress-common/src"),
    ];
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    if let Ok(built) = fs::metadata(&object).and_then(|m| m.modified()) {
        let newest_source = sources
            .iter()
            .filter_map(|s| {
                if s.is_dir() {
                    newest(s)
                } else {
                    let t = fs::metadata(s).ok()?.modified().ok()?;
                    Some((t, s.clone()))
                }
            })
            .max_by_key(|(t, _)| *t);
        if let Some((changed, path)) = newest_source
            && changed > built
            && env::var_os("XINGRESS_EBPF_OBJECT").is_none()
        {
            panic!(
                "the XDP object {} is older than {}: run `cargo xtask build-ebpf` (or `cargo xtask build`) \
                 so the agent does not embed a stale program",
                object.display(),
                path.display()
            );
        }
    }
    match fs::read(&object) {
        Ok(bytes) if !bytes.is_empty() => {
            fs::write(&out, bytes).expect("write OUT_DIR/ingress-ebpf.o");
            println!("cargo:rustc-cfg=xingress_xdp_embedded");
        }
        _ => {
            fs::write(&out, b"").expect("write OUT_DIR/ingress-ebpf.o");
            println!(
                "cargo:warning=XDP object not found at {}; the agent is built without XDP (run `cargo xtask build-ebpf`)",
                object.display()
            );
        }
    }
}
