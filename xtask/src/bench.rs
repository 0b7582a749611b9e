//! `cargo xtask bench`: the routing model at scale, and the L7 proxy side by
//! side with nginx (Debian's nginx-light) in the same run.
//!
//! Proxy setup, as PERF-NOTES.md measured the peers: the proxy under test is
//! pinned to core 0 with one worker; the load generator (wrk) and a trivial
//! backend (nginx `return 200`, "pods" on four ports) share core 1. Both
//! proxies serve the cafe routes (Host + path) with the same ECDSA P-256
//! certificate. CPU time comes from /proc/PID/stat over each run.

use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::util::{self, Cmd, step};

const BACKEND_PORTS: [u16; 4] = [19001, 19002, 19003, 19004];
const HTTP_PORT: u16 = 18080;
const HTTPS_PORT: u16 = 18443;
const ADMIN_PORT: u16 = 18254;
const RUN: Duration = Duration::from_secs(5);
const WARMUP: Duration = Duration::from_secs(2);
const KEEPALIVE_CONNECTIONS: u32 = 64;
const HANDSHAKE_CONNECTIONS: u32 = 16;

pub fn run(what: Option<&str>) -> Result<()> {
    match what {
        None => {
            routing()?;
            scale()?;
            xdp()?;
            proxy()?;
            idle()
        }
        Some("routing") => routing(),
        Some("scale") => scale(),
        Some("xdp") => xdp(),
        Some("proxy") => proxy(),
        Some("proxy-baseline") => proxy_baseline(),
        Some("idle") => idle(),
        Some("l4") => crate::bench_l4::run(),
        Some(other) => bail!(
            "unknown benchmark {other:?}: routing, scale, xdp, proxy, proxy-baseline, idle or l4"
        ),
    }
}

/// The agent end to end on 10,000 Ingresses and 2,000 certificates: first
/// snapshot, reload phases, memory, change -> served.
fn scale() -> Result<()> {
    step("scale benchmark: the release agent on 10,000 Ingresses / 2,000 TLS Secrets");
    util::cargo(&["build", "--release", "-p", "ingress-user"]).run()?;
    util::cargo(&["bench", "-p", "xingress-tests", "--bench", "scale"]).run()
}

fn xdp() -> Result<()> {
    step("XDP program benchmark (BPF_PROG_TEST_RUN, release build)");
    if !util::is_root() {
        bail!("the XDP benchmark loads the program: run it as root");
    }
    let object = crate::setup::build_ebpf()?;
    util::cargo(&["bench", "-p", "xingress-tests", "--bench", "xdp"])
        .env("XINGRESS_EBPF_OBJECT", object)
        .run()
}

fn routing() -> Result<()> {
    step("routing model benchmark (release build)");
    util::cargo(&["bench", "-p", "xingress-tests", "--bench", "routing"]).run()
}

/// How a scenario loads the proxy.
#[derive(Clone, Copy)]
enum Load {
    /// wrk over HTTP/1.1; `close`: a new connection (and TLS handshake) per request.
    Wrk { connections: u32, close: bool },
    /// h2load over TLS with ALPN h2: `connections` × `streams` concurrent requests.
    H2load { connections: u32, streams: u32 },
}

/// One load scenario.
struct Scenario {
    name: &'static str,
    https: bool,
    path: &'static str,
    load: Load,
    /// An extra request header (the basic-auth scenario's credentials).
    header: Option<&'static str>,
}

/// The user of the basic-auth scenario: `staff:staff` in an htpasswd file
/// in Apache MD5 (`$apr1$`, what `htpasswd` writes by default), which both
/// proxies read.
const HTPASSWD: &str = "staff:$apr1$Zx9Q2w1e$x8p4GE1vtFtQUhpJgkrhh1\n";
/// `Authorization: Basic base64("staff:staff")`.
const STAFF_CREDENTIALS: &str = "Authorization: Basic c3RhZmY6c3RhZmY=";

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "HTTP/1.1 keep-alive",
        https: false,
        path: "/tea",
        load: Load::Wrk {
            connections: KEEPALIVE_CONNECTIONS,
            close: false,
        },
        header: None,
    },
    Scenario {
        name: "HTTPS keep-alive",
        https: true,
        path: "/tea",
        load: Load::Wrk {
            connections: KEEPALIVE_CONNECTIONS,
            close: false,
        },
        header: None,
    },
    Scenario {
        name: "HTTP/2 (TLS)",
        https: true,
        path: "/tea",
        load: Load::H2load {
            connections: 16,
            streams: 8,
        },
        header: None,
    },
    Scenario {
        name: "new TLS connections",
        https: true,
        path: "/coffee",
        load: Load::Wrk {
            connections: HANDSHAKE_CONNECTIONS,
            close: true,
        },
        header: None,
    },
    Scenario {
        name: "HTTP/1.1 basic auth",
        https: false,
        path: "/staff",
        load: Load::Wrk {
            connections: KEEPALIVE_CONNECTIONS,
            close: false,
        },
        header: Some(STAFF_CREDENTIALS),
    },
    Scenario {
        name: "HTTP/1.1 external auth",
        https: false,
        path: "/ext",
        load: Load::Wrk {
            connections: KEEPALIVE_CONNECTIONS,
            close: false,
        },
        header: None,
    },
];

