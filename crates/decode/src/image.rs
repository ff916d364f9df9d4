//! Decoding one JPEG or PNG file into a 256x256 RGB image.
//!
//! The paper's geometry: the image is rescaled so that its shorter side is
//! 256 (the longer side to `round(L * 256 / S)`), and the central 256x256
//! patch (offset `(L' - 256) / 2`, rounded down) is kept. Both happen in one
//! resampling pass: the patch's footprint on the source is resampled
//! straight to 256x256. The filter is antialiasing: Lanczos3 (Pillow's
//! `LANCZOS`, the default) or Catmull-Rom (bicubic), see [`ResizeFilter`]. The
//! format is chosen by the magic bytes, never by the file name.

use std::io::Cursor;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::window::{resize_window, WindowDecoder};
use turbojpeg::{Colorspace, Decompressor};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::{DecodeError, PixelProblem};

/// Side of the output images.
pub const SIDE: usize = 256;
/// Bytes of one output image (`256*256*3`, RGB, HWC).
pub const IMAGE_BYTES: usize = SIDE * SIDE * 3;
/// Largest accepted width or height of a source image.
pub const MAX_SOURCE_SIDE: usize = 1 << 15;

const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];
const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// The resampling filter of the shorter-side-to-256 resize (both
/// antialias: their support widens with the downscaling factor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResizeFilter {
    /// Catmull-Rom cubic (support 2): fewer taps than Lanczos3.
    CatmullRom,
    /// Lanczos, a = 3 (support 3): Pillow's `LANCZOS` (the default).
    #[default]
    Lanczos3,
}

impl ResizeFilter {
    /// `"catmull-rom"` or `"lanczos3"`.
    pub fn name(self) -> &'static str {
        match self {
            ResizeFilter::CatmullRom => "catmull-rom",
            ResizeFilter::Lanczos3 => "lanczos3",
        }
    }

    /// The filter's support, in output pixels: the resize reaches this far
    /// on each side, times the downscaling factor.
    pub(crate) fn support(self) -> f64 {
        match self {
            ResizeFilter::CatmullRom => 2.0,
            ResizeFilter::Lanczos3 => 3.0,
        }
    }

    fn filter_type(self) -> FilterType {
        match self {
            ResizeFilter::CatmullRom => FilterType::CatmullRom,
            ResizeFilter::Lanczos3 => crate::lanczos::lanczos3_filter_type(),
        }
    }
}

/// How a JPEG is decoded before the resize.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JpegScaling {
    /// libjpeg-turbo decodes at 1/2, 1/4 or 1/8 of full size, in the DCT
    /// domain, the largest reduction that keeps both sides at least as large
    /// as the resize to a 256 shorter side needs (Pillow's `Image.draft`,
    /// which Pillow pipelines use). Only photos with a shorter side of 512 or
    /// more are affected: the inverse DCT, upsampling and colour conversion
    /// shrink with the pixel count, the entropy decoding does not (1.45x
    /// the throughput on 600-2000 px photos). The default. JPEGs that
    /// zune-jpeg decodes (CMYK, YCCK, damaged streams) are decoded at full
    /// size.
    #[default]
    Draft,
    /// Every JPEG decoded at full size, then resampled.
    Full,
}

impl JpegScaling {
    /// `"draft"` or `"full"`.
    pub fn name(self) -> &'static str {
        match self {
            JpegScaling::Draft => "draft",
            JpegScaling::Full => "full",
        }
    }

    /// The reduction (1, 2, 4 or 8) used for a `w x h` JPEG: Pillow's
    /// `draft` rule for the size the shorter-side-to-256 resize asks for,
    /// the largest power of two no larger than the whole ratio of the
    /// source to that size on either side.
    pub fn denominator(self, w: usize, h: usize) -> usize {
        if self == JpegScaling::Full || w == 0 || h == 0 {
            return 1;
        }
        let s = w.min(h);
        let (rw, rh) = ((w * SIDE / s).max(1), (h * SIDE / s).max(1));
        let ratio = (w / rw).min(h / rh);
        [8, 4, 2].into_iter().find(|&d| d <= ratio).unwrap_or(1)
    }
}

