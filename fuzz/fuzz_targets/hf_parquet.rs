//! Hugging Face's parquet layout (`preprocess::detect_layout`, then every
//! row read as the pipeline reads them, `preprocess::scan_layout`: names
//! and labels first, then the images a page at a time). Mode byte: bit 0
//! clear, `train-00000-of-00001.parquet`, set,
//! `validation-00000-of-00001.parquet`; the rest is the file. An error must
//! name the file. A panic of the parquet crate, which the project catches at
//! each call into it (`PreprocessError::ParquetPanic`), unwinds to that
//! guard here instead of aborting (libfuzzer-sys aborts on every panic,
//! caught or not); any other panic still aborts.

#![no_main]

use alexnet_fuzz::{check_layout, scratch_dir};
use libfuzzer_sys::fuzz_target;

fn let_parquet_panics_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_parquet = info
                .location()
                .is_some_and(|l| l.file().contains("/parquet-"));
            if !in_parquet {
                abort_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_parquet_panics_unwind();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let name = if mode & 1 == 0 {
        "train-00000-of-00001.parquet"
    } else {
        "validation-00000-of-00001.parquet"
    };
    let dir = scratch_dir("hf_parquet");
    let path = dir.join(name);
    std::fs::write(&path, rest).expect("the scratch file can be written");
    for m in check_layout(&[path], &dir) {
        if let Ok(size) = m.size {
            // Snappy, zstd and gzip pages: no image is larger than 256 MiB
            // (MAX_MEMBER_BYTES), and none reaches it from a small file.
            assert!(size <= preprocess::MAX_MEMBER_BYTES, "{m:?}");
        }
    }
});
