//! Layout detection and the text files of the layouts
//! (`preprocess::detect_layout`, then `preprocess::scan_layout`). Mode
//! byte, modulo 3: 0, Kaggle's directory: `LOC_synset_mapping.txt`,
//! `LOC_val_solution.csv` and a list of image names (split by length
//! prefixes; a name `a/b` is the train image `b` of class `a`, any other a
//! val image), written as empty files; 1, Hugging Face's `classes.py`
//! beside an empty `val_images.tar.gz`; 2, a list of file names (`data/`
//! for that directory) created empty in a directory, which is detected
//! whole and file by file. An error must name the directory, except those
//! about the paths as a whole (two layouts, a part missing).

#![no_main]

use alexnet_fuzz::{check_layout, file_names, gzip, scratch_dir, split_n};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = scratch_dir("layout");
    // A name that clashes with one written before (a file where a
    // directory is wanted) is left out.
    let write = |rel: &str, bytes: &[u8]| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).ok()?;
        std::fs::write(&path, bytes).ok()?;
        Some(path)
    };
    match mode % 3 {
        0 => {
            let parts = split_n(rest, 3);
            write("LOC_synset_mapping.txt", parts[0]);
            write("LOC_val_solution.csv", parts[1]);
            let images = "ILSVRC/Data/CLS-LOC";
            std::fs::create_dir_all(dir.join(images).join("val")).expect("mkdir");
            for line in String::from_utf8_lossy(parts[2]).lines().take(64) {
                match line.split_once('/') {
                    Some((class, name)) => {
                        let (class, name) = (
                            file_names(class.as_bytes(), 1),
                            file_names(name.as_bytes(), 1),
                        );
                        if let (Some(c), Some(n)) = (class.first(), name.first()) {
                            write(&format!("{images}/train/{c}/{n}"), &[]);
                        }
                    }
                    None => {
                        if let Some(n) = file_names(line.as_bytes(), 1).first() {
                            write(&format!("{images}/val/{n}"), &[]);
                        }
                    }
                }
            }
            check_layout(std::slice::from_ref(&dir), &dir);
        }
        1 => {
            write("classes.py", rest);
            write("val_images.tar.gz", &gzip(&[0u8; 1024]));
            check_layout(std::slice::from_ref(&dir), &dir);
        }
        _ => {
            let mut files = Vec::new();
            for name in String::from_utf8_lossy(rest).lines().take(64) {
                let (sub, name) = match name.strip_prefix("data/") {
                    Some(n) => ("data/", n),
                    None => ("", name),
                };
                if let Some(n) = file_names(name.as_bytes(), 1).first() {
                    files.extend(write(&format!("{sub}{n}"), &[]));
                }
            }
            check_layout(std::slice::from_ref(&dir), &dir);
            if !files.is_empty() {
                check_layout(&files, &dir);
            }
        }
    }
});
