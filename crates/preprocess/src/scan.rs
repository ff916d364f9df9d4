//! [`scan_tar`]: an input tar read front to back as the pipeline reads it,
//! without decoding anything.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use shards::Split;

use crate::devkit::Devkit;
use crate::error::PreprocessError;
use crate::source::{list_train_classes, stream_members, Labeler, SplitInput};

/// One file member of an input tar, as [`scan_tar`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarMember {
    /// The member's file name (in the train tar, its name inside the class tar).
    pub name: String,
    /// Train: the WNID of the class tar it lies in; `None` in the val tar,
    /// and for a train member that is not a per-class `.tar`.
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
        val_wnids: None,
    };
    let mut members = Vec::new();
    let bytes_read = Arc::new(AtomicU64::new(0));
    stream_members(&input, &labeler, bytes_read, &|_| true, &mut |m| {
        let class = match (split, &m.label) {
            (Split::Train, Ok(i)) => usize::try_from(*i).ok().and_then(|i| wnids.get(i).cloned()),
            _ => None,
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