/// Rounds per scenario; the proxies take turns, so drift on this shared VM
/// hits both alike.
const ROUNDS: usize = 3;

#[derive(Debug, Clone, Default)]
struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    errors: u64,
}

fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = [
        ("nginx", "nginx-light"),
        ("wrk", "wrk"),
        ("h2load", "nghttp2-client"),
        ("taskset", "util-linux"),
    ]
    .iter()
    .filter(|(bin, _)| {
        !Cmd::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .succeeds()
    })
    .map(|(_, pkg)| *pkg)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "the proxy benchmark needs {missing:?}: install them (apt-get install {})",
            missing.join(" ")
        );
    }
    Cmd::new("apt-get").args(["update", "-q"]).run()?;
    Cmd::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    // Debian starts a system nginx on install; this benchmark runs its own.
    let _ = Cmd::new("service").args(["nginx", "stop"]).succeeds();
    Ok(())
}

/// A proxy under test, listening on its own ports.
struct UnderTest {
    name: &'static str,
    http: u16,
    https: u16,
    proc: Proc,
}

/// The backend, and nginx and xingress on the cafe routes, both on core 0.
struct Pair {
    proxies: [UnderTest; 2],
    work: PathBuf,
    manifests: PathBuf,
    _backend: Proc,
    _cleanup: RemoveDir,
}