/// Pillow's limit (`Image.MAX_IMAGE_PIXELS * 2`, past which it raises
/// `DecompressionBombError`): 178,956,970 pixels, so that the same files pass
/// as with the Python peers.
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// How a [`Decoder256`] decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The resize filter.
    pub filter: ResizeFilter,
    /// How JPEGs are decoded before the resize.
    pub jpeg_scaling: JpegScaling,
    /// The most pixels (width x height) an image may declare; larger ones
    /// are refused from their header, before any pixel buffer is allocated
    /// ([`DecodeError::TooManyPixels`]). The largest buffers a decoder then
    /// holds are about `3 * max_pixels / d^2` bytes for a JPEG decoded at
    /// 1/d in the DCT domain, and `7 * max_pixels` for one decoded at full
    /// size by zune-jpeg (CMYK, damaged streams: its RGB output, its working
    /// buffers and the RGB copy) or a PNG; `tests/memory_bound.rs` checks
    /// both.
    pub max_pixels: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            filter: ResizeFilter::default(),
            jpeg_scaling: JpegScaling::default(),
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// What decoding one image found besides its pixels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Width of the stored image.
    pub width: usize,
    /// Height of the stored image.
    pub height: usize,
    /// A warning libjpeg gave while decoding it completely (for example
    /// `Corrupt JPEG data: 4 extraneous bytes before marker 0xd9`): the
    /// image is whole, and the warning is worth reporting.
    pub warning: Option<String>,
}

/// A reusable decoder: keeps the resizer and the full-size RGB buffer
/// between images (one per worker thread).
pub struct Decoder256 {
    filter: ResizeFilter,
    jpeg_scaling: JpegScaling,
    max_pixels: u64,
    /// libjpeg-turbo: made on first use, dropped after a stream it reported
    /// an error on; `Some(None)` when it cannot be made (zune-jpeg then
    /// decodes everything).
    turbo: Option<Option<Decompressor>>,
    /// libjpeg for decoding only the resize's window of a JPEG, at full size
    /// or scaled in the DCT domain ([`crate::window`]): made on first use,
    /// dropped after a stream it declined; `Some(None)` when it cannot be
    /// made.
    window: Option<Option<WindowDecoder>>,
    resizer: Resizer,
    rgb: Vec<u8>,
    raw: Vec<u8>,
}

impl Default for Decoder256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder256 {
    /// A new decoder with empty buffers and the default options.
    pub fn new() -> Self {
        Self::with_options(DecodeOptions::default())
    }

    /// A new decoder with empty buffers using `filter`.
    pub fn with_filter(filter: ResizeFilter) -> Self {
        Self::with_options(DecodeOptions {
            filter,
            ..DecodeOptions::default()
        })
    }

