//! Parameter initialisation: the paper's and PyTorch's default, both seeded.

use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// How parameters are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// The paper: weights N(0, 0.01²) (standard deviation 0.01); biases 1 in
    /// conv2, conv4, conv5, fc6 and fc7, 0 elsewhere.
    #[default]
    Paper,
    /// PyTorch's default for `Conv2d`/`Linear`: `kaiming_uniform_(a=sqrt(5))`
    /// weights, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases from the
    /// same U(-1/sqrt(fan_in), 1/sqrt(fan_in)). `fan_in` = input channels x
    /// kh x kw for convolutions, input features for fully connected layers.
    PyTorch,
}

/// An unknown initialisation name.
#[derive(Debug, thiserror::Error)]
#[error("unknown initialisation '{0}': expected 'paper' or 'pytorch'")]
pub struct ParseInitError(pub String);

impl std::str::FromStr for Init {
    type Err = ParseInitError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "paper" => Ok(Init::Paper),
            "pytorch" => Ok(Init::PyTorch),
            other => Err(ParseInitError(other.to_string())),
        }
    }
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Init::Paper => "paper",
            Init::PyTorch => "pytorch",
        })
    }
}

/// What a parameter is, for initialisation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ParamKind {
    Weight,
    /// A bias; `paper_one` is true where the paper sets it to 1.
    Bias {
        paper_one: bool,
    },
}

/// Creates one parameter on the CPU from its own ChaCha8 stream
/// (`seed`, stream = the parameter's index in the fixed creation order),
/// then moves it to `device`. The values do not depend on the device.
pub(crate) fn init_tensor(
    init: Init,
    kind: ParamKind,
    shape: &[usize],
    fan_in: usize,
    seed: u64,
    stream: u64,
    device: &Device,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let data: Vec<f32> = match (init, kind) {
        (Init::Paper, ParamKind::Weight) => {
            let normal = Normal::new(0.0f32, 0.01).expect("valid normal");
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        }
        (Init::Paper, ParamKind::Bias { paper_one }) => {
            vec![if paper_one { 1.0 } else { 0.0 }; n]
        }
        (Init::PyTorch, _) => {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let uni = Uniform::new_inclusive(-bound, bound).expect("valid bound");
            (0..n).map(|_| rng.sample(uni)).collect()
        }
    };
    Tensor::from_vec(data, shape, &Device::Cpu)?.to_device(device)
}
