//! The layering rule of docs/architecture.md, checked on the source: a file in one layer's
//! folder names only its own layer and the layers below it (`crate::<layer>`), so imports
//! go down and no circle can come back unnoticed; inside a folder, the files' imports form
//! no circle either; and no function in `plan/` outgrows a screen (80 lines).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. `signals`, `kube` and `docker` are peers: the outside systems, which know
/// nothing of each other.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("state", 1),
    ("plan", 2),
    ("signals", 3),
    ("kube", 3),
    ("docker", 3),
    ("run", 4),
    ("sim", 5),
    ("cli", 6),
];

fn rank(layer: &str) -> Option<u8> {
    LAYERS.iter().find(|(l, _)| *l == layer).map(|(_, r)| *r)
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::<name>` a file names outside comments.
fn named_layers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
            rest = after;
        }
    }
    found
}

#[test]
fn imports_only_go_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for path in &all {
        let rel = path.strip_prefix(&src).unwrap();
        let mut parts = rel.components();
        let first = parts
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .to_string();
        if parts.next().is_none() {
            // lib.rs and main.rs sit above every layer.
            assert!(
                first == "lib.rs" || first == "main.rs",
                "{} sits on the floor of src/: put it in a layer's folder",
                rel.display()
            );
            continue;
        }
        let own = rank(&first).unwrap_or_else(|| panic!("src/{first}/ is not a known layer"));
        let text = std::fs::read_to_string(path).unwrap();
        for name in named_layers(&text) {
            checked += 1;
            let Some(r) = rank(&name) else {
                wrong.push(format!("{}: crate::{name} is not a layer", rel.display()));
                continue;
            };
            if name != first && r >= own {
                wrong.push(format!("{} ({first}) uses crate::{name}", rel.display()));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} imports seen: is the scan broken?"
    );
    assert!(
        wrong.is_empty(),
        "imports that do not go down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_sees_an_import_and_skips_comments() {
    assert_eq!(
        named_layers("use crate::plan::decide; // crate::cli\nx(crate::state::State)"),
        ["plan", "state"]
    );
}

#[test]
fn the_blanking_keeps_code_and_lines_and_hides_literals_and_comments() {
    let text =
        "let s = r#\"a \"{\" b\"#; let t = \"}\\\"\";\nlet c = '{'; // x {\n/* { */ f::<'a>()";
    assert_eq!(
        code_only(text),
        "let s = r#\"       \"#; let t = \"   \";\nlet c = ' ';       \n        f::<'a>()"
    );
}

// ---- Inside a folder: the files' imports form no circle. ----

/// Source text with comments, string and char literals blanked to spaces (newlines kept,
/// so line numbers and brace counts stay true).
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            loop {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if !ident_before && raw_string_at(&c, i).is_some() {
            let (hashes, open) = raw_string_at(&c, i).unwrap();
            let close: Vec<char> = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            for &ch in &c[i..open + 1] {
                out.push(ch);
            }
            i = open + 1;
            while i < c.len() && !c[i..].starts_with(&close) {
                blank(&mut out, c[i]);
                i += 1;
            }
            for &ch in c.iter().skip(i).take(close.len()) {
                out.push(ch);
            }
            i += close.len();
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() {
                out.push('"');
                i += 1;
            }
        } else if c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('{', '\''); a lifetime ('a) has no closing quote.
            out.push('\'');
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// At `r"`, `r#"`, `br"`...: the number of `#` and where the opening quote is.
fn raw_string_at(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(j + hashes) == Some(&'"')).then_some((hashes, j + hashes))
}

