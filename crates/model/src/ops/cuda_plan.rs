//! The device-free half of the CUDA operations: the shapes handed to cuDNN
//! descriptors, the keys of the per-device convolution plan cache, the
//! choice of a convolution algorithm from timed trials, the LRN parameters
//! in cuDNN's convention, and the launch configurations of the NVRTC
//! kernels. Compiled in every build so that it is tested without a GPU.

use crate::precision::Precision;
use crate::LrnConfig;
use std::time::Duration;

/// CUDA C of every NVRTC kernel (`cuda/kernels.cu`): what the CUDA build
/// compiles at run time, and what the CPU tests compile as C++ with CUDA's
/// built-ins emulated.
pub const KERNEL_SOURCE: &str = include_str!("cuda/kernels.cu");

/// NVRTC's option that compiles for compute capability `major.minor`
/// (`--gpu-architecture=compute_90` for an H100/H200), so that the PTX is
/// made for the device it runs on, not NVRTC's default target.
pub fn nvrtc_arch_option(major: i32, minor: i32) -> String {
    format!("--gpu-architecture=compute_{major}{minor}")
}

/// A shape or size that cuDNN or a kernel launch cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A dimension does not fit the 32-bit integers of cuDNN descriptors.
    #[error("{what} = {value} does not fit a 32-bit cuDNN dimension")]
    TooLarge {
        /// Which dimension.
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// Input and weight shapes that do not make a convolution.
    #[error("convolution shapes do not match: {0}")]
    Shape(String),
    /// LRN parameters outside what cuDNN's cross-channel LRN computes in the
    /// crate's convention.
    #[error("LRN {0} is not supported by cuDNN")]
    Lrn(String),
    /// No convolution algorithm ran within the workspace limit.
    #[error("no cuDNN {0} algorithm ran within the workspace limit")]
    NoAlgorithm(ConvDirection),
}

/// Padding (or window), stride and dilation (or padding) pairs of a 2-D
/// descriptor, `[height, width]` each.
pub type Pairs2d = ([i32; 2], [i32; 2], [i32; 2]);

fn dim(what: &'static str, value: usize) -> Result<i32, PlanError> {
    i32::try_from(value).map_err(|_| PlanError::TooLarge { what, value })
}

/// Shapes of one convolution: `x [n, c, h, w]`, `w [o, c, kh, kw]`, square
/// stride, symmetric zero padding, no dilation, one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding (all sides).
    pub pad: usize,
}

impl ConvShape {
    /// From the dimensions of `x` and `w`, checked as the CPU path checks them.
    pub fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Result<Self, PlanError> {
        let (&[n, c, h, wd], &[o, ci, kh, kw]) = (x, w) else {
            return Err(PlanError::Shape(format!(
                "expected x [N, C, H, W] and w [O, C, kh, kw], got {x:?} and {w:?}"
            )));
        };
        if ci != c || stride == 0 || h + 2 * pad < kh || wd + 2 * pad < kw {
            return Err(PlanError::Shape(format!(
                "x {x:?}, w {w:?}, stride {stride}, padding {pad}"
            )));
        }
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            stride,
            pad,
        })
    }

    /// Output height and width: `(H + 2p - kh) / s + 1` (floor), as cuDNN's
    /// `cudnnGetConvolution2dForwardOutputDim` and the CPU path compute it.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.kh) / self.stride + 1,
            (self.w + 2 * self.pad - self.kw) / self.stride + 1,
        )
    }

    /// Dimensions of the NCHW input descriptor.
    pub fn x_dims(&self) -> Result<[i32; 4], PlanError> {
        Ok([
            dim("N", self.n)?,
            dim("C", self.c)?,
            dim("H", self.h)?,
            dim("W", self.w)?,
        ])
    }

    /// Dimensions of the KCRS filter descriptor.
    pub fn w_dims(&self) -> Result<[i32; 4], PlanError> {
        Ok([
            dim("O", self.o)?,
            dim("C", self.c)?,
            dim("kh", self.kh)?,
            dim("kw", self.kw)?,
        ])
    }

    /// Dimensions of the NCHW output descriptor.
    pub fn y_dims(&self) -> Result<[i32; 4], PlanError> {
        let (ho, wo) = self.out_hw();
        Ok([
            dim("N", self.n)?,
            dim("O", self.o)?,
            dim("Ho", ho)?,
            dim("Wo", wo)?,
        ])
    }

    /// Padding, stride and dilation of the convolution descriptor.
    pub fn conv_params(&self) -> Result<Pairs2d, PlanError> {
        let p = dim("padding", self.pad)?;
        let s = dim("stride", self.stride)?;
        Ok(([p, p], [s, s], [1, 1]))
    }

    /// Elements of the output.
    pub fn y_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.n * self.o * ho * wo
    }

    /// Elements of the input.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// Elements of the weights.
    pub fn w_len(&self) -> usize {
        self.o * self.c * self.kh * self.kw
    }
}