fn start_pair(what: &str) -> Result<Pair> {
    step(what);
    ensure_tools()?;
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        bail!("the proxy benchmarks need two cores (proxy on one, load and backends on the other)");
    }
    util::cargo(&["build", "--release", "-p", "ingress-user"]).run()?;
    // Children inherit it: 10,000 idle clients need more than 1,024 files.
    raise_fd_limit(65_536);
    let work = std::env::temp_dir().join(format!("xingress-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let cleanup = RemoveDir(work.clone());
    let fixtures = util::root().join("tests/fixtures/tls");

    let backend = Proc::spawn(
        nginx_command(&work, "backend", &backend_conf(), 1)?,
        &work.join("backend.log"),
    )?;
    for p in BACKEND_PORTS {
        wait_port(p)?;
    }

    let htpasswd = work.join("htpasswd");
    std::fs::write(&htpasswd, HTPASSWD)?;
    // Both proxies run side by side on core 0; the idle one costs nothing.
    let nginx = UnderTest {
        name: "nginx",
        http: HTTP_PORT,
        https: HTTPS_PORT,
        proc: Proc::spawn(
            nginx_command(&work, "proxy", &proxy_nginx_conf(&fixtures, &htpasswd), 0)?,
            &work.join("nginx-proxy.log"),
        )?,
    };
    let manifests = work.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(manifests.join("cafe.yaml"), xingress_manifests(&fixtures)?)?;
    let xingress = xingress_under_test(&work, &manifests, "xingress", "0", 1, 1, true)?;
    let proxies = [nginx, xingress];
    for p in &proxies {
        wait_port(p.http)?;
        wait_port(p.https)?;
    }
    wait_ready(1)?;
    Ok(Pair {
        proxies,
        work,
        manifests,
        _backend: backend,
        _cleanup: cleanup,
    })
}

fn raise_fd_limit(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit with a valid struct; failure keeps the old limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

/// Memory per idle client connection, both proxies in one run (the
/// `idle` bench of the tests crate opens the connections and reads RSS).
fn idle() -> Result<()> {
    // Fresh proxies per protocol: memory freed by the first set of
    // connections would otherwise serve the second and flatter it.
    for protocol in ["http", "tls"] {
        let pair = start_pair(&format!(
            "idle-connection memory ({protocol}): xingress vs nginx, 10,000 keep-alive clients each"
        ))?;
        let targets: String = pair
            .proxies
            .iter()
            .map(|p| format!("{}:{}:{}:{};", p.name, p.proc.id(), p.http, p.https))
            .collect();
        util::cargo(&["bench", "-p", "xingress-tests", "--bench", "idle"])
            .env("IDLE_TARGETS", targets)
            .env("IDLE_PROTOCOL", protocol)
            .run()?;
    }
    Ok(())
}

fn proxy() -> Result<()> {
    let Pair {
        proxies,
        work,
        manifests,
        _backend,
        _cleanup,
    } = start_pair("proxy benchmark: xingress vs nginx, each pinned to core 0 with one worker")?;
    let mut results = Vec::new();
    for s in &SCENARIOS {
        for p in &proxies {
            load(s, p, WARMUP)?;
        }
        let mut rounds: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let p = &proxies[i];
                let m = measure(s, p)?;
                println!(
                    "  {:9} {:22} round {round}: {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {:>5.1} µs CPU/req  {} errors",
                    p.name, s.name, m.rps, m.p50_ms, m.p99_ms, m.cpu_us_per_request, m.errors
                );
                rounds[i].push(m);
            }
        }
        results.push(Compared::of(&rounds[0], &rounds[1]));
    }
    // Multi-core: xingress with two workers over both cores. The load
    // generator needs core 1 as well, so requests/s cannot show the
    // scaling on this machine; CPU per request shows whether a second
    // worker costs anything per request (contention, cross-thread wakeups).
    let one = measure_alone(&SCENARIOS[0], &proxies[1])?;
    // The access log's cost: the same agent with the log off, running
    // beside it on the same core, in alternating rounds so that drift and
    // noise hit both alike.
    let quiet = xingress_under_test(&work, &manifests, "xingress (no log)", "0", 1, 3, false)?;
    wait_port(quiet.http)?;
    wait_ready(3)?;
    let log_cost = log_cost(&SCENARIOS[0], &proxies[1], &quiet)?;
    drop(quiet);
    drop(proxies);
    let two_workers =
        xingress_under_test(&work, &manifests, "xingress (2 workers)", "0,1", 2, 2, true)?;
    wait_port(two_workers.http)?;
    wait_ready(2)?;
    let two = measure_alone(&SCENARIOS[0], &two_workers)?;
    drop(two_workers);
    report(&results, &TwoWorkers { one, two }, &log_cost)
}

/// Rounds per scenario against the baseline: a change's cost is a few per
/// cent at most, so more rounds than against nginx.
const BASELINE_ROUNDS: usize = 5;

/// A change's cost per request: the release agent built from the working
/// tree against an earlier build of it (`XINGRESS_BASELINE=PATH`, e.g. a
/// copy of `target/release/xingress` made before the change), both with
/// their access log on, pinned to core 0, in paired alternating rounds of
/// every scenario, as `proxy` pairs nginx with xingress.
fn proxy_baseline() -> Result<()> {
    let Some(baseline) = std::env::var_os("XINGRESS_BASELINE").map(PathBuf::from) else {
        bail!("proxy-baseline needs XINGRESS_BASELINE=PATH of the agent binary to compare with");
    };
    if !baseline.is_file() {
        bail!("XINGRESS_BASELINE: {} is not a file", baseline.display());
    }
    let Pair {
        proxies,
        work,
        manifests,
        _backend,
        _cleanup,
    } = start_pair("proxy benchmark: xingress against its baseline build, each pinned to core 0")?;
    // nginx is not needed here.
    let [nginx, current] = proxies;
    drop(nginx);
    // `XINGRESS_CURRENT=PATH`: another build instead of the working tree's
    // (to find which of several commits a cost came with).
    let current = match std::env::var_os("XINGRESS_CURRENT") {
        None => current,
        Some(bin) => {
            drop(current);
            let c = xingress_binary(
                Path::new(&bin),
                &work,
                &manifests,
                "xingress",
                ("0", 1),
                1,
                true,
            )?;
            wait_port(c.http)?;
            wait_ready(1)?;
            c
        }
    };
    let base = xingress_binary(&baseline, &work, &manifests, "baseline", ("0", 1), 4, true)?;
    wait_port(base.http)?;
    wait_port(base.https)?;
    wait_ready(4)?;
    let pair = [base, current];
    let mut md = format!(
        "| scenario | CPU µs/req baseline | CPU µs/req now | now ÷ baseline (median of {BASELINE_ROUNDS} paired rounds) | req/s baseline / now | p99 ms baseline / now |\n|---|---|---|---|---|---|\n"
    );
    // `XINGRESS_BENCH_ONLY=TEXT`: only the scenarios whose name has TEXT.
    let only = std::env::var("XINGRESS_BENCH_ONLY").unwrap_or_default();
    for s in SCENARIOS.iter().filter(|s| s.name.contains(only.as_str())) {
        for p in &pair {
            load(s, p, WARMUP)?;
        }
        let mut rounds: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        for round in 0..BASELINE_ROUNDS {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let m = measure(s, &pair[i])?;
                println!(
                    "  {:9} {:22} round {round}: {:>9.0} req/s  p99 {:>6.2} ms  {:>5.1} µs CPU/req",
                    pair[i].name, s.name, m.rps, m.p99_ms, m.cpu_us_per_request
                );
                rounds[i].push(m);
            }
        }
        let c = Compared::of(&rounds[0], &rounds[1]);
        // `per_core` is baseline ÷ now; its inverse is the change's cost.
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.3}× | {:.0} / {:.0} | {:.2} / {:.2} |",
            s.name,
            c.nginx.cpu_us_per_request,
            c.xingress.cpu_us_per_request,
            1.0 / c.per_core,
            c.nginx.rps,
            c.xingress.rps,
            c.nginx.p99_ms,
            c.xingress.p99_ms
        );
    }
    println!("\n{md}");
    let dir = util::target_dir().join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("proxy-baseline.md"), &md)?;
    println!("results: {}", dir.join("proxy-baseline.md").display());
    Ok(())
}

