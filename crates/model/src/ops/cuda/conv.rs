//! The convolution on cuDNN: forward, backward-data and backward-filter
//! through cudarc's safe API, with the bias (and fused ReLU) and the bias
//! gradient in NVRTC kernels.
//!
//! # Plans
//! The first call of a shape, direction, element type and precision on a
//! GPU times every cuDNN algorithm of that direction on the call's own
//! buffers (one warm-up run, then one timed run each with the whole GPU
//! quiet; those asking for more than [`WORKSPACE_LIMIT`] are skipped) and
//! keeps the fastest for every device object of that GPU; each device
//! object keeps its descriptors in a per-device, per-thread cache, and from
//! then on launches the plan directly: no heuristic, no timing and no
//! descriptor creation per step.
//! Each device has one workspace buffer, grown to the largest a plan needs
//! (operations on one device run in order on its stream, so they share it).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use candle_core::cuda_backend::cudarc::cudnn::safe::{
    ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn, FilterDescriptor,
    TensorDescriptor,
};
use candle_core::cuda_backend::cudarc::cudnn::{sys, CudnnError};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, DeviceId};
use candle_core::{
    bail, CpuStorage, CudaStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor,
};

use super::kernels::{self, config, driver_err};
use super::view;
use crate::ops::cuda_plan::{
    bias_grad_launch, choose_algorithm, elementwise_launch, AlgoTrial, ConvDirection, ConvKey,
    ConvShape, PlanDType, WORKSPACE_LIMIT,
};
use crate::precision::{precision, Precision};

type FwdAlgo = sys::cudnnConvolutionFwdAlgo_t;
type DataAlgo = sys::cudnnConvolutionBwdDataAlgo_t;
type FilterAlgo = sys::cudnnConvolutionBwdFilterAlgo_t;

/// Every forward algorithm of cuDNN 9.
const FWD_ALGOS: [FwdAlgo; 8] = [
    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
];

/// Every backward-data algorithm of cuDNN 9.
const DATA_ALGOS: [DataAlgo; 6] = [
    DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
    DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
    DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
    DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
    DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
    DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
];

/// Every backward-filter algorithm of cuDNN 9.
const FILTER_ALGOS: [FilterAlgo; 7] = [
    FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
    FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
    FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
    FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
    FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD,
    FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
    FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
];

/// The chosen algorithm of a plan.
#[derive(Debug, Clone, Copy)]
enum Algo {
    Fwd(FwdAlgo),
    Data(DataAlgo),
    Filter(FilterAlgo),
}

/// The descriptors of one convolution (they hold the cuDNN handle).
struct Descriptors {
    conv: ConvDescriptor<f32>,
    x: TensorDescriptor<f32>,
    w: FilterDescriptor<f32>,
    y: TensorDescriptor<f32>,
}

/// A cached plan: descriptors, algorithm and its workspace size.
struct Plan {
    d: Descriptors,
    algo: Algo,
    workspace: usize,
}

/// The algorithm (and its workspace) chosen for each plan key on each GPU
/// (by ordinal), shared by the device objects of that GPU and by threads.
static CHOICES: LazyLock<Mutex<Choices>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Algorithm and workspace by GPU ordinal and plan key.
type Choices = HashMap<(usize, ConvKey), (Algo, usize)>;

thread_local! {
    /// cuDNN handles (bound to the device's stream) by device. Neither Send
    /// nor Sync, hence per thread, as Candle keeps its own.
    static HANDLES: RefCell<HashMap<DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
    /// Plans by device and key.
    static PLANS: RefCell<HashMap<(DeviceId, ConvKey), Rc<Plan>>> = RefCell::new(HashMap::new());
    /// One workspace per device.
    static WORKSPACES: RefCell<HashMap<DeviceId, CudaSlice<u8>>> = RefCell::new(HashMap::new());
}

