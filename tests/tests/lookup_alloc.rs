//! The request-path lookup (host normalisation, route, peer choice)
//! allocates nothing: counted with a global allocator.

use xingress::model::{HOST_BUF_LEN, TranslateOptions, normalize_host, translate};
use xingress_tests::{
    alloc::{Counting, allocations},
    scale::{self, Shape},
};

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn lookup_allocates_nothing() {
    let shape = Shape {
        ingresses: 200,
        ..Shape::LARGE
    };
    let mut opts = TranslateOptions::default();
    opts.classes.watch_without_class = true;
    let t = translate(&scale::objects(shape), &opts);
    let queries: Vec<(String, String)> = (0..200)
        .flat_map(|i| {
            let host = scale::host(i).replace("*.", "X.").to_uppercase() + ":443";
            (0..6).map(move |j| (host.clone(), format!("{}/item?q={j}", scale::path(j % 5).0)))
        })
        .collect();
    let before = allocations();
    let mut hits = 0;
    for (host, path) in &queries {
        let mut buf = [0u8; HOST_BUF_LEN];
        let h = normalize_host(host, &mut buf);
        let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
        if let Some(route) = t.table.route(h, path) {
            hits += usize::from(route.backend.pick().is_ok());
        }
    }
    let allocated = allocations() - before;
    assert_eq!(
        allocated,
        0,
        "{allocated} allocations in {} lookups",
        queries.len()
    );
    assert!(
        hits > queries.len() / 2,
        "the queries must mostly hit ({hits})"
    );
}
