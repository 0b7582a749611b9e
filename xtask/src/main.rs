//! `cargo xtask setup | build-ebpf | build | demo | test | docs | bench`.

mod bench;
mod bench_l4;
mod demo;
mod fuzz;
mod setup;
mod util;

// Shared with the tests crate (std, libc, socket2); xtask uses a subset.
#[allow(dead_code)]
#[path = "../../tests/src/http1.rs"]
mod http1;
#[allow(dead_code)]
#[path = "../../tests/src/netns.rs"]
mod netns;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

  setup        install what the eBPF build needs (rust-src for nightly, LLVM 22, bpf-linker)
               and the test tools; idempotent, says what it did
  build-ebpf   build the XDP program (target/bpfel-unknown-none/release/ingress-ebpf)
  build        build-ebpf, then the agent (which embeds it) and the test binaries
  demo         the main job: the cafe example through the agent with XDP, in network
               namespaces (as root; without root or with --no-xdp: on loopback,
               without XDP)
  test         everything CI runs: fmt, clippy (the eBPF crate with nightly), all tests
               including the XDP ones (needs root; they fail rather than skip)
               --no-lint skips fmt and clippy
  fuzz [SECONDS] [TARGET...]
               the cargo-fuzz targets (http1_request, manifests, host_and_path,
               xdp_first_segment, snippet), SECONDS each (default 300, optimized build; `test`
               runs 20 each from a quicker dev build),
               results in target/fuzz-results.txt; needs root for the XDP target
  docs         write docs/reference/ (CLI, annotations, ConfigMap keys, metrics) from the
               code; `test` fails when the checked-in pages differ
  bench [routing|scale|xdp|proxy|idle|l4]
               benchmarks (all but l4 by default), results in target/bench-results/:
               routing: the model at 10,000 Ingresses / 50,000 paths (translate time
               and memory, lookup ns and allocations);
               xdp: ns per packet by path (BPF_PROG_TEST_RUN with repeat);
               proxy: xingress vs nginx-light for the cafe routes, each pinned to one
               core with one worker (HTTP/1.1 and HTTPS keep-alive, new TLS
               connections): req/s, p50/p99, CPU µs per request, ratios;
               idle: RSS per idle keep-alive client (10,000, HTTP/1.1 and TLS), both proxies;
               l4: a UDP service through a netns LAN: steered in XDP, the relay and
               nginx stream, the proxy's own CPU per datagram (root)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "setup" => setup::run(),
        "build-ebpf" => setup::build_ebpf().map(drop),
        "build" => setup::build_all().map(drop),
        "demo" => demo::run(rest.iter().any(|a| a == "--no-xdp")),
        "test" => test(rest.iter().any(|a| a == "--no-lint")),
        "docs" => docs(),
        "bench" => bench::run(rest.first().map(String::as_str)),
        "fuzz" => {
            let (seconds, targets) = match rest.first().map(|s| s.parse::<u64>()) {
                Some(Ok(s)) => (s, &rest[1..]),
                _ => (DEFAULT_FUZZ_SECONDS, rest),
            };
            fuzz::run(seconds, targets, true)
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// Regenerates docs/reference/ through the test that otherwise checks it.
fn docs() -> Result<()> {
    util::step("docs/reference/ from the code");
    util::cargo(&[
        "test",
        "-p",
        "ingress-user",
        "--lib",
        "docs::tests::generated_reference_pages_are_current",
        "--",
        "--exact",
    ])
    .env("XINGRESS_UPDATE_DOCS", "1")
    .run()?;
    println!("written: docs/reference/{{cli,annotations,configmap,metrics}}.md");
    Ok(())
}

/// Per target, by hand; `test` runs each for `CI_FUZZ_SECONDS`.
const DEFAULT_FUZZ_SECONDS: u64 = 300;
const CI_FUZZ_SECONDS: u64 = 20;

/// The README's test command: fails (never skips) when the XDP tests cannot run.
fn test(no_lint: bool) -> Result<()> {
    if !util::is_root() {
        bail!(
            "`cargo xtask test` must run as root: the XDP tests load and attach BPF programs and \
             create network namespaces, and they fail rather than skip"
        );
    }
    setup::run()?;
    let object = setup::build_ebpf()?;
    if !no_lint {
        util::step("cargo fmt --check");
        util::cargo(&["fmt", "--all", "--", "--check"]).run()?;
        util::nightly_ebpf(&["fmt", "--", "--check"]).run()?;
        util::step("clippy -D warnings (workspace, then the eBPF crate with nightly)");
        util::cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .env("XINGRESS_EBPF_OBJECT", &object)
        .run()?;
        util::nightly_ebpf(&["clippy", "--release", "--", "-D", "warnings"]).run()?;
    }
    util::step("build the agent (embedding the XDP object) and the test binaries");
    util::cargo(&["build", "--workspace", "--bins"])
        .env("XINGRESS_EBPF_OBJECT", &object)
        .run()?;
    util::step("cargo test --workspace");
    let (passed, failed) = util::cargo(&[
        "test",
        "--workspace",
        "--lib",
        "--bins",
        "--tests",
        "--no-fail-fast",
    ])
    .env("XINGRESS_EBPF_OBJECT", &object)
    .run_counting_tests()?;
    println!("\ntests: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        bail!("{failed} tests failed ({passed} passed)");
    }
    fuzz::run(CI_FUZZ_SECONDS, &[], false)
}
