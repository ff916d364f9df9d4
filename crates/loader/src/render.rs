//! The per-pixel work: crop, flip, lighting, mean subtraction and the
//! HWC `u8` -> CHW `f32` conversion, row by row in loops the compiler
//! vectorises.
//!
//! Each entry point is compiled twice: for the CPU the build targets, and
//! with AVX2 and FMA (SSSE3 shuffles, 8-wide conversions, streaming stores),
//! chosen at run time. A default build is then fast on any recent x86-64
//! CPU and still runs on one without AVX2.

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

/// Source pixels for one image: rows `first_row..` of an image, each row
/// `width` pixels (RGB) starting at image column `first_col`.
pub(crate) struct SourceRows<'a> {
    pub data: &'a [u8],
    pub first_row: usize,
    pub first_col: usize,
    pub width: usize,
}

impl SourceRows<'_> {
    /// The `len` pixels (`3*len` bytes) of image row `y` from image column `x`.
    #[inline]
    fn pixels(&self, y: usize, x: usize, len: usize) -> &[u8] {
        let row_bytes = self.width * 3;
        &self.data[(y - self.first_row) * row_bytes + (x - self.first_col) * 3..][..len * 3]
    }
}

/// Splits `len` interleaved RGB pixels into three planes, mirrored
/// (pixel `i` to position `len - 1 - i`) when `flip`.
#[inline(always)]
fn deinterleave<const AVX2: bool>(
    rgb: &[u8],
    r: &mut [u8],
    g: &mut [u8],
    b: &mut [u8],
    flip: bool,
) {
    let n = r.len();
    let (rgb, g, b) = (&rgb[..n * 3], &mut g[..n], &mut b[..n]);
    #[cfg(target_arch = "x86_64")]
    let done = if AVX2 {
        // SAFETY: the slices were cut to `n` pixels above; AVX2 (and so
        // SSSE3) was detected before this instance was chosen.
        unsafe { simd::deinterleave16(rgb, r, g, b, flip) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for i in done..n {
        let at = if flip { n - 1 - i } else { i };
        r[at] = rgb[3 * i];
        g[at] = rgb[3 * i + 1];
        b[at] = rgb[3 * i + 2];
    }
}

#[inline(always)]
fn subtract_row<const AVX2: bool>(
    out: &mut [f32],
    pixels: &[u8],
    mean: &[f32],
    offset: f32,
    scale: f32,
) {
    let n = out.len();
    let (pixels, mean) = (&pixels[..n], &mean[..n]);
    #[cfg(target_arch = "x86_64")]
    if AVX2 && n.is_multiple_of(8) && (out.as_ptr() as usize).is_multiple_of(32) {
        // SAFETY: all three slices hold `n` elements, `n` is a multiple of 8
        // and `out` is 32-byte aligned.
        unsafe { simd::subtract_row_stream(out, pixels, Some(mean), offset, scale) };
        return;
    }
    for i in 0..n {
        out[i] = (pixels[i] as f32 - mean[i] + offset) * scale;
    }
}

#[inline(always)]
fn offset_row<const AVX2: bool>(out: &mut [f32], pixels: &[u8], offset: f32, scale: f32) {
    let n = out.len();
    let pixels = &pixels[..n];
    #[cfg(target_arch = "x86_64")]
    if AVX2 && n.is_multiple_of(8) && (out.as_ptr() as usize).is_multiple_of(32) {
        // SAFETY: as in `subtract_row`.
        unsafe { simd::subtract_row_stream(out, pixels, None, offset, scale) };
        return;
    }
    for i in 0..n {
        out[i] = (pixels[i] as f32 + offset) * scale;
    }
}

/// Makes this thread's streaming stores visible to other threads before
/// the batch is handed over.
#[inline]
fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` (SSE, part of x86-64) has no preconditions.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// True when this CPU has AVX2 and FMA (checked once, then cached by std).
#[inline]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name` to run `$body::<true>` in a clone compiled with AVX2 and
/// FMA when the CPU has them, `$body::<false>` otherwise.
macro_rules! dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident => $body:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma,ssse3")]
                unsafe fn with_avx2($($arg: $ty),*) {
                    $body::<true>($($arg),*)
                }
                // SAFETY: the CPU has the features the clone was built for.
                return unsafe { with_avx2($($arg),*) };
            }
            $body::<false>($($arg),*)
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Byte shuffles that pick one channel out of each 16-byte third of 16
    /// RGB pixels; -1 leaves a zero for the other two thirds to fill.
    const PICK: [[[i8; 16]; 3]; 3] = [
        [
            [0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
            [-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1],
            [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13],
        ],
        [
            [1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
            [-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1],
            [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14],
        ],
        [
            [2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
            [-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1],
            [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15],
        ],
    ];
    const REVERSE: [i8; 16] = [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0];

    /// Deinterleaves pixels in blocks of 16 with SSSE3 byte shuffles
    /// (mirrored when `flip`) and returns how many pixels it did (a multiple
    /// of 16, counted from the start of `rgb`).
    ///
    /// # Safety
    /// SSSE3; `rgb` must hold `3 * r.len()` bytes and `g`, `b` exactly `r.len()`.
    #[inline(always)]
    pub(super) unsafe fn deinterleave16(
        rgb: &[u8],
        r: &mut [u8],
        g: &mut [u8],
        b: &mut [u8],
        flip: bool,
    ) -> usize {
        let n = r.len();
        let blocks = n / 16;
        let load = |m: &[i8; 16]| _mm_loadu_si128(m.as_ptr() as *const __m128i);
        let masks = [
            [load(&PICK[0][0]), load(&PICK[0][1]), load(&PICK[0][2])],
            [load(&PICK[1][0]), load(&PICK[1][1]), load(&PICK[1][2])],
            [load(&PICK[2][0]), load(&PICK[2][1]), load(&PICK[2][2])],
        ];
        let reverse = load(&REVERSE);
        let outs = [r.as_mut_ptr(), g.as_mut_ptr(), b.as_mut_ptr()];
        for k in 0..blocks {
            let src = rgb.as_ptr().add(48 * k) as *const __m128i;
            let v = [
                _mm_loadu_si128(src),
                _mm_loadu_si128(src.add(1)),
                _mm_loadu_si128(src.add(2)),
            ];
            for c in 0..3 {
                let m = &masks[c];
                let plane = _mm_or_si128(
                    _mm_or_si128(_mm_shuffle_epi8(v[0], m[0]), _mm_shuffle_epi8(v[1], m[1])),
                    _mm_shuffle_epi8(v[2], m[2]),
                );
                if flip {
                    _mm_storeu_si128(
                        outs[c].add(n - 16 * (k + 1)) as *mut __m128i,
                        _mm_shuffle_epi8(plane, reverse),
                    );
                } else {
                    _mm_storeu_si128(outs[c].add(16 * k) as *mut __m128i, plane);
                }
            }
        }
        blocks * 16
    }

    /// `out[i] = (pixels[i] - mean[i] + offset) * scale` (no mean: 0), eight
    /// at a time, written with streaming stores that bypass the caches (the
    /// batch is not read again by this thread; the mean image stays cached).
    ///
    /// # Safety
    /// AVX2; `out.len()` a multiple of 8, `out` 32-byte aligned, `pixels`
    /// and `mean` at least as long as `out`.
    #[inline(always)]
    pub(super) unsafe fn subtract_row_stream(
        out: &mut [f32],
        pixels: &[u8],
        mean: Option<&[f32]>,
        offset: f32,
        scale: f32,
    ) {
        let (off, sc) = (_mm256_set1_ps(offset), _mm256_set1_ps(scale));
        let (o, p) = (out.as_mut_ptr(), pixels.as_ptr());
        for i in (0..out.len()).step_by(8) {
            let px = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                p.add(i) as *const __m128i
            )));
            let centred = match mean {
                Some(m) => _mm256_sub_ps(px, _mm256_loadu_ps(m.as_ptr().add(i))),
                None => px,
            };
            _mm256_stream_ps(o.add(i), _mm256_mul_ps(_mm256_add_ps(centred, off), sc));
        }
    }
}

