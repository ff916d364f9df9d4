//! The plan of a synthetic dataset: classes, synsets, file names, which
//! files are odd, and the seed of every picture. Everything follows from
//! the configuration, so the tar and tree layouts hold the same files.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::draw::Appearance;
use super::{OddKind, SynthConfig, SynthError};

/// One file to write.
#[derive(Debug, Clone)]
pub struct FilePlan {
    /// Member / file name, e.g. `n01234567_42.JPEG`.
    pub name: String,
    /// Class index (sorted-WNID position).
    pub class: usize,
    pub width: u32,
    pub height: u32,
    /// Seed of this file's picture.
    pub seed: u64,
    /// `None` for a normal baseline JPEG.
    pub odd: Option<OddKind>,
}

/// A non-leaf synset of `meta.mat`.
#[derive(Debug, Clone)]
pub struct NonLeaf {
    pub wnid: String,
    pub words: String,
    pub ilsvrc_id: u32,
    pub children: Vec<u32>,
    pub height: u32,
    pub num_train_images: usize,
}

/// The whole dataset.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Leaf WNIDs, sorted; the class index is the position.
    pub wnids: Vec<String>,
    /// Words per class index.
    pub words: Vec<String>,
    /// ILSVRC2012_ID per class index (a permutation of 1..=C, not sorted).
    pub ilsvrc_ids: Vec<u32>,
    /// Appearance per class index.
    pub appearances: Vec<Appearance>,
    /// Train files per class index.
    pub train: Vec<Vec<FilePlan>>,
    /// Class indices in the order their inner tars appear in the outer tar
    /// (by ILSVRC2012_ID, so not sorted by WNID).
    pub train_order: Vec<usize>,
    /// Validation files, in file-name order.
    pub val: Vec<FilePlan>,
    pub non_leaves: Vec<NonLeaf>,
}

/// The odd kinds planted (in this order) when `plant_odd_files` is set.
pub const PLANTED: [OddKind; 9] = [
    OddKind::Grayscale,
    OddKind::Cmyk,
    OddKind::Ycck,
    OddKind::Progressive,
    OddKind::PngNamedJpeg,
    OddKind::TruncatedJpeg,
    OddKind::Empty,
    OddKind::NotAnImage,
    OddKind::RandomBytes,
];

/// SplitMix64 step: derives independent seeds from one.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unique_wnid(rng: &mut ChaCha8Rng, taken: &mut std::collections::HashSet<String>) -> String {
    loop {
        let w = format!("n{:08}", rng.random_range(1_000_000u32..15_000_000));
        if taken.insert(w.clone()) {
            return w;
        }
    }
}

