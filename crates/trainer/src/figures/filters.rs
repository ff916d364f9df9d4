//! The paper's Figure 3: the first convolution's kernels as colour images,
//! tower A's on top, tower B's below, each contrast-stretched on its own,
//! and a measure of how colourful each tower's kernels are.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::canvas::{Canvas, RgbImage};
use crate::checkpoint::Checkpoint;
use crate::error::{Result, TrainerError};

/// How the kernels are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FiltersOptions {
    /// Screen pixels per kernel weight (an 11x11 kernel at 4 is 44x44).
    pub scale: usize,
    /// Kernels per row.
    pub columns: usize,
}

impl Default for FiltersOptions {
    /// 4 pixels per weight, 16 kernels per row (the paper's 48 kernels
    /// per tower in 3 rows).
    fn default() -> Self {
        Self {
            scale: 4,
            columns: 16,
        }
    }
}

/// Positions of everything in the filters figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FiltersLayout {
    /// Towers drawn (1 or 2).
    pub towers: usize,
    /// Kernels per tower.
    pub kernels: usize,
    /// Side of a kernel in weights (11).
    pub kernel_side: usize,
    /// Screen pixels per weight.
    pub scale: usize,
    /// Kernels per row.
    pub columns: usize,
}

/// Outer margin, gap between kernels, height of a tower's caption band.
const MARGIN: usize = 8;
const GAP: usize = 2;
const CAPTION: usize = 20;

impl FiltersLayout {
    /// Rows of kernels per tower.
    pub fn rows(&self) -> usize {
        self.kernels.div_ceil(self.columns)
    }
    fn cell(&self) -> usize {
        self.kernel_side * self.scale + GAP
    }
    /// Image width in pixels.
    pub fn width(&self) -> usize {
        2 * MARGIN + self.columns.min(self.kernels) * self.cell() - GAP
    }
    /// Height of one tower's band (caption and kernels).
    fn band(&self) -> usize {
        CAPTION + self.rows() * self.cell()
    }
    /// Image height in pixels.
    pub fn height(&self) -> usize {
        2 * MARGIN + self.towers * self.band() - GAP
    }
    /// Top-left pixel of kernel `k` of `tower` (0 = A, drawn on top).
    pub fn kernel_origin(&self, tower: usize, k: usize) -> (usize, usize) {
        let (row, col) = (k / self.columns, k % self.columns);
        (
            MARGIN + col * self.cell(),
            MARGIN + tower * self.band() + CAPTION + row * self.cell(),
        )
    }
    /// Top-left pixel of `tower`'s caption.
    pub fn caption_origin(&self, tower: usize) -> (usize, usize) {
        (MARGIN, MARGIN + tower * self.band())
    }
}

/// What the filters figure shows, besides the picture.
#[derive(Clone, Debug, PartialEq)]
pub struct FiltersFigure {
    /// Where things are in the image.
    pub layout: FiltersLayout,
    /// Per tower: the mean over its kernels of [`kernel_colourfulness`].
    pub colourfulness: Vec<f64>,
    /// Per tower, per kernel: [`kernel_colourfulness`].
    pub kernel_colourfulness: Vec<Vec<f64>>,
}

impl FiltersFigure {
    /// One line: each tower's colourfulness.
    pub fn summary(&self) -> String {
        let towers: Vec<String> = self
            .colourfulness
            .iter()
            .enumerate()
            .map(|(t, c)| format!("tower {} {c:.3}", tower_name(t)))
            .collect();
        format!(
            "conv1 colourfulness (mean per-kernel spread across R, G, B of the contrast-stretched kernel; 0 = grey): {}",
            towers.join(", ")
        )
    }
}

fn tower_name(t: usize) -> char {
    (b'A' + t as u8) as char
}

