// `unidiff sample`: draws samples from a trained model (or later an analytic one) with a chosen
// sampler, writes them as an HDF5 dataset, and a PNG beside it (scatter plot for 2-D data).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "experiments/config.h"
#include "experiments/model_io.h"
#include "models/gmm.h"

namespace unidiff::experiments {

/// Samples [end - begin, D] of the analytic mixture oracle with c.sampler on c.schedule (the
/// path of `unidiff sample --model=gmm`); sample i uses noise keyed by (c.seed, i). Refuses a
/// sampler that does not apply to the schedule (InputError naming the schedules it takes).
torch::Tensor sample_gmm_oracle(const SampleConfig& c, const models::GaussianMixture& gmm,
                                int64_t begin, int64_t end);

/// Returns the samples [num, ...] (CPU float32) after writing them to config.out (if set).
/// Sample i uses noise keyed by (seed, i): the same samples whatever --batch is.
torch::Tensor run_sample(const SampleConfig& config);

/// The samples [num, ...] (CPU float32) of a model in memory with config's sampler, steps, seed,
/// labels and guidance, its module moved to `device` and put in eval mode. What run_sample and
/// the evaluation during training both draw.
/// With `stop_on_signal` it throws SamplingStopped before the next chunk once a stop signal
/// (SIGTERM, SIGUSR1) arrived: a training run's evaluation gives way to the checkpoint.
torch::Tensor draw_samples(const SampleConfig& config, LoadedModel& model, torch::Device device,
                           bool stop_on_signal = false);

/// What draw_samples throws when a stop signal interrupts it (stop_on_signal).
struct SamplingStopped : std::runtime_error {
  SamplingStopped() : std::runtime_error("sampling stopped by a signal") {}
};

/// What a samples file of `unidiff sample` says about how it was drawn, when its samples are
/// pairs with their noise (reflow, DMD's regression): the noise key (x_T of sample i is keyed by
/// (seed, sampling, 0, i)), the model's objective and the sampler. InputError, naming `flag`, for a
/// file without these attributes or one a stochastic sampler drew (then a sample is not a function
/// of its x_T alone): the deterministic ones are euler, heun and ddim with eta 0.
struct PairsSource {
  uint32_t seed = 0;
  std::string objective, sampler;
  std::string describe() const;  ///< "ddim (eta 0) samples of a ddpm model, noise key 7"
};
PairsSource deterministic_pairs(const std::string& path, const std::string& flag);

}  // namespace unidiff::experiments
