//! A white RGB raster that images are copied into and text is drawn onto
//! (with the embedded font of [`crate::plot`]), written as PNG.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Result, TrainerError};
use crate::plot::{register_font, FAMILY};

/// An 8-bit RGB image, rows top to bottom, HWC.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A `width`x`height` image filled with `rgb`.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        Self {
            width,
            height,
            data: rgb.repeat(width * height),
        }
    }

    /// The pixel at column `x`, row `y`.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Resized to `width`x`height` by averaging the source pixels each
    /// output pixel covers (a box filter; plain sampling when enlarging).
    pub fn resized(&self, width: usize, height: usize) -> Self {
        let mut out = Vec::with_capacity(width * height * 3);
        let span = |o: usize, n_out: usize, n_in: usize| {
            let a = o * n_in / n_out;
            let b = ((o + 1) * n_in).div_ceil(n_out).max(a + 1).min(n_in);
            a..b
        };
        for oy in 0..height {
            let ys = span(oy, height, self.height);
            for ox in 0..width {
                let xs = span(ox, width, self.width);
                let mut sum = [0u32; 3];
                let mut n = 0u32;
                for y in ys.clone() {
                    for x in xs.clone() {
                        let p = self.pixel(x, y);
                        for c in 0..3 {
                            sum[c] += u32::from(p[c]);
                        }
                        n += 1;
                    }
                }
                out.extend(sum.map(|s| ((s + n / 2) / n) as u8));
            }
        }
        Self {
            width,
            height,
            data: out,
        }
    }
}

/// A text item, drawn when the canvas is written.
#[derive(Clone, Debug)]
struct Label {
    x: i32,
    y: i32,
    text: String,
    size: f64,
    rgb: [u8; 3],
    right_aligned: bool,
}

/// A figure being composed: a white raster plus text.
#[derive(Debug)]
pub struct Canvas {
    image: RgbImage,
    labels: Vec<Label>,
}

impl Canvas {
    /// A white `width`x`height` canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            image: RgbImage::filled(width, height, [255; 3]),
            labels: Vec::new(),
        }
    }

    /// Copies `img` with its top-left corner at `(x, y)` (clipped).
    pub fn blit(&mut self, x: usize, y: usize, img: &RgbImage) {
        let w = img.width.min(self.image.width.saturating_sub(x));
        for row in 0..img.height.min(self.image.height.saturating_sub(y)) {
            let src = row * img.width * 3;
            let dst = ((y + row) * self.image.width + x) * 3;
            self.image.data[dst..dst + w * 3].copy_from_slice(&img.data[src..src + w * 3]);
        }
    }

    /// Fills the rectangle `[x, x+w) x [y, y+h)` (clipped) with `rgb`.
    pub fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: [u8; 3]) {
        let x1 = (x + w).min(self.image.width);
        for yy in y..(y + h).min(self.image.height) {
            for xx in x..x1 {
                let i = (yy * self.image.width + xx) * 3;
                self.image.data[i..i + 3].copy_from_slice(&rgb);
            }
        }
    }

    /// Text of height `size` px with its top-left corner at `(x, y)`
    /// (top-right with `right_aligned`), ASCII (the embedded font's range;
    /// other characters become `?`).
    pub fn text(&mut self, x: usize, y: usize, text: &str, size: f64, rgb: [u8; 3]) {
        self.push_text(x, y, text, size, rgb, false);
    }

    /// [`Canvas::text`] ending at `x`.
    pub fn text_right(&mut self, x: usize, y: usize, text: &str, size: f64, rgb: [u8; 3]) {
        self.push_text(x, y, text, size, rgb, true);
    }

    fn push_text(&mut self, x: usize, y: usize, text: &str, size: f64, rgb: [u8; 3], right: bool) {
        let text = text
            .chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .collect();
        self.labels.push(Label {
            x: x as i32,
            y: y as i32,
            text,
            size,
            rgb,
            right_aligned: right,
        });
    }

    /// The raster with the text drawn on it.
    pub fn render(mut self) -> std::result::Result<RgbImage, CanvasError> {
        register_font();
        let (w, h) = (self.image.width as u32, self.image.height as u32);
        {
            let backend = BitMapBackend::with_buffer(&mut self.image.data, (w, h));
            let root = backend.into_drawing_area();
            for l in &self.labels {
                let colour = RGBColor(l.rgb[0], l.rgb[1], l.rgb[2]);
                let h_pos = if l.right_aligned {
                    HPos::Right
                } else {
                    HPos::Left
                };
                let style = (FAMILY, l.size)
                    .into_font()
                    .color(&colour)
                    .pos(Pos::new(h_pos, VPos::Top));
                root.draw(&Text::new(l.text.clone(), (l.x, l.y), style))?;
            }
            root.present()?;
        }
        Ok(self.image)
    }

    /// Renders and writes the canvas to `path` as PNG (replaced atomically).
    pub fn save_png(self, path: &Path) -> Result<RgbImage> {
        let fail = |source| TrainerError::Plot {
            path: path.to_path_buf(),
            source,
        };
        let image = self.render().map_err(fail)?;
        write_png(path, &image).map_err(fail)?;
        Ok(image)
    }
}

