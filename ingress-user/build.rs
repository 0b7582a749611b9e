//! Embeds the XDP object built by `cargo xtask build-ebpf`, when there is one.
//!
//! Without it the agent still builds; it then reports, when XDP is requested,
//! that the program was not built (see `dataplane::object`).
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=XINGRESS_EBPF_OBJECT");
    println!("cargo:rustc-check-cfg=cfg(xingress_xdp_embedded)");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = env::var_os("XINGRESS_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/bpfel-unknown-none/release/ingress-ebpf"));
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("ingress-ebpf.o");
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
