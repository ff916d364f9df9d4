//! `cargo xtask bench train-step`: images/s of one training step (forward,
//! cross-entropy, backward, the paper's SGD update) on synthetic data that
//! is already in memory. The last line is `<rate> images/s`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use model::candle_core::{self, Device, Tensor};
use model::candle_nn::{self, VarMap};
use model::{AlexNet, AlexNetConfig, ForwardMode, Init, PaperSgd, Placement};

/// Default of `--model`.
const DEFAULT_MODEL: &str = "alexnet";
/// Default of `--batch-size`.
const DEFAULT_BATCH_SIZE: usize = 32;
/// Default of `--steps`.
const DEFAULT_STEPS: usize = 5;
/// Default of `--warmup`.
const DEFAULT_WARMUP: usize = 1;
/// Default of `--device`.
const DEFAULT_DEVICE: &str = "cpu";
/// Default of `--precision`.
const DEFAULT_PRECISION: &str = "fp32";
/// Default of `--init`.
const DEFAULT_INIT: &str = "paper";
/// Default of `--classes`.
const DEFAULT_CLASSES: usize = 1000;
/// Default of `--layer-reps`.
const DEFAULT_LAYER_REPS: usize = 3;

#[derive(ClapArgs)]
pub struct Args {
    /// `alexnet` (the paper) or `alexnet-small`.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// Images per step.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Timed steps (after the warm-up).
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = DEFAULT_WARMUP)]
    warmup: usize,
    /// Tower placement: `cpu`, `cuda:0`, `cuda:0,cuda:1` (two CUDA towers
    /// run on a stream each).
    #[arg(long, default_value = DEFAULT_DEVICE)]
    device: String,
    /// Precision of `f32` products on CUDA: `fp32` (full float32) or
    /// `tf32` (tensor cores in cuBLAS and cuDNN).
    #[arg(long, default_value = DEFAULT_PRECISION)]
    precision: model::Precision,
    /// Parameter initialisation: `paper` or `pytorch`.
    #[arg(long, default_value = DEFAULT_INIT)]
    init: Init,
    /// Number of classes (fc8 outputs).
    #[arg(long, default_value_t = DEFAULT_CLASSES)]
    classes: usize,
    /// The half-width single-tower baseline instead of two towers.
    #[arg(long)]
    single_tower: bool,
    /// Print a per-layer forward/backward breakdown before the rate.
    #[arg(long)]
    layers: bool,
    /// Repetitions per layer for `--layers` (median is reported).
    #[arg(long, default_value_t = DEFAULT_LAYER_REPS)]
    layer_reps: usize,
    /// Run every layer with stock Candle operations instead of the custom ones.
    #[arg(long)]
    stock_ops: bool,
    /// Time forward+loss, backward and SGD separately (a device
    /// synchronisation after each). Always on for CPU placements; on CUDA
    /// the default times the steps back to back, as PyTorch's loop does.
    #[arg(long)]
    phases: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn synthetic_batch(
    cfg: &AlexNetConfig,
    batch: usize,
    device: &Device,
) -> anyhow::Result<(Tensor, Tensor)> {
    let s = cfg.input_size;
    // Mean-subtracted pixel scale.
    let images = (Tensor::randn(0f32, 1.0, (batch, 3, s, s), &Device::Cpu)? * 60.0)?;
    let labels: Vec<u32> = (0..batch)
        .map(|i| (i * 7919 % cfg.num_classes) as u32)
        .collect();
    let labels = Tensor::from_vec(labels, batch, &Device::Cpu)?;
    Ok((images.to_device(device)?, labels.to_device(device)?))
}

/// The network `--model`, `--classes` and `--single-tower` ask for.
fn network_config(args: &Args) -> anyhow::Result<AlexNetConfig> {
    let mut cfg = AlexNetConfig::by_name(&args.model, args.classes).with_context(|| {
        format!(
            "unknown model '{}': expected alexnet or alexnet-small",
            args.model
        )
    })?;
    if args.single_tower {
        cfg = cfg.single_tower();
    }
    Ok(cfg)
}

