//! The loader: an epoch plan, worker threads that each build whole batches,
//! and an iterator that hands the batches out in order.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::batch::{Batch, Buffers, CropInfo, Pool};
use crate::error::ConfigError;
use crate::render::{render_f32, render_u8_chw, render_u8_hwc, MeanPlanes, MeanSource, SourceRows};
use crate::sampler::{epoch_order, epoch_shape, train_draw, EpochShape};
use crate::{Dataset, LoaderConfig, LoaderError, MeanSubtraction, Mode, Output, Stats};

/// Streams batches of a [`Dataset`] through the configured augmentation.
///
/// A `Loader` is reusable: call [`Loader::epoch`] once per epoch. Its batch
/// buffers are pooled and reused across epochs.
pub struct Loader {
    shared: Arc<Shared>,
    shape: EpochShape,
}

/// What every worker reads.
struct Shared {
    dataset: Dataset,
    stats: Stats,
    cfg: LoaderConfig,
    mean_planes: Option<MeanPlanes>,
    pool: Arc<Pool>,
    /// Test hook: the batch number whose construction panics.
    #[cfg(test)]
    panic_on_batch: Option<usize>,
}

impl Loader {
    /// Checks the configuration against the dataset and statistics and
    /// prepares the mean image for fast access.
    pub fn new(dataset: Dataset, stats: Stats, cfg: LoaderConfig) -> Result<Loader, LoaderError> {
        let (h, w) = dataset.image_size();
        let bad = |e: ConfigError| Err(LoaderError::Config(e));
        if cfg.batch_size == 0 {
            return bad(ConfigError::ZeroBatchSize);
        }
        if cfg.threads == 0 {
            return bad(ConfigError::ZeroThreads);
        }
        if cfg.world_size == 0 || cfg.rank >= cfg.world_size {
            return bad(ConfigError::RankOutsideWorld {
                rank: cfg.rank,
                world_size: cfg.world_size,
            });
        }
        if cfg.crop == 0 || cfg.crop > h || cfg.crop > w {
            return bad(ConfigError::CropDoesNotFit {
                crop: cfg.crop,
                height: h,
                width: w,
                dir: dataset.dir().to_owned(),
            });
        }
        if !(cfg.lighting_std.is_finite() && cfg.lighting_std >= 0.0) {
            return bad(ConfigError::LightingStd(cfg.lighting_std));
        }
        if !cfg.scale.is_finite() {
            return bad(ConfigError::Scale(cfg.scale));
        }
        if (stats.height, stats.width) != (h, w) || stats.mean_image.len() != h * w * 3 {
            return bad(ConfigError::StatsSize {
                stats_height: stats.height,
                stats_width: stats.width,
                values: stats.mean_image.len(),
                dir: dataset.dir().to_owned(),
                height: h,
                width: w,
            });
        }
        let shape = epoch_shape(dataset.len(), cfg.world_size, cfg.batch_size, cfg.drop_last);
        if shape.batches == 0 {
            return bad(ConfigError::NoBatches {
                images: dataset.len(),
                world_size: cfg.world_size,
                batch_size: cfg.batch_size,
                drop_last: cfg.drop_last,
            });
        }
        let mean_planes = (cfg.mean == MeanSubtraction::Image).then(|| MeanPlanes::new(&stats));
        let pool = Arc::new(Pool::new(cfg.threads + cfg.prefetch + 2));
        Ok(Loader {
            shared: Arc::new(Shared {
                dataset,
                stats,
                cfg,
                mean_planes,
                pool,
                #[cfg(test)]
                panic_on_batch: None,
            }),
            shape,
        })
    }

    /// The dataset being read.
    pub fn dataset(&self) -> &Dataset {
        &self.shared.dataset
    }