impl Plan {
    pub fn new(cfg: &SynthConfig) -> Result<Plan, SynthError> {
        cfg.validate()?;
        let c = cfg.classes;
        let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed ^ 0x5EED_0001));
        let mut taken = std::collections::HashSet::new();
        // The root synset of WordNet sorts before every leaf WNID: code that
        // sorts all synsets instead of the leaves gets every index wrong.
        taken.insert("n00001740".to_string());
        let mut wnids: Vec<String> = (0..c).map(|_| unique_wnid(&mut rng, &mut taken)).collect();
        wnids.sort();

        // ILSVRC2012_IDs 1..=C assigned in a shuffled order (never identity
        // when C > 1), as in the real devkit.
        let mut order: Vec<usize> = (0..c).collect();
        order.shuffle(&mut rng);
        if c > 1 && order.iter().enumerate().all(|(i, &o)| i == o) {
            order.rotate_left(1);
        }
        // order[k] = class index whose ILSVRC2012_ID is k + 1.
        let mut ilsvrc_ids = vec![0u32; c];
        for (k, &class) in order.iter().enumerate() {
            ilsvrc_ids[class] = k as u32 + 1;
        }
        // Appearance follows ILSVRC id order so that sorted-WNID order and
        // appearance order differ too.
        let appearances: Vec<Appearance> = (0..c)
            .map(|class| Appearance::of_class(ilsvrc_ids[class] as usize - 1))
            .collect();
        let words: Vec<String> = appearances.iter().map(|a| a.words()).collect();

        let side = |rng: &mut ChaCha8Rng| rng.random_range(cfg.min_side..=cfg.max_side);
        let mut train = Vec::with_capacity(c);
        for (class, wnid) in wnids.iter().enumerate() {
            let mut number: u32 = rng.random_range(1..400);
            let mut files = Vec::with_capacity(cfg.train_per_class);
            for i in 0..cfg.train_per_class {
                files.push(FilePlan {
                    name: format!("{wnid}_{number}.JPEG"),
                    class,
                    width: side(&mut rng),
                    height: side(&mut rng),
                    seed: mix(cfg.seed ^ mix(((class as u64) << 32) | i as u64)),
                    odd: None,
                });
                number += rng.random_range(1..40);
            }
            train.push(files);
        }
        let train_order = order.clone();

        // Balanced validation labels in random order.
        let mut labels: Vec<usize> = (0..cfg.val_images).map(|i| i % c).collect();
        labels.shuffle(&mut rng);
        let val: Vec<FilePlan> = labels
            .iter()
            .enumerate()
            .map(|(i, &class)| FilePlan {
                name: format!("ILSVRC2012_val_{:08}.JPEG", i + 1),
                class,
                width: side(&mut rng),
                height: side(&mut rng),
                seed: mix(cfg.seed ^ mix(0xFFFF_0000_0000_0000 | i as u64)),
                odd: None,
            })
            .collect();

        let mut plan = Plan {
            non_leaves: non_leaves(cfg, &ilsvrc_ids, &mut rng, &mut taken),
            wnids,
            words,
            ilsvrc_ids,
            appearances,
            train,
            train_order,
            val,
        };
        if cfg.plant_odd_files {
            plan.plant_odd_files(cfg)?;
        }
        Ok(plan)
    }

    /// Marks files as odd: in the train set kind k goes to class k % C,
    /// slot 1 + k / C; in the validation set the kinds are spread evenly.
    fn plant_odd_files(&mut self, cfg: &SynthConfig) -> Result<(), SynthError> {
        let c = cfg.classes;
        for (k, &kind) in PLANTED.iter().enumerate() {
            let slot = 1 + k / c;
            let file = self.train[k % c].get_mut(slot).ok_or_else(|| {
                SynthError::Config(format!(
                    "planting {} odd files needs {} train images per class with {c} classes",
                    PLANTED.len(),
                    1 + PLANTED.len().div_ceil(c)
                ))
            })?;
            file.odd = Some(kind);
        }
        let n = self.val.len();
        if n < PLANTED.len() {
            return Err(SynthError::Config(format!(
                "planting odd files needs at least {} validation images",
                PLANTED.len()
            )));
        }
        for (k, &kind) in PLANTED.iter().enumerate() {
            self.val[(2 * k + 1) * n / (2 * PLANTED.len())].odd = Some(kind);
        }
        Ok(())
    }
}

/// Some internal synsets: the WordNet root plus groups of leaves.
fn non_leaves(
    cfg: &SynthConfig,
    leaf_ids: &[u32],
    rng: &mut ChaCha8Rng,
    taken: &mut std::collections::HashSet<String>,
) -> Vec<NonLeaf> {
    let k = cfg.non_leaf_synsets;
    if k == 0 {
        return Vec::new();
    }
    let c = leaf_ids.len() as u32;
    let mut out = Vec::with_capacity(k);
    // Groups 1..k-1 each take a contiguous run of leaf ids.
    // Never more groups than leaves: every group needs a child.
    let groups = (k - 1).min(leaf_ids.len());
    for g in 0..groups {
        let lo = (g as u32 * c) / groups as u32 + 1;
        let hi = ((g as u32 + 1) * c) / groups as u32;
        let children: Vec<u32> = (lo..=hi).collect();
        out.push(NonLeaf {
            wnid: unique_wnid(rng, taken),
            words: format!("synthetic group {}", g + 1),
            ilsvrc_id: c + 2 + g as u32,
            num_train_images: children.len() * cfg.train_per_class,
            children,
            height: 1,
        });
    }
    let root_children: Vec<u32> = if groups > 0 {
        (0..groups as u32).map(|g| c + 2 + g).collect()
    } else {
        (1..=c).collect()
    };
    out.insert(
        0,
        NonLeaf {
            wnid: "n00001740".to_string(),
            words: "entity".to_string(),
            ilsvrc_id: c + 1,
            children: root_children,
            height: 2,
            num_train_images: c as usize * cfg.train_per_class,
        },
    );
    out
}