/// Paired rounds of the access log's cost.
const LOG_ROUNDS: usize = 5;

/// `s` against the agent with its log on and the one with it off, in
/// alternating rounds: `nginx` holds the log-on medians, `xingress` the
/// log-off ones, `per_core` the median of the per-round CPU ratios
/// (on ÷ off: the log's cost).
fn log_cost(s: &Scenario, on: &UnderTest, off: &UnderTest) -> Result<Compared> {
    load(s, on, WARMUP)?;
    load(s, off, WARMUP)?;
    let (mut ons, mut offs) = (Vec::new(), Vec::new());
    for round in 0..LOG_ROUNDS {
        for (p, runs) in [(on, &mut ons), (off, &mut offs)] {
            let m = measure(s, p)?;
            println!(
                "  {:22} {:22} round {round}: {:>9.0} req/s  p99 {:>6.2} ms  {:>5.1} µs CPU/req",
                p.name, s.name, m.rps, m.p99_ms, m.cpu_us_per_request
            );
            runs.push(m);
        }
    }
    Ok(Compared::of(&ons, &offs))
}

/// The release agent on the cafe manifests, pinned to `cpus` with `workers`
/// worker threads, its ports `offset` above the base ports.
fn xingress_under_test(
    work: &Path,
    manifests: &Path,
    name: &'static str,
    cpus: &str,
    workers: u32,
    offset: u16,
    access_log: bool,
) -> Result<UnderTest> {
    let bin = util::target_dir().join("release/xingress");
    xingress_binary(
        &bin,
        work,
        manifests,
        name,
        (cpus, workers),
        offset,
        access_log,
    )
}

/// `xingress_under_test` with the agent binary at `bin`.
fn xingress_binary(
    bin: &Path,
    work: &Path,
    manifests: &Path,
    name: &'static str,
    (cpus, workers): (&str, u32),
    offset: u16,
    access_log: bool,
) -> Result<UnderTest> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus])
        .arg(bin)
        .args(["run", "--manifests"])
        .arg(manifests)
        .args([
            "--http-addr",
            &format!("127.0.0.1:{}", HTTP_PORT + offset),
            "--https-addr",
            &format!("127.0.0.1:{}", HTTPS_PORT + offset),
            "--admin-addr",
            &format!("127.0.0.1:{}", admin_port(offset)),
            "--worker-threads",
            &workers.to_string(),
            "--default-ssl-certificate",
            "default/cafe-secret",
        ]);
    cmd.env("XINGRESS_LOG", "warn");
    // The access log on, to a file, as in production (nginx likewise).
    let stdout = if access_log {
        Some(work.join(format!("xingress-{offset}-access.log")))
    } else {
        cmd.args(["--access-log", "off"]);
        None
    };
    Ok(UnderTest {
        name,
        http: HTTP_PORT + offset,
        https: HTTPS_PORT + offset,
        proc: Proc::spawn_to(
            cmd,
            &work.join(format!("xingress-{offset}.log")),
            stdout.as_deref(),
        )?,
    })
}