    /// A new decoder with empty buffers decoding as `options` say.
    pub fn with_options(options: DecodeOptions) -> Self {
        Decoder256 {
            filter: options.filter,
            jpeg_scaling: options.jpeg_scaling,
            max_pixels: options.max_pixels,
            turbo: None,
            window: None,
            resizer: Resizer::new(),
            rgb: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// Decodes `bytes` (JPEG or PNG) into `out` (`IMAGE_BYTES` long): RGB,
    /// HWC, shorter side scaled to 256, central 256x256 patch.
    ///
    /// Refused: an image that declares more pixels than the limit, and a
    /// JPEG whose stream ends before its image does (libjpeg's "premature
    /// end" warnings: the missing part would be grey fill). Kept, with the
    /// warning in [`Decoded::warning`]: an image that libjpeg decoded
    /// completely while warning about it.
    pub fn decode_into(&mut self, bytes: &[u8], out: &mut [u8]) -> Result<Decoded, DecodeError> {
        assert_eq!(out.len(), IMAGE_BYTES, "output buffer must be 256*256*3");
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        let decoded = if bytes.starts_with(&JPEG_MAGIC) {
            self.decode_jpeg(bytes)?
        } else if bytes.starts_with(&PNG_MAGIC) {
            let (width, height) = self.decode_png(bytes)?;
            Decoded {
                width,
                height,
                warning: None,
            }
        } else {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(DecodeError::UnknownFormat(head.join(" ")));
        };
        self.resize_center(decoded.width, decoded.height, out)?;
        Ok(decoded)
    }

    /// Decodes a JPEG into `self.rgb`; returns (width, height). libjpeg-turbo
    /// first (1.1-1.3x zune-jpeg's speed here); zune-jpeg for what it
    /// declines: CMYK and YCCK, which it cannot convert, and any stream it
    /// reports a problem with (a truncated file, say), so that the
    /// strictness rules below decide.
    fn decode_jpeg(&mut self, bytes: &[u8]) -> Result<Decoded, DecodeError> {
        let warning = match self.decode_jpeg_turbo(bytes)? {
            Turbo::Decoded(decoded) => return Ok(decoded),
            Turbo::Declined { warning } => warning,
        };
        let (width, height) = self.decode_jpeg_zune(bytes)?;
        Ok(Decoded {
            width,
            height,
            warning,
        })
    }

    /// libjpeg-turbo into `self.rgb`, or [`Turbo::Declined`] (zune-jpeg
    /// then decides). A handle that reported a problem is dropped, so that
    /// the choice of decoder for an image never depends on the images before
    /// it.
    fn decode_jpeg_turbo(&mut self, bytes: &[u8]) -> Result<Turbo, DecodeError> {
        let max_pixels = self.max_pixels;
        let declined = Turbo::Declined { warning: None };
        let Some(turbo) = self
            .turbo
            .get_or_insert_with(|| Decompressor::new().ok())
            .as_mut()
        else {
            return Ok(declined);
        };
        let header = match turbo.read_header(bytes) {
            Ok(header) => header,
            Err(e) => {
                // TurboJPEG gives no header after a warning about it.
                self.turbo = None;
                return match LibjpegWarning::of(&e) {
                    Some(LibjpegWarning::Truncated) => Err(DecodeError::Truncated { source: e }),
                    Some(LibjpegWarning::Benign(text)) => Ok(Turbo::Declined {
                        warning: Some(text),
                    }),
                    None => Ok(declined),
                };
            }
        };
        let (w, h) = (header.width, header.height);
        check_size(w, h, max_pixels)?;
        if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
            return Ok(declined);
        }
        // TurboJPEG scales in the DCT domain to the largest of its factors
        // that fits the size asked for: exactly 1/d here.
        let d = self.jpeg_scaling.denominator(w, h);
        if let Some((width, height)) = decode_window(
            &mut self.window,
            &mut self.rgb,
            self.filter,
            bytes,
            (w, h, d),
        ) {
            return Ok(Turbo::Decoded(Decoded {
                width,
                height,
                warning: None,
            }));
        }
        let (w, h) = (w.div_ceil(d), h.div_ceil(d));
        self.rgb.resize(w * h * 3, 0);
        let image = turbojpeg::Image {
            pixels: &mut self.rgb[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        let warning = match turbo.decompress(bytes, image) {
            Ok(()) => None,
            Err(e) => {
                self.turbo = None;
                match LibjpegWarning::of(&e) {
                    // The stream ends before the image does: the rest is fill.
                    Some(LibjpegWarning::Truncated) => {
                        return Err(DecodeError::Truncated { source: e });
                    }
                    // Decoded completely; worth reporting.
                    Some(LibjpegWarning::Benign(text)) => Some(text),
                    // A fatal error: zune-jpeg decides.
                    None => return Ok(declined),
                }
            }
        };
        Ok(Turbo::Decoded(Decoded {
            width: w,
            height: h,
            warning,
        }))
    }

    /// zune-jpeg into `self.rgb`; returns (width, height).
    fn decode_jpeg_zune(&mut self, bytes: &[u8]) -> Result<(usize, usize), DecodeError> {
        // A file without an end-of-image marker near its end is probably
        // truncated: decode it strictly, so that missing data is an error
        // instead of grey fill. Complete files are decoded leniently, like
        // libjpeg does (minor stream errors are tolerated).
        let strict = !has_eoi_near_end(bytes);
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::RGB)
            .set_max_width(MAX_SOURCE_SIDE)
            .set_max_height(MAX_SOURCE_SIDE)
            .set_strict_mode(strict);
        let mut dec = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        dec.decode_headers().map_err(|source| DecodeError::Jpeg {
            source,
            truncated: false,
        })?;
        let jpeg_pixels = |problem| DecodeError::Pixels {
            format: "JPEG",
            problem,
        };
        let (w, h) = dec
            .dimensions()
            .ok_or(jpeg_pixels(PixelProblem::NoDimensions))?;
        check_size(w, h, self.max_pixels)?;
        let size = dec
            .output_buffer_size()
            .ok_or(jpeg_pixels(PixelProblem::TooLarge))?;
        let components = dec
            .output_colorspace()
            .map(|c| c.num_components())
            .unwrap_or(3);
        self.raw.resize(size, 0);
        dec.decode_into(&mut self.raw)
            .map_err(|source| DecodeError::Jpeg {
                source,
                truncated: strict,
            })?;
        to_rgb(&self.raw, components, w * h, &mut self.rgb).map_err(jpeg_pixels)?;
        Ok((w, h))
    }

    /// Decodes a PNG into `self.rgb` (palette, grey, alpha and 16-bit are
    /// reduced to 8-bit RGB; alpha is dropped); returns (width, height).
    fn decode_png(&mut self, bytes: &[u8]) -> Result<(usize, usize), DecodeError> {
        let perr = DecodeError::Png;
        let png_pixels = |problem| DecodeError::Pixels {
            format: "PNG",
            problem,
        };
        let mut dec = png::Decoder::new(Cursor::new(bytes));
        dec.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = dec.read_info().map_err(perr)?;
        let (w, h) = {
            let info = reader.info();
            (info.width as usize, info.height as usize)
        };
        check_size(w, h, self.max_pixels)?;
        let size = reader
            .output_buffer_size()
            .ok_or(png_pixels(PixelProblem::TooLarge))?;
        self.raw.resize(size, 0);
        let frame = reader.next_frame(&mut self.raw).map_err(perr)?;
        let components = match frame.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => {
                return Err(png_pixels(PixelProblem::PaletteNotExpanded));
            }
        };
        let line = frame.line_size;
        if line != w * components {
            // Rows carry padding: compact them first.
            let mut packed = Vec::with_capacity(w * h * components);
            for row in self.raw.chunks(line).take(h) {
                packed.extend_from_slice(&row[..w * components]);
            }
            self.raw = packed;
        }
        to_rgb(&self.raw, components, w * h, &mut self.rgb).map_err(png_pixels)?;
        Ok((w, h))
    }

    /// Resamples the central square of `self.rgb` (w x h) into `out`.
    fn resize_center(&mut self, w: usize, h: usize, out: &mut [u8]) -> Result<(), DecodeError> {
        let src = ImageRef::new(w as u32, h as u32, &self.rgb[..w * h * 3], PixelType::U8x3)
            .map_err(DecodeError::ResizeImage)?;
        let mut dst = Image::from_slice_u8(SIDE as u32, SIDE as u32, out, PixelType::U8x3)
            .map_err(DecodeError::ResizeImage)?;
        let (left, top, cw, ch) = center_crop_box(w, h);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(self.filter.filter_type()))
            .crop(left, top, cw, ch);
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(DecodeError::Resize)
    }
}

