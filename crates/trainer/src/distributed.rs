//! Data parallelism: the ranks of a job and what they exchange.
//!
//! Every rank holds the whole network and trains on its share of each
//! global batch ([`BatchShare`]); after the backward pass the gradients are
//! summed over the ranks ([`GradientReducer`], in flat buckets, one
//! collective call per bucket) and divided by the world size, so each rank
//! applies the gradient of the mean loss over the global batch: the step
//! one process would take on the whole batch. A [`Collective`] carries the
//! sums: [`SingleProcess`] (nothing to exchange), MPI over the host (feature
//! `mpi`, `MpiCollective`), or NCCL on the GPUs; [`job_collective`] sets
//! up the job's, and refuses a launch whose tasks MPI cannot see.

use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Result, TrainerError};

mod job;
mod launch;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;

pub use job::{job_collective, GradientSums};
pub use launch::LaunchMismatch;

/// The ranks of a job and the sums they exchange. All ranks call the same
/// methods in the same order (they are collective).
pub trait Collective {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Processes in the job.
    fn world_size(&self) -> usize;
    /// This process's rank among those on its node (for device choice).
    fn local_rank(&self) -> usize;
    /// What carries the sums (`single process`, `MPI`, `NCCL`), for reports.
    fn transport(&self) -> &'static str;
    /// Whether gradients must be summed at all: with more than one rank,
    /// or alone when the path itself is being checked.
    fn sums_needed(&self) -> bool {
        self.world_size() > 1
    }
    /// Sums `values` element-wise over all ranks, in place.
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Sums a flat `f32` tensor over all ranks; the result is on the
    /// tensor's device.
    fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor>;
    /// Sends rank 0's `bytes` to every rank (e.g. an NCCL unique id).
    fn broadcast_bytes(&self, bytes: &mut [u8]) -> Result<()>;
    /// Ends the whole job at once (after an error on this rank), so that
    /// no other rank waits forever in a collective.
    fn abort(&self, code: i32) -> !;
}

/// One process alone: every sum is the value itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn transport(&self) -> &'static str {
        "single process"
    }
    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor> {
        Ok(flat.clone())
    }
    fn broadcast_bytes(&self, _bytes: &mut [u8]) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Which part of every global batch a rank trains on.
///
/// `--batch-size` is the global batch (the paper's 128) at every world
/// size; each rank takes `global / world_size` images of it, the loader's
/// positions `rank, rank + world_size, ...` (PyTorch's
/// `DistributedSampler` order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchShare {
    /// Images per global batch.
    pub global_batch: usize,
    /// This rank.
    pub rank: usize,
    /// Ranks in the job.
    pub world_size: usize,
}

impl BatchShare {
    /// Checks that `world_size` divides `global_batch`.
    pub fn new(global_batch: usize, rank: usize, world_size: usize) -> Result<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(TrainerError::RankOutOfRange { rank, world_size });
        }
        if global_batch == 0 || !global_batch.is_multiple_of(world_size) {
            return Err(TrainerError::BatchNotDivisible {
                batch_size: global_batch,
                world_size,
            });
        }
        Ok(Self {
            global_batch,
            rank,
            world_size,
        })
    }

    /// Images per batch on this rank.
    pub fn local_batch(&self) -> usize {
        self.global_batch / self.world_size
    }

    /// The rows of the global batch this rank's batches hold, for dropout.
    pub fn rows(&self) -> model::BatchRows {
        model::BatchRows {
            first: self.rank,
            stride: self.world_size,
        }
    }

    /// Images of an unpadded `n`-image evaluation epoch that belong to this
    /// rank when ranks take positions `rank, rank + world_size, ...`: the
    /// loader pads the last positions by wrapping around, and those padded
    /// images must not be counted twice.
    pub fn eval_images(&self, n: usize) -> usize {
        n.saturating_sub(self.rank).div_ceil(self.world_size)
    }
}

