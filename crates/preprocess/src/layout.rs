//! Which of the layouts ImageNet is downloaded in a set of `--from` paths
//! holds, and where each split's images and class names are in it.
//!
//! - the official files: `ILSVRC2012_img_train.tar`, `ILSVRC2012_img_val.tar`,
//!   `ILSVRC2012_devkit_t12.tar.gz`;
//! - the extracted tree: `train/<wnid>/*.JPEG`, `val/*.JPEG` (and the devkit);
//! - Kaggle's ImageNet Object Localization Challenge, as a directory or the
//!   zip: `ILSVRC/Data/CLS-LOC/{train,val}`, `LOC_val_solution.csv`,
//!   `LOC_synset_mapping.txt`;
//! - Hugging Face `imagenet-1k` as tar.gz (`train_images_<k>.tar.gz`,
//!   `val_images.tar.gz`) or parquet (`train-*.parquet`,
//!   `validation-*.parquet`), directly or under `data/`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::kaggle;
use crate::source::SplitInput;

/// File name of the official train tar.
pub const OFFICIAL_TRAIN_TAR: &str = "ILSVRC2012_img_train.tar";
/// File name of the official val tar.
pub const OFFICIAL_VAL_TAR: &str = "ILSVRC2012_img_val.tar";
/// File name of the devkit.
pub const OFFICIAL_DEVKIT: &str = "ILSVRC2012_devkit_t12.tar.gz";
/// Hugging Face's val archive.
pub const HF_VAL_TAR_GZ: &str = "val_images.tar.gz";
/// Hugging Face's class list beside the data (`IMAGENET2012_CLASSES`).
pub const HF_CLASSES_PY: &str = "classes.py";

/// The ILSVRC-2012 classes (see the file's header for its source).
const ILSVRC2012_CLASSES: &str = include_str!("../data/ilsvrc2012_classes.txt");

/// The layouts `--from` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum LayoutKind {
    /// The three files of image-net.org.
    Official,
    /// The official files extracted: `train/<wnid>/`, `val/`.
    ExtractedTree,
    /// Kaggle's ImageNet Object Localization Challenge (directory or zip).
    Kaggle,
    /// Hugging Face `imagenet-1k`, tar.gz archives.
    HfTar,
    /// Hugging Face `imagenet-1k`, parquet files.
    HfParquet,
}

impl LayoutKind {
    /// Short name, as `synth --layout` takes it.
    pub fn name(self) -> &'static str {
        match self {
            LayoutKind::Official => "official",
            LayoutKind::ExtractedTree => "tree",
            LayoutKind::Kaggle => "kaggle",
            LayoutKind::HfTar => "hf-tar",
            LayoutKind::HfParquet => "hf-parquet",
        }
    }

    /// What the layout is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            LayoutKind::Official => "the official ILSVRC-2012 files",
            LayoutKind::ExtractedTree => "the extracted ILSVRC-2012 tree",
            LayoutKind::Kaggle => "Kaggle's ImageNet Object Localization Challenge",
            LayoutKind::HfTar => "Hugging Face imagenet-1k, tar.gz",
            LayoutKind::HfParquet => "Hugging Face imagenet-1k, parquet",
        }
    }
}

impl std::fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// A layout found in the `--from` paths, resolved to each split's input.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Which layout.
    pub kind: LayoutKind,
    /// Where the train images are.
    pub train: Option<SplitInput>,
    /// Where the val images are.
    pub val: Option<SplitInput>,
    /// The devkit, when the paths hold one.
    pub devkit: Option<PathBuf>,
    /// The class list the layout ships (`(wnid, words)` sorted by WNID), for
    /// the layouts that ship one (Kaggle, Hugging Face).
    pub classes: Option<Vec<(String, String)>>,
    /// Kaggle: the val images' WNIDs from `LOC_val_solution.csv`, by image id.
    pub val_wnids: Option<HashMap<String, String>>,
}

