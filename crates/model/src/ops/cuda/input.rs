//! The network's input made on the GPU from the loader's raw `u8` crops:
//! a copy from pinned host memory on a copy stream of its own, into one of
//! two buffers, and the `normalize_u8_f32` kernel (mean-image subtraction
//! and PCA lighting) on the device's stream. See [`crate::input`].

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    CudaContext, CudaEvent, CudaSlice, CudaStream, PinnedHostSlice, PushKernelArg,
};
use candle_core::cuda_backend::CudaDevice;
use candle_core::op::BackpropOp;
use candle_core::{bail, CudaStorage, Device, Result, Storage, Tensor};

use super::kernels::{self, config, driver_err};
use crate::input::{check_mean, pack_meta, ViewMeta, META_PER_VIEW};
use crate::ops::cuda_plan::elementwise_launch;

/// One of the two buffers: the batch in pinned host memory and on the
/// device, as copied by the copy stream.
struct Slot {
    host_pixels: PinnedHostSlice<u8>,
    host_meta: PinnedHostSlice<f32>,
    pixels: CudaSlice<u8>,
    meta: CudaSlice<f32>,
    /// Views and crop side of the batch copied in, while it waits for
    /// [`DeviceInput::take`].
    staged: Option<(usize, usize)>,
    /// Recorded on the copy stream after the batch's copies.
    copied: Option<CudaEvent>,
    /// Recorded on the device's stream after the kernel that last read the
    /// buffers.
    consumed: Option<CudaEvent>,
}

/// Raw `u8` batches to the network's `f32` input on one CUDA device, double
/// buffered: [`DeviceInput::stage`] starts the copy of a batch and returns
/// at once; [`DeviceInput::take`] queues the normalising kernel of the
/// oldest staged batch on the device's stream (it waits for that copy, and
/// nothing else waits for it) and returns the input tensor. Staging batch
/// `n + 1` before the step on batch `n` is read back lets its copy run
/// while the GPU computes.
///
/// The two streams are ordered by events of its own, whatever cudarc's
/// tracking does: the kernel waits for its batch's copies, and a copy into
/// a buffer (or the buffer's release) waits for the kernel that last read
/// it. The copy stream belongs to a context object of its own (the same
/// GPU's primary context), so that it does not switch the device's own
/// context object into cudarc's multi-stream mode, where every tensor the
/// step allocates would record events at each use.
pub struct DeviceInput {
    dev: CudaDevice,
    copy: Arc<CudaStream>,
    mean: CudaSlice<f32>,
    mean_hw: (usize, usize),
    scale: f32,
    slots: [Option<Slot>; 2],
    /// Slot the next [`DeviceInput::stage`] fills.
    next_stage: usize,
    /// Slot the next [`DeviceInput::take`] reads.
    next_take: usize,
}

impl DeviceInput {
    /// For `device` (CUDA), with the dataset's mean image (HWC, `h x w x
    /// 3`) and the loader's output scale.
    pub fn new(
        device: &Device,
        mean_image: &[f32],
        h: usize,
        w: usize,
        scale: f32,
    ) -> Result<Self> {
        let Device::Cuda(dev) = device else {
            bail!("device input: {device:?} is not a CUDA device");
        };
        check_mean(mean_image, h, w).map_err(candle_core::Error::wrap)?;
        let ordinal = dev.cuda_stream().context().ordinal();
        let copy = CudaContext::new(ordinal)
            .and_then(|ctx| ctx.new_stream())
            .map_err(driver_err)?;
        let mean = dev
            .cuda_stream()
            .clone_htod(mean_image)
            .map_err(driver_err)?;
        Ok(Self {
            dev: dev.clone(),
            copy,
            mean,
            mean_hw: (h, w),
            scale,
            slots: [None, None],
            next_stage: 0,
            next_take: 0,
        })
    }

