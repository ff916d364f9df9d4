//! `OUT/classes.tsv`: the class table.

use std::io::Write;
use std::path::Path;

use super::{classes_path, unique_tmp_path};
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

/// Writes `out_dir/classes.tsv` (`index<TAB>wnid<TAB>words`, one line per
/// class) through a temporary file renamed when complete (its own
/// [`unique_tmp_path`]: several processes may write the same table at the
/// same time). Tabs and line
/// breaks inside the words become spaces.
///
/// # Panics
/// If the entries are not numbered 0, 1, 2, ... in order.
pub fn write_classes(out_dir: &Path, classes: &[ClassEntry]) -> Result<(), LoaderError> {
    let path = classes_path(out_dir);
    let tmp = unique_tmp_path(&path);
    let mut text = String::new();
    for (i, c) in classes.iter().enumerate() {
        assert_eq!(c.index, i, "class entries must be numbered in order");
        let words: String = c
            .words
            .chars()
            .map(|ch| {
                if matches!(ch, '\t' | '\n' | '\r') {
                    ' '
                } else {
                    ch
                }
            })
            .collect();
        text.push_str(&format!("{}\t{}\t{}\n", c.index, c.wnid, words));
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| LoaderError::io(&tmp, "writing the class table", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| LoaderError::io(&path, "renaming into place", e))
}

/// Reads `out_dir/classes.tsv` (`index<TAB>wnid<TAB>words`, one line per
/// class). Lines must be numbered 0, 1, 2, ... in order and name a WNID.
pub fn read_classes(out_dir: &Path) -> Result<Vec<ClassEntry>, LoaderError> {
    let path = classes_path(out_dir);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| LoaderError::io(&path, "reading the class table", e))?;
    let mut classes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad =
            |problem: String| LoaderError::format(&path, format!("line {}: {problem}", n + 1));
        let mut fields = line.splitn(3, '\t');
        let (index, wnid, words) = match (fields.next(), fields.next(), fields.next()) {
            (Some(i), Some(w), words) => (i, w, words.unwrap_or("")),
            _ => return Err(bad("expected index<TAB>wnid<TAB>words".into())),
        };
        let index: usize = index
            .trim()
            .parse()
            .map_err(|_| bad(format!("class index {index:?} is not a number")))?;
        if index != classes.len() {
            return Err(bad(format!(
                "class index {index}, expected {}",
                classes.len()
            )));
        }
        if wnid.is_empty() {
            return Err(bad("empty WNID".into()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_cleans_words_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let classes = vec![
            ClassEntry {
                index: 0,
                wnid: "n01440764".into(),
                words: "tench,\tTinca tinca".into(),
            },
            ClassEntry {
                index: 1,
                wnid: "n01443537".into(),
                words: "goldfish\nCarassius".into(),
            },
        ];
        write_classes(dir.path(), &classes).unwrap();
        assert_eq!(
            std::fs::read_to_string(classes_path(dir.path())).unwrap(),
            "0\tn01440764\ttench, Tinca tinca\n1\tn01443537\tgoldfish Carassius\n"
        );
        let back = read_classes(dir.path()).unwrap();
        assert_eq!(back[0].words, "tench, Tinca tinca");
        assert_eq!(back[1].words, "goldfish Carassius");
        assert_eq!(back[1].wnid, "n01443537");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["classes.tsv"], "no temporary file left behind");

        std::fs::write(classes_path(dir.path()), "0\tn1\ta\n2\tn2\tb\n").unwrap();
        let msg = read_classes(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("classes.tsv") && msg.contains("line 2"),
            "{msg}"
        );
    }
}
