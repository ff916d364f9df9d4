//! What the command-line tests share: the arguments that generate a tiny
//! ImageNet-layout dataset and convert it.

use std::path::Path;

/// `p` as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// A tiny synthetic ImageNet (`cargo xtask synth ... --trees`): the three
/// files, plus the train and val trees extracted next to them.
pub struct TinyImageNet {
    pub classes: usize,
    pub train_per_class: usize,
    pub val_images: usize,
    pub min_side: u32,
    pub max_side: u32,
    pub seed: u64,
}

impl TinyImageNet {
    /// `synth` writing this dataset to `input`.
    pub fn synth_args(&self, input: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec!["synth".into(), "--out".into(), s(input).into()];
        for (flag, value) in [
            ("--classes", self.classes.to_string()),
            ("--train-per-class", self.train_per_class.to_string()),
            ("--val-images", self.val_images.to_string()),
            ("--min-side", self.min_side.to_string()),
            ("--max-side", self.max_side.to_string()),
            ("--seed", self.seed.to_string()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        args.push("--trees".into());
        args
    }
}

/// `preprocess` of the trees `synth --trees` wrote to `input` into `out`,
/// quietly, with small shards; `extra` flags at the end.
pub fn preprocess_args(
    input: &Path,
    out: &Path,
    images_per_shard: usize,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "preprocess",
        "--train-dir",
        s(&input.join("train")),
        "--val-dir",
        s(&input.join("val")),
        "--devkit",
        s(&input.join("ILSVRC2012_devkit_t12.tar.gz")),
        "--out",
        s(out),
        "--quiet",
        "--images-per-shard",
    ]
    .map(String::from)
    .to_vec();
    args.push(images_per_shard.to_string());
    args.extend(extra.iter().map(|x| x.to_string()));
    args
}

/// `&str`s of `v`, for a command's arguments.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
