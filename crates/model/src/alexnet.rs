//! The paper's two-tower AlexNet.
//!
//! # Structure (per tower, widths for `alexnet`)
//! ```text
//! conv1 48 11x11/4 pad 2 -> ReLU -> LRN -> pool 3/2      own tower
//! conv2 128 5x5 pad 2    -> ReLU -> LRN -> pool 3/2      own tower
//! == exchange ==                                          conv3 reads both towers
//! conv3 192 3x3 pad 1    -> ReLU
//! conv4 192 3x3 pad 1    -> ReLU                          own tower
//! conv5 128 3x3 pad 1    -> ReLU -> pool 3/2              own tower
//! == exchange ==                                          fc6 reads both towers
//! fc6 2048 -> ReLU -> dropout
//! == exchange ==                                          fc7 reads both towers
//! fc7 2048 -> ReLU -> dropout
//! == exchange (tower B's fc7 output to tower A) ==
//! fc8 num_classes, on tower A, reads the concatenation [A | B] of both fc7 outputs
//! ```
//! Activations cross between the towers in `AlexNet::exchange` and nowhere
//! else. Concatenations are always ordered tower A first, then tower B.
//!
//! # Parameter names and layouts (and the PyTorch equivalent)
//! For `T` in `tower_a`, `tower_b`:
//!
//! | name | shape (alexnet) | layout |
//! |---|---|---|
//! | `T.conv1.weight` | `[48, 3, 11, 11]` | `[out, in, kh, kw]` (as PyTorch) |
//! | `T.conv2.weight` | `[128, 48, 5, 5]` | |
//! | `T.conv3.weight` | `[192, 256, 3, 3]` | input channels: A's 128, then B's 128 |
//! | `T.conv4.weight` | `[192, 192, 3, 3]` | |
//! | `T.conv5.weight` | `[128, 192, 3, 3]` | |
//! | `T.convK.bias` | `[out]` | |
//! | `T.fc6.weight` | `[9216, 2048]` | `[in, out]` (transposed w.r.t. PyTorch); input = A's flattened pool5 (c, y, x order) then B's |
//! | `T.fc7.weight` | `[4096, 2048]` | `[in, out]`; input = A's fc6 then B's |
//! | `T.fcK.bias` | `[2048]` | |
//! | `fc8.weight` | `[4096, num_classes]` | `[in, out]`; input = A's fc7 then B's |
//! | `fc8.bias` | `[num_classes]` | |
//!
//! A single-module PyTorch model of the same net (`groups=2` for conv2, conv4,
//! conv5; plain layers for conv1, whose towers both read the whole image,
//! and for conv3, fc6, fc7, fc8) gets:
//! - every conv (grouped or not) and fc6, fc7: the two towers' tensors
//!   concatenated along dim 0, tower A first: `conv2.weight =
//!   cat([A.conv2.weight, B.conv2.weight], 0)` (96/256/384/384/256 output
//!   channels), `fc6.weight = cat([A.fc6.weight.T, B.fc6.weight.T], 0)`,
//!   biases likewise;
//! - fc8: `fc8.weight = fc8.weight.T`, `fc8.bias` unchanged;
//! - LRN must then be applied to each half of the channels separately
//!   (`torch.nn.LocalResponseNorm` on the whole 96 channels would let the
//!   window cross from tower A into tower B).
//!
//! With two explicit towers in PyTorch (as `scripts/reference/alexnet_torch.py`),
//! the names are the same and only the fc weights are transposed.

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Activation, AlexNetConfig, CONV1, CONV2, CONV345, POOL};
use crate::init::{init_tensor, Init, ParamKind};
use crate::layers;
use crate::placement::Placement;

/// Training (dropout on, masks from a seeded RNG) or evaluation (deterministic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// Dropout active. The masks are drawn on the CPU from ChaCha8 seeded with
    /// `dropout_seed` (one stream per layer and tower), then moved to the
    /// tower's device: the same seed gives the same masks on any device.
    Train {
        /// Seed of this forward pass's dropout masks (e.g. derived from the step).
        dropout_seed: u64,
    },
    /// No dropout: outputs are a deterministic function of the input.
    Eval,
}

/// One parameter as created: name, shape, fan-in, initialisation kind, tower.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// Stable name in the VarMap, e.g. `tower_a.conv1.weight`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Fan-in of its layer (for the PyTorch initialisation).
    pub fan_in: usize,
    /// 0 for tower A (and fc8), 1 for tower B.
    pub tower: usize,
    pub(crate) kind: ParamKind,
}

