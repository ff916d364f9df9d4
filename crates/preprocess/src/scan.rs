//! [`scan_tar`] and [`scan_layout`]: an input read front to back as the
//! pipeline reads it, without decoding anything.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use shards::Split;

use crate::devkit::Devkit;
use crate::error::PreprocessError;
use crate::layout::Layout;
use crate::source::{list_train_classes, stream_members, Labeler, SplitInput};

/// One member of an input, as [`scan_tar`] or [`scan_layout`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarMember {
    /// The member's file name (in the train tar, its name inside the class
    /// tar; in Hugging Face's layouts, without the `_<wnid>` suffix).
    pub name: String,
    /// The WNID of its class (in the official train tar, of the class tar it
    /// lies in); `None` when it has no label (the official val tar, read
    /// without a devkit; a train member that is not a per-class `.tar`).
    pub class: Option<String>,
    /// The member's size in bytes, or why its bytes were not read (larger
    /// than [`crate::MAX_MEMBER_BYTES`], or not a class tar).
    pub size: Result<u64, String>,
}

/// Reads every member of an input tar as [`crate::run`] does (the train tar
/// as an outer tar of per-class tars, the val tar as a flat tar), reading
/// each member's bytes but decoding none. An error names the tar and the
/// member where it is corrupt or truncated.
pub fn scan_tar(path: &Path, split: Split) -> Result<Vec<TarMember>, PreprocessError> {
    let input = SplitInput::Tar(path.to_path_buf());
    let wnids = match split {
        Split::Train => list_train_classes(&input)?,
        Split::Val => Vec::new(),
    };
    scan(&input, split, wnids, None)
}

/// Reads every member of one split of a layout found by
/// [`crate::detect_layout`] as [`crate::run`] does (in the canonical order,
/// labelled with the class list the layout ships, else the train input's
/// classes; without a devkit, so that official val members carry no
/// label), reading each member's bytes but decoding none. `Ok` with no
/// members when the layout lacks the split. An error names the file and
/// the member where it is corrupt or truncated.
pub fn scan_layout(layout: &Layout, split: Split) -> Result<Vec<TarMember>, PreprocessError> {
    let input = match split {
        Split::Train => &layout.train,
        Split::Val => &layout.val,
    };
    let Some(input) = input else {
        return Ok(Vec::new());
    };
    let wnids = match (&layout.classes, &layout.train) {
        (Some(list), _) => list.iter().map(|(w, _)| w.clone()).collect(),
        (None, Some(train)) if split == Split::Train => list_train_classes(train)?,
        _ => Vec::new(),
    };
    scan(input, split, wnids, layout.val_wnids.as_ref())
}

fn scan(
    input: &SplitInput,
    split: Split,
    wnids: Vec<String>,
    val_wnids: Option<&HashMap<String, String>>,
) -> Result<Vec<TarMember>, PreprocessError> {
    let index: HashMap<String, usize> = wnids
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), i))
        .collect();
    let devkit = Devkit::without_classes();
    let labeler = Labeler {
        split,
        wnids: &index,
        classes: wnids.len(),
        class_wnids: &wnids,
        devkit: (split == Split::Val).then_some(&devkit),
        val_wnids,
    };
    let mut members = Vec::new();
    let bytes_read = Arc::new(AtomicU64::new(0));
    stream_members(input, &labeler, bytes_read, &|_| true, &mut |m| {
        let class = match &m.label {
            Ok(i) => usize::try_from(*i).ok().and_then(|i| wnids.get(i).cloned()),
            Err(_) => None,
        };
        let size = match m.data {
            Some(Ok(bytes)) => Ok(bytes.len() as u64),
            Some(Err(why)) => Err(why),
            None => Err(m.label.err().unwrap_or_default()),
        };
        members.push(TarMember {
            name: m.name,
            class,
            size,
        });
        true
    })?;
    Ok(members)
}
