//! Turning a rendered picture into the bytes of a file: a baseline JPEG or
//! one of the odd and broken kinds real ImageNet holds.

use jpeg_encoder::{ColorType, Encoder};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{OddKind, SynthError};

/// Encodes RGB pixels as a JPEG of the given colour type.
fn jpeg(
    data: &[u8],
    w: u32,
    h: u32,
    color: ColorType,
    quality: u8,
    progressive: bool,
) -> Result<Vec<u8>, SynthError> {
    let mut out = Vec::with_capacity(data.len() / 8);
    let mut enc = Encoder::new(&mut out, quality);
    enc.set_progressive(progressive);
    enc.encode(data, w as u16, h as u16, color)?;
    Ok(out)
}

/// RGB to CMYK with full black extraction, so that the usual conversion
/// back, `R = (255 - C) * (255 - K) / 255`, gives the same picture.
pub fn rgb_to_cmyk(rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgb.len() / 3 * 4);
    for p in rgb.chunks_exact(3) {
        let max = p[0].max(p[1]).max(p[2]) as u32;
        if max == 0 {
            out.extend_from_slice(&[0, 0, 0, 255]);
            continue;
        }
        let ch = |c: u8| (255 - (c as u32 * 255 + max / 2) / max) as u8;
        out.extend_from_slice(&[ch(p[0]), ch(p[1]), ch(p[2]), (255 - max) as u8]);
    }
    out
}

/// BT.601 luma of RGB pixels.
pub fn rgb_to_luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000) as u8)
        .collect()
}

fn png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, SynthError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

/// Cuts a JPEG inside its start-of-frame segment: no decoder can read it.
fn truncate_in_header(jpeg: &[u8]) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|m| m[0] == 0xFF && matches!(m[1], 0xC0 | 0xC2))
        .unwrap_or(jpeg.len() / 4);
    jpeg[..(sof + 6).min(jpeg.len())].to_vec()
}

/// The bytes of a file of `kind` (`None`: a normal baseline colour JPEG).
pub fn encode_file(
    rgb: &[u8],
    w: u32,
    h: u32,
    kind: Option<OddKind>,
    quality: u8,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<u8>, SynthError> {
    Ok(match kind {
        None => jpeg(rgb, w, h, ColorType::Rgb, quality, false)?,
        Some(OddKind::Grayscale) => jpeg(&rgb_to_luma(rgb), w, h, ColorType::Luma, quality, false)?,
        Some(OddKind::Cmyk) => jpeg(&rgb_to_cmyk(rgb), w, h, ColorType::Cmyk, quality, false)?,
        Some(OddKind::Ycck) => jpeg(&rgb_to_cmyk(rgb), w, h, ColorType::CmykAsYcck, quality, false)?,
        Some(OddKind::Progressive) => jpeg(rgb, w, h, ColorType::Rgb, quality, true)?,
        Some(OddKind::PngNamedJpeg) => png(rgb, w, h)?,
        Some(OddKind::TruncatedJpeg) => {
            truncate_in_header(&jpeg(rgb, w, h, ColorType::Rgb, quality, false)?)
        }
        Some(OddKind::Empty) => Vec::new(),
        Some(OddKind::NotAnImage) => {
            b"<html><head><title>404 Not Found</title></head>\n<body>The photo you requested is no longer available.</body></html>\n".to_vec()
        }
        Some(OddKind::RandomBytes) => {
            let mut b = vec![0u8; 1500];
            rng.fill(&mut b[..]);
            b[0] = 0; // never a JPEG or PNG magic by chance
            b
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_converts_back_to_the_same_rgb() {
        let mut rgb = Vec::new();
        for r in (0..=255u32).step_by(15) {
            for g in (0..=255u32).step_by(17) {
                for b in [0u32, 1, 128, 254, 255] {
                    rgb.extend_from_slice(&[r as u8, g as u8, b as u8]);
                }
            }
        }
        let cmyk = rgb_to_cmyk(&rgb);
        for (p, q) in rgb.chunks_exact(3).zip(cmyk.chunks_exact(4)) {
            let k = 255 - q[3] as i32;
            for ch in 0..3 {
                let back = (255 - q[ch] as i32) * k / 255;
                assert!((back - p[ch] as i32).abs() <= 1, "{p:?} -> {q:?}");
            }
        }
    }
}
