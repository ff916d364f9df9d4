//! The CUDA kernels (`src/ops/cuda/kernels.cu`), compiled as C++ with
//! CUDA's built-ins emulated (`support/cuda_emu.rs`), against the CPU
//! operations they stand for: with the launches the CUDA code plans, with
//! grids smaller than the data (grid-stride loops and sample groups) and
//! with sizes that are not multiples of the block.

#[path = "support/cuda_emu.rs"]
mod cuda_emu;

use candle_core::{Device, Tensor, Var};
use cuda_emu::emu;
use model::input::{pack_meta, ViewMeta};
use model::ops::cuda_plan::{bias_grad_launch, elementwise_launch, Launch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn launch(blocks: u32, threads: u32) -> Launch {
    Launch {
        grid: (blocks, 1, 1),
        block: (threads, 1, 1),
    }
}

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

/// The element-wise launches tried on `len` elements: the planned one, one
/// block of 32 threads (every thread loops), 3 blocks of 64 and 2 of 96 (a
/// block size that is not a power of two).
fn elementwise_launches(len: usize) -> Vec<Launch> {
    vec![
        elementwise_launch(len),
        launch(1, 32),
        launch(3, 64),
        launch(2, 96),
    ]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn bias_act_matches_candle_broadcast_add_and_relu() {
    // [N 3, O 5, P 7 x 11]: 1,155 elements, not a multiple of any block.
    let (n, o, p) = (3usize, 5usize, 77usize);
    let y0 = random(n * o * p, 1);
    let b = random(o, 2);
    let yt = Tensor::from_vec(y0.clone(), (n, o, p), &Device::Cpu).unwrap();
    let bt = Tensor::from_vec(b.clone(), (1, o, 1), &Device::Cpu).unwrap();
    let plain = yt.broadcast_add(&bt).unwrap();
    for relu in [false, true] {
        let want: Vec<f32> = if relu {
            plain.relu().unwrap()
        } else {
            plain.clone()
        }
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
        for l in elementwise_launches(y0.len()) {
            let mut y = y0.clone();
            emu().bias_act(l, &mut y, &b, p, relu);
            assert_eq!(y, want, "relu {relu}, launch {l:?}");
        }
    }
}

#[test]
fn relu_mask_matches_candle() {
    let len = 1_000;
    let dy = random(len, 3);
    let mut y = random(len, 4);
    y[10] = 0.0; // exactly zero: masked, as y > 0 says
    let dyt = Tensor::new(dy.as_slice(), &Device::Cpu).unwrap();
    let yt = Tensor::new(y.as_slice(), &Device::Cpu).unwrap();
    let want: Vec<f32> = (dyt
        * yt.gt(0.0)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap())
    .unwrap()
    .to_vec1()
    .unwrap();
    for l in elementwise_launches(len) {
        assert_eq!(emu().relu_mask(l, &dy, &y), want, "launch {l:?}");
    }
}

#[test]
fn bias_grad_matches_candle_sum_over_samples_and_pixels() {
    // 5 samples, 3 channels, 13 x 13 = 169 pixels (not a multiple of the block).
    let (n, o, p) = (5usize, 3usize, 169usize);
    let dy = random(n * o * p, 5);
    let want: Vec<f32> = Tensor::from_vec(dy.clone(), (n, o, p), &Device::Cpu)
        .unwrap()
        .sum((0, 2))
        .unwrap()
        .to_vec1()
        .unwrap();
    let planned = bias_grad_launch(n, o).unwrap();
    assert_eq!(planned.grid, (3, 5, 1));
    let launches = [
        planned,
        // Fewer sample groups than samples: each block loops over samples.
        Launch {
            grid: (o as u32, 2, 1),
            block: (256, 1, 1),
        },
        // A smaller block: each thread loops over its plane's pixels.
        Launch {
            grid: (o as u32, 1, 1),
            block: (64, 1, 1),
        },
    ];
    for l in launches {
        let got = emu().bias_grad(l, &dy, n, o, p);
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(
            max_abs_diff(&got, &want) <= 1e-5 * scale * (n * p) as f32,
            "launch {l:?}: {got:?} vs {want:?}"
        );
    }
}

#[test]
fn paper_sgd_matches_the_cpu_step_of_paper_sgd() {
    let len = 1_037;
    let (lr, momentum, decay) = (0.01f64, 0.9f64, 5e-4f64);
    let w0 = random(len, 6);
    let g = random(len, 7);
    // The CPU PaperSgd: two steps with gradient g (the loss sum(w * g)).
    let varmap = candle_nn::VarMap::new();
    let w = varmap
        .get(
            len,
            "w",
            candle_nn::Init::Const(0.0),
            candle_core::DType::F32,
            &Device::Cpu,
        )
        .unwrap();
    let var: Var = varmap.data().lock().unwrap()["w"].clone();
    var.set(&Tensor::new(w0.as_slice(), &Device::Cpu).unwrap())
        .unwrap();
    let gt = Tensor::new(g.as_slice(), &Device::Cpu).unwrap();
    let mut sgd = model::PaperSgd::new(&varmap, lr, momentum, decay).unwrap();
    for _ in 0..2 {
        let grads = (w.clone() * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        sgd.step(&grads).unwrap();
    }
    let want: Vec<f32> = var.as_tensor().to_vec1().unwrap();
    for l in elementwise_launches(len) {
        let (mut v, mut w) = (vec![0.0f32; len], w0.clone());
        for _ in 0..2 {
            emu().paper_sgd(
                l,
                &mut v,
                &mut w,
                &g,
                momentum as f32,
                (decay * lr) as f32,
                lr as f32,
            );
        }
        assert!(
            max_abs_diff(&w, &want) <= 1e-6,
            "launch {l:?}: max diff {}",
            max_abs_diff(&w, &want)
        );
    }
}

/// The loader's batches of one epoch, as raw `u8` crops and as its own
/// `f32` output, for a mode and crop.
fn loader_pair(
    dir: &std::path::Path,
    mode: loader::Mode,
    crop: usize,
    scale: f32,
) -> (loader::Batch, loader::Batch, loader::Stats) {
    let spec = shards::testing::ShardSpec::small();
    let stats = spec.stats();
    let ds = || loader::Dataset::open(&loader::DatasetDir::new(dir).train()).unwrap();
    let cfg = |output| loader::LoaderConfig {
        batch_size: 5,
        mode,
        seed: 11,
        threads: 1,
        crop,
        scale,
        output,
        ..if mode == loader::Mode::Train {
            loader::LoaderConfig::train()
        } else {
            loader::LoaderConfig::eval()
        }
    };
    let f = loader::Loader::new(ds(), stats.clone(), cfg(loader::Output::F32Nchw)).unwrap();
    let u = loader::Loader::new(ds(), stats.clone(), cfg(loader::Output::U8Nchw)).unwrap();
    (f.batch(2, 1).unwrap(), u.batch(2, 1).unwrap(), stats)
}

#[test]
fn normalize_equals_the_loaders_f32_output() {
    let dir = tempfile::tempdir().unwrap();
    let spec = shards::testing::ShardSpec::small();
    shards::testing::write_split(dir.path(), loader::Split::Train, &spec).unwrap();
    let cases = [
        (loader::Mode::Train, 24, 1.0),
        (loader::Mode::Train, 19, 1.0 / 64.0),
        (loader::Mode::TenCrop, 20, 1.0),
        (loader::Mode::CenterCrop, 32, 1.0),
    ];
    let (mut flips, mut lit) = (0, 0);
    for (mode, crop, scale) in cases {
        let (f, u, stats) = loader_pair(dir.path(), mode, crop, scale);
        let views: Vec<ViewMeta> = u
            .crops()
            .iter()
            .zip(u.lighting())
            .map(|(c, l)| ViewMeta {
                y: c.y,
                x: c.x,
                flipped: c.flipped,
                light: *l,
            })
            .collect();
        flips += views.iter().filter(|v| v.flipped).count();
        lit += views.iter().filter(|v| v.light != [0.0; 3]).count();
        let x = u.images_u8();
        let meta = pack_meta(&views, crop, x.len(), (stats.height, stats.width)).unwrap();
        let want = f.images();
        assert_eq!(want.len(), x.len());
        let scale_of_values = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for l in elementwise_launches(x.len()) {
            let got = emu().normalize(l, x, &stats.mean_image, &meta, crop, stats.width, scale);
            let d = max_abs_diff(&got, want);
            assert!(
                d <= 4.0 * f32::EPSILON * scale_of_values,
                "{mode:?} crop {crop}, launch {l:?}: max diff {d}"
            );
        }
    }
    assert!(flips > 0, "no flipped view was tried");
    assert!(lit > 0, "no view with lighting was tried");
}
