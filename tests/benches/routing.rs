//! Routing model at scale: translate() time and memory for 10,000 Ingresses
//! with 50,000 paths, and the per-request lookup. `cargo xtask bench` runs it;
//! results also go to target/bench-results/routing.json.

use std::{hint::black_box, time::Instant};

use xingress::model::{HOST_BUF_LEN, TranslateOptions, normalize_host, translate};
use xingress_tests::{
    alloc::{Counting, allocations, live_bytes},
    scale::{self, Shape},
};

#[global_allocator]
static ALLOC: Counting = Counting;

const TRANSLATE_RUNS: usize = 7;
const LOOKUPS: usize = 2_000_000;

/// Mean cost of normalise host + route + pick over `LOOKUPS` queries (hits
/// on precise and wildcard hosts at several depths, with case, port and
/// query variations, and misses), and the allocations they made.
fn lookups(table: &xingress::model::RoutingTable, shape: Shape) -> (f64, usize, usize) {
    let queries: Vec<(String, String)> = (0..4096)
        .map(|q| {
            let i = (q * 7919) % shape.ingresses;
            let host = scale::host(i).replace("*.", "edge.");
            let host = if q % 3 == 0 {
                host.to_uppercase() + ":80"
            } else {
                host
            };
            let path = match q % 4 {
                0 => scale::path(q % shape.paths_per_ingress).0,
                1 => format!(
                    "{}/deeper/still",
                    scale::path(q % shape.paths_per_ingress).0
                ),
                2 => "/nothing/here".to_string(),
                _ => format!("{}?page=2", scale::path(1).0),
            };
            (host, path)
        })
        .collect();
    let allocs_before = allocations();
    let start = Instant::now();
    let mut hits = 0usize;
    for k in 0..LOOKUPS {
        let (host, path) = &queries[k % queries.len()];
        let mut buf = [0u8; HOST_BUF_LEN];
        let h = normalize_host(black_box(host), &mut buf);
        let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
        if let Some(r) = table.route(h, black_box(path)) {
            hits += usize::from(r.backend.pick().is_ok());
        }
    }
    let ns = start.elapsed().as_secs_f64() * 1e9 / LOOKUPS as f64;
    (ns, allocations() - allocs_before, black_box(hits))
}

fn main() {
    let shape = Shape::LARGE;
    let objects = scale::objects(shape);
    let mut opts = TranslateOptions::default();
    opts.classes.watch_without_class = true;

    let mut times = Vec::new();
    let mut table_bytes = 0;
    let mut translate_allocs = 0;
    let mut translation = None;
    for _ in 0..TRANSLATE_RUNS {
        drop(translation.take());
        let before = live_bytes();
        let allocs_before = allocations();
        let start = Instant::now();
        let t = translate(&objects, &opts);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        translate_allocs = allocations() - allocs_before;
        table_bytes = live_bytes().saturating_sub(before);
        translation = Some(t);
    }
    let t = translation.expect("translated");
    times.sort_by(f64::total_cmp);
    let paths: usize = shape.ingresses * shape.paths_per_ingress;
    assert!(
        t.warnings.is_empty(),
        "{:?}",
        &t.warnings[..t.warnings.len().min(3)]
    );

    let (lookup_ns, lookup_allocs, hits) = lookups(&t.table, shape);
    // The same queries against a table of 10 Ingresses: the cost per
    // request must not grow with the number of hosts.
    let small = Shape {
        ingresses: 10,
        namespaces: 1,
        ..shape
    };
    let small_table = translate(&scale::objects(small), &opts).table;
    let (small_ns, _, _) = lookups(&small_table, small);

    let median = times[times.len() / 2];
    println!(
        "routing: {} Ingresses, {paths} paths, {} Services, {} endpoints",
        shape.ingresses,
        shape.namespaces * shape.services_per_namespace,
        shape.namespaces * shape.services_per_namespace * shape.endpoints_per_service
    );
    println!(
        "  translate: median {median:.1} ms, min {:.1} ms over {TRANSLATE_RUNS} runs, {translate_allocs} allocations (target < 200 ms)",
        times[0]
    );
    println!(
        "  table memory: {:.1} MiB live after translate",
        table_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "  lookup: {lookup_ns:.0} ns per request (normalise host + route + pick), {lookup_allocs} allocations in {LOOKUPS} lookups (target < 1000 ns, 0 allocations)"
    );
    println!("  hits: {} of {LOOKUPS}", hits);
    println!(
        "  lookup with 10 Ingresses: {small_ns:.0} ns; {} Ingresses cost {:.2}x that",
        shape.ingresses,
        lookup_ns / small_ns
    );

    let json = format!(
        "{{\"ingresses\":{},\"paths\":{paths},\"translate_ms_median\":{median:.2},\"translate_ms_min\":{:.2},\"translate_allocations\":{translate_allocs},\"table_bytes\":{table_bytes},\"lookup_ns\":{lookup_ns:.1},\"lookup_allocations\":{lookup_allocs},\"lookup_ns_10_ingresses\":{small_ns:.1}}}\n",
        shape.ingresses, times[0]
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("routing.json"), json);
    }
}
