//! Which images an epoch visits, in which order, on which rank; and the
//! per-image random draws.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

const TAG_SHUFFLE: u64 = 0x5348_5546_464c_4521;
const TAG_IMAGE: u64 = 0x494d_4147_4544_5241;

/// A ChaCha8 stream keyed by four words, so distinct keys never share a stream.
pub(crate) fn keyed_rng(a: u64, b: u64, c: u64, tag: u64) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    for (i, w) in [a, b, c, tag].into_iter().enumerate() {
        seed[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    ChaCha8Rng::from_seed(seed)
}

/// Sizes of one rank's epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EpochShape {
    /// Images this rank visits per epoch (after padding or dropping).
    pub images: usize,
    /// Batches this rank gets per epoch.
    pub batches: usize,
}

/// Positions of the global order that one rank takes, before batching.
fn per_rank(n: usize, world: usize, drop_last: bool) -> usize {
    if drop_last {
        n / world
    } else {
        n.div_ceil(world)
    }
}

pub(crate) fn epoch_shape(n: usize, world: usize, batch: usize, drop_last: bool) -> EpochShape {
    let per_rank = per_rank(n, world, drop_last);
    if drop_last {
        let batches = per_rank / batch;
        EpochShape {
            images: batches * batch,
            batches,
        }
    } else {
        EpochShape {
            images: per_rank,
            batches: per_rank.div_ceil(batch),
        }
    }
}

/// This rank's image indices for `epoch`, in delivery order (all batches,
/// concatenated). The global order is one seeded permutation of all images
/// (or `0..n` without shuffle), padded by wrapping around to a multiple of
/// `world` (or cut down to one when `drop_last`); rank `r` takes positions
/// `r, r + world, r + 2*world, ...`, as PyTorch's `DistributedSampler`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn epoch_order(
    n: usize,
    seed: u64,
    epoch: u64,
    shuffle: bool,
    rank: usize,
    world: usize,
    batch: usize,
    drop_last: bool,
) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n as u64).collect();
    if shuffle {
        order.shuffle(&mut keyed_rng(seed, epoch, 0, TAG_SHUFFLE));
    }
    let total = per_rank(n, world, drop_last) * world;
    if total > n {
        let mut k = 0;
        while order.len() < total {
            order.push(order[k % n]);
            k += 1;
        }
    }
    order.truncate(total);
    let mut mine: Vec<u64> = order.into_iter().skip(rank).step_by(world).collect();
    mine.truncate(epoch_shape(n, world, batch, drop_last).images);
    mine
}

/// The random choices for one use of one image in [`Mode::Train`](crate::Mode::Train).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TrainDraw {
    pub y: usize,
    pub x: usize,
    pub flip: bool,
    /// PCA lighting draws `a_j ~ N(0, std)` (zero when disabled).
    pub alpha: [f64; 3],
}

/// Draws the crop origin, flip and lighting for image `index` in `epoch`
/// from a stream keyed by `(seed, epoch, index)`: the same on any thread.
pub(crate) fn train_draw(
    seed: u64,
    epoch: u64,
    index: u64,
    max_y: usize,
    max_x: usize,
    flip: bool,
    lighting_std: f32,
) -> TrainDraw {
    let mut rng = keyed_rng(seed, epoch, index, TAG_IMAGE);
    let y = rng.random_range(0..=max_y);
    let x = rng.random_range(0..=max_x);
    let flipped = rng.random_bool(0.5);
    let mut alpha = [0.0f64; 3];
    if lighting_std > 0.0 {
        let normal =
            Normal::new(0.0, lighting_std as f64).expect("lighting_std is finite and positive");
        for a in &mut alpha {
            *a = normal.sample(&mut rng);
        }
    }
    TrainDraw {
        y,
        x,
        flip: flip && flipped,
        alpha,
    }
}
