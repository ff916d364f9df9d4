//! Hugging Face `imagenet-1k` as tar.gz: `train_images_<k>.tar.gz` holding
//! `<original name>_<wnid>.JPEG`, and `val_images.tar.gz` holding
//! `ILSVRC2012_val_<8 digits>_<wnid>.JPEG`. Gzip is read front to back, so
//! the archives must hold their members in the canonical order (by class,
//! then name; val by name), one archive after the other; a member out of
//! that order is refused, naming it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::PreprocessError;
use crate::layout::is_wnid;
use crate::source::{Labeler, MemberBytes, MAX_MEMBER_BYTES};

/// `<original name>_<wnid>.<ext>` -> (`<original name>.<ext>`, wnid); names
/// without the suffix are returned as they are.
pub(crate) fn strip_wnid_suffix(name: &str) -> (String, Option<String>) {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s, Some(e)),
        None => (name, None),
    };
    match stem.rsplit_once('_') {
        Some((orig, wnid)) if is_wnid(wnid) && !orig.is_empty() => {
            let name = match ext {
                Some(e) => format!("{orig}.{e}"),
                None => orig.to_string(),
            };
            (name, Some(wnid.to_string()))
        }
        _ => (name.to_string(), None),
    }
}

/// Counts the compressed bytes read, for progress.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn tar_err(file: &str, member: &str, source: std::io::Error) -> PreprocessError {
    PreprocessError::Tar {
        file: file.to_string(),
        member: member.to_string(),
        source,
    }
}

/// Streams the members of the archives, in order, checking that order.
pub(crate) fn stream_hf_tars(
    archives: &[PathBuf],
    labeler: &Labeler<'_>,
    bytes_read: Arc<AtomicU64>,
    want: &dyn Fn(u64) -> bool,
    push: &mut dyn FnMut(String, Result<i64, String>, MemberBytes) -> bool,
) -> Result<(), PreprocessError> {
    let mut index = 0u64;
    let mut last: Option<((String, String), String)> = None;
    for path in archives {
        let file = path.display().to_string();
        let f = File::open(path).map_err(|e| PreprocessError::io(path, e))?;
        let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(
            1 << 20,
            Counted {
                inner: f,
                count: bytes_read.clone(),
            },
        ));
        let mut archive = tar::Archive::new(gz);
        let entries = archive
            .entries()
            .map_err(|e| tar_err(&file, "(start)", e))?;
        let mut prev = String::from("(start of archive)");
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_err(&file, &format!("after {prev}"), e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let member = raw.rsplit('/').next().unwrap_or_default().to_string();
            prev = member.clone();
            let (name, wnid) = strip_wnid_suffix(&member);
            let label = match &wnid {
                Some(w) => labeler.wnid_label(w),
                None => Err(format!("{member}: the name carries no _<wnid> suffix")),
            };
            let key = (
                if labeler.is_train() {
                    wnid.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                name.clone(),
            );
            if let Some((last_key, last_member)) = &last {
                if key <= *last_key {
                    return Err(PreprocessError::OutOfOrderInput {
                        file: file.clone(),
                        member,
                        after: last_member.clone(),
                    });
                }
            }
            last = Some((key, member.clone()));
            let data = if !want(index) {
                None
            } else if entry.size() > MAX_MEMBER_BYTES {
                Some(Err(format!("member too large ({} bytes)", entry.size())))
            } else {
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| tar_err(&file, &member, e))?;
                Some(Ok(data))
            };
            index += 1;
            if !push(name, label, data) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wnid_suffix_is_taken_off() {
        assert_eq!(
            strip_wnid_suffix("n01440764_10026_n01440764.JPEG"),
            ("n01440764_10026.JPEG".into(), Some("n01440764".into()))
        );
        assert_eq!(
            strip_wnid_suffix("ILSVRC2012_val_00000001_n01751748.JPEG"),
            (
                "ILSVRC2012_val_00000001.JPEG".into(),
                Some("n01751748".into())
            )
        );
        assert_eq!(strip_wnid_suffix("plain.JPEG"), ("plain.JPEG".into(), None));
    }
}