/// `code` with every item marked `#[cfg(test)]` blanked: what the build ships.
fn without_tests(code: &str) -> String {
    let mut out: Vec<char> = code.chars().collect();
    let len = out.len();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if out[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + marker.len();
        let mut depth = 0usize;
        while j < out.len() {
            match out[j] {
                ';' if depth == 0 => break,
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        for ch in &mut out[start..(j + 1).min(len)] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = j;
    }
    out.into_iter().collect()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// The tokens of blanked code, each with its line (1-based).
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

fn is(t: Option<&(Tok, usize)>, want: &Tok) -> bool {
    t.is_some_and(|(t, _)| t == want)
}

fn ident(s: &str) -> Tok {
    Tok::Ident(s.to_string())
}

/// One path a file names, its segments as written (`super`, `crate`, a child module, ...).
#[derive(Debug, Clone)]
struct Named {
    segs: Vec<String>,
    /// `pub use ...::*`
    glob: bool,
    /// In a `pub use`: a re-export, the folder's face rather than a need.
    reexport: bool,
    line: usize,
}

/// Every path starting at `crate::`, `super::` or `self::` (and, in a `mod.rs`, at one of
/// its `children`), with `use` groups spread out.
fn named_paths(code: &str, children: &[String]) -> Vec<Named> {
    let toks = tokens(code);
    let mut out = Vec::new();
    let mut reexport = false;
    let mut k = 0;
    while k < toks.len() {
        let (tok, line) = &toks[k];
        if *tok == ident("use") {
            let after_pub = k >= 1 && is(toks.get(k - 1), &ident("pub"));
            let after_pub_in = k >= 4
                && is(toks.get(k - 1), &Tok::Punct(')'))
                && is(toks.get(k - 4), &ident("pub"));
            reexport = after_pub || after_pub_in;
        } else if *tok == Tok::Punct(';') {
            reexport = false;
        }
        let starts = match tok {
            Tok::Ident(s) => {
                ["crate", "super", "self"].contains(&s.as_str()) || children.contains(s)
            }
            _ => false,
        };
        let after_sep = k >= 1 && is(toks.get(k - 1), &Tok::Sep);
        if !starts || after_sep || !is(toks.get(k + 1), &Tok::Sep) {
            k += 1;
            continue;
        }
        let (found, next) = use_tree(&toks, k, Vec::new());
        for (segs, glob) in found {
            out.push(Named {
                segs,
                glob,
                reexport,
                line: *line,
            });
        }
        k = next;
    }
    out
}

/// The paths of one use tree from `toks[k]` (`a::b::{c, d::{self, E}}`), each with
/// whether it ends in `*`; and where the tree ends.
fn use_tree(
    toks: &[(Tok, usize)],
    mut k: usize,
    mut segs: Vec<String>,
) -> (Vec<(Vec<String>, bool)>, usize) {
    loop {
        match toks.get(k) {
            Some((Tok::Ident(s), _)) => {
                segs.push(s.clone());
                k += 1;
            }
            _ => return (vec![(segs, false)], k),
        }
        if !is(toks.get(k), &Tok::Sep) {
            return (vec![(segs, false)], k);
        }
        k += 1;
        match toks.get(k) {
            Some((Tok::Punct('*'), _)) => return (vec![(segs, true)], k + 1),
            Some((Tok::Punct('{'), _)) => {
                k += 1;
                let mut all = Vec::new();
                while k < toks.len() && !is(toks.get(k), &Tok::Punct('}')) {
                    if is(toks.get(k), &Tok::Punct(',')) {
                        k += 1;
                        continue;
                    }
                    let (mut sub, next) = use_tree(toks, k, segs.clone());
                    all.append(&mut sub);
                    k = next.max(k + 1);
                    if is(toks.get(k), &ident("as")) {
                        k += 2;
                    }
                }
                return (all, k + 1);
            }
            Some((Tok::Ident(_), _)) => {}
            _ => return (vec![(segs, false)], k),
        }
    }
}

/// A path as the module it names from the crate root, for a file whose own module is
/// `module` (`["kube", "drain"]`; a `mod.rs` is its folder's module).
fn absolute(segs: &[String], module: &[String]) -> Vec<String> {
    let mut base: Vec<String> = module.to_vec();
    let mut rest = segs;
    match segs[0].as_str() {
        "crate" => {
            base.clear();
            rest = &segs[1..];
        }
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        "self" => rest = &segs[1..],
        _ => {}
    }
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    base
}

/// One source file, as the folder checks see it.
struct SrcFile {
    /// `kube/drain.rs`
    rel: String,
    /// The folder's modules: `["kube"]` for `kube/drain.rs` and `kube/mod.rs`.
    folder: Vec<String>,
    /// The file's name in its folder (`drain.rs`, `mod.rs`).
    name: String,
    /// Code without comments, literals or `#[cfg(test)]` items.
    code: String,
}

impl SrcFile {
    fn new(rel: &str, text: &str) -> SrcFile {
        let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
        let name = parts.pop().unwrap();
        SrcFile {
            rel: rel.to_string(),
            folder: parts,
            name,
            code: without_tests(&code_only(text)),
        }
    }

    fn is_mod(&self) -> bool {
        self.name == "mod.rs"
    }

    fn module(&self) -> Vec<String> {
        let mut m = self.folder.clone();
        if !self.is_mod() {
            m.push(self.name.trim_end_matches(".rs").to_string());
        }
        m
    }
}

/// The files of one crate's layers, and what their folders contain.
struct Tree<'a> {
    files: &'a [SrcFile],
}

impl Tree<'_> {
    /// The node `name` is in folder `folder`'s graph when it is a child module
    /// (`name.rs` or `name/`).
    fn child(&self, folder: &[String], name: &str) -> Option<String> {
        for f in self.files {
            if f.folder == folder && !f.is_mod() && f.name == format!("{name}.rs") {
                return Some(f.name.clone());
            }
            if f.folder.len() > folder.len()
                && f.folder[..folder.len()] == *folder
                && f.folder[folder.len()] == name
            {
                return Some(format!("{name}/"));
            }
        }
        None
    }

    fn children(&self, folder: &[String]) -> Vec<String> {
        let mut all = BTreeSet::new();
        for f in self.files {
            if f.folder == folder && !f.is_mod() {
                all.insert(f.name.trim_end_matches(".rs").to_string());
            } else if f.folder.len() > folder.len() && f.folder[..folder.len()] == *folder {
                all.insert(f.folder[folder.len()].clone());
            }
        }
        all.into_iter().collect()
    }

    fn mod_rs(&self, folder: &[String]) -> Option<&SrcFile> {
        self.files.iter().find(|f| f.folder == folder && f.is_mod())
    }

    /// The node that defines `item`, an item named at the folder's own level
    /// (`crate::kube::Cluster`): the child its `mod.rs` re-exports it from, else `mod.rs`.
    fn item(&self, folder: &[String], item: &str) -> String {
        let Some(face) = self.mod_rs(folder) else {
            return "mod.rs".to_string();
        };
        let children = self.children(folder);
        let mut globs = Vec::new();
        for n in named_paths(&face.code, &children) {
            if !n.reexport {
                continue;
            }
            let t = absolute(&n.segs, &face.module());
            if t.len() <= folder.len() || t[..folder.len()] != *folder {
                continue;
            }
            let Some(child) = self.child(folder, &t[folder.len()]) else {
                continue;
            };
            if n.glob {
                globs.push(child);
            } else if t.last().is_some_and(|l| l == item) {
                return child;
            }
        }
        if defines(&face.code, item) {
            return "mod.rs".to_string();
        }
        for g in globs {
            let defined_there = self
                .files
                .iter()
                .any(|f| f.folder == folder && f.name == g && defines(&f.code, item));
            if defined_there {
                return g;
            }
        }
        "mod.rs".to_string()
    }

    /// Each folder's import graph: `from -> to -> where`, nodes being the folder's files
    /// and subfolders (`rules/`).
    fn graphs(&self) -> BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, String>>> {
        let mut graphs: BTreeMap<_, BTreeMap<_, BTreeMap<_, _>>> = BTreeMap::new();
        for f in self.files {
            let module = f.module();
            let bare = if f.is_mod() {
                self.children(&f.folder)
            } else {
                Vec::new()
            };
            for n in named_paths(&f.code, &bare) {
                if f.is_mod() && n.reexport {
                    continue;
                }
                let t = absolute(&n.segs, &module);
                if t.is_empty() || t[0] != f.folder[0] {
                    continue;
                }
                let d = f.folder.iter().zip(&t).take_while(|(a, b)| a == b).count();
                let folder = &f.folder[..d];
                let from = if d == f.folder.len() {
                    f.name.clone()
                } else {
                    format!("{}/", f.folder[d])
                };
                let to = if t.len() == d {
                    "mod.rs".to_string()
                } else {
                    self.child(folder, &t[d])
                        .unwrap_or_else(|| self.item(folder, &t[d]))
                };
                if from != to {
                    graphs
                        .entry(folder.to_vec())
                        .or_default()
                        .entry(from)
                        .or_default()
                        .entry(to)
                        .or_insert_with(|| format!("{}:{} {}", f.rel, n.line, t.join("::")));
                }
            }
        }
        graphs
    }

    /// Every circle among the files of a folder, named with where each step is imported.
    fn circles(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (folder, graph) in self.graphs() {
            let mut seen = BTreeSet::new();
            for start in graph.keys() {
                if seen.contains(start) {
                    continue;
                }
                let Some(path) = shortest_path(&graph, start, start) else {
                    continue;
                };
                let members: BTreeSet<String> = graph
                    .keys()
                    .filter(|n| {
                        shortest_path(&graph, start, n).is_some()
                            && shortest_path(&graph, n, start).is_some()
                    })
                    .cloned()
                    .collect();
                // Every import inside the circle, so that one reading shows what to move.
                let steps: Vec<String> = members
                    .iter()
                    .flat_map(|m| graph[m].iter().map(move |(to, at)| (m, to, at)))
                    .filter(|(_, to, _)| members.contains(*to))
                    .map(|(from, to, at)| format!("    {from} -> {to}: {at}"))
                    .collect();
                found.push(format!(
                    "src/{}/: {}\n{}",
                    folder.join("/"),
                    path.join(" -> "),
                    steps.join("\n")
                ));
                seen.extend(members);
            }
        }
        found
    }
}

/// Does `code` define an item called `name` at any level?
fn defines(code: &str, name: &str) -> bool {
    let toks = tokens(code);
    let kinds = [
        "fn", "struct", "enum", "trait", "const", "static", "type", "mod", "union",
    ];
    toks.windows(2).any(|w| {
        matches!(&w[0].0, Tok::Ident(k) if kinds.contains(&k.as_str())) && w[1].0 == ident(name)
    })
}

/// The shortest walk `from -> ... -> to` of at least one step, by breadth first.
fn shortest_path(
    graph: &BTreeMap<String, BTreeMap<String, String>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut back: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from.to_string()]);
    while let Some(n) = queue.pop_front() {
        for next in graph.get(&n).into_iter().flat_map(|e| e.keys()) {
            if next == to {
                let mut path = vec![to.to_string(), n.clone()];
                let mut at = n.clone();
                while at != from {
                    at = back[&at].clone();
                    path.push(at.clone());
                }
                path.reverse();
                return Some(path);
            }
            if next != from && !back.contains_key(next) {
                back.insert(next.clone(), n.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

/// Every file under src/ in a layer's folder, test-only files (`*_tests.rs`, included
/// under `#[cfg(test)]`) left out.
fn layer_files() -> Vec<SrcFile> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut out = Vec::new();
    for path in all {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if !rel.contains('/') || rel.ends_with("_tests.rs") {
            continue;
        }
        out.push(SrcFile::new(&rel, &std::fs::read_to_string(&path).unwrap()));
    }
    out
}

#[test]
fn no_circle_among_the_files_of_a_folder() {
    let files = layer_files();
    let tree = Tree { files: &files };
    let edges: usize = tree
        .graphs()
        .values()
        .flat_map(|g| g.values())
        .map(|e| e.len())
        .sum();
    assert!(
        edges > 50,
        "only {edges} imports between files seen: is the scan broken?"
    );
    let circles = tree.circles();
    assert!(
        circles.is_empty(),
        "circles among the files of a folder (move what both sides need to a file below \
         both):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_folder_scan_finds_a_circle_and_ignores_a_face() {
    let files = [
        SrcFile::new("x/mod.rs", "mod a;\nmod b;\npub use a::A;\n"),
        SrcFile::new("x/a.rs", "use super::b::B; // super::c\npub struct A;"),
        SrcFile::new(
            "x/b.rs",
            "pub struct B(crate::x::A);\n#[cfg(test)]\nmod t { use super::c; }",
        ),
        SrcFile::new(
            "x/c.rs",
            "use crate::x::{a::A, b::{self, B}}; fn f() -> &'static str { \"super::a\" }",
        ),
    ];
    let circles = Tree { files: &files }.circles();
    assert_eq!(circles.len(), 1, "{circles:#?}");
    assert!(
        circles[0].starts_with("src/x/: a.rs -> b.rs -> a.rs\n"),
        "{}",
        circles[0]
    );
    assert!(
        circles[0].contains("b.rs -> a.rs: x/b.rs:1 x::A"),
        "{}",
        circles[0]
    );
}
// ---- plan/ reads a screen at a time: no function longer than 80 lines. ----

/// The most lines a function in `src/plan/` may have outside `#[cfg(test)]` code, from its
/// `fn` line to its closing brace: a rule that needs more is several named steps.
const PLAN_FN_LINES: usize = 80;

/// Every function with a body in blanked code: name, first line, length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let toks = tokens(code);
    let mut out = Vec::new();
    for k in 0..toks.len() {
        if toks[k].0 != ident("fn") {
            continue;
        }
        let Some((Tok::Ident(name), _)) = toks.get(k + 1) else {
            continue;
        };
        let mut j = k + 2;
        let mut nest = 0i32;
        while j < toks.len() {
            match toks[j].0 {
                Tok::Punct('(' | '[') => nest += 1,
                Tok::Punct(')' | ']') => nest -= 1,
                Tok::Punct(';' | '{') if nest == 0 => break,
                _ => {}
            }
            j += 1;
        }
        if !is(toks.get(j), &Tok::Punct('{')) {
            continue;
        }
        let mut depth = 0;
        while j < toks.len() {
            match toks[j].0 {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let end = toks.get(j).map_or(toks[k].1, |t| t.1);
        out.push((name.clone(), toks[k].1, end - toks[k].1 + 1));
    }
    out
}

#[test]
fn no_function_in_plan_is_longer_than_80_lines() {
    let files = layer_files();
    let mut longest: BTreeMap<&str, (usize, String)> = BTreeMap::new();
    let mut long = Vec::new();
    let mut seen = 0;
    for f in &files {
        for (name, line, lines) in functions(&f.code) {
            seen += 1;
            let at = format!("{}:{line} fn {name}", f.rel);
            let top = longest.entry(f.folder[0].as_str()).or_default();
            if lines > top.0 {
                *top = (lines, at.clone());
            }
            if f.folder[0] == "plan" && lines > PLAN_FN_LINES {
                long.push(format!("src/{at}: {lines} lines"));
            }
        }
    }
    for (layer, (lines, at)) in &longest {
        println!("longest in {layer}/: src/{at}, {lines} lines");
    }
    assert!(
        seen > 300,
        "only {seen} functions seen: is the scan broken?"
    );
    assert!(
        long.is_empty(),
        "functions in src/plan/ longer than {PLAN_FN_LINES} lines (split them into named \
         steps):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_scan_counts_lines_and_skips_literals_and_tests() {
    let code = "fn a(x: [u8; 2]) -> u8 {\n    let s = \"}}\";\n    let c = '}';\n    x[0]\n}\n\
                trait T { fn decl(&self); }\n\
                #[cfg(test)]\nmod tests {\n    fn hidden() {}\n}\n\
                fn b<'a>(s: &'a str) { /* } */ }\n";
    let found = functions(&without_tests(&code_only(code)));
    assert_eq!(found, [("a".to_string(), 1, 5), ("b".to_string(), 11, 1)]);
}

/// `println!` and `print!` panic on a closed stdout: only src/cli/stdout.rs writes to it.
#[test]
fn nothing_else_in_src_prints_to_stdout() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for f in &all {
        if f.ends_with("cli/stdout.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            // `eprintln!` and `eprint!` (stderr) are fine.
            if ["println!", "print!", "stdout()"]
                .iter()
                .any(|m| code.matches(m).count() > code.matches(&format!("e{m}")).count())
            {
                wrong.push(format!("{}:{}: {line}", f.display(), i + 1));
            }
        }
    }
    assert!(all.len() > 20, "the scan looked at {} files", all.len());
    assert!(
        wrong.is_empty(),
        "prints outside cli/stdout.rs:\n{}",
        wrong.join("\n")
    );
}