/// The `--from` paths do not hold a layout that can be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A path could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A path holds no layout this program knows.
    #[error("{}: no ImageNet layout found (expected the official files, an extracted train/ and val/ tree, Kaggle's ILSVRC/ directory or zip, or Hugging Face's train_images_<k>.tar.gz or train-*.parquet files)", .0.display())]
    Unknown(PathBuf),
    /// The paths hold more than one layout.
    #[error("ambiguous input: {0}; give the files of one layout")]
    Ambiguous(String),
    /// A part of the layout is missing.
    #[error("incomplete {layout} layout: {missing}")]
    Incomplete {
        /// The layout.
        layout: LayoutKind,
        /// What is missing.
        missing: String,
    },
    /// A file of the layout could not be parsed.
    #[error("{file}, line {line}: {message}")]
    BadLine {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The Kaggle zip could not be read.
    #[error("{path}: {source}")]
    Zip {
        /// The zip file.
        path: PathBuf,
        /// The zip reader's error.
        source: zip::result::ZipError,
    },
    /// A text member of the Kaggle zip could not be read.
    #[error("{}/{member}: {source}", path.display())]
    ZipMember {
        /// The zip file.
        path: PathBuf,
        /// The member.
        member: String,
        /// What went wrong (bad deflate data or CRC, not UTF-8).
        source: std::io::Error,
    },
    /// A text member of the Kaggle zip inflates to more than it may hold.
    #[error("{}/{member}: inflates to more than {limit} bytes", path.display())]
    MemberTooLarge {
        /// The zip file.
        path: PathBuf,
        /// The member.
        member: String,
        /// The most bytes read ([`crate::KAGGLE_MAX_TEXT_BYTES`]).
        limit: u64,
    },
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What one path holds.
#[derive(Debug)]
enum Piece {
    OfficialTrain(PathBuf),
    OfficialVal(PathBuf),
    Devkit(PathBuf),
    Tree {
        train: Option<PathBuf>,
        val: Option<PathBuf>,
    },
    KaggleDir(PathBuf),
    KaggleZip(PathBuf),
    HfTrainTar(u32, PathBuf),
    HfValTar(PathBuf),
    HfParquet(PieceSplit, PathBuf),
    HfClasses(PathBuf),
}

/// A split, for pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceSplit {
    Train,
    Val,
}

impl Piece {
    fn kind(&self) -> Option<LayoutKind> {
        Some(match self {
            Piece::OfficialTrain(_) | Piece::OfficialVal(_) => LayoutKind::Official,
            Piece::Devkit(_) | Piece::HfClasses(_) => return None,
            Piece::Tree { .. } => LayoutKind::ExtractedTree,
            Piece::KaggleDir(_) | Piece::KaggleZip(_) => LayoutKind::Kaggle,
            Piece::HfTrainTar(..) | Piece::HfValTar(_) => LayoutKind::HfTar,
            Piece::HfParquet(..) => LayoutKind::HfParquet,
        })
    }
}

/// `train_images_<k>.tar.gz` -> `k`.
fn hf_train_tar_number(name: &str) -> Option<u32> {
    let k = name
        .strip_prefix("train_images_")?
        .strip_suffix(".tar.gz")?;
    (!k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        .then(|| k.parse().ok())
        .flatten()
}

/// A parquet file's split from its name (`train-*`, `validation-*`).
fn parquet_split(name: &str) -> Option<PieceSplit> {
    if !name.ends_with(".parquet") {
        return None;
    }
    if name.starts_with("train-") || name.starts_with("train.") {
        Some(PieceSplit::Train)
    } else if name.starts_with("validation-") || name.starts_with("validation.") {
        Some(PieceSplit::Val)
    } else {
        None
    }
}

/// What a file is, by its name.
fn file_piece(path: &Path) -> Option<Piece> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let p = path.to_path_buf();
    Some(match name.as_str() {
        OFFICIAL_TRAIN_TAR => Piece::OfficialTrain(p),
        OFFICIAL_VAL_TAR => Piece::OfficialVal(p),
        OFFICIAL_DEVKIT => Piece::Devkit(p),
        HF_VAL_TAR_GZ => Piece::HfValTar(p),
        HF_CLASSES_PY => Piece::HfClasses(p),
        n if n.ends_with(".zip") => Piece::KaggleZip(p),
        n => {
            if let Some(k) = hf_train_tar_number(n) {
                Piece::HfTrainTar(k, p)
            } else {
                Piece::HfParquet(parquet_split(n)?, p)
            }
        }
    })
}

