//! `preprocess::read_devkit` on a file. Mode byte: 0, the `.tar.gz` as is;
//! 1, a tar (its header checksums repaired) that the target gzips; 2,
//! `meta.mat` and the ground-truth text (split by a length prefix) that the
//! target packs as the devkit's tar.gz.

#![no_main]

use alexnet_fuzz::{devkit_tar, fix_tar_checksums, gzip, scratch_file, split_two};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let archive = match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let mut tar = rest.to_vec();
            fix_tar_checksums(&mut tar, false);
            gzip(&tar)
        }
        _ => {
            let (meta, gt) = split_two(rest);
            gzip(&devkit_tar(meta, gt))
        }
    };
    let path = scratch_file("devkit.tar.gz", &archive);
    match preprocess::read_devkit(&path) {
        Ok(dk) => {
            for (i, c) in dk.classes.iter().enumerate() {
                assert_eq!(c.index, i);
                assert_eq!(dk.class_of_wnid(&c.wnid), Some(i));
                assert_eq!(dk.class_of_ilsvrc_id(c.ilsvrc_id), Some(i));
            }
            assert!(!dk.val_ground_truth.is_empty());
            for n in 1..=dk.val_ground_truth.len() as u32 {
                assert!(dk.val_label(n).is_some());
            }
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&*path.to_string_lossy()), "{text}");
        }
    }
});
