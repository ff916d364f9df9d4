//! The memory a decode worker may take follows from the pixel limit: with
//! `DecodeOptions::max_pixels = M`, the largest buffers are about
//! `3 * M / d^2` bytes for a JPEG that libjpeg-turbo decodes at 1/d, and
//! `7 * M` for one that zune-jpeg decodes at full size (CMYK, damaged
//! streams: its RGB output, its working buffers and the RGB copy) or a PNG
//! (at most 4 bytes a pixel as decoded, 3 as RGB); a file whose header
//! claims more than `M` pixels is refused before any pixel buffer. This test binary counts every
//! allocation the decoding thread makes through Rust's allocator (its own
//! global allocator) while decoding real and crafted files just under and
//! just over a small limit, and checks the largest single allocation and
//! the peak of the bytes held at once against those formulas.
//!
//! libjpeg-turbo's own allocations (C `malloc`: its row buffers, a few
//! hundred kilobytes at these sizes for a baseline JPEG) are not seen here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use decode::{DecodeError, DecodeOptions, Decoder256, JpegScaling, IMAGE_BYTES};

mod support;

use support::hostile_files::{jpeg, jpeg_claiming, png_claiming};

/// Counts the allocations of the thread that measures.
struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn grew(by: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            LIVE.with(|l| l.set(l.get() + by));
            PEAK.with(|p| p.set(p.get().max(LIVE.with(Cell::get))));
            LARGEST.with(|m| m.set(m.get().max(by)));
        }
    });
}

