//! MAT v5: hand-assembled files (independent of our writer), round trips,
//! and errors on damaged input.

use std::io::Write;

use matv5::{read_mat, write_mat, MatError, MatValue, MatVariable, NumericClass, WriteOptions};

fn header(big_endian: bool) -> Vec<u8> {
    let mut h = b"MATLAB 5.0 MAT-file, hand assembled for a test".to_vec();
    h.resize(116, b' ');
    h.extend_from_slice(&[0; 8]);
    if big_endian {
        h.extend_from_slice(&[0x01, 0x00, b'M', b'I']);
    } else {
        h.extend_from_slice(&[0x00, 0x01, b'I', b'M']);
    }
    h
}

/// `x = 3` (double stored as one miUINT8 in a small element).
const DOUBLE_X_LE: [u8; 56] = [
    0x0E, 0, 0, 0, 48, 0, 0, 0, // miMATRIX, 48 bytes
    6, 0, 0, 0, 8, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, // flags: mxDOUBLE
    5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, // dims 1x1
    1, 0, 1, 0, b'x', 0, 0, 0, // name (small element)
    2, 0, 1, 0, 3, 0, 0, 0, // miUINT8 small element: 3
];

/// `s = struct('a', 'hi', 'b', [])`.
fn struct_s_le() -> Vec<u8> {
    let mut body = vec![
        6, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, // flags: mxSTRUCT
        5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, // dims 1x1
        1, 0, 1, 0, b's', 0, 0, 0, // name
        5, 0, 4, 0, 8, 0, 0, 0, // field name length 8 (small miINT32)
        1, 0, 0, 0, 16, 0, 0, 0, // miINT8, 16 bytes of names
        b'a', 0, 0, 0, 0, 0, 0, 0, b'b', 0, 0, 0, 0, 0, 0, 0,
    ];
    // Field a: char 1x2 "hi" as miUTF16 small element.
    body.extend_from_slice(&[
        0x0E, 0, 0, 0, 48, 0, 0, 0, //
        6, 0, 0, 0, 8, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, // flags: mxCHAR
        5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, // dims 1x2
        1, 0, 0, 0, 0, 0, 0, 0, // empty name (miINT8, 0 bytes)
        0x11, 0, 4, 0, b'h', 0, b'i', 0, // miUTF16 small: "hi"
    ]);
    // Field b: zero-byte miMATRIX = [].
    body.extend_from_slice(&[0x0E, 0, 0, 0, 0, 0, 0, 0]);
    let mut out = vec![0x0E, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// `v = int32([-1 70000])`, wrapped in miCOMPRESSED.
fn compressed_v_le() -> Vec<u8> {
    let matrix: [u8; 64] = [
        0x0E, 0, 0, 0, 56, 0, 0, 0, //
        6, 0, 0, 0, 8, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, // flags: mxINT32
        5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, // dims 1x2
        1, 0, 1, 0, b'v', 0, 0, 0, // name
        5, 0, 0, 0, 8, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x70, 0x11, 0x01, 0x00,
    ];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&matrix).unwrap();
    let z = z.finish().unwrap();
    let mut out = vec![15, 0, 0, 0];
    out.extend_from_slice(&(z.len() as u32).to_le_bytes());
    out.extend_from_slice(&z);
    out
}

#[test]
fn reads_hand_assembled_little_endian_file() {
    let mut file = header(false);
    file.extend_from_slice(&DOUBLE_X_LE);
    file.extend_from_slice(&struct_s_le());
    file.extend_from_slice(&compressed_v_le());
    let mat = read_mat(&file).unwrap();
    assert_eq!(
        mat.header_text,
        "MATLAB 5.0 MAT-file, hand assembled for a test"
    );
    assert_eq!(mat.variables.len(), 3);
    assert_eq!(mat.get("x"), Some(&MatValue::scalar(3.0)));
    let s = mat.get("s").unwrap();
    assert_eq!(s.field(0, "a").and_then(|v| v.as_str()), Some("hi"));
    assert_eq!(s.field(0, "a").unwrap().dims(), &[1, 2]);
    assert_eq!(s.field(0, "b"), Some(&MatValue::empty()));
    assert_eq!(
        mat.get("v"),
        Some(&MatValue::Numeric {
            class: NumericClass::Int32,
            dims: vec![1, 2],
            real: vec![-1.0, 70000.0],
            imag: None,
        })
    );
}

#[test]
fn reads_hand_assembled_big_endian_file() {
    let mut file = header(true);
    file.extend_from_slice(&[
        0, 0, 0, 0x0E, 0, 0, 0, 48, //
        0, 0, 0, 6, 0, 0, 0, 8, 0, 0, 0, 6, 0, 0, 0, 0, //
        0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, //
        0, 1, 0, 1, b'x', 0, 0, 0, //
        0, 2, 0, 3, 0xFF, 0xFE, 0, 0, // miINT16 small element: -2
    ]);
    let mat = read_mat(&file).unwrap();
    assert_eq!(mat.get("x"), Some(&MatValue::scalar(-2.0)));
}

fn synsets_like() -> MatValue {
    let el = |id: f64, wnid: &str, words: &str, children: MatValue| {
        vec![
            MatValue::scalar(id),
            MatValue::string(wnid),
            MatValue::string(words),
            MatValue::scalar(children.len() as f64),
            children,
        ]
    };
    MatValue::Struct {
        dims: vec![3, 1],
        fields: ["ILSVRC2012_ID", "WNID", "words", "num_children", "children"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        elements: vec![
            el(
                1.0,
                "n02119789",
                "kit fox, Vulpes macrotis",
                MatValue::empty(),
            ),
            el(
                2.0,
                "n01440764",
                "tench, Tinca tinca",
                MatValue::row(vec![]),
            ),
            el(
                1001.0,
                "n00001740",
                "entity — ümlaut, 狐",
                MatValue::row(vec![1.0, 2.0, 300.0, 70000.0, 0.5]),
            ),
        ],
    }
}

fn all_kinds() -> Vec<MatVariable> {
    vec![
        MatVariable::new("synsets", synsets_like()),
        MatVariable::new(
            "cells",
            MatValue::Cell {
                dims: vec![1, 3],
                cells: vec![
                    MatValue::string("a"),
                    MatValue::scalar(-7.25),
                    MatValue::Cell {
                        dims: vec![0, 0],
                        cells: vec![],
                    },
                ],
            },
        ),
        MatVariable::new(
            "matrix",
            MatValue::Char {
                dims: vec![2, 3],
                text: "abc\ndef".into(),
            },
        ),
        MatVariable::new(
            "z",
            MatValue::Numeric {
                class: NumericClass::Double,
                dims: vec![2, 1],
                real: vec![1.5, -1e300],
                imag: Some(vec![0.0, 2.0]),
            },
        ),
        MatVariable::new(
            "u16",
            MatValue::Numeric {
                class: NumericClass::UInt16,
                dims: vec![1, 2, 2],
                real: vec![0.0, 1.0, 65535.0, 4.0],
                imag: None,
            },
        ),
        MatVariable::new(
            "single",
            MatValue::Numeric {
                class: NumericClass::Single,
                dims: vec![1, 1],
                real: vec![0.25],
                imag: None,
            },
        ),
        MatVariable::new("neg_zero", MatValue::row(vec![-0.0, -129.0, 1e10])),
    ]
}

#[test]
fn round_trips_every_option_combination() {
    let vars = all_kinds();
    for compress in [false, true] {
        for shrink_numeric in [false, true] {
            for char_utf8 in [false, true] {
                let opts = WriteOptions {
                    compress,
                    shrink_numeric,
                    char_utf8,
                    ..WriteOptions::default()
                };
                let mut bytes = Vec::new();
                write_mat(&mut bytes, &vars, &opts).unwrap();
                let back = read_mat(&bytes).unwrap();
                assert_eq!(back.variables, vars, "options {opts:?}");
                // -0.0 must keep its sign (not stored as an integer).
                let nz = back.get("neg_zero").unwrap().as_f64s().unwrap()[0];
                assert!(nz.is_sign_negative());
            }
        }
    }
}

#[test]
fn shrinking_stores_small_integers_in_fewer_bytes() {
    let vars = [MatVariable::new(
        "ids",
        MatValue::row((0..1000).map(|i| (i % 200) as f64).collect()),
    )];
    let size = |shrink_numeric| {
        let mut b = Vec::new();
        let opts = WriteOptions {
            shrink_numeric,
            ..WriteOptions::default()
        };
        write_mat(&mut b, &vars, &opts).unwrap();
        assert_eq!(read_mat(&b).unwrap().variables, vars);
        b.len()
    };
    assert!(size(true) < 1200, "uint8 storage expected");
    assert!(size(false) > 8000, "double storage expected");
}

#[test]
fn damaged_files_give_errors_not_panics() {
    let mut bytes = Vec::new();
    for compress in [false, true] {
        bytes.clear();
        let opts = WriteOptions {
            compress,
            ..WriteOptions::default()
        };
        write_mat(&mut bytes, &all_kinds(), &opts).unwrap();
        // Every truncation either fails with a reading error that says where
        // (a header error only inside the 128-byte header), or, at an element
        // boundary, yields exactly the variables before the cut.
        let all = all_kinds();
        for len in 0..bytes.len() {
            match read_mat(&bytes[..len]) {
                Ok(m) => {
                    let k = m.variables.len();
                    assert!(k < all.len(), "cut at {len} read every variable");
                    assert_eq!(m.variables[..], all[..k], "cut at {len}");
                }
                Err(MatError::BadHeader(_)) => assert!(len < 128, "header error at {len}"),
                Err(MatError::Malformed { location, message }) => {
                    assert!(!location.is_empty() && !message.is_empty(), "cut at {len}")
                }
                Err(other) => panic!("cut at {len}: unexpected error {other}"),
            }
        }
        // Flipped bytes never panic, and never produce a writer's or an I/O
        // error from a reader.
        for i in (128..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            match read_mat(&b) {
                Ok(_) | Err(MatError::Malformed { .. } | MatError::Unsupported { .. }) => {}
                Err(other) => panic!("byte {i} flipped: unexpected error {other}"),
            }
        }
    }
    assert!(matches!(
        read_mat(b"not a mat file"),
        Err(MatError::BadHeader(_))
    ));
    let mut v73 = header(false);
    v73[124] = 0x00;
    v73[125] = 0x02;
    assert!(matches!(read_mat(&v73), Err(MatError::BadHeader(_))));
}

#[test]
fn writer_rejects_inconsistent_values() {
    let bad = MatValue::Numeric {
        class: NumericClass::Double,
        dims: vec![2, 2],
        real: vec![1.0],
        imag: None,
    };
    let mut b = Vec::new();
    let err = write_mat(
        &mut b,
        &[MatVariable::new("bad", bad)],
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("'bad'"), "{err}");
    let bad_int = MatValue::Numeric {
        class: NumericClass::UInt8,
        dims: vec![1, 1],
        real: vec![300.0],
        imag: None,
    };
    let err = write_mat(
        &mut b,
        &[MatVariable::new("i", bad_int)],
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, MatError::InvalidValue(m) if m.contains("'i'")),
        "{err}"
    );
}

/// Found by fuzzing (read, write, read again): a `single` array whose data
/// is stored as `miUINT32` reads as 3472883718, which `f32` cannot hold; the
/// writer rounded it to 3472883712 without a word. It now refuses it, as it
/// refuses an integer that does not fit its class.
#[test]
fn writer_refuses_a_single_value_that_f32_cannot_hold() {
    let mut file = header(false);
    file.extend_from_slice(&[
        0x0E, 0, 0, 0, 48, 0, 0, 0, // miMATRIX, 48 bytes
        6, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, // flags: mxSINGLE
        5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, // dims 1x1
        1, 0, 1, 0, b'x', 0, 0, 0, // name (small element)
        6, 0, 4, 0, 0x06, 0, 0, 0xCF, // miUINT32 small element: 3472883718
    ]);
    let mat = read_mat(&file).unwrap();
    assert_eq!(mat.get("x").unwrap().as_scalar(), Some(3472883718.0));
    let err = write_mat(&mut Vec::new(), &mat.variables, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(&err, MatError::InvalidValue(m) if m.contains("'x'") && m.contains("Single")),
        "{err}"
    );
    // Values a single holds, NaN included, are written and read back.
    let ok = MatValue::Numeric {
        class: NumericClass::Single,
        dims: vec![1, 3],
        real: vec![3472883712.0, -0.5, f64::NAN],
        imag: None,
    };
    let mut bytes = Vec::new();
    write_mat(
        &mut bytes,
        &[MatVariable::new("y", ok.clone())],
        &WriteOptions::default(),
    )
    .unwrap();
    let back = read_mat(&bytes).unwrap();
    assert_eq!(format!("{:?}", back.get("y").unwrap()), format!("{ok:?}"));
}

/// `s`: a struct array without fields of `1 x n` elements.
fn fieldless_struct(n: u32) -> Vec<u8> {
    let mut file = header(false);
    file.extend_from_slice(&[0x0E, 0, 0, 0, 56, 0, 0, 0]); // miMATRIX, 56 bytes
    file.extend_from_slice(&[6, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]); // mxSTRUCT
    file.extend_from_slice(&[5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0]); // dims 1 x n
    file.extend_from_slice(&n.to_le_bytes());
    file.extend_from_slice(&[1, 0, 1, 0, b's', 0, 0, 0]); // name
    file.extend_from_slice(&[5, 0, 4, 0, 32, 0, 0, 0]); // field name length 32
    file.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]); // no field names
    file
}

