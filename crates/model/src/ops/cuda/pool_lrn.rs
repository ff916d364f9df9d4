//! Overlapping max-pooling and cross-channel LRN on cuDNN, and the two
//! fused, forward and backward.
//!
//! cudarc's safe API has no pooling backward and no LRN, so these call its
//! `sys` bindings with their own handle per device (bound to the device's
//! stream) and descriptors cached per shape. Pooling uses
//! `CUDNN_POOLING_MAX_DETERMINISTIC` with NaN propagation; LRN is
//! `CUDNN_LRN_CROSS_CHANNEL_DIM1`, whose `alpha` is divided by the window
//! width as [`LrnConfig`] specifies. Device pointers are taken through
//! cudarc's `DevicePtr` traits, so cross-stream uses are ordered by its
//! event tracking as for any other kernel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use candle_core::cuda_backend::cudarc::cudnn::{result, sys};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use candle_core::cuda_backend::{CudaDevice, DeviceId};
use candle_core::{bail, CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape};

use super::view;
use crate::ops::cuda_plan::{CudnnLrn, PlanError, PoolShape};
use crate::LrnConfig;

fn plan_err(e: PlanError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// A cuDNN handle of our own (the safe API does not expose its raw one),
/// bound to a device's stream; holding the stream keeps its CUDA context
/// alive until the handle is destroyed.
struct Handle {
    raw: sys::cudnnHandle_t,
    _stream: Arc<CudaStream>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe {
            let _ = result::destroy_handle(self.raw);
        }
    }
}

/// A 4-D NCHW float tensor descriptor.
struct TensorDesc(sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    fn nchw(dims: [i32; 4]) -> Result<Self> {
        let d = TensorDesc(result::create_tensor_descriptor()?);
        unsafe {
            result::set_tensor4d_descriptor(
                d.0,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                dims,
            )
        }?;
        Ok(d)
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        unsafe {
            let _ = result::destroy_tensor_descriptor(self.0);
        }
    }
}

/// A max-pooling descriptor.
struct PoolDesc(sys::cudnnPoolingDescriptor_t);

impl Drop for PoolDesc {
    fn drop(&mut self) {
        unsafe {
            let _ = sys::cudnnDestroyPoolingDescriptor(self.0);
        }
    }
}

/// An LRN descriptor.
struct LrnDesc(sys::cudnnLRNDescriptor_t);

impl Drop for LrnDesc {
    fn drop(&mut self) {
        unsafe {
            let _ = sys::cudnnDestroyLRNDescriptor(self.0);
        }
    }
}

/// Descriptors of one pooling shape.
struct PoolPlan {
    x: TensorDesc,
    y: TensorDesc,
    pool: PoolDesc,
}

/// Descriptors of one LRN shape (input and output share `x`).
struct LrnPlan {
    x: TensorDesc,
    lrn: LrnDesc,
}

/// Key of an LRN plan: shape and the parameters' bits.
type LrnKey = (DeviceId, [usize; 4], u32, [u64; 3]);

thread_local! {
    static HANDLES: RefCell<HashMap<DeviceId, Rc<Handle>>> = RefCell::new(HashMap::new());
    static POOLS: RefCell<HashMap<(DeviceId, PoolShape), Rc<PoolPlan>>> = RefCell::new(HashMap::new());
    static LRNS: RefCell<HashMap<LrnKey, Rc<LrnPlan>>> = RefCell::new(HashMap::new());
}

fn handle(dev: &CudaDevice) -> Result<Rc<Handle>> {
    HANDLES.with(|h| {
        if let Some(c) = h.borrow().get(&dev.id()) {
            return Ok(c.clone());
        }
        let stream = dev.cuda_stream();
        stream
            .context()
            .bind_to_thread()
            .map_err(candle_core::Error::wrap)?;
        let c = Rc::new(Handle {
            raw: result::create_handle()?,
            _stream: stream.clone(),
        });
        unsafe { result::set_stream(c.raw, stream.cu_stream() as *mut _) }?;
        h.borrow_mut().insert(dev.id(), c.clone());
        Ok(c)
    })
}

