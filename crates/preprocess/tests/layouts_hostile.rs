//! Damaged and hostile files of Kaggle's and Hugging Face's layouts, found
//! by fuzzing (`fuzz/`: the `kaggle`, `hf_tar` and `hf_parquet` targets)
//! or while writing those targets: each gives an error that names the file
//! (or the member is reported and skipped), never a panic, a hang or an
//! allocation the file cannot justify.

use std::io::Write;
use std::path::{Path, PathBuf};

use preprocess::{detect_layout, scan_layout, LayoutError, Split, TarMember};

#[path = "support/largest_allocation.rs"]
mod largest_allocation;

use largest_allocation::largest_of;

/// Kaggle's zip of a few small photos, written by `synth`.
fn kaggle_zip(dir: &Path) -> PathBuf {
    let cfg = synth::SynthConfig {
        classes: 2,
        train_per_class: 2,
        val_images: 3,
        min_side: 8,
        max_side: 12,
        plant_odd_files: false,
        ..synth::SynthConfig::default()
    };
    synth::generate_layout(dir, &cfg, synth::Layout::KaggleZip)
        .unwrap()
        .from[0]
        .clone()
}

/// Sets a little-endian `u32` field at `offset` of the central directory
/// entry of the first member whose name ends with `suffix`.
fn patch_central_entry(zip: &Path, suffix: &str, offset: usize, value: u32) {
    let mut bytes = std::fs::read(zip).unwrap();
    let mut at = 0;
    loop {
        let pos = bytes[at..]
            .windows(4)
            .position(|w| w == b"PK\x01\x02")
            .expect("a central directory entry with that name")
            + at;
        let name_len = u16::from_le_bytes([bytes[pos + 28], bytes[pos + 29]]) as usize;
        let name = &bytes[pos + 46..pos + 46 + name_len];
        if name.ends_with(suffix.as_bytes()) {
            bytes[pos + offset..pos + offset + 4].copy_from_slice(&value.to_le_bytes());
            break;
        }
        at = pos + 4;
    }
    std::fs::write(zip, bytes).unwrap();
}

/// Offsets in a central directory entry.
const COMPRESSED_SIZE: usize = 20;
const UNCOMPRESSED_SIZE: usize = 24;

fn val_members(from: &Path) -> Vec<TarMember> {
    let layout = detect_layout(&[from.to_path_buf()]).unwrap();
    scan_layout(&layout, Split::Val).unwrap()
}

/// Found by fuzzing (`kaggle`, 6,213 executions): a member's compressed
/// size was trusted, and its buffer reserved at that size: 98 MB for a
/// 14 KB zip.
#[test]
fn a_zip_member_claiming_more_compressed_bytes_than_the_zip_holds_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let zip = kaggle_zip(dir.path());
    patch_central_entry(&zip, "val_00000002.JPEG", COMPRESSED_SIZE, 98_631_859);
    let (largest, members) = largest_of(|| val_members(&zip));
    assert_eq!(members.len(), 3);
    let bad = &members[1];
    assert_eq!(bad.name, "ILSVRC2012_val_00000002.JPEG");
    let why = bad.size.clone().unwrap_err();
    assert!(why.contains("98631859 compressed bytes"), "{why}");
    assert!(members[0].size.is_ok() && members[2].size.is_ok());
    assert!(largest <= 2 << 20, "{largest} bytes allocated at once");
}

/// Found while writing the `kaggle` target: a deflated member claiming up
/// to `MAX_MEMBER_BYTES` (256 MiB) had a buffer of that size reserved before
/// it was inflated, whatever its compressed bytes could inflate to.
#[test]
fn a_deflated_zip_member_claiming_more_than_it_inflates_to_reserves_little() {
    let dir = tempfile::tempdir().unwrap();
    let zip = kaggle_zip(dir.path());
    patch_central_entry(&zip, "val_00000001.JPEG", UNCOMPRESSED_SIZE, 200_000_000);
    let (largest, members) = largest_of(|| val_members(&zip));
    let why = members[0].size.clone().unwrap_err();
    assert!(
        why.contains("corrupt deflate data") && why.contains("of 200000000 bytes"),
        "{why}"
    );
    assert!(members[1].size.is_ok());
    assert!(largest <= 4 << 20, "{largest} bytes allocated at once");
}

