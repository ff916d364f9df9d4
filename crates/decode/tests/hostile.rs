//! Hostile and damaged files: decompression bombs are refused from their
//! header, truncated JPEGs are never taken for images, and a JPEG libjpeg
//! only warns about is kept with its warning.

use decode::{
    decode_to_256, DecodeError, DecodeOptions, Decoder256, DEFAULT_MAX_PIXELS, IMAGE_BYTES,
};

mod support;

use support::hostile_files::{jpeg, jpeg_claiming, png_claiming};

#[test]
fn a_jpeg_claiming_a_billion_pixels_is_refused_from_its_header() {
    let bomb = jpeg_claiming(32000, 32000);
    assert!(bomb.len() < 1000, "{} bytes", bomb.len());
    let err = decode_to_256(&bomb).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooManyPixels {
                width: 32000,
                height: 32000,
                limit: DEFAULT_MAX_PIXELS
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "32000x32000 image: 1024000000 pixels, over the limit of 178956970"
    );
}

#[test]
fn a_png_claiming_400_million_pixels_is_refused_from_its_header() {
    let err = decode_to_256(&png_claiming(20000, 20000)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooManyPixels {
                width: 20000,
                height: 20000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_limit_is_an_option_and_its_edge_passes() {
    let photo = jpeg(300, 200);
    let mut out = vec![0u8; IMAGE_BYTES];
    let with_limit = |max_pixels| {
        Decoder256::with_options(DecodeOptions {
            max_pixels,
            ..DecodeOptions::default()
        })
    };
    assert!(with_limit(300 * 200).decode_into(&photo, &mut out).is_ok());
    let err = with_limit(300 * 200 - 1)
        .decode_into(&photo, &mut out)
        .unwrap_err();
    assert!(matches!(err, DecodeError::TooManyPixels { .. }), "{err}");
    let png = png_claiming(8, 8);
    assert!(matches!(
        with_limit(63).decode_into(&png, &mut out),
        Err(DecodeError::TooManyPixels { .. })
    ));
}

#[test]
fn a_jpeg_cut_anywhere_is_never_taken_for_an_image() {
    let whole = jpeg(320, 240);
    assert!(decode_to_256(&whole).is_ok());
    let header = whole
        .windows(2)
        .position(|m| m == [0xFF, 0xDA])
        .expect("a scan");
    let mut cuts: Vec<usize> = (header..whole.len() - 1).step_by(97).collect();
    cuts.extend([whole.len() - 2, whole.len() - 1]);
    for cut in cuts {
        let r = decode_to_256(&whole[..cut]);
        assert!(
            r.is_err(),
            "cut at {cut} of {} bytes was taken for an image",
            whole.len()
        );
    }
}

#[test]
fn a_stream_ended_early_by_its_end_marker_is_refused() {
    // The bomb's kind of damage at a normal size: the data stops after a
    // few blocks and the end-of-image marker follows at once.
    let mut whole = jpeg(320, 240);
    let scan = whole.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
    whole.truncate(scan + 200);
    whole.extend_from_slice(&[0xFF, 0xD9]);
    let err = decode_to_256(&whole).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");
}

#[test]
fn extraneous_bytes_before_a_marker_are_kept_with_the_warning() {
    // Three stray bytes between two header segments, before the scan.
    let whole = jpeg(320, 240);
    let scan = whole.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
    let mut odd = whole[..scan].to_vec();
    odd.extend_from_slice(&[0x00, 0x11, 0x22]);
    odd.extend_from_slice(&whole[scan..]);
    let mut a = vec![0u8; IMAGE_BYTES];
    let mut b = vec![0u8; IMAGE_BYTES];
    let clean = Decoder256::new().decode_into(&whole, &mut a).unwrap();
    assert_eq!(clean.warning, None);
    let kept = Decoder256::new().decode_into(&odd, &mut b).unwrap();
    let warning = kept.warning.expect("libjpeg warns about the extra bytes");
    assert!(warning.contains("extraneous bytes"), "{warning}");
    // The same picture (through zune-jpeg here, as libjpeg-turbo gives no
    // header after a warning about it, so within decoder rounding).
    let mean_diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.abs_diff(*y) as f64)
        .sum::<f64>()
        / a.len() as f64;
    assert!(mean_diff < 2.0, "mean difference {mean_diff}");
    assert_eq!((kept.width, kept.height), (320, 240));
}
