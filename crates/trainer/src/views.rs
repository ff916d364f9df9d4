//! The paper's 10-crop testing: softmax averaged over the views of each image.

use candle_core::{Tensor, D};

use crate::error::{Result, TrainerError};

/// Turns logits of `views` consecutive rows per image (`[n * views, C]`, the
/// rows of image `k` at `k*views .. k*views+views`, as the loader's 10-crop
/// mode returns them) into each image's class probabilities averaged over its
/// views (`[n, C]`).
pub fn average_view_probabilities(logits: &Tensor, views: usize) -> Result<Tensor> {
    let (rows, classes) = logits.dims2()?;
    if views == 0 || rows % views != 0 {
        return Err(TrainerError::Shape(format!(
            "{rows} rows of logits do not split into groups of {views} views"
        )));
    }
    let probs = candle_nn::ops::softmax(logits, D::Minus1)?;
    Ok(probs.reshape((rows / views, views, classes))?.mean(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn softmax(row: &[f32]) -> Vec<f32> {
        let max = row.iter().cloned().fold(f32::MIN, f32::max);
        let e: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
        let s: f32 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    #[test]
    fn averages_softmax_not_logits_over_each_images_views() {
        // 2 images x 3 views x 4 classes
        let rows: Vec<Vec<f32>> = vec![
            vec![10.0, 0.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0, 0.0],
            vec![0.0, 0.0, 2.0, 0.0],
            vec![0.0, 0.0, 0.0, 3.0],
            vec![1.0, 1.0, 1.0, 1.0],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let t = Tensor::from_vec(flat, (6, 4), &Device::Cpu).unwrap();
        let avg = average_view_probabilities(&t, 3).unwrap();
        assert_eq!(avg.dims(), &[2, 4]);
        let got: Vec<Vec<f32>> = avg.to_vec2().unwrap();
        for img in 0..2 {
            let views: Vec<Vec<f32>> = rows[img * 3..img * 3 + 3]
                .iter()
                .map(|r| softmax(r))
                .collect();
            for c in 0..4 {
                let want = (views[0][c] + views[1][c] + views[2][c]) / 3.0;
                assert!((got[img][c] - want).abs() < 1e-6, "image {img} class {c}");
            }
            let sum: f32 = got[img].iter().sum();
            assert!((sum - 1.0).abs() < 1e-5);
        }
        // Image 0: one very confident view for class 0 outweighs two mild
        // views for class 1 once probabilities are averaged.
        assert!(got[0][0] > got[0][1]);
    }

    #[test]
    fn rejects_rows_not_divisible_by_views() {
        let t = Tensor::zeros((7, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(average_view_probabilities(&t, 10).is_err());
        assert!(average_view_probabilities(&t, 0).is_err());
    }

    #[test]
    fn one_view_is_the_softmax_of_each_row() {
        let t = Tensor::new(&[[0.0f32, 2.0f32.ln()], [3.0f32.ln(), 0.0]], &Device::Cpu).unwrap();
        let got: Vec<Vec<f32>> = average_view_probabilities(&t, 1)
            .unwrap()
            .to_vec2()
            .unwrap();
        let want = [[1.0 / 3.0, 2.0 / 3.0], [0.75, 0.25]];
        for (g, w) in got.iter().zip(&want) {
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() < 1e-6, "{got:?}");
            }
        }
    }
}
