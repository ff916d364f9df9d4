//! Conventions of the workspace that a test keeps, not a reviewer's memory:
//! the crates' dependency order, which modules a library makes public, no
//! error cause flattened into a string, no literal default in a clap
//! attribute, and no long function. Each rule reads the sources as text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each workspace crate and the workspace crates it may depend on (normal
/// dependencies). The data path runs shards -> loader -> trainer -> xtask;
/// preprocess writes what the loader reads and so depends on the format,
/// never on the loader; the trainer decodes photos for `predict` without
/// the preprocess pipeline.
const DEPENDENCY_ORDER: &[(&str, &[&str])] = &[
    ("shards", &[]),
    ("decode", &[]),
    ("matv5", &[]),
    ("model", &[]),
    ("synth", &["matv5"]),
    ("loader", &["shards"]),
    ("preprocess", &["shards", "decode", "matv5"]),
    ("trainer", &["shards", "loader", "model", "decode"]),
    (
        "xtask",
        &[
            "shards",
            "decode",
            "synth",
            "loader",
            "preprocess",
            "model",
            "trainer",
        ],
    ),
];

/// The public modules of each library (`pub mod` in its `lib.rs`); every
/// other module is private behind the re-exports of `lib.rs`.
const PUBLIC_MODULES: &[(&str, &[&str])] = &[
    ("shards", &["atomic", "names", "testing"]),
    ("decode", &[]),
    ("matv5", &[]),
    ("synth", &[]),
    ("loader", &[]),
    ("preprocess", &[]),
    ("model", &["input", "ops"]),
    ("trainer", &["checkpoint", "figures", "tensorboard"]),
];

/// The longest a function outside tests may be, in lines.
const MAX_FUNCTION_LINES: usize = 100;

/// Functions allowed over [`MAX_FUNCTION_LINES`], each with its reason.
const LONG_FUNCTIONS: &[(&str, &str, &str)] = &[
    (
        "crates/matv5/src/read.rs",
        "read_matrix_body",
        "one match over MATLAB's array classes (numeric, char, struct, cell), each arm a few lines that read the same element stream",
    ),
    (
        "crates/matv5/src/read.rs",
        "read_mat",
        "the file header and the loop over top-level elements, with their bounds checks in reading order",
    ),
    (
        "crates/preprocess/src/devkit.rs",
        "parse_meta",
        "reads the fields of one struct array in order, each with the check and the error that names it",
    ),
    (
        "crates/synth/src/draw.rs",
        "render",
        "one picture's drawing steps in painting order (background, distractors, object, texture, noise)",
    ),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lies in the workspace root")
        .to_path_buf()
}

/// `(crate name, crate directory)` of every workspace member.
fn members() -> Vec<(String, PathBuf)> {
    let root = workspace_root();
    let mut found = vec![("xtask".to_owned(), root.join("xtask"))];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("Cargo.toml").is_file() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            found.push((name, dir));
        }
    }
    found.sort();
    found
}

/// The names in a `[dependencies]` table of a Cargo.toml.
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_table = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[dependencies]";
            continue;
        }
        if in_table && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                let name = name.trim().trim_end_matches(".workspace").trim();
                if !name.is_empty() {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

/// Every `.rs` file under `dir`, recursively.
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
    out.sort();
    out
}

/// The non-test source files of the workspace with their text, the unit
/// tests at the end of each file (`#[cfg(test)] mod tests`) cut off.
fn library_sources() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    members()
        .into_iter()
        .flat_map(|(_, dir)| rust_files(&dir.join("src")))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            (path.strip_prefix(&root).unwrap().to_path_buf(), text)
        })
        .collect()
}

