//! Network configurations: the paper's `alexnet`, the quarter-width
//! `alexnet-small`, and the single-tower baseline.

use crate::LrnConfig;

/// How many towers the network has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Towers {
    /// The paper's network: two towers (one per GPU in 2012) that exchange
    /// activations only into conv3, fc6, fc7 and fc8.
    Two,
    /// The paper's "half-width" single-GPU baseline: ONE tower with the
    /// per-tower widths (half of every total in [`AlexNetConfig`]), no
    /// exchange. Its parameters are named `tower_a.*` and `fc8.*`.
    One,
}

/// The non-linearity after every convolution and after fc6 and fc7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `max(x, 0)`: the paper's rectified linear units (fused into the
    /// convolutions on the CPU).
    #[default]
    Relu,
    /// `tanh(x)`: the saturating non-linearity the paper compares ReLUs
    /// against (its Figure 1). Stock Candle `tanh` after an unfused
    /// convolution.
    Tanh,
}

impl Activation {
    /// `relu` or `tanh`.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Activation {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "relu" => Ok(Activation::Relu),
            "tanh" => Ok(Activation::Tanh),
            other => Err(ConfigError::UnknownActivation(other.to_string())),
        }
    }
}

/// Plain configuration of the network.
///
/// Channel and width numbers are totals over both towers: each tower of the
/// two-tower net has half of them.
///
/// # Input size and conv1 padding
/// The paper states 224x224 inputs and 55x55 conv1 maps, which do not agree
/// for an 11x11 stride-4 convolution without padding ((224-11)/4+1 = 54.25).
/// We keep 224 inputs (what the loader crops) and pad conv1 by 2:
/// `(224 + 2*2 - 11)/4 + 1 = 55.25`, floored to 55, the paper's 55x55
/// (the last row/column of padding is not reached by any window). The rest
/// follows: pool 27, conv2 27, pool 13, conv3-5 13, pool 6, so fc6 reads
/// `256 * 6 * 6 = 9216` values, as in the paper.
#[derive(Debug, Clone, PartialEq)]
pub struct AlexNetConfig {
    /// Output channels of conv1..conv5, totals over both towers.
    /// alexnet: `[96, 256, 384, 384, 256]`; alexnet-small: `[24, 64, 96, 96, 64]`.
    pub conv_channels: [usize; 5],
    /// Width of fc6 and fc7, total over both towers (alexnet 4096, small 1024).
    pub fc_width: usize,
    /// Outputs of fc8: the number of classes of the dataset (`classes.tsv`).
    pub num_classes: usize,
    /// Two towers (paper) or the single-tower half-width baseline.
    pub towers: Towers,
    /// Local response normalisation after conv1 and conv2
    /// (k=2, n=5, alpha=1e-4, beta=0.75, `torch.nn.LocalResponseNorm`
    /// convention: alpha is divided by n).
    pub lrn: LrnConfig,
    /// Dropout probability of fc6 and fc7 outputs in training (0.5).
    pub dropout: f32,
    /// Side of the square input image (224; conv1 padding 2 gives 55x55).
    pub input_size: usize,
    /// The non-linearity (ReLU, the paper's).
    pub activation: Activation,
}

/// conv1: 11x11, stride 4, padding 2.
pub(crate) const CONV1: (usize, usize, usize) = (11, 4, 2);
/// conv2: 5x5, stride 1, padding 2.
pub(crate) const CONV2: (usize, usize, usize) = (5, 1, 2);
/// conv3..conv5: 3x3, stride 1, padding 1.
pub(crate) const CONV345: (usize, usize, usize) = (3, 1, 1);
/// Overlapping max-pool: 3x3 windows, stride 2.
pub(crate) const POOL: (usize, usize) = (3, 2);

/// Spatial output size of a convolution or pool.
pub(crate) fn out_size(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (input + 2 * padding - kernel) / stride + 1
}

impl AlexNetConfig {
    /// The paper's network (two towers, conv 96/256/384/384/256, fc 4096).
    pub fn alexnet(num_classes: usize) -> Self {
        Self {
            conv_channels: [96, 256, 384, 384, 256],
            fc_width: 4096,
            num_classes,
            towers: Towers::Two,
            lrn: LrnConfig::default(),
            dropout: 0.5,
            input_size: 224,
            activation: Activation::Relu,
        }
    }

    /// Every conv and fc width divided by 4 (conv 24/64/96/96/64, fc 1024);
    /// same depth, LRN, pooling and towers. For fast CPU runs and tests.
    pub fn alexnet_small(num_classes: usize) -> Self {
        Self {
            conv_channels: [24, 64, 96, 96, 64],
            fc_width: 1024,
            ..Self::alexnet(num_classes)
        }
    }

    /// The tiny configuration of the PyTorch reference fixture (`TINY` in
    /// `scripts/reference/alexnet_torch.py`): the paper's structure with conv
    /// 8/16/16/16/16 in all, fc 32, 5 classes, input 96 (96 -> 23 -> 11 -> 5
    /// -> 2). For correctness checks against the fixture, on any device.
    pub fn reference_tiny() -> Self {
        Self {
            conv_channels: [8, 16, 16, 16, 16],
            fc_width: 32,
            input_size: 96,
            ..Self::alexnet(5)
        }
    }