/// What a directory holds: its files by name, `data/` for Hugging Face,
/// `ILSVRC/` for Kaggle, `train/` and `val/` for the tree.
fn dir_pieces(dir: &Path) -> Result<Vec<Piece>, LayoutError> {
    let mut pieces = Vec::new();
    if dir.join("ILSVRC").join("Data").join("CLS-LOC").is_dir() {
        pieces.push(Piece::KaggleDir(dir.to_path_buf()));
    }
    let train = dir.join("train");
    let val = dir.join("val");
    if train.is_dir() || val.is_dir() {
        pieces.push(Piece::Tree {
            train: train.is_dir().then_some(train),
            val: val.is_dir().then_some(val),
        });
    }
    for d in [dir.to_path_buf(), dir.join("data")] {
        if !d.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        for e in std::fs::read_dir(&d).map_err(io_err(&d))? {
            let path = e.map_err(io_err(&d))?.path();
            if path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        // A zip in a directory is not taken for Kaggle's: give it itself.
        pieces.extend(
            files
                .iter()
                .filter_map(|f| file_piece(f))
                .filter(|p| !matches!(p, Piece::KaggleZip(_))),
        );
    }
    Ok(pieces)
}

/// Finds the layout the `--from` paths hold; refuses paths of several
/// layouts, and layouts with a part missing, naming it.
pub fn detect_layout(paths: &[PathBuf]) -> Result<Layout, LayoutError> {
    let mut pieces = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io_err(p))?;
        let found = if meta.is_dir() {
            dir_pieces(p)?
        } else {
            file_piece(p).into_iter().collect()
        };
        if found.is_empty() {
            return Err(LayoutError::Unknown(p.clone()));
        }
        pieces.extend(found);
    }
    let kinds: BTreeSet<LayoutKind> = pieces.iter().filter_map(Piece::kind).collect();
    let kind = match kinds.len() {
        // Only a devkit (or a class list): refused below, no images.
        0 => LayoutKind::Official,
        1 => *kinds.first().expect("one"),
        _ => {
            let found: Vec<&str> = kinds.iter().map(|k| k.describe()).collect();
            return Err(LayoutError::Ambiguous(format!(
                "the paths hold {}",
                found.join(" and ")
            )));
        }
    };
    assemble(kind, pieces)
}

fn duplicate(kind: LayoutKind, what: &str) -> LayoutError {
    LayoutError::Ambiguous(format!("{what} is given twice ({kind})"))
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    kind: LayoutKind,
    what: &str,
) -> Result<(), LayoutError> {
    if slot.is_some() {
        return Err(duplicate(kind, what));
    }
    *slot = Some(value);
    Ok(())
}