#[test]
fn crates_depend_only_on_crates_before_them_on_the_data_path() {
    let order: BTreeMap<&str, &[&str]> = DEPENDENCY_ORDER.iter().copied().collect();
    let names: BTreeSet<String> = members().into_iter().map(|(name, _)| name).collect();
    let mut wrong = Vec::new();
    for (name, dir) in members() {
        let Some(allowed) = order.get(name.as_str()) else {
            wrong.push(format!(
                "{name}: a new crate; give it its place in DEPENDENCY_ORDER"
            ));
            continue;
        };
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        for dep in dependencies(&manifest) {
            if names.contains(&dep) && !allowed.contains(&dep.as_str()) {
                wrong.push(format!("{name} depends on {dep}, against the order"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn libraries_make_public_only_the_allowed_modules() {
    let allowed: BTreeMap<&str, &[&str]> = PUBLIC_MODULES.iter().copied().collect();
    let mut wrong = Vec::new();
    for (name, dir) in members() {
        let lib = dir.join("src/lib.rs");
        let Ok(text) = std::fs::read_to_string(&lib) else {
            continue;
        };
        let Some(allowed) = allowed.get(name.as_str()) else {
            wrong.push(format!("{name}: a new library; list its public modules"));
            continue;
        };
        for line in text.lines() {
            if let Some(module) = line.trim().strip_prefix("pub mod ") {
                let module = module.trim_end_matches(';').trim();
                if !allowed.contains(&module) {
                    wrong.push(format!(
                        "{name}: `pub mod {module}` is not in PUBLIC_MODULES"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The text from `open` (an opening bracket) to its matching close.
fn balanced(text: &str, open: usize) -> &str {
    let bytes = text.as_bytes();
    let (o, c) = match bytes[open] {
        b'(' => (b'(', b')'),
        _ => (b'{', b'}'),
    };
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if b == o {
            depth += 1;
        } else if b == c {
            depth -= 1;
            if depth == 0 {
                return &text[open..=i];
            }
        }
    }
    &text[open..]
}

#[test]
fn error_variants_keep_their_causes_instead_of_their_text() {
    let mut wrong = Vec::new();
    for (path, text) in library_sources() {
        let mut at = 0;
        while let Some(found) = text[at..].find("Error::") {
            let start = at + found;
            at = start + "Error::".len();
            let rest = &text[at..];
            let variant_len = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let after = at + variant_len;
            let Some(open) = text[after..]
                .find(|c: char| !c.is_whitespace())
                .map(|i| after + i)
                .filter(|&i| matches!(text.as_bytes()[i], b'(' | b'{'))
            else {
                continue;
            };
            let body = balanced(&text, open);
            for cause in ["e", "err", "error", "source"] {
                for flat in [
                    format!("{cause}.to_string()"),
                    format!("{cause}.into().to_string()"),
                ] {
                    let hit = body.match_indices(&flat).any(|(i, _)| {
                        i == 0
                            || !body.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && body.as_bytes()[i - 1] != b'_'
                                && body.as_bytes()[i - 1] != b'.'
                    });
                    if hit {
                        let line = text[..start].lines().count();
                        wrong.push(format!(
                            "{}:{line}: `{flat}` flattens a cause into an error variant; keep it as its #[source]",
                            path.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn clap_defaults_are_named_constants_not_literals() {
    let mut wrong = Vec::new();
    for (path, text) in library_sources() {
        if !path.starts_with("xtask") {
            continue;
        }
        let mut previous_doc = String::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with("///") {
                previous_doc.push_str(line);
                continue;
            }
            if line.starts_with("#[arg(") {
                for key in ["default_value_t", "default_value"] {
                    let Some(value) = line.split(key).nth(1) else {
                        continue;
                    };
                    let value = value.trim_start().trim_start_matches('=').trim_start();
                    let literal = value.starts_with('"')
                        || value.starts_with(|c: char| c.is_ascii_digit() || c == '-')
                        || value.starts_with("true")
                        || value.starts_with("false");
                    if literal {
                        wrong.push(format!(
                            "{}:{}: a literal {key}; name the default in the library that owns it",
                            path.display(),
                            n + 1
                        ));
                    }
                    break;
                }
                if previous_doc.contains("[default:") {
                    wrong.push(format!(
                        "{}:{}: the help restates a default in prose; clap shows the real one",
                        path.display(),
                        n + 1
                    ));
                }
            }
            if !line.starts_with("#[") {
                previous_doc.clear();
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `(name, first line, lines)` of every function in `text`, found by its
/// `fn` keyword at the start of a line and measured to its closing brace.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let signature = [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "unsafe ",
            "async ",
        ]
        .iter()
        .fold(trimmed, |s, prefix| s.strip_prefix(prefix).unwrap_or(s));
        let Some(rest) = signature.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let offset: usize = lines[..n].iter().map(|l| l.len() + 1).sum();
        let Some(body) = text[offset..].find(['{', ';']).map(|i| offset + i) else {
            continue;
        };
        if text.as_bytes()[body] == b';' {
            continue; // a declaration without a body
        }
        let len = balanced(text, body).lines().count();
        found.push((name, n + 1, len));
    }
    found
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut wrong = Vec::new();
    let excused: BTreeSet<(&str, &str)> = LONG_FUNCTIONS
        .iter()
        .map(|&(file, name, _reason)| (file, name))
        .collect();
    for (path, text) in library_sources() {
        for (name, line, len) in functions(&text) {
            let file = path.to_string_lossy();
            if len > MAX_FUNCTION_LINES && !excused.contains(&(file.as_ref(), name.as_str())) {
                wrong.push(format!(
                    "{file}:{line}: fn {name} is {len} lines (at most {MAX_FUNCTION_LINES}): split it into named steps"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_function_measure_counts_to_the_closing_brace() {
    let text = "fn a() {\n    let s = \"x\";\n    if s.is_empty() {\n    }\n}\n\npub(crate) fn b(x: u8) -> u8 {\n    x\n}\nfn c();\n";
    assert_eq!(
        functions(text),
        [("a".to_owned(), 1, 5), ("b".to_owned(), 7, 3)]
    );
}

#[test]
fn public_error_enums_are_non_exhaustive() {
    let mut wrong = Vec::new();
    for (path, text) in library_sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("pub enum ") else {
                continue;
            };
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
            if !name.ends_with("Error") {
                continue;
            }
            let attributes = lines[..n]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("#[") || l.starts_with("///"));
            if !attributes
                .into_iter()
                .any(|l| l.contains("#[non_exhaustive]"))
            {
                wrong.push(format!(
                    "{}:{}: pub enum {name} is not #[non_exhaustive]: a new variant would break its users",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
