//! The activation option (ReLU, the paper's, or tanh) and the fc7 features
//! the nearest-neighbour figure reads.

use candle_core::{Device, Tensor, D};
use candle_nn::VarMap;
use model::{Activation, AlexNet, AlexNetConfig, ForwardMode, Init, Placement};

fn images(cfg: &AlexNetConfig, n: usize) -> Tensor {
    let s = cfg.input_size;
    let data: Vec<f32> = (0..n * 3 * s * s)
        .map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * 200.0)
        .collect();
    Tensor::from_vec(data, (n, 3, s, s), &Device::Cpu).unwrap()
}

fn build(cfg: &AlexNetConfig) -> (VarMap, AlexNet) {
    let varmap = VarMap::new();
    let net = AlexNet::new(&varmap, cfg, &Placement::cpu(), Init::PyTorch, 3).unwrap();
    (varmap, net)
}

/// `fc7_features` is fc8's input: the logits are `features · fc8.weight + fc8.bias`.
fn check_features_feed_fc8(cfg: &AlexNetConfig) -> Vec<f32> {
    let (varmap, net) = build(cfg);
    let x = images(cfg, 3);
    let feats = net.fc7_features(&x).unwrap();
    let width = cfg.tower_fc_width() * cfg.num_towers();
    assert_eq!(feats.dims(), &[3, width]);
    let data = varmap.data().lock().unwrap();
    let w = data["fc8.weight"].as_tensor().clone();
    let b = data["fc8.bias"].as_tensor().clone();
    drop(data);
    let manual = feats.matmul(&w).unwrap().broadcast_add(&b).unwrap();
    let logits = net.forward(&x, ForwardMode::Eval).unwrap();
    let diff = (manual - &logits)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = logits
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff <= 1e-5 * scale.max(1.0), "{diff} vs {scale}");
    feats.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn fc7_features_are_the_input_of_fc8_for_both_activations() {
    let relu = AlexNetConfig::reference_tiny();
    assert_eq!(relu.activation, Activation::Relu, "ReLU is the default");
    let f = check_features_feed_fc8(&relu);
    assert!(f.iter().all(|&v| v >= 0.0) && f.iter().any(|&v| v > 0.0));

    let tanh = AlexNetConfig {
        activation: Activation::Tanh,
        ..AlexNetConfig::reference_tiny()
    };
    let g = check_features_feed_fc8(&tanh);
    assert!(g.iter().all(|&v| v.abs() <= 1.0) && g.iter().any(|&v| v < 0.0));

    let single = AlexNetConfig::reference_tiny().single_tower();
    check_features_feed_fc8(&single);
}

#[test]
fn tanh_network_trains_every_layer() {
    let cfg = AlexNetConfig {
        activation: Activation::Tanh,
        ..AlexNetConfig::reference_tiny()
    };
    let (varmap, net) = build(&cfg);
    let logits = net
        .forward(&images(&cfg, 2), ForwardMode::Train { dropout_seed: 1 })
        .unwrap();
    let labels = Tensor::new(&[1i64, 3], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    for name in [
        "tower_a.conv1.weight",
        "tower_b.conv3.weight",
        "tower_a.fc7.weight",
    ] {
        let g = grads.get(data[name].as_tensor()).expect(name);
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm.is_finite() && norm > 0.0, "{name}: {norm}");
    }
    assert_eq!(logits.argmax(D::Minus1).unwrap().dims(), &[2]);
    assert_eq!("tanh".parse::<Activation>().unwrap(), Activation::Tanh);
    assert!("sigmoid".parse::<Activation>().is_err());
}