/// Builds the layout of `kind` from its pieces.
fn assemble(kind: LayoutKind, pieces: Vec<Piece>) -> Result<Layout, LayoutError> {
    let mut layout = Layout {
        kind,
        train: None,
        val: None,
        devkit: None,
        classes: None,
        val_wnids: None,
    };
    let mut hf_train: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let mut hf_val: Option<PathBuf> = None;
    let mut parquet: [Vec<PathBuf>; 2] = [Vec::new(), Vec::new()];
    let mut hf_classes: Option<PathBuf> = None;
    for piece in pieces {
        match piece {
            Piece::Devkit(p) => set_once(&mut layout.devkit, p, kind, OFFICIAL_DEVKIT)?,
            Piece::HfClasses(p) => {
                if hf_classes.is_none() {
                    hf_classes = Some(p);
                }
            }
            Piece::OfficialTrain(p) => set_once(
                &mut layout.train,
                SplitInput::Tar(p),
                kind,
                OFFICIAL_TRAIN_TAR,
            )?,
            Piece::OfficialVal(p) => {
                set_once(&mut layout.val, SplitInput::Tar(p), kind, OFFICIAL_VAL_TAR)?
            }
            Piece::Tree { train, val } => {
                if let Some(t) = train {
                    set_once(&mut layout.train, SplitInput::Dir(t), kind, "train/")?;
                }
                if let Some(v) = val {
                    set_once(&mut layout.val, SplitInput::Dir(v), kind, "val/")?;
                }
            }
            Piece::KaggleDir(dir) => {
                if layout.classes.is_some() {
                    return Err(duplicate(kind, "the Kaggle layout"));
                }
                kaggle::resolve_dir(&dir, &mut layout)?;
            }
            Piece::KaggleZip(zip) => {
                if layout.classes.is_some() {
                    return Err(duplicate(kind, "the Kaggle layout"));
                }
                kaggle::resolve_zip(&zip, &mut layout)?;
            }
            Piece::HfTrainTar(k, p) => {
                if hf_train.insert(k, p).is_some() {
                    return Err(duplicate(kind, &format!("train_images_{k}.tar.gz")));
                }
            }
            Piece::HfValTar(p) => set_once(&mut hf_val, p, kind, HF_VAL_TAR_GZ)?,
            Piece::HfParquet(split, p) => parquet[(split == PieceSplit::Val) as usize].push(p),
        }
    }
    match kind {
        LayoutKind::HfTar => {
            if let Some((&last, _)) = hf_train.iter().next_back() {
                if let Some(k) = (0..=last).find(|k| !hf_train.contains_key(k)) {
                    return Err(LayoutError::Incomplete {
                        layout: kind,
                        missing: format!("train_images_{k}.tar.gz (train_images_0 to _{last} are numbered without gaps)"),
                    });
                }
                layout.train = Some(SplitInput::HfTars(hf_train.into_values().collect()));
            }
            layout.val = hf_val.map(|v| SplitInput::HfTars(vec![v]));
        }
        LayoutKind::HfParquet => {
            let [train, val] = parquet;
            for files in [&train, &val] {
                check_parquet_shards(files)?;
            }
            layout.train = (!train.is_empty()).then(|| SplitInput::HfParquet(sorted(train)));
            layout.val = (!val.is_empty()).then(|| SplitInput::HfParquet(sorted(val)));
        }
        _ => {}
    }
    if matches!(kind, LayoutKind::HfTar | LayoutKind::HfParquet) {
        layout.classes = Some(match hf_classes {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
                parse_classes_py(&p.display().to_string(), &text)?
            }
            None => ilsvrc2012_classes(),
        });
    }
    if layout.train.is_none() && layout.val.is_none() {
        return Err(LayoutError::Incomplete {
            layout: kind,
            missing: "images: neither a train nor a val split was found".into(),
        });
    }
    Ok(layout)
}

fn sorted(mut v: Vec<PathBuf>) -> Vec<PathBuf> {
    v.sort();
    v
}

/// `train-00003-of-00294.parquet`: every one of the 294 must be given.
fn check_parquet_shards(files: &[PathBuf]) -> Result<(), LayoutError> {
    let mut count = None;
    let mut have = std::collections::BTreeSet::new();
    let mut prefix = String::new();
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let stem = name.trim_end_matches(".parquet");
        let mut parts = stem.rsplitn(4, '-');
        let (Some(n), Some("of"), Some(i), Some(p)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(n), Ok(i)) = (n.parse::<u32>(), i.parse::<u32>()) else {
            continue;
        };
        count = Some(n);
        prefix = p.to_string();
        have.insert(i);
    }
    if let Some(n) = count {
        if let Some(i) = (0..n).find(|i| !have.contains(i)) {
            return Err(LayoutError::Incomplete {
                layout: LayoutKind::HfParquet,
                missing: format!("{prefix}-{i:05}-of-{n:05}.parquet"),
            });
        }
    }
    Ok(())
}

