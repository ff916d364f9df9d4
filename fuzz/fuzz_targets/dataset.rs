//! The files of a dataset directory that the project reads back. Mode
//! byte, modulo 3: 0, `classes.tsv` (`shards::read_classes`; a table that
//! reads is written back and must read back the same, words cleaned);
//! 1, a part's record `parts/part-00000-of-00001.done`, `classes.tsv` and
//! `manifest.json` (split by length prefixes) in an output directory that
//! `preprocess::finish` completes; 2, `dataset.json`, `classes.tsv` and
//! `manifest.json` in the output directory of a run
//! (`preprocess::run` on a one-image train directory), which must refuse a
//! different dataset or resume. An error must name the file or directory.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use alexnet_fuzz::{scratch_dir, split_n, tiny_run_config, tiny_train_dir};
use libfuzzer_sys::fuzz_target;
use shards::{DatasetDir, PartFile};

fn names(text: String, what: &Path) {
    assert!(text.contains(&*what.to_string_lossy()), "{text}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    static INPUT: OnceLock<std::path::PathBuf> = OnceLock::new();
    let out = scratch_dir("dataset-out");
    let d = DatasetDir::new(&out);
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("the scratch file can be written");
    };
    match mode % 3 {
        0 => {
            let path = d.classes();
            write(&path, rest);
            match shards::read_classes(&path) {
                Ok(classes) => {
                    assert!(!classes.is_empty());
                    shards::write_classes(&path, &classes).expect("writing the table");
                    let back = shards::read_classes(&path).expect("the table written reads");
                    assert_eq!(back.len(), classes.len());
                    for (a, b) in classes.iter().zip(&back) {
                        assert_eq!((a.index, &a.wnid), (b.index, &b.wnid));
                    }
                    shards::write_classes(&path, &back).expect("writing the table");
                    assert_eq!(shards::read_classes(&path).expect("reads"), back);
                }
                Err(e) => names(e.to_string(), &path),
            }
        }
        1 => {
            let parts = split_n(rest, 3);
            write(&d.part_file(0, 1, PartFile::Done), parts[0]);
            write(&d.classes(), parts[1]);
            write(&d.manifest(), parts[2]);
            if let Err(e) = preprocess::finish(&out) {
                names(e.to_string(), &out);
            }
        }
        _ => {
            let input = INPUT.get_or_init(|| tiny_train_dir(&scratch_dir("dataset-in")));
            let parts = split_n(rest, 3);
            write(&d.dataset_id(), parts[0]);
            write(&d.classes(), parts[1]);
            write(&d.manifest(), parts[2]);
            let cfg = tiny_run_config(input, &out, None);
            if let Err(e) = preprocess::run(&cfg, &preprocess::NoProgress) {
                names(e.to_string(), &out);
            }
        }
    }
});
