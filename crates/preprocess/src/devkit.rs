//! ILSVRC2012 devkit: class table and validation ground truth.
//!
//! Class index = position of the WNID in the sorted list of the leaf
//! synsets' WNIDs (the PyTorch/TensorFlow convention). Validation labels go
//! from the ground-truth ILSVRC2012_ID through `meta.mat` to the WNID and
//! then to that index: ILSVRC2012_ID - 1 is NOT the class index.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use matv5::MatValue;

/// Suffix of the synset table inside the devkit archive.
pub const META_MAT_SUFFIX: &str = "data/meta.mat";
/// Suffix of the validation ground truth inside the devkit archive.
pub const GROUND_TRUTH_SUFFIX: &str = "data/ILSVRC2012_validation_ground_truth.txt";

/// The most bytes `meta.mat` or the ground truth may hold (the devkit's are
/// under 1 MB); a member whose header claims more is refused unread.
pub const MAX_DEVKIT_MEMBER_BYTES: u64 = 32 << 20;

/// One class (a leaf synset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    /// Position of `wnid` in the sorted list of leaf WNIDs.
    pub index: usize,
    /// WordNet id, e.g. `n01440764`.
    pub wnid: String,
    /// The synset's words, e.g. `tench, Tinca tinca`.
    pub words: String,
    /// The 1-based ILSVRC2012_ID from `meta.mat`; 0 when unknown (e.g. read
    /// back from `classes.tsv`, which does not record it).
    pub ilsvrc_id: u32,
}

/// What the devkit says: the classes and the validation ground truth.
#[derive(Debug, Clone)]
pub struct Devkit {
    /// Leaf synsets sorted by WNID; `classes[i].index == i`.
    pub classes: Vec<ClassInfo>,
    /// 1-based ILSVRC2012_IDs, one per validation image in file-name order
    /// (`val_ground_truth[0]` is the label of `ILSVRC2012_val_00000001`).
    pub val_ground_truth: Vec<u32>,
    id_to_index: HashMap<u32, usize>,
}

