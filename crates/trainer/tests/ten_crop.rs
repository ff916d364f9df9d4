//! The paper's 10-crop test end to end (shards -> loader's 10 views ->
//! network -> softmax averaged per image -> top-1, loss, per class) against
//! a hand computation on four images.
//!
//! The network is a real `AlexNet` whose weights make it a logit function
//! that can be worked out on paper: every image is black except one 4x4
//! patch per colour channel, of value `v`. Tower A's conv1 channel `c` sums
//! colour `c` over its 11x11 window (every tap 1), LRN is the identity
//! (`alpha = 0`, `k = 1`), conv2..conv5, fc6 and fc7 pass channel `c` on
//! unchanged (a single centre tap / diagonal weight of 1), and tower B is
//! all zero. For a 64x64 input, pool5 is 1x1 and is the maximum over every
//! conv1 window; a 4x4 patch always fits inside one window of the stride-4
//! grid, so the feature of channel `c` is `16 v` when the patch is inside
//! the view and 0 when it is outside (no patch here is cut by a view's
//! edge). fc8 multiplies by 1/160 (and adds -10 to class 2), so
//!
//!   logit_c(view) = v_c / 10 if the view holds patch c else 0, minus 10 for c = 2.
//!
//! The images are 72x72 and the crop 64, so the five regions are top-left
//! (rows 0..64, columns 0..64), top-right (0..64, 8..72), bottom-left
//! (8..72, 0..64), bottom-right (8..72, 8..72) and centre (4..68, 4..68);
//! each is taken once as is and once mirrored, and mirroring does not
//! change whether a patch is inside, so the 10-view average equals the
//! average over the five regions.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use loader::{Dataset, Loader, LoaderConfig, Mode, Stats};
use model::{Activation, AlexNet, AlexNetConfig, Init, LrnConfig, Placement, Towers};
use shards::{shard_file_name, DatasetDir, Encoding, ShardWriter};
use trainer::{evaluate, EvalOptions};

const SIDE: usize = 72;
const CROP: usize = 64;
const CLASSES: usize = 3;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Region {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
    Centre,
}
use Region::*;

const REGIONS: [Region; 5] = [TopLeft, TopRight, BottomLeft, BottomRight, Centre];

/// A 4x4 patch of colour `channel` and value `value` with its top-left
/// pixel at `at`, and the regions that hold it (worked out by hand from the
/// region bounds above).
struct Patch {
    channel: usize,
    value: u8,
    at: (usize, usize),
    seen_in: &'static [Region],
}

struct Image {
    label: i64,
    patches: [Patch; 2],
}

fn images() -> Vec<Image> {
    vec![
        // A: red is very sure in one region, green mildly sure in all five.
        // Averaged probabilities pick green (averaged logits would pick red:
        // 20/5 = 4 > 2).
        Image {
            label: 1,
            patches: [
                Patch {
                    channel: 0,
                    value: 200,
                    at: (0, 0),
                    seen_in: &[TopLeft],
                },
                Patch {
                    channel: 1,
                    value: 20,
                    at: (34, 34),
                    seen_in: &REGIONS,
                },
            ],
        },
        // B: red in the two top regions, faint green everywhere: the centre
        // crop sees only green, the 10 views pick red.
        Image {
            label: 0,
            patches: [
                Patch {
                    channel: 0,
                    value: 30,
                    at: (0, 34),
                    seen_in: &[TopLeft, TopRight],
                },
                Patch {
                    channel: 1,
                    value: 5,
                    at: (34, 34),
                    seen_in: &REGIONS,
                },
            ],
        },
        // C: blue only in the bottom-right region, red everywhere: red
        // either way; labelled blue, so wrong either way.
        Image {
            label: 2,
            patches: [
                Patch {
                    channel: 2,
                    value: 250,
                    at: (68, 68),
                    seen_in: &[BottomRight],
                },
                Patch {
                    channel: 0,
                    value: 60,
                    at: (34, 34),
                    seen_in: &REGIONS,
                },
            ],
        },
        // D: red in the top-left and centre regions, green in the two right
        // regions, nothing in the bottom-left one: the centre crop says red
        // (right), the 10 views say green, barely (0.516 against 0.484).
        Image {
            label: 0,
            patches: [
                Patch {
                    channel: 0,
                    value: 30,
                    at: (4, 4),
                    seen_in: &[TopLeft, Centre],
                },
                Patch {
                    channel: 1,
                    value: 50,
                    at: (34, 68),
                    seen_in: &[TopRight, BottomRight],
                },
            ],
        },
    ]
}

fn pixels(image: &Image) -> Vec<u8> {
    let mut px = vec![0u8; SIDE * SIDE * 3];
    for p in &image.patches {
        for y in p.at.0..p.at.0 + 4 {
            for x in p.at.1..p.at.1 + 4 {
                px[(y * SIDE + x) * 3 + p.channel] = p.value;
            }
        }
    }
    px
}

/// The logits of `image` in `region`, by the formula of the module documentation.
fn hand_logits(image: &Image, region: Region) -> [f64; CLASSES] {
    let mut z = [0.0, 0.0, -10.0];
    for p in &image.patches {
        if p.seen_in.contains(&region) {
            z[p.channel] += p.value as f64 / 10.0;
        }
    }
    z
}

fn softmax(z: [f64; CLASSES]) -> [f64; CLASSES] {
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let e = z.map(|v| (v - m).exp());
    let s: f64 = e.iter().sum();
    e.map(|v| v / s)
}

fn argmax(p: &[f64; CLASSES]) -> usize {
    (0..CLASSES).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
}

