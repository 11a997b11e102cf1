#include "experiments/eval.h"

#include "core/error.h"
#include "core/json.h"
#include "data/dataset.h"
#include "experiments/metrics.h"

namespace unidiff::experiments {

std::string run_eval(const EvalConfig& c) {
  UD_CHECK_INPUT(!c.samples.empty(), "--samples is required");
  UD_CHECK_INPUT(!c.reference.empty(), "--reference is required");
  UD_CHECK_INPUT(c.projections > 0, "--projections must be positive, got ", c.projections);
  UD_CHECK_INPUT(c.max_samples >= 2, "--max_samples must be at least 2, got ", c.max_samples);
  const data::TensorDataset samples = data::TensorDataset::load(c.samples);
  const data::TensorDataset reference = data::TensorDataset::load(c.reference);
  UD_CHECK_INPUT(samples.sample_shape() == reference.sample_shape(), "samples have shape ",
                 torch::IntArrayRef(samples.sample_shape()), " but the reference has ",
                 torch::IntArrayRef(reference.sample_shape()));
  const torch::Tensor x = samples.all(), y = reference.all();
  const double sw = sliced_wasserstein(x, y, c.projections, c.seed);
  const torch::Tensor xs = x.slice(0, 0, c.max_samples), ys = y.slice(0, 0, c.max_samples);
  const double h = median_distance(ys);
  const double mmd2 = mmd2_rbf(xs, ys, h);
  return JsonLine()
      .add("samples", c.samples)
      .add("reference", c.reference)
      .add("num_samples", samples.size())
      .add("num_reference", reference.size())
      .add("sliced_wasserstein", sw)
      .add("sw_projections", c.projections)
      .add("mmd2", mmd2)
      .add("mmd_bandwidth", h)
      .add("mmd_samples", std::min(xs.size(0), ys.size(0)))
      .str();
}

}  // namespace unidiff::experiments