/// xingress with 1 and with 2 worker threads, on the first scenario.
struct TwoWorkers {
    one: Measured,
    two: Measured,
}

/// One run of `s` against `p`, with the CPU time `p` spent per request.
fn measure(s: &Scenario, p: &UnderTest) -> Result<Measured> {
    let cpu_before = cpu_seconds(p.proc.id())?;
    let mut m = load(s, p, RUN)?;
    let cpu = cpu_seconds(p.proc.id())? - cpu_before;
    m.cpu_us_per_request = cpu * 1e6 / (m.rps * RUN.as_secs_f64()).max(1.0);
    Ok(m)
}

/// `ROUNDS` runs of `s` against `p` alone; the medians.
fn measure_alone(s: &Scenario, p: &UnderTest) -> Result<Measured> {
    load(s, p, WARMUP)?;
    let mut runs = Vec::new();
    for round in 0..ROUNDS {
        let m = measure(s, p)?;
        println!(
            "  {:22} {:22} round {round}: {:>9.0} req/s  p99 {:>6.2} ms  {:>5.1} µs CPU/req",
            p.name, s.name, m.rps, m.p99_ms, m.cpu_us_per_request
        );
        runs.push(m);
    }
    Ok(Compared::of(&runs, &runs).nginx)
}

/// One scenario's outcome: medians over the rounds for each proxy, and the
/// median of the per-round throughput ratios.
struct Compared {
    nginx: Measured,
    xingress: Measured,
    ratio: f64,
    /// nginx's CPU per request over xingress's: requests per core-second,
    /// which holds even when the load generator's core is the ceiling.
    per_core: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Compared {
    fn of(nginx: &[Measured], xingress: &[Measured]) -> Self {
        let med = |ms: &[Measured]| Measured {
            rps: median(ms.iter().map(|m| m.rps).collect()),
            p50_ms: median(ms.iter().map(|m| m.p50_ms).collect()),
            p99_ms: median(ms.iter().map(|m| m.p99_ms).collect()),
            cpu_us_per_request: median(ms.iter().map(|m| m.cpu_us_per_request).collect()),
            errors: ms.iter().map(|m| m.errors).sum(),
        };
        let ratio = median(
            nginx
                .iter()
                .zip(xingress)
                .map(|(n, x)| x.rps / n.rps.max(1.0))
                .collect(),
        );
        let per_core = median(
            nginx
                .iter()
                .zip(xingress)
                .map(|(n, x)| n.cpu_us_per_request / x.cpu_us_per_request.max(1e-9))
                .collect(),
        );
        Self {
            nginx: med(nginx),
            xingress: med(xingress),
            ratio,
            per_core,
        }
    }
}

fn report(results: &[Compared], two_workers: &TwoWorkers, log: &Compared) -> Result<()> {
    let mut md = format!(
        "| scenario | nginx req/s | xingress req/s | req/s ratio (median of {ROUNDS} paired rounds) | per-core ratio (CPU/req nginx ÷ xingress) | p99 ms nginx / xingress | CPU µs/req nginx / xingress | errors |\n|---|---|---|---|---|---|---|---|\n"
    );
    let mut json = String::from("{\"scenarios\":[");
    for (i, (s, c)) in SCENARIOS.iter().zip(results).enumerate() {
        let (n, x) = (&c.nginx, &c.xingress);
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.2}× | {:.2}× | {:.2} / {:.2} | {:.1} / {:.1} | {} / {} |",
            s.name,
            n.rps,
            x.rps,
            c.ratio,
            c.per_core,
            n.p99_ms,
            x.p99_ms,
            n.cpu_us_per_request,
            x.cpu_us_per_request,
            n.errors,
            x.errors
        );
        let _ = write!(
            json,
            "{}{{\"name\":\"{}\",\"nginx_rps\":{:.0},\"xingress_rps\":{:.0},\"ratio\":{:.3},\"per_core_ratio\":{:.3},\"nginx_p99_ms\":{:.3},\"xingress_p99_ms\":{:.3},\"nginx_cpu_us\":{:.2},\"xingress_cpu_us\":{:.2},\"nginx_errors\":{},\"xingress_errors\":{}}}",
            if i == 0 { "" } else { "," },
            s.name,
            n.rps,
            x.rps,
            c.ratio,
            c.per_core,
            n.p99_ms,
            x.p99_ms,
            n.cpu_us_per_request,
            x.cpu_us_per_request,
            n.errors,
            x.errors
        );
    }
    let (one, two) = (&two_workers.one, &two_workers.two);
    let _ = writeln!(
        md,
        "\nxingress, {}, 1 worker on core 0 vs 2 workers on cores 0-1 (core 1 shared with the load): {:.0} vs {:.0} req/s, {:.1} vs {:.1} µs CPU per request, p99 {:.2} vs {:.2} ms",
        SCENARIOS[0].name,
        one.rps,
        two.rps,
        one.cpu_us_per_request,
        two.cpu_us_per_request,
        one.p99_ms,
        two.p99_ms
    );
    let _ = writeln!(
        md,
        "\nxingress, {}, access log on (upstreaminfo to a file) vs off, {LOG_ROUNDS} alternating rounds, medians: {:.1} vs {:.1} µs CPU per request, cost {:.3}× (median of the per-round ratios; goal ≤ 1.05×), {:.0} vs {:.0} req/s. nginx logs its upstreaminfo line to a file in every row above, as ingress-nginx does.",
        SCENARIOS[0].name,
        log.nginx.cpu_us_per_request,
        log.xingress.cpu_us_per_request,
        log.per_core,
        log.nginx.rps,
        log.xingress.rps
    );
    let _ = writeln!(
        json,
        "],\"two_workers\":{{\"scenario\":\"{}\",\"one_rps\":{:.0},\"two_rps\":{:.0},\"one_cpu_us\":{:.2},\"two_cpu_us\":{:.2}}},\"access_log\":{{\"on_cpu_us\":{:.2},\"off_cpu_us\":{:.2},\"cost\":{:.3}}}}}",
        SCENARIOS[0].name,
        one.rps,
        two.rps,
        one.cpu_us_per_request,
        two.cpu_us_per_request,
        log.nginx.cpu_us_per_request,
        log.xingress.cpu_us_per_request,
        log.per_core
    );
    println!("\n{md}");
    let dir = util::target_dir().join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("proxy.md"), &md)?;
    std::fs::write(dir.join("proxy.json"), json)?;
    println!("results: {}", dir.join("proxy.md").display());
    Ok(())
}

