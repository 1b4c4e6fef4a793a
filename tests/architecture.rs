//! The layering rule of docs/architecture.md, checked on the source: a file in one layer's
//! folder names only its own layer and the layers below it (`crate::<layer>`), so imports
//! go down and no circle can come back unnoticed.

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