fn handle(dev: &CudaDevice) -> Result<Arc<Cudnn>> {
    HANDLES.with(|h| {
        if let Some(c) = h.borrow().get(&dev.id()) {
            return Ok(c.clone());
        }
        let c = Cudnn::new(dev.cuda_stream())?;
        h.borrow_mut().insert(dev.id(), c.clone());
        Ok(c)
    })
}

fn plan_err(e: crate::ops::cuda_plan::PlanError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

fn descriptors(cudnn: &Arc<Cudnn>, s: &ConvShape, p: Precision) -> Result<Descriptors> {
    use sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW as NCHW;
    let (pad, stride, dilation) = s.conv_params().map_err(plan_err)?;
    let mut conv = cudnn.create_conv2d::<f32>(
        pad,
        stride,
        dilation,
        sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
    )?;
    conv.set_math_type(match p {
        Precision::Fp32 => sys::cudnnMathType_t::CUDNN_FMA_MATH,
        Precision::Tf32 => sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
    })?;
    Ok(Descriptors {
        conv,
        x: cudnn.create_4d_tensor::<f32>(NCHW, s.x_dims().map_err(plan_err)?)?,
        w: cudnn.create_4d_filter::<f32>(NCHW, s.w_dims().map_err(plan_err)?)?,
        y: cudnn.create_4d_tensor::<f32>(NCHW, s.y_dims().map_err(plan_err)?)?,
    })
}

/// Times each algorithm of `algos` (see the module documentation);
/// `size` gives an algorithm's workspace (`Err`: not supported for the
/// shape), `run` launches it with a workspace buffer.
fn time_algorithms<A: Copy>(
    dev: &CudaDevice,
    algos: &[A],
    size: impl Fn(A) -> std::result::Result<usize, CudnnError>,
    mut run: impl FnMut(A, &mut CudaSlice<u8>) -> std::result::Result<(), CudnnError>,
) -> Result<Vec<AlgoTrial<A>>> {
    let stream = dev.cuda_stream();
    let context = stream.context().clone();
    let mut trials = Vec::with_capacity(algos.len());
    for &algo in algos {
        let mut trial = AlgoTrial {
            algo,
            workspace: 0,
            time: None,
        };
        let Ok(bytes) = size(algo) else {
            trials.push(trial);
            continue;
        };
        trial.workspace = bytes;
        if bytes > WORKSPACE_LIMIT {
            trials.push(trial);
            continue;
        }
        let mut ws = stream.alloc_zeros::<u8>(bytes.max(1)).map_err(driver_err)?;
        if run(algo, &mut ws).is_ok() {
            // The whole GPU quiet (every stream of its context, the other
            // tower's too), so the timed run has the device to itself: the
            // host thread that queues both towers is here until it ends.
            context.synchronize().map_err(driver_err)?;
            let t = Instant::now();
            let ok = run(algo, &mut ws).is_ok();
            stream.synchronize().map_err(driver_err)?;
            trial.time = ok.then(|| t.elapsed());
        }
        trials.push(trial);
    }
    Ok(trials)
}

/// The plan of `key` on `dev`: descriptors of the device object's own,
/// and the algorithm that `choose` (which returns the algorithm and its
/// workspace) picked for this shape, direction and precision on this GPU,
/// the first time any device object of the GPU needed it. The towers of
/// `cuda:0,cuda:0` are two device objects of one GPU: they share the
/// search, so each shape is timed once per process and GPU.
fn plan(
    dev: &CudaDevice,
    key: ConvKey,
    choose: impl FnOnce(&Descriptors) -> Result<(Algo, usize)>,
) -> Result<Rc<Plan>> {
    if let Some(p) = PLANS.with(|p| p.borrow().get(&(dev.id(), key)).cloned()) {
        return Ok(p);
    }
    let d = descriptors(&handle(dev)?, &key.shape, key.precision)?;
    let gpu = dev.cuda_stream().context().ordinal();
    let searched = CHOICES
        .lock()
        .expect("algorithm choices lock poisoned")
        .get(&(gpu, key))
        .copied();
    let (algo, workspace) = match searched {
        Some(c) => c,
        None => {
            let c = choose(&d)?;
            CHOICES
                .lock()
                .expect("algorithm choices lock poisoned")
                .insert((gpu, key), c);
            c
        }
    };
    let p = Rc::new(Plan { d, algo, workspace });
    PLANS.with(|m| m.borrow_mut().insert((dev.id(), key), p.clone()));
    Ok(p)
}

/// Runs `f` with the device's workspace, grown to at least `bytes`.
fn with_workspace<R>(
    dev: &CudaDevice,
    bytes: usize,
    f: impl FnOnce(&mut CudaSlice<u8>) -> Result<R>,
) -> Result<R> {
    WORKSPACES.with(|w| {
        let mut map = w.borrow_mut();
        let need = bytes.max(1);
        if map.get(&dev.id()).is_none_or(|b| b.len() < need) {
            let buf = dev
                .cuda_stream()
                .alloc_zeros::<u8>(need)
                .map_err(driver_err)?;
            map.insert(dev.id(), buf);
        }
        let buf = map.get_mut(&dev.id()).expect("workspace just inserted");
        f(buf)
    })
}

fn key(shape: ConvShape, direction: ConvDirection) -> ConvKey {
    ConvKey {
        shape,
        direction,
        dtype: PlanDType::F32,
        precision: precision(),
    }
}

fn chosen<A: Copy>(trials: &[AlgoTrial<A>], direction: ConvDirection) -> Result<(A, usize)> {
    let i = choose_algorithm(trials, WORKSPACE_LIMIT)
        .ok_or_else(|| plan_err(crate::ops::cuda_plan::PlanError::NoAlgorithm(direction)))?;
    Ok((trials[i].algo, trials[i].workspace))
}

/// Forward: `y = conv(x, w) + b`, then `max(y, 0)` if `relu`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    stride: usize,
    padding: usize,
    relu: bool,
) -> Result<(CudaStorage, Shape)> {
    let shape = ConvShape::new(l1.dims(), l2.dims(), stride, padding).map_err(plan_err)?;
    if l3.dims() != [shape.o] {
        bail!(
            "conv2d: bias shape {:?} does not match {} output channels",
            l3.dims(),
            shape.o
        );
    }
    let dev = s1.device.clone();
    let (x, w, b) = (view(s1, l1, "x")?, view(s2, l2, "w")?, view(s3, l3, "b")?);
    // Every element is written by the convolution (beta = 0).
    let mut y = unsafe { dev.alloc::<f32>(shape.y_len()) }?;
    let p = plan(&dev, key(shape, ConvDirection::Forward), |d| {
        let op = ConvForward {
            conv: &d.conv,
            x: &d.x,
            w: &d.w,
            y: &d.y,
        };
        let trials = time_algorithms(
            &dev,
            &FWD_ALGOS,
            |a| op.get_workspace_size(a),
            |a, ws| unsafe { op.launch(a, Some(ws), (1.0f32, 0.0), &x, &w, &mut y) },
        )?;
        let (a, bytes) = chosen(&trials, ConvDirection::Forward)?;
        Ok((Algo::Fwd(a), bytes))
    })?;
    let Algo::Fwd(algo) = p.algo else {
        bail!("conv2d: forward plan holds another direction's algorithm");
    };
    let op = ConvForward {
        conv: &p.d.conv,
        x: &p.d.x,
        w: &p.d.w,
        y: &p.d.y,
    };
    with_workspace(&dev, p.workspace, |ws| {
        unsafe { op.launch(algo, Some(ws), (1.0f32, 0.0), &x, &w, &mut y) }?;
        Ok(())
    })?;
    // Bias and ReLU in one pass over y.
    let (ho, wo) = shape.out_hw();
    let len = shape.y_len() as u64;
    let (plane, channels, act) = ((ho * wo) as u64, shape.o as u64, relu as i32);
    let f = kernels::function(&dev, "bias_act_f32")?;
    let stream = dev.cuda_stream();
    let mut launch = stream.launch_builder(&f);
    launch
        .arg(&mut y)
        .arg(&b)
        .arg(&len)
        .arg(&plane)
        .arg(&channels)
        .arg(&act);
    unsafe { launch.launch(config(elementwise_launch(shape.y_len()))) }.map_err(driver_err)?;
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev),
        Shape::from((shape.n, shape.o, ho, wo)),
    ))
}