/// Errors reading the devkit or a class table; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevkitError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The archive is not a readable tar.gz.
    #[error("{path}: not a readable tar.gz archive: {}{source}", .member.as_ref().map(|m| format!("reading member {m}: ")).unwrap_or_default())]
    BadArchive {
        /// The archive.
        path: PathBuf,
        /// The member being read, when the failure was inside one.
        member: Option<String>,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A member's header claims more than [`MAX_DEVKIT_MEMBER_BYTES`].
    #[error("{path}: member {member} claims {size} bytes, more than the {MAX_DEVKIT_MEMBER_BYTES} a devkit file may hold")]
    MemberTooLarge {
        /// The archive.
        path: PathBuf,
        /// The member.
        member: String,
        /// The size its header records.
        size: u64,
    },
    /// A required member is missing from the archive.
    #[error("{path}: no member ending in '{suffix}' (is this ILSVRC2012_devkit_t12.tar.gz?)")]
    MissingMember {
        /// The archive.
        path: PathBuf,
        /// The path suffix looked for.
        suffix: &'static str,
    },
    /// `meta.mat` could not be parsed as a MAT-file.
    #[error("{file}: {source}")]
    Mat {
        /// The member or file.
        file: String,
        /// The parse error.
        source: matv5::MatError,
    },
    /// `meta.mat` parsed, but its content is not what the devkit holds.
    #[error("{file}: {message}")]
    BadMeta {
        /// The member or file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A bad line in the ground truth or a class table.
    #[error("{file}, line {line}: {message}")]
    BadLine {
        /// The member or file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl Devkit {
    /// Builds the devkit from the bytes of `meta.mat` and the text of the
    /// ground-truth file. `meta_name` and `gt_name` are used in errors.
    pub fn from_parts(
        meta_name: &str,
        meta_mat: &[u8],
        gt_name: &str,
        ground_truth: &str,
    ) -> Result<Devkit, DevkitError> {
        let classes = parse_meta(meta_name, meta_mat)?;
        let mut id_to_index = HashMap::with_capacity(classes.len());
        for c in &classes {
            id_to_index.insert(c.ilsvrc_id, c.index);
        }
        let val_ground_truth = parse_ground_truth(gt_name, ground_truth, &id_to_index)?;
        Ok(Devkit {
            classes,
            val_ground_truth,
            id_to_index,
        })
    }

    /// A devkit without classes or ground truth: every label lookup fails.
    pub(crate) fn without_classes() -> Devkit {
        Devkit {
            classes: Vec::new(),
            val_ground_truth: Vec::new(),
            id_to_index: HashMap::new(),
        }
    }

    /// Class index of validation image number `val_number` (1-based, as in
    /// `ILSVRC2012_val_00000001.JPEG`); `None` when out of range.
    pub fn val_label(&self, val_number: u32) -> Option<usize> {
        let id = *self
            .val_ground_truth
            .get((val_number as usize).checked_sub(1)?)?;
        self.class_of_ilsvrc_id(id)
    }

    /// Class index of a leaf synset's ILSVRC2012_ID.
    pub fn class_of_ilsvrc_id(&self, ilsvrc_id: u32) -> Option<usize> {
        self.id_to_index.get(&ilsvrc_id).copied()
    }

    /// Class index of a WNID.
    pub fn class_of_wnid(&self, wnid: &str) -> Option<usize> {
        self.classes
            .binary_search_by(|c| c.wnid.as_str().cmp(wnid))
            .ok()
    }

    /// The sorted leaf WNIDs.
    pub fn wnids(&self) -> Vec<&str> {
        self.classes.iter().map(|c| c.wnid.as_str()).collect()
    }
}

/// Reads `ILSVRC2012_devkit_t12.tar.gz` (streaming; members are matched by
/// path suffix, so a top directory such as `ILSVRC2012_devkit_t12/` is fine).
pub fn read_devkit(path: &Path) -> Result<Devkit, DevkitError> {
    let file = std::fs::File::open(path).map_err(|source| DevkitError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |source: std::io::Error| DevkitError::BadArchive {
        path: path.to_path_buf(),
        member: None,
        source,
    };
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let mut meta: Option<(String, Vec<u8>)> = None;
    let mut gt: Option<(String, Vec<u8>)> = None;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).to_string();
        let slot = if is_member(&name, META_MAT_SUFFIX) {
            &mut meta
        } else if is_member(&name, GROUND_TRUTH_SUFFIX) {
            &mut gt
        } else {
            continue;
        };
        // The size is the header's claim: checked before it is trusted.
        let size = entry.size();
        if size > MAX_DEVKIT_MEMBER_BYTES {
            return Err(DevkitError::MemberTooLarge {
                path: path.to_path_buf(),
                member: name,
                size,
            });
        }
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|source| DevkitError::BadArchive {
                path: path.to_path_buf(),
                member: Some(name.clone()),
                source,
            })?;
        *slot = Some((name, bytes));
        if meta.is_some() && gt.is_some() {
            break;
        }
    }
    let (meta_name, meta_bytes) = meta.ok_or_else(|| DevkitError::MissingMember {
        path: path.to_path_buf(),
        suffix: META_MAT_SUFFIX,
    })?;
    let (gt_name, gt_bytes) = gt.ok_or_else(|| DevkitError::MissingMember {
        path: path.to_path_buf(),
        suffix: GROUND_TRUTH_SUFFIX,
    })?;
    let meta_label = format!("{}:{meta_name}", path.display());
    let gt_label = format!("{}:{gt_name}", path.display());
    let gt_text = String::from_utf8(gt_bytes).map_err(|_| DevkitError::BadLine {
        file: gt_label.clone(),
        line: 0,
        message: "not UTF-8 text".into(),
    })?;
    Devkit::from_parts(&meta_label, &meta_bytes, &gt_label, &gt_text)
}

/// Whether the member path `name` is `suffix` or ends in `/suffix`.
fn is_member(name: &str, suffix: &str) -> bool {
    let name = name.trim_start_matches("./");
    name == suffix || (name.ends_with(suffix) && name[..name.len() - suffix.len()].ends_with('/'))
}

