//! The agent at scale, end to end: `xingress run --manifests` (release
//! build) on 10,000 Ingresses with 50,000 paths, 2,000 Services and 2,000
//! TLS Secrets (each its own ECDSA P-256 certificate), in one manifest file
//! per namespace. Reports the time to the first snapshot, the reload phases
//! the agent itself measures (/metrics), resident memory, and the time from
//! a manifest change to the changed route being served, over 100 changes.
//! `cargo xtask bench scale` runs it; results also go to
//! target/bench-results/scale.json.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use k8s_openapi::api::networking::v1::Ingress;
use xingress::model::NamespacedName;
use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Mode},
    http1::Conn,
    scale::{self, Shape},
};

const TLS_SECRETS: usize = 2_000;
const CHANGES: usize = 100;
/// Longest a change may take to be served before the bench gives up.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Renames path 0 of Ingress `i` to `new` (Exact), returning its host as a
/// client sends it.
fn retarget(o: &mut xingress::model::Objects, shape: Shape, i: usize, new: &str) -> String {
    let ns = format!("ns{}", i % shape.namespaces);
    let ing: &mut Ingress = std::sync::Arc::make_mut(
        o.ingresses
            .get_mut(&NamespacedName::new(&ns, format!("ing{i}")))
            .expect("generated Ingress"),
    );
    let rule = &mut ing.spec.as_mut().unwrap().rules.as_mut().unwrap()[0];
    let path = &mut rule.http.as_mut().unwrap().paths[0];
    path.path = Some(new.to_string());
    path.path_type = "Exact".into();
    scale::host(i).replace("*.", "edge.")
}

fn main() {
    let shape = Shape::LARGE;
    let pod = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "pod", Mode::Echo)
        .expect("start the pod");
    let generated = Instant::now();
    let mut objects = scale::objects(shape);
    scale::add_tls(&mut objects, shape, TLS_SECRETS);
    scale::point_at(&mut objects, pod.addr);
    let dir = ManifestDir::new();
    let mut bytes = 0;
    for n in 0..shape.namespaces {
        let ns = format!("ns{n}");
        let text = scale::namespace_manifest(&objects, &ns);
        bytes += text.len();
        dir.write(&scale::manifest_file(&ns), &text);
    }
    println!(
        "scale: {} Ingresses, {} paths, {} Services, {TLS_SECRETS} TLS Secrets in {} files ({:.1} MiB), generated in {:.1} s",
        shape.ingresses,
        shape.ingresses * shape.paths_per_ingress,
        shape.namespaces * shape.services_per_namespace,
        shape.namespaces,
        bytes as f64 / (1 << 20) as f64,
        generated.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut agent =
        Agent::start_local(&dir.path, &["--watch-ingress-without-class"]).expect("start the agent");
    agent.wait_ready().expect("agent ready");
    let ready_s = started.elapsed().as_secs_f64();
    let phase = |agent: &Agent, p: &str| {
        agent
            .metric(&format!("xingress_config_reload_seconds{{phase=\"{p}\"}}"))
            .unwrap_or(f64::NAN)
            * 1e3
    };
    let (first_read, first_build) = (phase(&agent, "read"), phase(&agent, "build"));
    let rss_start = rss_mib(agent.pid());

    let mut served = Vec::with_capacity(CHANGES);
    let (mut reads, mut builds) = (Vec::new(), Vec::new());
    let mut conn = Conn::connect(agent.http).expect("connect");
    for c in 0..CHANGES {
        // Ingresses past the TLS ones answer plain HTTP (no redirect).
        let i = TLS_SECRETS + (c * 7919) % (shape.ingresses - TLS_SECRETS);
        let path = format!("/changed{c}");
        let host = retarget(&mut objects, shape, i, &path);
        let ns = format!("ns{}", i % shape.namespaces);
        let text = scale::namespace_manifest(&objects, &ns);
        let before = conn.get(&host, &path).expect("request").status;
        assert_eq!(before, 404, "{host}{path} before the change");
        let t0 = Instant::now();
        dir.replace(&scale::manifest_file(&ns), &text);
        loop {
            let status = match conn.get(&host, &path) {
                Ok(r) => r.status,
                Err(_) => {
                    conn = Conn::connect(agent.http).expect("reconnect");
                    0
                }
            };
            if status == 200 {
                break;
            }
            assert!(
                t0.elapsed() < CHANGE_TIMEOUT,
                "change {c} not served within {CHANGE_TIMEOUT:?} (last status {status})\n{}",
                agent.logs()
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        served.push(t0.elapsed().as_secs_f64() * 1e3);
        // The reload that served it has finished by now.
        reads.push(phase(&agent, "read"));
        builds.push(phase(&agent, "build"));
    }
    let rss_end = rss_mib(agent.pid());
    for v in [&mut served, &mut reads, &mut builds] {
        v.sort_by(f64::total_cmp);
    }
    let (p50, p99) = (percentile(&served, 0.5), percentile(&served, 0.99));
    println!(
        "  first snapshot: ready after {ready_s:.2} s (read {first_read:.0} ms, build {first_build:.0} ms)"
    );
    println!(
        "  change -> served over {CHANGES} changes: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms (target < 100 ms)",
        served[served.len() - 1]
    );
    println!(
        "  reload phases per change (agent's /metrics), p50: read {:.1} ms, build {:.1} ms (target: rebuild < 200 ms)",
        percentile(&reads, 0.5),
        percentile(&builds, 0.5)
    );
    println!(
        "  resident memory: {rss_start:.0} MiB after the first snapshot, {rss_end:.0} MiB after {CHANGES} changes (target < 300 MB)"
    );
    let json = format!(
        "{{\"ingresses\":{},\"tls_secrets\":{TLS_SECRETS},\"ready_s\":{ready_s:.3},\"first_read_ms\":{first_read:.1},\"first_build_ms\":{first_build:.1},\
         \"change_served_ms_p50\":{p50:.2},\"change_served_ms_p99\":{p99:.2},\"read_ms_p50\":{:.2},\"build_ms_p50\":{:.2},\"rss_mib_start\":{rss_start:.1},\"rss_mib_end\":{rss_end:.1}}}\n",
        shape.ingresses,
        percentile(&reads, 0.5),
        percentile(&builds, 0.5)
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("scale.json"), json);
    }
    let _ = agent.stop(Duration::from_secs(5));
}