fn pool_plan(dev: &CudaDevice, s: PoolShape) -> Result<Rc<PoolPlan>> {
    if let Some(p) = POOLS.with(|p| p.borrow().get(&(dev.id(), s)).cloned()) {
        return Ok(p);
    }
    let (window, pads, strides) = s.window().map_err(plan_err)?;
    let pool = PoolDesc(result::create_pooling_descriptor()?);
    unsafe {
        result::set_pooling_descriptor(
            pool.0,
            sys::cudnnPoolingMode_t::CUDNN_POOLING_MAX_DETERMINISTIC,
            sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
            2,
            &window,
            &pads,
            &strides,
        )
    }?;
    let p = Rc::new(PoolPlan {
        x: TensorDesc::nchw(s.x_dims().map_err(plan_err)?)?,
        y: TensorDesc::nchw(s.y_dims().map_err(plan_err)?)?,
        pool,
    });
    POOLS.with(|m| m.borrow_mut().insert((dev.id(), s), p.clone()));
    Ok(p)
}

fn lrn_plan(dev: &CudaDevice, dims: [usize; 4], cfg: &LrnConfig) -> Result<Rc<LrnPlan>> {
    let c = CudnnLrn::new(cfg).map_err(plan_err)?;
    let key: LrnKey = (
        dev.id(),
        dims,
        c.n,
        [c.alpha.to_bits(), c.beta.to_bits(), c.k.to_bits()],
    );
    if let Some(p) = LRNS.with(|p| p.borrow().get(&key).cloned()) {
        return Ok(p);
    }
    let mut raw = std::ptr::null_mut();
    unsafe { sys::cudnnCreateLRNDescriptor(&mut raw) }.result()?;
    let lrn = LrnDesc(raw);
    unsafe { sys::cudnnSetLRNDescriptor(lrn.0, c.n, c.alpha, c.beta, c.k) }.result()?;
    let as_i32 = |what, v: usize| {
        i32::try_from(v).map_err(|_| plan_err(PlanError::TooLarge { what, value: v }))
    };
    let x = TensorDesc::nchw([
        as_i32("N", dims[0])?,
        as_i32("C", dims[1])?,
        as_i32("H", dims[2])?,
        as_i32("W", dims[3])?,
    ])?;
    let p = Rc::new(LrnPlan { x, lrn });
    LRNS.with(|m| m.borrow_mut().insert(key, p.clone()));
    Ok(p)
}

static ONE: f32 = 1.0;
static ZERO: f32 = 0.0;

fn one() -> *const c_void {
    &ONE as *const f32 as *const c_void
}

fn zero() -> *const c_void {
    &ZERO as *const f32 as *const c_void
}

fn dims4(l: &Layout, what: &str) -> Result<[usize; 4]> {
    match l.dims() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        d => bail!("{what}: expected [N, C, H, W], got {d:?}"),
    }
}

/// `y = maxpool(x)` into a new buffer.
fn pool_forward<X: DevicePtr<f32>>(
    dev: &CudaDevice,
    s: PoolShape,
    x: &X,
) -> Result<CudaSlice<f32>> {
    let (h, p) = (handle(dev)?, pool_plan(dev, s)?);
    let stream = dev.cuda_stream();
    let mut y = unsafe { dev.alloc::<f32>(s.y_len()) }?;
    {
        let (xp, _rx) = x.device_ptr(&stream);
        let (yp, _ry) = y.device_ptr_mut(&stream);
        unsafe {
            sys::cudnnPoolingForward(
                h.raw,
                p.pool.0,
                one(),
                p.x.0,
                xp as *const c_void,
                zero(),
                p.y.0,
                yp as *mut c_void,
            )
        }
        .result()?;
    }
    Ok(y)
}

/// `dx` of the pooling from its input `x`, output `y` and `dy`.
fn pool_backward<X: DevicePtr<f32>, Y: DevicePtr<f32>, D: DevicePtr<f32>>(
    dev: &CudaDevice,
    s: PoolShape,
    x: &X,
    y: &Y,
    dy: &D,
) -> Result<CudaSlice<f32>> {
    let (h, p) = (handle(dev)?, pool_plan(dev, s)?);
    let stream = dev.cuda_stream();
    let mut dx = unsafe { dev.alloc::<f32>(s.n * s.c * s.h * s.w) }?;
    {
        let (xp, _rx) = x.device_ptr(&stream);
        let (yp, _ry) = y.device_ptr(&stream);
        let (dyp, _rdy) = dy.device_ptr(&stream);
        let (dxp, _rdx) = dx.device_ptr_mut(&stream);
        unsafe {
            sys::cudnnPoolingBackward(
                h.raw,
                p.pool.0,
                one(),
                p.y.0,
                yp as *const c_void,
                p.y.0,
                dyp as *const c_void,
                p.x.0,
                xp as *const c_void,
                zero(),
                p.x.0,
                dxp as *mut c_void,
            )
        }
        .result()?;
    }
    Ok(dx)
}

