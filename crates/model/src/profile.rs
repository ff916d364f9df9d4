//! Per-layer forward/backward timing of the network, for benchmarks.
//!
//! Method: tower A's layers are run one at a time, each on the activation it
//! sees in the real network (the previous layer's output; conv3, fc6, fc7
//! and fc8 on the concatenation of both towers, as after the exchange). For
//! each layer, `forward` is the time of the layer alone, and `backward` the
//! time of `backward()` of `sum(y * g)` (g a fixed random upstream gradient)
//! with the layer's input and parameters as variables, minus the time of the
//! same loss's backward on a plain variable of `y`'s shape (the cost of the
//! `sum(y * g)` scaffolding). Times are medians of `reps` runs. Tower B
//! costs the same as tower A: whole-network totals count the tower layers
//! twice (`count` = 2).

use std::time::{Duration, Instant};

use candle_core::{Device, Result, Tensor, Var};

use crate::alexnet::{AlexNet, Conv, Linear};
use crate::config::POOL;
use crate::layers;

/// Timing of one layer.
#[derive(Debug, Clone)]
pub struct LayerTiming {
    /// Layer name, e.g. `conv1+relu1` (fused), `lrn1`, `pool1`, `fc6`.
    pub name: String,
    /// Forward time of one instance (one tower).
    pub forward: Duration,
    /// Backward time of one instance.
    pub backward: Duration,
    /// Instances in the network: 2 for a tower layer of the two-tower net, 1
    /// for fc8 and for the single-tower net.
    pub count: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sync(dev: &Device) -> Result<()> {
    dev.synchronize()
}

/// Times forward and backward of `f` on input `x`.
fn time_layer(
    name: &str,
    count: usize,
    x: &Tensor,
    input_grad: bool,
    reps: usize,
    f: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<(LayerTiming, Tensor)> {
    let dev = x.device().clone();
    let xv = if input_grad {
        Var::from_tensor(x)?.as_tensor().clone()
    } else {
        x.detach()
    };
    let y = f(&xv)?;
    let g = y.randn_like(0.0, 1.0)?;
    let yv = Var::from_tensor(&y.detach())?;
    let (mut fwd, mut bwd, mut base) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        sync(&dev)?;
        let t = Instant::now();
        let y = f(&xv)?;
        sync(&dev)?;
        fwd.push(t.elapsed());
        let loss = (y * &g)?.sum_all()?;
        let t = Instant::now();
        let grads = loss.backward()?;
        sync(&dev)?;
        bwd.push(t.elapsed());
        drop(grads);
        let loss = (yv.as_tensor() * &g)?.sum_all()?;
        let t = Instant::now();
        let grads = loss.backward()?;
        sync(&dev)?;
        base.push(t.elapsed());
        drop(grads);
    }
    let backward = median(bwd).saturating_sub(median(base));
    Ok((
        LayerTiming {
            name: name.to_string(),
            forward: median(fwd),
            backward,
            count,
        },
        y.detach(),
    ))
}

impl AlexNet {
    /// Times each layer's forward and backward on `images` (see the module
    /// documentation for the method). Dropout is not timed (a mask multiply).
    pub fn profile_layers(&self, images: &Tensor, reps: usize) -> Result<Vec<LayerTiming>> {
        let reps = reps.max(1);
        let t = &self.towers[0];
        let towers = self.towers.len();
        let lrn = self.cfg.lrn;
        let (pk, ps) = POOL;
        let mut out = Vec::new();
        let x = images.to_device(&t.device)?;
        let mut step = |name: &str,
                        count: usize,
                        x: &Tensor,
                        input_grad: bool,
                        f: &dyn Fn(&Tensor) -> Result<Tensor>|
         -> Result<Tensor> {
            let (timing, y) = time_layer(name, count, x, input_grad, reps, f)?;
            out.push(timing);
            Ok(y)
        };
        let act = self.cfg.activation;
        let conv = |c: &Conv, input_grad: bool| {
            let c = c.clone();
            move |x: &Tensor| c.forward_act(x, act, input_grad)
        };
        let lin = |l: &Linear| {
            let l = l.clone();
            move |x: &Tensor| l.forward(x)
        };
        let relu = move |x: &Tensor| layers::activate(x, act);
        let norm_pool = move |x: &Tensor| layers::lrn_max_pool(x, &lrn, pk, ps);
        let pool = move |x: &Tensor| layers::max_pool_overlapping(x, pk, ps);
        // Both towers' activations as after an exchange (tower A's twice:
        // same shapes and costs).
        let both = |x: &Tensor| -> Result<Tensor> {
            if towers == 2 {
                Tensor::cat(&[x, x], 1)
            } else {
                Ok(x.clone())
            }
        };

        let y = step("conv1+relu1", towers, &x, false, &conv(&t.conv1, false))?;
        let y = step("lrn1+pool1", towers, &y, true, &norm_pool)?;
        let y = step("conv2+relu2", towers, &y, true, &conv(&t.conv2, true))?;
        let y = step("lrn2+pool2", towers, &y, true, &norm_pool)?;
        let y = step(
            "conv3+relu3",
            towers,
            &both(&y)?,
            true,
            &conv(&t.conv3, true),
        )?;
        let y = step("conv4+relu4", towers, &y, true, &conv(&t.conv4, true))?;
        let y = step("conv5+relu5", towers, &y, true, &conv(&t.conv5, true))?;
        let y = step("pool5", towers, &y, true, &pool)?.flatten_from(1)?;
        let y = step("fc6", towers, &both(&y)?, true, &lin(&t.fc6))?;
        let y = step("relu6", towers, &y, true, &relu)?;
        let y = step("fc7", towers, &both(&y)?, true, &lin(&t.fc7))?;
        let y = step("relu7", towers, &y, true, &relu)?;
        let fc8 = self.fc8.clone();
        step("fc8", 1, &both(&y)?, true, &move |x: &Tensor| {
            fc8.forward(x)
        })?;
        Ok(out)
    }
}
