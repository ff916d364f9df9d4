//! The training loop's control: events, checkpoints inside an epoch and a
//! job killed right after one, `resume` on a run with no checkpoint yet,
//! resume settings that repeat or change the run's, the plateau schedule
//! end to end, and a data-parallel job of two ranks against one process.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use candle_core::Tensor;
use trainer::{
    Checkpoint, CheckpointEvery, CheckpointReason, Collective, LrDecision, NoEvents, RunOptions,
    RunSettings, SingleProcess, TrainConfig, TrainEvent, TrainSink, Trainer, TrainerError,
};

/// Records what a run reports.
#[derive(Default)]
struct Recorder {
    fresh: Mutex<bool>,
    checkpoints: Mutex<Vec<(CheckpointReason, u64)>>,
    decisions: Mutex<Vec<LrDecision>>,
    steps: Mutex<u64>,
    /// Panic (as a killed process would vanish) after this periodic checkpoint.
    die_after_periodic: Option<u64>,
}

impl TrainSink for Recorder {
    fn event(&self, event: &TrainEvent<'_>) {
        match event {
            TrainEvent::FreshStart { .. } => *self.fresh.lock().unwrap() = true,
            TrainEvent::Step(r) => *self.steps.lock().unwrap() = r.step,
            TrainEvent::EpochFinished { decision, .. } => {
                self.decisions.lock().unwrap().push(*decision)
            }
            TrainEvent::Checkpointed { dir, why } => {
                let step = Checkpoint::open(dir).unwrap().state.step;
                self.checkpoints.lock().unwrap().push((*why, step));
                if *why == CheckpointReason::Periodic && self.die_after_periodic == Some(step) {
                    panic!("killed after the checkpoint of step {step}");
                }
            }
            _ => {}
        }
    }
}

fn params(run: &Path) -> Vec<(String, Vec<f32>)> {
    let ck = Checkpoint::open(run).unwrap();
    let mut p: Vec<(String, Vec<f32>)> =
        candle_core::safetensors::load(ck.params_path(), &candle_core::Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
    p.sort_by(|a, b| a.0.cmp(&b.0));
    p
}

fn max_abs_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f32;
    for ((na, x), (nb, y)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

/// A run killed right after a checkpoint inside its second epoch (the sink
/// panics there, so nothing after it is saved) resumes from that step and
/// ends bit-identical to an uninterrupted run; checkpoints came every 3 steps.
#[test]
fn checkpoints_every_n_steps_and_a_kill_after_one_loses_nothing_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 4); // 48 train images: 6 batches of 8
    let never = AtomicBool::new(false);

    let full_dir = tmp.path().join("full");
    let mut cfg = common::tiny_config(&data, &full_dir);
    cfg.epochs = 2;
    cfg.checkpoint_every = CheckpointEvery::Steps(4);
    let rec = Recorder::default();
    Trainer::new(cfg.clone(), &SingleProcess)
        .unwrap()
        .run(&never, &rec)
        .unwrap();
    let saved = rec.checkpoints.lock().unwrap().clone();
    use CheckpointReason::*;
    assert_eq!(
        saved,
        vec![(Periodic, 4), (EpochEnd, 6), (Periodic, 10), (EpochEnd, 12)]
    );

    let killed_dir = tmp.path().join("killed");
    let mut cfg = cfg.clone();
    cfg.run_dir = killed_dir.clone();
    let dying = Recorder {
        die_after_periodic: Some(10),
        ..Recorder::default()
    };
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Trainer::new(cfg.clone(), &SingleProcess)
            .unwrap()
            .run(&never, &dying)
    }));
    assert!(died.is_err(), "the sink should have ended the run");
    let ck = Checkpoint::open(&killed_dir).unwrap();
    assert_eq!(ck.state.step, 10);
    assert_eq!(ck.state.partial.as_ref().unwrap().batches_done, 4);

    cfg.resume = true;
    let rec = Recorder::default();
    let out = Trainer::new(cfg, &SingleProcess)
        .unwrap()
        .run(&never, &rec)
        .unwrap();
    assert!(!out.interrupted);
    assert_eq!(*rec.steps.lock().unwrap(), 12);
    assert_eq!(max_abs_diff(&params(&full_dir), &params(&killed_dir)), 0.0);
}

