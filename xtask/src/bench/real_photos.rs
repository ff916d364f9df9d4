//! Benchmark inputs from a directory of real photos: the photos packed into
//! a train tar in ImageNet's layout (an outer tar of one `<wnid>.tar` per
//! class), optionally repeated under new names, with one file of each odd
//! and broken kind ImageNet-like data holds planted among them.
//!
//! Photos are named `<wnid>_<anything>.JPEG` (the wnid is the class), as in
//! <https://github.com/EliSchwartz/imagenet-sample-images> (one photo per
//! class of ImageNet's 1,000); see `benchmarks/preprocess.md`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// What [`pack`] wrote.
pub struct PackedPhotos {
    /// The directory holding `ILSVRC2012_img_train.tar`.
    pub dir: PathBuf,
    /// Members in the tar: photos times repeats, plus the planted files.
    pub members: usize,
    /// Classes (inner tars).
    pub classes: usize,
}

/// The photos of `photos` (files named `<wnid>_*.JPEG`, `.jpg` or `.jpeg`),
/// grouped by wnid, `repeats` times each (`<wnid>_<k>.JPEG`), with one file
/// of every [`synth::OddKind`] planted in the first classes
/// (`<wnid>_odd_<kind>.JPEG`, made from the class's first photo at
/// 256x256), packed into `<work>/photos-<dir name>-x<repeats>/`
/// `ILSVRC2012_img_train.tar`. An existing pack is reused.
pub fn pack(photos: &Path, work: &Path, repeats: usize) -> anyhow::Result<PackedPhotos> {
    let by_class = list_photos(photos)?;
    let name = photos
        .file_name()
        .map_or_else(|| "photos".into(), |n| n.to_string_lossy().into_owned());
    let dir = work.join(format!("photos-{name}-x{repeats}"));
    let photo_count: usize = by_class.values().map(Vec::len).sum();
    let members = photo_count * repeats.max(1) + synth::OddKind::all().len();
    let packed = PackedPhotos {
        dir: dir.clone(),
        members,
        classes: by_class.len(),
    };
    let tar_path = dir.join(synth::TRAIN_TAR);
    if tar_path.is_file() {
        return Ok(packed);
    }
    eprintln!(
        "packing {photo_count} photos of {} classes from {} ({repeats}x, plus {} odd files) into {} ...",
        by_class.len(),
        photos.display(),
        synth::OddKind::all().len(),
        tar_path.display()
    );
    std::fs::create_dir_all(&dir)?;
    let tmp = tar_path.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut outer = tar::Builder::new(std::io::BufWriter::new(file));
    let odd = synth::OddKind::all();
    for (class, (wnid, files)) in by_class.iter().enumerate() {
        let mut inner = tar::Builder::new(Vec::new());
        let mut k = 0;
        for path in files {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            for _ in 0..repeats.max(1) {
                append(&mut inner, &format!("{wnid}_{k}.JPEG"), &bytes)?;
                k += 1;
            }
        }
        if let Some(&kind) = odd.get(class) {
            let bytes = odd_file(&files[0], kind, class as u64)?;
            append(&mut inner, &format!("{wnid}_odd_{kind:?}.JPEG"), &bytes)?;
        }
        let inner = inner.into_inner()?;
        append(&mut outer, &format!("{wnid}.tar"), &inner)?;
    }
    outer.into_inner()?.flush()?;
    std::fs::rename(&tmp, &tar_path)?;
    Ok(packed)
}

/// The photo files of `dir` by wnid (the name up to the first `_`), each
/// class's files in name order.
fn list_photos(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<PathBuf>>> {
    let mut by_class: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if !matches!(ext.as_deref(), Some("jpeg" | "jpg")) {
            continue;
        }
        let Some((wnid, _)) = name.split_once('_') else {
            continue;
        };
        let is_wnid = wnid.len() == 9
            && wnid.starts_with('n')
            && wnid[1..].bytes().all(|b| b.is_ascii_digit());
        if is_wnid {
            by_class.entry(wnid.to_owned()).or_default().push(path);
        }
    }
    if by_class.is_empty() {
        bail!(
            "{} holds no photos named <wnid>_*.JPEG (e.g. n01440764_tench.JPEG)",
            dir.display()
        );
    }
    for files in by_class.values_mut() {
        files.sort();
    }
    Ok(by_class)
}

/// A file of `kind` showing `photo` at 256x256.
fn odd_file(photo: &Path, kind: synth::OddKind, seed: u64) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(photo)?;
    let mut rgb = vec![0u8; 256 * 256 * 3];
    decode::Decoder256::new()
        .decode_into(&bytes, &mut rgb)
        .with_context(|| format!("decoding {}", photo.display()))?;
    Ok(synth::encode_odd_file(&rgb, 256, 256, kind, 90, seed)?)
}

fn append<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    b.append_data(&mut header, name, data)?;
    Ok(())
}