    /// `"alexnet"` or `"alexnet-small"`; `None` for any other name.
    pub fn by_name(name: &str, num_classes: usize) -> Option<Self> {
        match name {
            "alexnet" => Some(Self::alexnet(num_classes)),
            "alexnet-small" => Some(Self::alexnet_small(num_classes)),
            _ => None,
        }
    }

    /// The same configuration as the single-tower half-width baseline.
    pub fn single_tower(self) -> Self {
        Self {
            towers: Towers::One,
            ..self
        }
    }

    /// Number of towers (1 or 2).
    pub fn num_towers(&self) -> usize {
        match self.towers {
            Towers::Two => 2,
            Towers::One => 1,
        }
    }

    /// Per-tower output channels of conv1..conv5.
    pub fn tower_conv_channels(&self) -> [usize; 5] {
        self.conv_channels.map(|c| c / 2)
    }

    /// Per-tower width of fc6 and fc7.
    pub fn tower_fc_width(&self) -> usize {
        self.fc_width / 2
    }

    /// Spatial sizes (side of the square map) after conv1, pool1, pool2 and pool5.
    /// conv2..conv5 keep the size of their input.
    pub fn spatial_sizes(&self) -> SpatialSizes {
        let conv1 = out_size(self.input_size, CONV1.0, CONV1.1, CONV1.2);
        let pool1 = out_size(conv1, POOL.0, POOL.1, 0);
        let pool2 = out_size(pool1, POOL.0, POOL.1, 0);
        let pool5 = out_size(pool2, POOL.0, POOL.1, 0);
        SpatialSizes {
            conv1,
            pool1,
            pool2,
            pool5,
        }
    }

    /// Inputs of fc6 per tower's half of the conv5 output: `C5/2 * pool5^2`.
    pub(crate) fn fc6_in_per_tower(&self) -> usize {
        let s = self.spatial_sizes().pool5;
        self.tower_conv_channels()[4] * s * s
    }

    /// Checks that the widths split evenly into towers and that the input
    /// survives every layer (each pool needs a map of at least 3x3, so the
    /// smallest input is 63x63).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, &c) in self.conv_channels.iter().enumerate() {
            if c == 0 || !c.is_multiple_of(2) {
                return Err(ConfigError::OddWidth {
                    layer: format!("conv{}", i + 1),
                    width: c,
                });
            }
        }
        if self.fc_width == 0 || !self.fc_width.is_multiple_of(2) {
            return Err(ConfigError::OddWidth {
                layer: "fc6/fc7".into(),
                width: self.fc_width,
            });
        }
        if self.num_classes == 0 {
            return Err(ConfigError::NoClasses);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ConfigError::Dropout(self.dropout));
        }
        // conv1 needs input + 4 >= 11; each pool needs a map of at least 3.
        let ok = self.input_size + 2 * CONV1.2 >= CONV1.0 && {
            let conv1 = out_size(self.input_size, CONV1.0, CONV1.1, CONV1.2);
            conv1 >= POOL.0 && {
                let p1 = out_size(conv1, POOL.0, POOL.1, 0);
                p1 >= POOL.0 && out_size(p1, POOL.0, POOL.1, 0) >= POOL.0
            }
        };
        if !ok {
            return Err(ConfigError::InputTooSmall(self.input_size));
        }
        Ok(())
    }
}

/// Spatial sizes through the network (square maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpatialSizes {
    /// After conv1 (55 for 224 inputs).
    pub conv1: usize,
    /// After pool1 = conv2's size (27).
    pub pool1: usize,
    /// After pool2 = conv3..conv5's size (13).
    pub pool2: usize,
    /// After pool5, read by fc6 (6).
    pub pool5: usize,
}

/// A configuration the network cannot be built from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A total width that does not split into two towers.
    #[error("{layer} width {width} must be positive and even (it is split over two towers)")]
    OddWidth {
        /// The layer.
        layer: String,
        /// Its total width.
        width: usize,
    },
    /// `num_classes` is 0.
    #[error("num_classes must be at least 1")]
    NoClasses,
    /// Dropout outside [0, 1).
    #[error("dropout probability {0} is not in [0, 1)")]
    Dropout(f32),
    /// An activation name other than `relu` or `tanh`.
    #[error("unknown activation '{0}': expected 'relu' or 'tanh'")]
    UnknownActivation(String),
    /// Input too small for conv1 and the three pools.
    #[error("input size {0} is too small: conv1 (11x11/4, pad 2) and three 3x3/2 pools need at least 63")]
    InputTooSmall(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_sizes() {
        let s = AlexNetConfig::alexnet(1000).spatial_sizes();
        assert_eq!((s.conv1, s.pool1, s.pool2, s.pool5), (55, 27, 13, 6));
        assert_eq!(AlexNetConfig::alexnet(1000).fc6_in_per_tower(), 128 * 36);
    }

    #[test]
    fn input_too_small_is_refused() {
        let mut c = AlexNetConfig::alexnet_small(10);
        c.input_size = 62;
        assert!(matches!(c.validate(), Err(ConfigError::InputTooSmall(62))));
        c.input_size = 63;
        c.validate().unwrap();
    }
}
