//! `OUT/classes.tsv`: the class table.

use std::path::Path;

use crate::LoaderError;

/// One line of `classes.tsv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassEntry {
    /// The class index used as label (0..C-1).
    pub index: usize,
    /// The WordNet id, e.g. `n01440764`.
    pub wnid: String,
    /// The human-readable words, e.g. `tench, Tinca tinca`.
    pub words: String,
}

/// Reads `out_dir/classes.tsv` (`index<TAB>wnid<TAB>words`, one line per
/// class). Lines must be numbered 0, 1, 2, ... in order.
pub fn read_classes(out_dir: &Path) -> Result<Vec<ClassEntry>, LoaderError> {
    let path = out_dir.join("classes.tsv");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| LoaderError::io(&path, "reading the class table", e))?;
    let mut classes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (index, wnid, words) = match (fields.next(), fields.next(), fields.next()) {
            (Some(i), Some(w), words) => (i, w, words.unwrap_or("")),
            _ => {
                return Err(LoaderError::format(
                    &path,
                    format!("line {}: expected index<TAB>wnid<TAB>words", n + 1),
                ));
            }
        };
        let index: usize = index.trim().parse().map_err(|_| {
            LoaderError::format(
                &path,
                format!("line {}: class index {index:?} is not a number", n + 1),
            )
        })?;
        if index != classes.len() {
            return Err(LoaderError::format(
                &path,
                format!(
                    "line {}: class index {index}, expected {}",
                    n + 1,
                    classes.len()
                ),
            ));
        }
        classes.push(ClassEntry {
            index,
            wnid: wnid.to_owned(),
            words: words.trim_end_matches('\r').to_owned(),
        });
    }
    if classes.is_empty() {
        return Err(LoaderError::format(&path, "no classes"));
    }
    Ok(classes)
}
