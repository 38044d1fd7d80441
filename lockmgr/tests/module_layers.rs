//! The library's modules import in one direction: leaf types → backend → store →
//! acquisition → top. A module may use its own layer and the layers below it, never
//! one above: the backend knows nothing of the store, the store nothing of waiting,
//! guards or the macro runtime.
//!
//! This test reads every `crate::…` path in `src/**/*.rs` (comments aside; a path
//! through a re-export of `lib.rs` counts as the module it comes from) and fails on
//! an import against that order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The layers, lowest first, and the top-level modules (files or folders of `src/`)
/// in each.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaf types",
        &[
            "error",
            "name",
            "model",
            "options",
            "registry",
            "database_url",
            "events",
            "wakeup",
            "housekeeping",
            "set_lock",
            "async_support",
            "runtime_check",
        ],
    ),
    ("backend", &["backend"]),
    // The unit tests' store helpers sit beside the store.
    ("store", &["store", "test_support"]),
    ("acquisition", &["acquire"]),
    ("top", &["global", "macro_support", "lib"]),
];

/// Imports against the order that are known and still to be turned around, as
/// `(from, to)`. Remove an entry when its import goes; never add one.
const KNOWN: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_str().unwrap().trim_end_matches(".rs").to_string()
}

/// Names re-exported by `lib.rs` (`pub use module::{A, b}`) → the module.
fn re_exports(lib: &str) -> HashMap<String, String> {
    let mut names = HashMap::new();
    let mut statement = String::new();
    for line in lib.lines() {
        let line = line.trim();
        if statement.is_empty() && !line.starts_with("pub use ") {
            continue;
        }
        statement.push_str(line);
        statement.push(' ');
        if !line.ends_with(';') {
            continue;
        }
        let body = statement
            .trim_start_matches("pub use ")
            .trim_end_matches("; ");
        if let Some((module, rest)) = body.split_once("::") {
            let items = rest.trim_start_matches('{').trim_end_matches('}');
            for item in items.split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    names.insert(item.to_string(), module.to_string());
                }
            }
        }
        statement.clear();
    }
    names
}

/// The modules a line of code names through `crate::`.
fn crate_paths(line: &str, exports: &HashMap<String, String>) -> Vec<String> {
    let code = match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    };
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if layer_of(&ident).is_some() {
            found.push(ident);
        } else if let Some(module) = exports.get(&ident) {
            found.push(module.clone());
        }
    }
    found
}

/// One `crate::` path of the library's source: where it is, and which top-level
/// module uses which.
struct Import {
    /// The file, relative to `src/`, and the line number.
    at: String,
    from: String,
    to: String,
}

/// Every `crate::` path in `src/**/*.rs`, in every file and line.
fn imports() -> Vec<Import> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let exports = re_exports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut found = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        for (number, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
            for to in crate_paths(line, &exports) {
                found.push(Import {
                    at: format!(
                        "{}:{}",
                        file.strip_prefix(&src).unwrap().display(),
                        number + 1
                    ),
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    found
}

#[test]
fn modules_import_only_their_own_layer_and_the_layers_below() {
    let mut wrong = BTreeSet::new();
    let mut unplaced = BTreeSet::new();
    for Import { at, from, to } in imports() {
        let Some(from_layer) = layer_of(&from) else {
            unplaced.insert(from);
            continue;
        };
        let to_layer = layer_of(&to).unwrap();
        if to_layer > from_layer && !KNOWN.contains(&(from.as_str(), to.as_str())) {
            wrong.insert(format!(
                "{at}: {from} ({}) uses {to} ({})",
                LAYERS[from_layer].0, LAYERS[to_layer].0
            ));
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS): {unplaced:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layer order:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_checker_sees_use_lines_inline_paths_and_re_exports() {
    let exports = re_exports("pub use store::{\n    LockStore, url_from_env,\n};\n");
    assert_eq!(
        crate_paths("use crate::store::LockStore;", &exports),
        ["store"]
    );
    assert_eq!(
        crate_paths(
            "    let x = crate::LockStore::open(u); // crate::builder",
            &exports
        ),
        ["store"]
    );
    assert!(crate_paths("/// see [`x`](crate::builder::LockMgr)", &exports).is_empty());
}

/// Within a layer too, imports go one way (tests' imports included): no module reaches
/// itself through others.
#[test]
fn no_modules_import_each_other_in_a_loop() {
    // Each module → the other modules it imports.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for Import { from, to, .. } in imports() {
        if to != from {
            edges.entry(from).or_default().insert(to);
        }
    }
    for start in edges.keys() {
        // Every module reachable from `start`, each followed once, with the path to it.
        let mut seen = BTreeSet::new();
        let mut queue = vec![vec![start.clone()]];
        while let Some(path) = queue.pop() {
            for to in edges.get(path.last().unwrap()).into_iter().flatten() {
                let mut longer = path.clone();
                longer.push(to.clone());
                assert!(
                    to != start,
                    "modules import in a loop: {}",
                    longer.join(" → ")
                );
                if seen.insert(to.clone()) {
                    queue.push(longer);
                }
            }
        }
    }
}
