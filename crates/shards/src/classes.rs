//! `OUT/classes.tsv`: the class table.

use std::path::Path;

use crate::{write_atomically, ShardError};

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

/// Writes the class table `path` ([`DatasetDir::classes`](crate::DatasetDir::classes):
/// `index<TAB>wnid<TAB>words`, one line per class) whole or not at all
/// ([`write_atomically`]: several processes may write the same table at
/// the same time). Tabs and line breaks inside the words become spaces.
///
/// # Panics
/// If the entries are not numbered 0, 1, 2, ... in order.
pub fn write_classes(path: &Path, classes: &[ClassEntry]) -> Result<(), ShardError> {
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
    Ok(write_atomically(path, text.as_bytes())?)
}

/// Reads the class table `path` ([`DatasetDir::classes`](crate::DatasetDir::classes)) (`index<TAB>wnid<TAB>words`, one line per
/// class). Lines must be numbered 0, 1, 2, ... in order and name a WNID.
pub fn read_classes(path: &Path) -> Result<Vec<ClassEntry>, ShardError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ShardError::io(path, "reading the class table", e))?;
    let mut classes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |problem: String| ShardError::format(path, format!("line {}: {problem}", n + 1));
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
        return Err(ShardError::format(path, "no classes"));
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
        let path = crate::DatasetDir::new(dir.path()).classes();
        write_classes(&path, &classes).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "0\tn01440764\ttench, Tinca tinca\n1\tn01443537\tgoldfish Carassius\n"
        );
        let back = read_classes(&path).unwrap();
        assert_eq!(back[0].words, "tench, Tinca tinca");
        assert_eq!(back[1].words, "goldfish Carassius");
        assert_eq!(back[1].wnid, "n01443537");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["classes.tsv"], "no temporary file left behind");

        std::fs::write(&path, "0\tn1\ta\n2\tn2\tb\n").unwrap();
        let msg = read_classes(&path).unwrap_err().to_string();
        assert!(
            msg.contains("classes.tsv") && msg.contains("line 2"),
            "{msg}"
        );
    }
}