/// The parameters of a configuration in their fixed creation order.
pub fn parameter_specs(cfg: &AlexNetConfig) -> Vec<ParamSpec> {
    let ct = cfg.tower_conv_channels();
    let towers = cfg.num_towers();
    // conv3 reads both towers (in the two-tower net): 2x its tower's conv2 width.
    let conv3_in = ct[1] * towers;
    let fc6_in = cfg.fc6_in_per_tower() * towers;
    let fct = cfg.tower_fc_width();
    let fc_in = fct * towers;
    // (layer, weight shape, fan_in, bias 1 in the paper)
    let layers: [(&str, Vec<usize>, usize, bool); 7] = [
        (
            "conv1",
            vec![ct[0], 3, CONV1.0, CONV1.0],
            3 * CONV1.0 * CONV1.0,
            false,
        ),
        (
            "conv2",
            vec![ct[1], ct[0], CONV2.0, CONV2.0],
            ct[0] * CONV2.0 * CONV2.0,
            true,
        ),
        (
            "conv3",
            vec![ct[2], conv3_in, CONV345.0, CONV345.0],
            conv3_in * 9,
            false,
        ),
        (
            "conv4",
            vec![ct[3], ct[2], CONV345.0, CONV345.0],
            ct[2] * 9,
            true,
        ),
        (
            "conv5",
            vec![ct[4], ct[3], CONV345.0, CONV345.0],
            ct[3] * 9,
            true,
        ),
        ("fc6", vec![fc6_in, fct], fc6_in, true),
        ("fc7", vec![fc_in, fct], fc_in, true),
    ];
    let mut specs = Vec::new();
    for (t, tower) in ["tower_a", "tower_b"].iter().enumerate().take(towers) {
        for (layer, wshape, fan_in, one) in &layers {
            let out = if layer.starts_with("fc") {
                wshape[1]
            } else {
                wshape[0]
            };
            specs.push(ParamSpec {
                name: format!("{tower}.{layer}.weight"),
                shape: wshape.clone(),
                fan_in: *fan_in,
                tower: t,
                kind: ParamKind::Weight,
            });
            specs.push(ParamSpec {
                name: format!("{tower}.{layer}.bias"),
                shape: vec![out],
                fan_in: *fan_in,
                tower: t,
                kind: ParamKind::Bias { paper_one: *one },
            });
        }
    }
    specs.push(ParamSpec {
        name: "fc8.weight".into(),
        shape: vec![fc_in, cfg.num_classes],
        fan_in: fc_in,
        tower: 0,
        kind: ParamKind::Weight,
    });
    specs.push(ParamSpec {
        name: "fc8.bias".into(),
        shape: vec![cfg.num_classes],
        fan_in: fc_in,
        tower: 0,
        kind: ParamKind::Bias { paper_one: false },
    });
    specs
}

/// A convolution's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    w: Tensor,
    b: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// The convolution followed by its non-linearity (every convolution of
    /// the net has one); ReLU is fused into the convolution.
    pub(crate) fn forward_act(
        &self,
        x: &Tensor,
        activation: Activation,
        input_grad: bool,
    ) -> Result<Tensor> {
        match activation {
            Activation::Relu => {
                layers::conv2d_relu(x, &self.w, &self.b, self.stride, self.padding, input_grad)
            }
            Activation::Tanh => {
                layers::conv2d(x, &self.w, &self.b, self.stride, self.padding, input_grad)?.tanh()
            }
        }
    }
}

/// A fully connected layer's parameters (weights `[in, out]`).
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layers::linear(x, &self.w, &self.b)
    }
}

/// One tower's layers and its device.
#[derive(Debug, Clone)]
pub(crate) struct Tower {
    pub(crate) device: Device,
    pub(crate) conv1: Conv,
    pub(crate) conv2: Conv,
    pub(crate) conv3: Conv,
    pub(crate) conv4: Conv,
    pub(crate) conv5: Conv,
    pub(crate) fc6: Linear,
    pub(crate) fc7: Linear,
}