/// The time per step of `n` steps taking `total`, with its phases
/// (forward and loss, backward, SGD) when they were measured.
fn print_per_step(phases: Option<[Duration; 3]>, total: Duration, n: u32, exchanged: usize) {
    match phases {
        Some(phases) => println!(
            "per step: forward+loss {:.0} ms, backward {:.0} ms, sgd {:.0} ms, total {:.0} ms; {exchanged} exchanged bytes per batch",
            ms(phases[0] / n),
            ms(phases[1] / n),
            ms(phases[2] / n),
            ms(total / n),
        ),
        None => println!(
            "per step: total {:.1} ms (steps back to back; --phases for forward/backward/sgd); {exchanged} exchanged bytes per batch",
            ms(total / n),
        ),
    }
}

/// What precision a run's convolutions really have. `--precision` sets
/// the math type of the custom cuDNN convolutions and cuBLAS's flag; Candle's
/// own cuDNN convolution (the stock operations) sets no math type, so cuDNN
/// may use TF32 tensor cores there (Ampere and newer) even at `fp32`,
/// unless `NVIDIA_TF32_OVERRIDE=0` forbids TF32 to the whole process.
pub fn precision_label(
    precision: model::Precision,
    stock_ops: bool,
    on_cuda: bool,
    tf32_override_off: bool,
) -> String {
    match (precision, stock_ops && on_cuda, tf32_override_off) {
        (p, false, _) => p.to_string(),
        (_, true, true) => "fp32: NVIDIA_TF32_OVERRIDE=0 keeps cuDNN and cuBLAS off TF32".into(),
        (model::Precision::Fp32, true, false) => {
            "fp32 matmuls; stock convolutions with cuDNN's default math, which may use TF32".into()
        }
        (model::Precision::Tf32, true, false) => "tf32".into(),
    }
}

/// The first line: what is measured.
fn print_header(args: &Args, net: &AlexNet, cfg: &AlexNetConfig, placement: &Placement) {
    let on_cuda = placement.tower_a.is_cuda() || placement.tower_b.is_cuda();
    let tf32_off = std::env::var("NVIDIA_TF32_OVERRIDE").is_ok_and(|v| v.trim() == "0");
    println!(
        "model {} ({} parameters, {} tower(s)), device {} ({}), batch {}, init {}, {} ops, {} threads",
        args.model,
        net.num_parameters(),
        cfg.num_towers(),
        args.device,
        precision_label(args.precision, args.stock_ops, on_cuda, tf32_off),
        args.batch_size,
        args.init,
        if args.stock_ops {
            "stock candle"
        } else {
            "custom"
        },
        candle_core::utils::get_num_threads(),
    );
}

