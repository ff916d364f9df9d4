//! The command line itself, run as users run it: every subcommand on tiny
//! generated data, checking its exit status and its last line (the line each
//! command documents as its result). `quickstart` is the README's main job
//! and takes about a minute, so it is left to that command.

mod common;

use std::process::{Command, Output};

use common::{preprocess_args, s, strs, TinyImageNet};

/// The Slurm array variables `preprocess` takes its part from.
const SLURM_ARRAY_VARS: [&str; 4] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
];

fn xtask(args: &[&str]) -> Output {
    xtask_env(args, &[])
}

/// Runs xtask with `env` set and no other Slurm array variables (the tests
/// may themselves run in an array task).
fn xtask_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env("RUST_BACKTRACE", "0");
    for var in SLURM_ARRAY_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .output()
        .expect("the xtask binary runs")
}

/// Runs a command that must succeed; returns its stdout's last line.
fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

/// [`ok`] with environment variables.
fn ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = xtask_env(args, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "xtask {}: {}\nstdout: {stdout}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_string()
}

#[test]
fn every_subcommand_on_tiny_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, raw, jpeg, run) = (
        tmp.path().join("in"),
        tmp.path().join("raw"),
        tmp.path().join("jpeg"),
        tmp.path().join("run"),
    );

    // With the odd and broken files the generator plants (grayscale, CMYK,
    // YCCK, progressive, PNG named .JPEG; empty, truncated, text, random).
    let tiny = TinyImageNet {
        classes: 3,
        train_per_class: 12,
        val_images: 12,
        min_side: 64,
        max_side: 96,
        seed: 1,
    };
    let out = xtask(&strs(&tiny.synth_args(&input)));
    assert!(out.status.success());
    let synth = String::from_utf8_lossy(&out.stdout).into_owned();
    let odd_val = |kind: &str| -> std::path::PathBuf {
        let name = synth
            .lines()
            .filter_map(|l| l.trim().strip_prefix("odd file "))
            .find(|l| l.starts_with("ILSVRC2012_val_") && l.contains(&format!(": {kind} (")))
            .and_then(|l| l.split(':').next())
            .unwrap_or_else(|| panic!("no odd val file of kind {kind} in: {synth}"));
        input.join("val").join(name)
    };
    let last = synth.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("done in"), "{last}");

    for (out, encoding) in [(&raw, "raw"), (&jpeg, "jpeg")] {
        let last = ok(&strs(&preprocess_args(
            &input,
            out,
            8,
            &["--open-shards", "2", "--encoding", encoding],
        )));
        assert!(
            last.starts_with("written 40 images, skipped 8"),
            "{encoding}: {last}"
        );
    }

    let trained = ok(&[
        "train",
        "--data",
        s(&raw),
        "--run-dir",
        s(&run),
        "--model",
        "alexnet-small",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--quiet",
    ]);
    assert!(
        trained.starts_with("final: epoch 1, val top-1 error "),
        "{trained}"
    );
    // Resuming takes the dataset from the run: no --data needed.
    let resumed = ok(&[
        "train",
        "--run-dir",
        s(&run),
        "--resume",
        "--epochs",
        "1",
        "--quiet",
    ]);
    assert_eq!(resumed, trained);
    // Refused before anything is written: a launch whose tasks MPI does not
    // see (srun under --mpi=none), and a placement this build lacks.
    let refused = tmp.path().join("refused");
    let train_into = |dir: &std::path::Path, extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--data", s(&raw), "--run-dir", s(dir)]
            .iter()
            .map(|x| x.to_string())
            .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let out = xtask_env(
        &strs(&train_into(&refused, &["--quiet"])),
        &[("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_NTASKS", "2")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("Slurm started 2 tasks (SLURM_STEP_NUM_TASKS=2), but MPI sees 1 rank"),
        "{err}"
    );
    assert!(
        !refused.exists(),
        "a refused launch created {}",
        refused.display()
    );
    if !cfg!(feature = "cuda") {
        let out = xtask(&strs(&train_into(
            &refused,
            &["--devices", "cuda:0,cuda:1"],
        )));
        assert!(!out.status.success());
        assert!(
            !refused.exists(),
            "a refused placement created {}",
            refused.display()
        );
    }
    let evaluated = ok(&["eval", "--checkpoint", s(&run), "--data", s(&raw)]);
    assert!(evaluated.starts_with("top-1 error "), "{evaluated}");
    assert!(
        trained.ends_with(&evaluated),
        "eval of the final checkpoint gives the run's last figures: {trained} / {evaluated}"
    );

    // Predict: three ranked classes whose probabilities sum to 100%, for a
    // plain photo and for each odd but decodable kind.
    let mut names: Vec<String> = std::fs::read_dir(input.join("val"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let plain = names
        .iter()
        .find(|n| !synth.contains(&format!("odd file {n}:")))
        .expect("a plain validation photo");
    let photo = input.join("val").join(plain);
    let mut files = vec![photo];
    files.extend(["Grayscale", "Cmyk", "Ycck", "PngNamedJpeg"].map(odd_val));
    for file in &files {
        let out = xtask(&["predict", "--checkpoint", s(&run), s(file)]);
        assert!(out.status.success(), "{}", file.display());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("{}:", file.display()));
        assert_eq!(lines.len(), 4, "{text}");
        let percent: f64 = lines[1..]
            .iter()
            .map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap()
                    .trim_end_matches('%')
                    .parse::<f64>()
                    .unwrap()
            })
            .sum();
        assert!((percent - 100.0).abs() < 0.05, "{text}");
    }
    // Files that are no usable image: a failure that names the file and why.
    let text_file = tmp.path().join("notes.txt");
    std::fs::write(&text_file, "hello").unwrap();
    for (file, why) in [
        (text_file, "not a JPEG or PNG"),
        (odd_val("TruncatedJpeg"), "JPEG: "),
    ] {
        let out = xtask(&["predict", "--checkpoint", s(&run), s(&file)]);
        assert!(!out.status.success(), "{}", file.display());
        let err = String::from_utf8_lossy(&out.stderr);
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name) && err.contains(why), "{err}");
    }

    for (figure, extra) in [
        ("filters", vec![]),
        ("predictions", vec!["--data", s(&raw)]),
        ("neighbours", vec!["--data", s(&raw), "--count", "2"]),
    ] {
        let png = tmp.path().join(format!("{figure}.png"));
        let mut args = vec!["show", figure, "--checkpoint", s(&run), "--out", s(&png)];
        args.extend(extra);
        let last = ok(&args);
        assert!(
            last.starts_with(&format!("wrote {}", png.display())),
            "{last}"
        );
        assert!(png.is_file());
    }
    let curves = tmp.path().join("curves.png");
    let last = ok(&["show", "curves", "--runs", s(&run), "--out", s(&curves)]);
    assert_eq!(last, format!("wrote {}", curves.display()));

    let last = ok(&[
        "bench",
        "loader",
        "--data",
        s(&jpeg),
        "--batches",
        "2",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--warmup",
        "1",
    ]);
    assert!(last.ends_with(" images/s"), "{last}");
    let last = ok(&[
        "bench",
        "open",
        "--split-dir",
        s(&raw.join("train")),
        "--shards",
        "10",
        "--repeats",
        "1",
    ]);
    assert!(last.ends_with(" s to open"), "{last}");
    let last = ok(&["bench", "encoding", "--raw", s(&raw), "--jpeg", s(&jpeg)]);
    assert!(last.ends_with("x smaller"), "{last}");
    let last = ok(&[
        "bench",
        "device-check",
        "--devices",
        "cpu",
        "--model",
        "tiny",
    ]);
    assert!(last.starts_with("PASS"), "{last}");
    let last = ok(&[
        "bench",
        "train-step",
        "--model",
        "alexnet-small",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--device",
        "cpu",
    ]);
    assert!(last.ends_with(" images/s"), "{last}");
}

