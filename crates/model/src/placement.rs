//! Where the two towers run.

use candle_core::{Device, Result};

/// The devices of the two towers. Tower A also computes fc8 and holds the
/// logits.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Device of tower A (and of fc8 and the logits).
    pub tower_a: Device,
    /// Device of tower B (unused by the single-tower configuration).
    pub tower_b: Device,
}

/// A placement string that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// Not `cpu`, `cuda:N`, or two of them separated by a comma.
    #[error(
        "invalid placement '{0}': expected 'cpu', 'cuda:N' or 'DEV,DEV' (e.g. 'cuda:0,cuda:1')"
    )]
    Syntax(String),
    /// A CUDA device asked of a build without the `cuda` feature.
    #[error("placement '{0}' needs CUDA, but this build has no CUDA support: rebuild with `--features cuda`")]
    NoCuda(String),
}

impl Placement {
    /// Both towers on the CPU.
    pub fn cpu() -> Self {
        Self {
            tower_a: Device::Cpu,
            tower_b: Device::Cpu,
        }
    }

    /// Parses `cpu` (both towers on the CPU), `cuda:N` (both towers on GPU N,
    /// one device object) or `A,B` with A and B each `cpu` or `cuda:N`
    /// (tower A on A, tower B on B). In the two-device form every CUDA tower
    /// gets a device object with its own stream
    /// (`Device::new_cuda_with_stream`): on `cuda:0,cuda:0` the two towers'
    /// kernels can overlap on one GPU, and a tower waits for the other only
    /// where an activation or gradient crosses (cudarc's event tracking
    /// orders each cross-stream copy after the kernels that wrote its
    /// source). `cuda:N` alone is one device object on the thread's default
    /// stream. CUDA needs the crate's `cuda` feature; without it, CUDA specs
    /// are a clear error.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [one] => {
                let dev = parse_device(one, spec, false)?;
                Ok(Self {
                    tower_a: dev.clone(),
                    tower_b: dev,
                })
            }
            [a, b] => Ok(Self {
                tower_a: parse_device(a, spec, true)?,
                tower_b: parse_device(b, spec, true)?,
            }),
            _ => Err(candle_core::Error::wrap(PlacementError::Syntax(
                spec.to_string(),
            ))),
        }
    }
}

fn parse_device(dev: &str, spec: &str, own_stream: bool) -> Result<Device> {
    if dev == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = dev
        .strip_prefix("cuda:")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| candle_core::Error::wrap(PlacementError::Syntax(spec.to_string())))?;
    cuda_device(ordinal, spec, own_stream)
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize, _spec: &str, own_stream: bool) -> Result<Device> {
    if own_stream {
        Device::new_cuda_with_stream(ordinal)
    } else {
        Device::new_cuda(ordinal)
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize, spec: &str, _own_stream: bool) -> Result<Device> {
    Err(candle_core::Error::wrap(PlacementError::NoCuda(
        spec.to_string(),
    )))
}