/// `--layers`: each layer's forward and backward time, and their sums.
fn print_layers(net: &AlexNet, images: &Tensor, reps: usize) -> anyhow::Result<()> {
    let timings = net.profile_layers(images, reps)?;
    println!("per layer (one instance; x = instances in the net), ms:");
    println!(
        "{:<12} {:>9} {:>9} {:>3}",
        "layer", "forward", "backward", "x"
    );
    let (mut f, mut b) = (0.0, 0.0);
    for t in &timings {
        println!(
            "{:<12} {:>9.2} {:>9.2} {:>3}",
            t.name,
            ms(t.forward),
            ms(t.backward),
            t.count
        );
        f += ms(t.forward) * t.count as f64;
        b += ms(t.backward) * t.count as f64;
    }
    println!("{:<12} {:>9.2} {:>9.2}", "sum", f, b);
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch_size == 0 || args.steps == 0 {
        bail!("--batch-size and --steps must be positive");
    }
    let cfg = network_config(&args)?;
    model::use_stock_ops(args.stock_ops);
    let placement = Placement::parse(&args.device)?;
    model::set_precision(args.precision);
    let varmap = VarMap::new();
    let net = AlexNet::new(&varmap, &cfg, &placement, args.init, 1)?;
    let sgd = std::cell::RefCell::new(PaperSgd::new(&varmap, 0.01, 0.9, 5e-4)?);
    let out_dev = net.output_device().clone();
    let (images, labels) = synthetic_batch(&cfg, args.batch_size, &out_dev)?;
    print_header(&args, &net, &cfg, &placement);

    // Both towers' devices (each CUDA tower has its own stream).
    let sync = || -> candle_core::Result<()> {
        placement.tower_a.synchronize()?;
        placement.tower_b.synchronize()
    };
    // One training step; returns the loss (still on the device) and the
    // time of each phase when they are measured (a synchronisation after
    // each; without them a GPU step is timed as a whole).
    let one_step = |step: usize, phased: bool| -> anyhow::Result<(Tensor, [Duration; 3])> {
        let t0 = Instant::now();
        let logits = net.forward(
            &images,
            ForwardMode::Train {
                dropout_seed: step as u64,
            },
        )?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
        if phased {
            sync()?;
        }
        let t1 = Instant::now();
        let grads = loss.backward()?;
        if phased {
            sync()?;
        }
        let t2 = Instant::now();
        sgd.borrow_mut().step(&grads)?;
        drop(grads);
        if phased {
            sync()?;
        }
        Ok((loss, [t1 - t0, t2 - t1, Instant::now() - t2]))
    };
    let check = |step: usize, loss: &Tensor| -> anyhow::Result<()> {
        let loss = loss.to_scalar::<f32>()?;
        if !loss.is_finite() {
            bail!("loss is {loss} at step {step}");
        }
        Ok(())
    };
    // Phases are measured on the CPU (synchronising is free there) and
    // with --phases; otherwise the timed steps run back to back, as
    // PyTorch's loop does, with one synchronisation at the end.
    let cpu_only = placement.tower_a.is_cpu() && placement.tower_b.is_cpu();
    let phased = args.phases || cpu_only;
    for step in 0..args.warmup {
        let (loss, _) = one_step(step, phased)?;
        check(step, &loss)?;
    }
    sync()?;
    let mut phases = [Duration::ZERO; 3];
    let mut losses = Vec::with_capacity(args.steps);
    let start = Instant::now();
    for step in args.warmup..args.warmup + args.steps {
        let (loss, times) = one_step(step, phased)?;
        for (p, t) in phases.iter_mut().zip(times) {
            *p += t;
        }
        if phased {
            check(step, &loss)?;
        }
        losses.push(loss);
    }
    sync()?;
    let total = start.elapsed();
    for (i, loss) in losses.iter().enumerate() {
        check(args.warmup + i, loss)?;
    }
    let exchanged = net.exchanged_bytes(args.batch_size);
    print_per_step(
        phased.then_some(phases),
        total,
        args.steps as u32,
        exchanged,
    );

    if args.layers {
        print_layers(&net, &images, args.layer_reps)?;
    }
    let rate = (args.batch_size * args.steps) as f64 / total.as_secs_f64();
    println!("{rate:.2} images/s");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::precision_label;
    use model::Precision;

    #[test]
    fn stock_ops_on_cuda_are_not_labelled_plain_fp32() {
        assert_eq!(precision_label(Precision::Fp32, false, true, false), "fp32");
        assert_eq!(precision_label(Precision::Fp32, true, false, false), "fp32");
        let stock = precision_label(Precision::Fp32, true, true, false);
        assert!(stock.contains("may use TF32"), "{stock}");
        let forced = precision_label(Precision::Fp32, true, true, true);
        assert!(forced.contains("NVIDIA_TF32_OVERRIDE=0"), "{forced}");
        assert_eq!(precision_label(Precision::Tf32, true, true, false), "tf32");
    }
}