/// What drawing or a PNG file's encoder or decoder reports.
pub type CanvasError = Box<dyn std::error::Error + Send + Sync>;

/// Encodes `image` to `out` as an 8-bit RGB PNG.
fn write_png_to(
    out: impl std::io::Write,
    image: &RgbImage,
) -> std::result::Result<(), CanvasError> {
    let mut enc = png::Encoder::new(out, image.width as u32, image.height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&image.data)?;
    writer.finish()?;
    Ok(())
}

/// `image` as the bytes of an 8-bit RGB PNG file.
pub fn encode_png(image: &RgbImage) -> std::result::Result<Vec<u8>, CanvasError> {
    let mut out = Vec::new();
    write_png_to(&mut out, image)?;
    Ok(out)
}

/// Writes `image` to `path` as an 8-bit RGB PNG, through a temporary file
/// renamed into place.
pub fn write_png(path: &Path, image: &RgbImage) -> std::result::Result<(), CanvasError> {
    let tmp = path.with_extension(format!("tmp-{}.png", std::process::id()));
    let write = || -> std::result::Result<(), CanvasError> {
        write_png_to(std::io::BufWriter::new(std::fs::File::create(&tmp)?), image)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Reads an 8-bit RGB or RGBA PNG (alpha dropped).
pub fn read_png(path: &Path) -> std::result::Result<RgbImage, CanvasError> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut reader = png::Decoder::new(file).read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf)?;
    let channels = match (info.color_type, info.bit_depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        other => return Err(format!("unsupported PNG format {other:?}").into()),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let data = buf[..w * h * channels]
        .chunks_exact(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_resize_averages_and_png_round_trips() {
        // 4x2: left half black, right half white -> 2x1: black, white.
        let mut img = RgbImage::filled(4, 2, [0; 3]);
        for y in 0..2 {
            for x in 2..4 {
                let i = (y * 4 + x) * 3;
                img.data[i..i + 3].copy_from_slice(&[255; 3]);
            }
        }
        let small = img.resized(2, 1);
        assert_eq!(small.pixel(0, 0), [0; 3]);
        assert_eq!(small.pixel(1, 0), [255; 3]);
        assert_eq!(img.resized(3, 1).pixel(1, 0), [128; 3]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let mut c = Canvas::new(40, 30);
        c.blit(5, 6, &img);
        c.fill(0, 29, 40, 1, [1, 2, 3]);
        c.text(10, 10, "Ab", 12.0, [0; 3]);
        let drawn = c.save_png(&path).unwrap();
        let back = read_png(&path).unwrap();
        assert_eq!(back, drawn);
        assert_eq!((back.width, back.height), (40, 30));
        assert_eq!(back.pixel(7, 6), [255; 3]);
        assert_eq!(back.pixel(6, 7), [0; 3]);
        assert_eq!(back.pixel(39, 29), [1, 2, 3]);
        // the text left dark pixels near (10, 10)
        let dark = (10..30)
            .flat_map(|x| (10..24).map(move |y| (x, y)))
            .any(|(x, y)| back.pixel(x, y)[0] < 128);
        assert!(dark, "no text drawn");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