    /// The statistics used for mean subtraction and lighting.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.shared.cfg
    }

    /// Batches this rank gets per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.shape.batches
    }

    /// Images this rank gets per epoch (padding included, dropped tail excluded).
    pub fn images_per_epoch(&self) -> usize {
        self.shape.images
    }

    /// This rank's image indices for `epoch`, in the order the batches hold them.
    pub fn epoch_indices(&self, epoch: u64) -> Vec<u64> {
        let cfg = &self.shared.cfg;
        epoch_order(
            self.shared.dataset.len(),
            cfg.seed,
            epoch,
            cfg.shuffle,
            cfg.rank,
            cfg.world_size,
            cfg.batch_size,
            cfg.drop_last,
        )
    }

    /// Starts `epoch`: spawns the workers, which begin filling batches at once.
    /// Dropping the returned [`Epoch`] stops and joins them.
    pub fn epoch(&self, epoch: u64) -> Result<Epoch, LoaderError> {
        Epoch::start(
            self.shared.clone(),
            epoch,
            Arc::new(self.epoch_indices(epoch)),
            self.shape.batches,
        )
    }

    /// Builds batch `number` of `epoch` on the calling thread: the same batch
    /// the epoch's iterator yields at that position.
    pub fn batch(&self, epoch: u64, number: usize) -> Result<Batch, LoaderError> {
        if number >= self.shape.batches {
            return Err(ConfigError::BatchOutOfRange {
                number,
                batches: self.shape.batches,
            }
            .into());
        }
        let order = self.epoch_indices(epoch);
        let mut scratch = Scratch::new(&self.shared);
        build_batch(
            &self.shared,
            &order,
            epoch,
            number,
            &AtomicBool::new(false),
            &mut scratch,
        )
    }

    #[cfg(test)]
    fn set_panic_on_batch(&mut self, batch: usize) {
        Arc::get_mut(&mut self.shared)
            .expect("loader not shared yet")
            .panic_on_batch = Some(batch);
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("dataset", &self.shared.dataset)
            .field("config", &self.shared.cfg)
            .field("batches_per_epoch", &self.shape.batches)
            .finish()
    }
}

/// One epoch's batches, in order: an iterator of `Result<Batch, LoaderError>`.
///
/// After an error the iterator ends (the error is the last item), so an
/// epoch is never silently short. Dropping it mid-epoch stops the workers
/// and joins them.
pub struct Epoch {
    number_of_batches: usize,
    next_deliver: usize,
    next_dispatch: usize,
    tasks: Option<Sender<usize>>,
    results: Option<Receiver<(usize, Result<Batch, LoaderError>)>>,
    pending: BTreeMap<usize, Result<Batch, LoaderError>>,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    finished: bool,
}

impl Epoch {
    fn start(
        shared: Arc<Shared>,
        epoch: u64,
        order: Arc<Vec<u64>>,
        batches: usize,
    ) -> Result<Epoch, LoaderError> {
        let threads = shared.cfg.threads.min(batches).max(1);
        let depth = (shared.cfg.threads + shared.cfg.prefetch)
            .min(batches)
            .max(1);
        let (task_tx, task_rx) = bounded::<usize>(depth);
        let (result_tx, result_rx) = bounded(depth);
        let stop = Arc::new(AtomicBool::new(false));
        let mut this = Epoch {
            number_of_batches: batches,
            next_deliver: 0,
            next_dispatch: 0,
            tasks: Some(task_tx),
            results: Some(result_rx),
            pending: BTreeMap::new(),
            workers: Vec::with_capacity(threads),
            stop: stop.clone(),
            finished: false,
        };
        for t in 0..threads {
            let (shared, order, tasks, results, stop) = (
                shared.clone(),
                order.clone(),
                task_rx.clone(),
                result_tx.clone(),
                stop.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("loader-{t}"))
                .spawn(move || worker(shared, order, epoch, tasks, results, stop))
                .map_err(LoaderError::SpawnWorker)?;
            this.workers.push(handle);
        }
        for _ in 0..depth {
            this.dispatch_one();
        }
        Ok(this)
    }

    /// Number of batches this epoch yields.
    pub fn len(&self) -> usize {
        self.number_of_batches
    }

    /// True when the epoch yields no batch.
    pub fn is_empty(&self) -> bool {
        self.number_of_batches == 0
    }

    fn dispatch_one(&mut self) {
        if self.next_dispatch < self.number_of_batches {
            if let Some(tx) = &self.tasks {
                // Never blocks: at most `depth` batches are dispatched and not yet delivered.
                if tx.send(self.next_dispatch).is_ok() {
                    self.next_dispatch += 1;
                }
            }
        }
    }

