//! The per-pixel work: crop, flip, lighting, mean subtraction and the
//! HWC `u8` -> CHW `f32` conversion, row by row in loops the compiler
//! vectorises.

use crate::batch::CropInfo;
use crate::Stats;

/// The mean image stored channel-planar, once as is and once mirrored, so
/// that a flipped crop reads its mean pixels forwards as well.
pub(crate) struct MeanPlanes {
    height: usize,
    width: usize,
    /// `[3][H][W]`.
    planar: Vec<f32>,
    /// `[3][H][W]`, each row reversed.
    mirrored: Vec<f32>,
}

impl MeanPlanes {
    pub(crate) fn new(stats: &Stats) -> Self {
        let (h, w) = (stats.height, stats.width);
        let mut planar = vec![0.0f32; 3 * h * w];
        let mut mirrored = vec![0.0f32; 3 * h * w];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let v = stats.mean_image[(y * w + x) * 3 + c];
                    planar[(c * h + y) * w + x] = v;
                    mirrored[(c * h + y) * w + (w - 1 - x)] = v;
                }
            }
        }
        MeanPlanes {
            height: h,
            width: w,
            planar,
            mirrored,
        }
    }

    /// The `len` mean values of channel `c`, source row `y`, that line up with
    /// the output row of a crop starting at column `x` (mirrored when `flipped`).
    #[inline]
    fn row(&self, c: usize, y: usize, x: usize, len: usize, flipped: bool) -> &[f32] {
        let base = (c * self.height + y) * self.width;
        if flipped {
            &self.mirrored[base + (self.width - x - len)..][..len]
        } else {
            &self.planar[base + x..][..len]
        }
    }
}

/// What is subtracted from each output value.
pub(crate) enum MeanSource<'a> {
    Image(&'a MeanPlanes),
    Constant([f32; 3]),
}

/// Source pixels for one image: rows `first_row..` of an `H x W x 3` image.
pub(crate) struct SourceRows<'a> {
    pub data: &'a [u8],
    pub first_row: usize,
    pub width: usize,
}

impl SourceRows<'_> {
    /// The `len` pixels (`3*len` bytes) of row `y` from column `x`.
    #[inline]
    fn pixels(&self, y: usize, x: usize, len: usize) -> &[u8] {
        let row_bytes = self.width * 3;
        &self.data[(y - self.first_row) * row_bytes + x * 3..][..len * 3]
    }
}

/// Splits `len` interleaved RGB pixels into three planes.
#[inline]
fn deinterleave(rgb: &[u8], r: &mut [u8], g: &mut [u8], b: &mut [u8]) {
    let n = r.len();
    let (rgb, g, b) = (&rgb[..n * 3], &mut g[..n], &mut b[..n]);
    for i in 0..n {
        r[i] = rgb[3 * i];
        g[i] = rgb[3 * i + 1];
        b[i] = rgb[3 * i + 2];
    }
}

#[inline]
fn subtract_row(out: &mut [f32], pixels: &[u8], mean: &[f32], offset: f32, scale: f32) {
    let n = out.len();
    let (pixels, mean) = (&pixels[..n], &mean[..n]);
    for i in 0..n {
        out[i] = (pixels[i] as f32 - mean[i] + offset) * scale;
    }
}

#[inline]
fn offset_row(out: &mut [f32], pixels: &[u8], offset: f32, scale: f32) {
    let n = out.len();
    let pixels = &pixels[..n];
    for i in 0..n {
        out[i] = (pixels[i] as f32 + offset) * scale;
    }
}

/// Renders one view as `f32` CHW into `out[..3*crop*crop]`:
/// `out[c][r][i] = (src[y+r][x'][c] - mean[y+r][x'][c] + light[c]) * scale`
/// with `x' = x + i`, or `x + crop - 1 - i` when flipped. `planes` is
/// scratch of at least `3*crop` bytes.
pub(crate) fn render_f32(
    src: &SourceRows<'_>,
    view: CropInfo,
    crop: usize,
    mean: &MeanSource<'_>,
    light: [f32; 3],
    scale: f32,
    out: &mut [f32],
    planes: &mut [u8],
) {
    let (y, x, flipped) = (view.y as usize, view.x as usize, view.flipped);
    let plane_len = crop * crop;
    let (p0, rest) = planes[..3 * crop].split_at_mut(crop);
    let (p1, p2) = rest.split_at_mut(crop);
    let (o0, rest) = out[..3 * plane_len].split_at_mut(plane_len);
    let (o1, o2) = rest.split_at_mut(plane_len);
    for r in 0..crop {
        deinterleave(src.pixels(y + r, x, crop), p0, p1, p2);
        if flipped {
            p0.reverse();
            p1.reverse();
            p2.reverse();
        }
        let rows = [
            (&mut o0[r * crop..][..crop], &*p0),
            (&mut o1[r * crop..][..crop], &*p1),
            (&mut o2[r * crop..][..crop], &*p2),
        ];
        for (c, (o, p)) in rows.into_iter().enumerate() {
            match mean {
                MeanSource::Image(m) => {
                    subtract_row(o, p, m.row(c, y + r, x, crop, flipped), light[c], scale)
                }
                MeanSource::Constant(m) => offset_row(o, p, light[c] - m[c], scale),
            }
        }
    }
}

/// Copies one view as raw `u8` HWC (`crop*crop*3` bytes), mirrored when flipped.
pub(crate) fn render_u8_hwc(src: &SourceRows<'_>, view: CropInfo, crop: usize, out: &mut [u8]) {
    let (y, x) = (view.y as usize, view.x as usize);
    for r in 0..crop {
        let row = src.pixels(y + r, x, crop);
        let dst = &mut out[r * crop * 3..][..crop * 3];
        if view.flipped {
            for (d, s) in dst.chunks_exact_mut(3).zip(row.chunks_exact(3).rev()) {
                d.copy_from_slice(s);
            }
        } else {
            dst.copy_from_slice(row);
        }
    }
}

/// Copies one view as raw `u8` CHW (`3*crop*crop` bytes), mirrored when flipped.
pub(crate) fn render_u8_chw(src: &SourceRows<'_>, view: CropInfo, crop: usize, out: &mut [u8]) {
    let (y, x) = (view.y as usize, view.x as usize);
    let plane_len = crop * crop;
    let (o0, rest) = out[..3 * plane_len].split_at_mut(plane_len);
    let (o1, o2) = rest.split_at_mut(plane_len);
    for r in 0..crop {
        let (d0, d1, d2) = (
            &mut o0[r * crop..][..crop],
            &mut o1[r * crop..][..crop],
            &mut o2[r * crop..][..crop],
        );
        deinterleave(src.pixels(y + r, x, crop), d0, d1, d2);
        if view.flipped {
            d0.reverse();
            d1.reverse();
            d2.reverse();
        }
    }
}