/// `<wnid> <words>` lines (Kaggle's `LOC_synset_mapping.txt`, and the
/// carried list), sorted by WNID; `#` lines are comments.
pub(crate) fn parse_synset_lines(
    file: &str,
    text: &str,
) -> Result<Vec<(String, String)>, LayoutError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (wnid, words) = line.split_once(' ').unwrap_or((line, ""));
        if !is_wnid(wnid) {
            return Err(LayoutError::BadLine {
                file: file.to_string(),
                line: i + 1,
                message: format!("`{wnid}` is not a WordNet id (nNNNNNNNN)"),
            });
        }
        out.push((wnid.to_string(), words.to_string()));
    }
    finish_class_list(file, out)
}

fn finish_class_list(
    file: &str,
    mut out: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, LayoutError> {
    out.sort();
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(LayoutError::BadLine {
            file: file.to_string(),
            line: 0,
            message: format!("class {} is listed twice", w[0].0),
        });
    }
    Ok(out)
}

/// `n` and eight digits.
pub(crate) fn is_wnid(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The carried ILSVRC-2012 class list.
pub fn ilsvrc2012_classes() -> Vec<(String, String)> {
    parse_synset_lines("ilsvrc2012_classes.txt", ILSVRC2012_CLASSES)
        .expect("the carried class list parses")
}

/// Hugging Face's `classes.py`: `"nXXXXXXXX": "words",` entries of
/// `IMAGENET2012_CLASSES` (either quote).
pub(crate) fn parse_classes_py(
    file: &str,
    text: &str,
) -> Result<Vec<(String, String)>, LayoutError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim().trim_start_matches('(');
        let Some(q) = t.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let rest = &t[1..];
        let Some(end) = rest.find(q) else { continue };
        let wnid = &rest[..end];
        if !is_wnid(wnid) {
            continue;
        }
        let after = rest[end + 1..]
            .trim_start()
            .trim_start_matches([':', ','])
            .trim_start();
        let Some(q2) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return Err(LayoutError::BadLine {
                file: file.to_string(),
                line: i + 1,
                message: format!("no quoted words after {wnid}"),
            });
        };
        let body = &after[1..];
        let Some(end2) = body.find(q2) else {
            return Err(LayoutError::BadLine {
                file: file.to_string(),
                line: i + 1,
                message: format!("unterminated words of {wnid}"),
            });
        };
        out.push((wnid.to_string(), body[..end2].to_string()));
    }
    if out.is_empty() {
        return Err(LayoutError::BadLine {
            file: file.to_string(),
            line: 0,
            message: "no \"nXXXXXXXX\": \"words\" entries".into(),
        });
    }
    finish_class_list(file, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_list_has_the_thousand_classes() {
        let c = ilsvrc2012_classes();
        assert_eq!(c.len(), 1000);
        assert_eq!(c[0], ("n01440764".into(), "tench, Tinca tinca".into()));
        assert_eq!(c[999].0, "n15075141");
    }

    #[test]
    fn classes_py_entries_parse() {
        let text = "from collections import OrderedDict\nIMAGENET2012_CLASSES = OrderedDict(\n    {\n        \"n01443537\": \"goldfish, Carassius auratus\",\n        \"n01440764\": \"tench, Tinca tinca\",\n    }\n)\n";
        let c = parse_classes_py("classes.py", text).unwrap();
        assert_eq!(c[0].0, "n01440764");
        assert_eq!(c[1].1, "goldfish, Carassius auratus");
    }

    #[test]
    fn hf_names() {
        assert_eq!(hf_train_tar_number("train_images_3.tar.gz"), Some(3));
        assert_eq!(hf_train_tar_number("train_images_.tar.gz"), None);
        assert_eq!(
            parquet_split("validation-00000-of-00014.parquet"),
            Some(PieceSplit::Val)
        );
    }
}