/// The three cuDNN convolution computations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvDirection {
    /// `y = conv(x, w)`.
    Forward,
    /// `dx` from `dy` and `w`.
    BackwardData,
    /// `dw` from `x` and `dy`.
    BackwardFilter,
}

impl std::fmt::Display for ConvDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Forward => "forward",
            Self::BackwardData => "backward-data",
            Self::BackwardFilter => "backward-filter",
        })
    }
}

/// Element type of a plan (only `f32` runs on cuDNN today; the key keeps
/// it so that other types never share an `f32` plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlanDType {
    /// float32.
    F32,
}

/// Key of one cached convolution plan (descriptors, algorithm, workspace
/// size) on one device: everything the algorithm choice depends on. The
/// cache itself is per device (and thread), so the device is not part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvKey {
    /// Shapes.
    pub shape: ConvShape,
    /// Which computation.
    pub direction: ConvDirection,
    /// Element type.
    pub dtype: PlanDType,
    /// Math mode (FMA only, or TF32 tensor cores allowed).
    pub precision: Precision,
}

/// The result of trying one algorithm: its workspace and its time (`None`
/// when it is not supported for the shape, or failed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlgoTrial<A> {
    /// The algorithm.
    pub algo: A,
    /// Workspace bytes it asked for.
    pub workspace: usize,
    /// Measured time of one run.
    pub time: Option<Duration>,
}

/// Workspace limit of one convolution algorithm (bytes). Faster algorithms
/// asking for more are not tried; the limit is far below an H100/H200's
/// memory and far above what AlexNet's fastest algorithms need.
pub const WORKSPACE_LIMIT: usize = 1 << 30;

/// Index of the fastest trial that ran within `limit` bytes of workspace;
/// among equal times, the smaller workspace, then the earlier trial.
pub fn choose_algorithm<A>(trials: &[AlgoTrial<A>], limit: usize) -> Option<usize> {
    trials
        .iter()
        .enumerate()
        .filter(|(_, t)| t.workspace <= limit)
        .filter_map(|(i, t)| t.time.map(|d| (d, t.workspace, i)))
        .min()
        .map(|(_, _, i)| i)
}

/// Shapes of one max-pooling (square window and stride, no padding, floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolShape {
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