/// The hand network: see the module documentation.
fn network() -> AlexNet {
    let cfg = AlexNetConfig {
        conv_channels: [6; 5],
        fc_width: 6,
        num_classes: CLASSES,
        towers: Towers::Two,
        lrn: LrnConfig {
            size: 5,
            alpha: 0.0,
            beta: 0.75,
            k: 1.0,
        },
        dropout: 0.5,
        input_size: CROP,
        activation: Activation::Relu,
    };
    let varmap = VarMap::new();
    let net = AlexNet::new(&varmap, &cfg, &Placement::cpu(), Init::PyTorch, 0).unwrap();
    let data = varmap.data().lock().unwrap();
    for (name, var) in data.iter() {
        let dims = var.dims().to_vec();
        let mut w = vec![0f32; dims.iter().product()];
        let at = |idx: &[usize]| idx.iter().zip(&dims).fold(0, |acc, (&i, &d)| acc * d + i);
        if name.starts_with("tower_a.") && name.ends_with(".weight") {
            for c in 0..3 {
                if name.contains("conv1") {
                    for ky in 0..11 {
                        for kx in 0..11 {
                            w[at(&[c, c, ky, kx])] = 1.0;
                        }
                    }
                } else if name.contains("conv") {
                    let mid = dims[2] / 2;
                    w[at(&[c, c, mid, mid])] = 1.0;
                } else {
                    // fc6, fc7: [in, out]; input c is tower A's channel c.
                    w[at(&[c, c])] = 1.0;
                }
            }
        } else if name == "fc8.weight" {
            for c in 0..CLASSES {
                w[at(&[c, c])] = 1.0 / 160.0;
            }
        } else if name == "fc8.bias" {
            w[2] = -10.0;
        }
        var.set(&Tensor::from_vec(w, dims, &Device::Cpu).unwrap())
            .unwrap();
    }
    drop(data);
    net
}

fn loader(dir: &std::path::Path, mode: Mode, batch_size: usize) -> Loader {
    Loader::new(
        Dataset::open(dir).unwrap(),
        Stats::neutral(SIDE, SIDE),
        LoaderConfig {
            mode,
            batch_size,
            threads: 1,
            crop: CROP,
            ..LoaderConfig::eval()
        },
    )
    .unwrap()
}

#[test]
fn ten_crop_top1_loss_and_per_class_match_a_hand_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DatasetDir::new(tmp.path()).val();
    std::fs::create_dir_all(&dir).unwrap();
    let imgs = images();
    let mut writer = ShardWriter::create(
        &dir.join(shard_file_name(0)),
        SIDE,
        Encoding::Raw,
        imgs.len(),
    )
    .unwrap();
    for (i, img) in imgs.iter().enumerate() {
        writer
            .push(&pixels(img), img.label, &format!("img_{i}.JPEG"))
            .unwrap();
    }
    writer.finish(None).unwrap();
    let net = network();

    // By hand: probabilities averaged over the five regions (each is two of
    // the ten views), the centre crop (the centre region alone).
    let mut ten = Vec::new();
    let mut centre = Vec::new();
    for img in &imgs {
        let mut avg = [0.0; CLASSES];
        for r in REGIONS {
            let p = softmax(hand_logits(img, r));
            for c in 0..CLASSES {
                avg[c] += p[c] / 5.0;
            }
        }
        ten.push(avg);
        centre.push(softmax(hand_logits(img, Centre)));
    }
    // What the hand computation says, spelled out.
    let ten_pred: Vec<usize> = ten.iter().map(argmax).collect();
    let centre_pred: Vec<usize> = centre.iter().map(argmax).collect();
    assert_eq!(ten_pred, [1, 0, 0, 1]);
    assert_eq!(centre_pred, [1, 1, 0, 0]);
    assert!((ten[3][1] - 0.5163).abs() < 1e-3, "{:?}", ten[3]);

    // 10-crop, in batches of 3 images (30 rows) and 1.
    let got = evaluate(
        &net,
        &loader(&dir, Mode::TenCrop, 3),
        &EvalOptions::default(),
        &trainer::NoEvents,
    )
    .unwrap();
    assert_eq!(got.views, 10);
    assert_eq!(got.counter.images, 4);
    assert_eq!(got.counter.top1_correct, 2, "A and B right, C and D wrong");
    assert_eq!(got.counter.top5_correct, 4);
    let want_loss = imgs
        .iter()
        .zip(&ten)
        .map(|(img, p)| -p[img.label as usize].ln())
        .sum::<f64>()
        / 4.0;
    assert!(
        (got.counter.mean_loss() - want_loss).abs() < 1e-5,
        "10-crop loss {} want {want_loss}",
        got.counter.mean_loss()
    );
    let top1: Vec<(u64, u64)> = got
        .per_class
        .counts
        .iter()
        .map(|c| (c.images, c.top1_correct))
        .collect();
    // class 0: B right, D wrong; class 1: A right; class 2: C wrong.
    assert_eq!(top1, [(2, 1), (1, 1), (1, 0)]);

    // The centre crop of the same images: A and D right.
    let got = evaluate(
        &net,
        &loader(&dir, Mode::CenterCrop, 3),
        &EvalOptions::default(),
        &trainer::NoEvents,
    )
    .unwrap();
    assert_eq!(got.views, 1);
    assert_eq!(got.counter.top1_correct, 2);
    let top1: Vec<u64> = got
        .per_class
        .counts
        .iter()
        .map(|c| c.top1_correct)
        .collect();
    assert_eq!(top1, [1, 1, 0]);
    let want_loss = imgs
        .iter()
        .zip(&centre)
        .map(|(img, p)| -p[img.label as usize].ln())
        .sum::<f64>()
        / 4.0;
    assert!(
        (got.counter.mean_loss() - want_loss).abs() < 1e-5,
        "centre loss {} want {want_loss}",
        got.counter.mean_loss()
    );
}
