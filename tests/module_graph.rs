//! The library's module graph has no cycles, and its arrows point the way `DESIGN.md` draws
//! them: model <- attr/layout <- reconcile <- error <- backend <- map <- object <- ipc/interop.
//!
//! Reads every file under `src/` (binaries excepted), takes each `crate::<module>` path in code
//! (comments skipped, `use crate::{a, b}` groups split) as an arrow from the file's top-level
//! module to `<module>`, then checks (1) that the graph of all top-level modules is acyclic and
//! (2) that every arrow between modules of the layer table goes to a lower layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first. An arrow from a module may only go to a module of a lower layer.
/// A module not named here is held only to the no-cycle rule (and listed in the failure).
const LAYERS: &[&[&str]] = &[
    // Leaves: the shared vocabulary, and the raw kernel uapi.
    &["model", "sys"],
    // The attribute model and the layouts: import only the leaves.
    &["attr", "layout"],
    // Reconciliation: the model, never a backend.
    &["reconcile"],
    // The one error type wraps the model's own errors (AttrError, Conflict, FileError).
    &["error"],
    &["backend"],
    &["map"],
    &["object"],
    &["ipc", "interop"],
    // Streams run over IPC endpoints (their wire kinds live in ipc::wire, which knows nothing of
    // pools or fences).
    &["stream"],
];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file with line and block comments removed (string contents are kept: a
/// `crate::` inside a string counts, which can only make the check stricter).
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' && i + 1 < b.len() {
                out.push(c as char);
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            out.push(c as char);
            i += 1;
        } else if c == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'\'' && i + 2 < b.len() && b[i + 2] == b'\'' {
            // A char literal such as '"' must not open a string.
            out.push_str(&src[i..i + 3]);
            i += 3;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a piece of code names through `crate::`.
fn crate_targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        // `$crate::` and identifiers ending in `crate` are not the crate root.
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let r = rest.trim_start();
        if let Some(group) = r.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first identifier of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (i, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        out.insert(ident_at(&group[i..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let id = ident_at(r);
            if !id.is_empty() {
                out.insert(id.to_string());
            }
        }
    }
    out
}

fn library_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        if first == "bin" || first == "lib.rs" || first == "main.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        let code = strip_comments(&std::fs::read_to_string(&f).unwrap());
        let deps = g.entry(module.clone()).or_default();
        for t in crate_targets(&code) {
            // Re-exports at the root (`crate::Error`, `crate::Result`, `crate::Errno`).
            let t = match t.as_str() {
                "Error" | "Result" | "Errno" => "error".to_string(),
                _ => t,
            };
            if t != module {
                deps.insert(t);
            }
        }
    }
    g
}

/// A cycle of `g` (its modules in order, the first repeated at the end), if it has one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap();
                let mut c = path[at..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn layer_of(m: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&m))
}

#[test]
fn module_graph_has_no_cycles() {
    let g = library_graph();
    assert!(
        g.contains_key("model") && g.contains_key("reconcile"),
        "{g:?}"
    );
    if let Some(c) = find_cycle(&g) {
        panic!("module cycle: {}\nfull graph: {g:#?}", c.join(" -> "));
    }
}

#[test]
fn arrows_point_down_the_layers() {
    let g = library_graph();
    let mut bad = Vec::new();
    for (m, deps) in &g {
        let Some(lm) = layer_of(m) else { continue };
        for d in deps {
            match layer_of(d) {
                Some(ld) if ld < lm => {}
                Some(_) => bad.push(format!("{m} -> {d}")),
                None => {}
            }
        }
    }
    assert!(
        bad.is_empty(),
        "arrows against the layers (tests/module_graph.rs LAYERS): {bad:?}\ngraph: {g:#?}"
    );
    assert!(
        g["model"].is_empty(),
        "model must be a leaf: {:?}",
        g["model"]
    );
    for m in ["attr", "layout"] {
        assert!(
            g[m].iter().all(|d| d == "model"),
            "{m} may import only model: {:?}",
            g[m]
        );
    }
    for d in ["backend", "object", "ipc", "interop", "map", "error"] {
        assert!(!g["reconcile"].contains(d), "reconcile imports {d}");
    }
}

#[test]
fn the_checker_sees_grouped_imports_and_cycles() {
    let code = strip_comments(
        "use crate::{attr::Key, layout};\n// use crate::object;\nlet s = \"//\"; crate::map::x();\n\
         /* crate::ipc */ $crate::sys; let q = '\"'; crate::backend::y();",
    );
    let t: Vec<String> = crate_targets(&code).into_iter().collect();
    assert_eq!(t, ["attr", "backend", "layout", "map"]);
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}
