//! The modules of `src/` build on each other in layers: no file imports one that imports it
//! back, however far round, and the picture of the top-level layers in `docs/architecture.md`
//! is the one the code keeps. And no function outside tests is much over 100 lines.
//!
//! Read from the source, not the compiler: every `use` and every `crate::`/`super::`/`self::`
//! path outside `#[cfg(test)]` code, resolved to the file that defines the item (a `pub use`
//! re-export is followed to the file it names; the re-export itself is a name, not a use).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// Module path (`client::pool`, `` for the crate root) → its file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
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
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut segments: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            match segments.last().map(String::as_str) {
                Some("mod" | "lib") => {
                    segments.pop();
                }
                // The binary's root; its tree (`cli`) reaches the library as `tenant_mcp::`.
                Some("main") if segments.len() == 1 => continue,
                _ => {}
            }
            // Test files included with `#[path]` and the binaries' own trees stand outside.
            if segments.last().is_some_and(|s| s.ends_with("_tests"))
                || segments.first().is_some_and(|s| s == "bin")
            {
                continue;
            }
            found.insert(segments.join("::"), path);
        }
    }
    found
}

/// The code of a file without its comments and its `#[cfg(test)]` module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let tests = Regex::new(r"#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*mod \w+\s*\{").unwrap();
    let text = match tests.find(&text) {
        Some(m) => &text[..m.start()],
        None => &text[..],
    };
    without_comments_and_strings(text)
}

/// `text` with comments and the contents of string and char literals left out (a path in a
/// message or a doc comment is not a use).
fn without_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        match (chars[i], at(i + 1)) {
            ('/', '/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', '*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && at(i + 1) == '/') {
                    i += 1;
                }
                i += 2;
            }
            ('"', _) => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('"', '\''); a lifetime ('a) has no closing quote.
            ('\'', '\\') => {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            }
            ('\'', _) if at(i + 2) == '\'' => i += 3,
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `a::{b, c::{d, e as f}}` as `a::b`, `a::c::d`, `a::c::e as f`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        return vec![tree.trim().to_owned()];
    };
    let prefix = tree[..open].replace(' ', "");
    let close = tree.rfind('}').filter(|c| *c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p.trim()))
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

/// `a::b as c` as (`a::b`, `c`); `a::b` as (`a::b`, `b`).
fn split_alias(item: &str) -> (String, String) {
    let (path, alias) = item.split_once(" as ").unwrap_or((item, ""));
    let path = path.replace(' ', "");
    let name = match alias.trim() {
        "" => path.rsplit("::").next().unwrap_or_default().to_owned(),
        alias => alias.to_owned(),
    };
    (path, name)
}

/// The module graph of the crate at `src`.
struct Graph {
    modules: BTreeMap<String, PathBuf>,
    /// Module → (module it uses → the path that uses it, for the message).
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    fn read(src: &Path) -> Self {
        let modules = modules(src);
        let codes: BTreeMap<String, String> =
            modules.iter().map(|(m, p)| (m.clone(), code(p))).collect();
        // Statements only (a line that starts with them), not the word in a message.
        let reexport = Regex::new(r"(?m)^\s*pub(\([^)]*\))?\s+use\s+([^;]+);").unwrap();
        let uses = Regex::new(r"(?m)^\s*use\s+([^;]+);").unwrap();
        let paths = Regex::new(r"(?:^|[^\w:])((?:crate|super|self|tenant_mcp)(?:::\w+)+)").unwrap();
        let child_paths = Regex::new(r"(?:^|[^\w:])(\w+)::").unwrap();
        let declared = Regex::new(r"\bmod\s+(\w+)\s*;").unwrap();
        let mut graph = Self {
            modules,
            edges: BTreeMap::new(),
        };

        // The child modules each file declares, read once.
        let children: BTreeMap<&str, BTreeSet<&str>> = codes
            .iter()
            .map(|(module, code)| {
                let declared = declared
                    .captures_iter(code)
                    .filter_map(|c| c.get(1).map(|m| m.as_str()))
                    .collect();
                (module.as_str(), declared)
            })
            .collect();
        // Relative paths (`cache::X` in `client/mod.rs`) name a child module.
        let absolute = |module: &str, path: &str| -> String {
            let head = path.split("::").next().unwrap_or_default();
            if children.get(module).is_some_and(|c| c.contains(head)) {
                format!(
                    "{}::{path}",
                    if module.is_empty() { "crate" } else { "self" }
                )
            } else {
                path.to_owned()
            }
        };

        // What each module re-exports, and from where.
        let mut reexports: BTreeMap<(String, String), String> = BTreeMap::new();
        for (module, code) in &codes {
            for c in reexport.captures_iter(code) {
                for item in expand(&c[2]) {
                    let (path, name) = split_alias(&item);
                    let path = absolute(module, &path);
                    if let Some(target) = graph.resolve(module, &path)
                        && &target != module
                    {
                        reexports.insert((module.clone(), name), target);
                    }
                }
            }
        }

        for (module, code) in &codes {
            let body = reexport.replace_all(code, "");
            let mut found: Vec<String> = uses
                .captures_iter(&body)
                .flat_map(|c| expand(&c[1]))
                .map(|item| absolute(module, &split_alias(&item).0))
                .collect();
            found.extend(paths.captures_iter(&body).map(|c| c[1].to_owned()));
            found.extend(
                child_paths
                    .captures_iter(&body)
                    .map(|c| absolute(module, &c[1]))
                    .filter(|p| p.contains("::")),
            );
            for path in found {
                let Some(mut target) = graph.resolve(module, &path) else {
                    continue;
                };
                if let Some(via) = path
                    .split("::")
                    .find_map(|name| reexports.get(&(target.clone(), name.to_owned())))
                {
                    target = via.clone();
                }
                if &target != module {
                    graph
                        .edges
                        .entry(module.clone())
                        .or_default()
                        .entry(target)
                        .or_insert(path);
                }
            }
        }
        graph
    }