/// Default bucket size of the gradient all-reduce, bytes (PyTorch DDP's 25 MiB).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Sums gradients over the ranks in flat buckets and divides by the world
/// size. Buckets hold whole parameters of one device object, in name order,
/// so every rank builds the same buckets.
pub struct GradientReducer {
    /// The variables in name order, grouped into buckets.
    buckets: Vec<Vec<(String, Var)>>,
    /// Time spent in the last [`GradientReducer::reduce`].
    last: Duration,
}

/// The buckets of `items` (name, bytes, device), as indices into `items`:
/// grouped by device identity (`same`), groups in the order their first
/// member comes by name, each group's items in name order and cut into
/// buckets of at most `bucket_bytes` (a larger item gets a bucket of its
/// own). Identity, not location: two device objects on one GPU (the
/// towers of `cuda:0,cuda:0`, each with its own stream) get buckets of
/// their own, so that every summed gradient comes back on its own
/// variable's device object.
pub fn plan_buckets<D>(
    items: &[(String, usize, D)],
    same: impl Fn(&D, &D) -> bool,
    bucket_bytes: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[a].0.cmp(&items[b].0));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match groups
            .iter_mut()
            .find(|g| same(&items[g[0]].2, &items[i].2))
        {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    let mut buckets = Vec::new();
    for group in groups {
        let mut bucket: Vec<usize> = Vec::new();
        let mut bytes = 0;
        for i in group {
            let size = items[i].1;
            if !bucket.is_empty() && bytes + size > bucket_bytes {
                buckets.push(std::mem::take(&mut bucket));
                bytes = 0;
            }
            bytes += size;
            bucket.push(i);
        }
        if !bucket.is_empty() {
            buckets.push(bucket);
        }
    }
    buckets
}

impl GradientReducer {
    /// Buckets of at most `bucket_bytes` (a larger parameter gets a bucket
    /// of its own) over `vars` (name, variable), one set per device object
    /// ([`plan_buckets`]).
    pub fn new(vars: &[(String, Var)], bucket_bytes: usize) -> Self {
        let items: Vec<(String, usize, Device)> = vars
            .iter()
            .map(|(name, var)| {
                let bytes = var.elem_count() * var.dtype().size_in_bytes();
                (name.clone(), bytes, var.device().clone())
            })
            .collect();
        let buckets = plan_buckets(&items, |a, b| a.same_device(b), bucket_bytes)
            .into_iter()
            .map(|b| b.into_iter().map(|i| vars[i].clone()).collect())
            .collect();
        Self {
            buckets,
            last: Duration::ZERO,
        }
    }

    /// Number of buckets (collective calls per step).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Bytes summed per step.
    pub fn bytes_per_step(&self) -> usize {
        self.buckets
            .iter()
            .flatten()
            .map(|(_, v)| v.elem_count() * v.dtype().size_in_bytes())
            .sum()
    }

    /// Wall time of the last [`GradientReducer::reduce`].
    pub fn last_duration(&self) -> Duration {
        self.last
    }

    /// Replaces every gradient in `grads` by its mean over the ranks. A
    /// parameter without a gradient contributes zeros (so that all ranks
    /// exchange the same buckets). Nothing to do when the collective needs
    /// no sums (one rank alone).
    pub fn reduce(&mut self, grads: &mut GradStore, collective: &dyn Collective) -> Result<()> {
        if !collective.sums_needed() {
            self.last = Duration::ZERO;
            return Ok(());
        }
        let start = Instant::now();
        let scale = 1.0 / collective.world_size() as f64;
        for bucket in &self.buckets {
            let mut flat = Vec::with_capacity(bucket.len());
            for (_, var) in bucket {
                let g = match grads.get(var.as_tensor()) {
                    Some(g) => g.to_dtype(DType::F32)?.flatten_all()?,
                    None => Tensor::zeros(var.elem_count(), DType::F32, var.device())?,
                };
                flat.push(g);
            }
            let summed = collective.all_reduce_sum(&Tensor::cat(&flat, 0)?)?;
            let mean = (summed * scale)?;
            let mut offset = 0;
            for (_, var) in bucket {
                let n = var.elem_count();
                let g = mean
                    .narrow(0, offset, n)?
                    .reshape(var.shape())?
                    .to_dtype(var.dtype())?;
                grads.insert(var.as_tensor(), g);
                offset += n;
            }
        }
        self.last = start.elapsed();
        Ok(())
    }
}