/// Decodes into `rgb` only the window of a `w x h` JPEG, scaled by `1/d` in
/// the DCT domain, that the resize with `filter` reads ([`crate::window`]),
/// with the decoder in `slot` (made on first use); the decoded image's size,
/// or `None` when the window is the whole image, or libjpeg had anything to
/// say about the stream: the whole image is then decoded as before, where
/// its warnings are told apart and reported.
fn decode_window(
    slot: &mut Option<Option<WindowDecoder>>,
    rgb: &mut Vec<u8>,
    filter: ResizeFilter,
    bytes: &[u8],
    (w, h, d): (usize, usize, usize),
) -> Option<(usize, usize)> {
    let (ow, oh) = (w.div_ceil(d), h.div_ceil(d));
    let window = resize_window(ow, oh, filter.support());
    if window == (0, 0, ow, oh) {
        return None;
    }
    let decoder = slot.get_or_insert_with(WindowDecoder::new).as_mut()?;
    rgb.resize(ow * oh * 3, 0);
    if !decoder.decode(bytes, (w, h, d), window, rgb) {
        // As for TurboJPEG: no state of a declined stream reaches the next.
        *slot = None;
        return None;
    }
    Some((ow, oh))
}

/// Decodes one JPEG or PNG file into a 256x256 RGB image (HWC, `256*256*3`
/// bytes): shorter side scaled to 256, central patch. Use [`Decoder256`] to
/// reuse buffers across many images.
pub fn decode_to_256(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![0u8; IMAGE_BYTES];
    Decoder256::new().decode_into(bytes, &mut out)?;
    Ok(out)
}

/// What libjpeg-turbo made of a JPEG.
enum Turbo {
    /// Decoded into the decoder's RGB buffer.
    Decoded(Decoded),
    /// Left to zune-jpeg (CMYK and YCCK, streams libjpeg cannot read, or
    /// whose header it only warned about: then with the warning).
    Declined { warning: Option<String> },
}

/// What a libjpeg warning means for the image it was given for.
#[derive(Debug, PartialEq, Eq)]
enum LibjpegWarning {
    /// The stream ends before the image does (`JWRN_JPEG_EOF`,
    /// `JWRN_HIT_MARKER`): the decoder filled the rest.
    Truncated,
    /// Any other warning (libjpeg's `JWRN_*` messages in `jerror.h`): the
    /// image was decoded completely.
    Benign(String),
}

