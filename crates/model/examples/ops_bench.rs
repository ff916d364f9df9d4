//! Forward and backward time of the custom ops against stock Candle at the
//! paper's AlexNet shapes (one tower, batch 32 by default), in one run.
//!
//! `cargo run --release -p model --example ops_bench -- [batch] [repeats] [name filter] [--ours-only]`
//!
//! Backward is the time of `loss.backward()` with `loss = y.sum_all()`: the
//! op's backward plus Candle's gradient bookkeeping, as in a train step.
//! Times are medians over `repeats` runs after one warm-up run.

use candle_core::{Device, Result, Tensor, Var};
use model::ops::{self, LrnConfig};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn randn(shape: &[usize], std: f64) -> Result<Tensor> {
    Tensor::randn(0f32, std as f32, shape, &Device::Cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (forward ms, backward ms) of `f` on `inputs`; `tracked[i]` makes input `i`
/// a variable (gradient wanted).
fn time<F>(f: F, inputs: &[Tensor], tracked: &[bool], repeats: usize) -> Result<(f64, f64)>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let mut fwd = Vec::new();
    let mut bwd = Vec::new();
    for rep in 0..=repeats {
        let args: Vec<Tensor> = inputs
            .iter()
            .zip(tracked)
            .map(|(t, &tr)| {
                if tr {
                    Var::from_tensor(t).map(|v| v.as_tensor().clone())
                } else {
                    Ok(t.clone())
                }
            })
            .collect::<Result<_>>()?;
        let t0 = Instant::now();
        let y = f(&args)?;
        let t1 = Instant::now();
        let grads = y.sum_all()?.backward()?;
        let t2 = Instant::now();
        drop(grads);
        if rep > 0 {
            fwd.push((t1 - t0).as_secs_f64() * 1e3);
            bwd.push((t2 - t1).as_secs_f64() * 1e3);
        }
    }
    Ok((median(fwd), median(bwd)))
}

struct Row {
    name: String,
    shape: String,
    ours: (f64, f64),
    stock: Option<(f64, f64)>,
}

fn print(rows: &[Row]) {
    println!("| op | input (one tower) | ours fwd ms | ours bwd ms | stock fwd ms | stock bwd ms | bwd speed-up |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let (mut ours_total, mut stock_total) = (0.0, 0.0);
    for r in rows {
        ours_total += r.ours.0 + r.ours.1;
        let (sf, sb, speed) = match r.stock {
            Some((f, b)) => {
                stock_total += f + b;
                (
                    format!("{f:.1}"),
                    format!("{b:.1}"),
                    format!("{:.1}x", b / r.ours.1),
                )
            }
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {:.1} | {:.1} | {sf} | {sb} | {speed} |",
            r.name, r.shape, r.ours.0, r.ours.1
        );
    }
    println!("| total fwd+bwd, one tower | | {ours_total:.0} | | {stock_total:.0} | | |");
}

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(32);
    let repeats = args.get(1).copied().unwrap_or(3);
    // Optional non-numeric argument: run only the ops whose name contains it.
    let filter = std::env::args()
        .skip(1)
        .find(|a| a.parse::<usize>().is_err() && !a.starts_with("--"))
        .unwrap_or_default();
    // `--ours-only` skips the (slow) stock Candle reference.
    let ours_only = std::env::args().any(|a| a == "--ours-only");
    let wanted = |name: &str| name.contains(filter.as_str());
    println!(
        "batch {n}, {} rayon threads, median of {repeats}",
        rayon::current_num_threads()
    );
    let mut rows = Vec::new();

    // name, C, H, O, k, stride, pad, input_grad
    let convs = [
        ("conv1", 3, 224, 48, 11, 4, 2, false),
        ("conv2", 48, 27, 128, 5, 1, 2, true),
        ("conv3", 256, 13, 192, 3, 1, 1, true),
        ("conv4", 192, 13, 192, 3, 1, 1, true),
        ("conv5", 192, 13, 128, 3, 1, 1, true),
    ];
    for (name, c, h, o, k, s, p, input_grad) in convs {
        if !wanted(name) {
            continue;
        }
        let x = randn(&[n, c, h, h], 1.0)?;
        let w = randn(&[o, c, k, k], 0.01)?;
        let b = randn(&[o], 0.01)?;
        let tracked = [input_grad, true, true];
        let ours = time(
            |t| ops::conv2d(&t[0], &t[1], &t[2], s, p, input_grad),
            &[x.clone(), w.clone(), b.clone()],
            &tracked,
            repeats,
        )?;
        // Candle's conv backward fails unless the stride tiles the padded
        // input exactly; conv1 uses the equivalent 227x227 input, no padding.
        let (xs, ps) = if (h + 2 * p - k) % s == 0 {
            (x, p)
        } else {
            (randn(&[n, c, 227, 227], 1.0)?, 0)
        };
        let stock = (!ours_only)
            .then(|| {
                time(
                    |t| ops::conv2d_stock(&t[0], &t[1], &t[2], s, ps),
                    &[xs, w, b],
                    &tracked,
                    repeats,
                )
            })
            .transpose()?;
        rows.push(Row {
            name: name.into(),
            shape: format!("{n}x{c}x{h}x{h} -> {o}, {k}x{k}/{s}"),
            ours,
            stock,
        });
    }

    let cfg = LrnConfig::default();
    for (name, c, h) in [("lrn1", 48, 55), ("lrn2", 128, 27)] {
        if !wanted(name) {
            continue;
        }
        let x = randn(&[n, c, h, h], 1.0)?;
        let ours = time(
            |t| ops::lrn(&t[0], &cfg),
            std::slice::from_ref(&x),
            &[true],
            repeats,
        )?;
        let stock = (!ours_only)
            .then(|| time(|t| ops::lrn_stock(&t[0], &cfg), &[x], &[true], repeats))
            .transpose()?;
        rows.push(Row {
            name: name.into(),
            shape: format!("{n}x{c}x{h}x{h}"),
            ours,
            stock,
        });
    }

    for (name, c, h) in [("pool1", 48, 55), ("pool2", 128, 27), ("pool5", 128, 13)] {
        if !wanted(name) {
            continue;
        }
        let x = randn(&[n, c, h, h], 1.0)?;
        let ours = time(
            |t| ops::max_pool_overlapping(&t[0], 3, 2),
            std::slice::from_ref(&x),
            &[true],
            repeats,
        )?;
        // Stock Candle has no overlapping max-pool backward: the comparison is
        // the stock-op composition used off the CPU.
        let stock = (!ours_only)
            .then(|| {
                time(
                    |t| ops::max_pool_overlapping_stock(&t[0], 3, 2),
                    &[x],
                    &[true],
                    repeats,
                )
            })
            .transpose()?;
        rows.push(Row {
            name: name.into(),
            shape: format!("{n}x{c}x{h}x{h}, 3x3/2"),
            ours,
            stock,
        });
    }

    for (name, i, o) in [
        ("fc6", 9216, 2048),
        ("fc7", 4096, 2048),
        ("fc8", 4096, 1000),
    ] {
        if !wanted(name) {
            continue;
        }
        let x = randn(&[n, i], 1.0)?;
        let w = randn(&[i, o], 0.01)?;
        let b = randn(&[o], 0.01)?;
        let inputs = [x, w, b];
        let ours = time(
            |t| ops::linear(&t[0], &t[1], &t[2]),
            &inputs,
            &[true; 3],
            repeats,
        )?;
        let stock = (!ours_only)
            .then(|| {
                time(
                    |t| ops::linear_stock(&t[0], &t[1], &t[2]),
                    &inputs,
                    &[true; 3],
                    repeats,
                )
            })
            .transpose()?;
        rows.push(Row {
            name: name.into(),
            shape: format!("{n}x{i} -> {o}"),
            ours,
            stock,
        });
    }
    print(&rows);
    Ok(())
}
