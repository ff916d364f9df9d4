//! The network architecture a run uses, in a form a checkpoint can store.

use model::{Activation, AlexNetConfig, Towers};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainerError};

/// Everything that fixes the shapes of the network's parameters, except the
/// number of classes (which comes from the dataset's `classes.tsv`).
///
/// Stored in each checkpoint, so evaluation and prediction rebuild exactly
/// the trained network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// `alexnet`, `alexnet-small`, or a free name for custom shapes (tests).
    pub name: String,
    /// conv1..conv5 output channels, totals over both towers.
    pub conv_channels: [usize; 5],
    /// fc6/fc7 width, total over both towers.
    pub fc_width: usize,
    /// The paper's half-width single-tower baseline instead of two towers.
    pub single_tower: bool,
    /// Dropout probability of fc6 and fc7.
    pub dropout: f32,
    /// Side of the square input (the loader's crop).
    pub input_size: usize,
    /// The non-linearity: `relu` (the paper) or `tanh`. Checkpoints written
    /// before the option existed read as `relu`.
    #[serde(default, with = "activation_name")]
    pub activation: Activation,
}

/// `Activation` as its name in `state.json`.
mod activation_name {
    use model::Activation;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Activation, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Activation, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl Architecture {
    /// `alexnet` (the paper) or `alexnet-small` (quarter width).
    pub fn by_name(name: &str) -> Result<Self> {
        let cfg = AlexNetConfig::by_name(name, 1)
            .ok_or_else(|| TrainerError::UnknownModel(name.to_string()))?;
        Ok(Self::from_config(name, &cfg))
    }

    /// Describes an existing configuration under `name`.
    pub fn from_config(name: &str, cfg: &AlexNetConfig) -> Self {
        Self {
            name: name.to_string(),
            conv_channels: cfg.conv_channels,
            fc_width: cfg.fc_width,
            single_tower: cfg.towers == Towers::One,
            dropout: cfg.dropout,
            input_size: cfg.input_size,
            activation: cfg.activation,
        }
    }

    /// The model crate's configuration for `num_classes` classes.
    pub fn to_config(&self, num_classes: usize) -> AlexNetConfig {
        let base = AlexNetConfig::alexnet(num_classes);
        AlexNetConfig {
            conv_channels: self.conv_channels,
            fc_width: self.fc_width,
            towers: if self.single_tower {
                Towers::One
            } else {
                Towers::Two
            },
            dropout: self.dropout,
            input_size: self.input_size,
            activation: self.activation,
            ..base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_architectures_round_trip_to_model_configs() {
        for name in ["alexnet", "alexnet-small"] {
            let a = Architecture::by_name(name).unwrap();
            assert_eq!(a.to_config(10), AlexNetConfig::by_name(name, 10).unwrap());
        }
        assert!(Architecture::by_name("vgg").is_err());
    }

    #[test]
    fn activation_round_trips_and_defaults_to_relu() {
        let mut a = Architecture::by_name("alexnet-small").unwrap();
        a.activation = Activation::Tanh;
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains(r#""activation":"tanh""#), "{json}");
        assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), a);
        assert_eq!(a.to_config(10).activation, Activation::Tanh);
        // a state.json from before the option
        let old = json.replace(r#","activation":"tanh""#, "");
        let read: Architecture = serde_json::from_str(&old).unwrap();
        assert_eq!(read.activation, Activation::Relu);
    }
}
