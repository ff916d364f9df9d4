//! Kaggle's ImageNet Object Localization Challenge: the directory as
//! unpacked, or the zip as downloaded (read in place: its central directory,
//! then one entry at a time, never extracted).
//!
//! `ILSVRC/Data/CLS-LOC/train/<wnid>/<wnid>_<n>.JPEG`,
//! `ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_<8 digits>.JPEG`,
//! `LOC_val_solution.csv` (`ImageId,PredictionString`, the first word of
//! which is the val image's WNID) and `LOC_synset_mapping.txt`
//! (`<wnid> <words>` lines).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::layout::{io_err, is_wnid, parse_synset_lines, Layout, LayoutError, LayoutKind};
use crate::source::SplitInput;

/// The class list.
pub const SYNSET_MAPPING: &str = "LOC_synset_mapping.txt";
/// The val ground truth.
pub const VAL_SOLUTION: &str = "LOC_val_solution.csv";
/// Where the images are, below the layout's root.
pub const IMAGES: &str = "ILSVRC/Data/CLS-LOC";
/// Largest `LOC_synset_mapping.txt` or `LOC_val_solution.csv` read from the
/// zip (Kaggle's are 31 KB and 2.6 MB): a member inflating to more is
/// refused, so that a deflate bomb cannot take the memory.
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

fn missing(what: String) -> LayoutError {
    LayoutError::Incomplete {
        layout: LayoutKind::Kaggle,
        missing: what,
    }
}

/// `ImageId -> wnid` from `LOC_val_solution.csv`.
pub(crate) fn parse_val_solution(
    file: &str,
    text: &str,
) -> Result<HashMap<String, String>, LayoutError> {
    let bad = |line: usize, message: String| LayoutError::BadLine {
        file: file.to_string(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h))
            if h.trim_end_matches('\r').trim_start_matches('\u{feff}')
                == "ImageId,PredictionString" => {}
        _ => return Err(bad(1, "the header is not ImageId,PredictionString".into())),
    }
    let mut map = HashMap::new();
    for (i, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (id, prediction) = line
            .split_once(',')
            .ok_or_else(|| bad(i + 1, "no comma".into()))?;
        let wnid = prediction.split_whitespace().next().unwrap_or("");
        if !is_wnid(wnid) {
            return Err(bad(
                i + 1,
                format!("PredictionString does not start with a WordNet id: `{prediction}`"),
            ));
        }
        if map.insert(id.to_string(), wnid.to_string()).is_some() {
            return Err(bad(i + 1, format!("{id} has two rows")));
        }
    }
    Ok(map)
}

/// The image id of a val file name (`ILSVRC2012_val_00000001.JPEG` ->
/// `ILSVRC2012_val_00000001`).
pub(crate) fn image_id(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(stem, _)| stem)
}

/// Refuses val images without a row in the solution.
fn check_val_rows<'a>(
    names: impl Iterator<Item = &'a str>,
    rows: &HashMap<String, String>,
) -> Result<(), LayoutError> {
    for name in names {
        if !rows.contains_key(image_id(name)) {
            return Err(missing(format!(
                "the val image {name} has no row in {VAL_SOLUTION}"
            )));
        }
    }
    Ok(())
}