/// `resume` on a run directory without a checkpoint starts from the
/// beginning, says so, and trains exactly as a new run.
#[test]
fn resume_without_a_checkpoint_starts_from_the_beginning() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 4, 2);
    let never = AtomicBool::new(false);
    let new_dir = tmp.path().join("new");
    let mut cfg = common::tiny_config(&data, &new_dir);
    cfg.epochs = 1;
    trainer::train(&cfg, &never).unwrap();

    let requeued = tmp.path().join("requeued");
    cfg.run_dir = requeued.clone();
    cfg.resume = true;
    let rec = Recorder::default();
    Trainer::new(cfg, &SingleProcess)
        .unwrap()
        .run(&never, &rec)
        .unwrap();
    assert!(*rec.fresh.lock().unwrap());
    assert_eq!(max_abs_diff(&params(&new_dir), &params(&requeued)), 0.0);
}

/// A restart script repeats the first start's flags: equal values are
/// accepted, a changed one is refused naming it with the run's value.
#[test]
fn resume_accepts_repeated_settings_and_names_changed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 4, 2);
    let run = tmp.path().join("run");
    let first = RunSettings {
        model: Some("alexnet-small".into()),
        batch_size: Some(6),
        lr: Some(0.02),
        patience: Some(2),
        seed: Some(9),
        ..RunSettings::default()
    };
    let resume = |settings: &RunSettings| RunOptions {
        data: Some(data.clone()),
        run_dir: Some(run.clone()),
        resume: true,
        settings: settings.clone(),
        ..RunOptions::default()
    };
    // Before any checkpoint, a resume is a first start with these settings,
    // and the dataset must be named.
    let no_data = RunOptions {
        data: None,
        ..resume(&first)
    };
    match TrainConfig::for_run(&no_data) {
        Err(e @ TrainerError::NoDataDir(_)) => assert!(e.to_string().contains("--data"), "{e}"),
        other => panic!("expected a missing --data, got {other:?}"),
    }
    let mut cfg = TrainConfig::for_run(&resume(&first)).unwrap();
    assert_eq!(cfg.batch_size, 6);
    assert_eq!(cfg.seed, 9);
    assert_eq!(cfg.schedule, trainer::LrSchedule::plateau(0.02, 2));
    // Make a checkpoint cheaply: the tiny architecture under the same settings.
    cfg.architecture = common::tiny_architecture();
    cfg.epochs = 1;
    cfg.threads = 1;
    trainer::train(&cfg, &AtomicBool::new(false)).unwrap();

    let same = RunSettings {
        model: Some("tiny".into()),
        ..first.clone()
    };
    let again = TrainConfig::for_run(&resume(&same)).unwrap();
    assert!(again.resume);
    assert_eq!(again.batch_size, 6);
    // Nothing given: the run's own values.
    let plain = TrainConfig::for_run(&resume(&RunSettings::default())).unwrap();
    assert_eq!(plain.schedule.lr, 0.02);
    assert_eq!(plain.seed, 9);
    // No --data: the dataset the run trained on.
    let from_run = TrainConfig::for_run(&RunOptions {
        data: None,
        ..resume(&RunSettings::default())
    })
    .unwrap();
    assert_eq!(from_run.data_dir, std::fs::canonicalize(&data).unwrap());

    let changed = RunSettings {
        lr: Some(0.05),
        batch_size: Some(8),
        ..same
    };
    match TrainConfig::for_run(&resume(&changed)) {
        Err(TrainerError::ResumeConflict { conflicts, .. }) => {
            assert_eq!(conflicts.len(), 2, "{conflicts:?}");
            assert!(conflicts[0].contains("--batch-size 8 (the run uses 6)"));
            assert!(conflicts[1].contains("--lr 0.05 (the run uses 0.02)"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The paper's plateau rule, end to end: with a learning rate too small to
/// change any prediction, the validation error cannot improve, so after
/// `patience` (2) epochs without a new best the rate is divided by 10, and
/// the metrics of the next epoch show it.
#[test]
fn the_plateau_rule_lowers_the_rate_in_the_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 4, 2);
    let mut cfg = common::tiny_config(&data, &tmp.path().join("run"));
    cfg.epochs = 4;
    cfg.schedule = trainer::LrSchedule::plateau(1e-9, 2);
    let rec = Recorder::default();
    let out = Trainer::new(cfg, &SingleProcess)
        .unwrap()
        .run(&AtomicBool::new(false), &rec)
        .unwrap();
    let errors: Vec<f64> = out.history.iter().map(|m| m.val_top1_error).collect();
    assert!(
        errors.windows(2).all(|w| w[0] == w[1]),
        "validation error changed: {errors:?}"
    );
    let lrs: Vec<f64> = out.history.iter().map(|m| m.lr).collect();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12 * b;
    // Epoch 1 sets the best, epochs 2 and 3 do not beat it: reduce, so
    // epoch 4 trains at a tenth of the rate.
    assert!(lrs[..3].iter().all(|&lr| close(lr, 1e-9)), "{lrs:?}");
    assert!(close(lrs[3], 1e-10), "{lrs:?}");
    let d = rec.decisions.lock().unwrap().clone();
    assert_eq!(d[..2], [LrDecision::Keep, LrDecision::Keep]);
    assert!(matches!(d[2], LrDecision::Reduced { .. }), "{d:?}");
    assert_eq!(d[3], LrDecision::Keep);
}

/// Two ranks, each a thread with its own network, summing through an
/// in-process collective: parameters and metrics equal one process's with
/// the same global batch and seed (within float rounding of the sums).
#[test]
fn two_ranks_train_as_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 8, 3);
    let never = AtomicBool::new(false);
    let one_dir = tmp.path().join("one");
    let mut cfg = common::tiny_config(&data, &one_dir);
    cfg.epochs = 2;
    cfg.threads = 1;
    let one = trainer::train(&cfg, &never).unwrap();

    let two_dir = tmp.path().join("two");
    cfg.run_dir = two_dir.clone();
    let bus = ThreadBus::new(2);
    let outs: Vec<trainer::TrainOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let cfg = cfg.clone();
                let bus = &bus;
                let never = &never;
                scope.spawn(move || {
                    let member = bus.member(rank);
                    Trainer::new(cfg, &member)
                        .unwrap()
                        .run(never, &NoEvents)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let diff = max_abs_diff(&params(&one_dir), &params(&two_dir));
    assert!(diff < 1e-4, "parameters differ by {diff}");
    for out in &outs {
        assert_eq!(out.history.len(), one.history.len());
        for (a, b) in out.history.iter().zip(&one.history) {
            assert_eq!(a.train_images, b.train_images);
            assert_eq!(a.step, b.step);
            assert_eq!(a.val_top1_error, b.val_top1_error);
            assert_eq!(a.val_top5_error, b.val_top5_error);
            assert!((a.train_loss - b.train_loss).abs() < 1e-4);
            assert!((a.val_loss - b.val_loss).abs() < 1e-4);
        }
    }
}

/// A collective between threads of one process: each call waits until
/// every member has contributed, then all read the sum.
struct ThreadBus {
    size: usize,
    barrier: std::sync::Barrier,
    sum: Mutex<Vec<f64>>,
}

impl ThreadBus {
    fn new(size: usize) -> Self {
        Self {
            size,
            barrier: std::sync::Barrier::new(size),
            sum: Mutex::new(Vec::new()),
        }
    }
    fn member(&self, rank: usize) -> BusMember<'_> {
        BusMember { bus: self, rank }
    }
    fn reduce(&self, values: &mut [f64]) {
        {
            let mut sum = self.sum.lock().unwrap();
            if sum.len() != values.len() {
                *sum = vec![0.0; values.len()];
            }
            for (s, v) in sum.iter_mut().zip(values.iter()) {
                *s += *v;
            }
        }
        self.barrier.wait();
        values.copy_from_slice(&self.sum.lock().unwrap());
        if self.barrier.wait().is_leader() {
            self.sum.lock().unwrap().clear();
        }
        self.barrier.wait();
    }
}

struct BusMember<'a> {
    bus: &'a ThreadBus,
    rank: usize,
}

impl Collective for BusMember<'_> {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.bus.size
    }
    fn local_rank(&self) -> usize {
        self.rank
    }
    fn transport(&self) -> &'static str {
        "threads"
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> trainer::Result<()> {
        self.bus.reduce(values);
        Ok(())
    }
    fn all_reduce_sum(&self, flat: &Tensor) -> trainer::Result<Tensor> {
        let mut v: Vec<f64> = flat.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        self.bus.reduce(&mut v);
        let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
        Ok(Tensor::from_vec(v, flat.elem_count(), flat.device())?)
    }
    fn broadcast_bytes(&self, _bytes: &mut [u8]) -> trainer::Result<()> {
        unimplemented!("not used by the trainer")
    }
    fn abort(&self, code: i32) -> ! {
        panic!("rank {} aborted with {code}", self.rank)
    }
}