/// One kernel `[3, k, k]` (CHW) stretched on its own so that its smallest
/// weight becomes 0 and its largest 255, as an RGB image `k`x`k`.
pub fn stretch_kernel(chw: &[f32], side: usize) -> RgbImage {
    let (lo, hi) = chw
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let range = if hi > lo { hi - lo } else { 1.0 };
    let mut data = Vec::with_capacity(side * side * 3);
    for p in 0..side * side {
        for c in 0..3 {
            let v = (chw[c * side * side + p] - lo) / range;
            data.push((v * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    RgbImage {
        width: side,
        height: side,
        data,
    }
}

/// How colour-specific one kernel is: after stretching it to 0..1 on its
/// own, the standard deviation of (R, G, B) at each position, averaged over
/// the positions. 0 for a grey (colour-agnostic) kernel, up to 0.47 for a
/// kernel that is all one saturated colour.
pub fn kernel_colourfulness(chw: &[f32], side: usize) -> f64 {
    let img = stretch_kernel(chw, side);
    let n = side * side;
    let total: f64 = img
        .data
        .chunks_exact(3)
        .map(|p| {
            let v = p.iter().map(|&x| f64::from(x) / 255.0);
            let mean = v.clone().sum::<f64>() / 3.0;
            (v.map(|x| (x - mean) * (x - mean)).sum::<f64>() / 3.0).sqrt()
        })
        .sum();
    total / n as f64
}

/// Reads `tower_a.conv1.weight` (and `tower_b.conv1.weight`) of `ck`:
/// per tower, the weights `[kernels, 3, k, k]` flattened, and `k`.
pub fn conv1_kernels(ck: &Checkpoint) -> Result<(Vec<Vec<f32>>, usize, usize)> {
    let path = ck.params_path();
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|source| TrainerError::CheckpointTensors {
            path: path.clone(),
            action: "reading parameters",
            source: Box::new(source),
        })?;
    let towers = tower_count(ck.state.architecture.single_tower);
    kernels_of(
        towers,
        |name| tensors.get(name).cloned(),
        |reason| TrainerError::Checkpoint {
            path: path.clone(),
            reason,
        },
    )
}

/// The conv1 kernels of a network being trained (its variables), as
/// [`conv1_kernels`] reads them from a checkpoint.
pub fn conv1_kernels_of(
    varmap: &VarMap,
    single_tower: bool,
) -> Result<(Vec<Vec<f32>>, usize, usize)> {
    let vars = varmap.data().lock().expect("the variables' lock");
    kernels_of(
        tower_count(single_tower),
        |name| vars.get(name).map(|v| v.as_tensor().clone()),
        TrainerError::Shape,
    )
}

fn tower_count(single_tower: bool) -> usize {
    if single_tower {
        1
    } else {
        2
    }
}

fn kernels_of(
    towers: usize,
    get: impl Fn(&str) -> Option<Tensor>,
    bad: impl Fn(String) -> TrainerError,
) -> Result<(Vec<Vec<f32>>, usize, usize)> {
    let mut out = Vec::new();
    let mut dims = (0, 0);
    for t in 0..towers {
        let name = format!("tower_{}.conv1.weight", tower_name(t).to_ascii_lowercase());
        let w = get(&name).ok_or_else(|| bad(format!("{name} is missing")))?;
        let (k, c, h, wd) = w.dims4()?;
        if c != 3 || h != wd {
            return Err(bad(format!(
                "{name} has shape {:?}, expected [k, 3, s, s]",
                w.dims()
            )));
        }
        dims = (k, h);
        out.push(
            w.to_device(&Device::Cpu)?
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
    }
    Ok((out, dims.0, dims.1))
}

/// Draws the conv1 kernels of `ck` to `out` (PNG).
pub fn draw_filters(ck: &Checkpoint, out: &Path, opts: &FiltersOptions) -> Result<FiltersFigure> {
    let (towers, kernels, side) = conv1_kernels(ck)?;
    let (canvas, figure) = compose_filters(&towers, kernels, side, opts)?;
    canvas.save_png(out)?;
    Ok(figure)
}

/// The picture of [`draw_filters`] from kernels in memory (per tower,
/// `kernels` kernels `[3, side, side]` flattened), as an image.
pub fn render_filters(
    towers: &[Vec<f32>],
    kernels: usize,
    side: usize,
    opts: &FiltersOptions,
) -> Result<(RgbImage, FiltersFigure)> {
    let (canvas, figure) = compose_filters(towers, kernels, side, opts)?;
    let image = canvas.render().map_err(|source| TrainerError::Plot {
        path: "conv1 filters".into(),
        source,
    })?;
    Ok((image, figure))
}

fn compose_filters(
    towers: &[Vec<f32>],
    kernels: usize,
    side: usize,
    opts: &FiltersOptions,
) -> Result<(Canvas, FiltersFigure)> {
    if opts.scale == 0 || opts.columns == 0 {
        return Err(TrainerError::Zero {
            what: "--scale and --columns",
        });
    }
    let layout = FiltersLayout {
        towers: towers.len(),
        kernels,
        kernel_side: side,
        scale: opts.scale,
        columns: opts.columns,
    };
    let mut canvas = Canvas::new(layout.width(), layout.height());
    let per_kernel = 3 * side * side;
    let mut colourfulness = Vec::new();
    let mut per_tower = Vec::new();
    for (t, weights) in towers.iter().enumerate() {
        let mut scores = Vec::with_capacity(kernels);
        for k in 0..kernels {
            let chw = &weights[k * per_kernel..(k + 1) * per_kernel];
            scores.push(kernel_colourfulness(chw, side));
            let img = stretch_kernel(chw, side).resized(side * opts.scale, side * opts.scale);
            let (x, y) = layout.kernel_origin(t, k);
            canvas.blit(x, y, &img);
        }
        let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
        let (x, y) = layout.caption_origin(t);
        canvas.text(
            x,
            y + 2,
            &format!(
                "tower {}: {kernels} conv1 kernels, colourfulness {mean:.3}",
                tower_name(t)
            ),
            14.0,
            [0; 3],
        );
        colourfulness.push(mean);
        per_tower.push(scores);
    }
    Ok((
        canvas,
        FiltersFigure {
            layout,
            colourfulness,
            kernel_colourfulness: per_tower,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretch_spans_0_to_255_and_grey_kernels_score_0() {
        let side = 2;
        // grey: R = G = B at every position
        let grey: Vec<f32> = [0.1, -0.2, 0.3, 0.0].repeat(3);
        let img = stretch_kernel(&grey, side);
        assert_eq!(img.pixel(1, 0), [0; 3]);
        assert_eq!(img.pixel(0, 1), [255; 3]);
        assert!(kernel_colourfulness(&grey, side) < 1e-12);
        // red only: R high, G = B low everywhere
        let red: Vec<f32> = [[1.0f32; 4], [0.0; 4], [0.0; 4]].concat();
        let c = kernel_colourfulness(&red, side);
        assert!((c - (2.0f64 / 9.0).sqrt()).abs() < 1e-9, "{c}");
    }

    #[test]
    fn layout_puts_tower_b_below_tower_a() {
        let l = FiltersLayout {
            towers: 2,
            kernels: 48,
            kernel_side: 11,
            scale: 4,
            columns: 16,
        };
        assert_eq!(l.rows(), 3);
        assert_eq!(l.width(), 2 * MARGIN + 16 * 46 - GAP);
        let (xa, ya) = l.kernel_origin(0, 47);
        let (xb, yb) = l.kernel_origin(1, 0);
        assert_eq!(xa, MARGIN + 15 * 46);
        assert!(yb > ya + 44, "tower B starts below tower A's last row");
        assert_eq!(xb, MARGIN);
        assert_eq!(l.kernel_origin(1, 47).1 + 44 + MARGIN, l.height());
    }
}
