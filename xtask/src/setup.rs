//! `cargo xtask setup` and the builds: installs only what is missing and
//! says what it did, or why it cannot.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::util::{self, Cmd, step};

/// LLVM major version of the nightly's rustc; bpf-linker must match it.
const LLVM: &str = "22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages for building bpf-linker against LLVM.
const LLVM_PACKAGES: [&str; 4] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// Tools the tests and the demo run: `ip` (iproute2) for namespaces and veth.
/// curl for the demo's HTTPS requests (it verifies the served certificate chain).
/// ethtool for the L4 steering tests' veths (checksum offload, GRO).
const TOOL_PACKAGES: [(&str, &str); 4] = [
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("curl", "curl"),
    ("slowhttptest", "slowhttptest"),
];

fn llvm_prefix() -> PathBuf {
    PathBuf::from(format!("/usr/lib/llvm-{LLVM}"))
}

fn have(program: &str) -> bool {
    Cmd::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .succeeds()
}

fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    if !util::is_root() {
        bail!(
            "{why}: missing Debian packages {packages:?}; run `cargo xtask setup` as root, or `apt-get install {}`",
            packages.join(" ")
        );
    }
    println!("installing {} ({why})", packages.join(" "));
    Cmd::new("apt-get").args(["update", "-q"]).run()?;
    Cmd::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
}

pub fn run() -> Result<()> {
    step("setup: eBPF toolchain and test tools");
    let mut did = Vec::new();

    if !Cmd::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .succeeds()
    {
        println!("no nightly toolchain: installing it (the XDP crate needs nightly)");
        Cmd::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .run()?;
        did.push("installed the nightly toolchain");
    }
    let components = Cmd::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        Cmd::new("rustup")
            .args(["component", "add", "rust-src", "--toolchain", "nightly"])
            .run()?;
        did.push("added rust-src to nightly");
    }
    for component in ["rustfmt", "clippy"] {
        if !components.lines().any(|l| l.starts_with(component)) {
            Cmd::new("rustup")
                .args(["component", "add", component, "--toolchain", "nightly"])
                .run()?;
            did.push("added rustfmt/clippy to nightly");
        }
    }

    if !llvm_prefix().join("bin/llvm-config").exists() {
        apt_install(&LLVM_PACKAGES, "bpf-linker links against LLVM 22")?;
        did.push("installed LLVM 22 development packages");
    }
    let linker_ok = Cmd::new("bpf-linker")
        .args(["--version"])
        .output()
        .is_ok_and(|v| v.contains(BPF_LINKER_VERSION));
    if !linker_ok {
        println!("building bpf-linker {BPF_LINKER_VERSION} against LLVM {LLVM} (a few minutes)");
        util::cargo(&[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            &format!("llvm-{LLVM}"),
        ])
        .env("LLVM_PREFIX", llvm_prefix())
        .run()?;
        did.push("installed bpf-linker");
    }

    let missing: Vec<&str> = TOOL_PACKAGES
        .iter()
        .filter(|(p, _)| !have(p))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        apt_install(
            &missing,
            "the XDP tests and the demo use network namespaces",
        )?;
        did.push("installed test tools");
    }

    if did.is_empty() {
        println!(
            "setup: everything was already in place (nightly + rust-src, LLVM {LLVM}, bpf-linker {BPF_LINKER_VERSION}, iproute2)"
        );
    } else {
        println!("setup: {}", did.join("; "));
    }
    Ok(())
}

/// Path of the built XDP object.
pub fn ebpf_object() -> PathBuf {
    util::target_dir().join("bpfel-unknown-none/release/ingress-ebpf")
}

/// Builds the XDP program; returns the object's path.
pub fn build_ebpf() -> Result<PathBuf> {
    step("build the XDP program (nightly, bpfel-unknown-none)");
    if !Cmd::new("bpf-linker").args(["--version"]).succeeds() {
        bail!("bpf-linker is not installed: run `cargo xtask setup` (as root on a fresh machine)");
    }
    util::nightly_ebpf(&["build", "--release"]).run()?;
    let object = ebpf_object();
    if !Path::new(&object).exists() {
        bail!(
            "the eBPF build succeeded but {} is missing",
            object.display()
        );
    }
    Ok(object)
}

/// build-ebpf, then the agent and the test binaries, embedding the object.
pub fn build_all() -> Result<PathBuf> {
    let object = build_ebpf()?;
    step("build the agent and the demo backends");
    util::cargo(&["build", "--workspace", "--bins"])
        .env("XINGRESS_EBPF_OBJECT", &object)
        .run()?;
    Ok(object)
}