/// `y = lrn(x)` into a new buffer.
fn lrn_forward<X: DevicePtr<f32>>(
    dev: &CudaDevice,
    dims: [usize; 4],
    cfg: &LrnConfig,
    x: &X,
) -> Result<CudaSlice<f32>> {
    let (h, p) = (handle(dev)?, lrn_plan(dev, dims, cfg)?);
    let stream = dev.cuda_stream();
    let mut y = unsafe { dev.alloc::<f32>(dims.iter().product()) }?;
    {
        let (xp, _rx) = x.device_ptr(&stream);
        let (yp, _ry) = y.device_ptr_mut(&stream);
        unsafe {
            sys::cudnnLRNCrossChannelForward(
                h.raw,
                p.lrn.0,
                sys::cudnnLRNMode_t::CUDNN_LRN_CROSS_CHANNEL_DIM1,
                one(),
                p.x.0,
                xp as *const c_void,
                zero(),
                p.x.0,
                yp as *mut c_void,
            )
        }
        .result()?;
    }
    Ok(y)
}

/// `dx` of the LRN from its input `x`, output `y` and `dy`.
fn lrn_backward<X: DevicePtr<f32>, Y: DevicePtr<f32>, D: DevicePtr<f32>>(
    dev: &CudaDevice,
    dims: [usize; 4],
    cfg: &LrnConfig,
    x: &X,
    y: &Y,
    dy: &D,
) -> Result<CudaSlice<f32>> {
    let (h, p) = (handle(dev)?, lrn_plan(dev, dims, cfg)?);
    let stream = dev.cuda_stream();
    let mut dx = unsafe { dev.alloc::<f32>(dims.iter().product()) }?;
    {
        let (xp, _rx) = x.device_ptr(&stream);
        let (yp, _ry) = y.device_ptr(&stream);
        let (dyp, _rdy) = dy.device_ptr(&stream);
        let (dxp, _rdx) = dx.device_ptr_mut(&stream);
        unsafe {
            sys::cudnnLRNCrossChannelBackward(
                h.raw,
                p.lrn.0,
                sys::cudnnLRNMode_t::CUDNN_LRN_CROSS_CHANNEL_DIM1,
                one(),
                p.x.0,
                yp as *const c_void,
                p.x.0,
                dyp as *const c_void,
                p.x.0,
                xp as *const c_void,
                zero(),
                p.x.0,
                dxp as *mut c_void,
            )
        }
        .result()?;
    }
    Ok(dx)
}

/// Forward of max-pooling on CUDA.
pub(crate) fn max_pool_fwd(
    s: &CudaStorage,
    l: &Layout,
    kernel: usize,
    stride: usize,
) -> Result<(CudaStorage, Shape)> {
    let shape = PoolShape::new(l.dims(), kernel, stride).map_err(plan_err)?;
    let dev = s.device.clone();
    let y = pool_forward(&dev, shape, &view(s, l, "x")?)?;
    let (ho, wo) = shape.out_hw();
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev),
        Shape::from((shape.n, shape.c, ho, wo)),
    ))
}

/// Backward of max-pooling on CUDA, as an op on `(x, y, dy)`.
pub(crate) struct MaxPoolBackward {
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
}

impl CustomOp3 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "alexnet-max-pool-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("max-pool backward op: CUDA only")
    }

    fn cuda_fwd(
        &self,
        sx: &CudaStorage,
        lx: &Layout,
        sy: &CudaStorage,
        ly: &Layout,
        sd: &CudaStorage,
        ld: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let shape = PoolShape::new(lx.dims(), self.kernel, self.stride).map_err(plan_err)?;
        if ly.shape().elem_count() != shape.y_len() || ld.shape().elem_count() != shape.y_len() {
            bail!("max-pool backward: output or gradient of the wrong size");
        }
        let dev = sx.device.clone();
        let dx = pool_backward(
            &dev,
            shape,
            &view(sx, lx, "x")?,
            &view(sy, ly, "y")?,
            &view(sd, ld, "dy")?,
        )?;
        Ok((CudaStorage::wrap_cuda_slice(dx, dev), lx.shape().clone()))
    }
}

