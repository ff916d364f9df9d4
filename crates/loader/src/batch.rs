//! Batches and the pool their buffers come from and return to.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::Output;

/// Where one view was cut from its source image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CropInfo {
    /// Top row of the crop in the source image.
    pub y: u32,
    /// Left column of the crop in the source image.
    pub x: u32,
    /// Mirrored left-right: output column `i` shows source column `x + crop - 1 - i`.
    pub flipped: bool,
}

/// Eight `f32`s on a 32-byte boundary: the unit of [`AlignedF32`].
#[repr(C, align(32))]
#[derive(Clone, Copy, Default)]
struct Lane([f32; 8]);

/// A growable `f32` buffer whose start is 32-byte aligned (for AVX stores).
#[derive(Default)]
pub(crate) struct AlignedF32 {
    lanes: Vec<Lane>,
}

impl AlignedF32 {
    /// Makes room for at least `len` values (new ones are zero; old ones stay).
    pub(crate) fn grow(&mut self, len: usize) {
        let lanes = len.div_ceil(8);
        if self.lanes.len() < lanes {
            self.lanes.resize(lanes, Lane::default());
        }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        // SAFETY: `Lane` is `repr(C)` around `[f32; 8]`: `8 * len` initialised f32s.
        unsafe {
            std::slice::from_raw_parts(self.lanes.as_ptr() as *const f32, self.lanes.len() * 8)
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, uniquely borrowed.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.lanes.as_mut_ptr() as *mut f32,
                self.lanes.len() * 8,
            )
        }
    }
}

/// The reusable memory of one batch.
#[derive(Default)]
pub(crate) struct Buffers {
    pub f32s: AlignedF32,
    pub u8s: Vec<u8>,
    pub labels: Vec<i64>,
    pub indices: Vec<u64>,
    pub crops: Vec<CropInfo>,
    pub lighting: Vec<[f32; 3]>,
}

/// Buffers of finished batches, waiting to be filled again: a bounded
/// lock-free queue, so that neither a worker taking buffers nor a consumer
/// dropping a batch ever waits on another thread's lock.
pub(crate) struct Pool {
    free_tx: Sender<Buffers>,
    free_rx: Receiver<Buffers>,
}

impl Pool {
    /// A pool that keeps at most `keep` idle buffer sets (more are freed).
    pub(crate) fn new(keep: usize) -> Self {
        let (free_tx, free_rx) = crossbeam_channel::bounded(keep.max(1));
        Pool { free_tx, free_rx }
    }

    /// An idle buffer set, or a new empty one when none is idle.
    pub(crate) fn take(&self) -> Buffers {
        self.free_rx.try_recv().unwrap_or_default()
    }

    /// Returns a buffer set; it is freed instead when `keep` sets are idle.
    fn give_back(&self, buffers: Buffers) {
        let _ = self.free_tx.try_send(buffers);
    }

    /// Idle buffer sets now in the pool.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.free_rx.len()
    }
}

/// One batch of `len()` images (`len() * views()` image rows).
///
/// Its memory returns to the loader's pool when it is dropped, so holding
/// batches keeps that memory alive, and dropping them promptly keeps the
/// loader from allocating.
pub struct Batch {
    pub(crate) buffers: Option<Buffers>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) number: usize,
    pub(crate) len: usize,
    pub(crate) views: usize,
    pub(crate) crop: usize,
    pub(crate) output: Output,
}

impl Batch {
    fn buffers(&self) -> &Buffers {
        self.buffers
            .as_ref()
            .expect("batch buffers are present until drop")
    }

    /// Number of images (not views).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a batch without images (never produced by the loader).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Position of this batch in its epoch (0-based).
    pub fn number(&self) -> usize {
        self.number
    }

    /// Views per image: 1, or 10 for [`Mode::TenCrop`](crate::Mode::TenCrop),
    /// where the views of image `k` are image rows `k*10 .. k*10+10`.
    pub fn views(&self) -> usize {
        self.views
    }

    /// Crop side in pixels.
    pub fn crop(&self) -> usize {
        self.crop
    }

    /// The layout of the images.
    pub fn output(&self) -> Output {
        self.output
    }

    /// Image tensor shape: `[N, 3, crop, crop]` for `F32Nchw` and `U8Nchw`,
    /// `[N, crop, crop, 3]` for `U8Nhwc`, with `N = len() * views()`.
    pub fn shape(&self) -> [usize; 4] {
        let n = self.len * self.views;
        match self.output {
            Output::F32Nchw | Output::U8Nchw => [n, 3, self.crop, self.crop],
            Output::U8Nhwc => [n, self.crop, self.crop, 3],
        }
    }

    fn elements(&self) -> usize {
        self.len * self.views * 3 * self.crop * self.crop
    }

    /// The `f32` images, NCHW `[len*views, 3, crop, crop]`.
    ///
    /// # Panics
    /// If the loader's output is not [`Output::F32Nchw`].
    pub fn images(&self) -> &[f32] {
        assert_eq!(
            self.output,
            Output::F32Nchw,
            "Batch::images: this loader produces u8 images (use images_u8)"
        );
        &self.buffers().f32s.as_slice()[..self.elements()]
    }

    /// The raw `u8` crops, in the layout of [`Batch::shape`].
    ///
    /// # Panics
    /// If the loader's output is [`Output::F32Nchw`].
    pub fn images_u8(&self) -> &[u8] {
        assert_ne!(
            self.output,
            Output::F32Nchw,
            "Batch::images_u8: this loader produces f32 images (use images)"
        );
        &self.buffers().u8s[..self.elements()]
    }

    /// One label per image (not per view).
    pub fn labels(&self) -> &[i64] {
        &self.buffers().labels[..self.len]
    }

    /// The global dataset index of each image (see [`Dataset`](crate::Dataset)).
    pub fn indices(&self) -> &[u64] {
        &self.buffers().indices[..self.len]
    }

    /// Where each view (`len*views` of them) was cut, and whether it was flipped.
    pub fn crops(&self) -> &[CropInfo] {
        &self.buffers().crops[..self.len * self.views]
    }

    /// The PCA lighting offset of each view, in 0..255 pixel units, RGB. It is
    /// already added to `f32` output; `u8` consumers add it themselves.
    pub fn lighting(&self) -> &[[f32; 3]] {
        &self.buffers().lighting[..self.len * self.views]
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(b) = self.buffers.take() {
            self.pool.give_back(b);
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("number", &self.number)
            .field("len", &self.len)
            .field("views", &self.views)
            .field("shape", &self.shape())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_buffers_and_keeps_at_most_its_bound() {
        let pool = Pool::new(2);
        let mut a = pool.take();
        a.labels.reserve(1000);
        let cap = a.labels.capacity();
        pool.give_back(a);
        assert_eq!(pool.idle(), 1);
        let again = pool.take();
        assert_eq!(again.labels.capacity(), cap, "the same buffers come back");
        assert_eq!(pool.idle(), 0);
        for _ in 0..5 {
            pool.give_back(Buffers::default());
        }
        assert_eq!(pool.idle(), 2, "extra buffers are freed, not kept");
        let _ = (pool.take(), pool.take());
        assert_eq!(pool.idle(), 0);
        assert_eq!(
            pool.take().labels.capacity(),
            0,
            "an empty pool makes new buffers"
        );
    }
}