fn shrank(by: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            // Blocks allocated before the measurement began count as none.
            LIVE.with(|l| l.set(l.get().saturating_sub(by)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation holds both blocks for a moment.
        grew(new_size);
        shrank(layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What decoding one file cost.
#[derive(Debug)]
struct Cost {
    /// The largest single allocation, bytes.
    largest: usize,
    /// The most bytes held at once, bytes.
    peak: usize,
    /// The result.
    result: Result<(usize, usize), String>,
    /// The error, when it was a refusal for too many pixels.
    refused: bool,
}

/// Decodes `bytes` with a fresh decoder limited to `max_pixels`, counting.
fn cost(bytes: &[u8], max_pixels: u64, scaling: JpegScaling) -> Cost {
    let mut decoder = Decoder256::with_options(DecodeOptions {
        max_pixels,
        jpeg_scaling: scaling,
        ..DecodeOptions::default()
    });
    let mut out = vec![0u8; IMAGE_BYTES];
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|m| m.set(0));
    ON.with(|on| on.set(true));
    let result = decoder.decode_into(bytes, &mut out);
    drop(decoder);
    ON.with(|on| on.set(false));
    let refused = matches!(result, Err(DecodeError::TooManyPixels { .. }));
    Cost {
        largest: LARGEST.with(Cell::get),
        peak: PEAK.with(Cell::get),
        result: result
            .map(|d| (d.width, d.height))
            .map_err(|e| e.to_string()),
        refused,
    }
}

/// The limit of these tests: 2^20 pixels (1024 x 1024).
const M: u64 = 1 << 20;
/// Allocations that are not pixel buffers (decoder state, Huffman and
/// resize coefficient tables, error messages): at most this many bytes.
const SMALL: usize = 256 << 10;

/// The resize's own buffers for a `w x h` source: the central crop of the
/// first (horizontal) pass, 256 columns by the crop's rows, 3 bytes a
/// pixel (fast_image_resize).
fn resize_bytes(w: usize, h: usize) -> usize {
    let s = w.min(h);
    3 * 256 * (h * 256).div_ceil(s).max(h)
}

/// A CMYK JPEG of a gradient, `w x h` (zune-jpeg decodes it: libjpeg-turbo
/// cannot convert CMYK to RGB).
fn cmyk_jpeg(w: u16, h: u16) -> Vec<u8> {
    let px: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|i| {
            let (x, y) = (i % w as usize, i / w as usize);
            [(x * 3) as u8, (y * 5) as u8, ((x + y) * 2) as u8, 40]
        })
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&px, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    out
}

/// `bytes` (a baseline JPEG) with its frame header claiming `w x h`.
fn claiming(mut bytes: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
    let sof = bytes
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("a baseline frame header");
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

/// A JPEG libjpeg-turbo decodes at 1/d: its RGB buffer is at most
/// `3 * M / d^2` bytes (rounded up to whole pixels), and nothing larger is
/// allocated; besides it, only the resize's buffers.
fn check_turbo(what: &str, bytes: &[u8], w: usize, h: usize, scaling: JpegScaling) {
    let d = scaling.denominator(w, h);
    let c = cost(bytes, M, scaling);
    assert!(!c.refused, "{what}: {c:?}");
    let rgb = 3 * w.div_ceil(d) * h.div_ceil(d);
    let formula = 3 * M as usize / (d * d);
    assert!(
        rgb <= formula + 3 * (w + h) / d + 3,
        "{what}: the RGB buffer ({rgb}) is the formula's ({formula})"
    );
    // The buffer is there (the counting sees it) and nothing is larger.
    assert!(c.largest >= rgb, "{what}: {c:?}");
    assert!(
        c.largest <= rgb.max(SMALL),
        "{what}: largest allocation {} bytes, the formula gives {formula} (1/{d})",
        c.largest
    );
    let resize = resize_bytes(w.div_ceil(d), h.div_ceil(d));
    assert!(
        c.peak <= rgb + resize + SMALL,
        "{what}: {} bytes held at once, the formula gives {formula} (1/{d}) and the resize {resize}",
        c.peak
    );
}

/// A file decoded at full size into a buffer of up to 4 bytes a pixel,
/// then converted to RGB: at most `7 * M` bytes held (besides the
/// resize's), no single allocation over `4 * M`.
fn check_full_size(what: &str, bytes: &[u8], w: usize, h: usize) {
    let c = cost(bytes, M, JpegScaling::Draft);
    assert!(!c.refused, "{what}: {c:?}");
    assert!((w * h) as u64 <= M);
    let formula = 7 * M as usize;
    assert!(c.largest >= 3 * w * h, "{what}: {c:?}");
    assert!(
        c.largest <= 4 * M as usize,
        "{what}: largest allocation {} bytes, over 4 bytes a pixel of the limit",
        c.largest
    );
    assert!(
        c.peak <= 7 * w * h + resize_bytes(w, h) + SMALL,
        "{what}: {} bytes held at once, the formula gives {formula} ({}x{h} pixels) and the resize {}",
        c.peak,
        w,
        resize_bytes(w, h)
    );
}

/// A file claiming more than `M` pixels: refused, with no pixel buffer.
fn check_refused(what: &str, bytes: &[u8]) {
    let c = cost(bytes, M, JpegScaling::Draft);
    assert!(c.refused, "{what}: {c:?}");
    assert!(
        c.largest <= SMALL && c.peak <= SMALL,
        "{what}: {} bytes allocated at most ({} at once) before the refusal",
        c.largest,
        c.peak
    );
}

#[test]
fn a_decode_never_holds_more_than_the_pixel_limit_allows() {
    // libjpeg-turbo: real photos at the limit, decoded at 1/2 (draft) and
    // at full size.
    let real = jpeg(1024, 1024);
    check_turbo(
        "1024x1024 JPEG, draft",
        &real,
        1024,
        1024,
        JpegScaling::Draft,
    );
    check_turbo("1024x1024 JPEG, full", &real, 1024, 1024, JpegScaling::Full);
    let wide = jpeg(2048, 512);
    check_turbo("2048x512 JPEG, draft", &wide, 2048, 512, JpegScaling::Draft);

    // Crafted: a 16x16 JPEG claiming just under the limit allocates its
    // buffer before the data runs out (refused then as truncated), and no
    // more than the formula.
    let under = jpeg_claiming(1024, 1023);
    check_turbo(
        "16x16 JPEG claiming 1024x1023",
        &under,
        1024,
        1023,
        JpegScaling::Draft,
    );
    check_turbo(
        "16x16 JPEG claiming 1024x1023, full",
        &under,
        1024,
        1023,
        JpegScaling::Full,
    );
    check_refused("16x16 JPEG claiming 1025x1024", &jpeg_claiming(1025, 1024));
    check_refused(
        "16x16 JPEG claiming 32000x32000",
        &jpeg_claiming(32000, 32000),
    );

    // zune-jpeg at full size: CMYK, real and crafted.
    let cmyk = cmyk_jpeg(1024, 1024);
    let c = cost(&cmyk, M, JpegScaling::Draft);
    assert_eq!(c.result, Ok((1024, 1024)), "the CMYK photo decodes");
    check_full_size("1024x1024 CMYK JPEG", &cmyk, 1024, 1024);
    let cmyk_under = claiming(cmyk_jpeg(16, 16), 1024, 1023);
    check_full_size(
        "16x16 CMYK JPEG claiming 1024x1023",
        &cmyk_under,
        1024,
        1023,
    );
    check_refused(
        "16x16 CMYK JPEG claiming 1025x1024",
        &claiming(cmyk_jpeg(16, 16), 1025, 1024),
    );
    // A damaged stream libjpeg-turbo gives up on: zune-jpeg decides, within
    // the same bound.
    let mut damaged = jpeg(1024, 1024);
    let sos = damaged
        .windows(2)
        .position(|m| m == [0xFF, 0xDA])
        .expect("a scan");
    for b in &mut damaged[sos + 20..sos + 60] {
        *b = 0xFF;
    }
    check_full_size("damaged 1024x1024 JPEG", &damaged, 1024, 1024);

    // PNG (named .JPEG or not: the bytes decide), crafted just under and
    // over the limit.
    check_full_size(
        "8x8 PNG claiming 1024x1023",
        &png_claiming(1024, 1023),
        1024,
        1023,
    );
    check_refused("8x8 PNG claiming 1025x1024", &png_claiming(1025, 1024));
    check_refused("8x8 PNG claiming 20000x20000", &png_claiming(20000, 20000));
}