/// Forward of LRN on CUDA.
pub(crate) fn lrn_fwd(
    s: &CudaStorage,
    l: &Layout,
    cfg: &LrnConfig,
) -> Result<(CudaStorage, Shape)> {
    let dims = dims4(l, "lrn")?;
    let dev = s.device.clone();
    let y = lrn_forward(&dev, dims, cfg, &view(s, l, "x")?)?;
    Ok((CudaStorage::wrap_cuda_slice(y, dev), l.shape().clone()))
}

/// Backward of LRN on CUDA, as an op on `(x, y, dy)`.
pub(crate) struct LrnBackward {
    pub(crate) cfg: LrnConfig,
}

impl CustomOp3 for LrnBackward {
    fn name(&self) -> &'static str {
        "alexnet-lrn-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("LRN backward op: CUDA only")
    }

    fn cuda_fwd(
        &self,
        sx: &CudaStorage,
        lx: &Layout,
        sy: &CudaStorage,
        ly: &Layout,
        sd: &CudaStorage,
        ld: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dims = dims4(lx, "lrn backward")?;
        if ly.dims() != lx.dims() || ld.dims() != lx.dims() {
            bail!("lrn backward: x, y and dy shapes differ");
        }
        let dev = sx.device.clone();
        let dx = lrn_backward(
            &dev,
            dims,
            &self.cfg,
            &view(sx, lx, "x")?,
            &view(sy, ly, "y")?,
            &view(sd, ld, "dy")?,
        )?;
        Ok((CudaStorage::wrap_cuda_slice(dx, dev), lx.shape().clone()))
    }
}

/// The normalised maps of a fused LRN + pooling forward, kept on the device
/// for its backward (taken, and so freed, by the backward; recomputed if
/// absent).
#[derive(Default)]
pub(crate) struct KeptNormalised(Mutex<Option<CudaSlice<f32>>>);

/// Forward of the fused LRN + max-pooling on CUDA: `z = lrn(x)` (kept in
/// `kept`), `y = maxpool(z)`.
pub(crate) fn lrn_pool_fwd(
    s: &CudaStorage,
    l: &Layout,
    cfg: &LrnConfig,
    kernel: usize,
    stride: usize,
    kept: &KeptNormalised,
) -> Result<(CudaStorage, Shape)> {
    let dims = dims4(l, "lrn_max_pool")?;
    let shape = PoolShape::new(l.dims(), kernel, stride).map_err(plan_err)?;
    let dev = s.device.clone();
    let z = lrn_forward(&dev, dims, cfg, &view(s, l, "x")?)?;
    let y = pool_forward(&dev, shape, &z)?;
    *kept.0.lock().expect("kept maps lock poisoned") = Some(z);
    let (ho, wo) = shape.out_hw();
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev),
        Shape::from((shape.n, shape.c, ho, wo)),
    ))
}

/// Backward of the fused LRN + max-pooling, as an op on `(x, y, dy)` that
/// reads the forward's normalised maps.
pub(crate) struct LrnPoolBackward<'a> {
    pub(crate) cfg: LrnConfig,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) kept: &'a KeptNormalised,
}

impl CustomOp3 for LrnPoolBackward<'_> {
    fn name(&self) -> &'static str {
        "alexnet-lrn-max-pool-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("LRN + max-pool backward op: CUDA only")
    }

    fn cuda_fwd(
        &self,
        sx: &CudaStorage,
        lx: &Layout,
        sy: &CudaStorage,
        ly: &Layout,
        sd: &CudaStorage,
        ld: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dims = dims4(lx, "lrn_max_pool backward")?;
        let shape = PoolShape::new(lx.dims(), self.kernel, self.stride).map_err(plan_err)?;
        if ly.shape().elem_count() != shape.y_len() || ld.shape().elem_count() != shape.y_len() {
            bail!("lrn_max_pool backward: output or gradient of the wrong size");
        }
        let dev = sx.device.clone();
        let x = view(sx, lx, "x")?;
        let kept = self.kept.0.lock().expect("kept maps lock poisoned").take();
        let z = match kept {
            Some(z) if z.len() == lx.shape().elem_count() => z,
            _ => lrn_forward(&dev, dims, &self.cfg, &x)?,
        };
        let dz = pool_backward(&dev, shape, &z, &view(sy, ly, "y")?, &view(sd, ld, "dy")?)?;
        let dx = lrn_backward(&dev, dims, &self.cfg, &x, &z, &dz)?;
        Ok((CudaStorage::wrap_cuda_slice(dx, dev), lx.shape().clone()))
    }
}