/// Found by fuzzing: the elements of a struct array without fields take no
/// bytes, so an 800-byte file claiming millions of them made the reader
/// allocate hundreds of megabytes. Past 4,096 such elements it is refused.
#[test]
fn a_huge_struct_array_without_fields_is_refused() {
    let mat = read_mat(&fieldless_struct(4096)).unwrap();
    match mat.get("s").unwrap() {
        MatValue::Struct {
            fields, elements, ..
        } => assert!(fields.is_empty() && elements.len() == 4096),
        other => panic!("{other:?}"),
    }
    for n in [4097, 4_000_000, i32::MAX as u32] {
        let err = read_mat(&fieldless_struct(n)).unwrap_err();
        assert!(
            matches!(&err, MatError::Unsupported { message, .. } if message.contains("without fields")),
            "{err}"
        );
    }
}

/// Found by fuzzing: a char array of 134 million rows and no columns (a
/// 64-byte element) read as 134 million newlines, a 268 MB allocation. An
/// empty char matrix now reads as the empty string, and is written from it.
#[test]
fn an_empty_char_matrix_reads_as_the_empty_string() {
    let rows: u32 = 134_283_264;
    let mut file = header(false);
    file.extend_from_slice(&[0x0E, 0, 0, 0, 48, 0, 0, 0]); // miMATRIX, 48 bytes
    file.extend_from_slice(&[6, 0, 0, 0, 8, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]); // mxCHAR
    file.extend_from_slice(&[5, 0, 0, 0, 8, 0, 0, 0]);
    file.extend_from_slice(&rows.to_le_bytes());
    file.extend_from_slice(&0u32.to_le_bytes()); // dims rows x 0
    file.extend_from_slice(&[1, 0, 1, 0, b's', 0, 0, 0]); // name
    file.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]); // miUTF16, no characters
    let mat = read_mat(&file).unwrap();
    let s = mat.get("s").unwrap();
    assert_eq!(
        s,
        &MatValue::Char {
            dims: vec![rows as usize, 0],
            text: String::new(),
        }
    );
    let mut again = Vec::new();
    write_mat(&mut again, &mat.variables, &WriteOptions::default()).unwrap();
    assert_eq!(read_mat(&again).unwrap().variables, mat.variables);
}
