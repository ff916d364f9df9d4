//! `cargo xtask bench device-check`: the same network, built twice from the
//! same seed (once with both towers on the CPU, once with the placement under
//! test), must give the same logits, loss, gradients and parameters after one
//! SGD step on one fixed batch. Prints one line per compared quantity and
//! `PASS` or `FAIL` as its last line; exits non-zero on `FAIL`.
//!
//! # Tolerance
//! Per tensor: `max |test - cpu| <= atol + rtol * max |cpu|` with
//! `rtol = 1e-3`, `atol = 1e-5` by default. Both sides compute in float32 but
//! sum in different orders (CPU: im2col + `gemm` with its own blocking; CUDA:
//! cuBLAS and Candle's kernels), so each sum of `K` terms may differ by about
//! `sqrt(K) * 6e-8` relative to its largest term; with `K` up to a few
//! thousand and a chain of ~10 layers (plus backward) that is ~1e-5..1e-4 of
//! the tensor's scale. `1e-3` leaves an order of magnitude of margin while
//! still catching a wrong kernel (those give O(1) relative errors). TF32 is
//! switched off for the check (it alone would cost ~1e-3). The scale is the
//! tensor's largest magnitude rather than each element's, because many
//! gradient entries are near zero where an element-wise ratio means nothing;
//! `atol` covers tensors that are entirely ~0.

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use model::candle_core::{DType, Device, Tensor};
use model::candle_nn::{self, VarMap};
use model::{AlexNet, AlexNetConfig, ForwardMode, Init, PaperSgd, Placement};

/// Default of `--devices`.
const DEFAULT_DEVICES: &str = "cuda:0";
/// Default of `--model`.
const DEFAULT_MODEL: &str = "tiny";
/// Default of `--batch-size`.
const DEFAULT_BATCH_SIZE: usize = 4;
/// Default of `--init`.
const DEFAULT_INIT: &str = "pytorch";
/// Default of `--seed`.
const DEFAULT_SEED: u64 = 7;
/// Default of `--rtol`.
const DEFAULT_RTOL: f32 = 1e-3;
/// Default of `--atol`.
const DEFAULT_ATOL: f32 = 1e-5;

#[derive(ClapArgs)]
pub struct Args {
    /// Placement under test: `cpu`, `cuda:0`, `cuda:0,cuda:0`, `cuda:0,cuda:1`.
    #[arg(long, default_value = DEFAULT_DEVICES)]
    devices: String,
    /// `tiny` (the configuration of the PyTorch fixture: conv 8/16/16/16/16,
    /// fc 32, 5 classes, 96x96 input), `alexnet-small` or `alexnet` (both
    /// 224x224, 10 classes).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// Images in the fixed batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Parameter initialisation (`pytorch` gives larger, more varied
    /// activations than `paper`, so more of the network is exercised).
    #[arg(long, default_value = DEFAULT_INIT)]
    init: Init,
    /// Seed of the parameters.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Relative tolerance (times the CPU tensor's largest magnitude).
    #[arg(long, default_value_t = DEFAULT_RTOL)]
    rtol: f32,
    /// Absolute tolerance.
    #[arg(long, default_value_t = DEFAULT_ATOL)]
    atol: f32,
    /// Put both CUDA towers on the thread's default stream
    /// (`Device::new_cuda`) instead of the placement parser's stream per
    /// tower (`Device::new_cuda_with_stream`).
    #[arg(long)]
    shared_stream: bool,
}

fn config(name: &str) -> anyhow::Result<AlexNetConfig> {
    match name {
        "tiny" => Ok(AlexNetConfig::reference_tiny()),
        "alexnet-small" => Ok(AlexNetConfig::alexnet_small(10)),
        "alexnet" => Ok(AlexNetConfig::alexnet(10)),
        other => bail!("unknown model '{other}': expected tiny, alexnet-small or alexnet"),
    }
}

/// A fixed batch: pixels from an integer hash (mean-subtracted 0..255
/// scale), labels cycling over the classes. The same on every run.
fn fixed_batch(cfg: &AlexNetConfig, batch: usize) -> anyhow::Result<(Tensor, Tensor)> {
    let s = cfg.input_size;
    let n = batch * 3 * s * s;
    let pixels: Vec<f32> = (0..n as u64)
        .map(|i| {
            let h = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / (1u64 << 24) as f32;
            (h - 0.5) * 120.0
        })
        .collect();
    let images = Tensor::from_vec(pixels, (batch, 3, s, s), &Device::Cpu)?;
    let labels: Vec<u32> = (0..batch).map(|i| (i % cfg.num_classes) as u32).collect();
    let labels = Tensor::from_vec(labels, batch, &Device::Cpu)?;
    Ok((images, labels))
}

/// Everything one run produces, on the CPU, by parameter name where named.
struct RunResult {
    eval_logits: Tensor,
    train_logits: Tensor,
    loss: Tensor,
    grads: Vec<(String, Tensor)>,
    params_after: Vec<(String, Tensor)>,
}