/// `preprocess` as the tasks of a Slurm array run it: the part from
/// SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN,
/// `--part` winning over them, the last part finishing the dataset, equal
/// to one run; `--finish` refused while a part is missing.
#[test]
fn preprocess_parts_from_the_slurm_array_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, one, parts) = (
        tmp.path().join("in"),
        tmp.path().join("one"),
        tmp.path().join("parts"),
    );
    let tiny = TinyImageNet {
        classes: 3,
        train_per_class: 8,
        val_images: 10,
        min_side: 48,
        max_side: 72,
        seed: 2,
    };
    ok(&strs(&tiny.synth_args(&input)));
    let args = |out: &std::path::Path| preprocess_args(&input, out, 3, &["--open-shards", "2"]);
    let run = |extra: &[&str], env: &[(&str, &str)]| -> String {
        let mut a = args(&parts);
        a.extend(extra.iter().map(|x| x.to_string()));
        ok_env(&strs(&a), env)
    };
    let whole = ok(&strs(&args(&one)));
    assert!(whole.starts_with("written "), "{whole}");

    // --array=1-3: task id 3 is part 2 of 3.
    let last = run(
        &[],
        &[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ],
    );
    assert!(
        last.starts_with("part 2/3: written ")
            && last.ends_with(
                "waiting for part 0/3, 1/3 (the last part to complete finishes the dataset)"
            ),
        "{last}"
    );
    let last = run(
        &[],
        &[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
    );
    assert!(last.starts_with("part 1/3: written "), "{last}");

    // A task id without the task count is refused rather than taken as the whole.
    let out = xtask_env(&strs(&args(&parts)), &[("SLURM_ARRAY_TASK_ID", "0")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("SLURM_ARRAY_TASK_COUNT is not"),
        "{err}"
    );

    // --finish while part 0 is missing names it.
    let out = xtask(&["preprocess", "--finish", "--out", s(&parts)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("part 0/3 (not started"),
        "{err}"
    );

    // --part wins over the environment; the last part finishes the dataset.
    let last = run(
        &["--part", "0/3"],
        &[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
    );
    assert!(
        last.starts_with("part 0/3: written ")
            && last.contains("; finished the dataset of 3 parts: "),
        "{last}"
    );
    for file in [
        "manifest.json",
        "classes.tsv",
        "dataset.json",
        "train/skipped.tsv",
        "val/skipped.tsv",
    ] {
        assert_eq!(
            std::fs::read_to_string(one.join(file)).unwrap(),
            std::fs::read_to_string(parts.join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(
        loader::Stats::open(&one.join("stats.h5")).unwrap(),
        loader::Stats::open(&parts.join("stats.h5")).unwrap()
    );
    for split in ["train", "val"] {
        let (a, b) = (
            loader::Dataset::open(&one.join(split)).unwrap(),
            loader::Dataset::open(&parts.join(split)).unwrap(),
        );
        assert_eq!(a.labels(), b.labels(), "{split}");
        let (mut x, mut y) = (vec![0u8; a.image_bytes()], vec![0u8; b.image_bytes()]);
        for i in 0..a.len() as u64 {
            assert_eq!(a.name(i).unwrap(), b.name(i).unwrap());
            a.read_image(i, &mut x).unwrap();
            b.read_image(i, &mut y).unwrap();
            assert!(x == y, "{split} image {i}");
        }
    }
    let last = ok(&["preprocess", "--finish", "--out", s(&parts)]);
    assert!(
        last.starts_with("finished the dataset of 3 parts: "),
        "{last}"
    );
}

/// `synth --layout` writes each layout; `preprocess --from` reads it, its
/// first line naming the layout, and refuses to mix --from with the
/// per-split input flags.
#[test]
fn preprocess_from_names_the_layout_on_its_first_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (layout, named) in [
        (
            "kaggle-zip",
            "layout: Kaggle's ImageNet Object Localization Challenge",
        ),
        ("hf-tar", "layout: Hugging Face imagenet-1k, tar.gz"),
        ("hf-parquet", "layout: Hugging Face imagenet-1k, parquet"),
    ] {
        let input = tmp.path().join(layout);
        let last = ok(&[
            "synth",
            "--out",
            s(&input),
            "--layout",
            layout,
            "--classes",
            "2",
            "--train-per-class",
            "6",
            "--val-images",
            "9",
            "--min-side",
            "32",
            "--max-side",
            "48",
        ]);
        assert!(last.starts_with("done in"), "{last}");
        let from = if layout == "kaggle-zip" {
            input.join(synth::KAGGLE_ZIP)
        } else {
            input.clone()
        };
        let out = tmp.path().join(format!("out-{layout}"));
        let run = xtask(&[
            "preprocess",
            "--from",
            s(&from),
            "--out",
            s(&out),
            "--quiet",
        ]);
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            stdout.lines().next().unwrap().starts_with(named),
            "{stdout}"
        );
        assert!(
            stdout.lines().last().unwrap().starts_with("written "),
            "{stdout}"
        );
    }
    let mixed = xtask(&[
        "preprocess",
        "--from",
        s(tmp.path()),
        "--train-tar",
        "x.tar",
        "--out",
        "o",
    ]);
    assert!(!mixed.status.success());
}
