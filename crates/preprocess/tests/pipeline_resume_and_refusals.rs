//! Robustness: an interrupted run (killed, or stopped with the stop flag
//! that Ctrl-C raises) resumed equals an uninterrupted one; a different
//! dataset in OUT is refused; a truncated tar is an error naming the file
//! and the member, after keeping the completed shards.

mod pipeline_support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_support::*;
use preprocess::{
    run, NoProgress, PreprocessConfig, PreprocessError, ProgressSink, Split, SplitSummary,
};
use synth::{generate, SynthConfig, SynthDataset};

fn dataset(dir: &Path, classes: usize) -> SynthDataset {
    let cfg = SynthConfig {
        classes,
        train_per_class: 9,
        val_images: 10,
        min_side: 48,
        max_side: 120,
        seed: 3,
        plant_odd_files: true,
        ..SynthConfig::default()
    };
    generate(dir, &cfg).unwrap()
}

fn config(out: &Path, data: &SynthDataset) -> PreprocessConfig {
    let mut cfg = PreprocessConfig::new(out);
    cfg.train_tar = Some(data.train_tar.clone());
    cfg.val_tar = Some(data.val_tar.clone());
    cfg.devkit = Some(data.devkit.clone());
    cfg.images_per_shard = 3;
    cfg.open_shards = 2;
    cfg
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"), 3);

    let full = tmp.path().join("full");
    let mut cfg = config(&full, &data);
    cfg.workers = 1;
    let s = run(&cfg, &NoProgress).unwrap();
    assert!(
        s.splits[0].shards >= 6,
        "enough shards to interrupt between"
    );

    // Odd counts stop inside a group of 2 open shards: one is left half-written.
    for halt in [1u64, 3, 5] {
        let out = tmp.path().join(format!("resumed{halt}"));
        let mut cfg = config(&out, &data);
        cfg.workers = 3;
        cfg.halt_after_shards = Some(halt);
        let err = run(&cfg, &NoProgress).unwrap_err();
        assert!(matches!(err, PreprocessError::Interrupted), "{err}");
        let left = files_in(&out.join("train"));
        assert!(left.iter().any(|f| f.ends_with(".tmp")), "{left:?}");
        let complete = left.iter().filter(|f| f.ends_with(".h5")).count() as u64;
        assert!(complete >= halt);
        // Same command again: resumes and completes.
        cfg.halt_after_shards = None;
        let s = run(&cfg, &NoProgress).unwrap();
        assert!(
            (s.splits[0].written_this_run as usize) < data.info.decodable_train_count(),
            "completed shards are not decoded again"
        );
        assert!(!files_in(&out.join("train"))
            .iter()
            .any(|f| f.ends_with(".tmp")));
        assert_same_output(&full, &out);
    }

    // Running the finished command again changes nothing and decodes nothing.
    let s = run(&config(&full, &data), &NoProgress).unwrap();
    assert_eq!(s.written_this_run(), 0);
    let again = tmp.path().join("again");
    run(&config(&again, &data), &NoProgress).unwrap();
    assert_same_output(&full, &again);
}

/// Pins down when the stop flag is seen: at the first progress report of
/// the train split after more than `after` inputs (the writer reports about
/// every 100 ms, and once more at the end of the split), it tells the test
/// thread how many inputs were done and holds the writer until that thread
/// has raised the flag, so the writer finds it raised when it checks, right
/// after the report.
struct HoldAtReport {
    after: u64,
    flag: Arc<AtomicBool>,
    train: AtomicBool,
    reported: AtomicU64,
}

impl ProgressSink for HoldAtReport {
    fn start_split(&self, split: Split, _: Option<u64>, _: Option<u64>) {
        self.train.store(split == Split::Train, Ordering::SeqCst);
    }

