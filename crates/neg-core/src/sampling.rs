//! Seeded, reproducible sampling of neurons.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::adapter::NeuronId;
use crate::error::{NegError, Result};

/// `count` distinct FF neurons drawn uniformly from `layers x width`, sorted, reproducible for a
/// given `seed` (ChaCha8).
pub fn sample_neurons(
    layers: usize,
    width: usize,
    count: usize,
    seed: u64,
) -> Result<Vec<NeuronId>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    sample_neurons_with(&mut rng, layers, width, count)
}

/// [`sample_neurons`] from a caller's generator.
pub fn sample_neurons_with<R: rand::Rng + ?Sized>(
    rng: &mut R,
    layers: usize,
    width: usize,
    count: usize,
) -> Result<Vec<NeuronId>> {
    let total = layers * width;
    if count == 0 {
        return Err(NegError::NoNeurons);
    }
    if count > total {
        return Err(NegError::InvalidArgument {
            name: "count",
            reason: format!(
                "cannot sample {count} distinct neurons from {layers} x {width} = {total}"
            ),
        });
    }
    let mut out: Vec<NeuronId> = rand::seq::index::sample(rng, total, count)
        .into_iter()
        .map(|i| NeuronId::new(i / width, i % width))
        .collect();
    out.sort();
    Ok(out)
}
