//! `preprocess::scan_tar`: an input tar read as the pipeline reads it.
//! Mode byte: bit 0 clear, the train tar (an outer tar of per-class tars),
//! set, the flat val tar; bit 1 set, the target repairs the header
//! checksums first (the inner tars' too), so that mutations reach the fields
//! behind them. A member that reads is no larger than the file.

#![no_main]

use alexnet_fuzz::{fix_tar_checksums, scratch_file};
use libfuzzer_sys::fuzz_target;
use preprocess::Split;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let split = if mode & 1 == 0 {
        Split::Train
    } else {
        Split::Val
    };
    let mut bytes = rest.to_vec();
    if mode & 2 != 0 {
        fix_tar_checksums(&mut bytes, split == Split::Train);
    }
    let path = scratch_file("input.tar", &bytes);
    match preprocess::scan_tar(&path, split) {
        Ok(members) => {
            for m in members {
                if let Ok(size) = m.size {
                    assert!(size <= bytes.len() as u64, "{m:?}");
                }
            }
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&*path.to_string_lossy()), "{text}");
        }
    }
});
