//! `cargo xtask fuzz [SECONDS] [TARGET...]`: the cargo-fuzz targets in
//! fuzz/, each for a bounded time, from the committed seeds plus the corpus
//! kept in target/fuzz-corpus/. A crash fails the run and names the input.

use std::{fmt::Write as _, fs};

use anyhow::{Context, Result, bail};

use crate::{
    setup,
    util::{self, Cmd, step},
};

pub const TARGETS: [&str; 5] = [
    "http1_request",
    "manifests",
    "host_and_path",
    "xdp_first_segment",
    "snippet",
];
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Fuzzes `targets` (all when empty) for `seconds` each. `optimized`: a
/// release build (7× the executions per second, 8 minutes to build on two
/// cores, for long runs by hand); else a dev build (2–3 minutes, for CI).
pub fn run(seconds: u64, targets: &[String], optimized: bool) -> Result<()> {
    let targets: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!("unknown fuzz target {t:?}; targets: {}", TARGETS.join(", "));
            }
        }
        targets.iter().map(String::as_str).collect()
    };
    if targets.contains(&"xdp_first_segment") && !util::is_root() {
        bail!("the xdp_first_segment target runs the XDP program (BPF_PROG_TEST_RUN): run as root");
    }
    let have = Cmd::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|v| v.contains(CARGO_FUZZ_VERSION));
    if !have {
        step(&format!("installing cargo-fuzz {CARGO_FUZZ_VERSION}"));
        util::cargo(&[
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ])
        .run()?;
    }
    let object = setup::build_ebpf()?;
    let target_dir = util::target_dir().join(if optimized { "fuzz" } else { "fuzz-dev" });
    let profile: &[&str] = if optimized { &[] } else { &["--dev"] };
    let fuzz_dir = util::root().join("fuzz");
    // No sanitizer: the fuzzed code is safe Rust (and the kernel's verifier
    // guards the XDP side), so a panic is the finding, and the build stays
    // a few minutes on two cores.
    let fuzz = |args: &[&str]| {
        let mut cmd = Cmd::new("rustup")
            .args(["run", "nightly", "cargo", "fuzz"])
            .args(args)
            .args(profile)
            .args(["--sanitizer", "none", "--target-dir"])
            .args([&target_dir])
            .env("XINGRESS_EBPF_OBJECT", &object)
            .dir(&fuzz_dir);
        for var in [
            "RUSTUP_TOOLCHAIN",
            "RUSTC",
            "CARGO",
            "RUSTFLAGS",
            "CARGO_TARGET_DIR",
        ] {
            cmd = cmd.env_remove(var);
        }
        cmd
    };
    step("build the fuzz targets (nightly, libFuzzer)");
    fuzz(&["build"]).run()?;
    let mut report = String::new();
    for t in &targets {
        step(&format!("fuzz {t} for {seconds} s"));
        let corpus = util::target_dir().join("fuzz-corpus").join(t);
        fs::create_dir_all(&corpus)?;
        let artifacts = util::target_dir().join("fuzz-artifacts").join(t);
        fs::create_dir_all(&artifacts)?;
        let seeds = fuzz_dir.join("seeds").join(t);
        let out = fuzz(&["run", t])
            .args([&corpus, &seeds])
            .args([
                "--".to_string(),
                format!("-max_total_time={seconds}"),
                format!("-artifact_prefix={}/", artifacts.display()),
                "-print_final_stats=1".to_string(),
            ])
            .output_with_stderr()
            .with_context(|| {
                format!(
                    "fuzz target {t} failed: the input is in {}; reproduce with \
                     `cd fuzz && cargo +nightly fuzz run {t} --sanitizer none <file>`",
                    artifacts.display()
                )
            })?;
        let stat = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .map_or("?".to_string(), |v| v.trim().to_string())
        };
        let cov = out
            .lines()
            .rev()
            .find_map(|l| {
                l.split_once("cov: ")
                    .map(|(_, r)| r.split(' ').next().unwrap_or("?").to_string())
            })
            .unwrap_or_else(|| "?".into());
        let line = format!(
            "{t}: {} runs in {seconds} s ({} exec/s), coverage {cov}, corpus {} inputs, no crash",
            stat("number_of_executed_units"),
            stat("average_exec_per_sec"),
            fs::read_dir(&corpus)?.count(),
        );
        println!("{line}");
        writeln!(report, "{line}")?;
    }
    let path = util::target_dir().join("fuzz-results.txt");
    fs::write(&path, &report)?;
    println!("\nfuzz results in {}", path.display());
    Ok(())
}