impl PoolShape {
    /// From `x [N, C, H, W]`.
    pub fn new(x: &[usize], kernel: usize, stride: usize) -> Result<Self, PlanError> {
        let &[n, c, h, w] = x else {
            return Err(PlanError::Shape(format!(
                "expected x [N, C, H, W], got {x:?}"
            )));
        };
        if kernel == 0 || stride == 0 || h < kernel || w < kernel {
            return Err(PlanError::Shape(format!(
                "pool {kernel}/{stride} of a {h}x{w} input"
            )));
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            kernel,
            stride,
        })
    }

    /// Output height and width: `(H - k) / s + 1` (55 -> 27 -> 13 -> 6 for 3/2).
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h - self.kernel) / self.stride + 1,
            (self.w - self.kernel) / self.stride + 1,
        )
    }

    /// Input descriptor dimensions.
    pub fn x_dims(&self) -> Result<[i32; 4], PlanError> {
        Ok([
            dim("N", self.n)?,
            dim("C", self.c)?,
            dim("H", self.h)?,
            dim("W", self.w)?,
        ])
    }

    /// Output descriptor dimensions.
    pub fn y_dims(&self) -> Result<[i32; 4], PlanError> {
        let (ho, wo) = self.out_hw();
        Ok([
            dim("N", self.n)?,
            dim("C", self.c)?,
            dim("Ho", ho)?,
            dim("Wo", wo)?,
        ])
    }

    /// Window, padding and stride of the pooling descriptor.
    pub fn window(&self) -> Result<Pairs2d, PlanError> {
        let k = dim("kernel", self.kernel)?;
        let s = dim("stride", self.stride)?;
        Ok(([k, k], [0, 0], [s, s]))
    }

    /// Elements of the output.
    pub fn y_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.n * self.c * ho * wo
    }
}

/// cuDNN's cross-channel LRN parameters (`cudnnSetLRNDescriptor`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CudnnLrn {
    /// Window width `n`.
    pub n: u32,
    /// `alpha` (cuDNN divides it by `n`, as [`LrnConfig`] does).
    pub alpha: f64,
    /// `beta`.
    pub beta: f64,
    /// `k`.
    pub k: f64,
}

impl CudnnLrn {
    /// cuDNN's limits: `1 <= n <= 16`, `k >= 1e-5`, `beta >= 0.01`
    /// (`CUDNN_LRN_MIN_N`, `CUDNN_LRN_MAX_N`, `CUDNN_LRN_MIN_K`,
    /// `CUDNN_LRN_MIN_BETA`). An even `n` is refused as well: cuDNN then
    /// centres the window differently from the crate's `c - n/2 ..= c + (n-1)/2`.
    pub fn new(cfg: &LrnConfig) -> Result<Self, PlanError> {
        let ok = (1..=16).contains(&cfg.size)
            && cfg.size % 2 == 1
            && cfg.k >= 1e-5
            && cfg.beta >= 0.01
            && cfg.alpha.is_finite();
        if !ok {
            return Err(PlanError::Lrn(format!("{cfg:?}")));
        }
        Ok(Self {
            n: cfg.size as u32,
            alpha: cfg.alpha,
            beta: cfg.beta,
            k: cfg.k,
        })
    }
}

/// Grid and block of a kernel launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// Blocks in x, y, z.
    pub grid: (u32, u32, u32),
    /// Threads per block in x, y, z.
    pub block: (u32, u32, u32),
}

/// Threads per block of the element-wise kernels.
pub const ELEMENTWISE_THREADS: u32 = 256;

/// Most blocks of an element-wise (grid-stride) kernel: enough to fill a
/// large GPU several times over.
pub const ELEMENTWISE_MAX_BLOCKS: u32 = 65_535;

/// Launch of a grid-stride element-wise kernel over `len` elements (at
/// least one block, so that an empty tensor is still a valid launch).
pub fn elementwise_launch(len: usize) -> Launch {
    let blocks = len
        .div_ceil(ELEMENTWISE_THREADS as usize)
        .clamp(1, ELEMENTWISE_MAX_BLOCKS as usize);
    Launch {
        grid: (blocks as u32, 1, 1),
        block: (ELEMENTWISE_THREADS, 1, 1),
    }
}

/// Threads per block of the bias-gradient reduction (a power of two: the
/// kernel halves it in its shared-memory tree).
pub const BIAS_GRAD_THREADS: u32 = 256;