/// `dy * (y > 0)`: the gradient before a fused ReLU.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "alexnet-relu-mask"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("relu mask: CUDA only")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if l1.dims() != l2.dims() {
            bail!(
                "relu mask: gradient {:?} and output {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let dev = s1.device.clone();
        let (dy, y) = (view(s1, l1, "dy")?, view(s2, l2, "y")?);
        let n = l1.shape().elem_count();
        let mut out = unsafe { dev.alloc::<f32>(n) }?;
        let f = kernels::function(&dev, "relu_mask_f32")?;
        let stream = dev.cuda_stream();
        let len = n as u64;
        let mut launch = stream.launch_builder(&f);
        launch.arg(&dy).arg(&y).arg(&mut out).arg(&len);
        unsafe { launch.launch(config(elementwise_launch(n))) }.map_err(driver_err)?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), l1.shape().clone()))
    }
}

/// `db[o] = sum over n, h, w of dy[n, o, h, w]`.
struct BiasGrad;

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "alexnet-bias-grad"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("bias gradient: CUDA only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let &[n, o, h, w] = l.dims() else {
            bail!(
                "bias gradient: expected dy [N, O, H, W], got {:?}",
                l.dims()
            );
        };
        let dev = s.device.clone();
        let dy = view(s, l, "dy")?;
        let mut db = dev.alloc_zeros::<f32>(o)?;
        let launch_cfg = bias_grad_launch(n, o).map_err(plan_err)?;
        let f = kernels::function(&dev, "bias_grad_f32")?;
        let stream = dev.cuda_stream();
        let (n32, o32, p) = (n as u32, o as u32, (h * w) as u64);
        if n > u32::MAX as usize {
            bail!("bias gradient: batch {n} too large");
        }
        let mut launch = stream.launch_builder(&f);
        launch.arg(&dy).arg(&mut db).arg(&n32).arg(&o32).arg(&p);
        unsafe { launch.launch(config(launch_cfg)) }.map_err(driver_err)?;
        Ok((CudaStorage::wrap_cuda_slice(db, dev), Shape::from(o)))
    }
}

