//! Devkit reading and the validation label trap, on generated devkits.

use std::io::Write;
use std::path::Path;

use matv5::{write_mat, MatValue, MatVariable, WriteOptions};
use preprocess::{parse_val_number, read_devkit, Devkit, DevkitError};
use synth::{generate, SynthConfig};

#[test]
fn val_labels_go_through_meta_mat_not_id_minus_one() {
    for compress_meta in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            classes: 7,
            train_per_class: 3,
            val_images: 40,
            min_side: 16,
            max_side: 32,
            non_leaf_synsets: 5,
            compress_meta,
            ..SynthConfig::default()
        };
        let ds = generate(dir.path(), &cfg).unwrap();
        let dk = read_devkit(&ds.devkit).unwrap();

        // Leaves only (the internal synsets, the root included, are not
        // classes), sorted by WNID, index = position.
        assert_eq!(dk.classes.len(), 7);
        assert_eq!(dk.wnids(), ds.wnids_sorted);
        assert!(!dk.wnids().contains(&"n00001740"));
        for (i, c) in dk.classes.iter().enumerate() {
            assert_eq!(c.index, i);
            assert_eq!(c.words, ds.words[i]);
            assert_eq!(c.ilsvrc_id, ds.ilsvrc_ids[i]);
            assert_eq!(dk.class_of_wnid(&c.wnid), Some(i));
        }

        assert_eq!(dk.val_ground_truth.len(), 40);
        for (i, &expected) in ds.val_labels.iter().enumerate() {
            assert_eq!(dk.val_label(i as u32 + 1), Some(expected), "val {}", i + 1);
        }
        assert_eq!(dk.val_label(0), None);
        assert_eq!(dk.val_label(41), None);

        // The trap is present: id - 1 is not the class index for some file.
        let trap = dk
            .val_ground_truth
            .iter()
            .zip(&ds.val_labels)
            .any(|(&id, &label)| id as usize - 1 != label);
        assert!(trap, "ILSVRC2012_IDs must not be in sorted-WNID order");
    }
}

#[test]
fn parses_val_file_numbers() {
    assert_eq!(parse_val_number("ILSVRC2012_val_00000001.JPEG"), Some(1));
    assert_eq!(
        parse_val_number("val/ILSVRC2012_val_00050000.JPEG"),
        Some(50000)
    );
    assert_eq!(
        parse_val_number("./ILSVRC2012_val_00000123.jpeg"),
        Some(123)
    );
    assert_eq!(parse_val_number("ILSVRC2012_val_00000000.JPEG"), None);
    assert_eq!(parse_val_number("ILSVRC2012_val_0000x001.JPEG"), None);
    assert_eq!(parse_val_number("n01440764_10026.JPEG"), None);
    assert_eq!(parse_val_number("ILSVRC2012_val_.JPEG"), None);
}

