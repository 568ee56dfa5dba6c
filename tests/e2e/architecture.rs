//! The shape of `src/`, kept so: no two top-level modules import each other
//! (directly or through others), and each imports only its own layer or the
//! ones below it (`ARCHITECTURE.md` draws the layers). Test code
//! (`#[cfg(test)]` modules and files) is left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module imports modules of its own layer or a
/// lower one, never a higher one.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "data model and storage",
        &[
            "background",
            "clock",
            "error",
            "lease",
            "metrics",
            "proto",
            "remote",
            "schema",
            "series_hash",
            "store",
            "telemetry",
            "tls",
        ],
    ),
    (
        "domain",
        &[
            "auth",
            "catalog",
            "compactor",
            "dedup",
            "ingester",
            "lifecycle",
            "lineproto",
            "parquet_files",
            "route",
            "series",
        ],
    ),
    ("services", &["admin", "influxql", "query", "write"]),
    (
        "transport and wiring",
        &["bench", "edge", "fuzzing", "serve"],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules `lib.rs` declares outside `#[cfg(test)]`.
fn top_level_modules() -> Vec<String> {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut modules = Vec::new();
    let mut test_only = false;
    for line in lib.lines().map(str::trim) {
        if line.starts_with("#[cfg(test)]") {
            test_only = true;
            continue;
        }
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'))
            && !test_only
        {
            modules.push(name.to_string());
        }
        if !line.starts_with("#[") {
            test_only = false;
        }
    }
    modules
}

/// The `.rs` files of a top-level module, without its test-only files.
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    let dir = src().join(module);
    let mut files = Vec::new();
    if file.exists() {
        files.push(file);
    }
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let test_files: BTreeSet<PathBuf> = files.iter().flat_map(|f| test_mod_files(f)).collect();
    files.retain(|f| !test_files.contains(f));
    files
}

/// Files declared as `#[cfg(test)] mod name;` in `file`.
fn test_mod_files(file: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let base = match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib") => file.parent().unwrap().to_path_buf(),
        Some(stem) => file.parent().unwrap().join(stem),
        None => return Vec::new(),
    };
    let mut out = Vec::new();
    for pair in lines.windows(2) {
        if pair[0] == "#[cfg(test)]"
            && let Some(name) = pair[1]
                .strip_prefix("mod ")
                .or_else(|| pair[1].strip_prefix("pub mod "))
                .and_then(|r| r.strip_suffix(';'))
        {
            out.push(base.join(format!("{name}.rs")));
            out.push(base.join(name).join("mod.rs"));
        }
    }
    out
}

/// `text` without comments and without `#[cfg(test)]` items (rustfmt's
/// layout: an item's closing brace has the indent of its first line).
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            let indent = &line[..line.len() - line.trim_start().len()];
            let Some(item) = lines.next() else { break };
            if item.trim_end().ends_with('{') {
                let close = format!("{indent}}}");
                for inner in lines.by_ref() {
                    if inner.trim_end() == close {
                        break;
                    }
                }
            }
            continue;
        }
        let code = line.split("//").next().unwrap_or_default();
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level modules `module` names through `crate::…`.
fn imports_of(module: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for file in files_of(module) {
        let code = non_test_code(&fs::read_to_string(&file).unwrap());
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first segment of each path.
                let mut depth = 0;
                let mut segment_start = true;
                let mut name = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => segment_start = true,
                        c if segment_start && (c.is_alphanumeric() || c == '_') => name.push(c),
                        _ if segment_start && !name.is_empty() => {
                            found.insert(std::mem::take(&mut name));
                            segment_start = false;
                        }
                        _ => {}
                    }
                }
                if !name.is_empty() {
                    found.insert(name);
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
    }
    found.retain(|m| m != module && modules.contains(m));
    found
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = top_level_modules().into_iter().collect();
    modules
        .iter()
        .map(|m| (m.clone(), imports_of(m, &modules)))
        .collect()
}

/// A path `from → … → from` through `graph`, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in &graph[&at] {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(from.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let graph = import_graph();
    assert!(graph.len() > 10, "found too few modules: {graph:?}");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn modules_import_only_their_layer_and_below() {
    let layer_of: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (_, modules))| modules.iter().map(move |m| (*m, i)))
        .collect();
    let graph = import_graph();
    let unplaced: Vec<&String> = graph
        .keys()
        .filter(|m| !layer_of.contains_key(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS and ARCHITECTURE.md): {unplaced:?}"
    );
    let mut upward = Vec::new();
    for (module, imports) in &graph {
        for import in imports {
            let (from, to) = (layer_of[module.as_str()], layer_of[import.as_str()]);
            if to > from {
                upward.push(format!(
                    "{module} ({}) imports {import} ({})",
                    LAYERS[from].0, LAYERS[to].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports up the layers:\n{}",
        upward.join("\n")
    );
}

/// The checker itself: comments, test modules and grouped imports.
#[test]
fn the_import_reader_sees_paths_and_skips_tests() {
    let code = non_test_code(
        "use crate::a::X;\n// crate::b\nfn f() { crate::c::g() }\n\
         #[cfg(test)]\nmod tests {\n    use crate::d;\n}\n\
         use crate::{e::Y, f};\n",
    );
    assert!(code.contains("crate::a") && code.contains("crate::c"));
    assert!(!code.contains("crate::b") && !code.contains("crate::d"));
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("x", &["y"][..]),
        ("y", &["z"][..]),
        ("z", &["x"][..]),
        ("w", &["x"][..]),
    ]
    .into_iter()
    .map(|(m, i)| (m.to_string(), i.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(
        cycle_through(&graph, "x").unwrap(),
        ["x", "y", "z", "x"].map(String::from)
    );
    assert!(cycle_through(&graph, "w").is_none());
}