/// Runs the scenario's load against `p` for `duration` on core 1.
fn load(s: &Scenario, p: &UnderTest, duration: Duration) -> Result<Measured> {
    let url = if s.https {
        format!("https://127.0.0.1:{}{}", p.https, s.path)
    } else {
        format!("http://127.0.0.1:{}{}", p.http, s.path)
    };
    match s.load {
        Load::Wrk { connections, close } => {
            let out = wrk(&url, connections, close, s.header, duration)?;
            parse_wrk(&out).with_context(|| format!("wrk output:\n{out}"))
        }
        Load::H2load {
            connections,
            streams,
        } => h2load(&url, connections, streams, duration),
    }
}

fn wrk(
    url: &str,
    connections: u32,
    close: bool,
    header: Option<&str>,
    duration: Duration,
) -> Result<String> {
    let mut cmd = Cmd::new("taskset").args([
        "-c",
        "1",
        "wrk",
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{}s", duration.as_secs()),
        "--latency",
        "-H",
        "Host: cafe.example.com",
    ]);
    if close {
        cmd = cmd.args(["-H", "Connection: close"]);
    }
    if let Some(h) = header {
        cmd = cmd.args(["-H", h]);
    }
    cmd.args([url]).output()
}

/// h2load for `duration`; latency percentiles from its per-request log.
fn h2load(url: &str, connections: u32, streams: u32, duration: Duration) -> Result<Measured> {
    let log = std::env::temp_dir().join(format!("xingress-h2load-{}.log", std::process::id()));
    let out = Cmd::new("taskset")
        .args([
            "-c",
            "1",
            "h2load",
            "-t1",
            &format!("-c{connections}"),
            &format!("-m{streams}"),
            &format!("-D{}", duration.as_secs()),
            "-H",
            ":authority: cafe.example.com",
            "--log-file",
        ])
        .args([log.as_os_str(), url.as_ref()])
        .output()?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|v| v.strip_suffix(" req/s"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("h2load output:\n{out}"))?;
    let errors = out
        .lines()
        .find_map(|l| l.strip_prefix("status codes: "))
        .map_or(0, |l| {
            // "N 2xx, N 3xx, N 4xx, N 5xx": all but 2xx are errors here.
            l.split(", ")
                .filter(|p| !p.ends_with("2xx"))
                .filter_map(|p| p.split(' ').next()?.parse::<u64>().ok())
                .sum()
        });
    // Log lines: start (µs), status, duration (µs).
    let mut durations: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse::<f64>().ok())
        .collect();
    if durations.is_empty() {
        bail!("h2load logged no requests:\n{out}");
    }
    durations.sort_by(f64::total_cmp);
    let pct = |p: f64| durations[((durations.len() - 1) as f64 * p) as usize] / 1000.0;
    Ok(Measured {
        rps,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cpu_us_per_request: 0.0,
        errors,
    })
}

