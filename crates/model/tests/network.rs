//! Shapes, parameter counts, dropout behaviour and the tower exchange.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use model::{AlexNet, AlexNetConfig, ForwardMode, Init, Placement, Towers};

fn images(cfg: &AlexNetConfig, n: usize, seed: u64) -> Tensor {
    // Deterministic pseudo-images on the scale of mean-subtracted pixels.
    let s = cfg.input_size;
    let len = n * 3 * s * s;
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 200.0
        })
        .collect();
    Tensor::from_vec(data, (n, 3, s, s), &Device::Cpu).unwrap()
}

fn build(cfg: &AlexNetConfig, init: Init, seed: u64) -> (VarMap, AlexNet) {
    let varmap = VarMap::new();
    let net = AlexNet::new(&varmap, cfg, &Placement::cpu(), init, seed).unwrap();
    (varmap, net)
}

fn varmap_count(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// Eval mode is a function of each image alone: the same image gives the
/// same logits alone or beside another in a batch, in either position, and
/// different images give different logits.
#[test]
fn alexnet_small_logits_per_image_whatever_the_batch() {
    let cfg = AlexNetConfig::alexnet_small(10);
    let (_, net) = build(&cfg, Init::PyTorch, 1);
    let pair = images(&cfg, 2, 0);
    let logits = |x: &Tensor| -> Vec<Vec<f32>> {
        net.forward(x, ForwardMode::Eval)
            .unwrap()
            .to_vec2()
            .unwrap()
    };
    let both = logits(&pair);
    assert_eq!((both.len(), both[0].len()), (2, 10));
    let first = logits(&pair.narrow(0, 0, 1).unwrap());
    let second = logits(&pair.narrow(0, 1, 1).unwrap());
    let swapped = logits(
        &Tensor::cat(
            &[pair.narrow(0, 1, 1).unwrap(), pair.narrow(0, 0, 1).unwrap()],
            0,
        )
        .unwrap(),
    );
    let close = |a: &[f32], b: &[f32]| {
        let scale = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * scale)
    };
    assert!(close(&both[0], &first[0]) && close(&both[1], &second[0]));
    assert!(close(&swapped[0], &both[1]) && close(&swapped[1], &both[0]));
    assert!(
        !close(&both[0], &both[1]),
        "two images, two different outputs"
    );
    assert!(both.iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn alexnet_shapes_and_exact_parameter_count() {
    let cfg = AlexNetConfig::alexnet(1000);
    let (varmap, net) = build(&cfg, Init::Paper, 1);
    // Per tower (weights + biases):
    //   conv1  48*3*11*11   + 48   =     17,472
    //   conv2  128*48*5*5   + 128  =    153,728
    //   conv3  192*256*3*3  + 192  =    442,560   (reads both towers: 2*128 inputs)
    //   conv4  192*192*3*3  + 192  =    331,968
    //   conv5  128*192*3*3  + 128  =    221,312
    //   fc6    9216*2048    + 2048 = 18,876,416   (reads both: 2*128*6*6)
    //   fc7    4096*2048    + 2048 =  8,390,656   (reads both: 2*2048)
    //   tower total                = 28,434,112
    // fc8      4096*1000    + 1000 =  4,097,000
    // total = 2 * 28,434,112 + 4,097,000 = 60,965,224
    assert_eq!(net.num_parameters(), 60_965_224);
    assert_eq!(varmap_count(&varmap), 60_965_224);
    assert_eq!(varmap.all_vars().len(), 2 * 14 + 2);
    let y = net
        .forward(&images(&cfg, 2, 0), ForwardMode::Train { dropout_seed: 3 })
        .unwrap();
    assert_eq!(y.dims(), &[2, 1000]);
}

#[test]
fn single_tower_is_half_width_without_exchange() {
    let cfg = AlexNetConfig::alexnet_small(7).single_tower();
    let (varmap, net) = build(&cfg, Init::PyTorch, 1);
    let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    assert!(names
        .iter()
        .all(|n| n.starts_with("tower_a.") || n.starts_with("fc8.")));
    let w = varmap.data().lock().unwrap()["tower_a.conv3.weight"]
        .dims()
        .to_vec();
    assert_eq!(w, vec![48, 32, 3, 3]);
    let y = net.forward(&images(&cfg, 2, 0), ForwardMode::Eval).unwrap();
    assert_eq!(y.dims(), &[2, 7]);
    assert_eq!(net.exchanged_bytes(2), 0);
    assert_eq!(net.last_exchanged_bytes(), 0);
}

#[test]
fn exchange_counts_the_bytes_it_moves() {
    let cfg = AlexNetConfig::alexnet_small(10);
    let (_, net) = build(&cfg, Init::PyTorch, 1);
    net.forward(&images(&cfg, 3, 0), ForwardMode::Eval).unwrap();
    assert_eq!(net.last_exchanged_bytes(), net.exchanged_bytes(3));
    // alexnet, per image: conv3 2*128*13*13, fc6 2*128*6*6, fc7 2*2048, fc8 2048 floats.
    let full = AlexNetConfig::alexnet(1000);
    let floats = 2 * 128 * 13 * 13 + 2 * 128 * 6 * 6 + 2 * 2048 + 2048;
    let (_, big) = build(
        &AlexNetConfig {
            fc_width: 4096,
            ..full.clone()
        },
        Init::Paper,
        0,
    );
    assert_eq!(big.exchanged_bytes(128), 128 * floats * 4);
}

#[test]
fn dropout_only_in_training_and_seeded() {
    let cfg = AlexNetConfig::alexnet_small(10);
    let (_, net) = build(&cfg, Init::PyTorch, 5);
    let x = images(&cfg, 2, 9);
    let diff = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let e1 = net.forward(&x, ForwardMode::Eval).unwrap();
    let e2 = net.forward(&x, ForwardMode::Eval).unwrap();
    assert_eq!(diff(&e1, &e2), 0.0, "eval must be deterministic");
    let t1 = net
        .forward(&x, ForwardMode::Train { dropout_seed: 1 })
        .unwrap();
    let t1b = net
        .forward(&x, ForwardMode::Train { dropout_seed: 1 })
        .unwrap();
    let t2 = net
        .forward(&x, ForwardMode::Train { dropout_seed: 2 })
        .unwrap();
    assert_eq!(diff(&t1, &t1b), 0.0, "same dropout seed, same output");
    assert!(diff(&t1, &t2) > 0.0, "different seeds, different masks");
    assert!(diff(&t1, &e1) > 0.0, "training mode applies dropout");
    // With dropout 0, training equals evaluation.
    let cfg0 = AlexNetConfig {
        dropout: 0.0,
        ..cfg.clone()
    };
    let (_, net0) = build(&cfg0, Init::PyTorch, 5);
    let a = net0
        .forward(&x, ForwardMode::Train { dropout_seed: 1 })
        .unwrap();
    let b = net0.forward(&x, ForwardMode::Eval).unwrap();
    assert_eq!(diff(&a, &b), 0.0);
}

#[test]
fn initialisations_follow_their_definitions() {
    let cfg = AlexNetConfig::alexnet_small(10);
    let (varmap, _) = build(&cfg, Init::Paper, 7);
    let get = |vm: &VarMap, n: &str| {
        vm.data().lock().unwrap()[n]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    // Paper: biases 1 in conv2, conv4, conv5, fc6, fc7; 0 in conv1, conv3, fc8.
    for (layer, value) in [
        ("conv1", 0.0),
        ("conv2", 1.0),
        ("conv3", 0.0),
        ("conv4", 1.0),
        ("conv5", 1.0),
        ("fc6", 1.0),
        ("fc7", 1.0),
    ] {
        for t in ["tower_a", "tower_b"] {
            assert!(
                get(&varmap, &format!("{t}.{layer}.bias"))
                    .iter()
                    .all(|&b| b == value),
                "{t}.{layer}.bias"
            );
        }
    }
    assert!(get(&varmap, "fc8.bias").iter().all(|&b| b == 0.0));
    // Weights N(0, 0.01): sample std of fc6's 2.4M weights within 1%.
    let w = get(&varmap, "tower_a.fc6.weight");
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        mean.abs() < 1e-4 && (std - 0.01).abs() < 1e-4,
        "mean {mean} std {std}"
    );
    // Same seed, same weights; another seed, other weights.
    let (again, _) = build(&cfg, Init::Paper, 7);
    let (other, _) = build(&cfg, Init::Paper, 8);
    assert_eq!(
        get(&again, "tower_b.conv3.weight"),
        get(&varmap, "tower_b.conv3.weight")
    );
    assert_ne!(
        get(&other, "tower_b.conv3.weight"),
        get(&varmap, "tower_b.conv3.weight")
    );
    // PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); conv3 fan_in = 2*32*3*3 = 576.
    let (pt, _) = build(&cfg, Init::PyTorch, 7);
    let bound = 1.0 / 576f32.sqrt();
    for name in ["tower_a.conv3.weight", "tower_a.conv3.bias"] {
        let v = get(&pt, name);
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            max <= bound && max > 0.9 * bound,
            "{name}: max |w| {max}, bound {bound}"
        );
    }
}

#[test]
fn rejects_wrong_inputs_and_configs() {
    let cfg = AlexNetConfig::alexnet_small(10);
    let (_, net) = build(&cfg, Init::PyTorch, 1);
    let bad = Tensor::zeros((2, 3, 200, 200), DType::F32, &Device::Cpu).unwrap();
    let err = net
        .forward(&bad, ForwardMode::Eval)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[N, 3, 224, 224]"), "{err}");
    let odd = AlexNetConfig {
        fc_width: 1023,
        ..cfg.clone()
    };
    let err = AlexNet::new(&VarMap::new(), &odd, &Placement::cpu(), Init::Paper, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1023"), "{err}");
    assert!(AlexNetConfig::by_name("alexnet-small", 3).is_some());
    assert!(AlexNetConfig::by_name("vgg", 3).is_none());
    assert_eq!("pytorch".parse::<Init>().unwrap(), Init::PyTorch);
    assert!("xavier".parse::<Init>().is_err());
    assert_eq!(AlexNetConfig::alexnet(10).towers, Towers::Two);
}

#[test]
fn placement_parsing() {
    let p = Placement::parse("cpu").unwrap();
    assert!(p.tower_a.is_cpu() && p.tower_b.is_cpu());
    let p = Placement::parse("cpu,cpu").unwrap();
    assert!(p.tower_a.is_cpu() && p.tower_b.is_cpu());
    for bad in ["", "gpu", "cuda", "cuda:x", "cpu,cpu,cpu", "cuda:-1"] {
        let err = Placement::parse(bad).unwrap_err().to_string();
        assert!(err.contains("invalid placement"), "{bad}: {err}");
    }
    #[cfg(not(feature = "cuda"))]
    for spec in ["cuda:0", "cuda:0,cuda:1", "cpu,cuda:1"] {
        let err = Placement::parse(spec).unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{spec}: {err}");
    }
}

/// Data parallelism: a rank holding rows 1 and 3 of a 4-image batch
/// (`BatchRows { first: 1, stride: 2 }`) draws the same dropout masks for
/// them as one network holding the whole batch, so its logits are those
/// rows of the whole batch's; the default rows would give other masks.
#[test]
fn dropout_masks_follow_the_global_row() {
    let cfg = AlexNetConfig::alexnet_small(10);
    let varmap = VarMap::new();
    let whole = AlexNet::new(&varmap, &cfg, &Placement::cpu(), Init::PyTorch, 4).unwrap();
    let share = AlexNet::new(&varmap, &cfg, &Placement::cpu(), Init::PyTorch, 4)
        .unwrap()
        .with_batch_rows(model::BatchRows {
            first: 1,
            stride: 2,
        });
    let x = images(&cfg, 4, 9);
    let odd = Tensor::cat(&[x.narrow(0, 1, 1).unwrap(), x.narrow(0, 3, 1).unwrap()], 0).unwrap();
    let mode = ForwardMode::Train { dropout_seed: 17 };
    let all: Vec<Vec<f32>> = whole.forward(&x, mode).unwrap().to_vec2().unwrap();
    let mine: Vec<Vec<f32>> = share.forward(&odd, mode).unwrap().to_vec2().unwrap();
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(
        max_diff(&mine[0], &all[1]) < 1e-5,
        "{:?} vs {:?}",
        mine[0],
        all[1]
    );
    assert!(
        max_diff(&mine[1], &all[3]) < 1e-5,
        "{:?} vs {:?}",
        mine[1],
        all[3]
    );
    // Rows 0 and 1 of the default network hold other masks.
    let first_rows: Vec<Vec<f32>> = whole.forward(&odd, mode).unwrap().to_vec2().unwrap();
    assert!(max_diff(&first_rows[1], &all[3]) > 1e-3);
}
