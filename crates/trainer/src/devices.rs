//! Where the network's two towers run: [`Devices`], the `--devices`
//! pattern, read once.

use std::fmt;
use std::str::FromStr;

use model::Placement;

use crate::error::{Result, TrainerError};

/// One device of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    Cpu,
    Cuda(usize),
}

/// A tower placement pattern: `cpu`, `cuda:0` (both towers on one device)
/// or `cuda:0,cuda:1` (one tower each). With several ranks on a node it is
/// local rank 0's; [`Devices::for_local_rank`] gives the others theirs.
/// Parsing checks the syntax only; [`Devices::placement`] opens the devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Devices {
    towers: Vec<Device>,
}

impl Default for Devices {
    /// The CPU, for both towers.
    fn default() -> Self {
        Self {
            towers: vec![Device::Cpu],
        }
    }
}

impl FromStr for Devices {
    type Err = TrainerError;

    fn from_str(pattern: &str) -> Result<Self> {
        let bad = |reason: String| TrainerError::Devices {
            pattern: pattern.to_string(),
            reason,
        };
        let towers = pattern
            .split(',')
            .map(str::trim)
            .map(|p| match p {
                "cpu" => Ok(Device::Cpu),
                _ => p
                    .strip_prefix("cuda:")
                    .and_then(|n| n.parse().ok())
                    .map(Device::Cuda)
                    .ok_or_else(|| bad(format!("`{p}` is not cpu or cuda:N"))),
            })
            .collect::<Result<Vec<_>>>()?;
        if towers.len() > 2 {
            return Err(bad(format!(
                "{} devices named; expected one (both towers) or two (one per tower)",
                towers.len()
            )));
        }
        Ok(Self { towers })
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.towers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match d {
                Device::Cpu => f.write_str("cpu")?,
                Device::Cuda(n) => write!(f, "cuda:{n}")?,
            }
        }
        Ok(())
    }
}

impl Devices {
    /// Whether tower A (the one that takes the input batches) is on a CUDA
    /// device.
    pub fn tower_a_is_cuda(&self) -> bool {
        matches!(self.towers[0], Device::Cuda(_))
    }

    /// Whether any tower is on a CUDA device.
    pub fn is_cuda(&self) -> bool {
        self.towers.iter().any(|d| matches!(d, Device::Cuda(_)))
    }

    /// The placement of local rank `local_rank` on its node: the CUDA
    /// ordinals shifted by `local_rank` times the devices the pattern
    /// spans, so that `cuda:0,cuda:1` gives ranks 0, 1, 2 on a node
    /// `cuda:0,cuda:1`, `cuda:2,cuda:3` and `cuda:4,cuda:5`. `cpu` stays `cpu`.
    pub fn for_local_rank(&self, local_rank: usize) -> Self {
        let span = self
            .towers
            .iter()
            .filter_map(|d| match d {
                Device::Cuda(n) => Some(n + 1),
                Device::Cpu => None,
            })
            .max()
            .unwrap_or(0);
        Self {
            towers: self
                .towers
                .iter()
                .map(|d| match d {
                    Device::Cuda(n) => Device::Cuda(n + local_rank * span),
                    Device::Cpu => Device::Cpu,
                })
                .collect(),
        }
    }

    /// Opens the devices: the model's tower placement.
    pub fn placement(&self) -> Result<Placement> {
        Ok(Placement::parse(&self.to_string())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Devices {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_parse_and_print_back() {
        for p in ["cpu", "cuda:0", "cuda:0,cuda:1", "cpu,cuda:3"] {
            assert_eq!(d(p).to_string(), p);
        }
        assert_eq!(d(" cuda:0 , cuda:1 ").to_string(), "cuda:0,cuda:1");
        assert_eq!(Devices::default().to_string(), "cpu");
        assert!(d("cuda:1").is_cuda());
        assert!(!d("cpu").is_cuda());
        for bad in ["cuda:x", "gpu", "", "cuda:0,cuda:1,cuda:2", "cuda:-1"] {
            assert!(
                matches!(bad.parse::<Devices>(), Err(TrainerError::Devices { ref pattern, .. }) if pattern == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn local_ranks_shift_cuda_ordinals() {
        assert_eq!(d("cpu").for_local_rank(3).to_string(), "cpu");
        assert_eq!(d("cuda:0").for_local_rank(2).to_string(), "cuda:2");
        assert_eq!(
            d("cuda:0,cuda:1").for_local_rank(0).to_string(),
            "cuda:0,cuda:1"
        );
        assert_eq!(
            d("cuda:0,cuda:1").for_local_rank(2).to_string(),
            "cuda:4,cuda:5"
        );
    }
}