fn sorted_vars(varmap: &VarMap) -> Vec<(String, model::candle_core::Var)> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut vars: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Builds the network on `placement`, runs an eval forward, a training
/// forward (fixed dropout seed), the loss, the backward and one SGD step.
fn run_once(
    cfg: &AlexNetConfig,
    placement: &Placement,
    init: Init,
    seed: u64,
    images: &Tensor,
    labels: &Tensor,
) -> anyhow::Result<RunResult> {
    let varmap = VarMap::new();
    let net = AlexNet::new(&varmap, cfg, placement, init, seed)?;
    let mut sgd = PaperSgd::new(&varmap, 0.01, 0.9, 5e-4)?;
    let out_dev = net.output_device().clone();
    let images = images.to_device(&placement.tower_a)?;
    let labels = labels.to_device(&out_dev)?;
    let cpu = |t: &Tensor| -> anyhow::Result<Tensor> { Ok(t.to_device(&Device::Cpu)?) };

    let eval_logits = cpu(&net.forward(&images, ForwardMode::Eval)?)?;
    let logits = net.forward(&images, ForwardMode::Train { dropout_seed: 11 })?;
    let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
    let grads = loss.backward()?;
    let vars = sorted_vars(&varmap);
    let mut named_grads = Vec::with_capacity(vars.len());
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .with_context(|| format!("no gradient for {name}"))?;
        named_grads.push((name.clone(), cpu(g)?));
    }
    sgd.step(&grads)?;
    let params_after = vars
        .iter()
        .map(|(name, var)| Ok((name.clone(), cpu(var.as_tensor())?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RunResult {
        eval_logits,
        train_logits: cpu(&logits)?,
        loss: cpu(&loss)?,
        grads: named_grads,
        params_after,
    })
}

/// Difference of one tensor against its CPU reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diff {
    /// `max |test - reference|`.
    pub max_abs: f32,
    /// `max_abs / max |reference|` (the reference's scale).
    pub max_rel: f32,
    /// Whether `max_abs <= atol + rtol * max |reference|`.
    pub pass: bool,
}

