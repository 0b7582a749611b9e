//! The agent's folders import each other in one direction: a test reads
//! every source file, collects which top-level module names which
//! (`crate::x`), and fails on a circle or on the model importing anything
//! but the `pem` leaf.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Module → the top-level modules its code (tests included) names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
            if matches!(module.as_str(), "lib" | "main" | "layering") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let used = graph.entry(module.clone()).or_default();
            for line in text.lines() {
                // Code only: not comments or doc comments.
                let code = line.split("//").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let name: String = code[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        used.insert(name);
                    }
                }
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_in_a_circle() {
    let graph = imports();
    // Depth-first search for a back edge; the path found is the circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import circle: {} -> {m}", path[i..].join(" -> "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    assert!(graph.len() > 10, "the scan found the modules: {graph:?}");
}

#[test]
fn the_model_imports_nothing_of_the_agent_but_pem() {
    let graph = imports();
    let model = &graph["model"];
    let others: Vec<&String> = model.iter().filter(|m| *m != "pem").collect();
    assert!(others.is_empty(), "model imports {others:?}");
    assert!(graph["pem"].is_empty(), "pem imports {:?}", graph["pem"]);
    // cli only parses: nothing below it depends on it.
    for (m, used) in &graph {
        if used.contains("cli") {
            assert!(
                ["app", "check", "migrate", "docs"].contains(&m.as_str()),
                "{m} depends on cli"
            );
        }
    }
}
