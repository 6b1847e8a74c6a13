//! The layers ARCHITECTURE.md draws are the ones the imports have: every `crate::` path in src/ (test-only
//! modules aside) points to a module on its own line of the layer block or below, and no top-level modules import
//! each other in a cycle. Until the layers are crates (where the compiler refuses an upward import), this test
//! refuses it. It reads the source as text: a `crate::name` anywhere outside a test module counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer block of ARCHITECTURE.md, top line first: the top-level modules each line names.
fn layers() -> Vec<BTreeSet<String>> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md");
    let section = text.split("## Layers\n").nth(1).expect("a Layers section");
    let block = section.split("```").nth(1).expect("the layer block");
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            line.split_whitespace()
                .filter_map(|w| {
                    let w = w.trim_end_matches(',');
                    w.strip_prefix("src/")
                        .or_else(|| w.strip_prefix("crates/core/src/"))
                })
                .map(|m| m.trim_end_matches('/').trim_end_matches(".rs").to_string())
                .filter(|m| m != "main")
                .collect()
        })
        .collect()
}

/// Files compiled only for tests: a `#[cfg(test)] mod name;` names them (and everything below them).
fn test_only_files() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in rust_files(&src()) {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = if file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
        {
            file.parent().unwrap().to_path_buf()
        } else {
            file.with_extension("")
        };
        let mut rest = text.as_str();
        while let Some(i) = rest.find("#[cfg(test)]") {
            rest = &rest[i + "#[cfg(test)]".len()..];
            let next = rest.trim_start();
            let next = next.strip_prefix("pub(crate) ").unwrap_or(next);
            if let Some(decl) = next.strip_prefix("mod ")
                && let Some((name, _)) = decl.split_once(';')
                && !name.contains('{')
            {
                let name = name.trim();
                out.insert(dir.join(format!("{name}.rs")));
                out.extend(rust_files(&dir.join(name)));
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Top-level module -> the top-level modules its non-test code names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let modules: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .filter(|m| m != "main" && m != "lib")
        .collect();
    let tests = test_only_files();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&root) {
        if tests.contains(&file) {
            continue;
        }
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let top = relative
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" || top == "fixtures" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
        let entry = edges.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let after = &code[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = after.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                group
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect()
            } else {
                vec![
                    after
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or(""),
                ]
            };
            for name in names {
                if name != top && modules.contains(name) {
                    entry.insert(name.to_string());
                }
            }
        }
    }
    edges
}

#[test]
fn every_import_points_to_its_own_line_or_below() {
    let layers = layers();
    let edges = imports();
    let line_of = |module: &str| layers.iter().position(|l| l.contains(module));
    let mut unplaced: Vec<&String> = edges.keys().filter(|m| line_of(m).is_none()).collect();
    unplaced.sort();
    assert!(
        unplaced.is_empty(),
        "top-level modules ARCHITECTURE.md's layer block does not name: {unplaced:?}"
    );
    let mut twice = Vec::new();
    for module in edges.keys() {
        if layers
            .iter()
            .filter(|l| l.contains(module.as_str()))
            .count()
            > 1
        {
            twice.push(module.clone());
        }
    }
    assert!(twice.is_empty(), "named on two lines: {twice:?}");
    let mut upward = Vec::new();
    for (from, tos) in &edges {
        let from_line = line_of(from).unwrap();
        for to in tos {
            // Lines are listed top first: a larger index is a lower layer.
            match line_of(to) {
                Some(to_line) if to_line >= from_line => {}
                Some(_) => upward.push(format!("{from} -> {to}")),
                None => upward.push(format!("{from} -> {to} (not in the layer block)")),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up a layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_top_level_modules_import_each_other_in_a_cycle() {
    let edges = imports();
    // Depth-first search with colours; the first cycle found is reported as a path.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, edges, state, path) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(node, &edges, &mut state, &mut Vec::new())
        {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
    assert!(edges.len() > 15, "the scan found the modules: {edges:?}");
}