    fn advance(&self, inputs_done: u64, _: u64) {
        if !self.train.load(Ordering::SeqCst)
            || inputs_done <= self.after
            || self.reported.load(Ordering::SeqCst) != 0
        {
            return;
        }
        self.reported.store(inputs_done, Ordering::SeqCst);
        let t0 = Instant::now();
        while !self.flag.load(Ordering::SeqCst) {
            assert!(t0.elapsed() < Duration::from_secs(60), "flag never raised");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn finish_split(&self, summary: &SplitSummary) {
        assert_ne!(summary.split, Split::Train, "the train split completed");
    }
}

#[test]
fn stop_flag_from_another_thread_leaves_a_resumable_partial_output() {
    let tmp = tempfile::tempdir().unwrap();
    // Big enough that the train split spans several progress reports.
    let data = generate(
        &tmp.path().join("in"),
        &SynthConfig {
            classes: 3,
            train_per_class: 20,
            val_images: 10,
            min_side: 160,
            max_side: 320,
            seed: 4,
            plant_odd_files: true,
            ..SynthConfig::default()
        },
    )
    .unwrap();
    let full = tmp.path().join("full");
    let mut cfg = config(&full, &data);
    cfg.workers = 1;
    run(&cfg, &NoProgress).unwrap();
    let full_shards = shard_paths(&full, "train").len();

    let out = tmp.path().join("stopped");
    let flag = Arc::new(AtomicBool::new(false));
    let mut cfg = config(&out, &data);
    cfg.workers = 1;
    cfg.cancel = Some(flag.clone());
    // Inputs per group of open shards (3 images x 2 shards).
    let group = (cfg.images_per_shard * cfg.open_shards) as u64;
    let sink = HoldAtReport {
        after: group,
        flag: flag.clone(),
        train: AtomicBool::new(false),
        reported: AtomicU64::new(0),
    };
    let run_over = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        // The stop flag is raised by another thread, as the Ctrl-C handler does.
        let raiser = scope.spawn(|| {
            while sink.reported.load(Ordering::SeqCst) == 0 {
                if run_over.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            flag.store(true, Ordering::SeqCst);
        });
        let result = run(&cfg, &sink);
        run_over.store(true, Ordering::SeqCst);
        raiser.join().unwrap();
        result
    });
    let done = sink.reported.load(Ordering::SeqCst);
    assert!(done > group, "no report after {group} inputs");
    let err = result.unwrap_err();
    assert!(matches!(err, PreprocessError::Interrupted), "{err}");

    // Ended at the report that saw the flag: the groups of shards finished
    // before it are complete, the group it was writing is removed, nothing
    // is left half-written and the validation split was not started.
    let left = files_in(&out.join("train"));
    assert!(!left.iter().any(|f| f.ends_with(".tmp")), "{left:?}");
    let complete = ((done - 1) / group) as usize * cfg.open_shards;
    assert!(complete > 0);
    assert_eq!(
        shard_paths(&out, "train").len(),
        complete,
        "{left:?} after {done} inputs"
    );
    assert!(complete < full_shards);
    assert!(!out.join("val").exists() || shard_paths(&out, "val").is_empty());
    let kept = read_split(&out, "train");
    let kept_images: usize = kept.iter().map(|s| s.labels.len()).sum();
    assert_eq!(kept, read_split(&full, "train")[..complete]);

    // The same command again, no flag: finishes what is missing only, and
    // the output is that of the uninterrupted run.
    cfg.cancel = None;
    let s = run(&cfg, &NoProgress).unwrap();
    assert_eq!(
        s.splits[0].written_this_run as usize + kept_images,
        data.info.decodable_train_count()
    );
    assert_same_output(&full, &out);
}

#[test]
fn different_dataset_in_out_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = dataset(&tmp.path().join("a"), 3);
    let b = dataset(&tmp.path().join("b"), 4);
    let out = tmp.path().join("out");
    run(&config(&out, &a), &NoProgress).unwrap();

    let err = run(&config(&out, &b), &NoProgress).unwrap_err();
    assert!(
        matches!(err, PreprocessError::DifferentDataset { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("different dataset"), "{err}");

    let mut cfg = config(&out, &a);
    cfg.images_per_shard = 5;
    let err = run(&cfg, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("--images-per-shard"), "{err}");

    // The decoding options are part of what the directory holds.
    let mut cfg = config(&out, &a);
    cfg.jpeg_scaling = preprocess::JpegScaling::Full;
    let err = run(&cfg, &NoProgress).unwrap_err();
    assert!(
        err.to_string().contains("--jpeg-scaling draft, not full"),
        "{err}"
    );
    let mut cfg = config(&out, &a);
    cfg.filter = preprocess::ResizeFilter::CatmullRom;
    let err = run(&cfg, &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains("--filter lanczos3, not catmull-rom"),
        "{err}"
    );

    // A non-empty directory that holds no dataset is not overwritten.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let err = run(&config(&other, &a), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(files_in(&other), ["notes.txt"]);
}

#[test]
fn truncated_tar_names_file_and_member_and_keeps_complete_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"), 4);
    let bytes = std::fs::read(&data.train_tar).unwrap();
    let cut = tmp.path().join("cut").join("ILSVRC2012_img_train.tar");
    std::fs::create_dir_all(cut.parent().unwrap()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() * 7 / 10 + 100]).unwrap();