    /// The file module that defines what `path` (as written in `module`) names.
    fn resolve(&self, module: &str, path: &str) -> Option<String> {
        let mut segments: Vec<&str> = path.split("::").collect();
        let mut base: Vec<&str> = match segments.first() {
            Some(&("crate" | "tenant_mcp")) => {
                segments.remove(0);
                Vec::new()
            }
            Some(&("super" | "self")) => module.split("::").filter(|s| !s.is_empty()).collect(),
            _ => return None,
        };
        while let Some(&first) = segments.first() {
            match first {
                "super" => {
                    base.pop();
                }
                "self" => {}
                _ => break,
            }
            segments.remove(0);
        }
        let full: Vec<&str> = base.into_iter().chain(segments).collect();
        (0..=full.len())
            .rev()
            .map(|n| full[..n].join("::"))
            .find(|candidate| self.modules.contains_key(candidate))
    }

    /// Every set of modules that import each other in a circle (Tarjan's strongly connected
    /// components of more than one module).
    fn circles(&self) -> Vec<Vec<String>> {
        struct Walk<'g> {
            graph: &'g Graph,
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            found: Vec<Vec<String>>,
        }
        impl<'g> Walk<'g> {
            fn visit(&mut self, v: &'g str) {
                let i = self.index.len();
                self.index.insert(v, i);
                self.low.insert(v, i);
                self.stack.push(v);
                for w in self.graph.edges.get(v).into_iter().flat_map(|e| e.keys()) {
                    if !self.index.contains_key(w.as_str()) {
                        self.visit(w);
                        let low = self.low[v].min(self.low[w.as_str()]);
                        self.low.insert(v, low);
                    } else if self.stack.contains(&w.as_str()) {
                        let low = self.low[v].min(self.index[w.as_str()]);
                        self.low.insert(v, low);
                    }
                }
                if self.low[v] == self.index[v] {
                    let at = self.stack.iter().position(|m| *m == v).unwrap_or(0);
                    let mut component: Vec<String> =
                        self.stack.drain(at..).map(str::to_owned).collect();
                    component.sort();
                    if component.len() > 1 {
                        self.found.push(component);
                    }
                }
            }
        }
        let mut walk = Walk {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            found: Vec::new(),
        };
        for module in self.modules.keys() {
            if !walk.index.contains_key(module.as_str()) {
                walk.visit(module);
            }
        }
        walk.found
    }

    /// Each circle, with the import that makes each of its edges.
    fn describe(&self, circle: &[String]) -> String {
        let mut lines = vec![format!("circle: {}", circle.join(", "))];
        for from in circle {
            for (to, path) in self.edges.get(from).into_iter().flatten() {
                if circle.contains(to) {
                    lines.push(format!("  {from} -> {to} (`{path}`)"));
                }
            }
        }
        lines.join("\n")
    }

    /// Top-level module → the top-level modules it builds on.
    fn layers(&self) -> BTreeMap<String, BTreeSet<String>> {
        let top = |m: &str| m.split("::").next().unwrap_or_default().to_owned();
        let mut layers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for module in self.modules.keys().filter(|m| !m.is_empty()) {
            layers.entry(top(module)).or_default();
        }
        for (from, to) in &self.edges {
            for target in to.keys() {
                let (a, b) = (top(from), top(target));
                if !a.is_empty() && !b.is_empty() && a != b {
                    layers.entry(a).or_default().insert(b);
                }
            }
        }
        layers
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = Graph::read(&root().join("src"));
    let circles: Vec<String> = graph.circles().iter().map(|c| graph.describe(c)).collect();
    assert!(
        circles.is_empty(),
        "modules import each other in a circle: move what both need into the lowest module \
         that needs it\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_layer_picture_in_the_docs_is_the_one_the_code_keeps() {
    let graph = Graph::read(&root().join("src"));
    let rendered: String = graph
        .layers()
        .iter()
        .map(|(module, on)| {
            let on: Vec<&str> = on.iter().map(String::as_str).collect();
            format!(
                "| `{module}` | {} |\n",
                if on.is_empty() {
                    "—".to_owned()
                } else {
                    on.join(", ")
                }
            )
        })
        .collect();
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let (begin, end) = ("<!-- layers:begin -->\n", "<!-- layers:end -->");
    let start = doc
        .find(begin)
        .expect("docs/architecture.md has no layers:begin marker");
    let stop = doc
        .find(end)
        .expect("docs/architecture.md has no layers:end marker");
    let table = &doc[start + begin.len()..stop];
    let rows: String = table.lines().skip(2).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        rows, rendered,
        "docs/architecture.md's layer table differs from the code; the table is:\n{rendered}"
    );
}