/// Found while writing the `kaggle` target: the zip's class list and val
/// solution were read whole, whatever they inflate to (a deflate bomb of a
/// few kilobytes takes gigabytes).
#[test]
fn a_class_list_that_inflates_past_its_bound_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("kaggle.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("LOC_synset_mapping.txt", opts).unwrap();
    let line = b"n01440764 tench, Tinca tinca\n";
    for _ in 0..=preprocess::KAGGLE_MAX_TEXT_BYTES as usize / line.len() {
        w.write_all(line).unwrap();
    }
    w.finish().unwrap();
    assert!(std::fs::metadata(&zip).unwrap().len() < 1 << 20);
    let (largest, err) = largest_of(|| detect_layout(std::slice::from_ref(&zip)).unwrap_err());
    assert!(matches!(err, LayoutError::MemberTooLarge { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("kaggle.zip/LOC_synset_mapping.txt") && msg.contains("inflates to more than"),
        "{msg}"
    );
    assert!(largest <= 40 << 20, "{largest} bytes allocated at once");
}

/// Found while writing the `hf_tar` target: a member of a Hugging Face
/// tar.gz claiming up to `MAX_MEMBER_BYTES` had a buffer of that size
/// reserved before its bytes arrived.
#[test]
fn a_hugging_face_member_claiming_more_than_its_archive_holds_reserves_little() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("ILSVRC2012_val_00000001_n01440764.JPEG")
        .unwrap();
    h.set_mode(0o644);
    h.set_size(200_000_000);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[0xFF; 4096]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let archive = dir.path().join("val_images.tar.gz");
    std::fs::write(&archive, gz.finish().unwrap()).unwrap();
    let layout = detect_layout(&[dir.path().to_path_buf()]).unwrap();
    let (largest, result) = largest_of(|| scan_layout(&layout, Split::Val));
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains("val_images.tar.gz"), "{msg}");
    assert!(largest <= 2 << 20, "{largest} bytes allocated at once");
}

/// Found by fuzzing (`hf_parquet`, 3,214 executions): a page header whose
/// unknown field asks to skip billions of values at the end of the file
/// made the parquet reader spin for minutes (it copies the bytes to skip,
/// and an empty read at the end of the file never fails). Read now through
/// a reader for which the end of the file is an error.
#[test]
fn a_parquet_page_header_skipping_past_the_end_of_the_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-00000-of-00001.parquet");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/parquet_page_header_skip_past_end.parquet"),
        &path,
    )
    .unwrap();
    let layout = detect_layout(std::slice::from_ref(&path)).unwrap();
    let msg = scan_layout(&layout, Split::Train).unwrap_err().to_string();
    assert!(msg.contains("train-00000-of-00001.parquet"), "{msg}");
}

/// Found by fuzzing (`hf_parquet`, 20,682 executions of the next run): a
/// dictionary-encoded data page without a dictionary page made the parquet
/// reader panic ("Decoder for dict should have been set"), taking the
/// reader thread down. Its panics are caught at each call into it now.
#[test]
fn a_parquet_data_page_without_its_dictionary_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-00000-of-00001.parquet");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/parquet_dictionary_page_missing.parquet"),
        &path,
    )
    .unwrap();
    let layout = detect_layout(std::slice::from_ref(&path)).unwrap();
    let err = scan_layout(&layout, Split::Train).unwrap_err();
    assert!(
        matches!(err, preprocess::PreprocessError::ParquetPanic { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("train-00000-of-00001.parquet") && msg.contains("dict"),
        "{msg}"
    );
}

/// The guard of the parquet reader leaves good files alone: the layouts
/// `synth` writes read whole, every row labelled.
#[test]
fn hugging_face_parquet_reads_whole_through_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = synth::SynthConfig {
        classes: 3,
        train_per_class: 3,
        val_images: 4,
        min_side: 8,
        max_side: 12,
        plant_odd_files: false,
        ..synth::SynthConfig::default()
    };
    let l = synth::generate_layout(dir.path(), &cfg, synth::Layout::HfParquet).unwrap();
    let layout = detect_layout(&l.from).unwrap();
    let train = scan_layout(&layout, Split::Train).unwrap();
    let val = scan_layout(&layout, Split::Val).unwrap();
    assert_eq!(train.len(), 9);
    assert_eq!(val.len(), 4);
    assert!(train
        .iter()
        .chain(&val)
        .all(|m| m.size.is_ok() && m.class.is_some()));
}