impl LibjpegWarning {
    /// Warnings, told from fatal errors by their messages: libjpeg's
    /// warning texts (`jerror.h`, `JWRN_*`) as TurboJPEG reports them.
    const WARNING_TEXTS: [&'static str; 7] = [
        "Corrupt JPEG data",
        "Premature end of JPEG file",
        "Warning: unknown JFIF revision",
        "Invalid SOS parameters for sequential JPEG",
        "Inconsistent progression sequence",
        "Unknown Adobe color transform code",
        "Application transferred too",
    ];
    const TRUNCATED_TEXTS: [&'static str; 2] = [
        "Premature end of JPEG file",
        "premature end of data segment",
    ];

    fn of(error: &turbojpeg::Error) -> Option<LibjpegWarning> {
        let turbojpeg::Error::TurboJpegError(text) = error else {
            return None;
        };
        if !Self::WARNING_TEXTS.iter().any(|w| text.contains(w)) {
            return None;
        }
        Some(if Self::TRUNCATED_TEXTS.iter().any(|w| text.contains(w)) {
            LibjpegWarning::Truncated
        } else {
            LibjpegWarning::Benign(text.clone())
        })
    }
}

/// The source rectangle (left, top, width, height) that becomes the
/// central 256x256 patch after scaling the shorter side to 256: the image
/// scaled to `round(w * 256 / s) x round(h * 256 / s)`, cropped at
/// `((W' - 256) / 2, (H' - 256) / 2)` (integer division), mapped back to
/// source coordinates.
pub fn center_crop_box(w: usize, h: usize) -> (f64, f64, f64, f64) {
    let s = w.min(h) as f64;
    let side = SIDE as f64;
    let axis = |len: usize| {
        let scaled = ((len as f64 * side / s).round() as usize).max(SIDE);
        let offset = ((scaled - SIDE) / 2) as f64;
        let k = len as f64 / scaled as f64; // source pixels per output pixel
        (offset * k, side * k)
    };
    let (left, cw) = axis(w);
    let (top, ch) = axis(h);
    (left, top, cw, ch)
}

/// Refuses a `w x h` image over the pixel limit, and sizes no decoder can
/// hold.
fn check_size(w: usize, h: usize, max_pixels: u64) -> Result<(), DecodeError> {
    if w as u64 * h as u64 > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width: w,
            height: h,
            limit: max_pixels,
        });
    }
    if w == 0 || h == 0 || w > MAX_SOURCE_SIDE || h > MAX_SOURCE_SIDE {
        return Err(DecodeError::BadSize {
            width: w,
            height: h,
        });
    }
    Ok(())
}