/// The paper's AlexNet (two towers) or its single-tower half-width baseline.
#[derive(Debug)]
pub struct AlexNet {
    pub(crate) cfg: AlexNetConfig,
    pub(crate) towers: Vec<Tower>,
    pub(crate) fc8: Linear,
    /// Bytes moved by `AlexNet::exchange` during the last forward pass.
    last_exchanged: AtomicUsize,
    /// Which rows of the global batch this network's batches hold (for
    /// the dropout masks).
    rows: BatchRows,
}

/// Which rows of a global batch a network's input holds: local row `j` is
/// global row `first + j * stride`. Dropout masks are drawn per global
/// row, so data-parallel ranks that each hold a share of a batch draw
/// exactly the masks one process drawing the whole batch would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRows {
    /// Global row of local row 0.
    pub first: usize,
    /// Global rows between consecutive local rows.
    pub stride: usize,
}

impl Default for BatchRows {
    /// The whole batch: local row `j` is global row `j`.
    fn default() -> Self {
        Self {
            first: 0,
            stride: 1,
        }
    }
}

/// Identifies the dropout layer for the mask streams.
#[derive(Clone, Copy)]
enum DropoutLayer {
    Fc6 = 0,
    Fc7 = 1,
}

impl AlexNet {
    /// Creates every parameter in `varmap` with stable names
    /// (`tower_a.conv1.weight`, ..., `tower_b.fc7.bias`, `fc8.weight`,
    /// `fc8.bias`; see the module documentation), initialised with `init`
    /// from `seed` on the CPU (ChaCha8, one stream per parameter) and then
    /// moved to its tower's device (fc8: tower A's).
    ///
    /// A name already present in `varmap` with the right shape is reused
    /// as is (not re-initialised), as `VarMap::get` does; a wrong shape is
    /// an error.
    pub fn new(
        varmap: &VarMap,
        cfg: &AlexNetConfig,
        placement: &Placement,
        init: Init,
        seed: u64,
    ) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let devices = [&placement.tower_a, &placement.tower_b];
        let mut vars = std::collections::HashMap::new();
        {
            let mut data = varmap.data().lock().expect("VarMap lock poisoned");
            for (i, spec) in parameter_specs(cfg).into_iter().enumerate() {
                let dev = devices[spec.tower];
                let var = match data.get(&spec.name) {
                    Some(existing) => {
                        if existing.dims() != spec.shape.as_slice() {
                            candle_core::bail!(
                                "parameter {} exists in the VarMap with shape {:?}, the configuration needs {:?}",
                                spec.name,
                                existing.dims(),
                                spec.shape
                            );
                        }
                        existing.clone()
                    }
                    None => {
                        let t = init_tensor(
                            init,
                            spec.kind,
                            &spec.shape,
                            spec.fan_in,
                            seed,
                            i as u64,
                            dev,
                        )?;
                        let var = Var::from_tensor(&t)?;
                        data.insert(spec.name.clone(), var.clone());
                        var
                    }
                };
                vars.insert(spec.name, var.as_tensor().clone());
            }
        }
        let take = |name: String| -> Result<Tensor> {
            vars.get(&name)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("missing parameter {name}")))
        };
        let conv =
            |t: &str, l: &str, (_, stride, padding): (usize, usize, usize)| -> Result<Conv> {
                Ok(Conv {
                    w: take(format!("{t}.{l}.weight"))?,
                    b: take(format!("{t}.{l}.bias"))?,
                    stride,
                    padding,
                })
            };
        let linear = |prefix: &str| -> Result<Linear> {
            Ok(Linear {
                w: take(format!("{prefix}.weight"))?,
                b: take(format!("{prefix}.bias"))?,
            })
        };
        let mut towers = Vec::new();
        for (t, name) in ["tower_a", "tower_b"]
            .iter()
            .enumerate()
            .take(cfg.num_towers())
        {
            towers.push(Tower {
                device: devices[t].clone(),
                conv1: conv(name, "conv1", CONV1)?,
                conv2: conv(name, "conv2", CONV2)?,
                conv3: conv(name, "conv3", CONV345)?,
                conv4: conv(name, "conv4", CONV345)?,
                conv5: conv(name, "conv5", CONV345)?,
                fc6: linear(&format!("{name}.fc6"))?,
                fc7: linear(&format!("{name}.fc7"))?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            towers,
            fc8: linear("fc8")?,
            last_exchanged: AtomicUsize::new(0),
            rows: BatchRows::default(),
        })
    }

    /// The configuration the network was built with.
    pub fn config(&self) -> &AlexNetConfig {
        &self.cfg
    }

    /// Device of the logits (tower A's).
    pub fn output_device(&self) -> &Device {
        &self.towers[0].device
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        parameter_specs(&self.cfg)
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }

    /// images: f32 `[N, 3, S, S]` (S = `input_size`) on any device; each
    /// tower gets a copy on its device. Returns logits `[N, num_classes]`
    /// on tower A's device.
    pub fn forward(&self, images: &Tensor, mode: ForwardMode) -> Result<Tensor> {
        let fc7 = self.hidden(images, mode)?;
        // fc8 reads both towers, on tower A.
        let x = self.exchange(&fc7, true)?;
        self.fc8.forward(&x[0])
    }

    /// The last hidden layer's activations (fc7, after its non-linearity,
    /// no dropout) of `images` `[N, 3, S, S]`: `[N, fc_width]` on tower A's
    /// device, tower A's units first, then tower B's (the input of fc8).
    /// The features of the paper's Figure 4 (right).
    pub fn fc7_features(&self, images: &Tensor) -> Result<Tensor> {
        let fc7 = self.hidden(images, ForwardMode::Eval)?;
        let dev = self.output_device();
        let parts = fc7
            .iter()
            .map(|t| t.to_device(dev))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 1)
    }

    /// Everything up to fc7 (after its non-linearity and dropout): one
    /// `[N, fc_width / towers]` tensor per tower, on its device.
    fn hidden(&self, images: &Tensor, mode: ForwardMode) -> Result<Vec<Tensor>> {
        layers::expect_f32(images, "images")?;
        let (n, c, h, w) = images.dims4()?;
        let s = self.cfg.input_size;
        if c != 3 || h != s || w != s {
            candle_core::bail!("images must be [N, 3, {s}, {s}], got [{n}, {c}, {h}, {w}]");
        }
        self.last_exchanged.store(0, Ordering::Relaxed);
        let lrn = self.cfg.lrn;
        let act = self.cfg.activation;
        let (pk, ps) = POOL;

        // conv1, conv2: each tower on its own.
        let mut h: Vec<Tensor> = Vec::with_capacity(self.towers.len());
        for t in &self.towers {
            let x = images.to_device(&t.device)?;
            let y = t.conv1.forward_act(&x, act, false)?;
            let y = layers::lrn_max_pool(&y, &lrn, pk, ps)?;
            let y = t.conv2.forward_act(&y, act, true)?;
            h.push(layers::lrn_max_pool(&y, &lrn, pk, ps)?);
        }
        // conv3 reads both towers.
        let h = self.exchange(&h, false)?;
        let mut flat = Vec::with_capacity(self.towers.len());
        for (t, x) in self.towers.iter().zip(&h) {
            let y = t.conv3.forward_act(x, act, true)?;
            let y = t.conv4.forward_act(&y, act, true)?;
            let y = t.conv5.forward_act(&y, act, true)?;
            flat.push(layers::max_pool_overlapping(&y, pk, ps)?.flatten_from(1)?);
        }
        // fc6 reads both towers.
        let x = self.exchange(&flat, false)?;
        let mut fc6 = Vec::with_capacity(self.towers.len());
        for (i, (t, x)) in self.towers.iter().zip(&x).enumerate() {
            let y = layers::activate(&t.fc6.forward(x)?, act)?;
            fc6.push(self.dropout(&y, mode, DropoutLayer::Fc6, i)?);
        }
        // fc7 reads both towers.
        let x = self.exchange(&fc6, false)?;
        let mut fc7 = Vec::with_capacity(self.towers.len());
        for (i, (t, x)) in self.towers.iter().zip(&x).enumerate() {
            let y = layers::activate(&t.fc7.forward(x)?, act)?;
            fc7.push(self.dropout(&y, mode, DropoutLayer::Fc7, i)?);
        }
        Ok(fc7)
    }

    /// THE place where activations cross between the towers.
    ///
    /// `parts[i]` is tower i's activation `[N, ...]` on its device. Returns,
    /// for each destination tower (only tower A if `only_to_a`), the
    /// concatenation `[A | B]` along dimension 1 on that tower's device.
    /// Every tensor that goes from one tower to the other is counted in
    /// bytes, whether or not the two devices are physically distinct
    /// (on one device the move is free, but the count is the paper's
    /// inter-GPU traffic). With one tower it returns `parts` unchanged.
    fn exchange(&self, parts: &[Tensor], only_to_a: bool) -> Result<Vec<Tensor>> {
        if parts.len() == 1 {
            return Ok(parts.to_vec());
        }
        let destinations = if only_to_a { 1 } else { self.towers.len() };
        let mut out = Vec::with_capacity(destinations);
        for (dst, tower) in self.towers.iter().enumerate().take(destinations) {
            let mut here = Vec::with_capacity(parts.len());
            for (src, part) in parts.iter().enumerate() {
                if src == dst {
                    here.push(part.clone());
                } else {
                    let bytes = part.elem_count() * part.dtype().size_in_bytes();
                    self.last_exchanged.fetch_add(bytes, Ordering::Relaxed);
                    here.push(part.to_device(&tower.device)?);
                }
            }
            out.push(Tensor::cat(&here, 1)?);
        }
        Ok(out)
    }

    /// Bytes of activations that cross between the towers for a batch of
    /// `batch` images (f32): into conv3 (each tower's pool2 output to the
    /// other), fc6 (each tower's flattened pool5), fc7 (each tower's fc6) and
    /// fc8 (tower B's fc7 to tower A). 0 for the single-tower net. Gradients
    /// cross back in backward by the same amount.
    pub fn exchanged_bytes(&self, batch: usize) -> usize {
        if self.cfg.num_towers() == 1 {
            return 0;
        }
        let f = DType::F32.size_in_bytes();
        let p2 = self.cfg.spatial_sizes().pool2;
        let conv3 = 2 * self.cfg.tower_conv_channels()[1] * p2 * p2;
        let fc6 = 2 * self.cfg.fc6_in_per_tower();
        let fc7 = 2 * self.cfg.tower_fc_width();
        let fc8 = self.cfg.tower_fc_width();
        batch * (conv3 + fc6 + fc7 + fc8) * f
    }

    /// Bytes that crossed between the towers in the last forward pass
    /// (counted by `AlexNet::exchange`).
    pub fn last_exchanged_bytes(&self) -> usize {
        self.last_exchanged.load(Ordering::Relaxed)
    }

    /// Declares which rows of the global batch this network's batches hold
    /// (data parallelism; rank `r` of `w` holds rows `r, r + w, ...`); the
    /// default is the whole batch.
    pub fn with_batch_rows(mut self, rows: BatchRows) -> Self {
        self.rows = rows;
        self
    }

    /// Inverted dropout (kept units scaled by 1/(1-p)) in training mode;
    /// identity in evaluation mode or when p = 0. Global row `i` of a
    /// `[N, F]` input takes words `i*F..(i+1)*F` of the layer's stream, so
    /// a row's mask does not depend on which other rows are present.
    fn dropout(
        &self,
        x: &Tensor,
        mode: ForwardMode,
        layer: DropoutLayer,
        tower: usize,
    ) -> Result<Tensor> {
        let p = self.cfg.dropout;
        let seed = match mode {
            ForwardMode::Eval => return Ok(x.clone()),
            ForwardMode::Train { .. } if p == 0.0 => return Ok(x.clone()),
            ForwardMode::Train { dropout_seed } => dropout_seed,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream((layer as u64) * 2 + tower as u64);
        let scale = 1.0 / (1.0 - p);
        let (n, features) = x.dims2()?;
        let mut mask = Vec::with_capacity(n * features);
        for j in 0..n {
            let row = self.rows.first + j * self.rows.stride;
            // One `u32` word per `f32` draw.
            rng.set_word_pos((row * features) as u128);
            mask.extend((0..features).map(|_| if rng.random::<f32>() < p { 0.0 } else { scale }));
        }
        let mask = Tensor::from_vec(mask, x.shape(), &Device::Cpu)?.to_device(x.device())?;
        x.mul(&mask)
    }
}

/// Checks that the configuration's parameters exist in a VarMap with the
/// right shapes (e.g. after `varmap.load`), naming the first problem.
pub fn check_varmap(varmap: &VarMap, cfg: &AlexNetConfig) -> Result<()> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    for spec in parameter_specs(cfg) {
        match data.get(&spec.name) {
            None => candle_core::bail!("parameter {} is missing", spec.name),
            Some(v) if v.dims() != spec.shape.as_slice() => candle_core::bail!(
                "parameter {} has shape {:?}, expected {:?}",
                spec.name,
                v.dims(),
                spec.shape
            ),
            Some(_) => {}
        }
    }
    Ok(())
}