/// The number of a validation file name: `ILSVRC2012_val_00000001.JPEG`
/// gives 1. Any directory prefix and extension are accepted.
pub fn parse_val_number(name: &str) -> Option<u32> {
    let file = name.rsplit(['/', '\\']).next()?;
    let rest = file.strip_prefix("ILSVRC2012_val_")?;
    let digits = match rest.find('.') {
        Some(dot) => &rest[..dot],
        None => rest,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    (n > 0).then_some(n)
}

fn meta_err(file: &str, message: String) -> DevkitError {
    DevkitError::BadMeta {
        file: file.to_string(),
        message,
    }
}

/// Parses `meta.mat` into the sorted leaf classes.
fn parse_meta(file: &str, bytes: &[u8]) -> Result<Vec<ClassInfo>, DevkitError> {
    let mat = matv5::read_mat(bytes).map_err(|source| DevkitError::Mat {
        file: file.to_string(),
        source,
    })?;
    let synsets = mat
        .get("synsets")
        .ok_or_else(|| meta_err(file, "no variable named 'synsets'".into()))?;
    let (fields, elements) = match synsets {
        MatValue::Struct {
            fields, elements, ..
        } => (fields, elements),
        other => {
            return Err(meta_err(
                file,
                format!(
                    "'synsets' is a {}, expected a struct array",
                    other.kind_name()
                ),
            ))
        }
    };
    let col = |name: &str| {
        fields
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| meta_err(file, format!("'synsets' has no field '{name}'")))
    };
    let (f_id, f_wnid, f_words, f_children) = (
        col("ILSVRC2012_ID")?,
        col("WNID")?,
        col("words")?,
        col("num_children")?,
    );
    let number = |i: usize, f: usize, name: &str| -> Result<f64, DevkitError> {
        elements[i][f].as_scalar().ok_or_else(|| {
            meta_err(
                file,
                format!(
                    "synsets({}).{name} is not a numeric scalar (found {} {:?})",
                    i + 1,
                    elements[i][f].kind_name(),
                    elements[i][f].dims()
                ),
            )
        })
    };
    let text = |i: usize, f: usize, name: &str| -> Result<String, DevkitError> {
        elements[i][f].as_str().map(str::to_string).ok_or_else(|| {
            meta_err(
                file,
                format!(
                    "synsets({}).{name} is not text (found {})",
                    i + 1,
                    elements[i][f].kind_name()
                ),
            )
        })
    };
    let mut leaves = Vec::new();
    let mut seen_ids = HashMap::new();
    for i in 0..elements.len() {
        if number(i, f_children, "num_children")? != 0.0 {
            continue;
        }
        let id = number(i, f_id, "ILSVRC2012_ID")?;
        if id < 1.0 || id.fract() != 0.0 || id > u32::MAX as f64 {
            return Err(meta_err(
                file,
                format!(
                    "synsets({}).ILSVRC2012_ID is {id}, expected a positive integer",
                    i + 1
                ),
            ));
        }
        let id = id as u32;
        let wnid = text(i, f_wnid, "WNID")?;
        if wnid.is_empty() {
            return Err(meta_err(file, format!("synsets({}).WNID is empty", i + 1)));
        }
        if let Some(prev) = seen_ids.insert(id, i) {
            return Err(meta_err(
                file,
                format!(
                    "ILSVRC2012_ID {id} is used by synsets({}) and synsets({})",
                    prev + 1,
                    i + 1
                ),
            ));
        }
        leaves.push(ClassInfo {
            index: 0,
            wnid,
            words: text(i, f_words, "words")?,
            ilsvrc_id: id,
        });
    }
    if leaves.is_empty() {
        return Err(meta_err(
            file,
            "no leaf synsets (num_children == 0) in 'synsets'".into(),
        ));
    }
    leaves.sort_by(|a, b| a.wnid.cmp(&b.wnid));
    for w in leaves.windows(2) {
        if w[0].wnid == w[1].wnid {
            return Err(meta_err(file, format!("WNID {} appears twice", w[0].wnid)));
        }
    }
    for (i, c) in leaves.iter_mut().enumerate() {
        c.index = i;
    }
    Ok(leaves)
}

/// Parses the ground truth: one ILSVRC2012_ID per line, each a leaf synset.
fn parse_ground_truth(
    file: &str,
    text: &str,
    id_to_index: &HashMap<u32, usize>,
) -> Result<Vec<u32>, DevkitError> {
    let mut ids = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    // Trailing blank lines are tolerated; blank lines inside are not.
    let used = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |p| p + 1);
    for (i, line) in lines[..used].iter().enumerate() {
        let bad = |message: String| DevkitError::BadLine {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        let t = line.trim();
        let id: u32 = t.parse().map_err(|_| {
            bad(format!(
                "{t:?} is not an ILSVRC2012_ID (a positive integer)"
            ))
        })?;
        if !id_to_index.contains_key(&id) {
            return Err(bad(format!(
                "ILSVRC2012_ID {id} is not a leaf synset of meta.mat ({} classes)",
                id_to_index.len()
            )));
        }
        ids.push(id);
    }
    if ids.is_empty() {
        return Err(DevkitError::BadLine {
            file: file.to_string(),
            line: 1,
            message: "the ground truth is empty".into(),
        });
    }
    Ok(ids)
}