    /// Starts copying a batch to the device: `pixels` holds its views' `u8`
    /// crops, NCHW `[views, 3, crop, crop]`. Copies the batch into pinned
    /// memory first (the loader's batch may be dropped on return). Errors
    /// when both buffers already hold batches not yet taken.
    pub fn stage(&mut self, pixels: &[u8], views: &[ViewMeta], crop: usize) -> Result<()> {
        let meta =
            pack_meta(views, crop, pixels.len(), self.mean_hw).map_err(candle_core::Error::wrap)?;
        let k = self.next_stage;
        if self.slots[k].as_ref().is_some_and(|s| s.staged.is_some()) {
            bail!("device input: both buffers hold batches not yet taken");
        }
        let fits = self.slots[k].as_ref().is_some_and(|s| {
            s.host_pixels.len() >= pixels.len() && s.host_meta.len() >= meta.len()
        });
        // The copies (or the release of buffers too small) wait for the
        // kernel that last read this slot.
        if let Some(ev) = self.slots[k].as_ref().and_then(|s| s.consumed.as_ref()) {
            self.copy.wait(ev).map_err(driver_err)?;
        }
        if !fits {
            self.slots[k] = Some(self.slot(pixels.len(), meta.len())?);
        }
        let slot = self.slots[k].as_mut().expect("slot just made");
        // Waits (on the host) for this buffer's previous copy, two batches ago.
        slot.host_pixels.as_mut_slice().map_err(driver_err)?[..pixels.len()]
            .copy_from_slice(pixels);
        slot.host_meta.as_mut_slice().map_err(driver_err)?[..meta.len()].copy_from_slice(&meta);
        // Whole buffers (a short last batch copies a few stale bytes more).
        self.copy
            .memcpy_htod(&slot.host_pixels, &mut slot.pixels)
            .map_err(driver_err)?;
        self.copy
            .memcpy_htod(&slot.host_meta, &mut slot.meta)
            .map_err(driver_err)?;
        slot.copied = Some(self.copy.record_event(None).map_err(driver_err)?);
        slot.staged = Some((views.len(), crop));
        self.next_stage = 1 - k;
        Ok(())
    }

    /// Buffers for `bytes` of pixels and `floats` of metadata.
    fn slot(&self, bytes: usize, floats: usize) -> Result<Slot> {
        let ctx = self.copy.context();
        // SAFETY: written in full by `stage` before any copy reads them.
        let host_pixels = unsafe { ctx.alloc_pinned::<u8>(bytes.max(1)) }.map_err(driver_err)?;
        let host_meta = unsafe { ctx.alloc_pinned::<f32>(floats.max(1)) }.map_err(driver_err)?;
        Ok(Slot {
            host_pixels,
            host_meta,
            pixels: self
                .copy
                .alloc_zeros::<u8>(bytes.max(1))
                .map_err(driver_err)?,
            meta: self
                .copy
                .alloc_zeros::<f32>(floats.max(1))
                .map_err(driver_err)?,
            staged: None,
            copied: None,
            consumed: None,
        })
    }

    /// Forgets the staged batches that were not taken (their buffers are
    /// reused; a later copy into them still waits for their last reader).
    pub fn clear(&mut self) {
        for slot in self.slots.iter_mut().flatten() {
            slot.staged = None;
        }
        self.next_take = self.next_stage;
    }

    /// Whether a staged batch waits for [`DeviceInput::take`].
    pub fn has_staged(&self) -> bool {
        self.slots[self.next_take]
            .as_ref()
            .is_some_and(|s| s.staged.is_some())
    }

    /// The `f32` input `[views, 3, crop, crop]` of the oldest staged batch,
    /// computed on the device's stream.
    pub fn take(&mut self) -> Result<Tensor> {
        let k = self.next_take;
        let Some(slot) = self.slots[k].as_mut() else {
            bail!("device input: no batch staged");
        };
        let Some((views, crop)) = slot.staged.take() else {
            bail!("device input: no batch staged");
        };
        self.next_take = 1 - k;
        let len = views * 3 * crop * crop;
        let stream = self.dev.cuda_stream();
        // Every element is written by the kernel.
        let mut out = unsafe { self.dev.alloc::<f32>(len) }?;
        let f = kernels::function(&self.dev, "normalize_u8_f32")?;
        let (pixels, meta) = (
            slot.pixels.slice(..len),
            slot.meta.slice(..views * META_PER_VIEW),
        );
        let (n, c, mw) = (len as u64, crop as u32, self.mean_hw.1 as u32);
        if let Some(ev) = slot.copied.as_ref() {
            stream.wait(ev).map_err(driver_err)?;
        }
        let mut launch = stream.launch_builder(&f);
        launch
            .arg(&pixels)
            .arg(&mut out)
            .arg(&self.mean)
            .arg(&meta)
            .arg(&n)
            .arg(&c)
            .arg(&mw)
            .arg(&self.scale);
        unsafe { launch.launch(config(elementwise_launch(len))) }.map_err(driver_err)?;
        slot.consumed = Some(stream.record_event(None).map_err(driver_err)?);
        let storage = CudaStorage::wrap_cuda_slice(out, self.dev.clone());
        Ok(Tensor::from_storage(
            Storage::Cuda(storage),
            (views, 3, crop, crop),
            BackpropOp::none(),
            false,
        ))
    }
}