    fn shutdown(&mut self) {
        self.finished = true;
        self.stop.store(true, Ordering::Relaxed);
        self.tasks = None;
        self.results = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    fn workers_gone(&self) -> LoaderError {
        LoaderError::WorkersGone {
            delivered: self.next_deliver,
            expected: self.number_of_batches,
        }
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if self.next_deliver >= self.number_of_batches {
            self.shutdown();
            return None;
        }
        loop {
            if let Some(result) = self.pending.remove(&self.next_deliver) {
                self.next_deliver += 1;
                if result.is_err() || self.next_deliver == self.number_of_batches {
                    self.shutdown();
                } else {
                    self.dispatch_one();
                }
                return Some(result);
            }
            let received = match &self.results {
                Some(rx) => rx.recv_timeout(Duration::from_millis(200)),
                None => Err(RecvTimeoutError::Disconnected),
            };
            match received {
                Ok((number, result)) => {
                    self.pending.insert(number, result);
                }
                Err(RecvTimeoutError::Timeout) => {
                    // A worker that ended while batches are outstanding can
                    // only have died outside the panic guard: report, never hang.
                    if self.workers.iter().any(|w| w.is_finished()) {
                        let err = self.workers_gone();
                        self.shutdown();
                        return Some(Err(err));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let err = self.workers_gone();
                    self.shutdown();
                    return Some(Err(err));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.finished {
            0
        } else {
            self.number_of_batches - self.next_deliver
        };
        (0, Some(left))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("batches", &self.number_of_batches)
            .field("delivered", &self.next_deliver)
            .field("threads", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// Per-thread scratch memory.
struct Scratch {
    /// Source rows of one image.
    src: Vec<u8>,
    /// Three deinterleaved rows.
    planes: Vec<u8>,
}

impl Scratch {
    fn new(shared: &Shared) -> Self {
        Scratch {
            src: vec![0; shared.dataset.image_bytes()],
            planes: vec![0; 3 * shared.cfg.crop],
        }
    }
}

fn worker(
    shared: Arc<Shared>,
    order: Arc<Vec<u64>>,
    epoch: u64,
    tasks: Receiver<usize>,
    results: Sender<(usize, Result<Batch, LoaderError>)>,
    stop: Arc<AtomicBool>,
) {
    let mut scratch = Scratch::new(&shared);
    while let Ok(number) = tasks.recv() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let built = catch_unwind(AssertUnwindSafe(|| {
            build_batch(&shared, &order, epoch, number, &stop, &mut scratch)
        }));
        let result = built.unwrap_or_else(|payload| {
            scratch = Scratch::new(&shared);
            Err(LoaderError::WorkerPanic {
                during: format!("building batch {number}"),
                message: panic_message(payload.as_ref()),
            })
        });
        if results.send((number, result)).is_err() {
            break;
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// The views of one image and their lighting offsets.
fn views_of(
    shared: &Shared,
    epoch: u64,
    index: u64,
    views: &mut [CropInfo],
    light: &mut [[f32; 3]],
) {
    let cfg = &shared.cfg;
    let (h, w) = shared.dataset.image_size();
    let (max_y, max_x) = ((h - cfg.crop) as u32, (w - cfg.crop) as u32);
    match cfg.mode {
        Mode::Train => {
            let d = train_draw(
                cfg.seed,
                epoch,
                index,
                max_y as usize,
                max_x as usize,
                cfg.flip,
                cfg.lighting_std,
            );
            views[0] = CropInfo {
                y: d.y as u32,
                x: d.x as u32,
                flipped: d.flip,
            };
            light[0] = if cfg.lighting_std > 0.0 {
                shared.stats.lighting_offset(d.alpha)
            } else {
                [0.0; 3]
            };
        }
        Mode::CenterCrop => {
            views[0] = CropInfo {
                y: max_y / 2,
                x: max_x / 2,
                flipped: false,
            };
            light[0] = [0.0; 3];
        }
        Mode::TenCrop => {
            // torchvision's TenCrop: five crops of the image, then five crops
            // of the mirrored image (whose top-left is the original's top-right).
            let five = [
                (0, 0),
                (0, max_x),
                (max_y, 0),
                (max_y, max_x),
                (max_y / 2, max_x / 2),
            ];
            for (k, &(y, x)) in five.iter().enumerate() {
                views[k] = CropInfo {
                    y,
                    x,
                    flipped: false,
                };
                views[5 + k] = CropInfo {
                    y,
                    x: max_x - x,
                    flipped: true,
                };
            }
            light[..10].fill([0.0; 3]);
        }
    }
}

fn build_batch(
    shared: &Shared,
    order: &[u64],
    epoch: u64,
    number: usize,
    stop: &AtomicBool,
    scratch: &mut Scratch,
) -> Result<Batch, LoaderError> {
    #[cfg(test)]
    if shared.panic_on_batch == Some(number) {
        panic!("injected failure in batch {number}");
    }
    let cfg = &shared.cfg;
    let ids = &order[number * cfg.batch_size..((number + 1) * cfg.batch_size).min(order.len())];
    let views = cfg.mode.views();
    let crop = cfg.crop;
    let per_view = 3 * crop * crop;
    let rows = ids.len() * views;
    let (h, w) = shared.dataset.image_size();

    let mut b: Buffers = shared.pool.take();
    match cfg.output {
        Output::F32Nchw => b.f32s.grow(rows * per_view),
        Output::U8Nhwc | Output::U8Nchw => grow(&mut b.u8s, rows * per_view, 0),
    }
    grow(&mut b.crops, rows, CropInfo::default());
    grow(&mut b.lighting, rows, [0.0; 3]);
    b.labels.clear();
    b.indices.clear();

    let mean = match cfg.mean {
        MeanSubtraction::Image => {
            MeanSource::Image(shared.mean_planes.as_ref().expect("mean planes prepared"))
        }
        MeanSubtraction::Channel => MeanSource::Constant(shared.stats.rgb_mean.map(|v| v as f32)),
        MeanSubtraction::None => MeanSource::Constant([0.0; 3]),
    };

    for (k, &index) in ids.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return Err(LoaderError::Stopped);
        }
        b.labels.push(shared.dataset.label(index));
        b.indices.push(index);
        let (vs, ls) = (
            &mut b.crops[k * views..][..views],
            &mut b.lighting[k * views..][..views],
        );
        views_of(shared, epoch, index, vs, ls);

        // One positioned read: the crop only (raw: its rows; JPEG: what the
        // decoder needs around it), or the whole image for 10 views.
        let (rows, cols) = if views == 1 {
            let (y, x) = (vs[0].y as usize, vs[0].x as usize);
            (y..y + crop, x..x + crop)
        } else {
            (0..h, 0..w)
        };
        let region = shared
            .dataset
            .read_region(index, rows, cols, cfg.jpeg, &mut scratch.src)?;
        let src = SourceRows {
            data: &scratch.src[..region.rows * region.cols * 3],
            first_row: region.first_row,
            first_col: region.first_col,
            width: region.cols,
        };

        for v in 0..views {
            let row = k * views + v;
            let (view, light) = (vs[v], ls[v]);
            match cfg.output {
                Output::F32Nchw => {
                    let out = &mut b.f32s.as_mut_slice()[row * per_view..][..per_view];
                    render_f32(
                        &src,
                        view,
                        crop,
                        &mean,
                        light,
                        cfg.scale,
                        out,
                        &mut scratch.planes,
                    );
                }
                Output::U8Nhwc => {
                    render_u8_hwc(&src, view, crop, &mut b.u8s[row * per_view..][..per_view])
                }
                Output::U8Nchw => {
                    render_u8_chw(&src, view, crop, &mut b.u8s[row * per_view..][..per_view])
                }
            }
        }
    }
    Ok(Batch {
        buffers: Some(b),
        pool: shared.pool.clone(),
        number,
        len: ids.len(),
        views,
        crop,
        output: cfg.output,
    })
}

/// Makes `v` at least `len` long, keeping its allocation (no zeroing of
/// what is already there: every element is overwritten by the batch).
fn grow<T: Clone>(v: &mut Vec<T>, len: usize, fill: T) {
    if v.len() < len {
        v.resize(len, fill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::testing::{write_split, write_stats, ShardSpec};
    use shards::{DatasetDir, JpegDecodeOptions, Split};

    #[test]
    fn a_panicking_worker_surfaces_as_an_error_and_ends_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ShardSpec {
            images_per_shard: vec![20, 20],
            ..ShardSpec::small()
        };
        write_split(dir.path(), Split::Train, &spec).unwrap();
        write_stats(dir.path(), &spec.stats()).unwrap();
        let data = DatasetDir::new(dir.path());
        let dataset = Dataset::open(&data.train()).unwrap();
        let stats = Stats::open(&data.stats()).unwrap();
        let cfg = LoaderConfig {
            batch_size: 4,
            threads: 2,
            crop: spec.side - 4,
            ..LoaderConfig::train()
        };
        let mut loader = Loader::new(dataset, stats, cfg).unwrap();
        loader.set_panic_on_batch(3);
        let results: Vec<_> = loader.epoch(0).unwrap().collect();
        assert_eq!(
            results.len(),
            4,
            "three good batches, then the error, then the end"
        );
        assert!(results[..3].iter().all(|r| r.is_ok()));
        match &results[3] {
            Err(LoaderError::WorkerPanic { during, message }) => {
                assert_eq!(during, "building batch 3");
                assert!(message.contains("injected failure"))
            }
            other => panic!("expected a WorkerPanic for batch 3, got {other:?}"),
        }
    }

    /// A JPEG image read as the crop's region (what a training batch does)
    /// renders to the same bits as the same view cut from the whole decoded
    /// image, for every 224x224 crop of a 256x256 image, flipped and not.
    #[test]
    fn region_reads_of_jpeg_shards_render_as_whole_images_at_every_view() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ShardSpec {
            images_per_shard: vec![2],
            storage: shards::testing::ImageStorage::Jpeg(90),
            ..ShardSpec::imagenet_sized(2)
        };
        write_split(dir.path(), Split::Train, &spec).unwrap();
        let dataset = Dataset::open(&DatasetDir::new(dir.path()).train()).unwrap();
        let stats = spec.stats();
        let planes = MeanPlanes::new(&stats);
        let mean = MeanSource::Image(&planes);
        let (side, crop) = (256, 224);
        let mut whole = vec![0u8; side * side * 3];
        let mut region = vec![0u8; side * side * 3];
        let mut scratch = vec![0u8; 3 * crop];
        let mut want = crate::batch::AlignedF32::default();
        let mut got = crate::batch::AlignedF32::default();
        want.grow(3 * crop * crop);
        got.grow(3 * crop * crop);
        for index in 0..2 {
            dataset.read_image(index, &mut whole).unwrap();
            let full = SourceRows {
                data: &whole,
                first_row: 0,
                first_col: 0,
                width: side,
            };
            for y in 0..=side - crop {
                for x in 0..=side - crop {
                    let r = dataset
                        .read_region(
                            index,
                            y..y + crop,
                            x..x + crop,
                            JpegDecodeOptions::default(),
                            &mut region,
                        )
                        .unwrap();
                    let part = SourceRows {
                        data: &region[..r.rows * r.cols * 3],
                        first_row: r.first_row,
                        first_col: r.first_col,
                        width: r.cols,
                    };
                    for flipped in [false, true] {
                        let view = CropInfo {
                            y: y as u32,
                            x: x as u32,
                            flipped,
                        };
                        let light = [1.5, -2.0, 0.5];
                        let (w, g) = (want.as_mut_slice(), got.as_mut_slice());
                        render_f32(&full, view, crop, &mean, light, 1.0, w, &mut scratch);
                        render_f32(&part, view, crop, &mean, light, 1.0, g, &mut scratch);
                        assert!(
                            want.as_slice() == got.as_slice(),
                            "image {index}, crop at ({x}, {y}), flipped {flipped}"
                        );
                    }
                }
            }
        }
    }

    /// Raw shards are read as before: a region read of a crop gives the
    /// crop's rows whole, byte for byte the stored pixels.
    #[test]
    fn region_reads_of_raw_shards_are_the_stored_rows() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ShardSpec {
            images_per_shard: vec![3],
            ..ShardSpec::imagenet_sized(3)
        };
        write_split(dir.path(), Split::Train, &spec).unwrap();
        let dataset = Dataset::open(&DatasetDir::new(dir.path()).train()).unwrap();
        let (side, crop) = (256, 224);
        let mut region = vec![0u8; side * side * 3];
        for index in 0..3u64 {
            let stored = shards::testing::pattern_image(index, side);
            for (y, x) in [(0, 0), (32, 32), (7, 19), (31, 0)] {
                let r = dataset
                    .read_region(
                        index,
                        y..y + crop,
                        x..x + crop,
                        JpegDecodeOptions::default(),
                        &mut region,
                    )
                    .unwrap();
                assert_eq!(
                    (r.first_row, r.rows, r.first_col, r.cols),
                    (y, crop, 0, side)
                );
                assert_eq!(
                    &region[..crop * side * 3],
                    &stored[y * side * 3..(y + crop) * side * 3]
                );
            }
        }
    }
}