/// Launch of the bias-gradient reduction of `dy [n, o, p]`: one block row
/// per channel (`grid.x = o`) and up to 32 sample groups per channel
/// (`grid.y`), each block summing its samples' planes and adding its total
/// to `db[o]` atomically.
pub fn bias_grad_launch(n: usize, o: usize) -> Result<Launch, PlanError> {
    if o > i32::MAX as usize {
        return Err(PlanError::TooLarge {
            what: "O",
            value: o,
        });
    }
    Ok(Launch {
        grid: (o.max(1) as u32, n.clamp(1, 32) as u32, 1),
        block: (BIAS_GRAD_THREADS, 1, 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv1() -> ConvShape {
        ConvShape::new(&[128, 3, 224, 224], &[48, 3, 11, 11], 4, 2).unwrap()
    }

    #[test]
    fn conv_descriptor_shapes_of_the_paper_net() {
        let c = conv1();
        assert_eq!(c.out_hw(), (55, 55));
        assert_eq!(c.x_dims().unwrap(), [128, 3, 224, 224]);
        assert_eq!(c.w_dims().unwrap(), [48, 3, 11, 11]);
        assert_eq!(c.y_dims().unwrap(), [128, 48, 55, 55]);
        assert_eq!(c.conv_params().unwrap(), ([2, 2], [4, 4], [1, 1]));
        assert_eq!(c.y_len(), 128 * 48 * 55 * 55);
        let c2 = ConvShape::new(&[128, 48, 27, 27], &[128, 48, 5, 5], 1, 2).unwrap();
        assert_eq!(c2.out_hw(), (27, 27));
        let c3 = ConvShape::new(&[128, 256, 13, 13], &[192, 256, 3, 3], 1, 1).unwrap();
        assert_eq!(c3.y_dims().unwrap(), [128, 192, 13, 13]);
    }

    #[test]
    fn conv_shapes_refused() {
        assert!(ConvShape::new(&[1, 3, 8, 8], &[4, 2, 3, 3], 1, 0).is_err());
        assert!(ConvShape::new(&[1, 3, 8, 8], &[4, 3, 3, 3], 0, 0).is_err());
        assert!(ConvShape::new(&[1, 3, 2, 2], &[4, 3, 5, 5], 1, 1).is_err());
        assert!(ConvShape::new(&[3, 8, 8], &[4, 3, 3, 3], 1, 0).is_err());
        let big = ConvShape::new(&[1 << 31, 3, 8, 8], &[4, 3, 3, 3], 1, 0).unwrap();
        assert_eq!(
            big.x_dims(),
            Err(PlanError::TooLarge {
                what: "N",
                value: 1 << 31
            })
        );
    }

    #[test]
    fn cache_keys_separate_what_the_algorithm_depends_on() {
        use std::collections::HashSet;
        let base = ConvKey {
            shape: conv1(),
            direction: ConvDirection::Forward,
            dtype: PlanDType::F32,
            precision: Precision::Fp32,
        };
        let mut other_batch = base;
        other_batch.shape.n = 64;
        let mut tf32 = base;
        tf32.precision = Precision::Tf32;
        let mut bwd = base;
        bwd.direction = ConvDirection::BackwardFilter;
        let mut padded = base;
        padded.shape.pad = 0;
        let keys: HashSet<ConvKey> = [base, other_batch, tf32, bwd, padded, base]
            .into_iter()
            .collect();
        assert_eq!(keys.len(), 5, "one key per distinct plan, equal keys merge");
    }

    #[test]
    fn algorithm_choice() {
        let ms = |m: u64| Some(Duration::from_micros(m));
        let t = |algo, workspace, time| AlgoTrial {
            algo,
            workspace,
            time,
        };
        // Fastest wins; failed trials never do.
        let trials = [t(0, 0, ms(900)), t(1, 100, ms(300)), t(2, 0, None)];
        assert_eq!(choose_algorithm(&trials, WORKSPACE_LIMIT), Some(1));
        // Over the workspace limit: not chosen however fast.
        let trials = [t(0, 0, ms(900)), t(1, 2 << 30, ms(100))];
        assert_eq!(choose_algorithm(&trials, WORKSPACE_LIMIT), Some(0));
        // A tie goes to the smaller workspace.
        let trials = [t(0, 500, ms(200)), t(1, 10, ms(200))];
        assert_eq!(choose_algorithm(&trials, WORKSPACE_LIMIT), Some(1));
        // Nothing ran.
        let trials = [t(0, 0, None), t(1, 0, None)];
        assert_eq!(choose_algorithm(&trials, WORKSPACE_LIMIT), None);
        assert_eq!(choose_algorithm::<u8>(&[], WORKSPACE_LIMIT), None);
    }

    #[test]
    fn pool_descriptor_shapes() {
        let p = PoolShape::new(&[128, 48, 55, 55], 3, 2).unwrap();
        assert_eq!(p.out_hw(), (27, 27));
        assert_eq!(p.y_dims().unwrap(), [128, 48, 27, 27]);
        assert_eq!(p.window().unwrap(), ([3, 3], [0, 0], [2, 2]));
        assert_eq!(
            PoolShape::new(&[1, 1, 27, 27], 3, 2).unwrap().out_hw(),
            (13, 13)
        );
        assert_eq!(
            PoolShape::new(&[1, 1, 13, 13], 3, 2).unwrap().out_hw(),
            (6, 6)
        );
        assert!(PoolShape::new(&[1, 1, 2, 2], 3, 2).is_err());
        assert!(PoolShape::new(&[1, 1, 9, 9], 3, 0).is_err());
    }

    #[test]
    fn lrn_parameters_in_cudnn_convention() {
        let p = CudnnLrn::new(&LrnConfig::default()).unwrap();
        assert_eq!((p.n, p.alpha, p.beta, p.k), (5, 1e-4, 0.75, 2.0));
        let bad = |f: fn(&mut LrnConfig)| {
            let mut c = LrnConfig::default();
            f(&mut c);
            CudnnLrn::new(&c).is_err()
        };
        assert!(bad(|c| c.size = 4), "even window");
        assert!(bad(|c| c.size = 17), "window over 16");
        assert!(bad(|c| c.size = 0));
        assert!(bad(|c| c.k = 0.0));
        assert!(bad(|c| c.beta = 0.0));
        assert!(!bad(|c| c.size = 1));
    }

    #[test]
    fn nvrtc_compiles_for_the_devices_own_capability() {
        assert_eq!(nvrtc_arch_option(9, 0), "--gpu-architecture=compute_90");
        assert_eq!(nvrtc_arch_option(8, 6), "--gpu-architecture=compute_86");
        assert!(KERNEL_SOURCE.contains("extern \"C\" __global__ void normalize_u8_f32("));
    }

    #[test]
    fn launch_configurations_cover_their_work() {
        for len in [0usize, 1, 255, 256, 257, 128 * 48 * 55 * 55] {
            let l = elementwise_launch(len);
            assert!(l.grid.0 >= 1 && l.grid.0 <= ELEMENTWISE_MAX_BLOCKS);
            assert_eq!(l.block, (ELEMENTWISE_THREADS, 1, 1));
            // Grid-stride: one pass when it fits, otherwise capped.
            let threads = l.grid.0 as usize * l.block.0 as usize;
            assert!(
                threads >= len || l.grid.0 == ELEMENTWISE_MAX_BLOCKS,
                "{len}"
            );
        }
        assert_eq!(elementwise_launch(257).grid.0, 2);
        let b = bias_grad_launch(128, 48).unwrap();
        assert_eq!(b.grid, (48, 32, 1));
        assert!(BIAS_GRAD_THREADS.is_power_of_two());
        assert_eq!(bias_grad_launch(4, 16).unwrap().grid, (16, 4, 1));
        assert_eq!(bias_grad_launch(0, 16).unwrap().grid, (16, 1, 1));
    }
}