/// True when the JPEG end-of-image marker (FF D9) is among the last bytes
/// (after trailing zero padding).
fn has_eoi_near_end(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map(|p| p + 1)
        .unwrap_or(0);
    let start = end.saturating_sub(64);
    bytes[start..end].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Converts `n` pixels of `components` channels into RGB8 in `rgb`.
fn to_rgb(src: &[u8], components: usize, n: usize, rgb: &mut Vec<u8>) -> Result<(), PixelProblem> {
    if src.len() < n * components {
        return Err(PixelProblem::Short {
            got: src.len(),
            expected: n * components,
        });
    }
    rgb.clear();
    rgb.reserve(n * 3);
    match components {
        3 => rgb.extend_from_slice(&src[..n * 3]),
        1 => rgb.extend(src[..n].iter().flat_map(|&g| [g, g, g])),
        2 => rgb.extend(
            src[..n * 2]
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0]]),
        ),
        4 => rgb.extend(
            src[..n * 4]
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]]),
        ),
        c => return Err(PixelProblem::Channels(c)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u16, h: u16, color: jpeg_encoder::ColorType, progressive: bool) -> Vec<u8> {
        let ch = match color {
            jpeg_encoder::ColorType::Luma => 1,
            jpeg_encoder::ColorType::Cmyk | jpeg_encoder::ColorType::Ycck => 4,
            _ => 3,
        };
        let mut px = Vec::new();
        for y in 0..h as usize {
            for x in 0..w as usize {
                for c in 0..ch {
                    px.push(((x * 3 + y * 5 + c * 40) % 256) as u8);
                }
            }
        }
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_progressive(progressive);
        enc.encode(&px, w, h, color).unwrap();
        out
    }

    #[test]
    fn draft_scaling_follows_pillows_rule() {
        let d = |w, h| JpegScaling::Draft.denominator(w, h);
        assert_eq!(d(500, 375), 1);
        assert_eq!(d(511, 700), 1);
        assert_eq!(d(512, 512), 2);
        assert_eq!(d(1024, 768), 2); // 3x the size asked for
        assert_eq!(d(2048, 1536), 4); // 6x
        assert_eq!(d(4096, 3072), 8); // 12x
        assert_eq!(d(600, 5000), 2); // the shorter side decides
        assert_eq!(d(0, 10), 1);
        assert_eq!(JpegScaling::Full.denominator(4096, 3072), 1);
    }

    /// A smooth photo-like JPEG (gradients and a soft disc).
    fn smooth_jpeg(w: usize, h: usize) -> Vec<u8> {
        let mut px = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
                let r2 = (fx - 0.5).powi(2) + (fy - 0.5).powi(2);
                let disc = 120.0 * (-r2 * 20.0).exp();
                px.push((40.0 + 150.0 * fx + disc).min(255.0) as u8);
                px.push((30.0 + 180.0 * fy) as u8);
                px.push((200.0 - 100.0 * fx * fy + disc / 2.0).min(255.0) as u8);
            }
        }
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 92)
            .encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    #[test]
    fn draft_decoding_is_close_to_full_decoding_and_only_for_large_photos() {
        let decode = |bytes: &[u8], scaling| {
            let mut out = vec![0u8; IMAGE_BYTES];
            Decoder256::with_options(DecodeOptions {
                filter: ResizeFilter::Lanczos3,
                jpeg_scaling: scaling,
                ..DecodeOptions::default()
            })
            .decode_into(bytes, &mut out)
            .unwrap();
            out
        };
        // Small photos decode the same either way.
        let small = smooth_jpeg(500, 375);
        assert_eq!(
            decode(&small, JpegScaling::Draft),
            decode(&small, JpegScaling::Full)
        );
        // Large ones at 1/2 and 1/4: close to full size, not the same.
        for (w, h) in [(1100, 900), (2100, 1600)] {
            let big = smooth_jpeg(w, h);
            let (a, b) = (
                decode(&big, JpegScaling::Draft),
                decode(&big, JpegScaling::Full),
            );
            assert_ne!(a, b, "{w}x{h}: drafted");
            let diffs: Vec<u32> = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| x.abs_diff(y) as u32)
                .collect();
            let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
            let max = *diffs.iter().max().unwrap();
            assert!(mean < 1.0 && max <= 12, "{w}x{h}: mean {mean}, max {max}");
        }
    }

    #[test]
    fn decodes_rgb_gray_cmyk_progressive_jpegs() {
        for (color, prog) in [
            (jpeg_encoder::ColorType::Rgb, false),
            (jpeg_encoder::ColorType::Rgb, true),
            (jpeg_encoder::ColorType::Luma, false),
            (jpeg_encoder::ColorType::Cmyk, false),
            (jpeg_encoder::ColorType::Ycck, false),
        ] {
            let img = decode_to_256(&jpeg(300, 200, color, prog)).unwrap();
            assert_eq!(img.len(), IMAGE_BYTES);
        }
    }

    /// CMYK and YCCK files (Adobe-style, inverted, as ImageNet's 22 CMYK
    /// photos) come out in the colours the ink amounts mean: uniform patches
    /// of known CMYK against `R = (255 - C)(255 - K) / 255` (and likewise G
    /// with M, B with Y), within 4 levels (JPEG at quality 90 on a flat patch).
    #[test]
    fn cmyk_and_ycck_patches_decode_to_the_right_colours() {
        let patches: [([u8; 4], [u8; 3]); 5] = [
            ([0, 255, 255, 0], [255, 0, 0]),
            ([255, 0, 255, 0], [0, 255, 0]),
            ([255, 255, 0, 0], [0, 0, 255]),
            ([0, 0, 0, 128], [127, 127, 127]),
            ([64, 128, 0, 32], [167, 111, 223]),
        ];
        for (cmyk, want) in patches {
            let formula: [u8; 3] = std::array::from_fn(|c| {
                ((255 - cmyk[c] as u32) * (255 - cmyk[3] as u32) / 255) as u8
            });
            assert!(
                formula.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= 1),
                "{formula:?} vs {want:?}"
            );
            for color in [
                jpeg_encoder::ColorType::Cmyk,
                jpeg_encoder::ColorType::CmykAsYcck,
            ] {
                let (w, h) = (300u16, 200u16);
                let px: Vec<u8> = (0..w as usize * h as usize).flat_map(|_| cmyk).collect();
                let mut bytes = Vec::new();
                jpeg_encoder::Encoder::new(&mut bytes, 90)
                    .encode(&px, w, h, color)
                    .unwrap();
                let img = decode_to_256(&bytes).unwrap();
                let centre = &img[(128 * SIDE + 128) * 3..][..3];
                for c in 0..3 {
                    assert!(
                        centre[c].abs_diff(want[c]) <= 4,
                        "{color:?} {cmyk:?}: got {centre:?}, want {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn gray_jpeg_gives_equal_channels() {
        let img = decode_to_256(&jpeg(260, 300, jpeg_encoder::ColorType::Luma, false)).unwrap();
        for p in img.chunks_exact(3) {
            assert_eq!(p[0], p[1]);
            assert_eq!(p[1], p[2]);
        }
    }

    #[test]
    fn uniform_image_stays_uniform_and_center_is_cropped() {
        // Left third red, middle third green, right third blue, 768x256:
        // the central 256x256 patch is the green third.
        let (w, h) = (768usize, 256usize);
        let mut px = Vec::new();
        for _y in 0..h {
            for x in 0..w {
                px.extend_from_slice(match x / 256 {
                    0 => &[255, 0, 0],
                    1 => &[0, 255, 0],
                    _ => &[0, 0, 255],
                });
            }
        }
        let mut png_bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png_bytes, w as u32, h as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.write_header().unwrap().write_image_data(&px).unwrap();
        }
        let img = decode_to_256(&png_bytes).unwrap();
        // Away from the borders the patch is pure green.
        for y in 0..SIDE {
            for x in 8..SIDE - 8 {
                let p = &img[(y * SIDE + x) * 3..][..3];
                assert_eq!(p, &[0, 255, 0], "pixel {x},{y}");
            }
        }
    }

    #[test]
    fn crop_box_follows_resize_then_center_crop() {
        // 500x375 -> 341x256 (round(500*256/375) = 341.33 -> 341), offset 42.
        let (l, t, w, h) = center_crop_box(500, 375);
        let k = 500.0 / 341.0;
        assert!((l - 42.0 * k).abs() < 1e-9 && (w - 256.0 * k).abs() < 1e-9);
        assert_eq!((t, h), (0.0, 375.0));
        assert_eq!(center_crop_box(300, 300), (0.0, 0.0, 300.0, 300.0));
        let (l, t, w, h) = center_crop_box(100, 400);
        assert_eq!((l, w), (0.0, 100.0));
        assert!((t - 150.0).abs() < 1e-9 && (h - 100.0).abs() < 1e-9);
    }

    #[test]
    fn png_gray_alpha_and_16bit_become_rgb() {
        for (color, depth, ch, bytes_per) in [
            (png::ColorType::Grayscale, png::BitDepth::Eight, 1, 1),
            (png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, 2, 1),
            (png::ColorType::Rgba, png::BitDepth::Eight, 4, 1),
            (png::ColorType::Rgb, png::BitDepth::Sixteen, 3, 2),
        ] {
            let (w, h) = (40u32, 30u32);
            let data = vec![200u8; (w * h) as usize * ch * bytes_per];
            let mut bytes = Vec::new();
            {
                let mut enc = png::Encoder::new(&mut bytes, w, h);
                enc.set_color(color);
                enc.set_depth(depth);
                enc.write_header().unwrap().write_image_data(&data).unwrap();
            }
            let img = decode_to_256(&bytes).unwrap();
            assert!(img.iter().all(|&v| v == 200), "{color:?} {depth:?}");
        }
    }

    #[test]
    fn broken_inputs_are_errors() {
        assert!(matches!(decode_to_256(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            decode_to_256(b"hello world"),
            Err(DecodeError::UnknownFormat(_))
        ));
        let good = jpeg(320, 240, jpeg_encoder::ColorType::Rgb, false);
        assert!(decode_to_256(&good[..good.len() / 2]).is_err());
        assert!(decode_to_256(&good[..100]).is_err());
        let prog = jpeg(320, 240, jpeg_encoder::ColorType::Rgb, true);
        assert!(decode_to_256(&prog[..prog.len() / 2]).is_err());
    }

    /// A noisy photo-like JPEG with the given chroma subsampling (`None`:
    /// grayscale), so that every pixel and its chroma matter.
    fn noisy_jpeg(
        w: u16,
        h: u16,
        sampling: Option<jpeg_encoder::SamplingFactor>,
        progressive: bool,
    ) -> Vec<u8> {
        let ch = if sampling.is_some() { 3 } else { 1 };
        let mut state = (w as u64) << 16 | h as u64;
        let mut px = Vec::with_capacity(w as usize * h as usize * ch);
        for y in 0..h as usize {
            for x in 0..w as usize {
                for c in 0..ch {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let noise = (state >> 59) as usize; // 0..32
                    px.push(((x * (3 + c) + y * (5 - c) + c * 60 + noise) % 256) as u8);
                }
            }
        }
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_progressive(progressive);
        let color = match sampling {
            Some(f) => {
                enc.set_sampling_factor(f);
                jpeg_encoder::ColorType::Rgb
            }
            None => jpeg_encoder::ColorType::Luma,
        };
        enc.encode(&px, w, h, color).unwrap();
        out
    }

    /// Decoding only the resize's window gives the very bytes of decoding
    /// the whole image, for landscape, portrait and square photos, odd
    /// sizes, photos large enough to be decoded at 1/2 and 1/4 in the DCT
    /// domain, every chroma subsampling, grayscale and progressive streams,
    /// both filters: with stale bytes in the buffer outside the window, so
    /// that a read of any pixel outside it would show.
    #[test]
    fn window_decoding_gives_the_bytes_of_whole_decoding() {
        use jpeg_encoder::SamplingFactor as S;
        let sizes = [
            (500, 375),
            (375, 500),
            (500, 333),
            (333, 500),
            (640, 480),
            (1023, 511),
            (257, 700),
            (700, 257),
            (301, 300),
            (200, 150),
            (150, 200),
            // Decoded at 1/2 and 1/4 in the DCT domain (Pillow's draft).
            (1024, 768),
            (767, 1100),
            (2100, 1400),
        ];
        let samplings = [Some(S::R_4_2_0), Some(S::R_4_2_2), Some(S::R_4_4_4), None];
        let mut windowed = 0;
        for (i, &(w, h)) in sizes.iter().enumerate() {
            for (j, &sampling) in samplings.iter().enumerate() {
                let progressive = (i + j) % 3 == 0;
                let bytes = noisy_jpeg(w, h, sampling, progressive);
                for filter in [ResizeFilter::Lanczos3, ResizeFilter::CatmullRom] {
                    let options = DecodeOptions {
                        filter,
                        ..DecodeOptions::default()
                    };
                    let mut whole = Decoder256::with_options(options);
                    whole.window = Some(None); // no window decoder: the whole image
                    let mut want = vec![0u8; IMAGE_BYTES];
                    whole.decode_into(&bytes, &mut want).unwrap();

                    let mut part = Decoder256::with_options(options);
                    part.rgb = vec![0xA5; w as usize * h as usize * 3];
                    let mut got = vec![0u8; IMAGE_BYTES];
                    part.decode_into(&bytes, &mut got).unwrap();
                    let stale = part.rgb.iter().filter(|&&v| v == 0xA5).count();
                    windowed += usize::from(stale > 0);
                    assert!(
                        got == want,
                        "{w}x{h} {sampling:?} progressive {progressive} {filter:?}: window decode differs"
                    );
                }
            }
        }
        // Every case took the window path (each left stale bytes).
        assert_eq!(windowed, sizes.len() * samplings.len() * 2);
    }

    /// A stream that libjpeg warns about leaves the window path, and the
    /// whole-image path then reports it as before: a truncated one is
    /// refused, one with extra bytes before a marker is kept with the
    /// warning.
    #[test]
    fn a_stream_libjpeg_warns_about_is_decoded_whole_and_reported() {
        let bytes = noisy_jpeg(500, 375, Some(jpeg_encoder::SamplingFactor::R_4_2_0), false);
        let mut out = vec![0u8; IMAGE_BYTES];
        let cut = &bytes[..bytes.len() * 2 / 3];
        let err = Decoder256::new().decode_into(cut, &mut out).unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }), "{err:?}");

        // Junk before a progressive stream's second scan, after an empty
        // comment (right after entropy data it would be read as more of
        // it): libjpeg reads it while decoding, after the header, and warns.
        let bytes = noisy_jpeg(500, 375, Some(jpeg_encoder::SamplingFactor::R_4_2_0), true);
        let second_scan = (0..bytes.len() - 1)
            .filter(|&i| bytes[i] == 0xFF && bytes[i + 1] == 0xDA)
            .nth(1)
            .expect("a progressive stream has several scans");
        let mut junk = bytes[..second_scan].to_vec();
        junk.extend_from_slice(&[0xFF, 0xFE, 0x00, 0x02, 0x12, 0x34, 0x56]);
        junk.extend_from_slice(&bytes[second_scan..]);
        let decoded = Decoder256::new().decode_into(&junk, &mut out).unwrap();
        let warning = decoded.warning.expect("libjpeg's warning");
        assert!(warning.contains("extraneous bytes"), "{warning}");
        let mut clean = vec![0u8; IMAGE_BYTES];
        Decoder256::new().decode_into(&bytes, &mut clean).unwrap();
        assert!(
            out == clean,
            "the warned stream's pixels are the clean stream's"
        );
    }
}