fn parse_wrk(out: &str) -> Option<Measured> {
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let percentile = |p: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(|v| v.trim().to_string()))
            .and_then(|v| duration_ms(&v))
    };
    let errors = out
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .flat_map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
        })
        .sum();
    Some(Measured {
        rps,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        cpu_us_per_request: 0.0,
        errors,
    })
}

/// "1.23ms", "456.00us", "1.02s" → milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// utime + stime of `pid` and its direct children (nginx workers), seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let ticks = |pid: &str| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    let mut total = ticks(&pid.to_string()).context("read /proc/PID/stat")?;
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace() {
        total += ticks(child).unwrap_or(0);
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(total as f64 / hz)
}

fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The admin port of the agent whose ports are `offset` above the base.
fn admin_port(offset: u16) -> u16 {
    ADMIN_PORT + offset - 1
}

/// Waits for /readyz of the agent started at port `offset`.
fn wait_ready(offset: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port(offset)));
    while !crate::http1::get(admin, "localhost", "/readyz").is_ok_and(|r| r.status == 200) {
        if Instant::now() > deadline {
            bail!("xingress did not become ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn nginx_command(work: &Path, name: &str, conf: &str, cpu: u32) -> Result<Command> {
    let prefix = work.join(name);
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &cpu.to_string(), "nginx", "-p"])
        .arg(&prefix)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"]);
    Ok(cmd)
}

/// ingress-nginx's default access log line (`log_format upstreaminfo`).
const NGINX_UPSTREAMINFO: &str = "log_format upstreaminfo '$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_length $request_time [$proxy_host] [] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $request_id';\n";

const NGINX_COMMON: &str = "worker_processes 1;\nworker_rlimit_nofile 65536;\nerror_log logs/error.log warn;\npid logs/nginx.pid;\nevents { worker_connections 32768; }\n";

fn backend_conf() -> String {
    let listens: String = BACKEND_PORTS
        .iter()
        .map(|p| format!("    listen 127.0.0.1:{p};\n"))
        .collect();
    format!(
        "{NGINX_COMMON}http {{\n  access_log off;\n  keepalive_requests 1000000;\n  server {{\n{listens}    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
    )
}