/// `dw` from `x` and `dy` (the gradient after the ReLU mask).
struct BackwardFilter {
    w_dims: [usize; 4],
    stride: usize,
    padding: usize,
}

impl CustomOp2 for BackwardFilter {
    fn name(&self) -> &'static str {
        "alexnet-conv2d-backward-filter"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("conv2d backward-filter op: CUDA only")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let shape =
            ConvShape::new(l1.dims(), &self.w_dims, self.stride, self.padding).map_err(plan_err)?;
        let dev = s1.device.clone();
        let (x, dy) = (view(s1, l1, "x")?, view(s2, l2, "dy")?);
        if dy.len() != shape.y_len() {
            bail!(
                "conv2d backward: dy has {} elements, expected {}",
                dy.len(),
                shape.y_len()
            );
        }
        // Every element is written (beta = 0).
        let mut dw = unsafe { dev.alloc::<f32>(shape.w_len()) }?;
        let p = plan(&dev, key(shape, ConvDirection::BackwardFilter), |d| {
            let op = ConvBackwardFilter {
                conv: &d.conv,
                x: &d.x,
                dw: &d.w,
                dy: &d.y,
            };
            let trials = time_algorithms(
                &dev,
                &FILTER_ALGOS,
                |a| op.get_workspace_size(a),
                |a, ws| unsafe { op.launch(a, Some(ws), (1.0f32, 0.0), &x, &mut dw, &dy) },
            )?;
            let (a, bytes) = chosen(&trials, ConvDirection::BackwardFilter)?;
            Ok((Algo::Filter(a), bytes))
        })?;
        let Algo::Filter(algo) = p.algo else {
            bail!("conv2d: backward-filter plan holds another direction's algorithm");
        };
        let op = ConvBackwardFilter {
            conv: &p.d.conv,
            x: &p.d.x,
            dw: &p.d.w,
            dy: &p.d.y,
        };
        with_workspace(&dev, p.workspace, |ws| {
            unsafe { op.launch(algo, Some(ws), (1.0f32, 0.0), &x, &mut dw, &dy) }?;
            Ok(())
        })?;
        Ok((
            CudaStorage::wrap_cuda_slice(dw, dev),
            Shape::from(self.w_dims.to_vec()),
        ))
    }
}