fn write_tar_gz(path: &Path, members: &[(&str, &[u8])]) {
    let f = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

fn tiny_meta(leaf_ids: &[(f64, &str)]) -> Vec<u8> {
    let elements = leaf_ids
        .iter()
        .map(|&(id, wnid)| {
            vec![
                MatValue::scalar(id),
                MatValue::string(wnid),
                MatValue::string("words"),
                MatValue::scalar(0.0),
            ]
        })
        .collect::<Vec<_>>();
    let v = MatValue::Struct {
        dims: vec![elements.len(), 1],
        fields: ["ILSVRC2012_ID", "WNID", "words", "num_children"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        elements,
    };
    let mut b = Vec::new();
    write_mat(
        &mut b,
        &[MatVariable::new("synsets", v)],
        &WriteOptions::default(),
    )
    .unwrap();
    b
}

#[test]
fn devkit_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let meta = tiny_meta(&[(2.0, "n02"), (1.0, "n01")]);

    // Missing ground truth.
    let p = dir.path().join("no_gt.tar.gz");
    write_tar_gz(&p, &[("ILSVRC2012_devkit_t12/data/meta.mat", &meta)]);
    let err = read_devkit(&p).unwrap_err();
    assert!(matches!(err, DevkitError::MissingMember { .. }));
    assert!(err.to_string().contains("no_gt.tar.gz"), "{err}");
    assert!(err.to_string().contains("ground_truth"), "{err}");

    // A decoy with a similar name does not count as the member.
    let p = dir.path().join("decoy.tar.gz");
    write_tar_gz(
        &p,
        &[
            ("x/data/meta.mat", &meta),
            ("x/mydata/ILSVRC2012_validation_ground_truth.txt", b"1\n"),
        ],
    );
    assert!(matches!(
        read_devkit(&p).unwrap_err(),
        DevkitError::MissingMember { .. }
    ));

    // Ground truth naming an id that is not a leaf.
    let p = dir.path().join("bad_id.tar.gz");
    write_tar_gz(
        &p,
        &[
            ("data/meta.mat", &meta),
            ("data/ILSVRC2012_validation_ground_truth.txt", b"1\n2\n3\n"),
        ],
    );
    let msg = read_devkit(&p).unwrap_err().to_string();
    assert!(
        msg.contains("line 3") && msg.contains("ILSVRC2012_ID 3"),
        "{msg}"
    );

    // A malformed line.
    let p = dir.path().join("bad_line.tar.gz");
    write_tar_gz(
        &p,
        &[
            ("data/meta.mat", &meta),
            ("data/ILSVRC2012_validation_ground_truth.txt", b"1\n\n2\n"),
        ],
    );
    let msg = read_devkit(&p).unwrap_err().to_string();
    assert!(msg.contains("line 2"), "{msg}");

    // A meta.mat that is not a MAT-file.
    let p = dir.path().join("bad_mat.tar.gz");
    write_tar_gz(
        &p,
        &[
            ("data/meta.mat", b"garbage"),
            ("data/ILSVRC2012_validation_ground_truth.txt", b"1\n"),
        ],
    );
    let msg = read_devkit(&p).unwrap_err().to_string();
    assert!(
        msg.contains("bad_mat.tar.gz") && msg.contains("meta.mat"),
        "{msg}"
    );

    // Not a tar.gz at all.
    let p = dir.path().join("plain.txt");
    std::fs::write(&p, "hello").unwrap();
    assert!(matches!(
        read_devkit(&p).unwrap_err(),
        DevkitError::BadArchive { .. }
    ));

    // Works, and the index follows the sorted WNID, not the id.
    let p = dir.path().join("good.tar.gz");
    write_tar_gz(
        &p,
        &[
            ("data/ILSVRC2012_validation_ground_truth.txt", b"1\n2\n\n"),
            ("data/meta.mat", &meta),
        ],
    );
    let dk = read_devkit(&p).unwrap();
    assert_eq!(dk.val_label(1), Some(0)); // id 1 = n01 = index 0
    assert_eq!(dk.val_label(2), Some(1));
}

#[test]
fn duplicate_ids_and_missing_fields_are_rejected() {
    let meta = tiny_meta(&[(1.0, "n02"), (1.0, "n01")]);
    let err = Devkit::from_parts("meta.mat", &meta, "gt.txt", "1\n").unwrap_err();
    assert!(
        err.to_string().contains("ILSVRC2012_ID 1 is used by"),
        "{err}"
    );

    let v = MatValue::Struct {
        dims: vec![1, 1],
        fields: vec!["WNID".into()],
        elements: vec![vec![MatValue::string("n01")]],
    };
    let mut b = Vec::new();
    write_mat(
        &mut b,
        &[MatVariable::new("synsets", v)],
        &WriteOptions::default(),
    )
    .unwrap();
    let err = Devkit::from_parts("meta.mat", &b, "gt.txt", "1\n").unwrap_err();
    assert!(
        err.to_string().contains("no field 'ILSVRC2012_ID'"),
        "{err}"
    );
}

#[test]
fn ids_must_be_positive_integers_that_fit_in_u32() {
    for bad in [0.0, -3.0, 1.5, 4294967296.0, 5e9] {
        let meta = tiny_meta(&[(bad, "n01"), (2.0, "n02")]);
        let err = Devkit::from_parts("meta.mat", &meta, "gt.txt", "2\n").unwrap_err();
        assert!(
            err.to_string().contains("expected a positive integer"),
            "{bad}: {err}"
        );
    }
    // The largest u32 is a valid id.
    let meta = tiny_meta(&[(4294967295.0, "n01"), (2.0, "n02")]);
    let dk = Devkit::from_parts("meta.mat", &meta, "gt.txt", "4294967295\n2\n").unwrap();
    assert_eq!(dk.val_ground_truth, [4294967295, 2]);
    assert_eq!(dk.val_label(1), Some(0));
    assert_eq!(dk.val_label(2), Some(1));
}

#[test]
fn val_numbers_are_plain_digits_after_the_prefix() {
    assert_eq!(parse_val_number("ILSVRC2012_val_+0000001.JPEG"), None);
    assert_eq!(parse_val_number("ILSVRC2012_val_ 0000001.JPEG"), None);
    assert_eq!(parse_val_number("ILSVRC2012_val_00000007"), Some(7));
    assert_eq!(
        parse_val_number("val\\ILSVRC2012_val_00000002.JPEG"),
        Some(2)
    );
}
