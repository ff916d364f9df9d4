//! Hugging Face's tar.gz layout (`preprocess::detect_layout` on a
//! directory, then every member read as the pipeline reads them,
//! `preprocess::scan_layout`: the archives read side by side and merged in
//! the canonical order). Mode byte: bit 0 clear, the train split
//! (`train_images_<k>.tar.gz`), set, the val split (`val_images.tar.gz`);
//! bit 1 set, the input is a tar (two, split by a length prefix, for the
//! train split with bit 2) whose header checksums the target repairs and
//! which it gzips, else the tar.gz as is. An error must name the archive's
//! directory; a member read is no larger than the archive inflates to.

#![no_main]

use alexnet_fuzz::{check_layout, fix_tar_checksums, gzip, scratch_dir, split_two};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let val = mode & 1 != 0;
    let pack = |bytes: &[u8]| {
        if mode & 2 == 0 {
            return bytes.to_vec();
        }
        let mut tar = bytes.to_vec();
        fix_tar_checksums(&mut tar, false);
        gzip(&tar)
    };
    let archives: Vec<(String, Vec<u8>)> = if val {
        vec![("val_images.tar.gz".into(), pack(rest))]
    } else if mode & 4 != 0 {
        let (a, b) = split_two(rest);
        vec![
            ("train_images_0.tar.gz".into(), pack(a)),
            ("train_images_1.tar.gz".into(), pack(b)),
        ]
    } else {
        vec![("train_images_0.tar.gz".into(), pack(rest))]
    };
    let dir = scratch_dir("hf_tar");
    let mut total = 0u64;
    for (name, bytes) in &archives {
        std::fs::write(dir.join(name), bytes).expect("the scratch file can be written");
        total += bytes.len() as u64;
    }
    for m in check_layout(std::slice::from_ref(&dir), &dir) {
        if let Ok(size) = m.size {
            // Deflate inflates at most 1032 bytes from one.
            assert!(size <= 1032 * total, "{m:?}");
        }
    }
});
