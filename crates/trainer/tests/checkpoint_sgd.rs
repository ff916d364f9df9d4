//! The optimizer update against the paper's formula, and the checkpoint
//! round trip.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use model::PaperSgd;
use trainer::checkpoint::{self, Checkpoint, CheckpointState};
use trainer::{Architecture, LrSchedule};

#[test]
fn paper_sgd_matches_the_formula_on_a_known_tensor() {
    let varmap = VarMap::new();
    let w0 = [1.0f32, -2.0, 0.5];
    let c = [0.3f32, -0.7, 2.0];
    {
        let mut data = varmap.data().lock().unwrap();
        let w = Var::from_tensor(&Tensor::new(&w0, &Device::Cpu).unwrap()).unwrap();
        data.insert("w".into(), w);
    }
    let (lr, m, wd) = (0.1f64, 0.9f64, 0.0005f64);
    let mut sgd = PaperSgd::new(&varmap, lr, m, wd).unwrap();
    let w = varmap.data().lock().unwrap()["w"].clone();
    let ct = Tensor::new(&c, &Device::Cpu).unwrap();

    let mut w_ref: Vec<f64> = w0.iter().map(|&x| x as f64).collect();
    let mut v_ref = [0f64; 3];
    for _ in 0..3 {
        // loss = sum(c * w): gradient c.
        let loss = (w.as_tensor() * &ct).unwrap().sum_all().unwrap();
        sgd.step(&loss.backward().unwrap()).unwrap();
        for i in 0..3 {
            v_ref[i] = m * v_ref[i] - wd * lr * w_ref[i] - lr * c[i] as f64;
            w_ref[i] += v_ref[i];
        }
        let got: Vec<f32> = w.as_tensor().to_vec1().unwrap();
        for i in 0..3 {
            assert!(
                (got[i] as f64 - w_ref[i]).abs() < 1e-6,
                "w[{i}] {} vs {}",
                got[i],
                w_ref[i]
            );
        }
    }
    let v: Vec<f32> = sgd.momentum_state()["w"].to_vec1().unwrap();
    for i in 0..3 {
        assert!((v[i] as f64 - v_ref[i]).abs() < 1e-6);
    }
}

fn state() -> CheckpointState {
    let mut schedule = LrSchedule::plateau(0.01, 2);
    schedule.end_epoch(1, 50.0);
    CheckpointState {
        format_version: checkpoint::FORMAT_VERSION,
        architecture: Architecture::by_name("alexnet-small").unwrap(),
        num_classes: 7,
        init: "paper".into(),
        seed: 3,
        batch_size: 16,
        momentum: 0.9,
        weight_decay: 5e-4,
        epochs: 10,
        schedule,
        epochs_done: 1,
        step: 42,
        partial: None,
        metrics: vec![],
        data_dir: "/data/out".into(),
    }
}

#[test]
fn checkpoint_round_trip_restores_tensors_and_state() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let varmap = VarMap::new();
    let a = Tensor::arange(0f32, 12.0, &Device::Cpu)
        .unwrap()
        .reshape((3, 4))
        .unwrap();
    let b = Tensor::new(&[1.5f32, -2.5], &Device::Cpu).unwrap();
    {
        let mut d = varmap.data().lock().unwrap();
        d.insert("a".into(), Var::from_tensor(&a).unwrap());
        d.insert("b".into(), Var::from_tensor(&b).unwrap());
    }
    let momentum: HashMap<String, Tensor> = [
        ("a".to_string(), (&a * 0.5).unwrap()),
        ("b".to_string(), (&b * -1.0).unwrap()),
    ]
    .into();
    let extra = run.join("classes.tsv");
    std::fs::write(&extra, "0\tn00000001\tthing\n").unwrap();

    let s1 = state();
    let dir1 = checkpoint::save(run, &s1, &varmap, &momentum, &[&extra]).unwrap();
    let back = Checkpoint::open(run).unwrap();
    assert_eq!(back.dir, dir1);
    assert_eq!(back.state, s1);
    assert!(back.classes_path().is_file());

    let mut loaded = VarMap::new();
    {
        let mut d = loaded.data().lock().unwrap();
        d.insert(
            "a".into(),
            Var::zeros((3, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        d.insert(
            "b".into(),
            Var::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    }
    loaded.load(back.params_path()).unwrap();
    let d = loaded.data().lock().unwrap();
    assert_eq!(
        d["a"].as_tensor().to_vec2::<f32>().unwrap(),
        a.to_vec2::<f32>().unwrap()
    );
    assert_eq!(
        d["b"].as_tensor().to_vec1::<f32>().unwrap(),
        vec![1.5, -2.5]
    );
    let m = back.load_momentum().unwrap();
    assert_eq!(m["b"].to_vec1::<f32>().unwrap(), vec![-1.5, 2.5]);

    // Newer checkpoints replace the pointer; only the newest two are kept;
    // a checkpoint directory and its state.json open as well as the run.
    let mut s = s1.clone();
    for step in [43, 44, 45] {
        s.step = step;
        checkpoint::save(run, &s, &varmap, &momentum, &[]).unwrap();
    }
    let newest = Checkpoint::open(run).unwrap();
    assert_eq!(newest.state.step, 45);
    let kept = std::fs::read_dir(run.join("checkpoints")).unwrap().count();
    assert_eq!(kept, checkpoint::KEEP);
    assert_eq!(Checkpoint::open(&newest.dir).unwrap().state.step, 45);
    assert_eq!(
        Checkpoint::open(&newest.dir.join(checkpoint::STATE_FILE))
            .unwrap()
            .state
            .step,
        45
    );
    // Not a checkpoint: a clear error naming the path.
    let err = Checkpoint::open(&run.join("nope")).unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("not a checkpoint"),
        "{err}"
    );
}