/// The Kaggle directory `root`.
pub(crate) fn resolve_dir(root: &Path, layout: &mut Layout) -> Result<(), LayoutError> {
    let images = root.join(IMAGES);
    let mapping = root.join(SYNSET_MAPPING);
    if !mapping.is_file() {
        return Err(missing(format!("{} (the class list)", mapping.display())));
    }
    let text = std::fs::read_to_string(&mapping).map_err(io_err(&mapping))?;
    layout.classes = Some(parse_synset_lines(&mapping.display().to_string(), &text)?);
    let train = images.join("train");
    if train.is_dir() {
        layout.train = Some(SplitInput::Dir(train));
    }
    let val = images.join("val");
    if val.is_dir() {
        let solution = root.join(VAL_SOLUTION);
        if !solution.is_file() {
            return Err(missing(format!("{} (the val labels)", solution.display())));
        }
        let text = std::fs::read_to_string(&solution).map_err(io_err(&solution))?;
        let rows = parse_val_solution(&solution.display().to_string(), &text)?;
        let mut names = Vec::new();
        for e in std::fs::read_dir(&val).map_err(io_err(&val))? {
            let e = e.map_err(io_err(&val))?;
            if e.path().is_file() {
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        check_val_rows(names.iter().map(String::as_str), &rows)?;
        layout.val = Some(SplitInput::Dir(val));
        layout.val_wnids = Some(rows);
    }
    Ok(())
}

fn zip_err(path: &Path) -> impl Fn(zip::result::ZipError) -> LayoutError + '_ {
    move |source| LayoutError::Zip {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a small member of the zip whole: at most [`MAX_TEXT_BYTES`],
/// UTF-8.
fn read_small(
    archive: &mut zip::ZipArchive<File>,
    path: &Path,
    name: &str,
) -> Result<String, LayoutError> {
    let entry = archive.by_name(name).map_err(zip_err(path))?;
    let mut bytes = Vec::new();
    entry
        .take(MAX_TEXT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| LayoutError::ZipMember {
            path: path.to_path_buf(),
            member: name.to_string(),
            source,
        })?;
    if bytes.len() as u64 > MAX_TEXT_BYTES {
        return Err(LayoutError::MemberTooLarge {
            path: path.to_path_buf(),
            member: name.to_string(),
            limit: MAX_TEXT_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| LayoutError::ZipMember {
        path: path.to_path_buf(),
        member: name.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

/// The Kaggle zip as downloaded.
pub(crate) fn resolve_zip(path: &Path, layout: &mut Layout) -> Result<(), LayoutError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err(path))?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    // The layout's root inside the zip: where the class list is.
    let Some(mapping) = names
        .iter()
        .find(|n| n.rsplit('/').next() == Some(SYNSET_MAPPING))
    else {
        return Err(missing(format!(
            "{SYNSET_MAPPING} (the class list) in {}",
            path.display()
        )));
    };
    let root = mapping[..mapping.len() - SYNSET_MAPPING.len()].to_string();
    let label = format!("{}/{mapping}", path.display());
    let text = read_small(&mut archive, path, &mapping.clone())?;
    layout.classes = Some(parse_synset_lines(&label, &text)?);
    let train = format!("{root}{IMAGES}/train/");
    let val = format!("{root}{IMAGES}/val/");
    let is_image = |n: &&String, prefix: &str, depth: usize| {
        n.strip_prefix(prefix)
            .is_some_and(|rest| !rest.ends_with('/') && rest.matches('/').count() == depth)
    };
    if names.iter().any(|n| is_image(&n, &train, 1)) {
        layout.train = Some(SplitInput::KaggleZip {
            zip: path.to_path_buf(),
            prefix: train,
        });
    }
    let val_names: Vec<&str> = names
        .iter()
        .filter(|n| is_image(n, &val, 0))
        .map(|n| &n[val.len()..])
        .collect();
    if !val_names.is_empty() {
        let solution = format!("{root}{VAL_SOLUTION}");
        if !names.contains(&solution) {
            return Err(missing(format!(
                "{VAL_SOLUTION} (the val labels) in {}",
                path.display()
            )));
        }
        let text = read_small(&mut archive, path, &solution)?;
        let rows = parse_val_solution(&format!("{}/{solution}", path.display()), &text)?;
        check_val_rows(val_names.into_iter(), &rows)?;
        layout.val = Some(SplitInput::KaggleZip {
            zip: path.to_path_buf(),
            prefix: val,
        });
        layout.val_wnids = Some(rows);
    }
    Ok(())
}

/// One image of the zip: its index, class directory (train) and name.
pub(crate) struct ZipMember {
    pub index: usize,
    pub wnid: String,
    pub name: String,
    pub size: u64,
}

/// The images under `prefix` in the canonical order: by class directory,
/// then name.
pub(crate) fn zip_members(archive: &mut zip::ZipArchive<File>, prefix: &str) -> Vec<ZipMember> {
    let mut out = Vec::new();
    for index in 0..archive.len() {
        let Some(name) = archive.name_for_index(index) else {
            continue;
        };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() || rest.ends_with('/') {
            continue;
        }
        let (wnid, file) = match rest.split_once('/') {
            Some((w, f)) if !f.contains('/') => (w.to_string(), f.to_string()),
            Some(_) => continue,
            None => (String::new(), rest.to_string()),
        };
        out.push(ZipMember {
            index,
            wnid,
            name: file,
            size: 0,
        });
    }
    for m in &mut out {
        if let Ok(e) = archive.by_index_raw(m.index) {
            m.size = e.size();
        }
    }
    out.sort_by(|a, b| (&a.wnid, &a.name).cmp(&(&b.wnid, &b.name)));
    out
}

/// The zip's path for errors.
pub(crate) fn open_zip(path: &PathBuf) -> Result<zip::ZipArchive<File>, LayoutError> {
    let file = File::open(path).map_err(io_err(path))?;
    zip::ZipArchive::new(file).map_err(zip_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_solution_rows_give_the_first_wnid() {
        let text = "ImageId,PredictionString\r\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\r\n";
        let m = parse_val_solution("LOC_val_solution.csv", text).unwrap();
        assert_eq!(m["ILSVRC2012_val_00008726"], "n02119789");
        assert!(parse_val_solution("x", "Id,Label\n").is_err());
    }
}