/// Renders one view as `f32` CHW into `out[..3*crop*crop]`:
/// `out[c][r][i] = (src[y+r][x'][c] - mean[y+r][x'][c] + light[c]) * scale`
/// with `x' = x + i`, or `x + crop - 1 - i` when flipped. `planes` is
/// scratch of at least `3*crop` bytes.
#[allow(clippy::too_many_arguments)]
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
    dispatch!(fn go => render_f32_body(
        src: &SourceRows<'_>,
        view: CropInfo,
        crop: usize,
        mean: &MeanSource<'_>,
        light: [f32; 3],
        scale: f32,
        out: &mut [f32],
        planes: &mut [u8],
    ));
    go(src, view, crop, mean, light, scale, out, planes)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn render_f32_body<const AVX2: bool>(
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
        deinterleave::<AVX2>(src.pixels(y + r, x, crop), p0, p1, p2, flipped);
        let rows = [
            (&mut o0[r * crop..][..crop], &*p0),
            (&mut o1[r * crop..][..crop], &*p1),
            (&mut o2[r * crop..][..crop], &*p2),
        ];
        for (c, (o, p)) in rows.into_iter().enumerate() {
            match mean {
                MeanSource::Image(m) => {
                    subtract_row::<AVX2>(o, p, m.row(c, y + r, x, crop, flipped), light[c], scale)
                }
                MeanSource::Constant(m) => offset_row::<AVX2>(o, p, light[c] - m[c], scale),
            }
        }
    }
    store_fence();
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
    dispatch!(fn go => render_u8_chw_body(
        src: &SourceRows<'_>,
        view: CropInfo,
        crop: usize,
        out: &mut [u8],
    ));
    go(src, view, crop, out)
}

