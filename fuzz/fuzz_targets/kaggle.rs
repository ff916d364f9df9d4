//! Kaggle's zip (`preprocess::detect_layout`, then every member of both
//! splits read as the pipeline reads them, `preprocess::scan_layout`).
//! Mode byte: bit 0 clear, the zip as is; set, `LOC_synset_mapping.txt`,
//! `LOC_val_solution.csv` and a list of member names (split by length
//! prefixes) that the target packs as a zip (bit 1: deflated, else
//! stored), each member holding its own name, so that mutations reach the
//! text files and the names behind the zip's structure and CRCs. An error
//! must name the zip.

#![no_main]

use alexnet_fuzz::{check_layout, file_names_with_slashes, scratch_dir, split_n, zip_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let parts = split_n(rest, 3);
        let mut members = vec![
            ("LOC_synset_mapping.txt".to_string(), parts[0].to_vec()),
            ("LOC_val_solution.csv".to_string(), parts[1].to_vec()),
        ];
        for name in file_names_with_slashes(parts[2], 64) {
            let data = name.as_bytes().to_vec();
            members.push((name, data));
        }
        zip_of(&members, mode & 2 != 0)
    };
    let dir = scratch_dir("kaggle");
    let path = dir.join("kaggle.zip");
    std::fs::write(&path, &bytes).expect("the scratch file can be written");
    for m in check_layout(&[path], &dir) {
        if let Ok(size) = m.size {
            // Deflate inflates at most 1032 bytes from one.
            assert!(size <= 1032 * bytes.len() as u64, "{m:?}");
        }
    }
});
