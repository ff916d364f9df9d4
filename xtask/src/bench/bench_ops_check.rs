//! `cargo xtask bench ops-check`: each custom operation on its own, at the
//! paper's layer shapes (small batch), on the device under test against the
//! CPU: the output, and the gradient of every input and parameter of
//! `sum(y * g)` (`g` a fixed pseudo-random upstream gradient); then two
//! `PaperSgd` steps of one parameter. Localises what `device-check` finds
//! wrong in the whole network. Same tolerance as `device-check`; prints
//! `PASS` or `FAIL` last and exits non-zero on `FAIL`.

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use model::candle_core::{Device, Tensor, Var};
use model::candle_nn::VarMap;
use model::ops;
use model::{LrnConfig, PaperSgd, Placement};

use super::bench_device_check::compare;

/// Default of `--device`.
const DEFAULT_DEVICE: &str = "cuda:0";
/// Default of `--batch-size`.
const DEFAULT_BATCH_SIZE: usize = 2;
/// Default of `--rtol`.
const DEFAULT_RTOL: f32 = 1e-3;
/// Default of `--atol`.
const DEFAULT_ATOL: f32 = 1e-5;

#[derive(ClapArgs)]
pub struct Args {
    /// Device under test: `cpu` or `cuda:N`.
    #[arg(long, default_value = DEFAULT_DEVICE)]
    device: String,
    /// Batch of every case.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Relative tolerance (times the CPU tensor's largest magnitude).
    #[arg(long, default_value_t = DEFAULT_RTOL)]
    rtol: f32,
    /// Absolute tolerance.
    #[arg(long, default_value_t = DEFAULT_ATOL)]
    atol: f32,
}

