//! Checkpoint loading (`trainer::checkpoint::latest`,
//! `trainer::Checkpoint::open`). Mode byte: bit 0 clear, the input is a
//! checkpoint's `state.json` (the run's `latest.json` points at it); set,
//! the input is the run's `latest.json` (a valid checkpoint beside it). A
//! checkpoint that opens holds a state a run can resume from (the checks
//! of `CheckpointState::check`, and what a resumed run does with it first),
//! lies inside the run's `checkpoints/`, and writes back to the same
//! state; an error must name the file.

#![no_main]

use std::time::Duration;

use alexnet_fuzz::{checkpoint_state, scratch_dir, CHECKPOINT_NAME};
use libfuzzer_sys::fuzz_target;
use trainer::checkpoint::{self, Checkpoint, LATEST_FILE, STATE_FILE};

fn resumable(ck: &Checkpoint) {
    let s = &ck.state;
    s.check().expect("an opened state passes its checks");
    let cfg = s.architecture.to_config(s.num_classes);
    cfg.validate().expect("the network can be built");
    let _ = model::parameter_specs(&cfg);
    if let Some(p) = &s.partial {
        let _ = Duration::from_secs_f64(p.train_seconds) + Duration::from_secs_f64(p.wait_seconds);
        let _ = (
            p.counter.top1_error(),
            p.counter.top5_error(),
            p.counter.mean_loss(),
        );
    }
    let _ = s.schedule.clone().end_epoch(s.epochs_done + 1, 50.0);
    let _ = s.step + 1;
    trainer::TrainConfig::paper(
        &s.data_dir,
        ck.dir.parent().expect("a parent"),
        s.architecture.clone(),
    )
    .resume_from(ck)
    .expect("the settings are taken");
    let json = serde_json::to_string_pretty(s).expect("writing to memory");
    let back: trainer::CheckpointState = serde_json::from_str(&json).expect("reads back");
    assert_eq!(&back, s);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let run = scratch_dir("checkpoint");
    let dir = run.join(checkpoint::CHECKPOINTS_DIR).join(CHECKPOINT_NAME);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in [checkpoint::PARAMS_FILE, checkpoint::MOMENTUM_FILE] {
        std::fs::write(dir.join(f), b"").expect("the scratch file can be written");
    }
    let pointer = format!("{{\"checkpoint\": \"checkpoints/{CHECKPOINT_NAME}\"}}");
    let (state, latest) = if mode & 1 == 0 {
        (rest.to_vec(), pointer.into_bytes())
    } else {
        let valid = serde_json::to_vec_pretty(&checkpoint_state(true)).expect("writing to memory");
        (valid, rest.to_vec())
    };
    std::fs::write(dir.join(STATE_FILE), &state).expect("the scratch file can be written");
    std::fs::write(run.join(LATEST_FILE), &latest).expect("the scratch file can be written");
    let names_run = |e: trainer::TrainerError| {
        let text = e.to_string();
        assert!(text.contains(&*run.to_string_lossy()), "{text}");
    };
    match checkpoint::latest(&run) {
        Ok(Some(ck)) => {
            assert_eq!(
                ck.dir.parent(),
                Some(&*run.join(checkpoint::CHECKPOINTS_DIR))
            );
            resumable(&ck);
        }
        Ok(None) => panic!("latest.json is there"),
        Err(e) => names_run(e),
    }
    if mode & 1 == 0 {
        for path in [dir.clone(), dir.join(STATE_FILE)] {
            match Checkpoint::open(&path) {
                Ok(ck) => resumable(&ck),
                Err(e) => names_run(e),
            }
        }
    }
});