/// nginx as an Ingress-style proxy for the cafe routes, tuned like a
/// production ingress: upstream keep-alive, ingress-nginx's `upstreaminfo` access log to a file, unlimited
/// client keep-alive requests.
fn proxy_nginx_conf(fixtures: &Path, htpasswd: &Path) -> String {
    let upstream = |name: &str, ports: &[u16]| {
        let servers: String = ports
            .iter()
            .map(|p| format!("    server 127.0.0.1:{p};\n"))
            .collect();
        format!("  upstream {name} {{\n{servers}    keepalive 64;\n  }}\n")
    };
    let location = |path: &str, up: &str, extra: &str| {
        format!(
            "    location {path} {{\n{extra}      proxy_pass http://{up};\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      \
             proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
             proxy_set_header X-Real-IP $remote_addr;\n      proxy_set_header X-Forwarded-Proto $scheme;\n    }}\n"
        )
    };
    format!(
        "{NGINX_COMMON}http {{\n  {NGINX_UPSTREAMINFO}  access_log logs/access.log upstreaminfo;\n  keepalive_requests 1000000;\n{}{}  server {{\n    listen 127.0.0.1:{HTTP_PORT};\n    \
         listen 127.0.0.1:{HTTPS_PORT} ssl http2;\n    server_name cafe.example.com;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
         ssl_protocols TLSv1.2 TLSv1.3;\n{}{}{}{}    location = /_auth {{\n      internal;\n      proxy_pass http://tea/auth;\n      \
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_pass_request_body off;\n      \
         proxy_set_header Content-Length \"\";\n      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;\n      \
         proxy_set_header X-Original-Method $request_method;\n      proxy_set_header X-Real-IP $remote_addr;\n    }}\n    location / {{ return 404; }}\n  }}\n}}\n",
        upstream("tea", &BACKEND_PORTS[..2]),
        upstream("coffee", &BACKEND_PORTS[2..]),
        fixtures.join("cafe.crt").display(),
        fixtures.join("cafe.key").display(),
        location("/tea", "tea", ""),
        location("/coffee", "coffee", ""),
        location(
            "/staff",
            "tea",
            &format!(
                "      auth_basic \"staff\";\n      auth_basic_user_file {};\n",
                htpasswd.display()
            )
        ),
        // ingress-nginx's auth-url, with keep-alive to the auth service
        // (its auth-keepalive) so that both proxies reuse connections.
        location("/ext", "tea", "      auth_request /_auth;\n"),
    )
}

/// The same routes for xingress: the cafe Ingress (v1, TLS, no redirect so
/// plain HTTP is measured too), its Secret, and Services on the backend ports.
fn xingress_manifests(fixtures: &Path) -> Result<String> {
    let b64 = |p: PathBuf| -> Result<String> {
        Ok(Cmd::new("base64")
            .args(["-w0".as_ref(), p.as_os_str()])
            .output()?
            .trim()
            .to_string())
    };
    let mut y = format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: xingress\n  annotations: {{ingressclass.kubernetes.io/is-default-class: \"true\"}}\nspec: {{controller: xingress.dev/controller}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: cafe-secret}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: cafe\n  annotations: {{xingress.dev/ssl-redirect: \"false\"}}\nspec:\n  tls: [{{hosts: [cafe.example.com], secretName: cafe-secret}}]\n  rules:\n  - host: cafe.example.com\n    http:\n      paths:\n\
         \x20     - {{path: /tea, pathType: Prefix, backend: {{service: {{name: tea, port: {{number: 80}}}}}}}}\n\
         \x20     - {{path: /coffee, pathType: Prefix, backend: {{service: {{name: coffee, port: {{number: 80}}}}}}}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: staff\n  annotations:\n    xingress.dev/ssl-redirect: \"false\"\n    \
         nginx.ingress.kubernetes.io/auth-type: basic\n    nginx.ingress.kubernetes.io/auth-secret: staff-users\n    nginx.ingress.kubernetes.io/auth-realm: staff\n\
         spec:\n  rules:\n  - host: cafe.example.com\n    http:\n      paths:\n\
         \x20     - {{path: /staff, pathType: Prefix, backend: {{service: {{name: tea, port: {{number: 80}}}}}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: staff-users}}\ntype: Opaque\nstringData:\n  auth: \"{}\"\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: ext\n  annotations:\n    xingress.dev/ssl-redirect: \"false\"\n    \
         nginx.ingress.kubernetes.io/auth-url: http://127.0.0.1:{}/auth\n\
         spec:\n  rules:\n  - host: cafe.example.com\n    http:\n      paths:\n\
         \x20     - {{path: /ext, pathType: Prefix, backend: {{service: {{name: tea, port: {{number: 80}}}}}}}}\n---\n",
        b64(fixtures.join("cafe.crt"))?,
        b64(fixtures.join("cafe.key"))?,
        HTPASSWD.escape_default(),
        BACKEND_PORTS[0],
    );
    for (svc, ports) in [
        ("tea", &BACKEND_PORTS[..2]),
        ("coffee", &BACKEND_PORTS[2..]),
    ] {
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n"
        );
        for (i, p) in ports.iter().enumerate() {
            let _ = write!(
                y,
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-{i}, labels: {{kubernetes.io/service-name: {svc}}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: {p}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n---\n"
            );
        }
    }
    Ok(y)
}

/// A child process killed (SIGTERM, then SIGKILL) on drop.
pub(crate) struct Proc(Child);

impl Proc {
    pub(crate) fn spawn(cmd: Command, log: &Path) -> Result<Self> {
        Self::spawn_to(cmd, log, None)
    }

    /// With stdout to `stdout` (an access log), else discarded.
    fn spawn_to(mut cmd: Command, log: &Path, stdout: Option<&Path>) -> Result<Self> {
        let out = match stdout {
            Some(p) => Stdio::from(std::fs::File::create(p)?),
            None => Stdio::null(),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("spawn {cmd:?}"))?;
        Ok(Self(child))
    }

    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