/// Deterministic values in `[-scale, scale)` (xorshift of a seed), on the CPU.
fn data(shape: &[usize], seed: u32, scale: f32) -> anyhow::Result<Tensor> {
    let len: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    let v: Vec<f32> = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            ((s as f32 / u32::MAX as f32) * 2.0 - 1.0) * scale
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

type OpFn = dyn Fn(&[Tensor]) -> model::candle_core::Result<Tensor>;

/// One case: inputs (CPU), which of them get a gradient, and the op.
struct Case {
    name: &'static str,
    inputs: Vec<(&'static str, Tensor, bool)>,
    op: Box<OpFn>,
}

/// Output and gradients (on the CPU) of a case run on `dev`.
fn run_case(case: &Case, dev: &Device) -> anyhow::Result<Vec<(String, Option<Tensor>)>> {
    let mut vars = Vec::new();
    let mut args = Vec::new();
    for (_, t, grad) in &case.inputs {
        let t = t.to_device(dev)?;
        if *grad {
            let v = Var::from_tensor(&t)?;
            args.push(v.as_tensor().clone());
            vars.push(Some(v));
        } else {
            args.push(t);
            vars.push(None);
        }
    }
    let y = (case.op)(&args)?;
    let g = data(y.dims(), 99, 1.0)?.to_device(dev)?;
    let grads = (&y * &g)?.sum_all()?.backward()?;
    let cpu = |t: &Tensor| -> anyhow::Result<Tensor> { Ok(t.to_device(&Device::Cpu)?) };
    let mut out = vec![("output".to_string(), Some(cpu(&y)?))];
    for ((name, _, _), v) in case.inputs.iter().zip(&vars) {
        if let Some(v) = v {
            let g = grads.get(v.as_tensor()).map(cpu).transpose()?;
            out.push((format!("grad {name}"), g));
        }
    }
    Ok(out)
}

fn cases(n: usize) -> anyhow::Result<Vec<Case>> {
    let lrn = LrnConfig::default();
    Ok(vec![
        Case {
            name: "conv1+relu (no input grad)",
            inputs: vec![
                ("x", data(&[n, 3, 224, 224], 1, 100.0)?, true),
                ("w", data(&[48, 3, 11, 11], 2, 0.01)?, true),
                ("b", data(&[48], 3, 0.1)?, true),
            ],
            op: Box::new(|a| ops::conv2d_relu(&a[0], &a[1], &a[2], 4, 2, false)),
        },
        Case {
            name: "conv2+relu",
            inputs: vec![
                ("x", data(&[n, 48, 27, 27], 4, 1.0)?, true),
                ("w", data(&[128, 48, 5, 5], 5, 0.03)?, true),
                ("b", data(&[128], 6, 0.1)?, true),
            ],
            op: Box::new(|a| ops::conv2d_relu(&a[0], &a[1], &a[2], 1, 2, true)),
        },
        Case {
            name: "conv3 (no relu)",
            inputs: vec![
                ("x", data(&[n, 256, 13, 13], 7, 1.0)?, true),
                ("w", data(&[192, 256, 3, 3], 8, 0.02)?, true),
                ("b", data(&[192], 9, 0.1)?, true),
            ],
            op: Box::new(|a| ops::conv2d(&a[0], &a[1], &a[2], 1, 1, true)),
        },
        Case {
            name: "lrn",
            inputs: vec![("x", data(&[n, 48, 55, 55], 10, 30.0)?, true)],
            op: Box::new(move |a| ops::lrn(&a[0], &lrn)),
        },
        Case {
            name: "lrn+max-pool",
            inputs: vec![("x", data(&[n, 48, 55, 55], 11, 30.0)?, true)],
            op: Box::new(move |a| ops::lrn_max_pool(&a[0], &lrn, 3, 2)),
        },
        Case {
            name: "max-pool",
            inputs: vec![("x", data(&[n, 128, 13, 13], 12, 1.0)?, true)],
            op: Box::new(|a| ops::max_pool_overlapping(&a[0], 3, 2)),
        },
    ])
}

/// Two SGD steps of one parameter; returns the parameter after each (CPU).
fn sgd_steps(dev: &Device) -> anyhow::Result<Vec<Tensor>> {
    let varmap = VarMap::new();
    let w = Var::from_tensor(&data(&[4099], 20, 0.1)?.to_device(dev)?)?;
    varmap
        .data()
        .lock()
        .expect("VarMap lock poisoned")
        .insert("p".into(), w.clone());
    let mut sgd = PaperSgd::new(&varmap, 0.01, 0.9, 5e-4)?;
    let mut out = Vec::new();
    for seed in [21, 22] {
        let g = data(&[4099], seed, 1.0)?.to_device(dev)?;
        sgd.step(&(w.as_tensor() * &g)?.sum_all()?.backward()?)?;
        out.push(w.as_tensor().to_device(&Device::Cpu)?);
    }
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    model::set_precision(model::Precision::Fp32);
    let p = Placement::parse(&args.device).with_context(|| format!("device '{}'", args.device))?;
    let dev = p.tower_a;
    println!(
        "ops-check: batch {}, cpu vs {}; tolerance per tensor: max|test - cpu| <= {:e} + {:e} * max|cpu|",
        args.batch_size, args.device, args.atol, args.rtol
    );
    println!(
        "{:<28} {:<10} {:>11} {:>11}  result",
        "operation", "quantity", "max abs", "max rel"
    );
    let (mut failed, mut total) = (0usize, 0usize);
    let mut row =
        |op: &str, what: &str, t: Option<&Tensor>, r: Option<&Tensor>| -> anyhow::Result<()> {
            total += 1;
            match (t, r) {
                (Some(t), Some(r)) => {
                    let d = compare(t, r, args.rtol, args.atol)
                        .with_context(|| format!("{op} {what}"))?;
                    failed += usize::from(!d.pass);
                    println!(
                        "{op:<28} {what:<10} {:>11.3e} {:>11.3e}  {}",
                        d.max_abs,
                        d.max_rel,
                        if d.pass { "ok" } else { "FAIL" }
                    );
                }
                (None, None) => println!(
                    "{op:<28} {what:<10} {:>11} {:>11}  ok (none on both)",
                    "-", "-"
                ),
                _ => {
                    failed += 1;
                    println!(
                        "{op:<28} {what:<10} {:>11} {:>11}  FAIL (present on one side only)",
                        "-", "-"
                    );
                }
            }
            Ok(())
        };
    for case in cases(args.batch_size)? {
        let reference =
            run_case(&case, &Device::Cpu).with_context(|| format!("{} on the CPU", case.name))?;
        let test =
            run_case(&case, &dev).with_context(|| format!("{} on {}", case.name, args.device))?;
        for ((what, t), (_, r)) in test.iter().zip(&reference) {
            row(case.name, what, t.as_ref(), r.as_ref())?;
        }
    }
    let reference = sgd_steps(&Device::Cpu)?;
    let test = sgd_steps(&dev)?;
    for (i, (t, r)) in test.iter().zip(&reference).enumerate() {
        row("paper sgd", &format!("step {}", i + 1), Some(t), Some(r))?;
    }
    match super::bench_input_check::input_pairs(&dev)? {
        Some(pairs) => {
            for (i, (t, r)) in pairs.iter().enumerate() {
                row(
                    "u8 input on the device",
                    &format!("batch {}", i + 1),
                    Some(t),
                    Some(r),
                )?;
            }
        }
        None => println!(
            "u8 input on the device: not used on {} (the loader's f32 path)",
            args.device
        ),
    }
    if failed > 0 {
        println!("FAIL: {failed} of {total} quantities outside the tolerance");
        std::process::exit(1);
    }
    println!("PASS: {total} quantities within the tolerance");
    Ok(())
}