    let out = tmp.path().join("out");
    let mut cfg = PreprocessConfig::new(&out);
    cfg.train_tar = Some(cut.clone());
    cfg.devkit = Some(data.devkit.clone());
    cfg.images_per_shard = 3;
    cfg.open_shards = 2;
    let err = run(&cfg, &NoProgress).unwrap_err();
    let msg = err.to_string();
    match &err {
        PreprocessError::Tar { file, member, .. } => {
            assert!(file.contains("ILSVRC2012_img_train.tar"), "{msg}");
            assert!(!member.is_empty(), "{msg}");
        }
        other => panic!("expected a tar error, got {other}"),
    }
    let files = files_in(&out.join("train"));
    assert!(files.iter().any(|f| f.ends_with(".h5")), "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
    // The kept shards are complete and readable.
    for s in read_split(&out, "train") {
        assert_eq!(s.labels.len(), s.shape[0]);
    }
}

#[test]
fn jpeg_encoding_stores_the_same_images_compressed_and_resumes_exactly() {
    use loader::Dataset;
    use shards::Encoding;

    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(&tmp.path().join("in"), 3);
    let raw = tmp.path().join("raw");
    run(&config(&raw, &data), &NoProgress).unwrap();
    let jpeg = tmp.path().join("jpeg");
    let mut cfg = config(&jpeg, &data);
    cfg.encoding = Encoding::Jpeg { quality: 90 };
    run(&cfg, &NoProgress).unwrap();

    for sp in ["train", "val"] {
        let a = Dataset::open(&raw.join(sp)).unwrap();
        let b = Dataset::open(&jpeg.join(sp)).unwrap();
        assert!(!a.is_encoded() && b.is_encoded());
        assert_eq!(a.labels(), b.labels(), "{sp}");
        let (mut x, mut y) = (vec![0u8; a.image_bytes()], vec![0u8; b.image_bytes()]);
        let (mut diff, mut raw_bytes, mut jpeg_bytes) = (0u64, 0u64, 0u64);
        for i in 0..a.len() as u64 {
            assert_eq!(a.name(i).unwrap(), b.name(i).unwrap());
            a.read_image(i, &mut x).unwrap();
            b.read_image(i, &mut y).unwrap();
            diff += x
                .iter()
                .zip(&y)
                .map(|(&p, &q)| p.abs_diff(q) as u64)
                .sum::<u64>();
            raw_bytes += x.len() as u64;
        }
        for path in pipeline_support::shard_paths(&jpeg, sp) {
            let f = hdf5::File::open(path).unwrap();
            jpeg_bytes += f.dataset("jpeg").unwrap().size() as u64;
        }
        let mean = diff as f64 / raw_bytes as f64;
        assert!(mean < 3.0, "{sp}: mean absolute difference {mean}");
        assert!(
            jpeg_bytes * 4 < raw_bytes,
            "{sp}: {jpeg_bytes} vs {raw_bytes} bytes"
        );
    }
    // The statistics come from the decoded pixels, before encoding.
    for name in ["mean_image", "eigvals", "eigvecs"] {
        assert_eq!(
            pipeline_support::read_f64(&raw.join("stats.h5"), name),
            pipeline_support::read_f64(&jpeg.join("stats.h5"), name),
            "{name}"
        );
    }

    // Interrupted and resumed: the same JPEG shards, byte for byte.
    let resumed = tmp.path().join("resumed");
    let mut cfg = config(&resumed, &data);
    cfg.encoding = Encoding::Jpeg { quality: 90 };
    cfg.halt_after_shards = Some(3);
    assert!(matches!(
        run(&cfg, &NoProgress).unwrap_err(),
        PreprocessError::Interrupted
    ));
    assert!(files_in(&resumed.join("train"))
        .iter()
        .any(|f| f.ends_with(".jpeg.tmp")));
    cfg.halt_after_shards = None;
    run(&cfg, &NoProgress).unwrap();
    assert_same_output(&jpeg, &resumed);

    // Another encoding into the same directory is another dataset.
    let err = run(&config(&jpeg, &data), &NoProgress).unwrap_err();
    assert!(
        matches!(err, PreprocessError::DifferentDataset { .. })
            && err.to_string().contains("encoding"),
        "{err}"
    );
}