#[inline(always)]
fn render_u8_chw_body<const AVX2: bool>(
    src: &SourceRows<'_>,
    view: CropInfo,
    crop: usize,
    out: &mut [u8],
) {
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
        deinterleave::<AVX2>(src.pixels(y + r, x, crop), d0, d1, d2, view.flipped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both compiled instances give the same bits, so a CPU without AVX2
    /// gets the same batches (this machine runs both).
    #[test]
    fn plain_and_avx2_instances_agree() {
        let (h, w) = (48, 52);
        let data: Vec<u8> = (0..h * w * 3).map(|i| (i * 7919 % 251) as u8).collect();
        let mut stats = Stats::neutral(h, w);
        stats.mean_image = (0..h * w * 3).map(|i| (i % 97) as f32 * 0.75).collect();
        let planes_mean = MeanPlanes::new(&stats);
        for (crop, flipped) in [(32, false), (32, true), (27, true), (40, false)] {
            let view = CropInfo {
                y: 3,
                x: 5,
                flipped,
            };
            let src = SourceRows {
                data: &data,
                first_row: 0,
                first_col: 0,
                width: w,
            };
            for mean in [
                MeanSource::Image(&planes_mean),
                MeanSource::Constant([1.5, 2.5, 3.5]),
            ] {
                let run = |avx2: bool| {
                    let mut out = crate::batch::AlignedF32::default();
                    out.grow(3 * crop * crop);
                    let mut planes = vec![0u8; 3 * crop];
                    if avx2 {
                        if !has_avx2() {
                            return None;
                        }
                        render_f32(
                            &src,
                            view,
                            crop,
                            &mean,
                            [0.5, -1.0, 2.0],
                            0.25,
                            out.as_mut_slice(),
                            &mut planes,
                        );
                    } else {
                        render_f32_body::<false>(
                            &src,
                            view,
                            crop,
                            &mean,
                            [0.5, -1.0, 2.0],
                            0.25,
                            out.as_mut_slice(),
                            &mut planes,
                        );
                    }
                    Some(out.as_slice().to_vec())
                };
                let plain = run(false).unwrap();
                if let Some(fast) = run(true) {
                    assert_eq!(plain, fast, "crop {crop} flipped {flipped}");
                }
                // And against the formula, at one pixel.
                let (r, i, c) = (2, 4, 1);
                let sx = if flipped { 5 + crop - 1 - i } else { 5 + i };
                let m = match &mean {
                    MeanSource::Image(_) => stats.mean_image[((3 + r) * w + sx) * 3 + c],
                    MeanSource::Constant(m) => m[c],
                };
                let want = (data[((3 + r) * w + sx) * 3 + c] as f32 - m + -1.0) * 0.25;
                assert_eq!(plain[(c * crop + r) * crop + i], want);
            }
            let mut a = vec![0u8; 3 * crop * crop];
            let mut b = vec![0u8; 3 * crop * crop];
            render_u8_chw_body::<false>(&src, view, crop, &mut a);
            render_u8_chw(&src, view, crop, &mut b);
            assert_eq!(a, b);
        }
    }
}