/// `dx` from `dy` (the gradient after the ReLU mask) and `w`.
struct BackwardData {
    x_dims: [usize; 4],
    stride: usize,
    padding: usize,
}

impl CustomOp2 for BackwardData {
    fn name(&self) -> &'static str {
        "alexnet-conv2d-backward-data"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("conv2d backward-data op: CUDA only")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let shape =
            ConvShape::new(&self.x_dims, l2.dims(), self.stride, self.padding).map_err(plan_err)?;
        let dev = s1.device.clone();
        let (dy, w) = (view(s1, l1, "dy")?, view(s2, l2, "w")?);
        if dy.len() != shape.y_len() {
            bail!(
                "conv2d backward: dy has {} elements, expected {}",
                dy.len(),
                shape.y_len()
            );
        }
        // Every element is written (beta = 0).
        let mut dx = unsafe { dev.alloc::<f32>(shape.x_len()) }?;
        let p = plan(&dev, key(shape, ConvDirection::BackwardData), |d| {
            let op = ConvBackwardData {
                conv: &d.conv,
                dx: &d.x,
                w: &d.w,
                dy: &d.y,
            };
            let trials = time_algorithms(
                &dev,
                &DATA_ALGOS,
                |a| op.get_workspace_size(a),
                |a, ws| unsafe { op.launch(a, Some(ws), (1.0f32, 0.0), &mut dx, &w, &dy) },
            )?;
            let (a, bytes) = chosen(&trials, ConvDirection::BackwardData)?;
            Ok((Algo::Data(a), bytes))
        })?;
        let Algo::Data(algo) = p.algo else {
            bail!("conv2d: backward-data plan holds another direction's algorithm");
        };
        let op = ConvBackwardData {
            conv: &p.d.conv,
            dx: &p.d.x,
            w: &p.d.w,
            dy: &p.d.y,
        };
        with_workspace(&dev, p.workspace, |ws| {
            unsafe { op.launch(algo, Some(ws), (1.0f32, 0.0), &mut dx, &w, &dy) }?;
            Ok(())
        })?;
        Ok((
            CudaStorage::wrap_cuda_slice(dx, dev),
            Shape::from(self.x_dims.to_vec()),
        ))
    }
}

/// The backward pass of the convolution on CUDA: ReLU mask (if fused),
/// bias gradient, weight gradient and, with `input_grad`, input gradient.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    stride: usize,
    padding: usize,
    input_grad: bool,
    relu: bool,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (x, w, dy) = (x.contiguous()?, w.contiguous()?, dy.contiguous()?);
    let dyr = if relu {
        dy.apply_op2_no_bwd(&y.contiguous()?, &ReluMask)?
    } else {
        dy
    };
    let db = dyr.apply_op1_no_bwd(&BiasGrad)?;
    let w_dims: [usize; 4] = w.dims4()?.into();
    let dw = x.apply_op2_no_bwd(
        &dyr,
        &BackwardFilter {
            w_dims,
            stride,
            padding,
        },
    )?;
    let dx = if input_grad {
        let x_dims: [usize; 4] = x.dims4()?.into();
        Some(dyr.apply_op2_no_bwd(
            &w,
            &BackwardData {
                x_dims,
                stride,
                padding,
            },
        )?)
    } else {
        None
    };
    Ok((dx, Some(dw), Some(db)))
}
