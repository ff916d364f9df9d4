//! The decode-only ceiling of a preprocess run: libjpeg-turbo decoding the
//! same JPEG files from memory at the same DCT scales as the pipeline
//! (Pillow's `draft` rule, [`decode::JpegScaling::denominator`]), and
//! nothing else, on the same number of threads. No pipeline built on that
//! decoder can be faster.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;

/// What [`measure`] found.
pub struct DecodeCeiling {
    /// Files libjpeg-turbo decoded (PNGs, CMYK/YCCK and broken files are
    /// left out: the pipeline hands them to other decoders or skips them).
    pub images: usize,
    /// Wall seconds of the fastest of the rounds.
    pub seconds: f64,
}

impl DecodeCeiling {
    /// Images per second.
    pub fn rate(&self) -> f64 {
        self.images as f64 / self.seconds
    }
}

/// Every member of every inner tar of an ImageNet-layout train tar, read
/// into memory.
fn read_members(train_tar: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let file = std::fs::File::open(train_tar)
        .with_context(|| format!("opening {}", train_tar.display()))?;
    let mut outer = tar::Archive::new(std::io::BufReader::new(file));
    let mut members = Vec::new();
    for inner in outer.entries()? {
        let mut inner = tar::Archive::new(inner?);
        for entry in inner.entries()? {
            let mut entry = entry?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            members.push(bytes);
        }
    }
    Ok(members)
}

/// Decodes each member on `threads` threads (taking files in turn from a
/// shared counter), `rounds` times; the fastest round.
pub fn measure(
    train_tar: &Path,
    threads: usize,
    scaling: decode::JpegScaling,
    rounds: usize,
) -> anyhow::Result<DecodeCeiling> {
    let members = read_members(train_tar)?;
    let mut best: Option<DecodeCeiling> = None;
    for _ in 0..rounds.max(1) {
        let next = AtomicUsize::new(0);
        let decoded = AtomicUsize::new(0);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| {
                    let mut turbo = turbojpeg::Decompressor::new().ok();
                    let mut rgb = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(bytes) = members.get(i) else { break };
                        let Some(d) = turbo.as_mut() else { break };
                        if decode_one(d, bytes, scaling, &mut rgb) {
                            decoded.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // As the pipeline does: a handle that failed is
                            // replaced.
                            turbo = turbojpeg::Decompressor::new().ok();
                        }
                    }
                });
            }
        });
        let round = DecodeCeiling {
            images: decoded.load(Ordering::Relaxed),
            seconds: t.elapsed().as_secs_f64(),
        };
        if best.as_ref().is_none_or(|b| round.seconds < b.seconds) {
            best = Some(round);
        }
    }
    Ok(best.expect("at least one round"))
}

/// One JPEG at the pipeline's DCT scale into `rgb`; false when
/// libjpeg-turbo cannot or would not decode it (not a JPEG, CMYK or YCCK,
/// any error or warning).
fn decode_one(
    d: &mut turbojpeg::Decompressor,
    bytes: &[u8],
    scaling: decode::JpegScaling,
    rgb: &mut Vec<u8>,
) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return false;
    }
    let Ok(header) = d.read_header(bytes) else {
        return false;
    };
    if matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    ) {
        return false;
    }
    let k = scaling.denominator(header.width, header.height);
    let (w, h) = (header.width.div_ceil(k), header.height.div_ceil(k));
    rgb.resize(w * h * 3, 0);
    let image = turbojpeg::Image {
        pixels: &mut rgb[..],
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    d.decompress(bytes, image).is_ok()
}