/// Copies a flat `f32` tensor to the host, for collectives that sum host
/// memory (MPI).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub fn host_values(flat: &Tensor) -> Result<Vec<f32>> {
    Ok(flat.to_device(&Device::Cpu)?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_share_divides_the_global_batch() {
        let s = BatchShare::new(128, 3, 4).unwrap();
        assert_eq!(s.local_batch(), 32);
        assert_eq!(
            s.rows(),
            model::BatchRows {
                first: 3,
                stride: 4
            }
        );
        assert!(matches!(
            BatchShare::new(100, 0, 3),
            Err(TrainerError::BatchNotDivisible {
                batch_size: 100,
                world_size: 3
            })
        ));
        assert!(BatchShare::new(8, 2, 2).is_err());
    }

    #[test]
    fn eval_images_count_each_image_once() {
        // 10 images over 4 ranks: positions 0..10, rank r takes r, r+4, r+8.
        let counts: Vec<usize> = (0..4)
            .map(|r| BatchShare::new(4, r, 4).unwrap().eval_images(10))
            .collect();
        assert_eq!(counts, vec![3, 3, 2, 2]);
        assert_eq!(BatchShare::new(4, 0, 1).unwrap().eval_images(10), 10);
        assert_eq!(BatchShare::new(4, 3, 4).unwrap().eval_images(2), 0);
    }

    /// The paper's network on ImageNet's 1,000 classes: what every step
    /// of data-parallel training sums over the ranks.
    #[test]
    fn alexnet_sums_244_megabytes_per_step() {
        let varmap = candle_nn::VarMap::new();
        let cfg = model::AlexNetConfig::alexnet(1000);
        model::AlexNet::new(
            &varmap,
            &cfg,
            &model::Placement::cpu(),
            model::Init::Paper,
            0,
        )
        .unwrap();
        let vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let r = GradientReducer::new(&vars, DEFAULT_BUCKET_BYTES);
        // 60,965,224 parameters (the paper's "60 million") in f32.
        assert_eq!(r.bytes_per_step(), 60_965_224 * 4);
        // fc6 (37.7M) and fc7 (16.8M) hold 89% of them; each takes a bucket.
        assert_eq!(r.bucket_count(), 8);
    }

    /// A stand-in collective of two identical ranks: sums double.
    struct Twice;
    impl Collective for Twice {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            2
        }
        fn local_rank(&self) -> usize {
            0
        }
        fn transport(&self) -> &'static str {
            "test"
        }
        fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
            values.iter_mut().for_each(|v| *v *= 2.0);
            Ok(())
        }
        fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor> {
            Ok((flat * 2.0)?)
        }
        fn broadcast_bytes(&self, _bytes: &mut [u8]) -> Result<()> {
            Ok(())
        }
        fn abort(&self, code: i32) -> ! {
            panic!("abort {code}")
        }
    }

    /// One rank alone whose sums path is being checked (NCCL at world
    /// size 1): its "sum" triples, so a skipped reduction shows.
    struct AloneButChecked;
    impl Collective for AloneButChecked {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            1
        }
        fn local_rank(&self) -> usize {
            0
        }
        fn transport(&self) -> &'static str {
            "test"
        }
        fn sums_needed(&self) -> bool {
            true
        }
        fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<()> {
            Ok(())
        }
        fn all_reduce_sum(&self, flat: &Tensor) -> Result<Tensor> {
            Ok((flat * 3.0)?)
        }
        fn broadcast_bytes(&self, _bytes: &mut [u8]) -> Result<()> {
            Ok(())
        }
        fn abort(&self, code: i32) -> ! {
            panic!("abort {code}")
        }
    }

    #[test]
    fn reducer_runs_when_the_collective_asks_even_alone() {
        let v = Var::zeros(4, DType::F32, &Device::Cpu).unwrap();
        let vars = vec![("w".to_string(), v.clone())];
        let mut r = GradientReducer::new(&vars, DEFAULT_BUCKET_BYTES);
        let loss = (v.as_tensor() * 2.0).unwrap().sum_all().unwrap();
        let mut grads = loss.backward().unwrap();
        r.reduce(&mut grads, &SingleProcess).unwrap();
        let g: Vec<f32> = grads.get(v.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(g, vec![2.0; 4], "one process alone: untouched");
        r.reduce(&mut grads, &AloneButChecked).unwrap();
        let g: Vec<f32> = grads.get(v.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(
            g,
            vec![6.0; 4],
            "the checked path went through the collective"
        );
    }

    /// Two device objects on one location (the towers of `cuda:0,cuda:0`,
    /// each with its own stream): a stand-in device with an identity and
    /// a location, since every CPU device is the same one.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct FakeDevice {
        id: u32,
        location: u32,
    }

    #[test]
    fn buckets_follow_device_identity_not_location() {
        let a = FakeDevice { id: 1, location: 0 };
        let b = FakeDevice { id: 2, location: 0 };
        let items = vec![
            ("tower_b.w".to_string(), 8, b),
            ("tower_a.w".to_string(), 8, a),
            ("tower_b.b".to_string(), 4, b),
            ("tower_a.b".to_string(), 4, a),
        ];
        let by_identity = plan_buckets(&items, |x, y| x.id == y.id, 1 << 20);
        // One bucket per device object, tower A's first (by name), each in name order.
        assert_eq!(by_identity, vec![vec![3, 1], vec![2, 0]]);
        for bucket in &by_identity {
            let first = items[bucket[0]].2;
            assert!(bucket.iter().all(|&i| items[i].2 == first));
        }
        // What grouping by location did: both towers' parameters in one
        // bucket, so tower B's gradients came back on tower A's device.
        let by_location = plan_buckets(&items, |x, y| x.location == y.location, 1 << 20);
        assert_eq!(by_location, vec![vec![3, 1, 2, 0]]);
        // The same plan whatever order the variables come in.
        let mut reversed = items.clone();
        reversed.reverse();
        let names = |items: &[(String, usize, FakeDevice)], plan: Vec<Vec<usize>>| {
            plan.into_iter()
                .map(|b| {
                    b.into_iter()
                        .map(|i| items[i].0.clone())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&items, by_identity),
            names(
                &reversed,
                plan_buckets(&reversed, |x, y| x.id == y.id, 1 << 20)
            )
        );
        // Size cuts still apply within a device: 8 + 4 > 10.
        assert_eq!(
            plan_buckets(&items, |x, y| x.id == y.id, 10),
            vec![vec![3], vec![1], vec![2], vec![0]]
        );
    }

    #[test]
    fn reducer_buckets_and_averages() {
        let dev = Device::Cpu;
        let vars: Vec<(String, Var)> = [("b", 6usize), ("a", 4), ("c", 3)]
            .iter()
            .map(|(n, len)| (n.to_string(), Var::zeros(*len, DType::F32, &dev).unwrap()))
            .collect();
        // 8 floats per bucket: a (4) | b (6) | c (3).
        let mut r = GradientReducer::new(&vars, 8 * 4);
        assert_eq!(r.bucket_count(), 3);
        assert_eq!(r.bytes_per_step(), 13 * 4);
        let mut r_one = GradientReducer::new(&vars, 1 << 20);
        assert_eq!(r_one.bucket_count(), 1);

        let loss = vars
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| n != "c")
            .map(|(i, (_, v))| {
                (v.as_tensor() * (i as f64 + 1.0))
                    .unwrap()
                    .sum_all()
                    .unwrap()
            })
            .reduce(|a, b| (a + b).unwrap())
            .unwrap();
        for reducer in [&mut r, &mut r_one] {
            let mut grads = loss.backward().unwrap();
            reducer.reduce(&mut grads, &Twice).unwrap();
            // Twice the gradient, halved: unchanged; c had none and gets zeros.
            let g = |i: usize| -> Vec<f32> {
                grads.get(vars[i].1.as_tensor()).unwrap().to_vec1().unwrap()
            };
            assert_eq!(g(0), vec![1.0; 6]);
            assert_eq!(g(1), vec![2.0; 4]);
            assert_eq!(g(2), vec![0.0; 3]);
        }
    }
}