#[test]
fn the_check_finds_a_circle_through_a_re_export_and_ignores_tests() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("low")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod low;\npub mod high;\n").unwrap();
    std::fs::write(
        src.join("low/mod.rs"),
        "mod inner;\npub use inner::Thing;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("high.rs"),
        "use crate::low::Thing;\npub struct Up;\n#[cfg(test)]\nmod tests { use crate::low; }\n",
    )
    .unwrap();
    // A test module reaching up is no circle.
    std::fs::write(
        src.join("low/inner.rs"),
        "pub struct Thing;\n#[cfg(test)]\nmod tests { use crate::high::Up; }\n",
    )
    .unwrap();
    assert!(Graph::read(src).circles().is_empty());
    // Code reaching up is one, found through the re-export: high -> low::inner -> high.
    std::fs::write(
        src.join("low/inner.rs"),
        "// crate::nothing in a comment\npub struct Thing(crate::high::Up);\n\
         const SAYS: &str = \"use crate::nothing; in a message\";\n",
    )
    .unwrap();
    let graph = Graph::read(src);
    assert_eq!(
        graph.circles(),
        [vec!["high".to_owned(), "low::inner".to_owned()]]
    );
    assert!(
        graph
            .describe(&graph.circles()[0])
            .contains("`crate::high::Up`")
    );
}

/// The longest a function outside tests may be: about 100 lines, with room for a signature
/// and a match that reads better whole.
const MAX_FUNCTION_LINES: usize = 110;

/// Every function of `code` with its first line (1-based) and its length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let start = Regex::new(r"^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?fn\s+(\w+)").unwrap();
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = start.captures(line).map(|c| c[5].to_owned()) else {
            continue;
        };
        let (mut depth, mut opened) = (0i32, false);
        for (j, body) in lines.iter().enumerate().skip(i) {
            for ch in body.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                found.push((name, i + 1, j - i + 1));
                break;
            }
            if !opened && body.trim_end().ends_with(';') {
                break;
            }
        }
    }
    found
}

#[test]
fn no_function_outside_tests_is_much_over_a_hundred_lines() {
    let src = root().join("src");
    let mut long = Vec::new();
    let mut files: Vec<PathBuf> = modules(&src).into_values().collect();
    files.push(src.join("main.rs"));
    for file in files {
        for (name, line, length) in functions(&code(&file)) {
            if length > MAX_FUNCTION_LINES {
                let shown = file
                    .strip_prefix(root())
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                long.push(format!("{shown}:{line} {name}: {length} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: split them into named steps\n{}",
        long.join("\n")
    );
}

#[test]
fn function_lengths_are_counted_without_strings_comments_or_nested_items() {
    let code = without_comments_and_strings(
        "fn short() {\n    let s = \"}\";\n    // }\n}\nfn long() {\n    if x {\n        y();\n    }\n}\n",
    );
    assert_eq!(
        functions(&code)
            .into_iter()
            .map(|(n, _, l)| (n, l))
            .collect::<Vec<_>>(),
        [("short".to_owned(), 4), ("long".to_owned(), 5)]
    );
}
