//! Hugging Face `imagenet-1k` as tar.gz: `train_images_<k>.tar.gz` holding
//! `<original name>_<wnid>.JPEG`, and `val_images.tar.gz` holding
//! `ILSVRC2012_val_<8 digits>_<wnid>.JPEG`. Gzip is read front to back, so
//! each archive must hold its members in the canonical order (by class,
//! then name; val by name); the archives are read side by side and merged
//! into that order. A member out of order is refused, naming it.

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

/// The reader of one archive.
type GzTar = flate2::read::GzDecoder<BufReader<Counted<File>>>;

/// The next member of one archive: its place in the canonical order, its
/// names, and the entry to read its bytes from.
struct Head<'a> {
    key: (String, String),
    member: String,
    name: String,
    wnid: Option<String>,
    entry: tar::Entry<'a, GzTar>,
}

/// One archive being read, and its next member.
struct Stream<'a> {
    file: String,
    entries: tar::Entries<'a, GzTar>,
    prev: String,
    head: Option<Head<'a>>,
}

impl<'a> Stream<'a> {
    /// Moves to the archive's next file member; refuses one that does not
    /// come after the one before it.
    fn advance(&mut self, train: bool) -> Result<(), PreprocessError> {
        let last = self.head.take().map(|h| h.key);
        for entry in self.entries.by_ref() {
            let entry =
                entry.map_err(|e| tar_err(&self.file, &format!("after {}", self.prev), e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let member = raw.rsplit('/').next().unwrap_or_default().to_string();
            let (name, wnid) = strip_wnid_suffix(&member);
            let class = if train {
                wnid.clone().unwrap_or_default()
            } else {
                String::new()
            };
            let key = (class, name.clone());
            if last.as_ref().is_some_and(|l| key <= *l) {
                return Err(PreprocessError::OutOfOrderInput {
                    file: self.file.clone(),
                    member,
                    after: self.prev.clone(),
                });
            }
            self.prev = member.clone();
            self.head = Some(Head {
                key,
                member,
                name,
                wnid,
                entry,
            });
            return Ok(());
        }
        Ok(())
    }
}

/// Streams the members of the archives in the canonical order: each
/// archive must hold its members in that order; the archives are merged
/// (Hugging Face's train archives may each cover any classes).
pub(crate) fn stream_hf_tars(
    archives: &[PathBuf],
    labeler: &Labeler<'_>,
    bytes_read: Arc<AtomicU64>,
    want: &dyn Fn(u64) -> bool,
    push: &mut dyn FnMut(String, Result<i64, String>, MemberBytes) -> bool,
) -> Result<(), PreprocessError> {
    let mut opened = Vec::new();
    for path in archives {
        let f = File::open(path).map_err(|e| PreprocessError::io(path, e))?;
        let counted = Counted {
            inner: f,
            count: bytes_read.clone(),
        };
        let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 20, counted));
        opened.push((path.display().to_string(), tar::Archive::new(gz)));
    }
    let mut streams = Vec::new();
    for (file, archive) in opened.iter_mut() {
        let entries = archive.entries().map_err(|e| tar_err(file, "(start)", e))?;
        let mut s = Stream {
            file: file.clone(),
            entries,
            prev: String::from("(start of archive)"),
            head: None,
        };
        s.advance(labeler.is_train())?;
        streams.push(s);
    }
    let mut last: Option<((String, String), String)> = None;
    for index in 0u64.. {
        let Some(i) = (0..streams.len())
            .filter(|&i| streams[i].head.is_some())
            .min_by(|&a, &b| {
                streams[a]
                    .head
                    .as_ref()
                    .map(|h| &h.key)
                    .cmp(&streams[b].head.as_ref().map(|h| &h.key))
            })
        else {
            break;
        };
        let file = streams[i].file.clone();
        let head = streams[i].head.as_mut().expect("chosen for its head");
        if let Some((last_key, last_member)) = &last {
            if head.key <= *last_key {
                // The same image in two archives.
                return Err(PreprocessError::OutOfOrderInput {
                    file,
                    member: head.member.clone(),
                    after: last_member.clone(),
                });
            }
        }
        last = Some((head.key.clone(), head.member.clone()));
        let label = match &head.wnid {
            Some(w) => labeler.wnid_label(w),
            None => Err(format!(
                "{}: the name carries no _<wnid> suffix",
                head.member
            )),
        };
        let size = head.entry.size();
        let data = if !want(index) {
            None
        } else if size > MAX_MEMBER_BYTES {
            Some(Err(format!("member too large ({size} bytes)")))
        } else {
            // Reserved up to a photo's worth: a header claiming more costs
            // nothing before the bytes arrive.
            let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
            head.entry
                .read_to_end(&mut data)
                .map_err(|e| tar_err(&file, &head.member, e))?;
            Some(Ok(data))
        };
        let name = head.name.clone();
        if !push(name, label, data) {
            return Ok(());
        }
        streams[i].advance(labeler.is_train())?;
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