/// Compares `test` with `reference` (same shape) under the tolerance above.
/// A NaN anywhere fails.
pub fn compare(test: &Tensor, reference: &Tensor, rtol: f32, atol: f32) -> anyhow::Result<Diff> {
    if test.dims() != reference.dims() {
        bail!(
            "shape {:?} != reference shape {:?}",
            test.dims(),
            reference.dims()
        );
    }
    let flat = |t: &Tensor| -> anyhow::Result<Vec<f32>> {
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let (t, r) = (flat(test)?, flat(reference)?);
    let scale = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut max_abs = 0f32;
    let mut nan = false;
    for (a, b) in t.iter().zip(&r) {
        let d = (a - b).abs();
        nan |= d.is_nan();
        max_abs = max_abs.max(d);
    }
    let max_rel = if scale > 0.0 {
        max_abs / scale
    } else {
        max_abs
    };
    let pass = !nan && max_abs <= atol + rtol * scale;
    Ok(Diff {
        max_abs: if nan { f32::NAN } else { max_abs },
        max_rel: if nan { f32::NAN } else { max_rel },
        pass,
    })
}

/// Compares every quantity of two runs; prints a line each; returns how many failed.
fn compare_runs(
    test: &RunResult,
    reference: &RunResult,
    rtol: f32,
    atol: f32,
) -> anyhow::Result<usize> {
    let mut rows: Vec<(String, &Tensor, &Tensor)> = vec![
        (
            "logits (eval)".into(),
            &test.eval_logits,
            &reference.eval_logits,
        ),
        (
            "logits (train)".into(),
            &test.train_logits,
            &reference.train_logits,
        ),
        ("loss".into(), &test.loss, &reference.loss),
    ];
    for (what, t, r) in [
        ("grad", &test.grads, &reference.grads),
        ("after sgd", &test.params_after, &reference.params_after),
    ] {
        if t.len() != r.len() {
            bail!("{what}: {} tensors vs {} on the CPU", t.len(), r.len());
        }
        for ((tn, tt), (rn, rt)) in t.iter().zip(r) {
            if tn != rn {
                bail!("{what}: parameter {tn} where the CPU run has {rn}");
            }
            rows.push((format!("{what} {tn}"), tt, rt));
        }
    }
    println!(
        "{:<34} {:>11} {:>11}  result",
        "quantity", "max abs", "max rel"
    );
    let mut failed = 0;
    for (name, t, r) in rows {
        let d = compare(t, r, rtol, atol).with_context(|| name.clone())?;
        failed += usize::from(!d.pass);
        println!(
            "{name:<34} {:>11.3e} {:>11.3e}  {}",
            d.max_abs,
            d.max_rel,
            if d.pass { "ok" } else { "FAIL" }
        );
    }
    Ok(failed)
}

/// The placement under test; with `shared_stream`, CUDA towers share the
/// thread's default stream.
fn placement(spec: &str, shared_stream: bool) -> anyhow::Result<Placement> {
    let p = Placement::parse(spec).with_context(|| format!("placement '{spec}'"))?;
    if !shared_stream {
        return Ok(p);
    }
    #[cfg(feature = "cuda")]
    {
        let own = |d: &Device| -> anyhow::Result<Device> {
            Ok(match d.location() {
                model::candle_core::DeviceLocation::Cuda { gpu_id } => Device::new_cuda(gpu_id)?,
                _ => d.clone(),
            })
        };
        Ok(Placement {
            tower_a: own(&p.tower_a)?,
            tower_b: own(&p.tower_b)?,
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok(p)
    }
}

/// How the two towers' devices relate (device objects, CUDA streams).
fn describe(p: &Placement) -> String {
    let objects = if p.tower_a.same_device(&p.tower_b) {
        1
    } else {
        2
    };
    format!(
        "tower A {:?}, tower B {:?}; {objects} device object(s){}",
        p.tower_a.location(),
        p.tower_b.location(),
        stream_note(p)
    )
}

/// The CUDA streams of two CUDA towers, and whether they are one.
#[cfg(feature = "cuda")]
fn stream_note(p: &Placement) -> String {
    match (&p.tower_a, &p.tower_b) {
        (Device::Cuda(a), Device::Cuda(b)) => {
            let (sa, sb) = (a.cuda_stream().cu_stream(), b.cuda_stream().cu_stream());
            let kind = if sa == sb {
                "ONE shared stream"
            } else {
                "separate streams"
            };
            format!("; streams {sa:?} / {sb:?} ({kind})")
        }
        _ => String::new(),
    }
}

#[cfg(not(feature = "cuda"))]
fn stream_note(_: &Placement) -> String {
    String::new()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    let cfg = config(&args.model)?;
    // Full float32: cuBLAS and cuDNN may otherwise use TF32.
    model::set_precision(model::Precision::Fp32);
    let (images, labels) = fixed_batch(&cfg, args.batch_size)?;
    let test_placement = placement(&args.devices, args.shared_stream)?;
    println!(
        "device-check: model {}, batch {}, init {}, seed {}; cpu vs {}{}",
        args.model,
        args.batch_size,
        args.init,
        args.seed,
        args.devices,
        if args.shared_stream {
            " (towers on one shared stream)"
        } else {
            ""
        }
    );
    println!("placement: {}", describe(&test_placement));
    println!(
        "tolerance per tensor: max|test - cpu| <= {:e} + {:e} * max|cpu|",
        args.atol, args.rtol
    );
    let reference = run_once(
        &cfg,
        &Placement::cpu(),
        args.init,
        args.seed,
        &images,
        &labels,
    )?;
    let test = run_once(
        &cfg,
        &test_placement,
        args.init,
        args.seed,
        &images,
        &labels,
    )?;
    let failed = compare_runs(&test, &reference, args.rtol, args.atol)?;
    let total = 3 + reference.grads.len() + reference.params_after.len();
    if failed > 0 {
        println!("FAIL: {failed} of {total} quantities outside the tolerance");
        std::process::exit(1);
    }
    println!("PASS: {total} quantities within the tolerance");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_passes_equal_and_small_and_fails_large_or_nan() {
        let r = Tensor::new(&[1.0f32, -2.0, 0.0, 4.0], &Device::Cpu).unwrap();
        assert!(compare(&r, &r, 1e-3, 1e-5).unwrap().pass);
        let close = Tensor::new(&[1.0f32, -2.0, 0.003, 4.0], &Device::Cpu).unwrap();
        let d = compare(&close, &r, 1e-3, 1e-5).unwrap();
        assert!(d.pass, "{d:?}");
        assert!((d.max_rel - 0.003 / 4.0).abs() < 1e-6);
        let far = Tensor::new(&[1.0f32, -2.0, 0.01, 4.0], &Device::Cpu).unwrap();
        assert!(!compare(&far, &r, 1e-3, 1e-5).unwrap().pass);
        let nan = Tensor::new(&[1.0f32, f32::NAN, 0.0, 4.0], &Device::Cpu).unwrap();
        assert!(!compare(&nan, &r, 1e-3, 1e-5).unwrap().pass);
        let other_shape = Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        assert!(compare(&other_shape, &r, 1e-3, 1e-5).is_err());
    }

    #[test]
    fn cpu_runs_agree_and_a_changed_seed_is_caught() {
        let cfg = AlexNetConfig::reference_tiny();
        let (images, labels) = fixed_batch(&cfg, 2).unwrap();
        let a = run_once(&cfg, &Placement::cpu(), Init::PyTorch, 7, &images, &labels).unwrap();
        let split = Placement::parse("cpu,cpu").unwrap();
        let b = run_once(&cfg, &split, Init::PyTorch, 7, &images, &labels).unwrap();
        assert_eq!(compare_runs(&b, &a, 1e-3, 1e-5).unwrap(), 0);
        // Different parameters must be reported, in every quantity.
        let c = run_once(&cfg, &Placement::cpu(), Init::PyTorch, 8, &images, &labels).unwrap();
        let failed = compare_runs(&c, &a, 1e-3, 1e-5).unwrap();
        assert!(failed > a.grads.len(), "only {failed} failed");
    }
}
