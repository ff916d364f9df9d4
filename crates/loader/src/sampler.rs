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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn every_byte_of_every_key_word_gives_another_stream() {
        let mut firsts = std::collections::BTreeSet::new();
        assert!(firsts.insert(keyed_rng(0, 0, 0, 0).next_u64()));
        for word in 0..4 {
            for byte in 0..8 {
                let mut key = [0u64; 4];
                key[word] = 1 << (8 * byte);
                let first = keyed_rng(key[0], key[1], key[2], key[3]).next_u64();
                assert!(firsts.insert(first), "word {word}, byte {byte}");
            }
        }
    }

    #[test]
    fn ranks_are_padded_with_the_start_of_the_global_order() {
        // 5 images on 4 ranks: 2 each; positions 5, 6, 7 of the padded
        // order repeat positions 0, 1, 2.
        let ranks: Vec<Vec<u64>> = (0..4)
            .map(|r| epoch_order(5, 0, 0, false, r, 4, 8, false))
            .collect();
        assert_eq!(ranks, [vec![0, 4], vec![1, 0], vec![2, 1], vec![3, 2]]);
        // Shuffled: the same, on the epoch's permutation.
        let perm = epoch_order(5, 9, 1, true, 0, 1, 8, false);
        let mut sorted = perm.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3, 4]);
        assert_ne!(perm, [0, 1, 2, 3, 4]);
        assert_eq!(
            epoch_order(5, 9, 1, true, 3, 4, 8, false),
            [perm[3], perm[2]]
        );
    }

    #[test]
    fn drop_last_keeps_whole_batches_of_each_ranks_share() {
        let shape = |images, batches| EpochShape { images, batches };
        assert_eq!(epoch_shape(24, 2, 4, true), shape(12, 3));
        assert_eq!(epoch_shape(21, 2, 4, true), shape(8, 2));
        assert_eq!(epoch_shape(21, 2, 4, false), shape(11, 3));
        assert_eq!(epoch_shape(3, 4, 2, true), shape(0, 0));
        // 10 images, 2 ranks: 5 each, 2 whole batches of 2.
        assert_eq!(epoch_order(10, 0, 0, false, 1, 2, 2, true), [1, 3, 5, 7]);
    }

    #[test]
    fn flags_off_mean_no_flip_and_no_lighting_draws() {
        let mut flips = 0;
        for i in 0..64 {
            let off = train_draw(3, 0, i, 8, 8, false, 0.0);
            assert!(!off.flip);
            assert_eq!(off.alpha, [0.0; 3]);
            let on = train_draw(3, 0, i, 8, 8, true, 0.1);
            assert_eq!(
                (on.y, on.x),
                (off.y, off.x),
                "the crop does not depend on the flags"
            );
            assert!(on.y <= 8 && on.x <= 8);
            assert!(
                on.alpha.iter().all(|&a| a != 0.0 && a.abs() < 1.0),
                "{:?}",
                on.alpha
            );
            flips += on.flip as usize;
        }
        assert!(flips > 16 && flips < 48, "{flips} of 64 flipped");
    }
}
